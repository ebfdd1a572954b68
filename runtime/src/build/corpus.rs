//! The ingested chunks as a build holds them: a [`ChunkMeta`] per chunk in memory, the chunk
//! itself in a spill file.
//!
//! A chunk carries its text several times over (the text, its structured parts, its code, the
//! neighbours' text, the earlier code), about 4 KB each; at 50k chunks that was the largest
//! thing a build held. Ingest hands chunks over a batch of files at a time, they are spilled at
//! once, and the stages that read a chunk's content (the chunk filter, the task stages) load it
//! when they start. Allocation needs only the sizes and the category hint, computed here.

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
    slot: Slot,
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

    pub fn put(&mut self, chunk: &Chunk) -> Result<(), SpillError> {
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
        let slot = self.writer.put(chunk)?;
        self.metas.push(ChunkMeta {
            id: chunk.id.clone(),
            document_id: chunk.document_id.clone(),
            ordinal: chunk.ordinal,
            images: chunk.images.clone(),
            code_blocks: chunk.code_blocks.len() as u64,
            chars: chars + code_chars,
            code_chars,
            has_neighbours: !chunk.previous_text.is_empty() || !chunk.next_text.is_empty(),
            category_hint,
            slot,
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
        self.reader.get(meta.slot)
    }

    /// Only the chunk's parts, what the chunk filter reads with the metadata: the rest of the
    /// record (its text again, code, neighbours) is skipped rather than copied out.
    pub fn load_parts(&self, meta: &ChunkMeta) -> Result<Vec<ChunkPart>, SpillError> {
        #[derive(serde::Deserialize)]
        struct Parts {
            parts: Vec<ChunkPart>,
        }
        Ok(self.reader.get::<Parts>(meta.slot)?.parts)
    }
}
