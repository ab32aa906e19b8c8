//! The rows the repository returns, one struct per table, decoded the same way from
//! SQLite and PostgreSQL: each derives `sqlx::FromRow`, which reads every field from the
//! column of the same name on either engine.

use serde::{Deserialize, Serialize};

use crate::Wei;

/// A user, keyed by wallet address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct User {
    /// Row id.
    pub id: i64,
    /// Lower-case `0x…` address.
    pub wallet_address: String,
    /// Optional display name.
    pub display_name: Option<String>,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
}

/// An agent: one owner, one base model, a chain of versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Agent {
    /// Row id.
    pub id: i64,
    /// The owning user.
    pub owner_id: i64,
    /// Display name.
    pub name: String,
    /// Base model identifier (catalogue name or GGUF hash).
    pub base_model: String,
    /// Creation time, ms.
    pub created_at: i64,
    /// When the owner archived it, if they did.
    pub archived_at: Option<i64>,
    /// 1 when the owner opted its exact prompts (with the meta-prompt) into public
    /// dataset exports; 0 (the default) keeps them private.
    pub public_prompt: i64,
}

/// One immutable version of an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct AgentVersion {
    /// Row id.
    pub id: i64,
    /// The agent.
    pub agent_id: i64,
    /// 1, 2, 3… per agent.
    pub version: i64,
    /// The version this one was derived from.
    pub parent_version_id: Option<i64>,
    /// The meta-prompt (system prompt).
    pub system_prompt: String,
    /// Sampling settings, JSON.
    pub sampling: String,
    /// Training settings, JSON.
    pub training: String,
    /// sha256 of the adapter's canonical bytes; `None` for the bare base model.
    pub adapter_hash: Option<String>,
    /// Creation time, ms.
    pub created_at: i64,
    /// Why this version is never played, when a training run's regression gate held
    /// it back (the version after it restores the parent's adapter); `None` for every
    /// other version.
    pub held_back: Option<String>,
}

/// A Space (rulebook) as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Space {
    /// Row id.
    pub id: i64,
    /// URL-safe unique name.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// The rulebook's source text (TOML).
    pub rulebook: String,
    /// Hash of the rulebook, recorded in each match.
    pub version_hash: String,
    /// Creation time, ms.
    pub created_at: i64,
    /// Last update, ms.
    pub updated_at: i64,
}

/// A fee tier of a Space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct FeeTier {
    /// Row id.
    pub id: i64,
    /// The Space.
    pub space_id: i64,
    /// Tier name (`free`, `bronze`…).
    pub name: String,
    /// Entry fee in wei (zero for free).
    pub fee_wei: Wei,
}

/// The match statuses by their old constant names ([`crate::MatchStatus`]).
pub mod match_status {
    use crate::MatchStatus;
    /// Created, entries attached, not yet started.
    pub const PENDING: MatchStatus = MatchStatus::Pending;
    /// Rounds are being played.
    pub const RUNNING: MatchStatus = MatchStatus::Running;
    /// Paid out.
    pub const SETTLED: MatchStatus = MatchStatus::Settled;
    /// Every entry refunded.
    pub const REFUNDED: MatchStatus = MatchStatus::Refunded;
}

/// A match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Match {
    /// Row id.
    pub id: i64,
    /// The Space.
    pub space_id: i64,
    /// The fee tier.
    pub fee_tier_id: i64,
    /// The recorded seed every random choice derives from.
    pub seed: i64,
    /// The Space's version hash when the match was made.
    pub space_version: String,
    /// Where it is.
    pub status: crate::MatchStatus,
    /// Creation time, ms.
    pub created_at: i64,
    /// Start time, ms.
    pub started_at: Option<i64>,
    /// Settlement or refund time, ms.
    pub finished_at: Option<i64>,
    /// Hash of the match result, for replays.
    pub result_hash: Option<String>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// An agent's paid entry into a Space, queued and then played in one match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Entry {
    /// Row id.
    pub id: i64,
    /// Who paid.
    pub user_id: i64,
    /// The agent entered.
    pub agent_id: i64,
    /// The version that plays.
    pub agent_version_id: i64,
    /// The Space.
    pub space_id: i64,
    /// The fee tier.
    pub fee_tier_id: i64,
    /// The fee locked for it.
    pub fee_wei: Wei,
    /// The match, once matched.
    pub match_id: Option<i64>,
    /// Where it is.
    pub status: crate::EntryStatus,
    /// Creation time, ms.
    pub created_at: i64,
    /// 1 when an auto-entry rule made it (a refund gives the rule its spend back).
    pub auto_entry: i64,
    /// The sha256 of the base model its seat played on, written with the match's
    /// result (`None` before that, and for matches settled before seats recorded it).
    pub base_model_sha256: Option<String>,
}

/// One round of a match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Round {
    /// Row id.
    pub id: i64,
    /// The match.
    pub match_id: i64,
    /// 0-based index.
    pub round_index: i64,
    /// The published task.
    pub task: String,
    /// Start, ms.
    pub started_at: i64,
    /// End, ms.
    pub finished_at: Option<i64>,
}

/// One entry's answer in one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Response {
    /// Row id.
    pub id: i64,
    /// The round.
    pub round_id: i64,
    /// The entry that answered.
    pub entry_id: i64,
    /// The exact prompt the policy saw (chat-formatted).
    pub prompt: String,
    /// The completion.
    pub text: String,
    /// Generated tokens.
    pub tokens: i64,
    /// `stop`, `length`…
    pub finish_reason: String,
    /// Time, ms.
    pub created_at: i64,
}

