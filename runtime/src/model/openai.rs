//! The OpenAI-compatible provider: `POST {base_url}/chat/completions`.
//!
//! One call = one [`ChatRequest`] sent as the chat-completions body (text and image parts, the
//! image as a base64 data URL of its normal form, `seed`, sampling parameters and a
//! `response_format` JSON schema), retried only when the failure is transient: 408, 429, 5xx,
//! timeouts, refused or reset connections, truncated or malformed bodies. 400/401/403/404/422 and
//! other client errors fail at once with the server's own message. A `Retry-After` in seconds is
//! honoured (capped); otherwise the wait is exponential with jitter derived from the request key
//! and the attempt, so it needs no random source and never affects what is built. A server
//! whose error names `response_format` (llama-cpp-python's accepts only `json_object` with a
//! `schema`) is asked once more, at once, with the same schema in that form.
//!
//! The API key goes only into the `Authorization` header; it is never part of an error message,
//! a trace or anything written (errors name the endpoint as `host:port`).

use std::borrow::Cow;
use std::time::Duration;

use base64::Engine;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::throttle::Throttle;
use super::{ChatRequest, ChatResponse, Part, Role, StructuredOutput, Usage};

/// Where a model is served, with its key; resolved from the spec's environment by the CLI.
#[derive(Clone)]
pub struct Connection {
    /// The base URL, e.g. `http://127.0.0.1:8000/v1` (no trailing `/chat/completions`).
    pub base_url: String,
    pub api_key: Option<String>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key: Debug output ends up in logs.
        f.debug_struct("Connection").field("endpoint", &endpoint_of(&self.base_url)).finish_non_exhaustive()
    }
}

/// A model's connections, and which one the next attempt goes to: the one with the fewest
/// attempts in flight among those not marked down. A connection that could not be reached or
/// answered 5xx is marked down for a while (250 ms, doubling with each failure in a row, up to
/// 30 s); a success clears it. When every connection is down, the one due back first is tried,
/// so a build never stalls on the marks alone.
pub struct Router {
    connections: Vec<Route>,
    state: std::sync::Mutex<Vec<RouteState>>,
    /// Set once a server refused the `json_schema` form: later calls start in the `json_object`
    /// form instead of paying a refusal each.
    json_object: std::sync::atomic::AtomicBool,
}

/// A connection as requests use it, worked out once: the completions URL, `host:port` and the
/// `Authorization` header (marked sensitive, so it is never printed).
struct Route {
    url: Result<reqwest::Url, String>,
    endpoint: String,
    authorization: Option<reqwest::header::HeaderValue>,
}

impl Route {
    fn new(c: &Connection) -> Route {
        let endpoint = endpoint_of(&c.base_url);
        let url = format!("{}/chat/completions", c.base_url.trim_end_matches('/'));
        // The URL itself is not quoted: a base URL may carry a key in its query.
        let url = reqwest::Url::parse(&url).map_err(|e| format!("the model's base URL is not a valid URL ({e})"));
        let authorization = c.api_key.as_deref().filter(|k| !k.is_empty()).and_then(|k| {
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {k}")).ok()?;
            v.set_sensitive(true);
            Some(v)
        });
        Route { url, endpoint, authorization }
    }
}

#[derive(Clone, Copy, Default)]
struct RouteState {
    in_flight: usize,
    failures: u32,
    down_until: Option<std::time::Instant>,
}

impl Router {
    pub fn new(connections: Vec<Connection>) -> Router {
        let state = std::sync::Mutex::new(vec![RouteState::default(); connections.len()]);
        let connections = connections.iter().map(Route::new).collect();
        Router { connections, state, json_object: std::sync::atomic::AtomicBool::new(false) }
    }

    pub fn len(&self) -> usize {
        self.connections.len()
    }

    pub fn is_empty(&self) -> bool {
        self.connections.is_empty()
    }

