//! `sdc export`: a verified archive rewritten in the layouts training tools read.
//!
//! - [`Format::Hf`]: the archive's own files (`README.md` with the Hub card and its `configs`,
//!   `data/<split>-*.parquet` with the `Image` feature, `rejected.parquet`, `provenance.json`,
//!   `manifest.json`), byte for byte: the archive already is a directory that
//!   `datasets.load_dataset(DIR)` loads with its splits and decoded images, and keeping the
//!   manifest lets `sha256sum` or sdc check the copy.
//! - [`Format::Jsonl`]: `<split>.jsonl`, one sample per line with every column, the image as a
//!   relative path `images/<sha256>.png` to a file beside it (`null` for a text-only sample).
//! - [`Format::Messages`]: `<split>.jsonl` in the conversational format of Hugging Face TRL's
//!   `SFTTrainer` for vision-language models (the one `HuggingFaceH4/llava-instruct-mix-vsft`
//!   uses): `messages` with a system, a user and an assistant turn whose `content` is a list of
//!   parts, `{"type": "image"}` marking where the image goes, and `images`, the list of image
//!   paths (relative to the file) in the order of those markers.
//!
//! Every export is a function of the archive's bytes (and the system prompt): files in a fixed
//! order, JSON keys in a fixed order, images named by their content. The directory is staged
//! and moved into place at the end (see `staging`).

mod jsonl;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::archive::{OpenError, open_verified};
use crate::staging::{Staged, TargetError};

/// The system turn `messages` exports start with unless told otherwise.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful assistant.";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Hf,
    Jsonl,
    Messages,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Hf => "hf",
            Format::Jsonl => "jsonl",
            Format::Messages => "messages",
        }
    }
}

pub struct ExportOptions<'a> {
    pub format: Format,
    /// Replace a non-empty output directory.
    pub force: bool,
    /// The system turn of a `messages` export.
    pub system_prompt: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// What an export wrote.
#[derive(Clone, Debug, Serialize)]
pub struct ExportReport {
    pub format: Format,
    pub dir: String,
    pub dataset: String,
    pub manifest_sha256: String,
    /// Rows per split, in card order.
    pub splits: Vec<(String, u64)>,
    /// Distinct image files written (0 for `hf`, whose images stay inside the parquet).
    pub images: u64,
    /// Every file written, relative to the directory, with its size, sorted by path.
    pub files: Vec<(String, u64)>,
}

/// Verifies the archive at `archive` and writes it to `dir` in `opts.format`.
pub fn export(archive: &Path, dir: &Path, opts: &ExportOptions<'_>) -> Result<ExportReport, ExportError> {
    let dataset = open_verified(archive)?;
    let splits = dataset.splits()?;
    let staged = Staged::new(dir, opts.force)?;
    let generated = match opts.format {
        Format::Hf => Vec::new(),
        Format::Jsonl => jsonl::records(&splits),
        Format::Messages => jsonl::messages(&splits, opts.system_prompt),
    };
    let files: Vec<(&String, &Vec<u8>)> = match opts.format {
        Format::Hf => dataset.files.iter().collect(),
        Format::Jsonl | Format::Messages => generated.iter().map(|(p, b)| (p, b)).collect(),
    };
    let mut written: Vec<(String, u64)> = Vec::with_capacity(files.len());
    for (path, bytes) in files {
        staged.write(path, bytes)?;
        written.push((path.clone(), bytes.len() as u64));
    }
    written.sort();
    let images = if opts.format == Format::Hf {
        0
    } else {
        written.iter().filter(|(p, _)| p.starts_with(jsonl::IMAGE_DIR)).count() as u64
    };
    let dir: PathBuf = staged.commit()?;
    Ok(ExportReport {
        format: opts.format,
        dir: dir.display().to_string(),
        dataset: format!("{}@{}", dataset.name, dataset.version),
        manifest_sha256: dataset.manifest_sha256,
        splits: splits.iter().map(|s| (s.name.clone(), s.rows.len() as u64)).collect(),
        images,
        files: written,
    })
}
