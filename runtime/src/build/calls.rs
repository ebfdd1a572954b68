//! Model calls through the response store.
//!
//! A stage holds a [`Conversation`] per item: its template's `system` block, then one user
//! message per step (`user`, `refine`, `test`, `correction`, …) and the model's replies. Each
//! step becomes a canonical [`ChatRequest`]; its key is looked up in the `responses` journal and
//! only a miss reaches a provider, whose reply is put in the store before it is used (the
//! journal is write-behind: a `kill -9` can lose the last few milliseconds). Either way the reply
//! is validated against the step's schema, and the call is counted — made or served — in the
//! stage's statistics and the item's trace.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sdc_compiler::hash::derive_seed;
use sdc_compiler::plan::{PlanModel, PlanStage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::outcome::Books;
use super::prompts::{PromptError, Prompts};
use super::replies::{ReplyError, ReplySchema};
use crate::model::openai;
use crate::model::{self, BuiltinCall, CallMeta, ChatRequest, Message, Part, Role, StoredResponse};
use crate::store::{Appender, Journal, StoreError};

/// One call, as provenance and traces record it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallTrace {
    pub stage: String,
    pub step: String,
    pub model: String,
    pub request: String,
    pub response: String,
    pub served_from_store: bool,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// The server's `system_fingerprint`, when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The stored response came from a batch engine (`sdc batch import`): priced at the batch
    /// price in the ledger file and the report, never in provenance.
    #[serde(default)]
    pub batch: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Prompt(#[from] PromptError),
    /// No usable reply, after `attempts` requests (0: none could be sent).
    #[error("{message}")]
    Provider { message: String, attempts: u32 },
    /// The server refused the key (401/403): every call to it would fail, so the build stops.
    #[error("{0}; check the API key variable (its value is never printed)")]
    Refused(String),
    #[error("{model} replied with something invalid at step `{step}`: {error}")]
    Reply { model: String, step: String, error: ReplyError },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Export (`sdc batch export`): the call is not in the store and was collected for a batch
    /// instead of being sent; the item waits there.
    #[error("stage `{stage}` waits for a batch result")]
    Pending { stage: String },
}

impl CallError {
    fn provider(message: String) -> CallError {
        CallError::Provider { message, attempts: 0 }
    }

    /// Requests sent for the failed call (1 for anything that is not a server's failure).
    pub fn attempts(&self) -> u32 {
        match self {
            CallError::Provider { attempts, .. } => (*attempts).max(1),
            _ => 1,
        }
    }

    /// Whether the whole build must stop (the store is broken), whatever the stage's policy.
    pub fn is_fatal(&self) -> bool {
        matches!(self, CallError::Store(_) | CallError::Refused(_))
    }

    /// The call waits for a batch result: the item stops, neither failed nor kept.
    pub fn is_pending(&self) -> bool {
        matches!(self, CallError::Pending { .. })
    }
}

/// Export mode: a call of an online model that is not in the store is collected, never sent.
/// Calls of the chosen stage keep their exact chat-completions body (what the online provider
/// would POST); calls of other stages are only counted, since that stage must go first.
pub struct Collector {
    stage: String,
    pending: Mutex<BTreeMap<String, Pending>>,
    missing: Mutex<BTreeMap<String, BTreeSet<String>>>,
}

/// One request to run on a batch engine.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    /// The request's key (hex): its `custom_id`.
    pub custom_id: String,
    /// The model alias.
    pub model: String,
    /// The chat-completions body, as [`openai::body`] makes it for the online call.
    pub body: Value,
}

/// What an export run found: the chosen stage's pending requests in key order, and for every
/// other stage how many distinct calls are not in the store.
#[derive(Clone, Debug, Default)]
pub struct Collected {
    pub stage: String,
    pub pending: Vec<Pending>,
    pub missing: BTreeMap<String, u64>,
}

impl Collector {
    pub fn new(stage: &str) -> Collector {
        Collector { stage: stage.to_string(), pending: Mutex::default(), missing: Mutex::default() }
    }

    /// Whether any call was collected or found missing so far.
    pub fn any(&self) -> bool {
        !lock(&self.pending).is_empty() || !lock(&self.missing).is_empty()
    }

    pub fn take(&self) -> Collected {
        Collected {
            stage: self.stage.clone(),
            pending: std::mem::take(&mut *lock(&self.pending)).into_values().collect(),
            missing: std::mem::take(&mut *lock(&self.missing))
                .into_iter()
                .map(|(stage, keys)| (stage, keys.len() as u64))
                .collect(),
        }
    }

    fn collect(
        &self,
        stage: &str,
        model: &PlanModel,
        request: &ChatRequest,
        store: &crate::store::Store,
    ) -> Result<(), CallError> {
        let key = request.key_hex();
        if stage != self.stage {
            lock(&self.missing).entry(stage.to_string()).or_default().insert(key);
            return Ok(());
        }
        let image = |id: &str| store.get_object(id).ok().flatten();
        let body = openai::body(request, &image).map_err(CallError::provider)?;
        lock(&self.pending).insert(key.clone(), Pending { custom_id: key, model: model.alias.clone(), body });
        Ok(())
    }
}

