//! The generation context a task's prompts show (seed-pipeline.md §2.4), bounded.
//!
//! Sections, in order: the target image (its generating code first, as the primary reference,
//! then its description), the end of the previous chunk, the chunk itself, the start of the next
//! chunk, and the end of the document's earlier code. Image markers are removed from the text;
//! prose neighbours lose their code fences. Every section is already bounded by the chunking
//! limits (`neighbour_chars`, `prior_code_chars`), and the description is cut at
//! [`MAX_DESCRIPTION_CHARS`], so a long notebook can no longer blow up a prompt.

use crate::build::inputs::{ChunkView, TargetImage};
use crate::ingest::chunk::ChunkPart;

pub const MAX_DESCRIPTION_CHARS: usize = 1500;

pub fn context(chunk: &ChunkView, image: Option<&TargetImage>) -> String {
    let mut sections: Vec<String> = Vec::new();
    if let Some(img) = image {
        if !img.generating_code.trim().is_empty() {
            sections.push(format!(
                "[Code that generated the target image: the primary reference]\n```python\n{}\n```",
                img.generating_code.trim()
            ));
        }
        let description = cut(img.transcription.trim(), MAX_DESCRIPTION_CHARS);
        if !description.is_empty() {
            let alt = if img.alt_text.trim().is_empty() { String::new() } else { format!(": {}", img.alt_text.trim()) };
            sections.push(format!("[Target image{alt}]\n{description}\n[End of target image]"));
        }
    }
    let previous = without_fences(&chunk.previous_text);
    if !previous.trim().is_empty() {
        sections.push(format!("[Previous context]\n{}", previous.trim()));
    }
    sections.push(format!("[Main content]\n{}", render(&chunk.parts)));
    let next = without_fences(&chunk.next_text);
    if !next.trim().is_empty() {
        sections.push(format!("[Next context]\n{}", next.trim()));
    }
    if !chunk.prior_code.trim().is_empty() {
        sections.push(format!("[Earlier code in this document]\n```python\n{}\n```", chunk.prior_code.trim()));
    }
    sections.join("\n\n")
}

/// The chunk's parts as Markdown, without image markers.
pub fn render(parts: &[ChunkPart]) -> String {
    let mut out: Vec<String> = Vec::new();
    for p in parts {
        match p {
            ChunkPart::Heading { level, text } => {
                out.push(format!("{} {text}", "#".repeat(usize::from((*level).clamp(1, 6)))))
            }
            ChunkPart::Text { text } => out.push(text.clone()),
            ChunkPart::Code { language, code, outputs, .. } => {
                let mut s = format!("```{}\n{}\n```", language.as_deref().unwrap_or(""), code.trim_end());
                for o in outputs {
                    s.push_str("\nOutput:\n```\n");
                    s.push_str(o.trim_end());
                    s.push_str("\n```");
                }
                out.push(s);
            }
            ChunkPart::Image { .. } => {}
        }
    }
    out.join("\n\n")
}

/// Text with fenced code blocks and image markers removed.
fn without_fences(text: &str) -> String {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced && !line.trim_start().starts_with("[IMAGE:") {
            out.push(line);
        }
    }
    out.join("\n")
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}
