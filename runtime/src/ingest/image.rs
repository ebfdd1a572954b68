//! Image normalisation: any supported image → one canonical PNG, whose sha256 is the image id.
//!
//! The normal form, so that the same picture has the same id wherever it appears:
//! 1. decode to pixels (PNG, JPEG, GIF first frame, WebP; SVG rasterised with resvg, no system
//!    fonts, so the result does not depend on the machine);
//! 2. composite any alpha onto white and drop it (RGB, 8 bits per channel);
//! 3. if the longest side exceeds the spec's `images.max_side`, shrink it to fit by area averaging
//!    (integer arithmetic, the same on every machine);
//! 4. encode as PNG with fixed settings (default compression, adaptive filtering, no metadata).
//!
//! Limits are checked before decoding: file size (`max_bytes`) and declared pixel count
//! (`max_pixels`), which stops decompression bombs without allocating their pixels.

use std::io::Cursor;

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{DynamicImage, ImageEncoder, ImageReader, RgbImage, RgbaImage};
use sdc_compiler::plan::PlanImages;
use sha2::{Digest, Sha256};

/// Names the normal form; bumped whenever the same input would normalise to other bytes.
pub const NORMAL_FORM: &str = "sdc-image-normal-form-1";

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
    let target = target_size(w, h, limits.max_side);
    // A large non-interlaced PNG is shrunk row by row as it is decoded, so it never exists at
    // full size in memory.
    if format == image::ImageFormat::Png
        && target != (w, h)
        && let Some(rgb) = png_rows(data, w, h, target)?
    {
        return Ok((rgb, name));
    }
    // Anything else large is decoded whole, one at a time, which keeps a parallel ingest's
    // memory bounded. The result does not depend on the order.
    let _big = (u64::from(w) * u64::from(h) > BIG_IMAGE_PIXELS).then(|| BIG_IMAGE.lock());
    let mut reader = ImageReader::with_format(Cursor::new(data), format);
    let mut l = image::Limits::default();
    l.max_alloc = Some(limits.max_pixels.saturating_mul(8).max(1 << 20));
    reader.limits(l);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Unsupported(u) => ImageError::Unsupported(u.to_string()),
        other => ImageError::Decode(other.to_string()),
    })?;
    let rgb = flatten(img);
    if target == (w, h) {
        return Ok((rgb, name));
    }
    let mut shrink = Shrink::new((w, h), target);
    for row in rgb.as_raw().chunks_exact(w as usize * 3) {
        shrink.push_row(row);
    }
    Ok((shrink.finish(), name))
}

/// Images above this many pixels (4 MB as RGBA) are decoded one at a time.
const BIG_IMAGE_PIXELS: u64 = 1_000_000;
static BIG_IMAGE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The size an image is shrunk to so that its longest side is at most `max_side`.
fn target_size(w: u32, h: u32, max_side: u64) -> (u32, u32) {
    let longest = u64::from(w.max(h));
    if longest <= max_side {
        return (w, h);
    }
    let scale = max_side as f64 / longest as f64;
    (((f64::from(w) * scale).round() as u32).max(1), ((f64::from(h) * scale).round() as u32).max(1))
}

/// Streams a PNG's rows through [`Shrink`]. `Ok(None)`: not streamable (interlaced).
fn png_rows(data: &[u8], w: u32, h: u32, target: (u32, u32)) -> Result<Option<RgbImage>, ImageError> {
    let bad = |e: png::DecodingError| ImageError::Decode(e.to_string());
    let mut decoder = png::Decoder::new(Cursor::new(data));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(bad)?;
    if reader.info().interlaced || (reader.info().width, reader.info().height) != (w, h) {
        return Ok(None);
    }
    let (color, _) = reader.output_color_type();
    let channels = match color {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Ok(None),
    };
    let mut shrink = Shrink::new((w, h), target);
    let mut rgb = vec![0u8; w as usize * 3];
    let mut rows = 0u32;
    while let Some(row) = reader.next_row().map_err(bad)? {
        let data = row.data();
        if data.len() < w as usize * channels {
            return Err(ImageError::Decode("short PNG row".into()));
        }
        for (px, out) in data.chunks_exact(channels).zip(rgb.chunks_exact_mut(3)) {
            let (r, g, b, a) = match channels {
                1 => (px[0], px[0], px[0], 255),
                2 => (px[0], px[0], px[0], px[1]),
                3 => (px[0], px[1], px[2], 255),
                _ => (px[0], px[1], px[2], px[3]),
            };
            out.copy_from_slice(&[on_white(r, a), on_white(g, a), on_white(b, a)]);
        }
        shrink.push_row(&rgb);
        rows += 1;
    }
    if rows != h {
        return Err(ImageError::Decode(format!("the PNG has {rows} of its {h} rows")));
    }
    Ok(Some(shrink.finish()))
}

