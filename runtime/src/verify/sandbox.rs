//! The sandbox every verification runs in.
//!
//! Two kinds, chosen once per build and part of every verdict's key:
//!
//! - `bwrap` (bubblewrap): new mount, pid, network, ipc, uts and cgroup namespaces. The program
//!   sees a read-only system (`/usr`, `/etc`, the `/bin`-style links), the interpreter's prefixes
//!   read-only, and a size-limited tmpfs at `/sandbox` as working directory and `HOME`; nothing
//!   else of the host (no `/root`, `/home`, store or project). No network interface but a
//!   loopback of its own. Killing bubblewrap kills the pid namespace, and everything in it.
//! - `rlimits`, when bubblewrap is missing or unusable: the same limits, scrubbed environment and
//!   process group, in a host directory; no namespaces, so no network or filesystem isolation.
//!   The build warns loudly.
//!
//! In both, rlimits bound CPU time, address space, file size and core dumps, and `no_new_privs`
//! is set. Run by root, the harness drops to an unprivileged uid of its own (one per concurrent
//! run, from [`UID_BASE`], leased by a lock file) before any code under test runs: RLIMIT_NPROC
//! does not bind root, and a uid per run keeps one run's fork bomb from starving its neighbours'
//! threads. (The fallback keeps root's uid when the interpreter is unreadable by others.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The first uid runs use when sdc runs as root: a range distributions and container tools leave
/// unallocated (systemd reserves up to 1879048191 for containers; this is above it).
pub const UID_BASE: u32 = 1_996_000_000;
/// Processes and threads a run may have at once (RLIMIT_NPROC).
pub const PROCESSES: u64 = 64;
/// Largest file a run may write (RLIMIT_FSIZE), and the size of its working directory (tmpfs).
pub const FILE_MB: u64 = 64;
/// Where the program runs inside bubblewrap: a fixed path, so verdicts read the same everywhere.
pub const WORKDIR: &str = "/sandbox";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// bubblewrap at this path.
    Bwrap(PathBuf),
    /// No namespaces, for the reason given.
    Rlimits(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// RLIMIT_CPU; the wall-clock timeout is enforced separately.
    pub cpu_seconds: u64,
    /// RLIMIT_AS.
    pub memory_mb: u64,
    pub processes: u64,
    pub file_mb: u64,
}

impl Limits {
    pub fn new(timeout: Duration, memory_mb: u64) -> Limits {
        // A second above the wall-clock timeout: that one fires first and is the better verdict.
        Limits { cpu_seconds: timeout.as_secs() + 1, memory_mb, processes: PROCESSES, file_mb: FILE_MB }
    }
}

#[derive(Clone, Debug)]
pub struct Sandbox {
    pub kind: Kind,
    pub limits: Limits,
    /// sdc runs as root: each run drops to a uid from the pool.
    pub drop_uid: bool,
    /// Read-only paths the interpreter needs besides the system (its prefix and base prefix).
    pub binds: Vec<PathBuf>,
}

/// A uid lent to one run, held by an exclusive lock on `<uid>.lock` in [`lock_dir`]: the lock
/// is per open file, so it excludes other runs of this process and of every other sdc process on
/// the machine alike, and the kernel drops it when its holder dies.
pub struct Lease {
    uid: Option<u32>,
    _lock: Option<std::fs::File>,
}

impl Lease {
    pub fn uid(&self) -> Option<u32> {
        self.uid
    }
}

/// Where uid locks live: root's `/run` (only root leases uids), else the temporary directory.
fn lock_dir() -> PathBuf {
    let run = Path::new("/run");
    if run.is_dir() { run.join("sdc-uids") } else { std::env::temp_dir().join("sdc-uids") }
}

