//! Just enough Python source analysis for the builtin generator: top-level functions with
//! their signatures and docstrings, import lines, the statements around them, and the names a
//! piece of code uses. Line-based and forgiving: code it cannot read yields nothing, never a
//! panic. This is not a Python parser; what it misreads ends as a failed verification, which is
//! accounted like any other rejection.

use std::collections::BTreeSet;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub annotation: Option<String>,
    pub has_default: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    /// Decorator lines and the `def …:` header, as written.
    pub header: String,
    pub params: Vec<Param>,
    pub returns: Option<String>,
    /// The docstring's text, dedented, without quotes.
    pub docstring: Option<String>,
    /// The docstring as written (quotes and indentation included), if any.
    pub docstring_source: Option<String>,
    /// The statements after the docstring, indented as written.
    pub body: String,
    /// The whole definition.
    pub source: String,
    /// Line range `[start, end)` of the definition in the code.
    pub lines: (usize, usize),
}

impl Function {
    /// The first paragraph of the docstring, on one line.
    pub fn summary(&self) -> String {
        let doc = self.docstring.as_deref().unwrap_or("");
        let first = doc.split("\n\n").next().unwrap_or("");
        first.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_blank(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// Net bracket depth change of a line, ignoring brackets inside simple string literals.
fn bracket_delta(line: &str) -> i64 {
    let mut depth = 0i64;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in line.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '#' => break,
            '"' | '\'' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
    }
    depth
}

/// Top-level `def`s (with their decorators) of a piece of code, in order.
pub fn functions(code: &str) -> Vec<Function> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start = i;
        let mut k = i;
        while k < lines.len() && lines[k].starts_with('@') {
            k += 1;
        }
        let line = lines.get(k).copied().unwrap_or("");
        let def = line.strip_prefix("def ").or_else(|| line.strip_prefix("async def "));
        if def.is_none() {
            i = k.max(i) + 1;
            continue;
        }
        // The header runs until the line that ends it with `:` outside brackets.
        let mut depth = 0i64;
        let mut h = k;
        loop {
            depth += bracket_delta(lines[h]);
            if depth <= 0 && lines[h].trim_end().ends_with(':') {
                break;
            }
            h += 1;
            if h >= lines.len() {
                return out;
            }
        }
        let mut end = h + 1;
        while end < lines.len() && (is_blank(lines[end]) || indent_of(lines[end]) > 0) {
            end += 1;
        }
        // Trailing blank lines belong to what follows.
        let mut last = end;
        while last > h + 1 && lines[last - 1].trim().is_empty() {
            last -= 1;
        }
        if let Some(f) = function(&lines, start, k, h, last) {
            out.push(f);
        }
        i = end;
    }
    out
}

fn function(lines: &[&str], start: usize, def_line: usize, header_end: usize, end: usize) -> Option<Function> {
    let header = lines[start..=header_end].join("\n");
    let signature = lines[def_line..=header_end].join("\n");
    let after_def = signature.trim_start_matches("async ").strip_prefix("def ")?;
    let open = after_def.find('(')?;
    let name = after_def[..open].trim().to_string();
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    let close = matching_paren(after_def, open)?;
    let params = parse_params(&after_def[open + 1..close]);
    let rest = after_def[close + 1..].trim();
    let returns = rest.strip_prefix("->").map(|r| r.trim().trim_end_matches(':').trim().to_string());
    let body_lines = &lines[header_end + 1..end];
    let (docstring, docstring_source, body_start) = docstring(body_lines);
    let body = body_lines[body_start..].join("\n");
    let body = body.trim_start_matches('\n').to_string();
    Some(Function {
        name,
        header,
        params,
        returns,
        docstring,
        docstring_source,
        body,
        source: lines[start..end].join("\n"),
        lines: (start, end),
    })
}

