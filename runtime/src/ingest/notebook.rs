//! Jupyter notebooks (`.ipynb`, nbformat 4.x and 3) → blocks in document order.
//!
//! What becomes what:
//! - The file must be UTF-8 (a leading BOM is ignored) holding a JSON object with an integer
//!   `nbformat`: 4 reads `cells`, 3 reads `worksheets[].cells`; anything else is skipped with
//!   [`SkipReason::UnknownNbformat`]. An empty or whitespace-only file is [`SkipReason::Empty`].
//! - Cells are numbered from 1 across the whole notebook (all worksheets), counting every cell,
//!   including the ones that produce nothing. Text fields may be a string or a list of strings.
//! - Markdown cells go through pulldown-cmark (CommonMark with GFM tables, strikethrough, task
//!   lists and footnotes, plus `$…$`/`$$…$$` math, so math is never mistaken for emphasis), which
//!   is what Jupyter's own renderer reads; MDX constructs do not exist in notebooks. Headings (ATX and setext) become [`Block::Heading`]; fenced and indented code
//!   becomes [`Block::Code`]; images (`![alt](src "title")`, reference images and HTML `<img>`)
//!   become [`Block::Image`] where they occur. Everything else is kept as [`Block::Text`] *as
//!   written* (the cell's own Markdown, math, tables and lists included) with link definitions and
//!   thematic breaks dropped and inline HTML tags removed; line ends are trimmed and blank-line
//!   runs collapsed. Text is split around images and code, and pieces without any letter or digit
//!   are dropped. HTML blocks contribute their tag-stripped text and their `<img>`s.
//! - Image sources: `attachment:name` is looked up in the cell's `attachments`; `data:` URIs are
//!   decoded; anything else is kept as written in [`ImageSource::Path`].
//! - Code cells become [`Block::Code`] (language: the cell's own (v3), else the kernel's, else
//!   `python`) followed by their outputs: consecutive `stream`s merge into one [`Block::Output`]
//!   (carriage-return progress lines keep their last state); rich outputs become an image when
//!   they carry `image/png`, `image/jpeg` or `image/svg+xml` (in that order), else an Output from
//!   `text/plain` (then `text/markdown`, `text/latex`, and last `text/html` with tags stripped);
//!   errors become `ename: evalue` plus the traceback. ANSI escapes are stripped from all outputs.
//!   Widget outputs are skipped with a warning. Empty code cells are dropped with their outputs.
//! - Metadata: `nbformat` (`major.minor`), `kernel` (kernelspec name), `language`, and the
//!   notebook metadata's string `title` and `description` when present. [`Parsed::title`] is the
//!   first level-1 heading only.
//! - Raw cells are skipped silently: they hold text for other converters (reST, LaTeX).
//! - A cell or output over [`ParseLimits::max_part_bytes`] is skipped with a warning; so are
//!   undecodable images and unknown attachments. The rest of the notebook still parses.
//! - pulldown-cmark parses any input in linear time without recursion, so no cell needs a
//!   fallback: thousands of nested quotes or emphasis delimiters are just markdown.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::document::{Block, ImageRef, ImageSource, Location, ParseLimits, Parsed, SkipReason, Warning};

const WIDGET_MIME: &str = "application/vnd.jupyter.widget-view+json";
/// Output image MIME types, in order of preference.
const OUTPUT_IMAGE_MIMES: [&str; 3] = ["image/png", "image/jpeg", "image/svg+xml"];
/// Text MIME types an output falls back to when it has no image, in order of preference.
const OUTPUT_TEXT_MIMES: [&str; 3] = ["text/plain", "text/markdown", "text/latex"];
/// Attachment MIME types, in order of preference (any other `image/*` comes after).
const ATTACHMENT_MIMES: [&str; 5] = ["image/png", "image/jpeg", "image/svg+xml", "image/gif", "image/webp"];

/// Standard base64 that does not insist on padding; notebooks written by many tools vary.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);
const BASE64_URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Parses one notebook. Never touches the filesystem and never panics on any input.
pub fn parse(bytes: &[u8], limits: &ParseLimits) -> Result<Parsed, SkipReason> {
    if bytes.is_empty() {
        return Err(SkipReason::Empty);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| SkipReason::NotUtf8 { offset: e.valid_up_to() as u64 })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim_ascii().is_empty() {
        return Err(SkipReason::Empty);
    }
    let root: Json<'_> = serde_json::from_str(text).map_err(json_error)?;
    if !matches!(root, Json::Obj(_)) {
        return Err(not_a_notebook(format!("the top level is a JSON {}, not an object", root.kind())));
    }
    let major = match root.get("nbformat") {
        None => return Err(not_a_notebook("there is no `nbformat` field")),
        Some(v) => v.as_int().ok_or_else(|| not_a_notebook(format!("`nbformat` is a {}, not an integer", v.kind())))?,
    };
    let minor = root.get("nbformat_minor").and_then(Json::as_int).unwrap_or(0);
    let cells: Vec<&Json<'_>> = match major {
        4 => root
            .get("cells")
            .and_then(Json::as_array)
            .ok_or_else(|| not_a_notebook("nbformat 4 without a `cells` list"))?
            .iter()
            .collect(),
        3 => root
            .get("worksheets")
            .and_then(Json::as_array)
            .ok_or_else(|| not_a_notebook("nbformat 3 without a `worksheets` list"))?
            .iter()
            .filter_map(|w| w.get("cells").and_then(Json::as_array))
            .flatten()
            .collect(),
        _ => return Err(SkipReason::UnknownNbformat { major, minor }),
    };

    let meta = root.get("metadata");
    let kernelspec = meta.and_then(|m| m.get("kernelspec"));
    let kernel_info = meta.and_then(|m| m.get("kernel_info"));
    let kernel = [kernelspec, kernel_info].into_iter().flatten().find_map(|k| k.get("name").and_then(Json::as_text));
    let language = [
        kernelspec.and_then(|k| k.get("language")),
        meta.and_then(|m| m.get("language_info")).and_then(|l| l.get("name")),
        kernel_info.and_then(|k| k.get("language")),
        meta.and_then(|m| m.get("language")),
    ]
    .into_iter()
    .flatten()
    .find_map(Json::as_text)
    .or_else(|| cells.iter().find_map(|c| c.get("language").and_then(Json::as_text)));

    let mut nb = Notebook {
        limits,
        language: language.unwrap_or("python").to_owned(),
        out: Parsed { blocks: Vec::with_capacity(cells.len() * 2), ..Parsed::default() },
    };
    nb.out.metadata.insert("nbformat".to_owned(), format!("{major}.{minor}"));
    if let Some(kernel) = kernel {
        nb.out.metadata.insert("kernel".to_owned(), kernel.to_owned());
    }
    if let Some(language) = language {
        nb.out.metadata.insert("language".to_owned(), language.to_owned());
    }
    // Documentation notebooks (Qiskit's among them) keep their front matter here.
    for key in ["title", "description"] {
        if let Some(value) = meta.and_then(|m| m.get(key)).and_then(Json::as_text) {
            nb.out.metadata.insert(key.to_owned(), value.trim().to_owned());
        }
    }
    for (i, cell) in cells.iter().enumerate() {
        nb.cell(u32::try_from(i + 1).unwrap_or(u32::MAX), cell);
    }
    Ok(nb.out)
}

fn not_a_notebook(message: impl Into<String>) -> SkipReason {
    SkipReason::NotANotebook { message: message.into() }
}

fn json_error(e: serde_json::Error) -> SkipReason {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
    SkipReason::InvalidJson { line: e.line() as u64, column: e.column() as u64, message }
}

fn at_line(cell: u32, line: u32) -> Location {
    Location { line: Some(line), cell: Some(cell), page: None }
}

// ---------------------------------------------------------------------------------------------
// A borrowed JSON tree: strings without escapes point into the input, so the large base64
// payloads are never copied before they are decoded.

