//! Building an archive a piece at a time: shards as their rows are made, large files streamed,
//! then the card, `rejected.parquet` and the manifest, then the `.tar.zst`.
//!
//! Files are staged in memory or, for a large dataset, in a scratch directory; either way the
//! bytes are the same. The manifest is known before any tar byte is written, so a caller can ask
//! whether an identical archive already exists ([`Prepared::manifest_bytes`]) and skip the
//! compression.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::card::{self, RowStats};
use super::digest::HashWriter;
use super::error::ArchiveError;
use super::manifest::{MANIFEST_PATH, Manifest, ManifestEntry};
use super::rows::{RejectedRow, SampleRow};
use super::{ArchiveSpec, ArchiveSummary, CardInfo, table, tarball, zstd_info};

/// A staged file's bytes: here, or in the scratch directory.
enum Content {
    Memory(Vec<u8>),
    Disk(PathBuf),
}

struct Staged {
    content: Content,
    sha256: String,
    bytes: u64,
}

/// Collects the archive's files.
pub struct ArchiveWriter {
    spec: ArchiveSpec,
    /// `None`: everything stays in memory.
    scratch: Option<tempfile::TempDir>,
    files: BTreeMap<String, Staged>,
    stats: RowStats,
    /// Shard paths promised by [`ArchiveWriter::shard_paths`] and not yet written.
    promised: BTreeMap<String, String>,
    declared: BTreeSet<String>,
}

impl ArchiveWriter {
    /// A writer that keeps every file in memory.
    pub fn in_memory(spec: ArchiveSpec) -> Result<ArchiveWriter, ArchiveError> {
        Self::new(spec, None)
    }

    /// A writer that stages files in a fresh directory under `dir` (removed when it is dropped).
    pub fn on_disk(spec: ArchiveSpec, dir: &Path) -> Result<ArchiveWriter, ArchiveError> {
        let io = |e| ArchiveError::Staging { dir: dir.display().to_string(), source: e };
        std::fs::create_dir_all(dir).map_err(io)?;
        let scratch = tempfile::Builder::new().prefix("archive-").tempdir_in(dir).map_err(io)?;
        Self::new(spec, Some(scratch))
    }

    fn new(spec: ArchiveSpec, scratch: Option<tempfile::TempDir>) -> Result<ArchiveWriter, ArchiveError> {
        if spec.shard_rows == 0 {
            return Err(ArchiveError::ShardRowsZero);
        }
        let range = zstd::compression_level_range();
        if !range.contains(&spec.zstd_level) {
            return Err(ArchiveError::ZstdLevel { level: spec.zstd_level, min: *range.start(), max: *range.end() });
        }
        Ok(ArchiveWriter {
            spec,
            scratch,
            files: BTreeMap::new(),
            stats: RowStats::default(),
            promised: BTreeMap::new(),
            declared: BTreeSet::new(),
        })
    }

