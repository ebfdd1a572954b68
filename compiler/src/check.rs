//! The checker: syntax tree → [`Spec`], reporting every problem it finds, not just the first.
//!
//! Two passes: [`check`] types and cross-references the tree without touching the filesystem;
//! [`check_files`] then checks what the spec points at (templates, globs, paths).

use std::collections::BTreeMap;
use std::path::Path;

use crate::diagnostic::{Code, Diagnostic, choice_hint, did_you_mean};
use crate::schema::{self, BLOCKS, Label, Repeat};
use crate::span::Span;
use crate::spec::*;
use crate::syntax::{Block, Entry, Field, File, Value, ValueKind};

/// Types and cross-checks a parsed spec. Returns the spec with any warnings, or every error.
pub fn check(file: &File, dir: &Path) -> Result<(Spec, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut cx = Cx::default();
    let spec = cx.file(file, dir);
    let (errors, warnings): (Vec<_>, Vec<_>) = cx.diags.into_iter().partition(Diagnostic::is_error);
    match spec {
        Some(spec) if errors.is_empty() => Ok((spec, warnings)),
        _ => Err(sorted(errors)),
    }
}

/// Checks the files a spec refers to: templates, include globs, roots, requirements.
pub fn check_files(spec: &Spec) -> Vec<Diagnostic> {
    let mut diags = crate::templates::check_templates(spec);
    diags.extend(crate::sources::check_sources(spec));
    if let Some(verify) = &spec.verify {
        let path = verify.requirements.resolve(&spec.dir);
        if !path.is_file() {
            diags.push(
                Diagnostic::error(
                    Code::PathNotFound,
                    verify.requirements.span,
                    format!("requirements file `{}` not found", verify.requirements.text),
                )
                .with_label("no such file")
                .with_hint(format!("paths are relative to the spec's directory `{}`", display_dir(&spec.dir))),
            );
        }
    }
    sorted(diags)
}

pub(crate) fn display_dir(dir: &Path) -> String {
    let s = dir.display().to_string();
    if s.is_empty() { ".".to_string() } else { s }
}

fn sorted(mut diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diags.sort_by_key(|d| (d.span.start, d.code));
    diags
}

#[derive(Default)]
struct Cx {
    diags: Vec<Diagnostic>,
}

impl Cx {
    fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn file(&mut self, file: &File, dir: &Path) -> Option<Spec> {
        let kinds: Vec<&str> = BLOCKS.iter().map(|(k, _, _)| *k).collect();
        let mut singles: BTreeMap<&str, &Block> = BTreeMap::new();
        let mut many: BTreeMap<&str, Vec<&Block>> = BTreeMap::new();
        for entry in &file.entries {
            match entry {
                Entry::Comment(_) => {}
                Entry::Field(f) => self.error(
                    Diagnostic::error(Code::Syntax, f.key.span, format!("field `{}` is outside any block", f.key.name))
                        .with_label("not inside a block")
                        .with_hint("top-level entries are blocks such as `dataset name { … }` or `source name { … }`"),
                ),
                Entry::Block(b) => {
                    let Some((kind, label, repeat)) = BLOCKS.iter().find(|(k, _, _)| *k == b.kind.name) else {
                        self.error(
                            Diagnostic::error(
                                Code::UnknownBlock,
                                b.kind.span,
                                format!("unknown block `{}`", b.kind.name),
                            )
                            .with_label("unknown block kind")
                            .with_hint(choice_hint(&b.kind.name, &kinds)),
                        );
                        continue;
                    };
                    match (label, &b.label) {
                        (Label::Required, None) => {
                            self.error(
                                Diagnostic::error(
                                    Code::MissingLabel,
                                    b.kind.span,
                                    format!("`{kind}` block needs a name"),
                                )
                                .with_label("name missing")
                                .with_hint(format!("write `{kind} <name> {{ … }}`")),
                            );
                            continue;
                        }
                        (Label::None, Some(l)) => self.error(
                            Diagnostic::error(Code::UnexpectedLabel, l.span, format!("`{kind}` block takes no name"))
                                .with_label("unexpected name")
                                .with_hint(format!("write `{kind} {{ … }}`")),
                        ),
                        _ => {}
                    }
                    match repeat {
                        Repeat::Once => {
                            if let Some(first) = singles.get(kind) {
                                self.error(
                                    Diagnostic::error(
                                        Code::DuplicateBlock,
                                        b.header_span(),
                                        format!("`{kind}` is defined twice"),
                                    )
                                    .with_label("second definition")
                                    .with_secondary(first.header_span(), "first defined here")
                                    .with_hint(format!("merge the two `{kind}` blocks into one")),
                                );
                            } else {
                                singles.insert(kind, b);
                            }
                        }
                        Repeat::Many => {
                            let list = many.entry(kind).or_default();
                            if let Some(first) = list
                                .iter()
                                .find(|o| o.label.as_ref().map(|l| &l.name) == b.label.as_ref().map(|l| &l.name))
                            {
                                self.error(
                                    Diagnostic::error(
                                        Code::DuplicateBlock,
                                        b.header_span(),
                                        format!("{kind} `{}` is defined twice", label_of(b)),
                                    )
                                    .with_label("second definition")
                                    .with_secondary(first.header_span(), "first defined here")
                                    .with_hint("give each one a different name"),
                                );
                            } else {
                                list.push(b);
                            }
                        }
                    }
                }
            }
        }

        let start = Span::new(0, 0);
        let Some(dataset_block) = singles.get("dataset") else {
            self.error(
                Diagnostic::error(Code::MissingBlock, start, "the spec has no `dataset` block")
                    .with_label("expected a dataset block in this file")
                    .with_hint("start the spec with `dataset <name> { version = \"0.1.0\" seed = 42 target = 1000 license = \"apache-2.0\" }`"),
            );
            return None;
        };
        let dataset = self.dataset(dataset_block);
        let anchor = dataset_block.header_span();
        let name = dataset.as_ref().map_or("dataset", |d| d.name.as_str()).to_string();
        let paths = self.paths(singles.get("paths").copied(), &name);
        let sources: Vec<Source> = many.get("source").into_iter().flatten().filter_map(|b| self.source(b)).collect();
        if !many.contains_key("source") {
            self.error(
                Diagnostic::error(Code::MissingBlock, anchor, "the spec has no `source` block")
                    .with_label("this dataset reads nothing")
                    .with_hint("add `source docs { root = \"docs\" include = [\"**/*.ipynb\"] }`"),
            );
        }
        let models: Vec<Model> = many.get("model").into_iter().flatten().filter_map(|b| self.model(b)).collect();
        let model_names: Vec<&str> = many.get("model").into_iter().flatten().map(|b| label_of(b)).collect();
        let categories = match singles.get("categories") {
            Some(b) => self.categories(b),
            None => {
                self.error(
                    Diagnostic::error(Code::MissingBlock, anchor, "the spec has no `categories` block")
                        .with_label("samples of this dataset cannot be classified")
                        .with_hint("add `categories { circuits = \"Building circuits and gates\" }`"),
                );
                Vec::new()
            }
        };
        let chunking = self.chunking(singles.get("chunking").copied());
        let images = self.images(singles.get("images").copied());
        let allocation = match singles.get("allocation") {
            Some(b) => self.allocation(b, &categories),
            None => {
                self.error(
                    Diagnostic::error(Code::MissingBlock, anchor, "the spec has no `allocation` block")
                        .with_label("no task types are allocated")
                        .with_hint("add `allocation { type qa { ratio = 100% multimodal = 50% } }`"),
                );
                None
            }
        };
        let stages =
            self.stages(many.get("stage").map(Vec::as_slice).unwrap_or(&[]), &model_names, anchor, allocation.as_ref());
        let verify = singles.get("verify").and_then(|b| self.verify(b));
        let dedup = self.dedup(singles.get("dedup").copied());
        let split = self.split(singles.get("split").copied());
        let output = self.output(singles.get("output").copied(), dataset.as_ref());

        if self.diags.iter().any(Diagnostic::is_error) {
            return None;
        }
        Some(Spec {
            dir: dir.to_path_buf(),
            dataset: dataset?,
            paths,
            sources,
            models,
            categories,
            chunking,
            images,
            stages,
            allocation: allocation?,
            verify,
            dedup,
            split: split?,
            output,
        })
    }

