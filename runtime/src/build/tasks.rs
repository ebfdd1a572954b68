//! One task through plan → candidate filter → answer (with verification) → curate → classify.
//!
//! Plan is a conversation: the task, its refinement and, for code tasks, a hidden test that is
//! checked before anyone answers — it must compile and must fail against a stub (the signature
//! with a `pass` body), or it goes back for correction. Answer is a conversation too: each
//! answer to a code task is run against the test and, on failure, the classified error goes back
//! to the model, up to the spec's `max_attempts`. A task whose answer never passes is rejected
//! with the last verdict; one whose call fails is failed (or stops the build) as its stage's
//! `on_failure` says.

use sdc_compiler::spec::{StageKind, TaskType};
use serde::{Deserialize, Serialize};

use super::Ctx;
use super::calls::{CallTrace, Conversation};
use super::inputs::{
    AnswerInput, Candidate, CandidateFilterInput, ClassifyInput, CurateInput, PlanInput, PlanState, TaskInput,
};
use super::items::{Decision, OnFailure, decide, to_value};
use super::outcome::{Fate, StageFate};
use super::replies::ReplySchema;
use super::spill::Slot;
use crate::verify::{Verdict, program};

/// How many times a test that fails validation goes back for correction.
pub const MAX_TEST_CORRECTIONS: u32 = 3;

/// One run of a verification, as provenance records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// `stub` (the quality gate) or `answer`.
    pub against: String,
    pub attempt: u32,
    pub code_sha256: String,
    pub verdict: Verdict,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub input: TaskInput,
    pub fate: Fate,
    pub candidate: Candidate,
    pub answer: String,
    pub category: String,
    pub calls: Vec<CallTrace>,
    pub decisions: Vec<Decision>,
    pub attempts: Vec<Attempt>,
}

/// What a build holds of a finished task: the fields that accounting, dedup, the split and
/// rejected rows group by, and where its record is in the spill file.
#[derive(Clone, Debug)]
pub struct TaskEntry {
    pub id: String,
    pub task_type: String,
    pub fate: Fate,
    pub category: String,
    pub document_id: String,
    pub document_path: String,
    pub image_id: Option<String>,
    pub slot: Slot,
}

impl TaskEntry {
    pub fn new(rec: &TaskRecord, slot: Slot) -> TaskEntry {
        TaskEntry {
            id: rec.input.task_id.clone(),
            task_type: rec.input.question_type.clone(),
            fate: rec.fate.clone(),
            category: rec.category.clone(),
            document_id: rec.input.chunk.document_id.clone(),
            document_path: rec.input.chunk.document_path.clone(),
            image_id: rec.input.image.as_ref().map(|i| i.id.clone()),
            slot,
        }
    }
}

impl TaskRecord {
    /// Drops what only the task stages read (chunk text, context, image descriptions) and keeps
    /// the ids and paths that packaging and provenance need.
    pub fn slim(&mut self) {
        let chunk = &mut self.input.chunk;
        chunk.parts = Vec::new();
        chunk.prior_code = String::new();
        chunk.previous_text = String::new();
        chunk.next_text = String::new();
        self.input.context = String::new();
        if let Some(image) = &mut self.input.image {
            image.transcription = String::new();
            image.generating_code = String::new();
            image.surrounding_text = String::new();
            image.alt_text = String::new();
        }
    }

    fn reject(&mut self, stage: StageKind, reason: impl Into<String>) -> StageFate {
        self.fate = Fate::Rejected { stage: stage.as_str().to_string(), reason: reason.into() };
        StageFate::Rejected
    }
}

pub async fn task(ctx: &Ctx, input: TaskInput) -> TaskRecord {
    let mut rec = TaskRecord {
        input,
        fate: Fate::Accepted,
        candidate: Candidate::default(),
        answer: String::new(),
        category: String::new(),
        calls: Vec::new(),
        decisions: Vec::new(),
        attempts: Vec::new(),
    };
    let steps: [(StageKind, bool); 5] = [
        (StageKind::Plan, true),
        (StageKind::CandidateFilter, false),
        (StageKind::Answer, true),
        (StageKind::Curate, false),
        (StageKind::Classify, false),
    ];
    for (kind, required) in steps {
        if ctx.stopped() {
            rec.fate = Fate::Failed { stage: kind.as_str().into(), error: "the build was stopped".into(), attempts: 0 };
            ctx.count(kind, StageFate::Failed);
            return rec;
        }
        if ctx.stage(kind).is_none() {
            if required {
                rec.reject(kind, format!("the spec has no `{}` stage", kind.as_str()));
                return rec;
            }
            continue;
        }
        let here = match kind {
            StageKind::Plan => plan(ctx, &mut rec).await,
            StageKind::CandidateFilter => candidate_filter(ctx, &mut rec).await,
            StageKind::Answer => answer(ctx, &mut rec).await,
            StageKind::Curate => curate(ctx, &mut rec).await,
            _ => classify(ctx, &mut rec).await,
        };
        ctx.count(kind, here);
        if here != StageFate::Passed {
            return rec;
        }
    }
    if rec.category.is_empty() {
        rec.category = "uncategorized".into();
    }
    rec
}

