//! Finding the Python interpreter a spec's verification names.

use std::process::Command;

use sdc_compiler::diagnostic::{Code, Diagnostic};
use sdc_compiler::spec::Verify;

/// The `major.minor.micro` version of the spec's Python, or an error pointing at `python = …`.
pub fn probe(verify: &Verify) -> Result<String, Diagnostic> {
    let not_found = |why: String| {
        Diagnostic::error(
            Code::PathNotFound,
            verify.python_span,
            format!("python `{}` cannot be run: {why}", verify.python),
        )
        .with_label("verification runs generated code with this interpreter")
        .with_hint(
            "install it, or name an interpreter on PATH or by absolute path, e.g. `python = \"/usr/bin/python3\"`",
        )
    };
    let out = Command::new(&verify.python)
        .args(["-I", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .map_err(|e| not_found(e.to_string()))?;
    if !out.status.success() {
        return Err(not_found(format!("it exited with {}", out.status)));
    }
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if version.split('.').count() != 3 {
        return Err(not_found(format!("it printed `{version}` instead of a version")));
    }
    Ok(version)
}
