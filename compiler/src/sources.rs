//! Source discovery: which files a spec's `source` blocks select, in a stable order.
//!
//! Files are listed by walking each root, matching include and exclude globs against the path
//! relative to the root (always with `/`), and sorting by that path's bytes, so the result never
//! depends on directory order.

use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Serialize;

use crate::diagnostic::{Code, Diagnostic};
use crate::spec::{Glob, Source, Spec};

/// The document kinds sdc can ingest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DocKind {
    Notebook,
    Mdx,
    Markdown,
    Pdf,
}

impl DocKind {
    pub fn from_path(path: &str) -> Option<DocKind> {
        let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())?;
        match ext.as_str() {
            "ipynb" => Some(DocKind::Notebook),
            "mdx" => Some(DocKind::Mdx),
            "md" => Some(DocKind::Markdown),
            "pdf" => Some(DocKind::Pdf),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Notebook => "notebook",
            DocKind::Mdx => "mdx",
            DocKind::Markdown => "markdown",
            DocKind::Pdf => "pdf",
        }
    }
}

/// One selected file of a source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// Relative to the source root, `/`-separated.
    pub rel_path: String,
    pub abs_path: PathBuf,
    pub kind: DocKind,
}

/// Lists the files of one source. Problems come back as diagnostics on the spec.
pub fn discover(spec: &Spec, source: &Source) -> Result<Vec<SourceFile>, Vec<Diagnostic>> {
    let root = source.root.resolve(&spec.dir);
    if !root.is_dir() {
        return Err(vec![
            Diagnostic::error(
                Code::PathNotFound,
                source.root.span,
                format!("source root `{}` does not exist", source.root.text),
            )
            .with_label("no such directory")
            .with_hint(format!(
                "paths are relative to the spec's directory `{}`",
                crate::check::display_dir(&spec.dir)
            )),
        ]);
    }
    let include: Vec<(globset::GlobMatcher, &Glob)> =
        source.include.iter().filter_map(|g| Some((matcher(&g.pattern)?, g))).collect();
    let exclude = set(&source.exclude);
    let mut hits = vec![0usize; include.len()];
    let mut files = Vec::new();
    let mut unsupported = Vec::new();
    let walker = walkdir::WalkDir::new(&root).follow_links(false).sort_by_file_name();
    for entry in walker.into_iter().filter_map(Result::ok) {
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(&root) else {
            continue;
        };
        let rel = rel_string(rel);
        let mut included = false;
        for (i, (m, _)) in include.iter().enumerate() {
            if m.is_match(&rel) {
                hits[i] += 1;
                included = true;
            }
        }
        if !included || exclude.is_match(&rel) {
            continue;
        }
        match DocKind::from_path(&rel) {
            Some(kind) => files.push(SourceFile { rel_path: rel, abs_path: entry.path().to_path_buf(), kind }),
            None => unsupported.push(rel),
        }
    }
    let mut diags = Vec::new();
    for (i, (_, glob)) in include.iter().enumerate() {
        if hits[i] == 0 {
            diags.push(
                Diagnostic::error(Code::GlobMatchesNothing, glob.span, format!("`{}` matches no file under `{}`", glob.pattern, source.root.text))
                    .with_label("matches nothing")
                    .with_hint("globs are matched against paths relative to the source root; `*` stays within one directory, `**/` crosses them"),
            );
        }
    }
    if let (Some(first), Some(glob)) = (unsupported.first(), source.include.first()) {
        diags.push(
            Diagnostic::warning(
                Code::UnsupportedFile,
                glob.span,
                format!("{} matched file(s) have no parser and will be skipped, e.g. `{first}`", unsupported.len()),
            )
            .with_label("matches files sdc cannot read")
            .with_hint("sdc reads .ipynb, .mdx, .md and .pdf; add an `exclude` pattern to silence this"),
        );
    }
    if diags.iter().any(Diagnostic::is_error) {
        return Err(diags);
    }
    files.sort_by(|a, b| a.rel_path.as_bytes().cmp(b.rel_path.as_bytes()));
    Ok(files)
}

/// Checks every source of a spec; used by `sdc check`.
pub fn check_sources(spec: &Spec) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    for source in &spec.sources {
        match discover(spec, source) {
            Ok(_) => {}
            Err(errs) => diags.extend(errs),
        }
        if let Some(public) = &source.public_root
            && !public.resolve(&spec.dir).is_dir()
        {
            diags.push(
                Diagnostic::error(
                    Code::PathNotFound,
                    public.span,
                    format!("public root `{}` does not exist", public.text),
                )
                .with_label("no such directory")
                .with_hint("root-absolute image paths such as `/images/x.png` are looked up under this directory"),
            );
        }
    }
    diags
}

fn matcher(pattern: &str) -> Option<globset::GlobMatcher> {
    GlobBuilder::new(pattern).literal_separator(true).build().ok().map(|g| g.compile_matcher())
}

fn set(globs: &[Glob]) -> GlobSet {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        if let Ok(glob) = GlobBuilder::new(&g.pattern).literal_separator(true).build() {
            b.add(glob);
        }
    }
    b.build().unwrap_or_else(|_| GlobSet::empty())
}

fn rel_string(path: &Path) -> String {
    path.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/")
}

/// A cheap look at a file for `sdc plan`'s estimates: how many images it references and how
/// much text it holds. Ingest does the real work; this only scans bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Census {
    pub images: u64,
    pub text_chars: u64,
}

pub fn census(kind: DocKind, bytes: &[u8]) -> Census {
    let count = |needle: &[u8]| bytes.windows(needle.len()).filter(|w| *w == needle).count() as u64;
    match kind {
        DocKind::Notebook => {
            let images = count(b"\"image/png\"")
                + count(b"\"image/jpeg\"")
                + count(b"\"image/svg+xml\"")
                + count(b"![")
                + count(b"<img");
            Census { images, text_chars: bytes.len() as u64 / 2 }
        }
        DocKind::Mdx | DocKind::Markdown => {
            Census { images: count(b"![") + count(b"<Image"), text_chars: bytes.len() as u64 }
        }
        DocKind::Pdf => {
            let pages = (count(b"/Type /Page") + count(b"/Type/Page"))
                .saturating_sub(count(b"/Type /Pages") + count(b"/Type/Pages"));
            Census { images: count(b"/Subtype /Image") + count(b"/Subtype/Image"), text_chars: pages * 2500 }
        }
    }
}
