//! PDF → blocks, with lopdf 0.42 for the objects and our own content-stream interpreter for
//! the text and the images.
//!
//! - Loading: `Document::load_mem`. lopdf 0.42 has no tolerant or object-scan mode (its
//!   `LoadOptions` only carry a password, an object filter and `strict`), so when the
//!   cross-reference table is damaged (loading fails, no pages are found, or objects present in
//!   the file were not located) we rebuild it: scan the bytes for `N G obj` headers, append a
//!   fresh `xref` table and `trailer` (with `/Root`, `/Info`, `/Encrypt` and `/ID` found in the
//!   old trailer text, or the object holding `/Catalog`) and load the result. Objects inside
//!   object streams come back too, because lopdf expands every `/ObjStm` it loads.
//!   Documents lopdf can open with the empty user password are decrypted by it and read;
//!   documents that need a password are [`SkipReason::PdfEncrypted`].
//! - Text and images: [`interp`] runs each page's content stream once (text and graphics
//!   state, forms recursively) with fonts from [`font`] (built once per document, ToUnicode
//!   and encodings decoded by [`cmap`] and [`tables`]), and yields every glyph with its
//!   position (from the text rendering matrix) and size, and every image XObject drawn with
//!   where. Glyphs become segments (runs on one baseline), segments are
//!   ordered by a recursive XY cut (whitespace bands across the region first, then column
//!   gutters wide enough to be text columns), each leaf region is split into lines and lines
//!   into paragraphs (size changes, first-line indents), headings (size against the document's
//!   median glyph size) and code (runs of lines in one monospaced font, recognised by equal
//!   glyph advances; indentation is rebuilt from the offsets).
//! - Images: JPEG data passes through, 8-bit (or 1/2/4-bit grey and indexed) raw pixels are
//!   re-encoded as PNG, with a soft mask as alpha. Each image is placed before the first text
//!   region below its centre that overlaps it horizontally. Inline images (`BI … EI`) are
//!   ignored: they are small by design.
//! - lopdf unwraps and indexes in places; every call into it (and, as a safety net, our own
//!   interpreter) runs under [`guarded`], which turns a panic into a warning or
//!   [`SkipReason::PdfUnreadable`] and keeps the panic message off stderr (see there).

mod cmap;
mod content;
mod font;
mod inflate;
mod interp;
mod tables;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};
use lopdf::{Dictionary, Document, Object, ObjectId, Stream};

use super::document::{Block, ImageRef, ImageSource, Location, ParseLimits, Parsed, SkipReason, Warning};

/// Images smaller than this on both sides are skipped (counted in one warning).
const MIN_IMAGE_SIDE: i64 = 32;
/// Declared pixel count above which an image is not decoded at all.
const MAX_IMAGE_PIXELS: u64 = 50_000_000;
/// Glyphs kept per page; the rest of a pathological page is dropped.
const MAX_GLYPHS_PER_PAGE: usize = 250_000;
/// Headings are short lines.
const MAX_HEADING_CHARS: usize = 120;
/// Form XObjects nested deeper than this are not searched for images.
const MAX_FORM_DEPTH: u32 = 8;

pub fn parse(bytes: &[u8], limits: &ParseLimits) -> Result<Parsed, SkipReason> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(SkipReason::Empty);
    }
    let (doc, mut warnings) = load(bytes)?;
    if doc.is_encrypted() {
        return Err(SkipReason::PdfEncrypted);
    }
    let pages = match guarded(|| doc.get_pages()) {
        Ok(pages) => pages,
        Err(panic) => return Err(unreadable(format!("the page tree cannot be read ({panic})"))),
    };
    if pages.is_empty() {
        return Err(unreadable("no pages found (the catalog or page tree is missing or damaged)"));
    }

    let mut parsed = Parsed::default();
    let info = guarded(|| document_info(&doc)).unwrap_or_default();
    parsed.metadata.insert("pages".to_string(), pages.len().to_string());
    for (key, value) in &info {
        parsed.metadata.insert(key.clone(), value.clone());
    }

    let mut sizes: Vec<f64> = Vec::new();
    let mut layouts = Vec::with_capacity(pages.len());
    let mut tiny_images = 0usize;
    let mut cache = interp::DocCache::default();
    for (&number, &page_id) in &pages {
        let at = Location::page(number);
        let page_top = guarded(|| page_top(&doc, page_id)).unwrap_or(792.0);
        let mut out = interp::PageOutput::default();
        if let Err(panic) = guarded(|| interp::page(&doc, &mut cache, page_id, page_top, &mut out)) {
            warnings.push(Warning::new(
                at,
                format!("the PDF library panicked while reading the text of page {number} ({panic}); kept the text read before"),
            ));
            // Whatever the panic interrupted is not to be trusted on the next page.
            cache = interp::DocCache::default();
        }
        for problem in &out.problems {
            warnings
                .push(Warning::new(at, format!("the text of page {number} could not be read completely: {problem}")));
        }
        if out.over_budget {
            warnings.push(Warning::new(
                at,
                format!("page {number} draws too much (forms drawn too often or content too long); the rest of it was skipped"),
            ));
        }
        sizes.extend(out.glyphs.iter().filter(|g| !g.is_blank()).map(|g| g.size));
        let leaves = layout(&out.glyphs);
        let uses = image_uses(&doc, page_id, out);
        let images = page_images(&doc, uses, number, limits, &mut warnings, &mut tiny_images);
        layouts.push(PageLayout { number, leaves, images });
    }
    if tiny_images > 0 {
        let s = if tiny_images == 1 { "" } else { "s" };
        warnings.push(Warning::new(
            Location::default(),
            format!("{tiny_images} image{s} smaller than {MIN_IMAGE_SIDE}×{MIN_IMAGE_SIDE} pixels skipped"),
        ));
    }
    if sizes.is_empty() {
        warnings.push(Warning::new(Location::default(), "no text found (a scanned PDF without a text layer?)"));
    }

    let body = median(&mut sizes);
    let mut first_h1 = None;
    for page in layouts {
        emit_page(page, body, &mut parsed.blocks, &mut first_h1);
    }
    parsed.title = info.get("title").cloned().or(first_h1);
    parsed.warnings = warnings;
    Ok(parsed)
}

fn unreadable(message: impl Into<String>) -> SkipReason {
    SkipReason::PdfUnreadable { message: message.into() }
}

// ---------------------------------------------------------------------------------------------
// Panics

