//! Model calls as data: the canonical request, the response, and the key that ties them.
//!
//! A [`ChatRequest`] is what sdc asks a model, in a provider-neutral canonical form: the resolved
//! model id, the messages (an image is referred to by the sha256 of its normalised PNG, never by
//! its bytes), the sampling parameters, the seed and the JSON schema of the expected reply. For
//! the builtin generator it also carries the stage's structured inputs, which is what that
//! generator reads. [`ChatRequest::key`] — the sha256 of the canonical JSON — is the request's
//! identity in the response store: the same request is answered from the store, whichever build
//! or spec asks it. What a response took (tokens, latency, when) is kept beside it and never
//! enters any identity.

pub mod builtin;
pub mod json;
pub mod openai;
pub mod throttle;

pub use sdc_compiler::spec::StructuredOutput;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// A part of a message: text, or an image by content id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    Text { text: String },
    Image { sha256: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Part>,
}

impl Message {
    pub fn text(role: Role, text: impl Into<String>) -> Message {
        Message { role, content: vec![Part::Text { text: text.into() }] }
    }

    /// The message's text parts joined (images left out).
    pub fn plain_text(&self) -> String {
        let mut out = String::new();
        for part in &self.content {
            if let Part::Text { text } = part {
                out.push_str(text);
            }
        }
        out
    }
}

/// What the builtin generator needs besides the messages: which stage and conversation step
/// is asking, and that stage's structured inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BuiltinCall {
    pub stage: String,
    pub step: String,
    pub inputs: Value,
    /// The generator's rule revision ([`builtin::REVISION`]).
    pub revision: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The resolved model id from the lock (`builtin/rules@0.1.0`, `gpt-4o-2024-08-06`, …).
    pub model: String,
    pub messages: Vec<Message>,
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub max_tokens: u64,
    pub seed: u64,
    /// The JSON schema the reply must satisfy, with its name.
    /// Shared: a stage asks every call with the same schema.
    pub response_schema: Option<std::sync::Arc<ResponseSchema>>,
    /// How the schema is put to the server. Part of the key only when it is not the default, so
    /// the keys of requests recorded before the setting existed are unchanged.
    #[serde(default, skip_serializing_if = "StructuredOutput::is_default")]
    pub structured_output: StructuredOutput,
    pub builtin: Option<BuiltinCall>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResponseSchema {
    pub name: String,
    pub schema: Value,
}

impl ChatRequest {
    /// Tokens the request may use, for tokens-per-minute limits before the server says: the
    /// prompt's text at about four characters a token, 85 per image (a low-detail tile), and
    /// every completion token it allows.
    pub fn estimated_tokens(&self) -> u64 {
        let images = self.messages.iter().flat_map(|m| &m.content).filter(|p| matches!(p, Part::Image { .. })).count();
        estimate_tokens(self.text_chars()) + 85 * images as u64 + self.max_tokens
    }

    /// The request's identity: sha256 of its canonical JSON.
    pub fn key(&self) -> [u8; 32] {
        self.canonical_and_key().1
    }

    /// The canonical JSON (what the `requests` journal records) and its sha256, made once.
    pub fn canonical_and_key(&self) -> (String, [u8; 32]) {
        let mut out = Vec::with_capacity(self.text_bytes() + 512);
        self.write_canonical(&mut out);
        let key = Sha256::digest(&out).into();
        // Only JSON punctuation and serde_json's escaped strings were written: valid UTF-8.
        (String::from_utf8(out).unwrap_or_default(), key)
    }

