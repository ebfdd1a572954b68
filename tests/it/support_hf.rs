//! The real Hugging Face `datasets` for tests: a Python that can import it, and a way to run a
//! script with it offline. Shared by `runtime/tests/archive.rs` (through `#[path]`) and the
//! end-to-end tests of `sdc export`.

use std::io::Write;
use std::path::Path;
use std::process::Command;

const HF_INSTALL: &str = "python3 -m venv /work/venv-hf && \
                          /work/venv-hf/bin/pip install datasets==5.2.0 pyarrow==26.0.1 pillow==13.0.0, \
                          then run the tests with SDC_TEST_PYTHON=/work/venv-hf/bin/python (`bash .ci/run` does both)";

/// The Python with Hugging Face `datasets`: `SDC_TEST_PYTHON`, else a venv in the user's cache
/// (`~/.cache/sdc/venv-hf`, the one `.ci/run` uses), created with pinned packages from PyPI on
/// first use, so that `cargo test --workspace` alone passes on a fresh machine.
pub fn hf_python() -> String {
    const PACKAGES: [&str; 3] = ["datasets==5.2.0", "pyarrow==26.0.1", "pillow==13.0.0"];
    let imports = |python: &str| Command::new(python).args(["-c", "import datasets, pyarrow, PIL"]).output();
    if let Ok(python) = std::env::var("SDC_TEST_PYTHON") {
        return match imports(&python) {
            Err(e) => panic!("cannot run `{python}` ({e}); this test needs Hugging Face datasets: {HF_INSTALL}"),
            Ok(o) if !o.status.success() => panic!(
                "`{python}` cannot import datasets, pyarrow and PIL ({}); install them: {HF_INSTALL}",
                String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or_default()
            ),
            Ok(_) => python,
        };
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    let venv = std::path::PathBuf::from(home).join(".cache/sdc/venv-hf");
    let python = venv.join("bin/python").display().to_string();
    if imports(&python).is_ok_and(|o| o.status.success()) {
        return python;
    }
    let run = |program: &str, args: &[&str]| {
        let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run `{program}`: {e}"));
        assert!(
            out.status.success(),
            "`{program} {}` failed:\n{}{}\n{HF_INSTALL}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let venv_arg = venv.display().to_string();
    run("python3", &["-m", "venv", &venv_arg]);
    let pip = venv.join("bin/pip").display().to_string();
    let mut args = vec!["install", "--quiet", "--disable-pip-version-check"];
    args.extend(PACKAGES);
    run(&pip, &args);
    python
}

/// Runs `script` with `python`, passing `args`, with the Hugging Face caches in `scratch` and
/// every network access off, and parses the last line of its output as JSON.
pub fn run_hf_script(python: &str, scratch: &Path, script: &str, args: &[&str]) -> serde_json::Value {
    let mut child = Command::new(python)
        .arg("-")
        .args(args)
        // Keep the Hugging Face caches in the test's own directory, and never go online.
        .env("HF_HOME", scratch.join("hf-home"))
        .env("HF_DATASETS_CACHE", scratch.join("hf-cache"))
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{python}`: {e}"));
    child.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("write the script");
    let output = child.wait_with_output().expect("wait for python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "datasets failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}
