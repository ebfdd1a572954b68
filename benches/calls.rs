//! Model-call throughput (`cargo bench --bench calls`), printing figures rather than asserting
//! them.
//!
//! A local OpenAI-compatible server (this binary, re-run as a child process so that its CPU is not
//! the client's) answers every chat completion after a fixed 50 ms. `sdc build` runs a spec whose
//! chunk filter is that server's model, over a generated corpus of about 20 000 chunks, with
//! 256 requests in flight: every request goes through the real build path (chunk loaded from the
//! spill, prompt rendered, request keyed, throttle, router, HTTP, reply validated, response
//! journalled, ledger). A bare reqwest client (this binary again, as another child) then sends the
//! very bodies the build sent, 256 at a time, and reads each reply as JSON. The figures are the
//! chunk-filter phase's wall and CPU time from the build report against the bare client's, and
//! both against the ideal N × latency / in-flight.
//!
//! Targets (issue 5): wall within 10 % of ideal and within 5 % of the bare client, CPU per
//! request at most 1.5 × the bare client's. `SDC_BENCH_REQUESTS` changes N (default 20 000),
//! `SDC_BENCH_ROUNDS` the rounds (default 3; medians are printed); `SDC_BENCH_DIR` keeps the
//! generated project.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SDC: &str = env!("CARGO_BIN_EXE_sdc");
const LATENCY: Duration = Duration::from_millis(50);
const IN_FLIGHT: usize = 256;
/// Chunks per generated page (one per section; see `page`).
const SECTIONS: u64 = 5;

