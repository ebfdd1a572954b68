//! `sdc build`: bring the lock up to date (or check it, or take it as is), then execute the plan
//! into the dataset archive and print the build report.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use sdc_compiler::lock::Lockfile;
use sdc_compiler::plan::Plan;
use sdc_compiler::templates;
use sdc_runtime::build::{self, BuildError, BuildOptions, BuildReport, progress};

use super::Failed;
use super::lock::{Mode, ensure};
use crate::output::Output;
use crate::project::{self, Loaded};

pub struct Options {
    pub mode: Mode,
    pub store: Option<PathBuf>,
    pub concurrency: usize,
    pub threads: usize,
    pub json: bool,
}

pub fn run(out: &Output, path: &Path, options: &Options) -> Result<(), Failed> {
    let loaded = project::load(out, path)?;
    let lock = ensure(out, &loaded, options.mode)?;
    let plan = Plan::new(&loaded.spec, &lock);
    let opts = build_options(out, &loaded, &plan, options);
    note_builtin(out, &plan);
    match runtime(out)?.block_on(build::run(&plan, &opts)) {
        Ok(report) => {
            if options.json {
                out.data(serde_json::to_string_pretty(&report).unwrap_or_default());
            } else {
                out.data(render(&report));
            }
            Ok(())
        }
        Err(e) => {
            out.error(e.to_string());
            Err(Failed)
        }
    }
}

/// The executor's options for a spec, as `sdc build` and `sdc batch export` run it: the store,
/// the verification environments, progress, and the online models' connections from the
/// environment (never written anywhere).
pub fn build_options(out: &Output, loaded: &Loaded, plan: &Plan, options: &Options) -> BuildOptions {
    let lock_text = std::fs::read(loaded.lock_path()).unwrap_or_default();
    let run = Run {
        store_dir: store_dir(loaded, options.store.as_deref()),
        archive: loaded.spec.output.archive.resolve(&loaded.spec.dir),
        online: true,
        replay_only: false,
        fail_on_drift: matches!(options.mode, Mode::Locked),
        concurrency: options.concurrency,
        threads: options.threads,
        quiet: options.json,
    };
    options_for(out, loaded, plan, &lock_text, &run)
}

/// Where and how one execution of a locked plan runs (`sdc build`, `sdc reproduce`).
pub struct Run {
    pub store_dir: PathBuf,
    pub archive: PathBuf,
    /// Connect to the OpenAI-compatible models named by the environment.
    pub online: bool,
    /// Serve every call from the store; a call it does not hold fails.
    pub replay_only: bool,
    pub fail_on_drift: bool,
    pub concurrency: usize,
    pub threads: usize,
    /// No progress output.
    pub quiet: bool,
}

fn options_for(out: &Output, loaded: &Loaded, plan: &Plan, lock_text: &[u8], run: &Run) -> BuildOptions {
    let spec = &loaded.spec;
    let envs_dir = std::env::var_os("SDC_ENV_DIR").map_or_else(|| run.store_dir.join("envs"), PathBuf::from);
    let mode = if out.is_quiet() || run.quiet {
        progress::Mode::Quiet
    } else if std::io::stderr().is_terminal() && std::env::var_os("SDC_NO_PROGRESS").is_none() {
        progress::Mode::Bars
    } else {
        progress::Mode::Lines
    };
    let mut connections = BTreeMap::new();
    if run.online {
        let env = sdc_runtime::Environment::load(std::env::current_dir().as_deref().unwrap_or(Path::new(".")));
        let online: Vec<&str> =
            plan.models.iter().filter(|m| m.provider != "builtin").map(|m| m.alias.as_str()).collect();
        connections = sdc_runtime::provider::connections(spec, &env);
        connections.retain(|alias, _| online.contains(&alias.as_str()));
    }
    BuildOptions {
        connections,
        fail_on_drift: run.fail_on_drift,
        spec_dir: spec.dir.clone(),
        prompts_dir: templates::prompts_dir(spec),
        store_dir: run.store_dir.clone(),
        envs_dir,
        archive: run.archive.clone(),
        concurrency: run.concurrency,
        ingest_threads: run.threads,
        progress: mode,
        lock_sha256: sdc_compiler::hash::sha256_hex(lock_text),
        reproduce: reproduce_command(loaded.source.path()),
        replay_only: run.replay_only,
    }
}

/// The command the dataset card gives to reproduce the build. It is part of the archive's
/// bytes, so it never depends on how the spec's path was typed or where sdc ran: a spec in a
/// directory named `specs` is `specs/<file>` (the project layout), any other just `<file>`.
pub fn reproduce_command(spec_path: &Path) -> String {
    let file = spec_path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let absolute = std::path::absolute(spec_path).unwrap_or_else(|_| spec_path.to_path_buf());
    let in_specs = absolute.parent().and_then(Path::file_name).is_some_and(|d| d == "specs");
    if in_specs { format!("sdc build specs/{file} --frozen") } else { format!("sdc build {file} --frozen") }
}

