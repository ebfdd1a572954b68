//! The archive end to end: determinism, the exact layout (snapshots), verification of good and
//! hostile archives, unpacking, and the real Hugging Face `datasets` loader.

use proptest::prelude::*;
use sdc_runtime::archive::{
    ArchiveError, ArchiveInput, ArchiveSpec, ArchiveSummary, CardInfo, ImageCell, Limits, Problem, RejectedRow,
    SampleRow, Split, UnsafeReason, read_archive, read_samples, unpack_archive, verify_archive, write_archive,
};
use tar::{EntryType, Header};

/// `hf_python` and `run_hf_script`, shared with the end-to-end tests of `sdc export`.
#[path = "../../tests/it/support_hf.rs"]
mod support_hf;

// ---------------------------------------------------------------------------------------------
// Fixture

/// A real PNG of `width`×`height` pixels, so `datasets` can decode it.
fn png(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    let pixels: Vec<u8> = (0..width * height * 3).map(|i| (i * 37 % 251) as u8).collect();
    writer.write_image_data(&pixels).unwrap();
    writer.finish().unwrap();
    out
}

fn sample(id: &str, task_type: &str, category: &str, image: Option<Vec<u8>>) -> SampleRow {
    SampleRow {
        id: id.to_string(),
        question: format!("What does circuit {id} prepare?"),
        answer: "A Bell state.".to_string(),
        category: category.to_string(),
        task_type: task_type.to_string(),
        test_code: if task_type == "function_completion" { "assert bell() == 2".to_string() } else { String::new() },
        entry_point: if task_type == "function_completion" { "bell".to_string() } else { String::new() },
        image: image.map(|bytes| ImageCell { bytes, path: format!("images/{id}.png") }),
        source: "corpus/quantum/bell.ipynb".to_string(),
    }
}

fn fixture_splits() -> Vec<Split> {
    vec![
        Split {
            name: "train".to_string(),
            rows: vec![
                sample("s-001", "qa", "circuits", Some(png(3, 2))),
                sample("s-002", "function_completion", "algorithms", None),
            ],
        },
        Split { name: "test".to_string(), rows: vec![sample("s-003", "qa", "circuits", None)] },
    ]
}

fn fixture_rejected() -> Vec<RejectedRow> {
    vec![RejectedRow {
        id: "t-017".to_string(),
        kind: "task".to_string(),
        stage: "verify".to_string(),
        outcome: "failed".to_string(),
        reason: "tests failed: AssertionError".to_string(),
        attempts: 3,
        source: "corpus/quantum/grover.mdx".to_string(),
        duplicate_of: None,
    }]
}

fn fixture_card() -> CardInfo {
    CardInfo {
        name: "quantum-vlm".to_string(),
        version: "0.1.0".to_string(),
        license: "apache-2.0".to_string(),
        description: Some("Question answering and code tasks about Qiskit, some with circuit diagrams.".to_string()),
        categories: vec![
            ("circuits".to_string(), "Building and reading circuits".to_string()),
            ("algorithms".to_string(), "Grover, QFT | phase estimation".to_string()),
            ("noise".to_string(), "Noise models".to_string()),
        ],
        reproduce: "sdc lock specs/quantum.sds --locked\nsdc build specs/quantum.sds --frozen\n".to_string(),
        notes: vec!["built offline with builtin/rules@0.1.0".to_string()],
    }
}

const SPEC: ArchiveSpec = ArchiveSpec { mtime: 1_700_000_000, zstd_level: 19, shard_rows: 1000 };
const PROVENANCE: &[u8] = br#"{"build":"fixture"}"#;

fn build(spec: ArchiveSpec, splits: &[Split], rejected: &[RejectedRow]) -> (ArchiveSummary, Vec<u8>) {
    let input = ArchiveInput { spec, card: fixture_card(), splits, rejected, provenance_json: PROVENANCE };
    let mut out = Vec::new();
    let summary = write_archive(&input, &mut out).unwrap();
    (summary, out)
}

fn fixture() -> (ArchiveSummary, Vec<u8>) {
    build(SPEC, &fixture_splits(), &fixture_rejected())
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn file<'a>(files: &'a [(String, Vec<u8>)], path: &str) -> &'a [u8] {
    &files.iter().find(|(p, _)| p == path).unwrap_or_else(|| panic!("no {path}")).1
}