    fn dataset(&mut self, b: &Block) -> Option<Dataset> {
        let f = Fields::new(self, b, schema::DATASET_KEYS);
        let version = f.required(self, "version", "\"0.1.0\"").and_then(|v| self.string(v, "version"));
        let seed = f.required(self, "seed", "42").and_then(|v| self.uint(v, "seed", 0, i64::MAX as u64));
        let target = f.required(self, "target", "1000").and_then(|v| self.uint(v, "target", 1, 100_000_000));
        let license = f.required(self, "license", "\"apache-2.0\"").and_then(|v| self.string(v, "license"));
        let description = f.get("description").and_then(|v| self.string(v, "description"));
        Some(Dataset {
            name: label_of(b).to_string(),
            span: b.header_span(),
            version: version?,
            seed: seed?,
            target: target?,
            license: license?,
            description,
        })
    }

    fn paths(&mut self, b: Option<&Block>, name: &str) -> Paths {
        let f = b.map(|b| Fields::new(self, b, schema::PATHS_KEYS));
        let get = |cx: &mut Cx, key: &str, default: String| -> PathRef {
            match f.as_ref().and_then(|f| f.get(key)) {
                Some(v) => PathRef { text: cx.string(v, key).unwrap_or_default(), span: v.span },
                None => PathRef { text: default, span: Span::default() },
            }
        };
        Paths {
            prompts: get(self, "prompts", "prompts".into()),
            lockfile: get(self, "lockfile", format!("lockfiles/{name}.lock")),
            store: get(self, "store", ".sdc".into()),
        }
    }

    fn source(&mut self, b: &Block) -> Option<Source> {
        let f = Fields::new(self, b, schema::SOURCE_KEYS);
        let root = f.required(self, "root", "\"docs\"").and_then(|v| self.path(v, "root"));
        let include =
            f.required(self, "include", "[\"**/*.ipynb\", \"**/*.mdx\"]").and_then(|v| self.globs(v, "include"));
        let exclude = f.get("exclude").map_or(Some(Vec::new()), |v| self.globs(v, "exclude"));
        let public_root = f.get("public_root").and_then(|v| self.path(v, "public_root"));
        if let Some(include) = &include
            && include.is_empty()
            && let Some(v) = f.get("include")
        {
            self.error(
                Diagnostic::error(Code::OutOfRange, v.span, "`include` is empty")
                    .with_label("no patterns")
                    .with_hint("list at least one glob, e.g. `[\"**/*.ipynb\"]`"),
            );
        }
        Some(Source {
            name: label_of(b).to_string(),
            span: b.header_span(),
            root: root?,
            include: include?,
            exclude: exclude?,
            public_root,
        })
    }

