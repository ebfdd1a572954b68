//! The batch plane: model calls run on a batch engine (the OpenAI Batch API, vLLM's
//! `run_batch`) instead of online, through the response store.
//!
//! Export writes the requests an export run of the executor collected ([`crate::build::collect`])
//! as OpenAI-Batch JSONL: one line per request, `custom_id` = the request's key, `body` = the
//! exact chat-completions body the online provider would POST ([`crate::model::openai::body`]),
//! in key order, sharded by line and byte limits, with a manifest. Import reads result files of
//! either engine, checks every `custom_id` against the manifests, parses each reply with the
//! online provider's parser and stores it under the request key, so a later build serves it as
//! if it had been made online; only the plane (`batch`) in the stored metadata tells them apart,
//! and that metadata enters no identity and no archive.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::build::calls::Pending;
use crate::model::{CallMeta, ChatResponse, StoredResponse, openai};
use crate::store::{Store, StoreError};

/// The endpoint every exported line names.
pub const URL: &str = "/v1/chat/completions";
pub const MANIFEST: &str = "manifest.json";
const FORMAT: &str = "sdc-batch-export-1";
/// OpenAI's limit of requests per batch file.
pub const DEFAULT_MAX_LINES: u64 = 50_000;
/// Under OpenAI's 200 MB limit per batch file.
pub const DEFAULT_MAX_BYTES: u64 = 190_000_000;

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("cannot write `{path}`: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot read `{path}`: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("`{path}` is not an sdc batch export manifest: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error(
        "`{0}` already holds files that are not an earlier export's; export into a new directory (results of an earlier export stay importable there)"
    )]
    NotEmpty(PathBuf),
    #[error("request {custom_id} is {bytes} bytes as a JSONL line, more than the shard limit of {max} bytes")]
    TooLarge { custom_id: String, bytes: u64, max: u64 },
    #[error("no export manifest among the inputs: pass the directory `sdc batch export` wrote (it holds `{MANIFEST}`)")]
    NoManifest,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an export directory holds besides its shards.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub dataset: String,
    pub lock_sha256: String,
    pub stage: String,
    /// The stage's model alias and the id the lock resolved it to (every body's `model`).
    pub model: String,
    pub resolved: String,
    pub url: String,
    pub max_lines: u64,
    pub max_bytes: u64,
    pub requests: u64,
    pub shards: Vec<Shard>,
    /// Every exported `custom_id`, sorted.
    pub custom_ids: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shard {
    pub file: String,
    pub lines: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// Who exports what: the manifest's header.
pub struct ExportHeader {
    pub dataset: String,
    pub lock_sha256: String,
    pub stage: String,
    pub model: String,
    pub resolved: String,
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_lines: u64,
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_lines: DEFAULT_MAX_LINES, max_bytes: DEFAULT_MAX_BYTES }
    }
}

/// One request as an OpenAI Batch input line (with its newline).
pub fn line(p: &Pending) -> String {
    /// Fields in the order OpenAI's documentation shows them.
    #[derive(Serialize)]
    struct Line<'a> {
        custom_id: &'a str,
        method: &'static str,
        url: &'static str,
        body: &'a Value,
    }
    let line = Line { custom_id: &p.custom_id, method: "POST", url: URL, body: &p.body };
    let mut s = serde_json::to_string(&line).unwrap_or_default();
    s.push('\n');
    s
}

/// The shards' contents: lines in the given (key) order, a new shard whenever the next line would
/// pass either limit.
pub fn shard(pending: &[Pending], limits: Limits) -> Result<Vec<Vec<u8>>, BatchError> {
    let mut shards: Vec<Vec<u8>> = Vec::new();
    let mut lines = 0u64;
    for p in pending {
        let l = line(p);
        let bytes = l.len() as u64;
        if bytes > limits.max_bytes {
            return Err(BatchError::TooLarge { custom_id: p.custom_id.clone(), bytes, max: limits.max_bytes });
        }
        let fits = shards
            .last()
            .is_some_and(|s| lines < limits.max_lines.max(1) && s.len() as u64 + bytes <= limits.max_bytes);
        if !fits {
            shards.push(Vec::new());
            lines = 0;
        }
        if let Some(s) = shards.last_mut() {
            s.extend_from_slice(l.as_bytes());
            lines += 1;
        }
    }
    Ok(shards)
}