// ---------------------------------------------------------------------------------------------
// Determinism and layout

#[test]
fn same_input_same_bytes() {
    let (a, bytes_a) = fixture();
    let (b, bytes_b) = fixture();
    assert_eq!(a, b);
    assert_eq!(bytes_a, bytes_b);
    assert_eq!(a.archive_sha256, sha256(&bytes_a));
    let tar = zstd::decode_all(bytes_a.as_slice()).unwrap();
    assert_eq!(a.tar_sha256, sha256(&tar));
    let files = read_archive(bytes_a.as_slice(), &Limits::default()).unwrap();
    assert_eq!(a.manifest_sha256, sha256(file(&files, "manifest.json")));
}

#[test]
fn the_identity_depends_on_content_only() {
    // Neither the mtime nor the zstd level touches the manifest; both change the container.
    let (base, _) = fixture();
    let (later, _) = build(ArchiveSpec { mtime: 1, ..SPEC }, &fixture_splits(), &fixture_rejected());
    let (fast, _) = build(ArchiveSpec { zstd_level: 1, ..SPEC }, &fixture_splits(), &fixture_rejected());
    assert_eq!(later.manifest_sha256, base.manifest_sha256);
    assert_ne!(later.tar_sha256, base.tar_sha256);
    assert_eq!(fast.manifest_sha256, base.manifest_sha256);
    assert_eq!(fast.tar_sha256, base.tar_sha256);
    assert_ne!(fast.archive_sha256, base.archive_sha256);
}

/// The tar as `tar -tvf` shows it: type and mode, owner, size, mtime, path.
fn listing(archive: &[u8]) -> String {
    let tar = zstd::decode_all(archive).unwrap();
    let mut ar = tar::Archive::new(tar.as_slice());
    let mut out = String::new();
    for entry in ar.entries().unwrap().raw(true) {
        let entry = entry.unwrap();
        let h = entry.header();
        let mode = h.mode().unwrap();
        let bits: String = (0..9).map(|i| if mode & (0o400 >> i) != 0 { b"rwx"[i % 3] as char } else { '-' }).collect();
        let kind = if h.entry_type() == EntryType::Regular { '-' } else { '?' };
        let owner = format!(
            "{}/{}",
            h.username().unwrap().filter(|u| !u.is_empty()).map_or(h.uid().unwrap().to_string(), str::to_string),
            h.groupname().unwrap().filter(|g| !g.is_empty()).map_or(h.gid().unwrap().to_string(), str::to_string),
        );
        let magic = if h.as_ustar().is_some() { "ustar" } else { "other" };
        out.push_str(&format!(
            "{kind}{bits} {owner} {:>6} {} {magic} {}\n",
            h.size().unwrap(),
            h.mtime().unwrap(),
            String::from_utf8_lossy(&entry.path_bytes())
        ));
    }
    out
}

#[test]
fn tar_listing_snapshot() {
    let (_, bytes) = fixture();
    insta::assert_snapshot!("tar_listing", listing(&bytes));
}

#[test]
fn card_snapshot() {
    let (_, bytes) = fixture();
    let files = read_archive(bytes.as_slice(), &Limits::default()).unwrap();
    let card = String::from_utf8(file(&files, "README.md").to_vec()).unwrap();
    insta::assert_snapshot!("card", card);
}

#[test]
fn card_front_matter_is_valid_yaml_with_the_hub_fields() {
    let (_, bytes) = fixture();
    let files = read_archive(bytes.as_slice(), &Limits::default()).unwrap();
    let card = String::from_utf8(file(&files, "README.md").to_vec()).unwrap();
    let yaml = card.strip_prefix("---\n").and_then(|c| c.split("\n---\n").next()).unwrap();
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).unwrap();
    assert_eq!(v["license"], "apache-2.0");
    assert_eq!(v["task_categories"][1], "image-text-to-text");
    assert_eq!(v["configs"][0]["data_files"][0]["path"], "data/train-*");
    assert_eq!(v["configs"][0]["data_files"][1]["split"], "test");
    assert_eq!(v["dataset_info"]["splits"][0]["num_examples"], 2);
    assert_eq!(v["dataset_info"]["features"][7]["dtype"], "image");
}

