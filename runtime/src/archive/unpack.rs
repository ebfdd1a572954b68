//! Getting files out of an archive: into memory, or into a fresh directory on disk.
//!
//! Both go through `tarball::walk`, so they refuse exactly what verification refuses (links,
//! devices, directories, extension headers, unsafe or duplicate paths, oversized entries).
//! Unpacking writes only below its target, which must be new or empty, creating every file with
//! `create_new`: nothing that was there is followed or overwritten. Neither checks contents
//! against the manifest on its own, except that `unpack_archive` returns the verification report
//! of the files it wrote.

use std::fs::{self, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::error::ArchiveError;
use super::tarball::{Limits, walk};
use super::verify::{Verifier, VerifyReport};

/// Every file of the archive with its bytes, in archive order (sorted by path for sdc's own).
/// Memory is bounded by `limits.total_bytes`.
pub fn read_archive(archive: impl Read, limits: &Limits) -> Result<Vec<(String, Vec<u8>)>, ArchiveError> {
    let mut files = Vec::new();
    walk(archive, limits, |path, size, data| {
        // The declared size is only trusted as far as the limits go, and never preallocated
        // beyond a modest amount: the data may be shorter than the header says.
        let mut bytes = Vec::with_capacity(usize::try_from(size.min(1 << 20)).unwrap_or(0));
        data.read_to_end(&mut bytes).map_err(ArchiveError::Read)?;
        if bytes.len() as u64 != size {
            return Err(ArchiveError::Read(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("entry `{path}` declares {size} bytes but has {}", bytes.len()),
            )));
        }
        files.push((path.to_string(), bytes));
        Ok(())
    })?;
    Ok(files)
}

/// Unpacks into `dir` (created if missing; it must be empty if it exists) and verifies what it
/// wrote. On an error, files written so far stay in `dir`.
pub fn unpack_archive(archive: impl Read, dir: &Path, limits: &Limits) -> Result<VerifyReport, ArchiveError> {
    prepare_target(dir)?;
    let mut verifier = Verifier::default();
    let digests = walk(archive, limits, |path, size, data| {
        // `path` passed `check_path`: relative, plain components only, so joining them cannot
        // leave `dir`; and `dir` started empty, so no symlink of anyone else's is on the way.
        let target: PathBuf = path.split('/').fold(dir.to_path_buf(), |p, c| p.join(c));
        let write_error = |source| ArchiveError::WriteFile { path: target.clone(), source };
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(write_error)?;
        }
        let file = OpenOptions::new().write(true).create_new(true).open(&target).map_err(write_error)?;
        let mut file = BufWriter::new(file);
        verifier.entry(path, size, data, &mut file).map_err(|e| match e {
            ArchiveError::Write(source) => write_error(source),
            other => other,
        })?;
        file.flush().map_err(write_error)
    })?;
    verifier.finish(digests)
}

fn prepare_target(dir: &Path) -> Result<(), ArchiveError> {
    let target_error = |reason: String| ArchiveError::UnpackTarget { dir: dir.to_path_buf(), reason };
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|e| target_error(e.to_string()))
        }
        Err(e) => Err(target_error(e.to_string())),
        Ok(meta) if !meta.is_dir() => {
            Err(target_error("it exists and is not a directory (symlinks are not followed)".to_string()))
        }
        Ok(_) => {
            let mut entries = fs::read_dir(dir).map_err(|e| target_error(e.to_string()))?;
            if entries.next().is_some() {
                return Err(target_error("the directory is not empty".to_string()));
            }
            Ok(())
        }
    }
}
