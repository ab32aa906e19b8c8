//! Every way a rulebook can be wrong gives an error that names the file, the key and the
//! problem. Each test edits one line of a small valid rulebook.

use spaces::{Rulebook, SpaceError, load_dir};

const FILE: &str = "assets/spaces/haiku.toml";

const BASE: &str = r#"
slug = "haiku"
name = "Haiku"
description = "Three lines."
rubric = "Judge the poem."
players = 3
rounds = 1

[tasks]
templates = [{ prompt = "Write a haiku about {subject}." }]

[tasks.vars]
subject = ["rain", "snow"]

[[fees]]
name = "free"
wei = 0

[payout]
rule = "winner_takes_all"
rake_bps = 300

[pairs]
min_margin = 0.1

[judges]
llm = 0.6
embedding = 0.2
rules = 0.2
target_length = 17
length_unit = "words"

[[rules]]
kind = "length"
unit = "lines"
min = 3
max = 3
hard = true
"#;

fn error_for(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "fixture lacks {from:?}");
    match Rulebook::from_toml(FILE, &BASE.replacen(from, to, 1)) {
        Ok(_) => panic!("replacing {from:?} with {to:?} should fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn base_fixture_is_valid() {
    let book = Rulebook::from_toml(FILE, BASE).unwrap();
    assert_eq!(book.slug, "haiku");
    assert_eq!(book.players, 3);
}

#[test]
fn out_of_range_players_names_file_key_and_bounds() {
    assert_eq!(
        error_for("players = 3", "players = 9"),
        "assets/spaces/haiku.toml: key players: 9 is out of range, expected 2 to 8"
    );
    assert_eq!(
        error_for("rounds = 1", "rounds = 0"),
        "assets/spaces/haiku.toml: key rounds: 0 is out of range, expected 1 to 16"
    );
}

#[test]
fn unknown_keys_are_errors_with_their_full_path() {
    let e = error_for("rounds = 1", "rounds = 1\nround = 2");
    assert!(
        e.starts_with("assets/spaces/haiku.toml: key round: unknown key"),
        "{e}"
    );
    let e = error_for("rules = 0.2", "rules = 0.2\nbias = 1");
    assert!(
        e.starts_with("assets/spaces/haiku.toml: key judges.bias: unknown key"),
        "{e}"
    );
    let e = error_for("hard = true", "hard = true\nmaxx = 4");
    assert!(
        e.starts_with("assets/spaces/haiku.toml: key rules[0].maxx: unknown key"),
        "{e}"
    );
    let e = error_for("unit = \"lines\"", "unit = \"lines\"\npattern = \"x\"");
    assert_eq!(
        e,
        "assets/spaces/haiku.toml: key rules[0].pattern: not used by a length rule"
    );
}

#[test]
fn missing_and_mistyped_keys() {
    assert_eq!(
        error_for("rubric = \"Judge the poem.\"", ""),
        "assets/spaces/haiku.toml: key rubric: missing"
    );
    let e = error_for("min_margin = 0.1", "min_margin = \"high\"");
    assert!(
        e.starts_with("assets/spaces/haiku.toml: key pairs.min_margin: invalid type"),
        "{e}"
    );
    let e = error_for("unit = \"lines\"", "unit = \"syllables\"");
    assert!(
        e.starts_with("assets/spaces/haiku.toml: key rules[0].unit: unknown variant"),
        "{e}"
    );
    assert_eq!(
        error_for("unit = \"lines\"\n", ""),
        "assets/spaces/haiku.toml: key rules[0].unit: missing (a length rule needs it)"
    );
}

#[test]
fn syntax_errors_give_the_line() {
    let e = error_for("rounds = 1", "rounds = = 1");
    assert!(
        e.starts_with("assets/spaces/haiku.toml: not valid TOML: line 7:"),
        "{e}"
    );
}

#[test]
fn value_checks() {
    let cases = [
        ("min = 3", "min = 4", "key rules[0].min: 4 is above max (3)"),
        (
            "rake_bps = 300",
            "rake_bps = 10001",
            "key payout.rake_bps: 10001 is out of range, expected 0 to 10000",
        ),
        (
            "min_margin = 0.1",
            "min_margin = 1.5",
            "key pairs.min_margin: 1.5 is out of range, expected 0 to 1",
        ),
        ("wei = 0", "wei = -1", "key fees[0].wei: -1 is negative"),
        (
            "wei = 0",
            "wei = \"12x\"",
            "key fees[0].wei: \"12x\" is not a whole number of wei",
        ),
        (
            "slug = \"haiku\"",
            "slug = \"Haiku Space\"",
            "key slug: \"Haiku Space\" must be lower-case words joined by '-' (at most 40 characters)",
        ),
        (
            "rounds = 1",
            "rounds = 1\nhistory = \"opponent_last\"",
            "key history: showing earlier answers needs rounds >= 2",
        ),
        (
            "rounds = 1",
            "rounds = 1\nroles = [\"a\", \"b\"]",
            "key roles: 2 roles given, expected one per player (3)",
        ),
        (
            "description = \"Three lines.\"",
            "description = \"  \"",
            "key description: must not be empty",
        ),
        (
            "llm = 0.6\nembedding = 0.2\nrules = 0.2",
            "llm = 0\nembedding = 0\nrules = 0",
            "key judges: at least one judge weight must be above 0",
        ),
        (
            "rule = \"winner_takes_all\"",
            "rule = \"top_k\"",
            "key payout.weights: missing (rule = \"top_k\" needs weights)",
        ),
        (
            "rule = \"winner_takes_all\"",
            "rule = \"top_k\"\nweights = [30, 60]",
            "key payout.weights[1]: a lower place must not earn more than a higher one",
        ),
        (
            "rule = \"winner_takes_all\"",
            "rule = \"top_k\"\nweights = [4, 3, 2, 1]",
            "key payout.weights: 4 weights given, expected 1 to 3 (one per paid place)",
        ),
        (
            "rule = \"winner_takes_all\"",
            "rule = \"proportional\"\nweights = [1]",
            "key payout.weights: only used with rule = \"top_k\"",
        ),
        (
            "name = \"free\"\nwei = 0",
            "name = \"free\"\nwei = 0\n\n[[fees]]\nname = \"free\"\nwei = 1",
            "key fees[1].name: \"free\" is used twice",
        ),
    ];
    for (from, to, want) in cases {
        assert_eq!(error_for(from, to), format!("{FILE}: {want}"));
    }
}

#[test]
fn task_generator_checks() {
    let cases = [
        (
            "about {subject}.",
            "about {topic}.",
            "key tasks.templates[0].prompt: {topic} is not defined in tasks.vars or tasks.ranges",
        ),
        (
            "subject = [\"rain\", \"snow\"]",
            "subject = []",
            "key tasks.vars.subject: must list at least one value",
        ),
        (
            "subject = [\"rain\", \"snow\"]",
            "subject = [\"rain\"]\n\n[tasks.ranges]\nn = [5, 1]",
            "key tasks.ranges.n[1]: 1 is out of range, expected 5 to 1000000",
        ),
        (
            "{subject}.\" }",
            "{subject}.\", answer_expr = \"{subject} + 1\" }",
            "key tasks.templates[0].answer_expr: {subject} is not an integer range in tasks.ranges",
        ),
        (
            "{subject}.\" }",
            "{subject}.\", answer_expr = \"1 +\" }",
            "key tasks.templates[0].answer_expr: the expression ends too early",
        ),
        (
            "[tasks]\n",
            "[tasks]\nlist = [{ prompt = \"x\" }]\n",
            "key tasks: give tasks.list or tasks.templates, not both",
        ),
    ];
    for (from, to, want) in cases {
        assert_eq!(error_for(from, to), format!("{FILE}: {want}"));
    }
}

#[test]
fn rule_checks() {
    let rule = "kind = \"length\"\nunit = \"lines\"\nmin = 3\nmax = 3\n";
    let cases = [
        (
            "kind = \"regex\"\npattern = \"(unclosed\"\n",
            "key rules[0].pattern: not a valid regex",
        ),
        (
            "kind = \"json_schema\"\nschema = '{\"type\": \"object\", \"properties\": {\"a\": {\"format\": \"email\"}}}'\n",
            "key rules[0].schema.properties.a.format: unknown schema keyword",
        ),
        (
            "kind = \"json_schema\"\nschema = '{\"type\": '\n",
            "key rules[0].schema: not valid JSON",
        ),
        (
            "kind = \"required_words\"\nwords = [\"{season}\"]\n",
            "key rules[0].words[0]: {season} is not defined in tasks.vars or tasks.ranges",
        ),
        (
            "kind = \"required_words\"\nwords = [\"--\"]\n",
            "key rules[0].words[0]: \"--\" holds no word",
        ),
        (
            "kind = \"exact_answer\"\nmode = \"number\"\n",
            "key tasks.templates[0].answer: missing (the Space checks exact answers)",
        ),
        (
            "kind = \"length\"\nunit = \"words\"\n",
            "key rules[0].max: missing (give min, max or both)",
        ),
    ];
    for (to, want) in cases {
        let e = error_for(rule, to);
        assert!(
            e.starts_with(&format!("{FILE}: {want}")),
            "{e}\nwanted {want}"
        );
    }
    let twice = error_for(
        "hard = true\n",
        "hard = true\n\n[[rules]]\nkind = \"length\"\nunit = \"words\"\nmax = 9\nhard = false\n",
    );
    assert_eq!(
        twice,
        format!(
            "{FILE}: key rules[1].name: \"length\" is also the name of rules[0]; give each rule its own name"
        )
    );
}

#[test]
fn reference_answers_must_pass_their_own_verifiers() {
    let text = BASE
        .replace("templates = [{ prompt = \"Write a haiku about {subject}.\" }]", "list = [{ prompt = \"2+2?\", answer = \"4\" }, { prompt = \"3+3?\", answer = \"six\" }]")
        .replace("[tasks.vars]\nsubject = [\"rain\", \"snow\"]\n", "")
        .replace("kind = \"length\"\nunit = \"lines\"\nmin = 3\nmax = 3\n", "kind = \"exact_answer\"\nmode = \"number\"\n");
    let e = Rulebook::from_toml(FILE, &text).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{FILE}: key tasks.list[1].answer: the reference answer \"six\" fails rule exact_answer: no number in the response"
        )
    );
}

