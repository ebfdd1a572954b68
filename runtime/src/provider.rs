//! Model resolution for the lock: which model each alias means, asked of its server.
//!
//! An OpenAI-compatible alias is resolved through `GET {base_url}/models`; the builtin
//! generator resolves to `builtin/<name>@<version>`. An alias whose endpoint variable is unset
//! and that allows `offline_fallback` resolves to the builtin generator, with the reason kept.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sdc_compiler::diagnostic::{Code, Diagnostic};
use sdc_compiler::lock::{Lockfile, ModelResolution, builtin_id};
use sdc_compiler::spec::{Model, Provider, Setting, Spec};
use serde::Deserialize;

use crate::Environment;

/// The endpoints and keys of the spec's OpenAI-compatible models, as the environment gives them
/// now, by alias. Models whose base URL is unset are left out (they run on the builtin generator
/// when the lock says so). Keys live only in the returned value, never in the plan or the lock.
pub fn connections(spec: &Spec, env: &Environment) -> BTreeMap<String, Vec<crate::model::openai::Connection>> {
    let mut out = BTreeMap::new();
    for model in spec.models.iter().filter(|m| m.provider == Provider::Openai) {
        let api_key = model.api_key.as_ref().and_then(|k| env.setting(k)).filter(|k| !k.is_empty());
        let urls: Vec<_> = model
            .base_urls
            .iter()
            .filter_map(|s| env.setting(s))
            .map(|base_url| crate::model::openai::Connection { base_url, api_key: api_key.clone() })
            .collect();
        if !urls.is_empty() {
            out.insert(model.name.clone(), urls);
        }
    }
    out
}

/// How to treat models already pinned in the previous lock.
#[derive(Clone, Debug, Default)]
pub struct ResolveOptions {
    /// Re-resolve these aliases even if pinned.
    pub force: BTreeSet<String>,
    /// Never contact a server; unpinned remote models are an error...
    pub offline: bool,
    /// ...unless this is set, in which case they resolve to `unresolved` (for estimates).
    pub unpinned_ok: bool,
}

/// The resolved id of a model nobody has asked its server about yet.
pub const UNRESOLVED: &str = "unresolved";

/// Resolves every model of a spec, reusing pins from `previous` where the request is unchanged.
pub async fn resolve_models(
    spec: &Spec,
    env: &Environment,
    previous: Option<&Lockfile>,
    options: &ResolveOptions,
) -> Result<BTreeMap<String, ModelResolution>, Vec<Diagnostic>> {
    ensure_crypto_provider();
    let mut out = BTreeMap::new();
    let mut diags = Vec::new();
    for model in &spec.models {
        match resolve_one(model, env, previous, options).await {
            Ok(r) => {
                out.insert(model.name.clone(), r);
            }
            Err(mut d) => diags.append(&mut d),
        }
    }
    if diags.is_empty() { Ok(out) } else { Err(diags) }
}

