//! The raw shape of a rulebook file, as serde reads it: every table rejects unknown
//! keys, and values keep their TOML types (`i64`, strings) so that `load.rs` can check
//! ranges itself and name the key in each error.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Visitor};

use crate::tasks::History;
use crate::verify::{AnswerMode, LengthUnit};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRulebook {
    pub(crate) slug: String,
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) rubric: String,
    pub(crate) players: i64,
    pub(crate) rounds: i64,
    #[serde(default)]
    pub(crate) max_new_tokens: Option<i64>,
    #[serde(default)]
    pub(crate) seats_per_owner: Option<i64>,
    #[serde(default)]
    pub(crate) history: History,
    #[serde(default)]
    pub(crate) roles: Vec<String>,
    pub(crate) tasks: RawTasks,
    pub(crate) fees: Vec<RawFee>,
    pub(crate) payout: RawPayout,
    pub(crate) pairs: RawPairs,
    pub(crate) judges: RawJudges,
    #[serde(default)]
    pub(crate) rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTasks {
    #[serde(default)]
    pub(crate) list: Vec<RawListTask>,
    #[serde(default)]
    pub(crate) templates: Vec<RawTemplate>,
    #[serde(default)]
    pub(crate) vars: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub(crate) ranges: BTreeMap<String, Vec<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListTask {
    pub(crate) prompt: String,
    pub(crate) answer: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTemplate {
    pub(crate) prompt: String,
    pub(crate) answer: Option<String>,
    pub(crate) answer_expr: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFee {
    pub(crate) name: String,
    pub(crate) wei: Wei,
}

/// Wei as a TOML integer or, above TOML's 64-bit integers, a string of digits.
pub(crate) struct Wei(pub(crate) u128);

impl<'de> Deserialize<'de> for Wei {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Wei, D::Error> {
        struct WeiVisitor;
        impl Visitor<'_> for WeiVisitor {
            type Value = Wei;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer, or a string of digits for large amounts")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Wei, E> {
                u128::try_from(v)
                    .map(Wei)
                    .map_err(|_| E::custom(format!("{v} is negative")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Wei, E> {
                Ok(Wei(u128::from(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Wei, E> {
                let digits = v.replace('_', "");
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(E::custom(format!("\"{v}\" is not a whole number of wei")));
                }
                digits
                    .parse()
                    .map(Wei)
                    .map_err(|_| E::custom(format!("\"{v}\" does not fit in 128 bits")))
            }
        }
        deserializer.deserialize_any(WeiVisitor)
    }
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawPayoutRule {
    WinnerTakesAll,
    TopK,
    Proportional,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPayout {
    pub(crate) rule: RawPayoutRule,
    pub(crate) weights: Option<Vec<i64>>,
    pub(crate) rake_bps: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPairs {
    pub(crate) min_margin: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJudges {
    pub(crate) llm: f64,
    pub(crate) embedding: f64,
    pub(crate) rules: f64,
    #[serde(default)]
    pub(crate) reward: f64,
    pub(crate) target_length: i64,
    pub(crate) length_unit: LengthUnit,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RuleKind {
    Length,
    RequiredWords,
    ForbiddenWords,
    Regex,
    JsonSchema,
    ExactAnswer,
}

impl RuleKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            RuleKind::Length => "length",
            RuleKind::RequiredWords => "required_words",
            RuleKind::ForbiddenWords => "forbidden_words",
            RuleKind::Regex => "regex",
            RuleKind::JsonSchema => "json_schema",
            RuleKind::ExactAnswer => "exact_answer",
        }
    }

    /// The optional keys a rule of this kind may carry besides kind, name and hard.
    pub(crate) fn keys(self) -> &'static [&'static str] {
        match self {
            RuleKind::Length => &["unit", "min", "max"],
            RuleKind::RequiredWords | RuleKind::ForbiddenWords => &["words"],
            RuleKind::Regex => &["pattern", "must_match"],
            RuleKind::JsonSchema => &["schema"],
            RuleKind::ExactAnswer => &["mode"],
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub(crate) kind: RuleKind,
    pub(crate) name: Option<String>,
    pub(crate) hard: bool,
    pub(crate) unit: Option<LengthUnit>,
    pub(crate) min: Option<i64>,
    pub(crate) max: Option<i64>,
    pub(crate) words: Option<Vec<String>>,
    pub(crate) pattern: Option<String>,
    pub(crate) must_match: Option<bool>,
    pub(crate) schema: Option<String>,
    pub(crate) mode: Option<AnswerMode>,
}

impl RawRule {
    pub(crate) fn present_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let mut note = |present: bool, key| {
            if present {
                keys.push(key);
            }
        };
        note(self.unit.is_some(), "unit");
        note(self.min.is_some(), "min");
        note(self.max.is_some(), "max");
        note(self.words.is_some(), "words");
        note(self.pattern.is_some(), "pattern");
        note(self.must_match.is_some(), "must_match");
        note(self.schema.is_some(), "schema");
        note(self.mode.is_some(), "mode");
        keys
    }
}
