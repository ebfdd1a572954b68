//! Hashing conventions shared by the lock, the plan and the runtime.
//!
//! Every content id is a lowercase hex sha256. Structured values are hashed over their
//! canonical JSON (struct fields in declaration order, maps sorted, no whitespace), never over
//! `Debug` output.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Names the hashing rules; bumped whenever any id would change for the same input.
pub const HASH_SCHEME: &str = "sha256-canonical-json-v1";

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// sha256 of the canonical JSON of a value.
pub fn digest_json<T: Serialize>(value: &T) -> String {
    // Serializing plain data structs to a Vec cannot fail; an error would mean a non-string
    // map key, which none of our boundary types have.
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    sha256_hex(&bytes)
}

/// A seed derived from the build seed and a label (a stage name, an item id): adding one item
/// never changes another item's seed. Kept below 2^31 so every server accepts it.
pub fn derive_seed(build_seed: u64, label: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(build_seed.to_le_bytes());
    h.update(label.as_bytes());
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_le_bytes(first) & 0x7fff_ffff
}
