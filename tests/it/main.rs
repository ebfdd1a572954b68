//! End-to-end tests. One binary, one module per topic.

/// `sdc analyze` on the fixture build's archive: statistics against the rows, the funnel, plots.
mod analyze;
/// `sdc batch export` / `import` through a fake batch runner: byte-identical to an online build.
mod batch;
/// `sdc build` on the real binary: byte identity, kill/resume, the response store, accounting.
mod build;
/// The real `sdc` binary on the fixture project: check, fmt, lock, plan, build modes.
mod cli;
/// Every diagnostic the checker can give, rendered as a user sees it.
mod diagnostics;
/// `sdc diff`, `sdc reproduce` and `sdc inspect` on built archives.
mod diff;
/// `sdc export` on the fixture build's archive: `hf` through real `datasets`, `jsonl`, `messages`.
mod export;
/// Ingest of the project's own corpus and the shared Qiskit docs.
mod ingest;
/// `sdc build` through llama.cpp's server and a tiny model (ignored; `scripts/llama-test`).
mod llama;
/// `sdc build` against a faulty OpenAI-compatible server on 127.0.0.1.
mod online;
/// The verification sandbox against hostile programs (needs bubblewrap).
mod sandbox;
/// Shared helpers: a scratch copy of the fixture project, running the binary.
mod support;
/// The real Hugging Face `datasets` (a pinned venv) for tests that load what sdc wrote.
mod support_hf;
/// Architecture invariants as tests.
mod tidy;
