//! What changed between two built archives (`sdc diff A B`, and `sdc reproduce` when the bytes
//! differ): their headers (models, fingerprints, prompts, seeds, verification environment,
//! documents), the records added, removed and changed by sample id, count deltas per split,
//! type, category and modality, and for every record why: which of its inputs differ.
//!
//! A record is *changed* when the same id has different row content (or split); it is
//! *re-derived* when its row is identical but its inputs are not (a prompt edit the model
//! answered the same way). Causes come from provenance: the document id recorded for the same
//! path (source), `prompt_sha256` per stage (prompt), the model ids the calls report (model),
//! the stage seeds (seed), `provenance.verification` (verification environment). Every list is
//! sorted; nothing iterates a hash map into the result.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::archive::SampleRow;
use crate::dataset::{Dataset, ProvSample, modality};

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ArchiveDiff {
    pub old: Identity,
    pub new: Identity,
    /// Header entries that differ, like the lock diff's: `model:answer`, `prompt:curate.j2`…
    pub headers: Vec<HeaderChange>,
    pub added: Vec<Record>,
    pub removed: Vec<Record>,
    pub changed: Vec<Record>,
    /// Same row, different inputs.
    pub rederived: Vec<Record>,
    /// (dimension, value) → (old count, new count), only where they differ.
    pub counts: Vec<CountDelta>,
    /// Rejections per stage, only where they differ.
    pub rejected: Vec<CountDelta>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Identity {
    pub archive_sha256: String,
    pub manifest_sha256: String,
    pub samples: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HeaderChange {
    pub entry: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Record {
    pub id: String,
    pub split: String,
    pub task_type: String,
    pub document: String,
    /// Row fields that differ (changed records only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// Which inputs explain the difference; empty when nothing recorded does.
    pub causes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CountDelta {
    pub dimension: String,
    pub value: String,
    pub old: u64,
    pub new: u64,
}

impl ArchiveDiff {
    pub fn is_identical(&self) -> bool {
        self.old.manifest_sha256 == self.new.manifest_sha256
            && self.headers.is_empty()
            && self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.rederived.is_empty()
    }
}

/// Compares two archives.
pub fn diff(old: &Dataset, new: &Dataset) -> ArchiveDiff {
    let ctx = Context::new(old, new);
    let mut d = ArchiveDiff {
        old: identity(old),
        new: identity(new),
        headers: headers(old, new),
        counts: counts(old, new),
        rejected: rejections(old, new),
        ..Default::default()
    };
    let ids: BTreeSet<&str> = old.samples.iter().chain(&new.samples).map(|s| s.row.id.as_str()).collect();
    for id in ids {
        match (old.sample(id), new.sample(id)) {
            (Some(a), Some(b)) => {
                let (pa, pb) = (old.provenance_of(id), new.provenance_of(id));
                let mut fields = row_fields(&a.row, &b.row);
                if a.split != b.split {
                    fields.push("split".into());
                }
                let causes = ctx.causes(pa, pb);
                let record = record(id, &b.split, &b.row, pb, fields.clone(), causes.clone());
                if !fields.is_empty() {
                    d.changed.push(Record {
                        causes: if causes.is_empty() {
                            vec!["unexplained by the recorded inputs".into()]
                        } else {
                            causes
                        },
                        ..record
                    });
                } else if !causes.is_empty() || pa != pb {
                    d.rederived.push(Record {
                        causes: if causes.is_empty() { vec!["provenance differs".into()] } else { causes },
                        ..record
                    });
                }
            }
            (None, Some(b)) => {
                let p = new.provenance_of(id);
                let causes = ctx.appeared(id, p, old);
                d.added.push(record(id, &b.split, &b.row, p, Vec::new(), causes));
            }
            (Some(a), None) => {
                let p = old.provenance_of(id);
                let causes = ctx.disappeared(id, p, new);
                d.removed.push(record(id, &a.split, &a.row, p, Vec::new(), causes));
            }
            (None, None) => {}
        }
    }
    d
}

fn identity(d: &Dataset) -> Identity {
    Identity {
        archive_sha256: d.archive_sha256.clone(),
        manifest_sha256: d.manifest_sha256.clone(),
        samples: d.samples.len(),
    }
}

fn record(
    id: &str,
    split: &str,
    row: &SampleRow,
    p: Option<&ProvSample>,
    fields: Vec<String>,
    causes: Vec<String>,
) -> Record {
    Record {
        id: id.to_string(),
        split: split.to_string(),
        task_type: row.task_type.clone(),
        document: p.map_or_else(|| row.source.clone(), |p| p.document_path.clone()),
        fields,
        causes,
    }
}

fn row_fields(a: &SampleRow, b: &SampleRow) -> Vec<String> {
    let mut f = Vec::new();
    let mut cmp = |name: &str, same: bool| {
        if !same {
            f.push(name.to_string());
        }
    };
    cmp("question", a.question == b.question);
    cmp("answer", a.answer == b.answer);
    cmp("category", a.category == b.category);
    cmp("type", a.task_type == b.task_type);
    cmp("test_code", a.test_code == b.test_code);
    cmp("entry_point", a.entry_point == b.entry_point);
    cmp("image", a.image == b.image);
    cmp("source", a.source == b.source);
    f
}

/// What both archives' headers say, indexed for the per-record questions.
struct Context<'a> {
    old_docs: BTreeMap<&'a str, &'a str>,
    new_docs: BTreeMap<&'a str, &'a str>,
    old_seeds: &'a BTreeMap<String, u64>,
    new_seeds: &'a BTreeMap<String, u64>,
    verification_changed: bool,
}

impl<'a> Context<'a> {
    fn new(old: &'a Dataset, new: &'a Dataset) -> Self {
        let docs = |d: &'a Dataset| -> BTreeMap<&'a str, &'a str> {
            d.provenance.documents.iter().map(|(id, path)| (path.as_str(), id.as_str())).collect()
        };
        Context {
            old_docs: docs(old),
            new_docs: docs(new),
            old_seeds: &old.provenance.seeds,
            new_seeds: &new.provenance.seeds,
            verification_changed: old.provenance.verification != new.provenance.verification,
        }
    }

    /// Which inputs differ between two provenance records of the same sample.
    fn causes(&self, a: Option<&ProvSample>, b: Option<&ProvSample>) -> Vec<String> {
        let (Some(a), Some(b)) = (a, b) else {
            return vec!["no provenance record in one archive".into()];
        };
        let mut causes = Vec::new();
        if a.document_id != b.document_id {
            causes.push(format!(
                "source: document {} changed ({} → {})",
                b.document_path,
                short(&a.document_id),
                short(&b.document_id)
            ));
        }
        let per_stage =
            |p: &ProvSample, f: fn(&crate::dataset::ProvCall) -> &str| -> BTreeMap<String, BTreeSet<String>> {
                let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
                for c in &p.calls {
                    m.entry(c.stage.clone()).or_default().insert(f(c).to_string());
                }
                m
            };
        let stages: BTreeSet<&str> = a.calls.iter().chain(&b.calls).map(|c| c.stage.as_str()).collect();
        let (pa, pb) = (per_stage(a, |c| &c.prompt_sha256), per_stage(b, |c| &c.prompt_sha256));
        let (ma, mb) = (per_stage(a, |c| &c.model), per_stage(b, |c| &c.model));
        for stage in &stages {
            let (x, y) = (pa.get(*stage), pb.get(*stage));
            if x.is_some() && y.is_some() && x != y {
                causes.push(format!("prompt: {stage} ({} → {})", joined(x), joined(y)));
            }
        }
        for stage in &stages {
            let (x, y) = (ma.get(*stage), mb.get(*stage));
            if x.is_some() && y.is_some() && x != y {
                causes.push(format!("model: {stage} ({} → {})", joined_full(x), joined_full(y)));
            }
        }
        for stage in &stages {
            let label = format!("stage.{stage}");
            let (x, y) = (self.old_seeds.get(&label), self.new_seeds.get(&label));
            if x != y {
                causes.push(format!("seed: {label} ({} → {})", opt(x), opt(y)));
            }
        }
        for label in ["allocation", "split", "build"] {
            let (x, y) = (self.old_seeds.get(label), self.new_seeds.get(label));
            if x != y && (label != "split" || a.split != b.split) {
                causes.push(format!("seed: {label} ({} → {})", opt(x), opt(y)));
            }
        }
        if self.verification_changed && (!a.verification.is_empty() || !b.verification.is_empty()) {
            causes.push("verification environment changed".into());
        }
        let stage_set = |p: &ProvSample| -> BTreeSet<String> { p.calls.iter().map(|c| c.stage.clone()).collect() };
        if stage_set(a) != stage_set(b) {
            causes.push("a different set of stages called a model".into());
        }
        if causes.is_empty() {
            let decisions = |p: &ProvSample| -> Vec<String> {
                p.decisions.iter().map(|d| format!("{}={}", d.stage, d.decision)).collect()
            };
            if decisions(a) != decisions(b) {
                causes.push(format!("decisions changed ({} → {})", decisions(a).join(", "), decisions(b).join(", ")));
            } else if a.calls.iter().map(|c| &c.response).ne(b.calls.iter().map(|c| &c.response)) {
                causes.push("a model replied differently to the same request (recorded responses differ)".into());
            } else if a.verification != b.verification {
                causes.push("verification verdicts differ".into());
            }
        }
        causes
    }

    /// Why a sample of `new` is not in `old`.
    fn appeared(&self, id: &str, p: Option<&ProvSample>, old: &Dataset) -> Vec<String> {
        self.explain(id, p, old, &self.old_docs, "appeared")
    }

    /// Why a sample of `old` is not in `new`.
    fn disappeared(&self, id: &str, p: Option<&ProvSample>, new: &Dataset) -> Vec<String> {
        self.explain(id, p, new, &self.new_docs, "disappeared")
    }

    fn explain(
        &self,
        id: &str,
        p: Option<&ProvSample>,
        other: &Dataset,
        other_docs: &BTreeMap<&str, &str>,
        verb: &str,
    ) -> Vec<String> {
        let mut causes = Vec::new();
        if let Some(p) = p {
            match other_docs.get(p.document_path.as_str()) {
                None => causes.push(format!("source: document {} {verb}", p.document_path)),
                Some(doc) if *doc != p.document_id => causes.push(format!(
                    "source: document {} changed ({} → {})",
                    p.document_path,
                    short(doc),
                    short(&p.document_id)
                )),
                Some(_) => {}
            }
        }
        for r in other.rejected.iter().filter(|r| r.id == id) {
            causes.push(format!("the other build {} it at stage {}: {}", r.outcome, r.stage, r.reason));
        }
        if causes.is_empty() {
            causes.push("not allocated in the other build".into());
        }
        causes
    }
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

fn joined(s: Option<&BTreeSet<String>>) -> String {
    s.map(|s| s.iter().map(|h| short(h).to_string()).collect::<Vec<_>>().join(", ")).unwrap_or_default()
}

fn joined_full(s: Option<&BTreeSet<String>>) -> String {
    s.map(|s| s.iter().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_default()
}

fn opt(x: Option<&u64>) -> String {
    x.map_or_else(|| "none".into(), u64::to_string)
}

/// One header section as `entry → value`.
type Table = fn(&crate::dataset::Provenance) -> BTreeMap<String, String>;

fn headers(old: &Dataset, new: &Dataset) -> Vec<HeaderChange> {
    let mut out = Vec::new();
    let mut cmp = |entry: String, o: Option<String>, n: Option<String>| {
        if o != n {
            out.push(HeaderChange { entry, old: o, new: n });
        }
    };
    let (a, b) = (&old.provenance, &new.provenance);
    cmp("sdc".into(), Some(a.sdc_version.clone()), Some(b.sdc_version.clone()));
    cmp("lock".into(), Some(short(&a.lock_sha256).to_string()), Some(short(&b.lock_sha256).to_string()));
    let models = |p: &crate::dataset::Provenance| -> BTreeMap<String, String> {
        p.models
            .iter()
            .map(|m| {
                let mut s = m.resolved.clone();
                if !m.reported.is_empty() && m.reported != [m.resolved.clone()] {
                    s.push_str(&format!(" (reported {})", m.reported.join(", ")));
                }
                if !m.fingerprints.is_empty() {
                    s.push_str(&format!(" fingerprints {}", m.fingerprints.join(", ")));
                }
                (format!("model:{}", m.alias), s)
            })
            .collect()
    };
    let prompts = |p: &crate::dataset::Provenance| -> BTreeMap<String, String> {
        p.prompts.iter().map(|(t, h)| (format!("prompt:{t}"), short(h).to_string())).collect()
    };
    let seeds = |p: &crate::dataset::Provenance| -> BTreeMap<String, String> {
        p.seeds.iter().map(|(k, v)| (format!("seed:{k}"), v.to_string())).collect()
    };
    let docs = |p: &crate::dataset::Provenance| -> BTreeMap<String, String> {
        p.documents.iter().map(|(id, path)| (format!("source:{path}"), short(id).to_string())).collect()
    };
    let tables: [Table; 4] = [models, prompts, seeds, docs];
    for f in tables {
        let (x, y) = (f(a), f(b));
        let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
        for k in keys {
            cmp(k.clone(), x.get(k).cloned(), y.get(k).cloned());
        }
    }
    let verification = |p: &crate::dataset::Provenance| p.verification.as_ref().map(crate::model::json::canonical);
    cmp("verification".into(), verification(a), verification(b));
    out
}

fn counts(old: &Dataset, new: &Dataset) -> Vec<CountDelta> {
    let tally = |d: &Dataset| -> BTreeMap<(String, String), u64> {
        let mut m = BTreeMap::new();
        for s in &d.samples {
            for key in [
                ("split", s.split.clone()),
                ("type", s.row.task_type.clone()),
                ("category", s.row.category.clone()),
                ("modality", modality(&s.row).to_string()),
            ] {
                *m.entry((key.0.to_string(), key.1)).or_insert(0) += 1;
            }
        }
        m
    };
    deltas(tally(old), tally(new))
}

fn rejections(old: &Dataset, new: &Dataset) -> Vec<CountDelta> {
    let tally = |d: &Dataset| -> BTreeMap<(String, String), u64> {
        let mut m = BTreeMap::new();
        for r in &d.rejected {
            *m.entry((r.outcome.clone(), r.stage.clone())).or_insert(0) += 1;
        }
        m
    };
    deltas(tally(old), tally(new))
}

fn deltas(a: BTreeMap<(String, String), u64>, b: BTreeMap<(String, String), u64>) -> Vec<CountDelta> {
    let keys: BTreeSet<&(String, String)> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (a.get(k).copied().unwrap_or(0), b.get(k).copied().unwrap_or(0));
            (x != y).then(|| CountDelta { dimension: k.0.clone(), value: k.1.clone(), old: x, new: y })
        })
        .collect()
}
