//! Rule verifiers: pure checks of one response against the rules of its Space and the
//! task it answers. The judge panel runs them; a failed hard rule ranks the response
//! last whatever the other judges say.
//!
//! Length in `words` counts whitespace-separated words, the documented stand-in for
//! model tokens (SmolLM2's tokenizer gives about 1.3 tokens per English word).

use regex::Regex;
use serde_json::Value;
use std::collections::BTreeMap;

use crate::schema::{Schema, parse_response_json};
use crate::tasks::{Task, fill};

/// The unit of a length bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LengthUnit {
    /// Whitespace-separated words (the approximation of tokens).
    Words,
    /// Unicode scalar values.
    Chars,
    /// Non-empty lines.
    Lines,
}

impl LengthUnit {
    /// The unit's plural name, for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            LengthUnit::Words => "words",
            LengthUnit::Chars => "characters",
            LengthUnit::Lines => "lines",
        }
    }

    /// Measures a text (trimmed) in this unit.
    pub fn measure(self, text: &str) -> usize {
        let text = text.trim();
        match self {
            LengthUnit::Words => text.split_whitespace().count(),
            LengthUnit::Chars => text.chars().count(),
            LengthUnit::Lines => text.lines().filter(|l| !l.trim().is_empty()).count(),
        }
    }
}

/// How an exact answer is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerMode {
    /// The last number in the response equals the answer.
    Number,
    /// The response's words equal the answer's words, ignoring case and punctuation.
    Text,
    /// The response's JSON equals the answer's JSON (numbers compared by value).
    Json,
}

/// What a rule checks.
#[derive(Debug, Clone)]
pub enum Check {
    /// The response's length lies within bounds.
    Length {
        /// The unit counted.
        unit: LengthUnit,
        /// Inclusive lower bound.
        min: Option<usize>,
        /// Inclusive upper bound.
        max: Option<usize>,
    },
    /// Every word or phrase must appear (case-insensitive, whole words); `{var}`
    /// placeholders are filled from the task.
    RequiredWords(Vec<String>),
    /// No word or phrase may appear (case-insensitive, whole words).
    ForbiddenWords(Vec<String>),
    /// The trimmed response must (or must not) match a regular expression.
    Regex {
        /// The compiled pattern.
        regex: Regex,
        /// Whether a match passes (`true`) or fails (`false`).
        must_match: bool,
    },
    /// The response must be JSON valid against a schema.
    JsonSchema(Schema),
    /// The response must give the task's verifiable answer.
    ExactAnswer(AnswerMode),
}

/// One verifier of a Space.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    /// A short name, unique in the Space (defaults to the kind).
    pub name: String,
    /// A failed hard rule ranks the response last; a soft one only lowers its score.
    pub hard: bool,
    /// What is checked.
    pub check: Check,
}

/// The result of one verifier on one response.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleOutcome {
    /// The rule's name.
    pub rule: String,
    /// Whether the rule is hard.
    pub hard: bool,
    /// Whether the response passed.
    pub passed: bool,
    /// How close the response came, in [0, 1]: 1 when it passed, below 1 when it
    /// failed (see `partial_credit`), so failed answers still rank among themselves.
    pub credit: f64,
    /// A short reason, e.g. `45 words, above the maximum of 40`.
    pub reason: String,
}

/// Whether any hard rule failed.
pub fn hard_failed(outcomes: &[RuleOutcome]) -> bool {
    outcomes.iter().any(|o| o.hard && !o.passed)
}

/// How close a response came to keeping its hard rules, in [0, 1]: the mean credit
/// over the hard rules (1 when every hard rule passed or there are none). A response
/// that broke a hard rule still ranks last; this grades it among the others that did.
pub fn hard_grade(outcomes: &[RuleOutcome]) -> f64 {
    let hard: Vec<f64> = outcomes
        .iter()
        .filter(|o| o.hard)
        .map(|o| o.credit)
        .collect();
    if hard.is_empty() {
        1.0
    } else {
        hard.iter().sum::<f64>() / hard.len() as f64
    }
}

/// The highest credit a failed rule can earn: a failure never grades as a pass.
const MAX_FAILED_CREDIT: f64 = 0.99;