/// One judge's score of one response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct JudgeScore {
    /// Row id.
    pub id: i64,
    /// The response.
    pub response_id: i64,
    /// The judge's name (`llm`, `embedding`, `rules`…).
    pub judge: String,
    /// Hash of the judge's model.
    pub model_hash: String,
    /// Version of its prompt template.
    pub template_version: String,
    /// Score in [0, 1].
    pub score: f64,
    /// Short rationale.
    pub rationale: String,
}

/// A (chosen, rejected) preference pair cut from a round's ranking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct PreferencePair {
    /// Row id.
    pub id: i64,
    /// The match.
    pub match_id: i64,
    /// The round.
    pub round_id: i64,
    /// The Space.
    pub space_id: i64,
    /// The exact prompt the policy saw.
    pub prompt: String,
    /// The better response.
    pub chosen_response_id: i64,
    /// The worse response.
    pub rejected_response_id: i64,
    /// The better completion.
    pub chosen: String,
    /// The worse completion.
    pub rejected: String,
    /// The version that wrote the better one.
    pub chosen_agent_version_id: i64,
    /// The version that wrote the worse one.
    pub rejected_agent_version_id: i64,
    /// Score margin between them.
    pub margin: f64,
    /// Share of judges that agreed on the order, in [0, 1].
    pub judge_agreement: f64,
    /// Time, ms.
    pub created_at: i64,
}

/// A DPO training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct TrainingRun {
    /// Row id.
    pub id: i64,
    /// The agent trained.
    pub agent_id: i64,
    /// The version trained from.
    pub parent_version_id: i64,
    /// The version it produced, once it succeeded.
    pub new_version_id: Option<i64>,
    /// Where it is.
    pub status: crate::RunStatus,
    /// Hyperparameters, JSON.
    pub hyperparams: String,
    /// Hash of the hyperparameters.
    pub hyperparams_hash: String,
    /// Merkle root of the pairs, in order.
    pub pairs_root: String,
    /// Merkle root of the match results the pairs came from.
    pub results_root: String,
    /// Start, ms.
    pub started_at: i64,
    /// End, ms.
    pub finished_at: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
    /// What the regression gate found (JSON, `platform::learning::Evaluation`), when
    /// the run's new adapter played its parent before being played.
    pub evaluation: Option<String>,
}

/// One optimiser step's metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct TrainingMetric {
    /// The run.
    pub training_run_id: i64,
    /// Step number from 0.
    pub step: i64,
    /// DPO loss.
    pub loss: f64,
    /// Share of pairs where the chosen reward beat the rejected one.
    pub reward_accuracy: f64,
    /// Mean implicit reward of the chosen answers.
    pub chosen_reward: f64,
    /// Mean implicit reward of the rejected answers.
    pub rejected_reward: f64,
    /// The loss on the run's held-out pairs after this step, where measured.
    pub validation_loss: Option<f64>,
}

/// A transaction sent (or to be sent) to the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ChainTransaction {
    /// Row id.
    pub id: i64,
    /// Unique key, so that a retry never sends twice.
    pub idempotency_key: String,
    /// What it does (`lock`, `settle`, `refund`, `record`…).
    pub kind: String,
    /// The hash once sent.
    pub tx_hash: Option<String>,
    /// Where it is.
    pub status: crate::TxStatus,
    /// The block it landed in.
    pub block_number: Option<i64>,
    /// The failure, if any.
    pub error: Option<String>,
    /// Created, ms.
    pub created_at: i64,
    /// Last change, ms.
    pub updated_at: i64,
}

/// A proof-of-learning record mirrored from the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct PolRecord {
    /// Row id.
    pub id: i64,
    /// The record's id on chain.
    pub record_id: i64,
    /// The agent.
    pub agent_id: i64,
    /// The training run it records.
    pub training_run_id: i64,
    /// Parent adapter hash.
    pub parent_hash: String,
    /// New adapter hash.
    pub new_hash: String,
    /// Merkle root of the pairs.
    pub pairs_root: String,
    /// Root of the match results.
    pub results_root: String,
    /// Hash of the hyperparameters.
    pub hyperparams_hash: String,
    /// The trainer's address.
    pub trainer: String,
    /// Block of the record.
    pub block_number: i64,
    /// The transaction that wrote it.
    pub chain_tx_id: Option<i64>,
    /// Time, ms.
    pub created_at: i64,
}

/// A user's balances as the journal sums them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// Spendable.
    pub available_wei: Wei,
    /// Locked in match escrows.
    pub locked_wei: Wei,
}

/// One row of the append-only journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct JournalEntry {
    /// Row id (its order).
    pub id: i64,
    /// The user, or `None` for the treasury.
    pub user_id: Option<i64>,
    /// `available`, `locked` or `treasury`.
    pub account: String,
    /// `deposit`, `withdrawal`, `lock`, `payout`, `refund` or `treasury`.
    pub kind: String,
    /// `credit` or `debit`.
    pub direction: String,
    /// The amount.
    pub amount_wei: Wei,
    /// The match it belongs to.
    pub match_id: Option<i64>,
    /// The entry it belongs to.
    pub entry_id: Option<i64>,
    /// The chain transaction behind it.
    pub chain_tx_id: Option<i64>,
    /// Unique key of this movement.
    pub idempotency_key: String,
    /// Time, ms.
    pub created_at: i64,
}

/// An agent's auto-entry rule for one fee tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct AutoEntry {
    /// The agent.
    pub agent_id: i64,
    /// The fee tier it re-enters.
    pub fee_tier_id: i64,
    /// The most it may ever spend under this rule.
    pub cap_wei: Wei,
    /// What it has spent so far.
    pub spent_wei: Wei,
    /// 1 when active.
    pub enabled: i64,
    /// Last change, ms.
    pub updated_at: i64,
}
