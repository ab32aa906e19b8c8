//! The serve side of the match runner: tops up auto-entries, forms matches per
//! (Space, fee tier) from the queued entries, locks their fees on chain and hands
//! each formed match to the workers as a `MatchJob`. The match row is leased to this
//! server while it forms (so no other process reclaims it half-made); once enqueued,
//! its lease runs for the queue wait, within which a worker must start it.
//!
//! Several servers may matchmake the same queue at once: the store claims entries
//! with a conditional update, so a server that loses an entry to another forms
//! nothing from that group and moves on.

use std::sync::Arc;

use store::{Entry, FeeTier, Store};

use crate::bus::Bus;
use crate::jobs::{MatchJob, MatchQueue};
use crate::payments::Payments;
use crate::play::{RunnerConfig, RunnerError, SpaceSlot};
use arena::events::EventKind;
use arena::matchmaking::{MatchmakingPolicy, Queued, form_matches};
use arena::ratings::Skill;

/// Forms matches and enqueues them for the workers.
pub struct Matchmaker {
    store: Store,
    payments: Arc<Payments>,
    bus: Bus,
    queue: MatchQueue,
    spaces: Vec<SpaceSlot>,
    cfg: RunnerConfig,
    owner: String,
    seed_salt: u64,
    seeds_drawn: u64,
    new_match_budget: Option<usize>,
    turn: usize,
    /// The base models the workers serve (the seats' agents must name one).
    base_models: Arc<crate::base_models::BaseModelMenu>,
}

/// The next match seed from a per-server salt and a counter (recorded with the
/// match, so a replay never needs either).
fn match_seed(salt: u64, counter: u64) -> i64 {
    (arena::types::seat_seed(salt, 0, counter as usize) >> 1) as i64
}

impl Matchmaker {
    /// A matchmaker over `spaces` that enqueues on `queue`, leasing the matches it
    /// forms as `owner` (this server's id).
    pub fn new(
        store: Store,
        payments: Arc<Payments>,
        bus: Bus,
        queue: MatchQueue,
        spaces: Vec<SpaceSlot>,
        cfg: RunnerConfig,
        owner: String,
    ) -> Matchmaker {
        let seed_salt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Matchmaker {
            store,
            payments,
            bus,
            queue,
            spaces,
            cfg,
            owner,
            seed_salt,
            seeds_drawn: 0,
            new_match_budget: None,
            turn: 0,
            base_models: Arc::default(),
        }
    }

    /// The base models the workers serve (default: SmolLM2 alone): a match whose
    /// seats name another is refunded when it forms.
    pub(crate) fn with_base_models(mut self, menu: Arc<crate::base_models::BaseModelMenu>) -> Self {
        self.base_models = menu;
        self
    }

    /// The Spaces this matchmaker forms matches in.
    pub(crate) fn spaces(&self) -> &[SpaceSlot] {
        &self.spaces
    }

    /// Draws match seeds from `salt` instead of the clock (tests, benchmarks).
    pub(crate) fn set_seed_salt(&mut self, salt: u64) {
        self.seed_salt = salt;
        self.seeds_drawn = 0;
    }

    /// Forms at most `n` more matches from now on (`None`: no limit).
    pub fn limit_new_matches(&mut self, n: Option<usize>) {
        self.new_match_budget = n;
    }

