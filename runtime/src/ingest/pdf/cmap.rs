//! CMaps: ToUnicode maps (`bfchar`/`bfrange`) and the code-to-CID maps of composite fonts
//! (`codespacerange`, `cidchar`/`cidrange`, `usecmap`).
//!
//! Tolerant by design, since producers write CMaps loosely: a source code is 1–4 bytes, a
//! destination any number of UTF-16BE bytes (odd lengths get a leading zero byte, so the
//! one-byte `<41>` means U+0041; unpaired surrogates become U+FFFD), a range whose destination
//! is a string counts up its last character, a destination array may be shorter or longer
//! than its range, and anything else (a broken entry, a stray token) is skipped. Ranges and
//! the whole map are capped, so a hostile `<00000000> <FFFFFFFF>` costs little.

use super::content::{Lexer, Operand};

/// Codes one range may map.
const MAX_RANGE: u32 = 1 << 16;
/// Mappings one CMap may hold.
const MAX_MAPPINGS: usize = 1 << 18;
/// Operands one CMap section may have (a section should hold at most 100 entries).
const MAX_SECTION_OPERANDS: usize = 1 << 18;

#[derive(Default, Debug)]
pub(super) struct CMap {
    /// Code space ranges: (bytes per code, low, high).
    pub(super) codespace: Vec<(u8, u32, u32)>,
    /// Code → CID ranges: (low, high, CID of low).
    pub(super) cids: Vec<(u32, u32, u32)>,
    /// Code → text: (code, range of `pool`).
    pub(super) unicode: Vec<(u32, u32, u32)>,
    pub(super) pool: String,
    /// The CMap named by `usecmap`, if any.
    pub(super) parent: Option<Vec<u8>>,
}

fn code_of(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || bytes.len() > 4 {
        return None;
    }
    Some(bytes.iter().fold(0u32, |code, &b| (code << 8) | u32::from(b)))
}

/// UTF-16BE bytes as text, odd lengths widened with a leading zero byte.
fn utf16(bytes: &[u8], out: &mut String) {
    let pad = bytes.len() % 2 == 1;
    let mut units = Vec::with_capacity(bytes.len().div_ceil(2));
    let mut iter = bytes.iter().copied();
    if pad && let Some(b) = iter.next() {
        units.push(u16::from(b));
    }
    while let (Some(h), Some(l)) = (iter.next(), iter.next()) {
        units.push(u16::from_be_bytes([h, l]));
    }
    out.extend(char::decode_utf16(units).map(|c| c.unwrap_or('\u{fffd}')));
}

impl CMap {
    fn map(&mut self, code: u32, text: &str) {
        if self.unicode.len() >= MAX_MAPPINGS {
            return;
        }
        let start = self.pool.len();
        self.pool.push_str(text);
        let (Ok(start), Ok(end)) = (u32::try_from(start), u32::try_from(self.pool.len())) else { return };
        self.unicode.push((code, start, end));
    }

    /// The text of `code`, when mapped (the last mapping wins).
    #[cfg(test)]
    pub(super) fn text(&self, code: u32) -> Option<&str> {
        let &(_, start, end) = self.unicode.iter().rev().find(|(c, _, _)| *c == code)?;
        self.pool.get(start as usize..end as usize)
    }
}

pub(super) fn parse(data: &[u8]) -> CMap {
    let mut cmap = CMap::default();
    let mut lexer = Lexer::with_max_operands(data, MAX_SECTION_OPERANDS);
    let mut text = String::new();
    while let Some(op) = lexer.next_operator() {
        match op {
            b"endcodespacerange" => {
                for pair in lexer.operands.chunks_exact(2) {
                    let (Some(lo), Some(hi)) = (lexer.text(&pair[0]), lexer.text(&pair[1])) else { continue };
                    if let (Some(l), Some(h)) = (code_of(lo), code_of(hi))
                        && let Ok(len) = u8::try_from(lo.len())
                    {
                        cmap.codespace.push((len, l, h.max(l)));
                    }
                }
            }
            b"endcidrange" => {
                for entry in lexer.operands.chunks_exact(3) {
                    let lo = lexer.text(&entry[0]).and_then(code_of);
                    let hi = lexer.text(&entry[1]).and_then(code_of);
                    if let (Some(lo), Some(hi), Operand::Number(cid)) = (lo, hi, &entry[2])
                        && hi >= lo
                        && *cid >= 0.0
                    {
                        cmap.cids.push((lo, hi, *cid as u32));
                    }
                }
            }
            b"endcidchar" => {
                for entry in lexer.operands.chunks_exact(2) {
                    if let (Some(code), Operand::Number(cid)) = (lexer.text(&entry[0]).and_then(code_of), &entry[1])
                        && *cid >= 0.0
                    {
                        cmap.cids.push((code, code, *cid as u32));
                    }
                }
            }
            b"endbfchar" => {
                for entry in lexer.operands.chunks_exact(2) {
                    let (Some(code), Some(dst)) = (lexer.text(&entry[0]).and_then(code_of), lexer.text(&entry[1]))
                    else {
                        continue;
                    };
                    if !matches!(entry[1], Operand::String(_)) {
                        continue;
                    }
                    text.clear();
                    utf16(dst, &mut text);
                    cmap.map(code, &text);
                }
            }
            b"endbfrange" => bf_ranges(&lexer, &mut cmap),
            b"usecmap" => {
                if let Some(name) = lexer.operands.last().and_then(|o| match o {
                    Operand::Name(_) => lexer.text(o),
                    _ => None,
                }) {
                    cmap.parent = Some(name.to_vec());
                }
            }
            _ => {}
        }
    }
    cmap
}

