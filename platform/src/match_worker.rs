//! The worker side of the match runner: claims `MatchJob`s from the queue, loads
//! each match and its seats from the database, starts it under this worker's lease
//! and adds it to the worker's one [`MatchWorld`], ticks the world (one batched
//! engine step across every live match), settles or refunds each match that leaves
//! it, and only then acknowledges its job.
//!
//! A job is delivered at least once; the match is played at most once. Starting a
//! match is a conditional update from `pending`, so of two workers holding the same
//! job one starts it and the other drops its copy. A job whose match is already
//! running under an expired lease belongs to a worker that died mid-match: its engine
//! state is gone, so it is refunded. The lease is renewed while the match plays; a
//! worker that finds its lease taken (it stalled past expiry and the match was
//! reclaimed) stops publishing for that match and lets the reclaimer finish it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use store::{Entry, Store};

use crate::bus::Bus;
use crate::jobs::{ClaimedJob, MatchQueue};
use crate::payments::{PaymentError, Payments};
use crate::play::{MatchEnd, MatchReport, RunnerConfig, RunnerError, SeatReport, SpaceSlot};
use arena::engine::Engine;
use arena::events::EventKind;
use arena::judging::RoundJudge;
use arena::ratings::Skill;
use arena::record::{SeatFacts, book_match};
use arena::types::{MatchOutcome, MatchSpec};
use arena::world::MatchWorld;

struct LiveMatch {
    slot: usize,
    seats: Vec<(Entry, Skill)>,
    job: ClaimedJob,
}

/// Plays the matches it claims.
pub struct MatchWorker {
    store: Store,
    payments: Arc<Payments>,
    bus: Bus,
    queue: MatchQueue,
    world: MatchWorld,
    spaces: Vec<SpaceSlot>,
    cfg: RunnerConfig,
    id: String,
    live: HashMap<i64, LiveMatch>,
    renewed_at: i64,
    /// The ids in `live`, shared with the background lease renewer.
    held: Arc<Mutex<HashSet<i64>>>,
    /// Matches whose lease the background renewer found taken.
    lost: Arc<Mutex<HashSet<i64>>>,
    /// Where the seats' adapters are fetched from before a match starts, if the
    /// engine plays adapters.
    adapters: Option<Arc<crate::runtime::AdapterLibrary>>,
    /// The base models the engine serves (the seats' agents must name one).
    base_models: Arc<crate::base_models::BaseModelMenu>,
}

