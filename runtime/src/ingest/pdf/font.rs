//! Fonts: how a shown string splits into character codes, what text and advance width each
//! code has. Built once per font dictionary and document ([`FontCache`]).
//!
//! - Simple fonts (Type1, MMType1, TrueType): text from the ToUnicode CMap, else from the
//!   encoding: `/Encoding` (a base encoding and `/Differences`, glyph names → Unicode through
//!   the Adobe Glyph List and TeX's extensions, `uniXXXX`, `uXXXX[XX]`, `name.suffix`,
//!   `a_b` ligatures), else the built-in encoding of an embedded Type1 program (only its
//!   cleartext `/Encoding` is read), else StandardEncoding (WinAnsiEncoding for TrueType, the
//!   own encodings of Symbol and ZapfDingbats). Widths from `/FirstChar` and `/Widths`, else
//!   the standard 14 fonts' metrics (Arial, Times New Roman and Courier New standing in for
//!   them), else none.
//! - Type3 fonts: the same, with widths through `/FontMatrix`.
//! - Composite (Type0) fonts: codes split by the code space ranges of an embedded CMap
//!   (`Identity-H`/`-V` and other named CMaps: two bytes), codes → CIDs through its CID
//!   ranges, text from ToUnicode (named UCS-2/UTF-16 CMaps: the code itself), widths per CID
//!   from `/W` and `/DW`.
//!
//! Texts are cleaned ([`clean_glyph`]) once here, not per glyph.

use std::borrow::Cow;
use std::collections::HashMap;
use std::rc::Rc;

use lopdf::{Dictionary, Document, Object, ObjectId};

use super::clean_glyph;
use super::cmap::{self, CMap};
use super::content::{Lexer, Operand};
use super::{inflate, tables};

/// A font's code → text map: dense for small codes, sorted pairs beyond.
#[derive(Default)]
struct Texts {
    /// Indexed by code: a range of `pool`.
    dense: Vec<(u32, u32)>,
    /// (code, range of `pool`), sorted by code.
    sparse: Vec<(u32, u32, u32)>,
    pool: String,
}

/// Codes below this are stored densely.
const DENSE_CODES: u32 = 1 << 16;

impl Texts {
    /// From (code, text) pairs, the last text of a code winning.
    fn build(mut entries: Vec<(u32, String)>) -> Texts {
        // Stable: among equal codes the last entry stays last.
        entries.sort_by_key(|(code, _)| *code);
        let mut out = Texts::default();
        let max_dense = entries.iter().map(|(c, _)| *c).filter(|&c| c < DENSE_CODES).max();
        if let Some(max) = max_dense {
            out.dense = vec![(0, 0); max as usize + 1];
        }
        let mut i = 0;
        while let Some((code, _)) = entries.get(i) {
            let code = *code;
            let mut j = i;
            while entries.get(j + 1).is_some_and(|(c, _)| *c == code) {
                j += 1;
            }
            let Some((_, text)) = entries.get(j) else { break };
            let start = out.pool.len();
            out.pool.push_str(text);
            let (Ok(start), Ok(end)) = (u32::try_from(start), u32::try_from(out.pool.len())) else { break };
            match out.dense.get_mut(code as usize) {
                Some(slot) => *slot = (start, end),
                None => out.sparse.push((code, start, end)),
            }
            i = j + 1;
        }
        out
    }

    fn get(&self, code: u32) -> Option<&str> {
        let (start, end) = match self.dense.get(code as usize) {
            Some(&range) => range,
            None => {
                let i = self.sparse.binary_search_by_key(&code, |e| e.0).ok()?;
                let &(_, start, end) = self.sparse.get(i)?;
                (start, end)
            }
        };
        if start == end {
            return None;
        }
        self.pool.get(start as usize..end as usize)
    }
}

enum Codes {
    OneByte,
    TwoBytes,
    /// Code space ranges: (bytes, low, high).
    Ranges(Vec<(u8, u32, u32)>),
}

enum Widths {
    /// Per code, NaN where none is given; `missing` for those.
    Simple { widths: Box<[f32; 256]>, missing: f32 },
    /// Per CID (NaN: none given), `default` for the rest.
    Cid { widths: Vec<f32>, default: f32 },
}

