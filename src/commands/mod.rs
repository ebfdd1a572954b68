//! One module per subcommand.

pub mod analyze;
pub mod batch;
pub mod build;
pub mod check;
pub mod diff;
pub mod export;
pub mod fmt;
pub mod inspect;
pub mod lock;
pub mod plan;
pub mod reproduce;
pub mod verify;

/// A command failed and has already said why.
#[derive(Debug)]
pub struct Failed;