    fn model(&mut self, b: &Block) -> Option<Model> {
        let f = Fields::new(self, b, schema::MODEL_KEYS);
        let provider = f
            .required(self, "provider", "openai")
            .and_then(|v| self.symbol(v, "provider", &["openai", "builtin"]))
            .map(|p| if p == "openai" { Provider::Openai } else { Provider::Builtin })?;
        let mut base_urls = Vec::new();
        let mut api_key = None;
        let mut offline_fallback = false;
        let mut structured_output = StructuredOutput::JsonSchema;
        let model;
        match provider {
            Provider::Openai => {
                if let Some(v) = f.required(self, "base_url", "env(\"MODEL_BASE_URL\")") {
                    match &v.kind {
                        ValueKind::List(items) if !items.is_empty() => {
                            base_urls = items.iter().filter_map(|i| self.setting(i, "base_url")).collect();
                        }
                        _ => base_urls.extend(self.setting(v, "base_url")),
                    }
                }
                if let Some(v) = f.get("api_key") {
                    if let ValueKind::Str(s) = &v.kind
                        && !s.is_empty()
                    {
                        self.error(
                            Diagnostic::error(Code::LiteralSecret, v.span, "API keys must not be written in a spec")
                                .with_label("a secret in plain text")
                                .with_hint("read it from the environment instead: `api_key = env(\"MY_API_KEY\")`; sdc also reads a `.env` file"),
                        );
                    } else {
                        api_key = self.setting(v, "api_key");
                    }
                }
                model = f.required(self, "model", "\"gpt-4o\"").and_then(|v| self.setting(v, "model"));
                offline_fallback =
                    f.get("offline_fallback").and_then(|v| self.boolean(v, "offline_fallback")).unwrap_or(false);
                if let Some(v) = f.get("structured_output") {
                    structured_output =
                        match self.symbol(v, "structured_output", &["json_schema", "json_object", "prompt"]) {
                            Some("json_object") => StructuredOutput::JsonObject,
                            Some("prompt") => StructuredOutput::Prompt,
                            _ => StructuredOutput::JsonSchema,
                        };
                }
            }
            Provider::Builtin => {
                for key in ["base_url", "api_key", "offline_fallback", "structured_output"] {
                    if let Some(v) = f.get(key) {
                        self.error(
                            Diagnostic::error(
                                Code::UnknownKey,
                                f.key_span(key).unwrap_or(v.span),
                                format!("`{key}` has no meaning for the builtin provider"),
                            )
                            .with_label("only for `provider = openai`")
                            .with_hint("remove it, or set `provider = openai`"),
                        );
                    }
                }
                model = Some(match f.get("model") {
                    Some(v) => self.setting(v, "model")?,
                    None => Setting::Literal("rules".into()),
                });
            }
        }
        let temperature = f.get("temperature").map_or(Some(0.7), |v| self.float(v, "temperature", 0.0, 2.0));
        let top_p = f.get("top_p").and_then(|v| self.float(v, "top_p", 0.0, 1.0));
        let max_tokens = f.get("max_tokens").map_or(Some(4096), |v| self.uint(v, "max_tokens", 1, 10_000_000));
        let max_in_flight = f.get("max_in_flight").map_or(Some(8), |v| self.uint(v, "max_in_flight", 1, 100_000));
        let rpm = f.get("requests_per_minute").and_then(|v| self.uint(v, "requests_per_minute", 1, u64::MAX));
        let tpm = f.get("tokens_per_minute").and_then(|v| self.uint(v, "tokens_per_minute", 1, u64::MAX));
        let timeout = f.get("timeout").map_or(Some(120_000), |v| self.duration(v, "timeout"));
        let connect_timeout = f.get("connect_timeout").map_or(Some(10_000), |v| self.duration(v, "connect_timeout"));
        let retries = f.get("retries").map_or(Some(5), |v| self.uint(v, "retries", 0, 100));
        let price = |cx: &mut Cx, key: &str| f.get(key).and_then(|v| cx.float(v, key, 0.0, 1_000_000.0));
        let price = Price {
            input_per_1k: price(self, "price_input").unwrap_or(0.0),
            output_per_1k: price(self, "price_output").unwrap_or(0.0),
            batch_input_per_1k: price(self, "batch_price_input"),
            batch_output_per_1k: price(self, "batch_price_output"),
        };
        Some(Model {
            name: label_of(b).to_string(),
            span: b.header_span(),
            provider,
            base_urls,
            api_key,
            model: model?,
            offline_fallback,
            structured_output,
            sampling: Sampling { temperature: temperature?, top_p, max_tokens: max_tokens? },
            limits: Limits {
                max_in_flight: max_in_flight?,
                requests_per_minute: rpm,
                tokens_per_minute: tpm,
                timeout_ms: timeout?,
                connect_timeout_ms: connect_timeout?,
                retries: retries?,
            },
            price,
        })
    }

    fn categories(&mut self, b: &Block) -> Vec<Category> {
        let mut out: Vec<Category> = Vec::new();
        for entry in &b.entries {
            match entry {
                Entry::Comment(_) => {}
                Entry::Block(inner) => self.nested_block_error(inner, "categories"),
                Entry::Field(field) => {
                    if let Some(first) = out.iter().find(|c| c.name == field.key.name) {
                        self.error(
                            Diagnostic::error(
                                Code::DuplicateKey,
                                field.key.span,
                                format!("category `{}` is defined twice", field.key.name),
                            )
                            .with_label("second definition")
                            .with_secondary(first.span, "first defined here")
                            .with_hint("remove one of them"),
                        );
                        continue;
                    }
                    if let Some(description) = self.string(&field.value, &field.key.name) {
                        out.push(Category { name: field.key.name.clone(), description, span: field.key.span });
                    }
                }
            }
        }
        if out.is_empty() && !self.diags.iter().any(|d| d.span.start >= b.span.start && d.span.end <= b.span.end) {
            self.error(
                Diagnostic::error(Code::MissingKey, b.header_span(), "`categories` is empty")
                    .with_label("no categories")
                    .with_hint("add `name = \"description\"` lines; the description guides classification"),
            );
        }
        out
    }

    fn chunking(&mut self, b: Option<&Block>) -> Chunking {
        let f = b.map(|b| Fields::new(self, b, schema::CHUNKING_KEYS));
        let mut get = |key: &str, default: u64| -> u64 {
            f.as_ref().and_then(|f| f.get(key)).and_then(|v| self.uint(v, key, 0, 100_000_000)).unwrap_or(default)
        };
        let chunking = Chunking {
            max_chars: get("max_chars", 2912),
            min_chars: get("min_chars", 800),
            overlap_chars: get("overlap", 0),
            max_code_blocks: get("max_code_blocks", 3),
            max_images: get("max_images", 3),
            neighbour_chars: get("neighbour_chars", 800),
            prior_code_chars: get("prior_code_chars", 2000),
        };
        if chunking.min_chars > chunking.max_chars
            && let Some(v) = f.as_ref().and_then(|f| f.get("min_chars").or(f.get("max_chars")))
        {
            self.error(
                Diagnostic::error(
                    Code::OutOfRange,
                    v.span,
                    format!("`min_chars` ({}) is larger than `max_chars` ({})", chunking.min_chars, chunking.max_chars),
                )
                .with_label("inconsistent limits")
                .with_hint("`min_chars` must not exceed `max_chars`"),
            );
        }
        chunking
    }

