//! `sdc verify ARCHIVE`: does every file match `manifest.json`, and will `datasets` read it?
//!
//! One streaming pass over the archive (through `tarball::walk`, so every unsafe entry is an
//! error before its data is read): each file is hashed as it passes, `manifest.json` is kept,
//! and of each parquet file only the tail, whose footer is checked before the next entry (so
//! memory stays bounded however many shards there are). The result lists every problem found,
//! not just the first. What to do about them (an exit code, a message) is the caller's call.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::error::ArchiveError;
use super::features::check_hf_features;
use super::manifest::{MANIFEST_PATH, Manifest, ManifestEntry};
use super::table::footer_schema;
use super::tarball::{Limits, StreamDigests, walk};

/// Kept of each parquet file: its footer (schema, metadata) is far smaller than this.
const PARQUET_TAIL_BYTES: usize = 8 << 20;
/// `manifest.json` is read into memory; a manifest this large is no manifest of ours.
const MANIFEST_MAX_BYTES: u64 = 64 << 20;

/// What `verify_archive` found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub name: String,
    pub version: String,
    /// sha256 of `manifest.json` as found: the dataset's identity.
    pub manifest_sha256: String,
    pub tar_sha256: String,
    pub archive_sha256: String,
    /// Every file found except `manifest.json`, with its actual hash and size, sorted by path.
    pub files: Vec<ManifestEntry>,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One way the archive's files disagree with their manifest or with `datasets`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// The file's content differs from what the manifest records.
    Mismatch { path: String, expected: ManifestEntry, found: ManifestEntry },
    /// The archive has a file the manifest does not list.
    NotInManifest { path: String },
    /// The manifest lists a file the archive does not have.
    MissingFromArchive { path: String },
    /// A parquet file whose schema lacks the Hugging Face features, or whose features do not
    /// describe its columns.
    Features { path: String, reason: String },
    /// `manifest.json` parses but is not in canonical form, so its hash is not the identity sdc
    /// would compute.
    ManifestNotCanonical,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Mismatch { path, expected, found } => write!(
                f,
                "`{path}` does not match the manifest: sha256 {} ({} bytes) expected, {} ({} bytes) found",
                expected.sha256, expected.bytes, found.sha256, found.bytes
            ),
            Problem::NotInManifest { path } => write!(f, "`{path}` is in the archive but not in the manifest"),
            Problem::MissingFromArchive { path } => write!(f, "`{path}` is in the manifest but not in the archive"),
            Problem::Features { path, reason } => write!(f, "`{path}` will not load as intended: {reason}"),
            Problem::ManifestNotCanonical => write!(f, "`{MANIFEST_PATH}` is not in canonical form"),
        }
    }
}

/// Verifies an archive read from `archive` (a `.tar.zst` stream).
pub fn verify_archive(archive: impl Read, limits: &Limits) -> Result<VerifyReport, ArchiveError> {
    let mut verifier = Verifier::default();
    let digests = walk(archive, limits, |path, size, data| verifier.entry(path, size, data, &mut io::sink()))?;
    verifier.finish(digests)
}

/// Collects what verification needs from each entry as it streams past; shared with unpacking.
#[derive(Default)]
pub(crate) struct Verifier {
    found: BTreeMap<String, ManifestEntry>,
    manifest: Option<Vec<u8>>,
    /// Why each parquet file that fails the features check fails it. The check runs as soon as
    /// the file has passed, so only one tail is held at a time.
    feature_problems: BTreeMap<String, String>,
}

impl Verifier {
    /// Streams one entry's data into `sink`, hashing it and keeping what the checks need.
    pub(crate) fn entry(
        &mut self,
        path: &str,
        size: u64,
        data: &mut dyn Read,
        sink: &mut dyn Write,
    ) -> Result<(), ArchiveError> {
        if path == MANIFEST_PATH {
            if size > MANIFEST_MAX_BYTES {
                return Err(ArchiveError::Manifest(format!("it is {size} bytes, over {MANIFEST_MAX_BYTES}")));
            }
            let mut bytes = Vec::new();
            data.read_to_end(&mut bytes).map_err(ArchiveError::Read)?;
            check_length(path, size, bytes.len() as u64)?;
            sink.write_all(&bytes).map_err(ArchiveError::Write)?;
            self.manifest = Some(bytes);
            return Ok(());
        }
        let keep_tail = path.ends_with(".parquet");
        let mut tail = VecDeque::new();
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut read = 0u64;
        loop {
            let n = data.read(&mut buf).map_err(ArchiveError::Read)?;
            let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else { break };
            hasher.update(chunk);
            sink.write_all(chunk).map_err(ArchiveError::Write)?;
            read += n as u64;
            if keep_tail {
                tail.extend(chunk);
                let excess = tail.len().saturating_sub(PARQUET_TAIL_BYTES);
                tail.drain(..excess);
            }
        }
        check_length(path, size, read)?;
        if keep_tail {
            let tail: Vec<u8> = tail.into();
            if let Err(reason) = footer_schema(&tail).and_then(|schema| check_hf_features(&schema)) {
                self.feature_problems.insert(path.to_string(), reason);
            }
        }
        let entry = ManifestEntry { path: path.to_string(), sha256: hex::encode(hasher.finalize()), bytes: read };
        self.found.insert(path.to_string(), entry);
        Ok(())
    }

    pub(crate) fn finish(self, digests: StreamDigests) -> Result<VerifyReport, ArchiveError> {
        let bytes = self.manifest.ok_or(ArchiveError::MissingManifest)?;
        let manifest = Manifest::parse(&bytes)?;
        let mut problems = Vec::new();
        if manifest.to_bytes() != bytes {
            problems.push(Problem::ManifestNotCanonical);
        }
        let listed: BTreeMap<&str, &ManifestEntry> = manifest.files.iter().map(|f| (f.path.as_str(), f)).collect();
        for (path, found) in &self.found {
            match listed.get(path.as_str()) {
                None => problems.push(Problem::NotInManifest { path: path.clone() }),
                Some(&expected) if expected != found => problems.push(Problem::Mismatch {
                    path: path.clone(),
                    expected: expected.clone(),
                    found: found.clone(),
                }),
                Some(_) => {}
            }
        }
        for path in listed.keys().filter(|p| !self.found.contains_key(**p)) {
            problems.push(Problem::MissingFromArchive { path: path.to_string() });
        }
        for (path, reason) in self.feature_problems {
            problems.push(Problem::Features { path, reason });
        }
        Ok(VerifyReport {
            name: manifest.name,
            version: manifest.version,
            manifest_sha256: hex::encode(Sha256::digest(&bytes)),
            tar_sha256: digests.tar_sha256,
            archive_sha256: digests.archive_sha256,
            files: self.found.into_values().collect(),
            problems,
        })
    }
}

/// A tar entry whose data ends before its declared size is a truncated archive, not a file.
fn check_length(path: &str, declared: u64, read: u64) -> Result<(), ArchiveError> {
    if declared == read {
        return Ok(());
    }
    Err(ArchiveError::Read(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("entry `{path}` declares {declared} bytes but has {read}"),
    )))
}
