//! Task mining: questions, tests and answers taken from the documents themselves.
//!
//! - Function completion: a top-level function with a docstring becomes a stub (its imports,
//!   header and docstring, body `pass`); the answer is its body.
//! - Code generation: the prose that introduces the function and its docstring's summary become a
//!   task ending in the usual "You must implement this using a function named …" sentence; the
//!   answer is the function with its imports.
//! - Tests: the cell's own demo code (the statements that call the function and print), run
//!   against the candidate, must print exactly what the notebook recorded. So a test fails on a
//!   stub, passes on the original, and means something: the output is the documents' own.
//! - Multimodal code tasks use a circuit image whose generating cell draws the result of a mined
//!   function; the stub's docstring (or the task) says the circuit is the one in the image.
//! - QA: a definitional sentence ("X is …") or the section heading becomes the question and the
//!   section's prose the answer; about an image, the question asks what the image shows and the
//!   answer is what the document says about it.
//!
//! Everything is a deterministic function of the task's inputs; when the rules find nothing to
//! mine they say why, and the stage records that as the task's rejection.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use super::python::{self, BUILTINS, Function};
use crate::build::inputs::{Candidate, TaskInput};
use crate::ingest::chunk::ChunkPart;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mined {
    pub question: String,
    pub entry_point: String,
    pub test_code: String,
}

/// A code cell of the chunk: index among the chunk's parts, code, outputs, produced images.
struct Cell<'a> {
    index: usize,
    code: &'a str,
    outputs: &'a [String],
    images: &'a [String],
}

fn cells(task: &TaskInput) -> Vec<Cell<'_>> {
    task.chunk
        .parts
        .iter()
        .enumerate()
        .filter_map(|(index, p)| match p {
            ChunkPart::Code { language, code, outputs, images }
                if language.as_deref().is_none_or(|l| l.eq_ignore_ascii_case("python") || l == "py") =>
            {
                Some(Cell { index, code, outputs, images })
            }
            _ => None,
        })
        .collect()
}

/// A pseudo-random index for a task's choices: the same task always picks the same.
fn pick(task_id: &str, salt: &str, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let d = Sha256::digest(format!("{task_id}\0{salt}").as_bytes());
    (u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]) % n as u64) as usize
}

pub fn mine(task: &TaskInput) -> Result<Mined, String> {
    match task.question_type.as_str() {
        "function_completion" | "code_generation" => mine_code(task),
        _ => {
            mine_qa(task).map(|(question, _)| Mined { question, entry_point: String::new(), test_code: String::new() })
        }
    }
}

pub fn answer(task: &TaskInput, candidate: &Candidate) -> Result<String, String> {
    match task.question_type.as_str() {
        "function_completion" | "code_generation" => {
            let source = find_function(task, &candidate.entry_point)
                .ok_or_else(|| format!("no function `{}` in the material", candidate.entry_point))?;
            let f = &source.function;
            Ok(if task.question_type == "function_completion" {
                f.body.clone()
            } else {
                with_imports(&imports_for(task, &f.source), &f.source)
            })
        }
        _ => mine_qa(task).map(|(_, answer)| answer),
    }
}

// ---------------------------------------------------------------------------------------------
// Code tasks

struct Source {
    function: Function,
    /// Index of the cell that defines the function among [`cells`]; `None` when the function
    /// comes from the document's earlier code (a chunk may draw what an earlier one defined).
    cell: Option<usize>,
}

/// Functions defined in the chunk's cells, in order.
fn chunk_functions(task: &TaskInput) -> Vec<Source> {
    cells(task)
        .iter()
        .enumerate()
        .flat_map(|(k, c)| {
            python::functions(c.code).into_iter().map(move |function| Source { function, cell: Some(k) })
        })
        .collect()
}

/// The chunk's functions, then those of the earlier code it does not redefine.
fn functions_in_scope(task: &TaskInput) -> Vec<Source> {
    let mut out = chunk_functions(task);
    for function in python::functions(&task.chunk.prior_code) {
        if !out.iter().any(|s| s.function.name == function.name) {
            out.push(Source { function, cell: None });
        }
    }
    out
}

fn find_function(task: &TaskInput, name: &str) -> Option<Source> {
    functions_in_scope(task).into_iter().find(|s| s.function.name == name)
}

