//! `sdc reproduce LOCK --archive PUBLISHED`: rebuild a locked dataset into a temporary
//! directory and say whether the result is bit-identical to the published archive.
//!
//! Offline (the default) every model call is replayed from the store's recorded responses and
//! no server is contacted: a call the store does not hold fails, and the count of those is
//! reported. `--live` asks the models again with the pinned parameters, through a fresh
//! temporary store and the connections the environment names, as `sdc build` does. Either way,
//! when the bytes differ the archive diff follows. Exit 0 identical, 1 different, 2 error.

use std::path::{Path, PathBuf};

use sdc_compiler::hash::sha256_hex;
use sdc_compiler::lock;
use sdc_runtime::dataset::Dataset;
use serde_json::json;

use super::Failed;
use super::build::{Run, execute_raw};
use super::diff::{archive_json, load_archive_bytes, render_archive};
use crate::output::Output;
use crate::project;

/// What a replayed call missing from the store says (`runtime::build::calls`).
const MISSING: &str = "is not in the recorded responses";

pub struct Options {
    pub archive: PathBuf,
    pub spec: Option<PathBuf>,
    pub store: Option<PathBuf>,
    pub live: bool,
    pub json: bool,
}

/// Returns whether the rebuilt archive is bit-identical to the published one.
pub fn run(out: &Output, lock_path: &Path, o: &Options) -> Result<bool, Failed> {
    let lock_text = std::fs::read(lock_path).map_err(|e| {
        out.error(format!("cannot read lockfile `{}`: {e}", lock_path.display()));
        Failed
    })?;
    let lock = std::str::from_utf8(&lock_text)
        .map_err(|_| "not UTF-8 text".to_string())
        .and_then(lock::parse)
        .map_err(|e| {
            out.error(format!("`{}` is not a valid lockfile: {e}", lock_path.display()));
            Failed
        })?;
    let published_bytes = std::fs::read(&o.archive).map_err(|e| {
        out.error(format!("cannot read archive `{}`: {e}", o.archive.display()));
        Failed
    })?;
    let published = load_archive_bytes(out, &o.archive, &published_bytes)?;
    let spec_path = find_spec(out, lock_path, &lock.spec.file, o.spec.as_deref())?;
    let loaded = project::load(out, &spec_path)?;
    if sha256_hex(loaded.canonical().as_bytes()) != lock.spec.sha256 {
        out.error(format!(
            "spec `{}` does not match `{}` (its canonical sha256 differs from the lock's [spec] sha256); pass the spec it was locked from with --spec",
            spec_path.display(),
            lock_path.display()
        ));
        return Err(Failed);
    }

    let tmp = tempfile::tempdir().map_err(|e| {
        out.error(format!("cannot create a temporary directory: {e}"));
        Failed
    })?;
    let spec = &loaded.spec;
    let wanted = o.store.clone().unwrap_or_else(|| spec.paths.store.resolve(&spec.dir));
    let (store_dir, store_note) = if o.live {
        (tmp.path().join("store"), "a fresh temporary store, models asked again".to_string())
    } else if wanted.join("journal").is_dir() {
        (wanted.clone(), format!("recorded responses in `{}`", wanted.display()))
    } else {
        out.status(format!("warning: store `{}` has no recorded responses", wanted.display()));
        (tmp.path().join("store"), format!("no recorded responses (`{}` is missing)", wanted.display()))
    };
    let file_name = o.archive.file_name().map_or_else(|| "rebuilt.tar.zst".into(), |n| n.to_os_string());
    let rebuilt_path = tmp.path().join(file_name);
    out.status(format!(
        "reproducing `{}` from `{}` and `{}`: {store_note}",
        o.archive.display(),
        lock_path.display(),
        spec_path.display()
    ));
    let run = Run {
        store_dir,
        archive: rebuilt_path.clone(),
        online: o.live,
        replay_only: !o.live,
        fail_on_drift: false,
        concurrency: 32,
        threads: 0,
        quiet: true,
    };
    let report = match execute_raw(out, &loaded, &lock, &lock_text, &run)? {
        Ok(report) => report,
        Err(e) if !o.live && e.to_string().contains(MISSING) => {
            // A stage whose policy is `fail` stopped the build at the first missing call.
            out.data(format!(
                "calls are not in the recorded responses: the rebuild stopped at one\n  {e}\nnot identical: no archive was rebuilt"
            ));
            return Ok(false);
        }
        Err(e) => {
            out.error(e.to_string());
            return Err(Failed);
        }
    };
    let missing: u64 = report.stages.iter().map(|s| s.calls_missing).sum();
    let rebuilt_bytes = std::fs::read(&rebuilt_path).map_err(|e| {
        out.error(format!("cannot read the rebuilt archive: {e}"));
        Failed
    })?;
    let rebuilt = load_archive_bytes(out, &rebuilt_path, &rebuilt_bytes)?;
    let identical = published_bytes == rebuilt_bytes;
    let diff = (!identical).then(|| sdc_runtime::diff::diff(&published, &rebuilt));
    if o.json {
        let mut v = json!({
            "identical": identical,
            "mode": if o.live { "live" } else { "recorded" },
            "missing_calls": missing,
            "published": identity(&published),
            "rebuilt": identity(&rebuilt),
        });
        if let Some(d) = &diff {
            v["diff"] = serde_json::from_str(&archive_json(d)).unwrap_or_default();
        }
        out.data(serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        let mut s = String::new();
        if missing > 0 {
            s.push_str(&format!(
                "{missing} calls are not in the recorded responses (they failed instead of asking a model; `--live` asks again)\n"
            ));
        }
        s.push_str(&format!(
            "published  sha256 {}  manifest {}\nrebuilt    sha256 {}  manifest {}\n",
            published.archive_sha256, published.manifest_sha256, rebuilt.archive_sha256, rebuilt.manifest_sha256
        ));
        if identical {
            s.push_str("bit-identical: the published archive is reproduced");
        } else if published.manifest_sha256 == rebuilt.manifest_sha256 {
            s.push_str(
                "not bit-identical, but the same files (the manifest identity matches): the compression differs",
            );
        } else {
            s.push_str("not identical\n\n");
            if let Some(d) = &diff {
                s.push_str(&render_archive(d, out.is_verbose()));
            }
        }
        out.data(s);
    }
    Ok(identical)
}

fn identity(d: &Dataset) -> serde_json::Value {
    json!({ "archive_sha256": d.archive_sha256, "manifest_sha256": d.manifest_sha256, "samples": d.samples.len() })
}

/// The spec a lock was made from: `--spec`, else `<file>` beside the lock, `../specs/<file>`
/// relative to it, `./specs/<file>` or `./<file>`.
fn find_spec(out: &Output, lock_path: &Path, file: &str, explicit: Option<&Path>) -> Result<PathBuf, Failed> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let name = Path::new(file);
    if name.components().count() != 1 || file.is_empty() {
        out.error(format!("`{}` names its spec as `{file}`, which is not a file name", lock_path.display()));
        return Err(Failed);
    }
    let dir = lock_path.parent().unwrap_or(Path::new(""));
    let candidates =
        [dir.join(name), dir.join("..").join("specs").join(name), Path::new("specs").join(name), name.to_path_buf()];
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let tried: Vec<String> = candidates.iter().map(|p| format!("`{}`", p.display())).collect();
    out.error(format!(
        "cannot find spec `{file}` for `{}` (tried {}); pass it with --spec",
        lock_path.display(),
        tried.join(", ")
    ));
    Err(Failed)
}
