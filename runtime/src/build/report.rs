//! The end-of-build report: per stage in/out/rejected/failed, calls made against calls served
//! from the store, tokens, cost and wall time; the accounting of every planned item; what was
//! built. Printed for people by the CLI, or as JSON with `--format json`. Unlike provenance,
//! the report describes this run (timings, store hits) and is never part of the archive.

use std::time::Duration;

use sdc_compiler::plan::Plan;
use serde::Serialize;

use super::Outcomes;
use super::ledger::{Billing, Ledger};
use super::outcome::{Books, Fate, StageStats};
use super::package::Packaged;

#[derive(Clone, Debug, Serialize)]
pub struct Accounting {
    pub kind: String,
    pub planned: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub failed: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BuildReport {
    pub dataset: String,
    /// Models answered by the builtin offline generator, and why.
    pub offline: Vec<String>,
    pub stages: Vec<StageStats>,
    pub accounting: Vec<Accounting>,
    pub calls_made: u64,
    pub calls_served: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: f64,
    /// Per (stage, model): calls made online and by batch engines, and the billed cost (batch
    /// calls at the batch price); also in the ledger file beside the archive.
    pub billing: Vec<Billing>,
    /// Calls of the dataset answered by batch engines.
    pub batch_calls: u64,
    /// What the dataset's calls cost: online calls at the online price, batch calls at the batch
    /// price.
    pub billed_cost: f64,
    pub documents: u64,
    pub skipped_files: u64,
    pub unresolved_images: u64,
    pub allocation_shortfall: u64,
    pub package: Packaged,
    pub wall_ms: u64,
}

fn account<'a>(kind: &str, fates: impl Iterator<Item = &'a Fate>) -> Accounting {
    let mut a = Accounting { kind: kind.to_string(), planned: 0, accepted: 0, rejected: 0, failed: 0 };
    for f in fates {
        a.planned += 1;
        match f {
            Fate::Accepted => a.accepted += 1,
            Fate::Rejected { .. } => a.rejected += 1,
            Fate::Failed { .. } => a.failed += 1,
        }
    }
    a
}

/// Every planned item's end, per kind: images, chunks, tasks, and the accepted tasks' samples
/// (of which dedup rejects the duplicates). Provenance records the same table.
pub(super) fn accounting(out: &Outcomes, duplicates: u64) -> Vec<Accounting> {
    let mut samples = account("sample", out.tasks.values().filter(|t| t.fate.is_accepted()).map(|t| &t.fate));
    samples.rejected = duplicates;
    samples.accepted = samples.planned - samples.rejected;
    vec![
        account("image", out.images.values().map(|o| &o.fate)),
        account("chunk", out.chunks.values().map(|o| &o.fate)),
        account("task", out.tasks.values().map(|t| &t.fate)),
        samples,
    ]
}

pub fn report(
    plan: &Plan,
    out: &Outcomes,
    packaged: &Packaged,
    ledger: &Ledger<'_>,
    books: &Books,
    wall: Duration,
) -> BuildReport {
    let billing = ledger.billing();
    let stages = books.stats();
    let model_stats = stages.iter().filter(|s| s.stage != "verification");
    let (mut made, mut served, mut pt, mut ct, mut cost) = (0, 0, 0, 0, 0.0);
    for s in model_stats {
        made += s.calls_made;
        served += s.calls_served;
        pt += s.prompt_tokens;
        ct += s.completion_tokens;
        cost += s.cost;
    }
    BuildReport {
        dataset: format!("{}@{}", plan.dataset.name, plan.dataset.version),
        offline: plan
            .models
            .iter()
            .filter(|m| m.provider == "builtin")
            .map(|m| format!("model `{}` used the builtin offline generator {}", m.alias, m.resolved))
            .collect(),
        accounting: accounting(out, packaged.duplicates),
        stages,
        calls_made: made,
        calls_served: served,
        prompt_tokens: pt,
        completion_tokens: ct,
        cost,
        batch_calls: billing.iter().map(|b| b.batch_calls).sum(),
        billed_cost: billing.iter().map(|b| b.billed_cost).sum(),
        billing,
        documents: out.ingested.documents.len() as u64,
        skipped_files: out.ingested.skipped.len() as u64,
        unresolved_images: out.ingested.unresolved.len() as u64,
        allocation_shortfall: out.allocation.groups.iter().map(|g| g.target.saturating_sub(g.selected)).sum(),
        package: packaged.clone(),
        wall_ms: wall.as_millis() as u64,
    }
}
