//! MDX (and plain Markdown) → blocks, through markdown-rs's syntax tree (mdast).
//!
//! The parser is markdown-rs with MDX constructs (ESM, expressions, JSX), YAML front matter,
//! GFM tables and math. Its tree is walked once, in document order:
//!
//! - front matter → `metadata` (scalars as strings, nested values as compact JSON) and `title`
//!   (else the first level-1 heading); invalid YAML is a warning;
//! - `import`/`export` and `{expressions}` are dropped (expressions are counted in one warning);
//! - headings → [`Block::Heading`]; paragraphs, lists, block quotes, tables (as pipe tables),
//!   thematic breaks and `$$` math → [`Block::Text`]; fenced code → [`Block::Code`], except a
//!   `text`/`output` fence right after a code block (optionally after an `Output:` line), which
//!   is that code's [`Block::Output`];
//! - images (`![alt](src "title")`, `<Image>`, `<img>`, also inside `<figure>`, raw HTML
//!   `<img>`) → [`Block::Image`] where they occur, splitting the surrounding text; `data:` URIs
//!   become embedded bytes; an `src={expression}` is a warning;
//! - JSX components: admonitions and tabs keep their content behind a short label, API
//!   components (`<Function>`, `<Class>`, `<Attribute>`…) keep their content behind their
//!   signature, HTML elements are transparent, unknown components keep their content and get
//!   one warning per name.
//!
//! Two input guards protect against markdown-rs itself: whitespace after `=` in a JSX attribute
//! (`<Admonition type = "note">`, valid MDX that markdown-rs 1.0 rejects or silently reads as
//! text) is moved before the `=`, which keeps every byte offset; and input nested so deeply that
//! markdown-rs would overflow its stack or take minutes is skipped as an MDX error.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};

use base64::Engine as _;
use markdown::mdast::{self, AlignKind, AttributeContent, AttributeValue, Node};
use markdown::message::{Message, Place};
use markdown::{Constructs, MdxSignal, ParseOptions};

use super::document::{Block, ImageRef, ImageSource, Location, ParseLimits, Parsed, SkipReason, Warning};

/// Deeper syntax trees are flattened to plain text instead of being walked recursively.
const MAX_DEPTH: usize = 100;
/// More nested JSX tags than this are refused: markdown-rs recurses once per level.
const MAX_JSX_NESTING: usize = 4096;
/// More container markers (`>`, `-`, `1.`) at the start of one line than this are refused:
/// markdown-rs takes quadratic time in the nesting depth.
const MAX_LINE_CONTAINERS: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    Mdx,
    Markdown,
}

/// Parses an `.mdx` file.
pub fn parse(bytes: &[u8], limits: &ParseLimits) -> Result<Parsed, SkipReason> {
    parse_flavor(bytes, limits, Flavor::Mdx)
}

/// Parses a plain `.md` file: GFM with raw HTML instead of JSX, so `<` and `{` are just text.
pub fn parse_markdown(bytes: &[u8], limits: &ParseLimits) -> Result<Parsed, SkipReason> {
    parse_flavor(bytes, limits, Flavor::Markdown)
}

fn parse_flavor(bytes: &[u8], limits: &ParseLimits, flavor: Flavor) -> Result<Parsed, SkipReason> {
    let text = std::str::from_utf8(bytes).map_err(|e| SkipReason::NotUtf8 { offset: e.valid_up_to() as u64 })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(SkipReason::Empty);
    }
    let text = normalize_line_endings(text);
    let fixes = prescan(&text, flavor == Flavor::Mdx)?;
    let text = match apply_fixes(&text, &fixes) {
        Some(fixed) => Cow::Owned(fixed),
        None => text,
    };
    let tree = to_tree(&text, flavor)?;
    let mut walker = Walker::new(limits, &tree, &text);
    walker.flow(&tree);
    Ok(walker.finish())
}

fn parse_options(flavor: Flavor) -> ParseOptions {
    match flavor {
        Flavor::Mdx => ParseOptions {
            constructs: Constructs {
                frontmatter: true,
                gfm_table: true,
                math_flow: true,
                math_text: true,
                ..Constructs::mdx()
            },
            // Without a parser for ESM, markdown-rs reads `import` lines as paragraphs.
            mdx_esm_parse: Some(Box::new(|_: &str| MdxSignal::Ok)),
            ..ParseOptions::mdx()
        },
        Flavor::Markdown => ParseOptions {
            constructs: Constructs { frontmatter: true, math_flow: true, math_text: true, ..Constructs::gfm() },
            ..ParseOptions::gfm()
        },
    }
}

fn to_tree(text: &str, flavor: Flavor) -> Result<Node, SkipReason> {
    let options = parse_options(flavor);
    match catch_unwind(AssertUnwindSafe(|| markdown::to_mdast(text, &options))) {
        Ok(Ok(tree)) => Ok(tree),
        Ok(Err(message)) => Err(syntax_error(&message)),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(SkipReason::Mdx {
                line: 0,
                column: 0,
                message: format!("markdown-rs crashed on this input ({what}); the file is probably malformed"),
            })
        }
    }
}

fn syntax_error(message: &Message) -> SkipReason {
    let (line, column) = match message.place.as_deref() {
        Some(Place::Point(p)) => (p.line, p.column),
        Some(Place::Position(p)) => (p.start.line, p.start.column),
        None => (0, 0),
    };
    SkipReason::Mdx { line: line as u64, column: column as u64, message: message.reason.clone() }
}

fn normalize_line_endings(text: &str) -> Cow<'_, str> {
    if text.contains('\r') { Cow::Owned(text.replace("\r\n", "\n").replace('\r', "\n")) } else { Cow::Borrowed(text) }
}

// ---------------------------------------------------------------------------------------------
// Pre-scan: nesting guards and the JSX attribute whitespace fix.
// ---------------------------------------------------------------------------------------------

/// One linear pass over the source, outside fenced code and code spans: refuses input nested
/// deeper than markdown-rs can take, and (with `jsx`) finds every JSX attribute written
/// `name= "value"` (`=` followed by whitespace), as `(index of '=', length of the whitespace)`.
fn prescan(src: &str, jsx: bool) -> Result<Vec<(usize, usize)>, SkipReason> {
    let b = src.as_bytes();
    let n = b.len();
    let mut fixes = Vec::new();
    let mut budget = n.saturating_mul(4).saturating_add(4096);
    let mut fence: Option<(u8, usize)> = None;
    let mut ticks = 0usize;
    let mut depth = 0usize;
    let mut line = 1u64;
    let mut line_start = 0usize;
    let mut at_line_start = true;
    let mut i = 0usize;
    let too_deep =
        |line: u64, column: usize, what: String| SkipReason::Mdx { line, column: column as u64, message: what };
    while i < n {
        if at_line_start {
            at_line_start = false;
            line_start = i;
            let end = memchr(b'\n', b, i).unwrap_or(n);
            let (containers, content) = container_markers(b, i, end);
            if containers > MAX_LINE_CONTAINERS && fence.is_none() {
                return Err(too_deep(
                    line,
                    1,
                    format!(
                        "more than {MAX_LINE_CONTAINERS} nested block quotes or lists on one line; refusing to parse"
                    ),
                ));
            }
            if let Some((ch, len)) = fence_run(b, content, end) {
                match fence {
                    None => fence = Some((ch, len)),
                    Some((c, m))
                        if c == ch && len >= m && b[content + len..end].iter().all(u8::is_ascii_whitespace) =>
                    {
                        fence = None;
                    }
                    Some(_) => {}
                }
                ticks = 0;
                i = end;
                continue;
            }
            if fence.is_some() {
                i = end;
                continue;
            }
            if b[content..end].iter().all(u8::is_ascii_whitespace) {
                ticks = 0;
            }
        }
        match b[i] {
            b'\n' => {
                line += 1;
                at_line_start = true;
                i += 1;
            }
            b'`' => {
                let run = b[i..].iter().take_while(|&&c| c == b'`').count();
                if ticks == 0 {
                    ticks = run;
                } else if ticks == run {
                    ticks = 0;
                }
                i += run;
            }
            b'<' if jsx && ticks == 0 => match b.get(i + 1) {
                Some(&c) if is_name_start(c) => {
                    depth += 1;
                    if depth > MAX_JSX_NESTING {
                        return Err(too_deep(
                            line,
                            i - line_start + 1,
                            format!("JSX tags nested more than {MAX_JSX_NESTING} levels deep; refusing to parse"),
                        ));
                    }
                    let lexed = if budget > 0 { lex_tag(b, i, &mut fixes) } else { (None, 0) };
                    budget = budget.saturating_sub(lexed.1);
                    match lexed.0 {
                        Some((end, self_closing)) => {
                            line += b[i..end].iter().filter(|&&c| c == b'\n').count() as u64;
                            if self_closing {
                                depth = depth.saturating_sub(1);
                            }
                            i = end;
                        }
                        None => i += 1,
                    }
                }
                Some(b'/') => {
                    depth = depth.saturating_sub(1);
                    i += 2;
                }
                _ => i += 1,
            },
            b'/' if jsx && ticks == 0 && b.get(i + 1) == Some(&b'>') => {
                depth = depth.saturating_sub(1);
                i += 2;
            }
            _ => i += 1,
        }
    }
    Ok(fixes)
}

fn memchr(needle: u8, b: &[u8], from: usize) -> Option<usize> {
    b.get(from..)?.iter().position(|&c| c == needle).map(|p| from + p)
}

/// Counts the block quote and list markers that open a line; returns the count and where the
/// line's content starts.
fn container_markers(b: &[u8], mut i: usize, end: usize) -> (usize, usize) {
    let mut count = 0;
    loop {
        while i < end && matches!(b[i], b' ' | b'\t') {
            i += 1;
        }
        if i >= end {
            break;
        }
        match b[i] {
            b'>' => {
                count += 1;
                i += 1;
            }
            b'-' | b'*' | b'+' if matches!(b.get(i + 1), Some(b' ' | b'\t')) => {
                count += 1;
                i += 2;
            }
            c if c.is_ascii_digit() => {
                let mut k = i;
                while k < end && k - i < 9 && b[k].is_ascii_digit() {
                    k += 1;
                }
                if matches!(b.get(k), Some(b'.' | b')')) && matches!(b.get(k + 1), Some(b' ' | b'\t')) {
                    count += 1;
                    i = k + 2;
                } else {
                    break;
                }
            }
            _ => break,
        }
    }
    (count, i)
}

