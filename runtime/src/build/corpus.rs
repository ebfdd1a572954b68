//! The ingested chunks as a build holds them: a [`ChunkMeta`] per chunk in memory, the chunk
//! itself in a spill file.
//!
//! A chunk carries its text several times over (the text, its structured parts, its code, the
//! neighbours' text, the earlier code), about 4 KB each; at 50k chunks that was the largest
//! thing a build held. Ingest hands chunks over a batch of files at a time, they are spilled at
//! once, and the stages that read a chunk's content (the chunk filter, the task stages) load it
//! when they start. Allocation needs only the sizes and the category hint, computed here.
//!
//! A chunk is spilled as two records: its parts in a compact binary form ([`parts_codec`]),
//! which is all the chunk filter reads, and the rest as JSON. Reading the parts back as JSON
//! (an internally tagged enum, which serde buffers before it decodes) was a tenth of a chunk
//! filter call's CPU.

use super::inputs::CategoryInfo;
use super::spill::{Slot, SpillError, SpillReader, SpillWriter};
use crate::ingest::chunk::{Chunk, ChunkPart};

/// What a build knows of a chunk without loading it.
#[derive(Clone, Debug)]
pub struct ChunkMeta {
    pub id: String,
    pub document_id: String,
    pub ordinal: u32,
    /// Ids of the images the chunk shows.
    pub images: Vec<String>,
    pub code_blocks: u64,
    /// Characters of text and code together, and of code alone.
    pub chars: u64,
    pub code_chars: u64,
    pub has_neighbours: bool,
    /// The builtin classifier's guess, when allocation balances categories.
    pub category_hint: Option<String>,
    /// The chunk without its parts (JSON), and its parts (binary).
    slot: Slot,
    parts: Slot,
}

/// Chunks being spilled as ingest makes them.
pub struct ChunkSpill<'c> {
    writer: SpillWriter,
    metas: Vec<ChunkMeta>,
    /// Set when allocation balances categories.
    categories: Option<&'c [CategoryInfo]>,
}

impl<'c> ChunkSpill<'c> {
    pub fn new(dir: &std::path::Path, categories: Option<&'c [CategoryInfo]>) -> Result<Self, SpillError> {
        Ok(ChunkSpill { writer: SpillWriter::new(dir)?, metas: Vec::new(), categories })
    }

    pub fn put(&mut self, mut chunk: Chunk) -> Result<(), SpillError> {
        let mut chars = 0u64;
        let mut code_chars = 0u64;
        for part in &chunk.parts {
            match part {
                ChunkPart::Code { code, .. } => code_chars += code.chars().count() as u64,
                ChunkPart::Text { text } | ChunkPart::Heading { text, .. } => chars += text.chars().count() as u64,
                ChunkPart::Image { .. } => {}
            }
        }
        let category_hint = self.categories.map(|categories| {
            crate::model::builtin::category_hint(
                categories,
                &chunk.id,
                &super::context::render(&chunk.parts),
                chunk.heading.as_deref(),
            )
        });
        let mut encoded = Vec::new();
        parts_codec::encode(&chunk.parts, &mut encoded);
        let parts = self.writer.put_bytes(&encoded)?;
        // The rest is written without the parts (`load` puts them back).
        chunk.parts = Vec::new();
        let slot = self.writer.put(&chunk)?;
        self.metas.push(ChunkMeta {
            has_neighbours: !chunk.previous_text.is_empty() || !chunk.next_text.is_empty(),
            code_blocks: chunk.code_blocks.len() as u64,
            id: chunk.id,
            document_id: chunk.document_id,
            ordinal: chunk.ordinal,
            images: chunk.images,
            chars: chars + code_chars,
            code_chars,
            category_hint,
            slot,
            parts,
        });
        Ok(())
    }

    /// The chunks in ingest's order (by document id, then ordinal).
    pub fn finish(self) -> Result<Chunks, SpillError> {
        let mut metas = self.metas;
        metas.sort_by(|a, b| (&a.document_id, a.ordinal).cmp(&(&b.document_id, b.ordinal)));
        Ok(Chunks { metas, reader: self.writer.finish()? })
    }
}

pub struct Chunks {
    pub metas: Vec<ChunkMeta>,
    reader: SpillReader,
}

impl Chunks {
    pub fn load(&self, meta: &ChunkMeta) -> Result<Chunk, SpillError> {
        let mut chunk: Chunk = self.reader.get(meta.slot)?;
        chunk.parts = self.load_parts(meta)?;
        Ok(chunk)
    }

    /// Only the chunk's parts, what the chunk filter reads with the metadata.
    pub fn load_parts(&self, meta: &ChunkMeta) -> Result<Vec<ChunkPart>, SpillError> {
        parts_codec::decode(&self.reader.get_bytes(meta.parts)?)
    }
}

/// Chunk parts as bytes: per part a tag byte and its fields in order; a string is its length
/// (u32, little endian) and its UTF-8 bytes, an optional string a 0/1 byte first, a list its
/// length first. The spill is scratch written and read by one build, so the format carries no
/// version; a record that does not decode is a [`SpillError::Decode`], never a panic.
mod parts_codec {
    use super::{ChunkPart, SpillError};

