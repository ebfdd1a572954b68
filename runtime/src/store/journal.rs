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
//! Each record is written with a single `write` call from an unbuffered file: a record is either
//! fully in the page cache or torn at the end of the file, never interleaved. There is no
//! `fsync`: surviving a crash of the process (not of the machine) is what a build needs.

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

#[derive(Clone, Copy, Debug)]
struct Location {
    segment: u32,
    offset: u64,
    len: u32,
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
    index: HashMap<[u8; 32], Location>,
    readers: HashMap<u32, File>,
    writer: Option<(u32, File, u64)>,
    next_segment: u32,
    stats: JournalStats,
}

impl Journal {
    pub fn open(dir: &Path) -> Result<Journal, StoreError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut segments: Vec<u32> = fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
            .collect();
        segments.sort_unstable();
        let mut journal = Journal {
            dir: dir.to_path_buf(),
            index: HashMap::new(),
            readers: HashMap::new(),
            writer: None,
            next_segment: segments.last().map_or(1, |s| s + 1),
            stats: JournalStats { segments: segments.len(), ..Default::default() },
        };
        for segment in segments {
            journal.scan(segment)?;
        }
        journal.stats.records = journal.index.len();
        Ok(journal)
    }

    fn segment_path(&self, segment: u32) -> PathBuf {
        self.dir.join(format!("{segment:06}.log"))
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
            self.index.entry(key).or_insert(Location { segment, offset: offset + HEADER as u64, len });
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

    pub fn contains(&self, key: &[u8; 32]) -> bool {
        self.index.contains_key(key)
    }

    /// The value stored under `key`, read from disk.
    pub fn get(&self, key: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(loc) = self.index.get(key) else { return Ok(None) };
        let path = self.segment_path(loc.segment);
        let mut buf = vec![0u8; loc.len as usize];
        let file = match (self.readers.get(&loc.segment), &self.writer) {
            (Some(f), _) => f,
            (None, Some((segment, f, _))) if *segment == loc.segment => f,
            _ => return Ok(None),
        };
        file.read_exact_at(&mut buf, loc.offset).map_err(io(&path))?;
        Ok(Some(buf))
    }

    /// Appends `value` under `key` unless the key is already present. Returns whether it wrote.
    pub fn put(&mut self, key: [u8; 32], value: &[u8]) -> Result<bool, StoreError> {
        if self.index.contains_key(&key) {
            return Ok(false);
        }
        if value.len() > MAX_VALUE {
            return Err(StoreError::Io {
                path: self.dir.clone(),
                source: std::io::Error::other(format!("a {}-byte record exceeds the journal's limit", value.len())),
            });
        }
        if self.writer.is_none() {
            let segment = self.next_segment;
            self.next_segment += 1;
            let path = self.segment_path(segment);
            let file = OpenOptions::new().create_new(true).read(true).append(true).open(&path).map_err(io(&path))?;
            self.writer = Some((segment, file, 0));
            self.stats.segments += 1;
        }
        let Some((segment, file, end)) = self.writer.as_mut() else { return Ok(false) };
        let mut record = Vec::with_capacity(HEADER + value.len());
        record.extend_from_slice(&MAGIC.to_le_bytes());
        record.extend_from_slice(&key);
        record.extend_from_slice(&(value.len() as u32).to_le_bytes());
        record.extend_from_slice(&checksum(&key, value).to_le_bytes());
        record.extend_from_slice(value);
        let path = self.dir.join(format!("{segment:06}.log"));
        file.write_all(&record).map_err(io(&path))?;
        self.index.insert(key, Location { segment: *segment, offset: *end + HEADER as u64, len: value.len() as u32 });
        *end += record.len() as u64;
        self.stats.records = self.index.len();
        Ok(true)
    }

    /// Every key, in no particular order (callers sort what they show).
    pub fn keys(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.index.keys()
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
