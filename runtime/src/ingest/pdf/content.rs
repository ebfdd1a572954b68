//! A tokenizer for content streams and CMaps: operands and the operator after them.
//!
//! It never fails and never panics: whatever it cannot make sense of it skips, one byte at a
//! time at worst, so its work is linear in the input. Operands are kept only for the operator
//! they precede (at most [`MAX_OPERANDS`] of them, the last ones win), strings and names are
//! decoded into one buffer that is reused for every operator, and arrays are flat (an array
//! inside an array is one [`Operand::Other`]). Inline images (`BI … ID … EI`) are skipped whole.

use std::ops::Range;

/// Operands kept per operator in content streams; earlier ones are dropped (no operator takes
/// more than 6).
pub(super) const MAX_OPERANDS: usize = 64;
/// Items kept per array (`TJ` arrays, `/Differences`, CMap destination arrays).
const MAX_ARRAY_ITEMS: usize = 1 << 16;

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Operand {
    Number(f64),
    /// A name without its slash, as a range of [`Lexer::bytes`].
    Name(Range<usize>),
    /// A literal or hexadecimal string, decoded, as a range of [`Lexer::bytes`].
    String(Range<usize>),
    /// A range of [`Lexer::items`].
    Array(Range<usize>),
    /// Booleans, null, dictionaries, nested arrays, procedures.
    Other,
}

pub(super) struct Lexer<'a> {
    data: &'a [u8],
    pos: usize,
    /// The operands of the operator last returned.
    pub(super) operands: Vec<Operand>,
    /// Array items of those operands.
    pub(super) items: Vec<Operand>,
    /// Decoded strings and names of those operands.
    pub(super) bytes: Vec<u8>,
    max_operands: usize,
}

pub(super) fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\r' | b'\t' | b'\x0c' | b'\0')
}

fn is_delimiter(c: u8) -> bool {
    matches!(c, b'<' | b'>' | b'[' | b']' | b'(' | b')' | b'/' | b'%' | b'{' | b'}')
}