fn main() {
    match std::env::var("SDC_BENCH_ROLE").as_deref() {
        Ok("server") => return serve(),
        Ok("bare") => return bare_client(),
        _ => {}
    }
    // `cargo bench` passes `--bench`; any other argument is a filter, as with libtest.
    if std::env::args().skip(1).any(|a| !a.starts_with('-') && !"calls".contains(a.as_str())) {
        return;
    }
    let requests: u64 =
        std::env::var("SDC_BENCH_REQUESTS").ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(20_000);
    let rounds: usize = std::env::var("SDC_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // `SDC_BENCH_DIR` keeps the generated project (to profile a build of it).
    let dir = tempfile::tempdir().expect("temp dir");
    let kept = std::env::var_os("SDC_BENCH_DIR").map(PathBuf::from);
    if let Some(kept) = &kept {
        let _ = std::fs::remove_dir_all(kept);
    }
    let project = kept.as_deref().unwrap_or(dir.path());
    let spec = make_project(&root, project, requests.div_ceil(SECTIONS));

    let log = project.join("bodies.jsonl");
    let server = Server::start(&log);
    // One verification environment for every round: each build has a fresh store, and making
    // the venv again took about 8 s a build (before the measured phase, but every round).
    let envs = project.join("envs").to_str().expect("utf-8 path").to_string();
    let env = [
        ("CURATE_MODEL_BASE_URL", server.base_url.clone()),
        ("CURATE_MODEL_NAME", "bench-curate".into()),
        ("SDC_ENV_DIR", envs),
    ];
    let lock = run(sdc(&["lock", &spec], &env));
    assert!(lock.status.success(), "sdc lock failed: {}", String::from_utf8_lossy(&lock.stderr));

    // A first build records the bodies the bare client will send; its figures are a warm-up.
    let first = build(&spec, &project.join("store-0"), &env);
    server.stop_logging();
    println!(
        "calls: warm-up build: {} requests in {:.2} s (chunk filter phase)",
        first.requests,
        first.wall.as_secs_f64()
    );
    let n = first.requests;
    let ideal = LATENCY.as_secs_f64() * n as f64 / IN_FLIGHT as f64;

    let mut bare_runs = Vec::new();
    let mut sdc_runs = Vec::new();
    for round in 0..rounds {
        let bare = bare(&server.base_url, &log);
        let built = build(&spec, &project.join(format!("store-{}", round + 1)), &env);
        assert_eq!(built.requests, n, "every build makes the same requests");
        println!(
            "calls: round {}: sdc {:.3} s, {:.0} µs CPU/request; bare reqwest {:.3} s, {:.0} µs CPU/request",
            round + 1,
            built.wall.as_secs_f64(),
            built.cpu.as_secs_f64() * 1e6 / n as f64,
            bare.wall.as_secs_f64(),
            bare.cpu.as_secs_f64() * 1e6 / n as f64,
        );
        bare_runs.push(bare);
        sdc_runs.push(built);
    }
    let median = |runs: &mut Vec<Phase>, f: fn(&Phase) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let sdc_wall = median(&mut sdc_runs, |p| p.wall.as_secs_f64());
    let bare_wall = median(&mut bare_runs, |p| p.wall.as_secs_f64());
    let sdc_cpu = median(&mut sdc_runs, |p| p.cpu.as_secs_f64()) * 1e6 / n as f64;
    let bare_cpu = median(&mut bare_runs, |p| p.cpu.as_secs_f64()) * 1e6 / n as f64;
    println!(
        "calls: N = {n} requests, {} ms latency, {IN_FLIGHT} in flight; ideal {ideal:.3} s; medians of {rounds} rounds:",
        LATENCY.as_millis()
    );
    println!(
        "calls:   sdc build path  {sdc_wall:.3} s = {:+.1} % of ideal, {:+.1} % of the bare client (targets <= +10 %, <= +5 %)",
        (sdc_wall / ideal - 1.0) * 100.0,
        (sdc_wall / bare_wall - 1.0) * 100.0
    );
    println!("calls:   bare reqwest    {bare_wall:.3} s = {:+.1} % of ideal", (bare_wall / ideal - 1.0) * 100.0);
    println!(
        "calls:   CPU per request: sdc {sdc_cpu:.0} µs, bare {bare_cpu:.0} µs = {:.2} x (target <= 1.5 x)",
        sdc_cpu / bare_cpu
    );
}

/// Wall and CPU time of the part of a run that makes the requests.
struct Phase {
    requests: u64,
    wall: Duration,
    cpu: Duration,
}

fn sdc(args: &[&str], env: &[(&str, String)]) -> Command {
    let mut c = Command::new(SDC);
    c.args(args).env("NO_COLOR", "1");
    for model in ["VISION", "QUESTION", "ANSWER", "CURATE"] {
        c.env_remove(format!("{model}_MODEL_BASE_URL"));
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn run(mut c: Command) -> std::process::Output {
    c.output().expect("run a child")
}

/// A clean build into `store`; the chunk filter phase's figures from its report.
fn build(spec: &str, store: &Path, env: &[(&str, String)]) -> Phase {
    let store = store.to_str().expect("utf-8 path");
    let args = ["build", spec, "--store", store, "--frozen", "--concurrency", "256", "--quiet", "--format", "json"];
    let out = run(sdc(&args, env));
    assert!(
        out.status.success(),
        "sdc build failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the report is JSON");
    let stage = report["stages"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["stage"] == "chunk_filter"))
        .expect("a chunk_filter stage");
    assert_eq!(stage["calls_failed"], 0, "{stage}");
    Phase {
        requests: stage["calls_made"].as_u64().unwrap_or(0),
        wall: Duration::from_millis(stage["wall_ms"].as_u64().unwrap_or(0)),
        cpu: Duration::from_millis(stage["cpu_ms"].as_u64().unwrap_or(0)),
    }
}

/// The generated project: `pages` MDX pages of `SECTIONS` chunk-sized sections, the shipped
/// prompts, and a spec whose only online model is the chunk filter's (every chunk is rejected,
/// so no later stage runs).
fn make_project(root: &Path, project: &Path, pages: u64) -> String {
    let pages_dir = project.join("docs/pages");
    std::fs::create_dir_all(&pages_dir).expect("mkdir");
    for p in 0..pages {
        std::fs::write(pages_dir.join(format!("p{p:06}.mdx")), page(p)).expect("write page");
    }
    std::fs::create_dir_all(project.join("prompts")).expect("mkdir");
    for entry in std::fs::read_dir(root.join("prompts")).expect("read prompts") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), project.join("prompts").join(entry.file_name())).expect("copy prompt");
    }
    std::fs::write(project.join("requirements.txt"), "").expect("write requirements");
    std::fs::create_dir_all(project.join("specs")).expect("mkdir");
    let spec = include_str!("scale.sds")
        .replace("TARGET", "1000")
        .replace(
            "model = env(\"CURATE_MODEL_NAME\", \"curate\")",
            "model = env(\"CURATE_MODEL_NAME\", \"curate\")\n  max_in_flight = 256\n  timeout = 60s",
        )
        .replace("zstd_level = 19", "zstd_level = 3");
    let path = project.join("specs/calls.sds");
    std::fs::write(&path, spec).expect("write spec");
    path.to_str().expect("utf-8 path").to_string()
}

/// A page of `SECTIONS` sections of about 1 000 characters: each is one chunk.
fn page(p: u64) -> String {
    let mut out = format!("---\ntitle: Page {p}\n---\n\n");
    for s in 0..SECTIONS {
        out.push_str(&format!("## Section {s} of page {p}\n\n"));
        for line in 0..8 {
            out.push_str(&format!(
                "Line {line} of section {s} on page {p} says something about amplitudes, bases and measurement in a circuit.\n"
            ));
        }
        out.push('\n');
    }
    out
}

/// The fake server as seen from the bench: its URL, and the child process behind it.
struct Server {
    base_url: String,
    child: Child,
}