    /// `json::canonical(&serde_json::to_value(self))`, written field by field: every call's
    /// key goes through this, and building a `Value` copy of a request first cost more than the
    /// rest of keying it. The keys are in byte order; `canonical_form_is_the_generic_one` checks
    /// the two forms agree.
    fn write_canonical(&self, out: &mut Vec<u8>) {
        use json::{scalar, write};
        out.extend_from_slice(b"{\"builtin\":");
        match &self.builtin {
            None => out.extend_from_slice(b"null"),
            Some(b) => {
                out.extend_from_slice(b"{\"inputs\":");
                write(&b.inputs, out);
                out.extend_from_slice(b",\"revision\":");
                scalar(&b.revision, out);
                out.extend_from_slice(b",\"stage\":");
                scalar(&b.stage, out);
                out.extend_from_slice(b",\"step\":");
                scalar(&b.step, out);
                out.push(b'}');
            }
        }
        out.extend_from_slice(b",\"max_tokens\":");
        scalar(&self.max_tokens, out);
        out.extend_from_slice(b",\"messages\":[");
        for (i, m) in self.messages.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"content\":[");
            for (j, p) in m.content.iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                match p {
                    Part::Text { text } => {
                        out.extend_from_slice(b"{\"text\":");
                        json::string(text, out);
                        out.extend_from_slice(b",\"type\":\"text\"}");
                    }
                    Part::Image { sha256 } => {
                        out.extend_from_slice(b"{\"sha256\":");
                        scalar(sha256, out);
                        out.extend_from_slice(b",\"type\":\"image\"}");
                    }
                }
            }
            out.extend_from_slice(b"],\"role\":");
            scalar(&m.role, out);
            out.push(b'}');
        }
        out.extend_from_slice(b"],\"model\":");
        scalar(&self.model, out);
        out.extend_from_slice(b",\"response_schema\":");
        match &self.response_schema {
            None => out.extend_from_slice(b"null"),
            Some(r) => {
                out.extend_from_slice(b"{\"name\":");
                scalar(&r.name, out);
                out.extend_from_slice(b",\"schema\":");
                write(&r.schema, out);
                out.push(b'}');
            }
        }
        out.extend_from_slice(b",\"seed\":");
        scalar(&self.seed, out);
        if !self.structured_output.is_default() {
            out.extend_from_slice(b",\"structured_output\":");
            scalar(&self.structured_output, out);
        }
        out.extend_from_slice(b",\"temperature\":");
        scalar(&self.temperature, out);
        out.extend_from_slice(b",\"top_p\":");
        scalar(&self.top_p, out);
        out.push(b'}');
    }

    pub fn key_hex(&self) -> String {
        hex::encode(self.key())
    }

    /// The generic form `write_canonical` must agree with.
    #[cfg(test)]
    fn to_value(&self) -> Value {
        // Plain data with string keys: serialising cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Characters of text the request carries (messages only), for token estimates.
    pub fn text_chars(&self) -> usize {
        self.texts().map(|t| t.chars().count()).sum()
    }

    /// Bytes of text the request carries: what its JSON forms are sized by.
    pub fn text_bytes(&self) -> usize {
        self.texts().map(str::len).sum()
    }

    fn texts(&self) -> impl Iterator<Item = &str> {
        self.messages.iter().flat_map(|m| &m.content).filter_map(|p| match p {
            Part::Text { text } => Some(text.as_str()),
            Part::Image { .. } => None,
        })
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// A model's reply, as far as it matters to the dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub content: String,
    /// The model id the server says answered.
    pub model: String,
    pub system_fingerprint: Option<String>,
    pub finish_reason: Option<String>,
    pub usage: Usage,
}

impl ChatResponse {
    /// The response's identity for provenance: what the dataset depends on, no metadata.
    pub fn hash(&self) -> String {
        // The canonical JSON of these four fields, keys in byte order, written directly (this
        // runs for every call); `the_response_hash_is_over_the_canonical_form` checks it.
        let mut out = Vec::with_capacity(self.content.len() + 128);
        out.extend_from_slice(b"{\"content\":");
        json::string(&self.content, &mut out);
        out.extend_from_slice(b",\"finish_reason\":");
        json::scalar(&self.finish_reason, &mut out);
        out.extend_from_slice(b",\"model\":");
        json::scalar(&self.model, &mut out);
        out.extend_from_slice(b",\"system_fingerprint\":");
        json::scalar(&self.system_fingerprint, &mut out);
        out.push(b'}');
        hex::encode(Sha256::digest(&out))
    }
}

/// How a call went, kept beside the response and never part of any identity.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CallMeta {
    pub latency_ms: u64,
    /// Milliseconds since the Unix epoch when the call started.
    pub started_at_ms: u64,
    pub attempts: u32,
    /// `host:port` of the endpoint that answered, or `builtin`.
    pub endpoint: String,
    /// `online` or `batch`.
    pub mode: String,
}

/// The value stored under a request's key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub response: ChatResponse,
    pub meta: CallMeta,
}

/// What a call cost at the plan's prices; the builtin generator is free whatever the spec says.
pub fn cost(model: &sdc_compiler::plan::PlanModel, usage: Usage) -> f64 {
    if model.provider == "builtin" {
        return 0.0;
    }
    usage.prompt_tokens as f64 / 1000.0 * model.price_input_per_1k
        + usage.completion_tokens as f64 / 1000.0 * model.price_output_per_1k
}

