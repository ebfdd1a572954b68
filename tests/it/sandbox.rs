//! The verification sandbox against hostile code: each attack runs through the real runner
//! (bubblewrap, rlimits, the harness) with the system `python3`, and must be contained and
//! classified, with the host unaffected.

use std::path::Path;
use std::time::Duration;

use sdc_runtime::verify::Outcome;
use sdc_runtime::verify::program::Program;
use sdc_runtime::verify::runner::{Run, Runner};
use sdc_runtime::verify::sandbox;

struct Bench {
    runner: Runner,
    _scratch: tempfile::TempDir,
}

/// A runner on the system `python3` with a short timeout; without bubblewrap the test fails
/// (CI installs it), because the fallback contains none of these attacks.
fn bench(timeout_ms: u64, memory_mb: u64) -> Bench {
    let scratch = tempfile::tempdir().expect("tempdir");
    let runner = Runner::new(
        Path::new("python3"),
        Path::new("/nonexistent-env"),
        Duration::from_millis(timeout_ms),
        memory_mb,
        scratch.path(),
    )
    .expect("a runner on python3");
    assert!(
        runner.sandbox.is_bwrap(),
        "these tests need bubblewrap: install it with `apt-get install bubblewrap` ({:?})",
        runner.sandbox.kind
    );
    Bench { runner, _scratch: scratch }
}

async fn run(b: &Bench, source: &str) -> Run {
    let program = Program { source: source.to_string(), entry_point: "f".into() };
    b.runner.run(&program).await.expect("run")
}

