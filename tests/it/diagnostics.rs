//! Each case breaks the fixture spec in one way and snapshots the rendered diagnostics:
//! code, message, `file:line:col`, the source line with a caret, and the hint.

use std::collections::BTreeSet;

use sdc_compiler::{Code, Diagnostic, SourceFile, check, syntax};

use crate::support::Project;

const SPEC: &str = "specs/mini.sds";

/// (name, text to find in mini.sds, replacement).
const CASES: &[(&str, &str, &str)] = &[
    ("syntax_missing_equals", "version = \"1.0.0\"", "version \"1.0.0\""),
    ("unterminated_string", "license = \"apache-2.0\"", "license = \"apache-2.0"),
    ("unclosed_block", "  test = 10%\n}", "  test = 10%\n"),
    ("integer_too_large", "seed = 7", "seed = 99999999999999999999"),
    ("unknown_unit", "timeout = 30s\n}", "timeout = 30sec\n}"),
    (
        "comment_in_list",
        "include = [\"nb/*.ipynb\", \"pages/*.mdx\"]",
        "include = [\"nb/*.ipynb\", # notebooks\n \"pages/*.mdx\"]",
    ),
    ("unknown_block", "categories {", "categorys {"),
    ("unknown_key", "temperature = 0.2", "temprature = 0.2"),
    ("missing_key", "  version = \"1.0.0\"\n", ""),
    ("duplicate_key", "  seed = 7\n", "  seed = 7\n  seed = 8\n"),
    ("duplicate_block", "categories {", "chunking {}\n\nchunking {}\n\ncategories {"),
    (
        "missing_categories",
        "categories {\n  circuits = \"Circuits and gates\"\n  states = \"Quantum states and operators\"\n}",
        "",
    ),
    ("wrong_type_string_for_int", "seed = 7", "seed = \"7\""),
    ("duration_without_unit", "timeout = 30s\n}", "timeout = 30\n}"),
    ("fraction_for_percentage", "ratio = 60%", "ratio = 0.6"),
    ("temperature_out_of_range", "temperature = 0.2", "temperature = 3.5"),
    ("type_ratios_dont_sum", "ratio = 40%", "ratio = 30%"),
    ("split_ratios_dont_sum", "test = 10%", "test = 15%"),
    (
        "undefined_model",
        "  model = local\n  prompt = \"transcribe.j2\"",
        "  model = lokal\n  prompt = \"transcribe.j2\"",
    ),
    ("unknown_failure_policy", "on_failure = fail", "on_failure = abort"),
    (
        "keep_not_allowed_for_stage",
        "  prompt = \"transcribe.j2\"\n  on_failure = drop",
        "  prompt = \"transcribe.j2\"\n  on_failure = keep",
    ),
    ("source_without_name", "source docs {", "source {"),
    ("chunking_with_name", "categories {", "chunking big {}\n\ncategories {"),
    ("api_key_in_spec", "api_key = env(\"SDC_TEST_API_KEY\", \"\")", "api_key = \"sk-live-1234\""),
    ("prompt_not_found", "prompt = \"curate.j2\"", "prompt = \"curation.j2\""),
    ("template_syntax_error", "prompt = \"curate.j2\"", "prompt = \"broken.j2\""),
    ("template_unknown_variable", "prompt = \"curate.j2\"", "prompt = \"bad_var.j2\""),
    ("template_missing_block", "prompt = \"curate.j2\"", "prompt = \"noblock.j2\""),
    ("invalid_glob", "\"pages/*.mdx\"]", "\"pages/[a.mdx\"]"),
    ("glob_matches_nothing", "\"pages/*.mdx\"]", "\"guides/*.mdx\"]"),
    ("source_root_missing", "root = \"../docs\"", "root = \"../documents\""),
    (
        "missing_required_stage",
        "stage classify {\n  model = rules\n  prompt = \"classify.j2\"\n  on_failure = fail\n}",
        "",
    ),
    ("unknown_task_type", "type qa {", "type quiz {"),
    ("unknown_stage", "stage curate {", "stage curation {"),
    ("field_outside_block", "# A small spec", "seed = 1\n# A small spec"),
    (
        "missing_task_prompt",
        "prompts = { code_generation = \"answer_code_generation.j2\", qa = \"answer_qa.j2\" }",
        "prompts = { code_generation = \"answer_code_generation.j2\" }",
    ),
    (
        "single_prompt_for_per_type_stage",
        "prompts = { code_generation = \"plan_code_generation.j2\", qa = \"plan_qa.j2\" }",
        "prompt = \"plan_qa.j2\"",
    ),
    ("requirements_missing", "requirements = \"../requirements.txt\"", "requirements = \"../requirements-dev.txt\""),
    ("symbol_quoted", "provider = builtin", "provider = \"builtin\""),
    ("unknown_provider", "provider = builtin", "provider = anthropic"),
    (
        "undefined_category",
        "  diversity_weight = 0.4\n",
        "  diversity_weight = 0.4\n  category_weights = { circuit = 2.0 }\n",
    ),
    ("env_in_plain_string", "license = \"apache-2.0\"", "license = env(\"LICENSE\")"),
];

