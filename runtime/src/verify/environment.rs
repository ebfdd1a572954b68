//! The verification environment: a virtual environment keyed by (Python version, requirements
//! hash), created once under `envs/` and reused by every build that pins the same pair.
//!
//! Creation happens in a temporary sibling directory that is renamed into place only after
//! `pip install` succeeded and `pip freeze` was recorded in `sdc-env.txt`, so an interrupted
//! creation is simply redone. The lock pins the requirements file's hash; a file that changed
//! since is refused here rather than silently installed.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use sha2::{Digest, Sha256};

#[derive(Clone, Debug)]
pub struct Environment {
    pub root: PathBuf,
    pub python: PathBuf,
    /// sha256 of (python version, requirements sha256): part of every verdict's key.
    pub key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("cannot read the requirements file `{0}`: {1}")]
    Requirements(PathBuf, std::io::Error),
    #[error(
        "the requirements file `{path}` changed since the lock (sha256 {locked} → {actual}); run `sdc lock` to pin it again"
    )]
    Drift { path: PathBuf, locked: String, actual: String },
    #[error("cannot create the verification environment in `{0}`: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("`{command}` failed while creating the verification environment:\n{output}")]
    Command { command: String, output: String },
}

pub struct Request<'a> {
    pub base_python: &'a str,
    pub python_version: &'a str,
    pub requirements: Option<&'a Path>,
    pub requirements_sha256: &'a str,
    pub envs_dir: &'a Path,
}

pub fn key(python_version: &str, requirements_sha256: &str) -> String {
    hex::encode(Sha256::digest(format!("python {python_version}\0requirements {requirements_sha256}").as_bytes()))
}

/// The environment for `req`, created first if needed; `note` hears what is being done.
pub async fn ensure(req: &Request<'_>, note: &(dyn Fn(String) + Sync)) -> Result<Environment, EnvError> {
    let requirements = match req.requirements {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| EnvError::Requirements(path.to_path_buf(), e))?;
            let actual = hex::encode(Sha256::digest(&bytes));
            if !req.requirements_sha256.is_empty() && actual != req.requirements_sha256 {
                return Err(EnvError::Drift {
                    path: path.to_path_buf(),
                    locked: req.requirements_sha256.to_string(),
                    actual,
                });
            }
            Some((path, String::from_utf8_lossy(&bytes).into_owned()))
        }
        None => None,
    };
    let key = key(req.python_version, req.requirements_sha256);
    let root = req.envs_dir.join(&key[..16]);
    let python = root.join("bin").join("python");
    if root.join("sdc-env.txt").is_file() && python.exists() {
        return Ok(Environment { root, python, key });
    }
    std::fs::create_dir_all(req.envs_dir).map_err(|e| EnvError::Io(req.envs_dir.to_path_buf(), e))?;
    let partial = req.envs_dir.join(format!(".{}.partial-{}", &key[..16], std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    note(format!("creating the verification environment (python {}) in {}", req.python_version, root.display()));
    run(req.base_python, &["-m", "venv", &partial.display().to_string()]).await?;
    let partial_python = partial.join("bin").join("python");
    let py = partial_python.display().to_string();
    let has_packages = requirements
        .as_ref()
        .is_some_and(|(_, text)| text.lines().any(|l| !l.trim().is_empty() && !l.trim().starts_with('#')));
    if let (true, Some((path, _))) = (has_packages, &requirements) {
        note(format!("installing {} (this happens once per requirements hash)", path.display()));
        let file = path.display().to_string();
        run(&py, &["-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--quiet", "-r", &file])
            .await?;
    }
    let freeze = output(&py, &["-m", "pip", "freeze", "--disable-pip-version-check"]).await.unwrap_or_default();
    let record = format!("python {}\nrequirements sha256 {}\n\n{freeze}", req.python_version, req.requirements_sha256);
    std::fs::write(partial.join("sdc-env.txt"), record).map_err(|e| EnvError::Io(partial.clone(), e))?;
    match std::fs::rename(&partial, &root) {
        Ok(()) => {}
        // Another process finished the same environment first; theirs is as good as ours.
        Err(_) if root.join("sdc-env.txt").is_file() => {
            let _ = std::fs::remove_dir_all(&partial);
        }
        Err(e) => return Err(EnvError::Io(root, e)),
    }
    Ok(Environment { python: root.join("bin").join("python"), root, key })
}

async fn run(program: &str, args: &[&str]) -> Result<(), EnvError> {
    let out =
        tokio::process::Command::new(program).args(args).stdin(Stdio::null()).output().await.map_err(|e| {
            EnvError::Command { command: format!("{program} {}", args.join(" ")), output: e.to_string() }
        })?;
    if out.status.success() {
        return Ok(());
    }
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let tail: Vec<&str> = text.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
    Err(EnvError::Command { command: format!("{program} {}", args.join(" ")), output: tail.join("\n") })
}

async fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = tokio::process::Command::new(program).args(args).stdin(Stdio::null()).output().await.ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
