//! What a verification runs: the solution, then the test.
//!
//! For function completion the answer is a body and the question a stub ending in `pass`: the
//! body replaces that `pass`, re-indented to its column whatever indentation the answer used.
//! For code generation the answer is a whole module. A stub for the quality gate ("the test must
//! fail against a stub") is the question itself for function completion, and for code generation
//! a function of the entry point's name that accepts anything and returns `None`.

/// A program ready to run: source text and the entry point the harness passes to `check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    pub source: String,
    pub entry_point: String,
}

/// The solution module for a task type, from its question and answer.
pub fn solution(task_type: &str, question: &str, answer: &str) -> String {
    if task_type == "function_completion" { splice(question, answer) } else { answer.to_string() }
}

/// The stub a test must fail against.
pub fn stub(task_type: &str, question: &str, entry_point: &str) -> String {
    if task_type == "function_completion" && question.contains("pass") {
        question.to_string()
    } else {
        format!("def {entry_point}(*args, **kwargs):\n    return None\n")
    }
}

pub fn program(solution: &str, test: &str, entry_point: &str) -> Program {
    Program {
        source: format!("{}\n\n\n{}\n", solution.trim_end(), test.trim_end()),
        entry_point: entry_point.to_string(),
    }
}

/// The stub with its last `pass` line replaced by `body`, re-indented to that line's column.
pub fn splice(stub: &str, body: &str) -> String {
    let lines: Vec<&str> = stub.lines().collect();
    let Some(at) = lines.iter().rposition(|l| l.trim() == "pass") else {
        return format!("{}\n{}", stub.trim_end(), reindent(body, 4));
    };
    let column = lines[at].len() - lines[at].trim_start().len();
    let mut out: Vec<String> = lines[..at].iter().map(|l| l.to_string()).collect();
    out.push(reindent(body, column));
    out.extend(lines[at + 1..].iter().map(|l| l.to_string()));
    out.join("\n")
}

/// `body` with its common indentation replaced by `column` spaces. A first line flush left
/// followed by indented lines (a model that dropped the first line's indentation) is handled by
/// measuring the common indentation over the other lines.
fn reindent(body: &str, column: usize) -> String {
    let body = body.trim_matches('\n');
    let lines: Vec<&str> = body.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let nonblank: Vec<&str> = lines.iter().copied().filter(|l| !l.trim().is_empty()).collect();
    let mut common = nonblank.iter().map(|l| indent(l)).min().unwrap_or(0);
    if common == 0 && nonblank.len() > 1 && indent(nonblank[0]) == 0 {
        let rest = nonblank[1..].iter().map(|l| indent(l)).min().unwrap_or(0);
        // Only when the rest is uniformly indented, like a body whose first line lost its indent.
        let opens_block = nonblank[0].trim_end().ends_with(':');
        if rest > 0 && !opens_block {
            common = rest;
        }
    }
    let pad = " ".repeat(column);
    lines
        .iter()
        .map(|l| {
            if l.trim().is_empty() {
                String::new()
            } else if indent(l) >= common {
                format!("{pad}{}", &l[common..])
            } else {
                format!("{pad}{}", l.trim_start())
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const STUB: &str =
        "from qiskit import QuantumCircuit\n\n\ndef bell() -> QuantumCircuit:\n    \"\"\"Doc.\"\"\"\n    pass";

    #[test]
    fn bodies_are_spliced_at_the_pass_column() {
        let four = "    qc = QuantumCircuit(2)\n    if True:\n        qc.h(0)\n    return qc";
        let expected = "from qiskit import QuantumCircuit\n\n\ndef bell() -> QuantumCircuit:\n    \"\"\"Doc.\"\"\"\n    qc = QuantumCircuit(2)\n    if True:\n        qc.h(0)\n    return qc";
        assert_eq!(splice(STUB, four), expected);
        assert_eq!(splice(STUB, "qc = QuantumCircuit(2)\nif True:\n    qc.h(0)\nreturn qc"), expected);
        assert_eq!(splice(STUB, "qc = QuantumCircuit(2)\n    if True:\n        qc.h(0)\n    return qc"), expected);
    }

    #[test]
    fn stubs_and_programs() {
        assert_eq!(stub("function_completion", STUB, "bell"), STUB);
        assert_eq!(stub("code_generation", "Write…", "bell"), "def bell(*args, **kwargs):\n    return None\n");
        let p = program("def f():\n    return 1\n", "def check(c):\n    assert c() == 1", "f");
        assert_eq!(p.source, "def f():\n    return 1\n\n\ndef check(c):\n    assert c() == 1\n");
    }
}
