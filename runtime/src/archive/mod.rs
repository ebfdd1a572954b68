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
//! (see `tarball`); `open_verified` gives a verified archive's rows, rejected entries and
//! provenance to the commands that read datasets back.
//!
//! Deliberately not here: ordering rows (the executor sorts them), reading `SOURCE_DATE_EPOCH`
//! or the clock (the mtime comes in `ArchiveSpec`), producing provenance, any file I/O while
//! writing (the caller passes a writer).

mod card;
mod digest;
mod error;
mod features;
mod manifest;
mod open;
mod rows;
mod table;
mod tarball;
mod unpack;
mod verify;
mod writer;

use std::io::Write;

use serde::Serialize;

pub use card::CardInfo;
pub use error::{ArchiveError, UnsafeReason};
pub use manifest::{FORMAT, MANIFEST_PATH, Manifest, ManifestEntry};
pub use open::{Dataset, OpenError, SplitRows, open_verified};
pub use rows::{ImageCell, RejectedRow, SampleRow, Split};
pub use table::{read_rejected, read_samples};
pub use tarball::{Limits, MAX_PATH_BYTES};
pub use unpack::{read_archive, unpack_archive};
pub use verify::{Problem, VerifyReport, verify_archive};
pub use writer::{ArchiveWriter, Prepared};

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
/// every file could be made. Everything is held in memory; a large dataset is written shard by
/// shard with [`ArchiveWriter`] instead.
pub fn write_archive(input: &ArchiveInput<'_>, out: &mut impl Write) -> Result<ArchiveSummary, ArchiveError> {
    let mut writer = ArchiveWriter::in_memory(input.spec)?;
    let mut splits: Vec<&Split> = input.splits.iter().collect();
    splits.sort_by(|a, b| card::split_order(&a.name).cmp(&card::split_order(&b.name)));
    for split in splits {
        let paths = writer.shard_paths(&split.name, split.rows.len() as u64)?;
        let per_shard = usize::try_from(input.spec.shard_rows).unwrap_or(usize::MAX);
        for (path, rows) in paths.iter().zip(split.rows.chunks(per_shard)) {
            writer.add_shard(path, rows)?;
        }
    }
    writer.add_file("provenance.json", |w| w.write_all(input.provenance_json))?;
    writer.finish(&input.card, input.rejected)?.write_to(out)
}

/// The zstd settings `write_archive` uses at `level`.
pub fn zstd_info(level: i32) -> ZstdInfo {
    ZstdInfo { library_version: zstd::zstd_safe::version_string().to_string(), level, checksum: true }
}
