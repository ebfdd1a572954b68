//! Ingest: source files → documents, images and chunks, all content-addressed.
//!
//! For each file (in parallel, but each file independently of the others): read the bytes (the
//! document id is their sha256), parse by kind (`notebook`, `mdx`, `pdf`), resolve and
//! normalise every image (`image`), and chunk (`chunk`). Results are then merged and sorted by
//! id, so the output is the same whatever the thread count or completion order. Nothing is
//! dropped silently: a file that cannot be parsed is `skipped` with a typed reason, an image
//! that cannot be found or decoded is `unresolved` with its document and position, and parts
//! a parser left out are `warnings` on their document.

pub mod chunk;
pub mod document;
pub mod image;
pub mod mdx;
pub mod notebook;
pub mod pdf;

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use sdc_compiler::plan::{Plan, PlanChunking, PlanImages};
use sdc_compiler::sources::DocKind;
use serde::Serialize;
use sha2::{Digest, Sha256};

use self::chunk::{Chunk, Piece};
use self::document::{Block, ImageSource, Location, ParseLimits, Parsed, SkipReason, Warning};
use self::image::Normalized;

/// Documents larger than this are skipped rather than read into memory.
pub const MAX_DOCUMENT_BYTES: u64 = 256 * 1024 * 1024;

/// How much text around an image is kept as its context.
const CONTEXT_CHARS: usize = 300;

#[derive(Clone, Debug, Serialize)]
pub struct Document {
    pub id: String,
    pub source: String,
    pub path: String,
    pub kind: DocKind,
    pub bytes: u64,
    pub title: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub blocks: usize,
    /// Ids of the document's resolved images, in document order (repeats removed).
    pub images: Vec<String>,
    pub chunks: usize,
    pub warnings: Vec<Warning>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ImageRecord {
    pub id: String,
    pub width: u32,
    pub height: u32,
    pub format: String,
    /// The normal form, shared with every other holder of this image (never copied).
    #[serde(skip)]
    pub normalized: Arc<Normalized>,
    pub png_bytes: usize,
    /// Every place the image appears, sorted by document id and position.
    pub uses: Vec<ImageUse>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ImageUse {
    pub document_id: String,
    pub source: String,
    pub path: String,
    pub at: Location,
    /// The reference as written, or `embedded <mime>` for bytes inside the document.
    pub reference: String,
    /// Where the file was found, relative to the source root (or `public:` + path under the
    /// public root); `None` for embedded images.
    pub resolved_path: Option<String>,
    pub alt: String,
    pub context: String,
    pub generating_code: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Skipped {
    pub source: String,
    pub path: String,
    pub reason: SkipReason,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Unresolved {
    pub document_id: String,
    pub source: String,
    pub path: String,
    pub at: Location,
    pub reference: String,
    pub reason: String,
}

/// Everything ingest produced, in canonical order.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Ingested {
    /// Sorted by id.
    pub documents: Vec<Document>,
    /// Sorted by id; each image once, however many documents use it.
    pub images: Vec<ImageRecord>,
    /// Sorted by document id, then ordinal.
    pub chunks: Vec<Chunk>,
    pub skipped: Vec<Skipped>,
    pub unresolved: Vec<Unresolved>,
}

/// One source of a plan, with its directories resolved.
#[derive(Clone, Debug)]
pub struct SourceInput {
    pub name: String,
    pub root: PathBuf,
    pub public_root: Option<PathBuf>,
    pub files: Vec<(String, DocKind)>,
}

impl ImageRecord {
    /// The image's canonical PNG bytes; their sha256 is `id`.
    pub fn png(&self) -> &[u8] {
        &self.normalized.png
    }
}

impl SourceInput {
    /// The plan's sources, with paths resolved against the spec's directory.
    pub fn from_plan(plan: &Plan, spec_dir: &Path) -> Vec<SourceInput> {
        plan.sources
            .iter()
            .map(|s| SourceInput {
                name: s.name.clone(),
                root: spec_dir.join(&s.root),
                public_root: s.public_root.as_ref().map(|p| spec_dir.join(p)),
                files: s.files.iter().filter_map(|f| Some((f.path.clone(), f.kind?))).collect(),
            })
            .collect()
    }
}

/// Ingests every file of every source with `threads` worker threads (0 = one per core).
pub fn ingest(sources: &[SourceInput], chunking: &PlanChunking, images: &PlanImages, threads: usize) -> Ingested {
    ingest_cached(sources, chunking, images, threads, None)
}

/// A persistent cache of normalised images, keyed by the sha256 of the raw bytes together with
/// the limits and [`image::NORMAL_FORM`]: normalising is the slow part of ingest, and its result
/// is a pure function of that key.
pub trait NormalCache: Sync {
    fn get(&self, key: &[u8; 32]) -> Option<Normalized>;
    fn put(&self, key: &[u8; 32], normalized: &Normalized);
}

fn normal_key(raw: &[u8], mime: Option<&str>, limits: &PlanImages) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(image::NORMAL_FORM.as_bytes());
    h.update([0]);
    h.update(Sha256::digest(raw));
    h.update(mime.unwrap_or("").as_bytes());
    h.update([0]);
    for n in [limits.max_side, limits.max_pixels, limits.max_bytes] {
        h.update(n.to_le_bytes());
    }
    h.finalize().into()
}

/// Normalised images in the store: the PNG as an object (named by its sha256, the image id)
/// and a `normalized` journal entry from the raw key to the image's id, size and format.
pub struct StoreCache<'s> {
    store: &'s crate::store::Store,
    journal: Option<Mutex<crate::store::Journal>>,
}

#[derive(Serialize, serde::Deserialize)]
struct NormalEntry {
    id: String,
    width: u32,
    height: u32,
    format: String,
}

impl<'s> StoreCache<'s> {
    /// A cache over the store; a store whose journal cannot be opened just caches nothing.
    pub fn new(store: &'s crate::store::Store) -> Self {
        StoreCache { store, journal: store.journal("normalized").ok().map(Mutex::new) }
    }
}

impl NormalCache for StoreCache<'_> {
    fn get(&self, key: &[u8; 32]) -> Option<Normalized> {
        let bytes = self.journal.as_ref()?.lock().ok()?.get(key).ok()??;
        let e: NormalEntry = serde_json::from_slice(&bytes).ok()?;
        let png = self.store.get_object(&e.id).ok()??;
        Some(Normalized { id: e.id, png, width: e.width, height: e.height, format: e.format })
    }

