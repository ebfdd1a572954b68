//! An append-only, checksummed key → value log, split into segments.
//!
//! Record layout (little endian): `magic: u32 | key: [u8; 32] | len: u32 | crc32(key ‖ value): u32
//! | value: [u8; len]`. Keys are sha256 digests chosen by the caller. A journal directory holds
//! segments `000001.log`, `000002.log`, …; opening one scans every segment into an in-memory index
//! (key → segment, offset, length) and stops reading a segment at its first record that is short
//! or fails its checksum — the tail a `kill -9` may leave. New records always go to a fresh
//! segment, so nothing is ever appended after such a tail. A key written twice keeps its first
//! value: values are facts about their key, and the first one is what earlier builds used.
//!
//! Records are written with single `write` calls from an unbuffered file: a record is either
//! fully in the page cache or torn at the end of the file, never interleaved. There is no
//! `fsync`: surviving a crash of the process (not of the machine) is what a build needs.
//!
//! By default each record is written as it is put. A journal opened for a build's model calls
//! is [`write_behind`](Journal::write_behind): records gather in memory (where reads find them)
//! and go out in one `write` when [`PENDING_LIMIT`] bytes are waiting or when the owner calls
//! `flush` (the build does every [`FLUSH_EVERY`], and at the end). Two `write`s per call were
//! the largest part of a call's CPU after HTTP; a `kill -9` now loses at most the replies of
//! the last few milliseconds, which a resumed build asks for again.
//!
//! The index holds the first 16 bytes of each key (a sha256 prefix; 2⁻¹²⁸ odds of two
//! colliding) and a 16-byte location, and a read checks the full key in the record's header:
//! at 600k records per journal in a 100k-task build, full keys made the index a third larger.
//! An [`Appender`] writes without reading the index at all, for journals a build only adds to.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{StoreError, io};

const MAGIC: u32 = 0x5344_434a; // "SDCJ"
const HEADER: usize = 4 + 32 + 4 + 4;
/// Larger values are refused on write and treated as corruption on read.
pub const MAX_VALUE: usize = 256 * 1024 * 1024;
/// A write-behind journal writes once this much is waiting.
pub const PENDING_LIMIT: usize = 256 * 1024;
/// How often a build flushes its write-behind journals: what a `kill -9` can lose.
pub const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(5);

#[derive(Clone, Copy, Debug)]
struct Location {
    segment: u32,
    len: u32,
    /// Where the value starts (after its header).
    offset: u64,
}

type Prefix = [u8; 16];

fn prefix(key: &[u8; 32]) -> Prefix {
    let mut p = [0u8; 16];
    p.copy_from_slice(&key[..16]);
    p
}

/// How much an open found, for reports and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    pub segments: usize,
    pub records: usize,
    /// Segments whose tail was unreadable (torn or corrupt) and ignored.
    pub torn_tails: usize,
}

pub struct Journal {
    dir: PathBuf,
    index: HashMap<Prefix, Location>,
    readers: HashMap<u32, File>,
    writer: Segments,
    stats: JournalStats,
}

/// The segment new records go to, opened on the first write.
struct Segments {
    dir: PathBuf,
    /// The open segment and how many bytes of it are written.
    current: Option<(u32, File, u64)>,
    next_segment: u32,
    /// Encoded records not written yet (always empty unless `write_behind`).
    pending: Vec<u8>,
    write_behind: bool,
    /// A failed write leaves the segment's end unknown: every later append and flush fails.
    failed: Option<String>,
}

impl Segments {
    fn new(dir: &Path, segments: &[u32]) -> Segments {
        Segments {
            dir: dir.to_path_buf(),
            current: None,
            next_segment: segments.last().map_or(1, |s| s + 1),
            pending: Vec::new(),
            write_behind: false,
            failed: None,
        }
    }

    fn segment_path(&self, segment: u32) -> PathBuf {
        self.dir.join(format!("{segment:06}.log"))
    }

    fn broken(&self, message: &str) -> StoreError {
        let path = self.current.as_ref().map_or_else(|| self.dir.clone(), |(s, ..)| self.segment_path(*s));
        StoreError::Io { path, source: std::io::Error::other(message.to_string()) }
    }

