//! Build benchmarks (`cargo bench --bench build`), printing figures rather than asserting them:
//!
//! - **no-op rebuild** of the shipped spec with everything in the store, in the default mode
//!   (checks the lock against spec, prompts and sources) and with `--frozen`; target ≤ 0.5 s.
//! - **scale**: a synthetic build over a generated corpus with the builtin generator, reporting
//!   planned items, wall time and the peak RSS of the `sdc` process; target < 300 MB at 100k.
//!
//! `BENCH=noop|scale` runs one of them; `SDC_BENCH_ITEMS` sets the scale build's planned items
//! (default 100 000). The verification venv is shared with the tests through `SDC_ENV_DIR`
//! (default `target/sdc-envs`), so only the first run on a machine pays for pip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SDC: &str = env!("CARGO_BIN_EXE_sdc");

fn main() {
    let which = std::env::var("BENCH").unwrap_or_default();
    // `cargo bench` passes `--bench`; any other argument is a filter, as with libtest.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| (which.is_empty() || which == name) && filter.as_deref().is_none_or(|f| name.contains(f));
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let env_dir = std::env::var_os("SDC_ENV_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target/sdc-envs"));
    if wanted("noop") {
        noop_rebuild(&root, &env_dir);
    }
    if wanted("scale") {
        let items =
            std::env::var("SDC_BENCH_ITEMS").ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(100_000);
        scale(&root, &env_dir, items);
    }
}

fn sdc(args: &[&str], env_dir: &Path) -> Command {
    let mut c = Command::new(SDC);
    c.args(args).env("SDC_ENV_DIR", env_dir).env("NO_COLOR", "1");
    for model in ["VISION", "QUESTION", "ANSWER", "CURATE"] {
        c.env_remove(format!("{model}_MODEL_BASE_URL"));
    }
    c
}