/// A code fence (three or more backticks or tildes) at `i`.
fn fence_run(b: &[u8], i: usize, end: usize) -> Option<(u8, usize)> {
    let ch = *b.get(i).filter(|&&c| c == b'`' || c == b'~')?;
    let len = b[i..end].iter().take_while(|&&c| c == ch).count();
    if len < 3 || (ch == b'`' && b[i + len..end].contains(&b'`')) {
        return None;
    }
    Some((ch, len))
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c >= 0x80
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'$' | b'-' | b'.' | b':') || c >= 0x80
}

fn skip_whitespace(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Lexes a JSX opening tag at `start` (`<Name attr="v" attr={e} {...s} />`). On success returns
/// where it ends and whether it closes itself, and appends its `= ` attributes to `fixes`.
/// The second value is how many bytes were looked at, for the caller's work budget.
fn lex_tag(b: &[u8], start: usize, fixes: &mut Vec<(usize, usize)>) -> (Option<(usize, bool)>, usize) {
    let mark = fixes.len();
    let mut i = start + 1;
    let result = (|| {
        while i < b.len() && is_name_char(b[i]) {
            i += 1;
        }
        loop {
            i = skip_whitespace(b, i);
            match *b.get(i)? {
                b'>' => return Some((i + 1, false)),
                b'/' => {
                    i = skip_whitespace(b, i + 1);
                    return (b.get(i) == Some(&b'>')).then_some((i + 1, true));
                }
                b'{' => i = skip_braces(b, i)?,
                c if is_name_start(c) => {
                    while i < b.len() && is_name_char(b[i]) {
                        i += 1;
                    }
                    i = skip_whitespace(b, i);
                    if b.get(i) == Some(&b'=') {
                        let eq = i;
                        i = skip_whitespace(b, i + 1);
                        match *b.get(i)? {
                            q @ (b'"' | b'\'') => i = memchr(q, b, i + 1)? + 1,
                            b'{' => i = skip_braces(b, i)?,
                            _ => return None,
                        }
                        if i > eq + 1 && b[eq + 1].is_ascii_whitespace() {
                            let ws = b[eq + 1..].iter().take_while(|c| c.is_ascii_whitespace()).count();
                            fixes.push((eq, ws));
                        }
                    }
                }
                _ => return None,
            }
        }
    })();
    if result.is_none() {
        fixes.truncate(mark);
    }
    (result, i.saturating_sub(start).max(1))
}

/// Skips a balanced `{…}` (JavaScript strings inside are skipped whole); returns the index after
/// the closing brace.
fn skip_braces(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    while i < b.len() {
        match b[i] {
            b'{' => depth += 1,
            b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            q @ (b'"' | b'\'' | b'`') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Moves the whitespace after each `=` before it: `a= "b"` → `a ="b"`. Lengths and line
/// numbers do not change, so markdown-rs's positions still point into the original file.
fn apply_fixes(src: &str, fixes: &[(usize, usize)]) -> Option<String> {
    if fixes.is_empty() {
        return None;
    }
    let mut out = src.as_bytes().to_vec();
    let mut done = 0usize;
    for &(eq, ws) in fixes {
        if eq < done || eq + ws >= out.len() || out[eq] != b'=' {
            continue;
        }
        out.copy_within(eq + 1..eq + 1 + ws, eq);
        out[eq + ws] = b'=';
        done = eq + ws + 1;
    }
    String::from_utf8(out).ok()
}

// ---------------------------------------------------------------------------------------------
// Tree walker.
// ---------------------------------------------------------------------------------------------

fn at_of(node: &Node) -> Option<Location> {
    node.position().map(|p| Location::line(u32::try_from(p.start.line).unwrap_or(u32::MAX)))
}

/// A line prefix of an enclosing list item or block quote.
struct Prefix {
    first: String,
    rest: String,
    used: bool,
}

/// A label (admonition type and title, tab name) waiting for the component's first text.
struct Label {
    text: String,
    at: Location,
    own_line: bool,
}

/// What a JSX element name means to sdc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Component {
    /// `src`/`alt`/`title` make an image; `required`: complain when there is no `src`.
    Image {
        required: bool,
    },
    Admonition,
    Tab,
    Api,
    Break,
    Code,
    Anchor,
    /// Media and scripts: nothing useful as text.
    Drop,
    /// HTML elements and layout components: their content, nothing else.
    Transparent,
    Unknown,
}

impl Component {
    fn of(name: &str) -> Component {
        match name {
            "Image" | "Img" | "img" => Component::Image { required: true },
            "Figure" | "figure" => Component::Image { required: false },
            "Admonition" | "admonition" | "Note" | "Tip" | "Info" | "Warning" | "Caution" | "Danger" | "Important"
            | "Callout" | "Aside" => Component::Admonition,
            "TabItem" | "Tab" => Component::Tab,
            "Class" | "Function" | "Method" | "Attribute" | "Property" | "Exception" | "Parameter" | "Module"
            | "Data" | "Constant" => Component::Api,
            "Tabs" | "Details" | "Summary" | "Figcaption" | "FigCaption" => Component::Transparent,
            "br" => Component::Break,
            "pre" | "code" => Component::Code,
            "a" => Component::Anchor,
            "video" | "audio" | "iframe" | "source" | "track" | "embed" | "object" | "script" | "style" | "svg"
            | "input" | "button" => Component::Drop,
            // JSX: a lower-case name without a dot is an HTML element (`details`, `span`, `sup`…).
            n if n.starts_with(|c: char| c.is_ascii_lowercase()) && !n.contains('.') => Component::Transparent,
            _ => Component::Unknown,
        }
    }
}

enum Attr<'a> {
    Literal(&'a str),
    Expression(&'a str),
    Flag,
}

fn attr<'a>(attrs: &'a [AttributeContent], name: &str) -> Option<Attr<'a>> {
    attrs.iter().rev().find_map(|a| match a {
        AttributeContent::Property(p) if p.name == name => Some(match &p.value {
            None => Attr::Flag,
            Some(AttributeValue::Literal(s)) => Attr::Literal(s),
            Some(AttributeValue::Expression(e)) => Attr::Expression(&e.value),
        }),
        _ => None,
    })
}

/// A literal attribute value, or a string literal written as an expression (`{"x"}`).
fn literal<'a>(attrs: &'a [AttributeContent], name: &str) -> Option<&'a str> {
    match attr(attrs, name)? {
        Attr::Literal(s) => Some(s),
        Attr::Expression(e) => string_expression(e),
        Attr::Flag => None,
    }
    .map(str::trim)
    .filter(|s| !s.is_empty())
}

/// `"x"`, `'x'` or `` `x` `` (without `${`) as the whole expression.
fn string_expression(e: &str) -> Option<&str> {
    let e = e.trim();
    let q = e.chars().next().filter(|c| matches!(c, '"' | '\'' | '`'))?;
    let inner = e.strip_prefix(q)?.strip_suffix(q)?;
    let plain = !inner.contains(q) && !inner.contains('\\') && (q != '`' || !inner.contains("${"));
    plain.then_some(inner)
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn collapse_whitespace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

fn is_output_language(lang: Option<&str>) -> bool {
    lang.is_some_and(|l| ["text", "txt", "plaintext", "output"].iter().any(|o| l.eq_ignore_ascii_case(o)))
}

fn is_output_intro(text: &str) -> bool {
    let t = text.trim().trim_end_matches(':').trim_end();
    t.eq_ignore_ascii_case("output") || t.eq_ignore_ascii_case("outputs")
}

struct Walker<'t> {
    limits: &'t ParseLimits,
    tree: &'t Node,
    /// The text markdown-rs parsed (positions point into it).
    src: &'t str,
    blocks: Vec<Block>,
    warnings: Vec<Warning>,
    metadata: BTreeMap<String, String>,
    meta_title: Option<String>,
    first_h1: Option<String>,
    /// Text of the block being built (several paragraphs of one list or quote).
    buf: String,
    buf_at: Location,
    /// Inline text of the paragraph (or heading, or cell) being built.
    inline: String,
    inline_at: Location,
    inline_started: bool,
    /// Something between two spaces was dropped: do not double the space.
    trim_next_space: bool,
    /// How many times `inline` was committed; a link compares it to know its text is intact.
    commits: usize,
    prefixes: Vec<Prefix>,
    label: Option<Label>,
    /// Images in headings and table cells go after the block instead of splitting it.
    deferring: bool,
    deferred: Vec<ImageRef>,
    unknown: Vec<String>,
    expressions: usize,
    expressions_at: Location,
    definitions: Option<HashMap<String, (String, Option<String>)>>,
    depth: usize,
    flattened: bool,
}

impl<'t> Walker<'t> {
    fn new(limits: &'t ParseLimits, tree: &'t Node, src: &'t str) -> Self {
        Walker {
            limits,
            tree,
            src,
            blocks: Vec::new(),
            warnings: Vec::new(),
            metadata: BTreeMap::new(),
            meta_title: None,
            first_h1: None,
            buf: String::new(),
            buf_at: Location::default(),
            inline: String::new(),
            inline_at: Location::default(),
            inline_started: false,
            trim_next_space: false,
            commits: 0,
            prefixes: Vec::new(),
            label: None,
            deferring: false,
            deferred: Vec::new(),
            unknown: Vec::new(),
            expressions: 0,
            expressions_at: Location::default(),
            definitions: None,
            depth: 0,
            flattened: false,
        }
    }

    fn finish(mut self) -> Parsed {
        self.commit_inline();
        self.flush();
        self.emit_deferred();
        if self.expressions > 0 {
            let n = self.expressions;
            let s = if n == 1 { "" } else { "s" };
            self.warnings.push(Warning::new(
                self.expressions_at,
                format!("dropped {n} MDX expression{s} (`{{…}}`); the first is here"),
            ));
        }
        self.warnings.sort_by_key(|w| w.at);
        Parsed {
            title: self.meta_title.or(self.first_h1),
            metadata: self.metadata,
            blocks: self.blocks,
            warnings: self.warnings,
        }
    }

    fn warn(&mut self, at: Location, message: impl Into<String>) {
        self.warnings.push(Warning::new(at, message));
    }

    // --- output ------------------------------------------------------------------------------