/// Writes `DIR/<stage>-00000.jsonl`… and `DIR/manifest.json` (last). `pending` must be in key
/// order (as [`crate::build::calls::Collected`] gives it): the same store and lock give the same
/// bytes. A directory holding an earlier export (its manifest and shards only) is replaced; one
/// holding anything else is refused.
pub fn write_export(
    dir: &Path,
    header: ExportHeader,
    pending: &[Pending],
    limits: Limits,
) -> Result<Manifest, BatchError> {
    prepare_dir(dir)?;
    let mut shards = Vec::new();
    for (k, bytes) in shard(pending, limits)?.into_iter().enumerate() {
        let file = format!("{}-{k:05}.jsonl", header.stage);
        let path = dir.join(&file);
        crate::store::write_file_atomically(&path, &bytes).map_err(|source| BatchError::Write { path, source })?;
        shards.push(Shard {
            file,
            lines: bytes.iter().filter(|b| **b == b'\n').count() as u64,
            bytes: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
        });
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        dataset: header.dataset,
        lock_sha256: header.lock_sha256,
        stage: header.stage,
        model: header.model,
        resolved: header.resolved,
        url: URL.into(),
        max_lines: limits.max_lines,
        max_bytes: limits.max_bytes,
        requests: pending.len() as u64,
        shards,
        custom_ids: pending.iter().map(|p| p.custom_id.clone()).collect(),
    };
    let mut bytes = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    bytes.push(b'\n');
    let path = dir.join(MANIFEST);
    crate::store::write_file_atomically(&path, &bytes).map_err(|source| BatchError::Write { path, source })?;
    Ok(manifest)
}

fn prepare_dir(dir: &Path) -> Result<(), BatchError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return std::fs::create_dir_all(dir).map_err(|source| BatchError::Write { path: dir.into(), source });
        }
        Err(source) => return Err(BatchError::Read { path: dir.into(), source }),
    };
    let mut names = BTreeSet::new();
    for e in entries {
        let e = e.map_err(|source| BatchError::Read { path: dir.into(), source })?;
        names.insert(e.file_name().to_string_lossy().into_owned());
    }
    if names.is_empty() {
        return Ok(());
    }
    let earlier = read_manifest(&dir.join(MANIFEST)).ok();
    let ours: BTreeSet<String> = earlier
        .iter()
        .flat_map(|m| m.shards.iter().map(|s| s.file.clone()))
        .chain(earlier.is_some().then(|| MANIFEST.to_string()))
        .collect();
    if !names.is_subset(&ours) {
        return Err(BatchError::NotEmpty(dir.into()));
    }
    for name in names {
        let path = dir.join(name);
        std::fs::remove_file(&path).map_err(|source| BatchError::Write { path, source })?;
    }
    Ok(())
}

pub fn read_manifest(path: &Path) -> Result<Manifest, BatchError> {
    let bytes = std::fs::read(path).map_err(|source| BatchError::Read { path: path.into(), source })?;
    let m: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| BatchError::Manifest { path: path.into(), message: e.to_string() })?;
    if m.format != FORMAT {
        return Err(BatchError::Manifest {
            path: path.into(),
            message: format!("format `{}`, not `{FORMAT}`", m.format),
        });
    }
    Ok(m)
}

