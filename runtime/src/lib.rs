//! The sdc runtime: everything that touches the world outside the spec's files.
//!
//! It resolves what a lock pins from the outside (model ids from servers, the Python version),
//! reads the environment, ingests documents, and executes a locked plan into a dataset archive:
//! the store, the model calls, verification, allocation, dedup, splits and packaging. It also
//! reads finished archives back: `export` into training tools' layouts, `analyze` into
//! statistics, plots and a report.
//!
//! **Invariant:** the runtime never parses the DSL; it receives a checked `Spec` or a `Plan`.

pub mod allocation;
pub mod analyze;
pub mod archive;
pub mod batch;
pub mod build;
pub mod dataset;
pub mod dedup;
pub mod diff;
pub mod environment;
pub mod export;
pub mod ingest;
pub mod inspect;
pub mod model;
pub mod provider;
pub mod python;
pub mod split;
pub mod staging;
pub mod store;
pub mod verify;

pub use environment::Environment;