fn mine_code(task: &TaskInput) -> Result<Mined, String> {
    let documented = |s: &Source| s.function.docstring.is_some();
    let sources: Vec<Source> = match &task.image {
        Some(image) => {
            let produced =
                produced_function(task, &image.id).ok_or("no mined function produced the image's circuit")?;
            let found: Vec<Source> =
                functions_in_scope(task).into_iter().filter(|s| s.function.name == produced).collect();
            if !found.iter().any(documented) {
                return Err(format!("the function `{produced}` that drew the image has no docstring"));
            }
            found.into_iter().filter(documented).collect()
        }
        None => chunk_functions(task).into_iter().filter(documented).collect(),
    };
    if sources.is_empty() {
        return Err("no function with a docstring in this chunk".into());
    }
    // Prefer functions whose recorded output gives a test; among them pick per task.
    let mut why = String::new();
    let mut tested: Vec<(Source, String)> = Vec::new();
    for s in sources {
        match test_for(task, &s).or_else(|e| reference_test(task, &s).map_err(|_| e)) {
            Ok(t) => tested.push((s, t)),
            Err(e) => why = e,
        }
    }
    if tested.is_empty() {
        return Err(format!("nothing to test a mined function against: {why}"));
    }
    let (source, test_code) = tested.swap_remove(pick(&task.task_id, "function", tested.len()));
    let f = &source.function;
    self_contained(task, f)?;
    let question = if task.question_type == "function_completion" {
        stub(task, f)
    } else {
        code_generation_question(task, &source)
    };
    Ok(Mined { question, entry_point: f.name.clone(), test_code })
}

/// The function whose result the image's generating cell draws: `x.draw()` where `x = f(…)`
/// (assigned in an earlier cell or earlier code), or a call `f(…).draw()`.
fn produced_function(task: &TaskInput, image_id: &str) -> Option<String> {
    let cells = cells(task);
    let at = cells.iter().position(|c| c.images.iter().any(|i| i == image_id))?;
    let functions: Vec<String> = functions_in_scope(task).into_iter().map(|s| s.function.name).collect();
    let drawing = cells[at].code;
    let used = python::names_used(drawing);
    if let Some(f) = functions.iter().find(|f| used.contains(*f)) {
        return Some(f.clone());
    }
    let earlier = std::iter::once(task.chunk.prior_code.as_str()).chain(cells[..=at].iter().map(|c| c.code));
    let assignments: Vec<(String, String)> = earlier.flat_map(top_level_assignments).collect();
    for (target, value) in assignments.iter().rev() {
        if used.contains(target) {
            let called = python::names_used(value);
            if let Some(f) = functions.iter().find(|f| called.contains(*f)) {
                return Some(f.clone());
            }
        }
    }
    None
}

/// Top-level assignments `name = value` of a piece of code, in order; a value whose brackets
/// open over several lines (`backend = GenericBackendV2(\n    num_qubits=7,\n)`) is one statement.
fn top_level_assignments(code: &str) -> Vec<(String, String)> {
    let depth = |s: &str| {
        s.chars().filter(|c| matches!(c, '(' | '[' | '{')).count() as i64
            - s.chars().filter(|c| matches!(c, ')' | ']' | '}')).count() as i64
    };
    let mut out = Vec::new();
    let mut lines = code.lines();
    while let Some(line) = lines.next() {
        if line.starts_with([' ', '\t', '#']) {
            continue;
        }
        let Some((target, value)) = line.split_once('=') else { continue };
        let target = target.trim();
        let plain = !target.is_empty() && target.chars().all(|c| c.is_alphanumeric() || c == '_');
        if !plain || value.starts_with('=') || value.trim().is_empty() {
            continue;
        }
        let mut statement = format!("{target} = {}", value.trim());
        let mut open = depth(value);
        while open > 0 {
            let Some(more) = lines.next() else { break };
            statement.push('\n');
            statement.push_str(more);
            open += depth(more);
        }
        if open == 0 {
            out.push((target.to_string(), statement));
        }
    }
    out
}

/// Every name the function uses is a parameter, a local, an import of the chunk or a builtin:
/// otherwise neither the stub nor the answer could stand alone.
fn self_contained(task: &TaskInput, f: &Function) -> Result<(), String> {
    let mut known: BTreeSet<String> = BUILTINS.iter().map(|s| s.to_string()).collect();
    known.extend(f.params.iter().map(|p| p.name.clone()));
    known.insert(f.name.clone());
    known.extend(python::assigned_names(&f.body));
    for statement in all_imports(task) {
        known.extend(python::imported_names(&statement));
    }
    let missing: Vec<String> = python::names_used(&f.body).into_iter().filter(|n| !known.contains(n)).collect();
    match missing.first() {
        None => Ok(()),
        Some(name) => Err(format!("`{}` uses `{name}`, which is defined outside the function and its imports", f.name)),
    }
}

