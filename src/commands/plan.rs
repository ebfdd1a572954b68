//! `sdc plan`: what a build would do and cost, before any model call.

use std::fmt::Write as _;
use std::path::Path;

use sdc_compiler::plan::{Estimate, Plan, estimate};
use sdc_compiler::sources::{self, Census};
use sdc_runtime::provider::ResolveOptions;

use super::Failed;
use super::lock::fresh_lock;
use crate::output::Output;
use crate::project;

pub fn run(out: &Output, path: &Path, json: bool) -> Result<(), Failed> {
    let loaded = project::load(out, path)?;
    let previous = std::fs::read_to_string(loaded.lock_path()).ok().and_then(|t| sdc_compiler::lock::parse(&t).ok());
    // Never contact a server for an estimate: pinned models come from the lock, others are
    // shown as unresolved.
    let lock = fresh_lock(
        out,
        &loaded,
        previous.as_ref(),
        &ResolveOptions { offline: true, unpinned_ok: true, ..Default::default() },
    )?;
    let lock_state = match &previous {
        None => "no lockfile yet".to_string(),
        Some(p) if sdc_compiler::lock::diff(p, &lock).is_empty() => "up to date".to_string(),
        Some(p) => format!("{} drifted entries; run `sdc lock`", sdc_compiler::lock::diff(p, &lock).len()),
    };
    let plan = Plan::new(&loaded.spec, &lock);
    let mut census = Vec::new();
    for s in &plan.sources {
        let root = loaded
            .spec
            .sources
            .iter()
            .find(|x| x.name == s.name)
            .map(|x| x.root.resolve(&loaded.spec.dir))
            .unwrap_or_default();
        for f in &s.files {
            let c = match (f.kind, std::fs::read(root.join(&f.path))) {
                (Some(kind), Ok(bytes)) => sources::census(kind, &bytes),
                _ => Census::default(),
            };
            census.push(c);
        }
    }
    let est = estimate(&plan, &census);
    if json {
        let value = serde_json::json!({ "lock": lock_state, "plan_digest": lock.plan.digest, "estimate": est });
        out.data(serde_json::to_string_pretty(&value).unwrap_or_default());
    } else {
        out.data(render(&est, &lock_state, &loaded.lock_path().display().to_string()));
    }
    Ok(())
}

fn render(e: &Estimate, lock_state: &str, lock_path: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "plan for {} (lock {lock_path}: {lock_state})\n", e.dataset);
    let _ = writeln!(o, "stages     {}", e.stages.join(" → "));
    for s in &e.sources {
        let _ = writeln!(
            o,
            "source     {}: {} notebooks, {} mdx, {} markdown, {} pdf ({})",
            s.name,
            s.notebooks,
            s.mdx,
            s.markdown,
            s.pdf,
            bytes(s.bytes)
        );
    }
    let _ = writeln!(o, "documents  {}   images ≈ {}   chunks ≈ {}\n", e.documents, e.images, e.chunks);
    let _ = writeln!(
        o,
        "{:<22}{:>8}{:>12}{:>10}{:>12}{:>8}{:>12}",
        "task type", "wanted", "multimodal", "planned", "multimodal", "text", "feasible"
    );
    for (t, f) in e.tasks.iter().zip(&e.feasible) {
        let feasible = format!("{}+{}", f.multimodal, f.text);
        let _ = writeln!(
            o,
            "{:<22}{:>8}{:>12}{:>10}{:>12}{:>8}{:>12}",
            t.task.as_str(),
            t.wanted,
            t.wanted_multimodal,
            t.planned,
            t.planned_multimodal,
            t.planned_text,
            feasible
        );
    }
    let _ = writeln!(
        o,
        "\n{:<18}{:<10}{:<26}{:>8}{:>13}{:>13}{:>11}",
        "stage", "model", "resolved", "calls", "input tok", "output tok", "cost"
    );
    for c in &e.calls {
        let _ = writeln!(
            o,
            "{:<18}{:<10}{:<26}{:>8}{:>13}{:>13}{:>11}",
            c.stage.as_str(),
            c.model,
            c.resolved,
            c.calls,
            c.input_tokens,
            c.output_tokens,
            format!("{:.2}", c.cost)
        );
    }
    let _ = writeln!(
        o,
        "{:<54}{:>8}{:>13}{:>13}{:>11}",
        "total",
        e.total_calls,
        e.total_input_tokens,
        e.total_output_tokens,
        format!("{:.2}", e.total_cost)
    );
    let _ = writeln!(
        o,
        "\n{:<18}{:<36}{:>8}{:>13}{:>13}{:>11}",
        "model", "resolved", "calls", "input tok", "output tok", "cost"
    );
    for m in &e.per_model {
        let cost = format!("{:.2}", m.cost);
        let _ = writeln!(
            o,
            "{:<18}{:<36}{:>8}{:>13}{:>13}{:>11}",
            m.model, m.resolved, m.calls, m.input_tokens, m.output_tokens, cost
        );
    }
    let _ = write!(o, "\nfeasible = multimodal + text tasks the corpus can supply\nestimates: {}", e.method);
    o
}

fn bytes(n: u64) -> String {
    if n >= 1_000_000 { format!("{:.1} MB", n as f64 / 1e6) } else { format!("{:.1} kB", n as f64 / 1e3) }
}
