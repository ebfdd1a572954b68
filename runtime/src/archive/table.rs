//! Parquet files in memory: samples and rejected entries to bytes, and back.
//!
//! The bytes are a function of the rows alone: fixed writer properties, `created_by` naming sdc
//! rather than the parquet crate, no timestamps. Pages are left **uncompressed**: the archive is
//! zstd-compressed as a whole (which compresses across files, better than page by page), and
//! the manifest hash over these bytes is the dataset's identity, which must not change when
//! libzstd does. This module does not shard or name files (see `write`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BinaryArray, RecordBatch, StringArray, StructArray, UInt32Array};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Fields, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::parquet_to_arrow_schema;
use parquet::basic::Compression;
use parquet::file::metadata::{FooterTail, ParquetMetaDataReader};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};

use super::error::ArchiveError;
use super::features::{REJECTED_COLUMNS, SAMPLE_COLUMNS, arrow_schema};
use super::rows::{ImageCell, RejectedRow, SampleRow};

/// Rows per row group in a samples file: what `datasets` itself uses for image datasets, so a
/// reader (or the Hub's viewer) never has to hold many images at once.
const SAMPLE_ROW_GROUP_ROWS: usize = 100;
const REJECTED_ROW_GROUP_ROWS: usize = 64 * 1024;

/// Arrow `string` and `binary` arrays have 32-bit offsets: one array holds under 2 GiB.
const ARRAY_BYTES: usize = i32::MAX as usize;

/// A samples file, rows in the given order. `path` only names the file in errors.
pub(crate) fn write_samples(rows: &[SampleRow], path: &str) -> Result<Vec<u8>, ArchiveError> {
    let schema = Arc::new(arrow_schema(&SAMPLE_COLUMNS));
    let encode = |e: &dyn std::fmt::Display| ArchiveError::Encode { path: path.to_string(), message: e.to_string() };
    let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties(SAMPLE_ROW_GROUP_ROWS)))
        .map_err(|e| encode(&e))?;
    for batch in batches(rows, sample_sizes) {
        let batch = sample_batch(&schema, batch.map_err(|row| encode(&too_large(row)))?).map_err(|e| encode(&e))?;
        writer.write(&batch).map_err(|e| encode(&e))?;
    }
    writer.into_inner().map_err(|e| encode(&e))
}

/// `rejected.parquet`, sorted (by kind, then id, then every other field), so its bytes do not
/// depend on the order the executor collected the entries in.
pub(crate) fn write_rejected(rows: &[RejectedRow]) -> Result<Vec<u8>, ArchiveError> {
    let path = "rejected.parquet";
    let encode = |e: &dyn std::fmt::Display| ArchiveError::Encode { path: path.to_string(), message: e.to_string() };
    let mut sorted: Vec<&RejectedRow> = rows.iter().collect();
    sorted.sort();
    let schema = Arc::new(arrow_schema(&REJECTED_COLUMNS));
    let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties(REJECTED_ROW_GROUP_ROWS)))
        .map_err(|e| encode(&e))?;
    for batch in batches(&sorted, |r| rejected_sizes(r)) {
        let batch = rejected_batch(&schema, batch.map_err(|row| encode(&too_large(row)))?).map_err(|e| encode(&e))?;
        writer.write(&batch).map_err(|e| encode(&e))?;
    }
    writer.into_inner().map_err(|e| encode(&e))
}

