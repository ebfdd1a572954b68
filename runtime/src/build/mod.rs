//! The executor: a locked [`Plan`] in, a dataset archive and a [`BuildReport`] out.
//!
//! Order of work (ARCHITECTURE.md has the picture): ingest (documents → images and chunks),
//! then every image through transcribe → image filter and every chunk through the chunk
//! filter, then allocation over what survived, then every task through plan → candidate filter
//! → answer (+ verification) → curate → classify, then dedup, split and packaging.
//!
//! Determinism: items are processed concurrently, but every result is keyed by the item's
//! content id and gathered in id order; every model call goes through the response store and
//! every verification through the verdict cache, so an interrupted build resumes where it
//! stopped and a repeated build reproduces the same bytes. Nothing is lost silently: each item
//! ends with a [`Fate`], and the build fails if the books do not close.

pub mod calls;
pub mod context;
pub mod corpus;
pub mod inputs;
pub mod items;
pub mod ledger;
pub mod outcome;
pub mod package;
pub mod progress;
pub mod prompts;
pub mod replies;
pub mod report;
pub mod spill;
pub mod tasks;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures::StreamExt;
use sdc_compiler::plan::{Plan, PlanStage};
use sdc_compiler::spec::{StageKind, TaskType};
use serde_json::json;
use sha2::{Digest, Sha256};

use self::calls::{Caller, lock};
use self::inputs::{CategoryInfo, ChunkView, TargetImage, TaskInput};
use self::items::{ChunkOutcome, ImageOutcome};
use self::outcome::{Books, StageFate};
use self::progress::Progress;
use self::prompts::Prompts;
pub use self::report::BuildReport;
use self::tasks::{Attempt, TaskEntry, TaskRecord};
use crate::allocation;
use crate::ingest::{self, Ingested, SourceInput};
use crate::model::json::canonical;
use crate::store::{Journal, Store, StoreError};
use crate::verify::{self, Verdict, environment, program, runner::Runner};