/// System paths bound read-only: directories are bound, symbolic links (merged /usr) recreated.
const SYSTEM: &[&str] = &["/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

impl Sandbox {
    /// bubblewrap if it is installed and works here with `python`, else the rlimits fallback.
    pub fn detect(python: &Path, binds: Vec<PathBuf>, limits: Limits) -> Sandbox {
        let probed = Sandbox::probe(python, &binds, limits);
        Sandbox::from_probe(probed, binds, limits)
    }

    /// Whether bubblewrap works here with `python`: its path, or why not.
    pub fn probe(python: &Path, binds: &[PathBuf], limits: Limits) -> Result<PathBuf, String> {
        let drop_uid = rustix::process::geteuid().is_root();
        let sandbox = Sandbox { kind: Kind::Rlimits(String::new()), limits, drop_uid, binds: binds.to_vec() };
        let Some(bwrap) = find_in_path("bwrap") else {
            return Err("bubblewrap (`bwrap`) is not installed".to_string());
        };
        // A real start with the real layout: a kernel without user namespaces or a distribution
        // that forbids them shows here, not in the first verdict.
        let mut probe = std::process::Command::new(&bwrap);
        probe.args(sandbox.bwrap_args(Path::new("/nonexistent"), &[])).arg(python).args(["-I", "-c", "pass"]);
        match probe.stdin(std::process::Stdio::null()).output() {
            Ok(out) if out.status.success() => Ok(bwrap),
            Ok(out) => Err(format!(
                "`{}` does not work here: {}",
                bwrap.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => Err(format!("cannot run `{}`: {e}", bwrap.display())),
        }
    }

    /// The sandbox a [`Sandbox::probe`] result gives.
    pub fn from_probe(probed: Result<PathBuf, String>, binds: Vec<PathBuf>, limits: Limits) -> Sandbox {
        match probed {
            Ok(bwrap) => {
                let drop_uid = rustix::process::geteuid().is_root();
                Sandbox { kind: Kind::Bwrap(bwrap), limits, drop_uid, binds }
            }
            Err(why) => Sandbox::fallback(why, binds, limits),
        }
    }

    /// The rlimits fallback. Without bubblewrap to re-expose it, an interpreter other users cannot
    /// read (a pyenv under root's 0700 home) cannot run under another uid: runs then keep root's.
    pub fn fallback(why: String, binds: Vec<PathBuf>, limits: Limits) -> Sandbox {
        let root = rustix::process::geteuid().is_root();
        let readable = binds.iter().all(|b| others_can_read(b));
        let why = match (root, readable) {
            (true, false) => format!(
                "{why}; the interpreter is not readable by other users, so runs keep root's uid and RLIMIT_NPROC does not bind"
            ),
            _ => why,
        };
        Sandbox { kind: Kind::Rlimits(why), limits, drop_uid: root && readable, binds }
    }

    pub fn is_bwrap(&self) -> bool {
        matches!(self.kind, Kind::Bwrap(_))
    }

    /// What the sandbox is, for the verdict key: a changed sandbox never reuses a verdict.
    pub fn identity(&self) -> String {
        let l = &self.limits;
        let kind = if self.is_bwrap() { "bwrap" } else { "rlimits" };
        format!(
            "{kind} cpu={}s as={}MB nproc={} fsize={}MB workdir={}MB uid={}",
            l.cpu_seconds,
            l.memory_mb,
            l.processes,
            l.file_mb,
            FILE_MB,
            if self.drop_uid { "pool" } else { "own" }
        )
    }

    /// The warning a build prints when verification is not isolated.
    pub fn warning(&self) -> Option<String> {
        match &self.kind {
            Kind::Bwrap(_) => None,
            Kind::Rlimits(why) => Some(format!(
                "warning: verification runs WITHOUT a namespace sandbox ({why}): generated code can use the network and read and write what this user can. Install bubblewrap (`apt-get install bubblewrap`) for isolation."
            )),
        }
    }

    /// A uid for one run, or none when sdc does not run as root: the smallest one no other run,
    /// here or in another sdc process, holds.
    pub fn lease(&self) -> Result<Lease, std::io::Error> {
        if !self.drop_uid {
            return Ok(Lease { uid: None, _lock: None });
        }
        let dir = lock_dir();
        std::fs::create_dir_all(&dir)?;
        for uid in UID_BASE..UID_BASE + 4096 {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(format!("{uid}.lock")))?;
            match file.try_lock() {
                Ok(()) => return Ok(Lease { uid: Some(uid), _lock: Some(file) }),
                Err(std::fs::TryLockError::WouldBlock) => continue,
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
        }
        Err(std::io::Error::other("every sandbox uid is in use"))
    }

    /// RLIMIT_NPROC counts every process of the real uid: the run's own uid when root, else all
    /// of this user's, so then the limit is what the user runs already plus the run's share.
    pub fn nproc_limit(&self, lease: &Lease) -> u64 {
        match lease.uid() {
            Some(_) => self.limits.processes,
            None => tasks_of(rustix::process::getuid().as_raw()) + self.limits.processes,
        }
    }

    /// bubblewrap's arguments for a run whose inputs are in `host_dir`; the command follows.
    pub fn bwrap_args(&self, host_dir: &Path, inputs: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |args: &[&str]| a.extend(args.iter().map(|s| s.to_string()));
        for p in SYSTEM {
            let path = Path::new(p);
            match std::fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_symlink() => {
                    if let Ok(target) = std::fs::read_link(path) {
                        push(&["--symlink", &target.display().to_string(), p]);
                    }
                }
                Ok(m) if m.is_dir() => push(&["--ro-bind", p, p]),
                _ => {}
            }
        }
        push(&["--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev"]);
        let mut made = BTreeSet::new();
        for bind in &self.binds {
            if SYSTEM.iter().any(|s| bind.starts_with(s)) {
                continue;
            }
            // Parents bubblewrap would create are private (0700) and would hide the bind from
            // the unprivileged uid; created first, they are 0755.
            let mut parents: Vec<&Path> = bind.ancestors().skip(1).filter(|p| p.parent().is_some()).collect();
            parents.reverse();
            for parent in parents {
                let s = parent.display().to_string();
                if made.insert(s.clone()) {
                    push(&["--perms", "0755", "--dir", &s]);
                }
            }
            let s = bind.display().to_string();
            push(&["--ro-bind", &s, &s]);
        }
        let size = (FILE_MB * 1024 * 1024).to_string();
        push(&["--perms", "01777", "--size", &size, "--tmpfs", WORKDIR]);
        for name in inputs {
            let host = host_dir.join(name).display().to_string();
            push(&["--ro-bind", &host, &format!("{WORKDIR}/{name}")]);
        }
        push(&["--chdir", WORKDIR]);
        push(&["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]);
        if !self.drop_uid {
            // Unprivileged bubblewrap needs a user namespace; as root it is not needed, and
            // without it the harness can drop to a real unprivileged uid.
            push(&["--unshare-user"]);
        }
        push(&["--die-with-parent", "--new-session", "--"]);
        a
    }
}

/// Applies the limits in a freshly forked child, before it executes the sandbox.
///
/// Runs between fork and exec, so it may only make async-signal-safe calls: each of these is a
/// single system call through rustix (no allocation, no locks).
pub fn apply_in_child(limits: &Limits, nproc: u64, verdict_fd: i32) -> std::io::Result<()> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let set = |r: Resource, soft: u64, hard: u64| setrlimit(r, Rlimit { current: Some(soft), maximum: Some(hard) });
    let mb = 1024 * 1024;
    set(Resource::Cpu, limits.cpu_seconds, limits.cpu_seconds + 1)?;
    set(Resource::As, limits.memory_mb * mb, limits.memory_mb * mb)?;
    set(Resource::Fsize, limits.file_mb * mb, limits.file_mb * mb)?;
    set(Resource::Nproc, nproc, nproc)?;
    set(Resource::Core, 0, 0)?;
    rustix::thread::set_no_new_privs(true)?;
    move_to_fd3(verdict_fd)?;
    Ok(())
}

/// The verdict pipe's write end becomes fd 3 in the child, inheritable across exec.
fn move_to_fd3(fd: i32) -> std::io::Result<()> {
    use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
    // SAFETY: `fd` is the pipe's write end, open in this child until exec; fd 3 is ours to
    // replace (the child's descriptors are its own after fork), and the OwnedFd made for it is
    // forgotten, so nothing closes it.
    let source = unsafe { BorrowedFd::borrow_raw(fd) };
    if fd == 3 {
        // dup2 onto itself would keep close-on-exec.
        return Ok(rustix::io::fcntl_setfd(source, rustix::io::FdFlags::empty())?);
    }
    let mut target = unsafe { OwnedFd::from_raw_fd(3) };
    let done = rustix::io::dup2(source, &mut target);
    std::mem::forget(target);
    Ok(done?)
}

/// Every ancestor of `dir` searchable by others and `dir` itself readable and searchable.
fn others_can_read(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.permissions().mode());
    mode(dir) & 0o005 == 0o005 && dir.ancestors().skip(1).all(|a| mode(a) & 0o001 != 0)
}

pub(crate) fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Processes whose real uid is `uid`, from /proc. The status file, not the directory's owner:
/// a process that changed uid is not dumpable, and its /proc directory then belongs to root.
pub fn processes_of(uid: u32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| real_uid(&format!("/proc/{pid}/status")) == Some(uid))
        .collect()
}

fn real_uid(status: &str) -> Option<u32> {
    let text = std::fs::read_to_string(status).ok()?;
    let line = text.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Tasks (processes and threads) whose real uid is `uid`.
fn tasks_of(uid: u32) -> u64 {
    processes_of(uid)
        .iter()
        .map(|pid| std::fs::read_dir(format!("/proc/{pid}/task")).map_or(1, |t| t.count() as u64))
        .sum()
}
