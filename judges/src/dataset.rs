//! The labelled judge data sets shipped under `assets/judges/`, and the recovery of a
//! Space task (with its verifiable answer) from a task text.
//!
//! `injection.jsonl` pairs an honest, on-topic answer with an adversarial one that
//! addresses the judge; `agreement.jsonl` pairs a good answer with a deliberately worse
//! one. Both name the Space and give only the task text, so the rule judge gets the
//! task's answer and variables back by matching the text against the Space's task
//! templates, exactly as the generator would have filled them.

use std::collections::BTreeMap;
use std::path::Path;

use regex::Regex;
use serde::Deserialize;
use spaces::{AnswerTemplate, Rulebook, TaskGenerator};

use crate::{JudgeError, Task};

/// The injection sets under `assets/judges/`, by the name `bench judge-injection`
/// reports them under. The shipped set was written together with the screen; the
/// held-out and blind sets were each written without reading it, measured once as they
/// came (docs/benchmarks.md), and only then used to extend the defence.
pub const INJECTION_SETS: [(&str, &str); 7] = [
    ("shipped", "injection.jsonl"),
    ("held_out", "injection_heldout.jsonl"),
    ("blind", "injection_blind.jsonl"),
    ("blind2", "injection_blind2.jsonl"),
    ("blind3", "injection_blind3.jsonl"),
    ("blind4", "injection_blind4.jsonl"),
    ("blind5", "injection_blind5.jsonl"),
];

/// One line of an injection set (`injection.jsonl` and any file in its format).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectionCase {
    /// The Space's slug.
    pub space: String,
    /// The task text.
    pub task: String,
    /// An honest, on-topic answer.
    pub honest: String,
    /// An answer that tries to manipulate the judge.
    pub adversarial: String,
    /// The attack's name.
    pub attack: String,
    /// The role line both answers' seat was given (debate sides), if any.
    #[serde(default)]
    pub role: Option<String>,
    /// The earlier answer the seat was shown (the opponent's last turn), if any.
    #[serde(default)]
    pub history: Option<String>,
}

/// One line of an agreement set (`agreement.jsonl` and any file in its format).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgreementCase {
    /// The Space's slug.
    pub space: String,
    /// The task text.
    pub task: String,
    /// The better answer.
    pub good: String,
    /// The deliberately worse answer.
    pub bad: String,
    /// What is wrong with it (off-topic, truncated, padded, ...).
    pub flaw: String,
    /// Whether the difference is subtle (both answers decent); reported apart.
    #[serde(default)]
    pub hard: bool,
    /// The role line both answers' seat was given (debate sides), if any.
    #[serde(default)]
    pub role: Option<String>,
    /// The earlier answer the seat was shown (the opponent's last turn), if any.
    #[serde(default)]
    pub history: Option<String>,
}

/// The judges' task for a labelled case: the Space's task for the text (see
/// [`task_for`]), with the case's role given to both answers' seats and its history as
/// what the seats were shown.
pub(crate) fn case_task(
    book: &Rulebook,
    prompt: &str,
    role: Option<&str>,
    history: Option<&str>,
) -> Task {
    let mut task = task_for(book, prompt);
    task.roles = match role {
        Some(role) => vec![role.to_string(); 2],
        None => Vec::new(),
    };
    task.history = history.map(str::to_string).into_iter().collect();
    task
}

/// Reads a JSON-lines file of records (blank lines skipped).
pub fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, JudgeError> {
    let err = |line: usize, reason: String| JudgeError::Dataset {
        path: path.display().to_string(),
        line,
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(0, e.to_string()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| err(i + 1, e.to_string())))
        .collect()
}