    fn images(&mut self, b: Option<&Block>) -> ImageLimits {
        let f = b.map(|b| Fields::new(self, b, schema::IMAGES_KEYS));
        let mut get = |key: &str, min: u64, default: u64| -> u64 {
            f.as_ref().and_then(|f| f.get(key)).and_then(|v| self.uint(v, key, min, u64::MAX)).unwrap_or(default)
        };
        ImageLimits {
            max_side: get("max_side", 16, 1024),
            max_pixels: get("max_pixels", 1, 30_000_000),
            max_bytes: get("max_bytes", 1, 20_000_000),
        }
    }

    fn stages(
        &mut self,
        blocks: &[&Block],
        models: &[&str],
        anchor: Span,
        allocation: Option<&Allocation>,
    ) -> Vec<Stage> {
        let names: Vec<&str> = StageKind::ALL.iter().map(|k| k.as_str()).collect();
        let mut stages = Vec::new();
        for b in blocks {
            let label = b.label.as_ref().map_or(Span::default(), |l| l.span);
            let Some(kind) = StageKind::parse(label_of(b)) else {
                self.error(
                    Diagnostic::error(Code::UnknownValue, label, format!("unknown stage `{}`", label_of(b)))
                        .with_label("not a stage")
                        .with_hint(choice_hint(label_of(b), &names)),
                );
                continue;
            };
            if let Some(stage) = self.stage(b, kind, models, allocation) {
                stages.push(stage);
            }
        }
        for kind in StageKind::ALL {
            if kind.required() && !blocks.iter().any(|b| label_of(b) == kind.as_str()) {
                self.error(
                    Diagnostic::error(Code::MissingStage, anchor, format!("the spec has no `{}` stage", kind.as_str()))
                        .with_label("every dataset needs it")
                        .with_hint(format!(
                            "add `stage {} {{ model = … prompt = … on_failure = drop }}`",
                            kind.as_str()
                        )),
                );
            }
        }
        stages.sort_by_key(|s| s.kind);
        stages
    }

    fn stage(&mut self, b: &Block, kind: StageKind, models: &[&str], allocation: Option<&Allocation>) -> Option<Stage> {
        let f = Fields::new(self, b, schema::STAGE_KEYS);
        let model = f.required(self, "model", "my_model").and_then(|v| self.reference(v, "model", models, "model"));
        let policies: &[&str] = match kind {
            StageKind::ImageFilter | StageKind::ChunkFilter | StageKind::CandidateFilter | StageKind::Curate => {
                &["keep", "drop", "fail"]
            }
            _ => &["drop", "fail"],
        };
        let on_failure = f.required(self, "on_failure", "drop").and_then(|v| {
            let p = self.symbol_in(v, "on_failure", &["keep", "drop", "fail"])?;
            if !policies.contains(&p) {
                self.error(
                    Diagnostic::error(
                        Code::UnknownValue,
                        v.span,
                        format!("`on_failure = {p}` is not possible for stage `{}`", kind.as_str()),
                    )
                    .with_label("only filters can keep an item they could not judge")
                    .with_hint("use `drop` (record the item as failed) or `fail` (stop the build)"),
                );
                return None;
            }
            Some(match p {
                "keep" => FailurePolicy::Keep,
                "drop" => FailurePolicy::Drop,
                _ => FailurePolicy::Fail,
            })
        });
        let prompts = self.stage_prompts(&f, kind, allocation);
        let temperature = f.get("temperature").and_then(|v| self.float(v, "temperature", 0.0, 2.0));
        let max_tokens = f.get("max_tokens").and_then(|v| self.uint(v, "max_tokens", 1, 10_000_000));
        Some(Stage {
            kind,
            span: b.header_span(),
            model: model?,
            prompts: prompts?,
            on_failure: on_failure?,
            temperature,
            max_tokens,
        })
    }

