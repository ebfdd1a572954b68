//! Image normalisation: any supported image → one canonical PNG, whose sha256 is the image id.
//!
//! The normal form, so that the same picture has the same id wherever it appears:
//! 1. decode to pixels (PNG, JPEG, GIF first frame, WebP; SVG rasterised with resvg, no system
//!    fonts, so the result does not depend on the machine);
//! 2. composite any alpha onto white and drop it (RGB, 8 bits per channel);
//! 3. if the longest side exceeds the spec's `images.max_side`, resize with Lanczos3 so it fits;
//! 4. encode as PNG with fixed settings (default compression, adaptive filtering, no metadata).
//!
//! Limits are checked before decoding: file size (`max_bytes`) and declared pixel count
//! (`max_pixels`), which stops decompression bombs without allocating their pixels.

use std::io::Cursor;

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{DynamicImage, ImageEncoder, ImageReader, RgbImage, RgbaImage};
use sdc_compiler::plan::PlanImages;
use sha2::{Digest, Sha256};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Normalized {
    pub id: String,
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// The format the image came in (`png`, `jpeg`, `svg`, …).
    pub format: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("the image is {bytes} bytes, over the {limit}-byte limit")]
    TooLarge { bytes: u64, limit: u64 },
    #[error("the image is {width}×{height} pixels, over the {limit}-pixel limit")]
    TooManyPixels { width: u64, height: u64, limit: u64 },
    #[error("unsupported image format ({0})")]
    Unsupported(String),
    #[error("the image cannot be decoded: {0}")]
    Decode(String),
}

/// Normalises image bytes. `mime` is a hint (`image/svg+xml` selects the SVG path).
pub fn normalize(data: &[u8], mime: Option<&str>, limits: &PlanImages) -> Result<Normalized, ImageError> {
    if data.len() as u64 > limits.max_bytes {
        return Err(ImageError::TooLarge { bytes: data.len() as u64, limit: limits.max_bytes });
    }
    let (rgb, format) =
        if is_svg(data, mime) { (rasterize_svg(data, limits)?, "svg".to_string()) } else { decode(data, limits)? };
    let rgb = fit(rgb, limits.max_side);
    let png = encode_png(&rgb)?;
    Ok(Normalized { id: hex::encode(Sha256::digest(&png)), width: rgb.width(), height: rgb.height(), png, format })
}

fn is_svg(data: &[u8], mime: Option<&str>) -> bool {
    if mime.is_some_and(|m| m.contains("svg")) {
        return true;
    }
    let head = &data[..data.len().min(512)];
    let text = String::from_utf8_lossy(head);
    let t = text.trim_start_matches('\u{feff}').trim_start();
    t.starts_with("<svg") || (t.starts_with("<?xml") && text.contains("<svg"))
}

fn check_pixels(width: u64, height: u64, limits: &PlanImages) -> Result<(), ImageError> {
    if width == 0 || height == 0 {
        return Err(ImageError::Decode("the image has no pixels".into()));
    }
    if width.saturating_mul(height) > limits.max_pixels {
        return Err(ImageError::TooManyPixels { width, height, limit: limits.max_pixels });
    }
    Ok(())
}

fn decode(data: &[u8], limits: &PlanImages) -> Result<(RgbImage, String), ImageError> {
    let reader =
        ImageReader::new(Cursor::new(data)).with_guessed_format().map_err(|e| ImageError::Decode(e.to_string()))?;
    let Some(format) = reader.format() else {
        return Err(ImageError::Unsupported(sniff(data)));
    };
    let name = format!("{format:?}").to_ascii_lowercase();
    // Read the declared size first: a decompression bomb is refused before any allocation.
    let (w, h) = ImageReader::with_format(Cursor::new(data), format)
        .into_dimensions()
        .map_err(|e| ImageError::Decode(e.to_string()))?;
    check_pixels(u64::from(w), u64::from(h), limits)?;
    let mut reader = ImageReader::with_format(Cursor::new(data), format);
    let mut l = image::Limits::default();
    l.max_alloc = Some(limits.max_pixels.saturating_mul(8).max(1 << 20));
    reader.limits(l);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Unsupported(u) => ImageError::Unsupported(u.to_string()),
        other => ImageError::Decode(other.to_string()),
    })?;
    Ok((flatten(img), name))
}

/// Names formats `image` cannot read, for the skip reason.
fn sniff(data: &[u8]) -> String {
    if data.len() > 12 && &data[4..8] == b"ftyp" && (&data[8..12] == b"avif" || &data[8..12] == b"avis") {
        "avif".into()
    } else {
        "unrecognised bytes".into()
    }
}

/// Any pixel format → RGB on white.
fn flatten(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba: RgbaImage = img.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (src, dst) in rgba.pixels().zip(out.pixels_mut()) {
        let a = u32::from(src[3]);
        for c in 0..3 {
            // Integer blend onto white, rounded: deterministic on every machine.
            dst[c] = ((u32::from(src[c]) * a + 255 * (255 - a) + 127) / 255) as u8;
        }
    }
    out
}

