//! `sdc export` on the fixture build's archive: the `hf` layout loaded by the real Hugging Face
//! `datasets`, the `jsonl` and `messages` layouts checked line by line against the archive's
//! rows, byte-identical repeats, and refusals (a non-empty directory, a damaged archive).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::support::{FIXTURE_ARCHIVE, built_fixture, tree};
use crate::support_hf::{hf_python, run_hf_script};

/// The archive's rows per split, read with the archive reader (not through `sdc export`).
fn archive_rows() -> BTreeMap<String, Vec<sdc_runtime::archive::SampleRow>> {
    let bytes = std::fs::read(built_fixture().project.path(FIXTURE_ARCHIVE)).expect("archive");
    let mut rows: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for (path, data) in sdc_runtime::archive::read_archive(bytes.as_slice(), &Default::default()).expect("read") {
        if let Some(name) = path.strip_prefix("data/") {
            let split = name.split('-').next().expect("split").to_string();
            rows.entry(split).or_default().extend(sdc_runtime::archive::read_samples(&data).expect("parquet"));
        }
    }
    rows
}

fn export(format: &str, out: &Path, extra: &[&str]) -> crate::support::Run {
    let p = &built_fixture().project;
    let mut args = vec!["export", FIXTURE_ARCHIVE, "--format", format, "--out"];
    let out = out.to_str().expect("utf-8 path");
    args.push(out);
    args.extend_from_slice(extra);
    p.sdc(&args)
}

fn lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

const HF_SCRIPT: &str = r#"
import json, sys
from datasets import load_dataset
ds = load_dataset(sys.argv[1])
out = {"splits": {name: ds[name].num_rows for name in ds}}
out["features"] = {name: type(f).__name__ for name, f in ds["train"].features.items()}
with_image = [row for row in ds["train"] if row["image"] is not None]
img = with_image[0]["image"]
out["image"] = {"id": with_image[0]["id"], "class": type(img).__name__, "size": list(img.size), "mode": img.mode}
out["train_ids"] = list(ds["train"]["id"])
print(json.dumps(out, sort_keys=True))
"#;

#[test]
fn the_hf_export_loads_with_hugging_face_datasets() {
    let python = hf_python();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("hf");
    let run = export("hf", &out, &[]);
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert!(run.stdout.contains("as `hf`"), "{}", run.stdout);

    let rows = archive_rows();
    let loaded = run_hf_script(&python, dir.path(), HF_SCRIPT, &[out.to_str().expect("utf-8")]);
    let expected: BTreeMap<&str, usize> = rows.iter().map(|(s, r)| (s.as_str(), r.len())).collect();
    assert_eq!(loaded["splits"], serde_json::json!(expected));
    assert_eq!(loaded["features"]["image"], "Image");
    assert_eq!(loaded["features"]["question"], "Value");
    let train_ids: Vec<&str> = rows["train"].iter().map(|r| r.id.as_str()).collect();
    assert_eq!(loaded["train_ids"], serde_json::json!(train_ids));

    // The decoded image is the archive's picture.
    let id = loaded["image"]["id"].as_str().expect("an image row");
    let row = rows["train"].iter().find(|r| r.id == id).expect("row");
    let png = image_size(&row.image.as_ref().expect("image").bytes);
    assert_eq!(loaded["image"]["class"], "PngImageFile");
    assert_eq!(loaded["image"]["size"], serde_json::json!([png.0, png.1]));
    assert_eq!(loaded["image"]["mode"], "RGB");
}

/// Width and height from a PNG's IHDR.
fn image_size(png: &[u8]) -> (u32, u32) {
    let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().expect("4 bytes"));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    (be(16), be(20))
}

#[test]
fn jsonl_has_every_row_and_its_image_beside_it_and_repeats_byte_for_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for out in [&a, &b] {
        let run = export("jsonl", out, &["--json"]);
        assert_eq!(run.code, 0, "{}", run.transcript());
        let report: Value = serde_json::from_str(&run.stdout).expect("JSON report");
        assert_eq!(report["format"], "jsonl");
    }
    let files = tree(&a);
    assert_eq!(files, tree(&b), "the same archive must export the same bytes");

    let mut images_used = 0;
    for (split, rows) in archive_rows() {
        let records = lines(&files[&format!("{split}.jsonl")]);
        assert_eq!(records.len(), rows.len(), "{split}");
        for (record, row) in records.iter().zip(&rows) {
            assert_eq!(record["id"], row.id.as_str());
            assert_eq!(record["split"], split.as_str());
            assert_eq!(record["question"], row.question.as_str());
            assert_eq!(record["answer"], row.answer.as_str());
            assert_eq!(record["type"], row.task_type.as_str());
            match (&row.image, record["image"].as_str()) {
                (None, None) => {}
                (Some(cell), Some(path)) => {
                    assert!(path.starts_with("images/") && path.ends_with(".png"), "{path}");
                    assert_eq!(files[path], cell.bytes, "{path} is the row's image");
                    images_used += 1;
                }
                (image, path) => panic!("row {} has image {:?} but the record says {path:?}", row.id, image.is_some()),
            }
        }
    }
    assert!(images_used > 0, "the fixture has samples with images");
}

