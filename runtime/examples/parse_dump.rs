//! Prints the blocks a parser makes of one file: `cargo run -p sdc-runtime --example parse_dump -- FILE`.

use sdc_runtime::ingest::document::ParseLimits;
use sdc_runtime::ingest::{mdx, notebook, pdf};

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: parse_dump FILE");
        std::process::exit(2);
    };
    let data = std::fs::read(&path).unwrap_or_default();
    let limits = ParseLimits::default();
    // `PARSE_REPEAT=N` parses N times first, for profiling.
    for _ in 0..std::env::var("PARSE_REPEAT").ok().and_then(|n| n.parse::<u32>().ok()).unwrap_or(0) {
        let _ = pdf::parse(&data, &limits);
    }
    let parsed = if path.ends_with(".ipynb") {
        notebook::parse(&data, &limits)
    } else if path.ends_with(".pdf") {
        pdf::parse(&data, &limits)
    } else if path.ends_with(".md") {
        mdx::parse_markdown(&data, &limits)
    } else {
        mdx::parse(&data, &limits)
    };
    match parsed {
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