    fn pick(&self) -> Option<(usize, &Route)> {
        let now = std::time::Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let up = |s: &RouteState| s.down_until.is_none_or(|t| t <= now);
        let k = (0..state.len())
            .filter(|&k| up(&state[k]))
            .min_by_key(|&k| state[k].in_flight)
            .or_else(|| (0..state.len()).min_by_key(|&k| state[k].down_until))?;
        state[k].in_flight += 1;
        Some((k, self.connections.get(k)?))
    }

    fn done(&self, k: usize, healthy: bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = state.get_mut(k) else { return };
        s.in_flight = s.in_flight.saturating_sub(1);
        if healthy {
            s.failures = 0;
            s.down_until = None;
        } else {
            s.failures = s.failures.saturating_add(1);
            let wait = Duration::from_millis(250).saturating_mul(1 << s.failures.saturating_sub(1).min(7));
            s.down_until = Some(std::time::Instant::now() + wait.min(Duration::from_secs(30)));
        }
    }
}

/// How hard to try, from the plan's model settings.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Retries after the first attempt.
    pub retries: u32,
    /// The first backoff; doubled per attempt up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

/// A call that did not produce a usable reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{endpoint}: {message} (after {attempts} attempt(s))")]
pub struct CallFailure {
    pub endpoint: String,
    pub message: String,
    pub attempts: u32,
    /// Whether the last failure was transient (the retries ran out) or final at once.
    pub transient: bool,
    /// The last HTTP status, if the server answered.
    pub status: Option<u16>,
}

impl CallFailure {
    /// A failure before any request reached the server: nothing to retry.
    pub fn before_sending(endpoint: String, message: String) -> CallFailure {
        CallFailure { endpoint, message, attempts: 0, transient: false, status: None }
    }

    /// 401 or 403: the key (or its permissions) is wrong, so every other call will fail too.
    pub fn is_refusal(&self) -> bool {
        matches!(self.status, Some(401 | 403))
    }
}

/// The outcome of one call: the reply, how many attempts it took, and the usage the server
/// reported for failed attempts too (a reply cut short still costs its tokens).
#[derive(Clone, Debug)]
pub struct Completed {
    pub response: ChatResponse,
    pub attempts: u32,
    pub endpoint: String,
}

pub struct Client {
    http: reqwest::Client,
}

enum Attempt {
    Done(ChatResponse),
    Transient { message: String, retry_after: Option<Duration>, status: Option<u16> },
    Final(String, u16),
}

