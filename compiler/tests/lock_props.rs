//! Property tests for the lockfile's hand-written TOML writer: whatever `lock::write` renders,
//! `lock::parse` reads back to the same [`Lockfile`], and rendering is deterministic.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::select;
use sdc_compiler::lock::{
    self, DatasetLock, FileLock, LOCK_VERSION, Lockfile, ModelLock, PlanLock, PromptLock, SourceLock, SpecLock,
    VerifyLock,
};

/// Characters the writer has to escape or must not mangle.
const AWKWARD: &[char] = &[
    '"', '\\', '\n', '\t', '\r', '\0', '\u{8}', '\u{c}', '\u{1b}', '\u{7f}', '\u{80}', '\u{85}', '\u{9f}', '\u{a0}',
    '\u{2028}', '\u{feff}', '\'', '#', '=', '[', ']', '{', '}', ',', '.', ' ', 'é', '€', '😀',
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => "[a-z0-9._/-]{0,16}",
        2 => prop::collection::vec(prop_oneof![select(AWKWARD), any::<char>(), select(vec!['a', 'b', '1'])], 0..16)
            .prop_map(|chars| chars.into_iter().collect()),
        1 => any::<String>(),
    ]
}

/// TOML integers are i64: every u64 field the lock holds stays below 2^63.
fn u63() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..1000, Just(i64::MAX as u64), 0..=i64::MAX as u64]
}

fn finite_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        (0u32..=200).prop_map(|n| f64::from(n) / 100.0),
        Just(0.0),
        Just(-0.0),
        Just(f64::MAX),
        Just(f64::MIN),
        Just(f64::MIN_POSITIVE),
        Just(5e-324),
        prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO,
    ]
}

/// Seed names: bare keys, dotted stage keys that need quoting, and awkward text. Never empty:
/// see `empty_seed_name_round_trips` below.
fn seed_name() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z_-]{1,12}", "stage\\.[a-z_]{1,12}", text().prop_filter("non-empty", |s| !s.is_empty())]
}

fn file_lock() -> impl Strategy<Value = FileLock> {
    (text(), "[0-9a-f]{64}|.{0,8}", u63()).prop_map(|(path, sha256, bytes)| FileLock { path, sha256, bytes })
}

fn source_lock() -> impl Strategy<Value = SourceLock> {
    (text(), text(), prop::option::of(text()), prop::collection::vec(file_lock(), 0..5))
        .prop_map(|(name, root, public_root, files)| SourceLock { name, root, public_root, files })
}

fn prompt_lock() -> impl Strategy<Value = PromptLock> {
    (text(), text(), prop::collection::vec(text(), 0..4)).prop_map(|(name, sha256, includes)| PromptLock {
        name,
        sha256,
        includes,
    })
}

fn model_lock() -> impl Strategy<Value = ModelLock> {
    (
        (text(), text(), prop::collection::vec(text(), 0..3), text(), text()),
        (prop::option::of(text()), finite_f64(), prop::option::of(finite_f64()), u63()),
    )
        .prop_map(
            |((alias, provider, endpoints, requested, resolved), (offline, temperature, top_p, max_tokens))| {
                ModelLock { alias, provider, endpoints, requested, resolved, offline, temperature, top_p, max_tokens }
            },
        )
}

fn verify_lock() -> impl Strategy<Value = VerifyLock> {
    (text(), text(), text(), text()).prop_map(|(python, python_version, requirements, requirements_sha256)| {
        VerifyLock { python, python_version, requirements, requirements_sha256 }
    })
}

fn dataset_lock() -> impl Strategy<Value = DatasetLock> {
    (text(), text(), u63(), u63(), u63(), any::<i64>()).prop_map(
        |(name, version, seed, target, archive_mtime, zstd_level)| DatasetLock {
            name,
            version,
            seed,
            target,
            archive_mtime,
            zstd_level,
        },
    )
}

fn lockfile() -> impl Strategy<Value = Lockfile> {
    (
        (text(), text(), text(), text(), dataset_lock(), prop::collection::btree_map(seed_name(), u63(), 0..6)),
        (
            prop::collection::vec(source_lock(), 0..4),
            prop::collection::vec(prompt_lock(), 0..4),
            prop::collection::vec(model_lock(), 0..4),
            prop::option::of(verify_lock()),
            text(),
        ),
    )
        .prop_map(
            |((hash_scheme, sdc_version, file, sha256, dataset, seeds), (sources, prompts, models, verify, digest))| {
                Lockfile {
                    version: LOCK_VERSION,
                    hash_scheme,
                    sdc_version,
                    spec: SpecLock { file, sha256 },
                    dataset,
                    seeds,
                    sources,
                    prompts,
                    models,
                    verify,
                    plan: PlanLock { digest },
                }
            },
        )
}

proptest! {
    /// What the writer renders, the reader reads back unchanged.
    #[test]
    fn write_then_parse_round_trips(l in lockfile()) {
        let text = lock::write(&l);
        prop_assert_eq!(lock::parse(&text), Ok(l), "text:\n{}", text);
    }

    /// Rendering depends on the value only, and re-locking what was read rewrites the same bytes.
    #[test]
    fn write_is_deterministic(l in lockfile()) {
        let text = lock::write(&l);
        prop_assert_eq!(&lock::write(&l.clone()), &text);
        let reread = lock::parse(&text).map_err(TestCaseError::fail)?;
        prop_assert_eq!(lock::write(&reread), text);
    }

    /// Locks of another layout version are refused, not misread.
    #[test]
    fn other_versions_are_refused(l in lockfile(), version in any::<u32>().prop_filter("current", |v| *v != LOCK_VERSION)) {
        let text = lock::write(&Lockfile { version, ..l });
        prop_assert!(lock::parse(&text).is_err());
    }
}

fn empty_lock() -> Lockfile {
    Lockfile {
        version: LOCK_VERSION,
        hash_scheme: String::new(),
        sdc_version: String::new(),
        spec: SpecLock { file: String::new(), sha256: String::new() },
        dataset: DatasetLock {
            name: String::new(),
            version: String::new(),
            seed: 0,
            target: 0,
            archive_mtime: 0,
            zstd_level: 0,
        },
        seeds: BTreeMap::new(),
        sources: Vec::new(),
        prompts: Vec::new(),
        models: Vec::new(),
        verify: None,
        plan: PlanLock { digest: String::new() },
    }
}

#[test]
fn empty_lock_round_trips() {
    let l = empty_lock();
    assert_eq!(lock::parse(&lock::write(&l)), Ok(l));
}

/// The flagship lock checked into the repository is in the writer's canonical layout.
#[test]
fn quantum_lock_is_canonical() {
    let path = format!("{}/../lockfiles/quantum.lock", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let l = lock::parse(&text).unwrap_or_else(|e| panic!("{path} does not parse: {e}"));
    assert_eq!(lock::write(&l), text);
}

/// An empty seed name is written as a bare empty key (` = 0`), which is not TOML. Seed names
/// come from the compiler and are never empty today, so the generator above avoids them; this
/// pins the writer's behaviour for when `key()` quotes the empty string.
#[test]
fn empty_seed_name_round_trips() {
    let mut l = empty_lock();
    l.seeds.insert(String::new(), 1);
    assert_eq!(lock::parse(&lock::write(&l)), Ok(l));
}