pub(super) struct Font {
    codes: Codes,
    texts: Texts,
    widths: Widths,
    /// Glyph space units → text space units, horizontally: 1/1000 but for Type3 fonts.
    scale: f64,
    /// Code → CID ranges of a composite font with an embedded CMap; identity when empty.
    cids: Vec<(u32, u32, u32)>,
    /// Codes without a ToUnicode entry are UCS-2 (composite fonts with a `Uni…-UCS2` CMap).
    ucs2: bool,
}

impl Font {
    /// The code at `*at` in `bytes` and its length in bytes; advances `at`.
    #[inline]
    pub(super) fn next_code(&self, bytes: &[u8], at: &mut usize) -> Option<(u32, usize)> {
        let first = *bytes.get(*at)?;
        match &self.codes {
            Codes::OneByte => {
                *at += 1;
                Some((u32::from(first), 1))
            }
            Codes::TwoBytes => match bytes.get(*at + 1) {
                Some(&second) => {
                    *at += 2;
                    Some((u32::from(first) << 8 | u32::from(second), 2))
                }
                None => {
                    *at += 1;
                    Some((u32::from(first), 1))
                }
            },
            Codes::Ranges(ranges) => {
                let mut code = 0u32;
                for len in 1..=4u8 {
                    let Some(&b) = bytes.get(*at + usize::from(len) - 1) else { break };
                    code = code << 8 | u32::from(b);
                    if ranges.iter().any(|&(l, lo, hi)| l == len && (lo..=hi).contains(&code)) {
                        *at += usize::from(len);
                        return Some((code, usize::from(len)));
                    }
                }
                // Not in any range: one byte, so that the rest still reads.
                *at += 1;
                Some((u32::from(first), 1))
            }
        }
    }

    /// The (cleaned) text of a code; empty when unknown.
    #[inline]
    pub(super) fn text(&self, code: u32) -> &str {
        if let Some(text) = self.texts.get(code) {
            return text;
        }
        ""
    }

    /// Whether the code has no text of its own but is UCS-2.
    pub(super) fn ucs2_text(&self, code: u32) -> Option<char> {
        if !self.ucs2 || self.texts.get(code).is_some() {
            return None;
        }
        char::from_u32(code)
    }

    /// The advance of a code in text space units for a font size of 1 (0 when unknown).
    #[inline]
    pub(super) fn width(&self, code: u32) -> f64 {
        let w = match &self.widths {
            Widths::Simple { widths, missing } => {
                let w = widths.get(code as usize).copied().unwrap_or(f32::NAN);
                if w.is_nan() { *missing } else { w }
            }
            Widths::Cid { widths, default } => {
                let cid = self.cid(code);
                let w = widths.get(cid as usize).copied().unwrap_or(f32::NAN);
                if w.is_nan() { *default } else { w }
            }
        };
        f64::from(w) * self.scale
    }

    fn cid(&self, code: u32) -> u32 {
        if self.cids.is_empty() {
            return code;
        }
        self.cids
            .iter()
            .rev()
            .find(|(lo, hi, _)| (*lo..=*hi).contains(&code))
            .map_or(0, |(lo, _, cid)| cid.saturating_add(code - lo))
    }
}

// ---------------------------------------------------------------------------------------------
// Cache

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum FontKey {
    /// A font dictionary that is an indirect object.
    Object(ObjectId),
    /// A font dictionary written inside a resource dictionary, by its address: the document is
    /// not changed while its pages are read, so the address identifies it.
    Inline(usize),
}

/// The fonts of one document, each built once.
#[derive(Default)]
pub(super) struct FontCache {
    fonts: HashMap<FontKey, Rc<Font>>,
}

