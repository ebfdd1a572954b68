//! Ingest throughput benchmark: `cargo run --release -p sdc-runtime --example ingest_bench -- [DIR]`.
//!
//! Walks DIR (default: ../shared/corpus/qiskit-docs) for .ipynb, .mdx and .pdf files and prints:
//! - parse+chunk MB/s on one thread and on every core (documents only; images are referenced,
//!   not decoded);
//! - full ingest (parse, resolve and normalise every image, chunk) on one thread and on all cores;
//! - peak resident memory of the process.

use std::path::{Path, PathBuf};
use std::time::Instant;

use sdc_compiler::plan::{PlanChunking, PlanImages};
use sdc_compiler::sources::DocKind;
use sdc_runtime::ingest::chunk::{self, Piece};
use sdc_runtime::ingest::document::{Block, ParseLimits};
use sdc_runtime::ingest::{self, SourceInput, mdx, notebook, pdf};

fn main() {
    let dir = std::env::args().nth(1).map_or_else(|| PathBuf::from("../shared/corpus/qiskit-docs"), PathBuf::from);
    let mut files = Vec::new();
    walk(&dir, &dir, &mut files);
    files.sort();
    let bytes: u64 = files.iter().map(|(_, _, n)| *n).sum();
    let mb = bytes as f64 / 1e6;
    println!("corpus: {} ({} documents, {mb:.1} MB)", dir.display(), files.len());

    let chunking = PlanChunking {
        max_chars: 2912,
        min_chars: 800,
        overlap_chars: 0,
        max_code_blocks: 3,
        max_images: 3,
        neighbour_chars: 800,
        prior_code_chars: 2000,
    };
    let images = PlanImages { max_side: 1024, max_pixels: 30_000_000, max_bytes: 20_000_000 };

    // `BENCH_ONLY=full` skips the parse-only rounds, to see the full ingest's own memory peak;
    // `BENCH_ONLY=parse` skips the full ingest.
    let only_full = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "full");
    let only_parse = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "parse");
    // Parse + chunk only, one thread, best of 5 (overall and per kind).
    let mut best = f64::MAX;
    let mut chunks = 0;
    let mut per_kind: std::collections::BTreeMap<&str, (u64, f64)> = Default::default();
    for round in 0..if only_full { 0 } else { 5 } {
        let start = Instant::now();
        chunks = 0;
        let mut this_round: std::collections::BTreeMap<&str, (u64, f64)> = Default::default();
        for (rel, kind, size) in &files {
            let file_start = Instant::now();
            let Some(n) = parse_and_chunk(&dir.join(rel), *kind, &chunking) else { continue };
            chunks += n;
            let e = this_round.entry(kind.as_str()).or_default();
            e.0 += size;
            e.1 += file_start.elapsed().as_secs_f64();
        }
        best = best.min(start.elapsed().as_secs_f64());
        for (kind, (bytes, secs)) in this_round {
            let e = per_kind.entry(kind).or_insert((bytes, f64::MAX));
            if round == 0 || secs < e.1 {
                *e = (bytes, secs);
            }
        }
    }
    println!("parse+chunk, 1 thread:    {:>7.1} MB/s  ({best:.3} s, {chunks} chunks)", mb / best);
    for (kind, (bytes, secs)) in &per_kind {
        println!(
            "  {kind:<9} {:>7.1} MB/s  ({:.1} MB in {secs:.3} s)",
            *bytes as f64 / 1e6 / secs,
            *bytes as f64 / 1e6
        );
    }

    // The same work on every core (files in parallel), best of 5.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if !only_full && cores > 1 {
        use rayon::prelude::*;
        let pool = rayon::ThreadPoolBuilder::new().num_threads(cores).build().expect("thread pool");
        let mut best_parallel = f64::MAX;
        for _ in 0..5 {
            let start = Instant::now();
            let n: usize = pool.install(|| {
                files
                    .par_iter()
                    .map(|(rel, kind, _)| parse_and_chunk(&dir.join(rel), *kind, &chunking).unwrap_or(0))
                    .sum()
            });
            assert_eq!(n, chunks, "the same chunks whatever the thread count");
            best_parallel = best_parallel.min(start.elapsed().as_secs_f64());
        }
        println!("parse+chunk, {cores} threads:   {:>7.1} MB/s  ({best_parallel:.3} s)", mb / best_parallel);
    }

    let source = SourceInput {
        name: "bench".into(),
        root: dir.clone(),
        public_root: Some(dir.join("documentation/public")),
        files: files.iter().map(|(p, k, _)| (p.clone(), *k)).collect(),
    };
    for threads in if only_parse { vec![] } else { vec![1, cores] } {
        let start = Instant::now();
        let r = ingest::ingest(std::slice::from_ref(&source), &chunking, &images, threads);
        let t = start.elapsed().as_secs_f64();
        println!(
            "full ingest, {threads} thread(s): {:>7.1} MB/s  ({t:.3} s; {} documents, {} images, {} chunks, {} skipped, {} unresolved)",
            mb / t,
            r.documents.len(),
            r.images.len(),
            r.chunks.len(),
            r.skipped.len(),
            r.unresolved.len()
        );
        let png: usize = r.images.iter().map(|i| i.png_bytes).sum();
        println!("  normalised images: {:.1} MB of PNG", png as f64 / 1e6);
    }
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0);
    println!("peak RSS: {:.1} MB", peak as f64 / 1024.0);
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, DocKind, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out);
        } else if let Some(kind) = p.to_str().and_then(DocKind::from_path).filter(|k| *k != DocKind::Markdown) {
            let rel = p.strip_prefix(root).map(|r| r.to_string_lossy().into_owned()).unwrap_or_default();
            out.push((rel, kind, e.metadata().map_or(0, |m| m.len())));
        }
    }
}

/// Reads, parses and chunks one file; the number of chunks, or `None` if the file is skipped.
fn parse_and_chunk(path: &Path, kind: DocKind, chunking: &PlanChunking) -> Option<usize> {
    let data = std::fs::read(path).unwrap_or_default();
    let limits = ParseLimits::default();
    let parsed = match kind {
        DocKind::Notebook => notebook::parse(&data, &limits),
        DocKind::Pdf => pdf::parse(&data, &limits),
        _ => mdx::parse(&data, &limits),
    }
    .ok()?;
    let pieces: Vec<Piece> = parsed.blocks.into_iter().filter_map(piece).collect();
    Some(chunk::chunk("bench", &pieces, chunking).len())
}

/// A parsed block as the chunker sees it (images are referenced, not decoded).
fn piece(b: Block) -> Option<Piece> {
    match b {
        Block::Heading { level, text, .. } => Some(Piece::Heading { level, text }),
        Block::Text { text, .. } => Some(Piece::Text(text)),
        Block::Code { language, code, .. } => Some(Piece::Code { language, code }),
        Block::Output { text, .. } => Some(Piece::Output(text)),
        Block::Image(i) => Some(Piece::Image { id: "0".repeat(64), produced: i.generating_code.is_some() }),
        Block::Page { .. } => None,
    }
}
