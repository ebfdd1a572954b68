//! `sdc analyze`: a verified archive's statistics, plots and a self-contained HTML report.
//!
//! ```text
//! statistics.json        every count the plots show (see `stats`)
//! plots/<name>.svg       one chart per figure (plotters)
//! plots/<name>.png       the same chart rasterised (resvg, the bundled font)
//! report.html            the figures inlined as SVG, with their numbers as tables
//! ```
//!
//! The output is a function of the archive's bytes: counts in fixed orders, charts without
//! clocks or randomness, one bundled font. The directory is staged and moved into place at the
//! end (see `staging`).

mod charts;
mod html;
pub mod plot;
pub mod stats;

use std::path::Path;

use serde::Serialize;

use crate::archive::{OpenError, open_verified};
use crate::staging::{Staged, TargetError};

pub use stats::Statistics;

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
}

/// What an analysis wrote.
#[derive(Clone, Debug, Serialize)]
pub struct AnalyzeReport {
    pub dir: String,
    pub dataset: String,
    pub manifest_sha256: String,
    pub samples: u64,
    /// Every file written, relative to the directory, with its size, sorted by path.
    pub files: Vec<(String, u64)>,
    /// What the archive's provenance does not record, so its figures are left out.
    pub missing: Vec<String>,
}

/// Verifies the archive at `archive` and writes its analysis to `dir`.
pub fn analyze(archive: &Path, dir: &Path, force: bool) -> Result<AnalyzeReport, AnalyzeError> {
    let dataset = open_verified(archive)?;
    let stats = stats::statistics(&dataset)?;
    let plots = charts::charts(&stats)?;
    let staged = Staged::new(dir, force)?;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut json = serde_json::to_vec_pretty(&stats).unwrap_or_default();
    json.push(b'\n');
    files.push(("statistics.json".into(), json));
    for p in &plots {
        files.push((format!("plots/{}.svg", p.name), p.svg.clone().into_bytes()));
        files.push((format!("plots/{}.png", p.name), p.png.clone()));
    }
    files.push(("report.html".into(), html::report(&stats, &plots).into_bytes()));
    files.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, bytes) in &files {
        staged.write(path, bytes)?;
    }
    let dir = staged.commit()?;
    Ok(AnalyzeReport {
        dir: dir.display().to_string(),
        dataset: format!("{}@{}", stats.dataset.name, stats.dataset.version),
        manifest_sha256: stats.dataset.manifest_sha256.clone(),
        samples: stats.samples,
        files: files.iter().map(|(p, b)| (p.clone(), b.len() as u64)).collect(),
        missing: stats.missing,
    })
}
