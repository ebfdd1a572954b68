//! The container: a ustar stream of regular files inside one zstd frame, written deterministically
//! and read defensively.
//!
//! Writing: entries sorted by path bytes, every header built here (mode 0644, uid/gid 0, empty
//! owner names, the given mtime, no PAX or GNU long-name extensions, so a path is at most 100
//! bytes), zstd single-threaded with checksum and content size. Reading: every entry is checked
//! before its data is touched (path, type, duplicates, size limits), so a hostile archive is
//! refused rather than half-trusted. This module knows nothing about the files' contents.

use std::collections::HashSet;
use std::io::{self, Read, Write};

use tar::{EntryType, Header};

use super::digest::{HashReader, HashWriter};
use super::error::{ArchiveError, UnsafeReason};

/// The longest path a ustar header holds in its `name` field alone.
pub const MAX_PATH_BYTES: usize = 100;

/// Bounds for reading an archive: the guard against decompression bombs and entry floods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest single entry.
    pub entry_bytes: u64,
    /// Largest sum of all entries' sizes.
    pub total_bytes: u64,
    /// Most entries.
    pub entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { entry_bytes: 4 << 30, total_bytes: 16 << 30, entries: 100_000 }
    }
}

/// sha256 of the two streams: the tar bytes and the `.tar.zst` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StreamDigests {
    pub tar_sha256: String,
    pub archive_sha256: String,
}

/// Tars above this size get capped zstd tables (see [`write_tar_zst`]).
const LARGE_TAR: u64 = 16 << 20;

/// One file for [`write_tar_zst`]: its path, its size and how to read its bytes.
pub(crate) struct Entry<'a> {
    pub path: &'a str,
    pub bytes: u64,
    pub open: Box<dyn Fn() -> io::Result<Box<dyn Read + 'a>> + 'a>,
}

/// Writes `entries` (already in path-byte order) as a tar inside a zstd frame, reading each
/// entry's bytes as it goes, so only the compressor's window is in memory.
pub(crate) fn write_tar_zst(
    entries: &[Entry<'_>],
    mtime: u64,
    level: i32,
    out: &mut impl Write,
) -> Result<StreamDigests, ArchiveError> {
    let w = ArchiveError::Write;
    let mut headers = Vec::with_capacity(entries.len());
    for e in entries {
        headers.push(header(e.path, e.bytes, mtime)?);
    }
    // Each entry is a header block plus its data padded to 512 bytes; then two zero blocks.
    let tar_size: u64 = entries.iter().map(|e| 512 + e.bytes.div_ceil(512) * 512).sum::<u64>() + 1024;

    let mut encoder = zstd::Encoder::new(HashWriter::new(out), level).map_err(w)?;
    encoder.include_checksum(true).map_err(w)?;
    encoder.include_contentsize(true).map_err(w)?;
    // The pledge puts the size in the frame header; zstd fails the frame if it is wrong.
    encoder.set_pledged_src_size(Some(tar_size)).map_err(w)?;
    // At high levels zstd sizes its match-finder tables to the input: 94 MB at level 19 for a
    // large archive. Above `LARGE_TAR` the tables are capped at 2^22 entries (about 30 MB in
    // all), which costs a little ratio and keeps a 100k-sample build's memory bounded. Smaller
    // archives never reach the cap, so their bytes are what plain level-N compression gives.
    if tar_size > LARGE_TAR {
        use zstd::stream::raw::CParameter;
        encoder.set_parameter(CParameter::ChainLog(22)).map_err(w)?;
        encoder.set_parameter(CParameter::HashLog(22)).map_err(w)?;
    }
    let mut builder = tar::Builder::new(HashWriter::new(encoder));
    for (header, e) in headers.iter().zip(entries) {
        // A source shorter or longer than its header says would corrupt the stream: read exactly
        // the declared size and refuse anything else.
        let mut data = (e.open)().map_err(w)?.take(e.bytes);
        let mut counted = CountingReader { inner: &mut data, read: 0 };
        builder.append(header, &mut counted).map_err(w)?;
        if counted.read != e.bytes {
            return Err(w(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("`{}` gave {} of its {} bytes", e.path, counted.read, e.bytes),
            )));
        }
    }
    let (encoder, tar_sha256) = builder.into_inner().map_err(w)?.finish();
    let (_, archive_sha256) = encoder.finish().map_err(w)?.finish();
    Ok(StreamDigests { tar_sha256, archive_sha256 })
}