fn matching_paren(s: &str, open: usize) -> Option<usize> {
    let mut depth = 0i64;
    for (i, c) in s.char_indices().skip_while(|(i, _)| *i < open) {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits a parameter list at top-level commas.
fn parse_params(list: &str) -> Vec<Param> {
    let list: String = list.lines().map(|l| l.split('#').next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let mut parts = Vec::new();
    let mut depth = 0i64;
    let mut current = String::new();
    for c in list.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty() && p != "/" && p != "*" && p != "self" && p != "cls")
        .filter_map(|p| {
            let (head, default) = match p.split_once('=') {
                Some((h, _)) => (h.trim().to_string(), true),
                None => (p.clone(), false),
            };
            let (name, annotation) = match head.split_once(':') {
                Some((n, a)) => (n.trim().to_string(), Some(a.trim().to_string())),
                None => (head.trim().to_string(), None),
            };
            let name = name.trim_start_matches('*').to_string();
            (!name.is_empty()).then_some(Param { name, annotation, has_default: default })
        })
        .collect()
}

/// The docstring at the start of a body: (text, source, index of the first line after it).
fn docstring(body: &[&str]) -> (Option<String>, Option<String>, usize) {
    let Some(first) = body.iter().position(|l| !l.trim().is_empty()) else { return (None, None, 0) };
    let line = body[first].trim_start();
    let prefix_len = line.find(['"', '\'']).unwrap_or(usize::MAX);
    if prefix_len > 2 || !line[..prefix_len].chars().all(|c| matches!(c, 'r' | 'R' | 'u' | 'U')) {
        return (None, None, 0);
    }
    let quoted = &line[prefix_len..];
    let quote = if quoted.starts_with("\"\"\"") {
        "\"\"\""
    } else if quoted.starts_with("'''") {
        "'''"
    } else {
        return (None, None, 0);
    };
    let after_open = &quoted[3..];
    let mut text_lines: Vec<String> = Vec::new();
    if let Some(close) = after_open.find(quote) {
        text_lines.push(after_open[..close].to_string());
        return (Some(dedent_doc(&text_lines)), Some(body[first].to_string()), first + 1);
    }
    text_lines.push(after_open.to_string());
    for (k, l) in body.iter().enumerate().skip(first + 1) {
        if let Some(close) = l.find(quote) {
            text_lines.push(l[..close].to_string());
            let source = body[first..=k].join("\n");
            return (Some(dedent_doc(&text_lines)), Some(source), k + 1);
        }
        text_lines.push(l.to_string());
    }
    (None, None, 0)
}

fn dedent_doc(lines: &[String]) -> String {
    let indent = lines.iter().skip(1).filter(|l| !l.trim().is_empty()).map(|l| indent_of(l)).min().unwrap_or(0);
    let mut out: Vec<String> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if i == 0 {
            out.push(l.trim().to_string());
        } else {
            out.push(l.get(indent..).unwrap_or(l.trim()).trim_end().to_string());
        }
    }
    out.join("\n").trim().to_string()
}

/// Top-level import statements (one per logical line, parenthesised continuations joined).
pub fn imports(code: &str) -> Vec<String> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l.starts_with("import ") || l.starts_with("from ") && l.contains(" import ") {
            let mut stmt = l.trim_end().to_string();
            let mut depth = bracket_delta(l);
            while (depth > 0 || stmt.ends_with('\\')) && i + 1 < lines.len() {
                i += 1;
                stmt.push('\n');
                stmt.push_str(lines[i].trim_end());
                depth += bracket_delta(lines[i]);
            }
            out.push(stmt);
        }
        i += 1;
    }
    out
}

/// The names an import statement binds.
pub fn imported_names(statement: &str) -> Vec<String> {
    let flat = statement.replace(['(', ')', '\\', '\n'], " ");
    let list = if let Some((_, names)) = flat.split_once(" import ") {
        if flat.starts_with("from ") { names.to_string() } else { flat.trim_start_matches("import ").to_string() }
    } else {
        flat.trim_start_matches("import ").to_string()
    };
    let is_plain_import = flat.starts_with("import ");
    list.split(',')
        .filter_map(|item| {
            let item = item.trim();
            if item.is_empty() || item == "*" {
                return None;
            }
            let bound = match item.split_once(" as ") {
                Some((_, alias)) => alias.trim().to_string(),
                None if is_plain_import => item.split('.').next().unwrap_or(item).to_string(),
                None => item.to_string(),
            };
            Some(bound)
        })
        .collect()
}

/// Top-level lines that are neither imports nor function definitions: what a cell *does*.
pub fn statements_outside_functions(code: &str) -> String {
    let lines: Vec<&str> = code.lines().collect();
    let mut skip = vec![false; lines.len()];
    for f in functions(code) {
        for s in skip.iter_mut().take(f.lines.1).skip(f.lines.0) {
            *s = true;
        }
    }
    let import_lines: BTreeSet<usize> = {
        let mut set = BTreeSet::new();
        let mut i = 0;
        while i < lines.len() {
            let l = lines[i];
            if l.starts_with("import ") || l.starts_with("from ") && l.contains(" import ") {
                set.insert(i);
                let mut depth = bracket_delta(l);
                while depth > 0 && i + 1 < lines.len() {
                    i += 1;
                    set.insert(i);
                    depth += bracket_delta(lines[i]);
                }
            }
            i += 1;
        }
        set
    };
    let kept: Vec<&str> =
        lines.iter().enumerate().filter(|(i, _)| !skip[*i] && !import_lines.contains(i)).map(|(_, l)| *l).collect();
    let text = kept.join("\n");
    text.trim_matches('\n').to_string()
}