/// Golden hashes: any change to the bytes this layer writes (a crate upgrade, a new default)
/// must show up in review, since it changes every dataset's identity.
#[test]
fn summary_snapshot() {
    let (summary, _) = fixture();
    insta::assert_json_snapshot!("summary", summary);
}

#[test]
fn zstd_is_the_vendored_library() {
    // `ZSTD_SYS_USE_PKG_CONFIG` would link the system libzstd and silently change the bytes.
    assert_eq!(sdc_runtime::archive::zstd_info(3).library_version, "1.5.7");
}

#[test]
fn shards_are_named_and_filled_in_order() {
    let rows: Vec<SampleRow> = (0..5).map(|i| sample(&format!("r{i}"), "qa", "c", None)).collect();
    let splits =
        [Split { name: "validation".to_string(), rows: rows.clone() }, Split { name: "test".into(), rows: vec![] }];
    let (summary, bytes) = build(ArchiveSpec { shard_rows: 2, ..SPEC }, &splits, &[]);
    let paths: Vec<&str> = summary.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "README.md",
            "data/validation-00000-of-00003.parquet",
            "data/validation-00001-of-00003.parquet",
            "data/validation-00002-of-00003.parquet",
            "provenance.json",
            "rejected.parquet",
        ]
    );
    let files = read_archive(bytes.as_slice(), &Limits::default()).unwrap();
    let back: Vec<SampleRow> =
        files.iter().filter(|(p, _)| p.starts_with("data/")).flat_map(|(_, b)| read_samples(b).unwrap()).collect();
    assert_eq!(back, rows);
}

#[test]
fn bad_specs_are_refused_before_anything_is_written() {
    let try_write = |spec: ArchiveSpec, splits: &[Split]| {
        let input = ArchiveInput { spec, card: fixture_card(), splits, rejected: &[], provenance_json: b"{}" };
        let mut out = Vec::new();
        let err = write_archive(&input, &mut out).unwrap_err();
        assert!(out.is_empty(), "{err}");
        err.to_string()
    };
    let one = |name: &str| Split { name: name.to_string(), rows: vec![sample("a", "qa", "c", None)] };
    assert_eq!(try_write(ArchiveSpec { shard_rows: 0, ..SPEC }, &[]), "`shard_rows` must be at least 1");
    assert!(try_write(ArchiveSpec { zstd_level: 23, ..SPEC }, &[]).starts_with("zstd level 23 is outside"));
    assert!(try_write(SPEC, &[one("train"), one("train")]).contains("split `train` is given twice"));
    assert!(try_write(SPEC, &[one("../x")]).contains("split name `../x` is not usable"));
    assert!(try_write(SPEC, &[one(&"x".repeat(80))]).contains("tar headers without extensions hold at most 100"));
}

// ---------------------------------------------------------------------------------------------
// Properties

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z]{0,6}", "\\PC{0,12}"]
}

fn row_strategy() -> impl Strategy<Value = SampleRow> {
    (
        "[a-z0-9]{1,8}",
        text(),
        text(),
        "[a-c]",
        prop_oneof![Just("qa"), Just("code")],
        text(),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
    )
        .prop_map(|(id, question, answer, category, task_type, test_code, image)| SampleRow {
            image: image.map(|bytes| ImageCell { bytes, path: format!("images/{id}.png") }),
            entry_point: format!("f_{id}"),
            source: format!("{category}/{id}.md"),
            id,
            question,
            answer,
            category,
            task_type: task_type.to_string(),
            test_code,
        })
}

fn splits_strategy() -> impl Strategy<Value = Vec<Split>> {
    (
        prop::collection::vec(row_strategy(), 0..6),
        prop::collection::vec(row_strategy(), 0..4),
        prop::collection::vec(row_strategy(), 1..4),
    )
        .prop_map(|(train, validation, test)| {
            vec![
                Split { name: "train".into(), rows: train },
                Split { name: "validation".into(), rows: validation },
                Split { name: "test".into(), rows: test },
            ]
        })
}

