//! Disputes: re-running a settled match from its record (seed, Space version, agent
//! versions and adapters, judge panel) and comparing the result hash with the stored
//! one. A mismatch is a dispute, reported with the first thing that differs.

use serde::Serialize;
use store::Store;

use crate::bus::Bus;
use crate::play::{RunnerError, SpaceSlot};
use arena::engine::Engine;
use arena::judging::RoundJudge;
use arena::types::{MatchResult, MatchSpec, SeatSpec};
use arena::world::MatchWorld;

/// What a replay found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayReport {
    /// The match.
    pub match_id: i64,
    /// The hash stored at settlement.
    pub stored_hash: String,
    /// The hash the replay produced.
    pub replay_hash: String,
    /// `None` when the hashes agree; otherwise the first difference found.
    pub dispute: Option<String>,
}

/// The match's seats as recorded: entries in id order (the order the runner seats
/// them), each with the agent version that played and the base model it played on.
/// A seat that recorded its base model's hash plays on the served model with that
/// hash, whatever it is called now, and cannot be replayed where none has it; a seat
/// settled before seats recorded one plays on the default base model, the only one
/// agents played on then.
pub(crate) async fn recorded_seats(
    store: &Store,
    match_id: i64,
    models: &crate::base_models::BaseModelMenu,
) -> Result<Vec<SeatSpec>, RunnerError> {
    let entries = store.match_entries(match_id).await?;
    // A replay plays the settings as recorded, whatever today's limits say.
    let (mut seats, _refusal) =
        crate::play::load_seats(store, &entries, usize::MAX, models).await?;
    for (seat, entry) in seats.iter_mut().zip(&entries) {
        match &entry.base_model_sha256 {
            Some(recorded) => {
                let served = models
                    .choices()
                    .iter()
                    .find(|c| &c.sha256 == recorded)
                    .ok_or_else(|| {
                        RunnerError::Replay(format!(
                            "entry {} played on base model {recorded}, which is not served \
                             here (served: {})",
                            entry.id,
                            models
                                .choices()
                                .iter()
                                .map(|c| format!("{} {}", c.name, c.sha256))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })?;
                seat.base_model = served.name.clone();
                seat.base_model_sha256 = Some(recorded.clone());
            }
            // Settled before seats recorded their model: every such match ran on the
            // default, whatever the agent's label says.
            None => {
                seat.base_model = String::new();
                seat.base_model_sha256 = None;
            }
        }
    }
    Ok(seats)
}

/// Replays a settled match with `engine` and `judge` and compares the result.
pub async fn replay_match(
    store: &Store,
    spaces: &[SpaceSlot],
    engine: Box<dyn Engine>,
    judge: Box<dyn RoundJudge>,
    models: &crate::base_models::BaseModelMenu,
    match_id: i64,
) -> Result<ReplayReport, RunnerError> {
    let m = store.get_match(match_id).await?;
    let stored_hash = match (m.status, &m.result_hash) {
        (store::MatchStatus::Settled, Some(h)) => h.clone(),
        _ => {
            return Err(RunnerError::Replay(format!(
                "match {match_id} is {}; only settled matches can be replayed",
                m.status
            )));
        }
    };
    let slot = spaces
        .iter()
        .find(|s| s.space.id == m.space_id)
        .ok_or_else(|| RunnerError::Replay(format!("space {} is not loaded", m.space_id)))?;
    if slot.rulebook.version_hash() != m.space_version {
        return Err(RunnerError::Replay(format!(
            "the {} rulebook changed since match {match_id} (recorded version {}, loaded {})",
            slot.rulebook.slug,
            m.space_version,
            slot.rulebook.version_hash()
        )));
    }
    let seats = recorded_seats(store, match_id, models).await?;
    let mut world = MatchWorld::new(engine, judge, Bus::new());
    world.add_match(MatchSpec {
        match_id,
        rulebook: slot.rulebook.clone(),
        seed: m.seed as u64,
        seats,
        deadline_ms: i64::MAX,
    });
    let result = loop {
        let mut out = tokio::task::block_in_place(|| world.tick(0));
        if let Some(o) = out.pop() {
            break o
                .result
                .map_err(|e| RunnerError::Replay(format!("replay failed: {e}")))?;
        }
    };
    let replay_hash = result.hash();
    let dispute = if replay_hash == stored_hash {
        None
    } else {
        Some(
            first_difference(store, match_id, &result)
                .await?
                .unwrap_or_else(|| {
                    "the transcript and scores agree; the difference is in places, totals or \
                     rationales"
                        .into()
                }),
        )
    };
    Ok(ReplayReport {
        match_id,
        stored_hash,
        replay_hash,
        dispute,
    })
}

fn clip(s: &str) -> String {
    let short: String = s.chars().take(80).collect();
    if short.len() < s.len() {
        format!("{short:?}…")
    } else {
        format!("{short:?}")
    }
}

/// The first stored answer or judge score the replay does not reproduce.
async fn first_difference(
    store: &Store,
    match_id: i64,
    replay: &MatchResult,
) -> Result<Option<String>, RunnerError> {
    let rounds = store.rounds(match_id).await?;
    for (stored, played) in rounds.iter().zip(&replay.rounds) {
        if stored.task != played.task {
            return Ok(Some(format!(
                "round {}: task {} was recorded, the replay drew {}",
                played.round,
                clip(&stored.task),
                clip(&played.task)
            )));
        }
        let responses = store.responses(stored.id).await?;
        for seat in &played.seats {
            let Some(r) = responses.iter().find(|r| r.entry_id == seat.entry_id) else {
                return Ok(Some(format!(
                    "round {}: entry {} has no stored response",
                    played.round, seat.entry_id
                )));
            };
            if r.prompt != seat.prompt {
                return Ok(Some(format!(
                    "round {}, entry {}: the prompt differs (recorded {}, replay {})",
                    played.round,
                    seat.entry_id,
                    clip(&r.prompt),
                    clip(&seat.prompt)
                )));
            }
            if r.text != seat.text {
                return Ok(Some(format!(
                    "round {}, entry {}: recorded answer {}, replay answer {}",
                    played.round,
                    seat.entry_id,
                    clip(&r.text),
                    clip(&seat.text)
                )));
            }
            let scores = store.judge_scores(r.id).await?;
            for line in &seat.verdict.scores {
                let judge = &line.judge.name;
                let model_hash = &line.judge.model_hash;
                match scores.iter().find(|s| &s.judge == judge) {
                    None => {
                        return Ok(Some(format!(
                            "round {}, entry {}: judge {} has no stored score",
                            played.round, seat.entry_id, judge
                        )));
                    }
                    Some(s) if &s.model_hash != model_hash => {
                        return Ok(Some(format!(
                            "round {}, entry {}: judge {} ran model {} but {} was recorded",
                            played.round, seat.entry_id, judge, model_hash, s.model_hash
                        )));
                    }
                    Some(s) if s.score != line.score.clamp(0.0, 1.0) => {
                        return Ok(Some(format!(
                            "round {}, entry {}: judge {} scored {} but {} was recorded",
                            played.round, seat.entry_id, judge, line.score, s.score
                        )));
                    }
                    Some(_) => {}
                }
            }
        }
    }
    Ok(None)
}