    /// Appends one record; returns where its value is and whether a new segment was opened.
    fn append(&mut self, key: &[u8; 32], value: &[u8]) -> Result<(Location, bool), StoreError> {
        if let Some(failed) = &self.failed {
            return Err(self.broken(failed));
        }
        if value.len() > MAX_VALUE {
            return Err(StoreError::Io {
                path: self.dir.clone(),
                source: std::io::Error::other(format!("a {}-byte record exceeds the journal's limit", value.len())),
            });
        }
        let opened = self.current.is_none();
        if opened {
            let segment = self.next_segment;
            self.next_segment += 1;
            let path = self.segment_path(segment);
            let file = OpenOptions::new().create_new(true).read(true).append(true).open(&path).map_err(io(&path))?;
            self.current = Some((segment, file, 0));
        }
        let Some((segment, _, written)) = &self.current else { return Err(self.broken("no segment open")) };
        let at = Location {
            segment: *segment,
            len: value.len() as u32,
            offset: written + (self.pending.len() + HEADER) as u64,
        };
        let record = &mut self.pending;
        record.extend_from_slice(&MAGIC.to_le_bytes());
        record.extend_from_slice(key);
        record.extend_from_slice(&(value.len() as u32).to_le_bytes());
        record.extend_from_slice(&checksum(key, value).to_le_bytes());
        record.extend_from_slice(value);
        if !self.write_behind || self.pending.len() >= PENDING_LIMIT {
            self.flush()?;
        }
        Ok((at, opened))
    }

    /// Writes the pending records, in one `write`.
    fn flush(&mut self) -> Result<(), StoreError> {
        if let Some(failed) = &self.failed {
            return Err(self.broken(failed));
        }
        let Some((segment, file, written)) = self.current.as_mut() else { return Ok(()) };
        if self.pending.is_empty() {
            return Ok(());
        }
        let segment = *segment;
        if let Err(e) = file.write_all(&self.pending) {
            self.failed = Some(format!("a write to the journal failed: {e}"));
            return Err(StoreError::Io { path: self.segment_path(segment), source: e });
        }
        *written += self.pending.len() as u64;
        self.pending.clear();
        // A rare huge record does not stay allocated.
        if self.pending.capacity() > 4 * PENDING_LIMIT {
            self.pending = Vec::new();
        }
        Ok(())
    }

    /// The bytes at `offset..offset + len` of the open segment if they are still pending.
    fn pending_at(&self, segment: u32, offset: u64, len: usize) -> Option<&[u8]> {
        let (current, _, written) = self.current.as_ref()?;
        if *current != segment || offset < *written {
            return None;
        }
        let start = usize::try_from(offset - written).ok()?;
        self.pending.get(start..start.checked_add(len)?)
    }
}

impl Drop for Segments {
    /// Records still pending are written; an error here has nowhere to go, and the owner's
    /// explicit `flush` reports it (a build flushes before it packages).
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Adds records to a journal without reading it: no index, no duplicate check (a key written
/// again is a second record, and the first still wins when the journal is read).
pub struct Appender {
    writer: Segments,
}

impl Appender {
    pub fn open(dir: &Path) -> Result<Appender, StoreError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        Ok(Appender { writer: Segments::new(dir, &segments(dir)?) })
    }

    pub fn put(&mut self, key: [u8; 32], value: &[u8]) -> Result<(), StoreError> {
        self.writer.append(&key, value).map(|_| ())
    }

    /// Gathers records in memory until [`Appender::flush`] or [`PENDING_LIMIT`].
    pub fn write_behind(mut self) -> Appender {
        self.writer.write_behind = true;
        self
    }

    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.writer.flush()
    }
}

/// The segment numbers in `dir`, ascending.
fn segments(dir: &Path) -> Result<Vec<u32>, StoreError> {
    let mut segments: Vec<u32> = fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    segments.sort_unstable();
    Ok(segments)
}

