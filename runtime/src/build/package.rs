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
//! The finished `.tar.zst` is also kept in the store under the hash of everything that went into
//! it, so a rebuild whose inputs did not change copies it instead of compressing again.

use std::collections::BTreeMap;
use std::sync::Mutex;

use sdc_compiler::plan::Plan;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::calls::{CallTrace, lock};
use super::items::Decision;
use super::outcome::{Books, Fate};
use super::tasks::Attempt;
use super::{BuildOptions, Outcomes};
use crate::archive::{self, ArchiveInput, ArchiveSpec, CardInfo, ImageCell, RejectedRow, SampleRow, Split};
use crate::dedup::{self, DedupItem};
use crate::model::json::canonical;
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
struct StageTotals {
    stage: String,
    calls: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    cost: f64,
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
    totals: Vec<StageTotals>,
    samples: Vec<ProvenanceSample<'a>>,
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
    books: &Mutex<Books>,
) -> Result<Packaged, PackageError> {
    let accepted: Vec<&super::tasks::TaskRecord> = out.tasks.values().filter(|t| t.fate.is_accepted()).collect();

    // Dedup.
    let items: Vec<DedupItem> = accepted
        .iter()
        .map(|t| DedupItem {
            id: t.input.task_id.clone(),
            task_type: t.input.question_type.clone(),
            question: t.candidate.question.clone(),
            answer: t.answer.clone(),
            image_id: t.input.image.as_ref().map(|i| i.id.clone()),
        })
        .collect();
    let dedup = dedup::dedup(&items, plan.dedup_threshold, plan.dataset.seed);
    let removed: BTreeMap<&str, &dedup::Duplicate> = dedup.removed.iter().map(|d| (d.id.as_str(), d)).collect();
    {
        let mut b = lock(books);
        let s = b.stage("dedup");
        s.items_in = accepted.len() as u64;
        s.rejected = removed.len() as u64;
        s.items_out = s.items_in - s.rejected;
    }
    let kept: Vec<&super::tasks::TaskRecord> =
        accepted.iter().copied().filter(|t| !removed.contains_key(t.input.task_id.as_str())).collect();

    // Split.
    let split_items: Vec<SplitItem> = kept
        .iter()
        .map(|t| SplitItem {
            id: t.input.task_id.clone(),
            group: t.input.chunk.document_id.clone(),
            stratum: format!(
                "{}|{}|{}",
                t.category,
                t.input.question_type,
                if t.input.image.is_some() { "mm" } else { "text" }
            ),
        })
        .collect();
    let ratios = SplitRatios { train: plan.split.train, validation: plan.split.validation, test: plan.split.test };
    let split = split::split(&split_items, &ratios, plan.split.seed);
    let assignment: BTreeMap<&str, SplitName> = split.assignments.iter().map(|(id, s)| (id.as_str(), *s)).collect();
    {
        let mut b = lock(books);
        let s = b.stage("split");
        s.items_in = kept.len() as u64;
        s.items_out = assignment.len() as u64;
    }

    // Rows.
    let png = |id: &str| out.ingested.images.iter().find(|r| r.id == id).map(|r| r.png().to_vec());
    let mut splits: Vec<Split> = Vec::new();
    let mut per_split = Vec::new();
    for name in SplitName::ALL {
        let rows: Vec<SampleRow> = kept
            .iter()
            .filter(|t| assignment.get(t.input.task_id.as_str()) == Some(&name))
            .map(|t| SampleRow {
                id: t.input.task_id.clone(),
                question: t.candidate.question.clone(),
                answer: t.answer.clone(),
                category: t.category.clone(),
                task_type: t.input.question_type.clone(),
                test_code: t.candidate.test_code.clone(),
                entry_point: t.candidate.entry_point.clone(),
                image: t.input.image.as_ref().and_then(|i| {
                    png(&i.id)
                        .map(|bytes| ImageCell { bytes, path: format!("images/{}.png", &i.id[..16.min(i.id.len())]) })
                }),
                source: t.input.chunk.document_path.clone(),
            })
            .collect();
        per_split.push((name.as_str().to_string(), rows.len() as u64));
        splits.push(Split { name: name.as_str().to_string(), rows });
    }

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
        push(&t.input.task_id, "task", &t.fate, t.input.chunk.document_path.clone(), None);
    }
    for d in &dedup.removed {
        let source = out.tasks.get(&d.id).map(|t| t.input.chunk.document_path.clone()).unwrap_or_default();
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

    // Provenance.
    let prompts_by_stage: BTreeMap<&str, &str> =
        plan.stages.iter().filter_map(|s| s.prompts.first().map(|p| (s.kind.as_str(), p.sha256.as_str()))).collect();
    let mut reported: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    let mut fingerprints: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    let every_call = out
        .images
        .values()
        .flat_map(|o| o.calls.iter())
        .chain(out.chunks.values().flat_map(|o| o.calls.iter()))
        .chain(out.tasks.values().flat_map(|t| t.calls.iter()));
    let stage_model: BTreeMap<&str, &str> = plan.stages.iter().map(|s| (s.kind.as_str(), s.model.as_str())).collect();
    let mut totals: BTreeMap<String, StageTotals> = BTreeMap::new();
    for c in every_call {
        if let Some(alias) = stage_model.get(c.stage.as_str()) {
            reported.entry(alias.to_string()).or_default().insert(c.model.clone());
            if let Some(f) = &c.fingerprint {
                fingerprints.entry(alias.to_string()).or_default().insert(f.clone());
            }
        }
        let t = totals.entry(c.stage.clone()).or_insert_with(|| StageTotals {
            stage: c.stage.clone(),
            calls: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            cost: 0.0,
        });
        t.calls += 1;
        t.prompt_tokens += c.prompt_tokens;
        t.completion_tokens += c.completion_tokens;
        if let Some(m) = stage_model.get(c.stage.as_str()).and_then(|a| plan.models.iter().find(|m| m.alias == *a)) {
            t.cost += crate::model::cost(
                m,
                crate::model::Usage { prompt_tokens: c.prompt_tokens, completion_tokens: c.completion_tokens },
            );
        }
    }
    // Drift: what the servers say answered, against what the lock pins.
    let mut drift = Vec::new();
    for m in plan.models.iter().filter(|m| m.provider != "builtin") {
        let others: Vec<&String> =
            reported.get(&m.alias).into_iter().flatten().filter(|id| **id != m.resolved && !id.is_empty()).collect();
        if !others.is_empty() {
            let ids: Vec<&str> = others.iter().map(|s| s.as_str()).collect();
            drift.push(format!(
                "model `{}`: the lock pins `{}`, replies came from `{}`",
                m.alias,
                m.resolved,
                ids.join("`, `")
            ));
        }
        let prints: Vec<&str> = fingerprints.get(&m.alias).into_iter().flatten().map(String::as_str).collect();
        if prints.len() > 1 {
            drift.push(format!(
                "model `{}`: replies carry {} system fingerprints: {}",
                m.alias,
                prints.len(),
                prints.join(", ")
            ));
        }
    }
    if opts.fail_on_drift && !drift.is_empty() {
        return Err(PackageError::Drift(drift));
    }
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
                reported: reported.get(&m.alias).map(|s| s.iter().cloned().collect()).unwrap_or_default(),
                fingerprints: fingerprints.get(&m.alias).map(|s| s.iter().cloned().collect()).unwrap_or_default(),
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
        totals: totals.into_values().collect(),
        samples: kept
            .iter()
            .map(|t| ProvenanceSample {
                id: &t.input.task_id,
                split: split_name.get(t.input.task_id.as_str()).copied().unwrap_or(""),
                task_type: &t.input.question_type,
                category: &t.category,
                document_id: &t.input.chunk.document_id,
                document_path: &t.input.chunk.document_path,
                chunk_id: &t.input.chunk.id,
                image_id: t.input.image.as_ref().map(|i| i.id.as_str()),
                calls: calls(&t.calls, &prompts_by_stage),
                decisions: &t.decisions,
                verification: t.attempts.iter().collect(),
            })
            .collect(),
    };
    // Compact: at 100k samples the pretty form was 15 % larger, in memory and to compress.
    let provenance_json = serde_json::to_vec(&provenance).unwrap_or_default();

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
    let spec = ArchiveSpec {
        mtime: plan.output.archive_mtime,
        zstd_level: plan.output.zstd_level as i32,
        shard_rows: plan.output.shard_rows.max(1),
    };
    let input =
        ArchiveInput { spec, card, splits: &splits, rejected: &rejected_rows, provenance_json: &provenance_json };

    // Reuse the archive when nothing that goes into it changed.
    let identity = archive_identity(&input);
    let mut index = store.journal("archives")?;
    let path = opts.archive.clone();
    let cached = index.get(&identity)?.and_then(|b| serde_json::from_slice::<CachedArchive>(&b).ok());
    let (summary, reused) = match cached {
        Some(c) => {
            let current = std::fs::read(&path).ok().map(|b| hex::encode(Sha256::digest(&b)));
            if current.as_deref() != Some(c.archive_sha256.as_str()) {
                let Some(bytes) = store.get_object(&c.archive_sha256)? else {
                    return write_fresh(store, &mut index, &identity, &input, &path, books).map(|s| Packaged {
                        drift,
                        ..finish(s, false, &path, &splits, &dedup, split, rejected, failed)
                    });
                };
                crate::store::write_file_atomically(&path, &bytes)
                    .map_err(|e| PackageError::Io { path: path.clone(), source: e })?;
            }
            (c, true)
        }
        None => (write_fresh(store, &mut index, &identity, &input, &path, books)?, false),
    };
    Ok(Packaged { drift, ..finish(summary, reused, &path, &splits, &dedup, split, rejected, failed) })
}

