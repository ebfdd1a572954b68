//! The archive: a built dataset as one deterministic `.tar.zst` with a manifest.
//!
//! ```text
//! README.md                                  dataset card (Hugging Face front matter)
//! data/<split>-NNNNN-of-NNNNN.parquet        samples, `shard_rows` per file, rows in given order
//! manifest.json                              sha256 + size of every other file (the identity)
//! provenance.json                            the executor's bytes, stored as given
//! rejected.parquet                           every dropped entry, sorted
//! ```
//!
//! `write_archive` turns rows into these files and the files into a tar (sorted by path bytes,
//! headers built by hand) inside one zstd frame, so the same input gives the same bytes. The
//! dataset's identity is the sha256 of `manifest.json`, which depends on neither the tar mtime
//! nor libzstd. `verify_archive`, `read_archive` and `unpack_archive` read archives defensively
//! (see `tarball`).
//!
//! Deliberately not here: ordering rows (the executor sorts them), reading `SOURCE_DATE_EPOCH`
//! or the clock (the mtime comes in `ArchiveSpec`), producing provenance, any file I/O while
//! writing (the caller passes a writer).

mod card;
mod digest;
mod error;
mod features;
mod manifest;
mod rows;
mod table;
mod tarball;
mod unpack;
mod verify;

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use card::CardInfo;
pub use error::{ArchiveError, UnsafeReason};
pub use manifest::{FORMAT, MANIFEST_PATH, Manifest, ManifestEntry};
pub use rows::{ImageCell, RejectedRow, SampleRow, Split};
pub use table::read_samples;
pub use tarball::{Limits, MAX_PATH_BYTES};
pub use unpack::{read_archive, unpack_archive};
pub use verify::{Problem, VerifyReport, verify_archive};

/// How to write the archive; everything that shapes its bytes besides the rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchiveSpec {
    /// Every tar header's mtime (the executor passes the lock's value).
    pub mtime: u64,
    pub zstd_level: i32,
    /// Rows per parquet shard (at least 1).
    pub shard_rows: u64,
}

pub struct ArchiveInput<'a> {
    pub spec: ArchiveSpec,
    pub card: CardInfo,
    /// In any order: files are named by split and sorted, and the card lists splits in a fixed
    /// order. Empty splits are left out.
    pub splits: &'a [Split],
    /// In any order: `rejected.parquet` is sorted.
    pub rejected: &'a [RejectedRow],
    /// Produced by the executor, stored as `provenance.json` as is.
    pub provenance_json: &'a [u8],
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArchiveSummary {
    /// sha256 of `manifest.json`: the dataset's identity.
    pub manifest_sha256: String,
    /// sha256 of the uncompressed tar.
    pub tar_sha256: String,
    /// sha256 of the `.tar.zst` bytes written to `out`.
    pub archive_sha256: String,
    pub zstd: ZstdInfo,
    /// The manifest's entries: every file but `manifest.json`, sorted by path.
    pub files: Vec<ManifestEntry>,
}

/// What the `.tar.zst` bytes depend on besides the tar: for provenance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ZstdInfo {
    /// `ZSTD_versionString()` of the linked libzstd (the vendored one, e.g. `1.5.7`).
    pub library_version: String,
    pub level: i32,
    pub checksum: bool,
}

/// Writes the archive to `out` and says what was written. Nothing is written to `out` unless
/// every file could be made.
pub fn write_archive(input: &ArchiveInput<'_>, out: &mut impl Write) -> Result<ArchiveSummary, ArchiveError> {
    let spec = input.spec;
    if spec.shard_rows == 0 {
        return Err(ArchiveError::ShardRowsZero);
    }
    let range = zstd::compression_level_range();
    if !range.contains(&spec.zstd_level) {
        return Err(ArchiveError::ZstdLevel { level: spec.zstd_level, min: *range.start(), max: *range.end() });
    }
    let splits = card_splits(input.splits)?;

    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    files.insert("README.md".to_string(), card::render(&input.card, &splits, input.rejected).into_bytes());
    for split in &splits {
        for (path, rows) in shards(split, spec.shard_rows)? {
            let bytes = table::write_samples(rows, &path)?;
            files.insert(path, bytes);
        }
    }
    files.insert("rejected.parquet".to_string(), table::write_rejected(input.rejected)?);
    files.insert("provenance.json".to_string(), input.provenance_json.to_vec());

    let entries: Vec<ManifestEntry> = files
        .iter()
        .map(|(path, data)| ManifestEntry {
            path: path.clone(),
            sha256: hex::encode(Sha256::digest(data)),
            bytes: data.len() as u64,
        })
        .collect();
    let manifest = Manifest::new(&input.card.name, &input.card.version, entries);
    let manifest_bytes = manifest.to_bytes();
    let manifest_sha256 = hex::encode(Sha256::digest(&manifest_bytes));
    files.insert(MANIFEST_PATH.to_string(), manifest_bytes);

    let digests = tarball::write_tar_zst(&files, spec.mtime, spec.zstd_level, out)?;
    Ok(ArchiveSummary {
        manifest_sha256,
        tar_sha256: digests.tar_sha256,
        archive_sha256: digests.archive_sha256,
        zstd: zstd_info(spec.zstd_level),
        files: manifest.files,
    })
}

/// The zstd settings `write_archive` uses at `level`.
pub fn zstd_info(level: i32) -> ZstdInfo {
    ZstdInfo { library_version: zstd::zstd_safe::version_string().to_string(), level, checksum: true }
}

/// The non-empty splits in card order, after checking names are usable and unique.
fn card_splits(splits: &[Split]) -> Result<Vec<&Split>, ArchiveError> {
    let mut by_order: BTreeMap<(u8, &str), &Split> = BTreeMap::new();
    for split in splits {
        let name = split.name.as_str();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(ArchiveError::SplitName { name: name.to_string() });
        }
        if by_order.insert(card::split_order(name), split).is_some() {
            return Err(ArchiveError::DuplicateSplit { name: name.to_string() });
        }
    }
    Ok(by_order.into_values().filter(|s| !s.rows.is_empty()).collect())
}

/// A split's shards with their paths: `data/<split>-00000-of-00002.parquet`, the naming
/// `datasets` recognises.
fn shards(split: &Split, shard_rows: u64) -> Result<Vec<(String, &[SampleRow])>, ArchiveError> {
    let per_shard = usize::try_from(shard_rows).unwrap_or(usize::MAX);
    let count = split.rows.len().div_ceil(per_shard);
    if count > 99_999 {
        return Err(ArchiveError::TooManyShards { split: split.name.clone(), shards: count as u64 });
    }
    Ok(split
        .rows
        .chunks(per_shard)
        .enumerate()
        .map(|(i, rows)| (format!("data/{}-{i:05}-of-{count:05}.parquet", split.name), rows))
        .collect())
}