    fn stage_prompts(
        &mut self,
        f: &Fields<'_>,
        kind: StageKind,
        allocation: Option<&Allocation>,
    ) -> Option<Vec<PromptUse>> {
        if kind.per_task_type() {
            if let Some(span) = f.key_span("prompt") {
                self.error(
                    Diagnostic::error(
                        Code::WrongType,
                        span,
                        format!("stage `{}` takes one prompt per task type", kind.as_str()),
                    )
                    .with_label("use `prompts` here")
                    .with_hint(
                        "write `prompts = { function_completion = \"…\", code_generation = \"…\", qa = \"…\" }`",
                    ),
                );
                return None;
            }
            let v = f.required(self, "prompts", "{ qa = \"answer_qa.j2\" }")?;
            let ValueKind::Map(pairs) = &v.kind else {
                self.wrong_type(v, "prompts", "a map", "write `prompts = { qa = \"answer_qa.j2\" }`");
                return None;
            };
            let names: Vec<&str> = TaskType::ALL.iter().map(|t| t.as_str()).collect();
            let mut out = Vec::new();
            for (key, value) in pairs {
                let Some(task) = TaskType::parse(&key.name) else {
                    self.error(
                        Diagnostic::error(Code::UnknownValue, key.span, format!("unknown task type `{}`", key.name))
                            .with_label("not a task type")
                            .with_hint(choice_hint(&key.name, &names)),
                    );
                    continue;
                };
                if let Some(text) = self.string(value, &key.name) {
                    out.push(PromptUse { task: Some(task), template: PathRef { text, span: value.span } });
                }
            }
            if let Some(allocation) = allocation {
                for t in &allocation.types {
                    if t.ratio > 0.0
                        && !out.iter().any(|p| p.task == Some(t.task))
                        && !pairs.iter().any(|(k, _)| k.name == t.task.as_str())
                    {
                        self.error(
                            Diagnostic::error(
                                Code::MissingKey,
                                v.span,
                                format!("stage `{}` has no prompt for task type `{}`", kind.as_str(), t.task.as_str()),
                            )
                            .with_label(format!("`{}` is missing here", t.task.as_str()))
                            .with_hint(format!(
                                "the allocation gives `{}` a share, so add `{} = \"{}_{}.j2\"`",
                                t.task.as_str(),
                                t.task.as_str(),
                                kind.as_str(),
                                t.task.as_str()
                            )),
                        );
                    }
                }
            }
            out.sort_by_key(|p| p.task);
            Some(out)
        } else {
            if let Some(span) = f.key_span("prompts") {
                self.error(
                    Diagnostic::error(
                        Code::WrongType,
                        span,
                        format!("stage `{}` takes a single prompt", kind.as_str()),
                    )
                    .with_label("use `prompt` here")
                    .with_hint(format!("write `prompt = \"{}.j2\"`", kind.as_str())),
                );
                return None;
            }
            let v = f.required(self, "prompt", &format!("\"{}.j2\"", kind.as_str()))?;
            let text = self.string(v, "prompt")?;
            Some(vec![PromptUse { task: None, template: PathRef { text, span: v.span } }])
        }
    }

    fn allocation(&mut self, b: &Block, categories: &[Category]) -> Option<Allocation> {
        let f = Fields::with_blocks(self, b, schema::ALLOCATION_KEYS, &["type"]);
        let over = f.get("over_allocation").map_or(Some(1.0), |v| self.float(v, "over_allocation", 1.0, 10.0));
        let diversity = f.get("diversity_weight").map_or(Some(0.4), |v| self.float(v, "diversity_weight", 0.0, 1.0));
        let balance = f.get("balance_categories").map_or(Some(false), |v| self.boolean(v, "balance_categories"));
        let category_weights =
            f.get("category_weights").map_or(Some(Vec::new()), |v| self.category_weights(v, categories));
        let names: Vec<&str> = TaskType::ALL.iter().map(|t| t.as_str()).collect();
        let mut types: Vec<(TypeAllocation, Span)> = Vec::new();
        for inner in b.blocks() {
            let Some(label) = &inner.label else {
                self.error(
                    Diagnostic::error(Code::MissingLabel, inner.kind.span, "`type` block needs a task type")
                        .with_label("task type missing")
                        .with_hint("write `type qa { ratio = 30% multimodal = 70% }`"),
                );
                continue;
            };
            let Some(task) = TaskType::parse(&label.name) else {
                self.error(
                    Diagnostic::error(Code::UnknownValue, label.span, format!("unknown task type `{}`", label.name))
                        .with_label("not a task type")
                        .with_hint(choice_hint(&label.name, &names)),
                );
                continue;
            };
            if let Some((_, first)) = types.iter().find(|(t, _)| t.task == task) {
                self.error(
                    Diagnostic::error(
                        Code::DuplicateBlock,
                        inner.header_span(),
                        format!("type `{}` is allocated twice", label.name),
                    )
                    .with_label("second allocation")
                    .with_secondary(*first, "first allocated here")
                    .with_hint("merge them into one block"),
                );
                continue;
            }
            let tf = Fields::new(self, inner, schema::ALLOCATION_TYPE_KEYS);
            let ratio = tf.required(self, "ratio", "30%").and_then(|v| self.percent(v, "ratio"));
            let multimodal = tf.get("multimodal").map_or(Some(0.0), |v| self.percent(v, "multimodal"));
            if let (Some(ratio), Some(multimodal)) = (ratio, multimodal) {
                types.push((TypeAllocation { task, ratio, multimodal }, inner.header_span()));
            }
        }
        if types.is_empty() && !self.diags.iter().any(Diagnostic::is_error) {
            self.error(
                Diagnostic::error(Code::MissingKey, b.header_span(), "the allocation names no task type")
                    .with_label("nothing to generate")
                    .with_hint("add `type qa { ratio = 100% multimodal = 50% }`"),
            );
            return None;
        }
        let sum: f64 = types.iter().map(|(t, _)| t.ratio).sum();
        if !types.is_empty() && (sum - 1.0).abs() > 1e-9 {
            let mut d = Diagnostic::error(
                Code::RatiosDontSum,
                b.header_span(),
                format!("task type ratios sum to {}%, not 100%", trim(sum * 100.0)),
            )
            .with_label("ratios must sum to 100%")
            .with_hint("adjust the `ratio` of the types so they add up to 100%");
            for (t, span) in &types {
                d = d.with_secondary(*span, format!("{}%", trim(t.ratio * 100.0)));
            }
            self.error(d);
        }
        types.sort_by_key(|(t, _)| t.task);
        Some(Allocation {
            over_allocation: over?,
            diversity_weight: diversity?,
            balance_categories: balance?,
            category_weights: category_weights?,
            types: types.into_iter().map(|(t, _)| t).collect(),
        })
    }