pub struct Caller {
    pub prompts: Prompts,
    pub responses: Mutex<Journal>,
    /// Canonical requests of calls made, for audit and batch export; only ever added to.
    pub requests: Mutex<Appender>,
    pub books: Arc<Mutex<Books>>,
    pub models: Vec<PlanModel>,
    /// Online models by alias: their endpoints, HTTP client and in-flight limit.
    pub online: BTreeMap<String, Online>,
    /// Normalised image bytes by id (the store's objects), for image parts sent to servers.
    pub store: Arc<crate::store::Store>,
    /// Set by `sdc batch export`: online calls missing from the store are collected, not sent.
    pub collect: Option<Collector>,
    /// Fail a call the store does not hold instead of making it (`BuildOptions::replay_only`).
    pub replay_only: bool,
}

/// An OpenAI-compatible model's connections and limits.
pub struct Online {
    pub router: openai::Router,
    pub client: openai::Client,
    pub policy: openai::Policy,
    /// In flight (adaptive), requests/min and tokens/min, shared by the model's connections.
    pub throttle: crate::model::throttle::Throttle,
}

impl Online {
    pub fn new(model: &PlanModel, connections: Vec<openai::Connection>) -> Result<Online, String> {
        let policy = openai::Policy {
            timeout: Duration::from_millis(model.timeout_ms.max(1)),
            connect_timeout: Duration::from_millis(model.connect_timeout_ms.max(1)),
            retries: model.retries.min(20) as u32,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        };
        Ok(Online {
            client: openai::Client::new(&policy)?,
            policy,
            throttle: crate::model::throttle::Throttle::new(
                model.max_in_flight,
                model.requests_per_minute,
                model.tokens_per_minute,
            ),
            router: openai::Router::new(connections),
        })
    }

    /// One call; each attempt goes to the least busy connection not marked down.
    async fn call(
        &self,
        request: &ChatRequest,
        key: &[u8; 32],
        store: &crate::store::Store,
    ) -> Result<openai::Completed, openai::CallFailure> {
        let image = |id: &str| store.get_object(id).ok().flatten();
        self.client.complete(&self.router, request, key, &self.policy, &self.throttle, &image).await
    }
}

pub struct Conversation<'s> {
    stage: &'s PlanStage,
    template: String,
    label: String,
    messages: Vec<Message>,
    images: Vec<String>,
    steps: u32,
}

impl<'s> Conversation<'s> {
    /// A conversation for one item (`label`, its id) with one of the stage's templates; `images`
    /// are attached to the first user message.
    pub fn new(stage: &'s PlanStage, template: &str, label: &str, images: Vec<String>) -> Self {
        Conversation {
            stage,
            template: template.to_string(),
            label: label.to_string(),
            messages: Vec::new(),
            images,
            steps: 0,
        }
    }

    pub fn template(&self) -> &str {
        &self.template
    }
}

/// A validated reply: the schema's fields by name, and the model's finish note (the builtin
/// generator explains there why it declined).
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub fields: BTreeMap<String, String>,
    pub note: Option<String>,
}

impl Reply {
    pub fn get(&self, field: &str) -> &str {
        self.fields.get(field).map_or("", String::as_str)
    }
}

impl Caller {
    fn model(&self, alias: &str) -> Option<&PlanModel> {
        self.models.iter().find(|m| m.alias == alias)
    }

