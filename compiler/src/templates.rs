//! Prompt templates: loading, checking against each stage's contract, and hashing.
//!
//! A template is a minijinja file whose `{% block %}`s are rendered one chat message each. The
//! checker compiles every template, rejects variables its stage does not provide
//! ([`crate::schema::template_contract`]) and missing blocks, and the lock pins the sha256 of each
//! template together with everything it includes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::diagnostic::{Code, Diagnostic, did_you_mean};
use crate::hash::sha256_hex;
use crate::schema::template_contract;
use crate::span::{SourceFile, Span};
use crate::spec::{PathRef, Spec, StageKind, TaskType};

/// Names minijinja provides itself, which are never the stage's business.
const BUILTIN_NAMES: &[&str] =
    &["range", "dict", "namespace", "loop", "self", "super", "debug", "true", "false", "none"];

/// A template and the partials it includes, transitively, by name relative to the prompts dir.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedTemplate {
    pub name: String,
    pub source: String,
    pub includes: Vec<(String, String)>,
}

impl LoadedTemplate {
    /// sha256 over the template and its includes, each framed by its name.
    pub fn digest(&self) -> String {
        let mut buf = Vec::new();
        for (name, text) in std::iter::once((&self.name, &self.source)).chain(self.includes.iter().map(|(n, t)| (n, t)))
        {
            buf.extend_from_slice(name.as_bytes());
            buf.push(0);
            buf.extend_from_slice(&(text.len() as u64).to_le_bytes());
            buf.extend_from_slice(text.as_bytes());
        }
        sha256_hex(&buf)
    }
}

pub fn prompts_dir(spec: &Spec) -> PathBuf {
    spec.paths.prompts.resolve(&spec.dir)
}

/// Loads a template and, transitively, every partial it includes.
pub fn load(dir: &Path, name: &str) -> Result<LoadedTemplate, String> {
    let source = read(dir, name)?;
    let mut seen = BTreeSet::new();
    let mut queue: Vec<String> = referenced_templates(&source);
    let mut includes = Vec::new();
    while let Some(next) = queue.pop() {
        if next == name || !seen.insert(next.clone()) {
            continue;
        }
        let text = read(dir, &next)?;
        queue.extend(referenced_templates(&text));
        includes.push((next, text));
    }
    includes.sort();
    Ok(LoadedTemplate { name: name.to_string(), source, includes })
}

fn read(dir: &Path, name: &str) -> Result<String, String> {
    if name.split('/').any(|part| part == ".." || part.is_empty()) || name.starts_with('/') {
        return Err(format!("template name `{name}` must be a relative path inside the prompts directory"));
    }
    std::fs::read_to_string(dir.join(name)).map_err(|e| format!("cannot read template `{name}`: {e}"))
}

/// The string literals of `include`, `import`, `from` and `extends` tags.
fn referenced_templates(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for tag in source.split("{%").skip(1) {
        let body = tag.split("%}").next().unwrap_or("").trim_start_matches('-').trim();
        let mut words = body.splitn(2, char::is_whitespace);
        let keyword = words.next().unwrap_or("");
        if !matches!(keyword, "include" | "import" | "from" | "extends") {
            continue;
        }
        let rest = words.next().unwrap_or("").trim();
        let quote = rest.chars().next();
        if let Some(q @ ('"' | '\'')) = quote
            && let Some(end) = rest[1..].find(q)
        {
            out.push(rest[1..1 + end].to_string());
        }
    }
    out
}

/// `{% block name %}` names defined by a template source.
pub fn block_names(source: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for tag in source.split("{%").skip(1) {
        let body = tag.split("%}").next().unwrap_or("").trim_matches('-').trim();
        let mut words = body.split_whitespace();
        if words.next() == Some("block")
            && let Some(name) = words.next()
        {
            out.insert(name.to_string());
        }
    }
    out
}

/// Builds a minijinja environment that can compile templates from the prompts directory.
pub fn environment(dir: &Path) -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    // Block tags on their own line leave no blank lines behind, as in Jinja's
    // `trim_blocks`/`lstrip_blocks`; the default configuration always builds.
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build() {
        env.set_syntax(syntax);
    }
    let dir = dir.to_path_buf();
    env.set_loader(move |name| match read(&dir, name) {
        Ok(text) => Ok(Some(text)),
        Err(_) => Ok(None),
    });
    env
}

/// Checks every prompt a spec uses; an empty result means they all compile and fit their stage.
pub fn check_templates(spec: &Spec) -> Vec<Diagnostic> {
    let dir = prompts_dir(spec);
    let mut diags = Vec::new();
    if !dir.is_dir() {
        let span = if spec.paths.prompts.span == Span::default() { spec.dataset.span } else { spec.paths.prompts.span };
        diags.push(
            Diagnostic::error(
                Code::PathNotFound,
                span,
                format!("prompts directory `{}` does not exist", spec.paths.prompts.text),
            )
            .with_label("prompts are looked up here")
            .with_hint("set `paths { prompts = \"…\" }`, relative to the spec's directory"),
        );
        return diags;
    }
    for stage in &spec.stages {
        for prompt in &stage.prompts {
            diags.extend(check_one(&dir, stage.kind, prompt.task, &prompt.template));
        }
    }
    diags
}

