//! The archive layer's one error type.
//!
//! Errors stop the operation. Problems that `verify_archive` finds in an archive it could read
//! (a wrong hash, a file missing from the manifest) are not errors but entries of its report.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    // Writing.
    #[error("`shard_rows` must be at least 1")]
    ShardRowsZero,
    #[error("zstd level {level} is outside the supported range {min}..={max}")]
    ZstdLevel { level: i32, min: i32, max: i32 },
    #[error("split name `{name}` is not usable in a file name (use ASCII letters, digits and `_`)")]
    SplitName { name: String },
    #[error("split `{name}` is given twice")]
    DuplicateSplit { name: String },
    #[error("split `{split}` needs {shards} shards, more than the 99999 the file names can number")]
    TooManyShards { split: String, shards: u64 },
    #[error("path `{path}` is {bytes} bytes long; tar headers without extensions hold at most 100")]
    PathTooLong { path: String, bytes: usize },
    #[error("cannot encode `{path}` as parquet: {message}")]
    Encode { path: String, message: String },
    #[error("cannot write the archive: {0}")]
    Write(#[source] std::io::Error),
    #[error("cannot stage the archive's files in `{dir}`: {source}")]
    Staging { dir: String, source: std::io::Error },
    #[error("shard `{path}` {problem}")]
    Shard { path: String, problem: &'static str },

    // Reading.
    #[error("cannot read the archive: {0}")]
    Read(#[source] std::io::Error),
    #[error("refusing archive entry `{path}`: {reason}")]
    UnsafeEntry { path: String, reason: UnsafeReason },
    #[error("archive entry `{path}` is {bytes} bytes, over the {limit}-byte limit for one entry")]
    EntryTooLarge { path: String, bytes: u64, limit: u64 },
    #[error("the archive's files add up to more than the {limit}-byte limit")]
    TotalTooLarge { limit: u64 },
    #[error("the archive has more than {limit} entries")]
    TooManyEntries { limit: usize },
    #[error("the archive has non-zero data after its end-of-archive marker")]
    TrailingData,
    #[error("the archive has no `manifest.json`")]
    MissingManifest,
    #[error("`manifest.json` is not a valid sdc manifest: {0}")]
    Manifest(String),
    #[error("cannot read parquet: {0}")]
    Decode(String),
    #[error("parquet column `{column}`: {message}")]
    Column { column: String, message: String },

    // Unpacking.
    #[error("cannot unpack into `{}`: {reason}", dir.display())]
    UnpackTarget { dir: PathBuf, reason: String },
    #[error("cannot write `{}`: {source}", path.display())]
    WriteFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why an archive entry is refused. Each reason names one way an entry could escape the target
/// directory, alias another file, or hide data from the manifest.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeReason {
    #[error("its path is not UTF-8")]
    NotUtf8,
    #[error("its path is empty")]
    EmptyPath,
    #[error("its path is absolute")]
    Absolute,
    #[error("its path has a `..` component")]
    ParentDir,
    #[error("its path has an empty or `.` component")]
    NotNormal,
    #[error("its path has a backslash")]
    Backslash,
    #[error("it is a {0}, and only regular files are allowed")]
    NotRegular(&'static str),
    #[error("the path appears more than once")]
    Duplicate,
}
