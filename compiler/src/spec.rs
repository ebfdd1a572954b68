//! The checked spec: every value typed, every reference resolved, every unit converted.
//!
//! Produced by [`crate::check`]; consumed by the lock and plan builders. Spans are kept so that
//! later passes (globs that match nothing, unset env vars at lock time) can still point at the
//! spec text.

use std::path::{Path, PathBuf};

use crate::span::Span;

#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// Directory of the spec file; every relative path in the spec resolves against it.
    pub dir: PathBuf,
    pub dataset: Dataset,
    pub paths: Paths,
    pub sources: Vec<Source>,
    pub models: Vec<Model>,
    pub categories: Vec<Category>,
    pub chunking: Chunking,
    pub images: ImageLimits,
    /// In pipeline order; absent optional stages are simply not listed.
    pub stages: Vec<Stage>,
    pub allocation: Allocation,
    pub verify: Option<Verify>,
    pub dedup: Dedup,
    pub split: Split,
    pub output: Output,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub name: String,
    pub span: Span,
    pub version: String,
    pub seed: u64,
    pub target: u64,
    pub license: String,
    pub description: Option<String>,
}

/// A path as written in the spec, with where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct PathRef {
    pub text: String,
    pub span: Span,
}

impl PathRef {
    /// The path relative to `dir`, with `.` and `name/..` removed lexically so messages show
    /// `lockfiles/x.lock` rather than `specs/../lockfiles/x.lock`.
    pub fn resolve(&self, dir: &Path) -> PathBuf {
        clean(&dir.join(&self.text))
    }
}

fn clean(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}

