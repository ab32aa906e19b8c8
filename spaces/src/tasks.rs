//! Seeded task generation: a Space draws each match's task either from a fixed list or
//! from templates whose `{var}` placeholders are filled from variable lists and integer
//! ranges. The same seed always yields the same task on every platform (ChaCha8).
//!
//! Also builds the text an agent sees in a given round, including earlier answers for
//! Spaces such as debates.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use regex::Regex;
use std::sync::LazyLock;

use crate::expr::Expr;

/// One task as published to the agents of a match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The task text shown to every agent.
    pub prompt: String,
    /// The verifiable answer, for exact-answer Spaces.
    pub answer: Option<String>,
    /// The variable values that filled the template (empty for list tasks).
    pub vars: BTreeMap<String, String>,
}

/// A task from a fixed list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListTask {
    /// The task text.
    pub prompt: String,
    /// The verifiable answer, if any.
    pub answer: Option<String>,
}

/// How a template's answer is derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerTemplate {
    /// No verifiable answer.
    None,
    /// A text template with `{var}` placeholders.
    Text(String),
    /// An integer expression over the variables.
    Computed(Expr),
}

/// A task template with `{var}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The prompt text with placeholders.
    pub prompt: String,
    /// How the answer is derived.
    pub answer: AnswerTemplate,
}

/// Where a Space's tasks come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskGenerator {
    /// Pick one task from a list.
    List(Vec<ListTask>),
    /// Pick a template and fill its placeholders.
    Templates {
        /// The templates, picked uniformly.
        templates: Vec<Template>,
        /// Text variables: each picks one value uniformly.
        vars: BTreeMap<String, Vec<String>>,
        /// Integer variables: each picks uniformly in an inclusive range.
        ranges: BTreeMap<String, (i64, i64)>,
    },
}

static PLACEHOLDER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\{([A-Za-z_][A-Za-z0-9_]*)\}").expect("valid regex"));

/// Names of the `{var}` placeholders in a text, in order of appearance.
pub fn placeholders(text: &str) -> Vec<&str> {
    PLACEHOLDER
        .captures_iter(text)
        .filter_map(|c| c.get(1).map(|m| m.as_str()))
        .collect()
}

/// Replaces every `{var}` placeholder whose name is in `vars`; others stay as written.
pub fn fill(text: &str, vars: &BTreeMap<String, String>) -> String {
    PLACEHOLDER
        .replace_all(text, |c: &regex::Captures<'_>| match vars.get(&c[1]) {
            Some(value) => value.clone(),
            None => c[0].to_owned(),
        })
        .into_owned()
}

impl TaskGenerator {
    /// Draws the task for a seed. Deterministic: the same generator and seed always
    /// give the same task.
    pub(crate) fn generate(&self, seed: u64) -> Task {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        match self {
            TaskGenerator::List(list) => {
                let pick = &list[rng.random_range(0..list.len())];
                Task {
                    prompt: pick.prompt.clone(),
                    answer: pick.answer.clone(),
                    vars: BTreeMap::new(),
                }
            }
            TaskGenerator::Templates {
                templates,
                vars,
                ranges,
            } => {
                let template = &templates[rng.random_range(0..templates.len())];
                // Every variable is drawn, used or not, in key order, so that adding a
                // template never changes the values another template sees.
                let mut values = BTreeMap::new();
                for (name, options) in vars {
                    let value = &options[rng.random_range(0..options.len())];
                    values.insert(name.clone(), value.clone());
                }
                for (name, (low, high)) in ranges {
                    let value = rng.random_range(*low..=*high);
                    values.insert(name.clone(), value.to_string());
                }
                let answer = match &template.answer {
                    AnswerTemplate::None => None,
                    AnswerTemplate::Text(text) => Some(fill(text, &values)),
                    AnswerTemplate::Computed(expr) => Some(
                        expr.eval(&values)
                            // Load-time validation guarantees every variable exists and
                            // is an integer, and the size limits rule out overflow.
                            .expect("answer expression validated on load")
                            .to_string(),
                    ),
                };
                Task {
                    prompt: fill(&template.prompt, &values),
                    answer,
                    vars: values,
                }
            }
        }
    }
}

/// Which earlier answers an agent sees in rounds after the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum History {
    /// Rounds are independent; each round draws its own task.
    #[default]
    None,
    /// Each round shows the other players' answers from the round before.
    OpponentLast,
    /// Each round shows every earlier answer of every player.
    All,
}

