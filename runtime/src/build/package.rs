//! Dedup, split and package: accepted tasks → samples → the dataset archive.
//!
//! Dedup removes exact and near duplicates (each removed item names the kept one); the split is
//! grouped by source document and stratified by (category, type, modality); the archive gets the
//! samples as parquet shards per split, every item not accepted in `rejected.parquet`, the
//! dataset card, `provenance.json` and the manifest. Provenance holds only what the dataset
//! depends on — ids, hashes, seeds, verdicts, decisions, token counts from the stored responses —
//! never run-dependent facts such as timings or whether a call was served from the store, so a
//! rebuild writes the same bytes.
//!
//! Task records are read back from the build's spill file one at a time (dedup fetches texts,
//! shards are written as their rows are made, provenance is streamed), so memory holds per task
//! only its entry, never the dataset. The finished `.tar.zst` is also kept in the store under
//! the hash of its manifest (and what shapes the compression), so a rebuild whose files did not
//! change copies it instead of compressing again.

use std::collections::BTreeMap;
use std::sync::Mutex;

use sdc_compiler::plan::Plan;
use serde::Serialize;
use serde::ser::{Error as _, SerializeSeq};
use sha2::{Digest, Sha256};

use super::calls::{CallTrace, lock};
use super::items::Decision;
use super::ledger::{Ledger, StageTotals};
use super::outcome::{Books, Fate};
use super::spill::{SpillError, SpillReader};
use super::tasks::{Attempt, TaskEntry, TaskRecord};
use super::{BuildOptions, Outcomes};
use crate::archive::{self, ArchiveSpec, ArchiveWriter, CardInfo, ImageCell, Prepared, RejectedRow, SampleRow};
use crate::dedup::{self, DedupKey};
use crate::split::{self, SplitItem, SplitName, SplitRatios};
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("cannot write the archive: {0}")]
    Archive(#[from] archive::ArchiveError),
    #[error("cannot write `{path}`: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("models answered as something other than the lock pins (`--locked`):\n  {}", .0.join("\n  "))]
    Drift(Vec<String>),
    #[error(transparent)]
    Spill(#[from] SpillError),
}

/// What packaging produced, for the report.
#[derive(Clone, Debug, Serialize)]
pub struct Packaged {
    pub archive_path: String,
    pub archive_sha256: String,
    pub manifest_sha256: String,
    pub tar_sha256: String,
    pub zstd_version: String,
    /// Served from the store (the inputs had not changed since an earlier build).
    pub reused: bool,
    pub samples: u64,
    pub per_split: Vec<(String, u64)>,
    /// Samples per task type: (type, text-only, with an image), in type order.
    pub per_type: Vec<(String, u64, u64)>,
    pub duplicates: u64,
    pub split: split::SplitResult,
    pub rejected: u64,
    pub failed: u64,
    /// Online models whose replies name another model id than the lock, or several fingerprints.
    pub drift: Vec<String>,
    /// The ledger file written next to the archive (plane split and billed cost).
    pub ledger_path: String,
}

#[derive(Serialize)]
struct ProvenanceModel {
    alias: String,
    provider: String,
    resolved: String,
    endpoints: Vec<String>,
    /// The model ids the stored responses report, sorted.
    reported: Vec<String>,
    /// The `system_fingerprint`s they report, sorted.
    fingerprints: Vec<String>,
}

#[derive(Serialize)]
struct ProvenanceSample<'a> {
    id: &'a str,
    split: &'a str,
    task_type: &'a str,
    category: &'a str,
    document_id: &'a str,
    document_path: &'a str,
    chunk_id: &'a str,
    image_id: Option<&'a str>,
    calls: Vec<ProvenanceCall<'a>>,
    decisions: &'a [Decision],
    verification: Vec<&'a Attempt>,
}

#[derive(Serialize)]
struct ProvenanceCall<'a> {
    stage: &'a str,
    step: &'a str,
    model: &'a str,
    prompt_sha256: &'a str,
    request: &'a str,
    response: &'a str,
    prompt_tokens: u64,
    completion_tokens: u64,
}