enum Json<'a> {
    Null,
    Bool,
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Arr(Vec<Json<'a>>),
    Obj(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// The value of `key` (the last one, as JSON parsers usually do for duplicate keys).
    fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Obj(entries) => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A non-blank string.
    fn as_text(&self) -> Option<&str> {
        self.as_str().filter(|s| !s.trim().is_empty())
    }

    fn as_int(&self) -> Option<i64> {
        match self {
            Json::Int(i) => Some(*i),
            Json::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => Some(*f as i64),
            Json::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<&[Json<'a>]> {
        match self {
            Json::Arr(items) => Some(items),
            _ => None,
        }
    }

    fn as_object(&self) -> Option<&[(Cow<'a, str>, Json<'a>)]> {
        match self {
            Json::Obj(entries) => Some(entries),
            _ => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool => "boolean",
            Json::Int(_) | Json::Float(_) => "number",
            Json::Str(_) => "string",
            Json::Arr(_) => "array",
            Json::Obj(_) => "object",
        }
    }

    /// The length of a multiline string (a string or a list of strings); `None` for other values.
    fn text_len(&self) -> Option<usize> {
        match self {
            Json::Str(s) => Some(s.len()),
            Json::Arr(items) => Some(items.iter().filter_map(Json::as_str).map(str::len).sum()),
            _ => None,
        }
    }

    /// A multiline string joined; list items that are not strings are ignored.
    fn text(&self) -> Option<Cow<'_, str>> {
        match self {
            Json::Str(s) => Some(Cow::Borrowed(s)),
            Json::Arr(items) => match items.as_slice() {
                [Json::Str(s)] => Some(Cow::Borrowed(s)),
                _ => {
                    let mut joined = String::with_capacity(self.text_len().unwrap_or(0));
                    items.iter().filter_map(Json::as_str).for_each(|s| joined.push_str(s));
                    Some(Cow::Owned(joined))
                }
            },
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        Json::deserialize(deserializer)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool)
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Json::Float(v as f64), Json::Int))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Json::Float(v))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Arr(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(Key(key)) = map.next_key()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Json::Obj(entries))
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The data of a rich output: v4 keeps it under `data` with MIME keys, v3 keeps it on the output
/// itself under short keys (`png`, `text`, …).
#[derive(Clone, Copy)]
enum Bundle<'j, 'a> {
    V4(&'j Json<'a>),
    V3(&'j Json<'a>),
}

impl<'j, 'a> Bundle<'j, 'a> {
    fn of(output: &'j Json<'a>) -> Self {
        match output.get("data") {
            Some(data) => Bundle::V4(data),
            None => Bundle::V3(output),
        }
    }

    fn get(self, mime: &str) -> Option<&'j Json<'a>> {
        match self {
            Bundle::V4(data) => data.get(mime),
            Bundle::V3(output) => v3_key(mime).and_then(|k| output.get(k)).or_else(|| output.get(mime)),
        }
    }

    /// The MIME types present, for warnings.
    fn mimes(self) -> String {
        let entries = match self {
            Bundle::V4(data) | Bundle::V3(data) => data.as_object().unwrap_or(&[]),
        };
        let skip = |k: &str| {
            matches!(self, Bundle::V3(_))
                && matches!(k, "output_type" | "metadata" | "prompt_number" | "execution_count" | "stream")
        };
        let names: Vec<&str> = entries.iter().map(|(k, _)| k.as_ref()).filter(|k| !skip(k)).collect();
        if names.is_empty() { "nothing".to_owned() } else { names.join(", ") }
    }
}

fn v3_key(mime: &str) -> Option<&'static str> {
    Some(match mime {
        "image/png" => "png",
        "image/jpeg" => "jpeg",
        "image/svg+xml" => "svg",
        "text/plain" => "text",
        "text/html" => "html",
        "text/latex" => "latex",
        "text/markdown" => "markdown",
        "application/json" => "json",
        "application/javascript" => "javascript",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Cells.

struct Notebook<'l> {
    limits: &'l ParseLimits,
    language: String,
    out: Parsed,
}

impl Notebook<'_> {
    fn warn(&mut self, at: Location, message: impl Into<String>) {
        self.out.warnings.push(Warning::new(at, message));
    }

    fn push(&mut self, block: Block) {
        if let Block::Heading { level: 1, text, .. } = &block
            && self.out.title.is_none()
        {
            self.out.title = Some(text.clone());
        }
        self.out.blocks.push(block);
    }

    fn cell(&mut self, n: u32, cell: &Json<'_>) {
        let at = Location::cell(n);
        if cell.as_object().is_none() {
            return self.warn(at, format!("the cell is a JSON {}, not an object; skipped", cell.kind()));
        }
        match cell.get("cell_type").and_then(Json::as_str) {
            Some("markdown") => self.markdown_cell(n, cell),
            Some("code") => self.code_cell(n, cell),
            Some("heading") => self.heading_cell(n, cell),
            Some("raw") => {}
            Some(other) => self.warn(at, format!("unknown cell type {other:?}; skipped")),
            None => self.warn(at, "the cell has no `cell_type`; skipped"),
        }
    }

    /// The cell's source (`source`, or v3's `input`), or `None` when it is missing, not text or
    /// over the part limit (the last two with a warning).
    fn source<'j>(&mut self, n: u32, cell: &'j Json<'_>, what: &str) -> Option<Cow<'j, str>> {
        let value = cell.get("source").or_else(|| cell.get("input"))?;
        let Some(len) = value.text_len() else {
            self.warn(Location::cell(n), format!("{what} skipped: its source is a JSON {}", value.kind()));
            return None;
        };
        if len > self.limits.max_part_bytes {
            let limit = self.limits.max_part_bytes;
            self.warn(
                Location::cell(n),
                format!("{what} skipped: its source is {len} bytes, over the {limit}-byte part limit"),
            );
            return None;
        }
        value.text()
    }

    fn heading_cell(&mut self, n: u32, cell: &Json<'_>) {
        let Some(source) = self.source(n, cell, "heading cell") else { return };
        let text = source.split_whitespace().collect::<Vec<_>>().join(" ");
        let text = text.trim_start_matches('#').trim_start().to_owned();
        if text.is_empty() {
            return;
        }
        let level = cell.get("level").and_then(Json::as_int).unwrap_or(1).clamp(1, 6) as u8;
        self.push(Block::Heading { level, text, at: at_line(n, 1) });
    }

    fn markdown_cell(&mut self, n: u32, cell: &Json<'_>) {
        let Some(source) = self.source(n, cell, "markdown cell") else { return };
        if source.trim().is_empty() {
            return;
        }
        MarkdownCell::new(self, n, &source, cell.get("attachments")).run();
    }

    fn code_cell(&mut self, n: u32, cell: &Json<'_>) {
        let Some(source) = self.source(n, cell, "code cell") else { return };
        let code = trim_blank_lines(&source);
        if code.is_empty() {
            return;
        }
        let language = cell.get("language").and_then(Json::as_text).unwrap_or(&self.language).to_owned();
        self.push(Block::Code { language: Some(language), code: code.to_owned(), at: Location::cell(n) });

        let Some(outputs) = cell.get("outputs").and_then(Json::as_array) else { return };
        let mut stream: Option<String> = None;
        for (j, output) in outputs.iter().enumerate() {
            let j = j + 1;
            let kind = output.get("output_type").and_then(Json::as_str).unwrap_or("");
            if kind != "stream"
                && let Some(text) = stream.take()
            {
                self.push_output(n, &text);
            }
            match kind {
                "stream" => self.stream_output(n, j, output, &mut stream),
                "execute_result" | "display_data" | "pyout" => self.rich_output(n, j, output, code),
                "error" | "pyerr" => self.error_output(n, j, output),
                "" => self.warn(Location::cell(n), format!("output {j} has no `output_type`; skipped")),
                other => self.warn(Location::cell(n), format!("output {j} has unknown type {other:?}; skipped")),
            }
        }
        if let Some(text) = stream {
            self.push_output(n, &text);
        }
    }

    fn over_limit(&mut self, n: u32, j: usize, what: &str, len: usize) -> bool {
        let limit = self.limits.max_part_bytes;
        if len > limit {
            self.warn(
                Location::cell(n),
                format!("output {j} ({what}) skipped: {len} bytes, over the {limit}-byte part limit"),
            );
        }
        len > limit
    }

    fn push_output(&mut self, n: u32, text: &str) {
        let text = clean_output(text);
        if !text.is_empty() {
            self.push(Block::Output { text, at: Location::cell(n) });
        }
    }

    fn stream_output(&mut self, n: u32, j: usize, output: &Json<'_>, stream: &mut Option<String>) {
        let Some(value) = output.get("text") else { return };
        let Some(len) = value.text_len() else {
            return self
                .warn(Location::cell(n), format!("output {j} (stream) skipped: its text is a JSON {}", value.kind()));
        };
        if self.over_limit(n, j, "stream", len) {
            return;
        }
        if let Some(text) = value.text() {
            stream.get_or_insert_with(String::new).push_str(&text);
        }
    }

    fn rich_output(&mut self, n: u32, j: usize, output: &Json<'_>, code: &str) {
        let at = Location::cell(n);
        let bundle = Bundle::of(output);
        if bundle.get(WIDGET_MIME).is_some() {
            return self.warn(
                at,
                format!("output {j} skipped: it is a Jupyter widget ({WIDGET_MIME}), which needs a live kernel"),
            );
        }
        if let Some((mime, value)) = OUTPUT_IMAGE_MIMES.iter().find_map(|m| bundle.get(m).map(|v| (*m, v))) {
            let Some(len) = value.text_len() else {
                return self.warn(at, format!("output {j} ({mime}) skipped: its data is a JSON {}", value.kind()));
            };
            if self.over_limit(n, j, mime, len) {
                return;
            }
            match image_bytes(mime, value) {
                Ok(data) => self.push(Block::Image(ImageRef {
                    source: ImageSource::Bytes { mime: mime.to_owned(), data },
                    alt: format!("output of cell {n}"),
                    title: None,
                    generating_code: Some(code.to_owned()),
                    at,
                })),
                Err(e) => self.warn(at, format!("output {j} ({mime}) skipped: {e}")),
            }
            return;
        }
        for mime in OUTPUT_TEXT_MIMES.iter().copied().chain(["text/html"]) {
            let Some(value) = bundle.get(mime) else { continue };
            let Some(len) = value.text_len() else { continue };
            if self.over_limit(n, j, mime, len) {
                return;
            }
            if let Some(text) = value.text() {
                if mime == "text/html" {
                    self.push_output(n, &html_to_text(&text));
                } else {
                    self.push_output(n, &text);
                }
            }
            return;
        }
        self.warn(at, format!("output {j} skipped: no image or text representation (it has {})", bundle.mimes()));
    }

    fn error_output(&mut self, n: u32, j: usize, output: &Json<'_>) {
        let ename = output.get("ename").and_then(Json::as_str).unwrap_or("Error");
        let evalue = output.get("evalue").and_then(Json::as_str).unwrap_or("");
        let traceback = output.get("traceback").and_then(Json::as_array).unwrap_or(&[]);
        let len =
            ename.len() + evalue.len() + traceback.iter().filter_map(Json::as_str).map(|s| s.len() + 1).sum::<usize>();
        if self.over_limit(n, j, "error", len) {
            return;
        }
        let mut text = String::with_capacity(len + 2);
        text.push_str(ename);
        text.push_str(": ");
        text.push_str(evalue);
        for line in traceback.iter().filter_map(Json::as_str) {
            text.push('\n');
            text.push_str(line);
        }
        self.push_output(n, &text);
    }

    /// Resolves an image found in a markdown cell and pushes it, or warns.
    fn markdown_image(&mut self, n: u32, image: ImageSpec, attachments: Option<&Json<'_>>) {
        let at = at_line(n, image.line);
        let src = image.src.trim();
        let source = if let Some(name) = strip_prefix_ci(src, "attachment:") {
            match self.attachment(at, name, attachments) {
                Some(source) => source,
                None => return,
            }
        } else if let Some(uri) = strip_prefix_ci(src, "data:") {
            match data_uri(uri) {
                Ok(source) => source,
                Err(e) => return self.warn(at, format!("data URI image skipped: {e}")),
            }
        } else if src.is_empty() {
            return self.warn(at, "image without a source skipped");
        } else {
            ImageSource::Path(src.to_owned())
        };
        self.push(Block::Image(ImageRef { source, alt: image.alt, title: image.title, generating_code: None, at }));
    }

    fn attachment(&mut self, at: Location, name: &str, attachments: Option<&Json<'_>>) -> Option<ImageSource> {
        let decoded = percent_decode(name);
        let bundle = attachments.and_then(|a| a.get(name).or_else(|| a.get(&String::from_utf8_lossy(&decoded))));
        let Some(bundle) = bundle else {
            self.warn(at, format!("image refers to attachment {name:?}, which the cell does not carry; skipped"));
            return None;
        };
        let entries = bundle.as_object().unwrap_or(&[]);
        let found = ATTACHMENT_MIMES
            .iter()
            .find_map(|m| bundle.get(m).map(|v| (*m, v)))
            .or_else(|| entries.iter().find(|(k, _)| k.starts_with("image/")).map(|(k, v)| (k.as_ref(), v)));
        let Some((mime, value)) = found else {
            self.warn(at, format!("attachment {name:?} holds no image; skipped"));
            return None;
        };
        let len = value.text_len().unwrap_or(0);
        let limit = self.limits.max_part_bytes;
        if len > limit {
            self.warn(at, format!("attachment {name:?} skipped: {len} bytes, over the {limit}-byte part limit"));
            return None;
        }
        match image_bytes(mime, value) {
            Ok(data) => Some(ImageSource::Bytes { mime: mime.to_owned(), data }),
            Err(e) => {
                self.warn(at, format!("attachment {name:?} skipped: {e}"));
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Markdown cells.

struct ImageSpec {
    src: String,
    alt: String,
    title: Option<String>,
    line: u32,
}

enum CutKind {
    /// Removed from the text (link definitions, thematic breaks).
    Drop,
    Heading {
        level: u8,
        text: String,
        images: Vec<ImageSpec>,
    },
    Code {
        language: Option<String>,
        code: String,
    },
    Image(ImageSpec),
    /// Raw HTML: its text stays, its `<img>`s become images. `flow` is false inside a paragraph.
    Html {
        value: String,
        flow: bool,
    },
}

/// A span of the cell source that is not kept as text as written.
struct Cut {
    start: usize,
    end: usize,
    line: u32,
    kind: CutKind,
}

struct MarkdownCell<'n, 'l, 's, 'j, 'a> {
    nb: &'n mut Notebook<'l>,
    n: u32,
    src: &'s str,
    attachments: Option<&'j Json<'a>>,
    line_starts: Vec<usize>,
    cuts: Vec<Cut>,
    text: String,
    text_line: Option<u32>,
}

impl<'n, 'l, 's, 'j, 'a> MarkdownCell<'n, 'l, 's, 'j, 'a> {
    fn new(nb: &'n mut Notebook<'l>, n: u32, src: &'s str, attachments: Option<&'j Json<'a>>) -> Self {
        let line_starts = std::iter::once(0).chain(src.match_indices('\n').map(|(i, _)| i + 1)).collect();
        MarkdownCell { nb, n, src, attachments, line_starts, cuts: Vec::new(), text: String::new(), text_line: None }
    }

    fn line_of(&self, offset: usize) -> u32 {
        u32::try_from(self.line_starts.partition_point(|&s| s <= offset)).unwrap_or(u32::MAX)
    }

    fn run(mut self) {
        let src = self.src;
        // Jupyter renders CommonMark with GFM tables, strikethrough and task lists, and MathJax
        // reads `$…$` and `$$…$$`: with math on, a formula is never mistaken for emphasis.
        let options = Options::ENABLE_TABLES
            | Options::ENABLE_STRIKETHROUGH
            | Options::ENABLE_TASKLISTS
            | Options::ENABLE_FOOTNOTES
            | Options::ENABLE_MATH;
        let parser = Parser::new_ext(src, options);
        let definitions: Vec<Range<usize>> =
            parser.reference_definitions().iter().map(|(_, d)| d.span.clone()).collect();
        let events: Vec<(Event<'_>, Range<usize>)> = parser.into_offset_iter().collect();
        for span in definitions {
            self.cut(span, CutKind::Drop);
        }
        self.walk(&events);
        self.emit();
    }

    fn cut(&mut self, span: Range<usize>, kind: CutKind) {
        let ok = span.start <= span.end && self.src.is_char_boundary(span.start) && self.src.is_char_boundary(span.end);
        if ok {
            let line = self.line_of(span.start);
            self.cuts.push(Cut { start: span.start, end: span.end, line, kind });
        }
    }

    /// Collects the cuts in document order. Everything not cut stays in the text as written.
    fn walk(&mut self, events: &[(Event<'_>, Range<usize>)]) {
        let mut i = 0;
        while let Some((event, span)) = events.get(i) {
            let line = self.line_of(span.start);
            // Only the constructs that are cut look for their end: doing it for every event
            // would be quadratic in the nesting depth.
            let end = || matching_end(events, i);
            let kind = match event {
                Event::Start(Tag::Heading { level, .. }) => {
                    let inner = &events[i + 1..end()];
                    let text = heading_text(inner).split_whitespace().collect::<Vec<_>>().join(" ");
                    let images = heading_images(inner, line);
                    Some(CutKind::Heading { level: *level as u8, text, images })
                }
                Event::Start(Tag::CodeBlock(block)) => {
                    let language = match block {
                        CodeBlockKind::Fenced(info) => info.split_whitespace().next().map(str::to_owned),
                        CodeBlockKind::Indented => None,
                    };
                    Some(CutKind::Code { language, code: concat_text(&events[i + 1..end()]) })
                }
                Event::Start(Tag::HtmlBlock) => {
                    let value = events[i + 1..end()]
                        .iter()
                        .filter_map(|(e, _)| if let Event::Html(h) = e { Some(h.as_ref()) } else { None })
                        .collect::<String>();
                    Some(CutKind::Html { value, flow: true })
                }
                Event::InlineHtml(h) | Event::Html(h) => Some(CutKind::Html { value: h.to_string(), flow: false }),
                Event::Start(Tag::Image { dest_url, title, .. }) => {
                    Some(CutKind::Image(image_spec(dest_url, title, &events[i + 1..end()], line)))
                }
                Event::Start(Tag::Link { .. }) => linked_image(&events[i + 1..end()], line),
                Event::Rule => Some(CutKind::Drop),
                _ => None,
            };
            match kind {
                Some(kind) => {
                    self.cut(span.clone(), kind);
                    i = end() + 1;
                }
                None => i += 1,
            }
        }
    }

    fn emit(&mut self) {
        let mut cuts = std::mem::take(&mut self.cuts);
        cuts.sort_by_key(|c| c.start);
        let mut pos = 0;
        for cut in cuts {
            if cut.start < pos || cut.end > self.src.len() {
                continue;
            }
            self.push_text(pos, cut.start);
            pos = cut.end;
            match cut.kind {
                CutKind::Drop => {}
                CutKind::Heading { level, text, images } => {
                    self.flush();
                    if !text.is_empty() {
                        self.nb.push(Block::Heading { level, text, at: at_line(self.n, cut.line) });
                    }
                    for image in images {
                        self.nb.markdown_image(self.n, image, self.attachments);
                    }
                }
                CutKind::Code { language, code } => {
                    self.flush();
                    let code = trim_blank_lines(&code);
                    if !code.is_empty() {
                        let at = at_line(self.n, cut.line);
                        self.nb.push(Block::Code { language, code: code.to_owned(), at });
                    }
                }
                CutKind::Image(image) => {
                    self.flush();
                    self.nb.markdown_image(self.n, image, self.attachments);
                }
                CutKind::Html { value, flow } => {
                    for piece in html_pieces(&value, flow) {
                        match piece {
                            HtmlPiece::Text(text) => {
                                if self.text_line.is_none() && !text.trim().is_empty() {
                                    self.text_line = Some(cut.line);
                                }
                                self.text.push_str(&text);
                            }
                            HtmlPiece::Img { attrs, offset } => {
                                self.flush();
                                let newlines = value.get(..offset).map_or(0, |v| v.matches('\n').count());
                                let line = cut.line.saturating_add(u32::try_from(newlines).unwrap_or(0));
                                match img_spec(&attrs, line) {
                                    Some(image) => self.nb.markdown_image(self.n, image, self.attachments),
                                    None => self.nb.warn(at_line(self.n, line), "<img> without a src skipped"),
                                }
                            }
                        }
                    }
                }
            }
        }
        self.push_text(pos, self.src.len());
        self.flush();
    }

    /// Appends the source between two offsets to the pending text.
    fn push_text(&mut self, start: usize, end: usize) {
        let Some(segment) = self.src.get(start..end) else { return };
        if self.text_line.is_none()
            && let Some(first) = segment.find(|c: char| !c.is_whitespace())
        {
            self.text_line = Some(self.line_of(start + first));
        }
        self.text.push_str(segment);
    }

    fn flush(&mut self) {
        let text = tidy(&self.text);
        self.text.clear();
        if let Some(line) = self.text_line.take()
            && text.chars().any(char::is_alphanumeric)
        {
            self.nb.push(Block::Text { text, at: at_line(self.n, line) });
        }
    }
}

/// The index of the event that closes the one at `i` (itself when it opens nothing).
fn matching_end(events: &[(Event<'_>, Range<usize>)], i: usize) -> usize {
    if !matches!(events.get(i), Some((Event::Start(_), _))) {
        return i;
    }
    let mut depth = 0usize;
    for (k, (event, _)) in events.iter().enumerate().skip(i) {
        match event {
            Event::Start(_) => depth += 1,
            Event::End(_) => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    events.len().saturating_sub(1)
}

/// The text events of a code block, concatenated.
fn concat_text(events: &[(Event<'_>, Range<usize>)]) -> String {
    events.iter().filter_map(|(e, _)| if let Event::Text(t) = e { Some(t.as_ref()) } else { None }).collect()
}

/// The plain text of a heading's content: math keeps its dollars, code loses its backticks,
/// images and HTML add nothing.
fn heading_text(events: &[(Event<'_>, Range<usize>)]) -> String {
    let mut out = String::new();
    let mut in_image = 0usize;
    for (event, _) in events {
        match event {
            Event::Start(Tag::Image { .. }) => in_image += 1,
            Event::End(TagEnd::Image) => in_image = in_image.saturating_sub(1),
            _ if in_image > 0 => {}
            Event::Text(t) | Event::Code(t) => out.push_str(t),
            Event::InlineMath(m) => {
                out.push('$');
                out.push_str(m);
                out.push('$');
            }
            Event::DisplayMath(m) => {
                out.push_str("$$");
                out.push_str(m);
                out.push_str("$$");
            }
            Event::SoftBreak | Event::HardBreak => out.push(' '),
            _ => {}
        }
    }
    out
}

/// The images inside a heading: Markdown images and HTML `<img>` tags.
fn heading_images(events: &[(Event<'_>, Range<usize>)], line: u32) -> Vec<ImageSpec> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some((event, _)) = events.get(i) {
        let end = matching_end(events, i);
        match event {
            Event::Start(Tag::Image { dest_url, title, .. }) => {
                out.push(image_spec(dest_url, title, &events[i + 1..end], line));
            }
            Event::InlineHtml(h) | Event::Html(h) => {
                out.extend(html_pieces(h, false).into_iter().filter_map(|p| match p {
                    HtmlPiece::Img { attrs, .. } => img_spec(&attrs, line),
                    HtmlPiece::Text(_) => None,
                }))
            }
            _ => {}
        }
        i = if matches!(event, Event::Start(Tag::Image { .. })) { end + 1 } else { i + 1 };
    }
    out
}

/// An image with its alt text: the plain text of its label.
fn image_spec(dest: &str, title: &str, label: &[(Event<'_>, Range<usize>)], line: u32) -> ImageSpec {
    let alt = label
        .iter()
        .filter_map(|(e, _)| match e {
            Event::Text(t) | Event::Code(t) | Event::InlineMath(t) | Event::DisplayMath(t) => Some(t.as_ref()),
            Event::SoftBreak | Event::HardBreak => Some(" "),
            _ => None,
        })
        .collect();
    ImageSpec { src: dest.to_owned(), alt, title: (!title.is_empty()).then(|| title.to_owned()), line }
}

/// A link around nothing but an image (`[![alt](src)](href)`, or an `<img>` tag) is cut whole,
/// as the image.
fn linked_image(inner: &[(Event<'_>, Range<usize>)], line: u32) -> Option<CutKind> {
    let (first, _) = inner.first()?;
    let only_whitespace_after = |k: usize| {
        inner[k..]
            .iter()
            .all(|(e, _)| matches!(e, Event::Text(t) if t.trim().is_empty()) || matches!(e, Event::SoftBreak))
    };
    match first {
        Event::Start(Tag::Image { dest_url, title, .. }) => {
            let end = matching_end(inner, 0);
            only_whitespace_after(end + 1).then(|| CutKind::Image(image_spec(dest_url, title, &inner[1..end], line)))
        }
        Event::InlineHtml(h) if find_ci(h, "<img").is_some() && only_whitespace_after(1) => {
            Some(CutKind::Html { value: h.to_string(), flow: false })
        }
        _ => None,
    }
}

fn img_spec(attrs: &[(String, String)], line: u32) -> Option<ImageSpec> {
    let attr = |name: &str| attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let src = attr("src").filter(|s| !s.trim().is_empty())?;
    Some(ImageSpec { src, alt: attr("alt").unwrap_or_default(), title: attr("title"), line })
}

/// Markdown text with line ends trimmed, runs of blank lines collapsed to one, no blank lines at
/// either end and the first line's indentation removed.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = false;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank = !out.is_empty();
            continue;
        }
        if out.is_empty() {
            out.push_str(line.trim_start());
        } else {
            out.push_str(if blank { "\n\n" } else { "\n" });
            out.push_str(line);
        }
        blank = false;
    }
    out
}

/// `text` without leading blank lines and trailing whitespace.
fn trim_blank_lines(text: &str) -> &str {
    let text = text.trim_end();
    let first = text.find(|c: char| !c.is_whitespace()).unwrap_or(text.len());
    let start = text[..first].rfind('\n').map_or(0, |i| i + 1);
    &text[start..]
}

/// Output text as a terminal would show it: ANSI escapes stripped, carriage-return overwrites
/// resolved to the last state of each line, line ends trimmed, no blank lines at either end.
fn clean_output(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = if line.contains('\r') { line.rsplit('\r').find(|s| !s.is_empty()).unwrap_or("") } else { line };
        if line.contains('\x1b') {
            // strip-ansi-escapes also drops tabs; keep them.
            let stripped: Vec<String> = line.split('\t').map(strip_ansi_escapes::strip_str).collect();
            out.push_str(stripped.join("\t").trim_end());
        } else {
            out.push_str(line.trim_end());
        }
        out.push('\n');
    }
    trim_blank_lines(&out).to_owned()
}

// ---------------------------------------------------------------------------------------------
// Image data.

/// The bytes of an image MIME bundle entry: SVG is text (base64 accepted too), others base64.
fn image_bytes(mime: &str, value: &Json<'_>) -> Result<Vec<u8>, String> {
    let text = value.text().ok_or_else(|| format!("its data is a JSON {}", value.kind()))?;
    if mime == "image/svg+xml" && text.trim_start().starts_with('<') {
        return Ok(text.into_owned().into_bytes());
    }
    let data = decode_base64(&text).map_err(|e| format!("invalid base64 ({e})"))?;
    if data.is_empty() {
        return Err("the image is empty".to_owned());
    }
    Ok(data)
}

/// Decodes standard base64, tolerating whitespace, missing padding and the URL-safe alphabet.
fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let text = text.trim_ascii();
    BASE64.decode(text).or_else(|e| {
        let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        BASE64.decode(&compact).or_else(|_| BASE64_URL.decode(&compact)).map_err(|_| e)
    })
}

/// `data:[<mime>][;…][;base64],<data>` (after `data:`) → bytes.
fn data_uri(uri: &str) -> Result<ImageSource, String> {
    let (header, payload) = uri.split_once(',').ok_or("no `,` after the media type")?;
    let mut params = header.split(';').map(str::trim);
    let mime = params.next().unwrap_or("").to_ascii_lowercase();
    let is_base64 = params.any(|p| p.eq_ignore_ascii_case("base64"));
    let mime = if mime == "image/jpg" { "image/jpeg".to_owned() } else { mime };
    if !mime.starts_with("image/") {
        let shown = if mime.is_empty() { "no media type" } else { &mime };
        return Err(format!("it is not an image ({shown})"));
    }
    let data = if is_base64 {
        let payload = if payload.contains('%') {
            Cow::Owned(String::from_utf8_lossy(&percent_decode(payload)).into_owned())
        } else {
            Cow::Borrowed(payload)
        };
        decode_base64(&payload).map_err(|e| format!("invalid base64 ({e})"))?
    } else {
        percent_decode(payload)
    };
    if data.is_empty() {
        return Err("the image is empty".to_owned());
    }
    Ok(ImageSource::Bytes { mime, data })
}

fn percent_decode(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |k: usize| b.get(k).and_then(|c| (*c as char).to_digit(16));
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn strip_prefix_ci<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    let n = needle.as_bytes();
    haystack.as_bytes().windows(n.len()).position(|w| w.eq_ignore_ascii_case(n))
}

// ---------------------------------------------------------------------------------------------
// A small, tolerant HTML scanner: text, tags and `<img>` attributes, nothing more.

enum HtmlPiece<'h> {
    Text(Cow<'h, str>),
    /// An `<img>` tag starting at byte `offset` of the HTML.
    Img {
        attrs: Vec<(String, String)>,
        offset: usize,
    },
}

const BLOCK_TAGS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "br",
    "dd",
    "div",
    "dl",
    "dt",
    "figcaption",
    "figure",
    "footer",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "tbody",
    "thead",
    "tfoot",
    "tr",
    "ul",
];

/// Splits HTML into text (tags removed, entities decoded, `<script>`/`<style>` and comments
/// dropped) and `<img>` tags. Outside `flow`, tags vanish (a `<br>` becomes a space); in flow HTML
/// block-level tags become line breaks.
fn html_pieces<'h>(html: &'h str, flow: bool) -> Vec<HtmlPiece<'h>> {
    let b = html.as_bytes();
    let mut pieces = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    let push_text = |pieces: &mut Vec<HtmlPiece<'h>>, start: usize, end: usize| {
        if let Some(text) = html.get(start..end).filter(|t| !t.is_empty()) {
            pieces.push(HtmlPiece::Text(decode_entities(text)));
        }
    };
    while let Some(rel) = html.get(i..).and_then(|rest| rest.find('<')) {
        let lt = i + rel;
        if html[lt..].starts_with("<!--") {
            push_text(&mut pieces, text_start, lt);
            let end = html[lt + 4..].find("-->").map_or(html.len(), |e| lt + 4 + e + 3);
            i = end;
            text_start = end;
            continue;
        }
        if !matches!(b.get(lt + 1), Some(c) if c.is_ascii_alphabetic() || matches!(c, b'/' | b'!' | b'?')) {
            i = lt + 1;
            continue;
        }
        let Some(end) = tag_end(b, lt + 1) else { break };
        push_text(&mut pieces, text_start, lt);
        let closing = b.get(lt + 1) == Some(&b'/');
        let name_start = lt + 1 + usize::from(closing);
        let name_len = b[name_start..end].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'-').count();
        let name = html[name_start..name_start + name_len].to_ascii_lowercase();
        let mut next = end;
        if !closing && (name == "script" || name == "style") {
            let close = format!("</{name}");
            next = find_ci(&html[end..], &close).and_then(|c| tag_end(b, end + c + 1)).unwrap_or(html.len());
        } else if !closing && name == "img" {
            let attrs = html.get(name_start + name_len..end.saturating_sub(1)).map(parse_attrs).unwrap_or_default();
            pieces.push(HtmlPiece::Img { attrs, offset: lt });
        } else if flow && BLOCK_TAGS.contains(&name.as_str()) {
            pieces.push(HtmlPiece::Text(Cow::Borrowed("\n")));
        } else if (closing && matches!(name.as_str(), "td" | "th")) || (!flow && name == "br") {
            pieces.push(HtmlPiece::Text(Cow::Borrowed(" ")));
        }
        i = next;
        text_start = next;
    }
    push_text(&mut pieces, text_start, html.len());
    pieces
}

/// The index just past the `>` closing the tag whose body starts at `from`, skipping quoted
/// attribute values; `None` when there is none.
fn tag_end(b: &[u8], from: usize) -> Option<usize> {
    let mut quote = None;
    for (k, &c) in b.iter().enumerate().skip(from) {
        match (quote, c) {
            (Some(q), _) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(c),
            (None, b'>') => return Some(k + 1),
            _ => {}
        }
    }
    None
}

/// `name=value`, `name='value'`, `name="value"` and bare `name`; names lowercased, values with
/// entities decoded.
fn parse_attrs(text: &str) -> Vec<(String, String)> {
    let b = text.as_bytes();
    let mut attrs = Vec::new();
    let mut i = 0;
    let is_space = |c: u8| c.is_ascii_whitespace();
    while i < b.len() {
        while i < b.len() && (is_space(b[i]) || b[i] == b'/') {
            i += 1;
        }
        let start = i;
        while i < b.len() && !is_space(b[i]) && !matches!(b[i], b'=' | b'/' | b'>') {
            i += 1;
        }
        if i == start {
            i += 1;
            continue;
        }
        let name = text[start..i].to_ascii_lowercase();
        while i < b.len() && is_space(b[i]) {
            i += 1;
        }
        let mut value = String::new();
        if b.get(i) == Some(&b'=') {
            i += 1;
            while i < b.len() && is_space(b[i]) {
                i += 1;
            }
            let (vstart, vend) = match b.get(i) {
                Some(&q @ (b'"' | b'\'')) => {
                    let vstart = i + 1;
                    let vend = b[vstart..].iter().position(|&c| c == q).map_or(b.len(), |p| vstart + p);
                    i = (vend + 1).min(b.len());
                    (vstart, vend)
                }
                _ => {
                    let vstart = i;
                    while i < b.len() && !is_space(b[i]) && b[i] != b'>' {
                        i += 1;
                    }
                    (vstart, i)
                }
            };
            value = decode_entities(text.get(vstart..vend).unwrap_or("")).into_owned();
        }
        attrs.push((name, value));
    }
    attrs
}

/// Decodes the common named entities and numeric character references; others stay as written.
fn decode_entities(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded =
            rest.get(1..).and_then(|r| r.get(..r.find(';')?)).filter(|name| name.len() <= 10).and_then(|name| {
                let c = match name {
                    "amp" => '&',
                    "lt" => '<',
                    "gt" => '>',
                    "quot" => '"',
                    "apos" => '\'',
                    "nbsp" => ' ',
                    "copy" => '©',
                    "reg" => '®',
                    "hellip" => '…',
                    "ndash" => '–',
                    "mdash" => '—',
                    _ => {
                        let num = name.strip_prefix('#')?;
                        let code = match num.strip_prefix(['x', 'X']) {
                            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                            None => num.parse().ok()?,
                        };
                        char::from_u32(code)?
                    }
                };
                Some((c, name.len() + 2))
            });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The text of an HTML output, crudely: tags stripped, block tags as line breaks, blank lines
/// dropped.
fn html_to_text(html: &str) -> String {
    let text: String = html_pieces(html, true)
        .into_iter()
        .filter_map(|p| match p {
            HtmlPiece::Text(t) => Some(t),
            HtmlPiece::Img { .. } => None,
        })
        .collect();
    text.lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// A 1×1 PNG.
    const PNG: &str =
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
    const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

    fn nb4(cells: Value) -> String {
        json!({
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}},
            "cells": cells,
        })
        .to_string()
    }

    fn md(source: Value) -> Value {
        json!({"cell_type": "markdown", "id": "m", "metadata": {}, "source": source})
    }

    fn code(source: Value, outputs: Value) -> Value {
        json!({"cell_type": "code", "id": "c", "metadata": {}, "execution_count": 1, "source": source, "outputs": outputs})
    }

    fn ok(text: &str) -> Parsed {
        parse(text.as_bytes(), &ParseLimits::default()).expect("the notebook parses")
    }

    fn err(bytes: &[u8]) -> SkipReason {
        parse(bytes, &ParseLimits::default()).expect_err("the file is skipped")
    }

    fn text(s: &str, cell: u32, line: u32) -> Block {
        Block::Text { text: s.to_owned(), at: at_line(cell, line) }
    }

    fn images(parsed: &Parsed) -> Vec<&ImageRef> {
        parsed.blocks.iter().filter_map(|b| if let Block::Image(i) = b { Some(i) } else { None }).collect()
    }

    fn outputs(parsed: &Parsed) -> Vec<&str> {
        parsed
            .blocks
            .iter()
            .filter_map(|b| if let Block::Output { text, .. } = b { Some(text.as_str()) } else { None })
            .collect()
    }

    fn bytes_of(image: &ImageRef) -> (&str, &[u8]) {
        match &image.source {
            ImageSource::Bytes { mime, data } => (mime, data),
            other => panic!("expected bytes, got {other:?}"),
        }
    }

    #[test]
    fn markdown_cells_become_headings_text_and_code() {
        let source = "# The *title*\n\nSome *text* with $a_1 * b_2$ math and `code`.\n\n```python\nx = 1\n```\n\n\
                      Setext heading\n--------------\n\n| a | b |\n|---|---|\n| $|0\\rangle$ | 2 |\n\n\
                      [ref]: http://example.com\n\n***\n\n- item one\n- item two\n";
        let parsed = ok(&nb4(json!([md(json!(source))])));
        assert_eq!(
            parsed.blocks,
            vec![
                Block::Heading { level: 1, text: "The title".into(), at: at_line(1, 1) },
                text("Some *text* with $a_1 * b_2$ math and `code`.", 1, 3),
                Block::Code { language: Some("python".into()), code: "x = 1".into(), at: at_line(1, 5) },
                Block::Heading { level: 2, text: "Setext heading".into(), at: at_line(1, 9) },
                text("| a | b |\n|---|---|\n| $|0\\rangle$ | 2 |\n\n- item one\n- item two", 1, 12),
            ]
        );
        assert_eq!(parsed.title.as_deref(), Some("The title"));
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        let meta: Vec<(&str, &str)> = parsed.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(meta, [("kernel", "python3"), ("language", "python"), ("nbformat", "4.5")]);
    }

    #[test]
    fn front_matter_metadata_and_no_title_without_h1() {
        let notebook = json!({"nbformat": 4, "nbformat_minor": 2, "cells": [md(json!("## Background"))],
            "metadata": {"title": "The page", "description": " What it is ", "language_info": {"name": "python"}}});
        let parsed = ok(&notebook.to_string());
        assert_eq!(parsed.title, None);
        let meta: Vec<(&str, &str)> = parsed.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            meta,
            [("description", "What it is"), ("language", "python"), ("nbformat", "4.2"), ("title", "The page")]
        );
    }

    #[test]
    fn string_and_list_sources_are_the_same() {
        let lines = ["# Head\n", "\n", "para ![i](a.png) graph\n"];
        let code_lines = ["print(1)\n", "print(2)"];
        let as_list = nb4(json!([
            md(json!(lines)),
            code(json!(code_lines), json!([{"output_type": "stream", "name": "stdout", "text": ["1\n", "2\n"]}]))
        ]));
        let as_string = nb4(json!([
            md(json!(lines.concat())),
            code(json!(code_lines.concat()), json!([{"output_type": "stream", "name": "stdout", "text": "1\n2\n"}]))
        ]));
        let parsed = ok(&as_list);
        assert_eq!(parsed, ok(&as_string));
        assert_eq!(parsed.blocks.len(), 6);
        assert_eq!(parsed.blocks[1], text("para", 1, 3));
        assert_eq!(parsed.blocks[3], text("graph", 1, 3));
        assert_eq!(
            parsed.blocks[4],
            Block::Code { language: Some("python".into()), code: "print(1)\nprint(2)".into(), at: Location::cell(2) }
        );
        assert_eq!(outputs(&parsed), ["1\n2"]);
    }

    #[test]
    fn code_outputs_in_order() {
        let svg = ["<svg xmlns=\"http://www.w3.org/2000/svg\">\n", "<rect/>\n", "</svg>\n"];
        let cells = json!([
            code(json!(""), json!([{"output_type": "stream", "name": "stdout", "text": "dropped"}])),
            code(
                json!("plot()"),
                json!([
                    {"output_type": "stream", "name": "stdout", "text": "out\n"},
                    {"output_type": "stream", "name": "stderr", "text": "\u{1b}[33mwarn\u{1b}[0m\tx\n"},
                    {"output_type": "stream", "name": "stdout", "text": "step 1\rstep 2\rstep 3\n"},
                    {"output_type": "display_data", "metadata": {}, "data": {"image/png": format!("{PNG}\n"), "image/svg+xml": svg, "text/plain": "<Figure>"}},
                    {"output_type": "execute_result", "execution_count": 1, "metadata": {}, "data": {"text/plain": ["{'a': 1,\n", " 'b': 2}"]}},
                    {"output_type": "display_data", "metadata": {}, "data": {"image/jpeg": "/9j/4AAQ", "text/plain": "<Image>"}},
                    {"output_type": "display_data", "metadata": {}, "data": {"image/svg+xml": svg}},
                    {"output_type": "display_data", "metadata": {}, "data": {"text/html": "<div><p>Hello &amp; <b>bye</b></p><script>x()</script><table><tr><td>1</td><td>2</td></tr></table></div>"}},
                ])
            ),
        ]);
        let parsed = ok(&nb4(cells));
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        assert!(
            matches!(&parsed.blocks[0], Block::Code { code, at, .. } if code == "plot()" && *at == Location::cell(2))
        );
        assert_eq!(outputs(&parsed), ["out\nwarn\tx\nstep 3", "{'a': 1,\n 'b': 2}", "Hello & bye\n1 2"]);
        let imgs = images(&parsed);
        assert_eq!(imgs.len(), 3);
        for image in &imgs {
            assert_eq!(image.generating_code.as_deref(), Some("plot()"));
            assert_eq!(image.alt, "output of cell 2");
            assert_eq!(image.at, Location::cell(2));
        }
        let (mime, data) = bytes_of(imgs[0]);
        assert_eq!(mime, "image/png");
        assert!(data.starts_with(PNG_MAGIC));
        let (mime, data) = bytes_of(imgs[1]);
        assert_eq!((mime, data), ("image/jpeg", &[0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10][..]));
        let (mime, data) = bytes_of(imgs[2]);
        assert_eq!((mime, data), ("image/svg+xml", svg.concat().as_bytes()));
        // Code, merged streams, png, text, jpeg, svg, html: output order is kept.
        let kinds: Vec<&str> = parsed
            .blocks
            .iter()
            .map(|b| match b {
                Block::Code { .. } => "code",
                Block::Output { .. } => "output",
                Block::Image(_) => "image",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["code", "output", "image", "output", "image", "image", "output"]);
    }

    #[test]
    fn errors_lose_their_ansi_escapes() {
        let traceback = [
            "\u{1b}[31m---------------------------------------------------------------------------\u{1b}[39m",
            "\u{1b}[31mValueError\u{1b}[39m                                Traceback (most recent call last)",
            "\u{1b}[32m----> \u{1b}[39m\u{1b}[32m1\u{1b}[39m f(\u{1b}[32m1\u{1b}[39m)\n",
            "\u{1b}[31mValueError\u{1b}[39m: bad value",
        ];
        let cells = json!([code(
            json!("f(1)"),
            json!([{"output_type": "error", "ename": "ValueError", "evalue": "bad value", "traceback": traceback}])
        )]);
        let parsed = ok(&nb4(cells));
        let out = outputs(&parsed);
        assert_eq!(out.len(), 1);
        assert!(out[0].starts_with("ValueError: bad value\n-----"), "{}", out[0]);
        assert!(out[0].contains("----> 1 f(1)"), "{}", out[0]);
        assert!(out[0].ends_with("ValueError: bad value"));
        assert!(!out[0].contains('\u{1b}'));
    }

    #[test]
    fn widgets_are_skipped_with_a_warning() {
        let widget = json!({"output_type": "display_data", "metadata": {}, "data": {
            "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2, "version_minor": 0},
            "text/plain": "IntSlider(value=0)"}});
        let js = json!({"output_type": "display_data", "metadata": {}, "data": {"application/javascript": "x()"}});
        let parsed = ok(&nb4(json!([code(json!("slider"), json!([widget, js]))])));
        assert_eq!(parsed.blocks.len(), 1);
        assert_eq!(parsed.warnings.len(), 2);
        assert!(parsed.warnings[0].message.contains("widget"));
        assert_eq!(parsed.warnings[0].at, Location::cell(1));
        assert!(parsed.warnings[1].message.contains("application/javascript"));
    }

    #[test]
    fn oversized_parts_are_skipped_and_the_rest_parses() {
        let big = "x".repeat(300);
        let cells = json!([
            md(json!(format!("# Big\n{big}"))),
            code(
                json!("small()"),
                json!([
                    {"output_type": "stream", "name": "stdout", "text": big},
                    {"output_type": "execute_result", "data": {"text/plain": "ok"}, "metadata": {}, "execution_count": 1},
                ])
            ),
            code(json!(big), json!([])),
            md(json!("# After")),
        ]);
        let limits = ParseLimits { max_part_bytes: 200 };
        let parsed = parse(nb4(cells).as_bytes(), &limits).expect("parses");
        assert_eq!(parsed.blocks.len(), 3, "{:?}", parsed.blocks);
        assert_eq!(outputs(&parsed), ["ok"]);
        assert_eq!(parsed.title.as_deref(), Some("After"));
        let at: Vec<Location> = parsed.warnings.iter().map(|w| w.at).collect();
        assert_eq!(at, [Location::cell(1), Location::cell(2), Location::cell(3)]);
        assert!(parsed.warnings.iter().all(|w| w.message.contains("200-byte part limit")), "{:?}", parsed.warnings);
    }

    #[test]
    fn attachments_resolve_and_unknown_ones_warn() {
        let cell = json!({
            "cell_type": "markdown",
            "metadata": {},
            "attachments": {"card.png": {"image/png": PNG}, "my pic.png": {"image/png": [&PNG[..40], "\n", &PNG[40..]]}},
            "source": ["![The card](attachment:card.png \"Card\")\n", "\n", "![](attachment:my%20pic.png)\n", "\n", "![gone](attachment:missing.png)"],
        });
        let parsed = ok(&nb4(json!([cell])));
        let imgs = images(&parsed);
        assert_eq!(imgs.len(), 2);
        assert_eq!(imgs[0].alt, "The card");
        assert_eq!(imgs[0].title.as_deref(), Some("Card"));
        assert_eq!(imgs[0].at, at_line(1, 1));
        assert!(bytes_of(imgs[0]).1.starts_with(PNG_MAGIC));
        assert_eq!(bytes_of(imgs[1]), bytes_of(imgs[0]));
        assert_eq!(parsed.warnings.len(), 1);
        assert_eq!(parsed.warnings[0].at, at_line(1, 5));
        assert!(parsed.warnings[0].message.contains("missing.png"));
    }

    #[test]
    fn data_uris_are_decoded() {
        let source = format!(
            "![dot](data:image/png;base64,{PNG})\n\n![svg](data:image/svg+xml;utf8,%3Csvg%3E%3C/svg%3E)\n\n\
             ![bad](data:image/png;base64,@@@)\n\n![txt](data:text/plain,hello)"
        );
        let parsed = ok(&nb4(json!([md(json!(source))])));
        let imgs = images(&parsed);
        assert_eq!(imgs.len(), 2);
        assert_eq!(bytes_of(imgs[0]).0, "image/png");
        assert!(bytes_of(imgs[0]).1.starts_with(PNG_MAGIC));
        assert_eq!(bytes_of(imgs[1]), ("image/svg+xml", &b"<svg></svg>"[..]));
        assert_eq!(parsed.warnings.len(), 2);
        assert!(parsed.warnings[0].message.contains("base64"));
        assert!(parsed.warnings[1].message.contains("not an image"));
    }

    #[test]
    fn html_images_and_linked_images() {
        let source = "Intro.\n\n<div align=\"center\">\n<IMG SRC='images/a.png' alt=\"A &amp; B\" width=300/>\n<p>Caption</p>\n</div>\n\n\
                      Inline <img src=b.png title=\"T\"> and <b>bold</b><br>end.\n\n[![logo](logo.png)](https://example.com)\n\n<!-- <img src=\"hidden.png\"> -->";
        let parsed = ok(&nb4(json!([md(json!(source))])));
        let path = |b: &Block| match b {
            Block::Image(ImageRef { source: ImageSource::Path(p), alt, title, at, .. }) => {
                Some((p.clone(), alt.clone(), title.clone(), *at))
            }
            _ => None,
        };
        let found: Vec<_> = parsed.blocks.iter().filter_map(path).collect();
        assert_eq!(
            found,
            [
                ("images/a.png".into(), "A & B".into(), None, at_line(1, 4)),
                ("b.png".into(), String::new(), Some("T".into()), at_line(1, 8)),
                ("logo.png".into(), "logo".into(), None, at_line(1, 10)),
            ]
        );
        let texts: Vec<&str> = parsed
            .blocks
            .iter()
            .filter_map(|b| if let Block::Text { text, .. } = b { Some(text.as_str()) } else { None })
            .collect();
        assert_eq!(texts, ["Intro.", "Caption\n\nInline", "and bold end."]);
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    }

    #[test]
    fn nbformat_3() {
        let notebook = json!({
            "nbformat": 3,
            "nbformat_minor": 0,
            "metadata": {"name": "old"},
            "worksheets": [{"cells": [
                {"cell_type": "heading", "level": 1, "metadata": {}, "source": ["Old notebook"]},
                {"cell_type": "markdown", "metadata": {}, "source": "Some text."},
            ]}, {"cells": [
                {"cell_type": "code", "collapsed": false, "input": ["x = 1\n", "x"], "language": "python", "metadata": {}, "prompt_number": 1, "outputs": [
                    {"output_type": "stream", "stream": "stdout", "text": ["hi\n"]},
                    {"output_type": "pyout", "prompt_number": 1, "metadata": {}, "png": PNG, "text": ["<matplotlib.figure>"]},
                    {"output_type": "display_data", "metadata": {}, "svg": ["<svg>", "</svg>"]},
                    {"output_type": "pyout", "prompt_number": 2, "metadata": {}, "text": "1"},
                    {"output_type": "pyerr", "ename": "NameError", "evalue": "name 'y' is not defined", "traceback": ["\u{1b}[1;31mNameError\u{1b}[0m"]},
                ]},
                {"cell_type": "raw", "metadata": {}, "source": "raw text"},
            ]}],
        });
        let parsed = ok(&notebook.to_string());
        assert_eq!(parsed.title.as_deref(), Some("Old notebook"));
        assert_eq!(parsed.metadata.get("nbformat").map(String::as_str), Some("3.0"));
        assert_eq!(parsed.metadata.get("language").map(String::as_str), Some("python"));
        assert_eq!(parsed.blocks[0], Block::Heading { level: 1, text: "Old notebook".into(), at: at_line(1, 1) });
        assert_eq!(parsed.blocks[1], text("Some text.", 2, 1));
        assert_eq!(
            parsed.blocks[2],
            Block::Code { language: Some("python".into()), code: "x = 1\nx".into(), at: Location::cell(3) }
        );
        assert_eq!(outputs(&parsed), ["hi", "1", "NameError: name 'y' is not defined\nNameError"]);
        let imgs = images(&parsed);
        assert_eq!(imgs.len(), 2);
        assert_eq!(bytes_of(imgs[0]).0, "image/png");
        assert_eq!(bytes_of(imgs[1]), ("image/svg+xml", &b"<svg></svg>"[..]));
        assert_eq!(imgs[1].generating_code.as_deref(), Some("x = 1\nx"));
        assert_eq!(parsed.blocks.len(), 8);
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    }

    #[test]
    fn bad_inputs_are_skipped_with_reasons() {
        assert_eq!(err(b""), SkipReason::Empty);
        assert_eq!(err(b" \n\t"), SkipReason::Empty);
        assert_eq!(err(b"{\"a\": \"\xff\"}"), SkipReason::NotUtf8 { offset: 7 });
        match err(b"{\n  \"nbformat\": 4,\n  oops\n}") {
            SkipReason::InvalidJson { line: 3, column: 3, message } => assert_eq!(message, "key must be a string"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(err(b"[1, 2]"), SkipReason::NotANotebook { message } if message.contains("array")));
        assert!(matches!(err(b"{}"), SkipReason::NotANotebook { message } if message.contains("nbformat")));
        assert!(matches!(err(b"{\"nbformat\": \"four\"}"), SkipReason::NotANotebook { .. }));
        assert!(matches!(err(b"{\"nbformat\": 4}"), SkipReason::NotANotebook { message } if message.contains("cells")));
        assert_eq!(
            err(b"{\"nbformat\": 5, \"nbformat_minor\": 1, \"cells\": []}"),
            SkipReason::UnknownNbformat { major: 5, minor: 1 }
        );
        assert_eq!(err(b"{\"nbformat\": 2}"), SkipReason::UnknownNbformat { major: 2, minor: 0 });
        // Odd cells and outputs warn; the notebook still parses.
        let odd = nb4(json!([1, {"cell_type": "slides"}, {"source": "x"}, {"cell_type": "code", "source": 3},
            code(json!("x"), json!([{"output_type": "weird"}, {"output_type": "stream", "text": 5}]))]));
        let parsed = ok(&odd);
        assert_eq!(parsed.blocks.len(), 1);
        assert_eq!(parsed.warnings.len(), 6, "{:?}", parsed.warnings);
    }

    #[test]
    fn pathological_markdown_is_still_markdown() {
        // Shapes that crashed or stalled markdown-rs (adjacent setext underlines, 10,000 nested
        // quotes, thousands of `[` or `**`) are ordinary input for pulldown-cmark.
        let parsed = ok(&nb4(json!([md(json!("=\n=\n=\na\n="))])));
        let heading = |text: &str, line| Block::Heading { level: 1, text: text.into(), at: at_line(1, line) };
        assert_eq!(parsed.blocks, [heading("=", 1), heading("= a", 3)]);
        for source in [
            format!("{}deep", ">".repeat(10_000)),
            format!("{}x", "[".repeat(5_000)),
            format!("{}x{}", "**".repeat(2_500), "**".repeat(2_500)),
        ] {
            let parsed = ok(&nb4(json!([md(json!(source))])));
            assert_eq!(parsed.blocks, [text(&source, 1, 1)]);
            assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        }
        // A long line of dashes is a thematic break; quote markers are kept as written.
        let parsed = ok(&nb4(json!([md(json!(format!("{}\n\n{}quoted", "-".repeat(200), "> ".repeat(20))))])));
        assert!(parsed.warnings.is_empty());
        assert_eq!(parsed.blocks, [text(&format!("{}quoted", "> ".repeat(20)), 1, 3)]);
    }

    fn corpus_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("corpus directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                corpus_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "ipynb") {
                out.push(path);
            }
        }
        out.sort();
    }

    #[test]
    fn project_corpus_notebooks() {
        let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus/quantum/notebooks"));
        let mut files = Vec::new();
        corpus_files(dir, &mut files);
        assert_eq!(files.len(), 6);
        let mut total_images = 0;
        for file in &files {
            let parsed = parse(&std::fs::read(file).expect("readable"), &ParseLimits::default()).expect("parses");
            assert!(parsed.title.is_some(), "{file:?}");
            assert!(parsed.warnings.is_empty(), "{file:?}: {:?}", parsed.warnings);
            assert!(parsed.blocks.iter().any(|b| matches!(b, Block::Code { .. })), "{file:?}");
            total_images += images(&parsed).len();
        }
        assert!(total_images >= 15, "{total_images}");

        let read = |name: &str| {
            parse(&std::fs::read(dir.join(name)).expect("readable"), &ParseLimits::default()).expect("parses")
        };
        let basics = read("basics/intro.ipynb");
        assert_eq!(basics.title.as_deref(), Some("Introduction to quantum circuits"));
        let imgs = images(&basics);
        let from_outputs: Vec<_> = imgs.iter().filter(|i| i.generating_code.is_some()).collect();
        assert_eq!(from_outputs.len(), 2);
        assert!(from_outputs.iter().all(|i| bytes_of(i).1.starts_with(PNG_MAGIC)));
        assert_eq!(from_outputs[0].generating_code.as_deref(), Some("bell.draw(\"mpl\")"));
        assert_eq!(from_outputs[0].at, Location::cell(5));
        let attachment = imgs.iter().find(|i| i.at.cell == Some(7)).expect("attachment image");
        assert!(attachment.alt.starts_with("Reference card"));
        assert!(bytes_of(attachment).1.starts_with(PNG_MAGIC));
        assert!(
            imgs.iter().any(|i| i.source == ImageSource::Path("images/overview.png".into()) && i.at.cell == Some(1))
        );
        let error = basics.blocks.iter().find_map(|b| match b {
            Block::Output { text, at } if at.cell == Some(11) => Some(text),
            _ => None,
        });
        let error = error.expect("error output");
        assert!(error.starts_with("ValueError: a GHZ state needs at least two qubits"));
        assert!(error.contains("----> 1 ghz_circuit(1)") && !error.contains('\u{1b}'));

        let advanced = read("advanced/intro.ipynb");
        let imgs = images(&advanced);
        let html = imgs.iter().find(|i| i.at.cell == Some(1)).expect("html image");
        assert_eq!(html.source, ImageSource::Path("images/overview.png".into()));
        assert!(html.alt.starts_with("Bloch sphere"));
        let data_uri = imgs.iter().find(|i| i.at.cell == Some(2)).expect("data URI image");
        assert!(bytes_of(data_uri).1.starts_with(PNG_MAGIC));
        assert!(imgs.iter().any(|i| i.generating_code.is_some() && bytes_of(i).0 == "image/svg+xml"));
    }

    #[test]
    fn shared_qiskit_docs_notebooks() {
        let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus/qiskit-docs"));
        let mut files = Vec::new();
        corpus_files(dir, &mut files);
        assert_eq!(files.len(), 49);
        let mut blocks = 0;
        for file in &files {
            let parsed = parse(&std::fs::read(file).expect("readable"), &ParseLimits::default());
            let parsed = parsed.unwrap_or_else(|e| panic!("{file:?} skipped: {e}"));
            assert!(!parsed.blocks.is_empty(), "{file:?}");
            blocks += parsed.blocks.len();
        }
        assert!(blocks > 2000, "{blocks}");
    }

    fn sample_notebook() -> String {
        nb4(json!([
            md(json!([
                "# Title\n",
                "Text with ![img](attachment:a.png) and <img src=\"x.png\">\n",
                "```py\ncode\n```"
            ])),
            code(
                json!(["print(1)\n", "plot()"]),
                json!([
                    {"output_type": "stream", "name": "stdout", "text": ["1\n"]},
                    {"output_type": "display_data", "metadata": {}, "data": {"image/png": PNG, "text/plain": "fig"}},
                    {"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["\u{1b}[31mE\u{1b}[0m"]},
                ])
            ),
        ]))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes, &ParseLimits::default());
        }

        #[test]
        fn mutated_notebooks_never_panic(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let mut bytes = sample_notebook().into_bytes();
            for (at, byte) in edits {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            if truncate {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            let _ = parse(&bytes, &ParseLimits::default());
            let _ = parse(&bytes, &ParseLimits { max_part_bytes: 16 });
        }
    }
}
