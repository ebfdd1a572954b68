//! Prints the blocks a parser makes of one file: `cargo run -p sdc-runtime --example parse_dump -- FILE`.
//!
//! `PARSE_REPEAT=N` first parses every FILE given N times without printing, for profiling
//! (`perf record … parse_dump a.mdx b.mdx`); the blocks of the first file are printed after.

use sdc_runtime::ingest::document::{ParseLimits, Parsed, SkipReason};
use sdc_runtime::ingest::{mdx, notebook, pdf};

fn parse(path: &str, limits: &ParseLimits) -> Result<Parsed, SkipReason> {
    let data = std::fs::read(path).unwrap_or_default();
    if path.ends_with(".ipynb") {
        notebook::parse(&data, limits)
    } else if path.ends_with(".pdf") {
        pdf::parse(&data, limits)
    } else if path.ends_with(".md") {
        mdx::parse_markdown(&data, limits)
    } else {
        mdx::parse(&data, limits)
    }
}

fn main() {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    let Some(first) = paths.first() else {
        eprintln!("usage: parse_dump FILE...");
        std::process::exit(2);
    };
    let limits = ParseLimits::default();
    for _ in 0..std::env::var("PARSE_REPEAT").ok().and_then(|n| n.parse::<u32>().ok()).unwrap_or(0) {
        for path in &paths {
            let _ = parse(path, &limits);
        }
    }
    match parse(first, &limits) {
        Ok(p) => {
            println!("title: {:?}\nmetadata: {:?}", p.title, p.metadata);
            for b in &p.blocks {
                println!("{b:?}");
            }
            for w in &p.warnings {
                println!("warning at {}: {}", w.at, w.message);
            }
        }
        Err(e) => println!("skipped: {e}"),
    }
}