async fn resolve_one(
    model: &Model,
    env: &Environment,
    previous: Option<&Lockfile>,
    options: &ResolveOptions,
) -> Result<ModelResolution, Vec<Diagnostic>> {
    if model.provider == Provider::Builtin {
        let name = env.require(&model.model, "the builtin generator's name").map_err(|d| vec![d])?;
        return Ok(ModelResolution {
            provider: Provider::Builtin,
            endpoints: vec![],
            requested: name.clone(),
            resolved: builtin_id(&name),
            offline_reason: None,
        });
    }
    // Endpoints first: an unset endpoint with offline_fallback means "use the builtin generator".
    let mut urls = Vec::new();
    for setting in &model.base_urls {
        match env.setting(setting) {
            Some(url) => urls.push((url, setting)),
            None if model.offline_fallback => {
                let var = match setting {
                    Setting::Env { name, .. } => name.clone(),
                    Setting::Literal(_) => String::new(),
                };
                return Ok(ModelResolution {
                    provider: Provider::Builtin,
                    endpoints: vec![],
                    requested: "rules".into(),
                    resolved: builtin_id("rules"),
                    offline_reason: Some(format!("`{var}` is unset")),
                });
            }
            None => return Err(vec![env.require(setting, "the endpoint").unwrap_err()]),
        }
    }
    let mut diags = Vec::new();
    let requested = env.require(&model.model, "the model name").map_err(|d| diags.push(d)).ok();
    let key = match &model.api_key {
        Some(setting) => env.require(setting, "the API key").map_err(|d| diags.push(d)).ok(),
        None => None,
    };
    let mut endpoints = Vec::new();
    let mut parsed = Vec::new();
    for (url, setting) in &urls {
        match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                let host = u.host_str().unwrap_or_default();
                let port = u.port_or_known_default().unwrap_or(0);
                endpoints.push(format!("{host}:{port}"));
                parsed.push(u);
            }
            _ => diags.push(
                Diagnostic::error(
                    Code::OutOfRange,
                    setting_span(setting, model),
                    format!("`{}` is not an http(s) URL", redact_url(url)),
                )
                .with_label("invalid base URL")
                .with_hint("write the OpenAI-compatible base URL, e.g. `http://127.0.0.1:8000/v1`"),
            ),
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let requested = requested.unwrap_or_default();
    if let Some(prev) = previous.and_then(|l| l.models.iter().find(|m| m.alias == model.name))
        && !options.force.contains(&model.name)
        && prev.provider == "openai"
        && prev.endpoints == endpoints
        && prev.requested == requested
    {
        return Ok(ModelResolution {
            provider: Provider::Openai,
            endpoints,
            requested,
            resolved: prev.resolved.clone(),
            offline_reason: None,
        });
    }
    if options.offline && options.unpinned_ok {
        return Ok(ModelResolution {
            provider: Provider::Openai,
            endpoints,
            requested,
            resolved: UNRESOLVED.into(),
            offline_reason: None,
        });
    }
    if options.offline {
        return Err(vec![
            Diagnostic::error(
                Code::UnknownReference,
                model.span,
                format!("model `{}` is not pinned in the lockfile", model.name),
            )
            .with_label("needs resolving against its server")
            .with_hint("run `sdc lock` with the server reachable"),
        ]);
    }
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(model.limits.connect_timeout_ms))
        .timeout(Duration::from_millis(model.limits.timeout_ms.min(30_000)))
        .build()
        .map_err(|e| vec![Diagnostic::error(Code::Syntax, model.span, format!("cannot build an HTTP client: {e}"))])?;
    let mut last_err = String::new();
    for url in &parsed {
        match list_models(&client, url, key.as_deref()).await {
            Ok(ids) => {
                if ids.iter().any(|id| id == &requested) {
                    return Ok(ModelResolution {
                        provider: Provider::Openai,
                        endpoints,
                        requested: requested.clone(),
                        resolved: requested,
                        offline_reason: None,
                    });
                }
                let shown: Vec<String> = ids.iter().take(10).map(|i| format!("`{i}`")).collect();
                return Err(vec![
                    Diagnostic::error(
                        Code::UnknownReference,
                        setting_span(&model.model, model),
                        format!("the server at `{}` does not serve `{requested}`", host_of(url)),
                    )
                    .with_label("requested here")
                    .with_hint(if shown.is_empty() {
                        "the server lists no models".to_string()
                    } else {
                        format!("it serves: {}", shown.join(", "))
                    }),
                ]);
            }
            Err(e) => last_err = e,
        }
    }
    Err(vec![
        Diagnostic::error(
            Code::UnknownReference,
            model.span,
            format!("cannot resolve model `{}`: {last_err}", model.name),
        )
        .with_label("resolved through GET /models on its server")
        .with_hint("start the server, fix the base URL, or use `--frozen` to build with the models already pinned"),
    ])
}

#[derive(Deserialize)]
struct ModelList {
    data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
}

async fn list_models(client: &reqwest::Client, base: &reqwest::Url, key: Option<&str>) -> Result<Vec<String>, String> {
    let url = format!("{}/models", base.as_str().trim_end_matches('/'));
    let mut req = client.get(&url);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let host = host_of(base);
    let resp = req.send().await.map_err(|e| format!("request to `{host}` failed ({})", describe_reqwest(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("`{host}` answered {status} to GET /models"));
    }
    let list: ModelList = resp
        .json()
        .await
        .map_err(|e| format!("`{host}` sent a model list sdc cannot read ({})", describe_reqwest(&e)))?;
    let mut ids: Vec<String> = list.data.into_iter().map(|m| m.id).collect();
    ids.sort();
    Ok(ids)
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "connection refused or unreachable".into()
    } else if e.is_timeout() {
        "timed out".into()
    } else if e.is_decode() {
        "invalid JSON".into()
    } else {
        "transport error".into()
    }
}

fn host_of(url: &reqwest::Url) -> String {
    format!("{}:{}", url.host_str().unwrap_or(""), url.port_or_known_default().unwrap_or(0))
}

/// A URL with any credentials removed, safe to print.
fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.to_string()
        }
        Err(_) => "<invalid URL>".into(),
    }
}

fn setting_span(setting: &Setting, model: &Model) -> sdc_compiler::Span {
    match setting {
        Setting::Env { span, .. } => *span,
        Setting::Literal(_) => model.span,
    }
}

/// rustls needs a process-wide crypto provider; we use ring (no C toolchain beyond cc). Public
/// for the calls benchmark's bare client, which must build its reqwest client the same way.
pub fn ensure_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
