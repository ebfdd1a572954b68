//! Loading a spec from disk: read, parse, check, and render what went wrong.

use std::path::{Path, PathBuf};

use sdc_compiler::spec::Spec;
use sdc_compiler::syntax::{self, File};
use sdc_compiler::{Diagnostic, SourceFile, check};

use crate::commands::Failed;
use crate::output::Output;

pub struct Loaded {
    pub source: SourceFile,
    pub file: File,
    pub spec: Spec,
}

impl Loaded {
    /// The spec's file name as recorded in the lock.
    pub fn file_name(&self) -> String {
        self.source.path().file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    }

    /// The text whose hash identifies the spec's meaning.
    pub fn canonical(&self) -> String {
        syntax::format_without_comments(&self.file)
    }

    pub fn lock_path(&self) -> PathBuf {
        self.spec.paths.lockfile.resolve(&self.spec.dir)
    }
}

pub fn read(out: &Output, path: &Path) -> Result<SourceFile, Failed> {
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Ok(SourceFile::new(path, text)),
            Err(e) => {
                out.error(format!(
                    "`{}` is not UTF-8 text (invalid byte at offset {})",
                    path.display(),
                    e.utf8_error().valid_up_to()
                ));
                Err(Failed)
            }
        },
        Err(e) => {
            out.error(format!("cannot read spec `{}`: {e}", path.display()));
            Err(Failed)
        }
    }
}

/// Reads, parses and fully checks a spec (including the files it refers to).
pub fn load(out: &Output, path: &Path) -> Result<Loaded, Failed> {
    let (loaded, diags) = load_collecting(out, path)?;
    out.diagnostics(&loaded.source, &diags);
    Ok(loaded)
}

/// Like [`load`], but hands back warnings instead of printing them (for JSON output).
pub fn load_collecting(out: &Output, path: &Path) -> Result<(Loaded, Vec<Diagnostic>), Failed> {
    let source = read(out, path)?;
    let fail = |diags: &[Diagnostic]| {
        out.diagnostics(&source, diags);
        let n = diags.iter().filter(|d| d.is_error()).count();
        out.error(format!("`{}` has {n} error{}", path.display(), if n == 1 { "" } else { "s" }));
        Failed
    };
    let file = syntax::parse(source.text()).map_err(|d| fail(&[d]))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let (spec, mut warnings) = check::check(&file, &dir).map_err(|d| fail(&d))?;
    let file_diags = check::check_files(&spec);
    if file_diags.iter().any(Diagnostic::is_error) {
        return Err(fail(&file_diags));
    }
    warnings.extend(file_diags);
    Ok((Loaded { source, file, spec }, warnings))
}