#[derive(Serialize)]
struct Provenance<'a> {
    format: &'static str,
    dataset: &'a sdc_compiler::plan::PlanDataset,
    sdc_version: &'static str,
    hash_scheme: &'a str,
    lock_sha256: &'a str,
    models: Vec<ProvenanceModel>,
    prompts: Vec<(&'a str, &'a str)>,
    seeds: BTreeMap<String, u64>,
    verification: Option<serde_json::Value>,
    documents: Vec<(&'a str, String)>,
    skipped: &'a [crate::ingest::Skipped],
    unresolved: &'a [crate::ingest::Unresolved],
    allocation: &'a crate::allocation::Allocation,
    split: &'a split::SplitResult,
    totals: Vec<&'a StageTotals>,
    books: ProvenanceBooks,
    chunk_sizes: &'a super::ChunkSizes,
    samples: Samples<'a>,
}

/// The funnel: every planned item's end per kind, and what each stage received, passed on,
/// rejected and failed. Only the item counts, which a rebuild reproduces; calls made or served
/// and wall times describe a run and stay in the report.
#[derive(Serialize)]
struct ProvenanceBooks {
    accounting: Vec<super::report::Accounting>,
    stages: Vec<ProvenanceStage>,
}

#[derive(Serialize)]
struct ProvenanceStage {
    stage: String,
    items_in: u64,
    items_out: u64,
    rejected: u64,
    failed: u64,
}

/// The order stages are listed in; stages record themselves as work reaches them, which
/// concurrency may reorder.
const STAGE_ORDER: [&str; 13] = [
    "ingest",
    "transcribe",
    "image_filter",
    "chunk_filter",
    "allocation",
    "plan",
    "candidate_filter",
    "answer",
    "verification",
    "curate",
    "classify",
    "dedup",
    "split",
];

fn provenance_books(out: &Outcomes, duplicates: u64, books: &Books) -> ProvenanceBooks {
    let mut stages: Vec<ProvenanceStage> = books
        .stats()
        .into_iter()
        .filter(|s| s.items_in + s.items_out + s.rejected + s.failed > 0)
        .map(|s| ProvenanceStage {
            stage: s.stage,
            items_in: s.items_in,
            items_out: s.items_out,
            rejected: s.rejected,
            failed: s.failed,
        })
        .collect();
    let rank = |name: &str| STAGE_ORDER.iter().position(|s| *s == name).unwrap_or(STAGE_ORDER.len());
    stages.sort_by(|a, b| (rank(&a.stage), &a.stage).cmp(&(rank(&b.stage), &b.stage)));
    ProvenanceBooks { accounting: super::report::accounting(out, duplicates), stages }
}

/// The kept samples' provenance, read from the spill file as it is serialized.
struct Samples<'a> {
    kept: &'a [&'a TaskEntry],
    split_name: &'a BTreeMap<&'a str, &'a str>,
    prompts: &'a BTreeMap<&'a str, &'a str>,
    spill: &'a SpillReader,
}

impl Serialize for Samples<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.kept.len()))?;
        for entry in self.kept {
            let t: TaskRecord = self.spill.get(entry.slot).map_err(S::Error::custom)?;
            seq.serialize_element(&ProvenanceSample {
                id: &t.input.task_id,
                split: self.split_name.get(t.input.task_id.as_str()).copied().unwrap_or(""),
                task_type: &t.input.question_type,
                category: &t.category,
                document_id: &t.input.chunk.document_id,
                document_path: &t.input.chunk.document_path,
                chunk_id: &t.input.chunk.id,
                image_id: t.input.image.as_ref().map(|i| i.id.as_str()),
                calls: calls(&t.calls, self.prompts),
                decisions: &t.decisions,
                verification: t.attempts.iter().collect(),
            })?;
        }
        seq.end()
    }
}

/// Just the texts dedup compares, read from a spilled record (serde skips the other fields).
#[derive(serde::Deserialize)]
struct DedupTexts {
    candidate: QuestionOnly,
    answer: String,
}

#[derive(serde::Deserialize)]
struct QuestionOnly {
    question: String,
}

fn calls<'a>(traces: &'a [CallTrace], prompts: &'a BTreeMap<&str, &str>) -> Vec<ProvenanceCall<'a>> {
    traces
        .iter()
        .map(|c| ProvenanceCall {
            stage: &c.stage,
            step: &c.step,
            model: &c.model,
            prompt_sha256: prompts.get(c.stage.as_str()).copied().unwrap_or(""),
            request: &c.request,
            response: &c.response,
            prompt_tokens: c.prompt_tokens,
            completion_tokens: c.completion_tokens,
        })
        .collect()
}

