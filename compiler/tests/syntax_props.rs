//! Property tests for the `.sds` parser and the canonical printer behind `sdc fmt`.
//!
//! * Random syntax trees, generated already in the printer's normal form, survive
//!   `format` → `parse` unchanged, and `format` is idempotent on them.
//! * Arbitrary text never makes the parser panic; whatever it accepts, `fmt` maps to a fixpoint
//!   whose tree is the parsed tree up to the printer's documented normalisation.

use proptest::prelude::*;
use proptest::sample::select;
use sdc_compiler::SourceFile;
use sdc_compiler::span::Span;
use sdc_compiler::syntax::{self, Block, Comment, Duration, DurationUnit, Entry, Field, File, Ident, Value, ValueKind};

// ---------------------------------------------------------------------------------------------
// Building blocks.

fn ident(name: String) -> Ident {
    Ident { name, span: Span::default() }
}

fn comment(text: String) -> Comment {
    Comment { text, span: Span::default(), blank_before: false }
}

fn value(kind: ValueKind) -> Value {
    Value { kind, span: Span::default() }
}

/// The identifier shape used for keys, labels, map keys and symbols.
fn name() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_-]{0,8}"
}

/// A block kind: an identifier that is not one of the words the value grammar reserves.
fn kind_name() -> impl Strategy<Value = String> {
    name().prop_filter("reserved word", |s| !matches!(s.as_str(), "true" | "false" | "env"))
}

/// A bare word value: anything but `true`/`false`, which read back as booleans. (`env` is fine:
/// it is only a call when directly followed by `(`, which the printer never writes.)
fn symbol() -> impl Strategy<Value = String> {
    name().prop_filter("boolean literal", |s| !matches!(s.as_str(), "true" | "false"))
}

/// Comment texts as the parser stores them: one line, no surrounding whitespace.
fn comment_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[ -~]{0,30}",
        "[a-z #\"\\\\{}\\[\\]=\r\té€😀\u{a0}\u{2028}]{0,20}",
        any::<String>(),
    ]
    .prop_map(|s| s.replace('\n', " ").trim().to_string())
}

fn string_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z ]{0,10}",
        // Everything the quoting has to get right: quotes, escapes, control characters, unicode.
        "[a-z\"\\\\\n\t\r\0 #{}()\\[\\],=é€😀\u{7f}\u{85}\u{2028}]{0,16}",
        any::<String>(),
    ]
}

fn finite_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        (-100_000i64..100_000).prop_map(|n| n as f64 / 100.0),
        Just(0.0),
        Just(-0.0),
        Just(f64::MAX),
        Just(f64::MIN),
        Just(f64::MIN_POSITIVE),
        Just(5e-324),
        prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO,
    ]
}

fn int() -> impl Strategy<Value = i64> {
    prop_oneof![-20i64..20, -100_000i64..100_000, Just(i64::MIN), Just(i64::MAX), any::<i64>()]
}

fn duration() -> impl Strategy<Value = Duration> {
    let unit = select(vec![DurationUnit::Millis, DurationUnit::Seconds, DurationUnit::Minutes, DurationUnit::Hours]);
    let amount = prop_oneof![0u64..1000, Just(u64::MAX), any::<u64>()];
    (amount, unit).prop_map(|(amount, unit)| Duration { amount, unit })
}

fn leaf_value() -> BoxedStrategy<Value> {
    prop_oneof![
        string_literal().prop_map(ValueKind::Str),
        int().prop_map(ValueKind::Int),
        finite_f64().prop_map(ValueKind::Float),
        finite_f64().prop_map(ValueKind::Percent),
        duration().prop_map(ValueKind::Duration),
        any::<bool>().prop_map(ValueKind::Bool),
        symbol().prop_map(ValueKind::Symbol),
        string_literal().prop_map(|name| ValueKind::Env { name, default: None }),
    ]
    .prop_map(value)
    .boxed()
}

/// A value whose lists, maps and env defaults nest at most `depth` levels.
fn any_value(depth: u32) -> BoxedStrategy<Value> {
    if depth == 0 {
        return leaf_value();
    }
    let inner = any_value(depth - 1);
    prop_oneof![
        3 => leaf_value(),
        1 => prop::collection::vec(inner.clone(), 0..5).prop_map(|items| value(ValueKind::List(items))),
        1 => prop::collection::vec((name().prop_map(ident), inner.clone()), 0..5)
            .prop_map(|pairs| value(ValueKind::Map(pairs))),
        1 => (string_literal(), inner)
            .prop_map(|(name, d)| value(ValueKind::Env { name, default: Some(Box::new(d)) })),
    ]
    .boxed()
}

