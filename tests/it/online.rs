//! `sdc build` against a real HTTP server on 127.0.0.1: an OpenAI-compatible fake written for
//! the tests, answering every chat completion from the request's own `response_format` schema
//! and injecting faults on a fixed schedule (429 with Retry-After, 500, malformed JSON, a body
//! cut short). The build must complete with every item accounted for, the faults retried, and
//! the API key in no file sdc writes. Other behaviours: a rejected key, a server that dies
//! midway beside a healthy one, and a server that ignores `response_format`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use crate::support::Project;

const SPEC: &str = "specs/build.sds";
pub(crate) const CANARY: &str = "sk-canary-7f3a9c1e5b2d4086";

/// What the fake server saw.
#[derive(Default)]
pub(crate) struct Seen {
    pub(crate) chats: AtomicUsize,
    faults: AtomicUsize,
    unauthorised: AtomicUsize,
    with_schema: AtomicUsize,
    /// Requests carrying any `response_format`.
    with_format: AtomicUsize,
    /// Replies whose content breaks the schema (not retried: the item fails, typed).
    violations: AtomicUsize,
    violated: std::sync::atomic::AtomicBool,
}

pub(crate) struct ChatServer {
    pub(crate) base_url: String,
    pub(crate) seen: Arc<Seen>,
}

/// How the server answers chat completions.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Behaviour {
    /// Schema-valid replies, with faults on a fixed schedule.
    Faulty,
    /// 401 for every call, as for a wrong key.
    RefuseKey,
    /// Schema-valid replies, no faults.
    Healthy,
    /// Healthy for this many chat completions, then gone: the listener closes, so connections
    /// are refused (the one that found it dying is reset).
    DiesAfter(usize),
    /// Ignores `response_format`, as some servers do: it answers with JSON (in a ```json
    /// fence, as chat models like to) only when the system message states the schema, and with
    /// prose otherwise.
    IgnoresFormat,
}

impl ChatServer {
    pub(crate) fn start(model: &'static str, behaviour: Behaviour) -> ChatServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base_url = format!("http://{}/v1", listener.local_addr().expect("addr"));
        let seen = Arc::new(Seen::default());
        let shared = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if let Behaviour::DiesAfter(n) = behaviour
                    && shared.chats.load(Ordering::SeqCst) >= n
                {
                    break;
                }
                let seen = shared.clone();
                std::thread::spawn(move || serve(stream, model, behaviour, &seen));
            }
        });
        ChatServer { base_url, seen }
    }
}

