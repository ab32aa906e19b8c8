//! The match runner: the loop that turns queued entries into played, paid and rated
//! matches. Its serve side ([`Matchmaker`]) tops up auto-entries, forms matches per
//! (Space, fee tier), locks their fees on chain and enqueues a job per match; its
//! worker side ([`MatchWorker`]) claims jobs, adds their matches to its one
//! [`MatchWorld`](arena::world::MatchWorld), advances the world one tick at a time
//! (one batched engine step across every live match), and settles or refunds every
//! match that left the world. [`MatchRunner`] joins both in one process over an
//! in-process queue. What both sides share is in [`crate::play`].

use std::sync::Arc;
use std::time::Duration;

use store::Store;

use crate::bus::Bus;
use crate::jobs::MatchQueue;
use crate::match_worker::MatchWorker;
use crate::matchmaker::Matchmaker;
use crate::payments::Payments;
use crate::play::{MatchReport, RunnerConfig, RunnerError, SpaceSlot};
use arena::engine::Engine;
use arena::judging::RoundJudge;
use arena::types::MatchOutcome;

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

    /// The base models its engine serves (see `MatchWorker::with_base_models`).
    pub fn with_base_models(mut self, menu: Arc<crate::base_models::BaseModelMenu>) -> Self {
        self.maker = self.maker.with_base_models(menu.clone());
        self.worker = self.worker.with_base_models(menu);
        self
    }

    /// Fetches each seat's adapter into `adapters` before its match starts (see
    /// `MatchWorker::with_adapters`).
    pub fn with_adapters(mut self, adapters: Arc<crate::runtime::AdapterLibrary>) -> Self {
        self.worker = self.worker.with_adapters(adapters);
        self
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
    pub(crate) fn bus(&self) -> &Bus {
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
    pub(crate) async fn drain_step(&mut self) -> Result<Vec<MatchReport>, RunnerError> {
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

/// How a run of `play_until_stopped` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Matches that finished (settled or refunded) while it ran.
    pub finished: usize,
    /// Matches still in play at the end, refunded.
    pub refunded_at_stop: Vec<i64>,
}

/// Runs matches until `stops` says so, with `trainer` (if any) training due agents
/// beside them, logging each finished match. The first stop (`stops` reads 1) forms no
/// new matches and lets those in play finish within `grace`; a second (2) or the end
/// of `grace` refunds the rest. Steps are never cancelled halfway, so no match is left
/// started but untracked. `max_matches` ends the run after that many finished matches.
/// Matches refunded at the stop carry `stop_reason`.
pub(crate) async fn play_until_stopped(
    runner: &mut MatchRunner,
    trainer: Option<crate::learning::Trainer>,
    stops: tokio::sync::watch::Receiver<u8>,
    grace: Duration,
    max_matches: Option<usize>,
    stop_reason: &str,
) -> Result<RunSummary, RunnerError> {
    let learning =
        trainer.map(|t| tokio::spawn(crate::learning::scheduler::train_due_agents_forever(t)));
    let stop_learning = || {
        if let Some(task) = &learning {
            task.abort();
        }
    };
    let mut finished = 0usize;
    let mut draining_since: Option<std::time::Instant> = None;
    loop {
        let signalled = *stops.borrow();
        if signalled >= 2 {
            break;
        }
        if signalled == 1 && draining_since.is_none() {
            draining_since = Some(std::time::Instant::now());
            stop_learning();
            tracing::info!(
                live = runner.live_matches(),
                grace_secs = grace.as_secs(),
                "stopping: no new matches; finishing the matches in play (Ctrl-C again refunds them now)"
            );
        }
        let reports = match draining_since {
            None => runner.step().await?,
            Some(since) => {
                if runner.live_matches() == 0 || since.elapsed() >= grace {
                    break;
                }
                runner.drain_step().await?
            }
        };
        for report in &reports {
            crate::play::log_report(report);
        }
        finished += reports.len();
        if max_matches.is_some_and(|m| finished >= m) {
            break;
        }
        if runner.live_matches() == 0 {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    stop_learning();
    let refunded_at_stop = runner.abandon_all(stop_reason).await?;
    runner.bus().flush().await.ok();
    Ok(RunSummary {
        finished,
        refunded_at_stop,
    })
}
