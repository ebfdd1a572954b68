//! The batch plane on the real binary: `sdc batch export` writes a stage's requests as
//! OpenAI-Batch JSONL, a fake batch runner (this file) answers them as the online test server
//! would, `sdc batch import` stores the results, and `sdc build` then completes with no online
//! call into an archive byte-identical to an online build's.

use std::path::Path;

use serde_json::{Value, json};

use crate::online::{Behaviour, CANARY, ChatServer, completion, files_containing, reply_for};
use crate::support::{Project, Run};

const SPEC: &str = "specs/build.sds";
const ARCHIVE: &str = "dist/states-1.0.0.tar.zst";
const LOCK: &str = "lockfiles/build.lock";
const LEDGER: &str = "dist/states-1.0.0.ledger.json";

/// The build fixture with a model of its own, `judge`, for curate and classify: those two stages
/// are the online ones, every other stage runs on the builtin generator.
fn judge_project() -> Project {
    let p = Project::build();
    p.edit(
        SPEC,
        "model curate {",
        "model judge {\n  provider = openai\n  base_url = env(\"JUDGE_MODEL_BASE_URL\")\n  api_key = env(\"JUDGE_MODEL_API_KEY\", \"\")\n  model = env(\"JUDGE_MODEL_NAME\", \"judge\")\n  offline_fallback = true\n  temperature = 0.1\n  price_input = 0.002\n  price_output = 0.008\n}\n\nmodel curate {",
    );
    p.edit(SPEC, "stage curate {\n  model = curate", "stage curate {\n  model = judge");
    p.edit(SPEC, "stage classify {\n  model = curate", "stage classify {\n  model = judge");
    p
}

/// A base URL nobody listens on: any call to it is refused.
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://{}/v1", l.local_addr().expect("addr"))
}

fn sdc(p: &Project, args: &[&str], env: &[(&str, &str)]) -> Run {
    p.sdc_env(args, env)
}

fn manifest(p: &Project, dir: &str) -> Value {
    serde_json::from_str(&p.read(&format!("{dir}/manifest.json"))).expect("the manifest is JSON")
}

fn ids(manifest: &Value) -> Vec<String> {
    manifest["custom_ids"].as_array().expect("ids").iter().map(|v| v.as_str().expect("id").to_string()).collect()
}

/// The exported request lines of a directory, in shard order.
fn requests(p: &Project, dir: &str) -> Vec<Value> {
    let m = manifest(p, dir);
    let mut out = Vec::new();
    for shard in m["shards"].as_array().expect("shards") {
        let text = p.read(&format!("{dir}/{}", shard["file"].as_str().expect("file")));
        out.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).expect("a JSON line")));
    }
    out
}

/// How the fake runner answers one request.
enum Answer {
    Ok,
    /// A non-200 from the engine's model server (OpenAI output file).
    ServerError,
    /// OpenAI's error file line for a request the completion window did not reach.
    Expired,
}

/// A fake batch runner: answers every exported request of `dir` as the online test server would
/// (same content, model id, fingerprint and usage), in OpenAI's or vLLM's output layout; writes
/// `output.jsonl` and, for expired requests, `errors.jsonl` into `dir`.
fn run_batch(p: &Project, dir: &str, vllm: bool, answer: impl Fn(&str) -> Answer) {
    let (mut output, mut errors) = (String::new(), String::new());
    for (k, req) in requests(p, dir).iter().enumerate() {
        assert_eq!((req["method"].as_str(), req["url"].as_str()), (Some("POST"), Some("/v1/chat/completions")));
        let id = req["custom_id"].as_str().expect("custom_id");
        let body = &req["body"];
        assert_eq!(body["model"], "fake-judge", "the body names the lock's resolved id");
        let line_id = if vllm { format!("vllm-{k}") } else { format!("batch_req_{k}") };
        let line = match answer(id) {
            Answer::Ok => {
                let content = reply_for(&body["response_format"]["json_schema"]["schema"]);
                let response = json!({"status_code": 200, "request_id": format!("req_{k}"), "body": completion("fake-judge", &format!("chatcmpl-b{k}"), &content)});
                json!({"id": line_id, "custom_id": id, "response": response, "error": null})
            }
            Answer::ServerError => json!({
                "id": line_id, "custom_id": id, "error": null,
                "response": {"status_code": 500, "request_id": format!("req_{k}"), "body": {"error": {"message": "the engine ran out of memory"}}},
            }),
            Answer::Expired => {
                let error = json!({"code": "batch_expired", "message": "This request could not be executed before the completion window expired."});
                errors.push_str(&json!({"id": line_id, "custom_id": id, "response": null, "error": error}).to_string());
                errors.push('\n');
                continue;
            }
        };
        output.push_str(&line.to_string());
        output.push('\n');
    }
    p.write(&format!("{dir}/output.jsonl"), &output);
    if !errors.is_empty() {
        p.write(&format!("{dir}/errors.jsonl"), &errors);
    }
}

