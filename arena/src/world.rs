//! One bevy_ecs world for every live match.
//!
//! Matches and their seats are entities; phase, round, answers and scores are
//! components; the rulebooks, the engine and the judges are resources. Each tick runs
//! the ordered sets publish → generate → verify → judge → rank, then checks deadlines.
//! The generate system advances every waiting seat of every match together, one
//! engine step per tick, so a model decodes all of them in one batched forward pass;
//! the judge system likewise hands every round due that tick to the judges at once.
//! A finished (or failed) match leaves the world as a [`MatchOutcome`] for settlement.

use std::collections::HashMap;
use std::sync::Arc;

use bevy_ecs::prelude::*;
use serde::Serialize;
use spaces::Rulebook;

use crate::bus::Bus;
use crate::engine::{Engine, EngineOutput, GenRequest, Ticket};
use crate::events::{EventKind, JudgeLine, SeatInfo};
use crate::judging::{RoundJudge, RoundToJudge, RoundVerdict};

/// Where a match is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The round's task must be published.
    Publish,
    /// Seats are generating.
    Generate,
    /// Every seat answered; the rule verifiers run.
    Verify,
    /// The judges score the round.
    Judge,
    /// The round is ranked; the next round starts or the match ends.
    Rank,
}

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
    /// Its sampling settings (JSON).
    pub sampling: serde_json::Value,
    /// Its adapter, if any.
    pub adapter_hash: Option<String>,
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
    pub verdict: RoundVerdict,
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

#[derive(Component)]
struct MatchState {
    match_id: i64,
    rulebook: Arc<Rulebook>,
    seed: u64,
    round: u32,
    phase: Phase,
    deadline_ms: i64,
    seats: Vec<Entity>,
    /// answers[round][seat]: what earlier rounds showed, for debates.
    answers: Vec<Vec<String>>,
    task: Option<spaces::Task>,
    hard_failed: Vec<bool>,
    verdicts: Vec<RoundVerdict>,
    rounds: Vec<RoundRecord>,
}

#[derive(Component)]
struct Seat {
    match_entity: Entity,
    index: usize,
    spec: SeatSpec,
}

#[derive(Component)]
struct Waiting(Ticket);

#[derive(Component, Clone)]
struct Answer {
    prompt: String,
    text: String,
    tokens: u32,
    finish: String,
}

#[derive(Resource)]
struct EngineRes(Box<dyn Engine>);

#[derive(Resource)]
struct JudgeRes(Box<dyn RoundJudge>);

#[derive(Resource)]
struct BusRes(Bus);

#[derive(Resource, Default)]
struct Tickets(HashMap<Ticket, Entity>);

#[derive(Resource, Default)]
struct Finished(Vec<MatchOutcome>);

#[derive(Resource, Default)]
struct Now(i64);

#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
enum MatchSystems {
    Publish,
    Generate,
    Verify,
    Judge,
    Rank,
    Deadline,
}

/// The world of live matches and the schedule that advances it.
pub struct MatchWorld {
    world: World,
    schedule: Schedule,
}

impl MatchWorld {
    /// A world driving `engine` and judged by `judge`, publishing on `bus`.
    pub fn new(engine: Box<dyn Engine>, judge: Box<dyn RoundJudge>, bus: Bus) -> MatchWorld {
        let mut world = World::new();
        world.insert_resource(EngineRes(engine));
        world.insert_resource(JudgeRes(judge));
        world.insert_resource(BusRes(bus));
        world.init_resource::<Tickets>();
        world.init_resource::<Finished>();
        world.init_resource::<Now>();
        let mut schedule = Schedule::default();
        schedule.configure_sets(
            (
                MatchSystems::Publish,
                MatchSystems::Generate,
                MatchSystems::Verify,
                MatchSystems::Judge,
                MatchSystems::Rank,
                MatchSystems::Deadline,
            )
                .chain(),
        );
        schedule.add_systems((
            publish_tasks.in_set(MatchSystems::Publish),
            generate.in_set(MatchSystems::Generate),
            verify_rules.in_set(MatchSystems::Verify),
            judge_rounds.in_set(MatchSystems::Judge),
            rank_rounds.in_set(MatchSystems::Rank),
            enforce_deadlines.in_set(MatchSystems::Deadline),
        ));
        MatchWorld { world, schedule }
    }

