//! Diagnostics as data: every pass collects them, only the CLI renders them.
//!
//! A diagnostic names a stable [`Code`], a primary span with a label, optional secondary spans and
//! a hint. Rendering goes through miette with a plain theme so output is the same on every
//! terminal and can be snapshot-tested.

use std::fmt;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};

use crate::span::{SourceFile, Span};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// Stable diagnostic codes. The number never changes once released; the docs list them all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    Syntax,
    UnterminatedString,
    UnclosedBlock,
    InvalidNumber,
    UnknownUnit,
    CommentInValue,
    UnknownBlock,
    UnknownKey,
    MissingKey,
    DuplicateKey,
    DuplicateBlock,
    MissingBlock,
    WrongType,
    OutOfRange,
    RatiosDontSum,
    UnknownReference,
    UnknownValue,
    MissingLabel,
    UnexpectedLabel,
    LiteralSecret,
    PromptNotFound,
    TemplateSyntax,
    TemplateVariable,
    TemplateBlock,
    InvalidGlob,
    GlobMatchesNothing,
    PathNotFound,
    EnvUnset,
    UnsupportedFile,
    MissingStage,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Syntax => "E0001",
            Code::UnterminatedString => "E0002",
            Code::UnclosedBlock => "E0003",
            Code::InvalidNumber => "E0004",
            Code::UnknownUnit => "E0005",
            Code::CommentInValue => "E0006",
            Code::UnknownBlock => "E0101",
            Code::UnknownKey => "E0102",
            Code::MissingKey => "E0103",
            Code::DuplicateKey => "E0104",
            Code::DuplicateBlock => "E0105",
            Code::MissingBlock => "E0106",
            Code::WrongType => "E0107",
            Code::OutOfRange => "E0108",
            Code::RatiosDontSum => "E0109",
            Code::UnknownReference => "E0110",
            Code::UnknownValue => "E0111",
            Code::MissingLabel => "E0112",
            Code::UnexpectedLabel => "E0113",
            Code::LiteralSecret => "E0114",
            Code::MissingStage => "E0115",
            Code::PromptNotFound => "E0201",
            Code::TemplateSyntax => "E0202",
            Code::TemplateVariable => "E0203",
            Code::TemplateBlock => "E0204",
            Code::InvalidGlob => "E0301",
            Code::GlobMatchesNothing => "E0302",
            Code::PathNotFound => "E0303",
            Code::UnsupportedFile => "E0304",
            Code::EnvUnset => "E0401",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: Code,
    pub message: String,
    pub span: Span,
    pub label: Option<String>,
    pub secondary: Vec<(Span, String)>,
    pub hint: Option<String>,
    /// The file the span points into, when it is not the spec itself (a prompt template).
    pub file: Option<SourceFile>,
}

impl Diagnostic {
    pub fn error(code: Code, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            span,
            label: None,
            secondary: Vec::new(),
            hint: None,
            file: None,
        }
    }

    /// Points the diagnostic's spans into another file than the spec.
    pub fn in_file(mut self, file: SourceFile) -> Self {
        self.file = Some(file);
        self
    }

    pub fn warning(code: Code, span: Span, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(code, span, message) }
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_secondary(mut self, span: Span, label: impl Into<String>) -> Self {
        self.secondary.push((span, label.into()));
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders the diagnostic against its source: `file:line:col`, the source line, a caret
    /// under the span, and the hint. `color` selects ANSI styling (off for NO_COLOR and pipes).
    pub fn render(&self, source: &SourceFile, color: bool) -> String {
        let source = self.file.as_ref().unwrap_or(source);
        let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
        let handler = GraphicalReportHandler::new_themed(theme).with_width(100).with_links(false);
        let report = Rendered { diag: self, source: named_source(source) };
        let mut out = String::new();
        if handler.render_report(&mut out, &report).is_err() {
            // Rendering only fails on a formatter error; fall back to the plain one-line form.
            return self.one_line(source);
        }
        out
    }

    /// `path:line:col: error[E0102]: message`, for logs and JSON consumers.
    pub fn one_line(&self, source: &SourceFile) -> String {
        let source = self.file.as_ref().unwrap_or(source);
        let (line, col) = source.line_col(self.span.start);
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        format!("{}:{line}:{col}: {sev}[{}]: {}", source.path().display(), self.code, self.message)
    }
}

fn named_source(source: &SourceFile) -> NamedSource<String> {
    NamedSource::new(source.path().display().to_string(), source.text().to_string()).with_language("sds")
}

/// Adapts a [`Diagnostic`] to miette for rendering only.
struct Rendered<'a> {
    diag: &'a Diagnostic,
    source: NamedSource<String>,
}

impl fmt::Debug for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rendered").field("diag", self.diag).finish()
    }
}

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)
    }
}

impl std::error::Error for Rendered<'_> {}

impl miette::Diagnostic for Rendered<'_> {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.diag.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diag.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.diag.hint.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let primary = LabeledSpan::new_primary_with_span(self.diag.label.clone(), to_source_span(self.diag.span));
        let secondary = self
            .diag
            .secondary
            .iter()
            .map(|(span, label)| LabeledSpan::new_with_span(Some(label.clone()), to_source_span(*span)));
        Some(Box::new(std::iter::once(primary).chain(secondary)))
    }
}

fn to_source_span(span: Span) -> SourceSpan {
    SourceSpan::new(span.start.into(), span.len())
}

/// Suggests the closest candidate to a misspelt name, if any is close enough to be useful.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, c)| c)
}

/// A hint listing the valid choices, with a "did you mean" first if one is close.
pub fn choice_hint(name: &str, candidates: &[&str]) -> String {
    let list = candidates.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ");
    match did_you_mean(name, candidates.iter().copied()) {
        Some(best) => format!("did you mean `{best}`? expected one of {list}"),
        None => format!("expected one of {list}"),
    }
}
