//! `sdc`: the synthetic dataset compiler's command line.
//!
//! Parses arguments, dispatches to one module per subcommand, and maps failures to exit codes:
//! 0 success, 1 failure (invalid spec, drift, failed build), 2 usage error.

mod commands;
mod output;
mod project;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::output::Output;

/// A build allocates and frees small buffers on every thread at a high rate (request bodies,
/// replies, records, rows), often freeing on another thread than the one that allocated: glibc's
/// allocator spent a fifth of the model-call path's CPU on that (`cargo bench --bench calls`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sdc",
    version,
    about = "The synthetic dataset compiler: declare a dataset, lock it, build it reproducibly",
    long_about = "sdc turns a declarative dataset spec (.sds) into a lockfile that pins every input \
                  (sources, prompts, models, seeds), and executes it into a deterministic dataset archive.",
    after_help = "Examples:\n  sdc check specs/quantum.sds\n  sdc lock specs/quantum.sds\n  sdc plan specs/quantum.sds\n  sdc build specs/quantum.sds"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone, Copy)]
struct Global {
    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Print more detail (every drifted file, every resolved model).
    #[arg(short, long, global = true)]
    verbose: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Check a spec: syntax, types, references, templates and source globs.
    #[command(after_help = "Examples:\n  sdc check specs/quantum.sds\n  sdc check specs/quantum.sds --format json")]
    Check {
        /// The spec to check.
        spec: PathBuf,
        /// Output format for diagnostics.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Rewrite specs in canonical form.
    #[command(after_help = "Examples:\n  sdc fmt specs/quantum.sds\n  sdc fmt --check specs/*.sds")]
    Fmt {
        /// The specs to format.
        #[arg(required = true)]
        specs: Vec<PathBuf>,
        /// Change nothing; fail if a spec is not formatted.
        #[arg(long)]
        check: bool,
    },
    /// Write the lockfile: pin sources, prompts, models, seeds and the verification environment.
    #[command(
        after_help = "Examples:\n  sdc lock specs/quantum.sds\n  sdc lock specs/quantum.sds --update model:answer\n  sdc lock specs/quantum.sds --locked   # fail if the lock would change"
    )]
    Lock {
        /// The spec to lock.
        spec: PathBuf,
        /// Re-resolve only this entry (`model:NAME`, `source:NAME` or `prompt:NAME`); repeatable.
        #[arg(long, value_name = "ENTRY")]
        update: Vec<sdc_compiler::lock::UpdateTarget>,
        /// Fail, listing every drifted entry, if the lockfile is missing or out of date.
        #[arg(long)]
        locked: bool,
    },
    /// Show what a build would do: stages, counts, expected calls, tokens and cost.
    #[command(after_help = "Examples:\n  sdc plan specs/quantum.sds\n  sdc plan specs/quantum.sds --format json")]
    Plan {
        /// The spec to plan.
        spec: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Show what ingest makes of a spec's sources (documents, images, chunks, what it skipped), or
    /// what a built archive holds (samples, rejected entries, a sample's model conversations).
    #[command(
        after_help = "Examples:\n  sdc inspect specs/quantum.sds --stage documents\n  sdc inspect specs/quantum.sds --stage images --count 50\n  sdc inspect specs/quantum.sds --stage chunks --id 3f2a\n  sdc inspect specs/quantum.sds --stage chunks --format json\n  sdc inspect dist/quantum-assistant-0.1.0.tar.zst --samples --random --count 5\n  sdc inspect dist/quantum-assistant-0.1.0.tar.zst --rejected\n  sdc inspect specs/quantum.sds --traces --id 3f2a   # the spec's archive, replies from its store"
    )]
    Inspect {
        /// A spec, or a built archive (`.tar.zst`).
        target: PathBuf,
        /// What ingest makes of a spec's sources.
        #[arg(long, value_enum, conflicts_with_all = ["samples", "rejected", "traces"])]
        stage: Option<commands::inspect::Stage>,
        /// The archive's samples (a spec: its `output.archive`).
        #[arg(long, conflicts_with_all = ["rejected", "traces"])]
        samples: bool,
        /// Every rejected or failed entry, with its stage and reason.
        #[arg(long, conflicts_with = "traces")]
        rejected: bool,
        /// Samples' model conversations and verification attempts (replies from the store).
        #[arg(long)]
        traces: bool,
        /// How many items to show.
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// Show the item(s) whose id starts with this, in full (an ambiguous prefix is an error).
        #[arg(long)]
        id: Option<String>,
        /// Pick `--count` records at random, reproducibly from `--seed`.
        #[arg(long, conflicts_with = "id")]
        random: bool,
        /// The seed of `--random`.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The store whose recorded replies `--traces` shows (default: the spec's).
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Worker threads for parsing (0 = one per core); the result never depends on it.
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Compare two archives or two lockfiles: what changed, and which inputs explain it.
    #[command(
        after_help = "Examples:\n  sdc diff old.tar.zst dist/quantum-assistant-0.1.0.tar.zst\n  sdc diff old.lock lockfiles/quantum.lock\n  sdc diff a.tar.zst b.tar.zst --format json\n\nExit status: 0 identical, 1 different, 2 error."
    )]
    Diff {
        /// The old archive or lockfile.
        old: PathBuf,
        /// The new one (of the same kind).
        new: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Rebuild a locked dataset and check it is bit-identical to a published archive.
    #[command(
        after_help = "Examples:\n  sdc reproduce lockfiles/quantum.lock --archive quantum-assistant-0.1.0.tar.zst\n  sdc reproduce lockfiles/quantum.lock --archive published.tar.zst --store .sdc\n  sdc reproduce lockfiles/quantum.lock --archive published.tar.zst --live   # ask the models again\n\nOffline, every model call is served from the store's recorded responses and no server is\ncontacted. Exit status: 0 identical, 1 different (the diff follows), 2 error."
    )]
    Reproduce {
        /// The lockfile the archive was built from.
        lock: PathBuf,
        /// The published archive to compare with.
        #[arg(long, value_name = "ARCHIVE")]
        archive: PathBuf,
        /// The spec (default: found from the lock's `[spec] file`: beside it, `../specs/`, `./specs/`).
        #[arg(long)]
        spec: Option<PathBuf>,
        /// The store of recorded responses (default: the spec's `paths.store`).
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// Ask the models again with the pinned parameters (a fresh store; connections from the environment).
        #[arg(long)]
        live: bool,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Build the dataset described by a spec.
    #[command(
        after_help = "Examples:\n  sdc build specs/quantum.sds\n  sdc build specs/quantum.sds --locked   # CI: the lock must be up to date\n  sdc build specs/quantum.sds --frozen   # use the lock as is, resolve nothing"
    )]
    Build {
        /// The spec to build.
        spec: PathBuf,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Run a stage's model calls on a batch engine (OpenAI Batch API, vLLM run_batch).
    #[command(subcommand)]
    Batch(BatchCommand),
    /// Check a dataset archive: every file's hash against its manifest, and that nothing in it is unsafe to unpack.
    #[command(
        after_help = "Examples:\n  sdc verify dist/quantum-assistant-0.1.0.tar.zst\n  sdc verify dist/quantum-assistant-0.1.0.tar.zst --format json"
    )]
    Verify {
        /// The `.tar.zst` archive to verify.
        archive: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Write a dataset archive in a layout training tools read: Hugging Face, JSONL or chat messages.
    #[command(
        after_help = "Formats:\n  hf        the archive's files: `datasets.load_dataset(DIR)` loads its splits with decoded images\n  jsonl     <split>.jsonl, one sample per line; images as files in images/<sha256>.png\n  messages  <split>.jsonl in TRL's conversational format (system, user, assistant; `{\"type\": \"image\"}` parts\n            and an `images` list of paths relative to the file)\n\nExamples:\n  sdc export dist/quantum-assistant-0.1.0.tar.zst --format hf --out export/hf\n  sdc export dist/quantum-assistant-0.1.0.tar.zst --format messages --out export/chat --force\n  sdc export dist/quantum-assistant-0.1.0.tar.zst --format jsonl --out export/jsonl --json"
    )]
    Export {
        /// The `.tar.zst` archive to export; it is verified first.
        archive: PathBuf,
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// The directory to write; it must be new or empty unless `--force`.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Replace DIR if it is not empty.
        #[arg(long)]
        force: bool,
        /// The system turn of every conversation (`--format messages`).
        #[arg(long, value_name = "TEXT", default_value = sdc_runtime::export::DEFAULT_SYSTEM_PROMPT)]
        system: String,
        /// Print what was written as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Analyse a dataset archive: statistics.json, plots (SVG and PNG) and a self-contained report.html.
    #[command(
        after_help = "Examples:\n  sdc analyze dist/quantum-assistant-0.1.0.tar.zst --out analysis\n  sdc analyze dist/quantum-assistant-0.1.0.tar.zst --out analysis --force --format json"
    )]
    Analyze {
        /// The `.tar.zst` archive to analyse; it is verified first.
        archive: PathBuf,
        /// The directory to write; it must be new or empty unless `--force`.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Replace DIR if it is not empty.
        #[arg(long)]
        force: bool,
        /// How the summary of what was written is printed.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ExportFormat {
    Hf,
    Jsonl,
    Messages,
}

