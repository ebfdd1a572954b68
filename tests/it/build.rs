//! `sdc build` end to end on the real binary: byte identity across clean builds and
//! concurrency, resumption after `kill -9`, the response store after a one-prompt edit, and the
//! report's accounting.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::{Project, Run, assert_books_close};

const SPEC: &str = "specs/build.sds";
const ARCHIVE: &str = "dist/states-1.0.0.tar.zst";

fn build(p: &Project, store: &str, extra: &[&str]) -> (Run, Value) {
    let mut args = vec!["build", SPEC, "--store", store, "--format", "json"];
    args.extend_from_slice(extra);
    let run = p.sdc(&args);
    assert_eq!(run.code, 0, "build failed:\n{}", run.transcript());
    let report: Value = serde_json::from_str(&run.stdout).expect("the report is JSON");
    (run, report)
}

fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).expect("archive exists")))
}

fn stage<'r>(report: &'r Value, name: &str) -> &'r Value {
    report["stages"].as_array().and_then(|s| s.iter().find(|s| s["stage"] == name)).unwrap_or(&Value::Null)
}

fn total(report: &Value, field: &str) -> u64 {
    report[field].as_u64().unwrap_or(u64::MAX)
}

#[test]
fn clean_builds_are_byte_identical_whatever_the_concurrency() {
    let p = Project::build();
    let (_, one) = build(&p, ".sdc-one", &["--concurrency", "1", "--threads", "1"]);
    let first = sha256_file(&p.path(ARCHIVE));
    let (_, many) = build(&p, ".sdc-many", &["--concurrency", "32", "--threads", "4"]);
    assert_eq!(sha256_file(&p.path(ARCHIVE)), first, "concurrency changed the archive");
    assert_eq!(one["package"]["manifest_sha256"], many["package"]["manifest_sha256"]);
    assert_eq!(one["package"]["reused"], false);
    assert_eq!(many["package"]["reused"], false);
    assert_books_close(&one);
    assert!(total(&one, "calls_made") > 0);
    assert_eq!(total(&one, "calls_served"), 0);

    // The builtin generator yields every task type, with and without images.
    for row in one["package"]["per_type"].as_array().expect("per type") {
        assert!(row[1].as_u64().unwrap_or(0) > 0, "no text-only sample of type {}", row[0]);
        assert!(row[2].as_u64().unwrap_or(0) > 0, "no sample with an image of type {}", row[0]);
    }
    let offline = one["offline"].as_array().expect("offline");
    assert_eq!(offline.len(), 4, "every model fell back to the builtin generator: {offline:?}");
}

#[test]
fn a_rebuild_is_served_from_the_store_and_reuses_the_archive() {
    let p = Project::build();
    let (_, first) = build(&p, ".sdc", &[]);
    let sha = sha256_file(&p.path(ARCHIVE));
    std::fs::remove_file(p.path(ARCHIVE)).expect("remove archive");
    let (_, second) = build(&p, ".sdc", &[]);
    assert_eq!(sha256_file(&p.path(ARCHIVE)), sha);
    assert_eq!(total(&second, "calls_made"), 0, "nothing may be asked twice");
    assert_eq!(total(&second, "calls_served"), total(&first, "calls_made"));
    assert_eq!(stage(&second, "verification")["calls_made"], 0, "no code runs twice");
    assert_eq!(second["package"]["reused"], true);

    // `sdc verify` recomputes every hash; a damaged archive is refused, naming the problem.
    let ok = p.sdc(&["verify", ARCHIVE]);
    assert_eq!(ok.code, 0, "{}", ok.transcript());
    assert!(ok.stdout.contains(first["package"]["manifest_sha256"].as_str().expect("manifest")), "{}", ok.stdout);
    let mut bytes = std::fs::read(p.path(ARCHIVE)).expect("archive");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(p.path("damaged.tar.zst"), bytes).expect("write");
    let bad = p.sdc(&["verify", "damaged.tar.zst"]);
    assert_eq!(bad.code, 1, "{}", bad.transcript());
    assert!(bad.stderr.contains("damaged.tar.zst"), "{}", bad.stderr);
}

#[test]
fn editing_one_prompt_reruns_exactly_the_calls_it_renders() {
    let p = Project::build();
    let (_, before) = build(&p, ".sdc", &[]);
    let curate_calls = stage(&before, "curate")["calls_made"].as_u64().expect("curate calls");
    assert!(curate_calls > 0);
    p.edit("prompts/curate.j2", "When in doubt, reject.", "When in doubt, reject. Be brief.");
    let (run, after) = build(&p, ".sdc", &[]);
    assert!(run.stderr.contains("prompt:curate.j2"), "the lock update is reported:\n{}", run.stderr);
    for s in after["stages"].as_array().expect("stages") {
        let made = s["calls_made"].as_u64().unwrap_or(0);
        match s["stage"].as_str() {
            Some("curate") => assert_eq!(made, curate_calls, "every curate call, and only those"),
            // The builtin curator decides the same, so nothing downstream changes.
            Some(other) => assert_eq!(made, 0, "stage {other} made calls after a curate-only edit"),
            None => {}
        }
    }
    assert_eq!(total(&after, "calls_made"), curate_calls);
}

/// Kills the real binary with SIGKILL at several moments and resumes; the archive must be the
/// one an uninterrupted build writes.
#[test]
fn kill_nine_and_resume_writes_the_same_archive() {
    let reference = Project::build();
    build(&reference, ".sdc", &["--concurrency", "4"]);
    let expected = sha256_file(&reference.path(ARCHIVE));

    let p = Project::build();
    let mut killed = 0;
    for delay_ms in [150u64, 400, 700, 1000, 1500, 2200] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sdc"))
            .args(["build", SPEC, "--store", ".sdc", "--concurrency", "4", "--quiet"])
            .current_dir(p.root())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SDC_ENV_DIR", crate::support::shared_env_dir())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn sdc");
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().expect("poll").is_none() {
            child.kill().expect("SIGKILL");
            killed += 1;
        }
        let _ = child.wait();
    }
    assert!(killed >= 2, "the build finished too fast to be interrupted ({killed} kills)");
    let (_, report) = build(&p, ".sdc", &["--concurrency", "4"]);
    assert_books_close(&report);
    assert_eq!(sha256_file(&p.path(ARCHIVE)), expected, "a resumed build must write the uninterrupted build's bytes");
}
