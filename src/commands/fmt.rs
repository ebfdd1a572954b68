//! `sdc fmt`: rewrite specs canonically, or with `--check` report those that are not.

use std::path::PathBuf;

use sdc_compiler::syntax;

use super::Failed;
use crate::output::Output;
use crate::project;

pub fn run(out: &Output, paths: &[PathBuf], check: bool) -> Result<(), Failed> {
    let mut failed = false;
    for path in paths {
        let Ok(source) = project::read(out, path) else {
            failed = true;
            continue;
        };
        let file = match syntax::parse(source.text()) {
            Ok(f) => f,
            Err(d) => {
                out.diagnostics(&source, &[d]);
                failed = true;
                continue;
            }
        };
        let formatted = syntax::format(&file);
        if formatted == source.text() {
            out.detail(format!("{} is formatted", path.display()));
            continue;
        }
        if check {
            out.status(format!("would reformat {}", path.display()));
            failed = true;
        } else if let Err(e) = write_atomic(path, &formatted) {
            out.error(format!("cannot write `{}`: {e}", path.display()));
            failed = true;
        } else {
            out.status(format!("formatted {}", path.display()));
        }
    }
    if failed { Err(Failed) } else { Ok(()) }
}

/// Writes through a temporary file and a rename, so a crash never leaves half a file.
pub fn write_atomic(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