fn field() -> impl Strategy<Value = Field> {
    (name(), any_value(2), prop::option::weighted(0.3, comment_text()), any::<bool>()).prop_map(
        |(key, value, trailing, blank_before)| Field {
            key: ident(key),
            value,
            trailing: trailing.map(comment),
            blank_before,
            span: Span::default(),
        },
    )
}

fn own_line_comment() -> impl Strategy<Value = Comment> {
    (comment_text(), any::<bool>()).prop_map(|(text, blank_before)| Comment { blank_before, ..comment(text) })
}

/// A block whose body holds at most `depth` further levels of blocks.
fn block(depth: u32) -> BoxedStrategy<Block> {
    let entry = if depth == 0 {
        prop_oneof![3 => field().prop_map(Entry::Field), 1 => own_line_comment().prop_map(Entry::Comment)].boxed()
    } else {
        prop_oneof![
            3 => field().prop_map(Entry::Field),
            1 => own_line_comment().prop_map(Entry::Comment),
            1 => block(depth - 1).prop_map(Entry::Block),
        ]
        .boxed()
    };
    (
        kind_name(),
        prop::option::of(name()),
        prop::collection::vec(entry, 0..5),
        prop::option::weighted(0.3, comment_text()),
        any::<bool>(),
    )
        .prop_map(|(kind, label, mut entries, trailing, blank_before)| {
            // The first entry of a body never follows a blank line.
            if let Some(first) = entries.first_mut() {
                set_blank_before(first, false);
            }
            Block {
                kind: ident(kind),
                label: label.map(ident),
                entries,
                trailing: trailing.map(comment),
                blank_before,
                span: Span::default(),
            }
        })
        .boxed()
}

/// A whole file in the printer's normal form: blocks and own-line comments at the top level.
fn file() -> impl Strategy<Value = File> {
    let entry = prop_oneof![2 => block(3).prop_map(Entry::Block), 1 => own_line_comment().prop_map(Entry::Comment)];
    prop::collection::vec(entry, 0..6).prop_map(|entries| normalize(File { entries }))
}

fn blank_before(entry: &Entry) -> bool {
    match entry {
        Entry::Comment(c) => c.blank_before,
        Entry::Field(f) => f.blank_before,
        Entry::Block(b) => b.blank_before,
    }
}

fn set_blank_before(entry: &mut Entry, blank: bool) {
    match entry {
        Entry::Comment(c) => c.blank_before = blank,
        Entry::Field(f) => f.blank_before = blank,
        Entry::Block(b) => b.blank_before = blank,
    }
}

/// The printer's top-level layout rules (`printer.rs::normalized`), restated independently:
/// the first entry never follows a blank line, and a block follows one unless it directly
/// follows a comment that documents it.
fn normalize(mut file: File) -> File {
    let mut after_comment = false;
    for (i, entry) in file.entries.iter_mut().enumerate() {
        let blank = match entry {
            Entry::Block(_) if i > 0 && !after_comment => true,
            _ => i > 0 && blank_before(entry),
        };
        set_blank_before(entry, blank);
        after_comment = matches!(entry, Entry::Comment(_));
    }
    file
}

fn parse_ok(text: &str) -> File {
    match syntax::parse(text) {
        Ok(file) => file,
        Err(d) => panic!("formatted text does not parse: {d:?}\n--- text ---\n{text}"),
    }
}

/// `parse` must not panic on `text`; if it accepts it, `fmt` must reach a fixpoint at once.
fn check_fmt_fixpoint(text: &str) -> Result<(), TestCaseError> {
    match syntax::parse(text) {
        Ok(parsed) => {
            let formatted = syntax::format(&parsed);
            let reparsed = match syntax::parse(&formatted) {
                Ok(file) => file,
                Err(d) => {
                    return Err(TestCaseError::fail(format!(
                        "fmt output does not parse: {d:?}\n--- input ---\n{text:?}\n--- fmt ---\n{formatted:?}"
                    )));
                }
            };
            prop_assert_eq!(syntax::format(&reparsed), formatted.clone(), "fmt is not idempotent on {:?}", text);
            prop_assert_eq!(
                reparsed.without_spans(),
                normalize(parsed.without_spans()),
                "fmt changed the tree of {:?}",
                text
            );
        }
        Err(diagnostic) => {
            // Rendering an error must not panic either, wherever its span points.
            let source = SourceFile::new("fuzz.sds", text);
            let _ = diagnostic.render(&source, false);
            let _ = diagnostic.one_line(&source);
        }
    }
    Ok(())
}

