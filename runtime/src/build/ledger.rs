//! The calls a dataset was made with, totalled per stage and model as items finish.
//!
//! Provenance carries these totals and the model ids and `system_fingerprint`s the replies
//! reported (the basis of drift warnings). They are gathered as each item's record is finished,
//! so packaging never needs every record at once. Only facts stored with the responses count —
//! tokens, the answering model — never whether a call was made now or served from the store, so
//! a rebuild gives the same ledger.
//!
//! Which plane made a call (online or a batch engine, `sdc batch import`) is kept apart, in
//! [`Billing`]: the report and the ledger file next to the archive price batch calls at the batch
//! price, while provenance keeps tokens and the online list price only. What a dataset is cannot
//! depend on how its calls were executed, so an archive built from batch results is
//! byte-identical to one built online with the same replies. Costs are computed from the integer
//! token totals, never summed per call in completion order, so they are the same whatever the
//! concurrency.

use std::collections::{BTreeMap, BTreeSet};

use sdc_compiler::plan::{Plan, PlanModel};
use serde::Serialize;

use super::calls::CallTrace;
use crate::model::Usage;

/// Calls, tokens and cost of one (stage, model) pair, as provenance records them (and
/// `sdc analyze` reads them back).
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct StageTotals {
    pub stage: String,
    /// The model alias the stage calls.
    pub model: String,
    pub calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: f64,
}

/// Per (stage, model): the calls batch engines answered, and what the calls were billed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Billing {
    pub stage: String,
    pub model: String,
    pub calls: u64,
    pub online_calls: u64,
    pub batch_calls: u64,
    pub batch_prompt_tokens: u64,
    pub batch_completion_tokens: u64,
    /// Every call at the online price (provenance's `cost`).
    pub list_cost: f64,
    /// The batch calls at the batch price.
    pub batch_cost: f64,
    /// Online calls at the online price plus batch calls at the batch price.
    pub billed_cost: f64,
}

pub struct Ledger<'p> {
    plan: &'p Plan,
    totals: BTreeMap<(String, String), StageTotals>,
    /// Per (stage, model): calls, prompt and completion tokens answered by batch engines.
    batch: BTreeMap<(String, String), (u64, u64, u64)>,
    /// Per model alias: the model ids replies reported.
    pub reported: BTreeMap<String, BTreeSet<String>>,
    /// Per model alias: the fingerprints replies carried.
    pub fingerprints: BTreeMap<String, BTreeSet<String>>,
}

impl<'p> Ledger<'p> {
    pub fn new(plan: &'p Plan) -> Ledger<'p> {
        Ledger {
            plan,
            totals: BTreeMap::new(),
            batch: BTreeMap::new(),
            reported: BTreeMap::new(),
            fingerprints: BTreeMap::new(),
        }
    }

    pub fn add(&mut self, calls: &[CallTrace]) {
        for c in calls {
            let stage = self.plan.stages.iter().find(|s| s.kind.as_str() == c.stage);
            let alias = stage.map_or("", |s| s.model.as_str());
            if stage.is_some() {
                if !self.reported.get(alias).is_some_and(|s| s.contains(&c.model)) {
                    self.reported.entry(alias.to_string()).or_default().insert(c.model.clone());
                }
                if let Some(f) = &c.fingerprint {
                    self.fingerprints.entry(alias.to_string()).or_default().insert(f.clone());
                }
            }
            let key = (c.stage.clone(), alias.to_string());
            if c.batch {
                let b = self.batch.entry(key.clone()).or_default();
                b.0 += 1;
                b.1 += c.prompt_tokens;
                b.2 += c.completion_tokens;
            }
            let t = self.totals.entry(key).or_insert_with(|| StageTotals {
                stage: c.stage.clone(),
                model: alias.to_string(),
                ..StageTotals::default()
            });
            t.calls += 1;
            t.prompt_tokens += c.prompt_tokens;
            t.completion_tokens += c.completion_tokens;
            if let Some(m) = self.plan.models.iter().find(|m| m.alias == alias) {
                let usage = Usage { prompt_tokens: t.prompt_tokens, completion_tokens: t.completion_tokens };
                t.cost = crate::model::cost(m, usage);
            }
        }
    }

    fn model(&self, alias: &str) -> Option<&PlanModel> {
        self.plan.models.iter().find(|m| m.alias == alias)
    }

    /// The plane split and billed cost per (stage, model), in (stage, model) order.
    pub fn billing(&self) -> Vec<Billing> {
        self.totals
            .iter()
            .map(|(key, t)| {
                let (batch_calls, bp, bc) = self.batch.get(key).copied().unwrap_or_default();
                let batch = Usage { prompt_tokens: bp, completion_tokens: bc };
                let online = Usage {
                    prompt_tokens: t.prompt_tokens.saturating_sub(bp),
                    completion_tokens: t.completion_tokens.saturating_sub(bc),
                };
                let (batch_cost, online_cost) = self
                    .model(&t.model)
                    .map_or((0.0, 0.0), |m| (crate::model::batch_cost(m, batch), crate::model::cost(m, online)));
                Billing {
                    stage: t.stage.clone(),
                    model: t.model.clone(),
                    calls: t.calls,
                    online_calls: t.calls - batch_calls.min(t.calls),
                    batch_calls,
                    batch_prompt_tokens: bp,
                    batch_completion_tokens: bc,
                    list_cost: t.cost,
                    batch_cost,
                    billed_cost: online_cost + batch_cost,
                }
            })
            .collect()
    }

    /// Totals in (stage, model) order.
    pub fn totals(&self) -> Vec<&StageTotals> {
        self.totals.values().collect()
    }

    /// Online models whose replies name another model id than the lock, or several fingerprints.
    pub fn drift(&self) -> Vec<String> {
        let mut drift = Vec::new();
        for m in self.plan.models.iter().filter(|m| m.provider != "builtin") {
            let others: Vec<&str> = self
                .reported
                .get(&m.alias)
                .into_iter()
                .flatten()
                .filter(|id| **id != m.resolved && !id.is_empty())
                .map(String::as_str)
                .collect();
            if !others.is_empty() {
                drift.push(format!(
                    "model `{}`: the lock pins `{}`, replies came from `{}`",
                    m.alias,
                    m.resolved,
                    others.join("`, `")
                ));
            }
            let prints: Vec<&str> = self.fingerprints.get(&m.alias).into_iter().flatten().map(String::as_str).collect();
            if prints.len() > 1 {
                drift.push(format!(
                    "model `{}`: replies carry {} system fingerprints: {}",
                    m.alias,
                    prints.len(),
                    prints.join(", ")
                ));
            }
        }
        drift
    }
}