fn rasterize_svg(data: &[u8], limits: &PlanImages) -> Result<RgbImage, ImageError> {
    let options = resvg::usvg::Options::default();
    let tree = resvg::usvg::Tree::from_data(data, &options).map_err(|e| ImageError::Decode(format!("SVG: {e}")))?;
    let size = tree.size();
    let (w, h) = (f64::from(size.width()), f64::from(size.height()));
    if !(w.is_finite() && h.is_finite()) || w < 1.0 || h < 1.0 {
        return Err(ImageError::Decode("SVG has no size".into()));
    }
    // Rasterise directly at the size the normal form needs (never larger than max_side).
    let scale = (limits.max_side as f64 / w.max(h)).min(2.0);
    let (pw, ph) = ((w * scale).round().max(1.0) as u32, (h * scale).round().max(1.0) as u32);
    check_pixels(u64::from(pw), u64::from(ph), limits)?;
    let mut pixmap = resvg::tiny_skia::Pixmap::new(pw, ph).ok_or_else(|| ImageError::Decode("SVG size".into()))?;
    pixmap.fill(resvg::tiny_skia::Color::WHITE);
    resvg::render(&tree, resvg::tiny_skia::Transform::from_scale(scale as f32, scale as f32), &mut pixmap.as_mut());
    // The background is opaque, so premultiplied and straight RGBA are the same.
    let rgba = RgbaImage::from_raw(pw, ph, pixmap.take()).ok_or_else(|| ImageError::Decode("SVG pixels".into()))?;
    Ok(flatten(DynamicImage::ImageRgba8(rgba)))
}

fn fit(img: RgbImage, max_side: u64) -> RgbImage {
    let (w, h) = img.dimensions();
    let longest = u64::from(w.max(h));
    if longest <= max_side {
        return img;
    }
    let scale = max_side as f64 / longest as f64;
    let nw = ((f64::from(w) * scale).round() as u32).max(1);
    let nh = ((f64::from(h) * scale).round() as u32).max(1);
    image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Lanczos3)
}

fn encode_png(img: &RgbImage) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::new();
    let encoder = PngEncoder::new_with_quality(&mut out, CompressionType::Default, FilterType::Adaptive);
    encoder
        .write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)
        .map_err(|e| ImageError::Decode(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> PlanImages {
        PlanImages { max_side: 64, max_pixels: 1_000_000, max_bytes: 1_000_000 }
    }

    fn png_of(img: &RgbaImage) -> Vec<u8> {
        let mut out = Vec::new();
        PngEncoder::new(&mut out)
            .write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgba8)
            .expect("png");
        out
    }

    #[test]
    fn same_picture_in_different_formats_has_one_id_after_resizing() {
        let img = RgbaImage::from_fn(200, 100, |x, y| image::Rgba([(x % 256) as u8, (y * 2) as u8, 90, 255]));
        let a = normalize(&png_of(&img), None, &limits()).expect("a");
        assert_eq!((a.width, a.height), (64, 32));
        // The same pixels encoded differently (no alpha, other compression) give the same id.
        let rgb = DynamicImage::ImageRgba8(img).into_rgb8();
        let mut other = Vec::new();
        PngEncoder::new_with_quality(&mut other, CompressionType::Best, FilterType::NoFilter)
            .write_image(rgb.as_raw(), 200, 100, image::ExtendedColorType::Rgb8)
            .expect("png");
        assert_eq!(normalize(&other, None, &limits()).expect("b").id, a.id);
    }

    #[test]
    fn transparency_becomes_white() {
        let img = RgbaImage::from_pixel(4, 4, image::Rgba([0, 0, 0, 0]));
        let n = normalize(&png_of(&img), None, &limits()).expect("n");
        let back = image::load_from_memory(&n.png).expect("decode").into_rgb8();
        assert!(back.pixels().all(|p| p.0 == [255, 255, 255]));
    }

    #[test]
    fn svg_is_rasterised_deterministically() {
        let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="20" height="20" fill="red"/></svg>"#;
        let a = normalize(svg, Some("image/svg+xml"), &limits()).expect("svg");
        let b = normalize(svg, None, &limits()).expect("svg");
        assert_eq!(a, b);
        assert_eq!(a.format, "svg");
        assert_eq!((a.width, a.height), (64, 32));
    }

    #[test]
    fn limits_and_bad_bytes_are_typed_errors() {
        let big = RgbaImage::from_pixel(2000, 1000, image::Rgba([1, 2, 3, 255]));
        let err =
            normalize(&png_of(&big), None, &PlanImages { max_side: 64, max_pixels: 1_000_000, max_bytes: 10_000_000 });
        assert!(matches!(err, Err(ImageError::TooManyPixels { width: 2000, height: 1000, .. })), "{err:?}");
        assert!(matches!(normalize(&[0u8; 10], None, &limits()), Err(ImageError::Unsupported(_))));
        let mut truncated = png_of(&RgbaImage::from_pixel(30, 30, image::Rgba([1, 2, 3, 255])));
        truncated.truncate(truncated.len() / 2);
        assert!(normalize(&truncated, None, &limits()).is_err());
        assert!(matches!(normalize(&vec![0u8; 2_000_000], None, &limits()), Err(ImageError::TooLarge { .. })));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let _ = normalize(&data, None, &limits());
            let _ = normalize(&data, Some("image/svg+xml"), &limits());
        }
    }
}
