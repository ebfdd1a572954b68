//! A built archive read back as data: its samples by id, its rejected entries and its
//! provenance, for `sdc diff`, `sdc reproduce` and `sdc inspect`.
//!
//! Reading goes through `archive::read_archive` (the same defensive walk as `sdc verify`); the
//! provenance is parsed into the subset of `provenance.json` these commands use, every field
//! defaulted, so an archive from an older build still reads. Nothing here depends on hash-map
//! order: samples are sorted by id, everything else is kept in the archive's (sorted) order.

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::archive::{self, ArchiveError, Limits, RejectedRow, SampleRow};

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("not a readable sdc archive: {0}")]
    Archive(#[from] ArchiveError),
    #[error("the archive has no `{0}`")]
    Missing(&'static str),
    #[error("`{path}` cannot be read: {error}")]
    Table { path: String, error: ArchiveError },
    #[error("`provenance.json` is not valid: {0}")]
    Provenance(serde_json::Error),
    #[error("sample `{0}` appears twice in the shards")]
    Duplicate(String),
}

/// One archive, read whole (archives are bounded by `Limits::default()`).
#[derive(Clone, Debug)]
pub struct Dataset {
    /// sha256 of the `.tar.zst` bytes.
    pub archive_sha256: String,
    /// sha256 of `manifest.json`: the dataset's identity.
    pub manifest_sha256: String,
    /// Every sample with its split, sorted by id.
    pub samples: Vec<Sample>,
    /// As stored (sorted by kind, id, stage…).
    pub rejected: Vec<RejectedRow>,
    pub provenance: Provenance,
    /// `README.md`, the dataset card.
    pub card: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub split: String,
    pub row: SampleRow,
}

/// The parts of `provenance.json` that diff, reproduce and inspect read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Provenance {
    pub sdc_version: String,
    pub lock_sha256: String,
    pub models: Vec<ProvModel>,
    /// (template, sha256), sorted by stage then template.
    pub prompts: Vec<(String, String)>,
    pub seeds: BTreeMap<String, u64>,
    pub verification: Option<serde_json::Value>,
    /// (document id, `source/path`).
    pub documents: Vec<(String, String)>,
    pub samples: Vec<ProvSample>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProvModel {
    pub alias: String,
    pub provider: String,
    pub resolved: String,
    pub endpoints: Vec<String>,
    pub reported: Vec<String>,
    pub fingerprints: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProvSample {
    pub id: String,
    pub split: String,
    pub task_type: String,
    pub category: String,
    pub document_id: String,
    pub document_path: String,
    pub chunk_id: String,
    pub image_id: Option<String>,
    pub calls: Vec<ProvCall>,
    pub decisions: Vec<ProvDecision>,
    /// Verification attempts as recorded (against, attempt, code_sha256, verdict).
    pub verification: Vec<serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProvCall {
    pub stage: String,
    pub step: String,
    pub model: String,
    pub prompt_sha256: String,
    /// The request key (hex), the store's key for the response.
    pub request: String,
    pub response: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProvDecision {
    pub stage: String,
    pub decision: String,
    pub reason: String,
}

/// The first bytes of every zstd frame.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

impl Dataset {
    /// Reads an archive from its bytes.
    pub fn read(bytes: &[u8]) -> Result<Dataset, DatasetError> {
        let files = archive::read_archive(bytes, &Limits::default())?;
        let mut samples = Vec::new();
        let mut rejected = None;
        let mut provenance = None;
        let mut manifest = None;
        let mut card = String::new();
        for (path, data) in &files {
            if let Some(name) = path.strip_prefix("data/").filter(|p| p.ends_with(".parquet")) {
                let split = name.split('-').next().unwrap_or(name).to_string();
                let rows =
                    archive::read_samples(data).map_err(|error| DatasetError::Table { path: path.clone(), error })?;
                samples.extend(rows.into_iter().map(|row| Sample { split: split.clone(), row }));
            } else if path == "rejected.parquet" {
                rejected = Some(
                    archive::read_rejected(data).map_err(|error| DatasetError::Table { path: path.clone(), error })?,
                );
            } else if path == "provenance.json" {
                provenance = Some(serde_json::from_slice::<Provenance>(data).map_err(DatasetError::Provenance)?);
            } else if path == archive::MANIFEST_PATH {
                manifest = Some(hex::encode(Sha256::digest(data)));
            } else if path == "README.md" {
                card = String::from_utf8_lossy(data).into_owned();
            }
        }
        samples.sort_by(|a, b| a.row.id.cmp(&b.row.id));
        if let Some(w) = samples.windows(2).find(|w| w[0].row.id == w[1].row.id) {
            return Err(DatasetError::Duplicate(w[0].row.id.clone()));
        }
        let mut provenance = provenance.ok_or(DatasetError::Missing("provenance.json"))?;
        provenance.samples.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Dataset {
            archive_sha256: hex::encode(Sha256::digest(bytes)),
            manifest_sha256: manifest.ok_or(DatasetError::Missing(archive::MANIFEST_PATH))?,
            samples,
            rejected: rejected.ok_or(DatasetError::Missing("rejected.parquet"))?,
            provenance,
            card,
        })
    }

    /// Reads an archive from a reader (whole, into memory).
    pub fn read_from(mut reader: impl Read) -> Result<Dataset, DatasetError> {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map_err(|e| DatasetError::Archive(ArchiveError::Read(e)))?;
        Dataset::read(&bytes)
    }

    pub fn sample(&self, id: &str) -> Option<&Sample> {
        self.samples.binary_search_by(|s| s.row.id.as_str().cmp(id)).ok().map(|i| &self.samples[i])
    }

    pub fn provenance_of(&self, id: &str) -> Option<&ProvSample> {
        let p = &self.provenance.samples;
        p.binary_search_by(|s| s.id.as_str().cmp(id)).ok().map(|i| &p[i])
    }
}

/// Whether a sample has an image: `image` or `text`.
pub fn modality(row: &SampleRow) -> &'static str {
    if row.image.is_some() { "image" } else { "text" }
}
