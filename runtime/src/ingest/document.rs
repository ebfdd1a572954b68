//! What a parser makes of one file: a flat list of blocks in document order.
//!
//! Parsers (`notebook`, `mdx`, `pdf`) only turn bytes into [`Parsed`]; they never touch the
//! filesystem. Resolving image paths, normalising images, computing ids, image context and
//! chunks happens afterwards, once, for every kind of document (`ingest::mod`).

use std::collections::BTreeMap;

/// Where something is inside its document. Lines and cells are 1-based, as editors show them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Location {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cell: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
}

impl Location {
    pub fn line(line: u32) -> Self {
        Location { line: Some(line), ..Default::default() }
    }

    pub fn cell(cell: u32) -> Self {
        Location { cell: Some(cell), ..Default::default() }
    }

    pub fn page(page: u32) -> Self {
        Location { page: Some(page), ..Default::default() }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(p) = self.page {
            parts.push(format!("page {p}"));
        }
        if let Some(c) = self.cell {
            parts.push(format!("cell {c}"));
        }
        if let Some(l) = self.line {
            parts.push(format!("line {l}"));
        }
        if parts.is_empty() { f.write_str("start") } else { f.write_str(&parts.join(", ")) }
    }
}

/// A parsed document.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parsed {
    pub title: Option<String>,
    /// Front matter, notebook metadata, PDF info: flat `key → value` strings.
    pub metadata: BTreeMap<String, String>,
    pub blocks: Vec<Block>,
    /// Parts that were skipped or handled approximately; they reach the build report.
    pub warnings: Vec<Warning>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Block {
    /// A section heading; level 1 is `#`.
    Heading {
        level: u8,
        text: String,
        at: Location,
    },
    /// Prose, including tables and math kept as text.
    Text {
        text: String,
        at: Location,
    },
    /// Source code: a notebook code cell or a fenced block.
    Code {
        language: Option<String>,
        code: String,
        at: Location,
    },
    /// Text a code cell printed or returned (stream, `text/plain`, errors without ANSI codes).
    Output {
        text: String,
        at: Location,
    },
    Image(ImageRef),
    /// The start of a PDF page.
    Page {
        number: u32,
    },
}

/// An image as the document refers to it, before resolution and normalisation.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageRef {
    pub source: ImageSource,
    pub alt: String,
    pub title: Option<String>,
    /// The code cell that produced the image, for notebook outputs.
    pub generating_code: Option<String>,
    pub at: Location,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ImageSource {
    /// A path as written: relative to the document, root-absolute (`/images/x.png`, resolved
    /// against the source's public root) or a URL (never fetched, reported unresolved).
    Path(String),
    /// Bytes carried by the document itself: notebook outputs and attachments, data URIs, PDF
    /// images. `mime` is e.g. `image/png`, `image/jpeg`, `image/svg+xml`.
    Bytes { mime: String, data: Vec<u8> },
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    pub at: Location,
    pub message: String,
}

impl Warning {
    pub fn new(at: Location, message: impl Into<String>) -> Self {
        Warning { at, message: message.into() }
    }
}

/// Why a whole file was skipped. Every variant names enough to find the problem.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, thiserror::Error, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SkipReason {
    #[error("the file is empty")]
    Empty,
    #[error("the file is larger than the {limit}-byte limit ({bytes} bytes)")]
    TooLarge { bytes: u64, limit: u64 },
    #[error("not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 { offset: u64 },
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    InvalidJson { line: u64, column: u64, message: String },
    #[error("not a Jupyter notebook: {message}")]
    NotANotebook { message: String },
    #[error("unsupported nbformat {major}.{minor} (sdc reads 3 and 4)")]
    UnknownNbformat { major: i64, minor: i64 },
    #[error("MDX syntax error at line {line}, column {column}: {message}")]
    Mdx { line: u64, column: u64, message: String },
    #[error("the PDF is encrypted")]
    PdfEncrypted,
    #[error("the PDF cannot be read: {message}")]
    PdfUnreadable { message: String },
    #[error("the file cannot be read: {message}")]
    Unreadable { message: String },
    #[error("the parser failed unexpectedly: {message}")]
    ParserFailed { message: String },
}

/// Limits a parser enforces on parts of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseLimits {
    /// A notebook cell, output or MDX block larger than this is skipped with a warning.
    pub max_part_bytes: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits { max_part_bytes: 2_000_000 }
    }
}
