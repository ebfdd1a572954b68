//! Finished records kept on disk while a build runs, so memory does not grow with their texts.
//!
//! A task's record (question, answer, test, call traces, decisions, verification attempts) is
//! written as JSON to an unlinked temporary file in the store as soon as the task finishes; the
//! build keeps a [`Slot`] and the few fields that grouping needs. Dedup and packaging read
//! records back one at a time. At 100k tasks the records were most of a build's memory; on disk
//! they cost one sequential write and a read or two each, from the page cache.
//!
//! The file is scratch, not a cache: it is unlinked from the start (the kernel drops it when the
//! build ends, however it ends) and a resumed build recomputes records from the response store.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Where one record is in the spill file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    offset: u64,
    len: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    #[error("cannot use the build's scratch file in `{dir}`: {source}")]
    Io { dir: String, source: std::io::Error },
    #[error("a record in the build's scratch file does not read back: {0}")]
    Decode(String),
    #[error("a record is too large for the build's scratch file ({0} bytes)")]
    TooLarge(usize),
}

/// Appends records; [`SpillWriter::finish`] turns it into a reader.
pub struct SpillWriter {
    dir: String,
    out: BufWriter<File>,
    offset: u64,
}

impl SpillWriter {
    pub fn new(dir: &Path) -> Result<SpillWriter, SpillError> {
        let err = |source| SpillError::Io { dir: dir.display().to_string(), source };
        std::fs::create_dir_all(dir).map_err(err)?;
        let file = tempfile::tempfile_in(dir).map_err(err)?;
        Ok(SpillWriter { dir: dir.display().to_string(), out: BufWriter::with_capacity(1 << 20, file), offset: 0 })
    }

    pub fn put<T: Serialize>(&mut self, record: &T) -> Result<Slot, SpillError> {
        let bytes = serde_json::to_vec(record).map_err(|e| SpillError::Decode(e.to_string()))?;
        self.put_bytes(&bytes)
    }

    /// Appends bytes the caller encoded itself.
    pub fn put_bytes(&mut self, bytes: &[u8]) -> Result<Slot, SpillError> {
        let len = u32::try_from(bytes.len()).map_err(|_| SpillError::TooLarge(bytes.len()))?;
        self.out.write_all(bytes).map_err(|source| SpillError::Io { dir: self.dir.clone(), source })?;
        let slot = Slot { offset: self.offset, len };
        self.offset += u64::from(len);
        Ok(slot)
    }

    pub fn finish(self) -> Result<SpillReader, SpillError> {
        let dir = self.dir;
        let file = self.out.into_inner().map_err(|e| SpillError::Io { dir: dir.clone(), source: e.into_error() })?;
        Ok(SpillReader { dir, file })
    }
}

/// Reads records back, from any thread.
pub struct SpillReader {
    dir: String,
    file: File,
}

impl SpillReader {
    pub fn get<T: DeserializeOwned>(&self, slot: Slot) -> Result<T, SpillError> {
        serde_json::from_slice(&self.get_bytes(slot)?).map_err(|e| SpillError::Decode(e.to_string()))
    }

    /// The bytes [`SpillWriter::put_bytes`] wrote.
    pub fn get_bytes(&self, slot: Slot) -> Result<Vec<u8>, SpillError> {
        let mut bytes = vec![0u8; slot.len as usize];
        self.file
            .read_exact_at(&mut bytes, slot.offset)
            .map_err(|source| SpillError::Io { dir: self.dir.clone(), source })?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_in_any_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = SpillWriter::new(dir.path()).expect("spill");
        let slots: Vec<(Slot, String)> = (0..100)
            .map(|i| {
                let text = "x".repeat(i * 37) + &i.to_string();
                (w.put(&text).expect("put"), text)
            })
            .collect();
        let r = w.finish().expect("finish");
        for (slot, text) in slots.iter().rev() {
            assert_eq!(&r.get::<String>(*slot).expect("get"), text);
        }
        // The file is unlinked: nothing is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).expect("read dir").count(), 0);
    }
}