/// The partial credit of a response that failed `check`, in [0, 0.99]: how far it is
/// from passing, by rule kind.
///
/// - length: the bound over the length (above a maximum) or the length over the bound
///   (below a minimum), so 44 words against a maximum of 40 earns 0.91;
/// - required words: the share present; forbidden words: the share avoided;
/// - a pattern: none (a pattern has no distance);
/// - a JSON schema: the share of the schema's checks the JSON passes, recursively
///   (scaled from a half to all of it by the share of the response the JSON takes up
///   when it had to be cut out of surrounding prose, quartered when it broke off, at
///   the token limit or at a syntax error, and was closed after its last complete
///   element),
///   and at least a fifth of the share of the task's JSON answer's values the
///   response states anywhere, as whole words (so `Ana, 34, Lima` is nearer than a
///   refusal; nothing when the task has no JSON answer);
/// - an exact number: one minus the error relative to the answer (at least 1), so 55
///   for 56 earns 0.98 and anything off by the answer's size or more earns 0;
/// - an exact text: the word overlap (F1) with the answer;
/// - exact JSON: the share of the answer's keys given with the right value, over the
///   keys of the larger object (scaled as for a schema when cut out of prose,
///   quartered when broken off).
pub(crate) fn partial_credit(check: &Check, task: &Task, response: &str) -> f64 {
    let credit = match check {
        Check::Length { unit, min, max } => {
            let n = unit.measure(response) as f64;
            match (min, max) {
                (_, Some(max)) if n > *max as f64 => *max as f64 / n,
                (Some(min), _) if n < *min as f64 && *min > 0 => n / *min as f64,
                _ => 1.0,
            }
        }
        Check::RequiredWords(list) => {
            let have = words(response);
            let present = list
                .iter()
                .filter(|w| contains_phrase(&have, &words(&fill(w, &task.vars))))
                .count();
            share(present, list.len())
        }
        Check::ForbiddenWords(list) => {
            let have = words(response);
            let avoided = list
                .iter()
                .filter(|w| !contains_phrase(&have, &words(&fill(w, &task.vars))))
                .count();
            share(avoided, list.len())
        }
        Check::Regex { .. } => 0.0,
        Check::JsonSchema(schema) => {
            let as_json =
                lenient_json(response).map_or(0.0, |(value, kept)| schema.credit(&value) * kept);
            as_json.max(PROSE_ONLY * prose_facts(task, response))
        }
        Check::ExactAnswer(mode) => match &task.answer {
            None => 0.0,
            Some(answer) => answer_credit(*mode, answer, response),
        },
    };
    credit.clamp(0.0, MAX_FAILED_CREDIT)
}

/// The least JSON-schema credit a response earns for stating every value of the task's
/// JSON answer, with or without JSON around them: as much as a valid value broken off
/// (a quarter) with 80 % of its checks passed, or a tenth of a complete value cut out
/// of prose. In JSON Extract every prompt states the facts, so an answer that repeats
/// its sentence earns it too: near the format's far end, above a refusal or JSON with
/// none of the facts.
const PROSE_ONLY: f64 = 0.2;

/// The share of the values of the task's JSON answer (its strings, numbers and
/// booleans) that a response states in prose, as whole words, case-insensitive; 0 when
/// the task has no JSON answer.
fn prose_facts(task: &Task, response: &str) -> f64 {
    let Some(answer) = task
        .answer
        .as_deref()
        .and_then(|a| serde_json::from_str::<Value>(a).ok())
    else {
        return 0.0;
    };
    let mut facts = Vec::new();
    scalar_words(&answer, &mut facts);
    if facts.is_empty() {
        return 0.0;
    }
    let have = words(response);
    let stated = facts.iter().filter(|f| contains_phrase(&have, f)).count();
    share(stated, facts.len())
}

/// The words of each of a JSON value's strings, numbers and booleans that has any,
/// depth first.
fn scalar_words(value: &Value, out: &mut Vec<Vec<String>>) {
    let text = match value {
        Value::Object(map) => return map.values().for_each(|v| scalar_words(v, out)),
        Value::Array(items) => return items.iter().for_each(|v| scalar_words(v, out)),
        Value::String(s) => words(s),
        Value::Number(n) => words(&n.to_string()),
        Value::Bool(b) => words(&b.to_string()),
        Value::Null => return,
    };
    if !text.is_empty() {
        out.push(text);
    }
}