    /// `{ name = weight, … }` over defined categories; weights are relative, 1.0 by default.
    fn category_weights(&mut self, v: &Value, categories: &[Category]) -> Option<Vec<(String, f64)>> {
        let ValueKind::Map(pairs) = &v.kind else {
            self.wrong_type(v, "category_weights", "a map", "write `category_weights = { circuits = 2.0 }`");
            return None;
        };
        let names: Vec<&str> = categories.iter().map(|c| c.name.as_str()).collect();
        let mut out: Vec<(String, f64)> = Vec::new();
        let mut ok = true;
        for (key, value) in pairs {
            if !names.contains(&key.name.as_str()) {
                let hint = match did_you_mean(&key.name, names.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!(
                        "defined categories: {}",
                        names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                    ),
                };
                self.error(
                    Diagnostic::error(Code::UnknownReference, key.span, format!("no category named `{}`", key.name))
                        .with_label("undefined category")
                        .with_hint(hint),
                );
                ok = false;
                continue;
            }
            match self.float(value, &key.name, 0.0, 1000.0) {
                Some(w) => out.push((key.name.clone(), w)),
                None => ok = false,
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        ok.then_some(out)
    }

    fn verify(&mut self, b: &Block) -> Option<Verify> {
        let f = Fields::new(self, b, schema::VERIFY_KEYS);
        let python_v = f.required(self, "python", "\"python3\"");
        let python = python_v.and_then(|v| self.string(v, "python"));
        let requirements =
            f.required(self, "requirements", "\"requirements.txt\"").and_then(|v| self.path(v, "requirements"));
        let timeout = f.get("timeout").map_or(Some(60_000), |v| self.duration(v, "timeout"));
        let attempts = f.get("max_attempts").map_or(Some(3), |v| self.uint(v, "max_attempts", 1, 50));
        let concurrency = f.get("concurrency").and_then(|v| self.uint(v, "concurrency", 1, 1024));
        let memory = f.get("memory_mb").map_or(Some(2048), |v| self.uint(v, "memory_mb", 64, 1_048_576));
        Some(Verify {
            python: python?,
            python_span: python_v?.span,
            requirements: requirements?,
            timeout_ms: timeout?,
            max_attempts: attempts?,
            concurrency,
            memory_mb: memory?,
        })
    }

    fn dedup(&mut self, b: Option<&Block>) -> Dedup {
        let f = b.map(|b| Fields::new(self, b, schema::DEDUP_KEYS));
        let threshold = f
            .as_ref()
            .and_then(|f| f.get("threshold"))
            .and_then(|v| self.float(v, "threshold", 0.0, 1.0))
            .unwrap_or(0.85);
        Dedup { threshold }
    }

    fn split(&mut self, b: Option<&Block>) -> Option<Split> {
        let Some(b) = b else {
            return Some(Split { train: 0.7, validation: 0.15, test: 0.15, group_by: GroupBy::Document });
        };
        let f = Fields::new(self, b, schema::SPLIT_KEYS);
        let train = f.required(self, "train", "70%").and_then(|v| self.percent(v, "train"));
        let validation = f.required(self, "validation", "15%").and_then(|v| self.percent(v, "validation"));
        let test = f.required(self, "test", "15%").and_then(|v| self.percent(v, "test"));
        let group_by =
            f.get("group_by").map_or(Some("document"), |v| self.symbol(v, "group_by", &["document", "chunk"]));
        let (train, validation, test) = (train?, validation?, test?);
        let sum = train + validation + test;
        if (sum - 1.0).abs() > 1e-9 {
            self.error(
                Diagnostic::error(
                    Code::RatiosDontSum,
                    b.header_span(),
                    format!("split ratios sum to {}%, not 100%", trim(sum * 100.0)),
                )
                .with_label("train + validation + test must be 100%")
                .with_hint("for example `train = 70%`, `validation = 15%`, `test = 15%`"),
            );
            return None;
        }
        let group_by = if group_by? == "chunk" { GroupBy::Chunk } else { GroupBy::Document };
        Some(Split { train, validation, test, group_by })
    }

    fn output(&mut self, b: Option<&Block>, dataset: Option<&Dataset>) -> Output {
        let f = b.map(|b| Fields::new(self, b, schema::OUTPUT_KEYS));
        let default_archive =
            dataset.map_or("dist/dataset.tar.zst".to_string(), |d| format!("dist/{}-{}.tar.zst", d.name, d.version));
        let archive = match f.as_ref().and_then(|f| f.get("archive")) {
            Some(v) => self.path(v, "archive").unwrap_or(PathRef { text: default_archive, span: v.span }),
            None => PathRef { text: default_archive, span: Span::default() },
        };
        let formats = match f.as_ref().and_then(|f| f.get("formats")) {
            Some(v) => match &v.kind {
                ValueKind::List(items) => items
                    .iter()
                    .filter_map(|i| self.symbol(i, "formats", &["parquet", "jsonl"]))
                    .map(|s| if s == "parquet" { Format::Parquet } else { Format::Jsonl })
                    .collect(),
                _ => {
                    self.wrong_type(v, "formats", "a list", "write `formats = [parquet, jsonl]`");
                    vec![Format::Parquet]
                }
            },
            None => vec![Format::Parquet],
        };
        let level =
            f.as_ref().and_then(|f| f.get("zstd_level")).and_then(|v| self.uint(v, "zstd_level", 1, 22)).unwrap_or(19);
        let shard_rows = f
            .as_ref()
            .and_then(|f| f.get("shard_rows"))
            .and_then(|v| self.uint(v, "shard_rows", 1, 100_000_000))
            .unwrap_or(10_000);
        Output { archive, formats, zstd_level: level as i64, shard_rows }
    }

    // -----------------------------------------------------------------------------------------
    // Typed values.

    fn wrong_type(&mut self, v: &Value, key: &str, expected: &str, hint: &str) {
        self.error(
            Diagnostic::error(
                Code::WrongType,
                v.span,
                format!("expected {expected} for `{key}`, found {}", v.kind.describe()),
            )
            .with_label(format!("expected {expected}"))
            .with_hint(hint.to_string()),
        );
    }

    fn nested_block_error(&mut self, inner: &Block, parent: &str) {
        self.error(
            Diagnostic::error(
                Code::UnknownBlock,
                inner.header_span(),
                format!("`{parent}` cannot contain a `{}` block", inner.kind.name),
            )
            .with_label("unexpected block")
            .with_hint(format!("write fields as `key = value` inside `{parent}`")),
        );
    }

    fn string(&mut self, v: &Value, key: &str) -> Option<String> {
        match &v.kind {
            ValueKind::Str(s) => Some(s.clone()),
            ValueKind::Symbol(s) => {
                self.wrong_type(v, key, "a string", &format!("quote it: `\"{s}\"`"));
                None
            }
            ValueKind::Env { .. } => {
                self.wrong_type(
                    v,
                    key,
                    "a string",
                    "env() is allowed only for a model's `base_url`, `api_key` and `model`",
                );
                None
            }
            _ => {
                self.wrong_type(v, key, "a string", "strings are written in double quotes");
                None
            }
        }
    }

    fn path(&mut self, v: &Value, key: &str) -> Option<PathRef> {
        let text = self.string(v, key)?;
        if text.is_empty() {
            self.error(
                Diagnostic::error(Code::OutOfRange, v.span, format!("`{key}` is an empty path"))
                    .with_label("empty")
                    .with_hint("write `\".\"` for the spec's own directory"),
            );
            return None;
        }
        Some(PathRef { text, span: v.span })
    }

    fn globs(&mut self, v: &Value, key: &str) -> Option<Vec<Glob>> {
        let ValueKind::List(items) = &v.kind else {
            self.wrong_type(v, key, "a list of globs", &format!("write `{key} = [\"**/*.ipynb\"]`"));
            return None;
        };
        let mut out = Vec::new();
        for item in items {
            let pattern = self.string(item, key)?;
            if let Err(e) = globset::GlobBuilder::new(&pattern).literal_separator(true).build() {
                self.error(
                    Diagnostic::error(Code::InvalidGlob, item.span, format!("invalid glob `{pattern}`"))
                        .with_label(e.kind().to_string())
                        .with_hint(
                            "globs use `*` within a directory, `**` across directories, `{a,b}` for alternatives",
                        ),
                );
                continue;
            }
            out.push(Glob { pattern, span: item.span });
        }
        Some(out)
    }

    fn uint(&mut self, v: &Value, key: &str, min: u64, max: u64) -> Option<u64> {
        match &v.kind {
            ValueKind::Int(i) => {
                let in_range = u64::try_from(*i).ok().filter(|n| *n >= min && *n <= max);
                if in_range.is_none() {
                    let range =
                        if max == u64::MAX { format!("at least {min}") } else { format!("between {min} and {max}") };
                    self.error(
                        Diagnostic::error(Code::OutOfRange, v.span, format!("`{key}` must be {range}"))
                            .with_label(format!("{i} is out of range"))
                            .with_hint(format!("use a whole number {range}")),
                    );
                }
                in_range
            }
            ValueKind::Duration(_) | ValueKind::Percent(_) => {
                self.wrong_type(v, key, "an integer", "remove the unit");
                None
            }
            _ => {
                self.wrong_type(v, key, "an integer", &format!("write a whole number, e.g. `{key} = {min}`"));
                None
            }
        }
    }

    fn float(&mut self, v: &Value, key: &str, min: f64, max: f64) -> Option<f64> {
        let x = match &v.kind {
            ValueKind::Int(i) => *i as f64,
            ValueKind::Float(f) => *f,
            ValueKind::Percent(p) => {
                self.wrong_type(
                    v,
                    key,
                    "a number",
                    &format!("write it as a plain number: `{key} = {}`", trim(p / 100.0)),
                );
                return None;
            }
            _ => {
                self.wrong_type(v, key, "a number", &format!("write a number, e.g. `{key} = {}`", trim(min)));
                return None;
            }
        };
        if !(min..=max).contains(&x) {
            self.error(
                Diagnostic::error(
                    Code::OutOfRange,
                    v.span,
                    format!("`{key}` must be between {} and {}", trim(min), trim(max)),
                )
                .with_label(format!("{} is out of range", trim(x)))
                .with_hint(format!("use a value between {} and {}", trim(min), trim(max))),
            );
            return None;
        }
        Some(x)
    }

    /// A percentage, returned as a fraction in [0, 1].
    fn percent(&mut self, v: &Value, key: &str) -> Option<f64> {
        match &v.kind {
            ValueKind::Percent(p) if (0.0..=100.0).contains(p) => Some(p / 100.0),
            ValueKind::Percent(p) => {
                self.error(
                    Diagnostic::error(Code::OutOfRange, v.span, format!("`{key}` must be between 0% and 100%"))
                        .with_label(format!("{}% is out of range", trim(*p)))
                        .with_hint("percentages are between 0% and 100%"),
                );
                None
            }
            ValueKind::Float(f) => {
                self.wrong_type(v, key, "a percentage", &format!("write `{key} = {}%`", trim(f * 100.0)));
                None
            }
            ValueKind::Int(i) => {
                self.wrong_type(v, key, "a percentage", &format!("write `{key} = {i}%`"));
                None
            }
            _ => {
                self.wrong_type(v, key, "a percentage", &format!("write e.g. `{key} = 30%`"));
                None
            }
        }
    }

    fn duration(&mut self, v: &Value, key: &str) -> Option<u64> {
        match &v.kind {
            ValueKind::Duration(d) => Some(d.as_millis()),
            ValueKind::Int(i) => {
                self.wrong_type(v, key, "a duration", &format!("add a unit: `{key} = {i}s` or `{key} = {i}m`"));
                None
            }
            _ => {
                self.wrong_type(v, key, "a duration", &format!("write e.g. `{key} = 60s`"));
                None
            }
        }
    }

    fn boolean(&mut self, v: &Value, key: &str) -> Option<bool> {
        match &v.kind {
            ValueKind::Bool(b) => Some(*b),
            _ => {
                self.wrong_type(v, key, "`true` or `false`", &format!("write `{key} = true` or `{key} = false`"));
                None
            }
        }
    }

    fn symbol<'c>(&mut self, v: &Value, key: &str, choices: &[&'c str]) -> Option<&'c str> {
        self.symbol_in(v, key, choices)
    }

    fn symbol_in<'c>(&mut self, v: &Value, key: &str, choices: &[&'c str]) -> Option<&'c str> {
        match &v.kind {
            ValueKind::Symbol(s) => {
                if let Some(c) = choices.iter().find(|c| **c == s) {
                    return Some(c);
                }
                self.error(
                    Diagnostic::error(Code::UnknownValue, v.span, format!("unknown value `{s}` for `{key}`"))
                        .with_label("not a valid choice")
                        .with_hint(choice_hint(s, choices)),
                );
                None
            }
            ValueKind::Str(s) if choices.contains(&s.as_str()) => {
                self.wrong_type(v, key, "a name", &format!("write it without quotes: `{key} = {s}`"));
                None
            }
            _ => {
                self.wrong_type(v, key, "a name", &choice_hint("", choices));
                None
            }
        }
    }

    fn reference(&mut self, v: &Value, key: &str, defined: &[&str], what: &str) -> Option<String> {
        match &v.kind {
            ValueKind::Symbol(s) => {
                if defined.contains(&s.as_str()) {
                    return Some(s.clone());
                }
                let hint = match did_you_mean(s, defined.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None if defined.is_empty() => format!("define it with `{what} {s} {{ … }}`"),
                    None => format!(
                        "defined {what}s: {}",
                        defined.iter().map(|d| format!("`{d}`")).collect::<Vec<_>>().join(", ")
                    ),
                };
                self.error(
                    Diagnostic::error(Code::UnknownReference, v.span, format!("no {what} named `{s}`"))
                        .with_label(format!("undefined {what}"))
                        .with_hint(hint),
                );
                None
            }
            ValueKind::Str(s) => {
                self.wrong_type(
                    v,
                    key,
                    format!("a {what} name").as_str(),
                    &format!("write it without quotes: `{key} = {s}`"),
                );
                None
            }
            _ => {
                self.wrong_type(v, key, format!("a {what} name").as_str(), &format!("write `{key} = <{what} name>`"));
                None
            }
        }
    }

    fn setting(&mut self, v: &Value, key: &str) -> Option<Setting> {
        match &v.kind {
            ValueKind::Str(s) => Some(Setting::Literal(s.clone())),
            ValueKind::Env { name, default } => {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    self.error(
                        Diagnostic::error(
                            Code::OutOfRange,
                            v.span,
                            format!("`{name}` is not a valid environment variable name"),
                        )
                        .with_label("invalid name")
                        .with_hint("use letters, digits and `_`, e.g. `env(\"ANSWER_MODEL_NAME\")`"),
                    );
                    return None;
                }
                let default = match default.as_deref() {
                    None => None,
                    Some(Value { kind: ValueKind::Str(s), .. }) => Some(s.clone()),
                    Some(other) => {
                        self.wrong_type(other, key, "a string default", "write `env(\"NAME\", \"default\")`");
                        return None;
                    }
                };
                Some(Setting::Env { name: name.clone(), default, span: v.span })
            }
            _ => {
                self.wrong_type(
                    v,
                    key,
                    "a string or env()",
                    &format!("write `{key} = \"…\"` or `{key} = env(\"NAME\")`"),
                );
                None
            }
        }
    }
}

