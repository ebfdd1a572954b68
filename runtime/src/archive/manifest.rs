//! `manifest.json`: the sha256 and size of every other file in the archive.
//!
//! Written in canonical JSON (keys sorted, no whitespace, files sorted by path bytes), so the
//! sha256 of its bytes identifies the dataset: it covers every file's content but not the tar
//! headers (mtime) nor the zstd stream, so neither a different mtime nor a libzstd upgrade
//! changes it. This module does not compute hashes of archive streams; see `digest`.

use serde::{Deserialize, Serialize};

use super::error::ArchiveError;

/// The format this layer writes and reads; bumped whenever the layout or the manifest changes.
pub const FORMAT: &str = "sdc-archive-1";

/// Where the manifest lives inside the archive.
pub const MANIFEST_PATH: &str = "manifest.json";

/// One file of the archive. Fields are declared in key order: the serialised form is canonical.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

// Serialised by hand rather than derived so that key order is fixed here, not by declaration
// order (which reads better with `path` first).
#[derive(Serialize)]
struct EntryOut<'a> {
    bytes: u64,
    path: &'a str,
    sha256: &'a str,
}

#[derive(Serialize)]
struct ManifestOut<'a> {
    files: Vec<EntryOut<'a>>,
    format: &'a str,
    name: &'a str,
    version: &'a str,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub files: Vec<ManifestEntry>,
    pub format: String,
    pub name: String,
    pub version: String,
}

impl Manifest {
    pub fn new(name: &str, version: &str, mut files: Vec<ManifestEntry>) -> Manifest {
        files.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        Manifest { files, format: FORMAT.to_string(), name: name.to_string(), version: version.to_string() }
    }

    /// The canonical bytes (no trailing newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        let out = ManifestOut {
            files: self.files.iter().map(|f| EntryOut { bytes: f.bytes, path: &f.path, sha256: &f.sha256 }).collect(),
            format: &self.format,
            name: &self.name,
            version: &self.version,
        };
        // Serialising plain structs of strings and integers to a Vec cannot fail.
        serde_json::to_vec(&out).unwrap_or_default()
    }

    /// Parses and checks a manifest: known format, sorted unique paths, hex sha256s.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ArchiveError> {
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| ArchiveError::Manifest(e.to_string()))?;
        if manifest.format != FORMAT {
            return Err(ArchiveError::Manifest(format!("format is `{}`, expected `{FORMAT}`", manifest.format)));
        }
        for pair in manifest.files.windows(2) {
            if let [a, b] = pair
                && a.path.as_bytes() >= b.path.as_bytes()
            {
                return Err(ArchiveError::Manifest(format!("`{}` is listed out of order or twice", b.path)));
            }
        }
        if let Some(bad) = manifest.files.iter().find(|f| !is_sha256_hex(&f.sha256)) {
            return Err(ArchiveError::Manifest(format!("`{}` has a malformed sha256", bad.path)));
        }
        if manifest.files.iter().any(|f| f.path == MANIFEST_PATH) {
            return Err(ArchiveError::Manifest(format!("it lists `{MANIFEST_PATH}` itself")));
        }
        Ok(manifest)
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> ManifestEntry {
        ManifestEntry { path: path.to_string(), sha256: "ab".repeat(32), bytes: 3 }
    }

    #[test]
    fn canonical_bytes_and_round_trip() {
        let m = Manifest::new("d", "1.0", vec![entry("b"), entry("README.md"), entry("a")]);
        let text = String::from_utf8(m.to_bytes()).unwrap();
        let h = "ab".repeat(32);
        assert_eq!(
            text,
            format!(
                r#"{{"files":[{{"bytes":3,"path":"README.md","sha256":"{h}"}},{{"bytes":3,"path":"a","sha256":"{h}"}},{{"bytes":3,"path":"b","sha256":"{h}"}}],"format":"sdc-archive-1","name":"d","version":"1.0"}}"#
            )
        );
        assert_eq!(Manifest::parse(text.as_bytes()).unwrap(), m);
    }

    #[test]
    fn parse_refuses_what_sdc_never_writes() {
        let err = |m: &Manifest| Manifest::parse(&m.to_bytes()).unwrap_err().to_string();
        let mut m = Manifest::new("d", "1", vec![entry("a"), entry("b")]);
        m.files.swap(0, 1);
        assert!(err(&m).contains("`a` is listed out of order or twice"));
        let mut m = Manifest::new("d", "1", vec![entry("a")]);
        m.format = "sdc-archive-0".into();
        assert!(err(&m).contains("format is `sdc-archive-0`"));
        let mut m = Manifest::new("d", "1", vec![entry("a")]);
        m.files[0].sha256 = "AB".repeat(32);
        assert!(err(&m).contains("malformed sha256"));
        assert!(Manifest::parse(br#"{"files":[],"format":"sdc-archive-1","name":"d","version":"1","x":1}"#).is_err());
    }
}