/// `lo hi dst` entries: `dst` a string whose last character counts up, or an array.
fn bf_ranges(lexer: &Lexer, cmap: &mut CMap) {
    let operands = &lexer.operands;
    let mut text = String::new();
    let mut i = 0;
    while let (Some(lo), Some(hi), Some(dst)) = (operands.get(i), operands.get(i + 1), operands.get(i + 2)) {
        i += 3;
        let (Some(lo), Some(hi)) = (lexer.text(lo).and_then(code_of), lexer.text(hi).and_then(code_of)) else {
            continue;
        };
        let Some(span) = hi.checked_sub(lo) else { continue };
        let span = span.min(MAX_RANGE - 1);
        match dst {
            Operand::String(_) => {
                text.clear();
                utf16(lexer.text(dst).unwrap_or_default(), &mut text);
                let Some(last) = text.pop() else { continue };
                let stem = text.len();
                for k in 0..=span {
                    let Some(c) = char::from_u32(u32::from(last).saturating_add(k)) else { break };
                    text.truncate(stem);
                    text.push(c);
                    cmap.map(lo + k, &text);
                }
            }
            Operand::Array(_) => {
                for (k, item) in (0..=span).zip(lexer.array_items(dst)) {
                    if let (Operand::String(_), Some(bytes)) = (item, lexer.text(item)) {
                        text.clear();
                        utf16(bytes, &mut text);
                        cmap.map(lo + k, &text);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_pdf_extract_would_panic_on_are_read() {
        // The cases `repair_cmap` used to rewrite for pdf-extract: ligature destinations, a
        // one-byte destination, arrays, odd hex digits, and entries interrupted by junk.
        let cmap = parse(
            b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n\
1 begincodespacerange <00> <FF> endcodespacerange\n\
2 beginbfchar <03> <0042> <07> <041> endbfchar\n\
4 beginbfrange <01> <01> <00660069>\n<02> <02> <41>\n<04> <05> [<0043> <0044> <0045>]\n<0A> <0C> <D835DC00> endbfrange\n\
1 beginbfchar <06> /junk <08> <D800> endbfchar\n\
endcmap end end\n",
        );
        assert_eq!(cmap.codespace, [(1, 0, 0xff)]);
        assert_eq!(cmap.text(1), Some("fi"));
        assert_eq!(cmap.text(2), Some("A"));
        assert_eq!(cmap.text(3), Some("B"));
        assert_eq!(cmap.text(4), Some("C"));
        assert_eq!(cmap.text(5), Some("D"));
        assert_eq!(cmap.text(6), None);
        // Odd digits: `<041>` is `<0410>`, as the PDF spec reads hex strings.
        assert_eq!(cmap.text(7), Some("\u{410}"));
        assert_eq!(cmap.text(8), Some("\u{fffd}"));
        assert_eq!(cmap.text(0x0b), Some("\u{1d401}"));
    }

    #[test]
    fn cid_maps_and_hostile_ranges() {
        let cmap = parse(
            b"/Identity-H usecmap 2 begincodespacerange <00> <80> <8140> <FFFF> endcodespacerange\n\
1 begincidrange <8140> <817F> 633 endcidrange 1 begincidchar <20> 1 endcidchar\n\
1 beginbfrange <00000000> <FFFFFFFF> <D800DC00> endbfrange",
        );
        assert_eq!(cmap.parent.as_deref(), Some(&b"Identity-H"[..]));
        assert_eq!(cmap.codespace, [(1, 0, 0x80), (2, 0x8140, 0xffff)]);
        assert_eq!(cmap.cids, [(0x8140, 0x817f, 633), (0x20, 0x20, 1)]);
        assert_eq!(cmap.unicode.len(), MAX_RANGE as usize);
        assert_eq!(cmap.text(0xffff), Some("\u{1ffff}"));
    }
}
