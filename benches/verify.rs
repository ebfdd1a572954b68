//! Verification benchmark (`cargo bench --bench verify`), printing figures rather than asserting:
//!
//! - **throughput**: verifications per second of a typical Qiskit test (a Bell circuit checked
//!   with `Statevector` and sampled on `AerSimulator`) through the real runner and sandbox, one at
//!   a time and at the flagship spec's concurrency (its `verify { concurrency }`, default: cores);
//! - **overhead**: the sandbox's cost per run against bare `python3` on the same program, for that
//!   test and for an empty one (which isolates the fixed cost of bubblewrap and the harness).
//!
//! The interpreter is the flagship's pinned environment (`specs/quantum.requirements.txt`),
//! made with sdc's own environment code under `SDC_ENV_DIR` (default `target/sdc-envs`), so only
//! the first run on a machine pays for pip. `SDC_BENCH_RUNS` sets runs per figure (default 12).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sdc_runtime::verify::environment;
use sdc_runtime::verify::program::Program;
use sdc_runtime::verify::runner::Runner;

const QISKIT: &str = r#"from qiskit import QuantumCircuit
from qiskit.quantum_info import Statevector
from qiskit_aer import AerSimulator


def bell_pair() -> QuantumCircuit:
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.cx(0, 1)
    return qc


def check(candidate):
    qc = candidate()
    assert qc.num_qubits == 2
    probs = Statevector.from_instruction(qc).probabilities_dict()
    assert abs(probs["00"] - 0.5) < 1e-9 and abs(probs["11"] - 0.5) < 1e-9
    measured = qc.copy()
    measured.measure_all()
    counts = AerSimulator(seed_simulator=7).run(measured, shots=512).result().get_counts()
    assert set(counts) == {"00", "11"} and sum(counts.values()) == 512
"#;

const EMPTY: &str = "def bell_pair():\n    return None\n\n\ndef check(candidate):\n    pass\n";

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let env_dir = std::env::var_os("SDC_ENV_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target/sdc-envs"));
    let runs: usize = std::env::var("SDC_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    rt.block_on(bench(&root, &env_dir, runs.max(1)));
}

async fn bench(root: &Path, env_dir: &Path, runs: usize) {
    let lock = std::fs::read_to_string(root.join("lockfiles/quantum.lock")).expect("the flagship lock");
    let field = |k: &str| -> String {
        let prefix = format!("{k} = \"");
        lock.lines()
            .find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.strip_suffix('"')))
            .unwrap_or_else(|| panic!("`{k}` in the lock's [verify]"))
            .to_string()
    };
    let (python, version, sha) = (field("python"), field("python_version"), field("requirements_sha256"));
    let requirements = root.join("specs/quantum.requirements.txt");
    let req = environment::Request {
        base_python: &python,
        python_version: &version,
        requirements: Some(&requirements),
        requirements_sha256: &sha,
        envs_dir: env_dir,
    };
    let env = environment::ensure(&req, &|m| eprintln!("{m}")).await.expect("the verification environment");
    let spec = std::fs::read_to_string(root.join("specs/quantum.sds")).expect("the flagship spec");
    let concurrency = spec
        .lines()
        .find_map(|l| l.trim().strip_prefix("concurrency = ").and_then(|v| v.trim().parse::<usize>().ok()))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let scratch = tempfile::tempdir().expect("tempdir");
    let runner = Runner::new(&env.python, &env.root, Duration::from_secs(60), 2048, scratch.path()).expect("runner");
    println!("verify: environment {} (python {version}), sandbox: {}", env.root.display(), runner.sandbox.identity());
    if let Some(w) = runner.sandbox.warning() {
        println!("{w}");
    }
    let program = |source: &str| Program { source: source.to_string(), entry_point: "bell_pair".into() };
    let qiskit = program(QISKIT);
    // Warm the page cache (and prove the program passes) before timing anything.
    let first = runner.run(&qiskit).await.expect("run");
    assert!(first.verdict.passed(), "the benchmark program must pass: {:?}", first.verdict);

    let sequential = time(runs, || async {
        let r = runner.run(&qiskit).await.expect("run");
        assert!(r.verdict.passed(), "{:?}", r.verdict);
    })
    .await;
    println!(
        "verify: qiskit test, sequential: {:.2} verifications/s ({runs} runs, {:.0} ms each)",
        runs as f64 / sequential.as_secs_f64(),
        ms(sequential) / runs as f64
    );
    let started = Instant::now();
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let shared = Arc::new((runner.clone(), qiskit.clone()));
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..runs {
        let (slots, shared) = (slots.clone(), shared.clone());
        all.spawn(async move {
            let _slot = slots.acquire().await.expect("semaphore");
            let r = shared.0.run(&shared.1).await.expect("run");
            assert!(r.verdict.passed(), "{:?}", r.verdict);
        });
    }
    while let Some(done) = all.join_next().await {
        done.expect("a verification task");
    }
    let parallel = started.elapsed();
    println!(
        "verify: qiskit test, concurrency {concurrency}: {:.2} verifications/s ({runs} runs in {:.2} s)",
        runs as f64 / parallel.as_secs_f64(),
        parallel.as_secs_f64()
    );

    for (label, source) in [("qiskit test", QISKIT), ("empty test", EMPTY)] {
        let sandboxed = time(runs, || async {
            let r = runner.run(&program(source)).await.expect("run");
            assert!(r.verdict.passed(), "{:?}", r.verdict);
        })
        .await;
        let bare = bare_python(&runner.python, source, runs);
        let (s, b) = (ms(sandboxed) / runs as f64, ms(bare) / runs as f64);
        println!(
            "verify: {label}: sandboxed {s:.0} ms/run, bare python3 {b:.0} ms/run, overhead {:+.0} ms ({:+.0} %)",
            s - b,
            (s - b) / b * 100.0
        );
    }
}

/// The same program run directly: `python -I` on the file, then `check(entry)`, nothing else.
fn bare_python(python: &Path, source: &str, runs: usize) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("solution.py");
    std::fs::write(&file, format!("{source}\n\ncheck(bell_pair)\n")).expect("write");
    let started = Instant::now();
    for _ in 0..runs {
        let status = std::process::Command::new(python)
            .arg("-I")
            .arg(&file)
            .current_dir(dir.path())
            .env("OMP_NUM_THREADS", "1")
            .env("OPENBLAS_NUM_THREADS", "1")
            .status()
            .expect("python");
        assert!(status.success());
    }
    started.elapsed()
}

async fn time<F, Fut>(runs: usize, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    for _ in 0..runs {
        f().await;
    }
    started.elapsed()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
