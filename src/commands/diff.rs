//! `sdc diff A B`: what changed between two archives or two lockfiles (told apart by content:
//! the zstd magic or TOML). Exit 0 if identical, 1 if they differ, 2 on error.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use sdc_compiler::lock::{self, Change, Lockfile};
use sdc_runtime::dataset::{Dataset, ZSTD_MAGIC};
use sdc_runtime::diff::{ArchiveDiff, Record};
use serde_json::json;

use super::Failed;
use crate::output::Output;

pub enum Input {
    Archive(Box<Dataset>),
    Lock(Box<Lockfile>),
}

/// Reads `path` as an archive or a lockfile, naming the file in any error.
pub fn load(out: &Output, path: &Path) -> Result<Input, Failed> {
    let bytes = std::fs::read(path).map_err(|e| {
        out.error(format!("cannot read `{}`: {e}", path.display()));
        Failed
    })?;
    if bytes.starts_with(&ZSTD_MAGIC) {
        return load_archive_bytes(out, path, &bytes).map(|d| Input::Archive(Box::new(d)));
    }
    let Ok(text) = std::str::from_utf8(&bytes) else {
        out.error(format!("`{}` is neither an sdc archive (.tar.zst) nor a lockfile (TOML)", path.display()));
        return Err(Failed);
    };
    lock::parse(text).map(|l| Input::Lock(Box::new(l))).map_err(|e| {
        out.error(format!("`{}` is neither an sdc archive (.tar.zst) nor a valid lockfile: {e}", path.display()));
        Failed
    })
}

pub fn load_archive_bytes(out: &Output, path: &Path, bytes: &[u8]) -> Result<Dataset, Failed> {
    Dataset::read(bytes).map_err(|e| {
        out.error(format!("`{}`: {e}", path.display()));
        Failed
    })
}

/// Returns whether the two inputs are identical.
pub fn run(out: &Output, a: &Path, b: &Path, json: bool) -> Result<bool, Failed> {
    match (load(out, a)?, load(out, b)?) {
        (Input::Archive(x), Input::Archive(y)) => {
            let d = sdc_runtime::diff::diff(&x, &y);
            if json {
                out.data(archive_json(&d));
            } else {
                out.data(render_archive(&d, out.is_verbose()));
            }
            Ok(d.is_identical())
        }
        (Input::Lock(x), Input::Lock(y)) => {
            let changes = lock::diff(&x, &y);
            let same = changes.is_empty() && x == y;
            if json {
                out.data(
                    serde_json::to_string_pretty(&json!({ "kind": "lock", "identical": same, "changes": changes }))
                        .unwrap_or_default(),
                );
            } else {
                out.data(render_lock(&changes, same));
            }
            Ok(same)
        }
        _ => {
            out.error(format!(
                "`{}` and `{}` are not of the same kind: compare two archives or two lockfiles",
                a.display(),
                b.display()
            ));
            Err(Failed)
        }
    }
}

pub fn archive_json(d: &ArchiveDiff) -> String {
    let mut v = serde_json::to_value(d).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("kind".into(), json!("archive"));
        o.insert("identical".into(), json!(d.is_identical()));
    }
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

fn render_lock(changes: &[Change], same: bool) -> String {
    if same {
        return "lockfiles are identical".into();
    }
    let mut groups: BTreeMap<&str, Vec<&Change>> = BTreeMap::new();
    for c in changes {
        let group = c.entry.split_once(':').map_or(c.entry.as_str(), |(g, _)| g);
        groups.entry(group).or_default().push(c);
    }
    let mut s =
        format!("lockfiles differ: {} {}\n", changes.len(), if changes.len() == 1 { "entry" } else { "entries" });
    for (group, list) in groups {
        let _ = writeln!(s, "\n{group}:");
        for c in list {
            let _ = writeln!(s, "  {c}");
        }
    }
    if changes.is_empty() {
        s.push_str("  (only formatting or unlisted fields differ)\n");
    }
    s.trim_end().to_string()
}

/// Concise and grouped: headers, counts, then records grouped by their causes.
pub fn render_archive(d: &ArchiveDiff, verbose: bool) -> String {
    let mut s = String::new();
    if d.is_identical() {
        let _ = write!(s, "archives are identical: manifest {} ({} samples)", d.old.manifest_sha256, d.old.samples);
        if d.old.archive_sha256 != d.new.archive_sha256 {
            s.push_str("\n  (the compressed bytes differ: another zstd; the files are the same)");
        }
        return s;
    }
    let _ = writeln!(s, "archives differ");
    let _ = writeln!(s, "  old  manifest {}  {} samples", d.old.manifest_sha256, d.old.samples);
    let _ = writeln!(s, "  new  manifest {}  {} samples", d.new.manifest_sha256, d.new.samples);
    let _ = writeln!(
        s,
        "  records: {} added, {} removed, {} changed, {} re-derived (same row, different inputs)",
        d.added.len(),
        d.removed.len(),
        d.changed.len(),
        d.rederived.len()
    );
    if !d.headers.is_empty() {
        let _ = writeln!(s, "\ninputs:");
        for h in &d.headers {
            let c = Change { entry: h.entry.clone(), old: h.old.clone(), new: h.new.clone() };
            let _ = writeln!(s, "  {c}");
        }
    }
    write_deltas(&mut s, "counts", &d.counts);
    write_deltas(&mut s, "rejections", &d.rejected);
    for (title, list) in [
        ("changed", &d.changed),
        ("re-derived (same row, different inputs)", &d.rederived),
        ("added", &d.added),
        ("removed", &d.removed),
    ] {
        render_records(&mut s, title, list, verbose);
    }
    s.trim_end().to_string()
}

/// A titled list of count deltas (per split, type, … or per rejecting stage); nothing if empty.
fn write_deltas(s: &mut String, title: &str, deltas: &[sdc_runtime::diff::CountDelta]) {
    if deltas.is_empty() {
        return;
    }
    let _ = writeln!(s, "\n{title}:");
    for c in deltas {
        let _ = writeln!(
            s,
            "  {:<9} {:<28} {:>6} → {:<6} ({:+})",
            c.dimension,
            c.value,
            c.old,
            c.new,
            c.new as i64 - c.old as i64
        );
    }
}

fn render_records(s: &mut String, title: &str, list: &[Record], verbose: bool) {
    if list.is_empty() {
        return;
    }
    let _ = writeln!(s, "\n{title}: {}", list.len());
    let mut groups: BTreeMap<Vec<String>, Vec<&Record>> = BTreeMap::new();
    for r in list {
        groups.entry(r.causes.clone()).or_default().push(r);
    }
    let limit = if verbose { usize::MAX } else { 5 };
    for (causes, records) in groups {
        let _ = writeln!(s, "  {} record(s) because:", records.len());
        for c in &causes {
            let _ = writeln!(s, "    - {c}");
        }
        for r in records.iter().take(limit) {
            let fields = if r.fields.is_empty() { String::new() } else { format!("  fields: {}", r.fields.join(", ")) };
            let _ = writeln!(
                s,
                "      {}  {} {} {}{fields}",
                &r.id[..r.id.len().min(12)],
                r.split,
                r.task_type,
                r.document
            );
        }
        if records.len() > limit {
            let _ = writeln!(s, "      … {} more (--verbose or --format json)", records.len() - limit);
        }
    }
}
