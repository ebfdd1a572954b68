//! Dedup benchmark: `cargo run --release -p sdc-runtime --example dedup_bench -- [ITEMS]`.
//!
//! Builds ITEMS (default 100000) synthetic items: questions of about 25 words, QA answers of
//! about 120 words, code answers of about 40 lines (a third of the items), a fifth with an image.
//! 2 % are exact copies (re-spaced) of an earlier item and 4 % are copies with two adjacent words
//! changed. Prints the best of three runs of `dedup` at threshold 0.85 and what it removed.

use std::time::Instant;

use sdc_runtime::dedup::{DedupItem, DupKind, dedup};
use xxhash_rust::xxh3::xxh3_64_with_seed;

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let items = synthetic(n);
    let chars: usize = items.iter().map(|i| i.question.len() + i.answer.len()).sum();
    println!("{n} items, {:.1} MB of text", chars as f64 / 1e6);
    let (mut best, mut best_cpu) = (f64::MAX, f64::MAX);
    let mut summary = String::new();
    for _ in 0..3 {
        let (start, cpu) = (Instant::now(), cpu_ns());
        let r = dedup(&items, 0.85, 7);
        best = best.min(start.elapsed().as_secs_f64());
        best_cpu = best_cpu.min((cpu_ns() - cpu) as f64 / 1e9);
        let exact = r.removed.iter().filter(|d| d.kind == DupKind::Exact).count();
        summary = format!("kept {}, removed {} exact and {} near", r.kept.len(), exact, r.removed.len() - exact);
    }
    println!("dedup: {:.0} ms wall, {:.0} ms on CPU (best of 3); {summary}", best * 1000.0, best_cpu * 1000.0);
}

fn word(r: u64) -> String {
    // A Zipf-like vocabulary of 5000 words: small indices are much more frequent.
    let x = (r % 1_000_000) as f64 / 1_000_000.0;
    format!("w{}", (5000f64.powf(x)) as u64)
}

fn sentence(seed: u64, words: u64) -> String {
    (0..words).map(|k| word(xxh3_64_with_seed(&k.to_le_bytes(), seed))).collect::<Vec<_>>().join(" ")
}

fn code(seed: u64, lines: u64) -> String {
    (0..lines)
        .map(|k| {
            let r = xxh3_64_with_seed(&k.to_le_bytes(), seed);
            format!("    {} = qc.{}({}, {}) + {}", word(r), word(r >> 7), r % 5, (r >> 3) % 5, word(r >> 13))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn synthetic(n: u64) -> Vec<DedupItem> {
    let mut items: Vec<DedupItem> = Vec::with_capacity(n as usize);
    for i in 0..n {
        let r = xxh3_64_with_seed(&i.to_le_bytes(), 42);
        let id = format!("{:016x}", xxh3_64_with_seed(&i.to_le_bytes(), 43));
        if i > 100 && r % 100 < 6 {
            let source = &items[(r >> 8) as usize % items.len()];
            let mut copy = DedupItem { id, ..source.clone() };
            if r % 100 < 2 {
                copy.question = format!("  {}  ", copy.question.replace(' ', "  "));
            } else {
                let mut words: Vec<String> = copy.answer.split(' ').map(str::to_string).collect();
                let at = (r >> 20) as usize % words.len().saturating_sub(1).max(1);
                for w in words.iter_mut().skip(at).take(2) {
                    w.push('z');
                }
                copy.answer = words.join(" ");
            }
            items.push(copy);
            continue;
        }
        let code_task = r.is_multiple_of(3);
        let answer =
            if code_task { format!("def solve():\n{}\n    return qc", code(r, 40)) } else { sentence(r ^ 1, 120) };
        items.push(DedupItem {
            id,
            task_type: if code_task { "code_generation" } else { "qa" }.to_string(),
            question: sentence(r ^ 2, 25),
            answer,
            image_id: r.is_multiple_of(5).then(|| format!("img{}", (r >> 30) % 10_000)),
        });
    }
    items
}

/// CPU time of all this process's threads, in nanoseconds (Linux schedstat; 0 elsewhere). On a
/// busy machine wall time overstates the cost, so both are printed.
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}