/// Import statements of the document's earlier code and of the chunk's cells, in order, once.
fn all_imports(task: &TaskInput) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let code = std::iter::once(task.chunk.prior_code.as_str()).chain(cells(task).into_iter().map(|c| c.code));
    for c in code {
        for statement in python::imports(c) {
            if !out.contains(&statement) {
                out.push(statement);
            }
        }
    }
    out
}

/// The import statements a piece of code needs (those binding a name it uses).
fn imports_for(task: &TaskInput, code: &str) -> Vec<String> {
    let used = python::names_used(code);
    all_imports(task)
        .into_iter()
        .filter(|statement| python::imported_names(statement).iter().any(|n| used.contains(n)))
        .collect()
}

fn with_imports(imports: &[String], code: &str) -> String {
    if imports.is_empty() { code.to_string() } else { format!("{}\n\n\n{code}", imports.join("\n")) }
}

fn stub(task: &TaskInput, f: &Function) -> String {
    let mut doc = f.docstring_source.clone().unwrap_or_default();
    if task.image.is_some() {
        doc = with_image_note(&doc);
    }
    let code = format!("{}\n{doc}\n    pass", f.header);
    with_imports(&imports_for(task, &f.source), &code)
}

/// The docstring with a closing paragraph saying the circuit is the one in the image.
fn with_image_note(doc: &str) -> String {
    const NOTE: &str = "The circuit it returns is the one shown in the image.";
    let quote = if doc.contains("\"\"\"") { "\"\"\"" } else { "'''" };
    let Some(close) = doc.rfind(quote) else { return doc.to_string() };
    let before = doc[..close].trim_end();
    let indent: String = doc.chars().take_while(|c| c.is_whitespace()).collect();
    if before.trim_start().len() <= quote.len() + 1 || !doc.trim_start()[3..].contains(quote) {
        return doc.to_string();
    }
    format!("{before}\n\n{indent}{NOTE}\n{indent}{quote}")
}

fn code_generation_question(task: &TaskInput, source: &Source) -> String {
    let f = &source.function;
    let mut text = String::new();
    if task.image.is_some() {
        text.push_str("Write a function that builds the circuit shown in the image. ");
    } else {
        let cells = cells(task);
        let intro = source.cell.and_then(|k| cells.get(k)).and_then(|c| intro_before(task, c.index));
        if let Some(intro) = intro {
            text.push_str(&intro);
            text.push(' ');
        }
    }
    let summary = f.summary();
    if !summary.is_empty() {
        text.push_str(&summary);
        if !summary.ends_with('.') {
            text.push('.');
        }
        text.push(' ');
    }
    let args: Vec<String> = f
        .params
        .iter()
        .map(|p| {
            let ann =
                p.annotation.as_deref().map(|a| format!(" ({a}{})", if p.has_default { ", optional" } else { "" }));
            format!("`{}`{}", p.name, ann.unwrap_or_default())
        })
        .collect();
    if args.is_empty() {
        text.push_str(&format!("You must implement this using a function named `{}` with no arguments.", f.name));
    } else {
        text.push_str(&format!(
            "You must implement this using a function named `{}` with the following arguments: {}.",
            f.name,
            args.join(", ")
        ));
    }
    if let Some(r) = &f.returns {
        text.push_str(&format!(" It returns a `{r}`."));
    }
    text
}

/// The prose just before the part at `index`, cut to its last two sentences.
fn intro_before(task: &TaskInput, index: usize) -> Option<String> {
    let text = task.chunk.parts[..index].iter().rev().find_map(|p| match p {
        ChunkPart::Text { text } => Some(plain(text)),
        _ => None,
    })?;
    let sentences = sentences(&text);
    let n = sentences.len();
    let keep = sentences[n.saturating_sub(2)..].join(" ");
    let keep = keep.trim_end_matches(':').trim().to_string();
    (keep.chars().count() >= 20).then_some(keep)
}