impl Client {
    pub fn new(policy: &Policy) -> Result<Client, String> {
        crate::provider::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(policy.connect_timeout)
            .timeout(policy.timeout)
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Client { http })
    }

    /// Sends `request`, retrying transient failures. `image` returns the PNG bytes of an image
    /// id (the normal form in the store). Every attempt waits for `throttle`, and tells it how
    /// the server answered.
    pub async fn complete(
        &self,
        router: &Router,
        request: &ChatRequest,
        key: &[u8; 32],
        policy: &Policy,
        throttle: &Throttle,
        image: &(dyn Fn(&str) -> Option<Vec<u8>> + Sync),
    ) -> Result<Completed, CallFailure> {
        let mut form = request.structured_output;
        if router.json_object.load(std::sync::atomic::Ordering::Relaxed)
            && let Some(fallback) = fallback_form(request, form)
        {
            form = fallback;
        }
        let write = |form| {
            body_bytes(request, form, image)
                .map(bytes::Bytes::from)
                .map_err(|message| CallFailure::before_sending(String::new(), message))
        };
        let mut body = write(form)?;
        let mut attempt = 0u32;
        let estimate = request.estimated_tokens();
        // The refused first form is an attempt, but not one of the retries.
        let mut fell_back = false;
        loop {
            attempt += 1;
            let permit = throttle.acquire(estimate).await;
            // Each attempt picks its connection: a retry after a refused connection goes to
            // another endpoint when there is one.
            let Some((k, route)) = router.pick() else {
                return Err(CallFailure::before_sending(String::new(), "the model has no endpoint".into()));
            };
            let endpoint = route.endpoint.clone();
            let url = match &route.url {
                Ok(url) => url,
                Err(message) => {
                    router.done(k, true);
                    return Err(CallFailure::before_sending(endpoint, message.clone()));
                }
            };
            let outcome = self.once(url, route, &body).await;
            // A server that refuses the `json_schema` form names `response_format` in its error
            // (llama-cpp-python 0.3 answers 500); it is asked once more, at once, in the
            // `json_object` form with the same schema, which such servers enforce.
            let fallback = match &outcome {
                Attempt::Final(message, _) | Attempt::Transient { message, .. }
                    if message.contains("response_format") =>
                {
                    fallback_form(request, form)
                }
                _ => None,
            };
            // Refusing a form is an answer, not a sign the endpoint is unwell.
            let healthy = fallback.is_some()
                || !matches!(
                    &outcome,
                    Attempt::Transient { status: None, .. } | Attempt::Transient { status: Some(500..=599), .. }
                );
            router.done(k, healthy);
            match &outcome {
                Attempt::Done(r) => {
                    throttle.settle(permit.estimated_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
                    throttle.succeeded();
                }
                Attempt::Transient { status: Some(429), .. } => throttle.throttled(),
                _ => {}
            }
            // The slot is free again before any backoff sleep.
            drop(permit);
            if let Some(fallback) = fallback {
                form = fallback;
                body = write(form)?;
                fell_back = true;
                router.json_object.store(true, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
            match outcome {
                Attempt::Done(response) => return Ok(Completed { response, attempts: attempt, endpoint }),
                Attempt::Final(message, status) => {
                    let status = Some(status);
                    return Err(CallFailure { endpoint, message, attempts: attempt, transient: false, status });
                }
                Attempt::Transient { message, retry_after, status } => {
                    if attempt > policy.retries + u32::from(fell_back) {
                        return Err(CallFailure { endpoint, message, attempts: attempt, transient: true, status });
                    }
                    let wait = retry_after.unwrap_or_else(|| backoff(policy, key, attempt));
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn once(&self, url: &reqwest::Url, route: &Route, body: &bytes::Bytes) -> Attempt {
        let mut req =
            self.http.post(url.clone()).header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone());
        if let Some(authorization) = &route.authorization {
            req = req.header(reqwest::header::AUTHORIZATION, authorization.clone());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Attempt::Transient { message: describe(&e), retry_after: None, status: None },
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(300.0)));
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                let message = format!("the body was cut short ({})", describe(&e));
                return Attempt::Transient { message, retry_after, status: Some(status.as_u16()) };
            }
        };
        if !status.is_success() {
            let message = format!("HTTP {}: {}", status.as_u16(), server_message(&String::from_utf8_lossy(&bytes)));
            let transient = status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error();
            let code = Some(status.as_u16());
            return if transient {
                Attempt::Transient { message, retry_after, status: code }
            } else {
                Attempt::Final(message, status.as_u16())
            };
        }
        match parse_bytes(&bytes) {
            Ok(r) => Attempt::Done(r),
            // A 200 with a body we cannot read is what a proxy that cut the stream sends.
            Err(e) => Attempt::Transient { message: e, retry_after: None, status: Some(200) },
        }
    }
}

/// The chat-completions body for a request in its declared form, as [`body_bytes`] sends it
/// (and as a batch export writes it).
pub fn body(request: &ChatRequest, image: &(dyn Fn(&str) -> Option<Vec<u8>> + Sync)) -> Result<Value, String> {
    let bytes = body_bytes(request, request.structured_output, image)?;
    serde_json::from_slice(&bytes).map_err(|e| format!("cannot read back a request body: {e}"))
}

/// The chat-completions body as sent, with the schema put to the server in `form`: JSON bytes
/// written straight from the request. Building a `Value` of every body (its prompt texts and
/// base64 images copied into a tree, serialised, then freed) cost more than sending it.
pub fn body_bytes(
    request: &ChatRequest,
    form: StructuredOutput,
    image: &(dyn Fn(&str) -> Option<Vec<u8>> + Sync),
) -> Result<Vec<u8>, String> {
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    for m in &request.messages {
        let role = match m.role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        let content = match m.content.as_slice() {
            [Part::Text { text }] => WireContent::Text(Cow::Borrowed(text)),
            parts if parts.iter().all(|p| matches!(p, Part::Text { .. })) => {
                let texts: Vec<&str> = parts
                    .iter()
                    .filter_map(|p| if let Part::Text { text } = p { Some(text.as_str()) } else { None })
                    .collect();
                WireContent::Text(Cow::Owned(texts.join("\n\n")))
            }
            parts => {
                let mut wire = Vec::with_capacity(parts.len());
                for p in parts {
                    wire.push(match p {
                        Part::Text { text } => WirePart::Text { text: Cow::Borrowed(text) },
                        Part::Image { sha256 } => {
                            let bytes = image(sha256).ok_or_else(|| format!("image {sha256} is not in the store"))?;
                            let url = format!(
                                "data:image/png;base64,{}",
                                base64::engine::general_purpose::STANDARD.encode(bytes)
                            );
                            WirePart::ImageUrl { image_url: ImageUrl { url } }
                        }
                    });
                }
                WireContent::Parts(wire)
            }
        };
        messages.push(WireMessage { role, content });
    }
    let schema = request.response_schema.as_deref();
    let response_format = match (schema, form) {
        (Some(s), StructuredOutput::JsonSchema) => Some(ResponseFormat::JsonSchema {
            json_schema: JsonSchemaFormat { name: &s.name, schema: &s.schema, strict: true },
        }),
        (Some(s), StructuredOutput::JsonObject) => Some(ResponseFormat::JsonObject { schema: &s.schema }),
        (Some(s), StructuredOutput::Prompt) => {
            state_schema(&mut messages, &s.schema);
            None
        }
        (None, _) => None,
    };
    let mut out = Vec::with_capacity(request.text_bytes() + request.text_bytes() / 16 + 512);
    write_body(request, &messages, response_format.as_ref(), &mut out)
        .map_err(|e| format!("cannot write the request body: {e}"))?;
    Ok(out)
}

/// The chat-completions body, field by field in this order: `model`, `messages`, `temperature`,
/// `max_tokens`, `seed`, then `top_p` and `response_format` when set. Written by hand so the
/// prompt texts go through `json::string` (serde_json's escaping loop was most of writing a
/// body); `the_body_is_exactly_the_chat_completions_body` pins the bytes.
fn write_body(
    request: &ChatRequest,
    messages: &[WireMessage<'_>],
    response_format: Option<&ResponseFormat<'_>>,
    out: &mut Vec<u8>,
) -> serde_json::Result<()> {
    use crate::model::json::{scalar, string};
    out.extend_from_slice(b"{\"model\":");
    string(&request.model, out);
    out.extend_from_slice(b",\"messages\":[");
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"role\":");
        string(m.role, out);
        out.extend_from_slice(b",\"content\":");
        match &m.content {
            WireContent::Text(text) => string(text, out),
            WireContent::Parts(parts) => {
                out.push(b'[');
                for (j, part) in parts.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    match part {
                        WirePart::Text { text } => {
                            out.extend_from_slice(b"{\"type\":\"text\",\"text\":");
                            string(text, out);
                        }
                        WirePart::ImageUrl { image_url } => {
                            out.extend_from_slice(b"{\"type\":\"image_url\",\"image_url\":{\"url\":");
                            string(&image_url.url, out);
                            out.push(b'}');
                        }
                    }
                    out.push(b'}');
                }
                out.push(b']');
            }
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"temperature\":");
    scalar(&request.temperature, out);
    out.extend_from_slice(b",\"max_tokens\":");
    scalar(&request.max_tokens, out);
    out.extend_from_slice(b",\"seed\":");
    scalar(&request.seed, out);
    if let Some(top_p) = request.top_p {
        out.extend_from_slice(b",\"top_p\":");
        scalar(&top_p, out);
    }
    if let Some(format) = response_format {
        out.extend_from_slice(b",\"response_format\":");
        serde_json::to_writer(&mut *out, format)?;
    }
    out.push(b'}');
    Ok(())
}

/// The form to ask in again when a server refuses the request's own: only a `json_schema`
/// request has one, `json_object` with the same schema (what llama-cpp-python's server takes).
fn fallback_form(request: &ChatRequest, form: StructuredOutput) -> Option<StructuredOutput> {
    (request.response_schema.is_some() && form == StructuredOutput::JsonSchema).then_some(StructuredOutput::JsonObject)
}

/// A message as the body carries it ([`write_body`] writes it).
struct WireMessage<'a> {
    role: &'static str,
    content: WireContent<'a>,
}