    /// Adds a match; its first round is published on the next tick.
    pub fn add_match(&mut self, spec: MatchSpec) {
        let infos = spec
            .seats
            .iter()
            .map(|s| SeatInfo {
                entry_id: s.entry_id,
                agent_id: s.agent_id,
                agent_version_id: s.agent_version_id,
            })
            .collect();
        self.world.resource::<BusRes>().0.publish(
            spec.match_id,
            EventKind::MatchCreated {
                space: spec.rulebook.slug.clone(),
                seats: infos,
                seed: spec.seed as i64,
            },
        );
        let match_entity = self
            .world
            .spawn(MatchState {
                match_id: spec.match_id,
                rulebook: spec.rulebook,
                seed: spec.seed,
                round: 0,
                phase: Phase::Publish,
                deadline_ms: spec.deadline_ms,
                seats: Vec::new(),
                answers: Vec::new(),
                task: None,
                hard_failed: Vec::new(),
                verdicts: Vec::new(),
                rounds: Vec::new(),
            })
            .id();
        let seats: Vec<Entity> = spec
            .seats
            .into_iter()
            .enumerate()
            .map(|(index, s)| {
                self.world
                    .spawn(Seat {
                        match_entity,
                        index,
                        spec: s,
                    })
                    .id()
            })
            .collect();
        self.world
            .get_mut::<MatchState>(match_entity)
            .expect("just spawned")
            .seats = seats;
    }

    /// Runs one tick at time `now_ms` and returns the matches that left the world.
    pub fn tick(&mut self, now_ms: i64) -> Vec<MatchOutcome> {
        self.world.resource_mut::<Now>().0 = now_ms;
        self.schedule.run(&mut self.world);
        std::mem::take(&mut self.world.resource_mut::<Finished>().0)
    }

    /// Matches still in the world.
    pub fn live_matches(&mut self) -> usize {
        self.world.query::<&MatchState>().iter(&self.world).count()
    }

