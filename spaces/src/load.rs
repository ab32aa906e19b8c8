//! Parsing and validating a rulebook file. The TOML is read into raw serde types that
//! reject unknown keys, then every value is checked and turned into the public types
//! of `rulebook.rs`. Every error carries the dotted key path of the problem. The raw
//! serde shapes live in `raw.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use regex::Regex;

use crate::error::{KeyError, SpaceError};
use crate::expr::{Expr, MAX_MAGNITUDE};
use crate::payout::{PayoutPolicy, PayoutRule};
use crate::raw::{
    RawFee, RawJudges, RawPayout, RawPayoutRule, RawRule, RawRulebook, RawTasks, RuleKind,
};
use crate::rulebook::{FeeTier, JudgePanel, Rulebook, canonical_hash};
use crate::schema::Schema;
use crate::tasks::{
    AnswerTemplate, History, ListTask, Task, TaskGenerator, Template, fill, placeholders,
};
use crate::verify::{Check, RuleSpec, check, words};

/// `parent.key`, or `key` at the top level.
fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() || parent == "." {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Turns a serde error at `path` into a key error; unknown and missing keys name the
/// key itself rather than its parent table.
fn serde_problem(path: &str, message: &str) -> KeyError {
    let quoted = |rest: &str| rest.split('`').nth(1).map(str::to_owned);
    if let Some(key) = message.strip_prefix("unknown field ").and_then(quoted) {
        let expected = message.split_once(", expected ").map(|(_, e)| e);
        let problem = match expected {
            Some(e) => format!("unknown key, expected {e}"),
            None => "unknown key".to_owned(),
        };
        // serde_path_to_error already ends the path with the unknown key.
        let full = if path == key || path.ends_with(&format!(".{key}")) {
            path.to_owned()
        } else {
            join(path, &key)
        };
        return KeyError::new(full, problem);
    }
    if let Some(key) = message.strip_prefix("missing field ").and_then(quoted) {
        return KeyError::new(join(path, &key), "missing");
    }
    let key = if path.is_empty() || path == "." {
        "(top level)"
    } else {
        path
    };
    KeyError::new(key, message)
}

/// Parses, validates and compiles one rulebook.
pub(crate) fn parse(file: &str, text: &str) -> Result<Rulebook, SpaceError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
        SpaceError::Syntax {
            file: file.to_owned(),
            problem: match line {
                Some(line) => format!("line {line}: {}", e.message().trim()),
                None => e.message().trim().to_owned(),
            },
        }
    })?;
    let version_hash = canonical_hash(&table);
    let raw: RawRulebook = serde_path_to_error::deserialize(table).map_err(|e| {
        let path = e.path().to_string();
        serde_problem(&path, e.inner().message().trim()).in_file(file)
    })?;
    build(raw, version_hash).map_err(|e| e.in_file(file))
}

fn in_range(key: &str, value: i64, low: i64, high: i64) -> Result<i64, KeyError> {
    if (low..=high).contains(&value) {
        Ok(value)
    } else {
        Err(KeyError::new(
            key,
            format!("{value} is out of range, expected {low} to {high}"),
        ))
    }
}

fn non_empty(key: &str, value: String) -> Result<String, KeyError> {
    if value.trim().is_empty() {
        Err(KeyError::new(key, "must not be empty"))
    } else {
        Ok(value)
    }
}