/// Shrinks RGB rows by area averaging: every source pixel adds to the one target pixel it
/// falls in; each target pixel is the rounded mean of its sources. Integer arithmetic only, so
/// the result is the same on every machine, and one target row of sums is all it holds.
struct Shrink {
    src: (u32, u32),
    target: (u32, u32),
    columns: Vec<usize>,
    row: u32,
    current: u32,
    sums: Vec<u64>,
    counts: Vec<u64>,
    out: RgbImage,
}

impl Shrink {
    fn new(src: (u32, u32), target: (u32, u32)) -> Self {
        let columns =
            (0..u64::from(src.0)).map(|x| (x * u64::from(target.0) / u64::from(src.0).max(1)) as usize).collect();
        Shrink {
            src,
            target,
            columns,
            row: 0,
            current: 0,
            sums: vec![0; target.0 as usize * 3],
            counts: vec![0; target.0 as usize],
            out: RgbImage::new(target.0, target.1),
        }
    }

    fn push_row(&mut self, row: &[u8]) {
        let ty = (u64::from(self.row) * u64::from(self.target.1) / u64::from(self.src.1).max(1)) as u32;
        if ty != self.current {
            self.emit();
            self.current = ty;
        }
        for (x, px) in row.chunks_exact(3).enumerate().take(self.src.0 as usize) {
            let tx = self.columns[x];
            for (sum, v) in self.sums[tx * 3..tx * 3 + 3].iter_mut().zip(px) {
                *sum += u64::from(*v);
            }
            self.counts[tx] += 1;
        }
        self.row += 1;
    }

    fn emit(&mut self) {
        if self.current >= self.target.1 {
            return;
        }
        for tx in 0..self.target.0 as usize {
            let n = self.counts[tx].max(1);
            let px = self.out.get_pixel_mut(tx as u32, self.current);
            for c in 0..3 {
                px[c] = ((self.sums[tx * 3 + c] + n / 2) / n) as u8;
                self.sums[tx * 3 + c] = 0;
            }
            self.counts[tx] = 0;
        }
    }

    fn finish(mut self) -> RgbImage {
        if self.row > 0 {
            self.emit();
        }
        self.out
    }
}

/// One channel composited onto white, rounded.
fn on_white(c: u8, a: u8) -> u8 {
    let (c, a) = (u32::from(c), u32::from(a));
    ((c * a + 255 * (255 - a) + 127) / 255) as u8
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
        for c in 0..3 {
            dst[c] = on_white(src[c], src[3]);
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
    fn streamed_and_whole_decoding_shrink_identically() {
        let img = RgbaImage::from_fn(301, 97, |x, y| {
            image::Rgba([(x * 7 % 256) as u8, (y * 5) as u8, (x ^ y) as u8, (x % 256) as u8])
        });
        let data = png_of(&img);
        let streamed = png_rows(&data, 301, 97, (64, 21)).expect("rows").expect("streamable");
        let whole = flatten(DynamicImage::ImageRgba8(img));
        let mut shrink = Shrink::new((301, 97), (64, 21));
        for row in whole.as_raw().chunks_exact(301 * 3) {
            shrink.push_row(row);
        }
        assert_eq!(streamed, shrink.finish());
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
