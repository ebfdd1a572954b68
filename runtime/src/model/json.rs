//! Canonical JSON for hashing, and tolerant-but-strict reading of JSON replies.
//!
//! `canonical`: object keys sorted by their UTF-8 bytes at every level, no whitespace, numbers as
//! serde_json prints them — the form every request and response hash is computed over, whatever
//! order a map was built in (and whichever crate in the graph turns on `preserve_order`).

use serde_json::Value;

mod escape;

/// Writes `s` as a JSON string, quoted and escaped exactly as serde_json would.
pub(crate) fn string(s: &str, out: &mut Vec<u8>) {
    escape::write_escaped(out, s);
}

pub fn canonical(value: &Value) -> String {
    let mut out = Vec::with_capacity(256);
    write(value, &mut out);
    // Only serde_json's escaping and ASCII punctuation were written: valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// Writes straight into `out`: this runs for every model request's key (a few KB each, tens of
/// thousands per build), so no scalar or key goes through a temporary `String`.
pub(crate) fn write(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(k, out);
                out.push(b':');
                write(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(v, out);
            }
            out.push(b']');
        }
        Value::String(s) => string(s, out),
        other => scalar(other, out),
    }
}

pub(crate) fn scalar<T: serde::Serialize + ?Sized>(v: &T, out: &mut Vec<u8>) {
    // Writing a string, number, bool or null into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_at_every_level() {
        let v: Value = serde_json::from_str(r#"{"b": {"z": 1, "a": [ {"y": null, "x": "é\n"} ]}, "a": 1.5}"#).unwrap();
        assert_eq!(canonical(&v), r#"{"a":1.5,"b":{"a":[{"x":"é\n","y":null}],"z":1}}"#);
        // Same bytes as building each scalar with `to_string` (how keys were made before).
        let odd = serde_json::json!({"\u{1}\"k": [true, -0.0, 1e300, "\u{7f}\u{2028}é", {"b": 2, "a": null}], "": 3});
        fn reference(v: &Value) -> String {
            match v {
                Value::Object(m) => {
                    let mut e: Vec<_> = m.iter().collect();
                    e.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                    let parts: Vec<String> =
                        e.iter().map(|(k, v)| format!("{}:{}", Value::String((*k).clone()), reference(v))).collect();
                    format!("{{{}}}", parts.join(","))
                }
                Value::Array(a) => format!("[{}]", a.iter().map(reference).collect::<Vec<_>>().join(",")),
                other => other.to_string(),
            }
        }
        assert_eq!(canonical(&odd), reference(&odd));
    }
}
