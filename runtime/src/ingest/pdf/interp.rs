//! The content-stream interpreter: text and graphics state, text-showing operators, form
//! XObjects (recursively) and image XObjects, in one pass over a page.
//!
//! It emits the glyphs the layout reads (position from the text rendering matrix
//! `Tsm × Tm × CTM`, size, advance with character and word spacing and horizontal scaling) and
//! the images the page draws with where they land. Work is bounded: forms nest at most
//! [`MAX_FORM_DEPTH`] deep and never into themselves, and a page (forms drawn many times
//! included) gets a budget of operators, past which the rest of it is skipped.

use std::collections::HashMap;
use std::rc::Rc;

use lopdf::{Dictionary, Document, Object, ObjectId};

use super::content::{Lexer, Operand};
use super::font::{Font, FontCache};
use super::inflate::stream_data;
use super::{
    Glyph, GlyphText, IDENTITY, MAX_FORM_DEPTH, MAX_GLYPHS_PER_PAGE, Matrix, Rect, clean_glyph, deref, multiply,
};

/// Operators (and form data, at one per 64 bytes each time a form is drawn) one page may cost.
const PAGE_BUDGET: u64 = 4_000_000;

/// What is kept across the pages of one document.
#[derive(Default)]
pub(super) struct DocCache {
    fonts: FontCache,
    /// Decoded form XObject content, by object.
    forms: HashMap<ObjectId, Rc<[u8]>>,
}

/// What one page yields.
#[derive(Default)]
pub(super) struct PageOutput {
    pub(super) glyphs: Vec<Glyph>,
    /// Image XObjects in drawing order (repeats included), with the unit square under the CTM.
    pub(super) images: Vec<(ObjectId, Rect)>,
    /// Content streams that could not be decoded (their text and images are missing).
    pub(super) problems: Vec<String>,
    /// The page ran out of its budget.
    pub(super) over_budget: bool,
}

#[derive(Clone)]
struct State {
    ctm: Matrix,
    font: Option<Rc<Font>>,
    size: f64,
    char_spacing: f64,
    word_spacing: f64,
    /// Horizontal scaling as a factor (`Tz` / 100).
    scaling: f64,
    leading: f64,
    rise: f64,
    tm: Matrix,
    tlm: Matrix,
}

impl State {
    fn new(ctm: Matrix) -> State {
        State {
            ctm,
            font: None,
            size: 0.0,
            char_spacing: 0.0,
            word_spacing: 0.0,
            scaling: 1.0,
            leading: 0.0,
            rise: 0.0,
            tm: IDENTITY,
            tlm: IDENTITY,
        }
    }

    /// Moves to the start of the next line, offset by (tx, ty) from the start of this one.
    fn next_line(&mut self, tx: f64, ty: f64) {
        self.tlm = multiply([1.0, 0.0, 0.0, 1.0, tx, ty], self.tlm);
        self.tm = self.tlm;
    }

    /// Moves along the baseline by `tx` text space units.
    fn advance(&mut self, tx: f64) {
        self.tm[4] += tx * self.tm[0];
        self.tm[5] += tx * self.tm[1];
    }
}

struct Interp<'d, 'o> {
    doc: &'d Document,
    cache: &'o mut DocCache,
    out: &'o mut PageOutput,
    page_top: f64,
    /// The forms being drawn, innermost last.
    active: Vec<ObjectId>,
    budget: u64,
    /// Fonts already looked up on this page: (resource dictionary address, name, font).
    seen_fonts: Vec<(usize, Vec<u8>, Rc<Font>)>,
}

/// The glyphs and images of a page.
pub(super) fn page(doc: &Document, cache: &mut DocCache, page_id: ObjectId, page_top: f64, out: &mut PageOutput) {
    let Ok(page) = doc.get_dictionary(page_id) else { return };
    let resources = super::inherited(doc, page, b"Resources").and_then(|r| r.as_dict().ok());
    let mut data = Vec::new();
    let contents = doc.get_page_contents(page_id);
    for &id in &contents {
        let Ok(stream) = doc.get_object(id).and_then(Object::as_stream) else { continue };
        match stream_data(stream, None) {
            // One stream (nearly always): no copy.
            Ok(content) if contents.len() == 1 => {
                let mut interp = Interp::new(doc, cache, out, page_top);
                interp.run(&content, resources, State::new(IDENTITY), 0);
                return;
            }
            Ok(content) => data.extend_from_slice(&content),
            Err(e) => out.problems.push(format!("content stream {} {} R cannot be decoded: {e}", id.0, id.1)),
        }
        data.push(b'\n');
    }
    let mut interp = Interp::new(doc, cache, out, page_top);
    interp.run(&data, resources, State::new(IDENTITY), 0);
}

impl<'d, 'o> Interp<'d, 'o> {
    fn new(doc: &'d Document, cache: &'o mut DocCache, out: &'o mut PageOutput, page_top: f64) -> Self {
        Interp { doc, cache, out, page_top, active: Vec::new(), budget: PAGE_BUDGET, seen_fonts: Vec::new() }
    }

