//! The sdc runtime: everything that touches the world outside the spec's files.
//!
//! Today it resolves what a lock pins from the outside (model ids from servers, the Python
//! version) and reads the environment, and writes and reads the dataset archive; the executor
//! and store build on it.
//!
//! **Invariant:** the runtime never parses the DSL; it receives a checked `Spec` or a `Plan`.

pub mod allocation;
pub mod archive;
pub mod dedup;
pub mod environment;
pub mod ingest;
pub mod provider;
pub mod python;
pub mod split;

pub use environment::Environment;
