//! The real `sdc` binary on the fixture project.

use crate::support::{ModelServer, Project};

const SPEC: &str = "specs/mini.sds";
const LOCK: &str = "lockfiles/mini.lock";

/// The lock with the machine-dependent Python version and server port redacted.
fn redacted_lock(p: &Project) -> String {
    p.read(LOCK)
        .lines()
        .map(|l| {
            if l.starts_with("python_version = ") {
                "python_version = \"[VERSION]\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn check_valid_and_invalid() {
    let p = Project::new();
    let ok = p.sdc(&["check", SPEC]);
    assert_eq!(ok.code, 0, "{}", ok.transcript());
    p.edit(SPEC, "temperature = 0.2", "temprature = 0.2");
    let bad = p.sdc(&["check", SPEC]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("╭─[specs/mini.sds:27:3]"), "{}", bad.stderr);
    assert!(bad.stderr.contains("did you mean `temperature`?"), "{}", bad.stderr);
    assert!(!bad.stderr.contains('\u{1b}'), "NO_COLOR output must not contain escape codes");
    let json = p.sdc(&["check", SPEC, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(v["errors"], 1);
    assert_eq!(v["diagnostics"][0]["code"], "E0102");
    assert_eq!(v["diagnostics"][0]["line"], 27);
}

#[test]
fn usage_errors_exit_2() {
    let p = Project::new();
    assert_eq!(p.sdc(&["frobnicate"]).code, 2);
    assert_eq!(p.sdc(&["build", SPEC, "--locked", "--frozen"]).code, 2);
    assert_eq!(p.sdc(&["lock", SPEC, "--update", "colour:red"]).code, 2);
}

#[test]
fn fmt_check_and_rewrite() {
    let p = Project::new();
    assert_eq!(p.sdc(&["fmt", "--check", SPEC]).code, 0);
    p.edit(SPEC, "  seed = 7\n", "    seed   =   7   # the build seed\n");
    p.edit(
        SPEC,
        "  include = [\"nb/*.ipynb\", \"pages/*.mdx\"]",
        "  include = [\n\"nb/*.ipynb\",\n  \"pages/*.mdx\",\n]",
    );
    let check = p.sdc(&["fmt", "--check", SPEC]);
    assert_eq!(check.code, 1);
    assert!(check.stderr.contains("would reformat specs/mini.sds"), "{}", check.stderr);
    assert_eq!(p.sdc(&["fmt", SPEC]).code, 0);
    let text = p.read(SPEC);
    assert!(text.contains("  seed = 7  # the build seed\n"), "{text}");
    assert!(text.contains("  include = [\"nb/*.ipynb\", \"pages/*.mdx\"]\n"), "{text}");
    assert_eq!(p.sdc(&["fmt", "--check", SPEC]).code, 0);
}

#[test]
fn lock_is_byte_identical_when_nothing_changed() {
    let p = Project::new();
    let first = p.sdc(&["lock", SPEC]);
    assert_eq!(first.code, 0, "{}", first.transcript());
    assert!(
        first.stderr.contains("note: model `local` uses the builtin offline generator (`SDC_TEST_BASE_URL` is unset)"),
        "{}",
        first.stderr
    );
    let bytes = std::fs::read(p.path(LOCK)).expect("lock");
    let second = p.sdc(&["lock", SPEC]);
    assert_eq!(second.code, 0);
    assert!(second.stderr.contains("lockfiles/mini.lock is up to date"), "{}", second.stderr);
    assert_eq!(std::fs::read(p.path(LOCK)).expect("lock"), bytes);
    // Formatting and comments never make a lock stale.
    p.edit(SPEC, "  seed = 7\n", "  # the seed of everything\n  seed   =  7\n");
    assert_eq!(p.sdc(&["lock", SPEC]).code, 0);
    assert_eq!(std::fs::read(p.path(LOCK)).expect("lock"), bytes);
    insta::assert_snapshot!("fixture_lock", redacted_lock(&p));
}

#[test]
fn a_missing_verification_python_is_an_error_at_lock_time() {
    let p = Project::new();
    p.edit(SPEC, "python = \"python3\"", "python = \"sdc-no-such-python3\"");
    let run = p.sdc(&["lock", SPEC]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(run.stderr.contains("python `sdc-no-such-python3` cannot be run"), "{}", run.stderr);
    assert!(run.stderr.contains("specs/mini.sds:86:"), "{}", run.stderr);
    assert!(!p.path(LOCK).exists(), "no lock is written");
}

#[test]
fn locked_lists_every_drifted_entry_and_changes_nothing() {
    let p = Project::new();
    assert_eq!(p.sdc(&["lock", SPEC]).code, 0);
    let before = p.read(LOCK);
    p.edit("prompts/curate.j2", "system:", "system (edited):");
    p.edit("docs/pages/gates.mdx", "superposition", "an equal superposition");
    p.write("docs/nb/grover.ipynb", &p.read("docs/nb/bell.ipynb").replace("Bell", "Grover"));
    p.edit(SPEC, "temperature = 0.2", "temperature = 0.3");
    let run = p.sdc(&["lock", SPEC, "--locked"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("locked_drift", run.stderr);
    assert_eq!(p.read(LOCK), before, "--locked must not write the lock");
    let build = p.sdc(&["build", SPEC, "--locked"]);
    assert_eq!(build.code, 1);
    assert!(build.stderr.contains("~ prompt:curate.j2"), "{}", build.stderr);
    // Without --locked the lock is updated and the changes are listed.
    let update = p.sdc(&["lock", SPEC]);
    assert_eq!(update.code, 0);
    assert!(update.stderr.contains("+ source:docs/nb/grover.ipynb"), "{}", update.stderr);
    assert_eq!(p.sdc(&["lock", SPEC, "--locked"]).code, 0);
}

#[test]
fn frozen_uses_the_lock_as_is() {
    let p = Project::new();
    let missing = p.sdc(&["build", SPEC, "--frozen"]);
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("`--frozen` needs a lockfile"), "{}", missing.stderr);
    assert_eq!(p.sdc(&["lock", SPEC]).code, 0);
    let before = p.read(LOCK);
    p.edit("prompts/curate.j2", "system:", "system (edited):");
    // `--frozen` neither checks nor rewrites the lock, but the executor will not render a prompt
    // the lock does not describe: it stops before any call, naming the template.
    let frozen = p.sdc(&["build", SPEC, "--frozen"]);
    assert_eq!(frozen.code, 1, "{}", frozen.stderr);
    assert!(frozen.stderr.contains("prompt template `curate.j2` changed since the lock"), "{}", frozen.stderr);
    assert!(!frozen.stderr.contains("~ prompt:curate.j2"), "no drift listing: {}", frozen.stderr);
    assert_eq!(p.read(LOCK), before);
}

#[test]
fn update_re_resolves_one_entry_only() {
    let p = Project::new();
    assert_eq!(p.sdc(&["lock", SPEC]).code, 0);
    p.edit("prompts/curate.j2", "system:", "system (edited):");
    p.edit("prompts/classify.j2", "system:", "system (edited):");
    let run = p.sdc(&["lock", SPEC, "--update", "prompt:curate.j2"]);
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert!(run.stderr.contains("updated lockfiles/mini.lock (1 change):"), "{}", run.stderr);
    assert!(run.stderr.contains("~ prompt:curate.j2: "), "{}", run.stderr);
    assert!(run.stderr.contains(" → "), "{}", run.stderr);
    // classify.j2 changed too but was not asked for, so the lock still drifts on it alone.
    let locked = p.sdc(&["lock", SPEC, "--locked"]);
    assert_eq!(locked.code, 1);
    assert!(
        locked.stderr.contains("~ prompt:classify.j2") && !locked.stderr.contains("~ prompt:curate.j2"),
        "{}",
        locked.stderr
    );
}

#[test]
fn models_resolve_through_the_server_and_keys_stay_secret() {
    let server = ModelServer::start(&["tiny", "other"]);
    let p = Project::new();
    let canary = "sk-canary-0123456789abcdef";
    let env = [("SDC_TEST_BASE_URL", server.base_url.as_str()), ("SDC_TEST_API_KEY", canary)];
    let run = p.sdc_env(&["lock", SPEC], &env);
    assert_eq!(run.code, 0, "{}", run.transcript());
    let lock = p.read(LOCK);
    let port = server.base_url.trim_start_matches("http://127.0.0.1:").trim_end_matches("/v1");
    assert!(
        lock.contains(&format!("endpoints = [\"127.0.0.1:{port}\"]\nrequested = \"tiny\"\nresolved = \"tiny\"")),
        "{lock}"
    );
    assert!(!lock.contains(canary) && !run.stderr.contains(canary) && !run.stdout.contains(canary));
    let seen = server.requests.lock().expect("lock").clone();
    assert!(seen[0].starts_with("GET /v1/models "), "{seen:?}");
    assert!(
        seen[0].contains(&format!("authorization: Bearer {canary}"))
            || seen[0].contains(&format!("Authorization: Bearer {canary}"))
    );
    // A pinned model is not asked again; --update asks again.
    let calls = server.request_count();
    assert_eq!(p.sdc_env(&["lock", SPEC], &env).code, 0);
    assert_eq!(server.request_count(), calls);
    assert_eq!(p.sdc_env(&["lock", SPEC, "--update", "model:local"], &env).code, 0);
    assert_eq!(server.request_count(), calls + 1);
}

#[test]
fn a_model_the_server_does_not_serve_is_an_error() {
    let server = ModelServer::start(&["something-else"]);
    let p = Project::new();
    let run = p.sdc_env(&["lock", SPEC], &[("SDC_TEST_BASE_URL", server.base_url.as_str())]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("does not serve `tiny`") && run.stderr.contains("it serves: `something-else`"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unset_env_var_without_default_is_an_error_naming_it() {
    let p = Project::new();
    p.edit(SPEC, "  offline_fallback = true\n", "");
    let run = p.sdc(&["lock", SPEC]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("environment variable `SDC_TEST_BASE_URL` is not set"), "{}", run.stderr);
    assert!(run.stderr.contains("╭─[specs/mini.sds:"), "{}", run.stderr);
    assert!(!p.path(LOCK).exists());
}

#[test]
fn plan_prints_counts_calls_and_cost() {
    let p = Project::new();
    let human = p.sdc(&["plan", SPEC]);
    assert_eq!(human.code, 0, "{}", human.transcript());
    assert!(human.stdout.contains("stages     transcribe → plan → answer → curate → classify"), "{}", human.stdout);
    let json = p.sdc(&["plan", SPEC, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    let e = &v["estimate"];
    assert_eq!(e["documents"], 2);
    assert_eq!(e["tasks"][0]["task"], "code_generation");
    assert_eq!(e["tasks"][0]["wanted"], 60);
    assert_eq!(e["tasks"][0]["planned"], 90);
    assert_eq!(e["tasks"][1]["planned_multimodal"], 30);
    let stages: Vec<&str> =
        e["calls"].as_array().expect("calls").iter().map(|c| c["stage"].as_str().unwrap_or("")).collect();
    assert_eq!(stages, ["transcribe", "plan", "answer", "curate", "classify"]);
    assert_eq!(v["lock"], "no lockfile yet");
}

#[test]
fn the_flagship_spec_checks_and_its_lock_is_current() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_sdc"))
        .args(["lock", "specs/quantum.sds", "--locked"])
        .current_dir(root)
        .env_remove("VISION_MODEL_BASE_URL")
        .env_remove("QUESTION_MODEL_BASE_URL")
        .env_remove("ANSWER_MODEL_BASE_URL")
        .env_remove("CURATE_MODEL_BASE_URL")
        .output()
        .expect("run");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
}

#[test]
fn inspect_shows_documents_chunks_and_what_was_not_used() {
    let p = Project::new();
    p.edit("docs/pages/gates.mdx", "The Hadamard gate", "![A missing figure](images/missing.png)\n\nThe Hadamard gate");
    p.write("docs/nb/broken.ipynb", "{ \"cells\": [");
    let docs = p.sdc(&["inspect", SPEC, "--stage", "documents"]);
    assert_eq!(docs.code, 0, "{}", docs.transcript());
    assert!(docs.stdout.contains("notebook docs/nb/bell.ipynb  “Bell states”"), "{}", docs.stdout);
    assert!(docs.stdout.contains("mdx      docs/pages/gates.mdx  “Gates”"), "{}", docs.stdout);
    assert!(docs.stdout.contains("skipped     docs/nb/broken.ipynb: invalid JSON at line 1"), "{}", docs.stdout);
    assert!(
        docs.stdout.contains(
            "unresolved  docs/pages/gates.mdx (line 7): `images/missing.png`: file not found: pages/images/missing.png"
        ),
        "{}",
        docs.stdout
    );
    let json = p.sdc(&["inspect", SPEC, "--stage", "chunks", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(v["totals"]["documents"], 2);
    assert_eq!(v["totals"]["skipped"], 1);
    let first = &v["items"][0];
    let id = first["id"].as_str().expect("id");
    let one = p.sdc(&["inspect", SPEC, "--stage", "chunks", "--id", &id[..8]]);
    assert_eq!(one.code, 0);
    assert!(one.stdout.contains(&format!("── chunk {}", &id[..12])), "{}", one.stdout);
    assert_eq!(p.sdc(&["inspect", SPEC, "--stage", "chunks", "--id", "zzzz"]).code, 1);
}