fn run(mut c: Command) -> Duration {
    let start = Instant::now();
    let out = c.output().expect("run sdc");
    if !out.status.success() {
        panic!("{c:?} failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    start.elapsed()
}

fn noop_rebuild(root: &Path, env_dir: &Path) {
    let store = root.join("target/bench-store");
    let spec = root.join("specs/quantum.sds");
    let spec = spec.to_str().expect("utf-8 path");
    let store_arg = store.to_str().expect("utf-8 path");
    let first = run(sdc(&["build", spec, "--store", store_arg, "--quiet"], env_dir));
    println!("noop: first build into {} took {:.2} s (warms the store)", store.display(), first.as_secs_f64());
    for (label, extra) in [("default", None), ("--frozen", Some("--frozen"))] {
        let mut times: Vec<f64> = (0..7)
            .map(|_| {
                let mut args = vec!["build", spec, "--store", store_arg, "--quiet"];
                args.extend(extra);
                run(sdc(&args, env_dir)).as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "noop: no-op rebuild of specs/quantum.sds ({label}): min {:.3} s, median {:.3} s, max {:.3} s over {} runs (target <= 0.5 s)",
            times[0],
            times[times.len() / 2],
            times[times.len() - 1],
            times.len()
        );
    }
}

/// A generated corpus of MDX pages, each with a few sections of varied prose about quantum
/// computing and a small documented function, so every task type is planned (most code tasks
/// are rejected at planning: MDX code has no recorded outputs to test against, which keeps the
/// benchmark about the executor rather than about Python).
fn scale(root: &Path, env_dir: &Path, items: u64) {
    // `SDC_BENCH_DIR` keeps the generated project (to profile it, e.g. with heaptrack).
    let dir = tempfile::tempdir().expect("temp dir");
    let kept = std::env::var_os("SDC_BENCH_DIR").map(PathBuf::from);
    let base = kept.as_deref().unwrap_or(dir.path());
    if kept.is_some() {
        let _ = std::fs::remove_dir_all(base);
    }
    // About four planned tasks per chunk and five chunks per page, with over-allocation 1.7.
    let pages = items.div_ceil(20).max(1);
    let target = (items as f64 / 1.7).ceil() as u64;
    let pages_dir = base.join("docs/pages");
    std::fs::create_dir_all(&pages_dir).expect("mkdir");
    for p in 0..pages {
        std::fs::write(pages_dir.join(format!("p{p:06}.mdx")), page(p)).expect("write page");
    }
    std::fs::create_dir_all(base.join("specs")).expect("mkdir");
    copy_dir(&root.join("prompts"), &base.join("prompts"));
    std::fs::write(base.join("requirements.txt"), "").expect("write requirements");
    let spec = include_str!("scale.sds").replace("TARGET", &target.to_string());
    let spec_path = base.join("specs/scale.sds");
    std::fs::write(&spec_path, spec).expect("write spec");
    let spec_arg = spec_path.to_str().expect("utf-8 path");

    let before = children_max_rss_kib();
    let wall = run(sdc(&["build", spec_arg, "--quiet", "--format", "json"], env_dir));
    let rss = children_max_rss_kib();
    let report = std::fs::read_dir(base.join("dist")).map(|d| d.count()).unwrap_or(0);
    println!(
        "scale: {pages} generated pages, dataset target {target}: built in {:.1} s, peak RSS {:.0} MB{} (target < 300 MB at 100k items; {report} file(s) in dist)",
        wall.as_secs_f64(),
        rss as f64 / 1024.0,
        if before > 0 && rss <= before { " (an earlier child's peak, not this build's)" } else { "" },
    );
    let out = sdc(&["build", spec_arg, "--frozen", "--format", "json"], env_dir).output().expect("rerun");
    if let Ok(report) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
        && let Some(accounting) = report.get("accounting")
    {
        println!("scale: accounting {accounting}");
    }
}

fn page(p: u64) -> String {
    const TOPICS: [&str; 7] = [
        "qubits, superposition and measurement probabilities",
        "quantum gates such as Hadamard, CNOT and rotations",
        "entanglement, Bell states and correlations",
        "transpilation, layout and routing on a coupling map",
        "noise models, readout error and mitigation",
        "the Sampler and Estimator primitives and their results",
        "variational algorithms, Grover search and phase estimation",
    ];
    const WORDS: [&str; 24] = [
        "amplitude",
        "basis",
        "circuit",
        "register",
        "observable",
        "expectation",
        "backend",
        "shots",
        "counts",
        "unitary",
        "operator",
        "statevector",
        "fidelity",
        "layout",
        "coupling",
        "error",
        "calibration",
        "ansatz",
        "parameter",
        "oracle",
        "diffuser",
        "Pauli",
        "density",
        "channel",
    ];
    let mut state = p.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = format!("---\ntitle: Page {p}\n---\n\n# Notes on topic {p}\n\n");
    for s in 0..5 {
        let topic = TOPICS[(next() % 7) as usize];
        out.push_str(&format!("## Section {s} of page {p}: {topic}\n\n"));
        for _ in 0..6 {
            let words: Vec<&str> = (0..22).map(|_| WORDS[(next() % 24) as usize]).collect();
            out.push_str(&format!(
                "This part of page {p} explains {topic} in terms of the {} and why it matters for a {}. {}.\n",
                words[0],
                words[1],
                words[2..].join(" ")
            ));
        }
        out.push_str(&format!(
            "\n```python\ndef scaled_{p}_{s}(values, factor=2):\n    \"\"\"Return every value of ``values`` multiplied by ``factor``.\"\"\"\n    return [v * factor for v in values]\n```\n\n"
        ));
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read prompts") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy prompt");
    }
}

/// The largest peak RSS among waited-for children, in KiB (Linux reports `ru_maxrss` in KiB).
fn children_max_rss_kib() -> i64 {
    // SAFETY: getrusage only writes into the struct we pass.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) == 0 { usage.ru_maxrss } else { 0 }
    }
}