/// How printed output is compared: notebooks store outputs with trailing spaces stripped, and
/// `-0.0` against `0.0` is a numerical library's rounding, not a different answer.
const NORMAL_OUTPUT: &str = "\n\ndef _normal(text):\n    lines = [line.rstrip() for line in text.strip().splitlines()]\n    return re.sub(r\"(?<![\\w.])-(0\\.0+)(?![0-9])\", r\"\\1\", \"\\n\".join(lines))\n";

/// The test: the cell's own demo code, run against the candidate, must print what the notebook
/// recorded.
fn test_for(task: &TaskInput, source: &Source) -> Result<String, String> {
    let cells = cells(task);
    let name = &source.function.name;
    // Demo code: the rest of the defining cell, else a later cell of the chunk.
    let first_later = source.cell.map_or(0, |k| k + 1);
    let same = source
        .cell
        .and_then(|k| cells.get(k))
        .map(|c| (c.index, python::statements_outside_functions(c.code), c.outputs));
    let later = cells.iter().skip(first_later).map(|c| (c.index, c.code.to_string(), c.outputs));
    // Names bound to the function's result in earlier code (`bell = bell_pair()`) count as uses.
    let prior_assignments = top_level_assignments(&task.chunk.prior_code);
    let earlier = |at: usize| -> Vec<(String, String)> {
        prior_assignments
            .iter()
            .cloned()
            .chain(cells.iter().filter(|c| c.index < at).flat_map(|c| top_level_assignments(c.code)))
            .collect()
    };
    let (demo_at, demo, outputs) = same
        .into_iter()
        .chain(later)
        .find(|(at, demo, outputs)| {
            let used = python::names_used(demo);
            let via = earlier(*at).iter().any(|(t, v)| used.contains(t) && python::names_used(v).contains(name));
            (used.contains(name) || via)
                && !outputs.is_empty()
                && demo.contains("print(")
                && !python::ends_with_bare_expression(demo)
                && python::functions(demo).is_empty()
        })
        .ok_or_else(|| format!("no demo code that calls `{name}` and prints"))?;
    let expected = outputs.join("\n").trim().to_string();
    if expected.is_empty() || expected.len() > 4000 {
        return Err("the recorded output is empty or too long to compare".into());
    }
    // What the demo needs besides the candidate: imports, earlier values, helper functions.
    let imports = all_imports(task);
    let mut known: BTreeSet<String> = BUILTINS.iter().map(|s| s.to_string()).collect();
    for statement in &imports {
        known.extend(python::imported_names(statement));
    }
    known.insert(name.clone());
    known.extend(python::assigned_names(&demo));
    let assignments = earlier(demo_at);
    let definitions: Vec<Function> =
        functions_in_scope(task).into_iter().map(|s| s.function).filter(|f| f.name != *name).collect();
    let mut helpers: Vec<String> = Vec::new();
    let mut values: Vec<String> = Vec::new();
    let mut needed: Vec<String> = python::names_used(&demo).into_iter().filter(|n| !known.contains(n)).collect();
    while let Some(n) = needed.pop() {
        if known.contains(&n) {
            continue;
        }
        known.insert(n.clone());
        if let Some((_, statement)) = assignments.iter().rev().find(|(t, _)| *t == n) {
            needed.extend(python::names_used(statement).into_iter().filter(|m| !known.contains(m)));
            values.insert(0, statement.clone());
        } else if let Some(def) = definitions.iter().find(|f| f.name == n) {
            // The helper's parameters and locals are known inside it only: a demo that uses a
            // global `backend` is not satisfied by a helper's parameter of that name.
            let mut local: BTreeSet<String> = def.params.iter().map(|p| p.name.clone()).collect();
            local.extend(python::assigned_names(&def.body));
            needed
                .extend(python::names_used(&def.body).into_iter().filter(|m| !known.contains(m) && !local.contains(m)));
            helpers.insert(0, def.source.clone());
        } else {
            return Err(format!("the demo code uses `{n}`, which this chunk does not define"));
        }
    }
    let literal = serde_json::to_string(&expected).unwrap_or_default();
    let setup: String = values.iter().map(|v| format!("    {v}\n")).collect();
    let body: String =
        demo.lines().map(|l| if l.is_empty() { String::new() } else { format!("        {l}\n") }).collect();
    let used: BTreeSet<String> = python::names_used(&demo)
        .into_iter()
        .chain(helpers.iter().flat_map(|h| python::names_used(h)))
        .chain(values.iter().flat_map(|v| python::names_used(v)))
        .collect();
    let mut test = String::from("import contextlib\nimport io\nimport re\n");
    for statement in imports.iter().filter(|s| python::imported_names(s).iter().any(|n| used.contains(n))) {
        test.push_str(statement);
        test.push('\n');
    }
    test.push_str(NORMAL_OUTPUT);
    for h in &helpers {
        test.push_str("\n\n");
        test.push_str(h);
        test.push('\n');
    }
    test.push_str(&format!(
        "\n\ndef check(candidate):\n    {name} = candidate\n{setup}    out = io.StringIO()\n    with contextlib.redirect_stdout(out):\n{body}    printed = _normal(out.getvalue())\n    expected = _normal({literal})\n    assert printed == expected, f\"printed {{printed!r}}, expected {{expected!r}}\"\n"
    ));
    Ok(test)
}