fn task_type(rec: &TaskRecord) -> Option<TaskType> {
    TaskType::parse(&rec.input.question_type)
}

fn failed(ctx: &Ctx, rec: &mut TaskRecord, kind: StageKind, error: &super::calls::CallError) -> StageFate {
    match ctx.on_failure(kind, &rec.input.task_id, error) {
        OnFailure::Keep(_) | OnFailure::Drop(_) => {
            // Attempts are the requests the failed call sent; earlier turns of the conversation
            // (corrections, verification attempts) are in the record's calls and attempts.
            let attempts = error.attempts();
            rec.fate = Fate::Failed { stage: kind.as_str().into(), error: error.to_string(), attempts };
            StageFate::Failed
        }
    }
}

async fn plan(ctx: &Ctx, rec: &mut TaskRecord) -> StageFate {
    let Some(stage) = ctx.stage(StageKind::Plan) else { return StageFate::Failed };
    let code = rec.input.is_code();
    let mut input = PlanInput { task: rec.input.clone(), state: PlanState::default() };
    let mut conv = Conversation::new(stage, ctx.template(stage, task_type(rec)), &rec.input.task_id, Vec::new());
    // The task, then its refinement.
    for step in ["user", "refine"] {
        match ask(ctx, &mut conv, step, &input, ReplySchema::question(code), &mut rec.calls).await {
            Ok(r) => {
                let question = r.get("question").trim().to_string();
                if question.is_empty() {
                    let why = r.note.unwrap_or_else(|| format!("the model returned an empty question at `{step}`"));
                    return rec.reject(StageKind::Plan, why);
                }
                input.state.question = question;
                if code {
                    input.state.entry_point = r.get("entry_point").trim().to_string();
                }
            }
            Err(e) => return failed(ctx, rec, StageKind::Plan, &e),
        }
    }
    if code && !is_identifier(&input.state.entry_point) {
        return rec.reject(
            StageKind::Plan,
            format!("the entry point {:?} is not a Python identifier", input.state.entry_point),
        );
    }
    if code {
        // The hidden test, checked against a stub before anyone answers.
        let mut step = "test";
        let mut previous = String::new();
        let mut corrections = 0;
        loop {
            let test = match ask(ctx, &mut conv, step, &input, ReplySchema::test(), &mut rec.calls).await {
                Ok(r) if r.get("test_code").trim().is_empty() => {
                    let why = r.note.unwrap_or_else(|| "the model returned an empty test".into());
                    return rec.reject(StageKind::Plan, why);
                }
                Ok(r) => r.get("test_code").to_string(),
                Err(e) => return failed(ctx, rec, StageKind::Plan, &e),
            };
            let problem = match ctx.check_test(rec, &input.state.question, &input.state.entry_point, &test).await {
                Ok(problem) => problem,
                Err(e) => {
                    ctx.stop(e.clone());
                    rec.fate = Fate::Failed { stage: "plan".into(), error: e, attempts: corrections + 1 };
                    return StageFate::Failed;
                }
            };
            match problem {
                None => {
                    input.state.test_code = test;
                    break;
                }
                Some(problem) if corrections >= MAX_TEST_CORRECTIONS || test == previous => {
                    return rec.reject(StageKind::Plan, format!("the test failed validation: {problem}"));
                }
                Some(problem) => {
                    corrections += 1;
                    previous = test.clone();
                    input.state.test_code = test;
                    input.state.error = problem;
                    step = "test_correction";
                }
            }
        }
    }
    rec.candidate = Candidate {
        question: input.state.question,
        entry_point: input.state.entry_point,
        test_code: input.state.test_code,
    };
    StageFate::Passed
}

async fn ask(
    ctx: &Ctx,
    conv: &mut Conversation<'_>,
    step: &str,
    input: &PlanInput,
    schema: &ReplySchema,
    calls: &mut Vec<CallTrace>,
) -> Result<super::calls::Reply, super::calls::CallError> {
    ctx.caller.ask(conv, step, &input.variables(), &|| to_value(input), schema, calls).await
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_') && chars.all(|c| c.is_alphanumeric() || c == '_')
}

async fn candidate_filter(ctx: &Ctx, rec: &mut TaskRecord) -> StageFate {
    let input = CandidateFilterInput { task: rec.input.clone(), candidate: rec.candidate.clone() };
    judge(ctx, rec, StageKind::CandidateFilter, input.variables(), to_value(&input)).await
}