pub fn package(
    plan: &Plan,
    opts: &BuildOptions,
    store: &Store,
    out: &Outcomes,
    ledger: &Ledger<'_>,
    books: &Mutex<Books>,
) -> Result<Packaged, PackageError> {
    let accepted: Vec<&TaskEntry> = out.tasks.values().filter(|t| t.fate.is_accepted()).collect();

    // Dedup, fetching texts from the spill file (entries are in id order, ids unique).
    let keys: Vec<DedupKey> = accepted
        .iter()
        .map(|t| DedupKey { id: t.id.clone(), task_type: t.task_type.clone(), image_id: t.image_id.clone() })
        .collect();
    let texts = |i: usize| out.spill.get::<DedupTexts>(accepted[i].slot).map(|t| (t.candidate.question, t.answer));
    let dedup = dedup::dedup_lazy(&keys, texts, plan.dedup_threshold, plan.dataset.seed)?;
    drop(keys);
    let removed: BTreeMap<&str, &dedup::Duplicate> = dedup.removed.iter().map(|d| (d.id.as_str(), d)).collect();
    {
        let mut b = lock(books);
        let s = b.stage("dedup");
        s.items_in = accepted.len() as u64;
        s.rejected = removed.len() as u64;
        s.items_out = s.items_in - s.rejected;
    }
    let kept: Vec<&TaskEntry> = accepted.iter().copied().filter(|t| !removed.contains_key(t.id.as_str())).collect();

    // Split.
    let split_items: Vec<SplitItem> = kept
        .iter()
        .map(|t| SplitItem {
            id: t.id.clone(),
            group: t.document_id.clone(),
            stratum: format!("{}|{}|{}", t.category, t.task_type, if t.image_id.is_some() { "mm" } else { "text" }),
        })
        .collect();
    let ratios = SplitRatios { train: plan.split.train, validation: plan.split.validation, test: plan.split.test };
    let split = split::split(&split_items, &ratios, plan.split.seed);
    drop(split_items);
    let assignment: BTreeMap<&str, SplitName> = split.assignments.iter().map(|(id, s)| (id.as_str(), *s)).collect();
    {
        let mut b = lock(books);
        let s = b.stage("split");
        s.items_in = kept.len() as u64;
        s.items_out = assignment.len() as u64;
    }

    // Shards, one at a time, staged in the store's scratch directory.
    let spec = ArchiveSpec {
        mtime: plan.output.archive_mtime,
        zstd_level: plan.output.zstd_level as i32,
        shard_rows: plan.output.shard_rows.max(1),
    };
    let mut writer = ArchiveWriter::on_disk(spec, &store.root().join("tmp"))?;
    let mut per_split = Vec::new();
    for name in SplitName::ALL {
        let members: Vec<&TaskEntry> =
            kept.iter().copied().filter(|t| assignment.get(t.id.as_str()) == Some(&name)).collect();
        per_split.push((name.as_str().to_string(), members.len() as u64));
        let paths = writer.shard_paths(name.as_str(), members.len() as u64)?;
        let per_shard = usize::try_from(spec.shard_rows).unwrap_or(usize::MAX);
        for (path, entries) in paths.iter().zip(members.chunks(per_shard)) {
            let rows = entries.iter().map(|e| sample_row(out, e)).collect::<Result<Vec<_>, _>>()?;
            writer.add_shard(path, &rows)?;
        }
    }
    let per_type: Vec<(String, u64, u64)> = sdc_compiler::spec::TaskType::ALL
        .iter()
        .map(|t| {
            let of_type = kept.iter().filter(|e| e.task_type == t.as_str() && assignment.contains_key(e.id.as_str()));
            let (mm, text): (Vec<&&TaskEntry>, Vec<&&TaskEntry>) = of_type.partition(|e| e.image_id.is_some());
            (t.as_str().to_string(), text.len() as u64, mm.len() as u64)
        })
        .collect();

    // Everything not accepted, with why.
    let doc_path: BTreeMap<&str, String> =
        out.ingested.documents.iter().map(|d| (d.id.as_str(), format!("{}/{}", d.source, d.path))).collect();
    let mut rejected_rows: Vec<RejectedRow> = Vec::new();
    let mut push = |id: &str, kind: &str, fate: &Fate, source: String, duplicate_of: Option<String>| match fate {
        Fate::Accepted => {}
        Fate::Rejected { stage, reason } => rejected_rows.push(RejectedRow {
            id: id.to_string(),
            kind: kind.to_string(),
            stage: stage.clone(),
            outcome: "rejected".into(),
            reason: reason.clone(),
            attempts: 0,
            source,
            duplicate_of,
        }),
        Fate::Failed { stage, error, attempts } => rejected_rows.push(RejectedRow {
            id: id.to_string(),
            kind: kind.to_string(),
            stage: stage.clone(),
            outcome: "failed".into(),
            reason: error.clone(),
            attempts: *attempts,
            source,
            duplicate_of,
        }),
    };
    for o in out.images.values() {
        push(&o.id, "image", &o.fate, o.info.document_path.clone(), None);
    }
    for o in out.chunks.values() {
        push(&o.id, "chunk", &o.fate, doc_path.get(o.document_id.as_str()).cloned().unwrap_or_default(), None);
    }
    for t in out.tasks.values() {
        push(&t.id, "task", &t.fate, t.document_path.clone(), None);
    }
    for d in &dedup.removed {
        let source = out.tasks.get(&d.id).map(|t| t.document_path.clone()).unwrap_or_default();
        let kind = match d.kind {
            dedup::DupKind::Exact => "exact duplicate",
            dedup::DupKind::Near => "near duplicate",
        };
        push(
            &d.id,
            "sample",
            &Fate::Rejected {
                stage: "dedup".into(),
                reason: format!("{kind} of {} (similarity {:.3})", d.duplicate_of, d.similarity),
            },
            source,
            Some(d.duplicate_of.clone()),
        );
    }
    let failed = rejected_rows.iter().filter(|r| r.outcome == "failed").count() as u64;
    let rejected = rejected_rows.len() as u64 - failed;

    // Provenance (the ledger took every call as its item finished).
    // Drift: what the servers say answered, against what the lock pins.
    let drift = ledger.drift();
    if opts.fail_on_drift && !drift.is_empty() {
        return Err(PackageError::Drift(drift));
    }
    let prompts_by_stage: BTreeMap<&str, &str> =
        plan.stages.iter().filter_map(|s| s.prompts.first().map(|p| (s.kind.as_str(), p.sha256.as_str()))).collect();
    let split_name: BTreeMap<&str, &str> = assignment.iter().map(|(id, s)| (*id, s.as_str())).collect();
    let provenance = Provenance {
        format: "sdc-provenance-1",
        dataset: &plan.dataset,
        sdc_version: env!("CARGO_PKG_VERSION"),
        hash_scheme: &plan.hash_scheme,
        lock_sha256: &opts.lock_sha256,
        models: plan
            .models
            .iter()
            .map(|m| ProvenanceModel {
                alias: m.alias.clone(),
                provider: m.provider.clone(),
                resolved: m.resolved.clone(),
                endpoints: m.endpoints.clone(),
                reported: ledger.reported.get(&m.alias).map(|s| s.iter().cloned().collect()).unwrap_or_default(),
                fingerprints: ledger
                    .fingerprints
                    .get(&m.alias)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default(),
            })
            .collect(),
        prompts: plan
            .stages
            .iter()
            .flat_map(|s| s.prompts.iter().map(|p| (p.template.as_str(), p.sha256.as_str())))
            .collect(),
        seeds: plan
            .stages
            .iter()
            .map(|s| (format!("stage.{}", s.kind.as_str()), s.seed))
            .chain([
                ("allocation".to_string(), plan.allocation.seed),
                ("split".to_string(), plan.split.seed),
                ("build".to_string(), plan.dataset.seed),
            ])
            .collect(),
        verification: plan.verify.as_ref().map(|v| {
            serde_json::json!({
                "python_version": v.python_version,
                "requirements": v.requirements,
                "requirements_sha256": v.requirements_sha256,
                "timeout_ms": v.timeout_ms,
                "max_attempts": v.max_attempts,
                "harness_sha256": crate::verify::runner::HARNESS_SHA256.as_str(),
            })
        }),
        documents: out.ingested.documents.iter().map(|d| (d.id.as_str(), format!("{}/{}", d.source, d.path))).collect(),
        skipped: &out.ingested.skipped,
        unresolved: &out.ingested.unresolved,
        allocation: &out.allocation,
        split: &split,
        totals: ledger.totals(),
        books: provenance_books(out, dedup.removed.len() as u64, &lock(books)),
        chunk_sizes: &out.chunk_sizes,
        samples: Samples { kept: &kept, split_name: &split_name, prompts: &prompts_by_stage, spill: &out.spill },
    };
    // Compact: at 100k samples the pretty form was 15 % larger, in memory and to compress.
    writer.add_file("provenance.json", |w| serde_json::to_writer(w, &provenance))?;

    let builtin: Vec<String> = plan
        .models
        .iter()
        .filter(|m| m.provider == "builtin")
        .map(|m| format!("model `{}` was the builtin offline generator `{}`", m.alias, m.resolved))
        .collect();
    let card = CardInfo {
        name: plan.dataset.name.clone(),
        version: plan.dataset.version.clone(),
        license: plan.dataset.license.clone(),
        description: plan.dataset.description.clone(),
        categories: plan.categories.clone(),
        reproduce: opts.reproduce.clone(),
        notes: builtin,
    };
    let prepared = writer.finish(&card, &rejected_rows)?;
    drop(rejected_rows);

    // Reuse the archive when its files are the ones an earlier build compressed.
    let identity = archive_identity(&prepared);
    let mut index = store.journal("archives")?;
    let path = opts.archive.clone();
    let cached = index.get(&identity)?.and_then(|b| serde_json::from_slice::<CachedArchive>(&b).ok());
    let reused = match &cached {
        Some(c) => restore(store, c, &path)?,
        None => false,
    };
    let summary = match (cached, reused) {
        (Some(c), true) => c,
        _ => write_fresh(store, &mut index, &identity, &prepared, &path, books)?,
    };
    let ledger_path = ledger_path(&path);
    let ledger_file = LedgerFile::new(plan, opts, &summary.manifest_sha256, ledger);
    let mut ledger_bytes = serde_json::to_vec_pretty(&ledger_file).unwrap_or_default();
    ledger_bytes.push(b'\n');
    crate::store::write_file_atomically(&ledger_path, &ledger_bytes)
        .map_err(|source| PackageError::Io { path: ledger_path.clone(), source })?;
    Ok(Packaged {
        ledger_path: ledger_path.display().to_string(),
        archive_path: path.display().to_string(),
        archive_sha256: summary.archive_sha256,
        manifest_sha256: summary.manifest_sha256,
        tar_sha256: summary.tar_sha256,
        zstd_version: summary.zstd_version,
        reused,
        samples: per_split.iter().map(|(_, n)| n).sum(),
        per_type,
        per_split,
        duplicates: dedup.removed.len() as u64,
        split,
        rejected,
        failed,
        drift,
    })
}

