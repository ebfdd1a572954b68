//! A scratch copy of `tests/fixtures/project` per test, and a runner for the real binary.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    /// Copies the fixture project into a fresh temporary directory.
    pub fn new() -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(&fixture_root(), dir.path());
        Project { dir }
    }

    /// The build-test project (`tests/fixtures/build`) with the repository's real prompts.
    pub fn build() -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        copy_dir(&repo.join("tests/fixtures/build"), dir.path());
        copy_dir(&repo.join("prompts"), &dir.path().join("prompts"));
        Project { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).expect("read")
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    /// Replaces `from` with `to` in a file, failing the test if `from` is not there, so a
    /// mutation can never silently do nothing.
    pub fn edit(&self, rel: &str, from: &str, to: &str) {
        let text = self.read(rel);
        assert!(text.contains(from), "`{from}` not found in {rel}");
        self.write(rel, &text.replacen(from, to, 1));
    }

    /// Runs `sdc` in the project root with a clean environment (no model variables, no colour).
    pub fn sdc(&self, args: &[&str]) -> Run {
        self.sdc_env(args, &[])
    }

    /// Runs `sdc` in a directory of the project (relative to its root).
    pub fn sdc_in(&self, dir: &str, args: &[&str]) -> Run {
        self.run_in(&self.path(dir), args, &[])
    }

    pub fn sdc_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        self.run_in(self.root(), args, env)
    }

    fn run_in(&self, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sdc"));
        cmd.args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            // Verification environments are shared by every test: each is made once.
            .env("SDC_ENV_DIR", shared_env_dir());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run sdc");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Exit code, stdout and stderr in one text, for snapshots.
    pub fn transcript(&self) -> String {
        format!("exit: {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Where tests keep verification environments, beside the build's other test data.
pub fn shared_env_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("sdc-envs")
}

/// Every planned item ends accepted, rejected or failed, every stage passes on what it does not
/// reject or fail, and no split shares a group with another: the report says so.
pub fn assert_books_close(report: &serde_json::Value) {
    for a in report["accounting"].as_array().expect("accounting") {
        let n = |k: &str| a[k].as_u64().expect("count");
        assert_eq!(n("planned"), n("accepted") + n("rejected") + n("failed"), "{a}");
    }
    for s in report["stages"].as_array().expect("stages") {
        let n = |k: &str| s[k].as_u64().expect("count");
        assert_eq!(n("items_in"), n("items_out") + n("rejected") + n("failed"), "{s}");
    }
    assert_eq!(report["package"]["split"]["leakage"], 0);
}

pub fn fixture_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/project")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A minimal OpenAI-compatible server on 127.0.0.1 that answers `GET /v1/models` with the
/// given model ids, and records the requests it saw. It serves until the test ends.
pub struct ModelServer {
    pub base_url: String,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ModelServer {
    pub fn start(models: &[&str]) -> ModelServer {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let body = serde_json::json!({
            "object": "list",
            "data": models.iter().map(|m| serde_json::json!({ "id": m, "object": "model" })).collect::<Vec<_>>(),
        })
        .to_string();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                seen.lock().expect("lock").push(String::from_utf8_lossy(&buf).into_owned());
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    body.len(),
                    body
                );
                let _ = stream.write_all(response.as_bytes());
            }
        });
        ModelServer { base_url: format!("http://127.0.0.1:{port}/v1"), requests }
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().expect("lock").len()
    }
}

/// The fixture build project (`tests/fixtures/build`) built once per test run, shared by the
/// tests that only read its archive (`export`, `analyze`), with the build report.
pub struct BuiltFixture {
    pub project: Project,
    pub report: serde_json::Value,
}

pub const FIXTURE_ARCHIVE: &str = "dist/states-1.0.0.tar.zst";

pub fn built_fixture() -> &'static BuiltFixture {
    static BUILT: std::sync::OnceLock<BuiltFixture> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let project = Project::build();
        let run = project.sdc(&["build", "specs/build.sds", "--store", ".sdc", "--format", "json"]);
        assert_eq!(run.code, 0, "build failed:\n{}", run.transcript());
        let report = serde_json::from_str(&run.stdout).expect("the report is JSON");
        BuiltFixture { project, report }
    })
}

/// Every file below `dir` with its bytes, by relative path.
pub fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.expect("walk"))
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(dir).expect("below dir").to_string_lossy().replace('\\', "/");
            (rel, std::fs::read(e.path()).expect("read"))
        })
        .collect()
}