    /// Generations live in the engine.
    pub fn live_generations(&self) -> usize {
        self.world.resource::<EngineRes>().0.live()
    }
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

/// Publishes each due round and submits every seat's generation. A seat the engine
/// refuses (an unknown adapter, a prompt too long for the context) fails its match at
/// once, so it is refunded rather than left to its deadline.
fn publish_tasks(
    mut matches: Query<&mut MatchState>,
    seats: Query<&Seat>,
    mut engine: ResMut<EngineRes>,
    mut tickets: ResMut<Tickets>,
    bus: Res<BusRes>,
    mut finished: ResMut<Finished>,
    mut commands: Commands,
) {
    for mut m in &mut matches {
        if m.phase != Phase::Publish {
            continue;
        }
        let task = m.rulebook.task(m.seed, m.round);
        bus.0.publish(
            m.match_id,
            EventKind::RoundStarted {
                round: m.round,
                task: task.prompt.clone(),
            },
        );
        let mut refused = None;
        for &entity in &m.seats {
            let Ok(seat) = seats.get(entity) else {
                continue;
            };
            let user = m
                .rulebook
                .round_task_text(&task, m.round, seat.index, &m.answers);
            let request = GenRequest {
                system: seat.spec.system_prompt.clone(),
                user,
                sampling: seat.spec.sampling.clone(),
                seed: seat_seed(m.seed, m.round, seat.index),
                adapter_hash: seat.spec.adapter_hash.clone(),
                max_new_tokens: m.rulebook.max_new_tokens,
            };
            match engine.0.submit(request) {
                Ok(ticket) => {
                    tickets.0.insert(ticket, entity);
                    commands
                        .entity(entity)
                        .remove::<Answer>()
                        .insert(Waiting(ticket));
                }
                Err(e) => {
                    tracing::warn!(match_id = m.match_id, error = %e, "engine refused a seat");
                    refused.get_or_insert(format!("seat {} refused: {e}", seat.index));
                }
            }
        }
        m.task = Some(task);
        m.phase = Phase::Generate;
        if let Some(reason) = refused {
            let entry_ids = entry_ids(&m, &seats);
            finished.0.push(MatchOutcome {
                match_id: m.match_id,
                entry_ids,
                result: Err(reason),
            });
            // Swept, its other seats' generations cancelled, by the deadline system.
            m.deadline_ms = i64::MIN;
        }
    }
}

/// One engine step for every waiting seat of every match. If the step fails, every
/// match with a seat waiting on the engine fails at once (and is refunded) rather
/// than stalling until its deadline.
// A bevy system's parameters are what it touches in the world; splitting them would
// only hide that.
#[allow(clippy::too_many_arguments)]
fn generate(
    mut engine: ResMut<EngineRes>,
    mut tickets: ResMut<Tickets>,
    seats: Query<&Seat>,
    mut matches: Query<&mut MatchState>,
    waiting: Query<(&Seat, &Waiting)>,
    bus: Res<BusRes>,
    mut finished: ResMut<Finished>,
    mut commands: Commands,
) {
    if engine.0.live() == 0 {
        return;
    }
    let outputs = match engine.0.step() {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "engine step failed; failing the matches waiting on it");
            let mut failed: Vec<Entity> = Vec::new();
            for (seat, Waiting(ticket)) in &waiting {
                engine.0.cancel(*ticket);
                tickets.0.remove(ticket);
                if !failed.contains(&seat.match_entity) {
                    failed.push(seat.match_entity);
                }
            }
            for entity in failed {
                if let Ok(mut m) = matches.get_mut(entity) {
                    let entry_ids = entry_ids(&m, &seats);
                    finished.0.push(MatchOutcome {
                        match_id: m.match_id,
                        entry_ids,
                        result: Err(format!("generation failed: {e}")),
                    });
                    // Swept (without a second outcome) by the deadline system.
                    m.deadline_ms = i64::MIN;
                }
            }
            return;
        }
    };
    let matches = matches.as_readonly();
    let owner = |seat: &Seat| matches.get(seat.match_entity).ok();
    for out in outputs {
        match out {
            EngineOutput::Delta { ticket, text } => {
                let Some(&entity) = tickets.0.get(&ticket) else {
                    continue;
                };
                if let Ok(seat) = seats.get(entity)
                    && let Some(m) = owner(seat)
                {
                    bus.0.publish(
                        m.match_id,
                        EventKind::TokenDelta {
                            round: m.round,
                            entry_id: seat.spec.entry_id,
                            text,
                        },
                    );
                }
            }
            EngineOutput::Done {
                ticket,
                text,
                tokens,
                finish,
                prompt,
            } => {
                let Some(entity) = tickets.0.remove(&ticket) else {
                    continue;
                };
                if let Ok(seat) = seats.get(entity)
                    && let Some(m) = owner(seat)
                {
                    bus.0.publish(
                        m.match_id,
                        EventKind::ResponseComplete {
                            round: m.round,
                            entry_id: seat.spec.entry_id,
                            text: text.clone(),
                            tokens,
                            finish: finish.clone(),
                        },
                    );
                }
                commands.entity(entity).remove::<Waiting>().insert(Answer {
                    prompt,
                    text,
                    tokens,
                    finish,
                });
            }
        }
    }
}