impl MatchWorker {
    /// A worker called `id` (its queue consumer name and lease holder name) that
    /// plays the matches of `spaces`, generating with `engine` and judging with
    /// `judge`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        payments: Arc<Payments>,
        bus: Bus,
        queue: MatchQueue,
        engine: Box<dyn Engine>,
        judge: Box<dyn RoundJudge>,
        spaces: Vec<SpaceSlot>,
        cfg: RunnerConfig,
        id: String,
    ) -> MatchWorker {
        MatchWorker {
            world: MatchWorld::new(engine, judge, bus.clone()),
            store,
            payments,
            bus,
            queue,
            spaces,
            cfg,
            id,
            live: HashMap::new(),
            renewed_at: 0,
            held: Arc::default(),
            lost: Arc::default(),
            adapters: None,
            base_models: Arc::default(),
        }
    }

    /// The base models its engine serves (default: SmolLM2 alone): a seat whose
    /// agent names another is refused and its match refunded.
    pub(crate) fn with_base_models(mut self, menu: Arc<crate::base_models::BaseModelMenu>) -> Self {
        self.base_models = menu;
        self
    }

    /// Fetches each seat's adapter into `adapters` (from the database when this host
    /// lacks it) before its match starts, so a worker plays adapters trained on any
    /// host.
    pub(crate) fn with_adapters(mut self, adapters: Arc<crate::runtime::AdapterLibrary>) -> Self {
        self.adapters = Some(adapters);
        self
    }

    /// Starts a task that renews the lease of every match in play every third of the
    /// lease time, on the async runtime, so that a long blocking [`tick`](Self::tick)
    /// (a model's judge pass over many rounds) never lets a lease lapse. A lease it
    /// finds taken is handed to the next [`renew_leases`](Self::renew_leases). The
    /// task ends when the worker is dropped.
    pub fn spawn_lease_renewer(&self) -> tokio::task::JoinHandle<()> {
        let held = Arc::downgrade(&self.held);
        let lost = self.lost.clone();
        let store = self.store.clone();
        let id = self.id.clone();
        let lease_ms = self.cfg.lease_ms;
        let every = std::time::Duration::from_millis((lease_ms / 3).max(1) as u64);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(held) = held.upgrade() else { return };
                let ids: Vec<i64> = held.lock().expect("held lock").iter().copied().collect();
                drop(held);
                for match_id in ids {
                    let until = store::now_ms() + lease_ms;
                    match store.renew_lease(match_id, &id, until).await {
                        Ok(true) => {}
                        Ok(false) => {
                            lost.lock().expect("lost lock").insert(match_id);
                        }
                        Err(e) => tracing::warn!(match_id, error = %e, "lease renewal failed"),
                    }
                }
            }
        })
    }

    fn sync_held(&self) {
        *self.held.lock().expect("held lock") = self.live.keys().copied().collect();
    }

    /// Matches in play.
    pub fn live_matches(&self) -> usize {
        self.live.len()
    }

    /// How many more matches it may take on.
    pub(crate) fn free_slots(&self) -> usize {
        self.cfg.max_live_matches.saturating_sub(self.live.len())
    }

    /// Claims jobs up to its free slots (waiting at most `block` when none are
    /// queued) and starts their matches. Returns the matches started.
    pub async fn claim(&mut self, block: Duration) -> Result<Vec<i64>, RunnerError> {
        let free = self.free_slots();
        if free == 0 {
            return Ok(Vec::new());
        }
        let jobs = self.queue.claim(&self.id, free, block).await?;
        let mut started = Vec::with_capacity(jobs.len());
        for job in jobs {
            if let Some(id) = self.start(job).await? {
                started.push(id);
            }
        }
        Ok(started)
    }

    /// Starts a claimed job's match, or disposes of the job when its match is not
    /// this worker's to play.
    async fn start(&mut self, job: ClaimedJob) -> Result<Option<i64>, RunnerError> {
        let match_id = job.job.match_id;
        if let Some(live) = self.live.get_mut(&match_id) {
            // Delivered again while this worker plays it (the queue's claim timeout is
            // shorter than the match): keep the newest delivery, the one to ack.
            live.job = job;
            return Ok(None);
        }
        let now = store::now_ms();
        let Some(m) = self
            .store
            .start_leased_match(match_id, &self.id, now + self.cfg.lease_ms)
            .await?
        else {
            self.dispose(job, now).await?;
            return Ok(None);
        };
        let Some(slot_index) = self.spaces.iter().position(|s| s.space.id == m.space_id) else {
            let reason = format!("space {} is not played by this worker", m.space_id);
            self.refund(match_id, &reason).await?;
            self.queue.ack(&job).await?;
            return Ok(None);
        };
        let slot = &self.spaces[slot_index];
        let rulebook = slot.rulebook.clone();
        let entries = self.store.match_entries(match_id).await?;
        let (specs, refusal) = crate::play::load_seats(
            &self.store,
            &entries,
            rulebook.max_new_tokens,
            &self.base_models,
        )
        .await?;
        if let Some(library) = &self.adapters {
            for hash in specs.iter().filter_map(|s| s.adapter_hash.as_deref()) {
                // A missing adapter is the engine's to refuse (the match is refunded).
                if let Err(e) = library.fetch(hash).await {
                    tracing::warn!(match_id, adapter = hash, error = %e, "could not fetch an adapter");
                }
            }
        }
        if let Some(reason) = refusal {
            self.refund(match_id, &reason).await?;
            self.queue.ack(&job).await?;
            return Ok(None);
        }
        let mut seats = Vec::with_capacity(entries.len());
        for e in entries {
            let skill = self
                .store
                .rating(e.agent_id, m.space_id)
                .await?
                .map_or_else(Skill::default, |r| Skill {
                    mu: r.mu,
                    sigma: r.sigma,
                });
            seats.push((e, skill));
        }
        self.world.add_match(MatchSpec {
            match_id,
            rulebook,
            seed: m.seed as u64,
            seats: specs,
            deadline_ms: now + self.cfg.match_deadline_ms,
        });
        tracing::info!(match_id, space = %slot.rulebook.slug, worker = %self.id,
            deliveries = job.deliveries, "match started");
        self.live.insert(
            match_id,
            LiveMatch {
                slot: slot_index,
                seats,
                job,
            },
        );
        self.sync_held();
        Ok(Some(match_id))
    }

    /// A job whose match could not be started: already finished (acknowledge it),
    /// running under another worker's live lease (a redundant copy; acknowledge it),
    /// or running under an expired lease (its worker died mid-match: refund it).
    async fn dispose(&self, job: ClaimedJob, now: i64) -> Result<(), RunnerError> {
        let match_id = job.job.match_id;
        let lease = self.store.match_lease(match_id).await?;
        if store::is_unfinished(lease.status)
            && lease.lease_expires_at.is_some_and(|t| t < now)
            && self
                .store
                .take_expired_lease(match_id, &self.id, now, now + self.cfg.lease_ms)
                .await?
        {
            tracing::warn!(match_id, previous = ?lease.lease_owner,
                "its worker stopped mid-match; refunding");
            self.refund(
                match_id,
                "interrupted: its worker stopped before it settled",
            )
            .await?;
        }
        self.queue.ack(&job).await?;
        Ok(())
    }

    /// Renews the lease of every live match, at most every third of the lease
    /// time, and tells the queue each of their jobs is still being worked on (so a
    /// long match is not redelivered). A match whose lease was taken is dropped from
    /// this worker's books.
    pub async fn renew_leases(&mut self) -> Result<(), RunnerError> {
        let lost: Vec<i64> = self.lost.lock().expect("lost lock").drain().collect();
        for id in lost {
            if let Some(live) = self.live.remove(&id) {
                tracing::warn!(
                    match_id = id,
                    "lease lost; another process reclaimed the match"
                );
                self.queue.ack(&live.job).await?;
            }
        }
        self.sync_held();
        let now = store::now_ms();
        if now - self.renewed_at < self.cfg.lease_ms / 3 {
            return Ok(());
        }
        self.renewed_at = now;
        let ids: Vec<i64> = self.live.keys().copied().collect();
        for id in ids {
            if !self
                .store
                .renew_lease(id, &self.id, now + self.cfg.lease_ms)
                .await?
            {
                tracing::warn!(
                    match_id = id,
                    "lease lost; another process reclaimed the match"
                );
                if let Some(live) = self.live.remove(&id) {
                    self.queue.ack(&live.job).await?;
                }
            } else if let Some(live) = self.live.get(&id) {
                self.queue.touch(&live.job).await?;
            }
        }
        self.sync_held();
        Ok(())
    }

    /// Advances the world one tick. Blocking: the engine decodes inside it.
    pub fn tick(&mut self) -> Vec<MatchOutcome> {
        self.world.tick(store::now_ms())
    }

    /// Settles or refunds the matches that left the world, and acknowledges their
    /// jobs.
    pub async fn finish(
        &mut self,
        outcomes: Vec<MatchOutcome>,
    ) -> Result<Vec<MatchReport>, RunnerError> {
        let mut reports = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            let Some(live) = self.live.remove(&outcome.match_id) else {
                continue;
            };
            let end = self.close(&outcome, &live).await?;
            self.queue.ack(&live.job).await?;
            reports.push(MatchReport {
                match_id: outcome.match_id,
                space: self.spaces[live.slot].rulebook.slug.clone(),
                end,
            });
        }
        self.sync_held();
        Ok(reports)
    }

    async fn close(
        &self,
        outcome: &MatchOutcome,
        live: &LiveMatch,
    ) -> Result<MatchEnd, RunnerError> {
        let slot = &self.spaces[live.slot];
        let result = match &outcome.result {
            Ok(result) => result,
            Err(reason) => {
                self.refund(outcome.match_id, reason).await?;
                return Ok(MatchEnd::Refunded {
                    reason: reason.clone(),
                });
            }
        };
        let facts: Vec<SeatFacts> = live
            .seats
            .iter()
            .map(|(e, skill)| SeatFacts {
                entry_id: e.id,
                agent_id: e.agent_id,
                fee: e.fee_wei.0,
                skill: *skill,
            })
            .collect();
        let book = book_match(
            outcome.match_id,
            slot.space.id,
            &slot.rulebook,
            &facts,
            result,
        );
        let pairs = book.record.rounds.iter().map(|r| r.pairs.len()).sum();
        // The ratings as computed from the skills read at the start; the settlement
        // applies their change to the ratings as they stand then.
        let planned: Vec<store::AppliedRating> = live
            .seats
            .iter()
            .zip(&book.skills)
            .map(|((e, before), after)| store::AppliedRating {
                agent_id: e.agent_id,
                mu_before: before.mu,
                mu: after.mu,
                sigma: after.sigma,
            })
            .collect();
        let settled = |ratings: &[store::AppliedRating]| MatchEnd::Settled {
            seats: live
                .seats
                .iter()
                .enumerate()
                .map(|(i, (e, _))| SeatReport {
                    entry_id: e.id,
                    agent_id: e.agent_id,
                    place: result.places[i],
                    score: result.totals[i],
                    payout_wei: book.amounts[i].to_string(),
                    mu: ratings[i].mu,
                    sigma: ratings[i].sigma,
                })
                .collect(),
            result_hash: result.hash(),
            result_root: book.result_root.clone(),
            pairs,
        };
        match self.payments.settle(book.record.clone()).await {
            Ok(recorded) => {
                let ratings = if recorded.ratings.len() == planned.len() {
                    recorded.ratings
                } else {
                    planned
                };
                self.publish_settlement(outcome.match_id, live, &book, result, &ratings);
                Ok(settled(&ratings))
            }
            Err(PaymentError::Store(store::Error::AlreadySettled { outcome: done, .. })) => {
                // Reclaimed and closed by another process meanwhile: it published.
                tracing::warn!(match_id = outcome.match_id, %done,
                    "closed elsewhere while this worker played it");
                Ok(MatchEnd::ClosedElsewhere { closed_as: done })
            }
            Err(PaymentError::Store(e)) => {
                // Nothing was written: the match is refundable.
                let reason = format!("settlement failed: {e}");
                self.refund(outcome.match_id, &reason).await?;
                Ok(MatchEnd::Refunded { reason })
            }
            Err(e) => {
                // Written in the database; the chain side stays pending and
                // reconciliation sends it again.
                tracing::error!(match_id = outcome.match_id, error = %e,
                    "settled in the database, chain settlement pending");
                self.publish_settlement(outcome.match_id, live, &book, result, &planned);
                Ok(MatchEnd::SettledChainPending {
                    result_hash: result.hash(),
                    error: e.to_string(),
                })
            }
        }
    }

    async fn refund(&self, match_id: i64, reason: &str) -> Result<(), RunnerError> {
        match self.payments.refund(match_id, reason).await {
            Ok(()) => {}
            // Settled by another process just now: nothing to refund.
            Err(PaymentError::Store(store::Error::AlreadySettled { .. })) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        self.bus.publish(
            match_id,
            EventKind::MatchRefunded {
                reason: arena::events::public_refund_reason(reason),
            },
        );
        Ok(())
    }

    fn publish_settlement(
        &self,
        match_id: i64,
        live: &LiveMatch,
        book: &arena::record::MatchBook,
        result: &arena::types::MatchResult,
        ratings: &[store::AppliedRating],
    ) {
        self.bus.publish(
            match_id,
            EventKind::Payouts {
                payouts: live
                    .seats
                    .iter()
                    .zip(&book.amounts)
                    .map(|((e, _), a)| (e.id, a.to_string()))
                    .collect(),
                treasury: book.treasury.to_string(),
            },
        );
        self.bus.publish(
            match_id,
            EventKind::RatingChanges {
                changes: ratings
                    .iter()
                    .map(|r| (r.agent_id, r.mu_before, r.mu, r.sigma))
                    .collect(),
            },
        );
        self.bus.publish(
            match_id,
            EventKind::MatchSettled {
                result_hash: result.hash(),
            },
        );
    }

    /// Refunds every match still in play (single-process shutdown, when their engine
    /// state is about to be lost) and acknowledges their jobs.
    pub(crate) async fn abandon_all(&mut self, reason: &str) -> Result<Vec<i64>, RunnerError> {
        let ids: Vec<i64> = self.live.keys().copied().collect();
        for &id in &ids {
            if let Some(live) = self.live.remove(&id) {
                self.refund(id, reason).await?;
                self.queue.ack(&live.job).await?;
            }
        }
        self.sync_held();
        Ok(ids)
    }

    /// Hands every match still in play back to the queue for another worker
    /// (graceful shutdown past its grace period): each goes back to pending, its
    /// lease running for the queue wait, and its job is released. Nothing of a match
    /// is stored before it settles, so the next worker plays it from its recorded
    /// seed.
    pub(crate) async fn hand_back_all(&mut self) -> Result<Vec<i64>, RunnerError> {
        let ids: Vec<i64> = self.live.keys().copied().collect();
        let until = store::now_ms() + self.cfg.queue_wait_ms;
        for &id in &ids {
            if let Some(live) = self.live.remove(&id) {
                if self.store.hand_back_match(id, &self.id, until).await? {
                    self.queue.release(&live.job).await?;
                } else {
                    self.queue.ack(&live.job).await?;
                }
            }
        }
        self.sync_held();
        Ok(ids)
    }
}
