//! Running one program under the harness, in the sandbox, and reading its verdict.
//!
//! The harness and the program are written to a fresh run directory under the store's `tmp/`;
//! under bubblewrap they are bound read-only into the sandbox's private working directory, in
//! the fallback that directory is the working directory (see [`super::sandbox`]). The environment
//! is scrubbed to a fixed handful of variables (no API keys, no tokens, deterministic hashing).
//! The sandbox gets its own process group, killed whatever happens, with everything left of the
//! run's uid; a wall-clock timeout bounds the run. The verdict comes on fd 3, output is read with
//! a cap. Paths that differ between machines (the environment's and the run directory's) are
//! replaced in messages by `<env>` and `<tmp>`, so a verdict is the same fact everywhere.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::program::Program;
use super::sandbox::{self, Kind, Limits, Sandbox, WORKDIR};
use super::{Outcome, Verdict};

const HARNESS: &str = include_str!("harness.py");
/// The harness's identity, part of every verdict's key: a changed harness never reuses a verdict.
pub static HARNESS_SHA256: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hex::encode(sha2::Sha256::digest(HARNESS.as_bytes())));
/// Bytes of stdout/stderr kept from a run; the rest is drained and dropped.
const OUTPUT_CAP: usize = 256 * 1024;

#[derive(Clone, Debug)]
pub struct Runner {
    /// The interpreter (inside the verification environment), as the interpreter names itself.
    pub python: PathBuf,
    /// The environment's root, replaced by `<env>` in messages.
    pub env_root: PathBuf,
    pub timeout: Duration,
    /// Where temporary run directories are made.
    pub scratch: PathBuf,
    pub sandbox: Sandbox,
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
    #[error("cannot lease a sandbox uid: {0}")]
    Uid(std::io::Error),
    #[error("cannot ask the interpreter `{0}` where it lives: {1}")]
    Interpreter(PathBuf, String),
}

impl Runner {
    /// A runner for `python`, with the sandbox this machine offers (see [`Sandbox::detect`]).
    /// Run directories a killed build left in `scratch` are removed.
    pub fn new(
        python: &Path,
        env_root: &Path,
        timeout: Duration,
        memory_mb: u64,
        scratch: &Path,
    ) -> Result<Runner, RunError> {
        let limits = Limits::new(timeout, memory_mb);
        let probed = probe_cached(python, env_root, limits, memory_mb)?;
        let sandbox = Sandbox::from_probe(probed.bwrap, probed.binds, limits);
        let exe = probed.exe;
        remove_stale(scratch, timeout);
        Ok(Runner { python: exe, env_root: env_root.to_path_buf(), timeout, scratch: scratch.to_path_buf(), sandbox })
    }

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
        let lease = self.sandbox.lease().map_err(RunError::Uid)?;
        let uid = lease.uid().map_or_else(|| "-".to_string(), |u| u.to_string());
        let bwrap = match &self.sandbox.kind {
            Kind::Bwrap(path) => Some(path),
            Kind::Rlimits(_) => None,
        };
        // Without bubblewrap the program works in the host directory, which its uid must own.
        let workdir = match (bwrap, lease.uid()) {
            (Some(_), _) => PathBuf::from(WORKDIR),
            (None, Some(u)) => {
                std::os::unix::fs::chown(dir.path(), Some(u), Some(u))
                    .map_err(|e| RunError::Scratch(dir.path().to_path_buf(), e))?;
                dir.path().to_path_buf()
            }
            (None, None) => dir.path().to_path_buf(),
        };
        let mut cmd = match bwrap {
            Some(path) => {
                let mut c = tokio::process::Command::new(path);
                c.args(self.sandbox.bwrap_args(dir.path(), &["harness.py", "solution.py"])).arg(&self.python);
                c
            }
            None => tokio::process::Command::new(&self.python),
        };
        let harness = workdir.join("harness.py");
        cmd.arg("-I")
            .arg(&harness)
            .arg("solution.py")
            .arg(&program.entry_point)
            .arg("1")
            .arg(&uid)
            .current_dir(if bwrap.is_some() { dir.path() } else { workdir.as_path() })
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &workdir)
            .env("TMPDIR", &workdir)
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
        // The verdict's own channel: fd 3 in the child, never stdout, so printing cannot forge it.
        let (reader, writer) = std::io::pipe().map_err(|e| RunError::Spawn(self.python.clone(), e))?;
        let limits = self.sandbox.limits;
        let nproc = self.sandbox.nproc_limit(&lease);
        let writer_fd = std::os::fd::AsRawFd::as_raw_fd(&writer);
        // SAFETY: the closure runs between fork and exec and only calls `apply_in_child`, which
        // makes single system calls (no allocation, no locks): async-signal-safe.
        unsafe {
            cmd.pre_exec(move || sandbox::apply_in_child(&limits, nproc, writer_fd));
        }
        let nonce = nonce();
        let started = Instant::now();
        let spawned = cmd.spawn();
        // Only the child holds the write end now: the report's end of file is the run's end.
        drop(writer);
        let mut child = spawned.map_err(|e| RunError::Spawn(self.python.clone(), e))?;
        let pid = child.id();
        if let Some(mut stdin) = child.stdin.take() {
            // A program that never reads stdin cannot block this: the line fits a pipe buffer.
            let _ = stdin.write_all(format!("{nonce}\n").as_bytes()).await;
        }
        // Readers run on their own so a full pipe never blocks the program; they end when every
        // holder of the pipes (the program and anything it started) is gone.
        let stdout = child.stdout.take().map(|r| tokio::spawn(read_capped(r)));
        let stderr = child.stderr.take().map(|r| tokio::spawn(read_capped(r)));
        let report = match tokio::net::unix::pipe::Receiver::from_owned_fd(std::os::fd::OwnedFd::from(reader)) {
            Ok(r) => Some(tokio::spawn(read_capped(r))),
            Err(_) => None,
        };
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
        let (_, err, report) = tokio::join!(drain(stdout), drain(stderr), drain(report));
        // A daemon that left the group (setsid) is still the run's uid; bubblewrap's pid
        // namespace has taken it already, the fallback needs this.
        if let Some(uid) = lease.uid() {
            kill_uid(uid);
        }
        drop(lease);
        let result = status.map(|s| (report, err, s));
        let duration = started.elapsed();
        let verdict = match result {
            Err(_) => Verdict {
                outcome: Outcome::Timeout,
                exception: String::new(),
                message: format!("the run was killed after {} s", self.timeout.as_secs_f64()),
            },
            Ok((report, err, status)) => self.verdict(&nonce, &report, &err, status.ok(), dir.path()),
        };
        Ok(Run { verdict, duration })
    }

    fn verdict(
        &self,
        nonce: &str,
        report: &[u8],
        stderr: &[u8],
        status: Option<std::process::ExitStatus>,
        dir: &Path,
    ) -> Verdict {
        let out = String::from_utf8_lossy(report);
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
        let memory = ["MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory"]
            .iter()
            .any(|m| err.contains(m));
        let outcome = if memory {
            Outcome::Memory
        } else if status.is_some_and(cpu_exhausted) {
            Outcome::Timeout
        } else {
            Outcome::NoResult
        };
        Verdict {
            outcome,
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

/// Killed by SIGXCPU (RLIMIT_CPU), directly or as bubblewrap reports its child (128 + signal).
fn cpu_exhausted(status: std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    const SIGXCPU: i32 = 24;
    status.signal() == Some(SIGXCPU) || status.code() == Some(128 + SIGXCPU)
}

/// What starting the interpreter and bubblewrap found, kept in the environment's directory:
/// probing costs two process starts (0.1–0.2 s), which a no-op rebuild should not pay. The key
/// is what the answer depends on; any change to it probes again.
/// A file's size and modification time (seconds, nanoseconds).
type Stamp = (u64, i64, i64);

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct ProbeKey {
    version: u32,
    python: PathBuf,
    python_stamp: Option<Stamp>,
    bwrap: Option<(PathBuf, Option<Stamp>)>,
    euid: u32,
    memory_mb: u64,
    /// The kernel settings that decide whether bubblewrap can make its namespaces.
    userns: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Probed {
    key: ProbeKey,
    exe: PathBuf,
    binds: Vec<PathBuf>,
    bwrap: Result<PathBuf, String>,
}

const PROBE_FILE: &str = ".sdc-sandbox-probe.json";

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.mtime(), m.mtime_nsec()))
}