fn verify_rules(
    mut matches: Query<&mut MatchState>,
    answers: Query<&Answer>,
    waiting: Query<&Waiting>,
) {
    for mut m in &mut matches {
        if m.phase != Phase::Generate {
            continue;
        }
        if m.seats
            .iter()
            .any(|&s| waiting.get(s).is_ok() || answers.get(s).is_err())
        {
            continue;
        }
        let task = m.task.clone().expect("a generating match has a task");
        let hard: Vec<bool> = m
            .seats
            .iter()
            .map(|&s| {
                let text = &answers.get(s).expect("checked above").text;
                spaces::hard_failed(&spaces::verify(&m.rulebook, &task, text))
            })
            .collect();
        m.hard_failed = hard;
        m.phase = Phase::Verify;
    }
}

/// Judges every round that is due this tick, across all matches, in one
/// [`RoundJudge::judge_many`] call, so a model judge scores them in one batch as the
/// generate system decodes them. A round whose judging fails fails its own match
/// (refunded); the other matches go on.
fn judge_rounds(
    mut matches: Query<(Entity, &mut MatchState)>,
    answers: Query<&Answer>,
    judge: Res<JudgeRes>,
    mut finished: ResMut<Finished>,
    seats: Query<&Seat>,
) {
    let due: Vec<(Entity, &MatchState, Vec<&str>)> = matches
        .iter()
        .filter(|(_, m)| m.phase == Phase::Verify)
        .map(|(entity, m)| {
            let texts = m
                .seats
                .iter()
                .map(|&s| answers.get(s).map(|a| a.text.as_str()).unwrap_or(""))
                .collect();
            (entity, m, texts)
        })
        .collect();
    if due.is_empty() {
        return;
    }
    let shown: Vec<Vec<String>> = due.iter().map(|(_, m, _)| shown_history(m)).collect();
    let rounds: Vec<RoundToJudge<'_>> = due
        .iter()
        .zip(&shown)
        .map(|((_, m, texts), history)| RoundToJudge {
            rulebook: &m.rulebook,
            task: m.task.as_ref().expect("a verified match has a task"),
            responses: texts,
            hard_failed: &m.hard_failed,
            history,
        })
        .collect();
    let judged = judge.0.judge_many(&rounds);
    assert_eq!(judged.len(), rounds.len(), "one result per round judged");
    let due: Vec<Entity> = due.into_iter().map(|(entity, _, _)| entity).collect();
    for (entity, result) in due.into_iter().zip(judged) {
        let Ok((_, mut m)) = matches.get_mut(entity) else {
            continue;
        };
        match result {
            Ok(verdicts) => {
                m.verdicts = verdicts;
                m.phase = Phase::Judge;
            }
            Err(e) => {
                let entry_ids = entry_ids(&m, &seats);
                finished.0.push(MatchOutcome {
                    match_id: m.match_id,
                    entry_ids,
                    result: Err(format!("judging failed: {e}")),
                });
                // Marked for removal by the deadline system's sweep.
                m.deadline_ms = i64::MIN;
            }
        }
    }
}

/// The earlier answers this round showed the seats (as `spaces::History` decides):
/// none in the first round or without history, the round before's answers for
/// `opponent_last`, every earlier answer for `all`.
fn shown_history(m: &MatchState) -> Vec<String> {
    match m.rulebook.history {
        spaces::History::None => Vec::new(),
        spaces::History::OpponentLast => m.answers.last().cloned().unwrap_or_default(),
        spaces::History::All => m.answers.concat(),
    }
}

fn entry_ids(m: &MatchState, seats: &Query<&Seat>) -> Vec<i64> {
    m.seats
        .iter()
        .filter_map(|&s| seats.get(s).ok().map(|seat| seat.spec.entry_id))
        .collect()
}

