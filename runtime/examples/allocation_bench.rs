//! Allocation benchmark: `cargo run --release -p sdc-runtime --example allocation_bench -- [CHUNKS]`.
//!
//! Builds CHUNKS (default 200000) synthetic chunks with 0 to 3 images each (1.5 on average, drawn
//! from as many image ids as chunks, so some images appear in several chunks) and allocates all
//! three task types with targets that use about 70 % of the chunks, with and without category
//! balancing. Prints the best of three runs of `allocate` (input construction excluded), as wall
//! time and as CPU time summed over threads.

use std::time::Instant;

use sdc_compiler::plan::{PlanAllocation, TypeTargets};
use sdc_compiler::spec::TaskType;
use sdc_runtime::allocation::{ChunkCandidates, ChunkFeatures, ImageFeatures, allocate};

const TYPES: [&str; 9] =
    ["circuit", "chart", "bloch_sphere", "formula", "diagram", "table", "code_output", "decorative", "unknown"];

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let chunks = synthetic(n);
    let images: usize = chunks.iter().map(|c| c.images.len()).sum();
    println!("{n} chunks, {images} chunk images");
    for balance in [false, true] {
        let settings = settings(n, balance);
        let (mut best, mut best_cpu) = (f64::MAX, f64::MAX);
        let mut summary = String::new();
        for _ in 0..3 {
            let (start, cpu) = (Instant::now(), cpu_ns());
            let a = allocate(&chunks, &settings, 7);
            best = best.min(start.elapsed().as_secs_f64());
            best_cpu = best_cpu.min((cpu_ns() - cpu) as f64 / 1e9);
            summary = format!(
                "{} tasks of {} planned, chunk coverage {:.1} %, image coverage {:.1} %",
                a.metrics.tasks,
                a.metrics.target,
                100.0 * a.metrics.chunk_coverage,
                100.0 * a.metrics.image_coverage
            );
        }
        println!(
            "balance_categories={balance}: {:.0} ms wall, {:.0} ms on CPU (best of 3); {summary}",
            best * 1000.0,
            best_cpu * 1000.0
        );
    }
}

fn settings(n: u64, balance_categories: bool) -> PlanAllocation {
    let t = |task, mm: u64, text: u64| TypeTargets {
        task,
        wanted: mm + text,
        wanted_multimodal: mm,
        planned: mm + text,
        planned_multimodal: mm,
        planned_text: text,
    };
    PlanAllocation {
        over_allocation: 1.7,
        diversity_weight: 0.4,
        balance_categories,
        category_weights: vec![("cat0".into(), 0.5), ("cat3".into(), 2.0)],
        seed: 7,
        types: vec![
            t(TaskType::FunctionCompletion, n / 20, n / 5),
            t(TaskType::CodeGeneration, n / 20, n / 5),
            t(TaskType::Qa, n / 6, n / 10),
        ],
    }
}

/// The same shape as the allocation module's test corpus: a deterministic function of the index.
fn synthetic(n: u64) -> Vec<ChunkCandidates> {
    (0..n)
        .map(|i| {
            let r = xxhash_rust::xxh3::xxh3_64_with_seed(&i.to_le_bytes(), 0);
            let images = (0..r % 4)
                .map(|k| ImageFeatures {
                    image_id: format!("img{:x}", (r >> 8) % n + k),
                    image_type: TYPES[((r >> (20 + 4 * k)) % 9) as usize].to_string(),
                })
                .collect();
            ChunkCandidates {
                chunk: ChunkFeatures {
                    chunk_id: format!("{:016x}", xxhash_rust::xxh3::xxh3_64_with_seed(&i.to_le_bytes(), 1)),
                    document_id: format!("doc{}", i / 20),
                    text_chars: (r >> 32) % 3000,
                    code_blocks: (r >> 44) % 3,
                    code_chars: (r >> 48) % 900,
                    has_neighbours: r & 1 == 1,
                    category_hint: Some(format!("cat{}", (r >> 56) % 7)),
                },
                images,
            }
        })
        .collect()
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