    fn push_block(&mut self, block: Block) {
        let (kind, size, at) = match &block {
            Block::Heading { text, at, .. } => ("heading", text.len(), *at),
            Block::Text { text, at } => ("text block", text.len(), *at),
            Block::Code { code, at, .. } => ("code block", code.len(), *at),
            Block::Output { text, at } => ("output block", text.len(), *at),
            Block::Image(img) => match &img.source {
                ImageSource::Bytes { data, .. } => ("embedded image", data.len(), img.at),
                ImageSource::Path(_) => ("image", 0, img.at),
            },
            Block::Page { .. } => ("page", 0, Location::default()),
        };
        if size > self.limits.max_part_bytes {
            let limit = self.limits.max_part_bytes;
            self.warn(at, format!("skipped a {kind} of {size} bytes (the limit is {limit})"));
            return;
        }
        self.blocks.push(block);
    }

    fn push_inline(&mut self, mut s: &str, at: Option<Location>) {
        if std::mem::take(&mut self.trim_next_space) && self.inline.ends_with(' ') {
            if s.starts_with([' ', '.', ',', ';', ':', '!', '?', ')']) {
                s = s.trim_start_matches(' ');
            }
            if s.starts_with(['.', ',', ';', ':', '!', '?', ')']) {
                self.inline.truncate(self.inline.trim_end_matches(' ').len());
            }
        }
        if !self.inline_started && !s.trim().is_empty() {
            self.inline_started = true;
            if let Some(at) = at {
                self.inline_at = at;
            }
        }
        self.inline.push_str(s);
    }

    /// Moves the inline text into the block buffer, behind the list and quote prefixes.
    fn commit_inline(&mut self) {
        let Walker { inline, buf, buf_at, inline_at, prefixes, .. } = self;
        let text = inline.trim();
        if !text.is_empty() {
            if buf.is_empty() {
                *buf_at = *inline_at;
            } else if !buf.ends_with('\n') {
                buf.push('\n');
            }
            if prefixes.is_empty() {
                buf.push_str(text);
            } else {
                for (k, line) in text.split('\n').enumerate() {
                    if k > 0 {
                        buf.push('\n');
                    }
                    for p in prefixes.iter_mut() {
                        buf.push_str(if p.used { &p.rest } else { &p.first });
                        p.used = true;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        buf.truncate(buf.trim_end_matches(' ').len());
                    } else {
                        buf.push_str(line);
                    }
                }
            }
        }
        inline.clear();
        self.inline_started = false;
        self.commits += 1;
    }

