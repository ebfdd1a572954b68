//! Chunking: a document's blocks → semantic chunks within the spec's limits.
//!
//! Follows the original pipeline (seed-pipeline.md §2.3) on structured blocks instead of
//! regex-scanned lines: headings start chunks, a code cell stays with its outputs and the images
//! it produced, greedy grouping under size/code/image limits, small chunks merged into a
//! neighbour. Unlike the original, the earlier code shown with a chunk is bounded
//! (`prior_code_chars`) and every chunk has a content id. Within that bound the earlier code keeps
//! the document's import statements first: a chunk's code almost always needs `np` or
//! `QuantumCircuit`, which the notebook imported once, at the top, long before the tail.

use sdc_compiler::plan::PlanChunking;
use sha2::{Digest, Sha256};

/// A block after image resolution: images are ids of normalised images.
#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    Heading {
        level: u8,
        text: String,
    },
    Text(String),
    Code {
        language: Option<String>,
        code: String,
    },
    Output(String),
    /// `produced`: the image is an output of the preceding code cell.
    Image {
        id: String,
        produced: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Chunk {
    pub id: String,
    pub document_id: String,
    pub ordinal: u32,
    pub text: String,
    pub code_blocks: Vec<String>,
    pub images: Vec<String>,
    /// The end of the code of earlier chunks of the same document, at most `prior_code_chars`.
    pub prior_code: String,
    pub previous_text: String,
    pub next_text: String,
    /// The nearest heading at or before the chunk's start (it may open an earlier chunk).
    pub heading: Option<String>,
    /// The chunk's content as structure, for stages that need more than text (the builtin
    /// generator mines functions and their printed results from it).
    pub parts: Vec<ChunkPart>,
}

/// One unit of a chunk, in order.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChunkPart {
    Heading {
        level: u8,
        text: String,
    },
    Text {
        text: String,
    },
    /// A code cell or block, with the text outputs it printed and the images it produced.
    Code {
        language: Option<String>,
        code: String,
        outputs: Vec<String>,
        images: Vec<String>,
    },
    Image {
        id: String,
    },
}

/// The marker a chunk's text carries where an image was.
pub fn image_marker(id: &str) -> String {
    format!("[IMAGE:{}]", &id[..id.len().min(16)])
}

#[derive(Clone, Debug)]
enum Unit {
    Heading { level: u8, text: String },
    Text(String),
    Code { language: Option<String>, code: String, outputs: Vec<String>, images: Vec<String> },
    Image(String),
}

impl Unit {
    fn render(&self) -> String {
        match self {
            Unit::Heading { level, text } => format!("{} {text}", "#".repeat(usize::from((*level).clamp(1, 6)))),
            Unit::Text(t) => t.clone(),
            Unit::Code { language, code, outputs, images } => {
                let mut s = format!("```{}\n{}\n```", language.as_deref().unwrap_or(""), code.trim_end());
                for o in outputs {
                    s.push_str("\nOutput:\n```\n");
                    s.push_str(o.trim_end());
                    s.push_str("\n```");
                }
                for id in images {
                    s.push('\n');
                    s.push_str(&image_marker(id));
                }
                s
            }
            Unit::Image(id) => image_marker(id),
        }
    }

    fn code_count(&self) -> u64 {
        u64::from(matches!(self, Unit::Code { .. }))
    }

    fn images(&self) -> Vec<&str> {
        match self {
            Unit::Code { images, .. } => images.iter().map(String::as_str).collect(),
            Unit::Image(id) => vec![id.as_str()],
            _ => Vec::new(),
        }
    }

    fn is_major_heading(&self) -> bool {
        matches!(self, Unit::Heading { level, .. } if *level <= 2)
    }

    fn part(&self) -> ChunkPart {
        match self {
            Unit::Heading { level, text } => ChunkPart::Heading { level: *level, text: text.clone() },
            Unit::Text(text) => ChunkPart::Text { text: text.clone() },
            Unit::Code { language, code, outputs, images } => ChunkPart::Code {
                language: language.clone(),
                code: code.clone(),
                outputs: outputs.clone(),
                images: images.clone(),
            },
            Unit::Image(id) => ChunkPart::Image { id: id.clone() },
        }
    }
}