fn rank_rounds(
    mut matches: Query<(Entity, &mut MatchState)>,
    answers: Query<&Answer>,
    seats: Query<&Seat>,
    bus: Res<BusRes>,
    mut finished: ResMut<Finished>,
    mut commands: Commands,
) {
    for (entity, mut m) in &mut matches {
        if m.phase != Phase::Judge {
            continue;
        }
        let task = m.task.take().expect("a judged match has a task");
        let mut round = RoundRecord {
            round: m.round,
            task: task.prompt.clone(),
            seats: Vec::new(),
        };
        let mut texts = Vec::new();
        for (i, &s) in m.seats.iter().enumerate() {
            let (Ok(seat), Ok(answer)) = (seats.get(s), answers.get(s)) else {
                continue;
            };
            let verdict = m.verdicts[i].clone();
            bus.0.publish(
                m.match_id,
                EventKind::Scores {
                    round: m.round,
                    entry_id: seat.spec.entry_id,
                    combined: verdict.combined,
                    hard_failed: verdict.hard_failed,
                    judges: verdict
                        .scores
                        .iter()
                        .map(|s| JudgeLine {
                            judge: s.judge.clone(),
                            score: s.score,
                            rationale: s.rationale.clone(),
                        })
                        .collect(),
                },
            );
            texts.push(answer.text.clone());
            let task_prompt = m
                .rulebook
                .round_task_text(&task, m.round, seat.index, &m.answers);
            round.seats.push(SeatRound {
                entry_id: seat.spec.entry_id,
                prompt: answer.prompt.clone(),
                task_prompt,
                text: answer.text.clone(),
                tokens: answer.tokens,
                finish: answer.finish.clone(),
                verdict,
            });
        }
        m.answers.push(texts);
        m.rounds.push(round);
        m.round += 1;
        if m.round < m.rulebook.rounds {
            m.phase = Phase::Publish;
            continue;
        }
        let n = m.seats.len();
        let totals: Vec<f64> = (0..n)
            .map(|i| {
                let sum: f64 = m
                    .rounds
                    .iter()
                    .map(|r| {
                        let v = &r.seats[i].verdict;
                        if v.hard_failed { 0.0 } else { v.combined }
                    })
                    .sum();
                sum / m.rounds.len() as f64
            })
            .collect();
        let places = crate::ratings::places_from_scores(&totals);
        let entry_ids = entry_ids(&m, &seats);
        bus.0.publish(
            m.match_id,
            EventKind::Ranking {
                places: entry_ids
                    .iter()
                    .copied()
                    .zip(places.iter().copied())
                    .collect(),
            },
        );
        finished.0.push(MatchOutcome {
            match_id: m.match_id,
            entry_ids,
            result: Ok(MatchResult {
                rounds: std::mem::take(&mut m.rounds),
                totals,
                places,
            }),
        });
        for &s in &m.seats {
            commands.entity(s).despawn();
        }
        commands.entity(entity).despawn();
    }
}

fn enforce_deadlines(
    matches: Query<(Entity, &MatchState)>,
    seats: Query<(&Seat, Option<&Waiting>)>,
    now: Res<Now>,
    mut engine: ResMut<EngineRes>,
    mut tickets: ResMut<Tickets>,
    mut finished: ResMut<Finished>,
    mut commands: Commands,
) {
    for (entity, m) in &matches {
        let failed_judging = m.deadline_ms == i64::MIN;
        if !failed_judging && now.0 <= m.deadline_ms {
            continue;
        }
        let mut entry_ids = Vec::with_capacity(m.seats.len());
        for &s in &m.seats {
            if let Ok((seat, waiting)) = seats.get(s) {
                entry_ids.push(seat.spec.entry_id);
                if let Some(Waiting(ticket)) = waiting {
                    engine.0.cancel(*ticket);
                    tickets.0.remove(ticket);
                }
            }
            commands.entity(s).despawn();
        }
        if !failed_judging {
            finished.0.push(MatchOutcome {
                match_id: m.match_id,
                entry_ids,
                result: Err("deadline passed".into()),
            });
        }
        commands.entity(entity).despawn();
    }
}
