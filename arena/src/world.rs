//! One bevy_ecs world for every live match.
//!
//! Matches and their seats are entities. Where a match is shows as one marker
//! component (`Publishing`, `Generating`, `Judging`, `Ranking`); a match that
//! must be refunded carries `Failed`. The rulebooks, the engine, the judges and the
//! event sink are resources. Each tick runs the ordered sets publish → generate →
//! verify → judge → rank → deadline → sweep → forward. The generate system advances
//! every waiting seat of every match together, one engine step per tick, so a model
//! decodes all of them in one batched forward pass; the judge system likewise hands
//! every round due that tick to the judges at once. Systems write what happened as
//! bevy messages: `WorldEvent`s, which one system forwards to the sink, and
//! `Finished` outcomes, which [`MatchWorld::tick`] hands back for settlement.

use std::collections::HashMap;
use std::sync::Arc;

use bevy_ecs::prelude::*;
use spaces::Rulebook;

use crate::engine::{Engine, EngineOutput, GenRequest, Ticket};
use crate::events::{EventKind, EventSink, SeatInfo};
use crate::judging::{RoundJudge, RoundToJudge};
use crate::types::{
    MatchOutcome, MatchResult, MatchSpec, RoundRecord, SeatRound, SeatSpec, seat_seed,
};
use judges::ResponseVerdict;

/// A live match: what it is. Where it is shows as a phase marker.
#[derive(Component)]
struct Match {
    match_id: i64,
    rulebook: Arc<Rulebook>,
    seed: u64,
    deadline_ms: i64,
    seats: Vec<Entity>,
}

/// The rounds a match has played so far.
#[derive(Component, Default)]
struct Played {
    /// The round now in play (0-based).
    round: u32,
    /// answers[round][seat]: what earlier rounds showed, for debates.
    answers: Vec<Vec<String>>,
    rounds: Vec<RoundRecord>,
}

/// Phase marker: the round's task must be published.
#[derive(Component)]
pub(crate) struct Publishing;

/// Phase marker: seats are generating; once all answered, the rule verifiers run.
#[derive(Component)]
pub(crate) struct Generating;

/// Phase marker: every seat answered and the rules ran; the judges score the round.
#[derive(Component)]
pub(crate) struct Judging;

/// Phase marker: the round is judged; it is ranked and the next round starts or the
/// match ends.
#[derive(Component)]
pub(crate) struct Ranking;

/// The match cannot finish and must be refunded, for this reason. The sweep takes it
/// out of the world.
#[derive(Component, Debug, Clone)]
pub(crate) struct Failed(pub String);

/// The live (not failed) matches in phase `P`.
type InPhase<P> = (With<P>, Without<Failed>);

/// The round's task, from publishing until ranking.
#[derive(Component)]
struct CurrentTask(spaces::Task);

/// Per seat, whether the round's answer broke a hard rule, and how close it came to
/// keeping them (`spaces::hard_grade`).
#[derive(Component)]
struct HardRules {
    failed: Vec<bool>,
    grades: Vec<f64>,
}

/// The panel's verdicts on the round, per seat.
#[derive(Component)]
struct Verdicts(Vec<ResponseVerdict>);

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

/// Something that happened in a match, for spectators.
#[derive(Message, Debug, Clone)]
pub(crate) struct WorldEvent {
    /// The match.
    pub match_id: i64,
    /// What happened.
    pub kind: EventKind,
}

/// A match left the world.
#[derive(Message, Debug, Clone)]
pub(crate) struct Finished(pub MatchOutcome);

#[derive(Resource)]
struct EngineRes(Box<dyn Engine>);

#[derive(Resource)]
struct JudgeRes(Box<dyn RoundJudge>);

#[derive(Resource)]
struct SinkRes(Box<dyn EventSink>);

#[derive(Resource, Default)]
struct Tickets(HashMap<Ticket, Entity>);

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
    Sweep,
    Forward,
}