#[test]
fn large_wei_amounts_as_strings() {
    let book = Rulebook::from_toml(
        FILE,
        &BASE.replace(
            "wei = 0",
            "wei = \"340282366920938463463374607431768211455\"",
        ),
    )
    .unwrap();
    assert_eq!(book.fees[0].wei, u128::MAX);
    let e = error_for(
        "wei = 0",
        "wei = \"340282366920938463463374607431768211456\"",
    );
    assert!(e.ends_with("does not fit in 128 bits"), "{e}");
}

#[test]
fn version_hash_ignores_layout_but_not_content() {
    let book = Rulebook::from_toml(FILE, BASE).unwrap();
    assert_eq!(book.version_hash().len(), 64);
    let reformatted = format!(
        "# a comment\n{}",
        BASE.replace("players = 3", "players    =   3 # three")
    );
    assert_eq!(
        Rulebook::from_toml(FILE, &reformatted)
            .unwrap()
            .version_hash(),
        book.version_hash()
    );
    let changed = BASE.replace("rake_bps = 300", "rake_bps = 301");
    assert_ne!(
        Rulebook::from_toml(FILE, &changed).unwrap().version_hash(),
        book.version_hash()
    );
}

#[test]
fn load_dir_checks_file_names_and_reports_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("haiku.toml"), BASE).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a rulebook").unwrap();
    let books = load_dir(dir.path()).unwrap();
    assert_eq!(books.len(), 1);
    std::fs::write(dir.path().join("poem.toml"), BASE).unwrap();
    let e = load_dir(dir.path()).unwrap_err();
    assert!(matches!(e, SpaceError::Invalid { ref key, .. } if key == "slug"));
    assert!(
        e.to_string()
            .ends_with("poem.toml: key slug: \"haiku\" does not match the file name poem.toml"),
        "{e}"
    );
    let missing = load_dir(dir.path().join("nope")).unwrap_err();
    assert!(matches!(missing, SpaceError::Io { .. }));
}