    fn put(&self, key: &[u8; 32], n: &Normalized) {
        let Some(journal) = &self.journal else { return };
        if self.store.put_object(&n.png).is_err() {
            return;
        }
        let entry = NormalEntry { id: n.id.clone(), width: n.width, height: n.height, format: n.format.clone() };
        if let (Ok(bytes), Ok(mut j)) = (serde_json::to_vec(&entry), journal.lock()) {
            let _ = j.put(*key, &bytes);
        }
    }
}

/// [`ingest`] with a persistent cache of normalised images.
pub fn ingest_cached(
    sources: &[SourceInput],
    chunking: &PlanChunking,
    images: &PlanImages,
    threads: usize,
    persistent: Option<&dyn NormalCache>,
) -> Ingested {
    let mut chunks = Vec::new();
    let keep = &mut |batch: Vec<Chunk>| {
        chunks.extend(batch);
        Ok::<(), std::convert::Infallible>(())
    };
    let mut out = match ingest_streaming(sources, chunking, images, threads, persistent, usize::MAX, keep) {
        Ok(out) => out,
        Err(never) => match never {},
    };
    chunks.sort_by(|a, b| (&a.document_id, a.ordinal).cmp(&(&b.document_id, b.ordinal)));
    out.chunks = chunks;
    out
}