/// The world of live matches and the schedule that advances it.
pub struct MatchWorld {
    world: World,
    schedule: Schedule,
}

impl MatchWorld {
    /// A world driving `engine`, judged by `judge`, publishing its events to `sink`.
    pub fn new(
        engine: Box<dyn Engine>,
        judge: Box<dyn RoundJudge>,
        sink: impl EventSink,
    ) -> MatchWorld {
        let mut world = World::new();
        world.insert_resource(EngineRes(engine));
        world.insert_resource(JudgeRes(judge));
        world.insert_resource(SinkRes(Box::new(sink)));
        world.init_resource::<Tickets>();
        world.init_resource::<Now>();
        world.init_resource::<Messages<WorldEvent>>();
        world.init_resource::<Messages<Finished>>();
        let mut schedule = Schedule::default();
        schedule.configure_sets(
            (
                MatchSystems::Publish,
                MatchSystems::Generate,
                MatchSystems::Verify,
                MatchSystems::Judge,
                MatchSystems::Rank,
                MatchSystems::Deadline,
                MatchSystems::Sweep,
                MatchSystems::Forward,
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
            sweep_failed.in_set(MatchSystems::Sweep),
            forward_events.in_set(MatchSystems::Forward),
        ));
        MatchWorld { world, schedule }
    }

    /// Adds a match (announced at once); its first round is published on the next tick.
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
        self.world.write_message(WorldEvent {
            match_id: spec.match_id,
            kind: EventKind::MatchCreated {
                space: spec.rulebook.slug.clone(),
                seats: infos,
                seed: spec.seed as i64,
            },
        });
        let match_entity = self
            .world
            .spawn((
                Match {
                    match_id: spec.match_id,
                    rulebook: spec.rulebook,
                    seed: spec.seed,
                    deadline_ms: spec.deadline_ms,
                    seats: Vec::new(),
                },
                Played::default(),
                Publishing,
            ))
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
            .get_mut::<Match>(match_entity)
            .expect("just spawned")
            .seats = seats;
        self.world
            .run_system_cached(forward_events)
            .expect("forwarding events cannot fail");
    }

    /// Runs one tick at time `now_ms` and returns the matches that left the world.
    pub fn tick(&mut self, now_ms: i64) -> Vec<MatchOutcome> {
        self.world.resource_mut::<Now>().0 = now_ms;
        self.schedule.run(&mut self.world);
        self.world
            .resource_mut::<Messages<Finished>>()
            .drain()
            .map(|Finished(outcome)| outcome)
            .collect()
    }

    /// Matches still in the world.
    pub fn live_matches(&mut self) -> usize {
        self.world.query::<&Match>().iter(&self.world).count()
    }

    /// Generations live in the engine.
    pub fn live_generations(&self) -> usize {
        self.world.resource::<EngineRes>().0.live()
    }
}

/// Publishes each due round and submits every seat's generation. A seat the engine
/// refuses (an unknown adapter, a prompt too long for the context) fails its match at
/// once, so it is refunded rather than left to its deadline.
fn publish_tasks(
    matches: Query<(Entity, &Match, &Played), InPhase<Publishing>>,
    seats: Query<&Seat>,
    mut engine: ResMut<EngineRes>,
    mut tickets: ResMut<Tickets>,
    mut events: MessageWriter<WorldEvent>,
    mut commands: Commands,
) {
    for (entity, m, played) in &matches {
        let task = m.rulebook.task(m.seed, played.round);
        events.write(WorldEvent {
            match_id: m.match_id,
            kind: EventKind::RoundStarted {
                round: played.round,
                task: task.prompt.clone(),
            },
        });
        let mut refused = None;
        for &seat_entity in &m.seats {
            let Ok(seat) = seats.get(seat_entity) else {
                continue;
            };
            let user = m
                .rulebook
                .round_task_text(&task, played.round, seat.index, &played.answers);
            let request = GenRequest {
                system: seat.spec.system_prompt.clone(),
                user,
                sampling: seat.spec.sampling.clone(),
                seed: seat_seed(m.seed, played.round, seat.index),
                adapter_hash: seat.spec.adapter_hash.clone(),
                base_model: seat.spec.base_model.clone(),
                max_new_tokens: m.rulebook.max_new_tokens,
            };
            match engine.0.submit(request) {
                Ok(ticket) => {
                    tickets.0.insert(ticket, seat_entity);
                    commands
                        .entity(seat_entity)
                        .remove::<Answer>()
                        .insert(Waiting(ticket));
                }
                Err(e) => {
                    tracing::warn!(match_id = m.match_id, error = %e, "engine refused a seat");
                    refused.get_or_insert(format!("seat {} refused: {e}", seat.index));
                }
            }
        }
        let mut phase = commands.entity(entity);
        phase
            .remove::<Publishing>()
            .insert((Generating, CurrentTask(task)));
        if let Some(reason) = refused {
            phase.insert(Failed(reason));
        }
    }
}