/// Groups pieces into units: code with its outputs and produced images; long text split.
fn units(pieces: &[Piece], max_chars: usize) -> Vec<Unit> {
    let mut out: Vec<Unit> = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Heading { level, text } => out.push(Unit::Heading { level: *level, text: text.clone() }),
            Piece::Text(t) => {
                for part in split_text(t, max_chars) {
                    out.push(Unit::Text(part));
                }
            }
            Piece::Code { language, code } => {
                out.push(Unit::Code { language: language.clone(), code: code.clone(), outputs: vec![], images: vec![] })
            }
            Piece::Output(text) => match out.last_mut() {
                Some(Unit::Code { outputs, .. }) => outputs.push(text.clone()),
                _ => out.push(Unit::Text(format!("Output:\n{text}"))),
            },
            Piece::Image { id, produced } => match out.last_mut() {
                Some(Unit::Code { images, .. }) if *produced => images.push(id.clone()),
                _ => out.push(Unit::Image(id.clone())),
            },
        }
    }
    out
}

/// Splits text longer than `max` at paragraph, then line, then sentence boundaries, and only as
/// a last resort inside a sentence (at a char boundary).
fn split_text(text: &str, max: usize) -> Vec<String> {
    if text.chars().count() <= max || max == 0 {
        return vec![text.to_string()];
    }
    let mut pieces = Vec::new();
    let mut current = String::new();
    for para in text.split("\n\n") {
        let candidate_len = current.chars().count() + para.chars().count() + 2;
        if !current.is_empty() && candidate_len > max {
            pieces.push(std::mem::take(&mut current));
        }
        if para.chars().count() > max {
            for part in hard_split(para, max) {
                if current.is_empty() {
                    current = part;
                } else {
                    pieces.push(std::mem::take(&mut current));
                    current = part;
                }
            }
            continue;
        }
        if !current.is_empty() {
            current.push_str("\n\n");
        }
        current.push_str(para);
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

fn hard_split(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.chars().count() > max {
        let cut = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
        let window = &rest[..cut];
        let at = window
            .rfind('\n')
            .or_else(|| window.rfind(". ").map(|i| i + 1))
            .or_else(|| window.rfind(' '))
            .filter(|i| *i > cut / 2)
            .unwrap_or(cut);
        let (head, tail) = rest.split_at(at);
        out.push(head.trim_end().to_string());
        rest = tail.trim_start();
    }
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

struct Group {
    units: Vec<Unit>,
    len: usize,
    code: u64,
    images: u64,
}

impl Group {
    fn new() -> Self {
        Group { units: Vec::new(), len: 0, code: 0, images: 0 }
    }

    fn push(&mut self, u: Unit, len: usize) {
        self.len += len + if self.units.is_empty() { 0 } else { 2 };
        self.code += u.code_count();
        self.images += u.images().len() as u64;
        self.units.push(u);
    }

    fn absorb(&mut self, other: Group) {
        for u in other.units {
            let len = u.render().chars().count();
            self.push(u, len);
        }
    }
}

/// Chunks one document.
pub fn chunk(document_id: &str, pieces: &[Piece], limits: &PlanChunking) -> Vec<Chunk> {
    let max = limits.max_chars as usize;
    let min = limits.min_chars as usize;
    let mut groups: Vec<Group> = Vec::new();
    let mut current = Group::new();
    for u in units(pieces, max) {
        let len = u.render().chars().count();
        if !current.units.is_empty() {
            let breaks = current.len + len > max
                || (u.code_count() > 0 && current.code >= limits.max_code_blocks)
                || current.images + u.images().len() as u64 > limits.max_images
                || (u.is_major_heading() && current.len >= min)
                || (u.code_count() > 0 && current.code >= 2 && current.len >= min);
            if breaks {
                groups.push(std::mem::replace(&mut current, Group::new()));
            }
        }
        current.push(u, len);
    }
    if !current.units.is_empty() {
        groups.push(current);
    }
    merge_small(&mut groups, limits);
    finish(document_id, groups, limits)
}

/// Merges chunks shorter than `min_chars` into a neighbour while the result stays within
/// 1.5 × `max_chars` and one over the code and image limits.
fn merge_small(groups: &mut Vec<Group>, limits: &PlanChunking) {
    let fits = |a: &Group, b: &Group| {
        a.len + b.len + 2 <= (limits.max_chars as usize) * 3 / 2
            && a.code + b.code <= limits.max_code_blocks + 1
            && a.images + b.images <= limits.max_images + 1
    };
    let mut i = 0;
    while i < groups.len() {
        if groups[i].len >= limits.min_chars as usize || groups.len() == 1 {
            i += 1;
            continue;
        }
        if i + 1 < groups.len() && fits(&groups[i], &groups[i + 1]) {
            let next = groups.remove(i + 1);
            groups[i].absorb(next);
            continue;
        }
        if i > 0 && fits(&groups[i - 1], &groups[i]) {
            let this = groups.remove(i);
            groups[i - 1].absorb(this);
            i -= 1;
            continue;
        }
        i += 1;
    }
}

fn finish(document_id: &str, groups: Vec<Group>, limits: &PlanChunking) -> Vec<Chunk> {
    let texts: Vec<String> =
        groups.iter().map(|g| g.units.iter().map(Unit::render).collect::<Vec<_>>().join("\n\n")).collect();
    let mut earlier_code = String::new();
    let mut earlier_imports: Vec<String> = Vec::new();
    let mut last_heading: Option<String> = None;
    let mut chunks = Vec::with_capacity(groups.len());
    for (i, g) in groups.iter().enumerate() {
        let text = &texts[i];
        let heading = match g.units.first() {
            Some(Unit::Heading { text, .. }) => Some(text.clone()),
            _ => last_heading.clone(),
        };
        if let Some(Unit::Heading { text, .. }) = g.units.iter().rev().find(|u| matches!(u, Unit::Heading { .. })) {
            last_heading = Some(text.clone());
        }
        let ordinal = i as u32;
        let mut images: Vec<String> = Vec::new();
        let mut code_blocks = Vec::new();
        for u in &g.units {
            for id in u.images() {
                if !images.iter().any(|x| x == id) {
                    images.push(id.to_string());
                }
            }
            if let Unit::Code { code, .. } = u {
                code_blocks.push(code.clone());
            }
        }
        let prior_code = bounded_prior_code(&earlier_imports, &earlier_code, limits.prior_code_chars as usize);
        for c in &code_blocks {
            for statement in import_statements(c) {
                if !earlier_imports.contains(&statement) {
                    earlier_imports.push(statement);
                }
            }
            if !earlier_code.is_empty() {
                earlier_code.push_str("\n\n");
            }
            earlier_code.push_str(c);
            // Keep the running buffer bounded too: only its end can ever be shown.
            if earlier_code.len() > 4 * limits.prior_code_chars as usize + 4096 {
                earlier_code = tail_chars(&earlier_code, limits.prior_code_chars as usize);
            }
        }
        let n = limits.neighbour_chars as usize;
        let previous_text = if i > 0 { tail_chars(&texts[i - 1], n) } else { String::new() };
        let next_text = texts.get(i + 1).map(|t| head_chars(t, n)).unwrap_or_default();
        let mut h = Sha256::new();
        h.update(b"chunk\0");
        h.update(document_id.as_bytes());
        h.update(b"\0");
        h.update(ordinal.to_le_bytes());
        h.update(text.as_bytes());
        chunks.push(Chunk {
            id: hex::encode(h.finalize()),
            document_id: document_id.to_string(),
            ordinal,
            text: text.clone(),
            code_blocks,
            images,
            prior_code,
            previous_text,
            next_text,
            heading,
            parts: g.units.iter().map(Unit::part).collect(),
        });
    }
    chunks
}

/// The last `n` characters, starting at a line boundary when one is near.
/// Earlier code within `limit` characters: the import statements not already in the tail (at
/// most half the budget, first ones first), then the end of the code.
fn bounded_prior_code(imports: &[String], code: &str, limit: usize) -> String {
    if code.chars().count() <= limit {
        return code.to_string();
    }
    // The tail of the code, given room for `head` and the blank line after it.
    let tail_after = |head: &[&str]| {
        let used: usize = head.iter().map(|l| l.chars().count() + 1).sum();
        tail_chars(code, limit.saturating_sub(used + 1))
    };
    let mut head: Vec<&str> = Vec::new();
    let mut used = 0;
    for statement in imports {
        used += statement.chars().count() + 1;
        if used > limit / 2 {
            break;
        }
        head.push(statement);
    }
    // Imports the tail already shows need not be repeated; the freed room goes to the tail.
    let tail = tail_after(&head);
    head.retain(|l| !tail.lines().any(|t| t == *l));
    if head.is_empty() {
        return tail_chars(code, limit);
    }
    format!("{}\n\n{}", head.join("\n"), tail_after(&head))
}

/// The top-level single-line `import …` / `from … import …` statements of a code block, in order
/// (a parenthesised multi-line import is joined onto one line).
fn import_statements(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = code.lines();
    while let Some(line) = lines.next() {
        let is_import = line.starts_with("import ") || (line.starts_with("from ") && line.contains(" import "));
        if !is_import {
            continue;
        }
        let mut statement = line.trim_end().to_string();
        if statement.ends_with('(') || (statement.contains('(') && !statement.contains(')')) {
            for more in lines.by_ref() {
                statement.push(' ');
                statement.push_str(more.trim());
                if more.contains(')') {
                    break;
                }
            }
        }
        if !statement.ends_with('\\') {
            out.push(statement);
        }
    }
    out
}

fn tail_chars(s: &str, n: usize) -> String {
    let count = s.chars().count();
    if count <= n {
        return s.to_string();
    }
    let start = s.char_indices().nth(count - n).map_or(0, |(i, _)| i);
    let tail = &s[start..];
    match tail.find('\n') {
        Some(nl) if nl < tail.len() / 4 => tail[nl + 1..].to_string(),
        _ => tail.to_string(),
    }
}

fn head_chars(s: &str, n: usize) -> String {
    s.char_indices().nth(n).map_or_else(|| s.to_string(), |(i, _)| s[..i].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> PlanChunking {
        PlanChunking {
            max_chars: 200,
            min_chars: 50,
            overlap_chars: 0,
            max_code_blocks: 2,
            max_images: 2,
            neighbour_chars: 20,
            prior_code_chars: 30,
        }
    }

    fn text(n: usize) -> Piece {
        Piece::Text("word ".repeat(n / 5).trim_end().to_string())
    }

    #[test]
    fn code_stays_with_its_outputs_and_images() {
        let pieces = vec![
            Piece::Heading { level: 1, text: "Bell".into() },
            text(60),
            Piece::Code { language: Some("python".into()), code: "qc.draw()".into() },
            Piece::Output("ok".into()),
            Piece::Image { id: "a".repeat(64), produced: true },
        ];
        let chunks = chunk("doc", &pieces, &limits());
        let with_code: Vec<_> = chunks.iter().filter(|c| !c.code_blocks.is_empty()).collect();
        assert_eq!(with_code.len(), 1);
        let c = with_code[0];
        assert!(
            c.text.contains("qc.draw()")
                && c.text.contains("Output:\n```\nok")
                && c.text.contains("[IMAGE:aaaaaaaaaaaaaaaa]")
        );
        assert_eq!(c.images, vec!["a".repeat(64)]);
    }

    #[test]
    fn limits_hold_and_headings_start_chunks() {
        let mut pieces = Vec::new();
        for i in 0..6 {
            pieces.push(Piece::Heading { level: 2, text: format!("Section {i}") });
            pieces.push(text(120));
            pieces.push(Piece::Code { language: None, code: format!("x = {i}\nprint(x)") });
        }
        let chunks = chunk("doc", &pieces, &limits());
        assert!(chunks.len() >= 3);
        for c in &chunks {
            assert!(c.text.chars().count() <= 300, "{}", c.text.len());
            assert!(c.code_blocks.len() <= 3);
        }
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(c.ordinal as usize, i);
            assert!(c.prior_code.chars().count() <= 30);
        }
        assert!(chunks[1].previous_text.chars().count() <= 20);
        let ids: std::collections::BTreeSet<_> = chunks.iter().map(|c| c.id.clone()).collect();
        assert_eq!(ids.len(), chunks.len());
    }

    #[test]
    fn earlier_imports_survive_the_bound() {
        let mut pieces = vec![Piece::Code {
            language: None,
            code: "import numpy as np\nfrom qiskit import (\n    QuantumCircuit,\n)".into(),
        }];
        for i in 0..20 {
            pieces.push(Piece::Heading { level: 2, text: format!("Part {i}") });
            pieces.push(text(120));
            pieces.push(Piece::Code { language: None, code: format!("value_{i} = np.zeros({i})\nprint(value_{i})") });
        }
        let limits = PlanChunking { prior_code_chars: 120, ..limits() };
        let chunks = chunk("doc", &pieces, &limits);
        let last = chunks.last().expect("chunks");
        assert!(last.prior_code.chars().count() <= 120, "{}", last.prior_code);
        assert!(
            last.prior_code.starts_with("import numpy as np\nfrom qiskit import ( QuantumCircuit, )\n\n"),
            "{}",
            last.prior_code
        );
        assert!(last.prior_code.ends_with("print(value_18)"), "{}", last.prior_code);
        // Short earlier code is shown whole, imports not repeated.
        assert_eq!(chunks[1].prior_code.matches("import numpy").count(), 1, "{}", chunks[1].prior_code);
    }

    #[test]
    fn long_text_is_split_without_losing_words() {
        let long = (0..400).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
        let chunks = chunk("doc", &[Piece::Text(long.clone())], &limits());
        assert!(chunks.len() > 1);
        let words: Vec<String> =
            chunks.iter().flat_map(|c| c.text.split_whitespace().map(str::to_string).collect::<Vec<_>>()).collect();
        assert_eq!(words.join(" "), long);
    }

    #[test]
    fn ids_depend_on_document_and_text() {
        let p = vec![text(100)];
        assert_ne!(chunk("a", &p, &limits())[0].id, chunk("b", &p, &limits())[0].id);
        assert_eq!(chunk("a", &p, &limits()), chunk("a", &p, &limits()));
    }
}
