//! The fixed vocabulary of the language and the contract between stages and their templates.
//!
//! The checker, the docs and the runtime all read these tables, so a key or a template variable
//! is declared exactly once.

use crate::spec::{StageKind, TaskType};

/// Top-level block kinds, whether they take a label, and whether they may repeat.
pub const BLOCKS: &[(&str, Label, Repeat)] = &[
    ("dataset", Label::Required, Repeat::Once),
    ("paths", Label::None, Repeat::Once),
    ("source", Label::Required, Repeat::Many),
    ("model", Label::Required, Repeat::Many),
    ("categories", Label::None, Repeat::Once),
    ("chunking", Label::None, Repeat::Once),
    ("images", Label::None, Repeat::Once),
    ("stage", Label::Required, Repeat::Many),
    ("allocation", Label::None, Repeat::Once),
    ("verify", Label::None, Repeat::Once),
    ("dedup", Label::None, Repeat::Once),
    ("split", Label::None, Repeat::Once),
    ("output", Label::None, Repeat::Once),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label {
    Required,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repeat {
    Once,
    Many,
}

pub const DATASET_KEYS: &[&str] = &["version", "seed", "target", "license", "description"];
pub const PATHS_KEYS: &[&str] = &["prompts", "lockfile", "store"];
pub const SOURCE_KEYS: &[&str] = &["root", "include", "exclude", "public_root"];
pub const MODEL_KEYS: &[&str] = &[
    "provider",
    "base_url",
    "api_key",
    "model",
    "offline_fallback",
    "structured_output",
    "temperature",
    "top_p",
    "max_tokens",
    "max_in_flight",
    "requests_per_minute",
    "tokens_per_minute",
    "timeout",
    "connect_timeout",
    "retries",
    "price_input",
    "price_output",
    "batch_price_input",
    "batch_price_output",
];
pub const CHUNKING_KEYS: &[&str] =
    &["max_chars", "min_chars", "overlap", "max_code_blocks", "max_images", "neighbour_chars", "prior_code_chars"];
pub const IMAGES_KEYS: &[&str] = &["max_side", "max_pixels", "max_bytes"];
pub const STAGE_KEYS: &[&str] = &["model", "prompt", "prompts", "on_failure", "temperature", "max_tokens"];
pub const ALLOCATION_KEYS: &[&str] = &["over_allocation", "diversity_weight", "balance_categories", "category_weights"];
pub const ALLOCATION_TYPE_KEYS: &[&str] = &["ratio", "multimodal"];
pub const VERIFY_KEYS: &[&str] = &["python", "requirements", "timeout", "max_attempts", "concurrency", "memory_mb"];
pub const DEDUP_KEYS: &[&str] = &["threshold"];
pub const SPLIT_KEYS: &[&str] = &["train", "validation", "test", "group_by"];
pub const OUTPUT_KEYS: &[&str] = &["archive", "formats", "zstd_level", "shard_rows"];

/// What a stage's template receives, and which `{% block %}`s it must define (each block is
/// rendered as one chat message).
pub struct TemplateContract {
    pub variables: &'static [&'static str],
    pub blocks: &'static [&'static str],
}

const FILTER_DECISION_BLOCKS: &[&str] = &["system", "user"];

pub fn template_contract(stage: StageKind, task: Option<TaskType>) -> TemplateContract {
    match stage {
        StageKind::Transcribe => TemplateContract {
            variables: &["alt_text", "caption", "surrounding_text", "code_context", "document_path"],
            blocks: &["system", "user"],
        },
        StageKind::ImageFilter => TemplateContract {
            variables: &["transcription", "image_type", "alt_text", "caption", "surrounding_text", "code_context"],
            blocks: FILTER_DECISION_BLOCKS,
        },
        StageKind::ChunkFilter => TemplateContract {
            variables: &["content", "document_path", "has_code", "has_images"],
            blocks: FILTER_DECISION_BLOCKS,
        },
        StageKind::Plan => TemplateContract {
            variables: &[
                "context",
                "question_type",
                "has_image",
                "image_description",
                "code_context",
                "question",
                "entry_point",
                "test_code",
                "error",
            ],
            blocks: match task {
                Some(t) if t.is_code() => &["system", "user", "refine", "test", "test_correction"],
                _ => &["system", "user", "refine"],
            },
        },
        StageKind::CandidateFilter => TemplateContract {
            variables: &["question_type", "has_image", "has_test", "question", "test_code", "entry_point", "context"],
            blocks: FILTER_DECISION_BLOCKS,
        },
        StageKind::Answer => TemplateContract {
            variables: &[
                "question",
                "question_type",
                "entry_point",
                "context",
                "has_image",
                "image_description",
                "previous_answer",
                "error",
                "attempt",
            ],
            blocks: &["system", "user", "correction"],
        },
        StageKind::Curate => TemplateContract {
            variables: &[
                "question_type",
                "has_image",
                "has_test",
                "question",
                "answer",
                "test_code",
                "context",
                "image_description",
            ],
            blocks: FILTER_DECISION_BLOCKS,
        },
        StageKind::Classify => TemplateContract {
            variables: &["categories", "question_type", "question", "answer"],
            blocks: &["system", "user"],
        },
    }
}