/// Executes `lock`'s plan for `loaded` as `run` says (`sdc reproduce`); the build's own error is
/// returned, not printed.
pub fn execute_raw(
    out: &Output,
    loaded: &Loaded,
    lock: &Lockfile,
    lock_text: &[u8],
    run: &Run,
) -> Result<Result<BuildReport, BuildError>, Failed> {
    let plan = Plan::new(&loaded.spec, lock);
    let opts = options_for(out, loaded, &plan, lock_text, run);
    note_builtin(out, &plan);
    Ok(runtime(out)?.block_on(build::run(&plan, &opts)))
}

fn note_builtin(out: &Output, plan: &Plan) {
    for m in plan.models.iter().filter(|m| m.provider == "builtin") {
        out.status(format!("note: model `{}` uses the builtin offline generator {}", m.alias, m.resolved));
    }
}

/// `--store`, or the spec's `paths.store`.
pub fn store_dir(loaded: &Loaded, store: Option<&Path>) -> PathBuf {
    store.map_or_else(|| loaded.spec.paths.store.resolve(&loaded.spec.dir), Path::to_path_buf)
}

pub fn runtime(out: &Output) -> Result<tokio::runtime::Runtime, Failed> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| {
        out.error(format!("cannot start the async runtime: {e}"));
        Failed
    })
}

fn render(r: &BuildReport) -> String {
    let mut s = String::new();
    let p = &r.package;
    s.push_str(&format!("built {} in {:.2} s\n", r.dataset, r.wall_ms as f64 / 1000.0));
    for note in &r.offline {
        s.push_str(&format!("  offline: {note}\n"));
    }
    s.push_str(&format!(
        "\n{:<17} {:>7} {:>7} {:>8} {:>6} {:>7} {:>7} {:>10} {:>10} {:>9} {:>8}\n",
        "stage", "in", "out", "rejected", "failed", "calls", "stored", "tokens in", "tokens out", "cost", "wall s"
    ));
    for st in &r.stages {
        s.push_str(&format!(
            "{:<17} {:>7} {:>7} {:>8} {:>6} {:>7} {:>7} {:>10} {:>10} {:>9.4} {:>8.2}\n",
            st.stage,
            st.items_in,
            st.items_out,
            st.rejected,
            st.failed,
            st.calls_made,
            st.calls_served,
            st.prompt_tokens,
            st.completion_tokens,
            st.cost,
            st.wall_ms as f64 / 1000.0
        ));
    }
    s.push_str(&format!(
        "\nmodel calls: {} made, {} served from the store; {} + {} tokens; cost {:.4}\n",
        r.calls_made, r.calls_served, r.prompt_tokens, r.completion_tokens, r.cost
    ));
    if r.batch_calls > 0 {
        for b in r.billing.iter().filter(|b| b.batch_calls > 0) {
            s.push_str(&format!(
                "  {:<17} model {:<10} {:>7} of {:>7} calls by batch engines; billed {:.4} (list {:.4})\n",
                b.stage, b.model, b.batch_calls, b.calls, b.billed_cost, b.list_cost
            ));
        }
    }
    s.push_str(&format!(
        "billed cost {:.4} ({} calls by batch engines, at the batch price); ledger {}\n",
        r.billed_cost, r.batch_calls, p.ledger_path
    ));
    s.push_str("\naccounting (every planned item ends accepted, rejected or failed):\n");
    for a in &r.accounting {
        s.push_str(&format!(
            "  {:<7} {:>6} planned = {:>6} accepted + {:>6} rejected + {:>6} failed\n",
            a.kind, a.planned, a.accepted, a.rejected, a.failed
        ));
    }
    s.push_str(&format!(
        "\ningest: {} documents, {} files skipped, {} image references unresolved\n",
        r.documents, r.skipped_files, r.unresolved_images
    ));
    if r.allocation_shortfall > 0 {
        s.push_str(&format!(
            "allocation: {} planned tasks could not be allocated (the corpus has too few candidates)\n",
            r.allocation_shortfall
        ));
    }
    let splits: Vec<String> = p
        .split
        .achieved
        .iter()
        .map(|a| format!("{} {} ({:.1} %)", a.split.as_str(), a.items, a.ratio * 100.0))
        .collect();
    s.push_str(&format!(
        "splits: {}; cross-split leakage {} documents; {} duplicates removed\n",
        splits.join(", "),
        p.split.leakage,
        p.duplicates
    ));
    for d in &p.drift {
        s.push_str(&format!("warning: {d} (`--locked` makes this an error; `sdc lock --update model:NAME` re-pins)\n"));
    }
    s.push_str(&format!(
        "\narchive: {}{}\n  sha256   {}\n  manifest {} (the dataset's identity)\n  {} samples\n",
        p.archive_path,
        if p.reused { " (unchanged, reused from the store)" } else { "" },
        p.archive_sha256,
        p.manifest_sha256,
        p.samples
    ));
    s
}