    /// The shards a split of `rows` rows is cut into (`shard_rows` each, the last one shorter):
    /// their paths, `data/<split>-00000-of-00002.parquet`, the naming `datasets` recognises. Each
    /// must then be written with [`ArchiveWriter::add_shard`]; an empty split has none.
    pub fn shard_paths(&mut self, split: &str, rows: u64) -> Result<Vec<String>, ArchiveError> {
        if split.is_empty() || !split.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(ArchiveError::SplitName { name: split.to_string() });
        }
        if !self.declared.insert(split.to_string()) {
            return Err(ArchiveError::DuplicateSplit { name: split.to_string() });
        }
        let count = rows.div_ceil(self.spec.shard_rows);
        if count > 99_999 {
            return Err(ArchiveError::TooManyShards { split: split.to_string(), shards: count });
        }
        let paths: Vec<String> = (0..count).map(|i| format!("data/{split}-{i:05}-of-{count:05}.parquet")).collect();
        for p in &paths {
            self.promised.insert(p.clone(), split.to_string());
        }
        Ok(paths)
    }

    /// Writes one shard promised by [`ArchiveWriter::shard_paths`].
    pub fn add_shard(&mut self, path: &str, rows: &[SampleRow]) -> Result<(), ArchiveError> {
        let Some(split) = self.promised.remove(path) else {
            return Err(ArchiveError::Shard { path: path.to_string(), problem: "was not planned by `shard_paths`" });
        };
        let bytes = table::write_samples(rows, path)?;
        self.stats.add(&split, rows);
        self.stage(path, bytes)
    }

    /// Adds a file whose bytes `fill` writes (streamed to the scratch directory when there is one).
    pub fn add_file<E: std::fmt::Display>(
        &mut self,
        path: &str,
        fill: impl FnOnce(&mut dyn Write) -> Result<(), E>,
    ) -> Result<(), ArchiveError> {
        let failed = |message: String| ArchiveError::Encode { path: path.to_string(), message };
        match &self.scratch {
            None => {
                let mut bytes = Vec::new();
                fill(&mut bytes).map_err(|e| failed(e.to_string()))?;
                self.stage(path, bytes)
            }
            Some(dir) => {
                let disk = dir.path().join(format!("{:04}", self.files.len()));
                let file = File::create(&disk).map_err(|e| self.staging_error(e))?;
                let mut out = HashWriter::new(Counting::new(BufWriter::with_capacity(1 << 20, file)));
                fill(&mut out).map_err(|e| failed(e.to_string()))?;
                let (counting, sha256) = out.finish();
                let bytes = counting.written;
                counting.inner.into_inner().map_err(|e| self.staging_error(e.into_error()))?;
                self.files.insert(path.to_string(), Staged { content: Content::Disk(disk), sha256, bytes });
                Ok(())
            }
        }
    }

    fn stage(&mut self, path: &str, bytes: Vec<u8>) -> Result<(), ArchiveError> {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let len = bytes.len() as u64;
        let content = match &self.scratch {
            None => Content::Memory(bytes),
            Some(dir) => {
                let disk = dir.path().join(format!("{:04}", self.files.len()));
                std::fs::write(&disk, &bytes).map_err(|e| self.staging_error(e))?;
                Content::Disk(disk)
            }
        };
        self.files.insert(path.to_string(), Staged { content, sha256, bytes: len });
        Ok(())
    }

    fn staging_error(&self, source: io::Error) -> ArchiveError {
        let dir = self.scratch.as_ref().map(|d| d.path().display().to_string()).unwrap_or_default();
        ArchiveError::Staging { dir, source }
    }

    /// Adds the card and `rejected.parquet` and makes the manifest.
    pub fn finish(mut self, card_info: &CardInfo, rejected: &[RejectedRow]) -> Result<Prepared, ArchiveError> {
        if let Some(path) = self.promised.keys().next() {
            return Err(ArchiveError::Shard { path: path.clone(), problem: "was planned but never written" });
        }
        let readme = card::render(card_info, &self.stats, rejected).into_bytes();
        self.stage("README.md", readme)?;
        let rejected = table::write_rejected(rejected)?;
        self.stage("rejected.parquet", rejected)?;
        let entries: Vec<ManifestEntry> = self
            .files
            .iter()
            .map(|(path, f)| ManifestEntry { path: path.clone(), sha256: f.sha256.clone(), bytes: f.bytes })
            .collect();
        let manifest = Manifest::new(&card_info.name, &card_info.version, entries);
        let manifest_bytes = manifest.to_bytes();
        let manifest_sha256 = hex::encode(Sha256::digest(&manifest_bytes));
        Ok(Prepared { writer: self, manifest, manifest_bytes, manifest_sha256 })
    }
}

/// Every file made, the manifest known, nothing compressed yet.
pub struct Prepared {
    writer: ArchiveWriter,
    manifest: Manifest,
    manifest_bytes: Vec<u8>,
    manifest_sha256: String,
}

impl Prepared {
    /// `manifest.json`: the sha256 and size of every other file.
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest_bytes
    }

    pub fn manifest_sha256(&self) -> &str {
        &self.manifest_sha256
    }

    pub fn spec(&self) -> ArchiveSpec {
        self.writer.spec
    }

    /// Writes the `.tar.zst` to `out`.
    pub fn write_to(&self, out: &mut impl Write) -> Result<ArchiveSummary, ArchiveError> {
        let spec = self.writer.spec;
        let mut entries: Vec<tarball::Entry<'_>> = Vec::with_capacity(self.writer.files.len() + 1);
        for (path, f) in &self.writer.files {
            entries.push(tarball::Entry { path, bytes: f.bytes, open: Box::new(move || open(&f.content)) });
        }
        let manifest = self.manifest_bytes.as_slice();
        entries.push(tarball::Entry {
            path: MANIFEST_PATH,
            bytes: manifest.len() as u64,
            open: Box::new(move || Ok(Box::new(manifest) as Box<dyn Read>)),
        });
        entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        let digests = tarball::write_tar_zst(&entries, spec.mtime, spec.zstd_level, out)?;
        Ok(ArchiveSummary {
            manifest_sha256: self.manifest_sha256.clone(),
            tar_sha256: digests.tar_sha256,
            archive_sha256: digests.archive_sha256,
            zstd: zstd_info(spec.zstd_level),
            files: self.manifest.files.clone(),
        })
    }
}

fn open(content: &Content) -> io::Result<Box<dyn Read + '_>> {
    Ok(match content {
        Content::Memory(bytes) => Box::new(bytes.as_slice()),
        Content::Disk(path) => Box::new(BufReader::with_capacity(1 << 20, File::open(path)?)),
    })
}

/// Counts what passes, so a streamed file's size is known without a `stat`.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W> Counting<W> {
    fn new(inner: W) -> Self {
        Counting { inner, written: 0 }
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