/// `dist/<name>-<version>.ledger.json` beside `dist/<name>-<version>.tar.zst`.
pub fn ledger_path(archive: &std::path::Path) -> std::path::PathBuf {
    let name = archive.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let stem = name.strip_suffix(".tar.zst").unwrap_or(&name);
    archive.with_file_name(format!("{stem}.ledger.json"))
}

/// The ledger file: how the dataset's calls were executed and what they were billed, next to the
/// archive and never inside it (the archive cannot depend on the plane that made a call). Its
/// content is a function of the plan and the store's responses.
#[derive(Serialize)]
struct LedgerFile<'a> {
    format: &'static str,
    dataset: String,
    lock_sha256: &'a str,
    /// The archive these calls made (its identity).
    manifest_sha256: &'a str,
    prices: Vec<LedgerPrice<'a>>,
    stages: Vec<super::ledger::Billing>,
    calls: u64,
    batch_calls: u64,
    list_cost: f64,
    billed_cost: f64,
}

#[derive(Serialize)]
struct LedgerPrice<'a> {
    model: &'a str,
    resolved: &'a str,
    input_per_1k: f64,
    output_per_1k: f64,
    batch_input_per_1k: f64,
    batch_output_per_1k: f64,
}

impl<'a> LedgerFile<'a> {
    fn new(plan: &'a Plan, opts: &'a BuildOptions, manifest_sha256: &'a str, ledger: &Ledger<'_>) -> Self {
        let stages = ledger.billing();
        LedgerFile {
            format: "sdc-ledger-1",
            dataset: format!("{}@{}", plan.dataset.name, plan.dataset.version),
            lock_sha256: &opts.lock_sha256,
            manifest_sha256,
            prices: plan
                .models
                .iter()
                .filter(|m| m.provider != "builtin")
                .map(|m| LedgerPrice {
                    model: &m.alias,
                    resolved: &m.resolved,
                    input_per_1k: m.price_input_per_1k,
                    output_per_1k: m.price_output_per_1k,
                    batch_input_per_1k: m.batch_price_input_per_1k.unwrap_or(m.price_input_per_1k / 2.0),
                    batch_output_per_1k: m.batch_price_output_per_1k.unwrap_or(m.price_output_per_1k / 2.0),
                })
                .collect(),
            calls: stages.iter().map(|b| b.calls).sum(),
            batch_calls: stages.iter().map(|b| b.batch_calls).sum(),
            list_cost: stages.iter().map(|b| b.list_cost).sum(),
            billed_cost: stages.iter().map(|b| b.billed_cost).sum(),
            stages,
        }
    }
}

