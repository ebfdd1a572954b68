//! `sdc inspect SPEC --stage …`: what ingest makes of a spec's sources, and what it could not use.
//! `sdc inspect ARCHIVE|SPEC --samples|--rejected|--traces`: what a built archive holds (a spec
//! meaning its `output.archive`, with its store for the traces' reply texts).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sdc_compiler::plan::Plan;
use sdc_runtime::archive::RejectedRow;
use sdc_runtime::dataset::ZSTD_MAGIC;
use sdc_runtime::ingest::{self, Ingested, SourceInput};
use sdc_runtime::inspect::{self, Recorded, SampleView, Selection, Trace};
use sdc_runtime::provider::ResolveOptions;
use serde_json::json;

use super::Failed;
use super::lock::fresh_lock;
use crate::output::Output;
use crate::project;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    Documents,
    Images,
    Chunks,
}

/// What of a built archive to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Records {
    Samples,
    Rejected,
    Traces,
}

pub struct Options {
    pub stage: Option<Stage>,
    pub records: Option<Records>,
    pub count: usize,
    pub id: Option<String>,
    pub json: bool,
    pub threads: usize,
    pub random: bool,
    pub seed: u64,
    pub store: Option<PathBuf>,
}

pub fn run(out: &Output, path: &Path, o: &Options) -> Result<(), Failed> {
    let is_archive = std::fs::File::open(path)
        .and_then(|mut f| {
            let mut magic = [0u8; 4];
            std::io::Read::read_exact(&mut f, &mut magic).map(|()| magic)
        })
        .is_ok_and(|m| m == ZSTD_MAGIC);
    match (o.records, o.stage) {
        (Some(records), _) => run_archive(out, path, is_archive, records, o),
        (None, Some(stage)) if !is_archive => run_stage(out, path, stage, o),
        (None, Some(_)) => {
            out.error(format!(
                "`{}` is an archive: --stage inspects a spec's ingest; use --samples, --rejected or --traces",
                path.display()
            ));
            Err(Failed)
        }
        (None, None) => {
            out.error(
                "say what to show: --stage documents|images|chunks (a spec), or --samples, --rejected or --traces",
            );
            Err(Failed)
        }
    }
}

fn run_archive(out: &Output, path: &Path, is_archive: bool, records: Records, o: &Options) -> Result<(), Failed> {
    let (archive_path, store) = if is_archive {
        (path.to_path_buf(), o.store.clone())
    } else {
        let loaded = project::load(out, path)?;
        let spec = &loaded.spec;
        let store = o.store.clone().unwrap_or_else(|| spec.paths.store.resolve(&spec.dir));
        (spec.output.archive.resolve(&spec.dir), Some(store))
    };
    let bytes = std::fs::read(&archive_path).map_err(|e| {
        out.error(format!("cannot read archive `{}`: {e}", archive_path.display()));
        Failed
    })?;
    let dataset = super::diff::load_archive_bytes(out, &archive_path, &bytes)?;
    let sel = Selection { id: o.id.clone(), random: o.random, count: o.count, seed: o.seed };
    let fail = |e: inspect::InspectError| {
        out.error(e.to_string());
        Failed
    };
    let text = match records {
        Records::Samples => {
            let items = inspect::samples(&dataset, &sel).map_err(fail)?;
            if o.json {
                json_text(&json!({ "total": dataset.samples.len(), "items": items }))
            } else {
                render_samples(&items, dataset.samples.len(), o.id.is_some())
            }
        }
        Records::Rejected => {
            let items = inspect::rejected(&dataset, &sel).map_err(fail)?;
            if o.json {
                let rows: Vec<_> = items.iter().copied().map(rejected_json).collect();
                json_text(&json!({ "total": dataset.rejected.len(), "items": rows }))
            } else {
                render_rejected(&items, dataset.rejected.len())
            }
        }
        Records::Traces => {
            let recorded = Recorded::open(store.as_deref()).map_err(fail)?;
            let items = inspect::traces(&dataset, &sel, &recorded).map_err(fail)?;
            if o.json {
                json_text(&json!({ "total": dataset.provenance.samples.len(), "items": items }))
            } else {
                render_traces(&items)
            }
        }
    };
    out.data(text);
    Ok(())
}

