//! `sdc build`: bring the lock up to date (or check it), then execute the plan.
//!
//! The executor arrives with the runtime's build pipeline; until then a build stops after the
//! lock and says so, with a non-zero exit, rather than pretending to have produced a dataset.

use std::path::Path;

use super::Failed;
use super::lock::{Mode, ensure};
use crate::output::Output;
use crate::project;

pub fn run(out: &Output, path: &Path, mode: Mode) -> Result<(), Failed> {
    let loaded = project::load(out, path)?;
    let lock = ensure(out, &loaded, mode)?;
    out.status(format!(
        "locked {}@{} (plan {})",
        lock.dataset.name,
        lock.dataset.version,
        &lock.plan.digest[..12.min(lock.plan.digest.len())]
    ));
    out.error("the build executor is not implemented yet: sdc can check, lock and plan this spec, but not execute it");
    Err(Failed)
}