impl From<ExportFormat> for sdc_runtime::export::Format {
    fn from(f: ExportFormat) -> Self {
        match f {
            ExportFormat::Hf => sdc_runtime::export::Format::Hf,
            ExportFormat::Jsonl => sdc_runtime::export::Format::Jsonl,
            ExportFormat::Messages => sdc_runtime::export::Format::Messages,
        }
    }
}

#[derive(Subcommand)]
enum BatchCommand {
    /// Write a stage's model requests that are not in the store as OpenAI-Batch JSONL shards.
    #[command(
        after_help = "Examples:\n  sdc batch export specs/quantum.sds --stage curate --out batch/curate-1\n  sdc batch export specs/quantum.sds --stage transcribe --out batch/t1 --max-lines 10000 --frozen\n\nStages that depend on earlier stages' answers are exported once those are in the store; the command names the next stage."
    )]
    Export {
        /// The spec whose stage to export.
        spec: PathBuf,
        /// The stage whose requests to export.
        #[arg(long, value_parser = stage_kind)]
        stage: sdc_compiler::spec::StageKind,
        /// The directory for the shards and `manifest.json` (new, or an earlier export's).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Requests per shard at most (OpenAI's limit is 50 000).
        #[arg(long, default_value_t = sdc_runtime::batch::DEFAULT_MAX_LINES)]
        max_lines: u64,
        /// Bytes per shard at most (OpenAI's limit is 200 MB).
        #[arg(long, default_value_t = sdc_runtime::batch::DEFAULT_MAX_BYTES)]
        max_bytes: u64,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Store a batch engine's results (OpenAI Batch output and error files, vLLM run_batch output).
    #[command(
        after_help = "Examples:\n  sdc batch import specs/quantum.sds batch/curate-1            # results beside the shards\n  sdc batch import specs/quantum.sds batch/curate-1 out.jsonl errors.jsonl\n\nA directory gives its manifest.json and every *.jsonl in it that is not one of its shards; a file is a result file."
    )]
    Import {
        /// The spec whose store receives the results.
        spec: PathBuf,
        /// Export directories and result files.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// The store to use instead of the spec's `paths.store`.
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
}

