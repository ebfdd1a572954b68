//! A nom parser for `.sds` files.
//!
//! Grammar (see docs/language.md for the full description):
//!
//! ```text
//! file    = { comment | block } ;
//! block   = ident [ ident ] "{" { comment | field | block } "}" ;
//! field   = ident "=" value ;
//! value   = string | number [ "%" | "ms" | "s" | "m" | "h" ] | "true" | "false"
//!         | "env" "(" string [ "," value ] ")" | ident | list | map ;
//! list    = "[" [ value { "," value } [ "," ] ] "]" ;
//! map     = "{" [ ident "=" value { "," ident "=" value } [ "," ] ] "}" ;
//! ```
//!
//! Once the parser has seen enough to know what a construct is, it commits (`nom::Err::Failure`)
//! so errors point at the offending token instead of backtracking to the start of the file.

use nom::branch::alt;
use nom::bytes::complete::{take_while, take_while1};
use nom::character::complete::{char, digit1, satisfy};
use nom::combinator::{opt, recognize};
use nom::error::{ErrorKind, ParseError};
use nom::{IResult, Input as _, Parser};
use nom_locate::LocatedSpan;

use super::ast::*;
use crate::diagnostic::{Code, Diagnostic};
use crate::span::Span;

type Input<'a> = LocatedSpan<&'a str>;
type PResult<'a, T> = IResult<Input<'a>, T, PErr>;

/// Parses a whole spec. On error, the single most precise syntax diagnostic is returned:
/// after a syntax error the rest of the file cannot be trusted, so we do not guess further.
pub fn parse(text: &str) -> Result<File, Diagnostic> {
    // The parser is recursive; refuse absurd nesting up front instead of overflowing the stack.
    check_depth(text)?;
    let input = Input::new(text);
    match file(input) {
        Ok((_, file)) => Ok(file),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(e.into_diagnostic(text)),
        Err(nom::Err::Incomplete(_)) => {
            Err(Diagnostic::error(Code::Syntax, Span::new(text.len(), text.len()), "unexpected end of file"))
        }
    }
}

/// Deeper nesting than this (blocks, lists and maps together) is refused; real specs use 3.
pub const MAX_DEPTH: usize = 32;

/// Finds the first bracket that opens level [`MAX_DEPTH`] + 1, skipping strings and comments.
fn check_depth(text: &str) -> Result<(), Diagnostic> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut in_comment = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if in_comment {
            in_comment = c != '\n';
        } else if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' | '\n' => in_string = false,
                _ => {}
            }
        } else {
            match c {
                '#' => in_comment = true,
                '"' => in_string = true,
                '{' | '[' | '(' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(Diagnostic::error(
                            Code::Syntax,
                            Span::new(i, i + 1),
                            format!("nesting deeper than {MAX_DEPTH} levels"),
                        )
                        .with_label("too deep")
                        .with_hint("flatten the spec; blocks, lists and maps rarely need more than three levels"));
                    }
                }
                '}' | ']' | ')' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    Ok(())
}

/// The parser's error: where, and what was expected there.
#[derive(Debug)]
struct PErr {
    offset: usize,
    len: usize,
    code: Code,
    message: String,
    label: Option<String>,
    hint: Option<String>,
}

impl PErr {
    fn at(input: Input<'_>, len: usize, code: Code, message: impl Into<String>) -> Self {
        PErr { offset: input.location_offset(), len, code, message: message.into(), label: None, hint: None }
    }

    fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    fn fail<T>(self) -> Result<T, nom::Err<PErr>> {
        Err(nom::Err::Failure(self))
    }

    fn into_diagnostic(self, text: &str) -> Diagnostic {
        let end = (self.offset + self.len).min(text.len());
        let mut d = Diagnostic::error(self.code, Span::new(self.offset, end), self.message);
        if let Some(label) = self.label {
            d = d.with_label(label);
        }
        if let Some(hint) = self.hint {
            d = d.with_hint(hint);
        }
        d
    }
}

impl<'a> ParseError<Input<'a>> for PErr {
    fn from_error_kind(input: Input<'a>, kind: ErrorKind) -> Self {
        PErr::at(input, 1, Code::Syntax, format!("unexpected input ({kind:?})"))
    }

    fn append(_: Input<'a>, _: ErrorKind, other: Self) -> Self {
        other
    }

    fn or(self, other: Self) -> Self {
        if other.offset >= self.offset { other } else { self }
    }
}

