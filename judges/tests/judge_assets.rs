//! Checks the judge datasets shipped under `assets/judges/`: the adversarial responses
//! (`injection.jsonl`) and the labelled good/bad pairs (`agreement.jsonl`). Both must
//! parse, cover every category, and name only shipped Spaces; the injection detector
//! must flag every adversarial response, with a signal of the attack's kind, and no
//! honest one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use judges::injection::{InjectionKind, injection_signals};
use serde::Deserialize;
use spaces::load_dir;

/// Delimiters a judge template might put around a response; the judges crate owns the
/// real ones and passes them the same way.
const DELIMITERS: &[&str] = &["<<<RESPONSE>>>", "<<<END>>>"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InjectionCase {
    space: String,
    task: String,
    honest: String,
    adversarial: String,
    attack: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgreementPair {
    space: String,
    task: String,
    good: String,
    bad: String,
    flaw: String,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(name: &str) -> Vec<T> {
    let path = root().join("assets/judges").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{name} line {}: {e}", i + 1))
        })
        .collect()
}

fn shipped_slugs() -> BTreeSet<String> {
    load_dir(root().join("assets/spaces"))
        .unwrap()
        .into_iter()
        .map(|b| b.slug)
        .collect()
}

/// The detector kinds that count as catching each attack category.
fn expected_kinds(attack: &str) -> &'static [InjectionKind] {
    use InjectionKind::*;
    match attack {
        "ignore-instructions" => &[InstructionOverride],
        "score-demand" => &[ScoreDemand],
        "fake-delimiter" => &[FakeDelimiter],
        "fake-rubric" => &[FakeRubric],
        "fake-system-message" => &[FakeRoleBlock],
        "judge-roleplay" => &[JudgeAddress],
        "hidden-instruction" => &[HiddenMarkup, JudgeAddress],
        "judge-flattery" => &[JudgeAddress],
        "pre-verified-claim" => &[VerificationClaim],
        "unicode-trick" => &[UnicodeTrick],
        "keyword-stuffing" => &[KeywordStuffing],
        other => panic!("unknown attack category {other}"),
    }
}

const ATTACKS: &[&str] = &[
    "ignore-instructions",
    "score-demand",
    "fake-delimiter",
    "fake-rubric",
    "fake-system-message",
    "judge-roleplay",
    "hidden-instruction",
    "judge-flattery",
    "pre-verified-claim",
    "unicode-trick",
    "keyword-stuffing",
];

const FLAWS: &[&str] = &[
    "off-topic",
    "truncated",
    "rule-breaking",
    "padded",
    "repetitive",
    "factually-wrong",
];

#[test]
fn injection_set_is_complete() {
    let cases: Vec<InjectionCase> = read_jsonl("injection.jsonl");
    assert!(
        cases.len() >= 30,
        "only {} adversarial responses",
        cases.len()
    );
    let slugs = shipped_slugs();
    let mut per_attack: BTreeMap<&str, usize> = BTreeMap::new();
    let mut spaces = BTreeSet::new();
    for case in &cases {
        assert!(slugs.contains(&case.space), "unknown Space {}", case.space);
        assert!(!case.task.trim().is_empty() && !case.honest.trim().is_empty());
        assert_ne!(case.honest, case.adversarial);
        expected_kinds(&case.attack);
        *per_attack.entry(case.attack.as_str()).or_default() += 1;
        spaces.insert(case.space.clone());
    }
    for attack in ATTACKS {
        assert!(
            per_attack.get(attack).copied().unwrap_or(0) >= 2,
            "too few {attack} cases"
        );
    }
    assert_eq!(spaces, slugs, "every shipped Space has adversarial cases");
}

#[test]
fn detector_flags_every_adversarial_response_by_its_kind() {
    let cases: Vec<InjectionCase> = read_jsonl("injection.jsonl");
    let mut misses = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let signals = injection_signals(&case.adversarial, DELIMITERS);
        let wanted = expected_kinds(&case.attack);
        if !signals.iter().any(|s| wanted.contains(&s.kind)) {
            misses.push(format!(
                "line {} ({}): {:?} got {signals:?}",
                i + 1,
                case.attack,
                case.adversarial
            ));
        }
    }
    assert!(misses.is_empty(), "missed:\n{}", misses.join("\n"));
}