thread_local! {
    /// How many [`guarded`] calls are active on this thread; the panic hook is silent while > 0.
    static QUIET: Cell<u32> = const { Cell::new(0) };
    /// Where the last silenced panic happened (`crate/src/file.rs:line`).
    static LAST_PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

static INSTALL_HOOK: Once = Once::new();

/// Runs `f`, turning a panic into `Err(message)`.
///
/// The panic hook is process-wide, so it is not swapped per call (that races with other
/// threads). Instead a hook is installed once that forwards to the previous hook unless the
/// panicking thread is inside `guarded`, in which case it only records where the panic
/// happened. Panics anywhere else are reported exactly as before.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    INSTALL_HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) > 0 {
                let at = info.location().map(|l| {
                    let file: Vec<&str> = l.file().rsplit(['/', '\\']).take(3).collect();
                    let file: Vec<&str> = file.into_iter().rev().collect();
                    format!("{}:{}", file.join("/"), l.line())
                });
                LAST_PANIC_AT.with(|last| *last.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(q.get() + 1));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(q.get().saturating_sub(1)));
    result.map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        match LAST_PANIC_AT.with(|last| last.borrow_mut().take()) {
            Some(at) => format!("panic at {at}: {message}"),
            None => format!("panic: {message}"),
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Loading and xref recovery

fn load(bytes: &[u8]) -> Result<(Document, Vec<Warning>), SkipReason> {
    let first: Result<Document, String> = match guarded(|| Document::load_mem(bytes)) {
        Ok(Ok(doc)) => Ok(doc),
        Ok(Err(lopdf::Error::Decryption(_) | lopdf::Error::InvalidPassword)) => {
            return Err(SkipReason::PdfEncrypted);
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(format!("loading failed ({panic})")),
    };
    match first {
        Ok(doc) => {
            if doc.is_encrypted() {
                return Ok((doc, Vec::new()));
            }
            let pages = guarded(|| doc.get_pages().len()).unwrap_or(0);
            let missing = unlocated_objects(bytes, &doc);
            if pages > 0 && missing == 0 {
                return Ok((doc, Vec::new()));
            }
            match rebuild_and_load(bytes) {
                Ok((rebuilt, found)) => {
                    let rebuilt_pages = guarded(|| rebuilt.get_pages().len()).unwrap_or(0);
                    let better =
                        rebuilt_pages > pages || (rebuilt_pages == pages && rebuilt.objects.len() > doc.objects.len());
                    if better {
                        let warning = Warning::new(
                            Location::default(),
                            format!(
                                "the cross-reference table is damaged ({missing} objects in the file were not \
                                 located); rebuilt it from {found} objects found by scanning the file"
                            ),
                        );
                        Ok((rebuilt, vec![warning]))
                    } else {
                        Ok((doc, Vec::new()))
                    }
                }
                Err(_) => Ok((doc, Vec::new())),
            }
        }
        Err(message) => match rebuild_and_load(bytes) {
            Ok((rebuilt, found)) => {
                let warning = Warning::new(
                    Location::default(),
                    format!(
                        "the cross-reference table is damaged ({message}); rebuilt it from {found} objects found by \
                             scanning the file"
                    ),
                );
                Ok((rebuilt, vec![warning]))
            }
            Err(reason) if pdf_body(bytes).is_none() => {
                Err(unreadable(format!("not a PDF (no %PDF- header): {message}; {reason}")))
            }
            Err(reason) => Err(unreadable(format!("{message}; rebuilding the cross-reference table failed: {reason}"))),
        },
    }
}

/// Objects whose header is in the file but that the loaded document lacks (cross-reference
/// streams aside, which need not list themselves).
fn unlocated_objects(bytes: &[u8], doc: &Document) -> usize {
    let body = pdf_body(bytes).unwrap_or(bytes);
    let loaded: HashSet<u32> = doc.objects.keys().map(|id| id.0).collect();
    scan_objects(body)
        .iter()
        .filter(|(n, _)| !loaded.contains(n))
        .filter(|(_, (_, offset))| {
            let offset = *offset;
            let head = body.get(offset..offset.saturating_add(256).min(body.len())).unwrap_or_default();
            find(head, b"/XRef", 0).is_none()
        })
        .count()
}

/// The file from its `%PDF-` header on (lopdf ignores what precedes it, and so do offsets).
fn pdf_body(bytes: &[u8]) -> Option<&[u8]> {
    let start = find(bytes, b"%PDF-", 0)?;
    bytes.get(start..)
}

/// Rebuilds the cross-reference table by scanning and loads the result. Returns the document
/// and how many objects the scan found.
fn rebuild_and_load(bytes: &[u8]) -> Result<(Document, usize), String> {
    let (rebuilt, found) = rebuild_xref(bytes)?;
    match guarded(|| Document::load_mem(&rebuilt)) {
        Ok(Ok(doc)) => Ok((doc, found)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(panic),
    }
}

/// The file with a fresh `xref` table and `trailer` appended, built from the `N G obj` headers
/// found in it, and how many objects were found.
fn rebuild_xref(bytes: &[u8]) -> Result<(Vec<u8>, usize), String> {
    use std::fmt::Write;

    let body = pdf_body(bytes).ok_or("no %PDF- header")?;
    let objects = scan_objects(body);
    if objects.is_empty() {
        return Err("no objects found".into());
    }
    let exists = |&(n, g): &(u32, u16)| objects.get(&n).is_some_and(|o| o.0 == g);
    let root = find_last_ref(body, b"/Root")
        .filter(exists)
        .or_else(|| find_catalog(body, &objects))
        .ok_or_else(|| format!("{} objects found but no document catalog", objects.len()))?;
    let info = find_last_ref(body, b"/Info").filter(exists);
    let encrypt = find_last_ref(body, b"/Encrypt").filter(exists);
    let id = find_id_array(body);

    let mut table = String::with_capacity(objects.len() * 20 + 64);
    table.push_str("\nxref\n");
    let ids: Vec<u32> = objects.keys().copied().collect();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids.get(j + 1).copied() == ids.get(j).and_then(|n| n.checked_add(1)) {
            j += 1;
        }
        let (Some(first), Some(run)) = (ids.get(i), ids.get(i..=j)) else { break };
        let _ = writeln!(table, "{first} {}", run.len());
        for n in run {
            if let Some((generation, offset)) = objects.get(n) {
                let _ = write!(table, "{offset:010} {generation:05} n\r\n");
            }
        }
        i = j + 1;
    }
    let size = ids.last().map_or(1, |&n| u64::from(n) + 1);
    let _ = write!(table, "trailer\n<< /Size {size} /Root {} {} R", root.0, root.1);
    if let Some((n, g)) = info {
        let _ = write!(table, " /Info {n} {g} R");
    }
    if let Some((n, g)) = encrypt {
        let _ = write!(table, " /Encrypt {n} {g} R");
    }
    let mut out = Vec::with_capacity(body.len() + table.len() + 64);
    out.extend_from_slice(body);
    let xref_at = out.len() + 1; // after the leading newline of `table`
    out.extend_from_slice(table.as_bytes());
    if let Some(id) = id {
        out.extend_from_slice(b" /ID ");
        out.extend_from_slice(id);
    }
    out.extend_from_slice(format!(" >>\nstartxref\n{xref_at}\n%%EOF\n").as_bytes());
    Ok((out, objects.len()))
}

fn is_pdf_space(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\r' | b'\t' | b'\x0c' | b'\0')
}

fn is_pdf_delimiter(c: u8) -> bool {
    matches!(c, b'<' | b'>' | b'[' | b']' | b'(' | b')' | b'/' | b'%' | b'{' | b'}')
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

/// `N G obj` headers: object number → (generation, offset of `N`). Later headers win, as later
/// incremental updates do.
fn scan_objects(body: &[u8]) -> BTreeMap<u32, (u16, usize)> {
    let mut found = BTreeMap::new();
    let mut from = 0;
    while let Some(p) = find(body, b"obj", from) {
        from = p + 3;
        if body.get(p + 3).is_some_and(|&c| !is_pdf_space(c) && !is_pdf_delimiter(c)) {
            continue;
        }
        if let Some((number, generation, start)) = header_before(body, p) {
            found.insert(number, (generation, start));
        }
    }
    found
}

/// Parses `N G ` backwards from the `obj` keyword at `p`.
fn header_before(body: &[u8], p: usize) -> Option<(u32, u16, usize)> {
    let skip_space = |mut k: usize| {
        while k > 0 && body.get(k - 1).is_some_and(|&c| is_pdf_space(c)) {
            k -= 1;
        }
        k
    };
    let skip_digits = |mut k: usize, max: usize| {
        let end = k;
        while k > 0 && end - k < max && body.get(k - 1).is_some_and(u8::is_ascii_digit) {
            k -= 1;
        }
        k
    };
    let gen_end = skip_space(p);
    if gen_end == p {
        return None;
    }
    let gen_start = skip_digits(gen_end, 5);
    if gen_start == gen_end {
        return None;
    }
    let num_end = skip_space(gen_start);
    if num_end == gen_start {
        return None;
    }
    let num_start = skip_digits(num_end, 10);
    if num_start == num_end {
        return None;
    }
    if num_start > 0 && body.get(num_start - 1).is_some_and(|&c| !is_pdf_space(c) && !is_pdf_delimiter(c)) {
        return None;
    }
    let number: u32 = std::str::from_utf8(body.get(num_start..num_end)?).ok()?.parse().ok()?;
    let generation: u16 = std::str::from_utf8(body.get(gen_start..gen_end)?).ok()?.parse().ok()?;
    Some((number, generation, num_start))
}

/// The last `key N G R` in the file (the newest trailer's entry).
fn find_last_ref(body: &[u8], key: &[u8]) -> Option<(u32, u16)> {
    let mut candidates = Vec::new();
    let mut from = 0;
    while let Some(p) = find(body, key, from) {
        from = p + key.len();
        candidates.push(from);
    }
    candidates.into_iter().rev().find_map(|at| parse_ref(body.get(at..)?))
}

/// `N G R` after optional white space.
fn parse_ref(s: &[u8]) -> Option<(u32, u16)> {
    let mut k = 0;
    let next_number = |k: &mut usize, max: usize| -> Option<u64> {
        while s.get(*k).is_some_and(|&c| is_pdf_space(c)) {
            *k += 1;
        }
        let start = *k;
        while s.get(*k).is_some_and(u8::is_ascii_digit) && *k - start < max {
            *k += 1;
        }
        std::str::from_utf8(s.get(start..*k)?).ok()?.parse().ok()
    };
    let number = u32::try_from(next_number(&mut k, 10)?).ok()?;
    let generation = u16::try_from(next_number(&mut k, 5)?).ok()?;
    while s.get(k).is_some_and(|&c| is_pdf_space(c)) {
        k += 1;
    }
    (s.get(k) == Some(&b'R')).then_some((number, generation))
}

/// The newest object whose text mentions `/Catalog`.
fn find_catalog(body: &[u8], objects: &BTreeMap<u32, (u16, usize)>) -> Option<(u32, u16)> {
    objects
        .iter()
        .filter(|(_, (_, offset))| {
            let offset = *offset;
            let end = find(body, b"endobj", offset).unwrap_or(body.len()).min(offset.saturating_add(65_536));
            body.get(offset..end).is_some_and(|text| find(text, b"/Catalog", 0).is_some())
        })
        .max_by_key(|(_, (_, offset))| *offset)
        .map(|(&n, &(g, _))| (n, g))
}

/// The raw `[ … ]` after the last `/ID` key, if short and closed.
fn find_id_array(body: &[u8]) -> Option<&[u8]> {
    let mut last = None;
    let mut from = 0;
    while let Some(p) = find(body, b"/ID", from) {
        from = p + 3;
        let rest = body.get(from..)?;
        let skip = rest.iter().take_while(|&&c| is_pdf_space(c)).count();
        if rest.get(skip) == Some(&b'[') {
            let open = from + skip;
            let close = body.get(open..).and_then(|r| r.iter().take(512).position(|&c| c == b']'));
            if let Some(close) = close {
                last = body.get(open..=open + close);
            }
        }
    }
    last
}

// ---------------------------------------------------------------------------------------------
// Document information

fn deref<'a>(doc: &'a Document, obj: &'a Object) -> Option<&'a Object> {
    doc.dereference(obj).ok().map(|(_, o)| o)
}

fn document_info(doc: &Document) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(info) = doc.trailer.get(b"Info").ok().and_then(|o| deref(doc, o)).and_then(|o| o.as_dict().ok()) else {
        return out;
    };
    for (key, name) in [(&b"Title"[..], "title"), (b"Author", "author"), (b"Producer", "producer")] {
        let value = info.get(key).ok().and_then(|o| deref(doc, o)).and_then(|o| lopdf::decode_text_string(o).ok());
        if let Some(value) = value {
            let value: String = value.trim_start_matches('\u{feff}').chars().filter(|c| !c.is_control()).collect();
            let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
            if !value.is_empty() {
                out.insert(name.to_string(), value);
            }
        }
    }
    out
}

/// An inherited page attribute (`Resources`, `MediaBox`), dereferenced.
fn inherited<'a>(doc: &'a Document, page: &'a Dictionary, key: &[u8]) -> Option<&'a Object> {
    let mut node = page;
    for _ in 0..32 {
        if let Ok(value) = node.get(key) {
            return deref(doc, value);
        }
        node = node.get(b"Parent").ok().and_then(|p| deref(doc, p)).and_then(|p| p.as_dict().ok())?;
    }
    None
}

fn number(obj: &Object) -> Option<f64> {
    obj.as_float().ok().map(f64::from).filter(|v| v.is_finite())
}

/// The top edge of the page's media box, to turn PDF's upward y into a downward one.
fn page_top(doc: &Document, page_id: ObjectId) -> f64 {
    let page = doc.get_dictionary(page_id).ok();
    let media = page.and_then(|p| inherited(doc, p, b"MediaBox")).and_then(|m| m.as_array().ok());
    media
        .and_then(|m| {
            let y0 = m.get(1).and_then(number)?;
            let y1 = m.get(3).and_then(number)?;
            Some(y0.max(y1))
        })
        .unwrap_or(792.0)
}

// ---------------------------------------------------------------------------------------------
// Text: glyphs

#[derive(Clone, Debug)]
struct Glyph {
    x: f64,
    /// Baseline, downwards from the top of the page.
    y: f64,
    advance: f64,
    size: f64,
    text: GlyphText,
    /// Drawn at more than 45° from horizontal.
    rotated: bool,
    /// The advance is a guess (the font gave no width).
    estimated: bool,
}

impl Glyph {
    fn is_blank(&self) -> bool {
        self.text.chars().all(char::is_whitespace)
    }
}

/// A glyph's text, inline when short (nearly always: one character, a ligature spelled out),
/// so that the glyphs of a page cost no allocation each.
#[derive(Clone, Debug)]
enum GlyphText {
    Inline { len: u8, bytes: [u8; 22] },
    Heap(Box<str>),
}

impl GlyphText {
    fn new(text: &str) -> GlyphText {
        let mut bytes = [0u8; 22];
        match (bytes.get_mut(..text.len()), u8::try_from(text.len())) {
            (Some(slot), Ok(len)) => {
                slot.copy_from_slice(text.as_bytes());
                GlyphText::Inline { len, bytes }
            }
            _ => GlyphText::Heap(text.into()),
        }
    }
}

impl std::ops::Deref for GlyphText {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            // Always valid: copied from a `str` whole.
            GlyphText::Inline { len, bytes } => {
                bytes.get(..usize::from(*len)).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or_default()
            }
            GlyphText::Heap(text) => text,
        }
    }
}

/// Ligatures spelled out, white space made plain, control characters and U+FFFD dropped.
fn clean_glyph(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\u{fb00}' => out.push_str("ff"),
            '\u{fb01}' => out.push_str("fi"),
            '\u{fb02}' => out.push_str("fl"),
            '\u{fb03}' => out.push_str("ffi"),
            '\u{fb04}' => out.push_str("ffl"),
            '\u{fb05}' | '\u{fb06}' => out.push_str("st"),
            '\u{a0}' | '\t' | '\n' | '\r' | '\u{2002}'..='\u{200a}' => out.push(' '),
            // U+FFFD, byte order marks and private-use code points (bracket pieces of TeX's
            // math extension font and the like) carry no text.
            '\u{fffd}' | '\u{feff}' | '\u{e000}'..='\u{f8ff}' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Text: layout

/// A run of glyphs on one baseline, or a run of rotated glyphs.
#[derive(Clone, Debug)]
struct Seg {
    text: String,
    x0: f64,
    x1: f64,
    y: f64,
    size: f64,
    top: f64,
    bottom: f64,
    /// The advance every glyph shares, when they all share one (a monospaced font).
    mono: Option<f64>,
    glyphs: usize,
}

impl Seg {
    fn start(g: &Glyph) -> Seg {
        Seg {
            text: g.text.to_string(),
            x0: g.x,
            x1: g.x + g.advance,
            y: g.y,
            size: g.size,
            top: 0.0,
            bottom: 0.0,
            mono: (!g.estimated && g.text.chars().count() == 1).then_some(g.advance),
            glyphs: 1,
        }
    }

    fn finish(mut self, rotated: bool) -> Option<Seg> {
        // Runs of spaces only mean something in monospaced text.
        let text = if self.mono.is_some() {
            self.text.trim().to_string()
        } else {
            self.text.split_whitespace().collect::<Vec<_>>().join(" ")
        };
        if text.is_empty() {
            return None;
        }
        self.text = text;
        if !rotated {
            self.top = self.y - 0.8 * self.size;
            self.bottom = self.y + 0.2 * self.size;
        }
        Some(self)
    }
}

#[derive(Clone, Debug)]
struct Line {
    text: String,
    x0: f64,
    x1: f64,
    y: f64,
    size: f64,
    /// The shared glyph advance when the whole line is in one monospaced font.
    mono: Option<f64>,
    glyphs: usize,
}

/// A region the XY cut could not divide further: its lines in order.
#[derive(Clone, Debug)]
struct Leaf {
    lines: Vec<Line>,
    top: f64,
    x0: f64,
    x1: f64,
}

/// Gap (in em) that starts a new word inside a segment.
const WORD_GAP: f64 = 0.15;

fn segments(glyphs: &[Glyph]) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut cur: Option<Seg> = None;
    let mut rot: Option<Seg> = None;
    for g in glyphs {
        let blank = g.is_blank();
        if g.rotated {
            if let Some(s) = cur.take().and_then(|s| s.finish(false)) {
                out.push(s);
            }
            match rot.as_mut() {
                Some(r) if (g.x - r.x1).abs().max((g.y - r.bottom).abs()) <= 3.0 * g.size.max(r.size) => {
                    r.text.push_str(if blank { " " } else { &g.text });
                    r.x0 = r.x0.min(g.x - g.size);
                    r.x1 = r.x1.max(g.x);
                    r.top = r.top.min(g.y - g.size);
                    r.bottom = r.bottom.max(g.y);
                    r.y = r.top + 0.8 * r.size;
                }
                _ => {
                    if let Some(s) = rot.take().and_then(|s| s.finish(true)) {
                        out.push(s);
                    }
                    if !blank {
                        let mut s = Seg::start(g);
                        s.x0 = g.x - g.size;
                        s.x1 = g.x;
                        s.top = g.y - g.size;
                        s.bottom = g.y;
                        s.y = s.top + 0.8 * s.size;
                        s.mono = None;
                        rot = Some(s);
                    }
                }
            }
            continue;
        }
        if let Some(s) = rot.take().and_then(|s| s.finish(true)) {
            out.push(s);
        }
        let continues = cur.as_ref().is_some_and(|s| {
            let m = s.size.max(g.size);
            (g.y - s.y).abs() <= 0.3 * m && g.x >= s.x1 - 0.6 * m && g.x <= s.x1 + 0.8 * m
        });
        if continues && let Some(s) = cur.as_mut() {
            if blank {
                if !s.text.ends_with(' ') {
                    s.text.push(' ');
                }
            } else {
                let gap = g.x - s.x1;
                let same_advance =
                    |a: f64| !g.estimated && g.text.chars().count() == 1 && (g.advance - a).abs() <= 0.02 * a;
                s.mono = s.mono.filter(|&a| same_advance(a));
                if gap > WORD_GAP * s.size.max(g.size) {
                    // In monospaced text a gap is a number of spaces.
                    let spaces = match s.mono {
                        Some(a) if a > 0.0 => ((gap / a).round() as usize).clamp(1, 40),
                        _ => 1,
                    };
                    let have = s.text.len() - s.text.trim_end_matches(' ').len();
                    s.text.extend(std::iter::repeat_n(' ', spaces.saturating_sub(have)));
                }
                s.text.push_str(&g.text);
                s.size = s.size.max(g.size);
                s.glyphs += 1;
            }
            s.x1 = s.x1.max(g.x + g.advance);
            continue;
        }
        if let Some(s) = cur.take().and_then(|s| s.finish(false)) {
            out.push(s);
        }
        if !blank {
            cur = Some(Seg::start(g));
        }
    }
    out.extend(cur.and_then(|s| s.finish(false)));
    out.extend(rot.and_then(|s| s.finish(true)));
    out
}