/// Text shaped like a spec but sloppy: odd spacing, `\r\n`, blank lines, comments in odd
/// places, valid and invalid literals, and now and then a run of arbitrary grammar tokens.
fn grammar_ish() -> BoxedStrategy<String> {
    sloppy_entries(3).prop_map(|entries| entries.concat()).boxed()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn sloppy_atom() -> impl Strategy<Value = String> {
    // More digits than an f64 can represent: such literals must not read back as `inf`.
    let overlong = "9".repeat(320);
    let mut valid = strings(&[
        "1",
        "0",
        "-7",
        "+3",
        "007",
        "1_000",
        "1__0_",
        "-9223372036854775808",
        "0.5",
        "-0.0",
        "1._5",
        "35%",
        "-2.5%",
        "+0%",
        "2m",
        "10ms",
        "3s",
        "4h",
        "+1s",
        "18446744073709551615ms",
        "true",
        "false",
        "x",
        "_a-b",
        "env",
        "env(\"A\")",
        "env( \"A\" , 3 )",
        "env(\"A\",[env(\"B\")])",
        "\"a b\"",
        "\"\\n\\t\\\"\\\\\"",
        "\"é😀\u{85}\r\"",
        "[]",
        "{}",
        "{ a = 1, }",
        "[1,]",
        "[\n]",
    ]);
    valid.push(format!("{overlong}.0"));
    valid.push(format!("{overlong}%"));
    valid.push(format!("-{overlong}.5"));
    valid.push(format!("0.{overlong}"));
    let invalid = strings(&[
        "9223372036854775808",
        "1.",
        ".5",
        "1.5s",
        "-1s",
        "18446744073709551616ms",
        "1e5",
        "5x",
        "env(\"A\",)",
        "env(A)",
        "\"\\q\"",
        "\"",
        "\"\\",
        "[,]",
        "{ = 1 }",
        "{ a 1 }",
        "{ a = }",
        "9".repeat(320).as_str(),
    ]);
    prop_oneof![12 => select(valid), 1 => select(invalid)]
}

fn sloppy_value() -> impl Strategy<Value = String> {
    let sep = select(strings(&[", ", ",", " , ", ",\n", "\n", ",\n  # c\n", " "]));
    let items = prop::collection::vec((sloppy_atom(), sep.clone()), 0..4)
        .prop_map(|items| items.into_iter().map(|(a, s)| a + &s).collect::<String>())
        .boxed();
    let pairs =
        prop::collection::vec(("[a-z]{1,3}", select(strings(&[" = ", "=", " =\n "])), sloppy_atom(), sep), 0..4)
            .prop_map(|pairs| pairs.into_iter().map(|(k, e, v, s)| format!("{k}{e}{v}{s}")).collect::<String>());
    prop_oneof![
        4 => sloppy_atom(),
        1 => items.clone().prop_map(|i| format!("[{i}]")),
        1 => items.prop_map(|i| format!("[[{i}], {i}]")),
        1 => pairs.prop_map(|p| format!("{{ {p} }}")),
        1 => select(garbage_pieces()),
    ]
}

fn garbage() -> impl Strategy<Value = String> {
    prop::collection::vec(select(garbage_pieces()), 0..8).prop_map(|p| p.concat())
}

fn garbage_pieces() -> Vec<String> {
    strings(&[
        "{", "}", "[", "]", "(", ")", "=", ",", "#", "\"", "\\", " ", "\t", "\n", "\r", "a", "env", "1", "%", ".", "-",
        "é",
    ])
}

fn line_end() -> impl Strategy<Value = String> {
    let valid = select(strings(&[
        "\n",
        "\n",
        "\n",
        "\n\n",
        "\r\n",
        " \n",
        "  # note\n",
        "#\n",
        "# \t x \n",
        "\n\n\n",
        " b = 2\n",
    ]));
    prop_oneof![12 => valid, 1 => select(strings(&["", "\r", " x\n"]))]
}

fn sloppy_word() -> impl Strategy<Value = String> {
    let valid = select(strings(&["a", "x", "key", "block", "_", "b-c", "true", "env", "A9"]));
    prop_oneof![20 => valid, 1 => select(strings(&["é", "1", "-a"]))]
}

fn sloppy_entries(depth: u32) -> BoxedStrategy<Vec<String>> {
    let space = select(strings(&["", " ", "  ", "\t"]));
    let field = (sloppy_word(), space.clone(), space.clone(), sloppy_value(), line_end())
        .prop_map(|(k, s1, s2, v, e)| format!("{k}{s1}={s2}{v}{e}"));
    let comment = "[ -~]{0,12}".prop_map(|t| format!("# {t}\n"));
    let mut choices: Vec<(u32, BoxedStrategy<String>)> = vec![
        (4, field.boxed()),
        (1, comment.boxed()),
        (1, Just("\n".to_string()).boxed()),
        (1, Just("\n".to_string()).boxed()),
    ];
    if depth < 3 {
        choices.push((1, garbage().boxed()));
    }
    if depth > 0 {
        let block =
            (sloppy_word(), prop::option::of(sloppy_word()), space, line_end(), sloppy_entries(depth - 1), line_end())
                .prop_map(|(k, l, s, open_end, body, close_end)| {
                    let label = l.map(|l| format!(" {l}")).unwrap_or_default();
                    format!("{k}{label}{s}{{{open_end}{}}}{close_end}", body.concat())
                });
        choices.push((4, block.boxed()));
    }
    let count = if depth == 3 { 1..6 } else { 0..5 };
    prop::collection::vec(prop::strategy::Union::new_weighted(choices), count).boxed()
}

/// Canonical text with a few random edits: mostly-valid input that reaches deep parser states.
fn mutated_canonical() -> impl Strategy<Value = String> {
    let edit = (
        any::<prop::sample::Index>(),
        0u8..3,
        select(vec!['{', '}', '[', ']', '"', '\\', '#', '\n', ',', '=', ' ', '(', ')', '%', 'a', '1', '-', '.', 'é']),
    );
    (file(), prop::collection::vec(edit, 1..4)).prop_map(|(file, edits)| {
        let mut chars: Vec<char> = syntax::format(&file).chars().collect();
        for (at, op, c) in edits {
            let len = chars.len();
            match op {
                0 => chars.insert(at.index(len + 1), c),
                1 if len > 0 => {
                    chars.remove(at.index(len));
                }
                _ if len > 0 => chars[at.index(len)] = c,
                _ => chars.push(c),
            }
        }
        chars.into_iter().collect()
    })
}

// ---------------------------------------------------------------------------------------------
// Properties.

proptest! {
    /// (a) Printing a normal-form tree and parsing it back gives the same tree.
    #[test]
    fn format_then_parse_round_trips(file in file()) {
        let text = syntax::format(&file);
        let parsed = parse_ok(&text);
        prop_assert_eq!(parsed.without_spans(), file.without_spans(), "text:\n{}", text);
    }

    /// (b) `fmt` is idempotent.
    #[test]
    fn format_is_idempotent(file in file()) {
        let once = syntax::format(&file);
        let twice = syntax::format(&parse_ok(&once));
        prop_assert_eq!(twice, once);
    }

    /// (c) Arbitrary text: no panic, and `fmt` is a fixpoint on whatever parses.
    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check_fmt_fixpoint(&text)?;
    }

    #[test]
    fn grammar_ish_text_never_panics(text in grammar_ish()) {
        check_fmt_fixpoint(&text)?;
    }

    #[test]
    fn edited_canonical_text_never_panics(text in mutated_canonical()) {
        check_fmt_fixpoint(&text)?;
    }
}