    /// `Tf`'s font: looked up once per page and resource dictionary, built once per document.
    fn font(&mut self, resources: Option<&'d Dictionary>, name: &[u8]) -> Rc<Font> {
        let key = resources.map_or(0, |r| std::ptr::from_ref(r) as usize);
        if let Some((_, _, font)) = self.seen_fonts.iter().find(|(r, n, _)| *r == key && n == name) {
            return Rc::clone(font);
        }
        let font = self.cache.fonts.get(self.doc, resources, name).unwrap_or_else(|| self.cache.fonts.fallback());
        self.seen_fonts.push((key, name.to_vec(), Rc::clone(&font)));
        font
    }

    fn run(&mut self, data: &[u8], resources: Option<&'d Dictionary>, mut state: State, depth: u32) {
        let base = state.clone();
        let mut stack: Vec<State> = Vec::new();
        let mut lexer = Lexer::new(data);
        while let Some(op) = lexer.next_operator() {
            if self.budget == 0 {
                self.out.over_budget = true;
                return;
            }
            self.budget -= 1;
            match op {
                // Nesting past 256 is not saved (its `Q`s restore an outer state).
                b"q" if stack.len() < 256 => stack.push(state.clone()),
                b"Q" => state = stack.pop().unwrap_or_else(|| base.clone()),
                b"cm" => {
                    if let Some(m) = lexer.numbers::<6>() {
                        state.ctm = multiply(m, state.ctm);
                    }
                }
                b"BT" => {
                    state.tm = IDENTITY;
                    state.tlm = IDENTITY;
                }
                b"Tf" => {
                    if let Some([name, size]) = lexer.last(2) {
                        state.font = Some(match lexer.text(name) {
                            Some(name) => self.font(resources, name),
                            None => self.cache.fonts.fallback(),
                        });
                        if let Operand::Number(size) = size {
                            state.size = *size;
                        }
                    }
                }
                b"Tc" => {
                    if let Some([v]) = lexer.numbers::<1>() {
                        state.char_spacing = v;
                    }
                }
                b"Tw" => {
                    if let Some([v]) = lexer.numbers::<1>() {
                        state.word_spacing = v;
                    }
                }
                b"Tz" => {
                    if let Some([v]) = lexer.numbers::<1>() {
                        state.scaling = v / 100.0;
                    }
                }
                b"TL" => {
                    if let Some([v]) = lexer.numbers::<1>() {
                        state.leading = v;
                    }
                }
                b"Ts" => {
                    if let Some([v]) = lexer.numbers::<1>() {
                        state.rise = v;
                    }
                }
                b"Td" => {
                    if let Some([tx, ty]) = lexer.numbers::<2>() {
                        state.next_line(tx, ty);
                    }
                }
                b"TD" => {
                    if let Some([tx, ty]) = lexer.numbers::<2>() {
                        state.leading = -ty;
                        state.next_line(tx, ty);
                    }
                }
                b"T*" => state.next_line(0.0, -state.leading),
                b"Tm" => {
                    if let Some(m) = lexer.numbers::<6>() {
                        state.tm = m;
                        state.tlm = m;
                    }
                }
                b"Tj" => {
                    if let Some(s) = lexer.operands.last().and_then(|o| string(&lexer, o)) {
                        self.show(&mut state, s);
                    }
                }
                b"'" => {
                    state.next_line(0.0, -state.leading);
                    if let Some(s) = lexer.operands.last().and_then(|o| string(&lexer, o)) {
                        self.show(&mut state, s);
                    }
                }
                b"\"" => {
                    if let Some([Operand::Number(aw), Operand::Number(ac), s]) = lexer.last(3) {
                        state.word_spacing = *aw;
                        state.char_spacing = *ac;
                        state.next_line(0.0, -state.leading);
                        if let Some(s) = string(&lexer, s) {
                            self.show(&mut state, s);
                        }
                    }
                }
                b"TJ" => {
                    let Some(array) = lexer.operands.last() else { continue };
                    for item in lexer.array_items(array) {
                        match item {
                            Operand::Number(n) => {
                                let tx = -n / 1000.0 * state.size * state.scaling;
                                state.advance(tx);
                            }
                            Operand::String(_) => {
                                if let Some(s) = lexer.text(item) {
                                    self.show(&mut state, s);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                b"Do" => {
                    if let Some(name) = lexer.operands.last().and_then(|o| lexer.text(o)) {
                        self.draw(name, resources, &state, depth);
                    }
                }
                _ => {}
            }
        }
    }

    /// Shows a string: one glyph per character code.
    fn show(&mut self, state: &mut State, bytes: &[u8]) {
        let font = match &state.font {
            Some(font) => Rc::clone(font),
            None => {
                let font = self.cache.fonts.fallback();
                state.font = Some(Rc::clone(&font));
                font
            }
        };
        // Trm = Tsm × Tm × CTM, with Tsm = [Th 0 0 1 0 Trise] (the font size is applied apart).
        // Along a string only Tm's translation changes, so the rest is worked out once.
        let m = multiply(state.tm, state.ctm);
        let (a, b, c, d) = (state.scaling * m[0], state.scaling * m[1], m[2], m[3]);
        let x_scale = a.hypot(b);
        let y_scale = c.hypot(d);
        let size = (state.size * y_scale).abs();
        let visible = size.is_finite() && size >= 0.5;
        let rotated = b.abs() > a.abs();
        let ctm = state.ctm;
        let mut at = 0;
        while let Some((code, len)) = font.next_code(bytes, &mut at) {
            let w0 = font.width(code);
            let mut spacing = state.char_spacing;
            // Word spacing applies to the single-byte code 32 only.
            if code == 32 && len == 1 {
                spacing += state.word_spacing;
            }
            if visible && self.out.glyphs.len() < MAX_GLYPHS_PER_PAGE {
                let (tx, ty) = (state.tm[4], state.tm[5]);
                let e = tx * ctm[0] + ty * ctm[2] + ctm[4];
                let f = tx * ctm[1] + ty * ctm[3] + ctm[5];
                let (x, y) = (state.rise * c + e, self.page_top - (state.rise * d + f));
                if x.is_finite() && y.is_finite() {
                    let text = match font.text(code) {
                        "" => font.ucs2_text(code).map(|c| GlyphText::new(&clean_glyph(c.encode_utf8(&mut [0; 4])))),
                        text => Some(GlyphText::new(text)),
                    };
                    if let Some(text) = text.filter(|t| !t.is_empty()) {
                        let chars = text.chars().count() as f64;
                        let mut advance = ((w0 * state.size + spacing) * x_scale).abs();
                        let estimated = !advance.is_finite() || advance <= 0.0 || advance > 4.0 * size * chars;
                        if estimated {
                            advance = 0.5 * size * chars;
                        }
                        self.out.glyphs.push(Glyph { x, y, advance, size, text, rotated, estimated });
                    }
                }
            }
            state.advance(state.scaling * (w0 * state.size + spacing));
        }
    }

    /// `Do`: an image is recorded, a form is run.
    fn draw(&mut self, name: &[u8], resources: Option<&'d Dictionary>, state: &State, depth: u32) {
        let doc = self.doc;
        let Some(xobjects) =
            resources.and_then(|r| r.get(b"XObject").ok()).and_then(|o| deref(doc, o)).and_then(|o| o.as_dict().ok())
        else {
            return;
        };
        let Some(id) = xobjects.get(name).ok().and_then(|o| o.as_reference().ok()) else { return };
        let Ok(stream) = doc.get_object(id).and_then(Object::as_stream) else { return };
        match stream.dict.get(b"Subtype").and_then(Object::as_name) {
            Ok(b"Image") => self.out.images.push((id, self.rect(state.ctm))),
            Ok(b"Form") if depth < MAX_FORM_DEPTH && !self.active.contains(&id) => {
                let data = match self.cache.forms.get(&id) {
                    Some(data) => Rc::clone(data),
                    None => {
                        let data: Rc<[u8]> = match stream_data(stream, None) {
                            Ok(data) => data.into(),
                            Err(e) => {
                                self.out.problems.push(format!("form {} {} R cannot be decoded: {e}", id.0, id.1));
                                Rc::from(&[][..])
                            }
                        };
                        self.cache.forms.insert(id, Rc::clone(&data));
                        data
                    }
                };
                let cost = data.len() as u64 / 64 + 1;
                if self.budget < cost {
                    self.budget = 0;
                    self.out.over_budget = true;
                    return;
                }
                self.budget -= cost;
                let matrix = stream
                    .dict
                    .get(b"Matrix")
                    .ok()
                    .and_then(|m| deref(doc, m))
                    .and_then(|m| m.as_array().ok())
                    .and_then(|m| super::matrix(m))
                    .unwrap_or(IDENTITY);
                let form_resources = stream
                    .dict
                    .get(b"Resources")
                    .ok()
                    .and_then(|r| deref(doc, r))
                    .and_then(|r| r.as_dict().ok())
                    .or(resources);
                let mut inner = state.clone();
                inner.ctm = multiply(matrix, state.ctm);
                self.active.push(id);
                self.run(&data, form_resources, inner, depth + 1);
                self.active.pop();
            }
            _ => {}
        }
    }

    /// The unit square under `m`, in top-down page coordinates.
    fn rect(&self, m: Matrix) -> Rect {
        let corners = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)].map(|(x, y)| {
            let px = m[0] * x + m[2] * y + m[4];
            let py = m[1] * x + m[3] * y + m[5];
            (px, self.page_top - py)
        });
        let xs = corners.map(|c| c.0);
        let ys = corners.map(|c| c.1);
        Rect {
            x0: xs.iter().copied().fold(f64::INFINITY, f64::min),
            x1: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            top: ys.iter().copied().fold(f64::INFINITY, f64::min),
            bottom: ys.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

fn string<'l>(lexer: &'l Lexer, operand: &Operand) -> Option<&'l [u8]> {
    match operand {
        Operand::String(_) => lexer.text(operand),
        _ => None,
    }
}
