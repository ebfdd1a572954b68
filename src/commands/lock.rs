//! `sdc lock`, and the lock handling `sdc build` shares with it.
//!
//! The modes follow cargo and uv: by default the lock is brought up to date and the changes are
//! printed; `--locked` fails, listing every drifted entry, instead of changing it; `--frozen`
//! uses it as is without resolving anything.

use std::collections::BTreeSet;
use std::path::Path;

use sdc_compiler::Diagnostic;
use sdc_compiler::lock::{self, Change, Lockfile, Resolutions, UpdateTarget};
use sdc_runtime::Environment;
use sdc_runtime::provider::{ResolveOptions, resolve_models};

use super::Failed;
use super::fmt::write_atomic;
use crate::output::Output;
use crate::project::{self, Loaded};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Update,
    Locked,
    Frozen,
}

impl Mode {
    pub fn from_flags(locked: bool, frozen: bool) -> Mode {
        if frozen {
            Mode::Frozen
        } else if locked {
            Mode::Locked
        } else {
            Mode::Update
        }
    }
}

pub fn run(out: &Output, path: &Path, updates: &[UpdateTarget], locked: bool) -> Result<(), Failed> {
    let loaded = project::load(out, path)?;
    if locked && !updates.is_empty() {
        out.error("`--locked` and `--update` contradict each other");
        return Err(Failed);
    }
    if updates.is_empty() {
        ensure(out, &loaded, if locked { Mode::Locked } else { Mode::Update })?;
        return Ok(());
    }
    let Some(previous) = read_lock(out, &loaded)? else {
        out.error(format!(
            "`{}` does not exist yet; run `sdc lock {}` first",
            loaded.lock_path().display(),
            path.display()
        ));
        return Err(Failed);
    };
    let force: BTreeSet<String> =
        updates.iter().filter_map(|u| if let UpdateTarget::Model(m) = u { Some(m.clone()) } else { None }).collect();
    let fresh = fresh_lock(out, &loaded, Some(&previous), &ResolveOptions { force, ..Default::default() })?;
    let mut updated = previous.clone();
    for target in updates {
        updated = lock::apply_update(&loaded.spec, &updated, &fresh, target).map_err(|e| {
            out.error(e);
            Failed
        })?;
    }
    let changes = lock::diff(&previous, &updated);
    write(out, &loaded, &updated, &changes)
}

/// Makes sure an up-to-date lock exists according to `mode`, and returns it.
pub fn ensure(out: &Output, loaded: &Loaded, mode: Mode) -> Result<Lockfile, Failed> {
    let previous = read_lock(out, loaded)?;
    let lock_path = loaded.lock_path();
    match mode {
        Mode::Frozen => previous.ok_or_else(|| {
            out.error(format!("`--frozen` needs a lockfile, and `{}` does not exist", lock_path.display()));
            Failed
        }),
        Mode::Locked => {
            let Some(previous) = previous else {
                out.error(format!(
                    "`--locked` needs a lockfile, and `{}` does not exist; run `sdc lock` first",
                    lock_path.display()
                ));
                return Err(Failed);
            };
            let fresh =
                fresh_lock(out, loaded, Some(&previous), &ResolveOptions { offline: true, ..Default::default() })?;
            let changes = lock::diff(&previous, &fresh);
            if changes.is_empty() {
                out.status(format!("{} is up to date", lock_path.display()));
                return Ok(previous);
            }
            out.error(format!(
                "`{}` is out of date ({} drifted entr{}), and `--locked` forbids updating it:",
                lock_path.display(),
                changes.len(),
                if changes.len() == 1 { "y" } else { "ies" }
            ));
            for c in &changes {
                eprintln!("  {c}");
            }
            eprintln!("help: run `sdc lock {}` and review the changes", loaded.source.path().display());
            Err(Failed)
        }
        Mode::Update => {
            let fresh = fresh_lock(out, loaded, previous.as_ref(), &ResolveOptions::default())?;
            let changes = match &previous {
                Some(p) => lock::diff(p, &fresh),
                None => Vec::new(),
            };
            if previous.is_none()
                || !changes.is_empty()
                || previous.as_ref().map(lock::write) != Some(lock::write(&fresh))
            {
                write(out, loaded, &fresh, &changes)?;
            } else {
                out.status(format!("{} is up to date", lock_path.display()));
            }
            Ok(fresh)
        }
    }
}

