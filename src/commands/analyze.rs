//! `sdc analyze ARCHIVE --out DIR`: verify a dataset archive and write its statistics, plots
//! (SVG and PNG) and a self-contained HTML report (`sdc_runtime::analyze`).

use std::path::Path;

use sdc_runtime::analyze::analyze;

use super::Failed;
use crate::output::Output;

pub fn run(out: &Output, archive: &Path, dir: &Path, force: bool, json: bool) -> Result<(), Failed> {
    let report = analyze(archive, dir, force).map_err(|e| {
        out.error(e.to_string());
        Failed
    })?;
    for m in &report.missing {
        out.status(format!("warning: not shown: {m}"));
    }
    if json {
        out.data(serde_json::to_string_pretty(&report).unwrap_or_default());
        return Ok(());
    }
    for (path, bytes) in &report.files {
        out.detail(format!("  {bytes:>10} {path}"));
    }
    out.data(format!(
        "analysed {} ({} samples) into {}: {} files\n  report     {}\n  statistics {}",
        report.dataset,
        report.samples,
        report.dir,
        report.files.len(),
        Path::new(&report.dir).join("report.html").display(),
        Path::new(&report.dir).join("statistics.json").display()
    ));
    Ok(())
}