/// Where things are and how hard to work; nothing here changes what a build produces.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The spec's directory: relative paths in the plan resolve against it.
    pub spec_dir: PathBuf,
    pub prompts_dir: PathBuf,
    pub store_dir: PathBuf,
    /// Where verification environments live (default: `<store>/envs`).
    pub envs_dir: PathBuf,
    pub archive: PathBuf,
    /// Items in flight at once.
    pub concurrency: usize,
    /// Ingest worker threads (0 = one per core).
    pub ingest_threads: usize,
    pub progress: progress::Mode,
    /// Endpoints (with keys) of the plan's OpenAI-compatible models, by alias; resolved from the
    /// environment by the caller, never stored.
    pub connections: BTreeMap<String, Vec<crate::model::openai::Connection>>,
    /// Fail instead of warning when replies name another model than the lock (`--locked`).
    pub fail_on_drift: bool,
    /// The lockfile's sha256 and the command that reproduces the build, for provenance.
    pub lock_sha256: String,
    pub reproduce: String,
    /// Serve every model call from the store and fail the ones it does not hold, builtin calls
    /// included (`sdc reproduce`): the build then replays exactly what was recorded.
    pub replay_only: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Prompt(#[from] prompts::PromptError),
    #[error(transparent)]
    Environment(#[from] environment::EnvError),
    #[error(transparent)]
    Verification(#[from] verify::runner::RunError),
    #[error("the build stopped: {0}")]
    Stopped(String),
    #[error("the build's books do not close, so no archive was written:\n  {}", .0.join("\n  "))]
    Books(Vec<String>),
    #[error(transparent)]
    Package(#[from] package::PackageError),
    #[error(transparent)]
    Spill(#[from] spill::SpillError),
}

/// Verification: the runner and the verdict cache.
struct Verifier {
    runner: Runner,
    env_key: String,
    verdicts: Mutex<Journal>,
    slots: tokio::sync::Semaphore,
    sandbox: String,
}

impl Verifier {
    async fn verify(&self, program: &program::Program, books: &Mutex<Books>) -> Result<Verdict, String> {
        let identity = json!({
            "source": program.source,
            "entry_point": program.entry_point,
            "environment": self.env_key,
            "timeout_ms": self.runner.timeout.as_millis() as u64,
            "harness": verify::runner::HARNESS_SHA256.as_str(),
            "sandbox": self.sandbox,
        });
        let key: [u8; 32] = Sha256::digest(canonical(&identity).as_bytes()).into();
        if let Some(bytes) = lock(&self.verdicts).get(&key).map_err(|e| e.to_string())?
            && let Ok(v) = serde_json::from_slice::<Verdict>(&bytes)
        {
            lock(books).stage("verification").calls_served += 1;
            return Ok(v);
        }
        let _slot = self.slots.acquire().await.map_err(|e| e.to_string())?;
        let run = self.runner.run(program).await.map_err(|e| e.to_string())?;
        let bytes = serde_json::to_vec(&run.verdict).unwrap_or_default();
        lock(&self.verdicts).put(key, &bytes).map_err(|e| e.to_string())?;
        let mut b = lock(books);
        let s = b.stage("verification");
        s.calls_made += 1;
        s.wall_ms += run.duration.as_millis() as u64;
        Ok(run.verdict)
    }
}

/// What stages share while a build runs. Items run as tasks on the runtime's worker threads,
/// so it owns (or shares) everything they read.
pub struct Ctx {
    pub plan: Arc<Plan>,
    pub caller: Caller,
    books: Arc<Mutex<Books>>,
    verifier: Option<Verifier>,
    pub categories: Vec<CategoryInfo>,
    stop: AtomicBool,
    stop_reason: Mutex<Option<String>>,
    progress: Arc<Progress>,
}

impl Ctx {
    pub fn stage(&self, kind: StageKind) -> Option<&PlanStage> {
        self.plan.stages.iter().find(|s| s.kind == kind)
    }

    /// The stage's template for a task type (or its only template).
    pub fn template<'s>(&self, stage: &'s PlanStage, task: Option<TaskType>) -> &'s str {
        stage
            .prompts
            .iter()
            .find(|p| p.task.is_none() || p.task == task)
            .or(stage.prompts.first())
            .map_or("", |p| p.template.as_str())
    }

    pub fn count(&self, kind: StageKind, fate: StageFate) {
        lock(&self.books).count(kind.as_str(), &fate);
        self.progress.tick(kind.as_str());
    }

    /// Stops the build: items not yet started fail with "stopped", and no archive is written.
    pub fn stop(&self, reason: String) {
        let mut r = lock(&self.stop_reason);
        if r.is_none() {
            *r = Some(reason);
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The test-quality gate: `None` if the test runs and fails against a stub, else the problem.
    async fn check_test(
        &self,
        rec: &mut TaskRecord,
        question: &str,
        entry_point: &str,
        test: &str,
    ) -> Result<Option<String>, String> {
        if !test.contains("def check") {
            return Ok(Some("the test defines no `check(candidate)` function".into()));
        }
        if !test.contains("assert") {
            return Ok(Some("the test has no assertion".into()));
        }
        let Some(verifier) = &self.verifier else {
            return Ok(Some("the spec has no `verify` block, so code cannot be verified".into()));
        };
        let stub = program::stub(&rec.input.question_type, question, entry_point);
        let p = program::program(&stub, test, entry_point);
        let verdict = verifier.verify(&p, &self.books).await?;
        rec.attempts.push(Attempt {
            against: "stub".into(),
            attempt: rec.attempts.iter().filter(|a| a.against == "stub").count() as u32 + 1,
            code_sha256: hex::encode(Sha256::digest(p.source.as_bytes())),
            verdict: verdict.clone(),
        });
        Ok(verify::gate(&verdict))
    }

    async fn run_verification(
        &self,
        rec: &mut TaskRecord,
        against: &str,
        attempt: u32,
        solution: &str,
    ) -> Result<Verdict, String> {
        let Some(verifier) = &self.verifier else {
            return Ok(Verdict {
                outcome: verify::Outcome::NoResult,
                exception: String::new(),
                message: "the spec has no `verify` block".into(),
            });
        };
        let p = program::program(solution, &rec.candidate.test_code, &rec.candidate.entry_point);
        let verdict = verifier.verify(&p, &self.books).await?;
        rec.attempts.push(Attempt {
            against: against.into(),
            attempt,
            code_sha256: hex::encode(Sha256::digest(p.source.as_bytes())),
            verdict: verdict.clone(),
        });
        Ok(verdict)
    }
}

/// Everything the build produced before packaging, in id order.
pub struct Outcomes {
    pub ingested: Ingested,
    pub images: BTreeMap<String, ImageOutcome>,
    pub chunks: BTreeMap<String, ChunkOutcome>,
    pub allocation: allocation::Allocation,
    pub tasks: BTreeMap<String, TaskEntry>,
    /// The tasks' records.
    pub spill: spill::SpillReader,
    /// Every ingested chunk's size in characters (text and code, and code alone), in ingest
    /// order (document id, then ordinal): provenance keeps them for `sdc analyze`.
    pub chunk_sizes: ChunkSizes,
}

/// Chunk sizes as provenance records them: two parallel arrays, compact at any scale.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ChunkSizes {
    pub chars: Vec<u64>,
    pub code_chars: Vec<u64>,
}

/// Files ingested at once: their chunks are in memory together until they are spilled.
const INGEST_BATCH: usize = 256;

/// Runs a build.
pub async fn run(plan: &Plan, opts: &BuildOptions) -> Result<BuildReport, BuildError> {
    match on_a_worker(plan, opts, None).await? {
        Executed::Built(report) => Ok(*report),
        Executed::Collected(_) => Err(BuildError::Stopped("a build collected calls instead of making them".into())),
    }
}

/// Runs the executor in export mode for `stage` (`sdc batch export`): the same planning and
/// requests as a build, but a call of an online model that is not in the store is collected
/// (with its exact body when it belongs to `stage`) instead of being sent; the items waiting on
/// such calls stop there, and nothing is packaged. Builtin-model stages run as in a build.
/// When a stage before allocation has calls missing, the run stops after that phase: the
/// tasks depend on which images and chunks passed.
pub async fn collect(plan: &Plan, opts: &BuildOptions, stage: StageKind) -> Result<calls::Collected, BuildError> {
    match on_a_worker(plan, opts, Some(stage)).await? {
        Executed::Collected(c) => Ok(c),
        Executed::Built(_) => Err(BuildError::Stopped("an export run built an archive".into())),
    }
}

/// The executor runs as a task on the runtime's worker threads, not on the thread that waits
/// for the build: gathering tens of thousands of item results there meant waking that thread
/// (a futex call and a context switch) for each one.
async fn on_a_worker(plan: &Plan, opts: &BuildOptions, collect: Option<StageKind>) -> Result<Executed, BuildError> {
    let (plan, opts) = (Arc::new(plan.clone()), opts.clone());
    tokio::spawn(async move { execute(&plan, &opts, collect).await })
        .await
        .map_err(|e| BuildError::Stopped(format!("the build's task failed: {e}")))?
}

enum Executed {
    Built(Box<BuildReport>),
    Collected(calls::Collected),
}

async fn execute(plan: &Arc<Plan>, opts: &BuildOptions, collect: Option<StageKind>) -> Result<Executed, BuildError> {
    let started = Instant::now();
    let store = Arc::new(Store::open(&opts.store_dir)?);
    let prompts = Prompts::load(&opts.prompts_dir, plan)?;
    let books = Arc::new(Mutex::new(Books::default()));
    let progress = Arc::new(Progress::new(opts.progress));

    // Ingest, spilling chunks a batch of files at a time.
    let t = Clock::start();
    let sources = SourceInput::from_plan(plan, &opts.spec_dir);
    let categories: Vec<CategoryInfo> =
        plan.categories.iter().map(|(n, d)| CategoryInfo { name: n.clone(), description: d.clone() }).collect();
    let (ingested, corpus) = {
        let cache = ingest::StoreCache::new(&store);
        let hints = plan.allocation.balance_categories.then_some(categories.as_slice());
        let mut spill = corpus::ChunkSpill::new(&store.root().join("tmp"), hints)?;
        let mut sink = |batch: Vec<ingest::chunk::Chunk>| batch.into_iter().try_for_each(|c| spill.put(c));
        let ingested = ingest::ingest_streaming(
            &sources,
            &plan.chunking,
            &plan.images,
            opts.ingest_threads,
            Some(&cache),
            INGEST_BATCH,
            &mut sink,
        )?;
        (ingested, spill.finish()?)
    };
    {
        let mut b = lock(&books);
        let s = b.stage("ingest");
        s.items_in = plan.sources.iter().map(|s| s.files.len() as u64).sum();
        s.items_out = ingested.documents.len() as u64;
        s.rejected = ingested.skipped.len() as u64;
        (s.wall_ms, s.cpu_ms) = t.elapsed_ms();
    }
    progress.note(format!(
        "ingested {} documents: {} images, {} chunks ({} skipped, {} unresolved image references)",
        ingested.documents.len(),
        ingested.images.len(),
        corpus.metas.len(),
        ingested.skipped.len(),
        ingested.unresolved.len()
    ));

    // Verification environment, only when code tasks are planned.
    let wants_code = plan.allocation.types.iter().any(|t| t.task.is_code() && t.planned > 0);
    let verifier = match (&plan.verify, wants_code) {
        (Some(v), true) => {
            let requirements = opts.spec_dir.join(&v.requirements);
            let req = environment::Request {
                base_python: &v.python,
                python_version: &v.python_version,
                requirements: Some(&requirements),
                requirements_sha256: &v.requirements_sha256,
                envs_dir: &opts.envs_dir,
            };
            let env = environment::ensure(&req, &|m| progress.note(m)).await?;
            let slots = v.concurrency.map_or_else(num_cpus, |c| c as usize).max(1);
            let timeout = Duration::from_millis(v.timeout_ms);
            let runner = Runner::new(&env.python, &env.root, timeout, v.memory_mb, &store.root().join("tmp"))?;
            if let Some(warning) = runner.sandbox.warning() {
                // Printed even under --quiet: unisolated execution of generated code is news.
                eprintln!("{warning}");
            }
            Some(Verifier {
                sandbox: runner.sandbox.identity(),
                runner,
                env_key: env.key,
                verdicts: Mutex::new(store.journal("verdicts")?),
                slots: tokio::sync::Semaphore::new(slots),
            })
        }
        _ => None,
    };

    let mut online = BTreeMap::new();
    for m in plan.models.iter().filter(|m| m.provider != "builtin") {
        if let Some(connections) = opts.connections.get(&m.alias).filter(|c| !c.is_empty()) {
            let o = calls::Online::new(m, connections.clone())
                .map_err(|e| BuildError::Stopped(format!("model `{}`: {e}", m.alias)))?;
            online.insert(m.alias.clone(), o);
        }
    }
    let caller = Caller {
        prompts,
        responses: Mutex::new(store.journal("responses")?.write_behind()),
        requests: Mutex::new(store.appender("requests")?.write_behind()),
        books: books.clone(),
        models: plan.models.clone(),
        online,
        store: store.clone(),
        collect: collect.map(|k| calls::Collector::new(k.as_str())),
        replay_only: opts.replay_only,
    };
    let ctx = Arc::new(Ctx {
        plan: plan.clone(),
        caller,
        books: books.clone(),
        verifier,
        categories,
        stop: AtomicBool::new(false),
        stop_reason: Mutex::new(None),
        progress: progress.clone(),
    });
    let ingested = Arc::new(ingested);
    let n = opts.concurrency.max(1);
    let flusher = Flusher::start(&ctx);

    // Images and chunks. Their calls go to the ledger as they finish; nothing after these
    // stages reads their traces or decisions, so they are not kept.
    let mut ledger = ledger::Ledger::new(plan);
    let t = Clock::start();
    progress.start("transcribe", ingested.images.len() as u64);
    progress.start("image_filter", ingested.images.len() as u64);
    let mut images: BTreeMap<String, ImageOutcome> = BTreeMap::new();
    let mut finished = on_workers(0..ingested.images.len(), n, |i| {
        let (ctx, ingested) = (ctx.clone(), ingested.clone());
        async move { items::image(&ctx, &ingested.images[i], &ingested.documents).await }
    });
    while let Some(o) = finished.next().await {
        let mut o = o?;
        ledger.add(&std::mem::take(&mut o.calls));
        o.decisions = Vec::new();
        images.insert(o.id.clone(), o);
    }
    drop(finished);
    progress.finish("transcribe");
    progress.finish("image_filter");
    add_wall(&books, &["transcribe", "image_filter"], t);
    let doc_paths: Arc<BTreeMap<String, String>> =
        Arc::new(ingested.documents.iter().map(|d| (d.id.clone(), format!("{}/{}", d.source, d.path))).collect());
    let corpus = Arc::new(corpus);
    let t = Clock::start();
    progress.start("chunk_filter", corpus.metas.len() as u64);
    // Gathered in a Vec and keyed once at the end: inserting into the map as each item finished
    // cost more than sorting them all at once (its key comparisons missed the cache).
    let mut chunks: Vec<(String, ChunkOutcome)> = Vec::with_capacity(corpus.metas.len());
    let mut finished = on_workers(0..corpus.metas.len(), n, |i| {
        let (ctx, corpus, doc_paths) = (ctx.clone(), corpus.clone(), doc_paths.clone());
        async move {
            let meta = &corpus.metas[i];
            let parts = corpus.load_parts(meta)?;
            let path = doc_paths.get(meta.document_id.as_str()).map_or("", String::as_str);
            Ok::<_, spill::SpillError>(items::chunk(&ctx, meta, parts, path).await)
        }
    });
    while let Some(o) = finished.next().await {
        let mut o = o??;
        ledger.add(&std::mem::take(&mut o.calls));
        o.decisions = Vec::new();
        chunks.push((o.id.clone(), o));
    }
    drop(finished);
    let chunks: BTreeMap<String, ChunkOutcome> = chunks.into_iter().collect();
    progress.finish("chunk_filter");
    add_wall(&books, &["chunk_filter"], t);
    if let Some(reason) = lock(&ctx.stop_reason).clone() {
        return Err(BuildError::Stopped(reason));
    }
    if let Some(c) = &ctx.caller.collect
        && c.any()
    {
        return Ok(Executed::Collected(c.take()));
    }

    // Allocation.
    let usable: BTreeSet<&str> = images.values().filter(|o| o.fate.is_accepted()).map(|o| o.id.as_str()).collect();
    let candidates: Vec<allocation::ChunkCandidates> = corpus
        .metas
        .iter()
        .filter(|c| chunks.get(&c.id).is_some_and(|o| o.fate.is_accepted()))
        .map(|c| allocation_input(c, &images, &usable))
        .collect();
    let t = Clock::start();
    let allocated = allocation::allocate(&candidates, &plan.allocation, plan.allocation.seed);
    {
        // Allocation creates the task items: each planned task enters the task stages.
        let mut b = lock(&books);
        let s = b.stage("allocation");
        s.items_in = allocated.tasks.len() as u64;
        s.items_out = allocated.tasks.len() as u64;
        (s.wall_ms, s.cpu_ms) = t.elapsed_ms();
    }

    // Tasks.
    let t = Clock::start();
    let chunk_by_id: BTreeMap<&str, &corpus::ChunkMeta> = corpus.metas.iter().map(|c| (c.id.as_str(), c)).collect();
    // Allocation only picks among the chunks it was given, so every task finds its chunk.
    let planned: Vec<(&allocation::Task, &corpus::ChunkMeta)> =
        allocated.tasks.iter().filter_map(|t| Some((t, *chunk_by_id.get(t.chunk_id.as_str())?))).collect();
    for stage in ["plan", "candidate_filter", "answer", "curate", "classify"] {
        progress.start(stage, planned.len() as u64);
    }
    // Inputs are built as tasks start; finished records are slimmed and spilled to disk, and
    // the ledger takes their calls: holding every task's texts at once was most of a large
    // build's memory.
    let mut spilled = spill::SpillWriter::new(&store.root().join("tmp"))?;
    let mut tasks: BTreeMap<String, TaskEntry> = BTreeMap::new();
    // A task's input is made here, as it starts; its stages run on the worker threads.
    let mut finished = on_workers(0..planned.len(), n, |i| {
        let (t, meta) = planned[i];
        let input = corpus.load(meta).map(|chunk| task_input(&ingested, &chunk, t, &images));
        let ctx = ctx.clone();
        async move { Ok::<_, spill::SpillError>(tasks::task(&ctx, input?).await) }
    });
    while let Some(rec) = finished.next().await {
        let mut rec = rec??;
        rec.slim();
        ledger.add(&rec.calls);
        let slot = spilled.put(&rec)?;
        tasks.insert(rec.input.task_id.clone(), TaskEntry::new(&rec, slot));
    }
    drop(finished);
    let spill = spilled.finish()?;
    for stage in ["plan", "candidate_filter", "answer", "curate", "classify"] {
        progress.finish(stage);
    }
    add_wall(&books, &["plan", "candidate_filter", "answer", "curate", "classify"], t);
    if let Some(reason) = lock(&ctx.stop_reason).clone() {
        return Err(BuildError::Stopped(reason));
    }
    if let Some(c) = &ctx.caller.collect {
        return Ok(Executed::Collected(c.take()));
    }
    drop(flusher);
    ctx.caller.flush()?;
    drop(ctx);
    let chunk_sizes = ChunkSizes {
        chars: corpus.metas.iter().map(|m| m.chars).collect(),
        code_chars: corpus.metas.iter().map(|m| m.code_chars).collect(),
    };
    drop(corpus);

    // Every item's task has finished and dropped its share.
    let ingested = Arc::into_inner(ingested)
        .ok_or_else(|| BuildError::Stopped("an item's task still held the ingested documents".into()))?;
    let outcomes = Outcomes { ingested, images, chunks, allocation: allocated, tasks, spill, chunk_sizes };
    let packaged = package::package(plan, opts, &store, &outcomes, &ledger, &books)?;
    {
        let mut b = lock(&books);
        link_stages(&mut b, plan);
        let problems = b.check();
        if !problems.is_empty() {
            return Err(BuildError::Books(problems));
        }
    }
    let report = report::report(plan, &outcomes, &packaged, &ledger, &lock(&books), started.elapsed());
    Ok(Executed::Built(Box::new(report)))
}

/// Runs `work` for each item as a task on the runtime's worker threads, at most `n` at once,
/// yielding the results as they finish (callers key them by item id, so completion order
/// never shows). Polling every item from the one thread that drives the build saturated that
/// thread long before the model servers were. Dropping the stream aborts the tasks still
/// running, as dropping un-spawned futures would.
fn on_workers<T, F, Fut>(
    items: impl Iterator<Item = T>,
    n: usize,
    mut work: F,
) -> impl futures::Stream<Item = Result<Fut::Output, BuildError>>
where
    F: FnMut(T) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    futures::stream::iter(items).map(move |item| Joined(tokio::spawn(work(item)))).buffer_unordered(n)
}

/// Flushes the model-call journals every `FLUSH_EVERY` while items run, so a `kill -9` loses
/// only the last few milliseconds of replies; stopped on drop. A failed write is not lost: the
/// journal keeps failing, so the next call's store error stops the build.
struct Flusher(tokio::task::JoinHandle<()>);

impl Flusher {
    fn start(ctx: &Arc<Ctx>) -> Flusher {
        let ctx = Arc::downgrade(ctx);
        Flusher(tokio::spawn(async move {
            let mut every = tokio::time::interval(crate::store::FLUSH_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                match ctx.upgrade() {
                    Some(ctx) => _ = ctx.caller.flush(),
                    None => break,
                }
            }
        }))
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A spawned item: its result, or the build's error if the task panicked; aborted on drop.
struct Joined<T>(tokio::task::JoinHandle<T>);

impl<T> Future for Joined<T> {
    type Output = Result<T, BuildError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|joined| joined.map_err(|e| BuildError::Stopped(format!("an item's task failed: {e}"))))
    }
}

impl<T> Drop for Joined<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Wall and CPU time of a phase. CPU is the sdc process's own (all its threads), which is what
/// a stage costs the machine running the build; verification's Python runs are not in it.
#[derive(Clone, Copy)]
struct Clock {
    wall: Instant,
    cpu: Duration,
}

impl Clock {
    fn start() -> Clock {
        Clock { wall: Instant::now(), cpu: process_cpu() }
    }

    fn elapsed_ms(&self) -> (u64, u64) {
        (self.wall.elapsed().as_millis() as u64, process_cpu().saturating_sub(self.cpu).as_millis() as u64)
    }
}

fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec.max(0) as u64, t.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// Adds a phase's times to each of its stages (the task stages share one phase).
fn add_wall(books: &Mutex<Books>, stages: &[&str], since: Clock) {
    let (wall, cpu) = since.elapsed_ms();
    let mut b = lock(books);
    for s in stages {
        let stage = b.stage(s);
        stage.wall_ms += wall;
        stage.cpu_ms += cpu;
    }
}

/// The links between stages whose counts must agree.
fn link_stages(b: &mut Books, plan: &Plan) {
    let present = |k: StageKind| plan.stages.iter().any(|s| s.kind == k);
    if present(StageKind::Transcribe) && present(StageKind::ImageFilter) {
        b.link("transcribe", "image_filter");
    }
    let task_stages: Vec<&str> =
        [StageKind::Plan, StageKind::CandidateFilter, StageKind::Answer, StageKind::Curate, StageKind::Classify]
            .into_iter()
            .filter(|k| present(*k))
            .map(StageKind::as_str)
            .collect();
    let mut chain: Vec<&str> = Vec::new();
    chain.push("allocation");
    chain.extend(task_stages);
    chain.push("dedup");
    chain.push("split");
    for pair in chain.windows(2) {
        b.link(pair[0], pair[1]);
    }
}

/// A chunk as allocation sees it.
fn allocation_input(
    c: &corpus::ChunkMeta,
    images: &BTreeMap<String, ImageOutcome>,
    usable: &BTreeSet<&str>,
) -> allocation::ChunkCandidates {
    allocation::ChunkCandidates {
        chunk: allocation::ChunkFeatures {
            chunk_id: c.id.clone(),
            document_id: c.document_id.clone(),
            text_chars: c.chars,
            code_blocks: c.code_blocks,
            code_chars: c.code_chars,
            has_neighbours: c.has_neighbours,
            category_hint: c.category_hint.clone(),
        },
        images: c
            .images
            .iter()
            .filter(|id| usable.contains(id.as_str()))
            .filter_map(|id| images.get(id))
            .map(|o| allocation::ImageFeatures { image_id: o.id.clone(), image_type: o.image_type.clone() })
            .collect(),
    }
}

fn task_input(
    ingested: &Ingested,
    chunk: &ingest::chunk::Chunk,
    task: &allocation::Task,
    images: &BTreeMap<String, ImageOutcome>,
) -> TaskInput {
    // Documents and images are sorted by id: a linear search per task was quadratic at scale.
    let document = ingested
        .documents
        .binary_search_by(|d| d.id.as_str().cmp(&chunk.document_id))
        .ok()
        .map(|k| &ingested.documents[k]);
    let view = ChunkView {
        id: chunk.id.clone(),
        document_id: chunk.document_id.clone(),
        document_path: document.map(|d| format!("{}/{}", d.source, d.path)).unwrap_or_default(),
        document_title: document.and_then(|d| d.title.clone()),
        heading: chunk.heading.clone(),
        parts: chunk.parts.clone(),
        prior_code: chunk.prior_code.clone(),
        previous_text: chunk.previous_text.clone(),
        next_text: chunk.next_text.clone(),
    };
    let image = task.image_id.as_ref().and_then(|id| images.get(id)).map(|o| {
        // The image as it appears in this chunk's document, when it is used there.
        let record = ingested.images.binary_search_by(|r| r.id.as_str().cmp(&o.id)).ok().map(|k| &ingested.images[k]);
        let local = record.and_then(|r| r.uses.iter().find(|u| u.document_id == chunk.document_id));
        TargetImage {
            id: o.id.clone(),
            alt_text: local.map_or_else(|| o.info.alt_text.clone(), |u| u.alt.clone()),
            image_type: o.image_type.clone(),
            transcription: o.transcription.clone(),
            generating_code: local
                .and_then(|u| u.generating_code.clone())
                .unwrap_or_else(|| o.info.code_context.clone()),
            surrounding_text: local.map_or_else(|| o.info.surrounding_text.clone(), |u| u.context.clone()),
        }
    });
    let context = context::context(&view, image.as_ref());
    TaskInput { task_id: task.id.clone(), question_type: task.task.as_str().to_string(), chunk: view, image, context }
}