fn check_one(dir: &Path, stage: StageKind, task: Option<TaskType>, template: &PathRef) -> Vec<Diagnostic> {
    let loaded = match load(dir, &template.text) {
        Ok(t) => t,
        Err(message) => {
            let available = list_templates(dir);
            let hint = match did_you_mean(&template.text, available.iter().map(String::as_str)) {
                Some(best) => format!("did you mean `{best}`?"),
                None => format!("templates are looked up in `{}`", dir.display()),
            };
            return vec![
                Diagnostic::error(
                    Code::PromptNotFound,
                    template.span,
                    format!("prompt template `{}` not found", template.text),
                )
                .with_label(message)
                .with_hint(hint),
            ];
        }
    };
    let contract = template_contract(stage, task);
    let env = environment(dir);
    let mut diags = Vec::new();
    for (name, text) in
        std::iter::once((&loaded.name, &loaded.source)).chain(loaded.includes.iter().map(|(n, t)| (n, t)))
    {
        let file = SourceFile::new(dir.join(name), text.clone());
        let compiled = match env.template_from_named_str(name, text) {
            Ok(t) => t,
            Err(e) => {
                let span =
                    e.range().map_or_else(|| line_span(text, e.line().unwrap_or(1)), |r| Span::new(r.start, r.end));
                diags.push(
                    Diagnostic::error(
                        Code::TemplateSyntax,
                        span,
                        format!("template syntax error in `{name}`: {}", e.detail().unwrap_or("invalid syntax")),
                    )
                    .with_label(e.kind().to_string())
                    .with_hint(format!("fix the template; it is used by stage `{}`", stage.as_str()))
                    .in_file(file),
                );
                continue;
            }
        };
        let mut undeclared: Vec<String> = compiled.undeclared_variables(false).into_iter().collect();
        undeclared.sort();
        for var in undeclared {
            if contract.variables.contains(&var.as_str()) || BUILTIN_NAMES.contains(&var.as_str()) {
                continue;
            }
            let hint = match did_you_mean(&var, contract.variables.iter().copied()) {
                Some(best) => format!(
                    "did you mean `{best}`? stage `{}` provides: {}",
                    stage.as_str(),
                    contract.variables.join(", ")
                ),
                None => format!("stage `{}` provides: {}", stage.as_str(), contract.variables.join(", ")),
            };
            diags.push(
                Diagnostic::error(
                    Code::TemplateVariable,
                    word_span(text, &var),
                    format!("template `{name}` uses `{var}`, which stage `{}` does not provide", stage.as_str()),
                )
                .with_label("unknown variable")
                .with_hint(hint)
                .in_file(file.clone()),
            );
        }
    }
    let mut blocks = block_names(&loaded.source);
    for (_, text) in &loaded.includes {
        blocks.extend(block_names(text));
    }
    for required in contract.blocks {
        if !blocks.contains(*required) {
            diags.push(
                Diagnostic::error(
                    Code::TemplateBlock,
                    template.span,
                    format!("template `{}` has no `{required}` block", template.text),
                )
                .with_label(format!("stage `{}` renders a `{required}` message from it", stage.as_str()))
                .with_hint(format!("add `{{% block {required} %}}…{{% endblock %}}` to the template")),
            );
        }
    }
    diags
}

/// Template files in the prompts directory, for suggestions.
fn list_templates(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.path().strip_prefix(dir).ok().map(|p| p.to_string_lossy().replace('\\', "/")))
        .collect()
}

fn line_span(text: &str, line: usize) -> Span {
    let start: usize = text.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
    let len = text[start.min(text.len())..].find('\n').unwrap_or(text.len() - start.min(text.len()));
    Span::new(start, start + len)
}

/// The first whole-word occurrence of a variable inside a template tag, for the caret.
fn word_span(text: &str, word: &str) -> Span {
    let bytes = text.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut from = 0;
    while let Some(pos) = text[from..].find(word) {
        let start = from + pos;
        let end = start + word.len();
        let before_ok = start == 0 || !is_ident(bytes[start - 1]);
        let after_ok = end >= bytes.len() || !is_ident(bytes[end]);
        let in_tag = text[..start].rfind("{{").max(text[..start].rfind("{%"))
            > text[..start].rfind("}}").max(text[..start].rfind("%}"));
        if before_ok && after_ok && in_tag {
            return Span::new(start, end);
        }
        from = end;
    }
    Span::new(0, 0)
}