/// A kept task's row, read from the spill file.
fn sample_row(out: &Outcomes, entry: &TaskEntry) -> Result<SampleRow, PackageError> {
    let t: TaskRecord = out.spill.get(entry.slot)?;
    // Images are sorted by id.
    let png = |id: &str| {
        let images = &out.ingested.images;
        images.binary_search_by(|r| r.id.as_str().cmp(id)).ok().map(|k| images[k].png().to_vec())
    };
    let image = t.input.image.as_ref().and_then(|i| {
        png(&i.id).map(|bytes| ImageCell { bytes, path: format!("images/{}.png", &i.id[..16.min(i.id.len())]) })
    });
    Ok(SampleRow {
        id: t.input.task_id,
        question: t.candidate.question,
        answer: t.answer,
        category: t.category,
        task_type: t.input.question_type,
        test_code: t.candidate.test_code,
        entry_point: t.candidate.entry_point,
        image,
        source: t.input.chunk.document_path,
    })
}

/// Puts a cached archive at `path` (from the store when the file there is not it); `false` when
/// the store no longer has it.
fn restore(store: &Store, c: &CachedArchive, path: &std::path::Path) -> Result<bool, PackageError> {
    let current = std::fs::File::open(path).ok().and_then(|f| sha256_of(f).ok());
    if current.as_deref() == Some(c.archive_sha256.as_str()) {
        return Ok(true);
    }
    Ok(store.copy_object_to(&c.archive_sha256, path)?)
}