/// The fields of one block, indexed by key, with unknown and duplicate keys already reported.
struct Fields<'a> {
    block: &'a Block,
    map: BTreeMap<&'a str, &'a Field>,
}

impl<'a> Fields<'a> {
    fn new(cx: &mut Cx, block: &'a Block, known: &[&str]) -> Self {
        Fields::with_blocks(cx, block, known, &[])
    }

    fn with_blocks(cx: &mut Cx, block: &'a Block, known: &[&str], nested: &[&str]) -> Self {
        let mut map: BTreeMap<&str, &Field> = BTreeMap::new();
        for entry in &block.entries {
            match entry {
                Entry::Comment(_) => {}
                Entry::Block(inner) if nested.contains(&inner.kind.name.as_str()) => {}
                Entry::Block(inner) => cx.nested_block_error(inner, &block.kind.name),
                Entry::Field(field) => {
                    let key = field.key.name.as_str();
                    if !known.contains(&key) {
                        let hint = match did_you_mean(key, known.iter().copied()) {
                            Some(best) => format!("did you mean `{best}`?"),
                            None => format!(
                                "`{}` accepts: {}",
                                block.kind.name,
                                known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                            ),
                        };
                        cx.error(
                            Diagnostic::error(
                                Code::UnknownKey,
                                field.key.span,
                                format!("unknown key `{key}` in `{}`", block.kind.name),
                            )
                            .with_label("unknown key")
                            .with_hint(hint),
                        );
                        continue;
                    }
                    if let Some(first) = map.get(key) {
                        cx.error(
                            Diagnostic::error(Code::DuplicateKey, field.key.span, format!("`{key}` is set twice"))
                                .with_label("second value")
                                .with_secondary(first.key.span, "first set here")
                                .with_hint("remove one of them"),
                        );
                        continue;
                    }
                    map.insert(key, field);
                }
            }
        }
        Fields { block, map }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).map(|f| &f.value)
    }

    fn key_span(&self, key: &str) -> Option<Span> {
        self.map.get(key).map(|f| f.key.span)
    }

    fn required(&self, cx: &mut Cx, key: &str, example: &str) -> Option<&'a Value> {
        let v = self.get(key);
        if v.is_none() {
            let what = match &self.block.label {
                Some(l) => format!("{} `{}`", self.block.kind.name, l.name),
                None => format!("`{}`", self.block.kind.name),
            };
            cx.error(
                Diagnostic::error(Code::MissingKey, self.block.header_span(), format!("{what} is missing `{key}`"))
                    .with_label(format!("`{key}` is required"))
                    .with_hint(format!("add `{key} = {example}`")),
            );
        }
        v
    }
}

fn label_of(b: &Block) -> &str {
    b.label.as_ref().map_or("", |l| l.name.as_str())
}

fn trim(x: f64) -> String {
    let r = (x * 1e6).round() / 1e6;
    format!("{r}")
}