/// One result line, as either engine writes it.
#[derive(Clone, Debug, PartialEq)]
pub struct ResultLine {
    pub custom_id: String,
    pub result: LineResult,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LineResult {
    /// A 200 with a readable chat completion; `created` is its Unix time, when given.
    Reply { response: ChatResponse, created: Option<u64> },
    /// The engine or the model server failed the request: its message.
    Failed(String),
    /// The batch's completion window ended before the request ran (OpenAI `batch_expired`).
    Expired(String),
}

/// Reads one line of an OpenAI Batch output or error file, or of vLLM `run_batch` output:
/// `{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}`, where
/// `error` is null, an object with `code` and `message` (OpenAI) or a string (vLLM); older vLLM
/// put the chat completion itself in `response`. The body is read by the online provider's
/// parser. `Err` only when the line is not a result line at all.
pub fn parse_line(text: &str) -> Result<ResultLine, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
    let custom_id = v.get("custom_id").and_then(Value::as_str).ok_or("the line has no string `custom_id`")?;
    let result = match v.get("error").filter(|e| !e.is_null()) {
        Some(error) => {
            let message = error.get("message").and_then(Value::as_str).map(str::to_string);
            let code = error.get("code").and_then(Value::as_str);
            match (code, error.as_str()) {
                (Some("batch_expired"), _) => LineResult::Expired(message.unwrap_or_else(|| "batch_expired".into())),
                (Some(code), _) => LineResult::Failed(format!("{code}: {}", message.unwrap_or_default())),
                (None, Some(s)) => LineResult::Failed(s.to_string()),
                (None, None) => LineResult::Failed(message.unwrap_or_else(|| error.to_string())),
            }
        }
        None => match v.get("response").filter(|r| !r.is_null()) {
            None => LineResult::Failed("the line has neither a response nor an error".into()),
            Some(response) => reply(response),
        },
    };
    Ok(ResultLine { custom_id: custom_id.to_string(), result })
}

fn reply(response: &Value) -> LineResult {
    let (status, body) = match response.get("status_code") {
        Some(s) => (s.as_u64().unwrap_or(0), response.get("body").unwrap_or(&Value::Null)),
        None => (200, response),
    };
    let text = body.to_string();
    if status != 200 {
        return LineResult::Failed(format!("HTTP {status}: {}", openai::server_message(&text)));
    }
    match openai::parse(&text) {
        Ok(response) => LineResult::Reply { response, created: body.get("created").and_then(Value::as_u64) },
        Err(e) => LineResult::Failed(e),
    }
}

/// What became of a request (or a line) on import.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Stored,
    /// Already in the store (an earlier import, or a result given twice across imports).
    AlreadyStored,
    Failed,
    Expired,
    /// Exported, but no input has a result line for it.
    Missing,
    /// A `custom_id` no manifest among the inputs exported: not stored.
    Unknown,
    /// A second result for a request already answered by an earlier line: ignored.
    Duplicate,
    /// Not a result line: named by file and line.
    Malformed,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Entry {
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_id: Option<String>,
    /// `file:line` of the result line, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    pub message: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ImportReport {
    pub manifests: Vec<String>,
    /// The stages the manifests exported, sorted.
    pub stages: Vec<String>,
    pub files: Vec<String>,
    pub exported: u64,
    /// Counts by kind.
    pub counts: BTreeMap<String, u64>,
    /// Every request or line that was not stored now (duplicates included), in input order.
    pub problems: Vec<Entry>,
}

impl ImportReport {
    pub fn count(&self, kind: Kind) -> u64 {
        self.counts.get(kind_name(kind)).copied().unwrap_or(0)
    }

    /// Whether every exported request is in the store and every line was understood.
    pub fn complete(&self) -> bool {
        [Kind::Failed, Kind::Expired, Kind::Missing, Kind::Unknown, Kind::Malformed].iter().all(|k| self.count(*k) == 0)
    }
}

pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Stored => "stored",
        Kind::AlreadyStored => "already_stored",
        Kind::Failed => "failed",
        Kind::Expired => "expired",
        Kind::Missing => "missing",
        Kind::Unknown => "unknown",
        Kind::Duplicate => "duplicate",
        Kind::Malformed => "malformed",
    }
}

/// Manifests by path, in the order the inputs name them.
type Manifests = Vec<(PathBuf, Manifest)>;