/// [`ingest_cached`] for corpora whose chunks should not all be in memory at once: files are
/// ingested `batch` at a time, and each batch's chunks are handed to `sink` (in no particular
/// order) instead of being kept, so the result's `chunks` is empty. Everything else is as
/// [`ingest_cached`] gives it, whatever the batch size.
pub fn ingest_streaming<E>(
    sources: &[SourceInput],
    chunking: &PlanChunking,
    images: &PlanImages,
    threads: usize,
    persistent: Option<&dyn NormalCache>,
    batch: usize,
    sink: &mut dyn FnMut(Vec<Chunk>) -> Result<(), E>,
) -> Result<Ingested, E> {
    let cache = ImageCache { persistent, ..Default::default() };
    let jobs: Vec<(&SourceInput, &str, DocKind)> =
        sources.iter().flat_map(|s| s.files.iter().map(move |(p, k)| (s, p.as_str(), *k))).collect();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().ok();
    let mut results = Vec::with_capacity(jobs.len());
    for part in jobs.chunks(batch.max(1)) {
        let run = || -> Vec<FileResult> {
            part.par_iter().map(|(s, p, k)| ingest_file(s, p, *k, chunking, images, &cache)).collect()
        };
        let mut done = match &pool {
            Some(pool) => pool.install(run),
            None => run(),
        };
        let chunks: Vec<Chunk> = done.iter_mut().flat_map(|r| std::mem::take(&mut r.chunks)).collect();
        sink(chunks)?;
        results.extend(done);
    }
    // Images that no result uses (none today) would otherwise stay alive with the cache.
    drop(cache);
    Ok(merge(results))
}

#[derive(Default)]
struct FileResult {
    document: Option<Document>,
    skipped: Option<Skipped>,
    chunks: Vec<Chunk>,
    images: Vec<(Arc<Normalized>, ImageUse)>,
    unresolved: Vec<Unresolved>,
}

fn merge(results: Vec<FileResult>) -> Ingested {
    let mut out = Ingested::default();
    let mut images: BTreeMap<String, ImageRecord> = BTreeMap::new();
    for r in results {
        out.documents.extend(r.document);
        out.skipped.extend(r.skipped);
        out.unresolved.extend(r.unresolved);
        for (n, usage) in r.images {
            images
                .entry(n.id.clone())
                .or_insert_with(|| ImageRecord {
                    id: n.id.clone(),
                    width: n.width,
                    height: n.height,
                    format: n.format.clone(),
                    png_bytes: n.png.len(),
                    normalized: n.clone(),
                    uses: Vec::new(),
                })
                .uses
                .push(usage);
        }
    }
    out.documents.sort_by(|a, b| (&a.id, &a.source, &a.path).cmp(&(&b.id, &b.source, &b.path)));
    out.skipped.sort();
    out.unresolved.sort();
    out.images = images.into_values().collect();
    for img in &mut out.images {
        img.uses.sort();
    }
    out
}