/// What a batch call cost: the spec's `batch_price_input` / `batch_price_output`, or half the
/// online price where unset (the OpenAI Batch API's discount); the builtin generator is free.
pub fn batch_cost(model: &sdc_compiler::plan::PlanModel, usage: Usage) -> f64 {
    if model.provider == "builtin" {
        return 0.0;
    }
    let input = model.batch_price_input_per_1k.unwrap_or(model.price_input_per_1k / 2.0);
    let output = model.batch_price_output_per_1k.unwrap_or(model.price_output_per_1k / 2.0);
    usage.prompt_tokens as f64 / 1000.0 * input + usage.completion_tokens as f64 / 1000.0 * output
}

/// A rough token count for text when a server reports none: about four characters a token.
pub fn estimate_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ChatRequest {
        ChatRequest {
            model: "builtin/rules@0.1.0".into(),
            messages: vec![
                Message::text(Role::System, "sys"),
                Message {
                    role: Role::User,
                    content: vec![Part::Text { text: "hi".into() }, Part::Image { sha256: "ab".into() }],
                },
            ],
            temperature: 0.2,
            top_p: None,
            max_tokens: 100,
            seed: 7,
            response_schema: None,
            structured_output: StructuredOutput::default(),
            builtin: Some(BuiltinCall {
                stage: "classify".into(),
                step: "user".into(),
                inputs: serde_json::json!({"b": 1, "a": [2]}),
                revision: 1,
            }),
        }
    }

    #[test]
    fn canonical_form_is_the_generic_one() {
        let generic = |r: &ChatRequest| json::canonical(&r.to_value());
        let mut r = request();
        assert_eq!(r.canonical_and_key().0, generic(&r));
        r.builtin = None;
        r.top_p = Some(0.95);
        r.temperature = 1e-7;
        r.messages.push(Message::text(Role::Assistant, "\"quoted\" \u{1} é \u{2028} ```json\n{}```"));
        r.response_schema = Some(std::sync::Arc::new(ResponseSchema {
            name: "decision".into(),
            schema: serde_json::json!({"z": [1, {"b": null, "a": true}]}),
        }));
        assert_eq!(r.canonical_and_key().0, generic(&r));
        r.structured_output = StructuredOutput::Prompt;
        r.temperature = f64::NAN;
        assert_eq!(r.canonical_and_key().0, generic(&r));
        assert_eq!(r.canonical_and_key().1, <[u8; 32]>::from(Sha256::digest(generic(&r).as_bytes())));
    }

    #[test]
    fn the_response_hash_is_over_the_canonical_form() {
        let generic = |r: &ChatResponse| {
            let v = serde_json::json!({
                "content": r.content,
                "model": r.model,
                "system_fingerprint": r.system_fingerprint,
                "finish_reason": r.finish_reason,
            });
            hex::encode(Sha256::digest(json::canonical(&v).as_bytes()))
        };
        let mut r = ChatResponse {
            content: "{\"a\": \"é\u{1}\"}".into(),
            model: "m".into(),
            system_fingerprint: None,
            finish_reason: Some("stop".into()),
            usage: Usage { prompt_tokens: 3, completion_tokens: 4 },
        };
        assert_eq!(r.hash(), generic(&r));
        r.system_fingerprint = Some("fp".into());
        r.finish_reason = None;
        assert_eq!(r.hash(), generic(&r));
        let before = r.hash();
        r.usage.prompt_tokens = 9;
        assert_eq!(r.hash(), before, "usage is not identity");
    }

    #[test]
    fn the_key_covers_every_field_and_nothing_else() {
        let base = request();
        let k = base.key();
        assert_eq!(k, request().key());
        let mut r = request();
        r.seed = 8;
        assert_ne!(r.key(), k);
        let mut r = request();
        r.temperature = 0.3;
        assert_ne!(r.key(), k);
        let mut r = request();
        r.messages[1].content[1] = Part::Image { sha256: "cd".into() };
        assert_ne!(r.key(), k);
        let mut r = request();
        r.builtin = Some(BuiltinCall {
            stage: "classify".into(),
            step: "user".into(),
            inputs: serde_json::json!({"a": [2], "b": 1}),
            revision: 1,
        });
        assert_eq!(r.key(), k, "map order is not identity");
        let mut r = request();
        r.structured_output = StructuredOutput::Prompt;
        assert_ne!(r.key(), k, "a schema stated in the prompt is another request");
        insta::assert_snapshot!(base.canonical_and_key().0, @r#"{"builtin":{"inputs":{"a":[2],"b":1},"revision":1,"stage":"classify","step":"user"},"max_tokens":100,"messages":[{"content":[{"text":"sys","type":"text"}],"role":"system"},{"content":[{"text":"hi","type":"text"},{"sha256":"ab","type":"image"}],"role":"user"}],"model":"builtin/rules@0.1.0","response_schema":null,"seed":7,"temperature":0.2,"top_p":null}"#);
    }
}