fn probe_cached(python: &Path, env_root: &Path, limits: Limits, memory_mb: u64) -> Result<Probed, RunError> {
    let key = ProbeKey {
        version: 1,
        python: python.to_path_buf(),
        python_stamp: stamp(python),
        bwrap: super::sandbox::find_in_path("bwrap").map(|b| {
            let s = stamp(&b);
            (b, s)
        }),
        euid: rustix::process::geteuid().as_raw(),
        memory_mb,
        userns: ["/proc/sys/user/max_user_namespaces", "/proc/sys/kernel/unprivileged_userns_clone"]
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default().trim().to_string())
            .collect::<Vec<_>>()
            .join(","),
    };
    let file = env_root.join(PROBE_FILE);
    if let Some(p) = std::fs::read(&file).ok().and_then(|b| serde_json::from_slice::<Probed>(&b).ok())
        && p.key == key
    {
        return Ok(p);
    }
    // The interpreter's own view: a shim (pyenv) resolves to the real binary, and its prefixes
    // are what the sandbox must show it.
    let out = std::process::Command::new(python)
        .args(["-I", "-c", "import sys; print(sys.executable); print(sys.prefix); print(sys.base_prefix)"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| RunError::Interpreter(python.to_path_buf(), e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let [exe, prefix, base] = lines[..] else {
        return Err(RunError::Interpreter(
            python.to_path_buf(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    };
    let mut binds: Vec<PathBuf> = vec![PathBuf::from(prefix), PathBuf::from(base)];
    binds.sort();
    binds.dedup();
    let exe = PathBuf::from(exe);
    let bwrap = Sandbox::probe(&exe, &binds, limits);
    let probed = Probed { key, exe, binds, bwrap };
    // A cache: a failed write only means the next build probes again.
    if let Ok(bytes) = serde_json::to_vec(&probed) {
        let tmp = env_root.join(format!("{PROBE_FILE}.{}", std::process::id()));
        if std::fs::write(&tmp, bytes).is_ok() {
            let _ = std::fs::rename(&tmp, &file);
        }
    }
    Ok(probed)
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

/// Kills every process of `uid` (a run's own uid, so only what that run started).
fn kill_uid(uid: u32) {
    for pid in sandbox::processes_of(uid) {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Removes run directories older than any live run could be: what a killed build left.
fn remove_stale(scratch: &Path, timeout: Duration) {
    let Ok(entries) = std::fs::read_dir(scratch) else { return };
    let old = timeout + Duration::from_secs(600);
    for e in entries.flatten() {
        let stale = e
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > old);
        if stale && e.file_name().to_string_lossy().starts_with("run-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
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