/// A lock computed now from the spec, reusing model pins from `previous` where unchanged.
pub fn fresh_lock(
    out: &Output,
    loaded: &Loaded,
    previous: Option<&Lockfile>,
    options: &ResolveOptions,
) -> Result<Lockfile, Failed> {
    let spec = &loaded.spec;
    let env = Environment::load(std::env::current_dir().as_deref().unwrap_or(Path::new(".")));
    let report = |diags: Vec<Diagnostic>| {
        out.diagnostics(&loaded.source, &diags);
        out.error(format!("cannot lock `{}`", loaded.source.path().display()));
        Failed
    };
    // Starting the interpreter (through a pyenv shim, ~30 processes) is most of a no-op
    // rebuild's lock check: it runs while the models are resolved.
    let python = std::thread::scope(|scope| {
        let python = spec.verify.as_ref().map(|v| scope.spawn(|| sdc_runtime::python::probe(v)));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
            out.error(format!("cannot start the async runtime: {e}"));
            Failed
        });
        let models = runtime.map(|r| r.block_on(resolve_models(spec, &env, previous, options)));
        let python = python.map(|h| h.join().unwrap_or_else(|_| Err(python_panicked(spec))));
        (models, python)
    });
    let (models, python) = python;
    let models = models?.map_err(report)?;
    for (alias, m) in &models {
        if let Some(reason) = &m.offline_reason {
            out.status(format!("note: model `{alias}` uses the builtin offline generator ({reason})"));
        }
        out.detail(format!("model `{alias}` → {}", m.resolved));
    }
    let python_version = match python {
        Some(probed) => Some(probed.map_err(|d| report(vec![d]))?),
        None => None,
    };
    let res = Resolutions { models, python_version };
    lock::build(spec, &loaded.file_name(), &loaded.canonical(), &res).map_err(report)
}

/// The probe thread cannot panic on input (it only runs a process), but if it did the lock
/// must fail with a diagnostic, not abort.
fn python_panicked(spec: &sdc_compiler::spec::Spec) -> Diagnostic {
    let span = spec.verify.as_ref().map(|v| v.python_span).unwrap_or_default();
    Diagnostic::error(sdc_compiler::diagnostic::Code::PathNotFound, span, "probing the verification python failed")
}

fn read_lock(out: &Output, loaded: &Loaded) -> Result<Option<Lockfile>, Failed> {
    let path = loaded.lock_path();
    match std::fs::read_to_string(&path) {
        Ok(text) => lock::parse(&text).map(Some).map_err(|e| {
            out.error(format!("cannot read lockfile `{}`: {e}", path.display()));
            eprintln!("help: delete it and run `sdc lock` to write a new one");
            Failed
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => {
            out.error(format!("cannot read lockfile `{}`: {e}", path.display()));
            Err(Failed)
        }
    }
}

fn write(out: &Output, loaded: &Loaded, lock: &Lockfile, changes: &[Change]) -> Result<(), Failed> {
    let path = loaded.lock_path();
    let text = lock::write(lock);
    let unchanged = std::fs::read_to_string(&path).is_ok_and(|old| old == text);
    if unchanged {
        out.status(format!("{} is up to date", path.display()));
        return Ok(());
    }
    write_atomic(&path, &text).map_err(|e| {
        out.error(format!("cannot write `{}`: {e}", path.display()));
        Failed
    })?;
    if changes.is_empty() {
        out.status(format!("wrote {}", path.display()));
    } else {
        out.status(format!(
            "updated {} ({} change{}):",
            path.display(),
            changes.len(),
            if changes.len() == 1 { "" } else { "s" }
        ));
        for c in changes {
            out.status(format!("  {c}"));
        }
    }
    Ok(())
}