fn rejected_strategy() -> impl Strategy<Value = Vec<RejectedRow>> {
    prop::collection::vec(
        ("[a-z]{1,4}", prop_oneof![Just("task"), Just("image")], text(), 0u32..4, prop::option::of("[a-z]{1,3}"))
            .prop_map(|(id, kind, reason, attempts, duplicate_of)| RejectedRow {
                id,
                kind: kind.to_string(),
                stage: "dedup".to_string(),
                outcome: "rejected".to_string(),
                reason,
                attempts,
                source: "s".to_string(),
                duplicate_of,
            }),
        0..6,
    )
}

const FAST: ArchiveSpec = ArchiveSpec { mtime: 7, zstd_level: 1, shard_rows: 2 };

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The order splits and rejected entries are given in never shows in the bytes.
    #[test]
    fn split_and_rejected_order_do_not_matter(
        (splits, shuffled_splits) in splits_strategy().prop_flat_map(|s| (Just(s.clone()), Just(s).prop_shuffle())),
        (rejected, shuffled_rejected) in rejected_strategy().prop_flat_map(|r| (Just(r.clone()), Just(r).prop_shuffle())),
    ) {
        let (a, bytes_a) = build(FAST, &splits, &rejected);
        let (b, bytes_b) = build(FAST, &shuffled_splits, &shuffled_rejected);
        prop_assert_eq!(a, b);
        prop_assert_eq!(bytes_a, bytes_b);
    }

    /// Rows keep the order they were given in, across shards.
    #[test]
    fn rows_keep_their_order(splits in splits_strategy()) {
        let (_, bytes) = build(FAST, &splits, &[]);
        let files = read_archive(bytes.as_slice(), &Limits::default()).unwrap();
        for split in &splits {
            let prefix = format!("data/{}-", split.name);
            let back: Vec<SampleRow> = files
                .iter()
                .filter(|(p, _)| p.starts_with(&prefix))
                .flat_map(|(_, b)| read_samples(b).unwrap())
                .collect();
            prop_assert_eq!(&back, &split.rows);
        }
        let report = verify_archive(bytes.as_slice(), &Limits::default()).unwrap();
        prop_assert!(report.is_ok(), "{:?}", report.problems);
    }

    /// Changing any one field of any one row changes the dataset's identity.
    #[test]
    fn one_changed_field_changes_the_manifest(
        splits in splits_strategy(),
        pick in any::<prop::sample::Index>(),
        field in 0usize..9,
        salt in "[a-z]{1,3}",
    ) {
        let (before, _) = build(FAST, &splits, &[]);
        let mut changed = splits.clone();
        let all: Vec<(usize, usize)> = changed
            .iter()
            .enumerate()
            .flat_map(|(s, split)| (0..split.rows.len()).map(move |r| (s, r)))
            .collect();
        let (s, r) = all[pick.index(all.len())];
        let row = &mut changed[s].rows[r];
        match field {
            0 => row.id.push_str(&salt),
            1 => row.question.push_str(&salt),
            2 => row.answer.push_str(&salt),
            3 => row.category.push_str(&salt),
            4 => row.task_type.push_str(&salt),
            5 => row.test_code.push_str(&salt),
            6 => row.entry_point.push_str(&salt),
            7 => row.image = match row.image.take() {
                Some(mut image) if image.bytes.is_empty() => { image.bytes.push(1); Some(image) }
                Some(mut image) => { image.bytes[0] ^= 1; Some(image) }
                None => Some(ImageCell { bytes: vec![], path: salt.clone() }),
            },
            _ => row.source.push_str(&salt),
        }
        let (after, _) = build(FAST, &changed, &[]);
        prop_assert_ne!(before.manifest_sha256, after.manifest_sha256);
    }
}

// ---------------------------------------------------------------------------------------------
// Verification

#[test]
fn a_good_archive_verifies() {
    let (summary, bytes) = fixture();
    let report = verify_archive(bytes.as_slice(), &Limits::default()).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.manifest_sha256, summary.manifest_sha256);
    assert_eq!(report.tar_sha256, summary.tar_sha256);
    assert_eq!(report.archive_sha256, summary.archive_sha256);
    assert_eq!(report.files, summary.files);
    assert_eq!((report.name.as_str(), report.version.as_str()), ("quantum-vlm", "0.1.0"));
}