/// Reads a samples file back (rows in file order). Refuses a file whose columns are missing, of
/// another type, or null where sdc never writes null.
pub fn read_samples(parquet_bytes: &[u8]) -> Result<Vec<SampleRow>, ArchiveError> {
    let batches = decode(parquet_bytes)?;
    let mut rows = Vec::new();
    for batch in &batches {
        let text = |name: &'static str| string_column(batch, name);
        let (id, question, answer, category) = (text("id")?, text("question")?, text("answer")?, text("category")?);
        let (task_type, test_code, entry_point) = (text("type")?, text("test_code")?, text("entry_point")?);
        let source = text("source")?;
        let image = image_column(batch)?;
        for (i, image) in image.into_iter().enumerate() {
            let get = |col: &(&'static str, &StringArray)| required(col, i);
            rows.push(SampleRow {
                id: get(&id)?,
                question: get(&question)?,
                answer: get(&answer)?,
                category: get(&category)?,
                task_type: get(&task_type)?,
                test_code: get(&test_code)?,
                entry_point: get(&entry_point)?,
                image,
                source: get(&source)?,
            });
        }
    }
    Ok(rows)
}

/// Reads `rejected.parquet` back (rows in file order, which is sorted). Refuses a file whose
/// columns are missing, of another type, or null where sdc never writes null.
pub fn read_rejected(parquet_bytes: &[u8]) -> Result<Vec<RejectedRow>, ArchiveError> {
    let mut rows = Vec::new();
    for batch in &decode(parquet_bytes)? {
        let text = |name: &'static str| string_column(batch, name);
        let (id, kind, stage, outcome) = (text("id")?, text("kind")?, text("stage")?, text("outcome")?);
        let (reason, source, duplicate_of) = (text("reason")?, text("source")?, text("duplicate_of")?);
        let attempts = column::<UInt32Array>(batch, "attempts", "uint32")?;
        for i in 0..batch.num_rows() {
            let get = |col: &(&'static str, &StringArray)| required(col, i);
            if attempts.is_null(i) {
                return Err(ArchiveError::Column { column: "attempts".into(), message: format!("row {i} is null") });
            }
            rows.push(RejectedRow {
                kind: get(&kind)?,
                id: get(&id)?,
                stage: get(&stage)?,
                outcome: get(&outcome)?,
                reason: get(&reason)?,
                attempts: attempts.value(i),
                source: get(&source)?,
                duplicate_of: (!duplicate_of.1.is_null(i)).then(|| duplicate_of.1.value(i).to_string()),
            });
        }
    }
    Ok(rows)
}

/// Every record batch of a parquet file.
fn decode(parquet_bytes: &[u8]) -> Result<Vec<RecordBatch>, ArchiveError> {
    let data = Bytes::copy_from_slice(parquet_bytes);
    // The parquet decoder is not hardened against hostile input and has panicked on fuzzed
    // files; a panic here must become an error about the file, not abort the caller.
    catch_unwind(AssertUnwindSafe(|| -> Result<Vec<RecordBatch>, String> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(data).map_err(|e| e.to_string())?;
        let reader = reader.build().map_err(|e| e.to_string())?;
        reader.map(|b| b.map_err(|e| e.to_string())).collect()
    }))
    .map_err(|_| ArchiveError::Decode("the parquet decoder panicked".to_string()))?
    .map_err(ArchiveError::Decode)
}

/// The Arrow schema (with its metadata) of a parquet file, from the file's last bytes only: a
/// verifier streams entries and keeps just their tail. `tail` may be the whole file.
pub(crate) fn footer_schema(tail: &[u8]) -> Result<Schema, String> {
    let Some(footer) = tail.len().checked_sub(8).and_then(|at| tail.get(at..)) else {
        return Err("the file is too short to be parquet".to_string());
    };
    let footer: &[u8; 8] = footer.try_into().map_err(|_| "the file is too short to be parquet".to_string())?;
    let footer = FooterTail::try_new(footer).map_err(|e| format!("not a parquet file: {e}"))?;
    if footer.is_encrypted_footer() {
        return Err("the parquet footer is encrypted".to_string());
    }
    let len = footer.metadata_length();
    let Some(metadata) = (tail.len() - 8).checked_sub(len).and_then(|start| tail.get(start..tail.len() - 8)) else {
        return Err(format!("the parquet footer declares {len} bytes of metadata, more than the file's tail holds"));
    };
    catch_unwind(|| {
        let metadata = ParquetMetaDataReader::decode_metadata(metadata).map_err(|e| e.to_string())?;
        let file = metadata.file_metadata();
        parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata()).map_err(|e| e.to_string())
    })
    .map_err(|_| "the parquet decoder panicked on the footer".to_string())?
}