impl FontCache {
    /// The font a resource dictionary's `/Font` entry names.
    pub(super) fn get(&mut self, doc: &Document, resources: Option<&Dictionary>, name: &[u8]) -> Option<Rc<Font>> {
        let fonts = resources?.get(b"Font").ok().and_then(|o| deref(doc, o)).and_then(|o| o.as_dict().ok())?;
        let entry = fonts.get(name).ok()?;
        let (id, object) = doc.dereference(entry).ok()?;
        let dict = object.as_dict().ok()?;
        let key = match id {
            Some(id) => FontKey::Object(id),
            None => FontKey::Inline(std::ptr::from_ref(dict) as usize),
        };
        let font = self.fonts.entry(key).or_insert_with(|| Rc::new(load(doc, dict)));
        Some(Rc::clone(font))
    }

    /// A font for text shown without a usable `Tf`: Helvetica.
    pub(super) fn fallback(&mut self) -> Rc<Font> {
        let font = self.fonts.entry(FontKey::Inline(0)).or_insert_with(|| Rc::new(standard_font(b"Helvetica", false)));
        Rc::clone(font)
    }
}

// ---------------------------------------------------------------------------------------------
// Dictionary access

fn deref<'a>(doc: &'a Document, obj: &'a Object) -> Option<&'a Object> {
    doc.dereference(obj).ok().map(|(_, o)| o)
}

fn get<'a>(doc: &'a Document, dict: &'a Dictionary, key: &[u8]) -> Option<&'a Object> {
    dict.get(key).ok().and_then(|o| deref(doc, o))
}

fn name<'a>(doc: &'a Document, dict: &'a Dictionary, key: &[u8]) -> Option<&'a [u8]> {
    get(doc, dict, key).and_then(|o| o.as_name().ok())
}

fn num(obj: &Object) -> Option<f64> {
    match obj {
        Object::Integer(i) => Some(*i as f64),
        Object::Real(r) => Some(f64::from(*r)),
        _ => None,
    }
    .filter(|v| v.is_finite())
}

fn number(doc: &Document, dict: &Dictionary, key: &[u8]) -> Option<f64> {
    get(doc, dict, key).and_then(num)
}

fn stream_data<'a>(doc: &'a Document, dict: &'a Dictionary, key: &[u8]) -> Option<Cow<'a, [u8]>> {
    inflate::stream_data(get(doc, dict, key)?.as_stream().ok()?, None).ok()
}

// ---------------------------------------------------------------------------------------------
// Loading

fn load(doc: &Document, dict: &Dictionary) -> Font {
    match name(doc, dict, b"Subtype") {
        Some(b"Type0") => composite_font(doc, dict),
        Some(b"Type3") => simple_font(doc, dict, true),
        _ => simple_font(doc, dict, false),
    }
}

/// `ABCDEF+Name` → `Name`.
fn strip_subset(base: &[u8]) -> &[u8] {
    match base.get(6) {
        Some(b'+') if base.iter().take(6).all(u8::is_ascii_uppercase) => base.get(7..).unwrap_or_default(),
        _ => base,
    }
}

/// The text a glyph name stands for.
pub(super) fn glyph_text(name: &[u8], out: &mut String) -> bool {
    let Ok(name) = std::str::from_utf8(name) else { return false };
    if let Ok(i) = tables::GLYPH_NAMES.binary_search_by(|(n, _)| n.as_bytes().cmp(name.as_bytes())) {
        if let Some(c) = tables::GLYPH_NAMES.get(i).and_then(|(_, u)| char::from_u32(u32::from(*u))) {
            out.push(c);
            return true;
        }
        return false;
    }
    // `uni` and groups of four hex digits (several: a ligature).
    if let Some(hex) = name.strip_prefix("uni")
        && !hex.is_empty()
        && hex.len() % 4 == 0
        && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase())
    {
        let units: Vec<u16> = hex
            .as_bytes()
            .chunks(4)
            .filter_map(|h| u16::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())
            .collect();
        let before = out.len();
        out.extend(char::decode_utf16(units).filter_map(Result::ok));
        return out.len() > before;
    }
    // `u` and four to six hex digits.
    if let Some(hex) = name.strip_prefix('u')
        && (4..=6).contains(&hex.len())
        && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase())
        && let Some(c) = u32::from_str_radix(hex, 16).ok().and_then(char::from_u32)
    {
        out.push(c);
        return true;
    }
    // `name.suffix`: the name; `a_b_c`: a ligature of the parts.
    if let Some((stem, _)) = name.split_once('.')
        && !stem.is_empty()
    {
        return glyph_text(stem.as_bytes(), out);
    }
    if name.contains('_') {
        let before = out.len();
        let mut all = true;
        for part in name.split('_') {
            all &= glyph_text(part.as_bytes(), out);
        }
        if !all {
            out.truncate(before);
        }
        return all && out.len() > before;
    }
    false
}