/// Entries for a hand-made archive: raw path bytes (unchecked), type, data, link target.
struct Raw<'a> {
    path: &'a [u8],
    kind: EntryType,
    data: &'a [u8],
    link: &'a [u8],
}

fn regular<'a>(path: &'a str, data: &'a [u8]) -> Raw<'a> {
    Raw { path: path.as_bytes(), kind: EntryType::Regular, data, link: b"" }
}

/// A `.tar.zst` exactly as given, bypassing every check the tar crate's path setters make.
fn raw_archive(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut tar = Vec::new();
    for e in entries {
        let mut h = Header::new_ustar();
        let name = &mut h.as_old_mut().name;
        name[..e.path.len()].copy_from_slice(e.path);
        let link = &mut h.as_old_mut().linkname;
        link[..e.link.len()].copy_from_slice(e.link);
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        tar.extend_from_slice(h.as_bytes());
        tar.extend_from_slice(e.data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.extend_from_slice(&[0; 1024]);
    zstd::encode_all(tar.as_slice(), 3).unwrap()
}

/// The fixture's files, one of them replaced, re-tarred with the original (now stale) manifest.
fn retar(replace: &str, with: &[u8]) -> Vec<u8> {
    let (_, bytes) = fixture();
    let files = read_archive(bytes.as_slice(), &Limits::default()).unwrap();
    let entries: Vec<Raw<'_>> =
        files.iter().map(|(p, d)| regular(p, if p == replace { with } else { d.as_slice() })).collect();
    raw_archive(&entries)
}

#[test]
fn a_flipped_byte_in_a_parquet_file_is_reported_by_name() {
    let (summary, bytes) = fixture();
    let files = read_archive(bytes.as_slice(), &Limits::default()).unwrap();
    let path = "data/train-00000-of-00001.parquet";
    let mut data = file(&files, path).to_vec();
    let middle = data.len() / 2;
    data[middle] ^= 0x01;
    let report = verify_archive(retar(path, &data).as_slice(), &Limits::default()).unwrap();
    assert_eq!(report.manifest_sha256, summary.manifest_sha256, "the manifest itself is unchanged");
    let expected = summary.files.iter().find(|f| f.path == path).unwrap().clone();
    let found = sdc_runtime::archive::ManifestEntry { sha256: sha256(&data), ..expected.clone() };
    assert_eq!(report.problems, vec![Problem::Mismatch { path: path.to_string(), expected, found }]);
    let message = report.problems[0].to_string();
    assert!(message.starts_with("`data/train-00000-of-00001.parquet` does not match the manifest"), "{message}");
}

#[test]
fn extra_missing_and_featureless_files_are_reported() {
    let (_, bytes) = fixture();
    let files = read_archive(bytes.as_slice(), &Limits::default()).unwrap();
    let plain = plain_parquet();
    // Drop the test split, add a stray file, and swap rejected.parquet for a samples file whose
    // schema lost its `huggingface` metadata (so only the features check can catch it).
    let mut entries: Vec<Raw<'_>> =
        files.iter().filter(|(p, _)| !p.starts_with("data/test-")).map(|(p, d)| regular(p, d)).collect();
    entries.push(regular("stray.txt", b"hello"));
    for e in &mut entries {
        if e.path == b"rejected.parquet" {
            e.data = &plain;
        }
    }
    entries.sort_by(|a, b| a.path.cmp(b.path));
    let report = verify_archive(raw_archive(&entries).as_slice(), &Limits::default()).unwrap();
    let kinds: Vec<String> = report
        .problems
        .iter()
        .map(|p| match p {
            Problem::Mismatch { path, .. } => format!("mismatch {path}"),
            Problem::NotInManifest { path } => format!("extra {path}"),
            Problem::MissingFromArchive { path } => format!("missing {path}"),
            Problem::Features { path, reason } => format!("features {path}: {reason}"),
            Problem::ManifestNotCanonical => "not canonical".to_string(),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "mismatch rejected.parquet",
            "extra stray.txt",
            "missing data/test-00000-of-00001.parquet",
            "features rejected.parquet: the Arrow schema has no `huggingface` metadata",
        ]
    );
}

/// A parquet file with one string column and no Hugging Face metadata.
fn plain_parquet() -> Vec<u8> {
    use std::sync::Arc;
    let schema =
        Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new("id", arrow_schema::DataType::Utf8, true)]));
    let batch = arrow_array::RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(arrow_array::StringArray::from(vec!["a"])) as arrow_array::ArrayRef],
    )
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(Vec::new(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.into_inner().unwrap()
}

fn refusal(archive: &[u8]) -> ArchiveError {
    let verify = verify_archive(archive, &Limits::default()).unwrap_err();
    // Reading and unpacking refuse exactly the same, and unpacking writes nothing unsafe.
    let read = read_archive(archive, &Limits::default()).unwrap_err();
    assert_eq!(read.to_string(), verify.to_string());
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out");
    let unpack = unpack_archive(archive, &target, &Limits::default()).unwrap_err();
    assert_eq!(unpack.to_string(), verify.to_string());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "nothing beside the target");
    verify
}

