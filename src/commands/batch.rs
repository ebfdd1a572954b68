//! `sdc batch export` and `sdc batch import`: a stage's model calls run on a batch engine (the
//! OpenAI Batch API, vLLM's `run_batch`) and come back through the response store, so that
//! `sdc build` then completes the stage without an online call.

use std::path::{Path, PathBuf};

use sdc_compiler::plan::Plan;
use sdc_compiler::spec::StageKind;
use sdc_runtime::batch::{self, ExportHeader, Kind, Limits};
use sdc_runtime::build;

use super::Failed;
use super::build::{Options, build_options, runtime, store_dir};
use super::lock::ensure;
use crate::output::Output;
use crate::project;

pub struct ExportOptions {
    pub build: Options,
    pub stage: StageKind,
    pub out: PathBuf,
    pub limits: Limits,
}

pub fn export(out: &Output, path: &Path, options: &ExportOptions) -> Result<(), Failed> {
    let loaded = project::load(out, path)?;
    let lock = ensure(out, &loaded, options.build.mode)?;
    let plan = Plan::new(&loaded.spec, &lock);
    let stage_name = options.stage.as_str();
    let Some(stage) = plan.stages.iter().find(|s| s.kind == options.stage) else {
        out.error(format!("`{}` has no `{stage_name}` stage", path.display()));
        return Err(Failed);
    };
    let Some(model) = plan.models.iter().find(|m| m.alias == stage.model) else {
        out.error(format!("stage `{stage_name}` calls model `{}`, which is not in the plan", stage.model));
        return Err(Failed);
    };
    if model.provider == "builtin" {
        out.error(format!(
            "stage `{stage_name}` calls model `{}`, which the lock resolves to the builtin generator `{}`: it needs no batch, `sdc build {}` runs it",
            model.alias,
            model.resolved,
            path.display()
        ));
        return Err(Failed);
    }
    let opts = build_options(out, &loaded, &plan, &options.build);
    let collected = match runtime(out)?.block_on(build::collect(&plan, &opts, options.stage)) {
        Ok(c) => c,
        Err(e) => {
            out.error(e.to_string());
            return Err(Failed);
        }
    };
    let position = |name: &str| StageKind::ALL.iter().position(|k| k.as_str() == name).unwrap_or(usize::MAX);
    let mut waiting: Vec<(&String, &u64)> = collected.missing.iter().collect();
    waiting.sort_by_key(|(name, _)| position(name));
    let export_hint = |s: &str| format!("sdc batch export {} --stage {s} --out DIR", path.display());
    if let Some((first, n)) = waiting.iter().find(|(name, _)| feeds(name, options.stage)) {
        out.error(format!(
            "stage `{stage_name}` is not ready: stage `{first}` comes before it and has {n} call(s) not in the store\n  export that stage first: {}",
            export_hint(first)
        ));
        return Err(Failed);
    }
    let next = waiting
        .first()
        .map(|(name, n)| format!("stage `{name}` ({n} call(s) not in the store): {}", export_hint(name)));
    if collected.pending.is_empty() {
        out.status(format!("nothing to export for stage `{stage_name}`: every call it makes is in the store"));
        match next {
            Some(next) => out.status(format!("next: {next}")),
            None => out.status(format!(
                "next: every model call is in the store; `sdc build {}` completes the build",
                path.display()
            )),
        }
        return Ok(());
    }
    let header = ExportHeader {
        dataset: format!("{}@{}", plan.dataset.name, plan.dataset.version),
        lock_sha256: opts.lock_sha256.clone(),
        stage: stage_name.to_string(),
        model: model.alias.clone(),
        resolved: model.resolved.clone(),
    };
    let manifest = match batch::write_export(&options.out, header, &collected.pending, options.limits) {
        Ok(m) => m,
        Err(e) => {
            out.error(e.to_string());
            return Err(Failed);
        }
    };
    if options.build.json {
        let v = serde_json::json!({"manifest": manifest, "missing": collected.missing});
        out.data(serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        let mut s = format!(
            "exported {} request(s) of stage `{stage_name}` (model `{}` = `{}`) to {} in {} shard(s):\n",
            manifest.requests,
            manifest.model,
            manifest.resolved,
            options.out.display(),
            manifest.shards.len()
        );
        for sh in &manifest.shards {
            s.push_str(&format!(
                "  {:<24} {:>7} lines {:>12} bytes  sha256 {}\n",
                sh.file, sh.lines, sh.bytes, sh.sha256
            ));
        }
        out.data(s);
    }
    out.status(format!(
        "next: run the shards on a batch engine (OpenAI Batch API, vLLM run_batch), then `sdc batch import {} {} RESULTS...`; then export again (a conversation's later turns{})",
        path.display(),
        options.out.display(),
        next.map_or_else(String::new, |n| format!(", then {n}"))
    ));
    Ok(())
}

/// Whether stage `earlier`'s answers shape the requests of `stage`: every earlier stage does,
/// except that the chunk filter reads no image's answer (the two image stages and it all run
/// before allocation, which reads all three).
fn feeds(earlier: &str, stage: StageKind) -> bool {
    let position = |k: StageKind| StageKind::ALL.iter().position(|s| *s == k);
    let Some(earlier) = StageKind::parse(earlier) else { return false };
    let image_stage = matches!(earlier, StageKind::Transcribe | StageKind::ImageFilter);
    position(earlier) < position(stage) && !(stage == StageKind::ChunkFilter && image_stage)
}

pub struct ImportOptions {
    pub store: Option<PathBuf>,
    pub inputs: Vec<PathBuf>,
    pub json: bool,
}

/// How many problems of each kind the human report lists (`--format json` lists every one).
const LISTED: usize = 20;

pub fn import(out: &Output, path: &Path, options: &ImportOptions) -> Result<(), Failed> {
    let loaded = project::load(out, path)?;
    let store = store_dir(&loaded, options.store.as_deref());
    let report = match batch::import(&store, &options.inputs) {
        Ok(r) => r,
        Err(e) => {
            out.error(e.to_string());
            return Err(Failed);
        }
    };
    if options.json {
        out.data(serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        let n = |k| report.count(k);
        let mut s = format!(
            "imported {} result file(s) for {} exported request(s): {} stored, {} already in the store; {} failed, {} expired, {} missing, {} unknown, {} duplicate, {} malformed line(s)\n",
            report.files.len(),
            report.exported,
            n(Kind::Stored),
            n(Kind::AlreadyStored),
            n(Kind::Failed),
            n(Kind::Expired),
            n(Kind::Missing),
            n(Kind::Unknown),
            n(Kind::Duplicate),
            n(Kind::Malformed)
        );
        for kind in [Kind::Failed, Kind::Expired, Kind::Missing, Kind::Unknown, Kind::Malformed, Kind::Duplicate] {
            let of_kind: Vec<_> = report.problems.iter().filter(|e| e.kind == kind).collect();
            for e in of_kind.iter().take(LISTED) {
                let at = e.at.as_deref().map_or_else(String::new, |a| format!("{a}: "));
                let id = e.custom_id.as_deref().map_or_else(String::new, |i| format!("{i} "));
                s.push_str(&format!("  {:<9} {at}{id}{}\n", batch::kind_name(kind), e.message));
            }
            if of_kind.len() > LISTED {
                s.push_str(&format!(
                    "  … and {} more {} (`--format json` lists every one)\n",
                    of_kind.len() - LISTED,
                    batch::kind_name(kind)
                ));
            }
        }
        out.data(s);
    }
    let stages = report.stages.join(", ");
    if report.complete() {
        out.status(format!(
            "every exported request is in the store; next: `sdc batch export {} --stage {stages} --out NEWDIR` for the stage's later turns or the next stage, or `sdc build {}`",
            path.display(),
            path.display()
        ));
        Ok(())
    } else {
        let unstored = report.count(Kind::Failed) + report.count(Kind::Expired) + report.count(Kind::Missing);
        out.error(format!(
            "{unstored} exported request(s) are not in the store, and {} line(s) were not understood; `sdc batch export {} --stage {stages} --out NEWDIR` exports exactly the requests still missing",
            report.count(Kind::Unknown) + report.count(Kind::Malformed),
            path.display()
        ));
        Err(Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_waits_for_the_stages_whose_answers_shape_its_requests() {
        assert!(feeds("transcribe", StageKind::ImageFilter));
        assert!(feeds("chunk_filter", StageKind::Plan));
        assert!(feeds("curate", StageKind::Classify));
        assert!(!feeds("curate", StageKind::Curate), "a stage's own later turns do not block it");
        assert!(!feeds("classify", StageKind::Curate));
        assert!(!feeds("image_filter", StageKind::ChunkFilter), "chunks read no image answer");
        assert!(!feeds("transcribe", StageKind::ChunkFilter));
    }
}