fn ingest_file(
    source: &SourceInput,
    rel: &str,
    kind: DocKind,
    chunking: &PlanChunking,
    limits: &PlanImages,
    cache: &ImageCache<'_>,
) -> FileResult {
    let skip = |reason: SkipReason| FileResult {
        skipped: Some(Skipped { source: source.name.clone(), path: rel.to_string(), reason }),
        ..Default::default()
    };
    let abs = source.root.join(rel);
    match std::fs::metadata(&abs) {
        Ok(m) if m.len() > MAX_DOCUMENT_BYTES => {
            return skip(SkipReason::TooLarge { bytes: m.len(), limit: MAX_DOCUMENT_BYTES });
        }
        Ok(_) => {}
        Err(e) => return skip(SkipReason::Unreadable { message: e.to_string() }),
    }
    let bytes = match std::fs::read(&abs) {
        Ok(b) => b,
        Err(e) => return skip(SkipReason::Unreadable { message: e.to_string() }),
    };
    let id = hex::encode(Sha256::digest(&bytes));
    let parsed = match parse(kind, &bytes) {
        Ok(p) => p,
        Err(reason) => return skip(reason),
    };
    drop(bytes);
    let doc_dir = abs.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut result = FileResult::default();
    let mut pieces = Vec::with_capacity(parsed.blocks.len());
    let mut doc_images: Vec<String> = Vec::new();
    for (i, block) in parsed.blocks.iter().enumerate() {
        match block {
            Block::Heading { level, text, .. } => pieces.push(Piece::Heading { level: *level, text: text.clone() }),
            Block::Text { text, .. } => pieces.push(Piece::Text(text.clone())),
            Block::Code { language, code, .. } => {
                pieces.push(Piece::Code { language: language.clone(), code: code.clone() })
            }
            Block::Output { text, .. } => pieces.push(Piece::Output(text.clone())),
            Block::Page { .. } => {}
            Block::Image(img) => {
                let (reference, resolved) = match &img.source {
                    ImageSource::Bytes { mime, data } => {
                        (format!("embedded {mime}"), cache.embedded(data, mime, limits).map(|n| (n, None)))
                    }
                    ImageSource::Path(p) => (p.clone(), resolve(source, &doc_dir, p, limits, cache)),
                };
                match resolved {
                    Ok((n, resolved_path)) => {
                        pieces.push(Piece::Image { id: n.id.clone(), produced: img.generating_code.is_some() });
                        if !doc_images.contains(&n.id) {
                            doc_images.push(n.id.clone());
                        }
                        let usage = ImageUse {
                            document_id: id.clone(),
                            source: source.name.clone(),
                            path: rel.to_string(),
                            at: img.at,
                            reference,
                            resolved_path,
                            alt: img.alt.clone(),
                            context: context(&parsed.blocks, i),
                            generating_code: img.generating_code.clone(),
                        };
                        result.images.push((n, usage));
                    }
                    Err(reason) => result.unresolved.push(Unresolved {
                        document_id: id.clone(),
                        source: source.name.clone(),
                        path: rel.to_string(),
                        at: img.at,
                        reference,
                        reason,
                    }),
                }
            }
        }
    }
    result.chunks = chunk::chunk(&id, &pieces, chunking);
    result.document = Some(Document {
        id,
        source: source.name.clone(),
        path: rel.to_string(),
        kind,
        bytes: std::fs::metadata(&abs).map_or(0, |m| m.len()),
        title: parsed.title,
        metadata: parsed.metadata,
        blocks: parsed.blocks.len(),
        images: doc_images,
        chunks: result.chunks.len(),
        warnings: parsed.warnings,
    });
    result
}

/// Parses by kind; a parser panic (a bug, or a library's on hostile input) skips the file.
fn parse(kind: DocKind, bytes: &[u8]) -> Result<Parsed, SkipReason> {
    let limits = ParseLimits::default();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match kind {
        DocKind::Notebook => notebook::parse(bytes, &limits),
        DocKind::Mdx => mdx::parse(bytes, &limits),
        DocKind::Markdown => mdx::parse_markdown(bytes, &limits),
        DocKind::Pdf => pdf::parse(bytes, &limits),
    }));
    outcome.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Err(SkipReason::ParserFailed { message })
    })
}

/// Text just before and after an image block, for transcription prompts.
fn context(blocks: &[Block], at: usize) -> String {
    let text_of = |b: &Block| match b {
        Block::Text { text, .. } | Block::Heading { text, .. } => Some(text.clone()),
        _ => None,
    };
    let before = blocks[..at].iter().rev().find_map(text_of).unwrap_or_default();
    let after = blocks.get(at + 1..).unwrap_or(&[]).iter().find_map(text_of).unwrap_or_default();
    let before: String = {
        let n = before.chars().count();
        before.chars().skip(n.saturating_sub(CONTEXT_CHARS)).collect()
    };
    let after: String = after.chars().take(CONTEXT_CHARS).collect();
    match (before.is_empty(), after.is_empty()) {
        (true, true) => String::new(),
        (false, true) => before,
        (true, false) => after,
        (false, false) => format!("{before}\n…\n{after}"),
    }
}

