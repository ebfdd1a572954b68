//! A verified archive in memory, for the commands that read a dataset back (`export`,
//! `analyze`): its files, its splits' rows in card order, its rejected entries, its provenance.
//!
//! [`open_verified`] refuses an archive that `verify_archive` finds any problem in, so what is
//! read afterwards is exactly what the manifest describes. Every later failure names the file
//! inside the archive it came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::card::split_order;
use super::error::ArchiveError;
use super::rows::{RejectedRow, SampleRow};
use super::table::{read_rejected, read_samples};
use super::tarball::Limits;
use super::unpack::read_archive;
use super::verify::{Problem, verify_archive};

/// Why an archive could not be opened or one of its files read.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` is not a readable sdc archive: {source}", path.display())]
    Archive {
        path: PathBuf,
        #[source]
        source: ArchiveError,
    },
    #[error("`{}` failed verification ({} problem(s)): {}", path.display(), problems.len(), first(problems))]
    Verify { path: PathBuf, problems: Vec<Problem> },
    #[error("`{file}` in `{}`: {message}", path.display())]
    File { path: PathBuf, file: String, message: String },
}

fn first(problems: &[Problem]) -> String {
    problems.first().map(ToString::to_string).unwrap_or_default()
}

/// A verified archive's files, held in memory.
#[derive(Debug)]
pub struct Dataset {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    /// sha256 of `manifest.json`: the dataset's identity.
    pub manifest_sha256: String,
    /// Every file, `manifest.json` included, by path.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// One split's rows, shards concatenated in file-name order.
#[derive(Debug)]
pub struct SplitRows {
    pub name: String,
    pub rows: Vec<SampleRow>,
}

/// Reads the archive at `path`, verifies every file against its manifest, and keeps the files.
pub fn open_verified(path: &Path) -> Result<Dataset, OpenError> {
    let bytes = std::fs::read(path).map_err(|source| OpenError::Io { path: path.to_path_buf(), source })?;
    let archive_error = |source| OpenError::Archive { path: path.to_path_buf(), source };
    let limits = Limits::default();
    let report = verify_archive(bytes.as_slice(), &limits).map_err(archive_error)?;
    if !report.is_ok() {
        return Err(OpenError::Verify { path: path.to_path_buf(), problems: report.problems });
    }
    let files = read_archive(bytes.as_slice(), &limits).map_err(archive_error)?.into_iter().collect();
    Ok(Dataset {
        path: path.to_path_buf(),
        name: report.name,
        version: report.version,
        manifest_sha256: report.manifest_sha256,
        files,
    })
}

impl Dataset {
    /// The splits in card order (train, validation, test, then others by name), each with its
    /// rows in archive order.
    pub fn splits(&self) -> Result<Vec<SplitRows>, OpenError> {
        let mut by_split: BTreeMap<(u8, String), Vec<SampleRow>> = BTreeMap::new();
        for (file, bytes) in &self.files {
            let Some(split) = shard_split(file) else { continue };
            let rows = read_samples(bytes).map_err(|e| self.file_error(file, &e))?;
            let (order, _) = split_order(split);
            by_split.entry((order, split.to_string())).or_default().extend(rows);
        }
        Ok(by_split.into_iter().map(|((_, name), rows)| SplitRows { name, rows }).collect())
    }

    /// `rejected.parquet`'s entries; none if the archive has no such file.
    pub fn rejected(&self) -> Result<Vec<RejectedRow>, OpenError> {
        match self.files.get("rejected.parquet") {
            None => Ok(Vec::new()),
            Some(bytes) => read_rejected(bytes).map_err(|e| self.file_error("rejected.parquet", &e)),
        }
    }

    /// `provenance.json`, parsed into `T`.
    pub fn provenance<T: serde::de::DeserializeOwned>(&self) -> Result<T, OpenError> {
        let file = "provenance.json";
        let bytes = self.files.get(file).ok_or_else(|| self.file_error(file, &"the archive has no such file"))?;
        serde_json::from_slice(bytes).map_err(|e| self.file_error(file, &e))
    }

    /// An error about one file of this archive.
    pub fn file_error(&self, file: &str, message: &dyn std::fmt::Display) -> OpenError {
        OpenError::File { path: self.path.clone(), file: file.to_string(), message: message.to_string() }
    }
}

/// The split a samples shard belongs to: `data/<split>-NNNNN-of-NNNNN.parquet`.
pub(crate) fn shard_split(path: &str) -> Option<&str> {
    let stem = path.strip_prefix("data/")?.strip_suffix(".parquet")?;
    let (split, numbers) = stem.split_once('-')?;
    let (index, count) = numbers.split_once("-of-")?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    (digits(index) && digits(count) && !split.is_empty()).then_some(split)
}

#[cfg(test)]
mod tests {
    use super::shard_split;

    #[test]
    fn shard_names_give_their_split() {
        assert_eq!(shard_split("data/train-00000-of-00002.parquet"), Some("train"));
        assert_eq!(shard_split("data/my_split-00001-of-00002.parquet"), Some("my_split"));
        assert_eq!(shard_split("rejected.parquet"), None);
        assert_eq!(shard_split("data/train.parquet"), None);
        assert_eq!(shard_split("data/train-0-of-1.parquet"), None);
    }
}
