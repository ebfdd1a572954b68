//! `statistics.json`: what a verified archive holds, counted from its files.
//!
//! Distributions (split, type, category, modality) are counted from the parquet rows; the
//! funnel from the build's books in `provenance.json` with each stage's rejection reasons from
//! `rejected.parquet`; chunk sizes, verification attempts and tokens from provenance. What an
//! older archive's provenance does not record is listed in `missing`, never made up.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::archive::{Dataset, OpenError, RejectedRow, SplitRows};
use crate::build::ledger::StageTotals;

pub const FORMAT: &str = "sdc-statistics-1";

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Statistics {
    pub format: &'static str,
    pub dataset: DatasetInfo,
    pub samples: u64,
    /// Per split, in card order.
    pub splits: Vec<SplitStats>,
    /// Per task type, by name.
    pub types: Vec<Count>,
    /// Per category, by name.
    pub categories: Vec<Count>,
    pub modality: Modality,
    pub funnel: Option<Funnel>,
    pub chunks: Option<ChunkStats>,
    pub verification: Verification,
    /// Calls, tokens and cost per (stage, model), from the stored responses.
    pub tokens: Vec<StageTotals>,
    /// What the plots would need but the archive's provenance does not record.
    pub missing: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DatasetInfo {
    pub name: String,
    pub version: String,
    pub manifest_sha256: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Modality {
    /// Samples without an image.
    pub text: u64,
    /// Samples with an image.
    pub image: u64,
}

/// Samples of one type or category, split by modality.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Count {
    pub name: String,
    pub samples: u64,
    pub text: u64,
    pub image: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SplitStats {
    pub split: String,
    pub samples: u64,
    pub modality: Modality,
    pub types: BTreeMap<String, u64>,
    pub categories: BTreeMap<String, u64>,
}

/// From planned items to accepted ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Funnel {
    /// Per kind of item (image, chunk, task, sample): planned = accepted + rejected + failed.
    pub kinds: Vec<KindFunnel>,
    /// Per stage in pipeline order: received = passed + rejected + failed.
    pub stages: Vec<StageFunnel>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindFunnel {
    pub kind: String,
    pub planned: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub failed: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageFunnel {
    pub stage: String,
    pub items_in: u64,
    pub items_out: u64,
    pub rejected: u64,
    pub failed: u64,
    /// Why items ended here, most frequent first.
    #[serde(default)]
    pub reasons: Vec<Reason>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// `rejected` or `failed`.
    pub outcome: String,
    /// The reason with ids and numbers taken out, so that alike reasons are counted together.
    pub reason: String,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChunkStats {
    pub chunks: u64,
    /// Characters of text and code.
    pub chars: Summary,
    /// Characters of code alone.
    pub code_chars: Summary,
    /// Chunks per size bin of `chars`: `[from, to)` and the count.
    pub histogram: Vec<Bin>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub min: u64,
    pub median: u64,
    pub p90: u64,
    pub max: u64,
    pub mean: f64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Bin {
    pub from: u64,
    pub to: u64,
    pub count: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Accepted samples by how many times their answer was run against its test.
    pub accepted_by_attempts: Vec<AttemptCount>,
    /// Items that failed in a stage, by the attempts made before giving up.
    pub failed_by_attempts: Vec<AttemptCount>,
    /// Every recorded run of the accepted samples by what it was run against (`stub`, the
    /// test-quality gate, or `answer`) and how it ended.
    pub outcomes: Vec<OutcomeCount>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttemptCount {
    pub attempts: u32,
    pub items: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutcomeCount {
    pub against: String,
    pub outcome: String,
    pub runs: u64,
}

/// The parts of `provenance.json` analysis reads; all optional, so older archives still load.
#[derive(Deserialize)]
struct Provenance {
    #[serde(default)]
    books: Option<Books>,
    #[serde(default)]
    chunk_sizes: Option<ChunkSizes>,
    #[serde(default)]
    totals: Option<Vec<StageTotals>>,
    #[serde(default)]
    skipped: Vec<Skipped>,
    #[serde(default)]
    samples: Vec<ProvenanceSample>,
}

#[derive(Deserialize)]
struct Books {
    accounting: Vec<KindFunnel>,
    stages: Vec<StageFunnel>,
}

#[derive(Deserialize)]
struct ChunkSizes {
    chars: Vec<u64>,
    code_chars: Vec<u64>,
}

#[derive(Deserialize)]
struct Skipped {
    reason: SkipKind,
}

#[derive(Deserialize)]
struct SkipKind {
    kind: String,
}

#[derive(Deserialize)]
struct ProvenanceSample {
    #[serde(default)]
    verification: Vec<ProvenanceAttempt>,
}

#[derive(Deserialize)]
struct ProvenanceAttempt {
    against: String,
    verdict: ProvenanceVerdict,
}

#[derive(Deserialize)]
struct ProvenanceVerdict {
    outcome: String,
}

/// Counts everything `statistics.json` holds.
pub fn statistics(dataset: &Dataset) -> Result<Statistics, OpenError> {
    let splits = dataset.splits()?;
    let rejected = dataset.rejected()?;
    let provenance: Provenance = dataset.provenance()?;
    let mut missing = Vec::new();

    let funnel = match provenance.books {
        Some(books) => Some(funnel(books, &rejected, &provenance.skipped)),
        None => {
            missing.push("funnel: provenance has no `books` (built by an sdc before 0.1.0's analyze)".to_string());
            None
        }
    };
    let chunks = match provenance.chunk_sizes {
        Some(sizes) => Some(chunk_stats(&sizes)),
        None => {
            missing.push("chunk sizes: provenance has no `chunk_sizes`".to_string());
            None
        }
    };
    let mut tokens = provenance.totals.unwrap_or_else(|| {
        missing.push("tokens: provenance has no `totals`".to_string());
        Vec::new()
    });
    // In pipeline order, as the funnel lists the stages (provenance sorts them by name).
    if let Some(f) = &funnel {
        let at = |stage: &str| f.stages.iter().position(|s| s.stage == stage).unwrap_or(usize::MAX);
        tokens.sort_by(|a, b| (at(&a.stage), &a.stage, &a.model).cmp(&(at(&b.stage), &b.stage, &b.model)));
    }
    Ok(Statistics {
        format: FORMAT,
        dataset: DatasetInfo {
            name: dataset.name.clone(),
            version: dataset.version.clone(),
            manifest_sha256: dataset.manifest_sha256.clone(),
        },
        samples: splits.iter().map(|s| s.rows.len() as u64).sum(),
        types: counts(&splits, |r| &r.task_type),
        categories: counts(&splits, |r| &r.category),
        modality: modality(splits.iter().flat_map(|s| &s.rows)),
        splits: splits.iter().map(split_stats).collect(),
        funnel,
        chunks,
        verification: verification(&provenance.samples, &rejected),
        tokens,
        missing,
    })
}

fn modality<'a>(rows: impl Iterator<Item = &'a crate::archive::SampleRow>) -> Modality {
    let mut m = Modality::default();
    for r in rows {
        if r.image.is_some() {
            m.image += 1;
        } else {
            m.text += 1;
        }
    }
    m
}

fn counts(splits: &[SplitRows], key: impl Fn(&crate::archive::SampleRow) -> &String) -> Vec<Count> {
    let mut by: BTreeMap<&str, Modality> = BTreeMap::new();
    for r in splits.iter().flat_map(|s| &s.rows) {
        let m = by.entry(key(r)).or_default();
        if r.image.is_some() {
            m.image += 1;
        } else {
            m.text += 1;
        }
    }
    by.into_iter()
        .map(|(name, m)| Count { name: name.to_string(), samples: m.text + m.image, text: m.text, image: m.image })
        .collect()
}

fn split_stats(split: &SplitRows) -> SplitStats {
    let mut types = BTreeMap::new();
    let mut categories = BTreeMap::new();
    for r in &split.rows {
        *types.entry(r.task_type.clone()).or_default() += 1;
        *categories.entry(r.category.clone()).or_default() += 1;
    }
    SplitStats {
        split: split.name.clone(),
        samples: split.rows.len() as u64,
        modality: modality(split.rows.iter()),
        types,
        categories,
    }
}

fn funnel(books: Books, rejected: &[RejectedRow], skipped: &[Skipped]) -> Funnel {
    let mut reasons: BTreeMap<&str, BTreeMap<(String, String), u64>> = BTreeMap::new();
    for r in rejected {
        *reasons
            .entry(r.stage.as_str())
            .or_default()
            .entry((r.outcome.clone(), reason_class(&r.reason)))
            .or_default() += 1;
    }
    for s in skipped {
        *reasons
            .entry("ingest")
            .or_default()
            .entry(("rejected".into(), s.reason.kind.replace('_', " ")))
            .or_default() += 1;
    }
    let stages = books
        .stages
        .into_iter()
        .map(|mut s| {
            let mut list: Vec<Reason> = reasons
                .get(s.stage.as_str())
                .into_iter()
                .flatten()
                .map(|((outcome, reason), count)| Reason {
                    outcome: outcome.clone(),
                    reason: reason.clone(),
                    count: *count,
                })
                .collect();
            list.sort_by(|a, b| {
                b.count.cmp(&a.count).then_with(|| (&a.outcome, &a.reason).cmp(&(&b.outcome, &b.reason)))
            });
            s.reasons = list;
            s
        })
        .collect();
    Funnel { kinds: books.accounting, stages }
}

/// A reason with what differs between alike items taken out: the id a duplicate duplicates and
/// its similarity, ids (runs of 12 or more hex digits), and numbers.
pub(crate) fn reason_class(reason: &str) -> String {
    for dup in ["exact duplicate", "near duplicate"] {
        if reason.starts_with(dup) {
            return dup.to_string();
        }
    }
    let line = reason.lines().next().unwrap_or_default().trim();
    let mut out = String::with_capacity(line.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let hexy = word.len() >= 12 && word.bytes().all(|b| b.is_ascii_hexdigit());
        let numeric = !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        out.push_str(if hexy {
            "<id>"
        } else if numeric {
            "N"
        } else {
            word.as_str()
        });
        word.clear();
    };
    for c in line.chars() {
        if c.is_alphanumeric() || c == '_' || c == '.' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn chunk_stats(sizes: &ChunkSizes) -> ChunkStats {
    let chars = summary(&sizes.chars);
    let bins = 20u64;
    let max = chars.max.max(1);
    // A round bin width: 1, 2 or 5 times a power of ten, at least max / bins.
    let raw = max.div_ceil(bins);
    let width = round_up(raw);
    let top = (max / width + 1) * width;
    let mut histogram: Vec<Bin> =
        (0..top / width).map(|i| Bin { from: i * width, to: (i + 1) * width, count: 0 }).collect();
    for c in &sizes.chars {
        if let Some(b) = histogram.get_mut(usize::try_from(c / width).unwrap_or(usize::MAX)) {
            b.count += 1;
        }
    }
    ChunkStats { chunks: sizes.chars.len() as u64, chars, code_chars: summary(&sizes.code_chars), histogram }
}

/// The smallest of 1, 2, 5, 10, 20, 50… that is at least `n`.
pub(crate) fn round_up(n: u64) -> u64 {
    let mut power = 1u64;
    loop {
        if let Some(w) = [1, 2, 5].iter().map(|m| power.saturating_mul(*m)).find(|w| *w >= n) {
            return w;
        }
        power = power.saturating_mul(10);
    }
}

fn summary(values: &[u64]) -> Summary {
    let mut v = values.to_vec();
    v.sort_unstable();
    let at = |q: f64| {
        if v.is_empty() {
            return 0;
        }
        // Nearest rank.
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    };
    let mean = if v.is_empty() { 0.0 } else { v.iter().sum::<u64>() as f64 / v.len() as f64 };
    Summary {
        min: v.first().copied().unwrap_or(0),
        median: at(0.5),
        p90: at(0.9),
        max: v.last().copied().unwrap_or(0),
        mean: (mean * 10.0).round() / 10.0,
    }
}

fn verification(samples: &[ProvenanceSample], rejected: &[RejectedRow]) -> Verification {
    let mut accepted: BTreeMap<u32, u64> = BTreeMap::new();
    let mut outcomes: BTreeMap<(String, String), u64> = BTreeMap::new();
    for s in samples {
        let answers = s.verification.iter().filter(|a| a.against != "stub").count() as u32;
        if !s.verification.is_empty() {
            *accepted.entry(answers).or_default() += 1;
        }
        for a in &s.verification {
            *outcomes.entry((a.against.clone(), a.verdict.outcome.clone())).or_default() += 1;
        }
    }
    let mut failed: BTreeMap<u32, u64> = BTreeMap::new();
    for r in rejected.iter().filter(|r| r.outcome == "failed") {
        *failed.entry(r.attempts).or_default() += 1;
    }
    let list =
        |m: BTreeMap<u32, u64>| m.into_iter().map(|(attempts, items)| AttemptCount { attempts, items }).collect();
    Verification {
        accepted_by_attempts: list(accepted),
        failed_by_attempts: list(failed),
        outcomes: outcomes
            .into_iter()
            .map(|((against, outcome), runs)| OutcomeCount { against, outcome, runs })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alike_reasons_are_one_class() {
        assert_eq!(reason_class("near duplicate of 3f2a9c1b00aa11 (similarity 0.912)"), "near duplicate");
        assert_eq!(
            reason_class("the test failed 3 times against chunk 0123456789abcdef0123"),
            "the test failed N times against chunk <id>"
        );
        assert_eq!(reason_class("first line\nTraceback ..."), "first line");
    }

    #[test]
    fn chunk_histogram_has_round_bins_covering_every_chunk() {
        let sizes = ChunkSizes { chars: vec![0, 150, 999, 1000, 1601], code_chars: vec![0, 0, 10, 20, 30] };
        let s = chunk_stats(&sizes);
        assert_eq!(s.histogram[0], Bin { from: 0, to: 100, count: 1 });
        assert_eq!(s.histogram.iter().map(|b| b.count).sum::<u64>(), 5);
        assert_eq!(s.histogram.last().map(|b| b.to), Some(1700));
        assert_eq!((s.chars.min, s.chars.median, s.chars.max), (0, 999, 1601));
    }
}
