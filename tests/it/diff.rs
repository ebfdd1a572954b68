//! `sdc diff`, `sdc reproduce` and `sdc inspect ARCHIVE` on the real binary and the build
//! fixture: each test builds once and reuses its store.

use serde_json::Value;

use crate::support::{Project, Run};

const SPEC: &str = "specs/build.sds";
const LOCK: &str = "lockfiles/build.lock";
const ARCHIVE: &str = "dist/states-1.0.0.tar.zst";

fn build(p: &Project, spec: &str, cwd: Option<&str>) -> Run {
    let args = ["build", spec, "--store", ".sdc", "--format", "json"];
    let run = match cwd {
        None => p.sdc(&args),
        Some(dir) => {
            let store = p.path(".sdc");
            let store = store.to_str().expect("utf-8 path");
            p.sdc_in(dir, &["build", spec, "--store", store, "--format", "json"])
        }
    };
    assert_eq!(run.code, 0, "build failed:\n{}", run.transcript());
    run
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", run.transcript()))
}

/// Hashes (12 to 64 hex digits) vary with the sdc version and the builtin generator's
/// revision; the snapshots keep the structure.
fn assert_redacted(name: &str, text: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"\b[0-9a-f]{12,64}\b", "[hash]");
    settings.bind(|| insta::assert_snapshot!(name, text));
}

#[test]
fn an_archive_is_identical_to_itself_reproduces_bit_for_bit_and_can_be_inspected() {
    let p = Project::build();
    build(&p, SPEC, None);
    std::fs::copy(p.path(ARCHIVE), p.path("published.tar.zst")).expect("copy");

    let same = p.sdc(&["diff", "published.tar.zst", ARCHIVE]);
    assert_eq!(same.code, 0, "{}", same.transcript());
    assert!(same.stdout.starts_with("archives are identical"), "{}", same.stdout);
    let same_json = json(&p.sdc(&["diff", "published.tar.zst", ARCHIVE, "--format", "json"]));
    assert_eq!(same_json["identical"], true);

    // The card's reproduce command does not depend on how the spec's path is spelled, nor
    // on the working directory: three spellings, one archive.
    let published = std::fs::read(p.path("published.tar.zst")).expect("read");
    for (spec, cwd) in [("./specs/build.sds", None), ("specs/../specs/build.sds", None), ("build.sds", Some("specs"))] {
        build(&p, spec, cwd);
        assert!(std::fs::read(p.path(ARCHIVE)).expect("read") == published, "`{spec}` changed the archive bytes");
    }

    // Offline reproduction from the recorded responses: bit-identical.
    let ok = p.sdc(&["reproduce", LOCK, "--archive", "published.tar.zst", "--store", ".sdc"]);
    assert_eq!(ok.code, 0, "{}", ok.transcript());
    assert!(ok.stdout.contains("bit-identical"), "{}", ok.stdout);
    let sha = &same_json["old"]["archive_sha256"];
    assert!(ok.stdout.contains(sha.as_str().expect("sha")), "{}", ok.stdout);

    // Without the recorded responses nothing can be replayed, and no model is asked instead.
    let missing = p.sdc(&["reproduce", LOCK, "--archive", "published.tar.zst", "--store", "no-such-store"]);
    assert_eq!(missing.code, 1, "{}", missing.transcript());
    assert!(missing.stdout.contains("calls are not in the recorded responses"), "{}", missing.transcript());
    assert!(missing.stdout.contains("not identical"), "{}", missing.stdout);
    assert!(!p.path("no-such-store").exists(), "reproduce created the store it was pointed at");

    inspect(&p);
    bad_inputs(&p);
}