#[test]
fn messages_are_conversations_whose_image_parts_match_their_images() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("chat");
    let run = export("messages", &out, &["--system", "You answer questions about qubits."]);
    assert_eq!(run.code, 0, "{}", run.transcript());
    let files = tree(&out);
    let rows = archive_rows();
    assert_eq!(
        files.keys().filter(|k| k.ends_with(".jsonl")).cloned().collect::<Vec<_>>(),
        rows.keys().map(|s| format!("{s}.jsonl")).collect::<Vec<_>>(),
        "one file per split"
    );
    for (split, rows) in &rows {
        let convs = lines(&files[&format!("{split}.jsonl")]);
        assert_eq!(convs.len(), rows.len());
        for (c, row) in convs.iter().zip(rows) {
            let m = c["messages"].as_array().expect("messages");
            let roles: Vec<&str> = m.iter().map(|t| t["role"].as_str().unwrap_or("")).collect();
            assert_eq!(roles, ["system", "user", "assistant"]);
            assert_eq!(m[0]["content"][0]["text"], "You answer questions about qubits.");
            let user = m[1]["content"].as_array().expect("parts");
            assert_eq!(user.last().expect("text")["text"], row.question.as_str());
            assert_eq!(m[2]["content"][0], serde_json::json!({"type": "text", "text": row.answer}));
            let markers = user.iter().filter(|p| p["type"] == "image").count();
            let images = c["images"].as_array().expect("images");
            assert_eq!(markers, images.len(), "one image part per listed image");
            assert_eq!(images.len(), usize::from(row.image.is_some()));
            for path in images {
                assert!(files.contains_key(path.as_str().expect("path")), "{path} is written");
            }
        }
    }
}

#[test]
fn export_refuses_a_non_empty_directory_and_a_damaged_archive() {
    let p = &built_fixture().project;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    std::fs::write(out.join("keep.txt"), "mine").expect("write");

    let refused = export("jsonl", &out, &[]);
    assert_eq!(refused.code, 1, "{}", refused.transcript());
    assert!(refused.stderr.contains("is not empty; pass `--force`"), "{}", refused.stderr);
    assert!(refused.stderr.contains(out.to_str().expect("utf-8")), "names the directory: {}", refused.stderr);
    assert_eq!(std::fs::read_to_string(out.join("keep.txt")).expect("kept"), "mine");

    let forced = export("jsonl", &out, &["--force"]);
    assert_eq!(forced.code, 0, "{}", forced.transcript());
    assert!(!out.join("keep.txt").exists(), "--force replaces the directory");
    assert!(out.join("train.jsonl").exists());

    let mut bytes = std::fs::read(p.path(FIXTURE_ARCHIVE)).expect("archive");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    let damaged = dir.path().join("damaged.tar.zst");
    std::fs::write(&damaged, bytes).expect("write");
    let bad = p.sdc(&["export", damaged.to_str().expect("utf-8"), "--format", "hf", "--out", "never"]);
    assert_eq!(bad.code, 1, "{}", bad.transcript());
    assert!(bad.stderr.contains("damaged.tar.zst"), "names the archive: {}", bad.stderr);
    assert!(!bad.stderr.contains("panicked"), "{}", bad.stderr);
    assert!(!p.path("never").exists(), "nothing is written for a bad archive");

    let missing = p.sdc(&["export", "no-such.tar.zst", "--format", "hf", "--out", "never"]);
    assert_eq!(missing.code, 1, "{}", missing.transcript());
    assert!(missing.stderr.contains("no-such.tar.zst"), "{}", missing.stderr);

    let usage = p.sdc(&["export", FIXTURE_ARCHIVE, "--format", "csv", "--out", "never"]);
    assert_eq!(usage.code, 2, "{}", usage.transcript());
}
