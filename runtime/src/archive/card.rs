//! `README.md`: the Hugging Face dataset card.
//!
//! YAML front matter that the Hub and `datasets` read (licence, task categories, one `default`
//! config whose `data_files` point at `data/<split>-*`, the features and split sizes), then the
//! counts, the columns, the categories, the notes and the commands that rebuild the dataset.
//! The text is a function of its inputs only: no dates, every count table in a fixed order. The
//! YAML is written here by hand, every free-text scalar as a JSON string (which YAML reads as a
//! double-quoted scalar), so no serializer's choices leak into the bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::features::{Column, REJECTED_COLUMNS, SAMPLE_COLUMNS, yaml_dtype};
use super::rows::{RejectedRow, SampleRow};

/// What the card says that the rows cannot: names, licence, descriptions, how to rebuild.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardInfo {
    pub name: String,
    pub version: String,
    /// A Hub licence id, like `apache-2.0` or `cc-by-4.0`.
    pub license: String,
    pub description: Option<String>,
    /// Category name and description, in the order the card lists them.
    pub categories: Vec<(String, String)>,
    /// Shell commands that rebuild the archive, shown verbatim.
    pub reproduce: String,
    /// Lines such as "built offline with builtin/rules@0.1.0".
    pub notes: Vec<String>,
}

/// What the card counts in the rows, gathered shard by shard so the rows need not be held.
#[derive(Clone, Debug, Default)]
pub(crate) struct RowStats {
    /// Rows per split, keyed by card order (see `split_order`).
    splits: BTreeMap<(u8, String), usize>,
    with_image: usize,
    per_type: BTreeMap<String, usize>,
    per_category: BTreeMap<String, usize>,
}

impl RowStats {
    pub(crate) fn add(&mut self, split: &str, rows: &[SampleRow]) {
        let (order, _) = split_order(split);
        *self.splits.entry((order, split.to_string())).or_default() += rows.len();
        for r in rows {
            self.with_image += usize::from(r.image.is_some());
            *self.per_type.entry(r.task_type.clone()).or_default() += 1;
            *self.per_category.entry(r.category.clone()).or_default() += 1;
        }
    }

    /// The non-empty splits in card order, with their row counts.
    fn splits(&self) -> impl Iterator<Item = (&str, usize)> {
        self.splits.iter().filter(|(_, n)| **n > 0).map(|((_, s), n)| (s.as_str(), *n))
    }

    fn total(&self) -> usize {
        self.splits.values().sum()
    }
}

/// Renders the card.
pub(crate) fn render(card: &CardInfo, stats: &RowStats, rejected: &[RejectedRow]) -> String {
    let mut out = String::new();
    front_matter(&mut out, card, stats);
    body(&mut out, card, stats, rejected);
    out
}

/// The order splits are listed in: train, validation, test, then any other by name.
pub(crate) fn split_order(name: &str) -> (u8, &str) {
    match name {
        "train" => (0, ""),
        "validation" => (1, ""),
        "test" => (2, ""),
        other => (3, other),
    }
}

fn front_matter(out: &mut String, card: &CardInfo, stats: &RowStats) {
    let total = stats.total();
    let any_image = stats.with_image > 0;
    out.push_str("---\n");
    let _ = writeln!(out, "license: {}", yaml_string(&card.license));
    out.push_str("language:\n- en\n");
    let _ = writeln!(out, "pretty_name: {}", yaml_string(&card.name));
    let _ = writeln!(out, "size_categories:\n- {}", size_category(total));
    out.push_str("task_categories:\n- text-generation\n");
    if any_image {
        out.push_str("- image-text-to-text\n");
    }
    if stats.splits().next().is_some() {
        out.push_str("configs:\n- config_name: default\n  data_files:\n");
        for (name, _) in stats.splits() {
            let _ = writeln!(out, "  - split: {}\n    path: {}", name, yaml_string(&format!("data/{name}-*")));
        }
    }
    out.push_str("dataset_info:\n  features:\n");
    for column in &SAMPLE_COLUMNS {
        let _ = writeln!(out, "  - name: {}\n    dtype: {}", column.name, yaml_dtype(column.feature));
    }
    out.push_str("  splits:\n");
    for (name, rows) in stats.splits() {
        let _ = writeln!(out, "  - name: {name}\n    num_examples: {rows}");
    }
    out.push_str("---\n\n");
}