/// For a function that builds a circuit and needs no arguments: a test comparing the candidate's
/// circuit with the documented function's own, by size and by unitary (final measurements
/// removed). Used when no printed output gives a test.
fn reference_test(task: &TaskInput, source: &Source) -> Result<String, String> {
    let f = &source.function;
    let circuit = f.returns.as_deref().is_some_and(|r| r.contains("QuantumCircuit"));
    if !circuit || f.params.iter().any(|p| !p.has_default) {
        return Err(format!("`{}` is not a circuit-building function without required arguments", f.name));
    }
    let reference = format!("_reference_{}", f.name);
    let source_code = f.source.replacen(&format!("def {}(", f.name), &format!("def {reference}("), 1);
    let imports: String = imports_for(task, &f.source).iter().map(|i| format!("{i}\n")).collect();
    Ok(format!(
        "{imports}from qiskit.quantum_info import Operator\n\n\n{source_code}\n\n\ndef check(candidate):\n    got, want = candidate(), {reference}()\n    assert got.num_qubits == want.num_qubits, f\"{{got.num_qubits}} qubits, expected {{want.num_qubits}}\"\n    assert got.num_clbits == want.num_clbits, f\"{{got.num_clbits}} classical bits, expected {{want.num_clbits}}\"\n    a = got.remove_final_measurements(inplace=False)\n    b = want.remove_final_measurements(inplace=False)\n    assert Operator(a).equiv(Operator(b)), \"the circuit does not implement the expected unitary\"\n"
    ))
}

// ---------------------------------------------------------------------------------------------
// QA

/// `(question, answer)`.
fn mine_qa(task: &TaskInput) -> Result<(String, String), String> {
    match &task.image {
        Some(image) => image_qa(task, image),
        None => section_qa(task),
    }
}

fn prose(task: &TaskInput) -> String {
    let texts: Vec<String> = task
        .chunk
        .parts
        .iter()
        .filter_map(|p| match p {
            ChunkPart::Text { text } => Some(plain(text)),
            _ => None,
        })
        .filter(|t| t.split_whitespace().count() >= 6 && !t.starts_with('|'))
        .collect();
    texts.join("\n\n")
}

fn section_qa(task: &TaskInput) -> Result<(String, String), String> {
    let prose = prose(task);
    if prose.chars().count() < 150 {
        return Err("too little prose in this chunk to answer a conceptual question".into());
    }
    let answer = cut(&prose, 1200);
    let question = definition_question(&prose)
        .or_else(|| task.chunk.heading.as_deref().map(heading_question))
        .ok_or("neither a definition nor a heading to ask about")?;
    Ok((question, answer))
}

/// "What is X?" from the first sentence shaped "X is …" with a short, concrete subject.
fn definition_question(prose: &str) -> Option<String> {
    const VAGUE: [&str; 14] =
        ["this", "it", "that", "these", "those", "there", "here", "we", "you", "which", "what", "one", "each", "such"];
    for sentence in sentences(prose) {
        for verb in [" is ", " are "] {
            let Some(at) = sentence.find(verb) else { continue };
            let subject = sentence[..at].trim();
            let words: Vec<&str> = subject.split_whitespace().collect();
            let first = words.first().map(|w| w.to_lowercase()).unwrap_or_default();
            if words.is_empty() || words.len() > 7 || VAGUE.contains(&first.as_str()) || subject.contains(',') {
                continue;
            }
            let rest = sentence[at + verb.len()..].trim();
            if rest.split_whitespace().count() < 4 {
                continue;
            }
            let subject = lower_first(subject);
            return Some(format!("What {} {subject}?", verb.trim()));
        }
    }
    None
}

