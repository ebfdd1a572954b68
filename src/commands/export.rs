//! `sdc export ARCHIVE --format hf|jsonl|messages --out DIR`: verify a dataset archive and write
//! it in a layout training tools read (`sdc_runtime::export` says what each layout holds).

use std::path::Path;

use sdc_runtime::export::{ExportOptions, ExportReport, Format, export};

use super::Failed;
use crate::output::Output;

pub struct Options<'a> {
    pub format: Format,
    pub out_dir: &'a Path,
    pub force: bool,
    pub system_prompt: &'a str,
    pub json: bool,
}

pub fn run(out: &Output, archive: &Path, options: &Options<'_>) -> Result<(), Failed> {
    let opts = ExportOptions { format: options.format, force: options.force, system_prompt: options.system_prompt };
    let report = export(archive, options.out_dir, &opts).map_err(|e| {
        out.error(e.to_string());
        Failed
    })?;
    if options.json {
        out.data(serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        human(out, &report);
    }
    Ok(())
}

fn human(out: &Output, r: &ExportReport) {
    for (path, bytes) in &r.files {
        out.detail(format!("  {bytes:>10} {path}"));
    }
    let splits: Vec<String> = r.splits.iter().map(|(s, n)| format!("{s} {n}")).collect();
    let images = if r.images > 0 { format!(", {} image files", r.images) } else { String::new() };
    out.data(format!(
        "exported {} as `{}` to {}: {} files ({}){images}\n  manifest {}",
        r.dataset,
        r.format.as_str(),
        r.dir,
        r.files.len(),
        splits.join(", "),
        r.manifest_sha256
    ));
}