fn is_regular(c: u8) -> bool {
    !is_space(c) && !is_delimiter(c)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A PDF number (`12`, `-3.5`, `.5`, `4.`); malformed ones (`--1`, `1.2.3`) as far as they go.
/// `None` when `token` does not start like a number.
pub(super) fn parse_number(token: &[u8]) -> Option<f64> {
    let mut i = 0;
    let mut negative = false;
    while let Some(&c) = token.get(i) {
        match c {
            b'-' => negative = !negative,
            b'+' => {}
            _ => break,
        }
        i += 1;
    }
    let mut value = 0.0f64;
    let mut digits = 0usize;
    while let Some(&c) = token.get(i).filter(|c| c.is_ascii_digit()) {
        value = value * 10.0 + f64::from(c - b'0');
        digits += 1;
        i += 1;
    }
    if token.get(i) == Some(&b'.') {
        i += 1;
        let mut scale = 0.1;
        while let Some(&c) = token.get(i).filter(|c| c.is_ascii_digit()) {
            value += f64::from(c - b'0') * scale;
            scale *= 0.1;
            digits += 1;
            i += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    Some(if negative { -value } else { value })
}

impl<'a> Lexer<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Self::with_max_operands(data, MAX_OPERANDS)
    }

    /// A lexer keeping up to `max_operands` operands (CMap sections have hundreds).
    pub(super) fn with_max_operands(data: &'a [u8], max_operands: usize) -> Self {
        Lexer {
            data,
            pos: 0,
            operands: Vec::with_capacity(8),
            items: Vec::new(),
            bytes: Vec::new(),
            max_operands: max_operands.max(1),
        }
    }

    /// How far into the data the lexer is.
    #[cfg(test)]
    pub(super) fn position(&self) -> usize {
        self.pos
    }

    fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    fn skip_space_and_comments(&mut self) {
        while let Some(c) = self.peek() {
            if is_space(c) {
                self.pos += 1;
            } else if c == b'%' {
                while let Some(c) = self.peek() {
                    if c == b'\n' || c == b'\r' {
                        break;
                    }
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
    }

    fn regular_run(&mut self) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(is_regular) {
            self.pos += 1;
        }
        self.data.get(start..self.pos).unwrap_or_default()
    }

    /// The next operator, its operands in [`Self::operands`]; `None` at the end.
    pub(super) fn next_operator(&mut self) -> Option<&'a [u8]> {
        self.operands.clear();
        self.items.clear();
        self.bytes.clear();
        loop {
            self.skip_space_and_comments();
            let c = self.peek()?;
            match self.object(c, false) {
                Some(operand) => self.push(operand),
                None => {
                    if is_regular(c) {
                        let keyword = self.regular_run();
                        match keyword {
                            b"true" | b"false" | b"null" => self.push(Operand::Other),
                            b"BI" => {
                                self.skip_inline_image();
                                return Some(b"EI");
                            }
                            _ => return Some(keyword),
                        }
                    } else {
                        // A stray `)`, `>`, `]`, `{` or `}`.
                        self.pos += 1;
                    }
                }
            }
        }
    }

    /// Keeps `operand`, dropping the older half of the operands when there are too many (their
    /// strings and array items stay in the buffers until the operator: bounded by the input).
    fn push(&mut self, operand: Operand) {
        if self.operands.len() >= self.max_operands {
            let half = self.operands.len().div_ceil(2);
            self.operands.drain(..half);
        }
        self.operands.push(operand);
    }

    /// An operand starting at `c` (consumed), or `None` for a keyword or a stray delimiter
    /// (not consumed).
    fn object(&mut self, c: u8, in_array: bool) -> Option<Operand> {
        match c {
            b'/' => {
                self.pos += 1;
                Some(Operand::Name(self.name()))
            }
            b'(' => {
                self.pos += 1;
                Some(Operand::String(self.literal_string()))
            }
            b'<' if self.data.get(self.pos + 1) == Some(&b'<') => {
                self.pos += 2;
                self.skip_dictionary();
                Some(Operand::Other)
            }
            b'<' => {
                self.pos += 1;
                Some(Operand::String(self.hex_string()))
            }
            b'[' if in_array => {
                self.pos += 1;
                self.skip_nested(b'[', b']');
                Some(Operand::Other)
            }
            b'[' => {
                self.pos += 1;
                Some(self.array())
            }
            b'{' => {
                self.pos += 1;
                self.skip_nested(b'{', b'}');
                Some(Operand::Other)
            }
            b'0'..=b'9' | b'+' | b'-' | b'.' => {
                let token = self.regular_run();
                Some(parse_number(token).map_or(Operand::Other, Operand::Number))
            }
            _ => None,
        }
    }

    fn name(&mut self) -> Range<usize> {
        let start = self.bytes.len();
        while let Some(c) = self.peek().filter(|&c| is_regular(c)) {
            self.pos += 1;
            if c == b'#'
                && let (Some(h), Some(l)) =
                    (self.peek().and_then(hex_value), self.data.get(self.pos + 1).copied().and_then(hex_value))
            {
                self.bytes.push(h << 4 | l);
                self.pos += 2;
                continue;
            }
            self.bytes.push(c);
        }
        start..self.bytes.len()
    }

    fn literal_string(&mut self) -> Range<usize> {
        let start = self.bytes.len();
        let mut depth = 1u32;
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                b'(' => {
                    depth += 1;
                    self.bytes.push(c);
                }
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                    self.bytes.push(c);
                }
                b'\\' => {
                    let Some(e) = self.peek() else { break };
                    self.pos += 1;
                    match e {
                        b'n' => self.bytes.push(b'\n'),
                        b'r' => self.bytes.push(b'\r'),
                        b't' => self.bytes.push(b'\t'),
                        b'b' => self.bytes.push(8),
                        b'f' => self.bytes.push(12),
                        b'0'..=b'7' => {
                            let mut value = u32::from(e - b'0');
                            for _ in 0..2 {
                                match self.peek() {
                                    Some(d @ b'0'..=b'7') => {
                                        value = value * 8 + u32::from(d - b'0');
                                        self.pos += 1;
                                    }
                                    _ => break,
                                }
                            }
                            self.bytes.push((value & 0xff) as u8);
                        }
                        b'\r' => {
                            if self.peek() == Some(b'\n') {
                                self.pos += 1;
                            }
                        }
                        b'\n' => {}
                        other => self.bytes.push(other),
                    }
                }
                _ => self.bytes.push(c),
            }
        }
        start..self.bytes.len()
    }

    fn hex_string(&mut self) -> Range<usize> {
        let start = self.bytes.len();
        let mut high: Option<u8> = None;
        while let Some(c) = self.peek() {
            self.pos += 1;
            if c == b'>' {
                break;
            }
            if let Some(v) = hex_value(c) {
                match high.take() {
                    Some(h) => self.bytes.push(h << 4 | v),
                    None => high = Some(v),
                }
            }
        }
        if let Some(h) = high {
            self.bytes.push(h << 4);
        }
        start..self.bytes.len()
    }

    fn array(&mut self) -> Operand {
        let start = self.items.len();
        loop {
            self.skip_space_and_comments();
            let Some(c) = self.peek() else { break };
            if c == b']' {
                self.pos += 1;
                break;
            }
            let item = match self.object(c, true) {
                Some(item) => item,
                None if is_regular(c) => {
                    // A keyword inside an array (`true`, or an operator missing its `]`).
                    let save = self.pos;
                    let keyword = self.regular_run();
                    if !matches!(keyword, b"true" | b"false" | b"null") {
                        self.pos = save;
                        break;
                    }
                    Operand::Other
                }
                None => {
                    self.pos += 1;
                    continue;
                }
            };
            if self.items.len() - start < MAX_ARRAY_ITEMS {
                self.items.push(item);
            }
        }
        Operand::Array(start..self.items.len())
    }

    /// Skips to the `close` matching an `open` already consumed, strings and comments included.
    fn skip_nested(&mut self, open: u8, close: u8) {
        let mut depth = 1u32;
        let bytes = self.bytes.len();
        while let Some(c) = self.peek() {
            match c {
                b'(' => {
                    self.pos += 1;
                    self.literal_string();
                }
                b'%' => self.skip_space_and_comments(),
                _ => {
                    self.pos += 1;
                    if c == open {
                        depth += 1;
                    } else if c == close {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                }
            }
        }
        self.bytes.truncate(bytes);
    }

    fn skip_dictionary(&mut self) {
        let mut depth = 1u32;
        let bytes = self.bytes.len();
        while let Some(c) = self.peek() {
            match c {
                b'(' => {
                    self.pos += 1;
                    self.literal_string();
                }
                b'%' => self.skip_space_and_comments(),
                b'<' if self.data.get(self.pos + 1) == Some(&b'<') => {
                    self.pos += 2;
                    depth += 1;
                }
                b'>' if self.data.get(self.pos + 1) == Some(&b'>') => {
                    self.pos += 2;
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => self.pos += 1,
            }
        }
        self.bytes.truncate(bytes);
    }

    /// After `BI`: the image dictionary up to `ID`, then the data up to an `EI` that stands
    /// alone (white space or the end on both sides).
    fn skip_inline_image(&mut self) {
        loop {
            self.skip_space_and_comments();
            let Some(c) = self.peek() else { return };
            if self.object(c, false).is_some() {
                continue;
            }
            if !is_regular(c) {
                self.pos += 1;
                continue;
            }
            if self.regular_run() == b"ID" {
                break;
            }
        }
        self.bytes.clear();
        self.items.clear();
        // One white-space byte separates `ID` from the data.
        self.pos += 1;
        let data = self.data;
        let mut i = self.pos;
        while i + 2 <= data.len() {
            let at_ei = data.get(i..i + 2) == Some(b"EI");
            let before = i == 0 || data.get(i - 1).is_some_and(|&c| is_space(c));
            let after = data.get(i + 2).is_none_or(|&c| is_space(c) || is_delimiter(c));
            if at_ei && before && after {
                self.pos = i + 2;
                return;
            }
            i += 1;
        }
        self.pos = data.len();
    }

    // --- operand access ----------------------------------------------------------------------

    /// The bytes of a string or name operand.
    pub(super) fn text(&self, operand: &Operand) -> Option<&[u8]> {
        match operand {
            Operand::Name(r) | Operand::String(r) => self.bytes.get(r.clone()),
            _ => None,
        }
    }

    /// The `n` last operands, when there are that many.
    pub(super) fn last(&self, n: usize) -> Option<&[Operand]> {
        self.operands.get(self.operands.len().checked_sub(n)?..)
    }

    /// The last `n` operands as numbers.
    pub(super) fn numbers<const N: usize>(&self) -> Option<[f64; N]> {
        let operands = self.last(N)?;
        let mut out = [0.0; N];
        for (slot, operand) in out.iter_mut().zip(operands) {
            match operand {
                Operand::Number(v) => *slot = *v,
                _ => return None,
            }
        }
        Some(out)
    }

    pub(super) fn array_items(&self, operand: &Operand) -> &[Operand] {
        match operand {
            Operand::Array(r) => self.items.get(r.clone()).unwrap_or_default(),
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(data: &[u8]) -> Vec<(String, Vec<String>)> {
        let mut lexer = Lexer::new(data);
        let mut out = Vec::new();
        while let Some(op) = lexer.next_operator() {
            let operands = lexer
                .operands
                .iter()
                .map(|o| match o {
                    Operand::Number(v) => format!("{v}"),
                    Operand::Name(_) => format!("/{}", String::from_utf8_lossy(lexer.text(o).unwrap_or_default())),
                    Operand::String(_) => format!("({})", String::from_utf8_lossy(lexer.text(o).unwrap_or_default())),
                    Operand::Array(_) => format!("[{} items]", lexer.array_items(o).len()),
                    Operand::Other => "?".to_string(),
                })
                .collect();
            out.push((String::from_utf8_lossy(op).into_owned(), operands));
        }
        out
    }

    #[test]
    fn operators_and_operands() {
        let got = ops(b"BT /F1 12 Tf 1 0 0 1 72.5 -.5 Tm (a\\(b\\)\\101\\n) Tj [(x) -250 <41 42 4>] TJ ET % c\nq");
        let want: Vec<(String, Vec<String>)> = vec![
            ("BT".into(), vec![]),
            ("Tf".into(), vec!["/F1".into(), "12".into()]),
            ("Tm".into(), vec!["1".into(), "0".into(), "0".into(), "1".into(), "72.5".into(), "-0.5".into()]),
            ("Tj".into(), vec!["(a(b)A\n)".into()]),
            ("TJ".into(), vec!["[3 items]".into()]),
            ("ET".into(), vec![]),
            ("q".into(), vec![]),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn hex_names_dicts_and_inline_images() {
        let got = ops(b"/Span<</ActualText(x)/MCID 3>>BDC /A#20B Do BI /W 4 /H 1 ID \x00EI\xff EI\nEMC");
        assert_eq!(got[0], ("BDC".to_string(), vec!["/Span".to_string(), "?".to_string()]));
        assert_eq!(got[1], ("Do".to_string(), vec!["/A B".to_string()]));
        assert_eq!(got[2].0, "EI");
        assert_eq!(got[3].0, "EMC");
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn numbers_tolerate_malformed_input() {
        assert_eq!(parse_number(b"12"), Some(12.0));
        assert_eq!(parse_number(b"-3.25"), Some(-3.25));
        assert_eq!(parse_number(b"4."), Some(4.0));
        assert_eq!(parse_number(b"--2"), Some(2.0));
        assert_eq!(parse_number(b"1.2.3"), Some(1.2));
        assert_eq!(parse_number(b"-"), None);
    }

    #[test]
    fn garbage_is_consumed_linearly() {
        for data in [&b"((((((("[..], b"<<<<<<", b"[[[[[[", b")))>>>]]]}}}", b"BI /W 1 ID", b"\\\\\\(", b"<4"] {
            let mut lexer = Lexer::new(data);
            let mut n = 0;
            while lexer.next_operator().is_some() {
                n += 1;
                assert!(n <= data.len());
            }
            assert_eq!(lexer.position(), data.len());
        }
    }
}