fn build(raw: RawRulebook, version_hash: String) -> Result<Rulebook, KeyError> {
    let slug_ok = Regex::new(r"^[a-z0-9]+(-[a-z0-9]+)*$").expect("valid regex");
    if !slug_ok.is_match(&raw.slug) || raw.slug.len() > 40 {
        return Err(KeyError::new(
            "slug",
            format!(
                "\"{}\" must be lower-case words joined by '-' (at most 40 characters)",
                raw.slug
            ),
        ));
    }
    let players = in_range("players", raw.players, 2, 8)? as usize;
    let rounds = in_range("rounds", raw.rounds, 1, 16)? as u32;
    let seats_per_owner = match raw.seats_per_owner {
        Some(n) => in_range("seats_per_owner", n, 1, players as i64)? as usize,
        None => players - 1,
    };
    let max_new_tokens = match raw.max_new_tokens {
        Some(n) => in_range("max_new_tokens", n, 1, 1024)? as usize,
        None => crate::rulebook::DEFAULT_MAX_NEW_TOKENS,
    };
    if raw.history != History::None && rounds < 2 {
        return Err(KeyError::new(
            "history",
            "showing earlier answers needs rounds >= 2",
        ));
    }
    if !raw.roles.is_empty() && raw.roles.len() != players {
        return Err(KeyError::new(
            "roles",
            format!(
                "{} roles given, expected one per player ({players})",
                raw.roles.len()
            ),
        ));
    }
    for (i, role) in raw.roles.iter().enumerate() {
        non_empty(&format!("roles[{i}]"), role.clone())?;
    }
    let rules = build_rules(raw.rules, &raw.tasks)?;
    let tasks = build_tasks(raw.tasks, &rules)?;
    let fees = build_fees(raw.fees)?;
    let payout = build_payout(raw.payout, players)?;
    let margin = raw.pairs.min_margin;
    if !(0.0..=1.0).contains(&margin) {
        return Err(KeyError::new(
            "pairs.min_margin",
            format!("{margin} is out of range, expected 0 to 1"),
        ));
    }
    let judges = build_judges(raw.judges, rules.len())?;
    Ok(Rulebook {
        slug: raw.slug,
        name: non_empty("name", raw.name)?,
        description: non_empty("description", raw.description)?,
        rubric: non_empty("rubric", raw.rubric)?,
        players,
        seats_per_owner,
        rounds,
        max_new_tokens,
        history: raw.history,
        roles: raw.roles,
        tasks,
        fees,
        payout,
        pair_margin: margin,
        judges,
        rules,
        version_hash,
    })
}

fn build_fees(raw: Vec<RawFee>) -> Result<Vec<FeeTier>, KeyError> {
    if raw.is_empty() {
        return Err(KeyError::new("fees", "at least one fee tier is needed"));
    }
    let mut fees: Vec<FeeTier> = Vec::new();
    for (i, fee) in raw.into_iter().enumerate() {
        let name = non_empty(&format!("fees[{i}].name"), fee.name)?;
        if fees.iter().any(|f| f.name == name) {
            return Err(KeyError::new(
                format!("fees[{i}].name"),
                format!("\"{name}\" is used twice"),
            ));
        }
        fees.push(FeeTier {
            name,
            wei: fee.wei.0,
        });
    }
    Ok(fees)
}

fn build_payout(raw: RawPayout, players: usize) -> Result<PayoutPolicy, KeyError> {
    let rake_bps = in_range("payout.rake_bps", raw.rake_bps, 0, 10_000)? as u16;
    let rule = match (raw.rule, raw.weights) {
        (RawPayoutRule::TopK, None) => {
            return Err(KeyError::new(
                "payout.weights",
                "missing (rule = \"top_k\" needs weights)",
            ));
        }
        (RawPayoutRule::TopK, Some(weights)) => {
            if weights.is_empty() || weights.len() > players {
                return Err(KeyError::new(
                    "payout.weights",
                    format!(
                        "{} weights given, expected 1 to {players} (one per paid place)",
                        weights.len()
                    ),
                ));
            }
            let mut out = Vec::with_capacity(weights.len());
            for (i, w) in weights.iter().enumerate() {
                let w = in_range(&format!("payout.weights[{i}]"), *w, 1, 1_000_000)? as u32;
                if out.last().is_some_and(|prev| w > *prev) {
                    return Err(KeyError::new(
                        format!("payout.weights[{i}]"),
                        "a lower place must not earn more than a higher one",
                    ));
                }
                out.push(w);
            }
            PayoutRule::TopK { weights: out }
        }
        (_, Some(_)) => {
            return Err(KeyError::new(
                "payout.weights",
                "only used with rule = \"top_k\"",
            ));
        }
        (RawPayoutRule::WinnerTakesAll, None) => PayoutRule::WinnerTakesAll,
        (RawPayoutRule::Proportional, None) => PayoutRule::Proportional,
    };
    Ok(PayoutPolicy { rule, rake_bps })
}