#[derive(Clone, Debug, PartialEq)]
pub struct Paths {
    pub prompts: PathRef,
    pub lockfile: PathRef,
    pub store: PathRef,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    pub name: String,
    pub span: Span,
    pub root: PathRef,
    pub include: Vec<Glob>,
    pub exclude: Vec<Glob>,
    pub public_root: Option<PathRef>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Glob {
    pub pattern: String,
    pub span: Span,
}

/// A value that is either written in the spec or read from the environment at lock time.
#[derive(Clone, Debug, PartialEq)]
pub enum Setting {
    Literal(String),
    Env { name: String, default: Option<String>, span: Span },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Provider {
    /// Any server speaking the OpenAI chat-completions API (vLLM, llama.cpp, Ollama, OpenAI).
    Openai,
    /// sdc's deterministic, rule-based offline generator.
    Builtin,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Openai => "openai",
            Provider::Builtin => "builtin",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub name: String,
    pub span: Span,
    pub provider: Provider,
    /// One or more endpoints; load is spread over them.
    pub base_urls: Vec<Setting>,
    pub api_key: Option<Setting>,
    /// The model name requested from the server (or the builtin generator's name).
    pub model: Setting,
    /// Use the builtin generator when the endpoint's env var is unset.
    pub offline_fallback: bool,
    /// How a stage's reply schema reaches the server.
    pub structured_output: StructuredOutput,
    pub sampling: Sampling,
    pub limits: Limits,
    pub price: Price,
}

/// How a server is asked for a reply that follows a JSON schema. Servers differ: OpenAI and vLLM
/// enforce `json_schema`, llama.cpp's server takes a schema only in the `json_object` form, and
/// some servers (or models behind proxies) ignore `response_format` altogether, for which the
/// schema is stated in the system message instead. Whatever the form, the reply is validated
/// against the schema; a reply that does not validate is a typed failure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StructuredOutput {
    /// `response_format: {"type": "json_schema", …}` (a server that refuses it naming
    /// `response_format` is asked once more in the `json_object` form).
    #[default]
    JsonSchema,
    /// `response_format: {"type": "json_object", "schema": …}`.
    JsonObject,
    /// No `response_format`; the schema is appended to the system message.
    Prompt,
}

impl StructuredOutput {
    pub fn is_default(&self) -> bool {
        *self == StructuredOutput::JsonSchema
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub max_tokens: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub max_in_flight: u64,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub retries: u64,
}

/// Prices in currency units per 1000 tokens.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Price {
    pub input_per_1k: f64,
    pub output_per_1k: f64,
    pub batch_input_per_1k: Option<f64>,
    pub batch_output_per_1k: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Category {
    pub name: String,
    pub description: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Chunking {
    pub max_chars: u64,
    pub min_chars: u64,
    pub overlap_chars: u64,
    pub max_code_blocks: u64,
    pub max_images: u64,
    /// How much of the neighbouring chunks is shown as context.
    pub neighbour_chars: u64,
    /// Bound on the earlier code of the same document shown with a chunk (unbounded in the
    /// original pipeline).
    pub prior_code_chars: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ImageLimits {
    pub max_side: u64,
    pub max_pixels: u64,
    pub max_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    Transcribe,
    ImageFilter,
    ChunkFilter,
    Plan,
    CandidateFilter,
    Answer,
    Curate,
    Classify,
}

impl StageKind {
    pub const ALL: [StageKind; 8] = [
        StageKind::Transcribe,
        StageKind::ImageFilter,
        StageKind::ChunkFilter,
        StageKind::Plan,
        StageKind::CandidateFilter,
        StageKind::Answer,
        StageKind::Curate,
        StageKind::Classify,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Transcribe => "transcribe",
            StageKind::ImageFilter => "image_filter",
            StageKind::ChunkFilter => "chunk_filter",
            StageKind::Plan => "plan",
            StageKind::CandidateFilter => "candidate_filter",
            StageKind::Answer => "answer",
            StageKind::Curate => "curate",
            StageKind::Classify => "classify",
        }
    }

    pub fn parse(s: &str) -> Option<StageKind> {
        StageKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Plan and answer have one prompt per task type; the others have one prompt.
    pub fn per_task_type(self) -> bool {
        matches!(self, StageKind::Plan | StageKind::Answer)
    }

    /// Stages a build cannot do without.
    pub fn required(self) -> bool {
        matches!(self, StageKind::Plan | StageKind::Answer | StageKind::Classify)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskType {
    FunctionCompletion,
    CodeGeneration,
    Qa,
}

impl TaskType {
    pub const ALL: [TaskType; 3] = [TaskType::FunctionCompletion, TaskType::CodeGeneration, TaskType::Qa];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::FunctionCompletion => "function_completion",
            TaskType::CodeGeneration => "code_generation",
            TaskType::Qa => "qa",
        }
    }

    pub fn parse(s: &str) -> Option<TaskType> {
        TaskType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub fn is_code(self) -> bool {
        !matches!(self, TaskType::Qa)
    }
}

/// What happens to an item when its model call fails for good (after retries) or its reply
/// does not validate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Keep the item as if the stage had accepted it (filters only).
    Keep,
    /// Record the item as failed and go on without it.
    Drop,
    /// Stop the build.
    Fail,
}

impl FailurePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::Keep => "keep",
            FailurePolicy::Drop => "drop",
            FailurePolicy::Fail => "fail",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    pub kind: StageKind,
    pub span: Span,
    pub model: String,
    /// One prompt, or one per task type for plan and answer (`task` is then set).
    pub prompts: Vec<PromptUse>,
    pub on_failure: FailurePolicy,
    /// Overrides of the model's sampling for this stage.
    pub temperature: Option<f64>,
    pub max_tokens: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PromptUse {
    pub task: Option<TaskType>,
    pub template: PathRef,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Allocation {
    pub over_allocation: f64,
    pub diversity_weight: f64,
    pub balance_categories: bool,
    /// Relative weights for category balancing, sorted by name; unlisted categories weigh 1.
    pub category_weights: Vec<(String, f64)>,
    /// The task types the spec allocates, in [`TaskType::ALL`] order; absent types get nothing.
    pub types: Vec<TypeAllocation>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TypeAllocation {
    pub task: TaskType,
    /// Fractions in [0, 1].
    pub ratio: f64,
    pub multimodal: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Verify {
    pub python: String,
    pub python_span: Span,
    pub requirements: PathRef,
    pub timeout_ms: u64,
    pub max_attempts: u64,
    /// Parallel verifications; `None` means one per core.
    pub concurrency: Option<u64>,
    pub memory_mb: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Dedup {
    pub threshold: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    Document,
    Chunk,
}

impl GroupBy {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Document => "document",
            GroupBy::Chunk => "chunk",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub train: f64,
    pub validation: f64,
    pub test: f64,
    pub group_by: GroupBy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Jsonl,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Jsonl => "jsonl",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub archive: PathRef,
    pub formats: Vec<Format>,
    pub zstd_level: i64,
    pub shard_rows: u64,
}

impl Spec {
    pub fn model(&self, name: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.name == name)
    }

    pub fn stage(&self, kind: StageKind) -> Option<&Stage> {
        self.stages.iter().find(|s| s.kind == kind)
    }
}