/// A pass/reject stage: one `user` step with the decision schema; a missing stage passes.
async fn judge(
    ctx: &Ctx,
    rec: &mut TaskRecord,
    kind: StageKind,
    vars: serde_json::Value,
    inputs: serde_json::Value,
) -> StageFate {
    let Some(stage) = ctx.stage(kind) else { return StageFate::Passed };
    let mut conv = Conversation::new(stage, ctx.template(stage, task_type(rec)), &rec.input.task_id, Vec::new());
    let reply =
        ctx.caller.ask(&mut conv, "user", &vars, &|| inputs.clone(), ReplySchema::decision(), &mut rec.calls).await;
    let id = rec.input.task_id.clone();
    decide(ctx, kind, &id, reply, &mut rec.fate, &mut rec.decisions)
}

async fn answer(ctx: &Ctx, rec: &mut TaskRecord) -> StageFate {
    let Some(stage) = ctx.stage(StageKind::Answer) else { return StageFate::Failed };
    let max_attempts = ctx.plan.verify.as_ref().map_or(1, |v| v.max_attempts.max(1)) as u32;
    let mut input = AnswerInput {
        task: rec.input.clone(),
        candidate: rec.candidate.clone(),
        previous_answer: String::new(),
        error: String::new(),
        attempt: 1,
    };
    let mut conv = Conversation::new(stage, ctx.template(stage, task_type(rec)), &rec.input.task_id, Vec::new());
    let mut last_verdict: Option<Verdict> = None;
    for attempt in 1..=max_attempts {
        input.attempt = u64::from(attempt);
        let step = if attempt == 1 { "user" } else { "correction" };
        let reply = ctx
            .caller
            .ask(&mut conv, step, &input.variables(), &|| to_value(&input), ReplySchema::answer(), &mut rec.calls)
            .await;
        let answer = match reply {
            Ok(r) if r.get("answer").trim().is_empty() => {
                let why = r.note.unwrap_or_else(|| "the model returned an empty answer".into());
                return rec.reject(StageKind::Answer, why);
            }
            Ok(r) => r.get("answer").to_string(),
            Err(e) => return failed(ctx, rec, StageKind::Answer, &e),
        };
        if attempt > 1 && answer == input.previous_answer {
            // The same answer again cannot pass where it failed.
            break;
        }
        if !rec.input.is_code() {
            rec.answer = answer;
            return StageFate::Passed;
        }
        let q = &rec.candidate;
        let solution = program::solution(&rec.input.question_type, &q.question, &answer);
        let verdict = match ctx.run_verification(rec, "answer", attempt, &solution).await {
            Ok(v) => v,
            Err(e) => {
                ctx.stop(e.clone());
                rec.fate = Fate::Failed { stage: "answer".into(), error: e, attempts: attempt };
                return StageFate::Failed;
            }
        };
        if verdict.passed() {
            rec.answer = answer;
            return StageFate::Passed;
        }
        input.previous_answer = answer;
        input.error = format!("{}\n{}", verdict.summary(), verdict.message).trim().to_string();
        last_verdict = Some(verdict);
    }
    let tries = rec.attempts.iter().filter(|a| a.against == "answer").count();
    let last = last_verdict.map_or_else(|| "no verdict".to_string(), |v| v.summary());
    rec.reject(StageKind::Answer, format!("the answer failed verification {tries} time(s); last: {last}"))
}

async fn curate(ctx: &Ctx, rec: &mut TaskRecord) -> StageFate {
    let input = CurateInput { task: rec.input.clone(), candidate: rec.candidate.clone(), answer: rec.answer.clone() };
    judge(ctx, rec, StageKind::Curate, input.variables(), to_value(&input)).await
}

async fn classify(ctx: &Ctx, rec: &mut TaskRecord) -> StageFate {
    let Some(stage) = ctx.stage(StageKind::Classify) else { return StageFate::Passed };
    let input = ClassifyInput {
        task_id: rec.input.task_id.clone(),
        categories: ctx.categories.clone(),
        question_type: rec.input.question_type.clone(),
        question: rec.candidate.question.clone(),
        answer: rec.answer.clone(),
        heading: rec.input.chunk.heading.clone(),
    };
    let names: Vec<String> = ctx.categories.iter().map(|c| c.name.clone()).collect();
    let mut conv = Conversation::new(stage, ctx.template(stage, task_type(rec)), &rec.input.task_id, Vec::new());
    let reply = ctx
        .caller
        .ask(
            &mut conv,
            "user",
            &input.variables(),
            &|| to_value(&input),
            &ReplySchema::category(&names),
            &mut rec.calls,
        )
        .await;
    match reply {
        Ok(r) => {
            rec.category = r.get("category").to_string();
            StageFate::Passed
        }
        Err(e) => failed(ctx, rec, StageKind::Classify, &e),
    }
}