fn json_text(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn rejected_json(r: &RejectedRow) -> serde_json::Value {
    json!({ "kind": r.kind, "id": r.id, "stage": r.stage, "outcome": r.outcome, "reason": r.reason,
            "attempts": r.attempts, "source": r.source, "duplicate_of": r.duplicate_of })
}

fn render_samples(items: &[SampleView], total: usize, full: bool) -> String {
    let mut s = String::new();
    for v in items {
        let image = v
            .image
            .as_ref()
            .map_or_else(|| "text only".to_string(), |i| format!("image {} ({} bytes)", i.path, i.bytes));
        let _ = writeln!(s, "── sample {} ({} · {} · {} · {image})", v.id, v.split, v.task_type, v.category);
        let _ = writeln!(s, "  source: {}", v.source);
        let clip = |t: &str| if full { t.to_string() } else { clipped(t, 400) };
        let _ = writeln!(s, "  question:\n{}", indent(&clip(&v.question), 4));
        let _ = writeln!(s, "  answer:\n{}", indent(&clip(&v.answer), 4));
        if !v.entry_point.is_empty() {
            let _ = writeln!(s, "  entry point: {}", v.entry_point);
        }
        if !v.test_code.is_empty() {
            let _ = writeln!(s, "  test:\n{}", indent(&clip(&v.test_code), 4));
        }
    }
    let _ = write!(s, "\n{} of {total} samples shown", items.len());
    s
}

fn render_rejected(items: &[&RejectedRow], total: usize) -> String {
    let mut s = String::new();
    for r in items {
        let dup = r.duplicate_of.as_deref().map_or_else(String::new, |d| format!(" (duplicate of {})", short(d)));
        let _ = writeln!(
            s,
            "{}  {:<6} {} at {:<16} {} ({} attempt{}){dup}\n    {}",
            short(&r.id),
            r.kind,
            r.outcome,
            r.stage,
            r.source,
            r.attempts,
            if r.attempts == 1 { "" } else { "s" },
            r.reason
        );
    }
    let _ = write!(s, "\n{} of {total} rejected entries shown", items.len());
    s
}

fn render_traces(items: &[Trace]) -> String {
    let mut s = String::new();
    for t in items {
        let image = t.image_id.as_deref().map_or_else(|| "no image".to_string(), |i| format!("image {}", short(i)));
        let _ = writeln!(
            s,
            "── trace {} ({} · {} · {})\n  document {} ({}), chunk {}, {image}",
            t.id,
            t.split,
            t.task_type,
            t.category,
            t.document_path,
            short(&t.document_id),
            short(&t.chunk_id)
        );
        for (n, c) in t.calls.iter().enumerate() {
            let k = &c.call;
            let _ = writeln!(
                s,
                "  call {}: {}/{} → {}  prompt {}  request {}  {}+{} tokens",
                n + 1,
                k.stage,
                k.step,
                k.model,
                short(&k.prompt_sha256),
                short(&k.request),
                k.prompt_tokens,
                k.completion_tokens
            );
            if let Some(messages) = c.messages.as_ref().and_then(|m| m.as_array()) {
                for m in messages {
                    let role = m["role"].as_str().unwrap_or("?");
                    let parts: Vec<String> = m["content"]
                        .as_array()
                        .map(|ps| {
                            ps.iter()
                                .map(|p| match p["text"].as_str() {
                                    Some(t) => t.to_string(),
                                    None => format!("[image {}]", p["sha256"].as_str().map(short).unwrap_or("?")),
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let _ = writeln!(s, "    {role}:\n{}", indent(&clipped(&parts.join("\n"), 600), 6));
                }
            }
            if let Some(reply) = &c.reply {
                let _ = writeln!(s, "    reply:\n{}", indent(&clipped(reply, 600), 6));
            }
            if let Some(note) = &c.note {
                let _ = writeln!(s, "    ({note})");
            }
        }
        for d in &t.decisions {
            let _ = writeln!(s, "  decision {}: {} ({})", d.stage, d.decision, d.reason);
        }
        for v in &t.verification {
            let verdict = &v["verdict"];
            let _ = writeln!(
                s,
                "  verification {} attempt {}: {} {}{}",
                v["against"].as_str().unwrap_or("?"),
                v["attempt"].as_u64().unwrap_or(0),
                verdict["outcome"].as_str().unwrap_or("?"),
                verdict["exception"].as_str().unwrap_or(""),
                verdict["message"]
                    .as_str()
                    .filter(|m| !m.is_empty())
                    .map(|m| format!("\n{}", indent(&clipped(m, 400), 6)))
                    .unwrap_or_default()
            );
        }
    }
    let _ = write!(s, "\n{} trace(s) shown", items.len());
    s
}

fn clipped(t: &str, max: usize) -> String {
    match t.char_indices().nth(max) {
        Some((i, _)) => format!("{}… ({} more chars)", &t[..i], t[i..].chars().count()),
        None => t.to_string(),
    }
}

fn run_stage(out: &Output, path: &Path, stage: Stage, o: &Options) -> Result<(), Failed> {
    let loaded = project::load(out, path)?;
    let previous = std::fs::read_to_string(loaded.lock_path()).ok().and_then(|t| sdc_compiler::lock::parse(&t).ok());
    let lock = fresh_lock(
        out,
        &loaded,
        previous.as_ref(),
        &ResolveOptions { offline: true, unpinned_ok: true, ..Default::default() },
    )?;
    let plan = Plan::new(&loaded.spec, &lock);
    let sources = SourceInput::from_plan(&plan, &loaded.spec.dir);
    let result = ingest::ingest(&sources, &plan.chunking, &plan.images, o.threads);
    if o.json {
        out.data(serde_json::to_string_pretty(&as_json(&result, stage, o)).unwrap_or_default());
    } else {
        out.data(render(&result, stage, o, out.is_verbose()));
    }
    if let Some(id) = &o.id
        && selected_ids(&result, stage).iter().all(|x| !x.starts_with(id.as_str()))
    {
        out.error(format!("no {} has an id starting with `{id}`", stage_name(stage)));
        return Err(Failed);
    }
    Ok(())
}

fn stage_name(s: Stage) -> &'static str {
    match s {
        Stage::Documents => "document",
        Stage::Images => "image",
        Stage::Chunks => "chunk",
    }
}

fn selected_ids(r: &Ingested, stage: Stage) -> Vec<&str> {
    match stage {
        Stage::Documents => r.documents.iter().map(|d| d.id.as_str()).collect(),
        Stage::Images => r.images.iter().map(|i| i.id.as_str()).collect(),
        Stage::Chunks => r.chunks.iter().map(|c| c.id.as_str()).collect(),
    }
}

fn keep(id: &str, o: &Options) -> bool {
    o.id.as_ref().is_none_or(|p| id.starts_with(p.as_str()))
}

fn as_json(r: &Ingested, stage: Stage, o: &Options) -> serde_json::Value {
    let items = match stage {
        Stage::Documents => json!(r.documents.iter().filter(|d| keep(&d.id, o)).take(o.count).collect::<Vec<_>>()),
        Stage::Images => json!(r.images.iter().filter(|d| keep(&d.id, o)).take(o.count).collect::<Vec<_>>()),
        Stage::Chunks => json!(r.chunks.iter().filter(|d| keep(&d.id, o)).take(o.count).collect::<Vec<_>>()),
    };
    json!({
        "totals": { "documents": r.documents.len(), "images": r.images.len(), "chunks": r.chunks.len(),
                    "skipped": r.skipped.len(), "unresolved": r.unresolved.len() },
        "items": items,
        "skipped": r.skipped,
        "unresolved": r.unresolved,
    })
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn render(r: &Ingested, stage: Stage, o: &Options, verbose: bool) -> String {
    let mut s = String::new();
    let detail = o.id.is_some();
    match stage {
        Stage::Documents => {
            for d in r.documents.iter().filter(|d| keep(&d.id, o)).take(o.count) {
                let title = d.title.as_deref().unwrap_or("(untitled)");
                let _ = writeln!(
                    s,
                    "{}  {:<8} {}/{}  “{title}”  {} images, {} chunks, {} warnings",
                    short(&d.id),
                    d.kind.as_str(),
                    d.source,
                    d.path,
                    d.images.len(),
                    d.chunks,
                    d.warnings.len()
                );
                if detail {
                    for (k, v) in &d.metadata {
                        let _ = writeln!(s, "    {k}: {v}");
                    }
                    for w in &d.warnings {
                        let _ = writeln!(s, "    warning at {}: {}", w.at, w.message);
                    }
                }
            }
        }
        Stage::Images => {
            for i in r.images.iter().filter(|i| keep(&i.id, o)).take(o.count) {
                let first = i.uses.first().map(|u| format!("{}/{} ({})", u.source, u.path, u.at)).unwrap_or_default();
                let more = if i.uses.len() > 1 { format!(", +{} more", i.uses.len() - 1) } else { String::new() };
                let _ = writeln!(s, "{}  {}×{} {:<5} used in {first}{more}", short(&i.id), i.width, i.height, i.format);
                if detail {
                    for u in &i.uses {
                        let _ =
                            writeln!(s, "    {}/{} at {}: `{}` alt “{}”", u.source, u.path, u.at, u.reference, u.alt);
                        if let Some(code) = &u.generating_code {
                            let _ = writeln!(s, "      generated by:\n{}", indent(code, 8));
                        }
                        if !u.context.is_empty() {
                            let _ = writeln!(s, "      context:\n{}", indent(&u.context, 8));
                        }
                    }
                }
            }
        }
        Stage::Chunks => {
            for c in r.chunks.iter().filter(|c| keep(&c.id, o)).take(o.count) {
                let doc =
                    r.documents.iter().find(|d| d.id == c.document_id).map(|d| format!("{}/{}", d.source, d.path));
                let _ = writeln!(
                    s,
                    "── chunk {} ({} #{}; {} chars, {} code blocks, {} images)",
                    short(&c.id),
                    doc.unwrap_or_default(),
                    c.ordinal,
                    c.text.chars().count(),
                    c.code_blocks.len(),
                    c.images.len()
                );
                let _ = writeln!(s, "{}", indent(&c.text, 2));
                if detail && !c.prior_code.is_empty() {
                    let _ = writeln!(
                        s,
                        "  ── earlier code ({} chars)\n{}",
                        c.prior_code.chars().count(),
                        indent(&c.prior_code, 2)
                    );
                }
            }
        }
    }
    let _ = writeln!(
        s,
        "\n{} documents, {} images, {} chunks; {} skipped files, {} unresolved image references",
        r.documents.len(),
        r.images.len(),
        r.chunks.len(),
        r.skipped.len(),
        r.unresolved.len()
    );
    let limit = if verbose { usize::MAX } else { 20 };
    for k in r.skipped.iter().take(limit) {
        let _ = writeln!(s, "skipped     {}/{}: {}", k.source, k.path, k.reason);
    }
    for u in r.unresolved.iter().take(limit) {
        let _ = writeln!(s, "unresolved  {}/{} ({}): `{}`: {}", u.source, u.path, u.at, u.reference, u.reason);
    }
    if !verbose && (r.skipped.len() > limit || r.unresolved.len() > limit) {
        let _ = writeln!(s, "… more with --verbose or --format json");
    }
    s.trim_end().to_string()
}

fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines().map(|l| format!("{pad}{l}")).collect::<Vec<_>>().join("\n")
}
