//! `sdc check`: every diagnostic a spec has, or a one-line summary of a valid spec.

use std::path::Path;

use sdc_compiler::{Diagnostic, SourceFile, check, syntax};
use serde_json::json;

use super::Failed;
use crate::output::Output;
use crate::project;

pub fn run(out: &Output, path: &Path, json: bool) -> Result<(), Failed> {
    let source = project::read(out, path)?;
    let diags = diagnose(&source, path);
    let errors = diags.iter().filter(|d| d.is_error()).count();
    if json {
        let items: Vec<_> = diags.iter().map(|d| to_json(&source, d)).collect();
        out.data(
            serde_json::to_string_pretty(
                &json!({ "spec": path.display().to_string(), "errors": errors, "diagnostics": items }),
            )
            .unwrap_or_default(),
        );
    } else {
        out.diagnostics(&source, &diags);
    }
    if errors > 0 {
        if !json {
            out.error(format!("`{}` has {errors} error{}", path.display(), if errors == 1 { "" } else { "s" }));
        }
        return Err(Failed);
    }
    if !json {
        out.status(format!("`{}` is valid", path.display()));
    }
    Ok(())
}

/// Parse, check and check files, collecting everything.
fn diagnose(source: &SourceFile, path: &Path) -> Vec<Diagnostic> {
    let file = match syntax::parse(source.text()) {
        Ok(f) => f,
        Err(d) => return vec![d],
    };
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    match check::check(&file, &dir) {
        Ok((spec, mut warnings)) => {
            warnings.extend(check::check_files(&spec));
            warnings
        }
        Err(errors) => errors,
    }
}

fn to_json(source: &SourceFile, d: &Diagnostic) -> serde_json::Value {
    let file = d.file.as_ref().unwrap_or(source);
    let (line, column) = file.line_col(d.span.start);
    json!({
        "severity": if d.is_error() { "error" } else { "warning" },
        "code": d.code.as_str(),
        "message": d.message,
        "file": file.path().display().to_string(),
        "line": line,
        "column": column,
        "label": d.label,
        "hint": d.hint,
    })
}