impl Journal {
    pub fn open(dir: &Path) -> Result<Journal, StoreError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let segments = segments(dir)?;
        let mut journal = Journal {
            dir: dir.to_path_buf(),
            index: HashMap::new(),
            readers: HashMap::new(),
            writer: Segments::new(dir, &segments),
            stats: JournalStats { segments: segments.len(), ..Default::default() },
        };
        for segment in segments {
            journal.scan(segment)?;
        }
        journal.stats.records = journal.index.len();
        Ok(journal)
    }

    fn segment_path(&self, segment: u32) -> PathBuf {
        self.writer.segment_path(segment)
    }

    /// Gathers new records in memory (reads see them) until [`Journal::flush`] or
    /// [`PENDING_LIMIT`].
    pub fn write_behind(mut self) -> Journal {
        self.writer.write_behind = true;
        self
    }

    /// Writes the records still pending.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.writer.flush()
    }

    fn scan(&mut self, segment: u32) -> Result<(), StoreError> {
        let path = self.segment_path(segment);
        let file = File::open(&path).map_err(io(&path))?;
        let mut reader = BufReader::with_capacity(1 << 20, file.try_clone().map_err(io(&path))?);
        let mut offset = 0u64;
        let mut header = [0u8; HEADER];
        let mut value = Vec::new();
        loop {
            match read_full(&mut reader, &mut header) {
                Ok(0) => break,
                Ok(n) if n < HEADER => {
                    self.stats.torn_tails += 1;
                    break;
                }
                Ok(_) => {}
                Err(e) => return Err(io(&path)(e)),
            }
            let (magic, key, len, crc) = decode_header(&header);
            if magic != MAGIC || len as usize > MAX_VALUE {
                self.stats.torn_tails += 1;
                break;
            }
            value.resize(len as usize, 0);
            match read_full(&mut reader, &mut value) {
                Ok(n) if n == value.len() => {}
                Ok(_) => {
                    self.stats.torn_tails += 1;
                    break;
                }
                Err(e) => return Err(io(&path)(e)),
            }
            if checksum(&key, &value) != crc {
                self.stats.torn_tails += 1;
                break;
            }
            self.index.entry(prefix(&key)).or_insert(Location { segment, offset: offset + HEADER as u64, len });
            offset += (HEADER + value.len()) as u64;
        }
        self.readers.insert(segment, file);
        Ok(())
    }

    pub fn stats(&self) -> JournalStats {
        self.stats
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn contains(&self, key: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(self.read(key, false)?.is_some())
    }

    /// The value stored under `key`, read from disk.
    pub fn get(&self, key: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(key, true)
    }

    /// Reads the record the index points at for `key`'s prefix (its value too, if `value`), and
    /// checks that its header carries the whole key.
    fn read(&self, key: &[u8; 32], value: bool) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(loc) = self.index.get(&prefix(key)) else { return Ok(None) };
        let len = if value { HEADER + loc.len as usize } else { HEADER };
        let start = loc.offset - HEADER as u64;
        let mut buf = if let Some(pending) = self.writer.pending_at(loc.segment, start, len) {
            pending.to_vec()
        } else {
            let file = match (self.readers.get(&loc.segment), &self.writer.current) {
                (Some(f), _) => f,
                (None, Some((segment, f, _))) if *segment == loc.segment => f,
                _ => return Ok(None),
            };
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, start).map_err(io(&self.segment_path(loc.segment)))?;
            buf
        };
        if buf[4..36] != key[..] {
            return Ok(None);
        }
        buf.drain(..HEADER);
        Ok(Some(buf))
    }

    /// Appends `value` under `key` unless the key is already present. Returns whether it wrote.
    pub fn put(&mut self, key: [u8; 32], value: &[u8]) -> Result<bool, StoreError> {
        if self.index.contains_key(&prefix(&key)) {
            if self.contains(&key)? {
                return Ok(false);
            }
            // Another key with the same 128-bit prefix: never expected, and not silently merged.
            return Err(StoreError::Io {
                path: self.dir.clone(),
                source: std::io::Error::other(format!("two keys share the prefix {}", hex::encode(prefix(&key)))),
            });
        }
        let (at, opened) = self.writer.append(&key, value)?;
        if opened {
            self.stats.segments += 1;
        }
        self.index.insert(prefix(&key), at);
        self.stats.records = self.index.len();
        Ok(true)
    }
}

fn decode_header(h: &[u8; HEADER]) -> (u32, [u8; 32], u32, u32) {
    let word = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let mut key = [0u8; 32];
    key.copy_from_slice(&h[4..36]);
    (word(0), key, word(36), word(40))
}