fn heading_question(heading: &str) -> String {
    let h = heading.trim().trim_end_matches(['.', ':']);
    if h.ends_with('?') {
        return h.to_string();
    }
    let first = h.split_whitespace().next().unwrap_or("");
    let h_lower = lower_first(h);
    if first.to_lowercase().ends_with("ing") {
        return format!("How does {h_lower} work in Qiskit?");
    }
    let plural = h.ends_with('s') && !h.ends_with("ss") && !h.ends_with("is");
    if plural {
        format!("What are {h_lower}, and how are they used in Qiskit?")
    } else {
        format!("What is {h_lower}, and how is it used in Qiskit?")
    }
}

fn image_qa(task: &TaskInput, image: &crate::build::inputs::TargetImage) -> Result<(String, String), String> {
    let question = match image.image_type.as_str() {
        "chart" => "What does the chart in the image show, and what does it say about the measured outcomes?",
        "circuit" => "What does the circuit shown in the image do?",
        "bloch_sphere" => "Which quantum state does the Bloch sphere in the image represent?",
        "table" => "What does the table in the image summarise?",
        "formula" => "What does the formula in the image express?",
        _ => "What does the image illustrate?",
    };
    let mut answer = String::new();
    let alt = plain(&image.alt_text);
    if alt.split_whitespace().count() >= 3 {
        answer.push_str(&format!("The image shows {}.", lower_first(alt.trim_end_matches('.'))));
    }
    // What the document says next to the image, else the chunk's prose.
    let around = plain(&image.surrounding_text);
    let text = if around.split_whitespace().count() >= 12 { around } else { prose(task) };
    if !text.is_empty() {
        if !answer.is_empty() {
            answer.push(' ');
        }
        answer.push_str(&cut(&text, 900));
    }
    // For a drawn result, what the generating cell printed makes the answer concrete.
    if let Some(cell) = cells(task).iter().find(|c| c.images.contains(&image.id))
        && let Some(printed) = cell.outputs.first().filter(|o| o.len() <= 300)
    {
        answer.push_str(&format!("\n\nThe code that produced it printed:\n\n```\n{}\n```", printed.trim()));
    }
    if answer.split_whitespace().count() < 25 {
        return Err("the document says too little about the image to answer a question on it".into());
    }
    Ok((question.to_string(), answer))
}

// ---------------------------------------------------------------------------------------------
// Text helpers

/// Markdown made plain: images dropped, links reduced to their text, emphasis markers removed.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if text[i..].starts_with("![")
            && let Some(end) = text[i..].find(')')
        {
            i += end + 1;
            continue;
        }
        if b[i] == b'['
            && let Some(close) = text[i..].find("](")
            && let Some(end) = text[i + close..].find(')')
        {
            out.push_str(&text[i + 1..i + close]);
            i += close + end + 1;
            continue;
        }
        if b[i] == b'<'
            && let Some(end) = text[i..].find('>')
            && text[i + 1..].chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '/')
        {
            i += end + 1;
            continue;
        }
        let ch = text[i..].chars().next().unwrap_or(' ');
        if !(ch == '*' || (ch == '_' && text[i..].starts_with("__"))) {
            out.push(ch);
        }
        i += ch.len_utf8();
    }
    out.lines().map(str::trim_end).collect::<Vec<_>>().join("\n").trim().to_string()
}

fn sentences(text: &str) -> Vec<String> {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = Vec::new();
    let mut start = 0;
    let b = flat.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        let next_is_space = b.get(i + 1).is_none_or(|n| *n == b' ');
        let next_upper = b.get(i + 2).is_none_or(|n| n.is_ascii_uppercase() || *n == b'`' || *n == b'$');
        if matches!(c, b'.' | b'?' | b'!') && next_is_space && next_upper {
            out.push(flat[start..=i].trim().to_string());
            start = i + 1;
        }
    }
    if start < flat.len() {
        out.push(flat[start..].trim().to_string());
    }
    out.retain(|s| !s.is_empty());
    out
}

