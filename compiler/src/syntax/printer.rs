//! The canonical printer behind `sdc fmt`.
//!
//! One layout for every spec: two-space indents, one field per line, a blank line between
//! top-level blocks, blank lines elsewhere kept (at most one), comments kept where they were,
//! lists and maps on one line when they fit in [`WIDTH`] columns and one item per line otherwise.

use super::ast::*;

/// Lines longer than this make lists and maps break one item per line.
const WIDTH: usize = 100;

/// Formats a file canonically, keeping comments.
pub fn format(file: &File) -> String {
    let mut p = Printer { out: String::new(), comments: true };
    p.entries(&normalized(file).entries, 0);
    p.out
}

/// Formats without comments or blank lines: the text whose hash identifies a spec's meaning,
/// so that editing a comment or re-indenting never makes a lockfile stale.
pub fn format_without_comments(file: &File) -> String {
    let mut p = Printer { out: String::new(), comments: false };
    p.entries(&normalized(file).entries, 0);
    p.out
}

/// Applies the layout rules that are not a property of the source: a blank line before every
/// top-level block but the first entry.
fn normalized(file: &File) -> File {
    let mut file = file.clone();
    let mut after_comment = false;
    for (i, entry) in file.entries.iter_mut().enumerate() {
        let is_comment = matches!(entry, Entry::Comment(_));
        match entry {
            // A comment directly above a block documents it and stays attached.
            Entry::Block(b) => b.blank_before = i > 0 && (b.blank_before || !after_comment),
            Entry::Comment(c) => c.blank_before = c.blank_before && i > 0,
            Entry::Field(f) => f.blank_before = f.blank_before && i > 0,
        }
        after_comment = is_comment;
    }
    file
}

struct Printer {
    out: String,
    comments: bool,
}

impl Printer {
    fn entries(&mut self, entries: &[Entry], depth: usize) {
        for entry in entries {
            match entry {
                Entry::Comment(c) => {
                    if !self.comments {
                        continue;
                    }
                    self.blank(c.blank_before);
                    self.indent(depth);
                    self.comment(c);
                    self.out.push('\n');
                }
                Entry::Field(f) => {
                    self.blank(f.blank_before);
                    self.indent(depth);
                    self.out.push_str(&f.key.name);
                    self.out.push_str(" = ");
                    let column = depth * 2 + f.key.name.len() + 3;
                    self.value(&f.value, depth, column);
                    self.trailing(&f.trailing);
                    self.out.push('\n');
                }
                Entry::Block(b) => {
                    self.blank(b.blank_before);
                    self.indent(depth);
                    self.out.push_str(&b.kind.name);
                    if let Some(label) = &b.label {
                        self.out.push(' ');
                        self.out.push_str(&label.name);
                    }
                    if b.entries.iter().all(|e| !self.comments && matches!(e, Entry::Comment(_)))
                        || b.entries.is_empty()
                    {
                        self.out.push_str(" {}");
                    } else {
                        self.out.push_str(" {\n");
                        self.entries(&b.entries, depth + 1);
                        self.indent(depth);
                        self.out.push('}');
                    }
                    self.trailing(&b.trailing);
                    self.out.push('\n');
                }
            }
        }
    }

    fn blank(&mut self, blank: bool) {
        if blank && self.comments && !self.out.is_empty() {
            self.out.push('\n');
        }
    }

    fn indent(&mut self, depth: usize) {
        for _ in 0..depth {
            self.out.push_str("  ");
        }
    }

    fn comment(&mut self, c: &Comment) {
        self.out.push('#');
        if !c.text.is_empty() {
            self.out.push(' ');
            self.out.push_str(&c.text);
        }
    }

    fn trailing(&mut self, c: &Option<Comment>) {
        if let (Some(c), true) = (c, self.comments) {
            self.out.push_str("  ");
            self.comment(c);
        }
    }

    fn value(&mut self, v: &Value, depth: usize, column: usize) {
        let inline = inline(v);
        let breakable = matches!(&v.kind, ValueKind::List(items) if !items.is_empty())
            || matches!(&v.kind, ValueKind::Map(pairs) if !pairs.is_empty());
        if !breakable || column + inline.len() <= WIDTH {
            self.out.push_str(&inline);
            return;
        }
        match &v.kind {
            ValueKind::List(items) => {
                self.out.push_str("[\n");
                for item in items {
                    self.indent(depth + 1);
                    self.value(item, depth + 1, (depth + 1) * 2);
                    self.out.push_str(",\n");
                }
                self.indent(depth);
                self.out.push(']');
            }
            ValueKind::Map(pairs) => {
                self.out.push_str("{\n");
                for (k, item) in pairs {
                    self.indent(depth + 1);
                    self.out.push_str(&k.name);
                    self.out.push_str(" = ");
                    self.value(item, depth + 1, (depth + 1) * 2 + k.name.len() + 3);
                    self.out.push_str(",\n");
                }
                self.indent(depth);
                self.out.push('}');
            }
            _ => self.out.push_str(&inline),
        }
    }
}

/// A value on one line.
pub(crate) fn inline(v: &Value) -> String {
    match &v.kind {
        ValueKind::Str(s) => quote(s),
        ValueKind::Int(i) => int(*i),
        ValueKind::Float(f) => float(*f),
        ValueKind::Percent(p) => format!("{}%", trim_float(*p)),
        ValueKind::Duration(d) => format!("{}{}", d.amount, d.unit.suffix()),
        ValueKind::Bool(b) => b.to_string(),
        ValueKind::Symbol(s) => s.clone(),
        ValueKind::List(items) => {
            let parts: Vec<String> = items.iter().map(inline).collect();
            format!("[{}]", parts.join(", "))
        }
        ValueKind::Map(pairs) => {
            if pairs.is_empty() {
                return "{}".to_string();
            }
            let parts: Vec<String> = pairs.iter().map(|(k, v)| format!("{} = {}", k.name, inline(v))).collect();
            format!("{{ {} }}", parts.join(", "))
        }
        ValueKind::Env { name, default } => match default {
            Some(d) => format!("env({}, {})", quote(name), inline(d)),
            None => format!("env({})", quote(name)),
        },
    }
}

pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Integers of five digits or more get `_` separators every three digits.
fn int(i: i64) -> String {
    let digits = i.unsigned_abs().to_string();
    let sign = if i < 0 { "-" } else { "" };
    if digits.len() < 5 {
        return format!("{sign}{digits}");
    }
    let mut grouped = String::new();
    for (n, c) in digits.chars().enumerate() {
        if n > 0 && (digits.len() - n).is_multiple_of(3) {
            grouped.push('_');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}")
}

/// Floats always show a decimal point so they read back as floats.
fn float(f: f64) -> String {
    let s = trim_float(f);
    if s.contains('.') { s } else { format!("{s}.0") }
}

/// Rust's `Display` for f64 is the shortest text that reads back to the same value and never
/// uses an exponent, which is exactly what the grammar accepts.
fn trim_float(f: f64) -> String {
    format!("{f}")
}
