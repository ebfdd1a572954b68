//! The syntax tree of a spec file.

use crate::span::Span;

/// A whole spec file: top-level blocks and comments, in source order.
#[derive(Clone, Debug, PartialEq)]
pub struct File {
    pub entries: Vec<Entry>,
}

/// Anything that can appear in a file or a block body.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    Comment(Comment),
    Field(Field),
    Block(Block),
}

/// A `# …` comment on a line of its own. `text` excludes the `#` and surrounding whitespace.
#[derive(Clone, Debug, PartialEq)]
pub struct Comment {
    pub text: String,
    pub span: Span,
    /// A blank line preceded the comment in the source; `sdc fmt` keeps one.
    pub blank_before: bool,
}

/// `key = value`, optionally followed by a comment on the same line.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub key: Ident,
    pub value: Value,
    pub trailing: Option<Comment>,
    pub blank_before: bool,
    pub span: Span,
}

/// `kind [label] { entries }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub kind: Ident,
    pub label: Option<Ident>,
    pub entries: Vec<Entry>,
    pub trailing: Option<Comment>,
    pub blank_before: bool,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub kind: ValueKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ValueKind {
    Str(String),
    Int(i64),
    Float(f64),
    /// `35%` is stored as `35.0`.
    Percent(f64),
    Duration(Duration),
    Bool(bool),
    /// A bare word: a reference to a named thing (`question`) or an enumerated value (`drop`).
    Symbol(String),
    List(Vec<Value>),
    Map(Vec<(Ident, Value)>),
    /// `env("NAME")` or `env("NAME", default)`.
    Env {
        name: String,
        default: Option<Box<Value>>,
    },
}

/// A duration literal as written: the amount and its unit are both kept so `fmt` preserves `2m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Duration {
    pub amount: u64,
    pub unit: DurationUnit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DurationUnit {
    Millis,
    Seconds,
    Minutes,
    Hours,
}

impl DurationUnit {
    pub fn suffix(self) -> &'static str {
        match self {
            DurationUnit::Millis => "ms",
            DurationUnit::Seconds => "s",
            DurationUnit::Minutes => "m",
            DurationUnit::Hours => "h",
        }
    }

    pub fn millis(self) -> u64 {
        match self {
            DurationUnit::Millis => 1,
            DurationUnit::Seconds => 1_000,
            DurationUnit::Minutes => 60_000,
            DurationUnit::Hours => 3_600_000,
        }
    }
}

impl Duration {
    pub fn as_millis(self) -> u64 {
        self.amount.saturating_mul(self.unit.millis())
    }
}

impl ValueKind {
    /// What a user would call this kind of value in an error message.
    pub fn describe(&self) -> &'static str {
        match self {
            ValueKind::Str(_) => "a string",
            ValueKind::Int(_) => "an integer",
            ValueKind::Float(_) => "a number",
            ValueKind::Percent(_) => "a percentage",
            ValueKind::Duration(_) => "a duration",
            ValueKind::Bool(_) => "a boolean",
            ValueKind::Symbol(_) => "a name",
            ValueKind::List(_) => "a list",
            ValueKind::Map(_) => "a map",
            ValueKind::Env { .. } => "an env() reference",
        }
    }
}

impl File {
    /// Resets every span to zero, so trees parsed from differently formatted text compare equal.
    pub fn without_spans(mut self) -> File {
        self.entries.iter_mut().for_each(clear_entry);
        self
    }

    pub fn blocks(&self) -> impl Iterator<Item = &Block> {
        self.entries.iter().filter_map(|e| match e {
            Entry::Block(b) => Some(b),
            _ => None,
        })
    }
}

impl Block {
    pub fn fields(&self) -> impl Iterator<Item = &Field> {
        self.entries.iter().filter_map(|e| match e {
            Entry::Field(f) => Some(f),
            _ => None,
        })
    }

    pub fn blocks(&self) -> impl Iterator<Item = &Block> {
        self.entries.iter().filter_map(|e| match e {
            Entry::Block(b) => Some(b),
            _ => None,
        })
    }

    /// The span of the block's header (`kind label`), where most diagnostics about it point.
    pub fn header_span(&self) -> Span {
        match &self.label {
            Some(label) => self.kind.span.to(label.span),
            None => self.kind.span,
        }
    }
}

fn clear_entry(entry: &mut Entry) {
    match entry {
        Entry::Comment(c) => c.span = Span::default(),
        Entry::Field(f) => {
            f.span = Span::default();
            f.key.span = Span::default();
            clear_value(&mut f.value);
            if let Some(c) = &mut f.trailing {
                c.span = Span::default();
            }
        }
        Entry::Block(b) => {
            b.span = Span::default();
            b.kind.span = Span::default();
            if let Some(l) = &mut b.label {
                l.span = Span::default();
            }
            if let Some(c) = &mut b.trailing {
                c.span = Span::default();
            }
            b.entries.iter_mut().for_each(clear_entry);
        }
    }
}

fn clear_value(value: &mut Value) {
    value.span = Span::default();
    match &mut value.kind {
        ValueKind::List(items) => items.iter_mut().for_each(clear_value),
        ValueKind::Map(pairs) => {
            for (k, v) in pairs {
                k.span = Span::default();
                clear_value(v);
            }
        }
        ValueKind::Env { default: Some(d), .. } => clear_value(d),
        _ => {}
    }
}