    /// Emits the block buffer as one text block.
    fn flush(&mut self) {
        let end = self.buf.trim_end().len();
        if self.buf[..end].trim_start().is_empty() {
            self.buf.clear();
            return;
        }
        self.buf.truncate(end);
        let mut text = std::mem::take(&mut self.buf);
        if text.starts_with(' ') {
            // The rest of a list item after a split (code, image): its first line's indentation
            // is noise; the lines after it keep theirs, relative to the items that follow.
            text = text.trim_start_matches(' ').to_string();
        }
        let mut at = self.buf_at;
        if let Some(label) = self.label.take() {
            let joins_line = !label.own_line
                && text
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_alphanumeric() || matches!(c, '`' | '"' | '\'' | '(' | '$'));
            let mut joined = String::with_capacity(label.text.len() + 1 + text.len());
            joined.push_str(&label.text);
            joined.push(if joins_line { ' ' } else { '\n' });
            joined.push_str(&text);
            text = joined;
            at = label.at;
        }
        self.push_block(Block::Text { text, at });
    }

    /// Emits a non-text block (or a text block that must stand alone) after what came before.
    fn emit(&mut self, block: Block) {
        self.commit_inline();
        self.flush();
        self.emit_label();
        self.push_block(block);
    }

    fn emit_label(&mut self) {
        if let Some(label) = self.label.take() {
            self.push_block(Block::Text { text: label.text, at: label.at });
        }
    }

    fn set_label(&mut self, text: String, at: Location, own_line: bool) {
        self.commit_inline();
        self.flush();
        self.emit_label();
        self.label = Some(Label { text, at, own_line });
    }

    /// A component ended: a label that never met any text belonged to empty content.
    fn end_label(&mut self) {
        if self.label.is_some() {
            self.commit_inline();
            self.flush();
            self.label = None;
        }
    }

    fn emit_deferred(&mut self) {
        for img in std::mem::take(&mut self.deferred) {
            self.emit(Block::Image(img));
        }
    }

    /// After a paragraph-like item: outside lists and quotes each is its own block.
    fn end_item(&mut self) {
        if self.prefixes.is_empty() {
            self.flush();
        }
    }

    fn text_item(&mut self, text: &str, at: Option<Location>) {
        self.push_inline(text, at);
        self.commit_inline();
        self.end_item();
    }

    // --- flow --------------------------------------------------------------------------------

    fn flows(&mut self, nodes: &[Node]) {
        for node in nodes {
            self.flow(node);
        }
    }

    fn flow(&mut self, node: &Node) {
        if self.depth >= MAX_DEPTH {
            self.flatten(node);
            self.commit_inline();
            self.end_item();
            return;
        }
        self.depth += 1;
        let at = at_of(node);
        let here = at.unwrap_or_default();
        match node {
            Node::Root(n) => self.flows(&n.children),
            Node::Yaml(n) => self.front_matter(&n.value, here),
            Node::Toml(_) => self.warn(here, "TOML front matter (`+++`) is not read; only YAML (`---`) is"),
            Node::MdxjsEsm(_) | Node::Definition(_) => {}
            Node::Heading(n) => self.heading(n, here),
            Node::Paragraph(n) => {
                self.inlines(&n.children);
                self.commit_inline();
                self.end_item();
            }
            Node::Blockquote(n) => {
                self.prefixes.push(Prefix { first: "> ".into(), rest: "> ".into(), used: false });
                self.flows(&n.children);
                self.commit_inline();
                self.prefixes.pop();
                self.end_item();
            }
            Node::List(n) => self.list(n),
            Node::ListItem(n) => self.flows(&n.children),
            Node::FootnoteDefinition(n) => {
                let first = format!("[^{}]: ", n.label.as_deref().unwrap_or(&n.identifier));
                self.prefixes.push(Prefix { first, rest: "    ".into(), used: false });
                self.flows(&n.children);
                self.commit_inline();
                self.prefixes.pop();
                self.end_item();
            }
            Node::Code(n) => self.code(n, here),
            Node::Math(n) => {
                let mut text = String::with_capacity(n.value.len() + 6);
                text.push_str("$$\n");
                text.push_str(n.value.trim_matches('\n'));
                text.push_str("\n$$");
                self.text_item(&text, at);
            }
            Node::Table(n) => self.table(n, at),
            Node::ThematicBreak(_) => self.text_item("---", at),
            Node::MdxFlowExpression(n) => self.expression(&n.value, here),
            Node::MdxJsxFlowElement(n) => self.jsx(n.name.as_deref(), &n.attributes, &n.children, here, true),
            Node::Html(n) => {
                self.html(&n.value, at, true);
                self.commit_inline();
                self.end_item();
            }
            other => {
                self.inline(other);
                self.commit_inline();
                self.end_item();
            }
        }
        self.depth -= 1;
    }

    fn front_matter(&mut self, yaml: &str, at: Location) {
        use serde_yaml_ng::Value;
        if yaml.trim().is_empty() {
            return;
        }
        match serde_yaml_ng::from_str::<Value>(yaml) {
            Ok(Value::Mapping(map)) => {
                for (k, v) in &map {
                    let key = scalar_string(k).unwrap_or_else(|| compact(k));
                    let value = scalar_string(v).unwrap_or_else(|| compact(v));
                    if key == "title" && !value.trim().is_empty() {
                        self.meta_title = Some(value.trim().to_string());
                    }
                    self.metadata.insert(key, value);
                }
            }
            Ok(Value::Null) => {}
            Ok(_) => self.warn(at, "the front matter is not a `key: value` mapping; ignored it"),
            Err(e) => {
                // The YAML starts on the line after the opening `---`.
                let line = e.location().map_or(at.line, |l| {
                    at.line.map(|start| start.saturating_add(u32::try_from(l.line()).unwrap_or(u32::MAX)))
                });
                let at = Location { line, ..at };
                self.warn(at, format!("invalid YAML front matter, ignored it: {e}"));
            }
        }
    }

    fn heading(&mut self, h: &mdast::Heading, at: Location) {
        let text = self.inline_text(&h.children);
        if !text.is_empty() {
            if h.depth == 1 && self.first_h1.is_none() {
                self.first_h1 = Some(text.clone());
            }
            self.emit(Block::Heading { level: h.depth, text, at });
        }
        self.emit_deferred();
    }

    fn list(&mut self, list: &mdast::List) {
        let mut number = list.start.unwrap_or(1);
        for item in &list.children {
            let mut first = if list.ordered { format!("{number}. ") } else { "- ".to_string() };
            if let Node::ListItem(li) = item {
                match li.checked {
                    Some(true) => first.push_str("[x] "),
                    Some(false) => first.push_str("[ ] "),
                    None => {}
                }
            }
            let rest = " ".repeat(first.chars().count());
            self.prefixes.push(Prefix { first, rest, used: false });
            match item {
                Node::ListItem(li) => self.flows(&li.children),
                other => self.flow(other),
            }
            self.commit_inline();
            self.prefixes.pop();
            number = number.saturating_add(1);
        }
        self.end_item();
    }

    fn code(&mut self, code: &mdast::Code, at: Location) {
        let language = code.lang.as_deref().map(str::trim).filter(|l| !l.is_empty());
        if is_output_language(language) && self.label.is_none() && self.follows_code() {
            self.emit(Block::Output { text: code.value.clone(), at });
            return;
        }
        self.emit(Block::Code { language: language.map(str::to_string), code: code.value.clone(), at });
    }

    /// Whether the last block is code, possibly followed by a bare `Output:` line (dropped: the
    /// chunker writes its own).
    fn follows_code(&mut self) -> bool {
        self.commit_inline();
        self.flush();
        match self.blocks.as_slice() {
            [.., Block::Code { .. } | Block::Output { .. }] => true,
            [.., Block::Code { .. } | Block::Output { .. }, Block::Text { text, .. }] if is_output_intro(text) => {
                self.blocks.pop();
                true
            }
            _ => false,
        }
    }

    fn table(&mut self, table: &mdast::Table, at: Option<Location>) {
        let mut out = String::new();
        for (r, row) in table.children.iter().enumerate() {
            let cells = match row {
                Node::TableRow(row) => row.children.as_slice(),
                other => std::slice::from_ref(other),
            };
            out.push('|');
            for cell in cells {
                let text = match cell {
                    Node::TableCell(c) => self.inline_text(&c.children),
                    other => self.inline_text(std::slice::from_ref(other)),
                };
                out.push(' ');
                for c in text.chars() {
                    if c == '|' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push_str(" |");
            }
            out.push('\n');
            if r == 0 {
                out.push('|');
                for k in 0..cells.len().max(table.align.len()) {
                    out.push_str(match table.align.get(k) {
                        Some(AlignKind::Left) => " :--- |",
                        Some(AlignKind::Right) => " ---: |",
                        Some(AlignKind::Center) => " :---: |",
                        _ => " --- |",
                    });
                }
                out.push('\n');
            }
        }
        self.text_item(&out, at);
        self.emit_deferred();
    }

    /// A dropped `{expression}`; comments (`{/* … */}`) are dropped without counting.
    fn expression(&mut self, value: &str, at: Location) {
        self.trim_next_space = true;
        let v = value.trim();
        let comment =
            v.strip_prefix("/*").and_then(|r| r.strip_suffix("*/")).is_some_and(|inner| !inner.contains("*/"));
        if comment || v.is_empty() {
            return;
        }
        if self.expressions == 0 {
            self.expressions_at = at;
        }
        self.expressions += 1;
    }

    /// Past `MAX_DEPTH`: the text of the subtree, gathered without recursion.
    fn flatten(&mut self, node: &Node) {
        if !self.flattened {
            self.flattened = true;
            let at = at_of(node).unwrap_or_default();
            self.warn(at, format!("content nested more than {MAX_DEPTH} levels deep was flattened to plain text"));
        }
        let mut stack = vec![node];
        while let Some(n) = stack.pop() {
            match n {
                Node::Text(t) => self.push_inline(&t.value, at_of(n)),
                Node::InlineCode(t) => self.push_inline(&t.value, at_of(n)),
                Node::InlineMath(t) => self.push_inline(&t.value, at_of(n)),
                Node::Code(t) => {
                    self.push_inline("\n", None);
                    self.push_inline(&t.value, at_of(n));
                    self.push_inline("\n", None);
                }
                Node::Math(t) => self.push_inline(&t.value, at_of(n)),
                Node::Break(_) | Node::Paragraph(_) | Node::ListItem(_) | Node::Heading(_) => {
                    self.push_inline("\n", None);
                }
                _ => {}
            }
            if let Some(children) = n.children() {
                stack.extend(children.iter().rev());
            }
        }
    }

    // --- inline ------------------------------------------------------------------------------

    fn inlines(&mut self, nodes: &[Node]) {
        for node in nodes {
            self.inline(node);
        }
    }

    /// Renders phrasing content into a fresh string (images deferred), whitespace collapsed.
    fn inline_text(&mut self, children: &[Node]) -> String {
        let saved = std::mem::take(&mut self.inline);
        let saved_at = self.inline_at;
        let saved_started = std::mem::replace(&mut self.inline_started, false);
        let was_deferring = std::mem::replace(&mut self.deferring, true);
        self.inlines(children);
        self.deferring = was_deferring;
        let raw = std::mem::replace(&mut self.inline, saved);
        self.inline_at = saved_at;
        self.inline_started = saved_started;
        collapse_whitespace(&raw)
    }

    fn inline(&mut self, node: &Node) {
        if self.depth >= MAX_DEPTH {
            self.flatten(node);
            return;
        }
        self.depth += 1;
        let at = at_of(node);
        match node {
            Node::Text(t) => {
                let value = self.text_value(t);
                self.push_inline(&value, at);
            }
            Node::InlineCode(c) => {
                self.push_inline("`", at);
                self.inline.push_str(&c.value);
                self.inline.push('`');
            }
            Node::InlineMath(m) => {
                self.push_inline("$", at);
                self.inline.push_str(&m.value);
                self.inline.push('$');
            }
            Node::Emphasis(n) => self.inlines(&n.children),
            Node::Strong(n) => self.inlines(&n.children),
            Node::Delete(n) => self.inlines(&n.children),
            Node::Link(l) => {
                let (start, commits) = (self.inline.len(), self.commits);
                self.inlines(&l.children);
                self.link_url(start, commits, &l.url);
            }
            Node::LinkReference(l) => self.inlines(&l.children),
            Node::Image(i) => self.image(&i.url, &i.alt, i.title.as_deref(), at.unwrap_or_default()),
            Node::ImageReference(r) => match self.definition(&r.identifier) {
                Some((url, title)) => self.image(&url, &r.alt, title.as_deref(), at.unwrap_or_default()),
                None => self.push_inline(&r.alt, at),
            },
            Node::Break(_) => self.push_inline("\n", None),
            Node::MdxTextExpression(n) => self.expression(&n.value, at.unwrap_or_default()),
            Node::MdxJsxTextElement(e) => {
                self.jsx(e.name.as_deref(), &e.attributes, &e.children, at.unwrap_or_default(), false);
            }
            Node::Html(h) => self.html(&h.value, at, false),
            Node::FootnoteReference(f) => {
                self.push_inline("[^", at);
                self.inline.push_str(f.label.as_deref().unwrap_or(&f.identifier));
                self.inline.push(']');
            }
            Node::MdxjsEsm(_) | Node::Definition(_) | Node::Yaml(_) | Node::Toml(_) => {}
            other => {
                // Flow content where phrasing was expected: keep the order, end the line.
                self.commit_inline();
                self.flow(other);
            }
        }
        self.depth -= 1;
    }

    /// A text node's value with its line endings. markdown-rs 1.0 drops the line endings (and
    /// the indentation after them) inside JSX text elements (`<b>a\nb</b>` → `ab`); they are
    /// taken back from the source when it says the same thing once whitespace is ignored.
    fn text_value<'n>(&self, t: &'n mdast::Text) -> Cow<'n, str> {
        let Some(pos) = &t.position else { return Cow::Borrowed(&t.value) };
        let lines = pos.end.line.saturating_sub(pos.start.line);
        if lines == 0 || t.value.matches('\n').count() >= lines {
            return Cow::Borrowed(&t.value);
        }
        let Some(raw) = self.src.get(pos.start.offset..pos.end.offset) else { return Cow::Borrowed(&t.value) };
        let mut rebuilt = String::with_capacity(raw.len());
        for (k, line) in raw.split('\n').enumerate() {
            if k > 0 {
                rebuilt.push('\n');
            }
            let line = if k > 0 { line.trim_start() } else { line };
            let line = if k < lines { line.trim_end() } else { line };
            unescape_into(line, &mut rebuilt);
        }
        let same = rebuilt.split_whitespace().flat_map(str::chars).eq(t.value.split_whitespace().flat_map(str::chars));
        if same { Cow::Owned(rebuilt) } else { Cow::Borrowed(&t.value) }
    }

    /// Appends ` (url)` to a link's text for absolute web links whose text is not the URL.
    fn link_url(&mut self, start: usize, commits: usize, url: &str) {
        let url = url.trim();
        let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return;
        }
        if commits != self.commits {
            return;
        }
        let Some(text) = self.inline.get(start..).map(str::trim) else { return };
        if text.is_empty() {
            self.inline.push_str(url);
        } else if !text.contains(url) && !url.contains(text) {
            self.inline.push_str(" (");
            self.inline.push_str(url);
            self.inline.push(')');
        }
    }

    fn definition(&mut self, identifier: &str) -> Option<(String, Option<String>)> {
        let tree = self.tree;
        let definitions = self.definitions.get_or_insert_with(|| {
            let mut map = HashMap::new();
            let mut stack = vec![tree];
            while let Some(n) = stack.pop() {
                if let Node::Definition(d) = n {
                    map.entry(d.identifier.clone()).or_insert_with(|| (d.url.clone(), d.title.clone()));
                }
                if let Some(children) = n.children() {
                    stack.extend(children.iter());
                }
            }
            map
        });
        definitions.get(identifier).cloned()
    }

    // --- images ------------------------------------------------------------------------------

    fn image(&mut self, src: &str, alt: &str, title: Option<&str>, at: Location) {
        let src = src.trim();
        if src.is_empty() {
            self.warn(at, "an image without a source; skipped it");
            return;
        }
        let source = match data_uri(src) {
            None => ImageSource::Path(src.to_string()),
            Some(Ok((mime, data))) => ImageSource::Bytes { mime, data },
            Some(Err(why)) => {
                self.warn(at, format!("an image's data URI cannot be used ({why}); skipped it"));
                return;
            }
        };
        let img = ImageRef {
            source,
            alt: collapse_whitespace(alt),
            title: title.map(str::trim).filter(|t| !t.is_empty()).map(str::to_string),
            generating_code: None,
            at,
        };
        if self.deferring {
            self.deferred.push(img);
        } else {
            self.emit(Block::Image(img));
        }
    }

    // --- JSX ---------------------------------------------------------------------------------

    fn children(&mut self, children: &[Node], flow: bool) {
        if flow { self.flows(children) } else { self.inlines(children) }
    }

    fn jsx(&mut self, name: Option<&str>, attrs: &[AttributeContent], children: &[Node], at: Location, flow: bool) {
        let Some(name) = name else {
            // A fragment: `<>…</>`.
            self.children(children, flow);
            return;
        };
        match Component::of(name) {
            Component::Image { required } => {
                self.jsx_image(name, attrs, at, required);
                self.children(children, flow);
            }
            Component::Admonition => {
                let kind = literal(attrs, "type")
                    .or_else(|| literal(attrs, "variant"))
                    .unwrap_or(if name.eq_ignore_ascii_case("admonition") { "note" } else { name });
                let kind = capitalize(kind);
                match (flow, literal(attrs, "title")) {
                    (true, Some(title)) => self.set_label(format!("{kind}: {title}"), at, true),
                    (true, None) => self.set_label(format!("{kind}:"), at, false),
                    (false, Some(title)) => self.push_inline(&format!("{kind}: {title}. "), Some(at)),
                    (false, None) => self.push_inline(&format!("{kind}: "), Some(at)),
                }
                self.children(children, flow);
                if flow {
                    self.end_label();
                }
            }
            Component::Tab => {
                let label =
                    literal(attrs, "label").or_else(|| literal(attrs, "value")).or_else(|| literal(attrs, "title"));
                if let (true, Some(label)) = (flow, label) {
                    let text = if label.ends_with(':') { label.to_string() } else { format!("{label}:") };
                    self.set_label(text, at, true);
                }
                self.children(children, flow);
                if flow {
                    self.end_label();
                }
            }
            Component::Api => {
                if let Some(line) = api_line(name, attrs) {
                    if flow {
                        self.emit(Block::Text { text: line, at });
                    } else {
                        self.push_inline(&line, Some(at));
                    }
                }
                self.children(children, flow);
            }
            Component::Break => {
                if !flow {
                    self.push_inline("\n", None);
                }
            }
            Component::Code => {
                let mut code = String::new();
                gather_text(children, &mut code);
                if flow {
                    let language = literal(attrs, "className")
                        .and_then(|c| c.split_whitespace().find_map(|c| c.strip_prefix("language-")))
                        .map(str::to_string);
                    if !code.trim().is_empty() {
                        self.emit(Block::Code { language, code, at });
                    }
                } else {
                    self.push_inline("`", Some(at));
                    self.inline.push_str(code.trim());
                    self.inline.push('`');
                }
            }
            Component::Anchor => {
                let (start, commits) = (self.inline.len(), self.commits);
                self.children(children, flow);
                if let (false, Some(href)) = (flow, literal(attrs, "href")) {
                    self.link_url(start, commits, href);
                }
            }
            Component::Drop => {}
            Component::Transparent => self.children(children, flow),
            Component::Unknown => {
                if !self.unknown.iter().any(|n| n == name) {
                    self.unknown.push(name.to_string());
                    self.warn(at, format!("unknown MDX component <{name}>: kept its content, ignored its attributes"));
                }
                self.children(children, flow);
            }
        }
    }

    fn jsx_image(&mut self, name: &str, attrs: &[AttributeContent], at: Location, required: bool) {
        match attr(attrs, "src") {
            Some(Attr::Expression(e)) if string_expression(e).is_none() => {
                let shown: String = e.trim().chars().take(80).collect();
                self.warn(
                    at,
                    format!("<{name}> gives its `src` as an expression ({{{shown}}}), which sdc cannot evaluate; skipped the image"),
                );
            }
            _ => match literal(attrs, "src") {
                Some(src) => {
                    let alt = literal(attrs, "alt").unwrap_or("");
                    let title = literal(attrs, "title").or_else(|| literal(attrs, "caption"));
                    self.image(src, alt, title, at);
                }
                None if required => self.warn(at, format!("<{name}> without a `src`; no image")),
                None => {}
            },
        }
    }

    // --- raw HTML (plain Markdown) -------------------------------------------------------------

    /// Raw HTML: the text without tags (entities decoded), `<img>` as images, `<br>` and block
    /// tags as line breaks, comments, scripts and styles dropped.
    fn html(&mut self, html: &str, at: Option<Location>, flow: bool) {
        let mut rest = html;
        while let Some(lt) = rest.find('<') {
            self.html_text(&rest[..lt], at);
            let tail = &rest[lt..];
            if let Some(after) = tail.strip_prefix("<!--") {
                rest = after.find("-->").map_or("", |e| &after[e + 3..]);
                continue;
            }
            let Some(tag) = html_tag(tail) else {
                self.push_inline("<", at);
                rest = &tail[1..];
                continue;
            };
            rest = &tail[tag.len..];
            let name = tag.name.to_ascii_lowercase();
            match name.as_str() {
                "img" if !tag.closing => {
                    let attrs = html_attributes(tag.attributes);
                    let get = |k: &str| attrs.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.as_str());
                    let alt = decode_entities(get("alt").unwrap_or(""));
                    let title = get("title").map(decode_entities);
                    match get("src") {
                        Some(src) => self.image(&decode_entities(src), &alt, title.as_deref(), at.unwrap_or_default()),
                        None => self.warn(at.unwrap_or_default(), "<img> without a `src`; no image"),
                    }
                }
                "script" | "style" if !tag.closing => {
                    let close = rest
                        .match_indices("</")
                        .map(|(p, _)| p)
                        .find(|&p| rest.get(p + 2..p + 2 + name.len()).is_some_and(|n| n.eq_ignore_ascii_case(&name)));
                    rest = match close {
                        Some(p) => rest[p..].find('>').map_or("", |e| &rest[p + e + 1..]),
                        None => "",
                    };
                }
                "br" => self.push_inline("\n", None),
                "p" | "div" | "li" | "tr" | "table" | "ul" | "ol" | "blockquote" | "pre" | "hr" | "h1" | "h2"
                | "h3" | "h4" | "h5" | "h6" | "figure" | "figcaption" | "details" | "summary" | "section"
                    if flow =>
                {
                    self.push_inline("\n", None);
                }
                _ => {}
            }
        }
        self.html_text(rest, at);
    }

    fn html_text(&mut self, text: &str, at: Option<Location>) {
        if text.contains('&') {
            self.push_inline(&decode_entities(text), at);
        } else {
            self.push_inline(text, at);
        }
    }
}