fn properties(row_group_rows: usize) -> WriterProperties {
    // Every setting that shapes the bytes is spelled out, so a change of the crate's defaults
    // shows up as a diff here rather than as a silently different dataset hash.
    WriterProperties::builder()
        .set_created_by(format!("sdc {}", env!("CARGO_PKG_VERSION")))
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::UNCOMPRESSED)
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_bloom_filter_enabled(false)
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_max_row_group_bytes(None)
        .set_data_page_size_limit(1024 * 1024)
        .set_dictionary_page_size_limit(1024 * 1024)
        .set_write_batch_size(1024)
        .set_key_value_metadata(None)
        .build()
}

/// Splits rows into runs whose every string or binary column stays under `ARRAY_BYTES`. A row
/// that alone exceeds it is returned as `Err(its index)`.
fn batches<'r, T, const N: usize>(
    rows: &'r [T],
    sizes: impl Fn(&T) -> [usize; N] + 'r,
) -> impl Iterator<Item = Result<&'r [T], usize>> + 'r {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= rows.len() {
            return None;
        }
        let mut sums = [0usize; N];
        let mut end = start;
        for row in rows.get(start..).unwrap_or_default() {
            let row_sizes = sizes(row);
            if row_sizes.iter().any(|&s| s > ARRAY_BYTES) {
                if end == start {
                    let bad = start;
                    start = rows.len();
                    return Some(Err(bad));
                }
                break;
            }
            if sums.iter().zip(row_sizes).any(|(&sum, s)| sum + s > ARRAY_BYTES) {
                break;
            }
            sums.iter_mut().zip(row_sizes).for_each(|(sum, s)| *sum += s);
            end += 1;
        }
        let batch = rows.get(start..end).unwrap_or_default();
        start = end;
        Some(Ok(batch))
    })
}

fn too_large(row: usize) -> String {
    format!("row {row} has a field of 2 GiB or more, which an Arrow array cannot hold")
}

fn sample_sizes(r: &SampleRow) -> [usize; 10] {
    let (bytes, path) = r.image.as_ref().map_or((0, 0), |i| (i.bytes.len(), i.path.len()));
    [
        r.id.len(),
        r.question.len(),
        r.answer.len(),
        r.category.len(),
        r.task_type.len(),
        r.test_code.len(),
        r.entry_point.len(),
        bytes,
        path,
        r.source.len(),
    ]
}

fn rejected_sizes(r: &RejectedRow) -> [usize; 7] {
    [
        r.id.len(),
        r.kind.len(),
        r.stage.len(),
        r.outcome.len(),
        r.reason.len(),
        r.source.len(),
        r.duplicate_of.as_ref().map_or(0, String::len),
    ]
}

fn strings<'a, T: 'a>(rows: &'a [T], f: impl Fn(&'a T) -> &'a str) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
}

fn sample_batch(schema: &SchemaRef, rows: &[SampleRow]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let image_fields = match schema.field_with_name("image")?.data_type() {
        DataType::Struct(fields) => fields.clone(),
        _ => Fields::empty(),
    };
    let bytes = BinaryArray::from_iter(rows.iter().map(|r| r.image.as_ref().map(|i| i.bytes.as_slice())));
    let paths = StringArray::from_iter(rows.iter().map(|r| r.image.as_ref().map(|i| i.path.as_str())));
    // A missing image is a null struct: `datasets` turns that into `None`, while a struct of two
    // nulls makes `Image.decode_example` raise.
    let valid = NullBuffer::from(rows.iter().map(|r| r.image.is_some()).collect::<Vec<bool>>());
    let image = StructArray::try_new(
        image_fields,
        vec![Arc::new(bytes) as ArrayRef, Arc::new(paths) as ArrayRef],
        Some(valid),
    )?;
    RecordBatch::try_new(
        schema.clone(),
        vec![
            strings(rows, |r| &r.id),
            strings(rows, |r| &r.question),
            strings(rows, |r| &r.answer),
            strings(rows, |r| &r.category),
            strings(rows, |r| &r.task_type),
            strings(rows, |r| &r.test_code),
            strings(rows, |r| &r.entry_point),
            Arc::new(image),
            strings(rows, |r| &r.source),
        ],
    )
}