/// The manifests and result files among the inputs: a directory contributes its manifest (if
/// any) and its `*.jsonl` files other than the shards that manifest lists, by name; a file is a
/// result file, and its directory's manifest counts too.
fn inputs(paths: &[PathBuf]) -> Result<(Manifests, Vec<PathBuf>), BatchError> {
    let mut manifests: Manifests = Vec::new();
    let mut files = Vec::new();
    let add_manifest = |dir: &Path, manifests: &mut Manifests| -> Result<(), BatchError> {
        let path = dir.join(MANIFEST);
        if path.is_file() && !manifests.iter().any(|(p, _)| *p == path) {
            let m = read_manifest(&path)?;
            manifests.push((path, m));
        }
        Ok(())
    };
    for p in paths {
        if p.is_dir() {
            add_manifest(p, &mut manifests)?;
            let shards: BTreeSet<String> = manifests
                .iter()
                .filter(|(m, _)| m.parent() == Some(p.as_path()))
                .flat_map(|(_, m)| m.shards.iter().map(|s| s.file.clone()))
                .collect();
            let mut names = Vec::new();
            for e in std::fs::read_dir(p).map_err(|source| BatchError::Read { path: p.clone(), source })? {
                let e = e.map_err(|source| BatchError::Read { path: p.clone(), source })?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".jsonl") && !shards.contains(&name) && e.path().is_file() {
                    names.push(name);
                }
            }
            names.sort();
            files.extend(names.into_iter().map(|n| p.join(n)));
        } else {
            if let Some(dir) = p.parent() {
                add_manifest(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }, &mut manifests)?;
            }
            files.push(p.clone());
        }
    }
    Ok((manifests, files))
}

/// Imports result files into the store at `store_dir` (see [`inputs`] for what `paths` may be).
pub fn import(store_dir: &Path, paths: &[PathBuf]) -> Result<ImportReport, BatchError> {
    let (manifests, files) = inputs(paths)?;
    if manifests.is_empty() {
        return Err(BatchError::NoManifest);
    }
    let known: BTreeSet<&str> = manifests.iter().flat_map(|(_, m)| m.custom_ids.iter().map(String::as_str)).collect();
    let store = Store::open(store_dir)?;
    let mut responses = store.journal("responses")?;
    let mut report = ImportReport {
        manifests: manifests.iter().map(|(p, _)| p.display().to_string()).collect(),
        stages: manifests.iter().map(|(_, m)| m.stage.clone()).collect::<BTreeSet<_>>().into_iter().collect(),
        files: files.iter().map(|p| p.display().to_string()).collect(),
        exported: known.len() as u64,
        ..ImportReport::default()
    };
    // Per request: stored (where), or the first failure seen (a later success replaces it).
    let mut answered: BTreeMap<String, String> = BTreeMap::new();
    let mut failures: BTreeMap<String, Entry> = BTreeMap::new();
    let mut problems = Vec::new();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    for file in &files {
        let f = std::fs::File::open(file).map_err(|source| BatchError::Read { path: file.clone(), source })?;
        for (k, text) in std::io::BufReader::new(f).split(b'\n').enumerate() {
            let text = text.map_err(|source| BatchError::Read { path: file.clone(), source })?;
            let at = format!("{}:{}", file.display(), k + 1);
            let problem = |kind, custom_id: Option<&str>, message: String| Entry {
                kind,
                custom_id: custom_id.map(str::to_string),
                at: Some(at.clone()),
                message,
            };
            let text = match String::from_utf8(text) {
                Ok(t) if t.trim().is_empty() => continue,
                Ok(t) => t,
                Err(e) => {
                    let at_byte = e.utf8_error().valid_up_to();
                    problems.push(problem(Kind::Malformed, None, format!("not UTF-8 (invalid byte at {at_byte})")));
                    continue;
                }
            };
            let line = match parse_line(&text) {
                Ok(l) => l,
                Err(e) => {
                    problems.push(problem(Kind::Malformed, None, format!("not a batch result line: {e}")));
                    continue;
                }
            };
            let id = line.custom_id.as_str();
            if !known.contains(id) {
                problems.push(problem(
                    Kind::Unknown,
                    Some(id),
                    "no manifest among the inputs exported this custom_id; not stored".into(),
                ));
                continue;
            }
            if let Some(first) = answered.get(id) {
                problems.push(problem(Kind::Duplicate, Some(id), format!("already answered at {first}; ignored")));
                continue;
            }
            match line.result {
                LineResult::Reply { response, created } => {
                    let key = key_of(id).ok_or_else(|| BatchError::Manifest {
                        path: file.clone(),
                        message: format!("custom_id {id} is not a request key"),
                    })?;
                    failures.remove(id);
                    answered.insert(id.to_string(), at.clone());
                    if responses.contains(&key)? {
                        bump(&mut report, Kind::AlreadyStored);
                        continue;
                    }
                    let meta = CallMeta {
                        latency_ms: 0,
                        started_at_ms: created.map_or(now_ms, |s| s.saturating_mul(1000)),
                        attempts: 1,
                        endpoint: "batch".into(),
                        mode: "batch".into(),
                    };
                    let bytes = serde_json::to_vec(&StoredResponse { response, meta }).unwrap_or_default();
                    responses.put(key, &bytes)?;
                    bump(&mut report, Kind::Stored);
                }
                LineResult::Failed(message) | LineResult::Expired(message) if failures.contains_key(id) => {
                    problems.push(problem(Kind::Duplicate, Some(id), format!("another failure: {message}")));
                }
                LineResult::Failed(message) => {
                    failures.insert(id.to_string(), problem(Kind::Failed, Some(id), message));
                }
                LineResult::Expired(message) => {
                    failures.insert(id.to_string(), problem(Kind::Expired, Some(id), message));
                }
            }
        }
    }
    for id in &known {
        if answered.contains_key(*id) || failures.contains_key(*id) {
            continue;
        }
        if let Some(key) = key_of(id)
            && responses.contains(&key)?
        {
            bump(&mut report, Kind::AlreadyStored);
            continue;
        }
        let missing = Entry {
            kind: Kind::Missing,
            custom_id: Some(id.to_string()),
            at: None,
            message: "exported, but no input has a result for it".into(),
        };
        failures.insert(id.to_string(), missing);
    }
    // Failures by request id, then the lines that are not about a stored request, in input order.
    let mut all: Vec<Entry> = failures.into_values().collect();
    all.extend(problems);
    for e in &all {
        bump(&mut report, e.kind);
    }
    report.problems = all;
    Ok(report)
}

