//! The records an archive stores: samples grouped in splits, and the rejected entries.
//!
//! Plain data handed over by the executor. Nothing here knows about parquet or tar; the order of
//! rows inside a split is the executor's (it sorts them), and this layer keeps it.

/// One training sample: a row of `data/<split>-NNNNN-of-NNNNN.parquet`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleRow {
    pub id: String,
    pub question: String,
    pub answer: String,
    pub category: String,
    /// The task type; the parquet column is named `type`.
    pub task_type: String,
    pub test_code: String,
    pub entry_point: String,
    /// `None` for a text-only sample (stored as a null struct, which `datasets` reads as `None`).
    pub image: Option<ImageCell>,
    pub source: String,
}

/// An image as the `datasets` `Image` feature stores it: the file bytes and a path whose extension
/// tells the format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageCell {
    /// PNG bytes.
    pub bytes: Vec<u8>,
    /// Like `images/<id>.png`.
    pub path: String,
}

/// Something the build dropped, with why: a row of `rejected.parquet`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RejectedRow {
    // Field order is the sort order of `rejected.parquet` (see `table::write_rejected`).
    /// `image`, `chunk`, `task` or `sample`.
    pub kind: String,
    pub id: String,
    pub stage: String,
    /// `rejected` or `failed`.
    pub outcome: String,
    pub reason: String,
    pub attempts: u32,
    pub source: String,
    /// The id this entry duplicates, for a dedup rejection.
    pub duplicate_of: Option<String>,
}

/// The rows of one split, in the order the archive stores them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// `train`, `validation` or `test` (any name of ASCII letters, digits and `_` is accepted).
    pub name: String,
    pub rows: Vec<SampleRow>,
}
