//! The image and chunk stages: transcribe → image filter for every image, chunk filter for every
//! chunk. Each item's outcome is a [`Fate`] with the calls and decisions that led to it.

use sdc_compiler::spec::StageKind;
use serde::{Deserialize, Serialize};

use super::Ctx;
use super::calls::{CallError, CallTrace, Conversation};
use super::corpus::ChunkMeta;
use super::inputs::{ChunkFilterInput, ImageFilterInput, ImageInfo, TranscribeInput};
use super::outcome::{Fate, StageFate};
use super::replies::ReplySchema;
use crate::ingest::chunk::ChunkPart;
use crate::ingest::{Document, ImageRecord};

/// A filter's decision, as provenance records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub stage: String,
    pub decision: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageOutcome {
    pub id: String,
    pub fate: Fate,
    pub image_type: String,
    pub transcription: String,
    pub info: ImageInfo,
    pub calls: Vec<CallTrace>,
    pub decisions: Vec<Decision>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkOutcome {
    pub id: String,
    pub document_id: String,
    pub fate: Fate,
    pub calls: Vec<CallTrace>,
    pub decisions: Vec<Decision>,
}

/// What the documents say about an image: its first use (uses are sorted by document and
/// position, so "first" is the same on every machine).
pub fn image_info(img: &ImageRecord, documents: &[Document]) -> ImageInfo {
    let first = img.uses.first();
    let path = first
        .and_then(|u| documents.iter().find(|d| d.id == u.document_id))
        .map(|d| format!("{}/{}", d.source, d.path))
        .unwrap_or_default();
    ImageInfo {
        id: img.id.clone(),
        width: img.width,
        height: img.height,
        alt_text: first.map(|u| u.alt.clone()).unwrap_or_default(),
        caption: String::new(),
        surrounding_text: first.map(|u| u.context.clone()).unwrap_or_default(),
        code_context: first.and_then(|u| u.generating_code.clone()).unwrap_or_default(),
        document_path: path,
    }
}

/// How a failed call ends the item, following the stage's `on_failure`.
pub enum OnFailure {
    /// Go on as if the stage had passed the item.
    Keep(String),
    /// The item failed.
    Drop(Fate),
}

impl Ctx {
    /// Applies the stage's failure policy to a failed call; `fail` also stops the build.
    pub fn on_failure(&self, kind: StageKind, item: &str, error: &CallError) -> OnFailure {
        let stage = kind.as_str();
        if error.is_pending() {
            // Waiting for a batch result (export): the item stops here, whatever the policy,
            // and nothing is stopped; an export run never packages.
            return OnFailure::Drop(Fate::Failed { stage: stage.to_string(), error: error.to_string(), attempts: 0 });
        }
        let policy = self.stage(kind).map_or("drop", |s| s.on_failure.as_str());
        if error.is_fatal() || policy == "fail" {
            self.stop(format!("stage `{stage}` failed on item {}: {error}", short(item)));
        }
        match policy {
            "keep" if !error.is_fatal() => OnFailure::Keep(format!("kept after a failed call: {error}")),
            _ => OnFailure::Drop(Fate::Failed {
                stage: stage.to_string(),
                error: error.to_string(),
                attempts: error.attempts(),
            }),
        }
    }
}

pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn rejected(stage: StageKind, reason: impl Into<String>) -> Fate {
    Fate::Rejected { stage: stage.as_str().to_string(), reason: reason.into() }
}

pub async fn image(ctx: &Ctx, img: &ImageRecord, documents: &[Document]) -> ImageOutcome {
    let info = image_info(img, documents);
    let mut out = ImageOutcome {
        id: img.id.clone(),
        fate: Fate::Accepted,
        image_type: String::new(),
        transcription: String::new(),
        info: info.clone(),
        calls: Vec::new(),
        decisions: Vec::new(),
    };
    let Some(stage) = ctx.stage(StageKind::Transcribe) else {
        out.fate = rejected(StageKind::Transcribe, "the spec has no transcribe stage, so no task can use images");
        return out;
    };
    let input = TranscribeInput { image: info.clone() };
    let mut conv = Conversation::new(stage, ctx.template(stage, None), &img.id, vec![img.id.clone()]);
    let reply = ctx
        .caller
        .ask(&mut conv, "user", &input.variables(), &|| to_value(&input), ReplySchema::transcription(), &mut out.calls)
        .await;
    let here = match reply {
        Ok(r) if r.get("transcription").trim().is_empty() => {
            out.fate = rejected(StageKind::Transcribe, "empty transcription");
            StageFate::Rejected
        }
        Ok(r) => {
            out.image_type = r.get("image_type").to_string();
            out.transcription = r.get("transcription").to_string();
            StageFate::Passed
        }
        Err(e) => match ctx.on_failure(StageKind::Transcribe, &img.id, &e) {
            // There is nothing to keep without a transcription.
            OnFailure::Keep(_) | OnFailure::Drop(_) => {
                out.fate = Fate::Failed { stage: "transcribe".into(), error: e.to_string(), attempts: e.attempts() };
                StageFate::Failed
            }
        },
    };
    ctx.count(StageKind::Transcribe, here);
    if here != StageFate::Passed {
        return out;
    }
    let Some(stage) = ctx.stage(StageKind::ImageFilter) else { return out };
    let input =
        ImageFilterInput { image: info, transcription: out.transcription.clone(), image_type: out.image_type.clone() };
    let mut conv = Conversation::new(stage, ctx.template(stage, None), &img.id, Vec::new());
    let reply = ctx
        .caller
        .ask(&mut conv, "user", &input.variables(), &|| to_value(&input), ReplySchema::decision(), &mut out.calls)
        .await;
    let here = decide(ctx, StageKind::ImageFilter, &img.id, reply, &mut out.fate, &mut out.decisions);
    ctx.count(StageKind::ImageFilter, here);
    out
}

/// Applies a filter's reply (or failure) to an item.
pub fn decide(
    ctx: &Ctx,
    kind: StageKind,
    item: &str,
    reply: Result<super::calls::Reply, CallError>,
    fate: &mut Fate,
    decisions: &mut Vec<Decision>,
) -> StageFate {
    let stage = kind.as_str().to_string();
    match reply {
        Ok(r) => {
            let decision = r.get("decision").to_string();
            let reason = r.get("reason").to_string();
            decisions.push(Decision { stage: stage.clone(), decision: decision.clone(), reason: reason.clone() });
            if decision == "pass" {
                StageFate::Passed
            } else {
                *fate = Fate::Rejected { stage, reason };
                StageFate::Rejected
            }
        }
        Err(e) => match ctx.on_failure(kind, item, &e) {
            OnFailure::Keep(note) => {
                decisions.push(Decision { stage, decision: "pass".into(), reason: note });
                StageFate::Passed
            }
            OnFailure::Drop(f) => {
                *fate = f;
                StageFate::Failed
            }
        },
    }
}

pub async fn chunk(ctx: &Ctx, chunk: &ChunkMeta, parts: Vec<ChunkPart>, document_path: &str) -> ChunkOutcome {
    let mut out = ChunkOutcome {
        id: chunk.id.clone(),
        document_id: chunk.document_id.clone(),
        fate: Fate::Accepted,
        calls: Vec::new(),
        decisions: Vec::new(),
    };
    let Some(stage) = ctx.stage(StageKind::ChunkFilter) else { return out };
    let input = ChunkFilterInput {
        chunk_id: chunk.id.clone(),
        document_path: document_path.to_string(),
        content: super::context::render(&parts),
        has_code: chunk.code_blocks > 0,
        has_images: !chunk.images.is_empty(),
        parts,
    };
    let mut conv = Conversation::new(stage, ctx.template(stage, None), &chunk.id, Vec::new());
    let reply = ctx
        .caller
        .ask(&mut conv, "user", &input.variables(), &|| to_value(&input), ReplySchema::decision(), &mut out.calls)
        .await;
    let here = decide(ctx, StageKind::ChunkFilter, &chunk.id, reply, &mut out.fate, &mut out.decisions);
    ctx.count(StageKind::ChunkFilter, here);
    out
}

pub fn to_value<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}