fn unsafe_reason(archive: &[u8]) -> (String, UnsafeReason) {
    match refusal(archive) {
        ArchiveError::UnsafeEntry { path, reason } => (path, reason),
        other => panic!("expected an unsafe entry, got {other}"),
    }
}

#[test]
fn hostile_entries_are_refused_by_name() {
    let ok = regular("README.md", b"hi");
    let cases: Vec<(Raw<'_>, &str, UnsafeReason)> = vec![
        (regular("../evil", b"x"), "../evil", UnsafeReason::ParentDir),
        (regular("data/../../evil", b"x"), "data/../../evil", UnsafeReason::ParentDir),
        (regular("/abs", b"x"), "/abs", UnsafeReason::Absolute),
        (regular("./README.md", b"x"), "./README.md", UnsafeReason::NotNormal),
        (
            Raw { path: b"caf\xe9", kind: EntryType::Regular, data: b"x", link: b"" },
            "caf\u{fffd}",
            UnsafeReason::NotUtf8,
        ),
        (
            Raw { path: b"link", kind: EntryType::Symlink, data: b"", link: b"/etc/passwd" },
            "link",
            UnsafeReason::NotRegular("symbolic link"),
        ),
        (
            Raw { path: b"hard", kind: EntryType::Link, data: b"", link: b"README.md" },
            "hard",
            UnsafeReason::NotRegular("hard link"),
        ),
        (
            Raw { path: b"data", kind: EntryType::Directory, data: b"", link: b"" },
            "data",
            UnsafeReason::NotRegular("directory"),
        ),
        (
            Raw { path: b"tty", kind: EntryType::Char, data: b"", link: b"" },
            "tty",
            UnsafeReason::NotRegular("character device"),
        ),
        (
            Raw { path: b"sda", kind: EntryType::Block, data: b"", link: b"" },
            "sda",
            UnsafeReason::NotRegular("block device"),
        ),
        (Raw { path: b"pipe", kind: EntryType::Fifo, data: b"", link: b"" }, "pipe", UnsafeReason::NotRegular("fifo")),
        (
            Raw { path: b"pax", kind: EntryType::XHeader, data: b"19 path=../../evil\n", link: b"" },
            "pax",
            UnsafeReason::NotRegular("PAX extended header"),
        ),
        (
            Raw { path: b"././@LongLink", kind: EntryType::GNULongName, data: b"../../evil\0", link: b"" },
            "././@LongLink",
            UnsafeReason::NotRegular("GNU long-name extension"),
        ),
        (regular("README.md", b"again"), "README.md", UnsafeReason::Duplicate),
    ];
    for (entry, path, reason) in cases {
        let archive = raw_archive(&[regular("README.md", ok.data), entry]);
        let (got_path, got_reason) = unsafe_reason(&archive);
        assert_eq!((got_path.as_str(), &got_reason), (path, &reason));
    }
    let message = refusal(&raw_archive(&[regular("../evil", b"x")])).to_string();
    assert_eq!(message, "refusing archive entry `../evil`: its path has a `..` component");
    let message =
        refusal(&raw_archive(&[Raw { path: b"l", kind: EntryType::Symlink, data: b"", link: b"/" }])).to_string();
    assert_eq!(message, "refusing archive entry `l`: it is a symbolic link, and only regular files are allowed");
}