    /// Re-enters every agent with an active auto-entry rule that has no entry queued
    /// in that tier, within its spending cap. Returns the entries made.
    pub async fn auto_enter(&self) -> Result<usize, RunnerError> {
        let mut made = 0;
        for rule in self.store.auto_entries().await? {
            if rule.enabled == 0 {
                continue;
            }
            let tier = self.store.fee_tier(rule.fee_tier_id).await?;
            let queued = self
                .store
                .queued_entries(tier.space_id, tier.id)
                .await?
                .iter()
                .any(|e| e.agent_id == rule.agent_id);
            if queued {
                continue;
            }
            match self.store.auto_enter(rule.agent_id, rule.fee_tier_id).await {
                Ok(Some(_)) => made += 1,
                Ok(None) => {}
                // A short balance or an archived agent just skips this round; so does
                // an entry another server made for the same rule a moment ago.
                Err(
                    store::Error::InsufficientBalance { .. }
                    | store::Error::Invalid { .. }
                    | store::Error::Duplicate { .. },
                ) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(made)
    }

    /// Forms up to `capacity` matches from the queues, locks their fees and enqueues
    /// them. Returns the new match ids. When capacity is short, the (Space, tier)
    /// queues take turns, one match each, starting one queue further on every call, so
    /// a busy Space never starves the others.
    pub async fn matchmake(&mut self, capacity: usize) -> Result<Vec<i64>, RunnerError> {
        let mut formed = Vec::new();
        if capacity == 0 || self.new_match_budget == Some(0) {
            return Ok(formed);
        }
        // Every queue's candidate groups, in the matchmaking policy's order.
        let mut candidates: Vec<(SpaceSlot, FeeTier, std::vec::IntoIter<Vec<Entry>>)> = Vec::new();
        for slot_index in 0..self.spaces.len() {
            let slot = self.spaces[slot_index].clone();
            for tier in &slot.tiers {
                let queue = self.store.queued_entries(slot.space.id, tier.id).await?;
                if queue.len() < slot.rulebook.players {
                    continue;
                }
                let now = store::now_ms();
                let mut queued = Vec::with_capacity(queue.len());
                for e in &queue {
                    let skill = self
                        .store
                        .rating(e.agent_id, slot.space.id)
                        .await?
                        .map_or_else(Skill::default, |r| Skill {
                            mu: r.mu,
                            sigma: r.sigma,
                        });
                    queued.push(Queued {
                        entry_id: e.id,
                        agent_id: e.agent_id,
                        owner_id: e.user_id,
                        rating: skill.mu,
                        waited_secs: (now - e.created_at).max(0) as f64 / 1000.0,
                    });
                }
                let policy = MatchmakingPolicy {
                    players: slot.rulebook.players,
                    seats_per_owner: slot.rulebook.seats_per_owner,
                    base_gap: self.cfg.base_gap,
                    widen_per_sec: self.cfg.widen_per_sec,
                };
                let groups: Vec<Vec<Entry>> = form_matches(&queued, &policy)
                    .into_iter()
                    .map(|group| {
                        let mut ids = group;
                        ids.sort_unstable();
                        ids.iter()
                            .map(|id| queue.iter().find(|e| e.id == *id).expect("queued").clone())
                            .collect()
                    })
                    .collect();
                if !groups.is_empty() {
                    candidates.push((slot.clone(), tier.clone(), groups.into_iter()));
                }
            }
        }
        if candidates.is_empty() {
            return Ok(formed);
        }
        let start = self.turn % candidates.len();
        self.turn = self.turn.wrapping_add(1);
        candidates.rotate_left(start);
        loop {
            let mut any = false;
            for (slot, tier, groups) in candidates.iter_mut() {
                if formed.len() >= capacity || self.new_match_budget == Some(0) {
                    return Ok(formed);
                }
                let Some(entries) = groups.next() else {
                    continue;
                };
                any = true;
                if let Some(id) = self.form(slot, tier, &entries).await? {
                    formed.push(id);
                }
            }
            if !any {
                return Ok(formed);
            }
        }
    }

    /// Makes one match, locks its fees and enqueues it; `None` when another server
    /// took one of its entries first, or the match was refused and refunded.
    async fn form(
        &mut self,
        slot: &SpaceSlot,
        tier: &FeeTier,
        entries: &[Entry],
    ) -> Result<Option<i64>, RunnerError> {
        let ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
        let seed = match_seed(self.seed_salt, self.seeds_drawn);
        self.seeds_drawn += 1;
        let lease_until = store::now_ms() + self.cfg.lease_ms;
        let m = match self
            .store
            .create_match_leased(
                slot.space.id,
                tier.id,
                seed,
                slot.rulebook.version_hash(),
                &ids,
                Some((&self.owner, lease_until)),
            )
            .await
        {
            Ok(m) => m,
            // Another server took one of these entries first.
            Err(store::Error::Invalid { .. } | store::Error::Duplicate { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let (_, mut refusal) = crate::play::load_seats(
            &self.store,
            entries,
            slot.rulebook.max_new_tokens,
            &self.base_models,
        )
        .await?;
        if refusal.is_none()
            && let Err(e) = self
                .payments
                .lock_fees(m.id, slot.rulebook.payout.rake_bps)
                .await
        {
            refusal = Some(format!("locking the entry fees failed: {e}"));
        }
        if let Some(reason) = refusal {
            tracing::warn!(match_id = m.id, %reason, "match refused before it started");
            self.payments.refund(m.id, &reason).await?;
            self.bus.publish(
                m.id,
                EventKind::MatchRefunded {
                    reason: arena::events::public_refund_reason(&reason),
                },
            );
            return Ok(None);
        }
        // From here a worker may start it any time; the lease now covers the wait.
        self.store
            .renew_lease(m.id, &self.owner, store::now_ms() + self.cfg.queue_wait_ms)
            .await?;
        self.queue.enqueue(MatchJob { match_id: m.id }).await?;
        if let Some(n) = self.new_match_budget.as_mut() {
            *n = n.saturating_sub(1);
        }
        tracing::info!(match_id = m.id, space = %slot.rulebook.slug, tier = %tier.name,
            players = ids.len(), "match formed and queued");
        Ok(Some(m.id))
    }
}
