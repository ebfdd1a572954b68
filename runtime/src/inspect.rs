//! Looking into a built archive (`sdc inspect ARCHIVE --samples | --rejected | --traces`):
//! choosing records by id prefix or by a seeded random draw, and a sample's trace — its model
//! conversations and verification attempts from provenance, with the reply texts and request
//! messages the store recorded.
//!
//! Selection is reproducible: a prefix matching two ids is an error listing them, and
//! `--random` ranks ids by sha256(seed, id) and shows the chosen ones in id order.

use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::archive::RejectedRow;
use crate::dataset::{Dataset, ProvCall, ProvDecision, Sample};
use crate::store::{Journal, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("no {what} has an id starting with `{prefix}`")]
    NoMatch { what: &'static str, prefix: String },
    #[error("`{prefix}` is ambiguous: {} {what}s match ({})", .candidates.len(), .candidates.join(", "))]
    Ambiguous { what: &'static str, prefix: String, candidates: Vec<String> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How records are chosen.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub id: Option<String>,
    /// Draw this many at random (seeded) instead of the first ones.
    pub random: bool,
    pub count: usize,
    pub seed: u64,
}

/// The distinct ids chosen from `ids` (sorted, deduplicated by the caller or not).
pub fn select(ids: &[&str], sel: &Selection, what: &'static str) -> Result<Vec<String>, InspectError> {
    let mut all: Vec<&str> = ids.to_vec();
    all.sort_unstable();
    all.dedup();
    if let Some(prefix) = &sel.id {
        let hits: Vec<String> = all.iter().filter(|i| i.starts_with(prefix.as_str())).map(|s| s.to_string()).collect();
        return match hits.len() {
            0 => Err(InspectError::NoMatch { what, prefix: prefix.clone() }),
            1 => Ok(hits),
            _ if hits.iter().any(|h| h == prefix) => Ok(vec![prefix.clone()]),
            _ => Err(InspectError::Ambiguous { what, prefix: prefix.clone(), candidates: hits }),
        };
    }
    let mut chosen: Vec<String> = if sel.random {
        let mut ranked: Vec<([u8; 32], &str)> = all
            .iter()
            .map(|id| {
                let mut h = Sha256::new();
                h.update(sel.seed.to_le_bytes());
                h.update(id.as_bytes());
                (h.finalize().into(), *id)
            })
            .collect();
        ranked.sort_unstable();
        ranked.into_iter().take(sel.count).map(|(_, id)| id.to_string()).collect()
    } else {
        all.iter().take(sel.count).map(|s| s.to_string()).collect()
    };
    chosen.sort_unstable();
    Ok(chosen)
}

/// A sample's row as shown: the image by path and size, never its bytes.
#[derive(Clone, Debug, Serialize)]
pub struct SampleView {
    pub id: String,
    pub split: String,
    #[serde(rename = "type")]
    pub task_type: String,
    pub category: String,
    pub source: String,
    pub question: String,
    pub answer: String,
    pub entry_point: String,
    pub test_code: String,
    pub image: Option<ImageView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ImageView {
    pub path: String,
    pub bytes: usize,
}

pub fn sample_view(s: &Sample) -> SampleView {
    let r = &s.row;
    SampleView {
        id: r.id.clone(),
        split: s.split.clone(),
        task_type: r.task_type.clone(),
        category: r.category.clone(),
        source: r.source.clone(),
        question: r.question.clone(),
        answer: r.answer.clone(),
        entry_point: r.entry_point.clone(),
        test_code: r.test_code.clone(),
        image: r.image.as_ref().map(|i| ImageView { path: i.path.clone(), bytes: i.bytes.len() }),
    }
}

/// The chosen samples.
pub fn samples(d: &Dataset, sel: &Selection) -> Result<Vec<SampleView>, InspectError> {
    let ids: Vec<&str> = d.samples.iter().map(|s| s.row.id.as_str()).collect();
    let chosen = select(&ids, sel, "sample")?;
    Ok(chosen.iter().filter_map(|id| d.sample(id)).map(sample_view).collect())
}

/// The chosen rejected entries (every entry of each chosen id).
pub fn rejected<'d>(d: &'d Dataset, sel: &Selection) -> Result<Vec<&'d RejectedRow>, InspectError> {
    let ids: Vec<&str> = d.rejected.iter().map(|r| r.id.as_str()).collect();
    let chosen = select(&ids, sel, "rejected entry")?;
    let mut rows: Vec<&RejectedRow> = d.rejected.iter().filter(|r| chosen.binary_search(&r.id).is_ok()).collect();
    rows.sort_by(|a, b| (&a.id, &a.kind, &a.stage).cmp(&(&b.id, &b.kind, &b.stage)));
    Ok(rows)
}

