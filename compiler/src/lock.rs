//! The lockfile: everything a build depends on, pinned, in a stable, reviewable TOML layout.
//!
//! `build` assembles a [`Lockfile`] from a checked spec and the outside-world facts the runtime
//! resolved ([`Resolutions`]); `write` renders it with our own canonical writer (sorted, one file
//! per line, no timestamps) so that locking an unchanged project rewrites identical bytes;
//! `diff` explains what changed between two locks, entry by entry.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::diagnostic::Diagnostic;
use crate::hash::{HASH_SCHEME, derive_seed, digest_json, sha256_hex};
use crate::sources;
use crate::spec::{Provider, Spec};
use crate::templates;

/// Bumped when the lockfile layout changes incompatibly.
pub const LOCK_VERSION: u32 = 1;

/// The fixed mtime of every archive entry: 1980-01-01T00:00:00Z, the earliest time zip and
/// most tools handle, and never the wall clock.
pub const ARCHIVE_MTIME: u64 = 315_532_800;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lockfile {
    pub version: u32,
    pub hash_scheme: String,
    pub sdc_version: String,
    pub spec: SpecLock,
    pub dataset: DatasetLock,
    pub seeds: BTreeMap<String, u64>,
    #[serde(rename = "source", default)]
    pub sources: Vec<SourceLock>,
    #[serde(rename = "prompt", default)]
    pub prompts: Vec<PromptLock>,
    #[serde(rename = "model", default)]
    pub models: Vec<ModelLock>,
    #[serde(default)]
    pub verify: Option<VerifyLock>,
    pub plan: PlanLock,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpecLock {
    pub file: String,
    /// sha256 of the spec's canonical text without comments: formatting never makes a lock stale.
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetLock {
    pub name: String,
    pub version: String,
    pub seed: u64,
    pub target: u64,
    pub archive_mtime: u64,
    pub zstd_level: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceLock {
    pub name: String,
    pub root: String,
    #[serde(default)]
    pub public_root: Option<String>,
    pub files: Vec<FileLock>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLock {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PromptLock {
    pub name: String,
    pub sha256: String,
    #[serde(default)]
    pub includes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelLock {
    pub alias: String,
    pub provider: String,
    /// `host:port` of each endpoint; never credentials, paths or queries.
    #[serde(default)]
    pub endpoints: Vec<String>,
    pub requested: String,
    pub resolved: String,
    /// Why the builtin generator stands in for a configured server, if it does.
    #[serde(default)]
    pub offline: Option<String>,
    pub temperature: f64,
    #[serde(default)]
    pub top_p: Option<f64>,
    pub max_tokens: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerifyLock {
    pub python: String,
    pub python_version: String,
    pub requirements: String,
    pub requirements_sha256: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanLock {
    pub digest: String,
}

/// Facts from the outside world, resolved by the runtime (the compiler never asks a server).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resolutions {
    pub models: BTreeMap<String, ModelResolution>,
    pub python_version: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelResolution {
    pub provider: Provider,
    pub endpoints: Vec<String>,
    pub requested: String,
    pub resolved: String,
    pub offline_reason: Option<String>,
}

/// The version string of builtin generators, part of their resolved id.
pub const BUILTIN_VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn builtin_id(name: &str) -> String {
    format!("builtin/{name}@{BUILTIN_VERSION}")
}

/// Assembles the lock for a spec. Reads and hashes every source file and template.
pub fn build(
    spec: &Spec,
    spec_file: &str,
    canonical_spec: &str,
    res: &Resolutions,
) -> Result<Lockfile, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut source_locks = Vec::new();
    for source in &spec.sources {
        match sources::discover(spec, source) {
            Ok(files) => {
                let mut locks = Vec::new();
                for f in files {
                    match std::fs::read(&f.abs_path) {
                        Ok(bytes) => locks.push(FileLock {
                            path: f.rel_path,
                            sha256: sha256_hex(&bytes),
                            bytes: bytes.len() as u64,
                        }),
                        Err(e) => diags.push(
                            Diagnostic::error(
                                crate::Code::PathNotFound,
                                source.root.span,
                                format!("cannot read `{}`: {e}", f.abs_path.display()),
                            )
                            .with_label("in this source")
                            .with_hint("check the file's permissions"),
                        ),
                    }
                }
                source_locks.push(SourceLock {
                    name: source.name.clone(),
                    root: source.root.text.clone(),
                    public_root: source.public_root.as_ref().map(|p| p.text.clone()),
                    files: locks,
                });
            }
            Err(e) => diags.extend(e.into_iter().filter(Diagnostic::is_error)),
        }
    }
    let dir = templates::prompts_dir(spec);
    let mut prompts: BTreeMap<String, PromptLock> = BTreeMap::new();
    for stage in &spec.stages {
        for p in &stage.prompts {
            match templates::load(&dir, &p.template.text) {
                Ok(t) => {
                    prompts.insert(
                        t.name.clone(),
                        PromptLock {
                            name: t.name.clone(),
                            sha256: t.digest(),
                            includes: t.includes.iter().map(|(n, _)| n.clone()).collect(),
                        },
                    );
                }
                Err(e) => diags.push(
                    Diagnostic::error(
                        crate::Code::PromptNotFound,
                        p.template.span,
                        format!("prompt template `{}` not found", p.template.text),
                    )
                    .with_label(e)
                    .with_hint("run `sdc check` for details"),
                ),
            }
        }
    }
    let mut models = Vec::new();
    for m in &spec.models {
        let Some(r) = res.models.get(&m.name) else {
            continue;
        };
        models.push(ModelLock {
            alias: m.name.clone(),
            provider: r.provider.as_str().to_string(),
            endpoints: r.endpoints.clone(),
            requested: r.requested.clone(),
            resolved: r.resolved.clone(),
            offline: r.offline_reason.clone(),
            temperature: m.sampling.temperature,
            top_p: m.sampling.top_p,
            max_tokens: m.sampling.max_tokens,
        });
    }
    models.sort_by(|a, b| a.alias.cmp(&b.alias));
    let verify = match &spec.verify {
        Some(v) => {
            let path = v.requirements.resolve(&spec.dir);
            match std::fs::read(&path) {
                Ok(bytes) => Some(VerifyLock {
                    python: v.python.clone(),
                    python_version: res.python_version.clone().unwrap_or_else(|| "unresolved".into()),
                    requirements: v.requirements.text.clone(),
                    requirements_sha256: sha256_hex(&bytes),
                }),
                Err(e) => {
                    diags.push(
                        Diagnostic::error(
                            crate::Code::PathNotFound,
                            v.requirements.span,
                            format!("cannot read requirements `{}`: {e}", v.requirements.text),
                        )
                        .with_label("here")
                        .with_hint("paths are relative to the spec's directory"),
                    );
                    None
                }
            }
        }
        None => None,
    };
    if !diags.is_empty() {
        return Err(diags);
    }
    let mut lock = Lockfile {
        version: LOCK_VERSION,
        hash_scheme: HASH_SCHEME.to_string(),
        sdc_version: env!("CARGO_PKG_VERSION").to_string(),
        spec: SpecLock { file: spec_file.to_string(), sha256: sha256_hex(canonical_spec.as_bytes()) },
        dataset: DatasetLock {
            name: spec.dataset.name.clone(),
            version: spec.dataset.version.clone(),
            seed: spec.dataset.seed,
            target: spec.dataset.target,
            archive_mtime: ARCHIVE_MTIME,
            zstd_level: spec.output.zstd_level,
        },
        seeds: seeds(spec),
        sources: source_locks,
        prompts: prompts.into_values().collect(),
        models,
        verify,
        plan: PlanLock { digest: String::new() },
    };
    lock.plan.digest = plan_digest(spec, &lock);
    Ok(lock)
}

/// Seeds derived from the build seed, one per stage and per seeded step.
fn seeds(spec: &Spec) -> BTreeMap<String, u64> {
    let seed = spec.dataset.seed;
    let mut out = BTreeMap::new();
    out.insert("build".to_string(), seed);
    for label in ["allocation", "dedup", "split"] {
        out.insert(label.to_string(), derive_seed(seed, label));
    }
    for stage in &spec.stages {
        out.insert(
            format!("stage.{}", stage.kind.as_str()),
            derive_seed(seed, &format!("stage:{}", stage.kind.as_str())),
        );
    }
    out
}

/// The digest of the plan a lock implies; any change to what a build would do changes it.
pub fn plan_digest(spec: &Spec, lock: &Lockfile) -> String {
    let mut without = lock.clone();
    without.plan.digest = String::new();
    digest_json(&crate::plan::Plan::new(spec, &without))
}

/// Reads a lockfile.
pub fn parse(text: &str) -> Result<Lockfile, String> {
    let lock: Lockfile = toml::from_str(text).map_err(|e| e.to_string())?;
    if lock.version != LOCK_VERSION {
        return Err(format!(
            "lockfile version {} is not supported (this sdc reads version {LOCK_VERSION})",
            lock.version
        ));
    }
    Ok(lock)
}

/// Renders a lockfile in its canonical layout.
pub fn write(lock: &Lockfile) -> String {
    let mut o = String::new();
    o.push_str("# This file is generated by `sdc lock`. Do not edit it by hand.\n");
    let _ = writeln!(o, "version = {}", lock.version);
    let _ = writeln!(o, "hash_scheme = {}", s(&lock.hash_scheme));
    let _ = writeln!(o, "sdc_version = {}", s(&lock.sdc_version));
    o.push_str("\n[spec]\n");
    let _ = writeln!(o, "file = {}", s(&lock.spec.file));
    let _ = writeln!(o, "sha256 = {}", s(&lock.spec.sha256));
    o.push_str("\n[dataset]\n");
    let d = &lock.dataset;
    let _ = writeln!(
        o,
        "name = {}\nversion = {}\nseed = {}\ntarget = {}\narchive_mtime = {}\nzstd_level = {}",
        s(&d.name),
        s(&d.version),
        d.seed,
        d.target,
        d.archive_mtime,
        d.zstd_level
    );
    o.push_str("\n[seeds]\n");
    for (k, v) in &lock.seeds {
        let _ = writeln!(o, "{} = {v}", key(k));
    }
    for src in &lock.sources {
        o.push_str("\n[[source]]\n");
        let _ = writeln!(o, "name = {}\nroot = {}", s(&src.name), s(&src.root));
        if let Some(p) = &src.public_root {
            let _ = writeln!(o, "public_root = {}", s(p));
        }
        o.push_str("files = [\n");
        for f in &src.files {
            let _ = writeln!(o, "  {{ path = {}, sha256 = {}, bytes = {} }},", s(&f.path), s(&f.sha256), f.bytes);
        }
        o.push_str("]\n");
    }
    for p in &lock.prompts {
        o.push_str("\n[[prompt]]\n");
        let _ = writeln!(o, "name = {}\nsha256 = {}", s(&p.name), s(&p.sha256));
        let _ = writeln!(o, "includes = [{}]", p.includes.iter().map(|i| s(i)).collect::<Vec<_>>().join(", "));
    }
    for m in &lock.models {
        o.push_str("\n[[model]]\n");
        let _ = writeln!(o, "alias = {}\nprovider = {}", s(&m.alias), s(&m.provider));
        let _ = writeln!(o, "endpoints = [{}]", m.endpoints.iter().map(|i| s(i)).collect::<Vec<_>>().join(", "));
        let _ = writeln!(o, "requested = {}\nresolved = {}", s(&m.requested), s(&m.resolved));
        if let Some(r) = &m.offline {
            let _ = writeln!(o, "offline = {}", s(r));
        }
        let _ = writeln!(o, "temperature = {}", float(m.temperature));
        if let Some(p) = m.top_p {
            let _ = writeln!(o, "top_p = {}", float(p));
        }
        let _ = writeln!(o, "max_tokens = {}", m.max_tokens);
    }
    if let Some(v) = &lock.verify {
        o.push_str("\n[verify]\n");
        let _ = writeln!(
            o,
            "python = {}\npython_version = {}\nrequirements = {}\nrequirements_sha256 = {}",
            s(&v.python),
            s(&v.python_version),
            s(&v.requirements),
            s(&v.requirements_sha256)
        );
    }
    o.push_str("\n[plan]\n");
    let _ = writeln!(o, "digest = {}", s(&lock.plan.digest));
    o
}

fn s(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn key(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        k.to_string()
    } else {
        s(k)
    }
}

fn float(f: f64) -> String {
    let t = format!("{f}");
    if t.contains('.') { t } else { format!("{t}.0") }
}

/// One difference between two locks, named the way `--update` names entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub entry: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.old, &self.new) {
            (None, Some(n)) => write!(f, "+ {}: {n}", self.entry),
            (Some(o), None) => write!(f, "- {}: {o}", self.entry),
            (Some(o), Some(n)) => write!(f, "~ {}: {o} → {n}", self.entry),
            (None, None) => write!(f, "  {}", self.entry),
        }
    }
}

/// Every entry that differs between two locks, in a stable order.
pub fn diff(old: &Lockfile, new: &Lockfile) -> Vec<Change> {
    let mut out = Vec::new();
    let mut cmp = |entry: String, o: Option<String>, n: Option<String>| {
        if o != n {
            out.push(Change { entry, old: o, new: n });
        }
    };
    cmp("spec".into(), Some(short(&old.spec.sha256)), Some(short(&new.spec.sha256)));
    cmp("sdc".into(), Some(old.sdc_version.clone()), Some(new.sdc_version.clone()));
    let ds =
        |d: &DatasetLock| format!("{}@{} seed={} target={} zstd={}", d.name, d.version, d.seed, d.target, d.zstd_level);
    cmp("dataset".into(), Some(ds(&old.dataset)), Some(ds(&new.dataset)));
    for k in union(old.seeds.keys(), new.seeds.keys()) {
        cmp(format!("seed:{k}"), old.seeds.get(&k).map(u64::to_string), new.seeds.get(&k).map(u64::to_string));
    }
    let files = |l: &Lockfile| -> BTreeMap<String, String> {
        l.sources
            .iter()
            .flat_map(|s| s.files.iter().map(move |f| (format!("source:{}/{}", s.name, f.path), short(&f.sha256))))
            .collect()
    };
    let (of, nf) = (files(old), files(new));
    for k in union(of.keys(), nf.keys()) {
        cmp(k.clone(), of.get(&k).cloned(), nf.get(&k).cloned());
    }
    let prompts = |l: &Lockfile| -> BTreeMap<String, String> {
        l.prompts.iter().map(|p| (format!("prompt:{}", p.name), short(&p.sha256))).collect()
    };
    let (op, np) = (prompts(old), prompts(new));
    for k in union(op.keys(), np.keys()) {
        cmp(k.clone(), op.get(&k).cloned(), np.get(&k).cloned());
    }
    let models = |l: &Lockfile| -> BTreeMap<String, String> {
        l.models
            .iter()
            .map(|m| {
                let top_p = m.top_p.map_or(String::new(), |p| format!(" top_p={p}"));
                (
                    format!("model:{}", m.alias),
                    format!("{} (temperature={}{top_p} max_tokens={})", m.resolved, m.temperature, m.max_tokens),
                )
            })
            .collect()
    };
    let (om, nm) = (models(old), models(new));
    for k in union(om.keys(), nm.keys()) {
        cmp(k.clone(), om.get(&k).cloned(), nm.get(&k).cloned());
    }
    let verify = |l: &Lockfile| {
        l.verify.as_ref().map(|v| format!("python {} requirements {}", v.python_version, short(&v.requirements_sha256)))
    };
    cmp("verify".into(), verify(old), verify(new));
    if out.is_empty() && old.plan.digest != new.plan.digest {
        out.push(Change {
            entry: "plan".into(),
            old: Some(short(&old.plan.digest)),
            new: Some(short(&new.plan.digest)),
        });
    }
    out
}

fn union<'a>(a: impl Iterator<Item = &'a String>, b: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut all: Vec<String> = a.chain(b).cloned().collect();
    all.sort();
    all.dedup();
    all
}

fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}

/// What `--update` re-resolves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateTarget {
    Model(String),
    Source(String),
    Prompt(String),
}

impl std::str::FromStr for UpdateTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("model", n)) if !n.is_empty() => Ok(UpdateTarget::Model(n.into())),
            Some(("source", n)) if !n.is_empty() => Ok(UpdateTarget::Source(n.into())),
            Some(("prompt", n)) if !n.is_empty() => Ok(UpdateTarget::Prompt(n.into())),
            _ => Err(format!("`{s}` is not an update target; write `model:NAME`, `source:NAME` or `prompt:NAME`")),
        }
    }
}