/// Identifiers a piece of code reads (outside string literals and comments; attribute names
/// after a dot, keyword-argument names and assignment targets are not reads).
pub fn names_used(code: &str) -> BTreeSet<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = BTreeSet::new();
    let mut i = 0;
    let mut prev_dot = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            // Skip the literal (triple-quoted or not), minding escapes.
            let triple = chars.get(i + 1) == Some(&c) && chars.get(i + 2) == Some(&c);
            i += if triple { 3 } else { 1 };
            while i < chars.len() {
                if chars[i] == '\\' {
                    i += 2;
                    continue;
                }
                if chars[i] == c && (!triple || (chars.get(i + 1) == Some(&c) && chars.get(i + 2) == Some(&c))) {
                    i += if triple { 3 } else { 1 };
                    break;
                }
                if chars[i] == '\n' && !triple {
                    break;
                }
                i += 1;
            }
            prev_dot = false;
            continue;
        }
        if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut k = i;
            while k < chars.len() && chars[k] == ' ' {
                k += 1;
            }
            let binds = chars.get(k) == Some(&'=') && chars.get(k + 1) != Some(&'=');
            // A string prefix (`f"…"`, `rb'…'`) is not a name.
            let prefix = matches!(chars.get(i), Some('"' | '\'')) && word.len() <= 2;
            if !prev_dot && !binds && !prefix {
                out.insert(word);
            }
            prev_dot = false;
            continue;
        }
        if !c.is_whitespace() {
            prev_dot = c == '.';
        }
        i += 1;
    }
    out
}

/// Names a top-level statement block assigns (`x = …`, `for x in …`, `with … as x`).
pub fn assigned_names(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in code.lines() {
        let t = line.trim();
        // Comprehension and loop targets anywhere on the line: `[x for x in xs]`.
        for (k, _) in t.match_indices("for ") {
            let boundary = k == 0 || !t[..k].ends_with(|c: char| c.is_alphanumeric() || c == '_');
            if let Some((targets, _)) = t[k + 4..].split_once(" in ")
                && boundary
            {
                out.extend(targets.split(',').map(|s| s.trim().trim_matches(['(', ')', '[']).to_string()));
            }
        }
        if let Some(rest) = t.strip_prefix("for ") {
            if let Some((targets, _)) = rest.split_once(" in ") {
                out.extend(targets.split(',').map(|s| s.trim().trim_matches(['(', ')']).to_string()));
            }
            continue;
        }
        if let Some((_, alias)) = t.split_once(" as ")
            && (t.starts_with("with ") || t.starts_with("except"))
        {
            out.insert(alias.trim_end_matches(':').trim().to_string());
        }
        if let Some(eq) = find_assignment(t) {
            for target in t[..eq].split(',') {
                let target = target.trim().trim_matches(['(', ')']);
                let target = target.split(':').next().unwrap_or("").trim();
                if !target.is_empty() && target.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    out.insert(target.to_string());
                }
            }
        }
    }
    out.retain(|n| !n.is_empty());
    out
}