/// A message's content: a string when it is only text, else typed parts.
enum WireContent<'a> {
    Text(Cow<'a, str>),
    Parts(Vec<WirePart<'a>>),
}

enum WirePart<'a> {
    Text { text: Cow<'a, str> },
    ImageUrl { image_url: ImageUrl },
}

struct ImageUrl {
    url: String,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ResponseFormat<'a> {
    JsonSchema { json_schema: JsonSchemaFormat<'a> },
    JsonObject { schema: &'a Value },
}

#[derive(Serialize)]
struct JsonSchemaFormat<'a> {
    name: &'a str,
    schema: &'a Value,
    strict: bool,
}

/// For servers that ignore `response_format`: the schema is stated at the end of the system
/// message (a system message is added first if there is none; many chat templates take only
/// one). The reply is still validated against it.
fn state_schema(messages: &mut Vec<WireMessage<'_>>, schema: &Value) {
    let instruction = format!(
        "Reply with one JSON object and nothing else. It must validate against this JSON schema:\n{}",
        crate::model::json::canonical(schema)
    );
    match messages.first_mut() {
        Some(first) if first.role == "system" => match &mut first.content {
            WireContent::Text(text) => *text = Cow::Owned(format!("{text}\n\n{instruction}")),
            WireContent::Parts(parts) => parts.push(WirePart::Text { text: Cow::Owned(instruction) }),
        },
        _ => messages.insert(0, WireMessage { role: "system", content: WireContent::Text(Cow::Owned(instruction)) }),
    }
}

/// Reads a chat-completions reply.
pub fn parse(text: &str) -> Result<ChatResponse, String> {
    parse_bytes(text.as_bytes())
}

/// Reads a chat-completions reply from its body's bytes: only the fields sdc keeps are read,
/// into a typed view borrowing the body, not a `Value` tree of the whole reply.
pub fn parse_bytes(body: &[u8]) -> Result<ChatResponse, String> {
    let reply: WireReply<'_> = serde_json::from_slice(body).map_err(|e| format!("the reply is not JSON ({e})"))?;
    let choice = reply.choices.into_iter().flatten().next().ok_or("the reply has no choices")?;
    let content = choice.message.and_then(|m| m.content).ok_or("the reply's first choice has no message content")?;
    let usage = reply.usage.unwrap_or_default();
    Ok(ChatResponse {
        content: content.into_owned(),
        model: reply.model.map(Cow::into_owned).unwrap_or_default(),
        system_fingerprint: reply.system_fingerprint.map(Cow::into_owned),
        finish_reason: choice.finish_reason.map(Cow::into_owned),
        usage: Usage {
            prompt_tokens: usage.prompt_tokens.unwrap_or(0),
            completion_tokens: usage.completion_tokens.unwrap_or(0),
        },
    })
}

/// What sdc reads of a reply; other fields are skipped. A field of another type than this
/// (a number for `model`, say) makes the reply malformed, as it is.
#[derive(serde::Deserialize)]
struct WireReply<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    system_fingerprint: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    choices: Option<Vec<WireChoice<'a>>>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(serde::Deserialize)]
struct WireChoice<'a> {
    #[serde(borrow, default)]
    message: Option<WireReplyMessage<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct WireReplyMessage<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
}

#[derive(Default, serde::Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

/// `min(max, base·2^(attempt−1))`, scaled by a factor in [0.5, 1) from (request key, attempt).
fn backoff(policy: &Policy, key: &[u8; 32], attempt: u32) -> Duration {
    let exp = policy.base_backoff.saturating_mul(1u32 << (attempt - 1).min(16)).min(policy.max_backoff);
    let mut h = Sha256::new();
    h.update(key);
    h.update(attempt.to_le_bytes());
    let d = h.finalize();
    let unit = u16::from_le_bytes([d[0], d[1]]) as f64 / 65536.0;
    exp.mul_f64(0.5 + unit / 2.0)
}

/// The server's error message: OpenAI's `{"error": {"message": …}}`, else the start of the body.
pub fn server_message(text: &str) -> String {
    let from_json = serde_json::from_str::<Value>(text).ok().and_then(|v| {
        v.get("error")
            .and_then(|e| {
                e.get("message").and_then(Value::as_str).map(str::to_string).or_else(|| e.as_str().map(str::to_string))
            })
            .or_else(|| v.get("detail").and_then(Value::as_str).map(str::to_string))
    });
    let message = from_json.unwrap_or_else(|| text.trim().to_string());
    let short: String = message.chars().take(300).collect();
    if short.is_empty() { "(empty body)".into() } else { short }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "the request timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else if e.is_body() || e.is_decode() {
        "the body was cut short".into()
    } else {
        // reqwest's Display names the URL, which holds no secret (keys go in a header).
        let mut s = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(inner) = source {
            s = format!("{s}: {inner}");
            source = inner.source();
        }
        s
    }
}

