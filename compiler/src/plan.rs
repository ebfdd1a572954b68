//! The plan: the contract between compiler and runtime.
//!
//! A [`Plan`] is a checked spec joined with its lock: every stage bound to a resolved model,
//! every prompt to its hash, every source file to its content hash, every seed derived. The
//! runtime executes a `Plan` and never sees the DSL. [`estimate`] turns a plan into the figures
//! `sdc plan` prints before any model call is spent.

use serde::Serialize;

use crate::lock::Lockfile;
use crate::sources::{Census, DocKind};
use crate::spec::{Spec, StageKind, StructuredOutput, TaskType};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub hash_scheme: String,
    pub dataset: PlanDataset,
    pub sources: Vec<PlanSource>,
    pub models: Vec<PlanModel>,
    pub stages: Vec<PlanStage>,
    pub categories: Vec<(String, String)>,
    pub chunking: PlanChunking,
    pub images: PlanImages,
    pub allocation: PlanAllocation,
    pub verify: Option<PlanVerify>,
    pub dedup_threshold: f64,
    pub split: PlanSplit,
    pub output: PlanOutput,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanDataset {
    pub name: String,
    pub version: String,
    pub license: String,
    pub description: Option<String>,
    pub seed: u64,
    pub target: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanSource {
    pub name: String,
    pub root: String,
    pub public_root: Option<String>,
    pub files: Vec<PlanFile>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanFile {
    pub path: String,
    pub kind: Option<DocKind>,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanModel {
    pub alias: String,
    pub provider: String,
    pub endpoints: Vec<String>,
    pub resolved: String,
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub max_tokens: u64,
    /// Skipped when it is the default, so that plans (and their digests in existing locks) made
    /// before the setting existed stay the same.
    #[serde(skip_serializing_if = "StructuredOutput::is_default")]
    pub structured_output: StructuredOutput,
    pub max_in_flight: u64,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub retries: u64,
    pub price_input_per_1k: f64,
    pub price_output_per_1k: f64,
    pub batch_price_input_per_1k: Option<f64>,
    pub batch_price_output_per_1k: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanStage {
    pub kind: StageKind,
    pub model: String,
    pub prompts: Vec<PlanPrompt>,
    pub on_failure: String,
    pub temperature: f64,
    pub max_tokens: u64,
    pub seed: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanPrompt {
    pub task: Option<TaskType>,
    pub template: String,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanChunking {
    pub max_chars: u64,
    pub min_chars: u64,
    pub overlap_chars: u64,
    pub max_code_blocks: u64,
    pub max_images: u64,
    pub neighbour_chars: u64,
    pub prior_code_chars: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanImages {
    pub max_side: u64,
    pub max_pixels: u64,
    pub max_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanAllocation {
    pub over_allocation: f64,
    pub diversity_weight: f64,
    pub balance_categories: bool,
    pub category_weights: Vec<(String, f64)>,
    pub seed: u64,
    pub types: Vec<TypeTargets>,
}

/// Targets for one task type, computed as in the original pipeline: integer floors at each
/// step, over-allocation applied to both the total and the multimodal share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TypeTargets {
    pub task: TaskType,
    /// The share of the final dataset, before over-allocation.
    pub wanted: u64,
    pub wanted_multimodal: u64,
    /// How many tasks are planned, after over-allocation.
    pub planned: u64,
    pub planned_multimodal: u64,
    pub planned_text: u64,
}

/// What the corpus can actually supply for one task type: each chunk yields at most one
/// text-only candidate and one candidate per image, per type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Feasible {
    pub task: TaskType,
    pub multimodal: u64,
    pub text: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanVerify {
    pub python: String,
    pub python_version: String,
    pub requirements: String,
    pub requirements_sha256: String,
    pub timeout_ms: u64,
    pub max_attempts: u64,
    pub concurrency: Option<u64>,
    pub memory_mb: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanSplit {
    pub train: f64,
    pub validation: f64,
    pub test: f64,
    pub group_by: String,
    pub seed: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanOutput {
    pub archive: String,
    pub formats: Vec<String>,
    pub zstd_level: i64,
    pub shard_rows: u64,
    pub archive_mtime: u64,
}

impl Plan {
    /// Joins a spec with its lock. Models missing from the lock appear as `unresolved`.
    pub fn new(spec: &Spec, lock: &Lockfile) -> Plan {
        let seed = |label: &str| lock.seeds.get(label).copied().unwrap_or(0);
        let sources = lock
            .sources
            .iter()
            .map(|s| PlanSource {
                name: s.name.clone(),
                root: s.root.clone(),
                public_root: s.public_root.clone(),
                files: s
                    .files
                    .iter()
                    .map(|f| PlanFile {
                        path: f.path.clone(),
                        kind: DocKind::from_path(&f.path),
                        sha256: f.sha256.clone(),
                        bytes: f.bytes,
                    })
                    .collect(),
            })
            .collect();
        let models = spec
            .models
            .iter()
            .map(|m| {
                let locked = lock.models.iter().find(|l| l.alias == m.name);
                PlanModel {
                    alias: m.name.clone(),
                    provider: locked.map_or(m.provider.as_str().to_string(), |l| l.provider.clone()),
                    endpoints: locked.map(|l| l.endpoints.clone()).unwrap_or_default(),
                    resolved: locked.map_or("unresolved".to_string(), |l| l.resolved.clone()),
                    temperature: m.sampling.temperature,
                    top_p: m.sampling.top_p,
                    max_tokens: m.sampling.max_tokens,
                    structured_output: m.structured_output,
                    max_in_flight: m.limits.max_in_flight,
                    requests_per_minute: m.limits.requests_per_minute,
                    tokens_per_minute: m.limits.tokens_per_minute,
                    timeout_ms: m.limits.timeout_ms,
                    connect_timeout_ms: m.limits.connect_timeout_ms,
                    retries: m.limits.retries,
                    price_input_per_1k: m.price.input_per_1k,
                    price_output_per_1k: m.price.output_per_1k,
                    batch_price_input_per_1k: m.price.batch_input_per_1k,
                    batch_price_output_per_1k: m.price.batch_output_per_1k,
                }
            })
            .collect();
        let stages = spec
            .stages
            .iter()
            .map(|s| {
                let model = spec.model(&s.model);
                PlanStage {
                    kind: s.kind,
                    model: s.model.clone(),
                    prompts: s
                        .prompts
                        .iter()
                        .map(|p| PlanPrompt {
                            task: p.task,
                            template: p.template.text.clone(),
                            sha256: lock
                                .prompts
                                .iter()
                                .find(|l| l.name == p.template.text)
                                .map_or(String::new(), |l| l.sha256.clone()),
                        })
                        .collect(),
                    on_failure: s.on_failure.as_str().to_string(),
                    temperature: s.temperature.or(model.map(|m| m.sampling.temperature)).unwrap_or(0.0),
                    max_tokens: s.max_tokens.or(model.map(|m| m.sampling.max_tokens)).unwrap_or(0),
                    seed: seed(&format!("stage.{}", s.kind.as_str())),
                }
            })
            .collect();
        let c = &spec.chunking;
        Plan {
            hash_scheme: lock.hash_scheme.clone(),
            dataset: PlanDataset {
                name: spec.dataset.name.clone(),
                version: spec.dataset.version.clone(),
                license: spec.dataset.license.clone(),
                description: spec.dataset.description.clone(),
                seed: spec.dataset.seed,
                target: spec.dataset.target,
            },
            sources,
            models,
            stages,
            categories: spec.categories.iter().map(|c| (c.name.clone(), c.description.clone())).collect(),
            chunking: PlanChunking {
                max_chars: c.max_chars,
                min_chars: c.min_chars,
                overlap_chars: c.overlap_chars,
                max_code_blocks: c.max_code_blocks,
                max_images: c.max_images,
                neighbour_chars: c.neighbour_chars,
                prior_code_chars: c.prior_code_chars,
            },
            images: PlanImages {
                max_side: spec.images.max_side,
                max_pixels: spec.images.max_pixels,
                max_bytes: spec.images.max_bytes,
            },
            allocation: PlanAllocation {
                over_allocation: spec.allocation.over_allocation,
                diversity_weight: spec.allocation.diversity_weight,
                balance_categories: spec.allocation.balance_categories,
                category_weights: spec.allocation.category_weights.clone(),
                seed: seed("allocation"),
                types: targets(spec),
            },
            verify: spec.verify.as_ref().map(|v| {
                let locked = lock.verify.as_ref();
                PlanVerify {
                    python: v.python.clone(),
                    python_version: locked.map_or("unresolved".into(), |l| l.python_version.clone()),
                    requirements: v.requirements.text.clone(),
                    requirements_sha256: locked.map_or(String::new(), |l| l.requirements_sha256.clone()),
                    timeout_ms: v.timeout_ms,
                    max_attempts: v.max_attempts,
                    concurrency: v.concurrency,
                    memory_mb: v.memory_mb,
                }
            }),
            dedup_threshold: spec.dedup.threshold,
            split: PlanSplit {
                train: spec.split.train,
                validation: spec.split.validation,
                test: spec.split.test,
                group_by: spec.split.group_by.as_str().to_string(),
                seed: seed("split"),
            },
            output: PlanOutput {
                archive: spec.output.archive.text.clone(),
                formats: spec.output.formats.iter().map(|f| f.as_str().to_string()).collect(),
                zstd_level: spec.output.zstd_level,
                shard_rows: spec.output.shard_rows,
                archive_mtime: lock.dataset.archive_mtime,
            },
        }
    }
}

/// Per-type targets (seed-pipeline §2.5): `wanted = ⌊N·ratio⌋`, `wanted_mm = ⌊wanted·mm⌋`,
/// `planned = ⌊wanted·f⌋`, `planned_mm = ⌊wanted_mm·f⌋`, `planned_text = planned − planned_mm`.
pub fn targets(spec: &Spec) -> Vec<TypeTargets> {
    let n = spec.dataset.target as f64;
    let f = spec.allocation.over_allocation;
    spec.allocation
        .types
        .iter()
        .map(|t| {
            let wanted = (n * t.ratio + 1e-9).floor();
            let wanted_mm = (wanted * t.multimodal + 1e-9).floor();
            let planned = (wanted * f + 1e-9).floor() as u64;
            let planned_mm = ((wanted_mm * f + 1e-9).floor() as u64).min(planned);
            TypeTargets {
                task: t.task,
                wanted: wanted as u64,
                wanted_multimodal: wanted_mm as u64,
                planned,
                planned_multimodal: planned_mm,
                planned_text: planned - planned_mm,
            }
        })
        .collect()
}

/// What `sdc plan` prints: counts, expected calls, tokens and cost, before any call is made.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Estimate {
    pub dataset: String,
    pub stages: Vec<String>,
    pub sources: Vec<SourceEstimate>,
    pub documents: u64,
    pub images: u64,
    pub chunks: u64,
    pub tasks: Vec<TypeTargets>,
    /// Targets capped by the candidates the corpus can supply; calls are estimated from these.
    pub feasible: Vec<Feasible>,
    pub calls: Vec<CallEstimate>,
    /// The same calls summed per model alias, in alias order.
    pub per_model: Vec<ModelEstimate>,
    pub total_calls: u64,
    pub total_input_tokens: u64,
    pub total_output_tokens: u64,
    pub total_cost: f64,
    /// How the figures were estimated, so nobody mistakes them for measurements.
    pub method: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SourceEstimate {
    pub name: String,
    pub notebooks: u64,
    pub mdx: u64,
    pub markdown: u64,
    pub pdf: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelEstimate {
    pub model: String,
    pub resolved: String,
    pub calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CallEstimate {
    pub stage: StageKind,
    pub model: String,
    pub resolved: String,
    pub calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost: f64,
}

/// Rough per-call sizes in tokens (input beyond the context, output), per stage.
fn per_call_tokens(stage: StageKind) -> (u64, u64) {
    match stage {
        StageKind::Transcribe => (1200, 500),
        StageKind::ImageFilter => (700, 60),
        StageKind::ChunkFilter => (500, 60),
        StageKind::Plan => (900, 350),
        StageKind::CandidateFilter => (700, 60),
        StageKind::Answer => (800, 500),
        StageKind::Curate => (900, 80),
        StageKind::Classify => (500, 20),
    }
}

/// Estimates a build from its plan and a census of its files (`census[i]` belongs to the i-th
/// file of the plan's sources, in order).
pub fn estimate(plan: &Plan, census: &[Census]) -> Estimate {
    let mut sources = Vec::new();
    let mut census_iter = census.iter();
    let (mut images, mut text_chars, mut documents) = (0u64, 0u64, 0u64);
    for s in &plan.sources {
        let mut e = SourceEstimate { name: s.name.clone(), notebooks: 0, mdx: 0, markdown: 0, pdf: 0, bytes: 0 };
        for f in &s.files {
            let c = census_iter.next().copied().unwrap_or_default();
            images += c.images;
            text_chars += c.text_chars;
            documents += 1;
            e.bytes += f.bytes;
            match f.kind {
                Some(DocKind::Notebook) => e.notebooks += 1,
                Some(DocKind::Mdx) => e.mdx += 1,
                Some(DocKind::Markdown) => e.markdown += 1,
                Some(DocKind::Pdf) => e.pdf += 1,
                None => {}
            }
        }
        sources.push(e);
    }
    let chunk_size = ((plan.chunking.max_chars + plan.chunking.min_chars) / 2).max(1);
    let chunks = text_chars.div_ceil(chunk_size);
    let tasks = plan.allocation.types.clone();
    let feasible: Vec<Feasible> = tasks
        .iter()
        .map(|t| Feasible {
            task: t.task,
            multimodal: t.planned_multimodal.min(images),
            text: t.planned_text.min(chunks),
        })
        .collect();
    let planned: u64 = feasible.iter().map(|t| t.multimodal + t.text).sum();
    let code_tasks: u64 = feasible.iter().filter(|t| t.task.is_code()).map(|t| t.multimodal + t.text).sum();
    let context_tokens =
        (plan.chunking.max_chars + 2 * plan.chunking.neighbour_chars + plan.chunking.prior_code_chars) / 4;
    let mut calls = Vec::new();
    for stage in &plan.stages {
        let n = match stage.kind {
            StageKind::Transcribe | StageKind::ImageFilter => images,
            StageKind::ChunkFilter => chunks,
            // Question and refinement for every task, a test for code tasks.
            StageKind::Plan => 2 * planned + code_tasks,
            StageKind::CandidateFilter | StageKind::Answer | StageKind::Curate | StageKind::Classify => planned,
        };
        let (base_in, out) = per_call_tokens(stage.kind);
        let context = match stage.kind {
            StageKind::Transcribe | StageKind::ImageFilter | StageKind::Classify => 0,
            StageKind::ChunkFilter => plan.chunking.max_chars / 4,
            _ => context_tokens,
        };
        let input_tokens = n * (base_in + context);
        let output_tokens = n * out;
        let model = plan.models.iter().find(|m| m.alias == stage.model);
        let billed = model.filter(|m| m.provider != "builtin");
        let cost = billed.map_or(0.0, |m| {
            input_tokens as f64 / 1000.0 * m.price_input_per_1k + output_tokens as f64 / 1000.0 * m.price_output_per_1k
        });
        calls.push(CallEstimate {
            stage: stage.kind,
            model: stage.model.clone(),
            resolved: model.map_or("unresolved".into(), |m| m.resolved.clone()),
            calls: n,
            input_tokens,
            output_tokens,
            cost,
        });
    }
    let mut per_model: Vec<ModelEstimate> = Vec::new();
    for c in &calls {
        match per_model.iter_mut().find(|m| m.model == c.model) {
            Some(m) => {
                m.calls += c.calls;
                m.input_tokens += c.input_tokens;
                m.output_tokens += c.output_tokens;
                m.cost += c.cost;
            }
            None => per_model.push(ModelEstimate {
                model: c.model.clone(),
                resolved: c.resolved.clone(),
                calls: c.calls,
                input_tokens: c.input_tokens,
                output_tokens: c.output_tokens,
                cost: c.cost,
            }),
        }
    }
    per_model.sort_by(|a, b| a.model.cmp(&b.model));
    Estimate {
        per_model,
        dataset: format!("{}@{}", plan.dataset.name, plan.dataset.version),
        stages: plan.stages.iter().map(|s| s.kind.as_str().to_string()).collect(),
        sources,
        documents,
        images,
        chunks,
        total_calls: calls.iter().map(|c| c.calls).sum(),
        total_input_tokens: calls.iter().map(|c| c.input_tokens).sum(),
        total_output_tokens: calls.iter().map(|c| c.output_tokens).sum(),
        total_cost: calls.iter().map(|c| c.cost).sum(),
        calls,
        tasks,
        feasible,
        method: "images and text size from a byte-level census of the source files; chunks = text / mean chunk size; \
                 tasks capped by the candidates the chunks and images can supply; one call per task and stage (two plus a test for code tasks in plan), first attempts only; \
                 tokens from per-stage averages plus the chunking limits"
            .into(),
    }
}