fn layout(glyphs: &[Glyph]) -> Vec<Leaf> {
    let segs = segments(glyphs);
    if segs.is_empty() {
        return Vec::new();
    }
    let mut sizes: Vec<f64> = segs.iter().map(|s| s.size).collect();
    let unit = median(&mut sizes).max(1.0);
    let x0 = segs.iter().map(|s| s.x0).fold(f64::INFINITY, f64::min);
    let x1 = segs.iter().map(|s| s.x1).fold(f64::NEG_INFINITY, f64::max);
    let mut regions = Vec::new();
    xy_cut(segs, Cut { unit, page_width: x1 - x0 }, 0, &mut regions);
    regions.into_iter().filter_map(|region| leaf(region, unit)).collect()
}

/// Splits `segs` into groups separated by gaps of at least `min_gap` along one axis.
fn split_on_gaps(mut segs: Vec<Seg>, span: fn(&Seg) -> (f64, f64), min_gap: f64) -> Vec<Vec<Seg>> {
    segs.sort_by(|a, b| span(a).0.total_cmp(&span(b).0));
    let mut groups: Vec<Vec<Seg>> = Vec::new();
    let mut end = f64::NEG_INFINITY;
    for s in segs {
        let (start, stop) = span(&s);
        match groups.last_mut() {
            Some(group) if start - end < min_gap => group.push(s),
            _ => groups.push(vec![s]),
        }
        end = end.max(stop);
    }
    groups
}

/// Rows of text in a group: baselines more than half an em apart.
fn distinct_rows(segs: &[Seg], unit: f64) -> usize {
    let mut ys: Vec<f64> = segs.iter().map(|s| s.y).collect();
    ys.sort_by(f64::total_cmp);
    let mut rows = 0;
    let mut last = f64::NEG_INFINITY;
    for y in ys {
        if y - last > 0.5 * unit {
            rows += 1;
            last = y;
        }
    }
    rows
}

#[derive(Clone, Copy)]
struct Cut {
    /// The page's median glyph size.
    unit: f64,
    /// How wide the page's text is.
    page_width: f64,
}

/// Recursive XY cut: whitespace bands across the whole region first (top to bottom), then
/// gutters between text columns (left to right). Gutters only count when every column is at
/// least a fifth of the page's text wide and has two rows or more, so that tables (narrow
/// columns, or single rows) stay row by row.
fn xy_cut(segs: Vec<Seg>, cut: Cut, depth: u32, out: &mut Vec<Vec<Seg>>) {
    let unit = cut.unit;
    if segs.len() <= 1 || depth > 48 {
        out.push(segs);
        return;
    }
    let mut bands = split_on_gaps(segs, |s| (s.top, s.bottom), 0.6 * unit);
    if bands.len() > 1 {
        for band in bands {
            xy_cut(band, cut, depth + 1, out);
        }
        return;
    }
    let segs = bands.pop().unwrap_or_default();
    let mut strips = split_on_gaps(segs, |s| (s.x0, s.x1), 1.0 * unit);
    let columns = strips.len() > 1
        && strips.iter().all(|strip| {
            let sx0 = strip.iter().map(|s| s.x0).fold(f64::INFINITY, f64::min);
            let sx1 = strip.iter().map(|s| s.x1).fold(f64::NEG_INFINITY, f64::max);
            sx1 - sx0 >= 0.2 * cut.page_width && distinct_rows(strip, unit) >= 2
        });
    if columns {
        for strip in strips {
            xy_cut(strip, cut, depth + 1, out);
        }
        return;
    }
    let segs: Vec<Seg> = if strips.len() == 1 { strips.pop().unwrap_or_default() } else { strips.concat() };
    out.push(segs);
}

/// Lines of a region: segments sharing a baseline (superscripts and subscripts included),
/// left to right.
fn leaf(mut segs: Vec<Seg>, unit: f64) -> Option<Leaf> {
    segs.sort_by(|a, b| a.y.total_cmp(&b.y).then(a.x0.total_cmp(&b.x0)));
    let mut rows: Vec<(f64, f64, Vec<Seg>)> = Vec::new(); // (baseline, size, segments)
    for s in segs {
        match rows.last_mut() {
            Some((y, size, row)) if s.y - *y <= 0.5 * size.max(s.size) => {
                if s.size > *size {
                    *y = s.y;
                    *size = s.size;
                }
                row.push(s);
            }
            _ => rows.push((s.y, s.size, vec![s])),
        }
    }
    let lines: Vec<Line> = rows
        .into_iter()
        .filter_map(|(y, size, mut row)| {
            row.sort_by(|a, b| a.x0.total_cmp(&b.x0));
            let first_mono = row.first().and_then(|s| s.mono);
            let mono = first_mono
                .filter(|&a| row.iter().all(|s| s.mono.is_some_and(|b| (b - a).abs() <= 0.02 * a)) && a > 0.0);
            let mut text = String::new();
            let mut end = f64::NEG_INFINITY;
            for s in &row {
                let gap = s.x0 - end;
                if !text.is_empty() && gap > WORD_GAP * size.max(unit * 0.5) {
                    let spaces = mono.map_or(1, |a| ((gap / a).round() as usize).clamp(1, 40));
                    text.extend(std::iter::repeat_n(' ', spaces));
                }
                text.push_str(&s.text);
                end = end.max(s.x1);
            }
            let x0 = row.iter().map(|s| s.x0).fold(f64::INFINITY, f64::min);
            let glyphs = row.iter().map(|s| s.glyphs).sum();
            (!text.is_empty()).then_some(Line { text, x0, x1: end, y, size, mono, glyphs })
        })
        .collect();
    let first = lines.first()?;
    let top = first.y - 0.8 * first.size;
    let x0 = lines.iter().map(|l| l.x0).fold(f64::INFINITY, f64::min);
    let x1 = lines.iter().map(|l| l.x1).fold(f64::NEG_INFINITY, f64::max);
    Some(Leaf { lines, top, x0, x1 })
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mid = values.len() / 2;
    let (_, m, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    *m
}

// ---------------------------------------------------------------------------------------------
// Text: blocks

struct PageLayout {
    number: u32,
    leaves: Vec<Leaf>,
    images: Vec<PlacedImage>,
}

struct PlacedImage {
    rect: Option<Rect>,
    image: ImageRef,
}

#[derive(Clone, Copy, Debug)]
struct Rect {
    x0: f64,
    x1: f64,
    top: f64,
    bottom: f64,
}

fn heading_level(line: &Line, body: f64) -> Option<u8> {
    if body <= 0.0 || line.text.chars().count() >= MAX_HEADING_CHARS || !line.text.chars().any(char::is_alphabetic) {
        return None;
    }
    let ratio = line.size / body;
    if ratio >= 1.5 {
        Some(1)
    } else if ratio >= 1.15 {
        Some(2)
    } else {
        None
    }
}

/// Appends a line to a paragraph, joining words hyphenated across the line break.
fn append_line(buf: &mut String, next: &str) {
    let next = next.split_whitespace().collect::<Vec<_>>().join(" ");
    let next = next.as_str();
    if buf.is_empty() {
        buf.push_str(next);
        return;
    }
    if buf.ends_with('\u{ad}') {
        buf.pop();
        buf.push_str(next);
        return;
    }
    let mut tail = buf.chars().rev();
    let hyphenated = tail.next() == Some('-') && tail.next().is_some_and(char::is_alphabetic);
    if hyphenated && next.chars().next().is_some_and(char::is_lowercase) {
        buf.pop();
        buf.push_str(next);
        return;
    }
    buf.push(' ');
    buf.push_str(next);
}

fn emit_page(page: PageLayout, body: f64, blocks: &mut Vec<Block>, first_h1: &mut Option<String>) {
    let PageLayout { number, leaves, images } = page;
    blocks.push(Block::Page { number });
    // Images go before the first region below their centre that overlaps them horizontally.
    let mut slots: Vec<Vec<PlacedImage>> = (0..=leaves.len()).map(|_| Vec::new()).collect();
    for image in images {
        let slot = image
            .rect
            .and_then(|r| {
                let centre = (r.top + r.bottom) / 2.0;
                leaves.iter().position(|l| l.top >= centre && l.x0 < r.x1 && l.x1 > r.x0)
            })
            .unwrap_or(leaves.len());
        if let Some(s) = slots.get_mut(slot) {
            s.push(image);
        }
    }
    let mut leaves = leaves.into_iter();
    for slot in slots {
        for image in slot {
            blocks.push(Block::Image(image.image));
        }
        if let Some(leaf) = leaves.next() {
            emit_leaf(&leaf, number, body, blocks, first_h1);
        }
    }
}

/// Runs of monospaced lines sharing one advance become code when one of them is 8 glyphs or
/// longer, they contain a letter (a column of figures stays text) and they are two lines or
/// more or the whole region (a code cell in a table row stays text); the rest is prose.
fn emit_leaf(leaf: &Leaf, page: u32, body: f64, blocks: &mut Vec<Block>, first_h1: &mut Option<String>) {
    let lines = leaf.lines.as_slice();
    let code_advance = |line: &Line| line.mono.filter(|_| heading_level(line, body).is_none());
    let mut prose_start = 0;
    let mut i = 0;
    while let Some(line) = lines.get(i) {
        let Some(advance) = code_advance(line) else {
            i += 1;
            continue;
        };
        let mut j = i + 1;
        while lines.get(j).and_then(code_advance).is_some_and(|a| (a - advance).abs() <= 0.02 * advance) {
            j += 1;
        }
        let run = lines.get(i..j).unwrap_or_default();
        let alone = run.len() >= 2 || run.len() == lines.len();
        if alone && run.iter().any(|l| l.glyphs >= 8) && run.iter().any(|l| l.text.chars().any(char::is_alphabetic)) {
            emit_prose(lines.get(prose_start..i).unwrap_or_default(), leaf, page, body, blocks, first_h1);
            emit_code(run, advance, page, blocks);
            prose_start = j;
        }
        i = j;
    }
    emit_prose(lines.get(prose_start..).unwrap_or_default(), leaf, page, body, blocks, first_h1);
}

/// Monospaced lines as code, indentation rebuilt from their offsets. Code continuing a code
/// block (the region was split at a blank line) joins it.
fn emit_code(run: &[Line], advance: f64, page: u32, blocks: &mut Vec<Block>) {
    let left = run.iter().map(|l| l.x0).fold(f64::INFINITY, f64::min);
    let code: Vec<String> = run
        .iter()
        .map(|l| {
            let indent = ((l.x0 - left) / advance).round().clamp(0.0, 80.0) as usize;
            format!("{}{}", " ".repeat(indent), l.text)
        })
        .collect();
    let code = code.join("\n");
    if let Some(Block::Code { code: previous, .. }) = blocks.last_mut() {
        previous.push_str("\n\n");
        previous.push_str(&code);
    } else {
        blocks.push(Block::Code { language: None, code, at: Location::page(page) });
    }
}

fn emit_prose(
    lines: &[Line],
    leaf: &Leaf,
    page: u32,
    body: f64,
    blocks: &mut Vec<Block>,
    first_h1: &mut Option<String>,
) {
    let at = Location::page(page);
    let right = leaf.x1;
    let left = leaf.x0;
    let mut para = String::new();
    let mut para_size = 0.0;
    let mut heading: Option<(u8, String, usize)> = None;
    let mut prev: Option<&Line> = None;

    let flush_para = |para: &mut String, blocks: &mut Vec<Block>| {
        let text = para.replace('\u{ad}', "");
        let text = text.trim();
        if !text.is_empty() {
            blocks.push(Block::Text { text: text.to_string(), at });
        }
        para.clear();
    };
    let flush_heading =
        |heading: &mut Option<(u8, String, usize)>, blocks: &mut Vec<Block>, h1: &mut Option<String>| {
            if let Some((level, text, _)) = heading.take() {
                let text = text.trim().to_string();
                if level == 1 && h1.is_none() {
                    *h1 = Some(text.clone());
                }
                blocks.push(Block::Heading { level, text, at });
            }
        };

    for line in lines {
        // A bare number (a page number, usually) never joins a paragraph.
        let bare_number = line.text.len() <= 4 && line.text.chars().all(|c| c.is_ascii_digit());
        if bare_number || prev.is_some_and(|p| p.text.len() <= 4 && p.text.chars().all(|c| c.is_ascii_digit())) {
            flush_para(&mut para, blocks);
        }
        match heading_level(line, body) {
            Some(level) => {
                flush_para(&mut para, blocks);
                let continues = matches!(&heading, Some((l, _, n)) if *l == level && *n < 3)
                    && prev.is_some_and(|p| (line.y - p.y) <= 2.0 * line.size && heading_level(p, body) == Some(level));
                if continues && let Some((_, text, n)) = heading.as_mut() {
                    append_line(text, &line.text);
                    *n += 1;
                } else {
                    flush_heading(&mut heading, blocks, first_h1);
                    let mut text = String::new();
                    append_line(&mut text, &line.text);
                    heading = Some((level, text, 1));
                }
            }
            None => {
                flush_heading(&mut heading, blocks, first_h1);
                if !para.is_empty() {
                    let size_change = (line.size / para_size - 1.0).abs() > 0.12;
                    let indented = prev.is_some_and(|p| {
                        let em = line.size;
                        line.x0 > left + 0.8 * em
                            && line.x0 < left + 6.0 * em
                            && p.x0 <= left + 0.5 * em
                            && p.x1 < right - 1.0 * em
                    });
                    if size_change || indented {
                        flush_para(&mut para, blocks);
                    }
                }
                if para.is_empty() {
                    para_size = line.size;
                }
                append_line(&mut para, &line.text);
            }
        }
        prev = Some(line);
    }
    flush_para(&mut para, blocks);
    flush_heading(&mut heading, blocks, first_h1);
}

// ---------------------------------------------------------------------------------------------
// Images: where a page draws them

type Matrix = [f64; 6];

const IDENTITY: Matrix = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];