/// The width of the token starting at `input`, for underlining it.
fn token_len(input: Input<'_>) -> usize {
    let s = *input.fragment();
    match s.chars().next() {
        None => 0,
        Some(c) if c.is_alphanumeric() || c == '_' => s
            .char_indices()
            .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == '-' || *c == '.'))
            .map_or(s.len(), |(i, _)| i),
        Some(c) => c.len_utf8(),
    }
}

fn describe_token(input: Input<'_>) -> String {
    let s = *input.fragment();
    match s.chars().next() {
        None => "end of file".to_string(),
        Some('\n') | Some('\r') => "end of line".to_string(),
        Some(_) => format!("`{}`", &s[..token_len(input).max(1).min(s.len())]),
    }
}

// ---------------------------------------------------------------------------------------------
// Trivia: whitespace and comments.

/// A comment seen while skipping trivia, and whether a newline preceded it since the last token.
struct SeenComment {
    comment: Comment,
    own_line: bool,
}

/// Skips whitespace and comments, returning the comments and whether a blank line came last.
fn trivia(mut input: Input<'_>) -> PResult<'_, (Vec<SeenComment>, usize)> {
    let mut comments = Vec::new();
    let mut newlines_since_token = 0usize;
    let mut newlines_run = 0usize;
    loop {
        let (rest, _) = take_while(|c: char| c == ' ' || c == '\t' || c == '\r')(input)?;
        input = rest;
        if let Ok((rest, _)) = char::<_, PErr>('\n')(input) {
            newlines_since_token += 1;
            newlines_run += 1;
            input = rest;
            continue;
        }
        if input.fragment().starts_with('#') {
            let start = input.location_offset();
            let (rest, body) = take_while(|c: char| c != '\n')(input)?;
            let text = body.fragment()[1..].trim().to_string();
            comments.push(SeenComment {
                comment: Comment {
                    text,
                    span: Span::new(start, start + body.fragment().len()),
                    blank_before: newlines_run >= 2,
                },
                own_line: newlines_since_token > 0,
            });
            newlines_run = 0;
            input = rest;
            continue;
        }
        return Ok((input, (comments, newlines_run)));
    }
}

/// Skips trivia inside a value, where comments cannot be kept by `fmt`; those are rejected.
fn inner_trivia(input: Input<'_>) -> PResult<'_, ()> {
    let (rest, (comments, _)) = trivia(input)?;
    if let Some(c) = comments.first() {
        return PErr {
            offset: c.comment.span.start,
            len: c.comment.span.len(),
            code: Code::CommentInValue,
            message: "comments are not allowed inside a list or map".into(),
            label: Some("this comment".into()),
            hint: Some("move the comment above the field, where `sdc fmt` can keep it".into()),
        }
        .fail();
    }
    Ok((rest, ()))
}

/// Skips spaces and tabs only (not newlines, not comments).
fn spaces(input: Input<'_>) -> PResult<'_, ()> {
    let (rest, _) = take_while(|c: char| c == ' ' || c == '\t')(input)?;
    Ok((rest, ()))
}

// ---------------------------------------------------------------------------------------------
// Structure.

fn file(input: Input<'_>) -> PResult<'_, File> {
    let (rest, entries) = entries(input, None)?;
    Ok((rest, File { entries }))
}

/// Parses entries until `}` (inside a block, whose opening brace is at `open`) or end of input.
fn entries(mut input: Input<'_>, open: Option<Span>) -> PResult<'_, Vec<Entry>> {
    let mut out: Vec<Entry> = Vec::new();
    loop {
        let (rest, (comments, blank_lines)) = trivia(input)?;
        input = rest;
        for seen in comments {
            let attached = !seen.own_line && attach_trailing(&mut out, &seen.comment);
            if !attached {
                out.push(Entry::Comment(seen.comment));
            }
        }
        let blank_before = blank_lines >= 2 && !out.is_empty();
        if input.fragment().is_empty() {
            if let Some(open) = open {
                return PErr {
                    offset: open.start,
                    len: 1,
                    code: Code::UnclosedBlock,
                    message: "this block is never closed".into(),
                    label: Some("opened here".into()),
                    hint: Some("add a `}` after the block's last field".into()),
                }
                .fail();
            }
            return Ok((input, out));
        }
        if input.fragment().starts_with('}') {
            if open.is_some() {
                return Ok((input, out));
            }
            return PErr::at(input, 1, Code::Syntax, "unexpected `}`")
                .label("no block is open here")
                .hint("remove this brace, or check the braces above it")
                .fail();
        }
        let (rest, entry) = entry(input, blank_before)?;
        input = rest;
        out.push(entry);
    }
}

fn attach_trailing(entries: &mut [Entry], comment: &Comment) -> bool {
    match entries.last_mut() {
        Some(Entry::Field(f)) if f.trailing.is_none() => {
            f.trailing = Some(Comment { blank_before: false, ..comment.clone() });
            true
        }
        Some(Entry::Block(b)) if b.trailing.is_none() => {
            b.trailing = Some(Comment { blank_before: false, ..comment.clone() });
            true
        }
        _ => false,
    }
}

fn entry(input: Input<'_>, blank_before: bool) -> PResult<'_, Entry> {
    let start = input.location_offset();
    let (rest, key) = match ident(input) {
        Ok(ok) => ok,
        Err(_) => {
            return PErr::at(
                input,
                token_len(input).max(1),
                Code::Syntax,
                format!("expected a field or a block, found {}", describe_token(input)),
            )
            .label("expected a name here")
            .hint("fields look like `key = value`; blocks look like `kind name { … }`")
            .fail();
        }
    };
    let (rest, _) = spaces(rest)?;
    if rest.fragment().starts_with('=') {
        let (rest, _) = char('=')(rest)?;
        let (rest, _) = spaces(rest)?;
        let (rest, value) = value(rest)?;
        let end = rest.location_offset();
        let (rest, _) = spaces(rest)?;
        if !(rest.fragment().is_empty()
            || rest.fragment().starts_with('\n')
            || rest.fragment().starts_with("\r\n")
            || rest.fragment().starts_with('#')
            || rest.fragment().starts_with('}')
            // Another field may follow on the same line: `type qa { ratio = 30% multimodal = 70% }`.
            || rest.fragment().starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
        {
            return PErr::at(
                rest,
                token_len(rest).max(1),
                Code::Syntax,
                format!(
                    "expected the end of the line after the value of `{}`, found {}",
                    key.name,
                    describe_token(rest)
                ),
            )
            .label("unexpected here")
            .hint("separate fields with a line break or a space; lists are written `[a, b]`")
            .fail();
        }
        let field = Field { key, value, trailing: None, blank_before, span: Span::new(start, end) };
        return Ok((rest, Entry::Field(field)));
    }
    let (rest, label) = opt(ident).parse(rest)?;
    let (rest, _) = spaces(rest)?;
    if !rest.fragment().starts_with('{') {
        let what = if label.is_some() { "`{`" } else { "`=` or `{`" };
        return PErr::at(
            rest,
            token_len(rest).max(1),
            Code::Syntax,
            format!("expected {what} after `{}`, found {}", key.name, describe_token(rest)),
        )
        .label(format!("expected {what}"))
        .hint(format!("write `{} = value` for a field, or `{} name {{ … }}` for a block", key.name, key.name))
        .fail();
    }
    let open = Span::new(rest.location_offset(), rest.location_offset() + 1);
    let (rest, _) = char('{')(rest)?;
    let (rest, body) = entries(rest, Some(open))?;
    let (rest, _) = char('}')(rest)?;
    let end = rest.location_offset();
    let block = Block { kind: key, label, entries: body, trailing: None, blank_before, span: Span::new(start, end) };
    Ok((rest, Entry::Block(block)))
}

fn ident(input: Input<'_>) -> PResult<'_, Ident> {
    let start = input.location_offset();
    let (rest, text) = recognize((
        satisfy(|c: char| c.is_ascii_alphabetic() || c == '_'),
        take_while(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
    ))
    .parse(input)?;
    let name = text.fragment().to_string();
    Ok((rest, Ident { span: Span::new(start, start + name.len()), name }))
}

// ---------------------------------------------------------------------------------------------
// Values.

fn value(input: Input<'_>) -> PResult<'_, Value> {
    let start = input.location_offset();
    let first = input.fragment().chars().next();
    let (rest, kind) = match first {
        Some('"') => {
            let (rest, s) = string(input)?;
            (rest, ValueKind::Str(s))
        }
        Some('[') => list(input)?,
        Some('{') => map(input)?,
        Some(c) if c.is_ascii_digit() || c == '-' || c == '+' => number(input)?,
        Some(c) if c.is_ascii_alphabetic() || c == '_' => word(input)?,
        _ => {
            return PErr::at(input, token_len(input).max(1), Code::Syntax, format!("expected a value, found {}", describe_token(input)))
                .label("expected a value here")
                .hint("values are strings (\"…\"), numbers (3, 0.5, 35%, 60s), true/false, names, lists [a, b], maps { k = v } or env(\"NAME\")")
                .fail();
        }
    };
    Ok((rest, Value { kind, span: Span::new(start, rest.location_offset()) }))
}

fn string(input: Input<'_>) -> PResult<'_, String> {
    let open = input;
    let (mut rest, _) = char('"')(input)?;
    let mut out = String::new();
    loop {
        let mut chars = rest.fragment().chars();
        match chars.next() {
            None | Some('\n') => {
                return PErr::at(open, 1, Code::UnterminatedString, "unterminated string")
                    .label("this string is never closed")
                    .hint("close the string with `\"` on the same line")
                    .fail();
            }
            Some('"') => {
                let (r, _) = rest.take_split(1);
                return Ok((r, out));
            }
            Some('\\') => {
                let esc = chars.next();
                let (c, width) = match esc {
                    Some('n') => ('\n', 2),
                    Some('t') => ('\t', 2),
                    Some('"') => ('"', 2),
                    Some('\\') => ('\\', 2),
                    _ => {
                        let width = 1 + esc.map_or(0, char::len_utf8);
                        return PErr::at(rest, width, Code::Syntax, "unknown escape sequence in string")
                            .label("not a valid escape")
                            .hint("the escapes are \\n, \\t, \\\" and \\\\")
                            .fail();
                    }
                };
                out.push(c);
                let (r, _) = rest.take_split(width);
                rest = r;
            }
            Some(c) => {
                out.push(c);
                let (r, _) = rest.take_split(c.len_utf8());
                rest = r;
            }
        }
    }
}

fn number(input: Input<'_>) -> PResult<'_, ValueKind> {
    let (rest, text) = recognize((
        opt(alt((char('-'), char('+')))),
        digit1,
        take_while(|c: char| c.is_ascii_digit() || c == '_'),
        opt((char('.'), take_while1(|c: char| c.is_ascii_digit() || c == '_'))),
    ))
    .parse(input)
    .or_else(|_: nom::Err<PErr>| {
        PErr::at(input, token_len(input).max(1), Code::InvalidNumber, "invalid number")
            .label("not a number")
            .hint("numbers look like 3, 1_000, 0.5, 35% or 60s")
            .fail()
    })?;
    let raw: String = text.fragment().chars().filter(|c| *c != '_' && *c != '+').collect();
    let is_float = raw.contains('.');
    let (rest, unit) = take_while(|c: char| c.is_ascii_alphanumeric() || c == '%' || c == '_')(rest)?;
    let unit_text = *unit.fragment();
    let number_span_len = text.fragment().len() + unit_text.len();
    let bad_number = || {
        PErr::at(input, number_span_len, Code::InvalidNumber, format!("`{}` is out of range", text.fragment()))
            .label("too large")
            .hint("integers must fit in 64 bits")
    };
    // Too many digits parse to an infinite f64, which no literal can express: `fmt` would
    // print `inf`. Reject such literals like integers that do not fit.
    let finite = || match raw.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(f),
        _ => Err(nom::Err::Failure(bad_number().hint("numbers must fit in a 64-bit float (up to about 1.8e308)"))),
    };
    let kind = match unit_text {
        "" if is_float => ValueKind::Float(finite()?),
        "" => ValueKind::Int(raw.parse().map_err(|_| nom::Err::Failure(bad_number()))?),
        "%" => ValueKind::Percent(finite()?),
        "ms" | "s" | "m" | "h" => {
            if is_float || raw.starts_with('-') {
                return PErr::at(
                    input,
                    number_span_len,
                    Code::InvalidNumber,
                    "a duration must be a whole, non-negative number",
                )
                .label("not a whole number")
                .hint("use a smaller unit instead of a fraction: `1500ms`, `90s`")
                .fail();
            }
            let amount: u64 = raw.parse().map_err(|_| nom::Err::Failure(bad_number()))?;
            let unit = match unit_text {
                "ms" => DurationUnit::Millis,
                "s" => DurationUnit::Seconds,
                "m" => DurationUnit::Minutes,
                _ => DurationUnit::Hours,
            };
            ValueKind::Duration(Duration { amount, unit })
        }
        other => {
            return PErr {
                offset: unit.location_offset(),
                len: other.len(),
                code: Code::UnknownUnit,
                message: format!("unknown unit `{other}`"),
                label: Some("unknown unit".into()),
                hint: Some("units are `%` for percentages and `ms`, `s`, `m`, `h` for durations".into()),
            }
            .fail();
        }
    };
    Ok((rest, kind))
}

fn word(input: Input<'_>) -> PResult<'_, ValueKind> {
    let (rest, id) = ident(input)?;
    match id.name.as_str() {
        "true" => Ok((rest, ValueKind::Bool(true))),
        "false" => Ok((rest, ValueKind::Bool(false))),
        "env" if rest.fragment().starts_with('(') => env(rest),
        _ => Ok((rest, ValueKind::Symbol(id.name))),
    }
}

fn env(input: Input<'_>) -> PResult<'_, ValueKind> {
    let (rest, _) = char('(')(input)?;
    let (rest, _) = inner_trivia(rest)?;
    if !rest.fragment().starts_with('"') {
        return PErr::at(rest, token_len(rest).max(1), Code::Syntax, "expected the variable name as a string")
            .label("expected a string")
            .hint("write `env(\"NAME\")` or `env(\"NAME\", default)`")
            .fail();
    }
    let (rest, name) = string(rest)?;
    let (rest, _) = inner_trivia(rest)?;
    let (rest, default) = if rest.fragment().starts_with(',') {
        let (rest, _) = char(',')(rest)?;
        let (rest, _) = inner_trivia(rest)?;
        let (rest, v) = value(rest)?;
        let (rest, _) = inner_trivia(rest)?;
        (rest, Some(Box::new(v)))
    } else {
        (rest, None)
    };
    if !rest.fragment().starts_with(')') {
        return PErr::at(
            rest,
            token_len(rest).max(1),
            Code::Syntax,
            format!("expected `)` to close env(), found {}", describe_token(rest)),
        )
        .label("expected `)`")
        .hint("env() takes a name and an optional default: `env(\"NAME\", \"default\")`")
        .fail();
    }
    let (rest, _) = char(')')(rest)?;
    Ok((rest, ValueKind::Env { name, default }))
}

fn list(input: Input<'_>) -> PResult<'_, ValueKind> {
    let open = input;
    let (mut rest, _) = char('[')(input)?;
    let mut items = Vec::new();
    loop {
        let (r, _) = inner_trivia(rest)?;
        rest = r;
        if rest.fragment().starts_with(']') {
            let (r, _) = char(']')(rest)?;
            return Ok((r, ValueKind::List(items)));
        }
        if rest.fragment().is_empty() {
            return PErr::at(open, 1, Code::UnclosedBlock, "this list is never closed")
                .label("opened here")
                .hint("close the list with `]`")
                .fail();
        }
        let (r, v) = value(rest)?;
        items.push(v);
        let (r, _) = inner_trivia(r)?;
        rest = r;
        if rest.fragment().starts_with(',') {
            let (r, _) = char(',')(rest)?;
            rest = r;
        } else if !rest.fragment().starts_with(']') {
            return PErr::at(
                rest,
                token_len(rest).max(1),
                Code::Syntax,
                format!("expected `,` or `]` in list, found {}", describe_token(rest)),
            )
            .label("expected `,` or `]`")
            .hint("separate list items with commas")
            .fail();
        }
    }
}

fn map(input: Input<'_>) -> PResult<'_, ValueKind> {
    let open = input;
    let (mut rest, _) = char('{')(input)?;
    let mut pairs = Vec::new();
    loop {
        let (r, _) = inner_trivia(rest)?;
        rest = r;
        if rest.fragment().starts_with('}') {
            let (r, _) = char('}')(rest)?;
            return Ok((r, ValueKind::Map(pairs)));
        }
        if rest.fragment().is_empty() {
            return PErr::at(open, 1, Code::UnclosedBlock, "this map is never closed")
                .label("opened here")
                .hint("close the map with `}`")
                .fail();
        }
        let (r, key) = ident(rest).or_else(|_| {
            PErr::at(
                rest,
                token_len(rest).max(1),
                Code::Syntax,
                format!("expected a key in map, found {}", describe_token(rest)),
            )
            .label("expected a key")
            .hint("maps look like `{ key = value, other = value }`")
            .fail()
        })?;
        let (r, _) = inner_trivia(r)?;
        let (r, _) = char::<_, PErr>('=')(r).or_else(|_| {
            PErr::at(r, token_len(r).max(1), Code::Syntax, format!("expected `=` after map key `{}`", key.name))
                .label("expected `=`")
                .hint("maps look like `{ key = value, other = value }`")
                .fail()
        })?;
        let (r, _) = inner_trivia(r)?;
        let (r, v) = value(r)?;
        pairs.push((key, v));
        let (r, _) = inner_trivia(r)?;
        rest = r;
        if rest.fragment().starts_with(',') {
            let (r, _) = char(',')(rest)?;
            rest = r;
        } else if !rest.fragment().starts_with('}') {
            return PErr::at(
                rest,
                token_len(rest).max(1),
                Code::Syntax,
                format!("expected `,` or `}}` in map, found {}", describe_token(rest)),
            )
            .label("expected `,` or `}`")
            .hint("separate map entries with commas")
            .fail();
        }
    }
}