/// At most `max` characters, ending at a paragraph or sentence boundary.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.trim().to_string();
    }
    let end = text.char_indices().nth(max).map_or(text.len(), |(i, _)| i);
    let window = &text[..end];
    let at = window.rfind("\n\n").filter(|&i| i > max / 2).or_else(|| window.rfind(". ").map(|i| i + 1)).unwrap_or(end);
    window[..at].trim().to_string()
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    let Some(first) = chars.next() else { return String::new() };
    let second_upper = s.chars().nth(1).is_some_and(char::is_uppercase);
    if second_upper || first == '`' { s.to_string() } else { first.to_lowercase().chain(chars).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::inputs::{ChunkView, TargetImage};

    const DEFS: &str = "def bell_pair() -> QuantumCircuit:\n    \"\"\"Return a two-qubit circuit that prepares the Bell state.\n\n    H then CNOT.\n    \"\"\"\n    qc = QuantumCircuit(2, name=\"bell\")\n    qc.h(0)\n    qc.cx(0, 1)\n    return qc\n\n\nbell = bell_pair()\nprint(bell.num_qubits, bell.depth(), dict(bell.count_ops()))";

    fn task(kind: &str, image: Option<TargetImage>) -> TaskInput {
        let parts = vec![
            ChunkPart::Heading { level: 2, text: "Building a circuit".into() },
            ChunkPart::Text {
                text: "A `QuantumCircuit` is created with a number of qubits and optionally classical bits. Gates are appended by calling methods such as `h` or `cx` with the indices of the qubits they act on.".into(),
            },
            ChunkPart::Code {
                language: Some("python".into()),
                code: "from qiskit import QuantumCircuit\nimport numpy as np".into(),
                outputs: vec![],
                images: vec![],
            },
            ChunkPart::Code {
                language: Some("python".into()),
                code: DEFS.into(),
                outputs: vec!["2 2 {'h': 1, 'cx': 1}".into()],
                images: vec![],
            },
            ChunkPart::Code {
                language: Some("python".into()),
                code: "bell.draw(\"mpl\")".into(),
                outputs: vec![],
                images: vec!["img1".into()],
            },
        ];
        TaskInput {
            task_id: "task".into(),
            question_type: kind.into(),
            chunk: ChunkView {
                id: "c".into(),
                document_id: "d".into(),
                document_path: "nb.ipynb".into(),
                document_title: Some("Intro".into()),
                heading: Some("Building a circuit".into()),
                parts,
                prior_code: String::new(),
                previous_text: String::new(),
                next_text: String::new(),
            },
            image,
            context: String::new(),
        }
    }

    fn circuit_image() -> TargetImage {
        TargetImage {
            id: "img1".into(),
            alt_text: String::new(),
            image_type: "circuit".into(),
            transcription: String::new(),
            generating_code: "bell.draw(\"mpl\")".into(),
            surrounding_text: String::new(),
        }
    }

    #[test]
    fn assignments_may_span_lines() {
        let code = "backend = GenericBackendV2(\n    num_qubits=7,\n    seed=3,\n)\nx = 1\n    y = 2\nz == 3\n";
        let found = top_level_assignments(code);
        assert_eq!(
            found,
            [
                ("backend".to_string(), "backend = GenericBackendV2(\n    num_qubits=7,\n    seed=3,\n)".to_string()),
                ("x".to_string(), "x = 1".to_string()),
            ]
        );
    }

    #[test]
    fn function_completion_from_a_documented_function() {
        let m = mine(&task("function_completion", None)).unwrap();
        assert_eq!(m.entry_point, "bell_pair");
        insta::assert_snapshot!(m.question, @r#"
        from qiskit import QuantumCircuit


        def bell_pair() -> QuantumCircuit:
            """Return a two-qubit circuit that prepares the Bell state.

            H then CNOT.
            """
            pass
        "#);
        insta::assert_snapshot!(m.test_code, @r#"
        import contextlib
        import io
        import re


        def _normal(text):
            lines = [line.rstrip() for line in text.strip().splitlines()]
            return re.sub(r"(?<![\w.])-(0\.0+)(?![0-9])", r"\1", "\n".join(lines))


        def check(candidate):
            bell_pair = candidate
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                bell = bell_pair()
                print(bell.num_qubits, bell.depth(), dict(bell.count_ops()))
            printed = _normal(out.getvalue())
            expected = _normal("2 2 {'h': 1, 'cx': 1}")
            assert printed == expected, f"printed {printed!r}, expected {expected!r}"
        "#);
        let candidate = Candidate { question: m.question, entry_point: m.entry_point, test_code: m.test_code };
        let body = answer(&task("function_completion", None), &candidate).unwrap();
        assert!(body.starts_with("    qc = QuantumCircuit(2"), "{body}");
    }

    #[test]
    fn code_generation_and_the_image_variants() {
        let m = mine(&task("code_generation", None)).unwrap();
        assert_eq!(
            m.question,
            "A `QuantumCircuit` is created with a number of qubits and optionally classical bits. Gates are appended by calling methods such as `h` or `cx` with the indices of the qubits they act on. Return a two-qubit circuit that prepares the Bell state. You must implement this using a function named `bell_pair` with no arguments. It returns a `QuantumCircuit`."
        );
        let mm = mine(&task("code_generation", Some(circuit_image()))).unwrap();
        assert!(mm.question.starts_with("Write a function that builds the circuit shown in the image."));
        let fc = mine(&task("function_completion", Some(circuit_image()))).unwrap();
        assert!(
            fc.question.contains("The circuit it returns is the one shown in the image.\n    \"\"\""),
            "{}",
            fc.question
        );
        let candidate = Candidate { question: mm.question, entry_point: mm.entry_point, test_code: mm.test_code };
        let code = answer(&task("code_generation", None), &candidate).unwrap();
        assert!(code.starts_with("from qiskit import QuantumCircuit\n\n\ndef bell_pair()"), "{code}");
    }

    #[test]
    fn qa_from_definitions_headings_and_images() {
        let (q, a) = mine_qa(&task("qa", None)).unwrap();
        assert_eq!(q, "What is a `QuantumCircuit`?");
        assert!(a.starts_with("A `QuantumCircuit` is created"));
        assert_eq!(heading_question("Building a circuit"), "How does building a circuit work in Qiskit?");
        assert_eq!(heading_question("GHZ states"), "What are GHZ states, and how are they used in Qiskit?");
        let mut image = circuit_image();
        image.alt_text = "The Bell circuit: a Hadamard on qubit 0 and a CNOT".into();
        let (q, a) = mine_qa(&task("qa", Some(image))).unwrap();
        assert_eq!(q, "What does the circuit shown in the image do?");
        assert!(a.starts_with("The image shows the Bell circuit"), "{a}");
    }

    /// A chunk that draws what an earlier chunk defined: the function comes from the earlier code,
    /// and the demo uses the value that code assigned.
    #[test]
    fn image_tasks_reach_into_earlier_code() {
        let mut t = task("function_completion", Some(circuit_image()));
        let ChunkPart::Code { code, .. } = &t.chunk.parts[3] else { unreachable!() };
        t.chunk.prior_code = format!("from qiskit import QuantumCircuit\n\n{code}");
        t.chunk.parts.truncate(2);
        t.chunk.parts.push(ChunkPart::Code {
            language: Some("python".into()),
            code: "bell.draw(\"mpl\")".into(),
            outputs: vec![],
            images: vec!["img1".into()],
        });
        t.chunk.parts.push(ChunkPart::Code {
            language: Some("python".into()),
            code: "print(bell.depth())".into(),
            outputs: vec!["2".into()],
            images: vec![],
        });
        let m = mine(&t).unwrap();
        assert_eq!(m.entry_point, "bell_pair");
        assert!(m.test_code.contains("    bell_pair = candidate\n    bell = bell_pair()\n"), "{}", m.test_code);
        assert!(m.test_code.contains("        print(bell.depth())\n"), "{}", m.test_code);
        // Without printed output the circuit is compared with the documented function's own.
        t.chunk.parts.pop();
        let m = mine(&t).unwrap();
        assert!(m.test_code.contains("def _reference_bell_pair() -> QuantumCircuit:"), "{}", m.test_code);
        assert!(m.test_code.contains("Operator(a).equiv(Operator(b))"), "{}", m.test_code);
    }

    #[test]
    fn nothing_to_mine_is_said_not_guessed() {
        let mut t = task("function_completion", None);
        t.chunk.parts.retain(|p| !matches!(p, ChunkPart::Code { .. }));
        assert_eq!(mine(&t), Err("no function with a docstring in this chunk".into()));
        let mut t = task("code_generation", Some(circuit_image()));
        t.image.as_mut().unwrap().id = "other".into();
        assert!(mine(&t).is_err());
    }
}