/// Everything `sdc check` would report for the project's spec, rendered without colour, with
/// the temporary directory replaced by `[ROOT]`.
fn diagnose(project: &Project) -> (String, Vec<Diagnostic>) {
    let text = project.read(SPEC);
    let source = SourceFile::new(SPEC, text);
    let dir = project.path("specs");
    let diags = match syntax::parse(source.text()) {
        Err(d) => vec![d],
        Ok(file) => match check::check(&file, &dir) {
            Err(errors) => errors,
            Ok((spec, mut warnings)) => {
                warnings.extend(check::check_files(&spec));
                warnings
            }
        },
    };
    let rendered: String = diags.iter().map(|d| d.render(&source, false)).collect();
    let root = project.root().display().to_string();
    (rendered.replace(&root, "[ROOT]"), diags)
}

#[test]
fn the_fixture_spec_is_valid() {
    let project = Project::new();
    let (rendered, diags) = diagnose(&project);
    assert!(diags.is_empty(), "{rendered}");
}

#[test]
fn every_case_snapshot() {
    let mut codes: BTreeSet<Code> = BTreeSet::new();
    for (name, from, to) in CASES {
        let project = Project::new();
        project.edit(SPEC, from, to);
        let (rendered, diags) = diagnose(&project);
        assert!(diags.iter().any(Diagnostic::is_error), "case `{name}` produced no error");
        for d in &diags {
            assert!(d.hint.is_some(), "case `{name}`: diagnostic `{}` has no hint", d.message);
            codes.insert(d.code);
        }
        insta::assert_snapshot!(*name, rendered);
    }
    assert!(codes.len() >= 25, "only {} distinct codes: {codes:?}", codes.len());
}

#[test]
fn all_errors_in_a_file_are_reported_not_just_the_first() {
    let project = Project::new();
    project.edit(SPEC, "temperature = 0.2", "temprature = 0.2");
    project.edit(SPEC, "seed = 7", "seed = \"7\"");
    project.edit(SPEC, "on_failure = fail", "on_failure = abort");
    let (_, diags) = diagnose(&project);
    let codes: Vec<&str> = diags.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(codes, ["E0107", "E0102", "E0111"], "{diags:#?}");
}

#[test]
fn diagnostics_name_file_line_and_column() {
    let project = Project::new();
    project.edit(SPEC, "temperature = 0.2", "temprature = 0.2");
    let (_, diags) = diagnose(&project);
    let source = SourceFile::new(SPEC, project.read(SPEC));
    let line = diags[0].one_line(&source);
    assert!(line.starts_with("specs/mini.sds:27:3: error[E0102]: unknown key `temprature`"), "{line}");
}