fn fill(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = text.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// Matches `prompt` against one template; the variables on success.
fn match_template(template: &str, prompt: &str) -> Option<BTreeMap<String, String>> {
    let placeholder = Regex::new(r"\{([A-Za-z_][A-Za-z0-9_]*)\}").expect("valid regex");
    let mut pattern = String::from("^");
    let mut names = Vec::new();
    let mut last = 0;
    for cap in placeholder.captures_iter(template) {
        let whole = cap.get(0).expect("match");
        pattern.push_str(&regex::escape(&template[last..whole.start()]));
        pattern.push_str("(.+?)");
        names.push(cap[1].to_string());
        last = whole.end();
    }
    pattern.push_str(&regex::escape(&template[last..]));
    pattern.push('$');
    let caps = Regex::new(&pattern).ok()?.captures(prompt)?;
    let mut vars = BTreeMap::new();
    for (i, name) in names.into_iter().enumerate() {
        let value = caps.get(i + 1)?.as_str().to_string();
        // A placeholder used twice must hold the same value both times.
        if vars
            .insert(name, value.clone())
            .is_some_and(|old| old != value)
        {
            return None;
        }
    }
    Some(vars)
}

/// The judges' task for a task text of a Space: rubric, and (when the text matches
/// one of the Space's tasks) its verifiable answer and variables.
pub fn task_for(book: &Rulebook, prompt: &str) -> Task {
    let mut task = Task::new(prompt, book.rubric.trim());
    match &book.tasks {
        TaskGenerator::List(list) => {
            if let Some(t) = list.iter().find(|t| t.prompt.trim() == prompt.trim()) {
                task.answer = t.answer.clone();
            }
        }
        TaskGenerator::Templates { templates, .. } => {
            for template in templates {
                if let Some(vars) = match_template(&template.prompt, prompt) {
                    task.answer = match &template.answer {
                        AnswerTemplate::None => None,
                        AnswerTemplate::Text(text) => Some(fill(text, &vars)),
                        AnswerTemplate::Computed(expr) => expr.eval(&vars).map(|v| v.to_string()),
                    };
                    task.vars = vars;
                    break;
                }
            }
        }
    }
    task
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_files_name_the_line_of_an_unknown_field_and_carry_role_and_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cases.jsonl");
        std::fs::write(
            &path,
            "{\"space\": \"debate\", \"task\": \"t\", \"good\": \"g\", \"bad\": \"b\", \"flaw\": \"f\", \"hard\": true, \"role\": \"You argue FOR.\", \"history\": \"h\"}\n\n\
             {\"space\": \"debate\", \"task\": \"t\", \"good\": \"g\", \"bad\": \"b\", \"flaw\": \"f\", \"hardness\": 1}\n",
        )
        .unwrap();
        let err = read_jsonl::<AgreementCase>(&path).unwrap_err().to_string();
        assert!(
            err.contains("cases.jsonl:3") && err.contains("hardness"),
            "{err}"
        );
        std::fs::write(
            &path,
            std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .next()
                .unwrap(),
        )
        .unwrap();
        let cases = read_jsonl::<AgreementCase>(&path).unwrap();
        assert!(cases[0].hard);
        let book = books().into_iter().find(|b| b.slug == "debate").unwrap();
        let task = case_task(
            &book,
            &cases[0].task,
            cases[0].role.as_deref(),
            cases[0].history.as_deref(),
        );
        assert_eq!(task.roles, ["You argue FOR.", "You argue FOR."]);
        assert_eq!(task.history, ["h"]);
    }

    fn books() -> Vec<Rulebook> {
        spaces::load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/spaces")).unwrap()
    }

    #[test]
    fn recovers_generated_tasks_with_their_answers() {
        for book in books() {
            for seed in 0..20 {
                let generated = book.task(seed, 0);
                let recovered = task_for(&book, &generated.prompt);
                assert_eq!(recovered.answer, generated.answer, "{}", generated.prompt);
                assert_eq!(recovered.to_space().prompt, generated.prompt);
            }
        }
    }

    #[test]
    fn shipped_sets_parse_and_name_shipped_spaces() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/judges");
        let slugs: Vec<String> = books().into_iter().map(|b| b.slug).collect();
        let inj: Vec<InjectionCase> = read_jsonl(&Path::new(root).join("injection.jsonl")).unwrap();
        let agr: Vec<AgreementCase> = read_jsonl(&Path::new(root).join("agreement.jsonl")).unwrap();
        assert!(inj.len() >= 30 && agr.len() >= 120);
        assert!(inj.iter().all(|c| slugs.contains(&c.space)));
        assert!(agr.iter().all(|c| slugs.contains(&c.space)));
    }
}
