//! What became of every item, and the books that must close.
//!
//! Every item a build plans — an image, a chunk, a task — ends as exactly one [`Fate`]:
//! accepted, rejected by a stage (with the reason), or failed in a stage (with the error and how
//! many attempts were made). Stage statistics count items in and out of each stage, and
//! [`Books::check`] proves that nothing was lost: for every stage, what came in either went out,
//! was rejected or failed, and every stage's input is the previous one's output.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Fate {
    Accepted,
    Rejected { stage: String, reason: String },
    Failed { stage: String, error: String, attempts: u32 },
}

impl Fate {
    pub fn is_accepted(&self) -> bool {
        matches!(self, Fate::Accepted)
    }

    pub fn stage(&self) -> Option<&str> {
        match self {
            Fate::Accepted => None,
            Fate::Rejected { stage, .. } | Fate::Failed { stage, .. } => Some(stage),
        }
    }
}

/// Counters for one stage of the build.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StageStats {
    pub stage: String,
    pub items_in: u64,
    pub items_out: u64,
    pub rejected: u64,
    pub failed: u64,
    pub calls_made: u64,
    pub calls_served: u64,
    pub calls_failed: u64,
    /// Calls a replay-only build (`sdc reproduce`) did not find in the store.
    #[serde(default)]
    pub calls_missing: u64,
    /// Requests sent again after a transient failure (made and failed calls); the cost ledger's
    /// view of what a flaky server cost in requests. Not in provenance: it depends on the run.
    #[serde(default)]
    pub retries: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: f64,
    pub wall_ms: u64,
    /// CPU time of sdc itself during the stage's phase (shared by the stages of one phase).
    #[serde(default)]
    pub cpu_ms: u64,
}

/// Per-stage statistics in pipeline order, keyed by stage name.
#[derive(Clone, Debug, Default)]
pub struct Books {
    order: Vec<String>,
    stages: BTreeMap<String, StageStats>,
    /// (upstream, downstream): what the upstream stage passes on is what the downstream receives.
    links: Vec<(String, String)>,
}

impl Books {
    pub fn stage(&mut self, name: &str) -> &mut StageStats {
        if !self.stages.contains_key(name) {
            self.order.push(name.to_string());
            self.stages.insert(name.to_string(), StageStats { stage: name.to_string(), ..Default::default() });
        }
        self.stages.get_mut(name).expect("inserted above")
    }

    /// Declares that `downstream` receives exactly what `upstream` passes on.
    pub fn link(&mut self, upstream: &str, downstream: &str) {
        self.links.push((upstream.to_string(), downstream.to_string()));
    }

    /// Counts one item through a stage.
    pub fn count(&mut self, name: &str, fate_here: &StageFate) {
        let s = self.stage(name);
        s.items_in += 1;
        match fate_here {
            StageFate::Passed => s.items_out += 1,
            StageFate::Rejected => s.rejected += 1,
            StageFate::Failed => s.failed += 1,
        }
    }

    pub fn stats(&self) -> Vec<StageStats> {
        self.order.iter().filter_map(|n| self.stages.get(n).cloned()).collect()
    }

    /// Every imbalance, described; empty when the books close.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for s in self.stages.values() {
            if s.items_in != s.items_out + s.rejected + s.failed {
                problems.push(format!(
                    "stage `{}`: {} in ≠ {} out + {} rejected + {} failed",
                    s.stage, s.items_in, s.items_out, s.rejected, s.failed
                ));
            }
        }
        for (up, down) in &self.links {
            let out = self.stages.get(up).map_or(0, |s| s.items_out);
            let inn = self.stages.get(down).map_or(0, |s| s.items_in);
            if out != inn {
                problems.push(format!("stage `{up}` passed on {out} items but `{down}` received {inn}"));
            }
        }
        problems
    }
}

/// What happened to an item in one stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageFate {
    Passed,
    Rejected,
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn books_close_only_when_everything_is_counted() {
        let mut b = Books::default();
        b.link("a", "b");
        for f in [StageFate::Passed, StageFate::Passed, StageFate::Rejected] {
            b.count("a", &f);
        }
        b.count("b", &StageFate::Passed);
        assert_eq!(b.check(), ["stage `a` passed on 2 items but `b` received 1"]);
        b.count("b", &StageFate::Failed);
        assert!(b.check().is_empty());
        b.stage("a").items_in += 1;
        assert_eq!(b.check(), ["stage `a`: 4 in ≠ 2 out + 1 rejected + 0 failed"]);
    }
}