/// `host:port` of a base URL: what errors and provenance name, never the path or query.
pub fn endpoint_of(base_url: &str) -> String {
    match reqwest::Url::parse(base_url) {
        Ok(u) => format!("{}:{}", u.host_str().unwrap_or("?"), u.port_or_known_default().unwrap_or(0)),
        Err(_) => "(invalid URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::model::{Message, ResponseSchema};

    fn request() -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages: vec![
                Message::text(Role::System, "be brief"),
                Message {
                    role: Role::User,
                    content: vec![Part::Text { text: "what?".into() }, Part::Image { sha256: "ab".into() }],
                },
            ],
            temperature: 0.5,
            top_p: None,
            max_tokens: 10,
            seed: 7,
            response_schema: Some(Arc::new(ResponseSchema {
                name: "decision".into(),
                schema: json!({"type": "object"}),
            })),
            structured_output: StructuredOutput::default(),
            builtin: None,
        }
    }

    /// Short backoffs, so retry tests take milliseconds.
    fn quick_policy(retries: u32) -> Policy {
        Policy {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            retries,
            base_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        }
    }

    /// A local server answering every chat completion with a fixed reply; counts what it served.
    async fn live_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        server(false).await
    }

    /// `refuse_json_schema`: answer a `json_schema` response format with llama-cpp-python's 500.
    async fn server(refuse_json_schema: bool) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    // Headers, then as many body bytes as Content-Length says.
                    loop {
                        let Ok(n) = stream.read(&mut buf).await else { return };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&seen);
                        if let Some(end) = text.find("\r\n\r\n") {
                            let len = text[..end]
                                .lines()
                                .find_map(|l| {
                                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                                })
                                .and_then(|v| v.parse::<usize>().ok())
                                .unwrap_or(0);
                            if seen.len() >= end + 4 + len {
                                break;
                            }
                        }
                    }
                    let refused = refuse_json_schema && String::from_utf8_lossy(&seen).contains("\"json_schema\"");
                    let (status, reply) = if refused {
                        (
                            "500 Internal Server Error",
                            r#"{"error":{"message":"response_format: Input should be 'text' or 'json_object'"}}"#,
                        )
                    } else {
                        (
                            "200 OK",
                            r#"{"id":"r","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"{}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#,
                        )
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        reply.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(reply.as_bytes()).await;
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        });
        (url, hits)
    }

    #[tokio::test]
    async fn a_refused_json_schema_form_is_remembered_after_the_first_call() {
        let (url, hits) = server(true).await;
        let router = Router::new(vec![Connection { base_url: url, api_key: None }]);
        let policy = quick_policy(2);
        let client = Client::new(&policy).expect("client");
        let throttle = Throttle::new(4, None, None);
        let req = request();
        let image = |_: &str| Some(vec![1]);
        let first = client.complete(&router, &req, &req.key(), &policy, &throttle, &image).await;
        assert_eq!(first.expect("the fallback form is accepted").attempts, 2, "refused, then json_object");
        let second = client.complete(&router, &req, &req.key(), &policy, &throttle, &image).await;
        assert_eq!(second.expect("second call").attempts, 1, "starts in the json_object form");
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_dead_endpoint_is_avoided_and_every_call_completes_on_the_live_one() {
        let (live, hits) = live_server().await;
        // A port nobody listens on: connections are refused.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("http://{}/v1", l.local_addr().expect("addr"))
        };
        // The dead one first: with nothing in flight, ties go to the first connection.
        let router = Router::new(vec![
            Connection { base_url: dead, api_key: None },
            Connection { base_url: live, api_key: None },
        ]);
        let policy = quick_policy(3);
        let client = Client::new(&policy).expect("client");
        let throttle = Throttle::new(4, None, None);
        let mut attempts = 0;
        for _ in 0..20 {
            let done = client
                .complete(&router, &request(), &request().key(), &policy, &throttle, &|_| Some(vec![1]))
                .await
                .expect("completes");
            assert!(done.endpoint.starts_with("127.0.0.1:"), "{}", done.endpoint);
            attempts += done.attempts;
        }
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 20, "every call was answered by the live server");
        let dead_tries = attempts - 20;
        let marked = router.state.lock().expect("state")[0];
        assert!(
            marked.failures as usize >= 1 && dead_tries == marked.failures,
            "{dead_tries} tries, {} failures",
            marked.failures
        );
        assert!(dead_tries <= 5, "the dead endpoint is probed rarely, not on every call: {dead_tries}");
    }

    #[test]
    fn the_body_carries_images_seed_and_schema() {
        let b = body(&request(), &|id| (id == "ab").then(|| vec![1, 2, 3])).unwrap();
        assert_eq!(b["messages"][0]["content"], "be brief");
        assert_eq!(b["messages"][1]["content"][1]["image_url"]["url"], "data:image/png;base64,AQID");
        assert_eq!(b["seed"], 7);
        assert_eq!(b["response_format"]["json_schema"]["name"], "decision");
        assert!(body(&request(), &|_| None).unwrap_err().contains("not in the store"));
    }

    #[test]
    fn each_declared_form_puts_the_schema_where_it_says() {
        let image = |_: &str| Some(vec![1]);
        let mut r = request();
        r.structured_output = StructuredOutput::JsonObject;
        let b = body(&r, &image).unwrap();
        assert_eq!(b["response_format"], json!({"type": "json_object", "schema": {"type": "object"}}));
        assert_eq!(fallback_form(&r, r.structured_output), None, "no fallback from a declared form");

        r.structured_output = StructuredOutput::Prompt;
        let b = body(&r, &image).unwrap();
        assert!(b.get("response_format").is_none(), "{b}");
        assert_eq!(
            b["messages"][0]["content"],
            "be brief\n\nReply with one JSON object and nothing else. It must validate against this JSON schema:\n{\"type\":\"object\"}"
        );
        assert_eq!(b["messages"].as_array().map(Vec::len), Some(2), "no message added");

        r.messages.remove(0);
        let b = body(&r, &image).unwrap();
        assert_eq!(b["messages"][0]["role"], "system", "a system message is added when there is none");
        assert!(b["messages"][0]["content"].as_str().is_some_and(|t| t.starts_with("Reply with one JSON object")));
    }

    #[test]
    fn the_json_object_fallback_keeps_the_schema_and_applies_once() {
        let image = |_: &str| Some(vec![1]);
        let r = request();
        let b = body(&r, &image).unwrap();
        let form = fallback_form(&r, r.structured_output).expect("a json_schema request has a fallback");
        let f: Value = serde_json::from_slice(&body_bytes(&r, form, &image).unwrap()).unwrap();
        assert_eq!(f["response_format"], json!({"type": "json_object", "schema": {"type": "object"}}));
        assert_eq!(f["messages"], b["messages"]);
        assert_eq!(fallback_form(&r, form), None, "the fallback is tried once, not again");
        let mut plain = r.clone();
        plain.response_schema = None;
        assert_eq!(fallback_form(&plain, plain.structured_output), None);
    }

    #[test]
    fn the_body_is_exactly_the_chat_completions_body() {
        let mut r = request();
        r.top_p = Some(0.9);
        r.messages.push(Message {
            role: Role::Assistant,
            content: vec![Part::Text { text: "a".into() }, Part::Text { text: "b".into() }],
        });
        let b = body(&r, &|_| Some(vec![1, 2, 3])).unwrap();
        assert_eq!(
            b,
            json!({
                "model": "m",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": [
                        {"type": "text", "text": "what?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AQID"}},
                    ]},
                    {"role": "assistant", "content": "a\n\nb"},
                ],
                "temperature": 0.5,
                "max_tokens": 10,
                "seed": 7,
                "top_p": 0.9,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "decision", "schema": {"type": "object"}, "strict": true},
                },
            })
        );
        r.top_p = None;
        r.response_schema = None;
        let b = body(&r, &|_| Some(vec![1])).unwrap();
        assert!(b.get("top_p").is_none() && b.get("response_format").is_none(), "{b}");
    }

    #[test]
    fn replies_and_errors_are_read() {
        let r = parse(r#"{"model":"m-1","system_fingerprint":"fp","choices":[{"message":{"content":"{}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#).unwrap();
        assert_eq!((r.model.as_str(), r.usage.prompt_tokens, r.usage.completion_tokens), ("m-1", 3, 2));
        assert_eq!(r.system_fingerprint.as_deref(), Some("fp"));
        assert!(parse(r#"{"choices":[]}"#).is_err());
        assert_eq!(parse(r#"{"choices":null}"#).unwrap_err(), "the reply has no choices");
        let content_null = r#"{"choices":[{"message":{"role":"assistant","content":null}}]}"#;
        assert_eq!(parse(content_null).unwrap_err(), "the reply's first choice has no message content");
        let bare = parse(r#"{"choices":[{"message":{"content":"x"}}],"usage":null,"extra":{"a":[1]}}"#).unwrap();
        assert_eq!((bare.content.as_str(), bare.model.as_str(), bare.usage), ("x", "", Usage::default()));
        assert_eq!((bare.system_fingerprint, bare.finish_reason), (None, None));
        let escaped = parse(r#"{"choices":[{"message":{"content":"{\"a\": \"\u00e9\\n\"}"}}]}"#).unwrap();
        assert_eq!(escaped.content, "{\"a\": \"é\\n\"}", "escaped content is unescaped, not borrowed raw");
        assert!(parse(r#"{"choi"#).is_err());
        assert_eq!(server_message(r#"{"error":{"message":"bad key"}}"#), "bad key");
        assert_eq!(server_message(""), "(empty body)");
    }

    #[test]
    fn backoff_grows_and_stays_in_bounds() {
        let p = Policy {
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            retries: 5,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        };
        let key = [3u8; 32];
        for attempt in 1..10 {
            let d = backoff(&p, &key, attempt);
            let cap = Duration::from_millis(100 * (1 << (attempt - 1))).min(Duration::from_secs(2));
            assert!(d >= cap / 2 && d <= cap, "{attempt}: {d:?}");
        }
        assert_eq!(endpoint_of("http://127.0.0.1:8000/v1?key=secret"), "127.0.0.1:8000");
    }
}