impl Server {
    fn start(log: &Path) -> Server {
        let exe = std::env::current_exe().expect("this binary");
        let mut child = Command::new(exe)
            .env("SDC_BENCH_ROLE", "server")
            .env("SDC_BENCH_LOG", log)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("the server's address");
        Server { base_url: format!("http://{}/v1", line.trim()), child }
    }

    fn stop_logging(&self) {
        let addr = self.base_url.trim_start_matches("http://").trim_end_matches("/v1");
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(b"POST /bench/log-off HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").expect("send");
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server child: a thread per connection, HTTP/1.1 keep-alive, every chat completion answered
/// `reject` after `LATENCY`. While logging, each request body is appended to `SDC_BENCH_LOG`.
fn serve() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    println!("{}", listener.local_addr().expect("addr"));
    let _ = std::io::stdout().flush();
    let log_path = std::env::var_os("SDC_BENCH_LOG").map(PathBuf::from).expect("SDC_BENCH_LOG");
    let log = Arc::new(Mutex::new(std::io::BufWriter::new(std::fs::File::create(log_path).expect("create the log"))));
    let logging = Arc::new(AtomicBool::new(true));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let (log, logging) = (log.clone(), logging.clone());
        std::thread::spawn(move || connection(stream, &log, &logging));
    }
}

fn connection(stream: TcpStream, log: &Mutex<std::io::BufWriter<std::fs::File>>, logging: &AtomicBool) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    let content = serde_json::json!({"reason": "a benchmark chunk", "decision": "reject"}).to_string();
    let reply = serde_json::json!({
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "model": "bench-curate",
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 400, "completion_tokens": 12, "total_tokens": 412},
    })
    .to_string();
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let answer = if request_line.starts_with("GET /v1/models") {
            r#"{"object":"list","data":[{"id":"bench-curate"}]}"#.to_string()
        } else if request_line.starts_with("POST /bench/log-off") {
            logging.store(false, Ordering::SeqCst);
            let _ = log.lock().map(|mut l| l.flush());
            // Closing the connection is the reply.
            return;
        } else {
            std::thread::sleep(LATENCY);
            if logging.load(Ordering::SeqCst)
                && let Ok(mut l) = log.lock()
            {
                let _ = l.write_all(&body);
                let _ = l.write_all(b"\n");
            }
            reply.clone()
        };
        let head =
            format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", answer.len());
        if writer.write_all(head.as_bytes()).and_then(|_| writer.write_all(answer.as_bytes())).is_err() {
            return;
        }
    }
}

/// Runs the bare client child against the recorded bodies; its own figures come back on stdout.
fn bare(base_url: &str, bodies: &Path) -> Phase {
    let exe = std::env::current_exe().expect("this binary");
    let out = Command::new(exe)
        .env("SDC_BENCH_ROLE", "bare")
        .env("SDC_BENCH_URL", format!("{base_url}/chat/completions"))
        .env("SDC_BENCH_BODIES", bodies)
        .output()
        .expect("run the bare client");
    assert!(out.status.success(), "bare client failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the bare client's figures");
    Phase {
        requests: v["requests"].as_u64().unwrap_or(0),
        wall: Duration::from_secs_f64(v["wall_s"].as_f64().unwrap_or(0.0)),
        cpu: Duration::from_secs_f64(v["cpu_s"].as_f64().unwrap_or(0.0)),
    }
}

/// The bare client child: the same bodies, `IN_FLIGHT` at a time, through one reqwest client on
/// a multi-threaded tokio runtime; each reply is read and parsed as JSON, nothing else.
fn bare_client() {
    use futures::StreamExt;
    let url = std::env::var("SDC_BENCH_URL").expect("SDC_BENCH_URL");
    let path = std::env::var_os("SDC_BENCH_BODIES").expect("SDC_BENCH_BODIES");
    let text = std::fs::read_to_string(path).expect("read the bodies");
    let bodies: Vec<String> = text.lines().map(str::to_string).collect();
    sdc_runtime::provider::ensure_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let (wall, cpu, ok) = runtime.block_on(async {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
        let cpu = process_cpu();
        let start = Instant::now();
        let ok = futures::stream::iter(bodies.iter())
            .map(|body| {
                let client = &client;
                let url = &url;
                async move {
                    let reply = client
                        .post(url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .ok()?;
                    let bytes = reply.bytes().await.ok()?;
                    serde_json::from_slice::<serde_json::Value>(&bytes).ok()
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .filter(|r| futures::future::ready(r.is_some()))
            .count()
            .await;
        (start.elapsed(), process_cpu() - cpu, ok)
    });
    assert_eq!(ok, bodies.len(), "every request answered");
    println!("{}", serde_json::json!({"requests": ok, "wall_s": wall.as_secs_f64(), "cpu_s": cpu.as_secs_f64()}));
}

fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec.max(0) as u64, t.tv_nsec.clamp(0, 999_999_999) as u32)
}