fn stage<'r>(report: &'r Value, name: &str) -> &'r Value {
    report["stages"].as_array().and_then(|s| s.iter().find(|s| s["stage"] == name)).unwrap_or(&Value::Null)
}

fn n(v: &Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or(u64::MAX)
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", run.transcript()))
}

#[test]
fn a_batch_round_trip_builds_the_online_archive_byte_for_byte() {
    // A: online, against a local server whose answers are a function of the request.
    let a = judge_project();
    let server = ChatServer::start("fake-judge", Behaviour::Healthy);
    let online_env = [
        ("JUDGE_MODEL_BASE_URL", server.base_url.as_str()),
        ("JUDGE_MODEL_API_KEY", CANARY),
        ("JUDGE_MODEL_NAME", "fake-judge"),
    ];
    let run = sdc(&a, &["build", SPEC, "--format", "json"], &online_env);
    assert_eq!(run.code, 0, "{}", run.transcript());
    let online = json(&run);
    let online_calls = n(stage(&online, "curate"), "calls_made") + n(stage(&online, "classify"), "calls_made");
    assert!(n(stage(&online, "curate"), "calls_made") > 5, "{}", online["stages"]);
    assert_eq!(server.seen.chats.load(std::sync::atomic::Ordering::SeqCst) as u64, online_calls);
    assert_eq!(n(&online, "batch_calls"), 0);
    let archive_a = std::fs::read(a.path(ARCHIVE)).expect("archive A");

    // B: a fresh project and store with A's lock; the judge's server is unreachable throughout.
    let b = judge_project();
    b.write(LOCK, &a.read(LOCK));
    let dead = dead_url();
    let env =
        [("JUDGE_MODEL_BASE_URL", dead.as_str()), ("JUDGE_MODEL_API_KEY", CANARY), ("JUDGE_MODEL_NAME", "fake-judge")];
    let export =
        |stage: &str, dir: &str| sdc(&b, &["batch", "export", SPEC, "--stage", stage, "--out", dir, "--frozen"], &env);
    let import = |dirs: &[&str]| {
        let mut args = vec!["batch", "import", SPEC];
        args.extend_from_slice(dirs);
        sdc(&b, &args, &env)
    };

    // Classify needs curate's answers first: the command says so and fails.
    let early = export("classify", "batch/classify-0");
    assert_eq!(early.code, 1, "{}", early.transcript());
    assert!(early.stderr.contains("stage `curate` comes before it"), "{}", early.stderr);
    assert!(!b.path("batch/classify-0").exists());

    // First pass: one request fails on the engine, one expires.
    let first = export("curate", "batch/curate-1");
    assert_eq!(first.code, 0, "{}", first.transcript());
    let exported = ids(&manifest(&b, "batch/curate-1"));
    assert_eq!(exported.len() as u64, n(stage(&online, "curate"), "calls_made"), "one request per online curate call");
    let mut sorted = exported.clone();
    sorted.sort();
    assert_eq!(sorted, exported, "requests are in custom_id order");
    let (failing, expiring) = (exported[1].clone(), exported[2].clone());
    run_batch(&b, "batch/curate-1", false, |id| {
        if id == failing {
            Answer::ServerError
        } else if id == expiring {
            Answer::Expired
        } else {
            Answer::Ok
        }
    });
    let partial = import(&["batch/curate-1", "--format", "json"]);
    assert_eq!(partial.code, 1, "{}", partial.transcript());
    let report = json(&partial);
    assert_eq!(report["counts"]["stored"], exported.len() - 2, "{report}");
    assert_eq!((report["counts"]["failed"].as_u64(), report["counts"]["expired"].as_u64()), (Some(1), Some(1)));
    let problems = report["problems"].as_array().expect("problems");
    assert!(
        problems.iter().any(|e| e["custom_id"] == failing.as_str()
            && e["message"].as_str().is_some_and(|m| m.contains("ran out of memory"))),
        "{problems:?}"
    );

    // Re-export covers exactly those two; the runner answers them (vLLM's layout this time).
    let second = export("curate", "batch/curate-2");
    assert_eq!(second.code, 0, "{}", second.transcript());
    let mut again = vec![failing.clone(), expiring.clone()];
    again.sort();
    assert_eq!(ids(&manifest(&b, "batch/curate-2")), again);
    run_batch(&b, "batch/curate-2", true, |_| Answer::Ok);
    let done = import(&["batch/curate-2"]);
    assert_eq!(done.code, 0, "{}", done.transcript());
    assert!(done.stdout.contains("2 stored"), "{}", done.stdout);

    // Curate is complete; the command names the next stage, which then goes the same way.
    let nothing = export("curate", "batch/curate-3");
    assert_eq!(nothing.code, 0, "{}", nothing.transcript());
    assert!(nothing.stderr.contains("next: stage `classify`"), "{}", nothing.stderr);
    let classify = export("classify", "batch/classify-1");
    assert_eq!(classify.code, 0, "{}", classify.transcript());
    run_batch(&b, "batch/classify-1", true, |_| Answer::Ok);
    let done = import(&["batch/classify-1"]);
    assert_eq!(done.code, 0, "{}", done.transcript());
    let last = export("classify", "batch/classify-2");
    assert!(last.stderr.contains("every model call is in the store"), "{}", last.transcript());

    // The build: no online call (the server is unreachable and none is made), A's bytes.
    let run = sdc(&b, &["build", SPEC, "--frozen", "--format", "json"], &env);
    assert_eq!(run.code, 0, "{}", run.transcript());
    let batch = json(&run);
    for s in ["curate", "classify"] {
        assert_eq!(n(stage(&batch, s), "calls_made"), 0, "{s} made a call: {}", stage(&batch, s));
        assert_eq!(n(stage(&batch, s), "calls_failed"), 0, "{s}");
        assert_eq!(n(stage(&batch, s), "calls_served"), n(stage(&online, s), "calls_made"), "{s}");
    }
    let archive_b = std::fs::read(b.path(ARCHIVE)).expect("archive B");
    assert!(archive_a == archive_b, "the batch build's archive differs from the online build's");
    assert_eq!(batch["package"]["manifest_sha256"], online["package"]["manifest_sha256"]);

    // Accounting: batch calls at the batch price (half the online price by default), in the
    // report and the ledger file; provenance (inside the archive, identical) at the list price.
    assert_eq!(n(&batch, "batch_calls"), online_calls);
    let (list, billed) = (online["billed_cost"].as_f64().expect("cost"), batch["billed_cost"].as_f64().expect("cost"));
    assert!(list > 0.0 && (billed - list / 2.0).abs() < 1e-9, "online {list}, batch {billed}");
    let ledger: Value = serde_json::from_str(&b.read(LEDGER)).expect("ledger");
    assert_eq!(ledger["batch_calls"], online_calls);
    let curate = ledger["stages"].as_array().expect("stages").iter().find(|s| s["stage"] == "curate").expect("curate");
    assert_eq!((curate["batch_calls"].as_u64(), curate["online_calls"].as_u64()), (curate["calls"].as_u64(), Some(0)));
    let online_ledger: Value = serde_json::from_str(&a.read(LEDGER)).expect("ledger A");
    assert_eq!(online_ledger["batch_calls"], 0);
    assert_eq!(online_ledger["list_cost"], ledger["list_cost"]);

    // No key in any file sdc wrote: the shards, manifests, store, lock, archive and ledger.
    assert_eq!(files_containing(b.root(), CANARY.as_bytes()), Vec::<String>::new());
}

