//! Running one program under the harness and reading its verdict.
//!
//! The harness and the program go into a fresh temporary directory, which is also the working
//! directory and `HOME`. The environment is scrubbed to a fixed handful of variables (no API
//! keys, no tokens, deterministic hashing). The process gets its own process group; on timeout
//! the whole group is killed, so nothing the program started outlives it. Output is read with a
//! cap. Paths that differ between machines (the environment's and the temporary directory's) are
//! replaced in messages by `<env>` and `<tmp>`, so a verdict is the same fact everywhere.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::program::Program;
use super::{Outcome, Verdict};

const HARNESS: &str = include_str!("harness.py");
/// The harness's identity, part of every verdict's key: a changed harness never reuses a verdict.
pub static HARNESS_SHA256: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hex::encode(sha2::Sha256::digest(HARNESS.as_bytes())));
/// Bytes of stdout/stderr kept from a run; the rest is drained and dropped.
const OUTPUT_CAP: usize = 256 * 1024;

#[derive(Clone, Debug)]
pub struct Runner {
    /// The interpreter (inside the verification environment).
    pub python: PathBuf,
    /// The environment's root, replaced by `<env>` in messages.
    pub env_root: PathBuf,
    pub timeout: Duration,
    /// Where temporary run directories are made.
    pub scratch: PathBuf,
}

/// A verdict with what the run took (not part of the verdict's identity).
#[derive(Clone, Debug)]
pub struct Run {
    pub verdict: Verdict,
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot prepare a run directory under `{0}`: {1}")]
    Scratch(PathBuf, std::io::Error),
    #[error("cannot start `{0}`: {1}")]
    Spawn(PathBuf, std::io::Error),
}

impl Runner {
    pub async fn run(&self, program: &Program) -> Result<Run, RunError> {
        std::fs::create_dir_all(&self.scratch).map_err(|e| RunError::Scratch(self.scratch.clone(), e))?;
        let dir = tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(&self.scratch)
            .map_err(|e| RunError::Scratch(self.scratch.clone(), e))?;
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text);
        write("harness.py", HARNESS)
            .and_then(|()| write("solution.py", &program.source))
            .map_err(|e| RunError::Scratch(dir.path().to_path_buf(), e))?;
        let nonce = nonce();
        let started = Instant::now();
        let mut cmd = tokio::process::Command::new(&self.python);
        cmd.arg("-I")
            .arg("harness.py")
            .arg("solution.py")
            .arg(&program.entry_point)
            .arg("1")
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", dir.path())
            .env("TMPDIR", dir.path())
            .env("PYTHONHASHSEED", "0")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONIOENCODING", "utf-8")
            .env("MPLBACKEND", "Agg")
            .env("OMP_NUM_THREADS", "1")
            .env("OPENBLAS_NUM_THREADS", "1")
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| RunError::Spawn(self.python.clone(), e))?;
        let pid = child.id();
        if let Some(mut stdin) = child.stdin.take() {
            // A program that never reads stdin cannot block this: the line fits a pipe buffer.
            let _ = stdin.write_all(format!("{nonce}\n").as_bytes()).await;
        }
        // Readers run on their own so a full pipe never blocks the program; they end when every
        // holder of the pipes (the program and anything it started) is gone.
        let stdout = child.stdout.take().map(|r| tokio::spawn(read_capped(r)));
        let stderr = child.stderr.take().map(|r| tokio::spawn(read_capped(r)));
        let status = tokio::time::timeout(self.timeout, child.wait()).await;
        // Whatever happened, nothing of the group survives the run.
        if let Some(pid) = pid {
            kill_group(pid);
        }
        let _ = child.kill().await;
        let drain = |h: Option<tokio::task::JoinHandle<Vec<u8>>>| async move {
            match h {
                Some(h) => {
                    tokio::time::timeout(Duration::from_secs(2), h).await.ok().and_then(Result::ok).unwrap_or_default()
                }
                None => Vec::new(),
            }
        };
        let (out, err) = tokio::join!(drain(stdout), drain(stderr));
        let result = status.map(|s| (out, err, s));
        let duration = started.elapsed();
        let verdict = match result {
            Err(_) => Verdict {
                outcome: Outcome::Timeout,
                exception: String::new(),
                message: format!("the run was killed after {} s", self.timeout.as_secs_f64()),
            },
            Ok((out, err, status)) => self.verdict(&nonce, &out, &err, status.ok(), dir.path()),
        };
        Ok(Run { verdict, duration })
    }

    fn verdict(
        &self,
        nonce: &str,
        stdout: &[u8],
        stderr: &[u8],
        status: Option<std::process::ExitStatus>,
        dir: &Path,
    ) -> Verdict {
        let out = String::from_utf8_lossy(stdout);
        let report = out.lines().rev().find_map(|l| l.strip_prefix(nonce).map(str::trim));
        let clean = |s: &str| self.scrub(s, dir);
        if let Some(json) = report
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(json)
        {
            let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
            let outcome = match field("outcome").as_str() {
                "passed" => Outcome::Passed,
                "assertion_failed" => Outcome::AssertionFailed,
                "syntax_error" => Outcome::SyntaxError,
                "import_error" => Outcome::ImportError,
                "memory" => Outcome::Memory,
                "exited" => Outcome::Exited,
                "no_check" => Outcome::NoCheck,
                _ => Outcome::Exception,
            };
            return Verdict { outcome, exception: field("exception"), message: clean(&field("message")) };
        }
        let err = String::from_utf8_lossy(stderr);
        let tail: Vec<&str> = err.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
        let how = match status {
            Some(s) => describe_status(s),
            None => "ended in an unknown way".to_string(),
        };
        let memory = err.contains("MemoryError") || err.contains("Cannot allocate memory");
        Verdict {
            outcome: if memory { Outcome::Memory } else { Outcome::NoResult },
            exception: String::new(),
            message: clean(&format!("the process {how} without a verdict\n{}", tail.join("\n"))),
        }
    }

    fn scrub(&self, text: &str, dir: &Path) -> String {
        let mut s = text.to_string();
        for (path, label) in [(dir, "<tmp>"), (self.env_root.as_path(), "<env>")] {
            let p = path.display().to_string();
            if !p.is_empty() {
                s = s.replace(&p, label);
            }
        }
        s.trim().to_string()
    }
}

fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "ended".to_string(),
    }
}

async fn read_capped<R: tokio::io::AsyncRead + Unpin>(mut reader: R) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = OUTPUT_CAP.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    kept
}

/// Kills a process group; a group that is already gone is fine.
fn kill_group(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// 128 bits from the kernel: the code under test cannot guess them.
fn nonce() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    format!("SDC-VERDICT-{}", hex::encode(bytes))
}