/// Finds an image file: relative to the document, or root-absolute under the public root; only
/// inside the source root or the public root; URLs are never fetched.
fn resolve(
    source: &SourceInput,
    doc_dir: &Path,
    reference: &str,
    limits: &PlanImages,
    cache: &ImageCache<'_>,
) -> Result<(Arc<Normalized>, Option<String>), String> {
    let r = reference.trim();
    if r.is_empty() {
        return Err("empty image reference".into());
    }
    let lower = r.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") || r.starts_with("//") {
        return Err("remote URL; sdc never fetches images".into());
    }
    if lower.starts_with("data:") {
        return Err("malformed data URI".into());
    }
    let path_part = r.split(['?', '#']).next().unwrap_or(r);
    let decoded = percent_decode(path_part);
    let (base, candidate, label) = if let Some(abs) = decoded.strip_prefix('/') {
        let Some(public) = &source.public_root else {
            return Err("root-absolute path, but the source has no `public_root`".into());
        };
        (public.clone(), clean(&public.join(abs)), "public:")
    } else {
        (source.root.clone(), clean(&doc_dir.join(&decoded)), "")
    };
    let root = clean(&base);
    if !candidate.starts_with(&root) {
        return Err("the path leaves the source directory".into());
    }
    let mut found = None;
    if candidate.is_file() {
        found = Some(candidate.clone());
    } else if candidate.extension().is_none() {
        found = ["svg", "png", "jpg", "jpeg", "gif", "webp", "avif"]
            .iter()
            .map(|ext| candidate.with_extension(ext))
            .find(|p| p.is_file());
    }
    let Some(file) = found else {
        let shown = candidate.strip_prefix(&root).map_or(decoded.clone(), |p| p.display().to_string());
        return Err(format!("file not found: {label}{shown}"));
    };
    let rel = file.strip_prefix(&root).map(|p| format!("{label}{}", p.display())).ok();
    let n = cache.file(&file, limits)?;
    Ok((n, rel))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = ((bytes[i + 1] as char).to_digit(16), (bytes[i + 2] as char).to_digit(16))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

fn clean(path: &Path) -> PathBuf {
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out.iter().collect()
}

/// Normalised images by file path and by embedded-bytes hash, shared by all workers: an image
/// used by many documents is decoded once. Which worker fills an entry first cannot change it.
#[derive(Default)]
struct ImageCache<'p> {
    files: Mutex<HashMap<PathBuf, Outcome>>,
    embedded: Mutex<HashMap<[u8; 32], Outcome>>,
    persistent: Option<&'p dyn NormalCache>,
}

/// A normalised image, or why it could not be used.
type Outcome = Result<Arc<Normalized>, String>;

impl ImageCache<'_> {
    /// Normalises through the persistent cache, when there is one.
    fn normalize(&self, data: &[u8], mime: Option<&str>, limits: &PlanImages) -> Outcome {
        let Some(persistent) = self.persistent else {
            return image::normalize(data, mime, limits).map(Arc::new).map_err(|e| e.to_string());
        };
        let key = normal_key(data, mime, limits);
        if let Some(hit) = persistent.get(&key) {
            return Ok(Arc::new(hit));
        }
        let n = image::normalize(data, mime, limits).map_err(|e| e.to_string())?;
        persistent.put(&key, &n);
        Ok(Arc::new(n))
    }

    fn file(&self, path: &Path, limits: &PlanImages) -> Result<Arc<Normalized>, String> {
        if let Some(hit) = self.files.lock().ok().and_then(|m| m.get(path).cloned()) {
            return hit;
        }
        let computed = (|| {
            let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
            if len > limits.max_bytes {
                return Err(image::ImageError::TooLarge { bytes: len, limit: limits.max_bytes }.to_string());
            }
            let data = std::fs::read(path).map_err(|e| e.to_string())?;
            let mime = path
                .extension()
                .and_then(|e| e.to_str())
                .filter(|e| e.eq_ignore_ascii_case("svg"))
                .map(|_| "image/svg+xml");
            self.normalize(&data, mime, limits)
        })();
        if let Ok(mut m) = self.files.lock() {
            m.insert(path.to_path_buf(), computed.clone());
        }
        computed
    }

    fn embedded(&self, data: &[u8], mime: &str, limits: &PlanImages) -> Result<Arc<Normalized>, String> {
        let key: [u8; 32] = Sha256::digest(data).into();
        if let Some(hit) = self.embedded.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return hit;
        }
        let computed = self.normalize(data, Some(mime), limits);
        if let Ok(mut m) = self.embedded.lock() {
            m.insert(key, computed.clone());
        }
        computed
    }
}