fn share(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        1.0
    } else {
        part as f64 / whole as f64
    }
}

/// How much of a JSON answer's credit it keeps, by how its JSON was found: the whole
/// response is JSON (1); one complete value cut out of surrounding text keeps between
/// a half ([`CUT_OUT_OF_PROSE`], when the text around it is everything) and all of it
/// (when the text around it is nothing), by the share of the trimmed response's bytes
/// the value takes up (as written, whitespace included), so a value followed by a
/// stray code fence is a nearer miss than one inside an explanation; a value broken
/// off (at the token limit or at a syntax error) and closed after its last complete
/// element keeps a quarter ([`BROKEN_OFF`]).
const CUT_OUT_OF_PROSE: f64 = 0.5;
const BROKEN_OFF: f64 = 0.25;

/// The response's JSON and the share of credit it keeps (see [`CUT_OUT_OF_PROSE`]):
/// the whole response when it parses, otherwise the value that starts at its first `{`
/// or `[`: complete when its brackets close, else what parses when it is cut after its
/// last complete element and its open brackets are closed.
fn lenient_json(response: &str) -> Option<(Value, f64)> {
    if let Ok(value) = parse_response_json(response) {
        return Some((value, 1.0));
    }
    let text = response.trim();
    let start = text.find(['{', '['])?;
    Some(match json_prefix(&text[start..])? {
        (value, Some(len)) => {
            let share = len as f64 / text.len() as f64;
            (value, CUT_OUT_OF_PROSE * (1.0 + share))
        }
        (value, None) => (value, BROKEN_OFF),
    })
}

/// Most cut points [`json_prefix`] tries, the last ones before the text stops being
/// JSON; bounds the work on a long broken answer to this many parses of it.
const MAX_JSON_REPAIRS: usize = 64;

/// The JSON value at the start of `text` (which starts with a bracket), with its
/// length in bytes when its brackets close, or `None` for the length when it had to be
/// cut and closed. A cut right after the first bracket (an empty outer container made
/// of a lone bracket) does not count.
fn json_prefix(text: &str) -> Option<(Value, Option<usize>)> {
    // Scan no further than where a parser gives up on the text, so a syntax error
    // early in a long answer still leaves the cuts before it to try.
    let limit = match serde_json::from_str::<Value>(text) {
        Ok(_) => text.len(),
        Err(e) => error_offset(text, e.line(), e.column()),
    };
    // Where the text may be cut (outside strings): after an opening bracket, before a
    // comma, after a closing bracket; only the last few are kept.
    let mut cuts: std::collections::VecDeque<usize> = Default::default();
    let mut open: Vec<char> = Vec::new();
    let cut = |at: usize, cuts: &mut std::collections::VecDeque<usize>| {
        if at > 1 {
            if cuts.len() == MAX_JSON_REPAIRS {
                cuts.pop_front();
            }
            cuts.push_back(at);
        }
    };
    for (i, ch) in outside_strings(text) {
        if i >= limit {
            break;
        }
        match ch {
            '{' | '[' => {
                open.push(if ch == '{' { '}' } else { ']' });
                cut(i + 1, &mut cuts);
            }
            '}' | ']' => {
                if open.pop() != Some(ch) {
                    break;
                }
                if open.is_empty() {
                    if let Ok(value) = serde_json::from_str(&text[..=i]) {
                        return Some((value, Some(i + 1)));
                    }
                    break;
                }
                cut(i + 1, &mut cuts);
            }
            ',' => cut(i, &mut cuts),
            _ => {}
        }
    }
    cuts.iter().rev().find_map(|&end| {
        let prefix = &text[..end];
        let mut closed = prefix.to_string();
        closed.extend(open_brackets(prefix).iter().rev());
        serde_json::from_str(&closed)
            .ok()
            .map(|value| (value, None))
    })
}