/// No process whose command line holds `marker` is left on the host.
fn survivors(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(marker) && !text.contains("cargo") {
                found.push(format!("{}: {text}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

#[tokio::test]
async fn a_passing_program_passes_and_sees_only_its_sandbox() {
    let b = bench(20_000, 512);
    let r = run(
        &b,
        "import os\ndef f():\n    return 1\n\ndef check(c):\n    assert c() == 1\n    assert os.getcwd() == '/sandbox', os.getcwd()\n    assert os.getuid() != 0\n    assert not os.path.exists('/root/.cargo') and not os.path.exists('/work')\n",
    )
    .await;
    assert_eq!(r.verdict.outcome, Outcome::Passed, "{:?}", r.verdict);
}

#[tokio::test]
async fn an_infinite_loop_times_out() {
    let b = bench(1_000, 512);
    let r = run(&b, "def f():\n    pass\n\ndef check(c):\n    while True:\n        pass\n").await;
    assert_eq!(r.verdict.outcome, Outcome::Timeout, "{:?}", r.verdict);
    assert!(r.duration < Duration::from_secs(5), "took {:?}", r.duration);
}

#[tokio::test]
async fn a_fork_bomb_is_bounded_and_leaves_nothing() {
    // Every process of the bombs carries the marker in its command line, so the check below
    // sees them and nothing of the builds other tests run at the same time.
    let marker = format!("sdc-bomb-marker-{}", std::process::id());
    // First the bound: the program counts the children it could start, and says how many.
    let b = bench(5_000, 512);
    let counted = format!(
        "import os\ndef f():\n    pass\n\ndef check(c):\n    n = 0\n    while True:\n        try:\n            pid = os.fork()\n        except OSError:\n            break\n        if pid == 0:\n            os.execv('/bin/sh', ['sh', '-c', 'sleep 60; : {marker}'])\n        n += 1\n    raise RuntimeError('forks=%d' % n)\n"
    );
    let r = run(&b, &counted).await;
    assert_eq!(r.verdict.outcome, Outcome::Exception, "{:?}", r.verdict);
    let n: u64 = r
        .verdict
        .message
        .rsplit("forks=")
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in {:?}", r.verdict));
    assert!(n < sandbox::PROCESSES, "{n} children started");
    assert_eq!(survivors(&marker), Vec::<String>::new());
    // Then a real bomb (every child forks too) until the timeout.
    let b = bench(2_000, 512);
    let bomb = format!(
        "import os, sys\ndef f():\n    pass\n\ndef check(c):\n    loop = 'import os\\nwhile True:\\n    try:\\n        os.fork()\\n    except OSError:\\n        pass\\n'\n    os.execv(sys.executable, [sys.executable, '-I', '-c', loop, '{marker}'])\n"
    );
    let r = run(&b, &bomb).await;
    assert_eq!(r.verdict.outcome, Outcome::Timeout, "{:?}", r.verdict);
    assert!(r.duration < Duration::from_secs(8), "took {:?}", r.duration);
    // The host still starts processes, and none of the bomb's remain.
    let ok = std::process::Command::new("true").status().expect("the host can still spawn");
    assert!(ok.success());
    assert_eq!(survivors(&marker), Vec::<String>::new());
}

#[tokio::test]
async fn a_memory_hog_is_classified_as_memory() {
    let b = bench(20_000, 256);
    let r = run(&b, "def f():\n    pass\n\ndef check(c):\n    hoard = []\n    while True:\n        hoard.append(bytearray(16 * 1024 * 1024))\n").await;
    assert_eq!(r.verdict.outcome, Outcome::Memory, "{:?}", r.verdict);
    // An extension module that cannot be mapped for lack of address space is memory, too.
    let import = "def f():\n    pass\n\ndef check(c):\n    hoard = []\n    try:\n        while True:\n            hoard.append(bytearray(1024 * 1024))\n    except MemoryError:\n        pass\n    import _sqlite3\n";
    let r = run(&b, import).await;
    assert_eq!(r.verdict.outcome, Outcome::Memory, "{:?}", r.verdict);
}

#[tokio::test]
async fn the_network_is_unreachable() {
    // A server on the host's loopback that would accept anything.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let b = bench(20_000, 512);
    let source = format!(
        "import socket\ndef f():\n    pass\n\ndef check(c):\n    for host in ['127.0.0.1', '1.1.1.1']:\n        try:\n            socket.create_connection((host, {port}), timeout=2)\n        except OSError as e:\n            last = e\n        else:\n            raise AssertionError('connected to %s' % host)\n    raise last\n"
    );
    let r = run(&b, &source).await;
    assert_eq!(r.verdict.outcome, Outcome::Exception, "{:?}", r.verdict);
    assert!(r.verdict.exception.ends_with("Error"), "{:?}", r.verdict);
    assert!(listener.accept().is_err(), "the host's server saw a connection");
}

#[tokio::test]
async fn writes_stay_in_the_run_directory() {
    let b = bench(20_000, 512);
    // HOME is the run's private directory: writing there works.
    let home = "import os\ndef f():\n    pass\n\ndef check(c):\n    p = os.path.join(os.environ['HOME'], 'notes.txt')\n    open(p, 'w').write('kept')\n    assert open(p).read() == 'kept'\n";
    let r = run(&b, home).await;
    assert_eq!(r.verdict.outcome, Outcome::Passed, "{:?}", r.verdict);
    // Anywhere else on the host it fails, and nothing appears there.
    let outside = tempfile::tempdir().expect("tempdir");
    let target = outside.path().join("escaped.txt");
    for path in [target.display().to_string(), "/etc/escaped.txt".into(), "/tmp/escaped.txt".into()] {
        let source = format!("def f():\n    pass\n\ndef check(c):\n    open({path:?}, 'w').write('x')\n");
        let r = run(&b, &source).await;
        assert_eq!(r.verdict.outcome, Outcome::Exception, "{path}: {:?}", r.verdict);
        assert!(
            ["FileNotFoundError", "PermissionError", "OSError"].contains(&r.verdict.exception.as_str()),
            "{path}: {:?}",
            r.verdict
        );
    }
    assert!(!target.exists() && !Path::new("/etc/escaped.txt").exists());
}

#[tokio::test]
async fn secrets_in_the_environment_are_not_visible() {
    // SAFETY: set before the run; this test binary's other tests never read this variable.
    unsafe { std::env::set_var("SDC_TEST_CANARY_KEY", "canary-3f9a1c") };
    let b = bench(20_000, 512);
    let source = "import os, glob\ndef f():\n    pass\n\ndef check(c):\n    seen = repr(dict(os.environ))\n    for p in glob.glob('/proc/*/environ'):\n        try:\n            seen += open(p, 'rb').read().decode('latin-1')\n        except OSError:\n            pass\n    raise RuntimeError(seen)\n";
    let r = run(&b, source).await;
    assert_eq!(r.verdict.outcome, Outcome::Exception, "{:?}", r.verdict);
    assert!(r.verdict.message.contains("PATH"), "the program did report its environment: {:?}", r.verdict);
    assert!(!r.verdict.message.contains("canary-3f9a1c"), "{:?}", r.verdict);
    assert!(!r.verdict.message.contains("SDC_TEST_CANARY_KEY"), "{:?}", r.verdict);
}

#[tokio::test]
async fn a_printed_pass_marker_is_not_a_pass() {
    let b = bench(20_000, 512);
    let fake = r#"{"outcome": "passed", "exception": "", "message": ""}"#;
    // Printed to stdout, written to the well-known descriptor, then the test fails.
    let source = format!(
        "import os, sys\ndef f():\n    pass\n\ndef check(c):\n    for fd in (1, 2, 3):\n        try:\n            os.write(fd, b'SDC-VERDICT-0 {fake}\\n')\n        except OSError:\n            pass\n    print('passed')\n    assert False, 'fails'\n"
    );
    let r = run(&b, &source).await;
    assert_eq!(r.verdict.outcome, Outcome::AssertionFailed, "{:?}", r.verdict);
    // And a program that prints the marker and leaves at once has no verdict at all.
    let source = format!(
        "import os\ndef f():\n    pass\n\ndef check(c):\n    print('SDC-VERDICT-0 {fake}', flush=True)\n    os._exit(0)\n"
    );
    let r = run(&b, &source).await;
    assert_eq!(r.verdict.outcome, Outcome::NoResult, "{:?}", r.verdict);
}

#[tokio::test]
async fn killing_its_parent_harms_only_itself() {
    let b = bench(20_000, 512);
    // Its parent, the namespace's pid 1, this test process's host pid, everything it can reach.
    let source = format!(
        "import os, signal\ndef f():\n    pass\n\ndef check(c):\n    seen = []\n    for pid in (os.getppid(), 1, {host}, -1):\n        try:\n            os.kill(pid, signal.SIGKILL)\n            seen.append('%d killed' % pid)\n        except OSError as e:\n            seen.append('%d %s' % (pid, type(e).__name__))\n    raise RuntimeError('; '.join(seen))\n",
        host = std::process::id()
    );
    let r = run(&b, &source).await;
    assert_eq!(r.verdict.outcome, Outcome::Exception, "{:?}", r.verdict);
    assert!(!r.verdict.message.contains("killed"), "{:?}", r.verdict);
    let refused = r.verdict.message.matches(" PermissionError").count()
        + r.verdict.message.matches(" ProcessLookupError").count();
    assert_eq!(refused, 4, "every kill is refused: {:?}", r.verdict);
    // Killing itself leaves no verdict; we are still here, and the next run works.
    let r = run(&b, "import os\ndef f():\n    return 2\n\ndef check(c):\n    os.kill(os.getpid(), 9)\n").await;
    assert_eq!(r.verdict.outcome, Outcome::NoResult, "{:?}", r.verdict);
    let r = run(&b, "def f():\n    return 2\n\ndef check(c):\n    assert c() == 2\n").await;
    assert_eq!(r.verdict.outcome, Outcome::Passed, "{:?}", r.verdict);
}

#[tokio::test]
async fn a_daemon_does_not_outlive_its_run() {
    let b = bench(20_000, 512);
    let marker = format!("sdc-daemon-marker-{}", std::process::id());
    let source = format!(
        "import os, subprocess\ndef f():\n    pass\n\ndef check(c):\n    if os.fork() == 0:\n        os.setsid()\n        if os.fork() == 0:\n            os.execv('/bin/sh', ['sh', '-c', 'sleep 60; : {marker}'])\n        os._exit(0)\n    subprocess.Popen(['/bin/sh', '-c', 'sleep 60; : {marker}'], start_new_session=True)\n"
    );
    let r = run(&b, &source).await;
    assert_eq!(r.verdict.outcome, Outcome::Passed, "{:?}", r.verdict);
    // Give a daemon the time it would need to show up, then look for it.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(survivors(&marker), Vec::<String>::new());
}

#[tokio::test]
async fn rlimit_fallback_says_how_to_install_bubblewrap() {
    let b = bench(20_000, 512);
    assert_eq!(b.runner.sandbox.warning(), None);
    let sandboxed = &b.runner.sandbox;
    let fallback = sandbox::Sandbox::fallback(
        "bubblewrap (`bwrap`) is not installed".into(),
        sandboxed.binds.clone(),
        sandboxed.limits,
    );
    let warning = fallback.warning().expect("a warning");
    assert!(warning.contains("apt-get install bubblewrap"), "{warning}");
    // The verdict key tells the two apart: a changed sandbox never reuses a verdict.
    assert_ne!(fallback.identity(), sandboxed.identity());
    let own_uid = fallback.drop_uid;
    // The fallback still runs programs, with its limits, the scrubbed environment and, under
    // root, a uid of its own in a run directory that uid owns.
    let mut runner = b.runner.clone();
    runner.sandbox = fallback;
    let program = |source: &str| Program { source: source.to_string(), entry_point: "f".into() };
    // Its own uid under root when the interpreter allows it, else this process's uid.
    let ours = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").expect("/proc/self"));
    let uid_check = if own_uid { format!("os.getuid() not in (0, {ours})") } else { format!("os.getuid() == {ours}") };
    let source = format!(
        "import os\ndef f():\n    return 3\n\ndef check(c):\n    assert c() == 3\n    assert 'SDC_TEST_CANARY_KEY' not in os.environ\n    assert {uid_check}, os.getuid()\n    open(os.path.join(os.environ['HOME'], 'x'), 'w').write('x')\n"
    );
    let r = runner.run(&program(&source)).await.expect("run");
    assert_eq!(r.verdict.outcome, Outcome::Passed, "{:?}", r.verdict);
    let hog = "def f():\n    pass\n\ndef check(c):\n    hoard = []\n    while True:\n        hoard.append(bytearray(16 * 1024 * 1024))\n";
    let r = runner.run(&program(hog)).await.expect("run");
    assert_eq!(r.verdict.outcome, Outcome::Memory, "{:?}", r.verdict);
}

#[tokio::test]
async fn the_test_quality_gate_runs_tests_against_the_stub_and_the_answer() {
    use sdc_runtime::verify::{gate, program};
    let b = bench(20_000, 512);
    let question = "def double(x: int) -> int:\n    \"\"\"Return twice x.\"\"\"\n    pass\n";
    let answer = "return 2 * x";
    let runner = &b.runner;
    let verdict = |source: Program| async move { runner.run(&source).await.expect("run").verdict };
    let stub = program::stub("function_completion", question, "double");
    let solution = program::solution("function_completion", question, answer);
    // A real test fails against the stub (the gate lets it through) and passes the answer.
    let strong = "def check(candidate):\n    assert candidate(3) == 6\n    assert candidate(-1) == -2\n";
    let against_stub = verdict(program::program(&stub, strong, "double")).await;
    assert_eq!(against_stub.outcome, Outcome::AssertionFailed, "{against_stub:?}");
    assert_eq!(gate(&against_stub), None);
    let against_answer = verdict(program::program(&solution, strong, "double")).await;
    assert_eq!(against_answer.outcome, Outcome::Passed, "{against_answer:?}");
    // A test the stub passes checks too little; one that does not run is no test: both rejected.
    let weak = "def check(candidate):\n    assert candidate is not None\n";
    let problem = gate(&verdict(program::program(&stub, weak, "double")).await);
    assert!(problem.as_deref().is_some_and(|p| p.contains("checks too little")), "{problem:?}");
    let broken = "def check(candidate)\n    assert candidate(3) == 6\n";
    let problem = gate(&verdict(program::program(&stub, broken, "double")).await);
    assert!(problem.as_deref().is_some_and(|p| p.contains("syntax_error")), "{problem:?}");
    let missing = "import not_a_module_anywhere\n\ndef check(candidate):\n    assert candidate(3) == 6\n";
    let problem = gate(&verdict(program::program(&stub, missing, "double")).await);
    assert!(problem.as_deref().is_some_and(|p| p.contains("import_error")), "{problem:?}");
}