fn scalar_string(v: &serde_yaml_ng::Value) -> Option<String> {
    use serde_yaml_ng::Value;
    match v {
        Value::Null => Some(String::new()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Tagged(t) => scalar_string(&t.value),
        Value::Sequence(_) | Value::Mapping(_) => None,
    }
}

/// Compact JSON, or YAML when JSON cannot hold it (non-string keys).
fn compact(v: &serde_yaml_ng::Value) -> String {
    serde_json::to_string(v)
        .or_else(|_| serde_yaml_ng::to_string(v).map(|s| s.trim_end().to_string()))
        .unwrap_or_default()
}

fn api_line(kind: &str, attrs: &[AttributeContent]) -> Option<String> {
    let signature = literal(attrs, "signature");
    let mut code = signature.or_else(|| literal(attrs, "id"))?.to_string();
    if signature.is_none()
        && let Some(hint) = literal(attrs, "attributeTypeHint")
    {
        code.push_str(": ");
        code.push_str(hint);
    }
    if let Some(value) = literal(attrs, "attributeValue") {
        code.push_str(" = ");
        code.push_str(value);
    }
    Some(if code.contains('`') { format!("{kind} {code}") } else { format!("{kind} `{code}`") })
}

/// The text of some nodes, without recursion.
fn gather_text(nodes: &[Node], out: &mut String) {
    let mut stack: Vec<&Node> = nodes.iter().rev().collect();
    while let Some(n) = stack.pop() {
        match n {
            Node::Text(t) => out.push_str(&t.value),
            Node::InlineCode(t) => out.push_str(&t.value),
            Node::Code(t) => out.push_str(&t.value),
            Node::Break(_) => out.push('\n'),
            Node::Paragraph(_) if !out.is_empty() => out.push('\n'),
            _ => {}
        }
        if let Some(children) = n.children() {
            stack.extend(children.iter().rev());
        }
    }
}

/// `data:<mime>[;base64],<data>` → `(mime, bytes)`; `None` when `src` is not a data URI.
fn data_uri(src: &str) -> Option<Result<(String, Vec<u8>), String>> {
    if !src.get(..5)?.eq_ignore_ascii_case("data:") {
        return None;
    }
    let rest = &src[5..];
    let Some((meta, data)) = rest.split_once(',') else {
        return Some(Err("no `,` before the data".into()));
    };
    let mut parts = meta.split(';');
    let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let is_base64 = parts.any(|p| p.trim().eq_ignore_ascii_case("base64"));
    if !mime.starts_with("image/") {
        return Some(Err(format!("`{mime}` is not an image type")));
    }
    let bytes = if is_base64 {
        let clean: Vec<u8> = data.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        let engine = base64::engine::general_purpose::STANDARD;
        match engine.decode(&clean).or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&clean)) {
            Ok(bytes) => bytes,
            Err(e) => return Some(Err(format!("bad base64: {e}"))),
        }
    } else {
        percent_decode(data)
    };
    if bytes.is_empty() {
        return Some(Err("no data".into()));
    }
    Some(Ok((mime, bytes)))
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| (*c as char).to_digit(16)),
                b.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Markdown text as written → its value: backslash escapes and character references decoded.
fn unescape_into(s: &str, out: &mut String) {
    let decoded = if s.contains('&') { Cow::Owned(decode_entities(s)) } else { Cow::Borrowed(s) };
    let mut chars = decoded.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(&next) = chars.peek()
            && next.is_ascii_punctuation()
        {
            out.push(next);
            chars.next();
            continue;
        }
        out.push(c);
    }
}

/// Decodes `&name;`, `&#123;` and `&#x1F;` references; anything else is kept as written.
fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp + 1..];
        let semi = tail.as_bytes().iter().take(33).position(|&c| c == b';').filter(|&semi| semi > 0);
        let decoded = semi.and_then(|semi| {
            let name = &tail[..semi];
            let value = if let Some(num) = name.strip_prefix('#') {
                let (digits, radix) = match num.strip_prefix(['x', 'X']) {
                    Some(hex) => (hex, 16),
                    None => (num, 10),
                };
                let code =
                    u32::from_str_radix(digits, radix).ok().filter(|_| !digits.is_empty() && digits.len() <= 8)?;
                char::from_u32(code).filter(|c| *c != '\0').unwrap_or(char::REPLACEMENT_CHARACTER).to_string()
            } else if name.bytes().all(|c| c.is_ascii_alphanumeric()) {
                markdown::decode_named(name, true)?
            } else {
                return None;
            };
            Some((value, semi))
        });
        match decoded {
            Some((value, semi)) => {
                out.push_str(&value);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

struct HtmlTag<'a> {
    len: usize,
    name: &'a str,
    closing: bool,
    attributes: &'a str,
}

/// An HTML tag at the start of `s` (which starts with `<`).
fn html_tag(s: &str) -> Option<HtmlTag<'_>> {
    let b = s.as_bytes();
    let mut i = 1;
    let closing = b.get(i) == Some(&b'/');
    if closing {
        i += 1;
    }
    let name_start = i;
    if !b.get(i)?.is_ascii_alphabetic() {
        return None;
    }
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'-') {
        i += 1;
    }
    let name_end = i;
    let mut quote = None;
    while i < b.len() {
        match (quote, b[i]) {
            (None, b'>') => {
                let attributes = s[name_end..i].trim_end_matches('/');
                return Some(HtmlTag { len: i + 1, name: &s[name_start..name_end], closing, attributes });
            }
            (None, q @ (b'"' | b'\'')) => quote = Some(q),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
        i += 1;
    }
    None
}

