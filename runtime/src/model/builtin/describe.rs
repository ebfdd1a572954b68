//! Images without pixels: a description from what the documents say about an image, and the
//! filter that decides whether that is enough to ask about it.
//!
//! The builtin generator cannot see. Its "transcription" says so implicitly by being made only of
//! facts it was given — the alt text, the caption, the text around the image and the code that
//! drew it — and its image type is a guess from that code and those words.

use crate::build::inputs::{ImageFilterInput, ImageInfo};

/// Code patterns and the image types they draw, checked in order.
const CODE_TYPES: &[(&str, &str)] = &[
    ("plot_bloch", "bloch_sphere"),
    ("bloch", "bloch_sphere"),
    ("plot_histogram", "chart"),
    ("plot_distribution", "chart"),
    ("plot_state_city", "chart"),
    ("plot_state_hinton", "chart"),
    ("plot_state_paulivec", "chart"),
    ("plot_state_qsphere", "diagram"),
    ("plot_gate_map", "diagram"),
    ("plot_coupling_map", "diagram"),
    ("plot_error_map", "diagram"),
    ("plot_circuit_layout", "diagram"),
    (".draw(", "circuit"),
    ("circuit_drawer", "circuit"),
    ("plt.", "chart"),
    ("matplotlib", "chart"),
    (".plot(", "chart"),
    (".bar(", "chart"),
];

/// Words in alt text, caption or context and the types they suggest, checked in order.
const WORD_TYPES: &[(&str, &str)] = &[
    ("bloch", "bloch_sphere"),
    ("histogram", "chart"),
    ("circuit", "circuit"),
    ("plot", "chart"),
    ("chart", "chart"),
    ("distribution", "chart"),
    ("graph", "chart"),
    ("table", "table"),
    ("equation", "formula"),
    ("formula", "formula"),
    ("diagram", "diagram"),
    ("overview", "diagram"),
    ("architecture", "diagram"),
    ("map", "diagram"),
    ("card", "table"),
    ("logo", "decorative"),
    ("icon", "decorative"),
    ("banner", "decorative"),
    ("photo", "decorative"),
];

pub fn image_type(image: &ImageInfo) -> &'static str {
    let code = image.code_context.to_lowercase();
    if let Some((_, t)) = CODE_TYPES.iter().find(|(p, _)| code.contains(p)) {
        return t;
    }
    let words = format!("{} {}", image.alt_text, image.caption).to_lowercase();
    if let Some((_, t)) = WORD_TYPES.iter().find(|(w, _)| words.contains(w)) {
        return t;
    }
    if !image.code_context.trim().is_empty() {
        return "code_output";
    }
    "unknown"
}

/// `(image_type, transcription)`.
pub fn transcribe(image: &ImageInfo) -> (&'static str, String) {
    let kind = image_type(image);
    let noun = match kind {
        "circuit" => "A quantum circuit diagram",
        "chart" => "A chart",
        "bloch_sphere" => "A Bloch sphere plot",
        "formula" => "A formula",
        "diagram" => "A diagram",
        "table" => "A table",
        "code_output" => "The graphical output of a code cell",
        "decorative" => "A decorative image",
        _ => "An image",
    };
    let mut out = format!("Image type: {kind}\n\n{noun} ({}×{} pixels)", image.width, image.height);
    let alt = image.alt_text.trim();
    if !alt.is_empty() {
        out.push_str(&format!(", described by its document as: \"{alt}\"."));
    } else {
        out.push('.');
    }
    let caption = image.caption.trim();
    if !caption.is_empty() && caption != alt {
        out.push_str(&format!("\n\nCaption: {caption}"));
    }
    let code = image.code_context.trim();
    if !code.is_empty() {
        out.push_str(&format!("\n\nIt is the output of this code:\n```python\n{code}\n```"));
    }
    let around = image.surrounding_text.trim();
    if !around.is_empty() {
        out.push_str(&format!("\n\nThe document says around it:\n{around}"));
    }
    (kind, out)
}

/// `Ok(reason)` keeps the image, `Err(reason)` rejects it.
pub fn filter(input: &ImageFilterInput) -> Result<String, String> {
    let image = &input.image;
    if input.image_type == "decorative" {
        return Err("decorative image (logo, icon or photo): nothing to ask about".into());
    }
    if image.width.min(image.height) < 48 {
        return Err(format!("too small to show anything legible ({}×{} pixels)", image.width, image.height));
    }
    let has_code = !image.code_context.trim().is_empty();
    let alt_words = image.alt_text.split_whitespace().count();
    let context_words = image.surrounding_text.split_whitespace().count();
    if !has_code && alt_words < 3 && context_words < 12 {
        return Err(
            "nothing grounds a question about it: no generating code, almost no alt text and no surrounding text"
                .into(),
        );
    }
    Ok(match (has_code, input.image_type.as_str()) {
        (true, t) => format!("{t} with the code that produced it"),
        (false, t) => format!("{t} described by its alt text and surrounding text"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(alt: &str, code: &str) -> ImageInfo {
        ImageInfo {
            id: "i".into(),
            width: 400,
            height: 300,
            alt_text: alt.into(),
            caption: String::new(),
            surrounding_text: String::new(),
            code_context: code.into(),
            document_path: "nb.ipynb".into(),
        }
    }

    #[test]
    fn types_come_from_the_code_first_then_the_words() {
        assert_eq!(image_type(&info("", "bell.draw(\"mpl\")")), "circuit");
        assert_eq!(image_type(&info("a circuit", "plot_histogram(counts)")), "chart");
        assert_eq!(image_type(&info("", "plot_bloch_multivector(sv)")), "bloch_sphere");
        assert_eq!(image_type(&info("Overview of the circuit model", "")), "circuit");
        assert_eq!(image_type(&info("Company logo", "")), "decorative");
        assert_eq!(image_type(&info("", "")), "unknown");
        let (kind, text) = transcribe(&info("Bell circuit", "bell.draw(\"mpl\")"));
        assert_eq!(kind, "circuit");
        assert!(text.contains("bell.draw") && text.contains("\"Bell circuit\""), "{text}");
    }

    #[test]
    fn the_filter_wants_something_to_ground_a_question() {
        let input = |alt: &str, code: &str, kind: &str| ImageFilterInput {
            image: info(alt, code),
            transcription: String::new(),
            image_type: kind.into(),
        };
        assert!(filter(&input("", "qc.draw()", "circuit")).is_ok());
        assert!(filter(&input("Reference card of the H, X and Z gates", "", "table")).is_ok());
        assert!(filter(&input("x", "", "unknown")).is_err());
        assert!(filter(&input("Company logo", "", "decorative")).is_err());
    }
}