#[test]
fn a_truncated_or_corrupt_archive_is_an_error_never_a_panic() {
    let (_, bytes) = fixture();
    for cut in (1..bytes.len()).step_by(97).chain([bytes.len() - 1]) {
        let err = verify_archive(&bytes[..cut], &Limits::default()).unwrap_err();
        assert!(matches!(err, ArchiveError::Read(_)), "cut at {cut}: {err}");
        assert!(read_archive(&bytes[..cut], &Limits::default()).is_err());
    }
    // A flipped bit is caught by zstd (frame checksum, content size) or by the tar checksums,
    // except where it changes nothing that matters (a header bit that still decodes the same
    // tar): then the archive verifies exactly as before.
    let (summary, _) = fixture();
    let mut corrupt = bytes.clone();
    for i in (0..corrupt.len()).step_by(211) {
        corrupt[i] ^= 0x40;
        if let Ok(report) = verify_archive(corrupt.as_slice(), &Limits::default()) {
            assert_eq!(report.tar_sha256, summary.tar_sha256, "flip at {i}");
        }
        corrupt[i] ^= 0x40;
    }
    assert!(matches!(verify_archive(&b"not zstd"[..], &Limits::default()), Err(ArchiveError::Read(_))));
}

#[test]
fn data_after_the_end_marker_is_refused() {
    let mut tar = zstd::decode_all(fixture().1.as_slice()).unwrap();
    tar.extend_from_slice(&[0; 8192]);
    let padded = zstd::encode_all(tar.as_slice(), 3).unwrap();
    assert!(verify_archive(padded.as_slice(), &Limits::default()).unwrap().is_ok(), "zero padding is fine");
    tar.extend_from_slice(b"hidden");
    let hidden = zstd::encode_all(tar.as_slice(), 3).unwrap();
    assert!(matches!(refusal(&hidden), ArchiveError::TrailingData));
    // Concatenated zstd frames decode as one stream, so a second frame is trailing data too.
    let mut two = fixture().1;
    two.extend(zstd::encode_all(&b"hidden"[..], 3).unwrap());
    assert!(matches!(refusal(&two), ArchiveError::TrailingData));
}

#[test]
fn limits_guard_against_bombs() {
    let big = vec![0u8; 100_000];
    let archive = raw_archive(&[regular("a", &big), regular("b", &big)]);
    assert!(archive.len() < 1000, "zeros compress well: a small bomb");
    let limits = |entry_bytes, total_bytes, entries| Limits { entry_bytes, total_bytes, entries };
    let err = verify_archive(archive.as_slice(), &limits(99_999, u64::MAX, 10)).unwrap_err();
    assert_eq!(err.to_string(), "archive entry `a` is 100000 bytes, over the 99999-byte limit for one entry");
    let err = read_archive(archive.as_slice(), &limits(u64::MAX, 150_000, 10)).unwrap_err();
    assert_eq!(err.to_string(), "the archive's files add up to more than the 150000-byte limit");
    let err = read_archive(archive.as_slice(), &limits(u64::MAX, u64::MAX, 1)).unwrap_err();
    assert_eq!(err.to_string(), "the archive has more than 1 entries");
}

#[test]
fn an_archive_without_a_manifest_is_an_error() {
    let archive = raw_archive(&[regular("README.md", b"hi")]);
    assert!(matches!(verify_archive(archive.as_slice(), &Limits::default()), Err(ArchiveError::MissingManifest)));
    let archive = raw_archive(&[regular("manifest.json", b"{}")]);
    assert!(matches!(verify_archive(archive.as_slice(), &Limits::default()), Err(ArchiveError::Manifest(_))));
}

// ---------------------------------------------------------------------------------------------
// Unpacking

#[test]
fn unpack_writes_every_file_and_verifies_them() {
    let (summary, bytes) = fixture();
    let dir = tempfile::tempdir().unwrap();
    let report = unpack_archive(bytes.as_slice(), dir.path(), &Limits::default()).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.manifest_sha256, summary.manifest_sha256);
    for (path, data) in read_archive(bytes.as_slice(), &Limits::default()).unwrap() {
        assert_eq!(std::fs::read(dir.path().join(&path)).unwrap(), data, "{path}");
    }
    // A second unpack into the same (now non-empty) directory is refused.
    let err = unpack_archive(bytes.as_slice(), dir.path(), &Limits::default()).unwrap_err();
    assert!(err.to_string().ends_with("the directory is not empty"), "{err}");
}