/// Mixes a round number into a match seed (splitmix64 finaliser), so independent rounds
/// draw unrelated tasks while round 0 keeps the match seed.
pub(crate) fn round_seed(seed: u64, round: u32) -> u64 {
    if round == 0 {
        return seed;
    }
    let mut z = seed ^ u64::from(round).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Quotes an earlier answer; the quote marks inside are defused so an answer cannot
/// close its own quote and speak as the platform.
fn quote(out: &mut String, label: &str, text: &str) {
    out.push_str(label);
    out.push_str(":\n\"\"\"\n");
    out.push_str(text.trim().replace("\"\"\"", "\"").as_str());
    out.push_str("\n\"\"\"\n");
}

/// Builds the text one player sees in one round.
///
/// `earlier[k][p]` is player `p`'s answer in round `k`, for the rounds before `round`.
/// `roles`, when not empty, gives player `p` the line `roles[p]` before the task.
pub(crate) fn round_text(
    task: &Task,
    history: History,
    roles: &[String],
    rounds: u32,
    round: u32,
    player: usize,
    earlier: &[Vec<String>],
) -> String {
    let mut out = String::new();
    if let Some(role) = roles.get(player) {
        out.push_str(role);
        out.push_str("\n\n");
    }
    out.push_str(&task.prompt);
    if round == 0 || history == History::None {
        return out;
    }
    out.push_str(&format!(
        "\n\nThis is round {} of {}.\n\n",
        round + 1,
        rounds
    ));
    match history {
        History::None => {}
        History::OpponentLast => {
            if let Some(last) = earlier.get(round as usize - 1) {
                let two = last.len() == 2;
                for (p, answer) in last.iter().enumerate().filter(|(p, _)| *p != player) {
                    let label = if two {
                        "Your opponent's last answer".to_owned()
                    } else {
                        format!("Player {}'s last answer", p + 1)
                    };
                    quote(&mut out, &label, answer);
                }
            }
        }
        History::All => {
            for (k, answers) in earlier.iter().enumerate().take(round as usize) {
                for (p, answer) in answers.iter().enumerate() {
                    let label = if p == player {
                        format!("Round {}, your answer", k + 1)
                    } else {
                        format!("Round {}, player {}'s answer", k + 1, p + 1)
                    };
                    quote(&mut out, &label, answer);
                }
            }
        }
    }
    out.push_str("\nAnswer again. Respond to the points above and make your case stronger.");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generator() -> TaskGenerator {
        TaskGenerator::Templates {
            templates: vec![
                Template {
                    prompt: "What is {a} plus {b}?".into(),
                    answer: AnswerTemplate::Computed(Expr::parse("{a} + {b}").unwrap()),
                },
                Template {
                    prompt: "Name a {color} fruit.".into(),
                    answer: AnswerTemplate::Text("{color}".into()),
                },
            ],
            vars: BTreeMap::from([("color".into(), vec!["red".into(), "green".into()])]),
            ranges: BTreeMap::from([("a".into(), (1, 9)), ("b".into(), (10, 20))]),
        }
    }

    #[test]
    fn same_seed_same_task_and_answers_are_computed() {
        let g = generator();
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let task = g.generate(seed);
            assert_eq!(task, g.generate(seed));
            seen.insert(task.prompt.clone());
            let a: i64 = task.vars["a"].parse().unwrap();
            let b: i64 = task.vars["b"].parse().unwrap();
            assert!((1..=9).contains(&a) && (10..=20).contains(&b));
            if task.prompt.starts_with("What") {
                assert_eq!(task.prompt, format!("What is {a} plus {b}?"));
                assert_eq!(task.answer, Some((a + b).to_string()));
            } else {
                assert_eq!(task.answer.as_deref(), Some(task.vars["color"].as_str()));
            }
        }
        assert!(seen.len() > 20, "seeds should spread over tasks");
    }

    #[test]
    fn fixed_seed_gives_a_fixed_task_across_builds() {
        // Pinned so that a change in the RNG or the draw order (which would break
        // match replays) fails here first.
        let task = generator().generate(42);
        assert_eq!(task.prompt, "What is 9 plus 14?");
        assert_eq!(task.answer.as_deref(), Some("23"));
        assert_ne!(task, generator().generate(43));
    }

    #[test]
    fn placeholders_ignore_json_braces() {
        let vars = BTreeMap::from([("name".to_string(), "Ana".to_string())]);
        assert_eq!(
            fill(r#"{"name": "{name}", "x": {other}}"#, &vars),
            r#"{"name": "Ana", "x": {other}}"#
        );
        assert_eq!(placeholders("{a} {b_2} {\"c\"}"), vec!["a", "b_2"]);
    }

    #[test]
    fn round_seed_keeps_round_zero_and_varies() {
        assert_eq!(round_seed(7, 0), 7);
        assert_ne!(round_seed(7, 1), round_seed(7, 2));
        assert_ne!(round_seed(7, 1), 7);
    }

    #[test]
    fn debate_round_shows_opponent_last_answer() {
        let task = Task {
            prompt: "Motion: homework should be banned.".into(),
            answer: None,
            vars: BTreeMap::new(),
        };
        let roles = vec![
            "You argue FOR.".to_string(),
            "You argue AGAINST.".to_string(),
        ];
        let earlier = vec![
            vec!["For 1".to_string(), "Against 1".to_string()],
            vec!["For 2".to_string(), "Against \"\"\" 2".to_string()],
        ];
        let first = round_text(&task, History::OpponentLast, &roles, 3, 0, 0, &[]);
        assert_eq!(
            first,
            "You argue FOR.\n\nMotion: homework should be banned."
        );
        let third = round_text(&task, History::OpponentLast, &roles, 3, 2, 0, &earlier);
        assert!(third.contains("round 3 of 3"));
        assert!(third.contains("Your opponent's last answer:\n\"\"\"\nAgainst \" 2\n\"\"\""));
        assert!(!third.contains("Against 1") && !third.contains("For 2"));
        let other = round_text(&task, History::OpponentLast, &roles, 3, 1, 1, &earlier);
        assert!(other.starts_with("You argue AGAINST."));
        assert!(other.contains("For 1") && !other.contains("Against 1"));
        let all = round_text(&task, History::All, &[], 3, 2, 1, &earlier);
        assert!(all.contains("Round 1, player 1's answer") && all.contains("Round 2, your answer"));
    }
}
