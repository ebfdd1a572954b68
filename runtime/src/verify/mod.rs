//! Executable verification: a solution and its test, run by a Python harness, judged by a
//! structured verdict.
//!
//! - [`program`] assembles what runs: a function-completion body spliced into its stub, or a
//!   generated module as is, followed by the test; the harness then calls `check(<entry point>)`.
//! - [`environment`] provides the interpreter: a virtual environment keyed by (Python version,
//!   requirements hash), created once under the store and reused.
//! - [`sandbox`] is what confines every run: bubblewrap namespaces and rlimits (or rlimits alone,
//!   with a warning, where bubblewrap is missing), a uid of its own when sdc runs as root.
//! - [`runner`] starts the harness in the sandbox with a scrubbed environment and a wall-clock
//!   timeout that kills the whole process tree, and reads its verdict from a dedicated pipe.
//!
//! Verdicts are facts about (program, environment, harness, sandbox kind and limits) and are
//! cached in the store's `verdicts` journal by that key, so a rebuild never executes the same
//! code twice.

pub mod environment;
pub mod program;
pub mod runner;
pub mod sandbox;

use serde::{Deserialize, Serialize};

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    AssertionFailed,
    Exception,
    SyntaxError,
    ImportError,
    Timeout,
    Memory,
    /// The program exited before its test completed.
    Exited,
    /// The test has no `check` function to call.
    NoCheck,
    /// The process ended without the harness's report (killed, crashed, or exited early).
    NoResult,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::AssertionFailed => "assertion_failed",
            Outcome::Exception => "exception",
            Outcome::SyntaxError => "syntax_error",
            Outcome::ImportError => "import_error",
            Outcome::Timeout => "timeout",
            Outcome::Memory => "memory",
            Outcome::Exited => "exited",
            Outcome::NoCheck => "no_check",
            Outcome::NoResult => "no_result",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub outcome: Outcome,
    /// The exception's type, when one ended the run.
    pub exception: String,
    /// A traceback excerpt or explanation, for correction prompts and reports.
    pub message: String,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Passed
    }

    /// One line for reports and correction prompts.
    pub fn summary(&self) -> String {
        let last = self.message.trim().lines().last().unwrap_or("").trim();
        match (self.exception.is_empty(), last.is_empty()) {
            (true, true) => self.outcome.as_str().to_string(),
            (true, false) => format!("{}: {last}", self.outcome.as_str()),
            (false, true) => format!("{} ({})", self.outcome.as_str(), self.exception),
            (false, false) => format!("{} ({}): {last}", self.outcome.as_str(), self.exception),
        }
    }
}

/// The test-quality gate on a test's verdict against the stub: `None` if the test runs and fails
/// there (as a test must), else why the test is rejected.
pub fn gate(against_stub: &Verdict) -> Option<String> {
    match against_stub.outcome {
        Outcome::Passed => Some("the test passed against a stub whose body is `pass`: it checks too little".into()),
        Outcome::SyntaxError | Outcome::ImportError | Outcome::NoCheck => {
            Some(format!("the test does not run: {}", against_stub.summary()))
        }
        _ => None,
    }
}