    const HEADING: u8 = 0;
    const TEXT: u8 = 1;
    const CODE: u8 = 2;
    const IMAGE: u8 = 3;

    pub fn encode(parts: &[ChunkPart], out: &mut Vec<u8>) {
        let len = |out: &mut Vec<u8>, n: usize| out.extend_from_slice(&(n as u32).to_le_bytes());
        let text = |out: &mut Vec<u8>, s: &str| {
            len(out, s.len());
            out.extend_from_slice(s.as_bytes());
        };
        let list = |out: &mut Vec<u8>, items: &[String]| {
            len(out, items.len());
            items.iter().for_each(|s| text(out, s));
        };
        len(out, parts.len());
        for part in parts {
            match part {
                ChunkPart::Heading { level, text: t } => {
                    out.extend_from_slice(&[HEADING, *level]);
                    text(out, t);
                }
                ChunkPart::Text { text: t } => {
                    out.push(TEXT);
                    text(out, t);
                }
                ChunkPart::Code { language, code, outputs, images } => {
                    out.push(CODE);
                    match language {
                        None => out.push(0),
                        Some(l) => {
                            out.push(1);
                            text(out, l);
                        }
                    }
                    text(out, code);
                    list(out, outputs);
                    list(out, images);
                }
                ChunkPart::Image { id } => {
                    out.push(IMAGE);
                    text(out, id);
                }
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Vec<ChunkPart>, SpillError> {
        let mut r = Reader { bytes };
        let n = r.len()?;
        // Each part takes at least 5 bytes: a corrupt count cannot reserve much.
        let mut parts = Vec::with_capacity(n.min(bytes.len() / 5));
        for _ in 0..n {
            parts.push(match r.byte()? {
                HEADING => ChunkPart::Heading { level: r.byte()?, text: r.text()? },
                TEXT => ChunkPart::Text { text: r.text()? },
                CODE => ChunkPart::Code {
                    language: if r.byte()? == 1 { Some(r.text()?) } else { None },
                    code: r.text()?,
                    outputs: r.list()?,
                    images: r.list()?,
                },
                IMAGE => ChunkPart::Image { id: r.text()? },
                tag => return Err(SpillError::Decode(format!("unknown chunk part tag {tag}"))),
            });
        }
        if !r.bytes.is_empty() {
            return Err(SpillError::Decode(format!("{} bytes after a chunk's parts", r.bytes.len())));
        }
        Ok(parts)
    }

    struct Reader<'b> {
        bytes: &'b [u8],
    }

    impl<'b> Reader<'b> {
        fn take(&mut self, n: usize) -> Result<&'b [u8], SpillError> {
            if self.bytes.len() < n {
                return Err(SpillError::Decode("a chunk's parts end early".into()));
            }
            let (head, rest) = self.bytes.split_at(n);
            self.bytes = rest;
            Ok(head)
        }

        fn byte(&mut self) -> Result<u8, SpillError> {
            Ok(self.take(1)?[0])
        }

        fn len(&mut self) -> Result<usize, SpillError> {
            let b = self.take(4)?;
            Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        }

        fn text(&mut self) -> Result<String, SpillError> {
            let n = self.len()?;
            String::from_utf8(self.take(n)?.to_vec())
                .map_err(|_| SpillError::Decode("a chunk's text is not UTF-8".into()))
        }

        fn list(&mut self) -> Result<Vec<String>, SpillError> {
            let n = self.len()?;
            let mut items = Vec::with_capacity(n.min(self.bytes.len() / 4));
            for _ in 0..n {
                items.push(self.text()?);
            }
            Ok(items)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use proptest::prelude::*;

        fn part() -> impl Strategy<Value = ChunkPart> {
            let s = || ".{0,40}";
            prop_oneof![
                (any::<u8>(), s()).prop_map(|(level, text)| ChunkPart::Heading { level, text }),
                s().prop_map(|text| ChunkPart::Text { text }),
                (
                    proptest::option::of(s()),
                    s(),
                    proptest::collection::vec(s(), 0..3),
                    proptest::collection::vec(s(), 0..3)
                )
                    .prop_map(|(language, code, outputs, images)| ChunkPart::Code {
                        language,
                        code,
                        outputs,
                        images
                    }),
                s().prop_map(|id| ChunkPart::Image { id }),
            ]
        }

        proptest! {
            /// Parts read back as they were; any shorter record is an error, never a panic.
            #[test]
            fn parts_round_trip_and_truncation_is_an_error(parts in proptest::collection::vec(part(), 0..6), cut in any::<proptest::sample::Index>()) {
                let mut bytes = Vec::new();
                encode(&parts, &mut bytes);
                prop_assert_eq!(decode(&bytes).unwrap(), parts);
                let at = cut.index(bytes.len());
                prop_assert!(decode(&bytes[..at]).is_err());
            }

            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
                let _ = decode(&bytes);
            }
        }
    }
}
