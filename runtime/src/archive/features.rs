//! The columns of the archive's parquet files, described twice: as Arrow fields and as
//! Hugging Face `datasets` features (the `huggingface` schema metadata and the card's YAML).
//!
//! `datasets` (`Features.from_arrow_schema`) uses a feature from the metadata only when the
//! Arrow field it would build from it equals the field in the file: same name, same type, and
//! nullable. So every field here is nullable, and the `Image` column is exactly
//! `struct<bytes: binary, path: string>` in that order. Otherwise the column silently comes back
//! as a plain dict and images are never decoded. This module does not build arrays; see `table`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema};

/// The schema metadata key `datasets` reads its features from.
pub(crate) const HF_METADATA_KEY: &str = "huggingface";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Feature {
    /// `{"_type": "Value", "dtype": …}` with a `datasets` dtype name.
    Value(&'static str),
    /// `{"_type": "Image"}`.
    Image,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Column {
    pub name: &'static str,
    pub feature: Feature,
    /// What the column holds, for the dataset card.
    pub description: &'static str,
}

const STRING: Feature = Feature::Value("string");

pub(crate) const SAMPLE_COLUMNS: [Column; 9] = [
    Column { name: "id", feature: STRING, description: "Stable id of the sample" },
    Column { name: "question", feature: STRING, description: "The prompt given to the model" },
    Column { name: "answer", feature: STRING, description: "The reference answer" },
    Column { name: "category", feature: STRING, description: "Topic category (see Categories)" },
    Column { name: "type", feature: STRING, description: "Task type" },
    Column { name: "test_code", feature: STRING, description: "Tests the answer passes (empty if none)" },
    Column { name: "entry_point", feature: STRING, description: "Function the tests call (empty if none)" },
    Column { name: "image", feature: Feature::Image, description: "PNG image, or null for a text-only sample" },
    Column { name: "source", feature: STRING, description: "Source document the sample was made from" },
];

pub(crate) const REJECTED_COLUMNS: [Column; 8] = [
    Column { name: "id", feature: STRING, description: "Id of the dropped entry" },
    Column { name: "kind", feature: STRING, description: "image, chunk, task or sample" },
    Column { name: "stage", feature: STRING, description: "Stage that dropped it" },
    Column { name: "outcome", feature: STRING, description: "rejected or failed" },
    Column { name: "reason", feature: STRING, description: "Why" },
    Column { name: "attempts", feature: Feature::Value("uint32"), description: "Attempts made" },
    Column { name: "source", feature: STRING, description: "Source document" },
    Column { name: "duplicate_of", feature: STRING, description: "Id it duplicates, for a dedup rejection" },
];

/// The Arrow schema of a file with these columns, carrying the `huggingface` metadata.
pub(crate) fn arrow_schema(columns: &[Column]) -> Schema {
    let fields: Vec<Field> = columns.iter().map(|c| Field::new(c.name, data_type(c.feature), true)).collect();
    let metadata = HashMap::from([(HF_METADATA_KEY.to_string(), hf_metadata(columns))]);
    Schema::new_with_metadata(fields, metadata)
}

/// The `huggingface` metadata value: `{"info": {"features": {…}}}` with the features in column
/// order, the key order `datasets` itself writes.
pub(crate) fn hf_metadata(columns: &[Column]) -> String {
    let features: Vec<String> = columns
        .iter()
        .map(|c| {
            let name = json_string(c.name);
            match c.feature {
                Feature::Value(dtype) => format!(r#"{name}:{{"dtype":{},"_type":"Value"}}"#, json_string(dtype)),
                Feature::Image => format!(r#"{name}:{{"_type":"Image"}}"#),
            }
        })
        .collect();
    format!(r#"{{"info":{{"features":{{{}}}}}}}"#, features.join(","))
}

/// The `dtype` a card's `dataset_info.features` list gives the feature.
pub(crate) fn yaml_dtype(feature: Feature) -> &'static str {
    match feature {
        Feature::Value(dtype) => dtype,
        Feature::Image => "image",
    }
}

fn data_type(feature: Feature) -> DataType {
    match feature {
        Feature::Value(dtype) => value_type(dtype).unwrap_or(DataType::Null),
        Feature::Image => image_type(),
    }
}

fn image_type() -> DataType {
    DataType::Struct(Fields::from(vec![
        Arc::new(Field::new("bytes", DataType::Binary, true)),
        Arc::new(Field::new("path", DataType::Utf8, true)),
    ]))
}

/// The Arrow type of a `datasets` `Value` dtype (the subset a verifier can meet in practice).
fn value_type(dtype: &str) -> Option<DataType> {
    Some(match dtype {
        "string" => DataType::Utf8,
        "large_string" => DataType::LargeUtf8,
        "binary" => DataType::Binary,
        "large_binary" => DataType::LargeBinary,
        "bool" => DataType::Boolean,
        "int8" => DataType::Int8,
        "int16" => DataType::Int16,
        "int32" => DataType::Int32,
        "int64" => DataType::Int64,
        "uint8" => DataType::UInt8,
        "uint16" => DataType::UInt16,
        "uint32" => DataType::UInt32,
        "uint64" => DataType::UInt64,
        "float16" => DataType::Float16,
        "float32" => DataType::Float32,
        "float64" => DataType::Float64,
        _ => return None,
    })
}

/// Checks that a schema's `huggingface` metadata describes every field exactly as `datasets`
/// needs it to be used (see the module header). The error says what is wrong, for a verifier to
/// report against the file.
pub(crate) fn check_hf_features(schema: &Schema) -> Result<(), String> {
    let Some(raw) = schema.metadata().get(HF_METADATA_KEY) else {
        return Err(format!("the Arrow schema has no `{HF_METADATA_KEY}` metadata"));
    };
    let value: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| format!("the `{HF_METADATA_KEY}` metadata is not JSON: {e}"))?;
    let Some(features) = value.pointer("/info/features").and_then(|f| f.as_object()) else {
        return Err(format!("the `{HF_METADATA_KEY}` metadata has no `info.features` object"));
    };
    for field in schema.fields() {
        let name = field.name();
        let Some(feature) = features.get(name) else {
            return Err(format!("column `{name}` has no feature"));
        };
        let expected = feature_type(feature).map_err(|e| format!("column `{name}`: {e}"))?;
        if field.data_type() != &expected || !field.is_nullable() {
            return Err(format!(
                "column `{name}` is {}{} but its feature {feature} needs nullable {expected}",
                if field.is_nullable() { "nullable " } else { "non-nullable " },
                field.data_type(),
            ));
        }
    }
    if let Some(extra) = features.keys().find(|k| schema.field_with_name(k).is_err()) {
        return Err(format!("feature `{extra}` has no column"));
    }
    Ok(())
}

fn feature_type(feature: &serde_json::Value) -> Result<DataType, String> {
    match feature.get("_type").and_then(|t| t.as_str()) {
        Some("Image") => Ok(image_type()),
        Some("Value") => {
            let dtype = feature.get("dtype").and_then(|d| d.as_str()).unwrap_or_default();
            value_type(dtype).ok_or_else(|| format!("unknown `Value` dtype `{dtype}`"))
        }
        Some(other) => Err(format!("feature type `{other}` is not one sdc writes")),
        None => Err("the feature has no `_type`".to_string()),
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_matches_what_datasets_writes() {
        // The exact text `Features.arrow_schema` gives for these features (datasets 5.2.0),
        // modulo the spaces Python's json.dumps puts after separators.
        let cols = [SAMPLE_COLUMNS[0], SAMPLE_COLUMNS[7], REJECTED_COLUMNS[5]];
        assert_eq!(
            hf_metadata(&cols),
            r#"{"info":{"features":{"id":{"dtype":"string","_type":"Value"},"image":{"_type":"Image"},"attempts":{"dtype":"uint32","_type":"Value"}}}}"#
        );
    }

    #[test]
    fn own_schemas_pass_the_check() {
        assert_eq!(check_hf_features(&arrow_schema(&SAMPLE_COLUMNS)), Ok(()));
        assert_eq!(check_hf_features(&arrow_schema(&REJECTED_COLUMNS)), Ok(()));
    }

    #[test]
    fn check_names_the_column_that_does_not_match() {
        let good = arrow_schema(&SAMPLE_COLUMNS);
        let mut fields: Vec<Field> = good.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields[7] = Field::new(
            "image",
            DataType::Struct(Fields::from(vec![
                Field::new("bytes", DataType::LargeBinary, true),
                Field::new("path", DataType::Utf8, true),
            ])),
            true,
        );
        let bad = Schema::new_with_metadata(fields.clone(), good.metadata().clone());
        let err = check_hf_features(&bad).unwrap_err();
        assert!(err.starts_with("column `image` is nullable Struct"), "{err}");

        fields[7] = Field::new("image", image_type(), false);
        let err = check_hf_features(&Schema::new_with_metadata(fields.clone(), good.metadata().clone())).unwrap_err();
        assert!(err.starts_with("column `image` is non-nullable"), "{err}");

        let err = check_hf_features(&Schema::new(fields)).unwrap_err();
        assert_eq!(err, "the Arrow schema has no `huggingface` metadata");
    }
}