// ---------------------------------------------------------------------------------------------
// The specs shipped with the project are already formatted.

fn assert_fixpoint(relative: &str) {
    let path = format!("{}/../{relative}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let formatted = syntax::format(&parse_ok(&text));
    assert_eq!(formatted, text, "{relative} is not in `sdc fmt` form");
    check_fmt_fixpoint(&text).unwrap();
}

#[test]
fn quantum_spec_is_a_fixpoint() {
    assert_fixpoint("specs/quantum.sds");
}

#[test]
fn mini_fixture_spec_is_a_fixpoint() {
    assert_fixpoint("tests/fixtures/project/specs/mini.sds");
}

/// A literal with more digits than an f64 can hold must not read back as `inf`, which the
/// printer would write as `inf.0`/`inf%`, text that does not parse.
#[test]
fn overlong_number_literals_survive_fmt() {
    let digits = "9".repeat(400);
    for text in [format!("x = {digits}.0\n"), format!("x = {digits}%\n"), format!("x = -{digits}.5\n")] {
        check_fmt_fixpoint(&text).unwrap();
    }
}

/// Absurd nesting is refused with a diagnostic instead of overflowing the parser's stack.
#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let blocks = "a {".repeat(1000);
    let lists = format!("a {{ b = {} }}", "[".repeat(2000));
    for text in [blocks, lists] {
        let err = sdc_compiler::syntax::parse(&text).expect_err("too deep");
        assert!(err.message.contains("nesting deeper than"), "{}", err.message);
    }
}