fn rejected_batch(schema: &SchemaRef, rows: &[&RejectedRow]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    RecordBatch::try_new(
        schema.clone(),
        vec![
            strings(rows, |r| &r.id),
            strings(rows, |r| &r.kind),
            strings(rows, |r| &r.stage),
            strings(rows, |r| &r.outcome),
            strings(rows, |r| &r.reason),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.attempts))),
            strings(rows, |r| &r.source),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.duplicate_of.as_deref()))),
        ],
    )
}

fn column<'b, A: 'static>(batch: &'b RecordBatch, name: &str, expected: &str) -> Result<&'b A, ArchiveError> {
    let column_error = |message: String| ArchiveError::Column { column: name.to_string(), message };
    let col = batch.column_by_name(name).ok_or_else(|| column_error("missing".to_string()))?;
    col.as_any().downcast_ref::<A>().ok_or_else(|| column_error(format!("is {}, expected {expected}", col.data_type())))
}

fn string_column<'b>(
    batch: &'b RecordBatch,
    name: &'static str,
) -> Result<(&'static str, &'b StringArray), ArchiveError> {
    Ok((name, column::<StringArray>(batch, name, "string")?))
}

fn required((name, col): &(&'static str, &StringArray), row: usize) -> Result<String, ArchiveError> {
    if row >= col.len() || col.is_null(row) {
        return Err(ArchiveError::Column { column: name.to_string(), message: format!("row {row} is null") });
    }
    Ok(col.value(row).to_string())
}

fn image_column(batch: &RecordBatch) -> Result<Vec<Option<ImageCell>>, ArchiveError> {
    let image = column::<StructArray>(batch, "image", "struct<bytes: binary, path: string>")?;
    let child = |name: &str| {
        image.column_by_name(name).ok_or_else(|| ArchiveError::Column {
            column: "image".to_string(),
            message: format!("has no `{name}` field"),
        })
    };
    let wrong = |name: &str| ArchiveError::Column {
        column: "image".to_string(),
        message: format!("`{name}` has the wrong type"),
    };
    let bytes = child("bytes")?.as_any().downcast_ref::<BinaryArray>().ok_or_else(|| wrong("bytes"))?;
    let paths = child("path")?.as_any().downcast_ref::<StringArray>().ok_or_else(|| wrong("path"))?;
    (0..image.len())
        .map(|i| {
            if image.is_null(i) {
                return Ok(None);
            }
            if bytes.is_null(i) {
                return Err(ArchiveError::Column {
                    column: "image".to_string(),
                    message: format!("row {i} has an image without bytes"),
                });
            }
            let path = if paths.is_null(i) { String::new() } else { paths.value(i).to_string() };
            Ok(Some(ImageCell { bytes: bytes.value(i).to_vec(), path }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::features::check_hf_features;

    fn row(id: &str, image: Option<&[u8]>) -> SampleRow {
        SampleRow {
            id: id.to_string(),
            question: format!("question {id}"),
            answer: "42".to_string(),
            category: "basics".to_string(),
            task_type: "qa".to_string(),
            test_code: String::new(),
            entry_point: String::new(),
            image: image.map(|b| ImageCell { bytes: b.to_vec(), path: format!("images/{id}.png") }),
            source: "doc.ipynb".to_string(),
        }
    }

    #[test]
    fn rejected_rows_round_trip_sorted() {
        let entry = |kind: &str, id: &str, outcome: &str, duplicate_of: Option<&str>| RejectedRow {
            kind: kind.into(),
            id: id.into(),
            stage: "answer".into(),
            outcome: outcome.into(),
            reason: format!("reason {id}"),
            attempts: 3,
            source: "doc.ipynb".into(),
            duplicate_of: duplicate_of.map(str::to_string),
        };
        let rows = vec![
            entry("task", "b", "failed", None),
            entry("sample", "c", "rejected", Some("a")),
            entry("task", "a", "rejected", None),
        ];
        let back = read_rejected(&write_rejected(&rows).unwrap()).unwrap();
        let mut sorted = rows.clone();
        sorted.sort();
        assert_eq!(back, sorted);
        let samples = write_samples(&[row("a", None)], "x.parquet").unwrap();
        assert!(
            matches!(read_rejected(&samples), Err(ArchiveError::Column { .. })),
            "a samples file is not rejected rows"
        );
    }

    #[test]
    fn samples_round_trip_in_order_with_null_images() {
        let rows: Vec<SampleRow> =
            (0..250).map(|i| row(&format!("{:03}", 250 - i), (i % 3 == 0).then_some(&[1u8, 2, 3][..]))).collect();
        let bytes = write_samples(&rows, "x.parquet").unwrap();
        assert_eq!(read_samples(&bytes).unwrap(), rows);
        // 250 rows make three row groups.
        let meta = ParquetMetaDataReader::new().parse_and_finish(&Bytes::from(bytes.clone())).unwrap();
        assert_eq!(meta.num_row_groups(), 3);
        assert!(meta.file_metadata().created_by().is_some_and(|c| c.starts_with("sdc ")));
        assert_eq!(write_samples(&rows, "x.parquet").unwrap(), bytes, "same rows, same bytes");
    }

    #[test]
    fn footer_schema_from_the_tail_carries_the_features() {
        let bytes = write_samples(&[row("a", None)], "x.parquet").unwrap();
        let n = bytes.len();
        let metadata_len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().unwrap()) as usize;
        // Exactly the footer is enough; one byte less is not.
        let schema = footer_schema(&bytes[n - metadata_len - 8..]).unwrap();
        assert_eq!(check_hf_features(&schema), Ok(()));
        assert_eq!(schema.fields().len(), 9);
        let err = footer_schema(&bytes[n - metadata_len - 7..]).unwrap_err();
        assert!(err.contains("more than the file's tail holds"), "{err}");
        assert!(footer_schema(b"nope").is_err());
        assert!(footer_schema(b"12345678").unwrap_err().starts_with("not a parquet file"));
    }

    #[test]
    fn rejected_sorts_its_rows() {
        let r = |kind: &str, id: &str| RejectedRow {
            id: id.to_string(),
            kind: kind.to_string(),
            stage: "dedup".to_string(),
            outcome: "rejected".to_string(),
            reason: "duplicate".to_string(),
            attempts: 1,
            source: "s".to_string(),
            duplicate_of: None,
        };
        let a = write_rejected(&[r("task", "b"), r("image", "z"), r("task", "a")]).unwrap();
        let b = write_rejected(&[r("task", "a"), r("task", "b"), r("image", "z")]).unwrap();
        assert_eq!(a, b);
        assert!(!write_rejected(&[]).unwrap().is_empty(), "an empty table is still a file");
    }

    #[test]
    fn batches_respect_the_array_limit() {
        let sizes = |n: &usize| [*n];
        let rows = [ARRAY_BYTES / 2, ARRAY_BYTES / 2, 3, ARRAY_BYTES, 1];
        let got: Vec<Result<usize, usize>> = batches(&rows, sizes).map(|b| b.map(<[usize]>::len)).collect();
        assert_eq!(got, vec![Ok(2), Ok(1), Ok(1), Ok(1)]);
        let rows = [1, ARRAY_BYTES + 1, 1];
        let got: Vec<Result<usize, usize>> = batches(&rows, sizes).map(|b| b.map(<[usize]>::len)).collect();
        assert_eq!(got, vec![Ok(1), Err(1)]);
    }

    #[test]
    fn read_samples_names_a_missing_column() {
        let rejected = RejectedRow {
            id: "a".to_string(),
            kind: "task".to_string(),
            stage: "verify".to_string(),
            outcome: "failed".to_string(),
            reason: "tests failed".to_string(),
            attempts: 2,
            source: "s".to_string(),
            duplicate_of: None,
        };
        let err = read_samples(&write_rejected(&[rejected]).unwrap()).unwrap_err();
        assert_eq!(err.to_string(), "parquet column `question`: missing");
    }

    #[test]
    fn read_samples_refuses_garbage_without_panicking() {
        let mut bytes = write_samples(&[row("a", Some(b"png"))], "x.parquet").unwrap();
        for i in (0..bytes.len()).step_by(7) {
            bytes[i] ^= 0x5a;
            let _ = read_samples(&bytes);
            bytes[i] ^= 0x5a;
        }
        assert!(read_samples(b"not parquet").is_err());
    }
}