/// The closing brackets still owed at the end of `prefix` (outside strings), in the
/// order they were opened.
fn open_brackets(prefix: &str) -> Vec<char> {
    let mut open = Vec::new();
    for (_, ch) in outside_strings(prefix) {
        match ch {
            '{' => open.push('}'),
            '[' => open.push(']'),
            '}' | ']' => {
                open.pop();
            }
            _ => {}
        }
    }
    open
}

/// The characters of `text` outside JSON strings (their quotes excluded), with their
/// byte offsets.
fn outside_strings(text: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let (mut in_string, mut escaped) = (false, false);
    text.char_indices().filter(move |&(_, ch)| {
        if in_string {
            match ch {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            false
        } else if ch == '"' {
            in_string = true;
            false
        } else {
            true
        }
    })
}

/// The byte offset of serde_json's 1-based `line` and `column` in `text` (at most its
/// length, on a character boundary).
fn error_offset(text: &str, line: usize, column: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let mut at = (line_start + column).min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn answer_credit(mode: AnswerMode, answer: &str, response: &str) -> f64 {
    match mode {
        AnswerMode::Number => match (last_number(response), answer.trim().parse::<f64>()) {
            (Some(got), Ok(want)) => 1.0 - ((got - want).abs() / want.abs().max(1.0)).min(1.0),
            _ => 0.0,
        },
        AnswerMode::Text => {
            let got = words(response);
            let want = words(answer);
            let common = want.iter().filter(|w| got.contains(w)).count() as f64;
            if common == 0.0 {
                0.0
            } else {
                let precision = common / got.len() as f64;
                let recall = common / want.len() as f64;
                2.0 * precision * recall / (precision + recall)
            }
        }
        AnswerMode::Json => {
            let (Some((got, scale)), Ok(want)) = (
                lenient_json(response),
                serde_json::from_str::<Value>(answer),
            ) else {
                return 0.0;
            };
            match (&got, &want) {
                (Value::Object(g), Value::Object(w)) => {
                    let right = w
                        .iter()
                        .filter(|(k, v)| g.get(*k).is_some_and(|x| same_json(x, v)))
                        .count();
                    scale * share(right, g.len().max(w.len()))
                }
                _ if same_json(&got, &want) => scale,
                _ => 0.0,
            }
        }
    }
}

/// The share of soft and hard rules passed, in [0, 1] (1 when there are no rules).
pub fn pass_rate(outcomes: &[RuleOutcome]) -> f64 {
    if outcomes.is_empty() {
        return 1.0;
    }
    outcomes.iter().filter(|o| o.passed).count() as f64 / outcomes.len() as f64
}

/// Lower-case words of a text: runs of letters, digits and inner apostrophes.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '\u{2019}'))
        .map(|w| {
            w.trim_matches(|c| c == '\'' || c == '\u{2019}')
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

fn contains_phrase(haystack: &[String], phrase: &[String]) -> bool {
    !phrase.is_empty() && haystack.windows(phrase.len()).any(|w| w == phrase)
}

pub(crate) fn check(check: &Check, task: &Task, response: &str) -> (bool, String) {
    match check {
        Check::Length { unit, min, max } => {
            let n = unit.measure(response);
            let name = unit.name();
            if let Some(min) = min
                && n < *min
            {
                return (false, format!("{n} {name}, below the minimum of {min}"));
            }
            if let Some(max) = max
                && n > *max
            {
                return (false, format!("{n} {name}, above the maximum of {max}"));
            }
            (true, format!("{n} {name}, within bounds"))
        }
        Check::RequiredWords(list) => {
            let have = words(response);
            let missing: Vec<String> = list
                .iter()
                .map(|w| fill(w, &task.vars))
                .filter(|w| !contains_phrase(&have, &words(w)))
                .collect();
            if missing.is_empty() {
                (true, "all required words present".into())
            } else {
                (false, format!("missing: {}", missing.join(", ")))
            }
        }
        Check::ForbiddenWords(list) => {
            let have = words(response);
            let found: Vec<String> = list
                .iter()
                .map(|w| fill(w, &task.vars))
                .filter(|w| contains_phrase(&have, &words(w)))
                .collect();
            if found.is_empty() {
                (true, "no forbidden words".into())
            } else {
                (false, format!("forbidden: {}", found.join(", ")))
            }
        }
        Check::Regex { regex, must_match } => {
            let matched = regex.is_match(response.trim());
            match (matched, must_match) {
                (true, true) => (true, "matches the required pattern".into()),
                (false, true) => (false, "does not match the required pattern".into()),
                (false, false) => (true, "avoids the forbidden pattern".into()),
                (true, false) => (false, "matches the forbidden pattern".into()),
            }
        }
        Check::JsonSchema(schema) => match parse_response_json(response) {
            Err(e) => (false, e),
            Ok(value) => match schema.validate(&value) {
                Ok(()) => (true, "valid against the schema".into()),
                Err(e) => (false, e),
            },
        },
        Check::ExactAnswer(mode) => match &task.answer {
            None => (false, "the task has no verifiable answer".into()),
            Some(answer) => exact_answer(*mode, answer, response),
        },
    }
}

/// The last number written in a text (commas as thousands separators are allowed).
pub(crate) fn last_number(text: &str) -> Option<f64> {
    static NUMBER: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
        Regex::new(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?").expect("valid regex")
    });
    NUMBER
        .find_iter(text)
        .last()
        .and_then(|m| m.as_str().replace(',', "").parse().ok())
}

fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(x), Value::String(y)) => x.trim() == y.trim(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            let x: BTreeMap<_, _> = x.iter().collect();
            let y: BTreeMap<_, _> = y.iter().collect();
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((ka, va), (kb, vb))| ka == kb && same_json(va, vb))
        }
        _ => a == b,
    }
}