/// One sample's conversations and verification attempts.
#[derive(Clone, Debug, Serialize)]
pub struct Trace {
    pub id: String,
    pub split: String,
    #[serde(rename = "type")]
    pub task_type: String,
    pub category: String,
    pub document_id: String,
    pub document_path: String,
    pub chunk_id: String,
    pub image_id: Option<String>,
    pub calls: Vec<CallView>,
    pub decisions: Vec<ProvDecision>,
    pub verification: Vec<serde_json::Value>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CallView {
    #[serde(flatten)]
    pub call: ProvCall,
    pub builtin: bool,
    /// The request's messages from the `requests` journal (calls sent to servers only).
    pub messages: Option<serde_json::Value>,
    /// The reply text from the `responses` journal.
    pub reply: Option<String>,
    /// Why `messages` or `reply` is missing.
    pub note: Option<String>,
}

/// The store's journals a trace reads, if the store exists.
pub struct Recorded {
    responses: Option<Journal>,
    requests: Option<Journal>,
}

impl Recorded {
    /// Opens the `responses` and `requests` journals of the store at `root`, read only; a missing
    /// store or journal just means nothing recorded.
    pub fn open(root: Option<&Path>) -> Result<Recorded, InspectError> {
        let open = |kind: &str| -> Result<Option<Journal>, StoreError> {
            match root.map(|r| r.join("journal").join(kind)) {
                Some(dir) if dir.is_dir() => Journal::open(&dir).map(Some),
                _ => Ok(None),
            }
        };
        Ok(Recorded { responses: open("responses")?, requests: open("requests")? })
    }

    fn get(journal: Option<&Journal>, key_hex: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (Some(j), Ok(bytes)) = (journal, hex::decode(key_hex)) else { return Ok(None) };
        let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) else { return Ok(None) };
        j.get(&key)
    }
}

/// The chosen samples' traces.
pub fn traces(d: &Dataset, sel: &Selection, recorded: &Recorded) -> Result<Vec<Trace>, InspectError> {
    let ids: Vec<&str> = d.provenance.samples.iter().map(|s| s.id.as_str()).collect();
    let chosen = select(&ids, sel, "sample")?;
    let mut out = Vec::new();
    for id in &chosen {
        let Some(p) = d.provenance_of(id) else { continue };
        let mut calls = Vec::new();
        for c in &p.calls {
            let builtin = c.model.starts_with("builtin/");
            let reply = Recorded::get(recorded.responses.as_ref(), &c.request)?
                .and_then(|b| serde_json::from_slice::<crate::model::StoredResponse>(&b).ok())
                .map(|s| s.response.content);
            let messages = if builtin {
                None
            } else {
                Recorded::get(recorded.requests.as_ref(), &c.request)?
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .map(|v| v.get("messages").cloned().unwrap_or(v))
            };
            let mut notes = Vec::new();
            if builtin {
                notes.push("prompt not kept: a builtin request is a deterministic function of the lock and the inputs");
            } else if messages.is_none() {
                notes.push("request messages not in the store");
            }
            if reply.is_none() {
                notes.push("reply not in the store");
            }
            calls.push(CallView {
                call: c.clone(),
                builtin,
                messages,
                reply,
                note: (!notes.is_empty()).then(|| notes.join("; ")),
            });
        }
        out.push(Trace {
            id: p.id.clone(),
            split: p.split.clone(),
            task_type: p.task_type.clone(),
            category: p.category.clone(),
            document_id: p.document_id.clone(),
            document_path: p.document_path.clone(),
            chunk_id: p.chunk_id.clone(),
            image_id: p.image_id.clone(),
            calls,
            decisions: p.decisions.clone(),
            verification: p.verification.clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_of_two_ids_is_ambiguous_and_random_draws_are_seeded() {
        let ids = ["ab12", "ab34", "cd56", "ef78"];
        let sel = |id: Option<&str>, random: bool, seed: u64| Selection {
            id: id.map(str::to_string),
            random,
            count: 2,
            seed,
        };
        assert!(matches!(select(&ids, &sel(Some("ab"), false, 0), "sample"), Err(InspectError::Ambiguous { .. })));
        assert_eq!(select(&ids, &sel(Some("cd"), false, 0), "sample").ok(), Some(vec!["cd56".to_string()]));
        assert!(matches!(select(&ids, &sel(Some("zz"), false, 0), "sample"), Err(InspectError::NoMatch { .. })));
        let a = select(&ids, &sel(None, true, 7), "sample").ok();
        assert_eq!(a, select(&ids, &sel(None, true, 7), "sample").ok());
        assert_eq!(a.map(|v| v.len()), Some(2));
    }
}
