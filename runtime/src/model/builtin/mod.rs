//! `builtin/rules`: sdc's deterministic, rule-based stand-in for every model-using stage.
//!
//! It exists so that a build works on a fresh clone with no keys and no network, and so that
//! tests exercise the whole pipeline offline. It reads the stage's structured inputs (never the
//! rendered prompt text) and answers in exactly the JSON the stage's schema asks an LLM for, so
//! its replies go through the same store, validation, verification, accounting and provenance.
//! What it does per stage:
//!
//! - transcribe: a description assembled from the alt text, caption, surrounding text and the
//!   generating code, with the image type guessed from the code and the words around it;
//! - image, chunk and candidate filters and curation: explicit heuristics, each rejection with
//!   the rule that fired as its reason;
//! - plan and answer: task mining — function completion from real functions with docstrings,
//!   code generation from a function's code and the prose that introduces it, tests that re-run
//!   the cell's own demo code and compare with the output recorded in the notebook, QA from a
//!   section's prose (or, for images, from what the document says about the image);
//! - classify: keyword scoring over the spec's category descriptions.
//!
//! Its version is part of the resolved model id in the lock; [`REVISION`] is part of every
//! request it answers, so a change of its rules never reuses an older answer.

mod classify;
mod describe;
mod judge;
mod mining;
pub mod python;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{BuiltinCall, ChatRequest, ChatResponse, Usage, estimate_tokens};
use crate::build::inputs::{
    AnswerInput, CandidateFilterInput, ChunkFilterInput, ClassifyInput, CurateInput, ImageFilterInput, PlanInput,
    TranscribeInput,
};

/// Bumped whenever a rule changes what the generator answers.
pub const REVISION: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum BuiltinError {
    #[error("the builtin generator has no rules for stage `{stage}`, step `{step}`")]
    Unknown { stage: String, step: String },
    #[error("the builtin generator received malformed inputs for `{stage}`: {message}")]
    Inputs { stage: String, message: String },
}

/// Answers a request addressed to the builtin generator.
pub fn complete(request: &ChatRequest) -> Result<ChatResponse, BuiltinError> {
    let Some(call) = &request.builtin else {
        return Err(BuiltinError::Unknown { stage: "?".into(), step: "?".into() });
    };
    let (content, note) = respond(call)?;
    let prompt_chars = request.text_chars();
    Ok(ChatResponse {
        usage: Usage {
            prompt_tokens: estimate_tokens(prompt_chars),
            completion_tokens: estimate_tokens(content.chars().count()),
        },
        content,
        model: request.model.clone(),
        system_fingerprint: Some(format!("rules-r{REVISION}")),
        finish_reason: Some(note.map_or_else(|| "stop".to_string(), |n| format!("stop: {n}"))),
    })
}

fn inputs<T: DeserializeOwned>(call: &BuiltinCall) -> Result<T, BuiltinError> {
    serde_json::from_value(call.inputs.clone())
        .map_err(|e| BuiltinError::Inputs { stage: call.stage.clone(), message: e.to_string() })
}

/// The reply's JSON and, when the generator declined or guessed, a note saying why.
fn respond(call: &BuiltinCall) -> Result<(String, Option<String>), BuiltinError> {
    let reply = |v: Value| v.to_string();
    match (call.stage.as_str(), call.step.as_str()) {
        ("transcribe", "user") => {
            let input: TranscribeInput = inputs(call)?;
            let (image_type, transcription) = describe::transcribe(&input.image);
            Ok((reply(json!({"image_type": image_type, "transcription": transcription})), None))
        }
        ("image_filter", "user") => {
            let input: ImageFilterInput = inputs(call)?;
            Ok((decision(describe::filter(&input)), None))
        }
        ("chunk_filter", "user") => {
            let input: ChunkFilterInput = inputs(call)?;
            Ok((decision(judge::chunk(&input)), None))
        }
        ("plan", step) => {
            let input: PlanInput = inputs(call)?;
            match step {
                "user" | "refine" => {
                    let mined = mining::mine(&input.task);
                    match (step, &mined) {
                        // Refinement keeps a question it finds acceptable; the rules wrote it.
                        ("refine", _) if !input.state.question.is_empty() => {
                            Ok((question_reply(&input, &input.state.question, &input.state.entry_point), None))
                        }
                        (_, Ok(m)) => Ok((question_reply(&input, &m.question, &m.entry_point), None)),
                        (_, Err(why)) => Ok((question_reply(&input, "", ""), Some(why.clone()))),
                    }
                }
                "test" | "test_correction" => match mining::mine(&input.task) {
                    // A correction cannot do better than the test the outputs imply; the same
                    // test again ends the correction loop.
                    Ok(m) => Ok((reply(json!({"test_code": m.test_code})), None)),
                    Err(why) => Ok((reply(json!({"test_code": ""})), Some(why))),
                },
                _ => Err(BuiltinError::Unknown { stage: call.stage.clone(), step: step.to_string() }),
            }
        }
        ("candidate_filter", "user") => {
            let input: CandidateFilterInput = inputs(call)?;
            Ok((decision(judge::candidate(&input)), None))
        }
        ("answer", "user" | "correction") => {
            let input: AnswerInput = inputs(call)?;
            match mining::answer(&input.task, &input.candidate) {
                Ok(answer) => Ok((reply(json!({"answer": answer})), None)),
                Err(why) => Ok((reply(json!({"answer": ""})), Some(why))),
            }
        }
        ("curate", "user") => {
            let input: CurateInput = inputs(call)?;
            Ok((decision(judge::curate(&input)), None))
        }
        ("classify", "user") => {
            let input: ClassifyInput = inputs(call)?;
            Ok((reply(json!({"category": classify::classify(&input)})), None))
        }
        (stage, step) => Err(BuiltinError::Unknown { stage: stage.to_string(), step: step.to_string() }),
    }
}

/// A category guess for a chunk's text, by the same keyword scoring the classify stage uses;
/// allocation balances categories with it before any item is classified.
pub fn category_hint(
    categories: &[crate::build::inputs::CategoryInfo],
    id: &str,
    text: &str,
    heading: Option<&str>,
) -> String {
    classify::classify(&ClassifyInput {
        task_id: id.to_string(),
        categories: categories.to_vec(),
        question_type: String::new(),
        question: text.to_string(),
        answer: String::new(),
        heading: heading.map(str::to_string),
    })
}

fn question_reply(input: &PlanInput, question: &str, entry_point: &str) -> String {
    if input.task.is_code() {
        json!({"question": question, "entry_point": entry_point}).to_string()
    } else {
        json!({"question": question}).to_string()
    }
}

/// A filter's verdict: `Ok(reason)` passes, `Err(reason)` rejects.
fn decision(verdict: Result<String, String>) -> String {
    match verdict {
        Ok(reason) => json!({"reason": reason, "decision": "pass"}),
        Err(reason) => json!({"reason": reason, "decision": "reject"}),
    }
    .to_string()
}