fn build_judges(raw: RawJudges, rule_count: usize) -> Result<JudgePanel, KeyError> {
    for (key, w) in [
        ("llm", raw.llm),
        ("embedding", raw.embedding),
        ("rules", raw.rules),
        ("reward", raw.reward),
    ] {
        if !(w.is_finite() && (0.0..=1000.0).contains(&w)) {
            return Err(KeyError::new(
                format!("judges.{key}"),
                format!("{w} is out of range, expected 0 to 1000"),
            ));
        }
    }
    if raw.llm + raw.embedding + raw.rules + raw.reward <= 0.0 {
        return Err(KeyError::new(
            "judges",
            "at least one judge weight must be above 0",
        ));
    }
    if raw.rules > 0.0 && rule_count == 0 {
        return Err(KeyError::new(
            "judges.rules",
            "weighted above 0 but the Space has no rules",
        ));
    }
    let target_length = in_range("judges.target_length", raw.target_length, 1, 100_000)? as usize;
    Ok(JudgePanel {
        llm: raw.llm,
        embedding: raw.embedding,
        rules: raw.rules,
        reward: raw.reward,
        target_length,
        length_unit: raw.length_unit,
    })
}

fn is_var_name(name: &str) -> bool {
    placeholders(&format!("{{{name}}}")) == [name]
}

fn check_placeholders(key: &str, text: &str, defined: &BTreeSet<String>) -> Result<(), KeyError> {
    for name in placeholders(text) {
        if !defined.contains(name) {
            return Err(KeyError::new(
                key,
                format!("{{{name}}} is not defined in tasks.vars or tasks.ranges"),
            ));
        }
    }
    Ok(())
}

/// Names of every task variable, text or integer.
fn defined_vars(tasks: &RawTasks) -> BTreeSet<String> {
    tasks
        .vars
        .keys()
        .chain(tasks.ranges.keys())
        .cloned()
        .collect()
}

/// A value a rule of this kind requires.
fn needs<T>(value: Option<T>, key: String, kind: RuleKind) -> Result<T, KeyError> {
    value.ok_or_else(|| KeyError::new(key, format!("missing (a {} rule needs it)", kind.name())))
}

fn build_rules(raw: Vec<RawRule>, tasks: &RawTasks) -> Result<Vec<RuleSpec>, KeyError> {
    let defined = defined_vars(tasks);
    let mut rules: Vec<RuleSpec> = Vec::new();
    for (i, rule) in raw.into_iter().enumerate() {
        let at = |key: &str| format!("rules[{i}].{key}");
        for key in rule.present_keys() {
            if !rule.kind.keys().contains(&key) {
                return Err(KeyError::new(
                    at(key),
                    format!("not used by a {} rule", rule.kind.name()),
                ));
            }
        }
        let name = rule
            .name
            .clone()
            .unwrap_or_else(|| rule.kind.name().to_owned());
        let name = non_empty(&at("name"), name)?;
        if let Some(j) = rules.iter().position(|r| r.name == name) {
            return Err(KeyError::new(
                at("name"),
                format!("\"{name}\" is also the name of rules[{j}]; give each rule its own name"),
            ));
        }
        let check = match rule.kind {
            RuleKind::Length => {
                let unit = needs(rule.unit, at("unit"), rule.kind)?;
                if rule.min.is_none() && rule.max.is_none() {
                    return Err(KeyError::new(at("max"), "missing (give min, max or both)"));
                }
                let bound = |v: Option<i64>, key: &str| {
                    v.map(|v| in_range(&at(key), v, 0, 1_000_000).map(|v| v as usize))
                        .transpose()
                };
                let (min, max) = (bound(rule.min, "min")?, bound(rule.max, "max")?);
                if let (Some(lo), Some(hi)) = (min, max)
                    && lo > hi
                {
                    return Err(KeyError::new(
                        at("min"),
                        format!("{lo} is above max ({hi})"),
                    ));
                }
                Check::Length { unit, min, max }
            }
            RuleKind::RequiredWords | RuleKind::ForbiddenWords => {
                let list = needs(rule.words.clone(), at("words"), rule.kind)?;
                if list.is_empty() {
                    return Err(KeyError::new(at("words"), "must list at least one word"));
                }
                for (j, w) in list.iter().enumerate() {
                    let key = format!("rules[{i}].words[{j}]");
                    check_placeholders(&key, w, &defined)?;
                    if placeholders(w).is_empty() && words(w).is_empty() {
                        return Err(KeyError::new(key, format!("\"{w}\" holds no word")));
                    }
                }
                if rule.kind == RuleKind::RequiredWords {
                    Check::RequiredWords(list)
                } else {
                    Check::ForbiddenWords(list)
                }
            }
            RuleKind::Regex => {
                let pattern = needs(rule.pattern.clone(), at("pattern"), rule.kind)?;
                let regex = Regex::new(&pattern)
                    .map_err(|e| KeyError::new(at("pattern"), format!("not a valid regex: {e}")))?;
                Check::Regex {
                    regex,
                    must_match: rule.must_match.unwrap_or(true),
                }
            }
            RuleKind::JsonSchema => {
                let text = needs(rule.schema.clone(), at("schema"), rule.kind)?;
                let value: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| KeyError::new(at("schema"), format!("not valid JSON: {e}")))?;
                Check::JsonSchema(
                    Schema::compile(&value, &at("schema")).map_err(|(k, p)| KeyError::new(k, p))?,
                )
            }
            RuleKind::ExactAnswer => Check::ExactAnswer(needs(rule.mode, at("mode"), rule.kind)?),
        };
        rules.push(RuleSpec {
            name,
            hard: rule.hard,
            check,
        });
    }
    Ok(rules)
}