fn stage_kind(s: &str) -> Result<sdc_compiler::spec::StageKind, String> {
    sdc_compiler::spec::StageKind::parse(s).ok_or_else(|| {
        let all: Vec<&str> = sdc_compiler::spec::StageKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("no stage `{s}`; stages: {}", all.join(", "))
    })
}

/// How `sdc build` and `sdc batch export` run the executor; none of it changes what is built.
#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    lock: LockMode,
    /// The store to use instead of the spec's `paths.store` (responses, verdicts, images).
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Items in flight at once; the archive never depends on it.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Worker threads for ingest (0 = one per core); the archive never depends on it.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// How the report is printed.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

impl RunArgs {
    fn options(self) -> commands::build::Options {
        commands::build::Options {
            mode: commands::lock::Mode::from_flags(self.lock.locked, self.lock.frozen),
            store: self.store,
            concurrency: self.concurrency,
            threads: self.threads,
            json: self.format == Format::Json,
        }
    }
}

#[derive(Args, Clone, Copy)]
#[group(multiple = false)]
struct LockMode {
    /// Fail, listing every drifted entry, if the spec, a prompt or a source no longer matches the lock.
    #[arg(long)]
    locked: bool,
    /// Use the lockfile as is, without checking or re-resolving anything.
    #[arg(long)]
    frozen: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Human,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output::new(cli.global.quiet, cli.global.verbose);
    let result = match cli.command {
        Command::Check { spec, format } => commands::check::run(&out, &spec, format == Format::Json),
        Command::Fmt { specs, check } => commands::fmt::run(&out, &specs, check),
        Command::Lock { spec, update, locked } => commands::lock::run(&out, &spec, &update, locked),
        Command::Plan { spec, format } => commands::plan::run(&out, &spec, format == Format::Json),
        Command::Inspect {
            target,
            stage,
            samples,
            rejected,
            traces,
            count,
            id,
            random,
            seed,
            store,
            format,
            threads,
        } => {
            use commands::inspect::Records;
            let records = [(samples, Records::Samples), (rejected, Records::Rejected), (traces, Records::Traces)]
                .into_iter()
                .find_map(|(on, r)| on.then_some(r));
            commands::inspect::run(
                &out,
                &target,
                &commands::inspect::Options {
                    stage,
                    records,
                    count,
                    id,
                    json: format == Format::Json,
                    threads,
                    random,
                    seed,
                    store,
                },
            )
        }
        Command::Diff { old, new, format } => {
            return compared(commands::diff::run(&out, &old, &new, format == Format::Json));
        }
        Command::Reproduce { lock, archive, spec, store, live, format } => {
            return compared(commands::reproduce::run(
                &out,
                &lock,
                &commands::reproduce::Options { archive, spec, store, live, json: format == Format::Json },
            ));
        }
        Command::Build { spec, run } => commands::build::run(&out, &spec, &run.options()),
        Command::Batch(BatchCommand::Export { spec, stage, out: dir, max_lines, max_bytes, run }) => {
            commands::batch::export(
                &out,
                &spec,
                &commands::batch::ExportOptions {
                    build: run.options(),
                    stage,
                    out: dir,
                    limits: sdc_runtime::batch::Limits { max_lines, max_bytes },
                },
            )
        }
        Command::Batch(BatchCommand::Import { spec, inputs, store, format }) => commands::batch::import(
            &out,
            &spec,
            &commands::batch::ImportOptions { store, inputs, json: format == Format::Json },
        ),
        Command::Verify { archive, format } => commands::verify::run(&out, &archive, format == Format::Json),
        Command::Export { archive, format, out: dir, force, system, json } => commands::export::run(
            &out,
            &archive,
            &commands::export::Options { format: format.into(), out_dir: &dir, force, system_prompt: &system, json },
        ),
        Command::Analyze { archive, out: dir, force, format } => {
            commands::analyze::run(&out, &archive, &dir, force, format == Format::Json)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(commands::Failed) => ExitCode::from(1),
    }
}

/// The exit status of a comparison (`diff`, `reproduce`): 0 identical, 1 different, 2 error.
fn compared(result: Result<bool, commands::Failed>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(commands::Failed) => ExitCode::from(2),
    }
}