fn checksum(key: &[u8; 32], value: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(key);
    h.update(value);
    h.finalize()
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn records_survive_reopening_and_first_value_wins() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut j = Journal::open(dir.path()).unwrap();
            assert!(j.put(key(1), b"one").unwrap());
            assert!(!j.put(key(1), b"uno").unwrap());
            assert!(j.put(key(2), b"").unwrap());
            assert_eq!(j.get(&key(1)).unwrap().as_deref(), Some(&b"one"[..]));
        }
        let mut j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.len(), 2);
        assert_eq!(j.get(&key(1)).unwrap().as_deref(), Some(&b"one"[..]));
        assert_eq!(j.get(&key(2)).unwrap().as_deref(), Some(&b""[..]));
        // A second session writes to a segment of its own.
        j.put(key(3), b"three").unwrap();
        assert_eq!(j.stats().segments, 2);
        drop(j);
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.len(), 3);
        assert_eq!(j.stats().torn_tails, 0);
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_ignored_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut j = Journal::open(dir.path()).unwrap();
            j.put(key(1), b"kept").unwrap();
            j.put(key(2), b"torn away").unwrap();
        }
        let seg = dir.path().join("000001.log");
        let len = fs::metadata(&seg).unwrap().len();
        OpenOptions::new().write(true).open(&seg).unwrap().set_len(len - 3).unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.len(), 1);
        assert_eq!(j.stats().torn_tails, 1);
        assert_eq!(j.get(&key(1)).unwrap().as_deref(), Some(&b"kept"[..]));
        // The lost record can be written again, to a new segment.
        assert!(j.put(key(2), b"again").unwrap());
        drop(j);
        // Flip a byte in the first record's value: its checksum fails and the segment is empty.
        let mut bytes = fs::read(&seg).unwrap();
        bytes[HEADER] ^= 0xff;
        fs::write(&seg, bytes).unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert!(j.get(&key(1)).unwrap().is_none());
        assert_eq!(j.get(&key(2)).unwrap().as_deref(), Some(&b"again"[..]));
    }

    #[test]
    fn a_key_sharing_only_the_indexed_prefix_is_not_found_and_not_merged() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        let mut other = key(1);
        other[31] = 0;
        j.put(key(1), b"one").unwrap();
        assert_eq!(j.get(&other).unwrap(), None);
        assert!(!j.contains(&other).unwrap());
        assert!(j.put(other, b"two").is_err(), "a prefix collision is an error, never a silent overwrite");
        assert_eq!(j.get(&key(1)).unwrap().as_deref(), Some(&b"one"[..]));
    }

    #[test]
    fn an_appender_adds_segments_the_journal_reads() {
        let dir = tempfile::tempdir().unwrap();
        Journal::open(dir.path()).unwrap().put(key(1), b"one").unwrap();
        {
            let mut a = Appender::open(dir.path()).unwrap();
            a.put(key(2), b"two").unwrap();
            a.put(key(1), b"uno").unwrap();
        }
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.stats().segments, 2);
        assert_eq!(j.len(), 2);
        assert_eq!(j.get(&key(1)).unwrap().as_deref(), Some(&b"one"[..]), "the first value still wins");
        assert_eq!(j.get(&key(2)).unwrap().as_deref(), Some(&b"two"[..]));
    }

    #[test]
    fn a_write_behind_journal_reads_what_is_pending_and_loses_only_that_when_it_dies() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap().write_behind();
        j.put(key(1), b"one").unwrap();
        j.put(key(2), b"two").unwrap();
        assert_eq!(fs::metadata(dir.path().join("000001.log")).unwrap().len(), 0, "nothing written yet");
        assert_eq!(j.get(&key(2)).unwrap().as_deref(), Some(&b"two"[..]), "a pending record is read from memory");
        assert!(!j.put(key(1), b"uno").unwrap(), "a pending key is a present key");
        j.flush().unwrap();
        j.put(key(3), b"three").unwrap();
        assert_eq!(j.get(&key(1)).unwrap().as_deref(), Some(&b"one"[..]), "a flushed record is read from disk");
        assert_eq!(j.get(&key(3)).unwrap().as_deref(), Some(&b"three"[..]));
        // A process killed here never runs drop: what was flushed is kept, the rest is lost.
        std::mem::forget(j);
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!((j.len(), j.stats().torn_tails), (2, 0));
        assert!(j.get(&key(3)).unwrap().is_none());
        drop(j);
        // Dropping writes what is pending, and a full buffer is written without a flush.
        let mut a = Appender::open(dir.path()).unwrap().write_behind();
        a.put(key(4), b"four").unwrap();
        let big = vec![7u8; PENDING_LIMIT];
        a.put(key(5), &big).unwrap();
        let on_disk: u64 = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        assert!(on_disk as usize > PENDING_LIMIT, "the limit forces a write");
        a.put(key(6), b"six").unwrap();
        drop(a);
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.len(), 5);
        assert_eq!(j.get(&key(5)).unwrap(), Some(big));
        assert_eq!(j.get(&key(6)).unwrap().as_deref(), Some(&b"six"[..]));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Cutting a journal anywhere loses only the records at and after the cut.
        #[test]
        fn truncation_keeps_every_whole_record(values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..12), cut in any::<proptest::sample::Index>()) {
            let dir = tempfile::tempdir().unwrap();
            let mut ends = Vec::new();
            {
                let mut j = Journal::open(dir.path()).unwrap();
                let mut end = 0u64;
                for (i, v) in values.iter().enumerate() {
                    j.put(key(i as u8), v).unwrap();
                    end += (HEADER + v.len()) as u64;
                    ends.push(end);
                }
            }
            let seg = dir.path().join("000001.log");
            let total = *ends.last().unwrap();
            let at = cut.index(total as usize + 1) as u64;
            OpenOptions::new().write(true).open(&seg).unwrap().set_len(at).unwrap();
            let j = Journal::open(dir.path()).unwrap();
            let whole = ends.iter().filter(|&&e| e <= at).count();
            prop_assert_eq!(j.len(), whole);
            for (i, v) in values.iter().enumerate().take(whole) {
                prop_assert_eq!(j.get(&key(i as u8)).unwrap(), Some(v.clone()));
            }
        }
    }
}
