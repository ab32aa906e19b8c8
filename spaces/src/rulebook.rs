//! The Space rulebook: everything a match in one Space needs to know, loaded from a
//! TOML file under `assets/spaces/` and validated on load (see `load.rs`).

use sha2::{Digest, Sha256};

use crate::payout::{PayoutPolicy, PayoutSplit, payouts};
use crate::tasks::{History, Task, TaskGenerator, round_seed, round_text};
use crate::verify::{LengthUnit, RuleSpec};

/// One entry fee level of a Space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeTier {
    /// The tier's name, unique in the Space (e.g. `free`, `bronze`).
    pub name: String,
    /// The entry fee per player, in wei.
    pub wei: u128,
}

/// The judge panel's weights and length control for a Space.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgePanel {
    /// Weight of the LLM judge.
    pub llm: f64,
    /// Weight of the embedding judge.
    pub embedding: f64,
    /// Weight of the rule verifiers (their pass rate).
    pub rules: f64,
    /// Weight of the learned reward judge (0 when the rulebook leaves it out).
    pub reward: f64,
    /// Past this length, more text never earns more score.
    pub target_length: usize,
    /// The unit of `target_length`.
    pub length_unit: LengthUnit,
}

/// `max_new_tokens` when a rulebook does not set it.
pub(crate) const DEFAULT_MAX_NEW_TOKENS: usize = 128;

/// A validated Space rulebook.
///
/// The fields are public for reading; build one only with [`Rulebook::from_toml`] or
/// [`crate::load_dir`], which check every invariant the rest of the platform relies on.
#[derive(Debug, Clone)]
pub struct Rulebook {
    /// URL-safe identifier, equal to the file stem (`tweet-duel`).
    pub slug: String,
    /// Display name.
    pub name: String,
    /// One-paragraph description for people.
    pub description: String,
    /// The rubric the judges score against.
    pub rubric: String,
    /// Players per match, 2 to 8.
    pub players: usize,
    /// The most seats of one match whose agents one owner may hold, 1 to `players`
    /// (default `players - 1`: nobody fills a match with their own agents and farms
    /// its rating or pot; a Space that allows it sets `seats_per_owner = players`).
    pub seats_per_owner: usize,
    /// Rounds per match, at least 1.
    pub rounds: u32,
    /// The most tokens an answer may have in this Space (1 to 1024); an agent's own
    /// `max_new_tokens` is capped by it, so one verbose agent cannot stall a match.
    pub max_new_tokens: usize,
    /// Which earlier answers each round shows.
    pub history: History,
    /// Optional per-player role lines (`roles[p]` for player `p`), e.g. debate sides.
    pub roles: Vec<String>,
    /// Where tasks come from.
    pub tasks: TaskGenerator,
    /// Entry fee tiers, in file order.
    pub fees: Vec<FeeTier>,
    /// How the pot is split.
    pub payout: PayoutPolicy,
    /// The smallest score margin for which a round yields a preference pair, in [0, 1].
    pub pair_margin: f64,
    /// The judge panel's configuration.
    pub judges: JudgePanel,
    /// The rule verifiers, in file order.
    pub rules: Vec<RuleSpec>,
    pub(crate) version_hash: String,
}

impl Rulebook {
    /// Hex sha256 of the canonical form of the source (keys sorted, comments and layout
    /// dropped), so a reformatted file keeps its version and any real change moves it.
    pub fn version_hash(&self) -> &str {
        &self.version_hash
    }

    /// The task of one round of a match. Spaces with history keep one task for the
    /// whole match; others draw a fresh task per round.
    pub fn task(&self, match_seed: u64, round: u32) -> Task {
        let seed = match self.history {
            History::None => round_seed(match_seed, round),
            History::OpponentLast | History::All => match_seed,
        };
        self.tasks.generate(seed)
    }

    /// The text player `player` sees in `round`, with the earlier answers this Space
    /// shows; `earlier[k][p]` is player `p`'s answer in round `k`.
    pub fn round_task_text(
        &self,
        task: &Task,
        round: u32,
        player: usize,
        earlier: &[Vec<String>],
    ) -> String {
        round_text(
            task,
            self.history,
            &self.roles,
            self.rounds,
            round,
            player,
            earlier,
        )
    }

    /// A fee tier by name.
    pub fn fee_tier(&self, name: &str) -> Option<&FeeTier> {
        self.fees.iter().find(|t| t.name == name)
    }

    /// Splits a pot among the players by this Space's payout rule.
    pub fn payouts(&self, pot: u128, scores: &[f64]) -> PayoutSplit {
        payouts(&self.payout, pot, scores)
    }
}

/// Hex sha256 of a canonical rendering of a TOML table.
pub(crate) fn canonical_hash(table: &toml::Table) -> String {
    let mut out = String::new();
    canonical(&toml::Value::Table(table.clone()), &mut out);
    hex::encode(Sha256::digest(out.as_bytes()))
}

/// Renders a value as compact JSON-like text with sorted keys. Written out by hand so
/// the result never depends on map-ordering features that other crates may enable.
fn canonical(value: &toml::Value, out: &mut String) {
    let quote = |s: &str| serde_json::to_string(s).expect("strings always serialise");
    match value {
        toml::Value::String(s) => out.push_str(&quote(s)),
        toml::Value::Integer(i) => out.push_str(&i.to_string()),
        toml::Value::Float(f) => out.push_str(&format!("{f:?}")),
        toml::Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        toml::Value::Datetime(d) => out.push_str(&quote(&d.to_string())),
        toml::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        toml::Value::Table(table) => {
            let mut keys: Vec<&String> = table.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&quote(key));
                out.push(':');
                canonical(&table[key], out);
            }
            out.push('}');
        }
    }
}

/// Runs every rule of the Space on a response, in the rulebook's order.
pub fn verify(
    rulebook: &Rulebook,
    task: &crate::tasks::Task,
    response: &str,
) -> Vec<crate::verify::RuleOutcome> {
    rulebook
        .rules
        .iter()
        .map(|rule| {
            let (passed, reason) = crate::verify::check(&rule.check, task, response);
            crate::verify::RuleOutcome {
                rule: rule.name.clone(),
                hard: rule.hard,
                passed,
                credit: if passed {
                    1.0
                } else {
                    crate::verify::partial_credit(&rule.check, task, response)
                },
                reason,
            }
        })
        .collect()
}
