//! What the serve side ([`crate::matchmaker`]), the worker side
//! ([`crate::match_worker`]) and the single-process runner ([`crate::runner`]) share:
//! the Spaces as they are played, the runner's settings and errors, the one seat
//! loader, and the report of a finished match with its log line.

use std::path::Path;
use std::sync::Arc;

use arena::types::SeatSpec;
use serde::Serialize;
use spaces::Rulebook;
use store::{Entry, FeeTier, Space, Store, Wei};

use crate::jobs::QueueError;
use crate::payments::PaymentError;

/// A Space as the runner plays it: the rulebook, its row and its fee tiers.
#[derive(Debug, Clone)]
pub struct SpaceSlot {
    /// The validated rulebook.
    pub rulebook: Arc<Rulebook>,
    /// The stored Space.
    pub space: Space,
    /// Its fee tiers.
    pub tiers: Vec<FeeTier>,
}

/// Loads every rulebook under `dir` and stores each Space with its fee tiers (new
/// Spaces are created, changed ones updated).
pub async fn seed_spaces(store: &Store, dir: &Path) -> Result<Vec<SpaceSlot>, RunnerError> {
    let books = spaces::load_dir(dir).map_err(|e| RunnerError::Spaces(e.to_string()))?;
    let mut slots = Vec::with_capacity(books.len());
    for book in books {
        let file = dir.join(format!("{}.toml", book.slug));
        let text = std::fs::read_to_string(&file)
            .map_err(|e| RunnerError::Spaces(format!("{}: {e}", file.display())))?;
        let tiers: Vec<(&str, Wei)> = book
            .fees
            .iter()
            .map(|f| (f.name.as_str(), Wei(f.wei)))
            .collect();
        let (space, tiers) = store
            .upsert_space(&store::NewSpace {
                slug: &book.slug,
                name: &book.name,
                description: &book.description,
                rulebook: &text,
                version_hash: book.version_hash(),
                fee_tiers: &tiers,
            })
            .await?;
        slots.push(SpaceSlot {
            rulebook: Arc::new(book),
            space,
            tiers,
        });
    }
    Ok(slots)
}

/// What the runner can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// Money could not move.
    #[error(transparent)]
    Payments(#[from] PaymentError),
    /// The match-job queue failed.
    #[error("match queue: {0}")]
    Queue(#[from] QueueError),
    /// The rulebooks could not be loaded.
    #[error("spaces: {0}")]
    Spaces(String),
    /// A match cannot be replayed.
    #[error("replay: {0}")]
    Replay(String),
}

/// How the runner forms and times matches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunnerConfig {
    /// A match still unfinished this long after it starts is refunded.
    pub match_deadline_ms: i64,
    /// Allowed rating gap (mu) for a fresh entry.
    pub base_gap: f64,
    /// Extra gap per second the oldest entry has waited.
    pub widen_per_sec: f64,
    /// The most matches live at once (per worker); further queued entries wait.
    pub max_live_matches: usize,
    /// How long a lease on a match lasts without renewal, ms: a server's while it
    /// forms the match, a worker's while it plays it (renewed every third of it).
    pub lease_ms: i64,
    /// How long a formed match may wait in the queue for a worker, ms, before
    /// reconciliation refunds it.
    pub queue_wait_ms: i64,
}

impl Default for RunnerConfig {
    fn default() -> RunnerConfig {
        RunnerConfig {
            match_deadline_ms: 15 * 60 * 1000,
            base_gap: 5.0,
            widen_per_sec: 0.5,
            max_live_matches: 8,
            lease_ms: 30_000,
            queue_wait_ms: 30 * 60 * 1000,
        }
    }
}

/// One seat of a finished match, as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeatReport {
    /// The entry.
    pub entry_id: i64,
    /// The agent.
    pub agent_id: i64,
    /// Its place (1 = best).
    pub place: usize,
    /// Its mean combined score.
    pub score: f64,
    /// What it was paid (wei).
    pub payout_wei: String,
    /// Its rating after the match.
    pub mu: f64,
    /// Its uncertainty after the match.
    pub sigma: f64,
}