struct CountingReader<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

fn header(path: &str, size: u64, mtime: u64) -> Result<Header, ArchiveError> {
    check_path(path.as_bytes())?;
    if path.len() > MAX_PATH_BYTES {
        return Err(ArchiveError::PathTooLong { path: path.to_string(), bytes: path.len() });
    }
    let mut h = Header::new_ustar();
    let w = ArchiveError::Write;
    h.set_path(path).map_err(w)?;
    h.set_entry_type(EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_username("").map_err(w)?;
    h.set_groupname("").map_err(w)?;
    h.set_mtime(mtime);
    h.set_cksum();
    Ok(h)
}

/// Checks an entry path and returns it as text: relative, UTF-8, `/`-separated, every component
/// a plain name. The same rule applies to writing, so sdc never writes what it would refuse.
pub(crate) fn check_path(bytes: &[u8]) -> Result<String, ArchiveError> {
    let unsafe_entry = |reason| ArchiveError::UnsafeEntry { path: String::from_utf8_lossy(bytes).into_owned(), reason };
    let path = std::str::from_utf8(bytes).map_err(|_| unsafe_entry(UnsafeReason::NotUtf8))?;
    if path.is_empty() {
        return Err(unsafe_entry(UnsafeReason::EmptyPath));
    }
    if path.starts_with('/') {
        return Err(unsafe_entry(UnsafeReason::Absolute));
    }
    if path.contains('\\') {
        return Err(unsafe_entry(UnsafeReason::Backslash));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(unsafe_entry(UnsafeReason::ParentDir));
    }
    if path.split('/').any(|c| c.is_empty() || c == ".") {
        return Err(unsafe_entry(UnsafeReason::NotNormal));
    }
    Ok(path.to_string())
}

/// Walks an archive, calling `visit` with each entry's checked path and a reader of its data,
/// in archive order. Every entry is refused unless it is a regular file with a safe, new path
/// within the limits; the tar stream must end with zeros only. Returns the streams' sha256.
pub(crate) fn walk(
    archive: impl Read,
    limits: &Limits,
    mut visit: impl FnMut(&str, u64, &mut dyn Read) -> Result<(), ArchiveError>,
) -> Result<StreamDigests, ArchiveError> {
    let r = ArchiveError::Read;
    let mut compressed = HashReader::new(archive);
    let decoder = zstd::Decoder::new(&mut compressed).map_err(r)?;
    let mut tar_stream = HashReader::new(decoder);
    {
        let mut tar = tar::Archive::new(&mut tar_stream);
        // Raw: PAX and GNU extension headers come to us as entries (and are refused) instead of
        // being applied silently to the next entry's path.
        let entries = tar.entries().map_err(r)?.raw(true);
        let mut seen = HashSet::new();
        let mut total = 0u64;
        for entry in entries {
            let mut entry = entry.map_err(r)?;
            if seen.len() >= limits.entries {
                return Err(ArchiveError::TooManyEntries { limit: limits.entries });
            }
            // The type first: an extension header's own name (`././@LongLink`) says nothing.
            let kind = entry.header().entry_type();
            if kind != EntryType::Regular {
                let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                return Err(ArchiveError::UnsafeEntry { path, reason: UnsafeReason::NotRegular(kind_name(kind)) });
            }
            let path = check_path(&entry.path_bytes())?;
            let size = entry.header().entry_size().map_err(r)?;
            if size > limits.entry_bytes {
                return Err(ArchiveError::EntryTooLarge { path, bytes: size, limit: limits.entry_bytes });
            }
            total = total.saturating_add(size);
            if total > limits.total_bytes {
                return Err(ArchiveError::TotalTooLarge { limit: limits.total_bytes });
            }
            if !seen.insert(path.clone()) {
                return Err(ArchiveError::UnsafeEntry { path, reason: UnsafeReason::Duplicate });
            }
            visit(&path, size, &mut entry)?;
            // Whatever `visit` left unread is skipped by the next iteration.
        }
    }
    // After the end-of-archive marker only zero padding may follow (GNU tar pads to 10 KiB
    // records); anything else would be data that no manifest accounts for.
    let mut buf = [0u8; 8192];
    let mut trailing = 0u64;
    loop {
        let n = tar_stream.read(&mut buf).map_err(r)?;
        if n == 0 {
            break;
        }
        trailing += n as u64;
        if trailing > 1 << 20 || buf.get(..n).unwrap_or_default().iter().any(|&b| b != 0) {
            return Err(ArchiveError::TrailingData);
        }
    }
    let tar_sha256 = tar_stream.finish();
    // The decoder stops only at the end of its input, so every compressed byte has been hashed
    // (and the frame's checksum checked).
    io::copy(&mut compressed, &mut io::sink()).map_err(r)?;
    Ok(StreamDigests { tar_sha256, archive_sha256: compressed.finish() })
}

fn kind_name(kind: EntryType) -> &'static str {
    match kind {
        EntryType::Regular => "regular file",
        EntryType::Link => "hard link",
        EntryType::Symlink => "symbolic link",
        EntryType::Char => "character device",
        EntryType::Block => "block device",
        EntryType::Directory => "directory",
        EntryType::Fifo => "fifo",
        EntryType::Continuous => "contiguous file",
        EntryType::GNULongName => "GNU long-name extension",
        EntryType::GNULongLink => "GNU long-link extension",
        EntryType::GNUSparse => "GNU sparse file",
        EntryType::XGlobalHeader => "PAX global header",
        EntryType::XHeader => "PAX extended header",
        _ => "entry of unknown type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn paths_are_checked_alike_for_writing_and_reading() {
        for good in ["a", "data/train-00000-of-00001.parquet", "README.md", "a.b/c..d"] {
            assert_eq!(check_path(good.as_bytes()).unwrap(), good);
        }
        let reason = |p: &[u8]| match check_path(p) {
            Err(ArchiveError::UnsafeEntry { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(reason(b"/abs"), UnsafeReason::Absolute);
        assert_eq!(reason(b"../evil"), UnsafeReason::ParentDir);
        assert_eq!(reason(b"a/../../evil"), UnsafeReason::ParentDir);
        assert_eq!(reason(b"./a"), UnsafeReason::NotNormal);
        assert_eq!(reason(b"a//b"), UnsafeReason::NotNormal);
        assert_eq!(reason(b"dir/"), UnsafeReason::NotNormal);
        assert_eq!(reason(b"a\\..\\b"), UnsafeReason::Backslash);
        assert_eq!(reason(b""), UnsafeReason::EmptyPath);
        assert_eq!(reason(b"caf\xe9"), UnsafeReason::NotUtf8);
        assert!(matches!(header(&"x".repeat(101), 0, 0), Err(ArchiveError::PathTooLong { bytes: 101, .. })));
        assert!(header(&"x".repeat(100), 0, 0).is_ok());
    }

    #[test]
    fn pledged_size_matches_the_tar_stream() {
        // The pledge is checked by zstd itself: a wrong size fails `finish`.
        let files: BTreeMap<String, Vec<u8>> =
            [("a".to_string(), vec![]), ("b".to_string(), vec![7; 513]), ("c".to_string(), vec![1; 512])].into();
        let entries: Vec<Entry<'_>> = files
            .iter()
            .map(|(path, data)| Entry {
                path,
                bytes: data.len() as u64,
                open: Box::new(move || Ok(Box::new(data.as_slice()) as Box<dyn Read>)),
            })
            .collect();
        let mut out = Vec::new();
        write_tar_zst(&entries, 1, 3, &mut out).unwrap();
        drop(entries);
        let size = zstd::zstd_safe::get_frame_content_size(&out).unwrap();
        assert_eq!(size, Some(512 + 512 + 1024 + 512 + 512 + 1024));
        // Frame header descriptor (the byte after the magic number): bit 2 is the checksum flag.
        assert_eq!(out[..4], [0x28, 0xb5, 0x2f, 0xfd]);
        assert_ne!(out[4] & 0b100, 0, "content checksum on");
        let mut seen = Vec::new();
        walk(out.as_slice(), &Limits::default(), |p, size, r| {
            let mut data = Vec::new();
            r.read_to_end(&mut data).map_err(ArchiveError::Read)?;
            assert_eq!(data.len() as u64, size);
            seen.push((p.to_string(), data));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, files.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn an_entry_shorter_than_its_size_is_an_error() {
        let data = vec![1u8; 10];
        let entries =
            [Entry { path: "a", bytes: 11, open: Box::new(|| Ok(Box::new(data.as_slice()) as Box<dyn Read>)) }];
        let err = write_tar_zst(&entries, 1, 3, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("gave 10 of its 11 bytes"), "{err}");
    }
}