fn exact_answer(mode: AnswerMode, answer: &str, response: &str) -> (bool, String) {
    match mode {
        AnswerMode::Number => {
            let expected: Option<f64> = answer.trim().parse().ok();
            match (last_number(response), expected) {
                (None, _) => (false, "no number in the response".into()),
                (Some(got), Some(want)) if got == want => (true, "correct answer".into()),
                (Some(got), _) => (false, format!("answered {got}, which is wrong")),
            }
        }
        AnswerMode::Text => {
            if words(response) == words(answer) {
                (true, "correct answer".into())
            } else {
                (false, "wrong answer".into())
            }
        }
        AnswerMode::Json => match (parse_response_json(response), serde_json::from_str(answer)) {
            (Err(e), _) => (false, e),
            (Ok(got), Ok(want)) if same_json(&got, &want) => (true, "correct values".into()),
            (Ok(_), _) => (false, "the JSON holds wrong values".into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(answer: Option<&str>) -> Task {
        Task {
            prompt: "p".into(),
            answer: answer.map(str::to_owned),
            vars: BTreeMap::from([("topic".to_string(), "winter rain".to_string())]),
        }
    }

    fn run(check: Check, answer: Option<&str>, response: &str) -> (bool, String) {
        super::check(&check, &task(answer), response)
    }

    #[test]
    fn length_in_words_chars_and_lines() {
        let words = Check::Length {
            unit: LengthUnit::Words,
            min: Some(2),
            max: Some(3),
        };
        assert_eq!(
            run(words.clone(), None, " one  two\nthree "),
            (true, "3 words, within bounds".into())
        );
        assert_eq!(
            run(words.clone(), None, "a b c d"),
            (false, "4 words, above the maximum of 3".into())
        );
        assert!(!run(words, None, "one").0);
        let lines = Check::Length {
            unit: LengthUnit::Lines,
            min: Some(3),
            max: Some(3),
        };
        assert!(run(lines.clone(), None, "a\n\nb\nc\n").0);
        assert!(!run(lines, None, "a\nb").0);
        let chars = Check::Length {
            unit: LengthUnit::Chars,
            min: None,
            max: Some(3),
        };
        assert!(run(chars.clone(), None, "héé").0);
        assert!(!run(chars, None, "four").0);
    }

    #[test]
    fn words_are_whole_and_case_insensitive_with_task_vars() {
        let required = Check::RequiredWords(vec!["{topic}".into(), "moon".into()]);
        assert!(run(required.clone(), None, "Winter rain falls; the MOON hides.").0);
        assert_eq!(
            run(required.clone(), None, "Winter rains and moonlight"),
            (false, "missing: winter rain, moon".into())
        );
        let forbidden = Check::ForbiddenWords(vec!["haiku".into(), "as an ai".into()]);
        assert!(run(forbidden.clone(), None, "Haikus are fine, an AI said").0);
        assert_eq!(
            run(forbidden, None, "As an AI, I write haiku."),
            (false, "forbidden: haiku, as an ai".into())
        );
    }

    #[test]
    fn regex_must_and_must_not_match() {
        let three = Check::Regex {
            regex: Regex::new(r"^[^\n]+\n[^\n]+\n[^\n]+$").unwrap(),
            must_match: true,
        };
        assert!(run(three.clone(), None, "\na\nb\nc\n").0);
        assert!(!run(three, None, "a\nb").0);
        let links = Check::Regex {
            regex: Regex::new(r"https?://").unwrap(),
            must_match: false,
        };
        assert!(run(links.clone(), None, "no links").0);
        assert!(!run(links, None, "see http://x.y").0);
    }

    #[test]
    fn exact_answers_by_number_text_and_json() {
        let number = Check::ExactAnswer(AnswerMode::Number);
        assert!(run(number.clone(), Some("1234"), "12 + 1222 = 1,234").0);
        assert!(run(number.clone(), Some("-7"), "The answer is -7.").0);
        assert_eq!(
            run(number.clone(), Some("42"), "It is 41."),
            (false, "answered 41, which is wrong".into())
        );
        assert!(!run(number.clone(), Some("42"), "forty-two").0);
        assert!(!run(number, None, "42").0);
        let text = Check::ExactAnswer(AnswerMode::Text);
        assert!(run(text.clone(), Some("Paris"), " paris. ").0);
        assert!(!run(text, Some("Paris"), "It is Paris").0);
        let json = Check::ExactAnswer(AnswerMode::Json);
        let want = r#"{"name": "Ana", "age": 30}"#;
        assert!(
            run(
                json.clone(),
                Some(want),
                "```json\n{\"age\": 30.0, \"name\": \"Ana\"}\n```"
            )
            .0
        );
        assert!(!run(json.clone(), Some(want), r#"{"name": "Ana", "age": 31}"#).0);
        assert!(!run(json, Some(want), r#"{"name": "Ana", "age": 30, "x": 1}"#).0);
    }

    fn credit(check: Check, answer: Option<&str>, response: &str) -> f64 {
        let c = partial_credit(&check, &task(answer), response);
        (c * 100.0).round() / 100.0
    }

    #[test]
    fn failed_lengths_earn_credit_by_distance() {
        let words = Check::Length {
            unit: LengthUnit::Words,
            min: Some(4),
            max: Some(40),
        };
        assert_eq!(credit(words.clone(), None, &"w ".repeat(44)), 0.91);
        assert_eq!(credit(words.clone(), None, &"w ".repeat(80)), 0.5);
        assert_eq!(credit(words.clone(), None, "one two three"), 0.75);
        assert_eq!(credit(words, None, ""), 0.0);
        let lines = Check::Length {
            unit: LengthUnit::Lines,
            min: Some(3),
            max: Some(3),
        };
        assert_eq!(credit(lines.clone(), None, "a\nb\nc\nd"), 0.75);
        assert!(
            credit(lines.clone(), None, "a\nb\nc\nd") > credit(lines, None, "a\nb\nc\nd\ne\nf")
        );
    }

    #[test]
    fn failed_word_lists_earn_the_share_they_got_right() {
        let required = Check::RequiredWords(vec!["{topic}".into(), "moon".into()]);
        assert_eq!(credit(required.clone(), None, "the moon"), 0.5);
        assert_eq!(credit(required, None, "nothing"), 0.0);
        let forbidden =
            Check::ForbiddenWords(vec!["a1".into(), "b2".into(), "c3".into(), "d4".into()]);
        assert_eq!(credit(forbidden, None, "a1 here"), 0.75);
        let pattern = Check::Regex {
            regex: Regex::new("^x$").unwrap(),
            must_match: true,
        };
        assert_eq!(credit(pattern, None, "y"), 0.0);
    }

    #[test]
    fn failed_numbers_earn_closeness_and_never_a_pass() {
        let number = Check::ExactAnswer(AnswerMode::Number);
        assert_eq!(credit(number.clone(), Some("56"), "55"), 0.98);
        assert_eq!(credit(number.clone(), Some("56"), "It is 28."), 0.5);
        assert_eq!(credit(number.clone(), Some("56"), "112"), 0.0);
        assert_eq!(credit(number.clone(), Some("56"), "fifty-six"), 0.0);
        assert_eq!(credit(number.clone(), Some("0"), "1"), 0.0);
        // Even a tiny miss stays below a pass.
        assert_eq!(credit(number, Some("100000"), "99999"), 0.99);
    }

    #[test]
    fn failed_texts_and_json_earn_their_overlap() {
        let text = Check::ExactAnswer(AnswerMode::Text);
        assert_eq!(
            credit(text.clone(), Some("New York City"), "It is New York"),
            0.57
        );
        assert_eq!(credit(text, Some("Paris"), "Rome"), 0.0);
        let json = Check::ExactAnswer(AnswerMode::Json);
        let want = r#"{"name": "Ana", "age": 30, "city": "Oslo"}"#;
        assert_eq!(
            credit(
                json.clone(),
                Some(want),
                r#"{"name": "Ana", "age": 31, "city": "Oslo"}"#
            ),
            0.67
        );
        assert_eq!(
            credit(
                json.clone(),
                Some(want),
                r#"Here: {"name": "Ana", "age": 30, "city": "Bergen"} ok"#
            ),
            // 2 of 3 keys right, scaled by 0.5 × (1 + 44/53): the JSON is 44 of 53 bytes.
            0.61
        );
        assert_eq!(credit(json, Some(want), "Ana is 30"), 0.0);
    }

    #[test]
    fn failed_schemas_earn_the_share_of_checks_passed() {
        let schema = Schema::compile(
            &serde_json::json!({
                "type": "object",
                "required": ["name", "age", "city"],
                "additionalProperties": false,
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "age": {"type": "integer", "minimum": 0},
                    "city": {"type": "string"}
                }
            }),
            "schema",
        )
        .unwrap();
        let check = Check::JsonSchema(schema);
        // A wrong type for one key of three.
        assert_eq!(
            credit(
                check.clone(),
                None,
                r#"{"name": "Ana", "age": "30", "city": "Oslo"}"#
            ),
            0.67
        );
        // A missing key and an unexpected one.
        assert_eq!(
            credit(
                check.clone(),
                None,
                r#"{"name": "Ana", "age": 30, "town": "Oslo"}"#
            ),
            0.5
        );
        // A bound broken: half credit for that key.
        assert_eq!(
            credit(
                check.clone(),
                None,
                r#"{"name": "Ana", "age": -1, "city": "Oslo"}"#
            ),
            0.83
        );
        // Valid JSON wrapped in prose: from half to all of what the JSON alone would
        // earn, by the share of the response it takes up (0.5 × (1 + 42/48) here).
        assert_eq!(
            credit(
                check.clone(),
                None,
                r#"Sure! {"name": "Ana", "age": 30, "city": "Oslo"}"#
            ),
            0.94
        );
        // A stray closing fence is a nearer miss than an explanation after the JSON.
        let fenced = "{\"name\": \"Ana\", \"age\": 30, \"city\": \"Oslo\"}\n```";
        let explained = format!("{fenced}\nThis JSON object holds the name, age and city.");
        assert_eq!(credit(check.clone(), None, fenced), 0.96);
        assert_eq!(credit(check.clone(), None, &explained), 0.73);
        assert_eq!(
            credit(
                check.clone(),
                None,
                &format!("{explained}{}", " More.".repeat(200))
            ),
            0.52
        );
        // Cut off mid-object: closed after its last complete element (the number
        // may have been cut, so it is dropped), a quarter of what that JSON earns.
        assert_eq!(
            credit(check.clone(), None, r#"{"name": "Ana", "age": 3"#),
            0.08
        );
        assert_eq!(
            credit(
                check.clone(),
                None,
                "{\n  \"name\": \"Ana\",\n  \"age\": 30,\n  \"city\": \"Os"
            ),
            0.17
        );
        // Broken by a syntax error: what precedes it, closed.
        assert_eq!(
            credit(
                check.clone(),
                None,
                r#"{"name": "Ana", "age": 30, "city" => "Oslo"}"#
            ),
            0.17
        );
        // A complete object followed by prose that holds more brackets: the first
        // value, cut out of the prose (42 of 71 bytes).
        assert_eq!(
            credit(
                check.clone(),
                None,
                "{\"name\": \"Ana\", \"age\": 30, \"city\": \"Oslo\"}\n```\nThat is `{\"name\": ...}`."
            ),
            0.8
        );
        // Brackets and quotes inside strings do not confuse the cut.
        assert_eq!(
            credit(check.clone(), None, r#"{"name": "A]n{a\"", "age": 30, "ci"#),
            0.17
        );
        // No JSON at all, or none of the keys before the text stops being JSON.
        assert_eq!(credit(check.clone(), None, "Ana, 30, Oslo"), 0.0);
        assert_eq!(credit(check.clone(), None, "{{{ name: Ana"), 0.0);
        // With no JSON, the facts of the task's JSON answer stated in prose earn a
        // fifth of their share: all three, two, none; a number must be whole.
        let want = Some(r#"{"name": "Ana Maria", "age": 30, "city": "Oslo"}"#);
        assert_eq!(
            credit(check.clone(), want, "Ana Maria is 30 and lives in Oslo."),
            0.2
        );
        assert_eq!(
            credit(check.clone(), want, "{name: Ana Maria, age: 30}"),
            0.13
        );
        assert_eq!(credit(check.clone(), want, "Maria is 300, from oslo"), 0.07);
        assert_eq!(credit(check.clone(), want, "I cannot help with that."), 0.0);
        // With JSON, the larger of the two: the JSON's credit (1/3 of the checks,
        // scaled by 0.5 × (1 + 15/36)), or the facts stated (a fifth of all three).
        assert_eq!(
            credit(
                check.clone(),
                want,
                r#"Ana Maria, 30, Oslo: {"name": "Ana"}"#
            ),
            0.24
        );
        assert_eq!(
            credit(check.clone(), want, r#"[["Ana Maria", 30, "Oslo"]]"#),
            0.2
        );
        // A syntax error early in a long answer: the cuts before it are tried.
        let long = format!(
            r#"{{"name": "Ana", "age": 30, "city" = "Oslo", "more": [{}1]}}"#,
            "1, ".repeat(200)
        );
        assert_eq!(credit(check, None, &long), 0.17);
        // A lone bracket in prose is not an empty JSON value, even where an empty one
        // would pass the schema.
        let loose = Check::JsonSchema(
            Schema::compile(&serde_json::json!({"type": "array"}), "schema").unwrap(),
        );
        assert_eq!(
            credit(loose.clone(), None, "Sorry, I can't [list them"),
            0.0
        );
        assert_eq!(credit(loose.clone(), None, "see [1, 2"), 0.25);
        // A complete list cut out of prose: 6 of 17 bytes.
        assert_eq!(credit(loose, None, "see [1, 2] and [3"), 0.68);
    }

    #[test]
    fn pass_rate_and_hard_failure() {
        let outcome = |hard, passed| RuleOutcome {
            rule: "r".into(),
            hard,
            passed,
            credit: if passed { 1.0 } else { 0.25 },
            reason: String::new(),
        };
        assert_eq!(pass_rate(&[]), 1.0);
        let soft_fail = [outcome(true, true), outcome(false, false)];
        assert_eq!(pass_rate(&soft_fail), 0.5);
        assert!(!hard_failed(&soft_fail));
        assert!(hard_failed(&[outcome(true, false)]));
        assert_eq!(hard_grade(&soft_fail), 1.0);
        assert_eq!(
            hard_grade(&[outcome(true, false), outcome(true, true)]),
            0.625
        );
        assert_eq!(hard_grade(&[]), 1.0);
    }
}