fn html_attributes(s: &str) -> Vec<(&str, String)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        i = skip_whitespace(b, i);
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'=' | b'/' | b'>') {
            i += 1;
        }
        let name = &s[start..i];
        i = skip_whitespace(b, i);
        let mut value = String::new();
        if b.get(i) == Some(&b'=') {
            i = skip_whitespace(b, i + 1);
            match b.get(i) {
                Some(&q @ (b'"' | b'\'')) => {
                    let end = memchr(q, b, i + 1).unwrap_or(b.len());
                    value = s[i + 1..end].to_string();
                    i = end + 1;
                }
                _ => {
                    let vstart = i;
                    while i < b.len() && !b[i].is_ascii_whitespace() {
                        i += 1;
                    }
                    value = s[vstart..i].to_string();
                }
            }
        }
        if name.is_empty() {
            i += 1;
        } else {
            out.push((name, value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::{Path, PathBuf};

    fn limits() -> ParseLimits {
        ParseLimits::default()
    }

    fn ok(src: &str) -> Parsed {
        match parse(src.as_bytes(), &limits()) {
            Ok(p) => p,
            Err(e) => panic!("expected a parse, got {e}"),
        }
    }

    fn texts(p: &Parsed) -> Vec<&str> {
        p.blocks
            .iter()
            .filter_map(|b| match b {
                Block::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    fn all_text(p: &Parsed) -> String {
        let mut s = String::new();
        for b in &p.blocks {
            match b {
                Block::Heading { text, .. } | Block::Text { text, .. } | Block::Output { text, .. } => s.push_str(text),
                Block::Code { code, .. } => s.push_str(code),
                Block::Image(_) | Block::Page { .. } => {}
            }
            s.push('\n');
        }
        s
    }

    fn images(p: &Parsed) -> Vec<&ImageRef> {
        p.blocks
            .iter()
            .filter_map(|b| match b {
                Block::Image(i) => Some(i),
                _ => None,
            })
            .collect()
    }

    fn paths(p: &Parsed) -> Vec<&str> {
        images(p)
            .into_iter()
            .filter_map(|i| match &i.source {
                ImageSource::Path(s) => Some(s.as_str()),
                ImageSource::Bytes { .. } => None,
            })
            .collect()
    }

    fn codes(p: &Parsed) -> Vec<(Option<&str>, &str)> {
        p.blocks
            .iter()
            .filter_map(|b| match b {
                Block::Code { language, code, .. } => Some((language.as_deref(), code.as_str())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn mdx_front_matter_becomes_metadata_and_title() {
        let p = ok(
            "---\ntitle: Build circuits\ntags: [a, b]\nsidebar:\n  order: 3\ndraft: false\nweight: 2.5\nempty:\n---\n\n# Heading one\n\nBody.\n",
        );
        assert_eq!(p.title.as_deref(), Some("Build circuits"));
        assert_eq!(p.metadata["title"], "Build circuits");
        assert_eq!(p.metadata["tags"], r#"["a","b"]"#);
        assert_eq!(p.metadata["sidebar"], r#"{"order":3}"#);
        assert_eq!(p.metadata["draft"], "false");
        assert_eq!(p.metadata["weight"], "2.5");
        assert_eq!(p.metadata["empty"], "");
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(p.blocks[0], Block::Heading { level: 1, text: "Heading one".into(), at: Location::line(11) });
    }

    #[test]
    fn mdx_title_falls_back_to_first_level_one_heading() {
        let p = ok("## Intro\n\n# The *real* title\n\n# Second\n");
        assert_eq!(p.title.as_deref(), Some("The real title"));
    }

    #[test]
    fn mdx_invalid_yaml_is_a_warning_not_a_skip() {
        let p = ok("---\ntitle: [unclosed\nother: x\n---\n\n# Fallback\n\nText.\n");
        assert!(p.metadata.is_empty());
        assert_eq!(p.title.as_deref(), Some("Fallback"));
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        assert!(p.warnings[0].message.contains("invalid YAML front matter"), "{:?}", p.warnings);
        assert!(p.warnings[0].at.line.is_some_and(|l| (2..=4).contains(&l)), "{:?}", p.warnings[0].at);
    }

    #[test]
    fn mdx_esm_is_dropped_and_column_zero_import_in_a_fence_is_code() {
        let src = "import { Admonition } from \"@site/components/Admonition\";\nexport const meta = { a: 1 };\n\n# Title\n\n```python\nimport numpy as np\nfrom qiskit import QuantumCircuit\n```\n\nAn import is also a word.\n";
        let p = ok(src);
        let all = all_text(&p);
        assert!(!all.contains("@site"), "{all}");
        assert!(!all.contains("export const"), "{all}");
        assert_eq!(codes(&p), vec![(Some("python"), "import numpy as np\nfrom qiskit import QuantumCircuit")]);
        assert!(texts(&p).contains(&"An import is also a word."), "{:?}", texts(&p));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn mdx_admonitions_keep_content_behind_a_label() {
        let src = "Inline <admonition type=\"note\">flagged</admonition> text.\n\n<Admonition type=\"caution\" title=\"Simulated noise\">\nA noise model captures **only** what you put in.\n</Admonition>\n\n<Admonition type=\"note\">\nQubits are little-endian.\n</Admonition>\n\n<Note>\n- one\n- two\n</Note>\n\n<details>\n  <summary>\n    A question?\n  </summary>\n\nThe answer.\n</details>\n";
        let p = ok(src);
        assert_eq!(
            texts(&p),
            vec![
                "Inline Note: flagged text.",
                "Caution: Simulated noise\nA noise model captures only what you put in.",
                "Note: Qubits are little-endian.",
                "Note:\n- one\n- two",
                "A question?",
                "The answer.",
            ]
        );
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(p.blocks[1], Block::Text { text: texts(&p)[1].to_string(), at: Location::line(3) });
    }

    #[test]
    fn mdx_tabs_keep_content_with_their_labels() {
        let src = "<Tabs>\n  <TabItem value=\"sampler\" label=\"Sampler\">\nUse the sampler.\n\n```python\nimport numpy as np\n```\n  </TabItem>\n  <TabItem value=\"estimator\">\n```python\nest = 1\n```\n  </TabItem>\n</Tabs>\n";
        let p = ok(src);
        assert_eq!(texts(&p), vec!["Sampler:\nUse the sampler.", "estimator:"]);
        assert_eq!(codes(&p), vec![(Some("python"), "import numpy as np"), (Some("python"), "est = 1")]);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn mdx_api_components_keep_signature_and_content() {
        let src = "# HGate\n\n<Class id=\"qiskit.circuit.library.HGate\" isDedicatedPage={true} github=\"https://x\" signature=\"qiskit.circuit.library.HGate(*args, **kwargs)\" modifiers=\"class\">\n  Single-qubit Hadamard gate.\n\n  ### base\\_class\n\n  <Attribute id=\"qiskit.circuit.library.HGate.base_class\">\n    Get the base class.\n  </Attribute>\n\n  <Attribute id=\"x.version\" attributeTypeHint=\"int\" attributeValue=\"2\" />\n\n  <Function id=\"f\" signature=\"f(a, b=1)\">\n    Does things.\n  </Function>\n</Class>\n";
        let p = ok(src);
        assert_eq!(
            texts(&p),
            vec![
                "Class `qiskit.circuit.library.HGate(*args, **kwargs)`",
                "Single-qubit Hadamard gate.",
                "Attribute `qiskit.circuit.library.HGate.base_class`",
                "Get the base class.",
                "Attribute `x.version: int = 2`",
                "Function `f(a, b=1)`",
                "Does things.",
            ]
        );
        assert!(p.blocks.contains(&Block::Heading { level: 3, text: "base_class".into(), at: Location::line(6) }));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn mdx_unknown_components_keep_content_and_warn_once_per_name() {
        let src = "<CircuitDiagram layout=\"compact\">\nFirst diagram.\n</CircuitDiagram>\n\n<CircuitDiagram>\nSecond diagram.\n</CircuitDiagram>\n\nInline <Badge>new</Badge> text and <Badge>again</Badge>.\n";
        let p = ok(src);
        assert_eq!(texts(&p), vec!["First diagram.", "Second diagram.", "Inline new text and again."]);
        let messages: Vec<&str> = p.warnings.iter().map(|w| w.message.as_str()).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].contains("<CircuitDiagram>") && p.warnings[0].at == Location::line(1));
        assert!(messages[1].contains("<Badge>") && p.warnings[1].at == Location::line(9));
    }

    #[test]
    fn mdx_markdown_images_split_text_where_they_occur() {
        let src =
            "Before ![A *bell* circuit](/images/guides/bell.png \"The title\") after.\n\n![rel](./img/local.png)\n";
        let p = ok(src);
        assert_eq!(p.blocks.len(), 4, "{:?}", p.blocks);
        assert_eq!(p.blocks[0], Block::Text { text: "Before".into(), at: Location::line(1) });
        let Block::Image(img) = &p.blocks[1] else { panic!("{:?}", p.blocks[1]) };
        assert_eq!(img.source, ImageSource::Path("/images/guides/bell.png".into()));
        assert_eq!(img.alt, "A bell circuit");
        assert_eq!(img.title.as_deref(), Some("The title"));
        assert_eq!(img.at, Location::line(1));
        assert_eq!(p.blocks[2], Block::Text { text: "after.".into(), at: Location::line(1) });
        assert_eq!(paths(&p), vec!["/images/guides/bell.png", "./img/local.png"]);
    }

    #[test]
    fn mdx_jsx_images_come_from_attributes() {
        let src = "<Image src=\"/images/api/fidelity.png\" alt=\"Fidelity curve\" />\n\nText with <img src=\"inline.svg\" alt=\"i\" /> inside.\n\n<figure>\n<img src=\"/images/optimize/stratified.png\" alt=\"Stratified `layer`\" />\n<figcaption>This is a <span class=\"title-ref\">stratified</span> circuit.</figcaption>\n</figure>\n\n<Image src={diagram} alt=\"expr\" />\n\n<Image src={\"/images/literal.png\"} />\n\n<Image alt=\"no src\" />\n";
        let p = ok(src);
        assert_eq!(
            paths(&p),
            vec!["/images/api/fidelity.png", "inline.svg", "/images/optimize/stratified.png", "/images/literal.png"]
        );
        assert_eq!(images(&p)[0].alt, "Fidelity curve");
        assert_eq!(images(&p)[2].at, Location::line(6));
        assert!(texts(&p).contains(&"This is a stratified circuit."), "{:?}", texts(&p));
        assert!(texts(&p).contains(&"Text with") && texts(&p).contains(&"inside."), "{:?}", texts(&p));
        let messages: Vec<&str> = p.warnings.iter().map(|w| w.message.as_str()).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].contains("expression") && messages[0].contains("diagram"), "{messages:?}");
        assert_eq!(p.warnings[0].at, Location::line(10));
        assert!(messages[1].contains("without a `src`"), "{messages:?}");
    }

    #[test]
    fn mdx_data_uri_images_are_embedded_bytes() {
        let src = "![dot](data:image/png;base64,iVBORw0KGgo=)\n\n![bad](data:text/plain,hello)\n";
        let p = ok(src);
        let imgs = images(&p);
        assert_eq!(imgs.len(), 1);
        assert_eq!(
            imgs[0].source,
            ImageSource::Bytes { mime: "image/png".into(), data: vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a] }
        );
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    }

    #[test]
    fn mdx_tables_render_as_pipe_tables() {
        let src = "| Gate | Method | Matrix |\n|:-----|-------:|--------|\n| Hadamard | `h(q)` | $\\frac{1}{\\sqrt2}$ |\n| Pipe | a \\| b | **bold** |\n";
        let p = ok(src);
        assert_eq!(
            texts(&p),
            vec![
                "| Gate | Method | Matrix |\n| :--- | ---: | --- |\n| Hadamard | `h(q)` | $\\frac{1}{\\sqrt2}$ |\n| Pipe | a \\| b | bold |"
            ]
        );
    }

    #[test]
    fn mdx_math_is_kept_as_text() {
        let src = "The state\n\n$$\n|\\Phi^+\\rangle = \\frac{1}{\\sqrt{2}}\\left(|00\\rangle + |11\\rangle\\right).\n$$\n\nwith $2^n$ terms.\n";
        let p = ok(src);
        assert_eq!(
            texts(&p),
            vec![
                "The state",
                "$$\n|\\Phi^+\\rangle = \\frac{1}{\\sqrt{2}}\\left(|00\\rangle + |11\\rangle\\right).\n$$",
                "with $2^n$ terms."
            ]
        );
        assert_eq!(p.blocks[1], Block::Text { text: texts(&p)[1].to_string(), at: Location::line(3) });
    }

    #[test]
    fn mdx_lists_quotes_links_and_inline_code_are_readable() {
        let src = "1. **init**: unroll `ccx`;\n2. layout, see [the guide](./guide) and [Qiskit](https://qiskit.org)\n   - nested\n     continued\n\n> Quoted *text*\n> over two lines.\n\n---\n";
        let p = ok(src);
        assert_eq!(
            texts(&p),
            vec![
                "1. init: unroll `ccx`;\n2. layout, see the guide and Qiskit (https://qiskit.org)\n   - nested\n     continued",
                "> Quoted text\n> over two lines.",
                "---",
            ]
        );
    }

    #[test]
    fn mdx_lists_split_by_code_keep_readable_text() {
        let src = "- first item\n\n  ```python\n  x = 1\n  ```\n\n  Continued after the code.\n  - nested\n- second\n";
        let p = ok(src);
        assert_eq!(texts(&p), vec!["- first item", "Continued after the code.\n  - nested\n- second"]);
        assert_eq!(codes(&p), vec![(Some("python"), "x = 1")]);
    }

    #[test]
    fn mdx_text_fence_after_code_is_its_output() {
        let src = "```python\nprint(1)\n```\n\nOutput:\n\n```text\n1\n```\n\n```python\nprint(2)\n```\n```text\n2\n```\n\nA lone text block:\n\n```text\nnot output\n```\n";
        let p = ok(src);
        let kinds: Vec<String> = p
            .blocks
            .iter()
            .map(|b| match b {
                Block::Code { code, .. } => format!("code:{code}"),
                Block::Output { text, .. } => format!("output:{text}"),
                Block::Text { text, .. } => format!("text:{text}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                "code:print(1)",
                "output:1",
                "code:print(2)",
                "output:2",
                "text:A lone text block:",
                "code:not output"
            ]
        );
    }

    #[test]
    fn mdx_expressions_are_dropped_with_one_warning() {
        let p = ok("# Title {props.x}\n\n{/* a comment */}\n\nText {1 + 1} here {/* and a comment */}.\n\n{x}\n");
        assert_eq!(p.blocks[0], Block::Heading { level: 1, text: "Title".into(), at: Location::line(1) });
        assert_eq!(texts(&p), vec!["Text here."]);
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        assert!(p.warnings[0].message.contains("dropped 3 MDX expressions"), "{:?}", p.warnings);
        assert_eq!(p.warnings[0].at, Location::line(1));
    }

    #[test]
    fn mdx_syntax_error_is_a_skip_with_position() {
        let err = parse(b"# Title\n\nSome text\n\n<Admonition type=\"note\">\nnever closed\n", &limits()).unwrap_err();
        let SkipReason::Mdx { line, column, message } = err else { panic!("{err:?}") };
        assert!(line >= 5 && column >= 1, "{line}:{column} {message}");
        assert!(message.contains("Admonition"), "{message}");

        let err = parse(b"Hello\n\nx <3 y\n", &limits()).unwrap_err();
        assert!(matches!(err, SkipReason::Mdx { line: 3, column: 4, .. }), "{err:?}");
    }

    #[test]
    fn mdx_empty_and_non_utf8_are_skips() {
        assert_eq!(parse(b"", &limits()), Err(SkipReason::Empty));
        assert_eq!(parse(b" \n\t\n", &limits()), Err(SkipReason::Empty));
        assert_eq!(parse(b"abc\xff\xfe", &limits()), Err(SkipReason::NotUtf8 { offset: 3 }));
    }

    #[test]
    fn mdx_oversized_blocks_are_skipped_with_a_warning() {
        let small = ParseLimits { max_part_bytes: 20 };
        let p = parse(b"# Short\n\nThis paragraph is longer than twenty bytes.\n\nok\n", &small).unwrap();
        assert_eq!(texts(&p), vec!["ok"]);
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].message.contains("skipped a text block of 43 bytes"), "{:?}", p.warnings);
        assert_eq!(p.warnings[0].at, Location::line(3));
    }

    #[test]
    fn mdx_whitespace_after_equals_in_jsx_attributes_is_accepted() {
        let src = "<Admonition type = \"note\" title= 'T'>\nBody.\n</Admonition>\n\n<Image src = \"/images/a.png\" alt =\"A\" />\n\n```html\n<div class= \"x\">y</div>\nx = \"a\"\n```\n";
        let p = ok(src);
        assert_eq!(texts(&p), vec!["Note: T\nBody."]);
        assert_eq!(paths(&p), vec!["/images/a.png"]);
        assert_eq!(codes(&p), vec![(Some("html"), "<div class= \"x\">y</div>\nx = \"a\"")]);
    }

    #[test]
    fn mdx_nesting_guards_refuse_instead_of_crashing() {
        let deep_jsx = "<a>".repeat(MAX_JSX_NESTING + 10);
        assert!(matches!(parse(deep_jsx.as_bytes(), &limits()), Err(SkipReason::Mdx { line: 1, .. })));
        let deep_quote = format!("{}text\n", "> ".repeat(MAX_LINE_CONTAINERS + 1));
        assert!(matches!(parse(deep_quote.as_bytes(), &limits()), Err(SkipReason::Mdx { line: 1, .. })));
        let fenced = format!("```text\n{}\n```\n", ">".repeat(MAX_LINE_CONTAINERS * 2));
        assert_eq!(codes(&ok(&fenced)), vec![(Some("text"), ">".repeat(MAX_LINE_CONTAINERS * 2).as_str())]);
        // Deep but acceptable: walked up to MAX_DEPTH, then flattened.
        let deep_emphasis = format!("{}deep{}\n", "*".repeat(2 * MAX_DEPTH + 20), "*".repeat(2 * MAX_DEPTH + 20));
        let p = ok(&deep_emphasis);
        assert_eq!(texts(&p), vec!["deep"]);
        assert!(p.warnings.iter().any(|w| w.message.contains("flattened")), "{:?}", p.warnings);
        let nested = format!("{}inner{}\n", "<x>".repeat(300), "</x>".repeat(300));
        let p = ok(&nested);
        assert!(all_text(&p).contains("inner"));
    }

    #[test]
    fn mdx_known_markdown_rs_crashes_are_skips() {
        for src in ["{1}<x/>", "Hi <>\n=====", "=\n=\n=\na\n="] {
            let r = parse(src.as_bytes(), &limits());
            assert!(r.is_ok() || matches!(r, Err(SkipReason::Mdx { .. })), "{src:?}: {r:?}");
        }
    }

    #[test]
    fn mdx_crlf_and_bom_are_handled() {
        let p = ok("\u{feff}---\r\ntitle: T\r\n---\r\n\r\n# H\r\n\r\nLine one\r\nline two\r\n");
        assert_eq!(p.title.as_deref(), Some("T"));
        assert_eq!(texts(&p), vec!["Line one\nline two"]);
        assert_eq!(p.blocks[1], Block::Text { text: "Line one\nline two".into(), at: Location::line(7) });
    }

    #[test]
    fn mdx_line_endings_inside_jsx_text_elements_are_kept() {
        let src = "<figure>\n<figcaption>This is a <span\nclass=\"title-ref\">stratified</span> circuit, where the layers of\n  two-qubit \\* gates &amp; more.</figcaption>\n</figure>\n\nSee <b>one\ntwo</b> words.\n";
        let p = ok(src);
        assert_eq!(
            texts(&p),
            vec!["This is a stratified circuit, where the layers of\ntwo-qubit * gates & more.", "See one\ntwo words."]
        );
    }

    #[test]
    fn mdx_reference_images_resolve_through_definitions() {
        let p = ok("See ![Logo][logo].\n\n[logo]: /images/logo.png \"Logo title\"\n");
        assert_eq!(paths(&p), vec!["/images/logo.png"]);
        assert_eq!(images(&p)[0].title.as_deref(), Some("Logo title"));
    }

    #[test]
    fn markdown_flavor_strips_raw_html_and_extracts_images() {
        let src = "# Plain\n\n<div align=\"center\">\n<img src=\"docs/logo.png\" alt=\"Logo &amp; co\" width=\"200\">\n<p>Some <b>bold</b> &lt;text&gt;</p>\n<!-- a comment -->\n</div>\n\nA <3 heart and {braces}.\n";
        let p = parse_markdown(src.as_bytes(), &limits()).unwrap();
        assert_eq!(paths(&p), vec!["docs/logo.png"]);
        assert_eq!(images(&p)[0].alt, "Logo & co");
        let all = all_text(&p);
        assert!(all.contains("Some bold <text>"), "{all}");
        assert!(!all.contains("comment") && !all.contains("<div"), "{all}");
        assert!(all.contains("A <3 heart and {braces}."), "{all}");
    }

    // --- corpora -------------------------------------------------------------------------------

    fn mdx_files(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else { continue };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "mdx") {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    const PAGES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus/quantum/pages");
    const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus/qiskit-docs");

    fn page(rel: &str) -> Parsed {
        let bytes = std::fs::read(Path::new(PAGES).join(rel)).unwrap();
        parse(&bytes, &limits()).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    #[test]
    fn mdx_quantum_corpus_pages_keep_their_features() {
        let files = mdx_files(Path::new(PAGES));
        assert_eq!(files.len(), 5, "{files:?}");
        let (mut blocks, mut imgs, mut warnings) = (0, 0, 0);
        for f in &files {
            let p = parse(&std::fs::read(f).unwrap(), &limits()).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            assert!(p.title.is_some() && p.metadata.contains_key("description"), "{}", f.display());
            let all = all_text(&p);
            assert!(!all.contains("@site/components") && !all.contains("import {"), "{}: ESM leaked", f.display());
            assert!(!all.contains("<Admonition") && !all.contains("<Tab"), "{}: JSX leaked", f.display());
            for w in &p.warnings {
                assert!(w.message.starts_with("unknown MDX component"), "{}: {w:?}", f.display());
            }
            blocks += p.blocks.len();
            imgs += images(&p).len();
            warnings += p.warnings.len();
            eprintln!(
                "{}: {} blocks, {} images, {} warnings",
                f.display(),
                p.blocks.len(),
                images(&p).len(),
                p.warnings.len()
            );
        }
        eprintln!("quantum pages: {} files, {blocks} blocks, {imgs} images, {warnings} warnings", files.len());
        assert_eq!(imgs, 8);

        // Build circuits: a tab label, code, the unknown <CircuitDiagram> kept with one warning.
        let p = page("guides/build-circuits.mdx");
        assert_eq!(p.title.as_deref(), Some("Build quantum circuits"));
        let t = texts(&p);
        assert!(t.iter().any(|t| t.starts_with("Note: Qiskit orders qubits little-endian")), "{t:?}");
        assert!(t.iter().any(|t| t.starts_with("Text drawer:\nThe text drawer works everywhere")), "{t:?}");
        assert!(t.iter().any(|t| t.contains("colours gates by family")), "{t:?}");
        assert!(t.iter().any(|t| t.starts_with("| Gate | Method | Matrix or action |")), "{t:?}");
        assert!(t.iter().any(|t| t.starts_with("$$\n|\\Phi^+\\rangle")), "{t:?}");
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].message.contains("<CircuitDiagram>"));
        assert_eq!(paths(&p), vec!["/images/guides/bell-circuit.png"]);
        assert!(
            p.blocks.iter().any(|b| matches!(b, Block::Output { text, .. } if text.contains("{'11': 511, '00': 489}")))
        );

        // Local primitives: a column-0 `import` fence inside a <TabItem>, <Image> components.
        let p = page("guides/local-primitives.mdx");
        let c = codes(&p);
        assert!(c.iter().any(|(l, code)| *l == Some("python") && code.starts_with("import numpy as np\n")), "{c:?}");
        assert!(texts(&p).iter().any(|t| t.starts_with("StatevectorSampler:")), "{:?}", texts(&p));
        assert_eq!(paths(&p), vec!["/images/guides/expectation-sweep.png", "/images/guides/ghz-histogram.png"]);
        assert!(images(&p)[1].alt.starts_with("Histogram of 1024 shots"));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);

        // Noise: the deliberately unresolvable image is still reported; <ResultCallout> kept.
        let p = page("guides/noise-and-readout-mitigation.mdx");
        assert_eq!(
            paths(&p),
            vec!["/images/guides/noisy-vs-ideal.png", "/images/guides/readout-calibration-heatmap.png"]
        );
        let t = texts(&p);
        assert!(t.iter().any(|t| t.starts_with("Caution: Simulated noise is a model\nA noise model")), "{t:?}");
        assert!(t.iter().any(|t| t.contains("Hellinger fidelity to the ideal distribution")), "{t:?}");
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].message.contains("<ResultCallout>"));

        // Transpile: an SVG image and a table.
        let p = page("guides/transpile-for-targets.mdx");
        assert_eq!(paths(&p), vec!["/images/guides/coupling-map.svg", "/images/guides/transpiled-ghz.png"]);
        assert!(texts(&p).iter().any(|t| t.starts_with("| Optimization level | Depth |")));

        // API page: <Function> and <Class> keep signature and content.
        let p = page("api/state-fidelity.mdx");
        assert_eq!(p.title.as_deref(), Some("state_fidelity (quantum_info)"));
        assert_eq!(p.metadata["python_api_name"], "qiskit.quantum_info.state_fidelity");
        let t = texts(&p);
        assert!(t.contains(&"Function `qiskit.quantum_info.state_fidelity(state1, state2, validate=True)`"), "{t:?}");
        assert!(t.contains(&"Compute the fidelity of two quantum states."), "{t:?}");
        assert!(t.contains(&"Class `qiskit.quantum_info.Statevector(data, dims=None)`"), "{t:?}");
        assert!(t.iter().any(|t| t.starts_with("A pure state held as a vector")), "{t:?}");
        assert!(t.iter().any(|t| t.starts_with("- state1 (Statevector or DensityMatrix)")), "{t:?}");
        assert_eq!(paths(&p), vec!["/images/api/fidelity-vs-angle.png"]);
        assert!(p.blocks.iter().any(|b| matches!(b, Block::Output { text, .. } if text == "0.5\n1.0")));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn mdx_shared_qiskit_docs_all_parse() {
        let files = mdx_files(Path::new(SHARED));
        if files.is_empty() {
            eprintln!("{SHARED} has no .mdx files; skipped");
            return;
        }
        let (mut blocks, mut imgs, mut warnings, mut bytes) = (0, 0, 0, 0);
        let mut skipped = Vec::new();
        let mut messages: BTreeMap<String, usize> = BTreeMap::new();
        let mut components: BTreeMap<String, usize> = BTreeMap::new();
        for f in &files {
            let data = std::fs::read(f).unwrap();
            bytes += data.len();
            let text = String::from_utf8_lossy(&data);
            let fixed = prescan(&text, true).ok().and_then(|fixes| apply_fixes(&text, &fixes));
            if let Ok(tree) = to_tree(fixed.as_deref().unwrap_or(&text), Flavor::Mdx) {
                let mut stack = vec![&tree];
                while let Some(n) = stack.pop() {
                    if let Node::MdxJsxFlowElement(mdast::MdxJsxFlowElement { name: Some(name), .. })
                    | Node::MdxJsxTextElement(mdast::MdxJsxTextElement { name: Some(name), .. }) = n
                    {
                        *components.entry(format!("{name} ({:?})", Component::of(name))).or_default() += 1;
                    }
                    stack.extend(n.children().into_iter().flatten());
                }
            }
            match parse(&data, &limits()) {
                Ok(p) => {
                    blocks += p.blocks.len();
                    imgs += images(&p).len();
                    warnings += p.warnings.len();
                    for w in &p.warnings {
                        let key: String = w.message.chars().take(60).collect();
                        *messages.entry(key).or_default() += 1;
                    }
                }
                Err(e) => skipped.push(format!("{}: {e}", f.display())),
            }
        }
        eprintln!(
            "qiskit-docs: {} files ({bytes} bytes), {blocks} blocks, {imgs} images, {warnings} warnings, {} skipped",
            files.len(),
            skipped.len()
        );
        for (m, n) in &messages {
            eprintln!("  {n:>4} × {m}");
        }
        for (c, n) in &components {
            eprintln!("  {n:>4} × <{c}>");
        }
        for s in &skipped {
            eprintln!("  skipped {s}");
        }
        assert_eq!(files.len(), 64);
        assert!(skipped.is_empty(), "{skipped:#?}");
    }

    // --- properties ------------------------------------------------------------------------------

    fn corpus_pages() -> Vec<String> {
        let mut out: Vec<String> =
            mdx_files(Path::new(PAGES)).iter().filter_map(|f| std::fs::read_to_string(f).ok()).collect();
        out.push("<Tabs>\n<TabItem value=\"a\">\n```python\nx = 1\n```\n</TabItem>\n</Tabs>\n".to_string());
        out
    }

    const SNIPPETS: &[&str] = &[
        "<",
        "</",
        ">",
        "/>",
        "{",
        "}",
        "`",
        "```",
        "~~~",
        "\n",
        "\n\n",
        "---\n",
        "$$",
        "$",
        "|",
        "*",
        "_",
        "[",
        "](",
        "![",
        "<Image src=\"/x.png\" />",
        "<Image src={x} />",
        "<Admonition type = \"note\">",
        "</Admonition>",
        "import x from \"y\"\n",
        "export const a = 1\n",
        "> ",
        "- ",
        "1. ",
        "&amp;",
        "\\",
        "<!-- -->",
        "\u{feff}",
        "é",
        "\r\n",
        "\t",
        "    ",
    ];

    fn mutate(mut s: String, edits: &[(usize, usize, usize)]) -> String {
        for &(pos, op, arg) in edits {
            let mut p = if s.is_empty() { 0 } else { pos % (s.len() + 1) };
            while !s.is_char_boundary(p) {
                p -= 1;
            }
            match op % 3 {
                0 => s.insert_str(p, SNIPPETS[arg % SNIPPETS.len()]),
                1 => {
                    let mut end = (p + arg % 40).min(s.len());
                    while !s.is_char_boundary(end) {
                        end -= 1;
                    }
                    s.replace_range(p..end, "");
                }
                _ => {
                    let mut end = (p + arg % 8).min(s.len());
                    while !s.is_char_boundary(end) {
                        end -= 1;
                    }
                    s.replace_range(p..end, SNIPPETS[arg % SNIPPETS.len()]);
                }
            }
        }
        s
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn mdx_arbitrary_strings_never_panic(s in "\\PC*", raw in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(s.as_bytes(), &limits());
            let _ = parse_markdown(s.as_bytes(), &limits());
            let _ = parse(&raw, &limits());
        }

        #[test]
        fn mdx_mutated_pages_never_panic(
            which in 0usize..6,
            edits in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<usize>()), 1..12),
        ) {
            let pages = corpus_pages();
            let base = pages[which % pages.len()].clone();
            let mutated = mutate(base, &edits);
            if let Ok(p) = parse(mutated.as_bytes(), &limits()) {
                for b in &p.blocks {
                    if let Block::Text { text, .. } = b {
                        prop_assert!(!text.trim().is_empty());
                    }
                }
            }
            let _ = parse_markdown(mutated.as_bytes(), &limits());
        }
    }
}
