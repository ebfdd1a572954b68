//! `report.html`: one self-contained page (inline CSS, every chart as inline SVG, no scripts, no
//! external resources) with each figure's numbers as a table beneath it.

use std::fmt::Write as _;

use super::plot::{Plot, thousands};
use super::stats::Statistics;

const STYLE: &str = "body{font-family:'DejaVu Sans',sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}\
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}\
code{font-size:.9em;background:#f4f4f4;padding:0 .25em;word-break:break-all}\
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left}\
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}\
figure{margin:1em 0}figure svg{max-width:100%;height:auto}figcaption{color:#555;font-size:.92em}\
.note{background:#fff8e1;border-left:4px solid #e69f00;padding:.5em 1em}";

pub(super) fn report(s: &Statistics, plots: &[Plot]) -> String {
    let mut h = String::new();
    let title = format!("{} {}", s.dataset.name, s.dataset.version);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{} — dataset analysis</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(&title)
    );
    let _ = writeln!(h, "<h1>{} — dataset analysis</h1>", esc(&title));
    let _ = writeln!(
        h,
        "<p>{} samples. Dataset identity (sha256 of <code>manifest.json</code>): <code>{}</code>. \
         Every figure is counted from the archive's files: the samples from <code>data/*.parquet</code>, \
         the funnel from the build's books in <code>provenance.json</code> with the reasons from \
         <code>rejected.parquet</code>; <code>statistics.json</code> holds every number shown.</p>",
        thousands(s.samples),
        esc(&s.dataset.manifest_sha256)
    );
    for m in &s.missing {
        let _ = writeln!(h, "<p class=\"note\">Not shown: {}.</p>", esc(m));
    }

    section(&mut h, "Splits, types, categories and modality");
    figure(
        &mut h,
        plots,
        "splits",
        "Samples per split; splits are grouped by source document, so no document is in two splits.",
    );
    table(
        &mut h,
        &["split", "samples", "text only", "with an image"],
        s.splits.iter().map(|x| vec![x.split.clone(), n(x.samples), n(x.modality.text), n(x.modality.image)]),
    );
    for (name, caption, counts) in [
        ("types", "Samples per task type.", &s.types),
        ("categories", "Samples per category, as the classify stage assigned them.", &s.categories),
    ] {
        figure(&mut h, plots, name, caption);
        table(
            &mut h,
            &[if name == "types" { "type" } else { "category" }, "samples", "text only", "with an image"],
            counts.iter().map(|c| vec![c.name.clone(), n(c.samples), n(c.text), n(c.image)]),
        );
    }
    figure(&mut h, plots, "modality", "Text-only samples and samples with an image, each bar split by split.");
    table(
        &mut h,
        &["modality", "samples"],
        [("text only", s.modality.text), ("with an image", s.modality.image)]
            .into_iter()
            .map(|(k, v)| vec![k.to_string(), n(v)]),
    );

    if let Some(f) = &s.funnel {
        section(&mut h, "From planned items to accepted");
        figure(
            &mut h,
            plots,
            "funnel",
            "Every item the build planned ends accepted, rejected by a stage, or failed in one. \
             Images and chunks are what ingest found; tasks are what allocation planned from the accepted ones; \
             samples are the accepted tasks, of which deduplication rejects the duplicates.",
        );
        table(
            &mut h,
            &["kind", "planned", "accepted", "rejected", "failed"],
            f.kinds.iter().map(|k| vec![k.kind.clone(), n(k.planned), n(k.accepted), n(k.rejected), n(k.failed)]),
        );
        figure(
            &mut h,
            plots,
            "stages",
            "What each stage received and what became of it. Ingest receives source files and passes on documents; \
             allocation turns accepted chunks and images into the planned tasks.",
        );
        table(
            &mut h,
            &["stage", "received", "passed on", "rejected", "failed"],
            f.stages.iter().map(|x| vec![x.stage.clone(), n(x.items_in), n(x.items_out), n(x.rejected), n(x.failed)]),
        );
        figure(
            &mut h,
            plots,
            "rejections",
            "The most frequent reasons, with ids and numbers taken out so that alike reasons count together.",
        );
        table(
            &mut h,
            &["stage", "outcome", "reason", "items"],
            f.stages.iter().flat_map(|x| {
                x.reasons.iter().map(|r| vec![x.stage.clone(), r.outcome.clone(), r.reason.clone(), n(r.count)])
            }),
        );
    }

    if let Some(c) = &s.chunks {
        section(&mut h, "Chunks");
        figure(&mut h, plots, "chunk_sizes", "Every chunk ingest made, by its size in characters of text and code.");
        table(
            &mut h,
            &["characters", "min", "median", "90th percentile", "max", "mean"],
            [("text and code", &c.chars), ("code alone", &c.code_chars)]
                .into_iter()
                .map(|(k, v)| vec![k.to_string(), n(v.min), n(v.median), n(v.p90), n(v.max), format!("{:.1}", v.mean)]),
        );
        let _ = writeln!(h, "<p>{} chunks.</p>", thousands(c.chunks));
    }

    let v = &s.verification;
    if !v.outcomes.is_empty() || !v.failed_by_attempts.is_empty() {
        section(&mut h, "Verification");
        figure(
            &mut h,
            plots,
            "verification",
            "How many times each accepted code sample's answer was run against its test before it passed, \
             and how many attempts failed items got before the build gave up on them.",
        );
        table(
            &mut h,
            &["run against", "outcome", "runs"],
            v.outcomes.iter().map(|o| vec![o.against.clone(), o.outcome.replace('_', " "), n(o.runs)]),
        );
        let _ = writeln!(
            h,
            "<p>Runs against <code>stub</code> are the test-quality gate: a test must fail against a stub \
             that does nothing. Runs against <code>answer</code> check the answer.</p>"
        );
    }

    if !s.tokens.is_empty() {
        section(&mut h, "Tokens and cost");
        figure(
            &mut h,
            plots,
            "tokens",
            "Prompt and completion tokens per stage, as the stored responses report them \
             (a build served from the store reports the same).",
        );
        table(
            &mut h,
            &["stage", "model", "calls", "prompt tokens", "completion tokens", "cost (USD)"],
            s.tokens.iter().map(|t| {
                vec![
                    t.stage.clone(),
                    t.model.clone(),
                    n(t.calls),
                    n(t.prompt_tokens),
                    n(t.completion_tokens),
                    format!("{:.4}", t.cost),
                ]
            }),
        );
        let _ = writeln!(
            h,
            "<p>Cost is computed from the prices the spec gives each model; the builtin offline generator costs nothing.</p>"
        );
    }
    h.push_str("</body>\n</html>\n");
    h
}

fn n(v: u64) -> String {
    thousands(v)
}

fn section(h: &mut String, title: &str) {
    let _ = writeln!(h, "<h2>{}</h2>", esc(title));
}

fn figure(h: &mut String, plots: &[Plot], name: &str, caption: &str) {
    let Some(p) = plots.iter().find(|p| p.name == name) else { return };
    let svg = p.svg.find("<svg").map_or(p.svg.as_str(), |at| &p.svg[at..]);
    let _ = writeln!(
        h,
        "<figure id=\"{name}\">\n{}\n<figcaption>{} (<code>plots/{name}.svg</code>, <code>plots/{name}.png</code>)</figcaption>\n</figure>",
        svg.trim_end(),
        esc(caption)
    );
}

fn table(h: &mut String, header: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    h.push_str("<table>\n<tr>");
    for c in header {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    h.push_str("</tr>\n");
    for row in rows {
        h.push_str("<tr>");
        for c in row {
            // Numbers are right-aligned so their digits line up; words stay left.
            let numeric = !c.is_empty() && c.chars().all(|ch| ch.is_ascii_digit() || ch == ',' || ch == '.');
            let _ = write!(h, "<td{}>{}</td>", if numeric { " class=\"n\"" } else { "" }, esc(&c));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}