    /// Renders `step`, asks the model (or the store), validates the reply and records it.
    /// `inputs` gives the stage's structured inputs, which only the builtin generator reads.
    pub async fn ask(
        &self,
        conv: &mut Conversation<'_>,
        step: &str,
        vars: &Value,
        inputs: &(dyn Fn() -> Value + Sync),
        schema: &ReplySchema,
        trace: &mut Vec<CallTrace>,
    ) -> Result<Reply, CallError> {
        let stage_name = conv.stage.kind.as_str();
        let model = self
            .model(&conv.stage.model)
            .ok_or_else(|| CallError::provider(format!("model `{}` is not in the plan", conv.stage.model)))?;
        let system = conv.messages.is_empty() && self.prompts.has_block(&conv.template, "system");
        let blocks: &[&str] = if system { &["system", step] } else { &[step] };
        let mut texts = self.prompts.render_blocks(&conv.template, blocks, vars)?.into_iter();
        if system {
            conv.messages.push(Message::text(Role::System, texts.next().unwrap_or_default()));
        }
        let mut content = vec![Part::Text { text: texts.next().unwrap_or_default() }];
        if conv.steps == 0 {
            content.extend(conv.images.iter().map(|id| Part::Image { sha256: id.clone() }));
        }
        conv.messages.push(Message { role: Role::User, content });
        conv.steps += 1;
        let builtin = model.provider == "builtin";
        let mut request = ChatRequest {
            model: model.resolved.clone(),
            // Lent to the request and given back: a conversation's texts are not copied per call.
            messages: std::mem::take(&mut conv.messages),
            temperature: conv.stage.temperature,
            top_p: model.top_p,
            max_tokens: conv.stage.max_tokens,
            seed: derive_seed(conv.stage.seed, &format!("{}/{step}/{}", conv.label, conv.steps)),
            response_schema: Some(schema.to_response_schema()),
            structured_output: model.structured_output,
            builtin: builtin.then(|| BuiltinCall {
                stage: stage_name.to_string(),
                step: step.to_string(),
                inputs: inputs(),
                revision: model::builtin::REVISION,
            }),
        };
        let exchanged = self.exchange(&request, model, stage_name).await;
        conv.messages = std::mem::take(&mut request.messages);
        let Exchanged { stored, served, key } = exchanged?;
        let usage = stored.response.usage;
        {
            let mut books = lock(&self.books);
            let s = books.stage(stage_name);
            if served {
                s.calls_served += 1;
            } else {
                s.calls_made += 1;
                s.retries += u64::from(stored.meta.attempts.saturating_sub(1));
            }
            s.prompt_tokens += usage.prompt_tokens;
            s.completion_tokens += usage.completion_tokens;
            s.cost += model::cost(model, usage);
        }
        let fields = schema.parse(&stored.response.content).map_err(|error| CallError::Reply {
            model: model.resolved.clone(),
            step: step.to_string(),
            error,
        });
        let note = stored.response.finish_reason.as_deref().and_then(|f| f.strip_prefix("stop: ")).map(str::to_string);
        trace.push(CallTrace {
            stage: stage_name.to_string(),
            step: step.to_string(),
            request: hex::encode(key),
            response: stored.response.hash(),
            served_from_store: served,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            batch: stored.meta.mode == "batch",
            model: stored.response.model,
            fingerprint: stored.response.system_fingerprint,
        });
        conv.messages.push(Message::text(Role::Assistant, stored.response.content));
        Ok(Reply { fields: fields?, note })
    }

    /// The reply to `request`: from the store, else from the model (and then stored, with the
    /// request if a server was asked).
    async fn exchange(&self, request: &ChatRequest, model: &PlanModel, stage: &str) -> Result<Exchanged, CallError> {
        let builtin = request.builtin.is_some();
        let (canonical, key) = request.canonical_and_key();
        let stored = lock(&self.responses).get(&key)?;
        if let Some(stored) = stored.and_then(|bytes| serde_json::from_slice::<StoredResponse>(&bytes).ok()) {
            return Ok(Exchanged { stored, served: true, key });
        }
        if !builtin && let Some(collector) = &self.collect {
            collector.collect(stage, model, request, &self.store)?;
            return Err(CallError::Pending { stage: stage.to_string() });
        }
        if self.replay_only {
            lock(&self.books).stage(stage).calls_missing += 1;
            return Err(CallError::provider(format!(
                "model `{}`: call {} is not in the recorded responses (replaying the store only)",
                model.alias,
                hex::encode(key)
            )));
        }
        let started = Instant::now();
        let started_at_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let (response, attempts, endpoint) = if builtin {
            let r = model::builtin::complete(request).map_err(|e| CallError::provider(e.to_string()))?;
            (r, 1, "builtin".to_string())
        } else {
            let online = self.online.get(&model.alias).ok_or_else(|| {
                CallError::provider(format!(
                    "model `{}` ({}) has no endpoint in this environment: set its base URL variable, or lock it to the builtin generator",
                    model.alias, model.resolved
                ))
            })?;
            match online.call(request, &key, &self.store).await {
                Ok(done) => (done.response, done.attempts, done.endpoint),
                Err(failure) => {
                    let mut books = lock(&self.books);
                    let s = books.stage(stage);
                    s.calls_failed += 1;
                    s.retries += u64::from(failure.attempts.saturating_sub(1));
                    let message = format!("model `{}`: {failure}", model.alias);
                    return Err(if failure.is_refusal() {
                        CallError::Refused(message)
                    } else {
                        CallError::Provider { message, attempts: failure.attempts }
                    });
                }
            }
        };
        let meta = CallMeta {
            latency_ms: started.elapsed().as_millis() as u64,
            started_at_ms,
            attempts,
            endpoint,
            mode: "online".into(),
        };
        let stored = StoredResponse { response, meta };
        let bytes = serde_json::to_vec(&stored).unwrap_or_default();
        // What was sent to a server, for audit and batch export. A builtin request is a
        // function of the plan and the inputs, and storing it cost 6 KB a call.
        if !builtin {
            lock(&self.requests).put(key, canonical.as_bytes())?;
        }
        lock(&self.responses).put(key, &bytes)?;
        Ok(Exchanged { stored, served: false, key })
    }
}

impl Caller {
    /// Writes the journals' pending records (they are write-behind: see `store::journal`).
    pub fn flush(&self) -> Result<(), StoreError> {
        lock(&self.requests).flush()?;
        lock(&self.responses).flush()
    }
}

/// A reply, whether the store served it, and the request's key.
struct Exchanged {
    stored: StoredResponse,
    served: bool,
    key: [u8; 32],
}

/// A poisoned lock only means another task panicked mid-update; the data is still usable.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
