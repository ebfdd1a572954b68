//! `sdc analyze` on the fixture build's archive: `statistics.json` against the archive's own rows,
//! rejected entries and the build report (the funnel closes), byte-identical repeats, and a
//! report that needs nothing outside itself.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support::{FIXTURE_ARCHIVE, built_fixture, tree};

fn analyze(out: &std::path::Path, extra: &[&str]) -> crate::support::Run {
    let mut args = vec!["analyze", FIXTURE_ARCHIVE, "--out", out.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    built_fixture().project.sdc(&args)
}

/// Counts by key, as the statistics list them.
fn tally<'a>(keys: impl Iterator<Item = &'a str>) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for k in keys {
        *m.entry(k.to_string()).or_default() += 1;
    }
    m
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn statistics_count_the_archive_and_the_funnel_closes() {
    let fixture = built_fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("analysis");
    let run = analyze(&out, &["--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert!(run.stderr.is_empty(), "nothing is missing from a current archive: {}", run.stderr);
    let stats: Value = serde_json::from_slice(&std::fs::read(out.join("statistics.json")).expect("statistics"))
        .expect("statistics.json is JSON");

    // Rows, read from the archive without sdc analyze.
    let bytes = std::fs::read(fixture.project.path(FIXTURE_ARCHIVE)).expect("archive");
    let files = sdc_runtime::archive::read_archive(bytes.as_slice(), &Default::default()).expect("read");
    let mut rows: Vec<(String, sdc_runtime::archive::SampleRow)> = Vec::new();
    let mut rejected = Vec::new();
    for (path, data) in &files {
        if let Some(name) = path.strip_prefix("data/") {
            let split = name.split('-').next().expect("split");
            rows.extend(
                sdc_runtime::archive::read_samples(data).expect("parquet").into_iter().map(|r| (split.into(), r)),
            );
        } else if path == "rejected.parquet" {
            rejected = sdc_runtime::archive::read_rejected(data).expect("rejected");
        }
    }
    assert_eq!(n(&stats["samples"]), rows.len() as u64);
    let with_image = rows.iter().filter(|(_, r)| r.image.is_some()).count() as u64;
    assert_eq!(stats["modality"], serde_json::json!({"text": rows.len() as u64 - with_image, "image": with_image}));

    let splits = stats["splits"].as_array().expect("splits");
    assert_eq!(
        splits.iter().map(|s| s["split"].as_str().unwrap_or("")).collect::<Vec<_>>(),
        ["train", "validation", "test"],
        "card order"
    );
    for s in splits {
        let name = s["split"].as_str().expect("name");
        let mine: Vec<&sdc_runtime::archive::SampleRow> =
            rows.iter().filter(|(x, _)| x == name).map(|(_, r)| r).collect();
        assert_eq!(n(&s["samples"]), mine.len() as u64, "{name}");
        assert_eq!(s["types"], serde_json::json!(tally(mine.iter().map(|r| r.task_type.as_str()))), "{name}");
        assert_eq!(s["categories"], serde_json::json!(tally(mine.iter().map(|r| r.category.as_str()))), "{name}");
        let img = mine.iter().filter(|r| r.image.is_some()).count() as u64;
        assert_eq!(s["modality"]["image"], img, "{name}");
    }
    for (field, key) in [("types", 0), ("categories", 1)] {
        let expect = tally(rows.iter().map(|(_, r)| if key == 0 { r.task_type.as_str() } else { r.category.as_str() }));
        let got: BTreeMap<String, u64> = stats[field]
            .as_array()
            .expect("counts")
            .iter()
            .map(|c| {
                assert_eq!(n(&c["samples"]), n(&c["text"]) + n(&c["image"]), "{c}");
                (c["name"].as_str().expect("name").to_string(), n(&c["samples"]))
            })
            .collect();
        assert_eq!(got, expect, "{field}");
    }
    // The build report said the same, per split and per type and modality.
    let report = &fixture.report;
    for pair in report["package"]["per_split"].as_array().expect("per split") {
        let s = splits.iter().find(|s| s["split"] == pair[0]).expect("split in statistics");
        assert_eq!(s["samples"], pair[1]);
    }
    for t in report["package"]["per_type"].as_array().expect("per type") {
        let c = stats["types"].as_array().and_then(|a| a.iter().find(|c| c["name"] == t[0])).expect("type");
        assert_eq!((&c["text"], &c["image"]), (&t[1], &t[2]), "{t}");
    }

    // The funnel: every planned item accepted, rejected or failed; every stage's input
    // accounted for; the same books as the build report; the reasons are rejected.parquet's.
    let funnel = &stats["funnel"];
    let kinds = funnel["kinds"].as_array().expect("kinds");
    assert_eq!(kinds.len(), 4, "image, chunk, task, sample");
    for k in kinds {
        assert_eq!(n(&k["planned"]), n(&k["accepted"]) + n(&k["rejected"]) + n(&k["failed"]), "{k}");
        let a = report["accounting"].as_array().and_then(|a| a.iter().find(|a| a["kind"] == k["kind"])).expect("kind");
        assert_eq!(a, k, "provenance's books are the report's");
    }
    let samples = kinds.iter().find(|k| k["kind"] == "sample").expect("samples");
    assert_eq!(n(&samples["accepted"]), rows.len() as u64, "every accepted sample is in a split");
    for st in funnel["stages"].as_array().expect("stages") {
        let name = st["stage"].as_str().expect("stage");
        assert_eq!(n(&st["items_in"]), n(&st["items_out"]) + n(&st["rejected"]) + n(&st["failed"]), "{st}");
        let reasons = st["reasons"].as_array().expect("reasons");
        let reasoned: u64 = reasons.iter().map(|r| n(&r["count"])).sum();
        assert_eq!(reasoned, n(&st["rejected"]) + n(&st["failed"]), "every drop in `{name}` has a reason");
        if name != "ingest" {
            let dropped = rejected.iter().filter(|r| r.stage == name).count() as u64;
            assert_eq!(dropped, reasoned, "`{name}` against rejected.parquet");
        }
    }
    let stages: Vec<&str> =
        funnel["stages"].as_array().expect("stages").iter().filter_map(|s| s["stage"].as_str()).collect();
    for must in ["ingest", "allocation", "plan", "answer", "dedup", "split"] {
        assert!(stages.contains(&must), "stage {must} in {stages:?}");
    }

    // Chunk sizes, verification and tokens come from provenance.
    let chunks = &stats["chunks"];
    let planned_chunks = kinds.iter().find(|k| k["kind"] == "chunk").map(|k| n(&k["planned"]));
    assert_eq!(Some(n(&chunks["chunks"])), planned_chunks, "one size per chunk");
    let binned: u64 = chunks["histogram"].as_array().expect("bins").iter().map(|b| n(&b["count"])).sum();
    assert_eq!(binned, n(&chunks["chunks"]));
    assert!(!stats["verification"]["accepted_by_attempts"].as_array().expect("attempts").is_empty());
    let calls: u64 = stats["tokens"].as_array().expect("tokens").iter().map(|t| n(&t["calls"])).sum();
    assert_eq!(calls, n(&report["calls_made"]), "a clean build made every call it records");
    assert_eq!(stats["missing"], serde_json::json!([]));
}

#[test]
fn the_analysis_repeats_byte_for_byte_and_the_report_stands_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for out in [&a, &b] {
        let run = analyze(out, &[]);
        assert_eq!(run.code, 0, "{}", run.transcript());
    }
    let files = tree(&a);
    assert_eq!(files, tree(&b), "the same archive must analyse to the same bytes");

    let plots: Vec<&String> = files.keys().filter(|k| k.starts_with("plots/") && k.ends_with(".svg")).collect();
    for must in [
        "splits",
        "types",
        "categories",
        "modality",
        "funnel",
        "stages",
        "rejections",
        "chunk_sizes",
        "verification",
        "tokens",
    ] {
        let svg = format!("plots/{must}.svg");
        let png = format!("plots/{must}.png");
        assert!(files.contains_key(&svg) && files.contains_key(&png), "{must}: {plots:?}");
        assert!(files[&png].starts_with(b"\x89PNG\r\n\x1a\n"), "{png}");
        // The PNG is the SVG's picture, at the SVG's size.
        let text = String::from_utf8_lossy(&files[&svg]);
        let be = |at: usize| u32::from_be_bytes(files[&png][at..at + 4].try_into().expect("4 bytes"));
        assert!(
            text.contains(&format!("width=\"{}\" height=\"{}\"", be(16), be(20))),
            "{svg} and {png} differ in size"
        );
    }

    let html = String::from_utf8_lossy(&files["report.html"]);
    assert_eq!(html.matches("<svg").count(), plots.len(), "every chart is inlined");
    for external in ["src=", "href=", "url(", "@import", "<script", "<link"] {
        assert!(!html.contains(external), "report.html refers outside itself: `{external}`");
    }
    let without_ns = html.replace("http://www.w3.org/2000/svg", "").replace("http://www.w3.org/1999/xlink", "");
    assert!(!without_ns.contains("http://") && !without_ns.contains("https://"), "no external resources");

    let refused = analyze(&a, &[]);
    assert_eq!(refused.code, 1, "{}", refused.transcript());
    assert!(refused.stderr.contains("pass `--force`"), "{}", refused.stderr);
    let forced = analyze(&a, &["--force"]);
    assert_eq!(forced.code, 0, "{}", forced.transcript());
    assert_eq!(tree(&a), files);
}