/// Checks a reference answer against the rules that judge answers (exact answer and
/// schema), so a Space can never publish a task its own verifiers would fail.
fn check_reference(key: &str, task: &Task, rules: &[RuleSpec]) -> Result<(), KeyError> {
    let Some(answer) = &task.answer else {
        return Ok(());
    };
    for rule in rules {
        if matches!(rule.check, Check::ExactAnswer(_) | Check::JsonSchema(_)) {
            let (passed, reason) = check(&rule.check, task, answer);
            if !passed {
                return Err(KeyError::new(
                    key,
                    format!(
                        "the reference answer \"{answer}\" fails rule {}: {reason}",
                        rule.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn build_tasks(mut raw: RawTasks, rules: &[RuleSpec]) -> Result<TaskGenerator, KeyError> {
    let needs_answer = rules
        .iter()
        .any(|r| matches!(r.check, Check::ExactAnswer(_)));
    match (raw.list.is_empty(), raw.templates.is_empty()) {
        (true, true) => {
            return Err(KeyError::new(
                "tasks",
                "give either tasks.list or tasks.templates",
            ));
        }
        (false, false) => {
            return Err(KeyError::new(
                "tasks",
                "give tasks.list or tasks.templates, not both",
            ));
        }
        _ => {}
    }
    if !raw.list.is_empty() {
        if let Some(name) = raw.vars.keys().chain(raw.ranges.keys()).next() {
            return Err(KeyError::new(
                format!("tasks.vars.{name}"),
                "variables are only used by templates",
            ));
        }
        let mut list = Vec::with_capacity(raw.list.len());
        for (i, task) in raw.list.into_iter().enumerate() {
            let prompt = non_empty(&format!("tasks.list[{i}].prompt"), task.prompt)?;
            if needs_answer && task.answer.is_none() {
                return Err(KeyError::new(
                    format!("tasks.list[{i}].answer"),
                    "missing (the Space checks exact answers)",
                ));
            }
            let entry = ListTask {
                prompt,
                answer: task.answer,
            };
            let probe = Task {
                prompt: entry.prompt.clone(),
                answer: entry.answer.clone(),
                vars: BTreeMap::new(),
            };
            check_reference(&format!("tasks.list[{i}].answer"), &probe, rules)?;
            list.push(entry);
        }
        return Ok(TaskGenerator::List(list));
    }
    let defined = defined_vars(&raw);
    for (name, values) in &raw.vars {
        let key = format!("tasks.vars.{name}");
        if !is_var_name(name) {
            return Err(KeyError::new(
                key,
                "a variable name is letters, digits and _",
            ));
        }
        if raw.ranges.contains_key(name) {
            return Err(KeyError::new(key, "also defined in tasks.ranges"));
        }
        if values.is_empty() {
            return Err(KeyError::new(key, "must list at least one value"));
        }
        for (j, v) in values.iter().enumerate() {
            non_empty(&format!("{key}[{j}]"), v.clone())?;
        }
    }
    let mut ranges = BTreeMap::new();
    for (name, bounds) in &raw.ranges {
        let key = format!("tasks.ranges.{name}");
        if !is_var_name(name) {
            return Err(KeyError::new(
                key,
                "a variable name is letters, digits and _",
            ));
        }
        let [low, high] = bounds[..] else {
            return Err(KeyError::new(
                key,
                format!("{} values given, expected [min, max]", bounds.len()),
            ));
        };
        in_range(&format!("{key}[0]"), low, -MAX_MAGNITUDE, MAX_MAGNITUDE)?;
        in_range(&format!("{key}[1]"), high, low, MAX_MAGNITUDE)?;
        ranges.insert(name.clone(), (low, high));
    }
    let mut templates = Vec::with_capacity(raw.templates.len());
    for (i, t) in std::mem::take(&mut raw.templates).into_iter().enumerate() {
        let at = |key: &str| format!("tasks.templates[{i}].{key}");
        let prompt = non_empty(&at("prompt"), t.prompt)?;
        check_placeholders(&at("prompt"), &prompt, &defined)?;
        let answer = match (t.answer, t.answer_expr) {
            (Some(_), Some(_)) => {
                return Err(KeyError::new(
                    at("answer_expr"),
                    "give answer or answer_expr, not both",
                ));
            }
            (Some(text), None) => {
                check_placeholders(&at("answer"), &text, &defined)?;
                AnswerTemplate::Text(text)
            }
            (None, Some(text)) => {
                let expr = Expr::parse(&text).map_err(|p| KeyError::new(at("answer_expr"), p))?;
                for name in expr.vars() {
                    if !ranges.contains_key(name) {
                        return Err(KeyError::new(
                            at("answer_expr"),
                            format!("{{{name}}} is not an integer range in tasks.ranges"),
                        ));
                    }
                }
                AnswerTemplate::Computed(expr)
            }
            (None, None) if needs_answer => {
                return Err(KeyError::new(
                    at("answer"),
                    "missing (the Space checks exact answers)",
                ));
            }
            (None, None) => AnswerTemplate::None,
        };
        templates.push(Template { prompt, answer });
    }
    // Probe each template at the low and the high end of every variable.
    for (i, template) in templates.iter().enumerate() {
        for end in [0usize, 1] {
            let mut values = BTreeMap::new();
            for (name, options) in &raw.vars {
                let pick = if end == 0 {
                    &options[0]
                } else {
                    &options[options.len() - 1]
                };
                values.insert(name.clone(), pick.clone());
            }
            for (name, (low, high)) in &ranges {
                values.insert(name.clone(), if end == 0 { low } else { high }.to_string());
            }
            let answer = match &template.answer {
                AnswerTemplate::None => None,
                AnswerTemplate::Text(text) => Some(fill(text, &values)),
                AnswerTemplate::Computed(expr) => expr.eval(&values).map(|v| v.to_string()),
            };
            let probe = Task {
                prompt: fill(&template.prompt, &values),
                answer,
                vars: values,
            };
            check_reference(&format!("tasks.templates[{i}].answer"), &probe, rules)?;
        }
    }
    Ok(TaskGenerator::Templates {
        templates,
        vars: raw.vars,
        ranges,
    })
}

impl Rulebook {
    /// Parses and validates a rulebook; `path_for_messages` only names the file in errors.
    pub fn from_toml(path_for_messages: &str, text: &str) -> Result<Rulebook, SpaceError> {
        parse(path_for_messages, text)
    }
}

/// Loads every `*.toml` rulebook in a directory, sorted by file name. Each file's stem
/// must equal its slug, which makes slugs unique.
pub fn load_dir(path: impl AsRef<Path>) -> Result<Vec<Rulebook>, SpaceError> {
    let dir = path.as_ref();
    let io = |file: &Path, source| SpaceError::Io {
        file: file.display().to_string(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let file = entry.map_err(|e| io(dir, e))?.path();
        if file.extension().is_some_and(|ext| ext == "toml") && file.is_file() {
            files.push(file);
        }
    }
    files.sort();
    let mut books: Vec<Rulebook> = Vec::with_capacity(files.len());
    for file in files {
        let shown = file.display().to_string();
        let text = std::fs::read_to_string(&file).map_err(|e| io(&file, e))?;
        let book = Rulebook::from_toml(&shown, &text)?;
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if book.slug != stem {
            return Err(SpaceError::invalid(
                &shown,
                "slug",
                format!("\"{}\" does not match the file name {stem}.toml", book.slug),
            ));
        }
        books.push(book);
    }
    Ok(books)
}
