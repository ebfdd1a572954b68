//! What each model-using stage receives, as data.
//!
//! Every stage builds one of these structures per item. Two things are derived from it: the
//! variables its template sees (exactly the names `sdc_compiler::schema::template_contract`
//! declares, so templates checked at lock time cannot meet a surprise here) and, for the builtin
//! generator, the structured inputs it reasons over. Keeping both views on one value means a
//! builtin answer and an LLM answer are produced from the same facts.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::ingest::chunk::ChunkPart;

/// An image as the stages see it: its normalised id and what the documents say about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub id: String,
    pub width: u32,
    pub height: u32,
    pub alt_text: String,
    pub caption: String,
    pub surrounding_text: String,
    /// The code cell whose output the image is, when it is one.
    pub code_context: String,
    pub document_path: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TranscribeInput {
    pub image: ImageInfo,
}

impl TranscribeInput {
    pub fn variables(&self) -> Value {
        let i = &self.image;
        json!({
            "alt_text": i.alt_text, "caption": i.caption, "surrounding_text": i.surrounding_text,
            "code_context": i.code_context, "document_path": i.document_path,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageFilterInput {
    pub image: ImageInfo,
    pub transcription: String,
    pub image_type: String,
}

impl ImageFilterInput {
    pub fn variables(&self) -> Value {
        let i = &self.image;
        json!({
            "transcription": self.transcription, "image_type": self.image_type, "alt_text": i.alt_text,
            "caption": i.caption, "surrounding_text": i.surrounding_text, "code_context": i.code_context,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkFilterInput {
    pub chunk_id: String,
    pub document_path: String,
    /// The chunk's text without image markers.
    pub content: String,
    pub has_code: bool,
    pub has_images: bool,
    pub parts: Vec<ChunkPart>,
}

impl ChunkFilterInput {
    pub fn variables(&self) -> Value {
        json!({
            "content": self.content, "document_path": self.document_path,
            "has_code": self.has_code, "has_images": self.has_images,
        })
    }
}

/// The chunk a task is grounded in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkView {
    pub id: String,
    pub document_id: String,
    pub document_path: String,
    pub document_title: Option<String>,
    pub heading: Option<String>,
    pub parts: Vec<ChunkPart>,
    pub prior_code: String,
    pub previous_text: String,
    pub next_text: String,
}

/// The image a multimodal task is about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetImage {
    pub id: String,
    pub alt_text: String,
    pub image_type: String,
    pub transcription: String,
    pub generating_code: String,
    pub surrounding_text: String,
}

/// A planned task: one chunk, optionally one of its images, one task type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskInput {
    pub task_id: String,
    pub question_type: String,
    pub chunk: ChunkView,
    pub image: Option<TargetImage>,
    /// The generation context (seed-pipeline.md §2.4, bounded), as the templates show it.
    pub context: String,
}

impl TaskInput {
    fn base(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("context".into(), json!(self.context));
        m.insert("question_type".into(), json!(self.question_type));
        m.insert("has_image".into(), json!(self.image.is_some()));
        m.insert("image_description".into(), json!(self.image.as_ref().map_or("", |i| i.transcription.as_str())));
        m
    }

    pub fn is_code(&self) -> bool {
        self.question_type != "qa"
    }
}

/// The plan stage's conversation so far.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanState {
    pub question: String,
    pub entry_point: String,
    pub test_code: String,
    pub error: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanInput {
    pub task: TaskInput,
    pub state: PlanState,
}

impl PlanInput {
    pub fn variables(&self) -> Value {
        let mut m = self.task.base();
        m.insert("code_context".into(), json!(self.task.image.as_ref().map_or("", |i| i.generating_code.as_str())));
        m.insert("question".into(), json!(self.state.question));
        m.insert("entry_point".into(), json!(self.state.entry_point));
        m.insert("test_code".into(), json!(self.state.test_code));
        m.insert("error".into(), json!(self.state.error));
        Value::Object(m)
    }
}

/// A planned question, as the later stages receive it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub question: String,
    pub entry_point: String,
    pub test_code: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CandidateFilterInput {
    pub task: TaskInput,
    pub candidate: Candidate,
}

impl CandidateFilterInput {
    pub fn variables(&self) -> Value {
        let mut m = self.task.base();
        m.insert("has_test".into(), json!(!self.candidate.test_code.is_empty()));
        m.insert("question".into(), json!(self.candidate.question));
        m.insert("test_code".into(), json!(self.candidate.test_code));
        m.insert("entry_point".into(), json!(self.candidate.entry_point));
        m.remove("image_description");
        Value::Object(m)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnswerInput {
    pub task: TaskInput,
    pub candidate: Candidate,
    pub previous_answer: String,
    pub error: String,
    /// 1 for the first answer; corrections count up.
    pub attempt: u64,
}

impl AnswerInput {
    pub fn variables(&self) -> Value {
        let mut m = self.task.base();
        m.insert("question".into(), json!(self.candidate.question));
        m.insert("entry_point".into(), json!(self.candidate.entry_point));
        m.insert("previous_answer".into(), json!(self.previous_answer));
        m.insert("error".into(), json!(self.error));
        m.insert("attempt".into(), json!(self.attempt));
        Value::Object(m)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurateInput {
    pub task: TaskInput,
    pub candidate: Candidate,
    pub answer: String,
}

impl CurateInput {
    pub fn variables(&self) -> Value {
        let mut m = self.task.base();
        m.insert("has_test".into(), json!(!self.candidate.test_code.is_empty()));
        m.insert("question".into(), json!(self.candidate.question));
        m.insert("answer".into(), json!(self.answer));
        m.insert("test_code".into(), json!(self.candidate.test_code));
        Value::Object(m)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CategoryInfo {
    pub name: String,
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassifyInput {
    pub task_id: String,
    pub categories: Vec<CategoryInfo>,
    pub question_type: String,
    pub question: String,
    pub answer: String,
    /// The heading of the chunk the item comes from, a hint for the builtin classifier.
    pub heading: Option<String>,
}

impl ClassifyInput {
    pub fn variables(&self) -> Value {
        json!({
            "categories": self.categories, "question_type": self.question_type,
            "question": self.question, "answer": self.answer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdc_compiler::schema::template_contract;
    use sdc_compiler::spec::{StageKind, TaskType};

    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        k.sort();
        k
    }

    fn contract(stage: StageKind) -> Vec<String> {
        let mut k: Vec<String> =
            template_contract(stage, Some(TaskType::Qa)).variables.iter().map(|s| s.to_string()).collect();
        k.sort();
        k
    }

    fn task() -> TaskInput {
        TaskInput {
            task_id: "t".into(),
            question_type: "qa".into(),
            chunk: ChunkView {
                id: "c".into(),
                document_id: "d".into(),
                document_path: "p".into(),
                document_title: None,
                heading: None,
                parts: vec![],
                prior_code: String::new(),
                previous_text: String::new(),
                next_text: String::new(),
            },
            image: None,
            context: "ctx".into(),
        }
    }

    /// Each stage gives its templates exactly the variables the compiler checked them against.
    #[test]
    fn variables_match_the_template_contract() {
        let image = ImageInfo {
            id: "i".into(),
            width: 1,
            height: 1,
            alt_text: String::new(),
            caption: String::new(),
            surrounding_text: String::new(),
            code_context: String::new(),
            document_path: String::new(),
        };
        let candidate = Candidate::default();
        let cases = [
            (StageKind::Transcribe, TranscribeInput { image: image.clone() }.variables()),
            (
                StageKind::ImageFilter,
                ImageFilterInput { image, transcription: String::new(), image_type: String::new() }.variables(),
            ),
            (
                StageKind::ChunkFilter,
                ChunkFilterInput {
                    chunk_id: String::new(),
                    document_path: String::new(),
                    content: String::new(),
                    has_code: false,
                    has_images: false,
                    parts: vec![],
                }
                .variables(),
            ),
            (StageKind::Plan, PlanInput { task: task(), state: PlanState::default() }.variables()),
            (
                StageKind::CandidateFilter,
                CandidateFilterInput { task: task(), candidate: candidate.clone() }.variables(),
            ),
            (
                StageKind::Answer,
                AnswerInput {
                    task: task(),
                    candidate: candidate.clone(),
                    previous_answer: String::new(),
                    error: String::new(),
                    attempt: 1,
                }
                .variables(),
            ),
            (StageKind::Curate, CurateInput { task: task(), candidate, answer: String::new() }.variables()),
            (
                StageKind::Classify,
                ClassifyInput {
                    task_id: String::new(),
                    categories: vec![],
                    question_type: String::new(),
                    question: String::new(),
                    answer: String::new(),
                    heading: None,
                }
                .variables(),
            ),
        ];
        for (stage, vars) in cases {
            assert_eq!(keys(&vars), contract(stage), "{stage:?}");
        }
    }
}
