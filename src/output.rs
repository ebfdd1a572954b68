//! Where and how sdc talks to people: data to stdout, diagnostics and progress to stderr,
//! colour only on a terminal and never under `NO_COLOR`.

use std::io::IsTerminal;

use sdc_compiler::{Diagnostic, SourceFile};

pub struct Output {
    quiet: bool,
    verbose: bool,
    color: bool,
}

impl Output {
    pub fn new(quiet: bool, verbose: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Output { quiet, verbose, color: !no_color && std::io::stderr().is_terminal() }
    }

    /// A status line for people, on stderr; hidden by `--quiet`.
    pub fn status(&self, line: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", line.as_ref());
        }
    }

    /// Detail shown only with `--verbose`.
    pub fn detail(&self, line: impl AsRef<str>) {
        if self.verbose {
            eprintln!("{}", line.as_ref());
        }
    }

    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    pub fn is_verbose(&self) -> bool {
        self.verbose
    }

    /// The command's result, on stdout.
    pub fn data(&self, text: impl AsRef<str>) {
        println!("{}", text.as_ref());
    }

    /// An error that is not about a spec position.
    pub fn error(&self, message: impl AsRef<str>) {
        eprintln!("error: {}", message.as_ref());
    }

    pub fn diagnostics(&self, source: &SourceFile, diags: &[Diagnostic]) {
        for d in diags {
            if !d.is_error() && self.quiet {
                continue;
            }
            eprint!("{}", d.render(source, self.color));
        }
    }
}