fn body(out: &mut String, card: &CardInfo, stats: &RowStats, rejected: &[RejectedRow]) {
    let total = stats.total();
    let with_image = stats.with_image;

    let _ = writeln!(out, "# {}\n", one_line(&card.name));
    if let Some(description) = card.description.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        let _ = writeln!(out, "{description}\n");
    }
    let _ = writeln!(
        out,
        "Version `{}`, built by sdc, the synthetic dataset compiler, from a spec whose every input is pinned \
         in a lockfile (see How to reproduce).\n",
        one_line(&card.version)
    );

    out.push_str("## Counts\n\n| | rows |\n| --- | ---: |\n");
    let _ = writeln!(out, "| total | {total} |");
    for (name, rows) in stats.splits() {
        let _ = writeln!(out, "| split `{name}` | {rows} |");
    }
    let _ = writeln!(out, "| with an image | {with_image} |");
    let _ = writeln!(out, "| text only | {} |", total - with_image);
    let _ = writeln!(out, "| dropped (in `rejected.parquet`) | {} |\n", rejected.len());

    out.push_str("### By type\n\n| type | rows |\n| --- | ---: |\n");
    for (task_type, n) in &stats.per_type {
        let _ = writeln!(out, "| {} | {n} |", cell(task_type));
    }
    out.push('\n');

    if !rejected.is_empty() {
        out.push_str("### Dropped entries\n\n| kind | outcome | entries |\n| --- | --- | ---: |\n");
        let kinds = count(rejected.iter().map(|r| (r.kind.as_str(), r.outcome.as_str())));
        for ((kind, outcome), n) in kinds {
            let _ = writeln!(out, "| {} | {} | {n} |", cell(kind), cell(outcome));
        }
        out.push('\n');
    }

    // Declared categories in the card's order (with their descriptions), then any category the
    // rows use that the card does not declare, by name.
    let per_category = &stats.per_category;
    out.push_str("## Categories\n\n| category | description | rows |\n| --- | --- | ---: |\n");
    for (name, description) in &card.categories {
        let n = per_category.get(name.as_str()).copied().unwrap_or(0);
        let _ = writeln!(out, "| {} | {} | {n} |", cell(name), cell(description));
    }
    for (name, n) in per_category {
        if !card.categories.iter().any(|(c, _)| c == name) {
            let _ = writeln!(out, "| {} | | {n} |", cell(name));
        }
    }
    out.push('\n');

    out.push_str("## Features\n\n");
    features_table(out, &SAMPLE_COLUMNS);
    out.push_str("\n`rejected.parquet` has these columns:\n\n");
    features_table(out, &REJECTED_COLUMNS);

    out.push_str("\n## Files\n\n");
    out.push_str("- `data/<split>-NNNNN-of-NNNNN.parquet`: the samples, one or more shards per split.\n");
    out.push_str("- `rejected.parquet`: every entry the build dropped, with the stage and the reason.\n");
    out.push_str("- `provenance.json`: how each sample was made (models, prompts, seeds, sources).\n");
    out.push_str(
        "- `manifest.json`: the sha256 and size of every other file; its own sha256 identifies this dataset.\n",
    );

    if !card.notes.is_empty() {
        out.push_str("\n## Notes\n\n");
        for note in &card.notes {
            let _ = writeln!(out, "- {}", one_line(note));
        }
    }

    out.push_str("\n## How to reproduce\n\n");
    let reproduce = card.reproduce.trim_end_matches(['\n', '\r']);
    let fence = "`".repeat(longest_backtick_run(reproduce).max(2) + 1);
    let _ = writeln!(out, "{fence}sh\n{reproduce}\n{fence}");
}

fn features_table(out: &mut String, columns: &[Column]) {
    out.push_str("| column | type | description |\n| --- | --- | --- |\n");
    for column in columns {
        let _ = writeln!(out, "| `{}` | {} | {} |", column.name, yaml_dtype(column.feature), column.description);
    }
}

fn count<K: Ord>(keys: impl Iterator<Item = K>) -> BTreeMap<K, usize> {
    let mut counts = BTreeMap::new();
    for key in keys {
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// The Hub's `size_categories` bucket for a row count.
fn size_category(rows: usize) -> &'static str {
    match rows {
        0..1_000 => "n<1K",
        1_000..10_000 => "1K<n<10K",
        10_000..100_000 => "10K<n<100K",
        100_000..1_000_000 => "100K<n<1M",
        1_000_000..10_000_000 => "1M<n<10M",
        10_000_000..100_000_000 => "10M<n<100M",
        100_000_000..1_000_000_000 => "100M<n<1B",
        _ => "1B<n<10B",
    }
}

fn yaml_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Text for a markdown table cell: one line, pipes escaped.
fn cell(s: &str) -> String {
    one_line(s).replace('|', "\\|")
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn longest_backtick_run(s: &str) -> usize {
    s.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_buckets() {
        assert_eq!(size_category(0), "n<1K");
        assert_eq!(size_category(999), "n<1K");
        assert_eq!(size_category(1000), "1K<n<10K");
        assert_eq!(size_category(250_000), "100K<n<1M");
    }

    #[test]
    fn reproduce_fence_outgrows_backticks_inside() {
        assert_eq!(longest_backtick_run("a ```` b ` c"), 4);
        assert_eq!(longest_backtick_run("none"), 0);
    }

    #[test]
    fn yaml_strings_survive_a_yaml_parser() {
        for s in ["plain", "a: b", "- x", "quote \" and \\ and\nnewline", "#hash", "ünïcode ✓"] {
            let parsed: String = serde_yaml_ng::from_str(&yaml_string(s)).unwrap();
            assert_eq!(parsed, s);
        }
    }
}
