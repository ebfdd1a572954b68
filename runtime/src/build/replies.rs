//! The replies stages expect: a JSON schema for each, and strict parsing against it.
//!
//! Every model-using stage asks for one JSON object with string fields. The same declaration
//! gives the `response_format` schema sent to servers and the validator applied to whatever
//! comes back, so the two cannot disagree. A reply that does not validate is a typed failure
//! ([`ReplyError`]), never a guess: no substring search for "PASS", no first-word fallback.
//! One tolerance is declared: a reply wrapped in a single Markdown code fence (what servers that
//! ignore `response_format` tend to send) is unwrapped before parsing.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use serde_json::{Value, json};

use crate::model::ResponseSchema;

#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    Text,
    /// One of these exact strings.
    OneOf(Vec<String>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ReplySchema {
    pub name: String,
    pub fields: Vec<(String, Field)>,
    /// The `response_format` schema, made once and shared by every request that asks for it.
    response: Arc<ResponseSchema>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("the reply is not a JSON object: {0}")]
    NotJson(String),
    #[error("the reply lacks the field `{0}`")]
    Missing(String),
    #[error("the reply's field `{0}` is not a string")]
    NotAString(String),
    #[error("the reply's field `{field}` is {value:?}, not one of {allowed}")]
    NotAllowed { field: String, value: String, allowed: String },
    #[error("the reply has fields the schema does not allow: {0}")]
    Unexpected(String),
}

pub const IMAGE_TYPES: [&str; 9] =
    ["circuit", "chart", "bloch_sphere", "formula", "diagram", "table", "code_output", "decorative", "unknown"];

/// A schema that depends on nothing, made on first use.
macro_rules! fixed {
    ($name:expr, $fields:expr) => {{
        static SCHEMA: LazyLock<ReplySchema> = LazyLock::new(|| ReplySchema::new($name, $fields));
        &SCHEMA
    }};
}

impl ReplySchema {
    fn new(name: &str, fields: Vec<(&str, Field)>) -> ReplySchema {
        let fields: Vec<(String, Field)> = fields.into_iter().map(|(n, f)| (n.to_string(), f)).collect();
        let response = Arc::new(response_schema(name, &fields));
        ReplySchema { name: name.to_string(), fields, response }
    }

    pub fn transcription() -> &'static ReplySchema {
        fixed!("transcription", {
            let types = IMAGE_TYPES.iter().map(|s| s.to_string()).collect();
            vec![("image_type", Field::OneOf(types)), ("transcription", Field::Text)]
        })
    }

    pub fn decision() -> &'static ReplySchema {
        fixed!(
            "decision",
            vec![("reason", Field::Text), ("decision", Field::OneOf(vec!["pass".into(), "reject".into()]))]
        )
    }

    pub fn question(code: bool) -> &'static ReplySchema {
        if code {
            fixed!("question", vec![("question", Field::Text), ("entry_point", Field::Text)])
        } else {
            fixed!("question", vec![("question", Field::Text)])
        }
    }

    pub fn test() -> &'static ReplySchema {
        fixed!("test", vec![("test_code", Field::Text)])
    }

    pub fn answer() -> &'static ReplySchema {
        fixed!("answer", vec![("answer", Field::Text)])
    }

    pub fn category(names: &[String]) -> ReplySchema {
        ReplySchema::new("category", vec![("category", Field::OneOf(names.to_vec()))])
    }

    /// The JSON schema sent as `response_format` (strict: all fields required, nothing else).
    pub fn to_response_schema(&self) -> Arc<ResponseSchema> {
        self.response.clone()
    }

    /// Parses and validates a reply; the fields come back by name.
    pub fn parse(&self, content: &str) -> Result<BTreeMap<String, String>, ReplyError> {
        let text = unfence(content.trim());
        let value: Value = serde_json::from_str(text).map_err(|e| ReplyError::NotJson(e.to_string()))?;
        let Value::Object(map) = value else {
            return Err(ReplyError::NotJson(format!("found {}", kind(&value))));
        };
        let unexpected: Vec<&str> =
            map.keys().filter(|k| !self.fields.iter().any(|(n, _)| n == *k)).map(String::as_str).collect();
        if !unexpected.is_empty() {
            let mut unexpected = unexpected;
            unexpected.sort_unstable();
            return Err(ReplyError::Unexpected(unexpected.join(", ")));
        }
        let mut out = BTreeMap::new();
        for (name, field) in &self.fields {
            let v = map.get(name).ok_or_else(|| ReplyError::Missing(name.clone()))?;
            let Value::String(s) = v else { return Err(ReplyError::NotAString(name.clone())) };
            if let Field::OneOf(allowed) = field
                && !allowed.iter().any(|a| a == s.trim())
            {
                return Err(ReplyError::NotAllowed {
                    field: name.clone(),
                    value: s.clone(),
                    allowed: allowed.join(", "),
                });
            }
            let s = if matches!(field, Field::OneOf(_)) { s.trim().to_string() } else { s.clone() };
            out.insert(name.clone(), s);
        }
        Ok(out)
    }
}