/// `a × b` for PDF matrices `[a b c d e f]` (row vectors: `cm` makes `CTM' = M × CTM`).
fn multiply(a: Matrix, b: Matrix) -> Matrix {
    [
        a[0] * b[0] + a[1] * b[2],
        a[0] * b[1] + a[1] * b[3],
        a[2] * b[0] + a[3] * b[2],
        a[2] * b[1] + a[3] * b[3],
        a[4] * b[0] + a[5] * b[2] + b[4],
        a[4] * b[1] + a[5] * b[3] + b[5],
    ]
}

fn matrix(operands: &[Object]) -> Option<Matrix> {
    let mut m = [0.0; 6];
    if operands.len() != 6 {
        return None;
    }
    for (slot, operand) in m.iter_mut().zip(operands) {
        *slot = number(operand)?;
    }
    Some(m)
}

/// The images a page draws, each once, in drawing order, with where they are drawn. When a
/// content stream could not be decoded and nothing was seen drawn, the image XObjects of the
/// page's resources, unplaced.
fn image_uses(
    doc: &Document,
    page_id: ObjectId,
    out: interp::PageOutput,
) -> Result<Vec<(ObjectId, Option<Rect>)>, String> {
    let mut seen = HashSet::new();
    let mut uses: Vec<(ObjectId, Option<Rect>)> =
        out.images.into_iter().filter(|(id, _)| seen.insert(*id)).map(|(id, rect)| (id, Some(rect))).collect();
    if uses.is_empty() && !out.problems.is_empty() {
        uses = guarded(|| listed_images(doc, page_id))?;
    }
    Ok(uses)
}

fn listed_images(doc: &Document, page_id: ObjectId) -> Vec<(ObjectId, Option<Rect>)> {
    let Ok(page) = doc.get_dictionary(page_id) else { return Vec::new() };
    let xobjects = inherited(doc, page, b"Resources")
        .and_then(|r| r.as_dict().ok())
        .and_then(|r| r.get(b"XObject").ok())
        .and_then(|o| deref(doc, o))
        .and_then(|o| o.as_dict().ok());
    let Some(xobjects) = xobjects else { return Vec::new() };
    let mut uses = Vec::new();
    for (_, value) in xobjects.iter() {
        let Ok(id) = value.as_reference() else { continue };
        let is_image = doc
            .get_object(id)
            .and_then(Object::as_stream)
            .and_then(|s| s.dict.get(b"Subtype").and_then(Object::as_name))
            .is_ok_and(|s| s == b"Image");
        if is_image && !uses.iter().any(|(u, _)| *u == id) {
            uses.push((id, None));
        }
    }
    uses
}