/// One engine step for every waiting seat of every match. If the step fails, every
/// match with a seat waiting on the engine fails at once (and is refunded) rather
/// than stalling until its deadline.
fn generate(
    mut engine: ResMut<EngineRes>,
    mut tickets: ResMut<Tickets>,
    seats: Query<&Seat>,
    matches: Query<(&Match, &Played)>,
    waiting: Query<(&Seat, &Waiting)>,
    mut events: MessageWriter<WorldEvent>,
    mut commands: Commands,
) {
    if engine.0.live() == 0 {
        return;
    }
    let outputs = match engine.0.step() {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "engine step failed; failing the matches waiting on it");
            for (seat, Waiting(ticket)) in &waiting {
                engine.0.cancel(*ticket);
                tickets.0.remove(ticket);
                commands
                    .entity(seat.match_entity)
                    .insert(Failed(format!("generation failed: {e}")));
            }
            return;
        }
    };
    // The match and round a seat's output belongs to.
    let place = |entity: Entity| {
        let seat = seats.get(entity).ok()?;
        let (m, played) = matches.get(seat.match_entity).ok()?;
        Some((m.match_id, played.round, seat.spec.entry_id))
    };
    for out in outputs {
        match out {
            EngineOutput::Delta { ticket, text } => {
                if let Some((match_id, round, entry_id)) =
                    tickets.0.get(&ticket).and_then(|&e| place(e))
                {
                    events.write(WorldEvent {
                        match_id,
                        kind: EventKind::TokenDelta {
                            round,
                            entry_id,
                            text,
                        },
                    });
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
                if let Some((match_id, round, entry_id)) = place(entity) {
                    events.write(WorldEvent {
                        match_id,
                        kind: EventKind::ResponseComplete {
                            round,
                            entry_id,
                            text: text.clone(),
                            tokens,
                            finish: finish.clone(),
                        },
                    });
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

/// Once every seat of a generating match answered, runs the Space's rule verifiers
/// and hands the round to the judges.
fn verify_rules(
    matches: Query<(Entity, &Match, &CurrentTask), InPhase<Generating>>,
    answers: Query<&Answer>,
    waiting: Query<&Waiting>,
    mut commands: Commands,
) {
    for (entity, m, CurrentTask(task)) in &matches {
        if m.seats
            .iter()
            .any(|&s| waiting.get(s).is_ok() || answers.get(s).is_err())
        {
            continue;
        }
        let (failed, grades) = m
            .seats
            .iter()
            .map(|&s| {
                let text = &answers.get(s).expect("checked above").text;
                let outcomes = spaces::verify(&m.rulebook, task, text);
                (
                    spaces::hard_failed(&outcomes),
                    spaces::hard_grade(&outcomes),
                )
            })
            .unzip();
        commands
            .entity(entity)
            .remove::<Generating>()
            .insert((Judging, HardRules { failed, grades }));
    }
}

/// Judges every round that is due this tick, across all matches, in one
/// [`RoundJudge::judge_many`] call, so a model judge scores them in one batch as the
/// generate system decodes them. A round whose judging fails fails its own match
/// (refunded); the other matches go on.
fn judge_rounds(
    matches: Query<(Entity, &Match, &Played, &CurrentTask, &HardRules), InPhase<Judging>>,
    answers: Query<&Answer>,
    judge: Res<JudgeRes>,
    mut commands: Commands,
) {
    let due: Vec<_> = matches.iter().collect();
    if due.is_empty() {
        return;
    }
    let texts: Vec<Vec<&str>> = due
        .iter()
        .map(|(_, m, ..)| {
            m.seats
                .iter()
                .map(|&s| answers.get(s).map(|a| a.text.as_str()).unwrap_or(""))
                .collect()
        })
        .collect();
    let shown: Vec<Vec<String>> = due
        .iter()
        .map(|(_, m, played, ..)| shown_history(&m.rulebook, played))
        .collect();
    let rounds: Vec<RoundToJudge<'_>> = due
        .iter()
        .zip(&texts)
        .zip(&shown)
        .map(
            |(((_, m, _, CurrentTask(task), hard), texts), history)| RoundToJudge {
                rulebook: &m.rulebook,
                task,
                responses: texts,
                hard_failed: &hard.failed,
                history,
            },
        )
        .collect();
    let judged = judge.0.judge_many(&rounds);
    assert_eq!(judged.len(), rounds.len(), "one result per round judged");
    for ((entity, .., hard), result) in due.iter().zip(judged) {
        match result {
            Ok(mut verdicts) => {
                let checks: Vec<(bool, f64)> = hard
                    .failed
                    .iter()
                    .copied()
                    .zip(hard.grades.iter().copied())
                    .collect();
                judges::ranking::set_grades(&mut verdicts, &checks);
                commands
                    .entity(*entity)
                    .remove::<Judging>()
                    .insert((Ranking, Verdicts(verdicts)));
            }
            Err(e) => {
                commands
                    .entity(*entity)
                    .insert(Failed(format!("judging failed: {e}")));
            }
        }
    }
}

/// The earlier answers this round showed the seats (as `spaces::History` decides):
/// none in the first round or without history, the round before's answers for
/// `opponent_last`, every earlier answer for `all`.
fn shown_history(rulebook: &Rulebook, played: &Played) -> Vec<String> {
    match rulebook.history {
        spaces::History::None => Vec::new(),
        spaces::History::OpponentLast => played.answers.last().cloned().unwrap_or_default(),
        spaces::History::All => played.answers.concat(),
    }
}

/// Each seat's base model hash, when every seat records one.
fn base_models(m: &Match, seats: &Query<&Seat>) -> Vec<String> {
    m.seats
        .iter()
        .map(|&s| {
            seats
                .get(s)
                .ok()
                .and_then(|seat| seat.spec.base_model_sha256.clone())
        })
        .collect::<Option<Vec<String>>>()
        .unwrap_or_default()
}

fn entry_ids(m: &Match, seats: &Query<&Seat>) -> Vec<i64> {
    m.seats
        .iter()
        .filter_map(|&s| seats.get(s).ok().map(|seat| seat.spec.entry_id))
        .collect()
}

/// Records the judged round with every seat's scores; starts the next round, or ranks
/// the match and hands it back.
fn rank_rounds(
    mut matches: Query<(Entity, &Match, &mut Played, &CurrentTask, &Verdicts), InPhase<Ranking>>,
    answers: Query<&Answer>,
    seats: Query<&Seat>,
    mut events: MessageWriter<WorldEvent>,
    mut finished: MessageWriter<Finished>,
    mut commands: Commands,
) {
    for (entity, m, mut played, CurrentTask(task), Verdicts(verdicts)) in &mut matches {
        let mut round = RoundRecord {
            round: played.round,
            task: task.prompt.clone(),
            seats: Vec::new(),
        };
        let mut texts = Vec::new();
        for (i, &s) in m.seats.iter().enumerate() {
            let (Ok(seat), Ok(answer)) = (seats.get(s), answers.get(s)) else {
                continue;
            };
            let verdict = verdicts[i].clone();
            events.write(WorldEvent {
                match_id: m.match_id,
                kind: EventKind::Scores {
                    round: played.round,
                    entry_id: seat.spec.entry_id,
                    combined: verdict.combined,
                    hard_failed: verdict.hard_failed,
                    judges: verdict.scores.clone(),
                },
            });
            texts.push(answer.text.clone());
            let task_prompt =
                m.rulebook
                    .round_task_text(task, played.round, seat.index, &played.answers);
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
        played.answers.push(texts);
        played.rounds.push(round);
        played.round += 1;
        if played.round < m.rulebook.rounds {
            commands
                .entity(entity)
                .remove::<(Ranking, CurrentTask, HardRules, Verdicts)>()
                .insert(Publishing);
            continue;
        }
        let totals = mean_scores(&played.rounds, m.seats.len());
        let places = judges::ranking::places_from_scores(&totals);
        let entry_ids = entry_ids(m, &seats);
        events.write(WorldEvent {
            match_id: m.match_id,
            kind: EventKind::Ranking {
                places: entry_ids
                    .iter()
                    .copied()
                    .zip(places.iter().copied())
                    .collect(),
            },
        });
        finished.write(Finished(MatchOutcome {
            match_id: m.match_id,
            entry_ids,
            result: Ok(MatchResult {
                rounds: std::mem::take(&mut played.rounds),
                totals,
                places,
                base_models: base_models(m, &seats),
            }),
        }));
        for &s in &m.seats {
            commands.entity(s).despawn();
        }
        commands.entity(entity).despawn();
    }
}

/// Each seat's mean round score ([`judges::round_scores`]: a hard failure earns only
/// a graded sliver below every answer that kept the rules).
fn mean_scores(rounds: &[RoundRecord], seats: usize) -> Vec<f64> {
    let mut sums = vec![0.0; seats];
    for r in rounds {
        let verdicts: Vec<ResponseVerdict> = r.seats.iter().map(|s| s.verdict.clone()).collect();
        for (sum, score) in sums.iter_mut().zip(judges::round_scores(&verdicts)) {
            *sum += score;
        }
    }
    sums.into_iter().map(|s| s / rounds.len() as f64).collect()
}

/// Fails every match whose deadline has passed.
fn enforce_deadlines(
    matches: Query<(Entity, &Match), Without<Failed>>,
    now: Res<Now>,
    mut commands: Commands,
) {
    for (entity, m) in &matches {
        if now.0 > m.deadline_ms {
            commands
                .entity(entity)
                .insert(Failed("deadline passed".into()));
        }
    }
}

/// Takes every failed match out of the world, cancelling its seats' generations, and
/// hands it back for a refund.
fn sweep_failed(
    matches: Query<(Entity, &Match, &Failed)>,
    seats: Query<(&Seat, Option<&Waiting>)>,
    mut engine: ResMut<EngineRes>,
    mut tickets: ResMut<Tickets>,
    mut finished: MessageWriter<Finished>,
    mut commands: Commands,
) {
    for (entity, m, Failed(reason)) in &matches {
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
        finished.write(Finished(MatchOutcome {
            match_id: m.match_id,
            entry_ids,
            result: Err(reason.clone()),
        }));
        commands.entity(entity).despawn();
    }
}

/// Sends this tick's events to the sink, in the order they were written.
fn forward_events(mut events: ResMut<Messages<WorldEvent>>, sink: Res<SinkRes>) {
    for WorldEvent { match_id, kind } in events.drain() {
        sink.0.publish(match_id, kind);
    }
}