#[cfg(unix)]
#[test]
fn unpack_does_not_follow_a_symlinked_target() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    let err = unpack_archive(fixture().1.as_slice(), &link, &Limits::default()).unwrap_err();
    assert!(matches!(err, ArchiveError::UnpackTarget { .. }), "{err}");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}

// ---------------------------------------------------------------------------------------------
// The real Hugging Face loader

const HF_SCRIPT: &str = r#"
import glob, json, os, sys
import pyarrow.parquet as pq
from datasets import Dataset, Features, load_dataset

root = sys.argv[1]
out = {}

def describe(ds):
    return {name: ds[name].num_rows for name in ds}

# 1. The directory as the Hub would see it: the card's configs pick the files.
by_card = load_dataset(root)
out["card_splits"] = describe(by_card)
out["card_image_feature"] = type(by_card["train"].features["image"]).__name__

# 2. The parquet builder with explicit data files.
files = {s: sorted(glob.glob(os.path.join(root, "data", s + "-*.parquet"))) for s in ("train", "test")}
by_files = load_dataset("parquet", data_files=files)
out["files_splits"] = describe(by_files)
out["files_image_feature"] = type(by_files["train"].features["image"]).__name__

images = {}
for row in by_files["train"]:
    img = row["image"]
    images[row["id"]] = None if img is None else {"class": type(img).__name__, "size": list(img.size), "mode": img.mode}
out["train_images"] = images
out["train_ids"] = list(by_files["train"]["id"])
out["train_type"] = list(by_files["train"]["type"])

# 3. Every file's metadata features are exactly what `datasets` reconstructs from the schema.
exact = {}
for path in sorted(glob.glob(os.path.join(root, "**", "*.parquet"), recursive=True)):
    schema = pq.read_schema(path)
    declared = Features.from_dict(json.loads(schema.metadata[b"huggingface"])["info"]["features"])
    exact[os.path.relpath(path, root)] = Features.from_arrow_schema(schema) == declared and declared.arrow_schema.remove_metadata().equals(schema.remove_metadata())
out["features_exact"] = exact

rejected = Dataset.from_parquet(os.path.join(root, "rejected.parquet"))
out["rejected"] = {"rows": rejected.num_rows, "attempts": str(rejected.features["attempts"].dtype)}
print(json.dumps(out, sort_keys=True))
"#;

#[test]
fn hugging_face_datasets_loads_the_unpacked_archive() {
    let python = support_hf::hf_python();
    let mut splits = fixture_splits();
    // Two shards in train, to exercise `data/train-*` with several files.
    splits[0].rows.push(sample("s-004", "qa", "noise", Some(png(5, 4))));
    let (_, bytes) = build(ArchiveSpec { shard_rows: 2, ..SPEC }, &splits, &fixture_rejected());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dataset");
    assert!(unpack_archive(bytes.as_slice(), &root, &Limits::default()).unwrap().is_ok());

    let out = support_hf::run_hf_script(&python, dir.path(), HF_SCRIPT, &[root.to_str().expect("utf-8 path")]);
    let expected = serde_json::json!({
        "card_splits": {"train": 3, "test": 1},
        "card_image_feature": "Image",
        "files_splits": {"train": 3, "test": 1},
        "files_image_feature": "Image",
        "train_images": {
            "s-001": {"class": "PngImageFile", "size": [3, 2], "mode": "RGB"},
            "s-002": null,
            "s-004": {"class": "PngImageFile", "size": [5, 4], "mode": "RGB"},
        },
        "train_ids": ["s-001", "s-002", "s-004"],
        "train_type": ["qa", "function_completion", "qa"],
        "features_exact": {
            "data/test-00000-of-00001.parquet": true,
            "data/train-00000-of-00002.parquet": true,
            "data/train-00001-of-00002.parquet": true,
            "rejected.parquet": true,
        },
        "rejected": {"rows": 1, "attempts": "uint32"},
    });
    assert_eq!(out, expected);
}