/// How a match ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum MatchEnd {
    /// Played, paid and rated.
    Settled {
        /// Seats in seat order.
        seats: Vec<SeatReport>,
        /// The result hash a replay must reproduce.
        result_hash: String,
        /// The Merkle root over the results.
        result_root: String,
        /// Preference pairs stored.
        pairs: usize,
    },
    /// Every fee returned.
    Refunded {
        /// Why.
        reason: String,
    },
    /// Written as settled in the database; the chain settlement failed and stays
    /// pending for reconciliation to send again.
    SettledChainPending {
        /// The result hash a replay must reproduce.
        result_hash: String,
        /// Why the chain refused or failed.
        error: String,
    },
    /// Settled or refunded by another process while this one played it (its lease
    /// had expired and was reclaimed).
    ClosedElsewhere {
        /// `settled` or `refunded`.
        closed_as: String,
    },
}

/// A match that finished in this step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatchReport {
    /// The match.
    pub match_id: i64,
    /// Its Space's slug.
    pub space: String,
    /// How it ended.
    #[serde(flatten)]
    pub end: MatchEnd,
}

/// The seats of a match as the world plays them, from each entry's agent version and
/// its agent's base model (resolved in `models`, the base models this deployment
/// serves). The second value is why the match cannot be played (a version whose
/// sampling settings the engine refuses, or an agent whose base model is not served),
/// if so.
pub(crate) async fn load_seats(
    store: &Store,
    entries: &[Entry],
    max_new_tokens: usize,
    models: &crate::base_models::BaseModelMenu,
) -> Result<(Vec<SeatSpec>, Option<String>), RunnerError> {
    let mut specs = Vec::with_capacity(entries.len());
    let mut refusal = None;
    for e in entries {
        let v = store.agent_version(e.agent_version_id).await?;
        // The one place a seat's stored settings are parsed: the world and the engine
        // take them as checked values.
        let stored: serde_json::Value =
            serde_json::from_str(&v.sampling).unwrap_or(serde_json::Value::Null);
        let sampling = match agents::SamplingParams::from_stored(&stored) {
            Ok(params) => params.capped(max_new_tokens),
            Err(reason) => {
                refusal = Some(format!(
                    "agent {} version {}: {reason}",
                    e.agent_id, v.version
                ));
                agents::SamplingParams::default()
            }
        };
        let agent = store.agent(e.agent_id).await?;
        let (base_model, base_model_sha256) = match models.resolve(&agent.base_model) {
            Ok(choice) => (choice.name.clone(), Some(choice.sha256.clone())),
            Err(reason) => {
                refusal = Some(format!("agent {}: {reason}", e.agent_id));
                (agent.base_model, None)
            }
        };
        specs.push(SeatSpec {
            entry_id: e.id,
            agent_id: e.agent_id,
            agent_version_id: e.agent_version_id,
            system_prompt: v.system_prompt,
            sampling,
            adapter_hash: v.adapter_hash,
            base_model,
            base_model_sha256,
        });
    }
    Ok((specs, refusal))
}

/// Logs one finished match as a single line.
pub(crate) fn log_report(report: &MatchReport) {
    match &report.end {
        MatchEnd::Settled {
            seats,
            result_hash,
            pairs,
            ..
        } => {
            let places: Vec<String> = seats
                .iter()
                .map(|s| {
                    format!(
                        "#{} agent {} (score {:.3}, paid {} wei, mu {:.2})",
                        s.place, s.agent_id, s.score, s.payout_wei, s.mu
                    )
                })
                .collect();
            tracing::info!(
                match_id = report.match_id,
                space = %report.space,
                pairs,
                result_hash = %&result_hash[..16],
                "settled: {}",
                places.join("; ")
            );
        }
        MatchEnd::Refunded { reason } => {
            tracing::warn!(match_id = report.match_id, space = %report.space, %reason, "refunded");
        }
        MatchEnd::SettledChainPending { result_hash, error } => {
            tracing::error!(match_id = report.match_id, space = %report.space,
                result_hash = %&result_hash[..16], %error,
                "settled in the database; the chain settlement is pending");
        }
        MatchEnd::ClosedElsewhere { closed_as } => {
            tracing::warn!(match_id = report.match_id, space = %report.space, %closed_as,
                "closed by another process");
        }
    }
}
