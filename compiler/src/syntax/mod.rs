//! The `.sds` surface syntax: a tree of blocks, fields and comments, with a span on every node.
//!
//! This layer knows nothing about what a `model` or a `stage` is; the checker gives the tree its
//! meaning. Keeping the syntax generic is what lets `sdc fmt` rewrite any spec, even an invalid
//! one, and lets the checker report unknown keys with suggestions instead of parse errors.

pub mod ast;
mod parser;
mod printer;

pub use ast::*;
pub use parser::parse;
pub use printer::{format, format_without_comments};
