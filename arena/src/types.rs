//! What a match is, as data: the seats and match the world is given
//! ([`SeatSpec`], [`MatchSpec`]), what it hands back ([`MatchOutcome`] with its
//! [`MatchResult`] of [`RoundRecord`]s), and the per-seat seed rule every replay must
//! follow. No I/O and no ECS here, so the store, the book, replay and the web can name
//! these types without the world.

use std::sync::Arc;

use serde::Serialize;
use spaces::Rulebook;

use judges::ResponseVerdict;

/// A seat to place in a new match.
#[derive(Debug, Clone, PartialEq)]
pub struct SeatSpec {
    /// The entry.
    pub entry_id: i64,
    /// The agent.
    pub agent_id: i64,
    /// The version that plays.
    pub agent_version_id: i64,
    /// Its meta-prompt.
    pub system_prompt: String,
    /// Its sampling settings, parsed and checked once when the seats were loaded.
    pub sampling: agents::SamplingParams,
    /// Its adapter, if any.
    pub adapter_hash: Option<String>,
    /// The base model it plays on, by the name the engine serves it under (empty: the
    /// engine's default).
    pub base_model: String,
    /// That model's sha256, recorded in the result when every seat has one (`None`
    /// for a replay of a match settled before matches recorded their base models).
    pub base_model_sha256: Option<String>,
}

/// A match to add to the world.
#[derive(Debug, Clone)]
pub struct MatchSpec {
    /// The match's id in the store.
    pub match_id: i64,
    /// The rulebook it plays by.
    pub rulebook: Arc<Rulebook>,
    /// The recorded seed.
    pub seed: u64,
    /// The seats, in seat order.
    pub seats: Vec<SeatSpec>,
    /// Past this time (ms) the match is refunded.
    pub deadline_ms: i64,
}

/// One seat's part of one round.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeatRound {
    /// The entry.
    pub entry_id: i64,
    /// The exact prompt the policy saw.
    pub prompt: String,
    /// The round's text as this seat saw it (task, role, earlier answers shown), without
    /// the agent's meta-prompt: what a public dataset may show. Derived from the task
    /// and the earlier answers, so it is left out of the result hash.
    #[serde(skip)]
    pub task_prompt: String,
    /// The answer.
    pub text: String,
    /// Generated tokens.
    pub tokens: u32,
    /// Why generation stopped.
    pub finish: String,
    /// The panel's verdict.
    pub verdict: ResponseVerdict,
}

/// One played round.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundRecord {
    /// 0-based round.
    pub round: u32,
    /// The round's task (before per-seat history is added).
    pub task: String,
    /// Seats in seat order.
    pub seats: Vec<SeatRound>,
}

/// A played match.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatchResult {
    /// Every round.
    pub rounds: Vec<RoundRecord>,
    /// Each seat's mean combined score over the rounds (hard failures count 0).
    pub totals: Vec<f64>,
    /// Final places per seat (1 = best; ties share).
    pub places: Vec<usize>,
    /// The sha256 of each seat's base model, in seat order; empty (and left out of the
    /// hash, which stays as it was) for a match whose seats do not all record one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub base_models: Vec<String>,
}

impl MatchResult {
    /// sha256 of the result's canonical JSON: what a replay must reproduce.
    pub fn hash(&self) -> String {
        use sha2::Digest;
        let json = serde_json::to_vec(self).expect("a match result serializes");
        hex::encode(sha2::Sha256::digest(json))
    }
}

/// A match leaving the world.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchOutcome {
    /// The match.
    pub match_id: i64,
    /// The seats' entries, in seat order.
    pub entry_ids: Vec<i64>,
    /// The result, or why it must be refunded.
    pub result: Result<MatchResult, String>,
}

/// A per-seat seed from the match seed, round and seat, so every seat's sampling is
/// reproducible and different (splitmix64 mixing).
pub fn seat_seed(match_seed: u64, round: u32, seat: usize) -> u64 {
    let mut z =
        match_seed ^ (u64::from(round) << 32) ^ (seat as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A result hash covers this exact JSON; a change here breaks every replay of a
    /// match settled before it.
    #[test]
    fn a_result_hashes_the_layout_it_always_had() {
        let judge = judges::JudgeId {
            name: "llm".into(),
            model_hash: "ab".into(),
            template_version: "v1".into(),
        };
        let mut verdict =
            ResponseVerdict::from_scores(0.5, false, vec![judges::Score::new(judge, 0.25, "fine")]);
        // The panel's working notes stay out of the hash.
        verdict.length_factor = 0.9;
        verdict.rationale = "weighted".into();
        let result = MatchResult {
            rounds: vec![RoundRecord {
                round: 0,
                task: "t".into(),
                seats: vec![SeatRound {
                    entry_id: 7,
                    prompt: "p".into(),
                    task_prompt: "shown".into(),
                    text: "a".into(),
                    tokens: 3,
                    finish: "stop".into(),
                    verdict,
                }],
            }],
            totals: vec![0.5],
            places: vec![1],
            base_models: Vec::new(),
        };
        assert_eq!(
            serde_json::to_string(&result).unwrap(),
            r#"{"rounds":[{"round":0,"task":"t","seats":[{"entry_id":7,"prompt":"p","text":"a","tokens":3,"finish":"stop","verdict":{"combined":0.5,"hard_failed":false,"scores":[{"judge":"llm","model_hash":"ab","template_version":"v1","score":0.25,"rationale":"fine"}]}}]}],"totals":[0.5],"places":[1]}"#
        );
        // A match that records its seats' base models commits to them after the rest.
        let with_models = MatchResult {
            base_models: vec!["cd".repeat(32)],
            ..result.clone()
        };
        let json = serde_json::to_string(&with_models).unwrap();
        assert!(
            json.ends_with(&format!(
                r#""places":[1],"base_models":["{}"]}}"#,
                "cd".repeat(32)
            )),
            "{json}"
        );
        assert_ne!(with_models.hash(), result.hash());
    }
}
