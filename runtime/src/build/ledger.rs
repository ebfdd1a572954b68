//! The calls a dataset was made with, totalled per stage and model as items finish.
//!
//! Provenance carries these totals and the model ids and `system_fingerprint`s the replies
//! reported (the basis of drift warnings). They are gathered as each item's record is finished,
//! so packaging never needs every record at once. Only facts stored with the responses count —
//! tokens, the answering model — never whether a call was made now or served from the store, so
//! a rebuild gives the same ledger.

use std::collections::{BTreeMap, BTreeSet};

use sdc_compiler::plan::Plan;
use serde::Serialize;

use super::calls::CallTrace;

/// Calls, tokens and cost of one (stage, model) pair.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StageTotals {
    pub stage: String,
    /// The model alias the stage calls.
    pub model: String,
    pub calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: f64,
}

pub struct Ledger<'p> {
    plan: &'p Plan,
    totals: BTreeMap<(String, String), StageTotals>,
    /// Per model alias: the model ids replies reported.
    pub reported: BTreeMap<String, BTreeSet<String>>,
    /// Per model alias: the fingerprints replies carried.
    pub fingerprints: BTreeMap<String, BTreeSet<String>>,
}

impl<'p> Ledger<'p> {
    pub fn new(plan: &'p Plan) -> Ledger<'p> {
        Ledger { plan, totals: BTreeMap::new(), reported: BTreeMap::new(), fingerprints: BTreeMap::new() }
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
            let t = self.totals.entry(key).or_insert_with(|| StageTotals {
                stage: c.stage.clone(),
                model: alias.to_string(),
                ..StageTotals::default()
            });
            t.calls += 1;
            t.prompt_tokens += c.prompt_tokens;
            t.completion_tokens += c.completion_tokens;
            if let Some(m) = self.plan.models.iter().find(|m| m.alias == alias) {
                t.cost += crate::model::cost(
                    m,
                    crate::model::Usage { prompt_tokens: c.prompt_tokens, completion_tokens: c.completion_tokens },
                );
            }
        }
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
