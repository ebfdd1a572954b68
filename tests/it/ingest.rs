//! Ingest over real corpora: the project's own example corpus and the shared Qiskit docs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sdc_compiler::plan::{PlanChunking, PlanImages};
use sdc_compiler::sources::DocKind;
use sdc_runtime::ingest::{self, Ingested, SourceInput};

fn chunking() -> PlanChunking {
    PlanChunking {
        max_chars: 2912,
        min_chars: 800,
        overlap_chars: 0,
        max_code_blocks: 3,
        max_images: 3,
        neighbour_chars: 800,
        prior_code_chars: 2000,
    }
}

fn images() -> PlanImages {
    PlanImages { max_side: 1024, max_pixels: 30_000_000, max_bytes: 20_000_000 }
}

fn files_under(root: &Path) -> Vec<(String, DocKind)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, DocKind)>) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if let Some(kind) = p.to_str().and_then(DocKind::from_path).filter(|k| *k != DocKind::Markdown) {
                out.push((p.strip_prefix(root).expect("prefix").to_string_lossy().into_owned(), kind));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn shared_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/qiskit-docs")
}

fn shared() -> SourceInput {
    let root = shared_root();
    SourceInput {
        name: "qiskit".into(),
        files: files_under(&root),
        public_root: Some(root.join("documentation/public")),
        root,
    }
}

fn own() -> SourceInput {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/quantum");
    SourceInput { name: "docs".into(), files: files_under(&root), public_root: Some(root.join("public")), root }
}

fn run(source: &SourceInput, threads: usize) -> Ingested {
    ingest::ingest(std::slice::from_ref(source), &chunking(), &images(), threads)
}

fn per_kind(r: &Ingested) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for d in &r.documents {
        *m.entry(d.kind.as_str()).or_default() += 1;
    }
    m
}

/// The same result, to the byte, with one thread and with four.
fn assert_thread_independent(source: &SourceInput, one: &Ingested) {
    let four = serde_json::to_string(&run(source, 4)).expect("json");
    let one = serde_json::to_string(one).expect("json");
    assert!(one == four, "ingest of {} differs between 1 and 4 threads", source.root.display());
}

#[test]
fn own_corpus() {
    let r = run(&own(), 1);
    assert_thread_independent(&own(), &r);
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    assert_eq!(per_kind(&r), BTreeMap::from([("mdx", 5), ("notebook", 6), ("pdf", 1)]));
    assert_eq!((r.images.len(), r.chunks.len(), r.unresolved.len()), (25, 41, 1));
    // The one deliberately missing image is reported with its document and position.
    let missing: Vec<_> = r.unresolved.iter().filter(|u| u.reference.contains("readout-calibration-heatmap")).collect();
    assert_eq!(missing.len(), 1, "{:#?}", r.unresolved);
    assert_eq!(missing[0].path, "pages/guides/noise-and-readout-mitigation.mdx");
    assert!(missing[0].at.line.is_some());
    // Two notebooks named intro.ipynb keep their own pictures.
    let images_of =
        |path: &str| r.documents.iter().find(|d| d.path == path).map(|d| d.images.clone()).unwrap_or_default();
    let (basic, advanced) = (images_of("notebooks/basics/intro.ipynb"), images_of("notebooks/advanced/intro.ipynb"));
    assert!(!basic.is_empty() && !advanced.is_empty());
    assert!(basic.iter().all(|i| !advanced.contains(i)), "the two intro notebooks share an image id");
    // Output images keep the code cell that drew them.
    let produced = r.images.iter().flat_map(|i| &i.uses).filter(|u| u.generating_code.is_some()).count();
    assert!(produced >= 10, "{produced}");
    // The PDF's raster figure is found.
    assert!(r.images.iter().any(|i| i.uses.iter().any(|u| u.path.ends_with(".pdf"))));
    // Every image id is the sha256 of its stored PNG.
    for img in &r.images {
        assert_eq!(sdc_compiler::hash::sha256_hex(img.png()), img.id);
    }
}

#[test]
fn shared_corpus_counts_and_manifest_images() {
    let root = shared_root();
    let r = run(&shared(), 1);
    assert_thread_independent(&shared(), &r);
    assert!(r.skipped.is_empty(), "{:#?}", r.skipped);
    assert_eq!(per_kind(&r), BTreeMap::from([("mdx", 64), ("notebook", 49), ("pdf", 3)]));
    assert_eq!((r.images.len(), r.chunks.len(), r.unresolved.len()), (396, 918, 0));
    let manifest = std::fs::read_to_string(root.join("MANIFEST.tsv")).expect("manifest");
    let mut checked = 0;
    for row in manifest.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        if cols.len() < 10 || cols[3] != "image" || cols[9].is_empty() {
            continue;
        }
        let image_path = cols[0];
        for doc in cols[9].split(';').filter(|d| !d.is_empty()) {
            let resolved = r.images.iter().any(|i| {
                i.uses.iter().any(|u| {
                    u.path == doc
                        && u.resolved_path.as_deref().is_some_and(|p| {
                            p == image_path
                                || p.strip_prefix("public:")
                                    .is_some_and(|q| format!("documentation/public/{q}") == image_path)
                        })
                })
            });
            let stem = Path::new(image_path).file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let reported = r.unresolved.iter().any(|u| u.path == doc && u.reference.contains(stem));
            assert!(resolved || reported, "{image_path} (referenced by {doc}) neither resolves nor is reported");
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} manifest references checked");
}
