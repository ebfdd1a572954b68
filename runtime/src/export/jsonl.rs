//! The two line-per-sample layouts: plain records and chat messages, one `<split>.jsonl` per
//! split, images as files in `images/` named by the sha256 of their bytes (so an image used by
//! several samples is written once, and two different images never share a name).

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::archive::{SampleRow, SplitRows};

pub(super) const IMAGE_DIR: &str = "images/";

/// One sample with every column; serialized in this field order.
#[derive(Serialize)]
struct Record<'a> {
    id: &'a str,
    split: &'a str,
    #[serde(rename = "type")]
    task_type: &'a str,
    category: &'a str,
    question: &'a str,
    answer: &'a str,
    test_code: &'a str,
    entry_point: &'a str,
    /// `images/<sha256>.png`, relative to the JSONL file, or `null`.
    image: Option<String>,
    source: &'a str,
}

/// One sample as a conversation (TRL's conversational vision format).
#[derive(Serialize)]
struct Conversation<'a> {
    id: &'a str,
    messages: [Message<'a>; 3],
    /// Paths relative to the JSONL file, one per `{"type": "image"}` part.
    images: Vec<String>,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: Vec<Part<'a>>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Part<'a> {
    Image,
    Text { text: &'a str },
}

/// `<split>.jsonl` with one [`Record`] per line, and the images.
pub(super) fn records(splits: &[SplitRows]) -> Vec<(String, Vec<u8>)> {
    write(splits, |split, row, image| {
        serde_json::to_vec(&Record {
            id: &row.id,
            split,
            task_type: &row.task_type,
            category: &row.category,
            question: &row.question,
            answer: &row.answer,
            test_code: &row.test_code,
            entry_point: &row.entry_point,
            image,
            source: &row.source,
        })
    })
}

/// `<split>.jsonl` with one [`Conversation`] per line, and the images.
pub(super) fn messages(splits: &[SplitRows], system_prompt: &str) -> Vec<(String, Vec<u8>)> {
    write(splits, |_, row, image| {
        let mut user = Vec::with_capacity(2);
        if image.is_some() {
            user.push(Part::Image);
        }
        user.push(Part::Text { text: &row.question });
        serde_json::to_vec(&Conversation {
            id: &row.id,
            messages: [
                Message { role: "system", content: vec![Part::Text { text: system_prompt }] },
                Message { role: "user", content: user },
                Message { role: "assistant", content: vec![Part::Text { text: &row.answer }] },
            ],
            images: image.into_iter().collect(),
        })
    })
}

/// The split files (lines made by `line`, given the row's image path) and the image files,
/// sorted by path.
fn write(
    splits: &[SplitRows],
    line: impl Fn(&str, &SampleRow, Option<String>) -> serde_json::Result<Vec<u8>>,
) -> Vec<(String, Vec<u8>)> {
    let mut images: BTreeMap<String, &[u8]> = BTreeMap::new();
    let mut files = Vec::new();
    for split in splits {
        let mut text = Vec::new();
        for row in &split.rows {
            let image = row.image.as_ref().map(|cell| {
                let path = format!("{IMAGE_DIR}{}.png", hex::encode(Sha256::digest(&cell.bytes)));
                images.entry(path.clone()).or_insert(&cell.bytes);
                path
            });
            // Serializing these plain structs of strings cannot fail.
            text.extend(line(&split.name, row, image).unwrap_or_default());
            text.push(b'\n');
        }
        files.push((format!("{}.jsonl", split.name), text));
    }
    files.extend(images.into_iter().map(|(p, b)| (p, b.to_vec())));
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}