#[test]
fn import_reports_unknown_ids_and_malformed_lines_by_file_and_line() {
    let p = judge_project();
    let server = ChatServer::start("fake-judge", Behaviour::Healthy);
    let env = [("JUDGE_MODEL_BASE_URL", server.base_url.as_str()), ("JUDGE_MODEL_NAME", "fake-judge")];
    let export =
        |dir: &str| sdc(&p, &["batch", "export", SPEC, "--stage", "curate", "--out", dir, "--max-lines", "4"], &env);
    let run = export("batch/one");
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert_eq!(server.seen.chats.load(std::sync::atomic::Ordering::SeqCst), 0, "export sends no request");
    let m = manifest(&p, "batch/one");
    let exported = ids(&m);
    assert!(
        m["shards"].as_array().is_some_and(|s| s.len() > 1 && s.iter().all(|s| s["lines"].as_u64() <= Some(4))),
        "{m}"
    );

    // Deterministic: the same store and lock export the same bytes.
    let twice = export("batch/two");
    assert_eq!(twice.code, 0, "{}", twice.transcript());
    for f in std::fs::read_dir(p.path("batch/one")).expect("dir") {
        let name = f.expect("entry").file_name();
        let name = name.to_string_lossy();
        assert_eq!(p.read(&format!("batch/one/{name}")), p.read(&format!("batch/two/{name}")), "{name}");
    }
    // A directory with other files in it is not overwritten.
    p.write("batch/other/notes.txt", "mine");
    let refused = export("batch/other");
    assert_eq!(refused.code, 1, "{}", refused.transcript());
    assert!(refused.stderr.contains("export into a new directory"), "{}", refused.stderr);

    let first = &requests(&p, "batch/one")[0];
    let content = reply_for(&first["body"]["response_format"]["json_schema"]["schema"]);
    let good = json!({"id": "batch_req_0", "custom_id": exported[0], "response": {"status_code": 200, "request_id": "r", "body": completion("fake-judge", "c", &content)}, "error": null});
    let unknown = json!({"id": "batch_req_1", "custom_id": "0".repeat(64), "response": {"status_code": 200, "request_id": "r", "body": completion("fake-judge", "c", &content)}, "error": null});
    p.write("results/out.jsonl", &format!("{good}\n{unknown}\n{{\"custom_id\": \n\n{good}\n"));
    let run = sdc(&p, &["batch", "import", SPEC, "batch/one", "results/out.jsonl"], &env);
    assert_eq!(run.code, 1, "{}", run.transcript());
    let out = &run.stdout;
    assert!(out.contains("1 stored"), "{out}");
    assert!(out.contains(&format!("{} missing", exported.len() - 1)), "{out}");
    assert!(out.contains(&format!("unknown   results/out.jsonl:2: {}", "0".repeat(64))), "{out}");
    assert!(out.contains("malformed results/out.jsonl:3: not a batch result line: not JSON"), "{out}");
    assert!(out.contains("duplicate results/out.jsonl:5:"), "{out}");

    // Without a manifest nothing is imported, and the error says what to pass.
    let bare = sdc(&p, &["batch", "import", SPEC, "results/out.jsonl"], &env);
    assert_eq!(bare.code, 1, "{}", bare.transcript());
    assert!(bare.stderr.contains("no export manifest"), "{}", bare.stderr);

    // Only the stored one is left out of the next export.
    let rerun = export("batch/three");
    assert_eq!(rerun.code, 0, "{}", rerun.transcript());
    assert_eq!(ids(&manifest(&p, "batch/three")), exported[1..].to_vec());
    assert!(!Path::new(&p.path("batch/three/output.jsonl")).exists());
}
