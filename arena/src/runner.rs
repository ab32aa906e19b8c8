//! The match runner: the loop that turns queued entries into played, paid and rated
//! matches. Its serve side ([`Matchmaker`]) tops up auto-entries, forms matches per
//! (Space, fee tier), locks their fees on chain and enqueues a job per match; its
//! worker side ([`MatchWorker`]) claims jobs, adds their matches to its one
//! [`MatchWorld`](crate::world::MatchWorld), advances the world one tick at a time
//! (one batched engine step across every live match), and settles or refunds every
//! match that left the world. [`MatchRunner`] joins both in one process over an
//! in-process queue; this file also holds what both sides share.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use spaces::Rulebook;
use store::{FeeTier, Space, Store, Wei};

use crate::bus::Bus;
use crate::engine::Engine;
use crate::jobs::{MatchQueue, QueueError};
use crate::judging::RoundJudge;
use crate::match_worker::MatchWorker;
use crate::matchmaker::Matchmaker;
use crate::payments::{PaymentError, Payments};
use crate::world::MatchOutcome;

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

/// The single-process runner: a [`Matchmaker`] and a [`MatchWorker`] joined by an
/// in-process queue, stepped together (the demo, `rlfc tournament`, tests). The
/// `serve` and `worker` roles run the two halves in separate processes instead.
pub struct MatchRunner {
    maker: Matchmaker,
    worker: MatchWorker,
    bus: Bus,
}

impl MatchRunner {
    /// A runner over `spaces`, generating with `engine` and judging with `judge`.
    pub fn new(
        store: Store,
        payments: Arc<Payments>,
        bus: Bus,
        engine: Box<dyn Engine>,
        judge: Box<dyn RoundJudge>,
        spaces: Vec<SpaceSlot>,
        cfg: RunnerConfig,
    ) -> MatchRunner {
        let queue = MatchQueue::in_process();
        let id = format!("runner-{}", std::process::id());
        MatchRunner {
            maker: Matchmaker::new(
                store.clone(),
                payments.clone(),
                bus.clone(),
                queue.clone(),
                spaces.clone(),
                cfg,
                id.clone(),
            ),
            worker: MatchWorker::new(
                store,
                payments,
                bus.clone(),
                queue,
                engine,
                judge,
                spaces,
                cfg,
                id,
            ),
            bus,
        }
    }

    /// The Spaces this runner plays.
    pub fn spaces(&self) -> &[SpaceSlot] {
        self.maker.spaces()
    }

    /// Draws match seeds from `salt` instead of the clock, so a run's matches are
    /// reproducible (tests, benchmarks). Each match's seed is recorded either way.
    pub fn set_seed_salt(&mut self, salt: u64) {
        self.maker.set_seed_salt(salt);
    }

    /// Starts at most `n` more matches from now on (`None`: no limit), for runs of a
    /// fixed length.
    pub fn limit_new_matches(&mut self, n: Option<usize>) {
        self.maker.limit_new_matches(n);
    }

    /// Matches in play.
    pub fn live_matches(&self) -> usize {
        self.worker.live_matches()
    }

    /// The bus the runner publishes on.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Re-enters every agent with an active auto-entry rule that has no entry queued
    /// in that tier, within its spending cap. Returns the entries made.
    pub async fn auto_enter(&self) -> Result<usize, RunnerError> {
        self.maker.auto_enter().await
    }

    /// Forms matches from the queues (up to the free live slots), locks their fees
    /// and starts them. Returns the new match ids.
    pub async fn matchmake(&mut self) -> Result<Vec<i64>, RunnerError> {
        let formed = self.maker.matchmake(self.worker.free_slots()).await?;
        if !formed.is_empty() {
            self.worker.claim(Duration::ZERO).await?;
        }
        Ok(formed)
    }

    /// Advances the world one tick. Blocking: the engine decodes inside it.
    pub fn tick(&mut self) -> Vec<MatchOutcome> {
        self.worker.tick()
    }

    /// Settles or refunds the matches that left the world.
    pub async fn finish(
        &mut self,
        outcomes: Vec<MatchOutcome>,
    ) -> Result<Vec<MatchReport>, RunnerError> {
        self.worker.finish(outcomes).await
    }

    /// One step of the loop: auto-entries, matchmaking, one world tick, settlement.
    pub async fn step(&mut self) -> Result<Vec<MatchReport>, RunnerError> {
        self.auto_enter().await?;
        self.matchmake().await?;
        self.worker.renew_leases().await?;
        let outcomes = if self.worker.live_matches() == 0 {
            Vec::new()
        } else {
            tokio::task::block_in_place(|| self.tick())
        };
        self.finish(outcomes).await
    }

    /// One step of a stopping loop: no auto-entries and no new matches, only the
    /// matches in play advance and settle.
    pub async fn drain_step(&mut self) -> Result<Vec<MatchReport>, RunnerError> {
        self.worker.renew_leases().await?;
        let outcomes = if self.worker.live_matches() == 0 {
            Vec::new()
        } else {
            tokio::task::block_in_place(|| self.tick())
        };
        self.finish(outcomes).await
    }

    /// Refunds every match still in play (on shutdown, when their engine state is
    /// about to be lost).
    pub async fn abandon_all(&mut self, reason: &str) -> Result<Vec<i64>, RunnerError> {
        self.worker.abandon_all(reason).await
    }
}
