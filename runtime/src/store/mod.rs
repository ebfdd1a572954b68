//! The local store (`.sdc/` by default): everything a build has computed that is worth keeping,
//! addressed by content.
//!
//! - `objects/ab/cdef…`: immutable blobs named by the sha256 of their bytes (normalised images,
//!   finished archives). Written to a temporary file and renamed into place, so a reader sees a
//!   whole object or none.
//! - `journal/<kind>/NNNNNN.log`: append-only, checksummed key → value records ([`Journal`]):
//!   model responses keyed by their canonical request, verification verdicts, cached results.
//!   Each build appends to a segment of its own; a record torn by `kill -9` fails its checksum
//!   and is ignored on the next open, so the store never holds half a result.
//! - `lock`: held (exclusively) by the build using the store, so two builds never interleave.
//!
//! Nothing here decides what a key means; callers hash their canonical inputs. The store is a
//! cache of facts, never of decisions: deleting it costs time (and, for model calls, money), not
//! correctness.

mod journal;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use journal::{Appender, FLUSH_EVERY, Journal, JournalStats};
use sha2::{Digest, Sha256};

/// Bumped whenever the layout changes in a way older sdc versions could misread.
pub const STORE_FORMAT: &str = "sdc-store-1";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use the store at `{path}`: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "the store at `{0}` is in use by another sdc process (its lock file is held); wait for it or use another `--store`"
    )]
    Busy(PathBuf),
    #[error(
        "the store at `{path}` has format `{found}`, this sdc reads `{STORE_FORMAT}`; move it away or use another `--store`"
    )]
    Format { path: PathBuf, found: String },
    #[error("store object {id} is corrupt: its content hashes to {actual}")]
    Corrupt { id: String, actual: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// An open store. Dropping it releases the lock.
pub struct Store {
    root: PathBuf,
    _lock: File,
    /// Names temporary files uniquely within this process.
    tmp_counter: Mutex<u64>,
}

impl Store {
    /// Opens (creating if needed) the store at `root` and takes its lock; fails at once if
    /// another process holds it.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        fs::create_dir_all(root).map_err(io(root))?;
        let format_file = root.join("FORMAT");
        match fs::read_to_string(&format_file) {
            Ok(found) if found.trim() == STORE_FORMAT => {}
            Ok(found) => return Err(StoreError::Format { path: root.to_path_buf(), found: found.trim().to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::write(&format_file, format!("{STORE_FORMAT}\n")).map_err(io(&format_file))?;
            }
            Err(e) => return Err(io(&format_file)(e)),
        }
        let lock_path = root.join("lock");
        let lock =
            OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(StoreError::Busy(root.to_path_buf())),
            Err(fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        for dir in ["objects", "journal", "tmp"] {
            let d = root.join(dir);
            fs::create_dir_all(&d).map_err(io(&d))?;
        }
        // Scratch left by a build that was killed (staged archive files, spill files a crash
        // did not unlink): nobody else can be using it, since we hold the lock.
        if let Ok(entries) = fs::read_dir(root.join("tmp")) {
            for e in entries.flatten() {
                let p = e.path();
                let _ = if p.is_dir() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
            }
        }
        Ok(Store { root: root.to_path_buf(), _lock: lock, tmp_counter: Mutex::new(0) })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Opens the journal of one kind (`responses`, `verdicts`, …), reading its index.
    pub fn journal(&self, kind: &str) -> Result<Journal, StoreError> {
        Journal::open(&self.root.join("journal").join(kind))
    }

    /// Opens the journal of one kind for adding records only, without reading its index.
    pub fn appender(&self, kind: &str) -> Result<Appender, StoreError> {
        Appender::open(&self.root.join("journal").join(kind))
    }

    fn object_path(&self, id: &str) -> PathBuf {
        let (head, tail) = id.split_at(2.min(id.len()));
        self.root.join("objects").join(head).join(tail)
    }

    /// Stores a blob and returns its id (sha256 hex). Storing an existing blob is a no-op.
    pub fn put_object(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let id = hex::encode(Sha256::digest(bytes));
        let path = self.object_path(&id);
        if path.is_file() {
            return Ok(id);
        }
        self.write_atomically(&path, bytes)?;
        Ok(id)
    }

    /// A blob by id, checked against its id; `None` when the store does not have it.
    pub fn get_object(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.object_path(id);
        match fs::read(&path) {
            Ok(bytes) => {
                let actual = hex::encode(Sha256::digest(&bytes));
                if actual != id {
                    return Err(StoreError::Corrupt { id: id.to_string(), actual });
                }
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Writes `bytes` to `dest` through a temporary file in the store and a rename, so `dest`
    /// is never seen half-written. `dest` must be on the store's file system.
    pub fn write_atomically(&self, dest: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let n = {
            let mut c = self.tmp_counter.lock().unwrap_or_else(|p| p.into_inner());
            *c += 1;
            *c
        };
        let tmp = self.root.join("tmp").join(format!("{}-{n}", std::process::id()));
        let mut file = File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(bytes).map_err(io(&tmp))?;
        drop(file);
        fs::rename(&tmp, dest).map_err(io(dest))
    }
}

impl Store {
    /// Files `file` (a temporary file on the store's file system whose sha256 is `id`) as the
    /// blob `id`, by a rename, so a large blob is never read into memory.
    pub fn put_object_file(&self, file: tempfile::TempPath, id: &str) -> Result<(), StoreError> {
        let path = self.object_path(id);
        if path.is_file() {
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        file.persist(&path).map_err(|e| io(&path)(e.error))
    }

    /// Copies the blob `id` to `dest` (atomically, checking its hash on the way); `false` when
    /// the store does not have it.
    pub fn copy_object_to(&self, id: &str, dest: &Path) -> Result<bool, StoreError> {
        let path = self.object_path(id);
        let source = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io(&path)(e)),
        };
        let mut hashing =
            HashingReader { inner: std::io::BufReader::with_capacity(1 << 20, source), hasher: Sha256::new() };
        let tmp = temp_sibling(dest);
        let copied = (|| -> std::io::Result<()> {
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent)?;
            }
            let mut file = File::create(&tmp)?;
            std::io::copy(&mut hashing, &mut file)?;
            file.sync_all()
        })();
        if let Err(e) = copied {
            let _ = fs::remove_file(&tmp);
            return Err(io(dest)(e));
        }
        let actual = hex::encode(hashing.hasher.finalize());
        if actual != id {
            let _ = fs::remove_file(&tmp);
            return Err(StoreError::Corrupt { id: id.to_string(), actual });
        }
        fs::rename(&tmp, dest).map_err(io(dest))?;
        Ok(true)
    }
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn temp_sibling(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Copies `src` to `dest` atomically: a temporary sibling, then a rename.
pub fn copy_file_atomically(src: &Path, dest: &Path) -> std::io::Result<()> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = temp_sibling(dest);
    let copied = fs::copy(src, &tmp).and_then(|_| File::open(&tmp)?.sync_all());
    if let Err(e) = copied {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, dest)
}

/// Writes a file outside the store atomically: a temporary sibling, then a rename.
pub fn write_file_atomically(dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = temp_sibling(dest);
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_round_trip_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let id = store.put_object(b"hello").unwrap();
        assert_eq!(id, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(store.get_object(&id).unwrap().as_deref(), Some(&b"hello"[..]));
        assert_eq!(store.put_object(b"hello").unwrap(), id);
        assert!(store.get_object(&"0".repeat(64)).unwrap().is_none());
        fs::write(store.object_path(&id), b"tampered").unwrap();
        assert!(matches!(store.get_object(&id), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn file_objects_are_filed_by_rename_and_copied_out_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tmp = tempfile::NamedTempFile::new_in(dir.path().join("tmp")).unwrap();
        fs::write(tmp.path(), b"hello").unwrap();
        let id = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        store.put_object_file(tmp.into_temp_path(), id).unwrap();
        let out = dir.path().join("out/copy");
        assert!(store.copy_object_to(id, &out).unwrap());
        assert_eq!(fs::read(&out).unwrap(), b"hello");
        assert!(!store.copy_object_to(&"0".repeat(64), &out).unwrap());
        fs::write(store.object_path(id), b"tampered").unwrap();
        assert!(matches!(store.copy_object_to(id, &out), Err(StoreError::Corrupt { .. })));
        assert_eq!(fs::read(&out).unwrap(), b"hello", "a failed copy leaves the destination as it was");
    }

    #[test]
    fn scratch_left_by_a_killed_build_is_cleared_on_open() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        fs::create_dir_all(dir.path().join("tmp/archive-x")).unwrap();
        fs::write(dir.path().join("tmp/archive-x/0000"), b"staged").unwrap();
        fs::write(dir.path().join("tmp/.tmpabc"), b"half an archive").unwrap();
        let _store = Store::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_second_opener_is_refused_while_the_first_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        assert!(matches!(Store::open(dir.path()), Err(StoreError::Busy(_))));
        drop(first);
        assert!(Store::open(dir.path()).is_ok());
    }

    #[test]
    fn a_foreign_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("FORMAT"), "something-else\n").unwrap();
        assert!(matches!(Store::open(dir.path()), Err(StoreError::Format { .. })));
    }
}
