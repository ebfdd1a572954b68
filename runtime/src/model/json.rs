//! Canonical JSON for hashing, and tolerant-but-strict reading of JSON replies.
//!
//! `canonical`: object keys sorted by their UTF-8 bytes at every level, no whitespace, numbers as
//! serde_json prints them — the form every request and response hash is computed over, whatever
//! order a map was built in (and whichever crate in the graph turns on `preserve_order`).

use serde_json::Value;

pub fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_at_every_level() {
        let v: Value = serde_json::from_str(r#"{"b": {"z": 1, "a": [ {"y": null, "x": "é\n"} ]}, "a": 1.5}"#).unwrap();
        assert_eq!(canonical(&v), r#"{"a":1.5,"b":{"a":[{"x":"é\n","y":null}],"z":1}}"#);
    }
}