fn base_encoding(name: &[u8]) -> Option<&'static [u16; 256]> {
    match name {
        b"StandardEncoding" => Some(&tables::STANDARD),
        b"WinAnsiEncoding" => Some(&tables::WIN_ANSI),
        b"MacRomanEncoding" => Some(&tables::MAC_ROMAN),
        b"MacExpertEncoding" => Some(&tables::MAC_EXPERT),
        _ => None,
    }
}

/// The standard 14 font (or a common stand-in for one) a base font name means.
#[derive(Clone, Copy)]
enum Standard {
    Courier,
    Table(&'static [(u16, u16)]),
}

fn standard_metrics(base: &[u8]) -> Option<(Standard, Option<&'static [u16; 256]>)> {
    let lower: String =
        String::from_utf8_lossy(base).to_ascii_lowercase().chars().filter(|c| c.is_alphanumeric()).collect();
    let bold = lower.contains("bold") || lower.contains("black") || lower.contains("heavy");
    let italic = lower.contains("italic") || lower.contains("oblique");
    if lower.starts_with("courier") {
        return Some((Standard::Courier, None));
    }
    if lower.starts_with("helvetica") || lower.starts_with("arial") {
        let table = if bold { tables::HELVETICA_BOLD } else { tables::HELVETICA };
        return Some((Standard::Table(table), None));
    }
    if lower.starts_with("times") {
        let table = match (bold, italic) {
            (false, false) => tables::TIMES_ROMAN,
            (true, false) => tables::TIMES_BOLD,
            (false, true) => tables::TIMES_ITALIC,
            (true, true) => tables::TIMES_BOLD_ITALIC,
        };
        return Some((Standard::Table(table), None));
    }
    if lower == "symbol" {
        return Some((Standard::Table(tables::SYMBOL_WIDTHS), Some(&tables::SYMBOL)));
    }
    if lower == "zapfdingbats" {
        return Some((Standard::Table(tables::ZAPF_DINGBATS_WIDTHS), Some(&tables::ZAPF_DINGBATS)));
    }
    None
}

fn standard_width(metrics: Standard, unit: u16) -> f32 {
    match metrics {
        Standard::Courier => 600.0,
        Standard::Table(table) => table
            .binary_search_by_key(&unit, |e| e.0)
            .ok()
            .and_then(|i| table.get(i))
            .map_or(f32::NAN, |e| f32::from(e.1)),
    }
}

/// A font with only a base name: the standard 14 font it names, StandardEncoding.
fn standard_font(base: &[u8], truetype: bool) -> Font {
    let (metrics, own_encoding) = standard_metrics(base).map_or((None, None), |(m, e)| (Some(m), e));
    let encoding = own_encoding.unwrap_or(if truetype { &tables::WIN_ANSI } else { &tables::STANDARD });
    let mut widths = Box::new([f32::NAN; 256]);
    let mut entries = Vec::new();
    for (code, &unit) in (0u32..).zip(encoding.iter()) {
        if unit == 0 {
            continue;
        }
        if let Some(c) = char::from_u32(u32::from(unit)) {
            entries.push((code, clean_glyph(c.encode_utf8(&mut [0; 4]))));
        }
        if let (Some(metrics), Some(w)) = (metrics, widths.get_mut(code as usize)) {
            *w = standard_width(metrics, unit);
        }
    }
    Font {
        codes: Codes::OneByte,
        texts: Texts::build(entries),
        widths: Widths::Simple { widths, missing: 0.0 },
        scale: 0.001,
        cids: Vec::new(),
        ucs2: false,
    }
}

/// Type1, MMType1, TrueType and Type3 fonts.
fn simple_font(doc: &Document, dict: &Dictionary, type3: bool) -> Font {
    let subtype = name(doc, dict, b"Subtype").unwrap_or_default();
    let truetype = subtype == b"TrueType";
    let base = strip_subset(name(doc, dict, b"BaseFont").unwrap_or_default());
    let descriptor = get(doc, dict, b"FontDescriptor").and_then(|o| o.as_dict().ok());
    let flags = descriptor.and_then(|d| number(doc, d, b"Flags")).unwrap_or(0.0) as i64;
    let symbolic = flags & 4 != 0;
    let standard = standard_metrics(base);

    // The encoding: code → glyph text. Built-in first, then the base encoding, then Differences.
    let mut encoding: Vec<String> = vec![String::new(); 256];
    let fill = |encoding: &mut Vec<String>, table: &[u16; 256]| {
        for (slot, &unit) in encoding.iter_mut().zip(table.iter()) {
            slot.clear();
            if let Some(c) = char::from_u32(u32::from(unit)).filter(|_| unit != 0) {
                slot.push(c);
            }
        }
    };
    let builtin = |encoding: &mut Vec<String>| -> bool {
        if let Some(own) = standard.and_then(|s| s.1).filter(|_| descriptor.is_none_or(|d| !embedded(doc, d))) {
            fill(encoding, own);
            return true;
        }
        let Some(program) = descriptor.and_then(|d| type1_program(doc, d)) else { return false };
        match type1_encoding(&program) {
            Some(Type1Encoding::Standard) => {
                fill(encoding, &tables::STANDARD);
                true
            }
            Some(Type1Encoding::Names(names)) => {
                for (slot, name) in encoding.iter_mut().zip(names) {
                    slot.clear();
                    if let Some(name) = name {
                        glyph_text(&name, slot);
                    }
                }
                true
            }
            None => false,
        }
    };
    let default_base = if truetype || type3 { &tables::WIN_ANSI } else { &tables::STANDARD };
    match get(doc, dict, b"Encoding") {
        Some(Object::Name(n)) => match base_encoding(n) {
            Some(table) => fill(&mut encoding, table),
            None => {
                if type3 || !builtin(&mut encoding) {
                    fill(&mut encoding, default_base);
                }
            }
        },
        Some(Object::Dictionary(enc)) => {
            match name(doc, enc, b"BaseEncoding").and_then(base_encoding) {
                Some(table) => fill(&mut encoding, table),
                None => {
                    // The font's own encoding, as the spec says; but reading an embedded program
                    // for it is only worth it for symbolic fonts (text fonts are close to
                    // StandardEncoding, and Differences usually cover every code used).
                    if type3 || !symbolic || !builtin(&mut encoding) {
                        fill(&mut encoding, default_base);
                    }
                }
            }
            if let Some(differences) = get(doc, enc, b"Differences").and_then(|o| o.as_array().ok()) {
                let mut code: i64 = 0;
                for item in differences {
                    match deref(doc, item) {
                        Some(Object::Integer(i)) => code = *i,
                        Some(Object::Name(n)) => {
                            if let Some(slot) = usize::try_from(code).ok().and_then(|c| encoding.get_mut(c)) {
                                slot.clear();
                                glyph_text(n, slot);
                            }
                            code = code.saturating_add(1);
                        }
                        _ => {}
                    }
                }
            }
        }
        _ => {
            if type3 || !builtin(&mut encoding) {
                fill(&mut encoding, default_base);
            }
        }
    }

    // Text: ToUnicode first, the encoding for codes it does not map.
    let to_unicode = stream_data(doc, dict, b"ToUnicode").map(|data| cmap::parse(&data));
    let mut entries: Vec<(u32, String)> = Vec::with_capacity(256);
    for (code, text) in (0u32..).zip(&encoding) {
        let cleaned = clean_glyph(text);
        if !cleaned.is_empty() {
            entries.push((code, cleaned));
        }
    }
    if let Some(cmap) = &to_unicode {
        for &(code, start, end) in &cmap.unicode {
            let text = cmap.pool.get(start as usize..end as usize).unwrap_or_default();
            // A code ToUnicode maps to nothing usable (private use, say) stays without text:
            // the encoding would only guess (TeX's bracket pieces would read as digits).
            if code < 256 {
                entries.push((code, clean_glyph(text)));
            }
        }
    }

    // Widths.
    let scale = if type3 {
        get(doc, dict, b"FontMatrix")
            .and_then(|o| o.as_array().ok())
            .and_then(|m| m.first())
            .and_then(|o| deref(doc, o))
            .and_then(num)
            .unwrap_or(0.001)
    } else {
        0.001
    };
    let mut widths = Box::new([f32::NAN; 256]);
    let missing = descriptor.and_then(|d| number(doc, d, b"MissingWidth")).unwrap_or(0.0) as f32;
    let listed = get(doc, dict, b"Widths").and_then(|o| o.as_array().ok());
    match (listed, number(doc, dict, b"FirstChar")) {
        (Some(listed), first) => {
            let first = first.unwrap_or(0.0).max(0.0) as usize;
            for (i, w) in listed.iter().enumerate() {
                if let (Some(slot), Some(w)) = (widths.get_mut(first + i), deref(doc, w).and_then(num)) {
                    *slot = w as f32;
                }
            }
        }
        (None, _) if !type3 => {
            if let Some((metrics, _)) = standard {
                for (slot, text) in widths.iter_mut().zip(&encoding) {
                    let unit = text.encode_utf16().next().unwrap_or(0);
                    if unit != 0 {
                        *slot = standard_width(metrics, unit);
                    }
                }
            }
        }
        _ => {}
    }

    Font {
        codes: Codes::OneByte,
        texts: Texts::build(entries),
        widths: Widths::Simple { widths, missing },
        scale,
        cids: Vec::new(),
        ucs2: false,
    }
}

fn embedded(doc: &Document, descriptor: &Dictionary) -> bool {
    [&b"FontFile"[..], b"FontFile2", b"FontFile3"].iter().any(|k| get(doc, descriptor, k).is_some())
}

/// The cleartext part of an embedded Type1 program (only that part is inflated).
fn type1_program<'a>(doc: &'a Document, descriptor: &'a Dictionary) -> Option<Cow<'a, [u8]>> {
    let stream = get(doc, descriptor, b"FontFile")?.as_stream().ok()?;
    let clear = stream.dict.get(b"Length1").ok().and_then(|o| o.as_i64().ok()).and_then(|n| usize::try_from(n).ok());
    let clear = clear.filter(|&n| n > 0);
    // A PFB segment header may come first.
    let mut data = inflate::stream_data(stream, clear.map(|n| n.saturating_add(6))).ok()?;
    let skip = if data.starts_with(&[0x80, 0x01]) { 6 } else { 0 };
    let end = clear.map_or(data.len(), |n| n.saturating_add(skip)).min(data.len());
    Some(match &mut data {
        Cow::Borrowed(d) => Cow::Borrowed(d.get(skip.min(end)..end).unwrap_or_default()),
        Cow::Owned(d) => {
            d.truncate(end);
            d.drain(..skip.min(end));
            Cow::Owned(std::mem::take(d))
        }
    })
}

enum Type1Encoding {
    Standard,
    Names(Vec<Option<Vec<u8>>>),
}

/// The `/Encoding` of a Type1 program's cleartext: `StandardEncoding`, or the
/// `dup code /name put` entries of its array.
fn type1_encoding(program: &[u8]) -> Option<Type1Encoding> {
    let at = program.windows(9).position(|w| w == b"/Encoding")?;
    let mut lexer = Lexer::new(program.get(at..)?);
    let mut names: Vec<Option<Vec<u8>>> = vec![None; 256];
    let mut first = true;
    while let Some(op) = lexer.next_operator() {
        match op {
            b"StandardEncoding" if first => return Some(Type1Encoding::Standard),
            b"put" => {
                if let Some([Operand::Number(code), n @ Operand::Name(_)]) = lexer.last(2)
                    && let Some(slot) = names.get_mut(*code as usize).filter(|_| *code >= 0.0)
                {
                    *slot = lexer.text(n).map(<[u8]>::to_vec);
                }
            }
            b"def" | b"readonly" if !first => break,
            b"eexec" | b"currentfile" => break,
            _ => {}
        }
        first = false;
    }
    Some(Type1Encoding::Names(names))
}

/// Type0 fonts.
fn composite_font(doc: &Document, dict: &Dictionary) -> Font {
    let descendant = get(doc, dict, b"DescendantFonts")
        .and_then(|o| o.as_array().ok())
        .and_then(|a| a.first())
        .and_then(|o| deref(doc, o))
        .and_then(|o| o.as_dict().ok());

    let mut codes = Codes::TwoBytes;
    let mut cids = Vec::new();
    let mut ucs2 = false;
    match get(doc, dict, b"Encoding") {
        Some(Object::Name(n)) => {
            ucs2 = n.windows(4).any(|w| w == b"UCS2") || n.windows(5).any(|w| w == b"UTF16");
        }
        Some(Object::Stream(s)) => {
            if let Ok(data) = inflate::stream_data(s, None) {
                let cmap = cmap::parse(&data);
                if !cmap.codespace.is_empty() {
                    codes = match cmap.codespace.as_slice() {
                        [(2, 0, 0xffff)] => Codes::TwoBytes,
                        [(1, 0, 0xff)] => Codes::OneByte,
                        _ => Codes::Ranges(cmap.codespace.clone()),
                    };
                }
                let identity_parent = cmap.parent.as_deref().is_some_and(|p| p.starts_with(b"Identity"));
                if !cmap.cids.is_empty() {
                    cids = cmap.cids;
                    if identity_parent {
                        // Codes the CMap leaves to its parent map to themselves.
                        cids.insert(0, (0, u32::MAX, 0));
                    }
                }
            }
        }
        _ => {}
    }

    let mut entries = Vec::new();
    if let Some(data) = stream_data(doc, dict, b"ToUnicode") {
        let cmap: CMap = cmap::parse(&data);
        entries.reserve(cmap.unicode.len());
        for &(code, start, end) in &cmap.unicode {
            let cleaned = clean_glyph(cmap.pool.get(start as usize..end as usize).unwrap_or_default());
            if !cleaned.is_empty() {
                entries.push((code, cleaned));
            }
        }
    }

    let mut widths = Vec::new();
    let mut default = 1000.0f32;
    if let Some(descendant) = descendant {
        if let Some(dw) = number(doc, descendant, b"DW") {
            default = dw as f32;
        }
        if let Some(w) = get(doc, descendant, b"W").and_then(|o| o.as_array().ok()) {
            cid_widths(doc, w, &mut widths);
        }
    }

    Font { codes, texts: Texts::build(entries), widths: Widths::Cid { widths, default }, scale: 0.001, cids, ucs2 }
}

/// `/W`: `c [w1 w2 …]` and `c_first c_last w` entries, into widths per CID.
fn cid_widths(doc: &Document, w: &[Object], out: &mut Vec<f32>) {
    const MAX_CID: usize = 0xffff;
    let mut set = |cid: usize, width: f64| {
        if cid > MAX_CID {
            return;
        }
        if out.len() <= cid {
            out.resize(cid + 1, f32::NAN);
        }
        if let Some(slot) = out.get_mut(cid) {
            *slot = width as f32;
        }
    };
    let mut i = 0;
    while let Some(first) = w.get(i).and_then(|o| deref(doc, o)).and_then(num) {
        let first = first.max(0.0) as usize;
        match w.get(i + 1).and_then(|o| deref(doc, o)) {
            Some(Object::Array(list)) => {
                for (k, width) in list.iter().enumerate() {
                    if let Some(width) = deref(doc, width).and_then(num) {
                        set(first.saturating_add(k), width);
                    }
                }
                i += 2;
            }
            Some(last) => {
                let (Some(last), Some(width)) = (num(last), w.get(i + 2).and_then(|o| deref(doc, o)).and_then(num))
                else {
                    break;
                };
                let last = (last.max(0.0) as usize).min(MAX_CID);
                for cid in first..=last {
                    set(cid, width);
                }
                i += 3;
            }
            None => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(name: &str) -> Option<String> {
        let mut out = String::new();
        glyph_text(name.as_bytes(), &mut out).then_some(out)
    }

    #[test]
    fn glyph_names() {
        assert_eq!(text("A").as_deref(), Some("A"));
        assert_eq!(text("quoteright").as_deref(), Some("\u{2019}"));
        assert_eq!(text("asteriskmath").as_deref(), Some("\u{2217}"));
        assert_eq!(text("ff").as_deref(), Some("\u{fb00}"));
        assert_eq!(text("uni0041").as_deref(), Some("A"));
        assert_eq!(text("uni00660069").as_deref(), Some("fi"));
        assert_eq!(text("u1D400").as_deref(), Some("\u{1d400}"));
        assert_eq!(text("a.sc").as_deref(), Some("a"));
        assert_eq!(text("f_f_i").as_deref(), Some("\u{fb03}"));
        assert_eq!(text("T_h").as_deref(), Some("Th"));
        assert_eq!(text("a105").as_deref(), Some("\u{2710}"));
        assert_eq!(text("g123"), None);
        assert_eq!(text("uni004"), None);
        assert!(tables::GLYPH_NAMES.windows(2).all(|w| w[0].0.as_bytes() < w[1].0.as_bytes()));
    }

    #[test]
    fn type1_builtin_encoding() {
        let program = b"%!PS-AdobeFont-1.0: CMR10\n/FontName /CMR10 def\n/Encoding 256 array\n\
0 1 255 {1 index exch /.notdef put} for\ndup 11 /ff put\ndup 65 /A put\nreadonly def\ncurrentfile eexec\n";
        let Some(Type1Encoding::Names(names)) = type1_encoding(program) else { panic!("names expected") };
        assert_eq!(names[11].as_deref(), Some(&b"ff"[..]));
        assert_eq!(names[65].as_deref(), Some(&b"A"[..]));
        assert_eq!(names.iter().flatten().count(), 2);
        assert!(matches!(type1_encoding(b"/Encoding StandardEncoding def"), Some(Type1Encoding::Standard)));
        assert!(type1_encoding(b"no encoding here").is_none());
    }

    #[test]
    fn standard_fonts_have_widths() {
        let helvetica = standard_font(b"Helvetica", false);
        assert_eq!(helvetica.width(u32::from(b'a')), 0.556);
        assert_eq!(helvetica.text(0x27), "\u{2019}");
        let courier = standard_font(b"CourierNewPSMT", false);
        assert_eq!(courier.width(u32::from(b'x')), 0.6);
        assert!(
            matches!(standard_metrics(b"Arial,BoldItalic"), Some((Standard::Table(t), None)) if t == tables::HELVETICA_BOLD)
        );
    }

    #[test]
    fn code_space_ranges_split_codes() {
        let font = Font {
            codes: Codes::Ranges(vec![(1, 0, 0x80), (2, 0x8140, 0xffff)]),
            texts: Texts::default(),
            widths: Widths::Cid { widths: Vec::new(), default: 1000.0 },
            scale: 0.001,
            cids: vec![(0x8140, 0x817f, 633)],
            ucs2: false,
        };
        let bytes = [0x41, 0x81, 0x41, 0x90];
        let mut at = 0;
        let mut got = Vec::new();
        while let Some(code) = font.next_code(&bytes, &mut at) {
            got.push(code);
        }
        assert_eq!(got, [(0x41, 1), (0x8141, 2), (0x90, 1)]);
        assert_eq!(font.cid(0x8141), 634);
        assert_eq!(font.cid(0x41), 0);
    }

    #[test]
    fn texts_dense_and_sparse() {
        let texts = Texts::build(vec![(5, "a".into()), (70_000, "b".into()), (5, "c".into()), (0, String::new())]);
        assert_eq!(texts.get(5), Some("c"));
        assert_eq!(texts.get(70_000), Some("b"));
        assert_eq!(texts.get(0), None);
        assert_eq!(texts.get(6), None);
    }
}