fn response_schema(name: &str, fields: &[(String, Field)]) -> ResponseSchema {
    let mut properties = serde_json::Map::new();
    for (name, field) in fields {
        let p = match field {
            Field::Text => json!({"type": "string"}),
            Field::OneOf(values) => json!({"type": "string", "enum": values}),
        };
        properties.insert(name.clone(), p);
    }
    let required: Vec<&String> = fields.iter().map(|(n, _)| n).collect();
    ResponseSchema {
        name: name.to_string(),
        schema: json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false}),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The inside of a reply wrapped in one ```/```json fence; anything else unchanged.
fn unfence(text: &str) -> &str {
    let Some(rest) = text.strip_prefix("```") else { return text };
    let Some(body_start) = rest.find('\n') else { return text };
    let lang = rest[..body_start].trim();
    if !(lang.is_empty() || lang.eq_ignore_ascii_case("json")) {
        return text;
    }
    let body = &rest[body_start + 1..];
    match body.trim_end().strip_suffix("```") {
        Some(inner) if !inner.contains("```") => inner.trim(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_parsed_strictly() {
        let s = ReplySchema::decision();
        let ok = s.parse(r#"{"reason": "grounded", "decision": "pass"}"#).unwrap();
        assert_eq!(ok["decision"], "pass");
        assert_eq!(
            s.parse("```json\n{\"reason\": \"r\", \"decision\": \"reject\"}\n```").unwrap()["decision"],
            "reject"
        );
        // The original's substring parsing read "does not pass" as PASS.
        assert!(matches!(s.parse("DECISION: does not pass"), Err(ReplyError::NotJson(_))));
        assert!(matches!(
            s.parse(r#"{"reason": "r", "decision": "PASS, mostly"}"#),
            Err(ReplyError::NotAllowed { .. })
        ));
        assert_eq!(s.parse(r#"{"decision": "pass"}"#), Err(ReplyError::Missing("reason".into())));
        assert_eq!(s.parse(r#"{"reason": 1, "decision": "pass"}"#), Err(ReplyError::NotAString("reason".into())));
        assert_eq!(
            s.parse(r#"{"reason": "r", "decision": "pass", "score": "9"}"#),
            Err(ReplyError::Unexpected("score".into()))
        );
        assert!(matches!(s.parse("[1]"), Err(ReplyError::NotJson(m)) if m.contains("array")));
    }

    #[test]
    fn the_response_schema_matches_the_validator() {
        let schema = ReplySchema::category(&["a".into(), "b".into()]).to_response_schema();
        assert_eq!(
            schema.schema,
            json!({"type": "object", "properties": {"category": {"type": "string", "enum": ["a", "b"]}},
                   "required": ["category"], "additionalProperties": false})
        );
    }
}