fn bump(report: &mut ImportReport, kind: Kind) {
    *report.counts.entry(kind_name(kind).to_string()).or_default() += 1;
}

fn key_of(custom_id: &str) -> Option<[u8; 32]> {
    hex::decode(custom_id).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const COMPLETION: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"m-1","system_fingerprint":"fp","choices":[{"index":0,"message":{"role":"assistant","content":"{\"decision\":\"pass\"}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;

    fn expect_reply(line: &str) -> (String, ChatResponse, Option<u64>) {
        match parse_line(line) {
            Ok(ResultLine { custom_id, result: LineResult::Reply { response, created } }) => {
                (custom_id, response, created)
            }
            other => panic!("not a reply: {other:?}"),
        }
    }

    #[test]
    fn openai_batch_output_lines_are_read_with_the_online_parser() {
        let line = format!(
            r#"{{"id":"batch_req_1","custom_id":"ab","response":{{"status_code":200,"request_id":"req_1","body":{COMPLETION}}},"error":null}}"#
        );
        let (id, r, created) = expect_reply(&line);
        assert_eq!(id, "ab");
        assert_eq!(r, openai::parse(COMPLETION).expect("parses"));
        assert_eq!((r.usage.prompt_tokens, r.usage.completion_tokens, r.model.as_str()), (12, 3, "m-1"));
        assert_eq!(r.system_fingerprint.as_deref(), Some("fp"));
        assert_eq!(created, Some(1_700_000_000));
    }

    #[test]
    fn openai_error_lines_are_failed_or_expired() {
        let expired = r#"{"id":"batch_req_2","custom_id":"cd","response":null,"error":{"code":"batch_expired","message":"This request could not be executed before the completion window expired."}}"#;
        assert!(
            matches!(parse_line(expired).expect("line").result, LineResult::Expired(m) if m.contains("completion window"))
        );
        let status = r#"{"id":"batch_req_3","custom_id":"ef","response":{"status_code":400,"request_id":"r","body":{"error":{"message":"Invalid schema","type":"invalid_request_error"}}},"error":null}"#;
        assert_eq!(parse_line(status).expect("line").result, LineResult::Failed("HTTP 400: Invalid schema".into()));
        let coded = r#"{"custom_id":"gh","response":null,"error":{"code":"server_error","message":"boom"}}"#;
        assert_eq!(parse_line(coded).expect("line").result, LineResult::Failed("server_error: boom".into()));
        let unreadable = r#"{"custom_id":"ij","response":{"status_code":200,"body":{"choices":[]}},"error":null}"#;
        assert!(
            matches!(parse_line(unreadable).expect("line").result, LineResult::Failed(m) if m.contains("no choices"))
        );
    }

    #[test]
    fn vllm_run_batch_lines_are_read_in_both_layouts() {
        let current = format!(
            r#"{{"id":"vllm-0f3c","custom_id":"ab","response":{{"status_code":200,"request_id":"vllm-batch-1","body":{COMPLETION}}},"error":null}}"#
        );
        assert_eq!(expect_reply(&current).1.content, r#"{"decision":"pass"}"#);
        // vLLM before 0.5 put the completion itself in `response`.
        let older = format!(r#"{{"id":"vllm-1","custom_id":"ab","response":{COMPLETION},"error":null}}"#);
        assert_eq!(expect_reply(&older).1, expect_reply(&current).1);
        let failed = r#"{"id":"vllm-2","custom_id":"cd","response":{"status_code":400,"request_id":"x","body":null},"error":"The model does not support guided decoding"}"#;
        assert_eq!(
            parse_line(failed).expect("line").result,
            LineResult::Failed("The model does not support guided decoding".into())
        );
    }

    #[test]
    fn lines_that_are_not_results_are_errors() {
        assert!(parse_line(r#"{"custom_id": "#).expect_err("truncated").starts_with("not JSON"));
        assert!(parse_line(r#"{"id":"x","response":null}"#).expect_err("no id").contains("custom_id"));
        assert!(matches!(parse_line(r#"{"custom_id":"a"}"#).expect("line").result, LineResult::Failed(_)));
    }

    fn pending(id: &str, text: &str) -> Pending {
        Pending { custom_id: id.into(), model: "m".into(), body: json!({"model": "m", "messages": [text]}) }
    }

    #[test]
    fn shards_respect_both_limits_and_keep_the_order() {
        let p: Vec<Pending> = (0..5).map(|k| pending(&format!("{k:02}"), "x")).collect();
        let one = line(&p[0]).len() as u64;
        let by_lines = shard(&p, Limits { max_lines: 2, max_bytes: 1 << 20 }).expect("shards");
        assert_eq!(by_lines.iter().map(|s| s.iter().filter(|b| **b == b'\n').count()).collect::<Vec<_>>(), [2, 2, 1]);
        let by_bytes = shard(&p, Limits { max_lines: 100, max_bytes: 3 * one }).expect("shards");
        assert_eq!(by_bytes.len(), 2);
        assert!(by_bytes.iter().all(|s| s.len() as u64 <= 3 * one));
        let joined: Vec<u8> = by_bytes.concat();
        assert_eq!(joined, p.iter().map(line).collect::<String>().into_bytes());
        let too_big = shard(&p, Limits { max_lines: 100, max_bytes: one - 1 });
        assert!(matches!(too_big, Err(BatchError::TooLarge { .. })));
        let l: Value = serde_json::from_str(line(&p[0]).trim_end()).expect("json");
        assert_eq!(
            (l["method"].as_str(), l["url"].as_str(), l["custom_id"].as_str()),
            (Some("POST"), Some(URL), Some("00"))
        );
    }
}