fn sha256_of(mut r: impl std::io::Read) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match r.read(&mut buf)? {
            0 => return Ok(hex::encode(h.finalize())),
            n => h.update(&buf[..n]),
        }
    }
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
struct CachedArchive {
    archive_sha256: String,
    manifest_sha256: String,
    tar_sha256: String,
    zstd_version: String,
}

/// Compresses the archive into the store's scratch directory, then files it in the store and
/// copies it to `path` (never seen half-written).
fn write_fresh(
    store: &Store,
    index: &mut crate::store::Journal,
    identity: &[u8; 32],
    prepared: &Prepared,
    path: &std::path::Path,
    books: &Mutex<Books>,
) -> Result<CachedArchive, PackageError> {
    let t = std::time::Instant::now();
    let scratch = store.root().join("tmp");
    let io = |p: &std::path::Path| {
        let p = p.to_path_buf();
        move |source| PackageError::Io { path: p, source }
    };
    let tmp = tempfile::NamedTempFile::new_in(&scratch).map_err(io(&scratch))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
    let summary = prepared.write_to(&mut out)?;
    std::io::Write::flush(&mut out).map_err(io(tmp.path()))?;
    drop(out);
    crate::store::copy_file_atomically(tmp.path(), path).map_err(io(path))?;
    store.put_object_file(tmp.into_temp_path(), &summary.archive_sha256)?;
    let cached = CachedArchive {
        archive_sha256: summary.archive_sha256.clone(),
        manifest_sha256: summary.manifest_sha256.clone(),
        tar_sha256: summary.tar_sha256.clone(),
        zstd_version: summary.zstd.library_version.clone(),
    };
    index.put(*identity, &serde_json::to_vec(&cached).unwrap_or_default())?;
    lock(books).stage("package").wall_ms += t.elapsed().as_millis() as u64;
    Ok(cached)
}

/// What the `.tar.zst` bytes are a function of: the manifest (the sha256 and size of every
/// other file), the tar mtime, the zstd level and library, and the sdc that writes the tar.
fn archive_identity(prepared: &Prepared) -> [u8; 32] {
    let spec = prepared.spec();
    let mut h = Sha256::new();
    h.update(b"sdc-archive-input-2\0");
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(b"\0");
    h.update(zstd::zstd_safe::version_string().as_bytes());
    h.update(b"\0");
    h.update(spec.mtime.to_le_bytes());
    h.update(spec.zstd_level.to_le_bytes());
    h.update(prepared.manifest_bytes());
    h.finalize().into()
}