fn find_assignment(line: &str) -> Option<usize> {
    let b = line.as_bytes();
    let mut depth = 0i64;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b'"' | b'\'' | b'#' => return None,
            b'=' if depth == 0 => {
                let before = if i > 0 { b[i - 1] } else { b' ' };
                let after = b.get(i + 1).copied().unwrap_or(b' ');
                if !matches!(before, b'=' | b'!' | b'<' | b'>' | b'+' | b'-' | b'*' | b'/' | b'%' | b'&' | b'|' | b'^')
                    && after != b'='
                {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Whether the last statement of a block is a bare expression (whose value a notebook would
/// display rather than print).
pub fn ends_with_bare_expression(code: &str) -> bool {
    let Some(last) = code.lines().rev().find(|l| !is_blank(l)) else { return false };
    if indent_of(last) > 0 {
        return false;
    }
    let t = last.trim();
    const KEYWORDS: [&str; 16] = [
        "print(", "for ", "if ", "while ", "with ", "def ", "class ", "import ", "from ", "return", "raise ",
        "assert ", "del ", "pass", "try:", "else:",
    ];
    !(KEYWORDS.iter().any(|k| t.starts_with(k)) || find_assignment(t).is_some() || t.ends_with(':') || t == ")")
}

/// Python builtins a test may use without defining them.
pub const BUILTINS: &[&str] = &[
    "abs",
    "all",
    "any",
    "bin",
    "bool",
    "dict",
    "divmod",
    "enumerate",
    "Exception",
    "filter",
    "float",
    "format",
    "frozenset",
    "getattr",
    "hasattr",
    "hash",
    "hex",
    "int",
    "isinstance",
    "issubclass",
    "iter",
    "len",
    "list",
    "map",
    "max",
    "min",
    "next",
    "object",
    "oct",
    "ord",
    "pow",
    "print",
    "range",
    "repr",
    "reversed",
    "round",
    "set",
    "setattr",
    "slice",
    "sorted",
    "str",
    "sum",
    "tuple",
    "type",
    "zip",
    "True",
    "False",
    "None",
    "ValueError",
    "TypeError",
    "KeyError",
    "IndexError",
    "RuntimeError",
    "ZeroDivisionError",
    "AssertionError",
    "complex",
    "chr",
    "callable",
    "id",
    "vars",
    "super",
    "property",
    "staticmethod",
    "classmethod",
    "NotImplementedError",
    "lambda",
    "in",
    "is",
    "not",
    "and",
    "or",
    "for",
    "if",
    "else",
    "elif",
    "while",
    "with",
    "as",
    "def",
    "return",
    "try",
    "except",
    "finally",
    "raise",
    "import",
    "from",
    "pass",
    "break",
    "continue",
    "yield",
    "global",
    "nonlocal",
    "del",
    "assert",
    "class",
    "async",
    "await",
    "f",
    "rb",
    "b",
    "r",
    "u",
];

#[cfg(test)]
mod tests {
    use super::*;

    const CELL: &str = "def bell_pair() -> QuantumCircuit:\n    \"\"\"Return a two-qubit circuit that prepares the Bell state.\n\n    A Hadamard gate and a CNOT.\n    \"\"\"\n    qc = QuantumCircuit(2, name=\"bell\")\n    qc.h(0)\n    qc.cx(0, 1)\n    return qc\n\n\nbell = bell_pair()\nprint(bell.num_qubits, bell.depth())\n";

    #[test]
    fn functions_docstrings_and_demo_code() {
        let fs = functions(CELL);
        assert_eq!(fs.len(), 1);
        let f = &fs[0];
        assert_eq!(f.name, "bell_pair");
        assert_eq!(f.returns.as_deref(), Some("QuantumCircuit"));
        assert!(f.params.is_empty());
        assert_eq!(f.summary(), "Return a two-qubit circuit that prepares the Bell state.");
        assert_eq!(
            f.docstring.as_deref(),
            Some("Return a two-qubit circuit that prepares the Bell state.\n\nA Hadamard gate and a CNOT.")
        );
        assert_eq!(f.body, "    qc = QuantumCircuit(2, name=\"bell\")\n    qc.h(0)\n    qc.cx(0, 1)\n    return qc");
        assert_eq!(statements_outside_functions(CELL), "bell = bell_pair()\nprint(bell.num_qubits, bell.depth())");
        assert!(!ends_with_bare_expression(CELL));
        assert!(ends_with_bare_expression("x = 1\nx.depth()"));
    }

    #[test]
    fn signatures_over_several_lines_and_defaults() {
        let code = "@cache\ndef f(\n    a: int,\n    b: dict[str, int] = {},  # note\n    *args,\n) -> list[int]:\n    return [a]\n";
        let f = &functions(code)[0];
        assert_eq!(f.name, "f");
        assert_eq!(f.header.lines().next(), Some("@cache"));
        let names: Vec<&str> = f.params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "args"]);
        assert_eq!(f.params[1].annotation.as_deref(), Some("dict[str, int]"));
        assert!(f.params[1].has_default);
        assert_eq!(f.returns.as_deref(), Some("list[int]"));
        assert!(f.docstring.is_none());
    }

    #[test]
    fn imports_and_names() {
        let code = "import numpy as np\nfrom qiskit import (\n    QuantumCircuit,\n    transpile as tp,\n)\nimport qiskit.quantum_info\nx = np.pi  # np.e\ns = 'qc.h'\n";
        let imps = imports(code);
        assert_eq!(imps.len(), 3);
        assert_eq!(imported_names(&imps[0]), ["np"]);
        assert_eq!(imported_names(&imps[1]), ["QuantumCircuit", "tp"]);
        assert_eq!(imported_names(&imps[2]), ["qiskit"]);
        let used = names_used(code);
        assert!(used.contains("np") && !used.contains("x"), "`x` is assigned, not read");
        assert!(!used.contains("pi") && !used.contains("h") && !used.contains("e"));
        assert_eq!(
            assigned_names("for n, m in pairs:\n    y = 2\nz: int = 3\nw == 4"),
            ["m", "n", "y", "z"].map(String::from).into()
        );
    }

    #[test]
    fn garbage_never_panics() {
        for code in ["def", "def (", "def f(:\n", "@x\n", "def f(a, b\n", "\"\"\"", "def f():\n    '''open"] {
            let _ = functions(code);
            let _ = imports(code);
            let _ = statements_outside_functions(code);
            let _ = names_used(code);
            let _ = assigned_names(code);
        }
    }
}
