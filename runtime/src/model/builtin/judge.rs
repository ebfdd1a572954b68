//! The builtin judges: explicit rules for the chunk filter, the candidate filter and curation.
//! Each returns `Ok(reason)` to pass or `Err(reason)` to reject; the reason names the rule.

use crate::build::inputs::{CandidateFilterInput, ChunkFilterInput, CurateInput};
use crate::ingest::chunk::ChunkPart;

/// Words that show a text is about the domain at all.
const DOMAIN_WORDS: &[&str] = &[
    "qubit",
    "quantum",
    "circuit",
    "qiskit",
    "gate",
    "operator",
    "statevector",
    "state",
    "measure",
    "hamiltonian",
    "pauli",
    "noise",
    "transpil",
    "sampler",
    "estimator",
    "backend",
    "entangle",
    "superposition",
    "unitary",
    "shots",
    "bloch",
    "fidelity",
    "density",
    "observable",
    "algorithm",
];

fn is_setup_line(line: &str) -> bool {
    let t = line.trim();
    t.is_empty()
        || t.starts_with('#')
        || t.starts_with("import ")
        || t.starts_with("from ")
        || t.starts_with('%')
        || t.starts_with('!')
        || t.starts_with("pip ")
}

pub fn chunk(input: &ChunkFilterInput) -> Result<String, String> {
    let mut prose = 0usize;
    let mut code_cells = 0usize;
    let mut setup_only = 0usize;
    for part in &input.parts {
        match part {
            ChunkPart::Text { text } | ChunkPart::Heading { text, .. } => prose += text.chars().count(),
            ChunkPart::Code { code, .. } => {
                code_cells += 1;
                if code.lines().all(is_setup_line) {
                    setup_only += 1;
                }
            }
            ChunkPart::Image { .. } => {}
        }
    }
    let chars = input.content.chars().count();
    if chars < 200 {
        return Err(format!("too short to ground a task ({chars} characters)"));
    }
    let lower = input.content.to_lowercase();
    if lower.contains("table of contents") || lower.starts_with("# references") || lower.starts_with("## references") {
        return Err("a table of contents or reference list".into());
    }
    if code_cells > 0 && setup_only == code_cells && prose < 300 {
        return Err("set-up only: imports and installation, little explanation".into());
    }
    let hits: Vec<&str> = DOMAIN_WORDS.iter().copied().filter(|w| lower.contains(w)).collect();
    if hits.is_empty() {
        return Err("not about quantum computing: none of the domain's words appear".into());
    }
    Ok(format!(
        "{} characters of material on {} with {code_cells} code cell{}",
        chars,
        hits.iter().take(3).copied().collect::<Vec<_>>().join(", "),
        if code_cells == 1 { "" } else { "s" }
    ))
}

pub fn candidate(input: &CandidateFilterInput) -> Result<String, String> {
    let c = &input.candidate;
    let q = c.question.trim();
    if q.chars().count() < 20 {
        return Err("the question is too short to be a task".into());
    }
    if input.task.is_code() {
        if c.entry_point.is_empty() || !q.contains(&c.entry_point) {
            return Err(format!("the question does not name its entry point `{}`", c.entry_point));
        }
        if !(c.test_code.contains("def check") && c.test_code.contains("assert")) {
            return Err("the test defines no `check` with assertions".into());
        }
    }
    if input.task.image.is_some() && !q.to_lowercase().contains("image") {
        return Err("a multimodal task whose question never refers to the image".into());
    }
    let lower = q.to_lowercase();
    for phrase in ["the context", "the material", "the tutorial", "the transcription", "the text above"] {
        if lower.contains(phrase) {
            return Err(format!("the question refers to \"{phrase}\", which the learner never sees"));
        }
    }
    Ok(match input.task.image {
        Some(_) => "self-contained task that refers to its image".into(),
        None => "self-contained task".into(),
    })
}

pub fn curate(input: &CurateInput) -> Result<String, String> {
    let a = input.answer.trim();
    let q = input.candidate.question.trim();
    if a.is_empty() {
        return Err("empty answer".into());
    }
    if input.task.is_code() {
        if a.lines().all(|l| l.trim().is_empty() || l.trim() == "pass") {
            return Err("the answer does nothing".into());
        }
    } else {
        let words = a.split_whitespace().count();
        if words < 25 {
            return Err(format!("a {words}-word answer explains too little"));
        }
        if q.len() > 20 && a.contains(q) {
            return Err("the answer repeats the question".into());
        }
    }
    if a.contains("http://") || a.contains("https://") {
        return Err("the answer contains a URL".into());
    }
    Ok("complete answer that addresses the question".into())
}