fn serve(mut stream: TcpStream, model: &str, behaviour: Behaviour, seen: &Seen) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let send = |stream: &mut TcpStream, status: &str, extra: &str, body: &str| {
        let _ = stream.write_all(
            format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    };
    if head.starts_with("GET /v1/models") {
        send(&mut stream, "200 OK", "", &json!({"object": "list", "data": [{"id": model}]}).to_string());
        return;
    }
    let n = seen.chats.fetch_add(1, Ordering::SeqCst);
    if let Behaviour::DiesAfter(limit) = behaviour
        && n >= limit
    {
        // Dead mid-request: the connection closes without a reply, and is not counted.
        seen.chats.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    if behaviour == Behaviour::RefuseKey {
        send(&mut stream, "401 Unauthorized", "", r#"{"error":{"message":"Incorrect API key provided"}}"#);
        return;
    }
    if !head.lines().any(|l| l.eq_ignore_ascii_case(&format!("authorization: Bearer {CANARY}"))) {
        seen.unauthorised.fetch_add(1, Ordering::SeqCst);
    }
    // The fault schedule, per 100 calls: 10 × 429, 5 × 500, 3 malformed bodies, 2 cut short,
    // 2 timeouts (the test sets the model's timeout to 4 s) and 3 slow but good replies; and once
    // per build, a reply that breaks its schema (below).
    let fault = match n % 100 {
        _ if behaviour != Behaviour::Faulty => None,
        k if k % 10 == 3 => Some("429"),
        k if k % 20 == 7 => Some("500"),
        11 | 44 | 77 => Some("malformed"),
        29 | 88 => Some("short"),
        5 | 50 => Some("timeout"),
        _ => None,
    };
    if behaviour == Behaviour::Faulty && matches!(n % 100, 9 | 19 | 39) {
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    if let Some(f) = fault {
        seen.faults.fetch_add(1, Ordering::SeqCst);
        match f {
            "429" => {
                send(&mut stream, "429 Too Many Requests", "Retry-After: 0\r\n", r#"{"error":{"message":"slow down"}}"#)
            }
            "500" => send(&mut stream, "500 Internal Server Error", "", r#"{"error":{"message":"boom"}}"#),
            "malformed" => send(&mut stream, "200 OK", "", r#"{"choices": [{"message": {"content": "#),
            // Longer than the client waits; the reply never comes.
            "timeout" => std::thread::sleep(std::time::Duration::from_secs(6)),
            _ => {
                // Promise more than is sent, then hang up.
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\nConnection: close\r\n\r\n{\"choices\"",
                );
            }
        }
        return;
    }
    let request: Value = serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null);
    if request.get("response_format").is_some() {
        seen.with_format.fetch_add(1, Ordering::SeqCst);
    }
    let schema = &request["response_format"]["json_schema"]["schema"];
    if schema.is_object() {
        seen.with_schema.fetch_add(1, Ordering::SeqCst);
    }
    if behaviour == Behaviour::IgnoresFormat {
        let stated = request["messages"][0]["content"]
            .as_str()
            .and_then(|system| system.split_once("JSON schema:\n"))
            .and_then(|(_, schema)| serde_json::from_str::<Value>(schema).ok());
        let content = match stated {
            Some(schema) => format!("```json\n{}\n```", reply_for(&schema)),
            None => "Sure! I would say this one passes.".to_string(),
        };
        send(&mut stream, "200 OK", "", &completion(model, &format!("chatcmpl-{n}"), &content).to_string());
        return;
    }
    // The first pass/reject decision (image filter, chunk filter or curate: stages whose
    // failures drop the item) gets a reply that breaks its schema. Which call that is depends on
    // concurrency; which kind of stage does not.
    let decision = schema["properties"].as_object().is_some_and(|props| {
        props.values().any(|p| p["enum"].as_array().is_some_and(|v| v.iter().any(|v| v == "pass")))
    });
    let content = if behaviour == Behaviour::Faulty && decision && !seen.violated.swap(true, Ordering::SeqCst) {
        seen.violations.fetch_add(1, Ordering::SeqCst);
        json!({"verdict": "maybe"}).to_string()
    } else {
        reply_for(schema)
    };
    send(&mut stream, "200 OK", "", &completion(model, &format!("chatcmpl-{n}"), &content).to_string());
}

/// The chat completion the server sends (and the batch tests' fake runner writes): the model
/// answers as `{model}-0001` with a fixed fingerprint and usage.
pub(crate) fn completion(model: &str, id: &str, content: &str) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "model": format!("{model}-0001"),
        "system_fingerprint": "fp_test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    })
}

/// The environment that points the fixture's curate model at `base_url`, with the canary key.
fn curate_env(base_url: &str) -> [(&'static str, &str); 3] {
    [("CURATE_MODEL_BASE_URL", base_url), ("CURATE_MODEL_API_KEY", CANARY), ("CURATE_MODEL_NAME", "fake-curate")]
}

/// Checks that every kind's books close and returns how many items failed in all.
fn failed_items(report: &Value) -> u64 {
    let mut failed = 0;
    for a in report["accounting"].as_array().expect("accounting") {
        let n = |k: &str| a[k].as_u64().expect("count");
        assert_eq!(n("planned"), n("accepted") + n("rejected") + n("failed"), "{a}");
        failed += n("failed");
    }
    failed
}

/// A reply that satisfies the schema: `pass` for decisions, the first allowed value of other
/// enums, a sentence for free text.
pub(crate) fn reply_for(schema: &Value) -> String {
    let mut out = serde_json::Map::new();
    if let Some(props) = schema["properties"].as_object() {
        for (name, p) in props {
            let value = match p["enum"].as_array() {
                Some(values) if values.iter().any(|v| v == "pass") => json!("pass"),
                Some(values) => values.first().cloned().unwrap_or(json!("")),
                None => json!("The local test server found this clear, correct and self-contained."),
            };
            out.insert(name.clone(), value);
        }
    }
    Value::Object(out).to_string()
}

pub(crate) fn files_containing(root: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in walkdir::WalkDir::new(root).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file()) {
        if let Ok(bytes) = std::fs::read(entry.path())
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            hits.push(entry.path().display().to_string());
        }
    }
    hits
}

#[test]
fn a_build_through_a_faulty_local_server_accounts_for_every_item_and_leaks_no_key() {
    let p = Project::build();
    // Short enough that the schedule's timeouts cost seconds, not minutes, and long enough
    // that no good reply on a busy machine times out (which the counts below would notice).
    p.edit(
        SPEC,
        r#"model = env("CURATE_MODEL_NAME", "curate")"#,
        "model = env(\"CURATE_MODEL_NAME\", \"curate\")\n  timeout = 4s",
    );
    let server = ChatServer::start("fake-curate", Behaviour::Faulty);
    let env = curate_env(&server.base_url);
    let run = p.sdc_env(&["build", SPEC, "--store", ".sdc", "--format", "json"], &env);
    assert_eq!(run.code, 0, "build failed:\n{}", run.transcript());
    let report: Value = serde_json::from_str(&run.stdout).expect("the report is JSON");
    let failed_items = failed_items(&report);
    // The schema violation is the one item lost to the faults, and it is accounted as failed.
    assert_eq!(server.seen.violations.load(Ordering::SeqCst), 1);
    assert_eq!(failed_items, 1, "{}", report["accounting"]);
    let stages = report["stages"].as_array().expect("stages");
    let curate = stages.iter().find(|s| s["stage"] == "curate").expect("curate stage");
    assert!(curate["calls_made"].as_u64().unwrap_or(0) > 0, "{curate}");
    assert!(curate["prompt_tokens"].as_u64().unwrap_or(0) >= 100, "usage is recorded: {curate}");
    let made: u64 = stages.iter().map(|s| s["calls_made"].as_u64().unwrap_or(0)).sum();
    let seen = &server.seen;
    assert!(seen.faults.load(Ordering::SeqCst) > 0, "the schedule injected faults");
    assert_eq!(seen.unauthorised.load(Ordering::SeqCst), 0, "every call carries the key");
    let chats = seen.chats.load(Ordering::SeqCst);
    let failed: u64 = stages.iter().map(|s| s["calls_failed"].as_u64().unwrap_or(0)).sum();
    assert_eq!(failed, 0, "every fault was retried to success: {stages:?}");
    // The curate model serves these four stages; every fault cost exactly one more request.
    let curate_calls: u64 = ["image_filter", "chunk_filter", "curate", "classify"]
        .iter()
        .filter_map(|name| stages.iter().find(|s| s["stage"] == *name))
        .map(|s| s["calls_made"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(chats as u64, curate_calls + seen.faults.load(Ordering::SeqCst) as u64, "{made} calls in all");
    let retries: u64 = stages.iter().map(|s| s["retries"].as_u64().unwrap_or(0)).sum();
    assert_eq!(retries, seen.faults.load(Ordering::SeqCst) as u64, "the report counts every retry");
    assert_eq!(
        seen.with_schema.load(Ordering::SeqCst) + seen.faults.load(Ordering::SeqCst),
        chats,
        "every call sends its schema"
    );

    // The server answers as `fake-curate-0001` and the lock pins `fake-curate`: a warning, in the
    // report and in provenance; under `--locked` an error before any archive is written.
    let drift = report["package"]["drift"].as_array().expect("drift list");
    assert!(drift.iter().any(|d| d.as_str().is_some_and(|d| d.contains("fake-curate-0001"))), "{drift:?}");
    let locked = p.sdc_env(&["build", SPEC, "--store", ".sdc", "--locked"], &env);
    assert_eq!(locked.code, 1, "{}", locked.transcript());
    assert!(
        locked.stderr.contains("the lock pins `fake-curate`, replies came from `fake-curate-0001`"),
        "{}",
        locked.stderr
    );

    // The rebuild is served from the store: the server sees nothing more.
    let again = p.sdc_env(&["build", SPEC, "--store", ".sdc", "--format", "json"], &env);
    assert_eq!(again.code, 0, "{}", again.transcript());
    assert_eq!(server.seen.chats.load(Ordering::SeqCst), chats);

    // The key is in no file sdc wrote, in the lock, the store, the archive's contents or the output.
    // Unpacked with sdc's own reader, so the test needs no `zstd` tool on the machine.
    let archive = std::fs::File::open(p.path("dist/states-1.0.0.tar.zst")).expect("archive");
    let unpacked = sdc_runtime::archive::unpack_archive(archive, &p.path("unpacked"), &Default::default())
        .expect("unpack the archive");
    assert!(unpacked.is_ok(), "{unpacked:?}");
    assert_eq!(files_containing(p.root(), CANARY.as_bytes()), Vec::<String>::new());
    assert!(!run.stdout.contains(CANARY) && !run.stderr.contains(CANARY));
}

#[test]
fn a_rejected_key_stops_the_build_at_once_with_the_servers_message() {
    let server = ChatServer::start("fake-curate", Behaviour::RefuseKey);
    let base_url = server.base_url.clone();
    let p = Project::build();
    let env = [
        ("CURATE_MODEL_BASE_URL", base_url.as_str()),
        ("CURATE_MODEL_API_KEY", "wrong"),
        ("CURATE_MODEL_NAME", "fake-curate"),
    ];
    let run = p.sdc_env(&["build", SPEC, "--store", ".sdc", "--format", "json"], &env);
    // Every call would fail: the build stops at the first refusal, with the server's message,
    // without retrying and without writing an archive.
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(run.stderr.contains("the build stopped"), "{}", run.transcript());
    assert!(run.stderr.contains("HTTP 401: Incorrect API key provided"), "{}", run.transcript());
    assert!(!run.stderr.contains("wrong"), "the key is never printed: {}", run.stderr);
    let made = server.seen.chats.load(Ordering::SeqCst);
    assert!((1..=64).contains(&made), "{made} requests: only the calls already in flight, each once");
    assert!(!p.path("dist/states-1.0.0.tar.zst").exists());
}

#[test]
fn a_build_completes_when_one_of_two_servers_dies_midway() {
    let p = Project::build();
    p.edit(
        SPEC,
        r#"base_url = env("CURATE_MODEL_BASE_URL")"#,
        r#"base_url = [env("CURATE_MODEL_BASE_URL"), env("CURATE_MODEL_BASE_URL_2")]"#,
    );
    let dying = ChatServer::start("fake-curate", Behaviour::DiesAfter(10));
    let steady = ChatServer::start("fake-curate", Behaviour::Healthy);
    let env = [
        ("CURATE_MODEL_BASE_URL", dying.base_url.as_str()),
        ("CURATE_MODEL_BASE_URL_2", steady.base_url.as_str()),
        ("CURATE_MODEL_API_KEY", CANARY),
        ("CURATE_MODEL_NAME", "fake-curate"),
    ];
    let run = p.sdc_env(&["build", SPEC, "--store", ".sdc", "--format", "json"], &env);
    assert_eq!(run.code, 0, "build failed:\n{}", run.transcript());
    let report: Value = serde_json::from_str(&run.stdout).expect("the report is JSON");
    assert_eq!(failed_items(&report), 0, "no item failed because a server died: {}", report["accounting"]);
    let stages = report["stages"].as_array().expect("stages");
    let made: u64 = ["image_filter", "chunk_filter", "curate", "classify"]
        .iter()
        .filter_map(|name| stages.iter().find(|s| s["stage"] == *name))
        .map(|s| s["calls_made"].as_u64().unwrap_or(0))
        .sum();
    let died_after = dying.seen.chats.load(Ordering::SeqCst) as u64;
    let survivor = steady.seen.chats.load(Ordering::SeqCst) as u64;
    assert_eq!(died_after, 10, "both servers shared the load until one died");
    assert!(made > 30, "the build went on well past the death: {made} calls");
    assert_eq!(survivor + died_after, made, "every call was answered once, by one of the two");
}

#[test]
fn a_server_that_ignores_response_format_is_served_the_schema_in_the_prompt_when_the_spec_says_so() {
    let p = Project::build();
    p.edit(
        SPEC,
        r#"model = env("CURATE_MODEL_NAME", "curate")"#,
        "model = env(\"CURATE_MODEL_NAME\", \"curate\")\n  structured_output = prompt",
    );
    let server = ChatServer::start("fake-curate", Behaviour::IgnoresFormat);
    let env = curate_env(&server.base_url);
    let run = p.sdc_env(&["build", SPEC, "--store", ".sdc", "--format", "json"], &env);
    assert_eq!(run.code, 0, "build failed:\n{}", run.transcript());
    let report: Value = serde_json::from_str(&run.stdout).expect("the report is JSON");
    assert_eq!(failed_items(&report), 0, "every fenced JSON reply validated: {}", report["accounting"]);
    let chats = server.seen.chats.load(Ordering::SeqCst);
    assert!(chats > 30, "the curate model's four stages went to the server: {chats} calls");
    assert_eq!(server.seen.with_format.load(Ordering::SeqCst), 0, "no request carried response_format");
    let samples = report["package"]["samples"].as_u64().unwrap_or(0);
    assert!(samples > 0, "items passed the server's decisions: {}", report["package"]);
}

#[test]
fn reproduce_live_asks_the_server_again_and_the_store_replay_asks_nothing() {
    let p = Project::build();
    let server = ChatServer::start("fake-curate", Behaviour::Healthy);
    let env = curate_env(&server.base_url);
    let built = p.sdc_env(&["build", SPEC, "--store", ".sdc", "--quiet"], &env);
    assert_eq!(built.code, 0, "{}", built.transcript());
    let made = server.seen.chats.load(Ordering::SeqCst);
    assert!(made > 30, "{made} calls");
    let archive = "dist/states-1.0.0.tar.zst";
    let lock = "lockfiles/build.lock";

    // Replaying the store asks the server nothing and gives the same bytes.
    let replay = p.sdc_env(&["reproduce", lock, "--archive", archive, "--store", ".sdc"], &env);
    assert_eq!(replay.code, 0, "{}", replay.transcript());
    assert!(replay.stdout.contains("bit-identical"), "{}", replay.stdout);
    assert_eq!(server.seen.chats.load(Ordering::SeqCst), made, "a replay makes no request");

    // `--live` asks every call again, in a fresh store; the server answers alike, so the bytes agree.
    let live = p.sdc_env(&["reproduce", lock, "--archive", archive, "--live"], &env);
    assert_eq!(live.code, 0, "{}", live.transcript());
    assert!(live.stdout.contains("bit-identical"), "{}", live.stdout);
    assert_eq!(server.seen.chats.load(Ordering::SeqCst), 2 * made, "every call was asked again");
    assert!(!live.stdout.contains(CANARY) && !live.stderr.contains(CANARY));

    // A server whose replies name another model: the live rebuild differs, and the diff says so.
    let other = ChatServer::start("other-curate", Behaviour::Healthy);
    let env = curate_env(&other.base_url);
    let drifted = p.sdc_env(&["reproduce", lock, "--archive", archive, "--live"], &env);
    assert_eq!(drifted.code, 1, "{}", drifted.transcript());
    assert_eq!(other.seen.chats.load(Ordering::SeqCst), made, "every call went to the other server");
    assert!(
        drifted.stdout.contains("other-curate-0001"),
        "the diff names the model that answered:\n{}",
        drifted.stdout
    );
}
