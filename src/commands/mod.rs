//! One module per subcommand.

pub mod batch;
pub mod build;
pub mod check;
pub mod fmt;
pub mod inspect;
pub mod lock;
pub mod plan;
pub mod verify;

/// A command failed and has already said why.
#[derive(Debug)]
pub struct Failed;
