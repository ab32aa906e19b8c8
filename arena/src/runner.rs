//! The match runner: the loop that turns queued entries into played, paid and rated
//! matches. Each step it tops up auto-entries, forms matches per (Space, fee tier),
//! locks their fees on chain, adds them to the one [`MatchWorld`], advances the world
//! one tick (one batched engine step across every live match), and settles or refunds
//! every match that left the world.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use spaces::Rulebook;
use store::{Entry, FeeTier, Space, Store, Wei};

use crate::bus::Bus;
use crate::engine::Engine;
use crate::events::EventKind;
use crate::judging::RoundJudge;
use crate::matchmaking::{MatchmakingPolicy, Queued, form_matches};
use crate::payments::{PaymentError, Payments};
use crate::ratings::Skill;
use crate::record::{SeatFacts, book_match};
use crate::world::{MatchOutcome, MatchSpec, MatchWorld, SeatSpec};

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
    /// The most matches live at once; further queued entries wait.
    pub max_live_matches: usize,
}

impl Default for RunnerConfig {
    fn default() -> RunnerConfig {
        RunnerConfig {
            match_deadline_ms: 15 * 60 * 1000,
            base_gap: 5.0,
            widen_per_sec: 0.5,
            max_live_matches: 8,
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

struct LiveMatch {
    slot: usize,
    seats: Vec<(Entry, Skill)>,
}

/// The loop that runs matches.
pub struct MatchRunner {
    store: Store,
    payments: Arc<Payments>,
    bus: Bus,
    world: MatchWorld,
    spaces: Vec<SpaceSlot>,
    cfg: RunnerConfig,
    live: HashMap<i64, LiveMatch>,
    seed_salt: u64,
    seeds_drawn: u64,
    new_match_budget: Option<usize>,
}

/// The next match seed from a per-runner salt and a counter (recorded with the
/// match, so a replay never needs either).
fn match_seed(salt: u64, counter: u64) -> i64 {
    (crate::world::seat_seed(salt, 0, counter as usize) >> 1) as i64
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
        let seed_salt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        MatchRunner {
            world: MatchWorld::new(engine, judge, bus.clone()),
            store,
            payments,
            bus,
            spaces,
            cfg,
            live: HashMap::new(),
            seed_salt,
            seeds_drawn: 0,
            new_match_budget: None,
        }
    }

    /// The Spaces this runner plays.
    pub fn spaces(&self) -> &[SpaceSlot] {
        &self.spaces
    }

    /// Draws match seeds from `salt` instead of the clock, so a run's matches are
    /// reproducible (tests, benchmarks). Each match's seed is recorded either way.
    pub fn set_seed_salt(&mut self, salt: u64) {
        self.seed_salt = salt;
        self.seeds_drawn = 0;
    }

    /// Starts at most `n` more matches from now on (`None`: no limit), for runs of a
    /// fixed length.
    pub fn limit_new_matches(&mut self, n: Option<usize>) {
        self.new_match_budget = n;
    }

    fn may_start(&self) -> bool {
        self.live.len() < self.cfg.max_live_matches && self.new_match_budget != Some(0)
    }

    /// Matches in play.
    pub fn live_matches(&self) -> usize {
        self.live.len()
    }

    /// The bus the runner publishes on.
    pub fn bus(&self) -> &Bus {
        &self.bus
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
                // A short balance or an archived agent just skips this round.
                Err(store::Error::InsufficientBalance { .. } | store::Error::Invalid { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(made)
    }

    /// Forms matches from the queues, locks their fees and starts them. Returns the
    /// new match ids.
    pub async fn matchmake(&mut self) -> Result<Vec<i64>, RunnerError> {
        let mut started = Vec::new();
        for slot_index in 0..self.spaces.len() {
            let slot = self.spaces[slot_index].clone();
            for tier in &slot.tiers {
                if !self.may_start() {
                    return Ok(started);
                }
                let queue = self.store.queued_entries(slot.space.id, tier.id).await?;
                if queue.len() < slot.rulebook.players {
                    continue;
                }
                let now = store::now_ms();
                let mut skills = HashMap::new();
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
                    skills.insert(e.id, skill);
                    queued.push(Queued {
                        entry_id: e.id,
                        agent_id: e.agent_id,
                        rating: skill.mu,
                        waited_secs: (now - e.created_at).max(0) as f64 / 1000.0,
                    });
                }
                let policy = MatchmakingPolicy {
                    players: slot.rulebook.players,
                    base_gap: self.cfg.base_gap,
                    widen_per_sec: self.cfg.widen_per_sec,
                };
                for group in form_matches(&queued, &policy) {
                    if !self.may_start() {
                        return Ok(started);
                    }
                    let mut ids = group.clone();
                    ids.sort_unstable();
                    let seats: Vec<(Entry, Skill)> = ids
                        .iter()
                        .map(|id| {
                            let e = queue.iter().find(|e| e.id == *id).expect("queued").clone();
                            (e, skills[id])
                        })
                        .collect();
                    if let Some(id) = self.start_match(slot_index, tier, seats).await? {
                        started.push(id);
                    }
                }
            }
        }
        Ok(started)
    }

    async fn start_match(
        &mut self,
        slot_index: usize,
        tier: &FeeTier,
        seats: Vec<(Entry, Skill)>,
    ) -> Result<Option<i64>, RunnerError> {
        let slot = &self.spaces[slot_index];
        let ids: Vec<i64> = seats.iter().map(|(e, _)| e.id).collect();
        let seed = match_seed(self.seed_salt, self.seeds_drawn);
        self.seeds_drawn += 1;
        let m = match self
            .store
            .create_match(
                slot.space.id,
                tier.id,
                seed,
                slot.rulebook.version_hash(),
                &ids,
            )
            .await
        {
            Ok(m) => m,
            // Another runner took one of these entries first.
            Err(store::Error::Invalid { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let rulebook = slot.rulebook.clone();
        let mut seat_specs = Vec::with_capacity(seats.len());
        let mut refusal = None;
        for (e, _) in &seats {
            let v = self.store.agent_version(e.agent_version_id).await?;
            let sampling: serde_json::Value =
                serde_json::from_str(&v.sampling).unwrap_or(serde_json::Value::Null);
            if let Err(reason) = crate::runtime::sampling_params(&sampling, rulebook.max_new_tokens)
            {
                refusal = Some(format!(
                    "agent {} version {}: {reason}",
                    e.agent_id, v.version
                ));
            }
            seat_specs.push(SeatSpec {
                entry_id: e.id,
                agent_id: e.agent_id,
                agent_version_id: e.agent_version_id,
                system_prompt: v.system_prompt,
                sampling,
                adapter_hash: v.adapter_hash,
            });
        }
        if refusal.is_none()
            && let Err(e) = self.payments.lock_fees(m.id).await
        {
            refusal = Some(format!("locking the entry fees failed: {e}"));
        }
        if let Some(reason) = refusal {
            tracing::warn!(match_id = m.id, %reason, "match refused before it started");
            self.payments.refund(m.id, &reason).await?;
            self.bus.publish(m.id, EventKind::MatchRefunded { reason });
            return Ok(None);
        }
        self.store.start_match(m.id).await?;
        self.world.add_match(MatchSpec {
            match_id: m.id,
            rulebook,
            seed: seed as u64,
            seats: seat_specs,
            deadline_ms: store::now_ms() + self.cfg.match_deadline_ms,
        });
        self.live.insert(
            m.id,
            LiveMatch {
                slot: slot_index,
                seats,
            },
        );
        if let Some(n) = self.new_match_budget.as_mut() {
            *n = n.saturating_sub(1);
        }
        tracing::info!(match_id = m.id, space = %self.spaces[slot_index].rulebook.slug,
            tier = %tier.name, players = ids.len(), "match started");
        Ok(Some(m.id))
    }

    /// Advances the world one tick. Blocking: the engine decodes inside it.
    pub fn tick(&mut self) -> Vec<MatchOutcome> {
        self.world.tick(store::now_ms())
    }

    /// Settles or refunds the matches that left the world.
    pub async fn finish(
        &mut self,
        outcomes: Vec<MatchOutcome>,
    ) -> Result<Vec<MatchReport>, RunnerError> {
        let mut reports = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            let Some(live) = self.live.remove(&outcome.match_id) else {
                continue;
            };
            let slot = &self.spaces[live.slot];
            let end = match outcome.result {
                Ok(result) => {
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
                        &result,
                    );
                    let pairs = book.record.rounds.iter().map(|r| r.pairs.len()).sum();
                    match self.payments.settle(book.record.clone()).await {
                        Ok(_) => {
                            self.publish_settlement(outcome.match_id, &live, &book, &result);
                            MatchEnd::Settled {
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
                                        mu: book.skills[i].mu,
                                        sigma: book.skills[i].sigma,
                                    })
                                    .collect(),
                                result_hash: result.hash(),
                                result_root: book.result_root.clone(),
                                pairs,
                            }
                        }
                        Err(PaymentError::Store(e)) => {
                            // Nothing was written: the match is refundable.
                            let reason = format!("settlement failed: {e}");
                            self.refund(outcome.match_id, &reason).await?;
                            MatchEnd::Refunded { reason }
                        }
                        Err(e) => {
                            // Written in the database; the chain side stays pending
                            // and start-up reconciliation sends it again.
                            tracing::error!(match_id = outcome.match_id, error = %e,
                                "settled in the database, chain settlement pending");
                            self.publish_settlement(outcome.match_id, &live, &book, &result);
                            MatchEnd::Settled {
                                seats: Vec::new(),
                                result_hash: result.hash(),
                                result_root: book.result_root.clone(),
                                pairs,
                            }
                        }
                    }
                }
                Err(reason) => {
                    self.refund(outcome.match_id, &reason).await?;
                    MatchEnd::Refunded { reason }
                }
            };
            reports.push(MatchReport {
                match_id: outcome.match_id,
                space: slot.rulebook.slug.clone(),
                end,
            });
        }
        Ok(reports)
    }

    async fn refund(&self, match_id: i64, reason: &str) -> Result<(), RunnerError> {
        self.payments.refund(match_id, reason).await?;
        self.bus.publish(
            match_id,
            EventKind::MatchRefunded {
                reason: reason.to_string(),
            },
        );
        Ok(())
    }

    fn publish_settlement(
        &self,
        match_id: i64,
        live: &LiveMatch,
        book: &crate::record::MatchBook,
        result: &crate::world::MatchResult,
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
                changes: live
                    .seats
                    .iter()
                    .zip(&book.skills)
                    .map(|((e, before), after)| (e.agent_id, before.mu, after.mu, after.sigma))
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

    /// One step of the loop: auto-entries, matchmaking, one world tick, settlement.
    pub async fn step(&mut self) -> Result<Vec<MatchReport>, RunnerError> {
        self.auto_enter().await?;
        self.matchmake().await?;
        let outcomes = if self.live.is_empty() {
            Vec::new()
        } else {
            tokio::task::block_in_place(|| self.tick())
        };
        self.finish(outcomes).await
    }

    /// Refunds every match still in play (on shutdown, when their engine state is
    /// about to be lost).
    pub async fn abandon_all(&mut self, reason: &str) -> Result<Vec<i64>, RunnerError> {
        let ids: Vec<i64> = self.live.keys().copied().collect();
        for &id in &ids {
            self.live.remove(&id);
            self.refund(id, reason).await?;
        }
        Ok(ids)
    }
}