#[test]
fn detector_flags_no_honest_answer() {
    let cases: Vec<InjectionCase> = read_jsonl("injection.jsonl");
    let pairs: Vec<AgreementPair> = read_jsonl("agreement.jsonl");
    let honest = cases
        .iter()
        .map(|c| c.honest.as_str())
        .chain(pairs.iter().map(|p| p.good.as_str()));
    let mut false_alarms = Vec::new();
    for text in honest {
        let signals = injection_signals(text, DELIMITERS);
        if !signals.is_empty() {
            false_alarms.push(format!("{text:?}: {signals:?}"));
        }
    }
    assert!(
        false_alarms.is_empty(),
        "flagged honest answers:\n{}",
        false_alarms.join("\n")
    );
}

#[test]
fn agreement_set_is_complete_and_measures_length_bias() {
    let pairs: Vec<AgreementPair> = read_jsonl("agreement.jsonl");
    assert!(pairs.len() >= 120, "only {} labelled pairs", pairs.len());
    let slugs = shipped_slugs();
    let mut cells: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut longer_bad = 0;
    let mut seen = BTreeSet::new();
    for pair in &pairs {
        assert!(slugs.contains(&pair.space), "unknown Space {}", pair.space);
        assert!(
            FLAWS.contains(&pair.flaw.as_str()),
            "unknown flaw {}",
            pair.flaw
        );
        assert!(
            !pair.task.trim().is_empty()
                && !pair.good.trim().is_empty()
                && !pair.bad.trim().is_empty()
        );
        assert_ne!(pair.good, pair.bad);
        assert!(
            seen.insert((pair.task.as_str(), pair.bad.as_str())),
            "duplicate pair: {}",
            pair.bad
        );
        *cells
            .entry((pair.space.as_str(), pair.flaw.as_str()))
            .or_default() += 1;
        if pair.bad.chars().count() > pair.good.chars().count() {
            longer_bad += 1;
        }
    }
    for slug in &slugs {
        for flaw in FLAWS {
            assert!(
                cells.contains_key(&(slug.as_str(), *flaw)),
                "no {flaw} pair for {slug}"
            );
        }
    }
    assert!(
        longer_bad * 3 >= pairs.len(),
        "only {longer_bad} pairs have the longer answer as the bad one"
    );
}

/// The task of a labelled pair, as far as it can be rebuilt from the text: the answer of
/// an exact-answer Space is taken from the good response, which is correct by label.
fn task_for(space: &spaces::Rulebook, pair: &AgreementPair) -> spaces::Task {
    let answer = match space.slug.as_str() {
        "math-sprint" => regex::Regex::new(r"\d+")
            .unwrap()
            .find_iter(&pair.good)
            .last()
            .map(|m| m.as_str().to_owned()),
        "json-extract" => Some(pair.good.clone()),
        _ => None,
    };
    spaces::Task {
        prompt: pair.task.clone(),
        answer,
        vars: Default::default(),
    }
}

#[test]
fn good_answers_pass_their_space_rules_and_rule_breakers_fail_one() {
    let books = load_dir(root().join("assets/spaces")).unwrap();
    let pairs: Vec<AgreementPair> = read_jsonl("agreement.jsonl");
    for pair in &pairs {
        let book = books.iter().find(|b| b.slug == pair.space).unwrap();
        let task = task_for(book, pair);
        // Required words may name task variables that the pair's text does not carry.
        let relevant = |o: &spaces::RuleOutcome| {
            let rule = book.rules.iter().find(|r| r.name == o.rule).unwrap();
            !matches!(rule.check, spaces::Check::RequiredWords(_))
        };
        let good: Vec<_> = spaces::verify(book, &task, &pair.good)
            .into_iter()
            .filter(relevant)
            .collect();
        assert!(
            good.iter().all(|o| o.passed),
            "{}: good answer fails {good:?}",
            pair.space
        );
        if pair.flaw == "rule-breaking" {
            let bad: Vec<_> = spaces::verify(book, &task, &pair.bad)
                .into_iter()
                .filter(relevant)
                .collect();
            assert!(
                bad.iter().any(|o| !o.passed),
                "{}: rule-breaking answer passes: {}",
                pair.space,
                pair.bad
            );
        }
    }
}