/// Takes `old` and replaces only the targeted entry with its value in `fresh`; everything else
/// stays pinned as it was. The plan digest is recomputed.
pub fn apply_update(spec: &Spec, old: &Lockfile, fresh: &Lockfile, target: &UpdateTarget) -> Result<Lockfile, String> {
    let mut out = old.clone();
    match target {
        UpdateTarget::Model(name) => {
            let m = fresh
                .models
                .iter()
                .find(|m| &m.alias == name)
                .ok_or_else(|| format!("the spec has no model `{name}`"))?;
            out.models.retain(|x| &x.alias != name);
            out.models.push(m.clone());
            out.models.sort_by(|a, b| a.alias.cmp(&b.alias));
        }
        UpdateTarget::Source(name) => {
            let s = fresh
                .sources
                .iter()
                .find(|s| &s.name == name)
                .ok_or_else(|| format!("the spec has no source `{name}`"))?;
            out.sources.retain(|x| &x.name != name);
            out.sources.push(s.clone());
            let order: Vec<&str> = spec.sources.iter().map(|s| s.name.as_str()).collect();
            out.sources.sort_by_key(|s| order.iter().position(|n| *n == s.name));
        }
        UpdateTarget::Prompt(name) => {
            let p = fresh
                .prompts
                .iter()
                .find(|p| &p.name == name)
                .ok_or_else(|| format!("the spec uses no prompt `{name}`"))?;
            out.prompts.retain(|x| &x.name != name);
            out.prompts.push(p.clone());
            out.prompts.sort_by(|a, b| a.name.cmp(&b.name));
        }
    }
    out.plan.digest = plan_digest(spec, &out);
    Ok(out)
}