fn inspect(p: &Project) {
    let all = json(&p.sdc(&["inspect", ARCHIVE, "--samples", "--count", "1000", "--format", "json"]));
    let items = all["items"].as_array().expect("items");
    assert_eq!(items.len() as u64, all["total"].as_u64().expect("total"));
    let first = items[0]["id"].as_str().expect("id");

    // By id prefix, from the spec (its archive) or the archive itself.
    let one = p.sdc(&["inspect", SPEC, "--samples", "--id", &first[..10]]);
    assert_eq!(one.code, 0, "{}", one.transcript());
    assert!(one.stdout.contains(&format!("── sample {first}")), "{}", one.stdout);
    assert!(one.stdout.contains("1 of "), "{}", one.stdout);

    // An ambiguous prefix lists its candidates.
    let ambiguous = p.sdc(&["inspect", ARCHIVE, "--samples", "--id", ""]);
    assert_eq!(ambiguous.code, 1, "{}", ambiguous.transcript());
    assert!(ambiguous.stderr.contains("is ambiguous"), "{}", ambiguous.stderr);
    assert!(ambiguous.stderr.contains(first), "{}", ambiguous.stderr);

    // A random draw is reproducible and depends on the seed.
    let draw = |seed: &str| {
        json(&p.sdc(&["inspect", ARCHIVE, "--samples", "--random", "--count", "3", "--seed", seed, "--format", "json"]))
    };
    let ids = |v: &Value| -> Vec<String> {
        v["items"].as_array().expect("items").iter().map(|i| i["id"].as_str().unwrap_or("").to_string()).collect()
    };
    assert_eq!(ids(&draw("1")), ids(&draw("1")));
    assert_eq!(ids(&draw("1")).len(), 3);
    assert_ne!(ids(&draw("1")), ids(&draw("2")));

    // Rejections name their stage and reason.
    let rejected = json(&p.sdc(&["inspect", ARCHIVE, "--rejected", "--count", "1000", "--format", "json"]));
    let rows = rejected["items"].as_array().expect("items");
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r["stage"].as_str().is_some_and(|s| !s.is_empty()) && r["reason"].as_str().is_some()));
    let human = p.sdc(&["inspect", ARCHIVE, "--rejected", "--id", rows[0]["id"].as_str().expect("id")]);
    assert_eq!(human.code, 0, "{}", human.transcript());
    assert!(human.stdout.contains(rows[0]["reason"].as_str().expect("reason")), "{}", human.stdout);

    // Traces: every call with its reply from the store; builtin prompts are not kept.
    let traces = json(&p.sdc(&["inspect", SPEC, "--traces", "--id", first, "--format", "json"]));
    let trace = &traces["items"][0];
    assert_eq!(trace["id"], first);
    let calls = trace["calls"].as_array().expect("calls");
    assert!(!calls.is_empty());
    for c in calls {
        assert!(c["reply"].as_str().is_some_and(|r| !r.is_empty()), "no reply from the store: {c}");
        assert_eq!(c["builtin"], true);
        assert!(c["note"].as_str().is_some_and(|n| n.contains("deterministic function")), "{c}");
    }
    let human = p.sdc(&["inspect", ARCHIVE, "--traces", "--id", first, "--store", ".sdc"]);
    assert_eq!(human.code, 0, "{}", human.transcript());
    assert!(human.stdout.contains("reply:"), "{}", human.stdout);
    assert!(human.stdout.contains("verification") || trace["verification"].as_array().is_some_and(Vec::is_empty));
    let no_store = json(&p.sdc(&["inspect", ARCHIVE, "--traces", "--id", first, "--format", "json"]));
    assert!(no_store["items"][0]["calls"][0]["reply"].is_null(), "an archive alone has no store");
}

fn bad_inputs(p: &Project) {
    p.write("garbage.bin", "\u{1}\u{2} not an archive = [");
    std::fs::write(p.path("truncated.tar.zst"), &std::fs::read(p.path(ARCHIVE)).expect("read")[..200]).expect("write");
    for (args, needle) in [
        (vec!["diff", "missing.tar.zst", ARCHIVE], "cannot read `missing.tar.zst`"),
        (vec!["diff", "garbage.bin", ARCHIVE], "`garbage.bin` is neither"),
        (vec!["diff", "truncated.tar.zst", ARCHIVE], "`truncated.tar.zst`"),
        (vec!["diff", LOCK, ARCHIVE], "not of the same kind"),
        (vec!["reproduce", "garbage.bin", "--archive", ARCHIVE], "`garbage.bin` is not a valid lockfile"),
        (vec!["reproduce", LOCK, "--archive", "garbage.bin"], "`garbage.bin`"),
    ] {
        let run = p.sdc(&args);
        assert_eq!(run.code, 2, "{args:?}:\n{}", run.transcript());
        assert!(run.stderr.contains(needle), "{args:?}: expected `{needle}`:\n{}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    let run = p.sdc(&["inspect", "truncated.tar.zst", "--samples"]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(run.stderr.contains("truncated.tar.zst"), "{}", run.stderr);
}

#[test]
fn after_a_one_prompt_edit_the_diff_names_that_prompt() {
    let p = Project::build();
    build(&p, SPEC, None);
    std::fs::copy(p.path(ARCHIVE), p.path("before.tar.zst")).expect("copy");
    std::fs::copy(p.path(LOCK), p.path("before.lock")).expect("copy");
    p.edit("prompts/curate.j2", "When in doubt, reject.", "When in doubt, reject. Be brief.");
    build(&p, SPEC, None);

    let locks = p.sdc(&["diff", "before.lock", LOCK]);
    assert_eq!(locks.code, 1, "{}", locks.transcript());
    assert_redacted("diff_locks_after_prompt_edit", &locks.stdout);
    let same_lock = p.sdc(&["diff", LOCK, LOCK]);
    assert_eq!(same_lock.code, 0, "{}", same_lock.transcript());

    let run = p.sdc(&["diff", "before.tar.zst", ARCHIVE]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert_redacted("diff_archives_after_prompt_edit", &run.stdout);

    let d = json(&p.sdc(&["diff", "before.tar.zst", ARCHIVE, "--format", "json"]));
    assert_eq!(d["identical"], false);
    let touched: Vec<&Value> = d["changed"].as_array().into_iter().chain(d["rederived"].as_array()).flatten().collect();
    assert!(!touched.is_empty(), "the curate prompt is an input of every sample");
    for r in &touched {
        let causes = r["causes"].as_array().expect("causes");
        assert!(causes.iter().any(|c| c.as_str().is_some_and(|c| c.starts_with("prompt: curate"))), "{r}");
        assert!(causes.iter().all(|c| !c.as_str().unwrap_or("").starts_with("prompt: answer")), "{r}");
    }
    assert!(
        d["headers"].as_array().expect("headers").iter().any(|h| h["entry"] == "prompt:curate.j2"),
        "{}",
        d["headers"]
    );
}