#[allow(clippy::too_many_arguments)]
fn finish(
    c: CachedArchive,
    reused: bool,
    path: &std::path::Path,
    splits: &[Split],
    dedup: &dedup::DedupResult,
    split: split::SplitResult,
    rejected: u64,
    failed: u64,
) -> Packaged {
    Packaged {
        archive_path: path.display().to_string(),
        archive_sha256: c.archive_sha256,
        manifest_sha256: c.manifest_sha256,
        tar_sha256: c.tar_sha256,
        zstd_version: c.zstd_version,
        reused,
        samples: splits.iter().map(|s| s.rows.len() as u64).sum(),
        per_type: sdc_compiler::spec::TaskType::ALL
            .iter()
            .map(|t| {
                let rows = splits.iter().flat_map(|s| s.rows.iter()).filter(|r| r.task_type == t.as_str());
                let (mm, text): (Vec<_>, Vec<_>) = rows.partition(|r| r.image.is_some());
                (t.as_str().to_string(), text.len() as u64, mm.len() as u64)
            })
            .collect(),
        per_split: splits.iter().map(|s| (s.name.clone(), s.rows.len() as u64)).collect(),
        duplicates: dedup.removed.len() as u64,
        split,
        rejected,
        failed,
        drift: Vec::new(),
    }
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
struct CachedArchive {
    archive_sha256: String,
    manifest_sha256: String,
    tar_sha256: String,
    zstd_version: String,
}

fn write_fresh(
    store: &Store,
    index: &mut crate::store::Journal,
    identity: &[u8; 32],
    input: &ArchiveInput<'_>,
    path: &std::path::Path,
    books: &Mutex<Books>,
) -> Result<CachedArchive, PackageError> {
    let t = std::time::Instant::now();
    let mut bytes = Vec::new();
    let summary = archive::write_archive(input, &mut bytes)?;
    crate::store::write_file_atomically(path, &bytes)
        .map_err(|e| PackageError::Io { path: path.to_path_buf(), source: e })?;
    store.put_object(&bytes)?;
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

/// sha256 over everything the archive is made of (and the sdc version that makes it).
fn archive_identity(input: &ArchiveInput<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"sdc-archive-input\0");
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(zstd::zstd_safe::version_string().as_bytes());
    h.update(
        canonical(&serde_json::json!({
            "mtime": input.spec.mtime, "level": input.spec.zstd_level, "shard_rows": input.spec.shard_rows,
            "card": {"name": input.card.name, "version": input.card.version, "license": input.card.license,
                     "description": input.card.description, "categories": input.card.categories,
                     "reproduce": input.card.reproduce, "notes": input.card.notes},
        }))
        .as_bytes(),
    );
    for split in input.splits {
        h.update(split.name.as_bytes());
        h.update((split.rows.len() as u64).to_le_bytes());
        for r in &split.rows {
            for field in
                [&r.id, &r.question, &r.answer, &r.category, &r.task_type, &r.test_code, &r.entry_point, &r.source]
            {
                h.update((field.len() as u64).to_le_bytes());
                h.update(field.as_bytes());
            }
            match &r.image {
                Some(i) => {
                    h.update([1]);
                    h.update(Sha256::digest(&i.bytes));
                    h.update(i.path.as_bytes());
                }
                None => h.update([0]),
            }
        }
    }
    h.update(
        canonical(
            &serde_json::to_value(
                input
                    .rejected
                    .iter()
                    .map(|r| (&r.id, &r.kind, &r.stage, &r.outcome, &r.reason, r.attempts, &r.source, &r.duplicate_of))
                    .collect::<Vec<_>>(),
            )
            .unwrap_or_default(),
        )
        .as_bytes(),
    );
    h.update(Sha256::digest(input.provenance_json));
    h.finalize().into()
}
