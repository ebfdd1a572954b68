//! `sdc verify ARCHIVE`: recompute every hash in a dataset archive and check it against the
//! manifest; refuse unsafe entries (absolute paths, `..`, links) on the way.

use std::path::Path;

use sdc_runtime::archive::{Limits, verify_archive};

use super::Failed;
use crate::output::Output;

pub fn run(out: &Output, path: &Path, json: bool) -> Result<(), Failed> {
    let file = std::fs::File::open(path).map_err(|e| {
        out.error(format!("cannot open `{}`: {e}", path.display()));
        Failed
    })?;
    let report = verify_archive(std::io::BufReader::new(file), &Limits::default()).map_err(|e| {
        out.error(format!("`{}` cannot be verified: {e}", path.display()));
        Failed
    })?;
    if json {
        let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        out.data(
            serde_json::to_string_pretty(&serde_json::json!({
                "archive": path.display().to_string(),
                "name": report.name,
                "version": report.version,
                "manifest_sha256": report.manifest_sha256,
                "archive_sha256": report.archive_sha256,
                "tar_sha256": report.tar_sha256,
                "files": report.files,
                "ok": report.is_ok(),
                "problems": problems,
            }))
            .unwrap_or_default(),
        );
    } else {
        for f in &report.files {
            out.detail(format!("  {} {:>10} {}", &f.sha256[..16], f.bytes, f.path));
        }
        if report.is_ok() {
            out.data(format!(
                "ok: {}@{}, {} files match the manifest\n  manifest {} (the dataset's identity)\n  archive  {}",
                report.name,
                report.version,
                report.files.len(),
                report.manifest_sha256,
                report.archive_sha256
            ));
        }
        for p in &report.problems {
            out.error(p.to_string());
        }
    }
    if report.is_ok() {
        Ok(())
    } else {
        if !json {
            out.error(format!("`{}` failed verification: {} problem(s)", path.display(), report.problems.len()));
        }
        Err(Failed)
    }
}
