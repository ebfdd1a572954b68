//! The sdc compiler: `.sds` text → syntax tree → checked [`spec::Spec`] → [`lock::Lockfile`] and
//! [`plan::Plan`].
//!
//! **Invariant:** this crate performs no network I/O and starts no processes. Facts that need the
//! outside world (which model id a server serves, which Python version is installed) are
//! resolved by the runtime and handed in as [`lock::Resolutions`].

pub mod check;
pub mod diagnostic;
pub mod hash;
pub mod lock;
pub mod plan;
pub mod schema;
pub mod sources;
pub mod span;
pub mod spec;
pub mod syntax;
pub mod templates;

pub use diagnostic::{Code, Diagnostic, Severity};
pub use span::{SourceFile, Span};
