//! The rule judge: a Space's rule verifiers (`spaces::verify`) as a panel member.
//!
//! Its score is the share of the Space's soft rules a response passes (1 when the
//! Space has none), times how close it came to keeping the hard rules
//! (`spaces::hard_grade`: 1 when it kept them, so the score of an answer that kept
//! them is its soft pass rate alone). A failed hard rule also ranks the response last
//! whatever the judges say, so the panel asks [`RulesJudge::hard_checks`] separately;
//! the grade in the score is what lets this judge order two answers that both failed
//! (a near miss above a far one) as the ranking does. The rules always see the whole response, never the length-controlled
//! prefix, so a length bound cannot be dodged by the truncation.

use std::sync::Arc;

use spaces::{RuleOutcome, Rulebook};

use crate::{Judge, JudgeError, JudgeId, Score, Task};

/// Version of the rule judge's scoring procedure; bump it when the formula changes.
/// (v2: the soft pass rate is multiplied by the hard-rule grade; v3: a JSON answer that
/// broke off is closed after its last complete element and earns a quarter credit;
/// v4: JSON cut out of prose keeps from a half to all of its schema credit by the share
/// of the response it takes up, and a JSON-schema answer earns at least a fifth of the
/// share of the task's JSON answer's values it states anywhere.)
pub const RULES_TEMPLATE_VERSION: &str = "rules-v4";

/// A Space's rule verifiers as a judge.
#[derive(Debug, Clone)]
pub struct RulesJudge {
    book: Arc<Rulebook>,
}

impl RulesJudge {
    /// The rule judge of a Space.
    pub(crate) fn new(book: Arc<Rulebook>) -> RulesJudge {
        RulesJudge { book }
    }

    /// Every rule's outcome on one response, in rulebook order.
    pub(crate) fn outcomes(&self, task: &Task, response: &str) -> Vec<RuleOutcome> {
        spaces::verify(&self.book, &task.to_space(), response)
    }

    /// Per response: whether it broke a hard rule (and must rank last).
    #[cfg(test)]
    pub(crate) fn hard_failures(&self, task: &Task, responses: &[&str]) -> Vec<bool> {
        self.hard_checks(task, responses)
            .into_iter()
            .map(|(failed, _)| failed)
            .collect()
    }

    /// Per response: whether it broke a hard rule, and how close it came to keeping
    /// them (`spaces::hard_grade`, 1 when it kept them).
    pub(crate) fn hard_checks(&self, task: &Task, responses: &[&str]) -> Vec<(bool, f64)> {
        let task = task.to_space();
        responses
            .iter()
            .map(|r| {
                let outcomes = spaces::verify(&self.book, &task, r);
                (
                    spaces::hard_failed(&outcomes),
                    spaces::hard_grade(&outcomes),
                )
            })
            .collect()
    }
}

/// The soft-rule pass rate times the hard-rule grade, and a rationale naming every
/// failed rule.
fn soft_score(outcomes: &[RuleOutcome]) -> (f64, String) {
    let soft: Vec<&RuleOutcome> = outcomes.iter().filter(|o| !o.hard).collect();
    let passed = soft.iter().filter(|o| o.passed).count();
    let rate = if soft.is_empty() {
        1.0
    } else {
        passed as f64 / soft.len() as f64
    };
    let grade = spaces::hard_grade(outcomes);
    let score = rate * grade;
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.passed)
        .map(|o| {
            let kind = if o.hard { "hard" } else { "soft" };
            format!("{kind} rule {} failed ({})", o.rule, o.reason)
        })
        .collect();
    let mut rationale = format!("{passed}/{} soft rules passed", soft.len());
    if grade < 1.0 {
        rationale.push_str(&format!(", hard-rule grade {grade:.2}"));
    }
    if !failed.is_empty() {
        rationale.push_str("; ");
        rationale.push_str(&failed.join("; "));
    }
    (score, rationale)
}

impl Judge for RulesJudge {
    fn id(&self) -> JudgeId {
        JudgeId {
            name: "rules".into(),
            model_hash: String::new(),
            template_version: format!("{RULES_TEMPLATE_VERSION}+{}", self.book.version_hash()),
        }
    }

    fn score(&self, task: &Task, responses: &[&str]) -> Result<Vec<Score>, JudgeError> {
        let id = self.id();
        Ok(responses
            .iter()
            .map(|r| {
                let (score, rationale) = soft_score(&self.outcomes(task, r));
                Score {
                    score,
                    rationale,
                    judge: id.clone(),
                }
            })
            .collect())
    }

    fn sees_full_text(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOK: &str = r#"
slug = "tiny"
name = "Tiny"
description = "A test Space."
players = 2
rounds = 1
rubric = "Say the sum."

[tasks]
templates = [{ prompt = "What is {a} + {b}?", answer_expr = "{a} + {b}" }]

[tasks.ranges]
a = [1, 9]
b = [1, 9]

[[fees]]
name = "free"
wei = 0

[payout]
rule = "winner_takes_all"
rake_bps = 0

[pairs]
min_margin = 0.1

[judges]
llm = 0.5
embedding = 0.0
rules = 0.5
target_length = 10
length_unit = "words"

[[rules]]
kind = "exact_answer"
name = "correct"
mode = "number"
hard = true

[[rules]]
kind = "length"
name = "brief"
unit = "words"
max = 3
hard = false

[[rules]]
kind = "forbidden_words"
name = "polite"
words = ["stupid"]
hard = false
"#;

    fn judge() -> (RulesJudge, Task) {
        let book = Arc::new(Rulebook::from_toml("tiny.toml", BOOK).expect("valid rulebook"));
        let task = Task::from_space(&book, &book.task(7, 0));
        (RulesJudge::new(book), task)
    }

    #[test]
    fn scores_soft_rules_and_reports_hard_failures_apart() {
        let (judge, task) = judge();
        let answer = task.answer.clone().expect("computed answer");
        let wrong = (answer.parse::<i64>().unwrap() + 1).to_string();
        let long_right = format!("the sum is clearly {answer}");
        let rude = format!("stupid {answer}");
        let responses = [answer.as_str(), &wrong, &long_right, &rude];
        let scores = judge.score(&task, &responses).unwrap();
        let values: Vec<f64> = scores.iter().map(|s| s.score).collect();
        // The wrong answer passes both soft rules but is off by one: its score is its
        // closeness (rules-v2; rules-v1 gave it 1.0).
        let closeness = 1.0 - 1.0 / answer.parse::<f64>().unwrap().abs().max(1.0);
        assert_eq!(values, vec![1.0, closeness, 0.5, 0.5]);
        assert!(values[1] < 1.0);
        assert!(
            scores[1].rationale.contains("hard-rule grade"),
            "{}",
            scores[1].rationale
        );
        assert!(
            scores[2].rationale.contains("brief"),
            "{}",
            scores[2].rationale
        );
        assert!(scores[1].rationale.contains("hard rule correct failed"));
        assert_eq!(
            judge.hard_failures(&task, &responses),
            vec![false, true, false, false]
        );
        assert!(scores[0].judge.template_version.starts_with("rules-v4+"));
        assert!(judge.sees_full_text());
    }
}