fn page_images(
    doc: &Document,
    uses: Result<Vec<(ObjectId, Option<Rect>)>, String>,
    number: u32,
    limits: &ParseLimits,
    warnings: &mut Vec<Warning>,
    tiny: &mut usize,
) -> Vec<PlacedImage> {
    let at = Location::page(number);
    let uses = match uses {
        Ok(uses) => uses,
        Err(panic) => {
            warnings.push(Warning::new(at, format!("the images of page {number} could not be listed ({panic})")));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (id, rect) in uses {
        let result = guarded(|| extract_image(doc, id, limits))
            .unwrap_or_else(|panic| Err(ImageSkip::Problem { label: "?".into(), reason: panic }));
        match result {
            Ok(Extracted { source, note }) => {
                if let Some(note) = note {
                    warnings.push(Warning::new(at, format!("image {} {} R on page {number}: {note}", id.0, id.1)));
                }
                let image = ImageRef {
                    source,
                    alt: format!("Figure on page {number}"),
                    title: None,
                    generating_code: None,
                    at,
                };
                out.push(PlacedImage { rect, image });
            }
            Err(ImageSkip::Tiny) => *tiny += 1,
            Err(ImageSkip::Problem { label, reason }) => warnings.push(Warning::new(
                at,
                format!("image {} {} R ({label}) on page {number} skipped: {reason}", id.0, id.1),
            )),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Images: decoding

struct Extracted {
    source: ImageSource,
    /// Something handled approximately (a soft mask dropped).
    note: Option<String>,
}

enum ImageSkip {
    Tiny,
    /// `label` names the size and filters.
    Problem {
        label: String,
        reason: String,
    },
}

#[derive(Clone, Debug)]
enum ColourSpace {
    Gray,
    Rgb,
    Indexed { base_components: usize, palette: Vec<u8> },
}

fn int(doc: &Document, dict: &Dictionary, key: &[u8]) -> Option<i64> {
    dict.get(key).ok().and_then(|o| deref(doc, o)).and_then(|o| o.as_i64().ok())
}

fn filter_names(doc: &Document, dict: &Dictionary) -> Vec<String> {
    let Some(filter) = dict.get(b"Filter").ok().and_then(|o| deref(doc, o)) else { return Vec::new() };
    match filter {
        Object::Name(name) => vec![String::from_utf8_lossy(name).into_owned()],
        Object::Array(items) => items
            .iter()
            .filter_map(|o| deref(doc, o).and_then(|o| o.as_name().ok()))
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect(),
        _ => Vec::new(),
    }
}

fn colour_space(doc: &Document, obj: Option<&Object>, depth: u32) -> Result<ColourSpace, String> {
    let Some(obj) = obj.and_then(|o| deref(doc, o)) else { return Err("no colour space".into()) };
    let name_of = |o: &Object| o.as_name().map(|n| String::from_utf8_lossy(n).into_owned()).unwrap_or_default();
    match obj {
        Object::Name(_) => match name_of(obj).as_str() {
            "DeviceGray" | "G" | "CalGray" => Ok(ColourSpace::Gray),
            "DeviceRGB" | "RGB" | "CalRGB" => Ok(ColourSpace::Rgb),
            other => Err(format!("{other} colour space is not supported")),
        },
        Object::Array(items) => {
            let family = items.first().and_then(|o| deref(doc, o)).map(name_of).unwrap_or_default();
            match family.as_str() {
                "CalGray" => Ok(ColourSpace::Gray),
                "CalRGB" => Ok(ColourSpace::Rgb),
                "ICCBased" => {
                    let n = items
                        .get(1)
                        .and_then(|o| deref(doc, o))
                        .and_then(|o| o.as_stream().ok())
                        .and_then(|s| int(doc, &s.dict, b"N"));
                    match n {
                        Some(1) => Ok(ColourSpace::Gray),
                        Some(3) => Ok(ColourSpace::Rgb),
                        Some(n) => Err(format!("ICCBased colour space with {n} components is not supported")),
                        None => Err("ICCBased colour space without /N".into()),
                    }
                }
                "Indexed" | "I" if depth == 0 => {
                    let base_components = match colour_space(doc, items.get(1), depth + 1)? {
                        ColourSpace::Gray => 1,
                        ColourSpace::Rgb => 3,
                        ColourSpace::Indexed { .. } => return Err("nested indexed colour space".into()),
                    };
                    let hival = items.get(2).and_then(|o| deref(doc, o)).and_then(|o| o.as_i64().ok()).unwrap_or(255);
                    let entries = usize::try_from(hival.clamp(0, 255)).unwrap_or(255) + 1;
                    let mut palette = match items.get(3).and_then(|o| deref(doc, o)) {
                        Some(Object::String(bytes, _)) => bytes.clone(),
                        Some(Object::Stream(s)) => s.decompressed_content().map_err(|e| format!("palette: {e}"))?,
                        _ => return Err("indexed colour space without a palette".into()),
                    };
                    palette.resize(entries * base_components, 0);
                    Ok(ColourSpace::Indexed { base_components, palette })
                }
                other => Err(format!("{other} colour space is not supported")),
            }
        }
        _ => Err("malformed colour space".into()),
    }
}

/// Samples as bytes, one per component: 1/2/4-bit values unpacked (scaled to 0–255 when
/// `scale`, kept as indices otherwise). `None` when `data` is too short.
fn unpack(data: &[u8], width: usize, height: usize, components: usize, bpc: usize, scale: bool) -> Option<Vec<u8>> {
    let per_row = width.checked_mul(components)?;
    if bpc == 8 {
        let total = per_row.checked_mul(height)?;
        return data.get(..total).map(<[u8]>::to_vec);
    }
    let stride = per_row.checked_mul(bpc)?.div_ceil(8);
    if data.len() < stride.checked_mul(height)? {
        return None;
    }
    let max = (1u16 << bpc) - 1;
    let mut out = Vec::with_capacity(per_row * height);
    for row in data.chunks(stride.max(1)).take(height) {
        for i in 0..per_row {
            let bit = i * bpc;
            let byte = u16::from(*row.get(bit / 8)?);
            let shift = 8 - bpc - bit % 8;
            let value = (byte >> shift) & max;
            out.push(if scale { u8::try_from(value * 255 / max).unwrap_or(255) } else { value as u8 });
        }
    }
    Some(out)
}

fn is_inverted_decode(doc: &Document, dict: &Dictionary) -> bool {
    let decode = dict.get(b"Decode").ok().and_then(|o| deref(doc, o)).and_then(|o| o.as_array().ok());
    decode.is_some_and(|d| {
        d.len() >= 2 && d.first().and_then(number) == Some(1.0) && d.get(1).and_then(number) == Some(0.0)
    })
}

/// An 8-bit alpha channel from `/SMask`, `None` when there is none or it is fully opaque.
fn soft_mask(doc: &Document, dict: &Dictionary, width: usize, height: usize) -> Result<Option<Vec<u8>>, String> {
    let Some(obj) = dict.get(b"SMask").ok().and_then(|o| deref(doc, o)) else { return Ok(None) };
    let Ok(mask) = obj.as_stream() else { return Ok(None) };
    let (mw, mh) = (int(doc, &mask.dict, b"Width"), int(doc, &mask.dict, b"Height"));
    if mw != i64::try_from(width).ok() || mh != i64::try_from(height).ok() {
        return Err(format!("its soft mask is {}×{}, not the image's size", mw.unwrap_or(0), mh.unwrap_or(0)));
    }
    let filters = filter_names(doc, &mask.dict);
    if let Some(f) = filters.iter().find(|f| !matches!(f.as_str(), "FlateDecode" | "LZWDecode" | "ASCII85Decode")) {
        return Err(format!("its soft mask uses {f}"));
    }
    let bpc = int(doc, &mask.dict, b"BitsPerComponent").unwrap_or(8);
    let bpc =
        usize::try_from(bpc).ok().filter(|b| matches!(b, 1 | 2 | 4 | 8)).ok_or("its soft mask has an odd depth")?;
    let data = mask.decompressed_content().map_err(|e| format!("its soft mask cannot be decoded: {e}"))?;
    let mut alpha = unpack(&data, width, height, 1, bpc, true).ok_or("its soft mask is truncated")?;
    if is_inverted_decode(doc, &mask.dict) {
        alpha.iter_mut().for_each(|a| *a = 255 - *a);
    }
    Ok(if alpha.iter().all(|&a| a == 255) { None } else { Some(alpha) })
}

fn extract_image(doc: &Document, id: ObjectId, limits: &ParseLimits) -> Result<Extracted, ImageSkip> {
    let problem = |label: &str, reason: String| ImageSkip::Problem { label: label.to_string(), reason };
    let stream = doc.get_object(id).and_then(Object::as_stream).map_err(|e| problem("?", e.to_string()))?;
    let dict = &stream.dict;
    let filters = filter_names(doc, dict);
    let filter_label = if filters.is_empty() { "unfiltered".to_string() } else { filters.join("+") };
    let (Some(w), Some(h)) = (int(doc, dict, b"Width"), int(doc, dict, b"Height")) else {
        return Err(problem(&filter_label, "no /Width or /Height".into()));
    };
    let label = format!("{w}×{h}, {filter_label}");
    if w <= 0 || h <= 0 || w > 1_000_000 || h > 1_000_000 {
        return Err(problem(&label, "invalid size".into()));
    }
    if w < MIN_IMAGE_SIDE && h < MIN_IMAGE_SIDE {
        return Err(ImageSkip::Tiny);
    }
    if stream.content.len() > limits.max_part_bytes {
        let reason = format!("{} bytes of data, over the {}-byte limit", stream.content.len(), limits.max_part_bytes);
        return Err(problem(&label, reason));
    }
    if dict.get(b"ImageMask").and_then(Object::as_bool).unwrap_or(false) {
        return Err(problem(&label, "a 1-bit stencil mask, not a picture".into()));
    }
    let (width, height) = (usize::try_from(w).unwrap_or(0), usize::try_from(h).unwrap_or(0));

    let source = match filters.last().map(String::as_str) {
        Some("DCTDecode" | "DCT") => {
            let data = if filters.len() == 1 {
                stream.content.clone()
            } else {
                // Undo the filters applied before DCT (usually ASCII85 or ASCIIHex).
                let mut outer = Stream::new(dict.clone(), stream.content.clone());
                let before: Vec<Object> =
                    filters.iter().take(filters.len() - 1).map(|f| Object::Name(f.as_bytes().to_vec())).collect();
                outer.dict.set("Filter", Object::Array(before));
                outer.dict.remove(b"DecodeParms");
                outer.decompressed_content().map_err(|e| problem(&label, format!("cannot be decoded: {e}")))?
            };
            if !data.starts_with(&[0xff, 0xd8]) {
                return Err(problem(&label, "the DCTDecode data is not a JPEG file".into()));
            }
            ImageSource::Bytes { mime: "image/jpeg".to_string(), data }
        }
        Some(
            f @ ("JPXDecode" | "JBIG2Decode" | "CCITTFaxDecode" | "CCF" | "RunLengthDecode" | "RL" | "ASCIIHexDecode"
            | "AHx"),
        ) => {
            return Err(problem(&label, format!("{f} images are not supported")));
        }
        _ => {
            let space = colour_space(doc, dict.get(b"ColorSpace").ok(), 0).map_err(|e| problem(&label, e))?;
            let bpc = int(doc, dict, b"BitsPerComponent").unwrap_or(8);
            let supported = match space {
                ColourSpace::Rgb => bpc == 8,
                ColourSpace::Gray | ColourSpace::Indexed { .. } => matches!(bpc, 1 | 2 | 4 | 8),
            };
            if !supported {
                return Err(problem(&label, format!("{bpc} bits per component are not supported")));
            }
            let components = if matches!(space, ColourSpace::Rgb) { 3 } else { 1 };
            if (w as u64) * (h as u64) > MAX_IMAGE_PIXELS {
                return Err(problem(&label, format!("more than {MAX_IMAGE_PIXELS} pixels")));
            }
            if let Some(source) = pass_through(doc, stream, &filters, &space, bpc, (width, height)) {
                return finish(source, None, limits, &label);
            }
            let data = stream.decompressed_content().map_err(|e| problem(&label, format!("cannot be decoded: {e}")))?;
            let bpc = usize::try_from(bpc).unwrap_or(8);
            let scale = !matches!(space, ColourSpace::Indexed { .. });
            let mut samples = unpack(&data, width, height, components, bpc, scale)
                .ok_or_else(|| problem(&label, "the pixel data is truncated".into()))?;
            let (pixels, channels) = match space {
                ColourSpace::Gray => {
                    if is_inverted_decode(doc, dict) {
                        samples.iter_mut().for_each(|s| *s = 255 - *s);
                    }
                    (samples, 1)
                }
                ColourSpace::Rgb => (samples, 3),
                ColourSpace::Indexed { base_components, palette } => {
                    let mut pixels = Vec::with_capacity(samples.len() * base_components);
                    for &i in &samples {
                        let start = usize::from(i) * base_components;
                        match palette.get(start..start + base_components) {
                            Some(colour) => pixels.extend_from_slice(colour),
                            None => pixels.extend(std::iter::repeat_n(0, base_components)),
                        }
                    }
                    (pixels, base_components)
                }
            };
            let (alpha, note) = match soft_mask(doc, dict, width, height) {
                Ok(alpha) => (alpha, None),
                Err(reason) => (None, Some(format!("drawn without transparency: {reason}"))),
            };
            let png = encode_png(pixels, alpha, channels, w, h).map_err(|e| problem(&label, e))?;
            return finish(ImageSource::Bytes { mime: "image/png".to_string(), data: png }, note, limits, &label);
        }
    };
    finish(source, None, limits, &label)
}

/// Flate-compressed 8-bit grey or RGB samples, wrapped as they are (never inflated) in a file
/// the image normaliser reads: a PNG when the PDF applied PNG predictors (its rows then carry
/// PNG's filter bytes), a Deflate TIFF otherwise. `None` when the image needs decoding here:
/// other filters or depths, a palette, an inverted `/Decode`, or a soft mask that is not fully
/// opaque (an opaque one, common in plotting libraries' output, is dropped as decoding would).
fn pass_through(
    doc: &Document,
    stream: &Stream,
    filters: &[String],
    space: &ColourSpace,
    bpc: i64,
    (width, height): (usize, usize),
) -> Option<ImageSource> {
    let dict = &stream.dict;
    let channels: u8 = match space {
        ColourSpace::Gray => 1,
        ColourSpace::Rgb => 3,
        ColourSpace::Indexed { .. } => return None,
    };
    if filters != ["FlateDecode"] || bpc != 8 || is_inverted_decode(doc, dict) {
        return None;
    }
    let (w, h) = (u32::try_from(width).ok()?, u32::try_from(height).ok()?);
    let params = dict.get(b"DecodeParms").ok().and_then(|o| deref(doc, o));
    let params = match params {
        Some(Object::Dictionary(d)) => Some(d),
        Some(Object::Array(a)) => a.first().and_then(|o| deref(doc, o)).and_then(|o| o.as_dict().ok()),
        _ => None,
    };
    let param = |key: &[u8], default: i64| params.and_then(|p| int(doc, p, key)).unwrap_or(default);
    let predictor = param(b"Predictor", 1);
    if predictor >= 10
        && (param(b"Colors", 1) != i64::from(channels)
            || param(b"BitsPerComponent", 8) != 8
            || param(b"Columns", 1) != i64::from(w))
    {
        return None;
    }
    if !matches!(predictor, 1 | 2 | 10..=15) {
        return None;
    }
    if dict.get(b"SMask").ok().and_then(|o| deref(doc, o)).is_some_and(|o| !o.is_null())
        && !opaque_soft_mask(doc, dict, width, height)
    {
        return None;
    }
    let data = &stream.content;
    Some(if predictor >= 10 {
        ImageSource::Bytes { mime: "image/png".to_string(), data: png_file(w, h, channels, data) }
    } else {
        ImageSource::Bytes { mime: "image/tiff".to_string(), data: tiff_file(w, h, channels, predictor == 2, data)? }
    })
}

/// Whether `/SMask` is a Flate-compressed 8-bit grey mask of the image's size whose every
/// sample is 255; inflated in small pieces, stopping at the first other value.
fn opaque_soft_mask(doc: &Document, dict: &Dictionary, width: usize, height: usize) -> bool {
    use std::io::Read;
    let Some(mask) = dict.get(b"SMask").ok().and_then(|o| deref(doc, o)).and_then(|o| o.as_stream().ok()) else {
        return false;
    };
    let size = (int(doc, &mask.dict, b"Width"), int(doc, &mask.dict, b"Height"));
    let plain = mask.dict.get(b"DecodeParms").is_err() && mask.dict.get(b"Decode").is_err();
    if size != (i64::try_from(width).ok(), i64::try_from(height).ok())
        || filter_names(doc, &mask.dict) != ["FlateDecode"]
        || int(doc, &mask.dict, b"BitsPerComponent").unwrap_or(8) != 8
        || !plain
    {
        return false;
    }
    let Some(expected) = width.checked_mul(height) else { return false };
    let mut decoder = flate2::read::ZlibDecoder::new(mask.content.as_slice());
    let mut buffer = vec![0u8; 1 << 16];
    let mut seen = 0usize;
    while seen < expected {
        match decoder.read(&mut buffer) {
            Ok(0) | Err(_) => return false,
            Ok(n) => {
                let n = n.min(expected - seen);
                if buffer.get(..n).is_none_or(|b| b.iter().any(|&a| a != 255)) {
                    return false;
                }
                seen += n;
            }
        }
    }
    true
}

/// CRC-32 (ISO-HDLC, as PNG uses) of `parts` one after another.
fn crc32(parts: &[&[u8]]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut n = 0;
        while n < 256 {
            let mut c = n as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            table[n] = c;
            n += 1;
        }
        table
    };
    let mut crc = !0u32;
    for part in parts {
        for &b in *part {
            crc = TABLE[usize::from((crc as u8) ^ b)] ^ (crc >> 8);
        }
    }
    !crc
}

/// A PNG of `zlib`, PNG-filtered 8-bit grey (1 channel) or RGB (3) rows.
fn png_file(w: u32, h: u32, channels: u8, zlib: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(zlib.len() + 64);
    out.extend_from_slice(b"\x89PNG\r\n\x1a\n");
    let mut chunk = |kind: &[u8; 4], data: &[u8]| {
        out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc32(&[kind, data]).to_be_bytes());
    };
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, if channels == 3 { 2 } else { 0 }, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    for part in zlib.chunks(1 << 20) {
        chunk(b"IDAT", part);
    }
    chunk(b"IEND", &[]);
    out
}

/// A little-endian TIFF of one strip: `zlib`, 8-bit grey (1 channel) or RGB (3) samples, with
/// the horizontal-differencing predictor when `differenced`.
fn tiff_file(w: u32, h: u32, channels: u8, differenced: bool, zlib: &[u8]) -> Option<Vec<u8>> {
    let len = u32::try_from(zlib.len()).ok()?;
    let count: u16 = if differenced { 11 } else { 10 };
    let ifd_end = 8 + 2 + 12 * u32::from(count) + 4;
    let bits_at = ifd_end; // three SHORTs when RGB
    let data_at = ifd_end + 8;
    let mut out = Vec::with_capacity(zlib.len() + data_at as usize);
    out.extend_from_slice(b"II*\0");
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    let mut entry = |tag: u16, kind: u16, n: u32, value: u32| {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&value.to_le_bytes());
    };
    const SHORT: u16 = 3;
    const LONG: u16 = 4;
    entry(256, LONG, 1, w);
    entry(257, LONG, 1, h);
    if channels == 3 {
        entry(258, SHORT, 3, bits_at);
    } else {
        entry(258, SHORT, 1, 8);
    }
    entry(259, SHORT, 1, 8); // Deflate (zlib)
    entry(262, SHORT, 1, if channels == 3 { 2 } else { 1 }); // RGB, or BlackIsZero
    entry(273, LONG, 1, data_at);
    entry(277, SHORT, 1, u32::from(channels));
    entry(278, LONG, 1, h);
    entry(279, LONG, 1, len);
    entry(284, SHORT, 1, 1); // chunky
    if differenced {
        entry(317, SHORT, 1, 2);
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&[8, 0, 8, 0, 8, 0, 0, 0]);
    out.extend_from_slice(zlib);
    Some(out)
}

fn finish(
    source: ImageSource,
    note: Option<String>,
    limits: &ParseLimits,
    label: &str,
) -> Result<Extracted, ImageSkip> {
    if let ImageSource::Bytes { data, .. } = &source
        && data.len() > limits.max_part_bytes
    {
        let reason = format!("{} bytes once encoded, over the {}-byte limit", data.len(), limits.max_part_bytes);
        return Err(ImageSkip::Problem { label: label.to_string(), reason });
    }
    Ok(Extracted { source, note })
}

fn encode_png(pixels: Vec<u8>, alpha: Option<Vec<u8>>, channels: usize, w: i64, h: i64) -> Result<Vec<u8>, String> {
    let (w, h) = (u32::try_from(w).map_err(|e| e.to_string())?, u32::try_from(h).map_err(|e| e.to_string())?);
    let (buffer, colour) = match (alpha, channels) {
        (None, 1) => (pixels, ExtendedColorType::L8),
        (None, _) => (pixels, ExtendedColorType::Rgb8),
        (Some(alpha), channels) => {
            let mut out = Vec::with_capacity(pixels.len() + alpha.len());
            for (px, a) in pixels.chunks(channels.max(1)).zip(alpha) {
                out.extend_from_slice(px);
                out.push(a);
            }
            (out, if channels == 1 { ExtendedColorType::La8 } else { ExtendedColorType::Rgba8 })
        }
    };
    let mut png = Vec::new();
    PngEncoder::new(&mut png)
        .write_image(&buffer, w, h, colour)
        .map_err(|e| format!("cannot be encoded as PNG: {e}"))?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const PAPER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus/quantum/papers/readout-error-mitigation.pdf");
    const QISKIT_DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus/qiskit-docs");

    fn paper() -> Vec<u8> {
        std::fs::read(PAPER).expect("the corpus PDF")
    }

    fn headings(parsed: &Parsed) -> Vec<(u8, String)> {
        parsed
            .blocks
            .iter()
            .filter_map(|b| match b {
                Block::Heading { level, text, .. } => Some((*level, text.clone())),
                _ => None,
            })
            .collect()
    }

    fn all_text(parsed: &Parsed) -> String {
        let mut out = String::new();
        for b in &parsed.blocks {
            if let Block::Text { text, .. } | Block::Heading { text, .. } | Block::Code { code: text, .. } = b {
                out.push_str(text);
                out.push('\n');
            }
        }
        out
    }

    /// Text per page number.
    fn page_texts(parsed: &Parsed) -> BTreeMap<u32, String> {
        let mut out = BTreeMap::new();
        let mut page = 0;
        for b in &parsed.blocks {
            match b {
                Block::Page { number } => {
                    page = *number;
                    out.entry(page).or_insert_with(String::new);
                }
                Block::Text { text, .. } | Block::Heading { text, .. } | Block::Code { code: text, .. } => {
                    out.entry(page).or_insert_with(String::new).push_str(text);
                }
                _ => {}
            }
        }
        out
    }

    /// No panic in this file was swallowed as a warning.
    fn assert_no_own_panic(parsed: &Parsed) {
        for w in &parsed.warnings {
            assert!(!w.message.contains("ingest/pdf.rs"), "a panic in pdf.rs itself: {}", w.message);
        }
    }

    // --- synthetic PDFs -------------------------------------------------------------------------

    fn name(s: &str) -> Object {
        Object::Name(s.as_bytes().to_vec())
    }

    fn dict(entries: Vec<(&str, Object)>) -> Dictionary {
        let mut d = Dictionary::new();
        for (k, v) in entries {
            d.set(k, v);
        }
        d
    }

    /// A PDF with Helvetica as /F1, Courier as /F2 and the given content stream and image XObjects per page.
    fn build_pdf(pages: Vec<(String, Vec<(&str, Stream)>)>) -> Vec<u8> {
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let font = dict(vec![("Type", name("Font")), ("Subtype", name("Type1")), ("BaseFont", name("Helvetica"))]);
        let font_id = doc.add_object(font);
        let courier = dict(vec![("Type", name("Font")), ("Subtype", name("Type1")), ("BaseFont", name("Courier"))]);
        let courier_id = doc.add_object(courier);
        let mut kids = Vec::new();
        for (content, images) in pages {
            let mut xobjects = Dictionary::new();
            for (n, s) in images {
                let id = doc.add_object(s);
                xobjects.set(n, Object::Reference(id));
            }
            let fonts = dict(vec![("F1", Object::Reference(font_id)), ("F2", Object::Reference(courier_id))]);
            let resources = dict(vec![("Font", fonts.into()), ("XObject", xobjects.into())]);
            let content_id = doc.add_object(Stream::new(Dictionary::new(), content.into_bytes()));
            let media: Vec<Object> = vec![0.into(), 0.into(), 612.into(), 792.into()];
            let page = dict(vec![
                ("Type", name("Page")),
                ("Parent", Object::Reference(pages_id)),
                ("Contents", Object::Reference(content_id)),
                ("Resources", resources.into()),
                ("MediaBox", media.into()),
            ]);
            kids.push(Object::Reference(doc.add_object(page)));
        }
        let count = kids.len() as i64;
        let tree = dict(vec![("Type", name("Pages")), ("Kids", kids.into()), ("Count", count.into())]);
        doc.objects.insert(pages_id, Object::Dictionary(tree));
        let catalog = doc.add_object(dict(vec![("Type", name("Catalog")), ("Pages", Object::Reference(pages_id))]));
        doc.trailer.set("Root", Object::Reference(catalog));
        let mut out = Vec::new();
        doc.save_to(&mut out).expect("save");
        out
    }

    /// `BT … ET` drawing each `(x, y, size, text)`.
    fn text_ops(lines: &[(f64, f64, f64, &str)]) -> String {
        let mut s = String::new();
        for (x, y, size, text) in lines {
            s.push_str(&format!("BT /F1 {size} Tf 1 0 0 1 {x} {y} Tm ({text}) Tj ET\n"));
        }
        s
    }

    fn image_stream(w: i64, h: i64, space: Object, bpc: i64, filter: Option<&str>, data: Vec<u8>) -> Stream {
        let mut d = dict(vec![
            ("Type", name("XObject")),
            ("Subtype", name("Image")),
            ("Width", w.into()),
            ("Height", h.into()),
            ("ColorSpace", space),
            ("BitsPerComponent", bpc.into()),
        ]);
        if let Some(f) = filter {
            d.set("Filter", name(f));
        }
        Stream::new(d, data)
    }

    // --- the corpus paper -----------------------------------------------------------------------

    #[test]
    fn corpus_paper_has_title_headings_pages_and_figure() {
        let started = Instant::now();
        let parsed = parse(&paper(), &ParseLimits::default()).expect("parses");
        let elapsed = started.elapsed();
        assert_no_own_panic(&parsed);
        assert_eq!(parsed.metadata.get("pages").map(String::as_str), Some("3"));
        assert_eq!(parsed.title.as_deref(), Some("Readout Error Mitigation for Small Quantum Circuits"));
        assert_eq!(parsed.metadata.get("author").map(String::as_str), Some("sdc example corpus"));
        assert!(parsed.metadata.get("producer").is_some_and(|p| p.starts_with("ReportLab")));
        let pages: Vec<u32> = parsed
            .blocks
            .iter()
            .filter_map(|b| if let Block::Page { number } = b { Some(*number) } else { None })
            .collect();
        assert_eq!(pages, [1, 2, 3]);

        let hs = headings(&parsed);
        assert_eq!(
            hs.first(),
            Some(&(1, "Readout Error Mitigation for Small Quantum Circuits".to_string())),
            "{hs:#?}"
        );
        let expected = [
            "Abstract",
            "1. Introduction",
            "2. A model of readout error",
            "3. Calibration and inversion",
            "4. Experiment",
            "5. Limitations",
            "6. Conclusion",
            "7. Reproducing the results",
            "Appendix A. Calibration data",
        ];
        let level2: Vec<&str> = hs.iter().filter(|(l, _)| *l == 2).map(|(_, t)| t.as_str()).collect();
        assert_eq!(level2, expected, "{hs:#?}");

        // The figure: on page 2, after "4. Experiment" and before its caption.
        let images: Vec<(usize, &ImageRef)> = parsed
            .blocks
            .iter()
            .enumerate()
            .filter_map(|(i, b)| if let Block::Image(r) = b { Some((i, r)) } else { None })
            .collect();
        assert_eq!(images.len(), 1, "{:#?}", parsed.warnings);
        let (index, image) = images[0];
        assert_eq!(image.at, Location::page(2));
        assert_eq!(image.alt, "Figure on page 2");
        let ImageSource::Bytes { mime, data } = &image.source else { panic!("bytes expected") };
        assert_eq!(mime, "image/png");
        let decoded = image::load_from_memory(data).expect("decodable");
        assert_eq!((decoded.width(), decoded.height()), (471, 248));
        let page2 = parsed.blocks.iter().position(|b| *b == Block::Page { number: 2 }).expect("page 2");
        let page3 = parsed.blocks.iter().position(|b| *b == Block::Page { number: 3 }).expect("page 3");
        assert!(page2 < index && index < page3);
        let position_of = |needle: &str| {
            parsed.blocks.iter().position(|b| matches!(b, Block::Text { text, .. } if text.starts_with(needle)))
        };
        let caption = position_of("Figure 1.").expect("caption");
        let experiment = position_of("We prepared the GHZ state").expect("experiment paragraph");
        assert!(experiment < index && index < caption, "{experiment} < {index} < {caption}");

        let text = all_text(&parsed);
        assert!(text.contains("Readout error rates of one to several percent per qubit are common"), "{text}");
        assert!(text.contains("distribution P(000) P(111) other Hellinger fidelity"), "{text}");
        let chars = text.chars().count();
        eprintln!(
            "paper: {} pages, {chars} chars, {} headings, {} images, {} warnings, {elapsed:?}",
            pages.len(),
            hs.len(),
            images.len(),
            parsed.warnings.len()
        );
    }

    // --- the shared qiskit-docs PDFs ------------------------------------------------------------

    fn find_pdfs(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                find_pdfs(&path, out);
            } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("pdf")) {
                out.push(path);
            }
        }
    }

    /// Pages whose content stream (or a form it draws) shows a non-empty string: an oracle
    /// for "this page has text" that does not go through our interpreter (lopdf decodes it).
    fn pages_with_text_ops(bytes: &[u8]) -> Vec<u32> {
        use lopdf::content::{Content, Operation};
        fn shows_text(doc: &Document, ops: &[Operation], resources: Option<&Dictionary>, depth: u32) -> bool {
            ops.iter().any(|op| match op.operator.as_str() {
                "Tj" | "'" | "\"" => op.operands.last().and_then(|o| o.as_str().ok()).is_some_and(|s| !s.is_empty()),
                "TJ" => op
                    .operands
                    .first()
                    .and_then(|o| o.as_array().ok())
                    .is_some_and(|a| a.iter().any(|o| o.as_str().is_ok_and(|s| !s.is_empty()))),
                "Do" if depth < 4 => {
                    let form = op
                        .operands
                        .first()
                        .and_then(|n| n.as_name().ok())
                        .and_then(|n| {
                            let x = resources?.get(b"XObject").ok().and_then(|o| deref(doc, o))?.as_dict().ok()?;
                            x.get(n).ok().and_then(|o| deref(doc, o))
                        })
                        .and_then(|o| o.as_stream().ok());
                    form.is_some_and(|s| {
                        let res =
                            s.dict.get(b"Resources").ok().and_then(|r| deref(doc, r)).and_then(|r| r.as_dict().ok());
                        s.decompressed_content()
                            .ok()
                            .and_then(|d| Content::decode(&d).ok())
                            .is_some_and(|c| shows_text(doc, &c.operations, res.or(resources), depth + 1))
                    })
                }
                _ => false,
            })
        }
        let doc = Document::load_mem(bytes).expect("loads");
        let mut out = Vec::new();
        for (number, id) in doc.get_pages() {
            let Ok(page) = doc.get_dictionary(id) else { continue };
            let resources = inherited(&doc, page, b"Resources").and_then(|r| r.as_dict().ok());
            let ops = doc.get_page_content(id).ok().and_then(|d| Content::decode(&d).ok());
            if ops.is_some_and(|c| shows_text(&doc, &c.operations, resources, 0)) {
                out.push(number);
            }
        }
        out
    }

    #[test]
    fn qiskit_docs_pdfs_have_text_on_every_text_page() {
        let mut pdfs = Vec::new();
        find_pdfs(std::path::Path::new(QISKIT_DOCS), &mut pdfs);
        pdfs.sort();
        if pdfs.is_empty() {
            eprintln!("no PDFs under {QISKIT_DOCS}; skipped");
            return;
        }
        for path in pdfs {
            let bytes = std::fs::read(&path).expect("readable");
            let started = Instant::now();
            let parsed = parse(&bytes, &ParseLimits::default()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let elapsed = started.elapsed();
            assert_no_own_panic(&parsed);
            let texts = page_texts(&parsed);
            let expected = pages_with_text_ops(&bytes);
            let empty: Vec<u32> =
                expected.iter().copied().filter(|p| texts.get(p).is_none_or(|t| t.trim().is_empty())).collect();
            let hs = headings(&parsed);
            let images = parsed.blocks.iter().filter(|b| matches!(b, Block::Image(_))).count();
            let code = parsed.blocks.iter().filter(|b| matches!(b, Block::Code { .. })).count();
            eprintln!(
                "{}: {} pages ({} with text operators), {} chars, {code} code blocks, {} headings ({} level 1), \
                 {images} images, {} warnings, title {:?}, {elapsed:?}",
                path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
                texts.len(),
                expected.len(),
                all_text(&parsed).chars().count(),
                hs.len(),
                hs.iter().filter(|(l, _)| *l == 1).count(),
                parsed.warnings.len(),
                parsed.title,
            );
            for w in parsed.warnings.iter().take(8) {
                eprintln!("  warning at {}: {}", w.at, w.message);
            }
            assert!(empty.is_empty(), "{}: no text extracted from pages {empty:?}", path.display());
        }
    }

    // --- damage ---------------------------------------------------------------------------------

    fn assert_paper_text(parsed: &Parsed) {
        let text = all_text(parsed);
        assert!(text.contains("Readout Error Mitigation for Small Quantum Circuits"), "{text}");
        assert!(text.contains("Appendix A. Calibration data"), "{text}");
        assert_eq!(parsed.metadata.get("pages").map(String::as_str), Some("3"));
    }

    #[test]
    fn damaged_xref_offsets_are_rebuilt() {
        let mut bytes = paper();
        let xref = find(&bytes, b"\nxref", 0).expect("xref table") + 1;
        // Shift every in-use offset by 7 bytes: each entry `oooooooooo ggggg n`.
        let table_end = find(&bytes, b"trailer", xref).expect("trailer");
        let text = String::from_utf8(bytes[xref..table_end].to_vec()).expect("ascii");
        let shifted: String = text
            .split_inclusive('\n')
            .map(|line| match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                [offset, generation, "n"] if offset.len() == 10 => {
                    let o: u64 = offset.parse().expect("offset");
                    format!("{:010} {generation} n{}", o + 7, &line[line.trim_end().len()..])
                }
                _ => line.to_string(),
            })
            .collect();
        assert_eq!(shifted.len(), text.len());
        bytes.splice(xref..table_end, shifted.into_bytes());
        // lopdf alone finds nothing.
        let plain = Document::load_mem(&bytes).map(|d| d.get_pages().len()).unwrap_or(0);
        assert_eq!(plain, 0);
        let parsed = parse(&bytes, &ParseLimits::default()).expect("recovered");
        assert_paper_text(&parsed);
        assert!(parsed.warnings.iter().any(|w| w.message.contains("cross-reference table is damaged")));
        assert_eq!(parsed.blocks.iter().filter(|b| matches!(b, Block::Image(_))).count(), 1);
    }

    #[test]
    fn truncated_trailer_is_rebuilt() {
        let bytes = paper();
        let trailer = find(&bytes, b"trailer", 0).expect("trailer");
        for cut in [trailer, trailer + 12, bytes.len() - 20] {
            let parsed = parse(&bytes[..cut], &ParseLimits::default()).expect("recovered");
            assert_paper_text(&parsed);
            assert_eq!(parsed.title.as_deref(), Some("Readout Error Mitigation for Small Quantum Circuits"));
        }
    }

    #[test]
    fn wrong_startxref_is_rebuilt() {
        let mut bytes = paper();
        let at = find(&bytes, b"startxref", 0).expect("startxref") + "startxref\n".len();
        let end = at + bytes[at..].iter().take_while(|c| c.is_ascii_digit()).count();
        bytes.splice(at..end, b"12".iter().copied());
        let parsed = parse(&bytes, &ParseLimits::default()).expect("recovered");
        assert_paper_text(&parsed);
    }

    #[test]
    fn truncated_in_the_middle_gives_partial_text_or_a_clean_skip() {
        let bytes = paper();
        for percent in [5, 10, 25, 40, 50, 60, 75, 90, 99] {
            let cut = bytes.len() * percent / 100;
            match parse(&bytes[..cut], &ParseLimits::default()) {
                Ok(parsed) => {
                    assert_no_own_panic(&parsed);
                    eprintln!(
                        "truncated at {percent}%: {} chars, {} blocks, {} warnings",
                        all_text(&parsed).chars().count(),
                        parsed.blocks.len(),
                        parsed.warnings.len()
                    );
                }
                Err(e) => {
                    assert!(matches!(e, SkipReason::PdfUnreadable { .. }), "{e:?}");
                    eprintln!("truncated at {percent}%: {e}");
                }
            }
        }
    }

    #[test]
    fn empty_and_garbage_inputs_are_skipped() {
        assert_eq!(parse(b"", &ParseLimits::default()), Err(SkipReason::Empty));
        assert_eq!(parse(b" \n", &ParseLimits::default()), Err(SkipReason::Empty));
        assert!(matches!(parse(b"hello world", &ParseLimits::default()), Err(SkipReason::PdfUnreadable { .. })));
        assert!(matches!(parse(b"%PDF-1.4\n%%EOF", &ParseLimits::default()), Err(SkipReason::PdfUnreadable { .. })));
    }

    // --- encryption -----------------------------------------------------------------------------

    fn encrypted_paper(user_password: &str) -> Vec<u8> {
        use lopdf::{EncryptionState, EncryptionVersion, Permissions};
        let mut doc = Document::load_mem(&paper()).expect("loads");
        let version = EncryptionVersion::V2 {
            document: &doc,
            owner_password: "owner",
            user_password,
            key_length: 128,
            permissions: Permissions::all(),
        };
        let state = EncryptionState::try_from(version).expect("state");
        doc.encrypt(&state).expect("encrypts");
        let mut out = Vec::new();
        doc.save_to(&mut out).expect("saves");
        out
    }

    #[test]
    fn password_protected_pdf_is_skipped() {
        let bytes = encrypted_paper("secret");
        assert!(find(&bytes, b"/Encrypt", 0).is_some());
        assert_eq!(parse(&bytes, &ParseLimits::default()), Err(SkipReason::PdfEncrypted));
    }

    #[test]
    fn pdf_encrypted_with_the_empty_user_password_is_read() {
        let parsed = parse(&encrypted_paper(""), &ParseLimits::default()).expect("opens without a password");
        assert_paper_text(&parsed);
    }

    #[test]
    fn unknown_security_handler_is_encrypted() {
        let pdf = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n\
2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n\
3 0 obj\n<< /Filter /NoSuchHandler /V 9 /R 9 /O (x) /U (y) /P -4 >>\nendobj\n";
        let xref = pdf.len();
        let mut bytes = pdf.to_vec();
        let offset = |n: &[u8]| find(pdf, n, 0).expect("object");
        bytes.extend_from_slice(
            format!(
                "xref\n0 4\n0000000000 65535 f\r\n{:010} 00000 n\r\n{:010} 00000 n\r\n{:010} 00000 n\r\n\
                 trailer\n<< /Size 4 /Root 1 0 R /Encrypt 3 0 R /ID [<00> <00>] >>\nstartxref\n{xref}\n%%EOF\n",
                offset(b"1 0 obj"),
                offset(b"2 0 obj"),
                offset(b"3 0 obj"),
            )
            .as_bytes(),
        );
        assert_eq!(parse(&bytes, &ParseLimits::default()), Err(SkipReason::PdfEncrypted));
    }

    // --- layout ---------------------------------------------------------------------------------

    #[test]
    fn two_columns_are_read_column_by_column() {
        let mut lines = vec![(72.0, 740.0, 20.0, "Two Column Title")];
        for i in 0..6 {
            let y = 700.0 - 12.0 * i as f64;
            // Stream order interleaves the columns: right first.
            lines.push((320.0, y, 10.0, "right column text that keeps going on"));
            lines.push((72.0, y, 10.0, "left column text that keeps going on"));
        }
        let pdf = build_pdf(vec![(text_ops(&lines), vec![])]);
        let parsed = parse(&pdf, &ParseLimits::default()).expect("parses");
        let texts: Vec<&str> = parsed
            .blocks
            .iter()
            .filter_map(|b| if let Block::Text { text, .. } = b { Some(text.as_str()) } else { None })
            .collect();
        assert_eq!(texts.len(), 2, "{texts:#?}");
        assert!(texts[0].starts_with("left column") && !texts[0].contains("right"), "{texts:#?}");
        assert!(texts[1].starts_with("right column") && !texts[1].contains("left"), "{texts:#?}");
        assert_eq!(headings(&parsed), [(1, "Two Column Title".to_string())]);
        assert_eq!(parsed.title.as_deref(), Some("Two Column Title"));
    }

    #[test]
    fn headings_levels_and_hyphenation() {
        let lines = [
            (72.0, 740.0, 24.0, "Big Title"),
            (72.0, 700.0, 12.5, "A Section"),
            (72.0, 680.0, 10.0, "The quick brown fox com-"),
            (72.0, 668.0, 10.0, "putes things and well-"),
            (72.0, 656.0, 10.0, "Known names stay hyphen-"),
            (72.0, 644.0, 10.0, "ated only across lines."),
            (72.0, 620.0, 10.0, "A second paragraph with 42 words."),
        ];
        let pdf = build_pdf(vec![(text_ops(&lines), vec![])]);
        let parsed = parse(&pdf, &ParseLimits::default()).expect("parses");
        assert_eq!(headings(&parsed), [(1, "Big Title".to_string()), (2, "A Section".to_string())]);
        let texts: Vec<&str> = parsed
            .blocks
            .iter()
            .filter_map(|b| if let Block::Text { text, .. } = b { Some(text.as_str()) } else { None })
            .collect();
        assert_eq!(
            texts,
            [
                "The quick brown fox computes things and well- Known names stay hyphenated only across lines.",
                "A second paragraph with 42 words."
            ]
        );
    }

    #[test]
    fn monospaced_lines_become_code_with_indentation() {
        let mut content = text_ops(&[(72.0, 740.0, 10.0, "Run this:")]);
        for (i, (indent, line)) in [(0, "def main():"), (4, "print(1, 2)"), (0, "main()")].iter().enumerate() {
            let x = 72.0 + 6.0 * *indent as f64;
            let y = 710.0 - 12.0 * i as f64;
            content.push_str(&format!("BT /F2 10 Tf 1 0 0 1 {x} {y} Tm ({line}) Tj ET\n"));
        }
        content.push_str("BT /F2 10 Tf 1 0 0 1 72 600 Tm (2024 2025 2026) Tj ET\n");
        let pdf = build_pdf(vec![(content, vec![])]);
        let parsed = parse(&pdf, &ParseLimits::default()).expect("parses");
        let code: Vec<&str> = parsed
            .blocks
            .iter()
            .filter_map(|b| if let Block::Code { code, .. } = b { Some(code.as_str()) } else { None })
            .collect();
        assert_eq!(code, ["def main():\n    print(1, 2)\nmain()"], "{:#?}", parsed.blocks);
        assert!(parsed.blocks.iter().any(|b| matches!(b, Block::Text { text, .. } if text == "2024 2025 2026")));
    }

    #[test]
    fn to_unicode_cmaps_pdf_extract_panicked_on_are_read() {
        // Entries pdf-extract's CMap parser panicked on (and that had to be rewritten for it):
        // a ligature destination in a range, a one-byte destination, a destination array.
        let cmap = b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n\
1 begincodespacerange <00> <FF> endcodespacerange\n\
1 beginbfchar <03> <0042> endbfchar\n\
3 beginbfrange <01> <01> <00660069>\n<02> <02> <41>\n<04> <05> [<0043> <0044>] endbfrange\n\
endcmap end end\n";
        let mut doc = Document::load_mem(&build_pdf(vec![(
            "BT /F1 12 Tf 72 700 Td (\\001\\002\\003) Tj ET".to_string(),
            vec![],
        )]))
        .expect("loads");
        let to_unicode = doc.add_object(Stream::new(Dictionary::new(), cmap.to_vec()));
        for object in doc.objects.values_mut() {
            if let Object::Dictionary(d) = object
                && d.has_type(b"Font")
            {
                d.set("ToUnicode", Object::Reference(to_unicode));
            }
        }
        let mut bytes = Vec::new();
        doc.save_to(&mut bytes).expect("saves");
        let parsed = parse(&bytes, &ParseLimits::default()).expect("parses");
        assert!(parsed.warnings.is_empty(), "{:#?}", parsed.warnings);
        assert_eq!(all_text(&parsed).trim(), "fiAB");
    }

    // --- images ---------------------------------------------------------------------------------

    #[test]
    fn images_are_decoded_or_reported() {
        let gray = image_stream(40, 40, name("DeviceGray"), 8, None, (0..1600).map(|i| (i % 256) as u8).collect());
        let mut rgb = image_stream(64, 32, name("DeviceRGB"), 8, None, vec![200; 64 * 32 * 3]);
        rgb.compress().expect("flate");
        let palette = Object::String(vec![255, 0, 0, 0, 0, 255], lopdf::StringFormat::Hexadecimal);
        let indexed_space = Object::Array(vec![name("Indexed"), name("DeviceRGB"), 1.into(), palette]);
        let indexed = image_stream(33, 2, indexed_space, 1, None, vec![0b1010_1010; 5 * 2]);
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
            .write_image(&[128u8; 48 * 48 * 3], 48, 48, ExtendedColorType::Rgb8)
            .expect("jpeg");
        let dct = image_stream(48, 48, name("DeviceRGB"), 8, Some("DCTDecode"), jpeg.clone());
        let tiny = image_stream(10, 10, name("DeviceGray"), 8, None, vec![0; 100]);
        let jpx = image_stream(100, 100, name("DeviceRGB"), 8, Some("JPXDecode"), vec![0; 10]);
        let cmyk = image_stream(40, 40, name("DeviceCMYK"), 8, None, vec![0; 6400]);
        let draw = |n: &str, y: f64| format!("q 100 0 0 50 72 {y} cm /{n} Do Q\n");
        let mut content =
            text_ops(&[(72.0, 760.0, 10.0, "Above everything."), (72.0, 300.0, 10.0, "Below the pictures.")]);
        for (i, n) in ["Gray", "Rgb", "Idx", "Jpeg", "Tiny", "Jpx", "Cmyk"].iter().enumerate() {
            content.push_str(&draw(n, 700.0 - 55.0 * i as f64));
        }
        let xobjects = vec![
            ("Gray", gray),
            ("Rgb", rgb),
            ("Idx", indexed),
            ("Jpeg", dct),
            ("Tiny", tiny),
            ("Jpx", jpx),
            ("Cmyk", cmyk),
        ];
        let pdf = build_pdf(vec![(content, xobjects)]);
        let parsed = parse(&pdf, &ParseLimits::default()).expect("parses");
        let images: Vec<&ImageRef> =
            parsed.blocks.iter().filter_map(|b| if let Block::Image(r) = b { Some(r) } else { None }).collect();
        assert_eq!(images.len(), 4, "{:#?}", parsed.warnings);
        let sizes: Vec<(u32, u32)> = images
            .iter()
            .map(|r| {
                let ImageSource::Bytes { data, .. } = &r.source else { panic!("bytes") };
                let img = image::load_from_memory(data).expect("decodable");
                (img.width(), img.height())
            })
            .collect();
        assert_eq!(sizes, [(40, 40), (64, 32), (33, 2), (48, 48)]);
        assert!(
            matches!(&images[3].source, ImageSource::Bytes { mime, data } if mime == "image/jpeg" && *data == jpeg)
        );
        let ImageSource::Bytes { data, .. } = &images[2].source else { panic!("bytes") };
        let idx = image::load_from_memory(data).expect("png").to_rgb8();
        assert_eq!(idx.get_pixel(0, 0).0, [0, 0, 255]);
        assert_eq!(idx.get_pixel(1, 0).0, [255, 0, 0]);
        // Text above the images comes first, text below them last.
        assert!(matches!(parsed.blocks.get(1), Some(Block::Text { text, .. }) if text == "Above everything."));
        assert!(matches!(parsed.blocks.last(), Some(Block::Text { text, .. }) if text == "Below the pictures."));
        let messages: Vec<&str> = parsed.warnings.iter().map(|w| w.message.as_str()).collect();
        assert!(messages.iter().any(|m| m.contains("JPXDecode") && m.contains("page 1")), "{messages:#?}");
        assert!(messages.iter().any(|m| m.contains("DeviceCMYK")), "{messages:#?}");
        assert!(messages.iter().any(|m| m.starts_with("1 image smaller than 32×32")), "{messages:#?}");
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).expect("compress");
        e.finish().expect("compress")
    }

    #[test]
    fn flate_images_pass_through_undecoded() {
        let (w, h) = (40usize, 36usize);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        let image = |data: Vec<u8>, label: &str, params: Option<Dictionary>| {
            let mut s = image_stream(w as i64, h as i64, name("DeviceRGB"), 8, Some("FlateDecode"), data);
            s.dict.set("Name", name(label));
            if let Some(params) = params {
                s.dict.set("DecodeParms", params);
            }
            s
        };
        // PNG predictors: Sub on every row.
        let mut filtered = Vec::new();
        for row in rgb.chunks(w * 3) {
            filtered.push(1u8);
            filtered.extend(row.iter().enumerate().map(|(i, &b)| b.wrapping_sub(if i >= 3 { row[i - 3] } else { 0 })));
        }
        let predicted = dict(vec![
            ("Predictor", 15.into()),
            ("Colors", 3.into()),
            ("BitsPerComponent", 8.into()),
            ("Columns", (w as i64).into()),
        ]);
        let images = vec![
            ("A", image(zlib(&rgb), "Plain", None)),
            ("B", image(zlib(&rgb), "Opaque", None)),
            ("C", image(zlib(&filtered), "Predicted", Some(predicted))),
            ("D", image(zlib(&rgb), "Translucent", None)),
        ];
        let content: String =
            ["A", "B", "C", "D"].iter().map(|n| format!("q 100 0 0 50 72 400 cm /{n} Do Q\n")).collect();
        let mut doc = Document::load_mem(&build_pdf(vec![(content, images)])).expect("loads");
        let mask =
            |data: &[u8]| image_stream(w as i64, h as i64, name("DeviceGray"), 8, Some("FlateDecode"), zlib(data));
        let alpha: Vec<u8> = (0..w * h).map(|i| (i % 256) as u8).collect();
        let opaque = doc.add_object(mask(&vec![255; w * h]));
        let translucent = doc.add_object(mask(&alpha));
        for object in doc.objects.values_mut() {
            if let Object::Stream(s) = object {
                match s.dict.get(b"Name").and_then(Object::as_name) {
                    Ok(b"Opaque") => s.dict.set("SMask", Object::Reference(opaque)),
                    Ok(b"Translucent") => s.dict.set("SMask", Object::Reference(translucent)),
                    _ => {}
                }
            }
        }
        let mut bytes = Vec::new();
        doc.save_to(&mut bytes).expect("saves");
        let parsed = parse(&bytes, &ParseLimits::default()).expect("parses");
        assert!(parsed.warnings.iter().all(|w| w.message.starts_with("no text found")), "{:#?}", parsed.warnings);
        let got: Vec<(&str, Vec<u8>)> = parsed
            .blocks
            .iter()
            .filter_map(|b| match b {
                Block::Image(ImageRef { source: ImageSource::Bytes { mime, data }, .. }) => Some((mime.as_str(), data)),
                _ => None,
            })
            .map(|(mime, data)| (mime, image::load_from_memory(data).expect("decodable").to_rgba8().into_raw()))
            .collect();
        let mimes: Vec<&str> = got.iter().map(|g| g.0).collect();
        assert_eq!(mimes, ["image/tiff", "image/tiff", "image/png", "image/png"]);
        let rgba: Vec<u8> = rgb.chunks(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect();
        for (_, pixels) in &got[..3] {
            assert!(*pixels == rgba);
        }
        let with_alpha: Vec<u8> = rgb.chunks(3).zip(&alpha).flat_map(|(p, &a)| [p[0], p[1], p[2], a]).collect();
        assert!(got[3].1 == with_alpha);
    }

    #[test]
    fn oversized_images_are_reported() {
        let gray = image_stream(200, 200, name("DeviceGray"), 8, None, vec![7; 40_000]);
        let pdf = build_pdf(vec![("q 100 0 0 100 72 400 cm /Im Do Q".to_string(), vec![("Im", gray)])]);
        let parsed = parse(&pdf, &ParseLimits { max_part_bytes: 1000 }).expect("parses");
        assert!(!parsed.blocks.iter().any(|b| matches!(b, Block::Image(_))));
        assert!(
            parsed.warnings.iter().any(|w| w.message.contains("over the 1000-byte limit")),
            "{:#?}",
            parsed.warnings
        );
    }

    #[test]
    fn xref_rebuild_parses_references() {
        assert_eq!(parse_ref(b" 12 0 R"), Some((12, 0)));
        assert_eq!(parse_ref(b"\n3\n1 R"), Some((3, 1)));
        assert_eq!(parse_ref(b" 12 0 obj"), None);
        assert_eq!(parse_ref(b" 99999999999 0 R"), None);
        let objects = scan_objects(b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n2 0 obj<<>>endobj x3 0 obj\n12 1 obj\n");
        assert_eq!(objects.keys().copied().collect::<Vec<_>>(), [1, 2, 12]);
    }

    // --- never panic ----------------------------------------------------------------------------

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

            #[test]
            fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096), pdf_header in any::<bool>()) {
                let mut bytes = if pdf_header { b"%PDF-1.7\n".to_vec() } else { Vec::new() };
                bytes.extend(data);
                if let Ok(parsed) = parse(&bytes, &ParseLimits::default()) {
                    assert_no_own_panic(&parsed);
                }
            }

            #[test]
            fn mutated_corpus_pdf_never_panics(
                edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..24),
                cut in proptest::option::of(any::<proptest::sample::Index>()),
            ) {
                let mut bytes = paper();
                for (at, byte) in edits {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
                if let Some(cut) = cut {
                    bytes.truncate(cut.index(bytes.len()));
                }
                if let Ok(parsed) = parse(&bytes, &ParseLimits::default()) {
                    assert_no_own_panic(&parsed);
                }
            }
        }
    }
}
