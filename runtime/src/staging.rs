//! The output directory of `sdc export` and `sdc analyze`: staged next to its final place, then moved
//! there in one rename, so a reader never sees half of it and a failed run leaves nothing.
//!
//! A target that exists must be an empty directory, unless the caller forces a replacement; a
//! replaced directory is moved aside first and removed only once the new one is in place. A
//! symlink or a file is never replaced, forced or not.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why the output directory could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("`{}` is not empty; pass `--force` to replace it", dir.display())]
    NotEmpty { dir: PathBuf },
    #[error("`{}` exists and is not a directory (symlinks are not followed)", dir.display())]
    NotADirectory { dir: PathBuf },
    #[error("cannot write `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A staging directory that becomes the target on [`Staged::commit`], or disappears if dropped.
pub struct Staged {
    dir: tempfile::TempDir,
    target: PathBuf,
    force: bool,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TargetError + '_ {
    move |source| TargetError::Io { path: path.to_path_buf(), source }
}

impl Staged {
    /// Checks the target and creates a staging directory beside it.
    pub fn new(target: &Path, force: bool) -> Result<Staged, TargetError> {
        check_target(target, force)?;
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(io_error(&parent))?;
        let dir = tempfile::Builder::new().prefix(".sdc-staging-").tempdir_in(&parent).map_err(io_error(&parent))?;
        Ok(Staged { dir, target: target.to_path_buf(), force })
    }

    /// Writes one file (a relative path with `/` separators), creating its directories.
    pub fn write(&self, rel: &str, bytes: &[u8]) -> Result<(), TargetError> {
        let path = rel.split('/').fold(self.dir.path().to_path_buf(), |p, c| p.join(c));
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        let mut file = fs::File::create(&path).map_err(io_error(&self.shown(rel)))?;
        file.write_all(bytes).map_err(io_error(&self.shown(rel)))
    }

    /// The path a file will have once committed, for messages.
    pub fn shown(&self, rel: &str) -> PathBuf {
        self.target.join(rel)
    }

    /// Moves the staged directory into place (replacing the target if forced).
    pub fn commit(self) -> Result<PathBuf, TargetError> {
        // Checked again: the target may have appeared while we wrote.
        check_target(&self.target, self.force)?;
        let staged = self.dir.keep();
        let result = replace(&staged, &self.target);
        if result.is_err() {
            let _ = fs::remove_dir_all(&staged);
        }
        result.map(|()| self.target)
    }
}

fn replace(staged: &Path, target: &Path) -> Result<(), TargetError> {
    let non_empty = fs::read_dir(target).is_ok_and(|mut d| d.next().is_some());
    if !non_empty {
        // Missing or empty: rename(2) replaces an empty directory.
        return fs::rename(staged, target).map_err(io_error(target));
    }
    let aside = staged.with_extension("replaced");
    fs::rename(target, &aside).map_err(io_error(target))?;
    if let Err(source) = fs::rename(staged, target) {
        let _ = fs::rename(&aside, target);
        return Err(TargetError::Io { path: target.to_path_buf(), source });
    }
    fs::remove_dir_all(&aside).map_err(io_error(&aside))
}

fn check_target(target: &Path, force: bool) -> Result<(), TargetError> {
    match fs::symlink_metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(TargetError::Io { path: target.to_path_buf(), source }),
        Ok(meta) if !meta.is_dir() => Err(TargetError::NotADirectory { dir: target.to_path_buf() }),
        Ok(_) => {
            let mut entries = fs::read_dir(target).map_err(io_error(target))?;
            if entries.next().is_some() && !force {
                return Err(TargetError::NotEmpty { dir: target.to_path_buf() });
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_empty_target_is_replaced_only_when_forced() {
        let root = tempfile::tempdir().expect("tempdir");
        let target = root.path().join("out");
        let staged = Staged::new(&target, false).expect("stage");
        staged.write("a/b.txt", b"one").expect("write");
        staged.commit().expect("commit");
        assert_eq!(fs::read(target.join("a/b.txt")).expect("read"), b"one");

        let err = Staged::new(&target, false).err().expect("refused");
        assert!(matches!(err, TargetError::NotEmpty { .. }), "{err}");

        let staged = Staged::new(&target, true).expect("stage");
        staged.write("c.txt", b"two").expect("write");
        staged.commit().expect("commit");
        assert!(!target.join("a").exists(), "the old contents are gone");
        assert_eq!(fs::read(target.join("c.txt")).expect("read"), b"two");
        // Nothing staged or moved aside is left behind.
        let names: Vec<_> = fs::read_dir(root.path()).expect("ls").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, [std::ffi::OsString::from("out")]);
    }

    #[test]
    fn a_file_is_never_replaced() {
        let root = tempfile::tempdir().expect("tempdir");
        let target = root.path().join("file");
        fs::write(&target, b"x").expect("write");
        let err = Staged::new(&target, true).err().expect("refused");
        assert!(matches!(err, TargetError::NotADirectory { .. }), "{err}");
    }
}
