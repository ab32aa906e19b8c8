//! Matches: the list (newest first, by Space and status, with a keyset cursor), one
//! match's seats, payouts and rating changes, and its transcript with every judge's
//! score and rationale.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiPath, ApiQuery};
use crate::error::{Error, ErrorBody, Result};
use crate::state::AppState;

/// A match.
#[derive(Debug, Serialize, ToSchema)]
pub struct MatchView {
    /// Id.
    pub id: i64,
    /// The Space.
    pub space_id: i64,
    /// The fee tier.
    pub fee_tier_id: i64,
    /// The recorded seed.
    pub seed: i64,
    /// `pending`, `running`, `settled`, `refunded` or `failed`.
    pub status: String,
    /// Created, ms.
    pub created_at: i64,
    /// Started, ms.
    pub started_at: Option<i64>,
    /// Finished, ms.
    pub finished_at: Option<i64>,
    /// Hash of the result, for replays.
    pub result_hash: Option<String>,
}

impl From<store::Match> for MatchView {
    fn from(m: store::Match) -> MatchView {
        MatchView {
            id: m.id,
            space_id: m.space_id,
            fee_tier_id: m.fee_tier_id,
            seed: m.seed,
            status: m.status.to_string(),
            created_at: m.created_at,
            started_at: m.started_at,
            finished_at: m.finished_at,
            result_hash: m.result_hash,
        }
    }
}

/// One seat of a match.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeatView {
    /// The entry.
    pub entry_id: i64,
    /// The agent.
    pub agent_id: i64,
    /// Its name.
    pub agent_name: String,
    /// The version that played.
    pub agent_version_id: i64,
    /// The sha256 of the base model the seat played on, once settled (`None` for
    /// matches settled before seats recorded it): the result hash commits to it.
    pub base_model_sha256: Option<String>,
    /// Final place, once settled (1 = best).
    pub place: Option<i64>,
    /// Payout, wei as decimal text, once settled.
    pub payout_wei: Option<String>,
    /// mu before the match, if the agent had a rating.
    pub mu_before: Option<f64>,
    /// mu after the match.
    pub mu_after: Option<f64>,
    /// sigma after the match.
    pub sigma_after: Option<f64>,
}

/// A match with its seats and outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct MatchDetail {
    /// The match.
    #[serde(rename = "match")]
    pub match_: MatchView,
    /// The Space's slug.
    pub space: String,
    /// The seats, by entry.
    pub seats: Vec<SeatView>,
    /// The pot, wei as decimal text, once settled.
    pub pot_wei: Option<String>,
    /// The treasury's share, wei as decimal text, once settled.
    pub treasury_wei: Option<String>,
    /// The Merkle root over the seats' results (`docs/proof-of-learning.md`), once
    /// settled: what proof-of-learning results roots build on, and what the Arena
    /// contract stores for a paid match.
    pub result_root: Option<String>,
}

/// One judge's score.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScoreView {
    /// Judge name.
    pub judge: String,
    /// Score in [0, 1].
    pub score: f64,
    /// Rationale.
    pub rationale: String,
}

/// One answer in a round.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResponseView {
    /// The entry.
    pub entry_id: i64,
    /// The answer.
    pub text: String,
    /// Generated tokens.
    pub tokens: i64,
    /// Why generation stopped.
    pub finish_reason: String,
    /// Every judge's score.
    pub scores: Vec<ScoreView>,
}

/// One round of a transcript.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoundView {
    /// 0-based index.
    pub round_index: i64,
    /// The task.
    pub task: String,
    /// The answers, by entry.
    pub responses: Vec<ResponseView>,
}

/// Filters of the match list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MatchQuery {
    /// Only this Space (slug).
    pub space: Option<String>,
    /// Only this status.
    #[param(pattern = r"^(pending|running|settled|refunded|failed)$")]
    pub status: Option<String>,
    /// Only ids below this (the previous page's last id).
    pub before: Option<i64>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

/// The match list for a query.
pub(crate) async fn list(state: &AppState, q: &MatchQuery) -> Result<Vec<MatchView>> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(Error::invalid("limit", "must be within [1, 100]"));
    }
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(s.parse::<store::MatchStatus>().map_err(|_| {
            let all: Vec<&str> = store::MatchStatus::ALL.iter().map(|s| s.as_str()).collect();
            Error::invalid("status", format!("must be one of {}", all.join(", ")))
        })?),
    };
    let space_id = match &q.space {
        Some(slug) => Some(state.store.space_by_slug(slug).await?.id),
        None => None,
    };
    let rows = state
        .store
        .recent_matches(space_id, status, q.before, limit)
        .await?;
    Ok(rows.into_iter().map(MatchView::from).collect())
}

/// One match with its seats, payouts and rating changes.
pub(crate) async fn detail(state: &AppState, id: i64) -> Result<MatchDetail> {
    let m = state.store.get_match(id).await?;
    let space = state.store.space(m.space_id).await?.slug;
    let payouts = state.store.match_payouts(id).await?;
    let changes = state.store.match_rating_changes(id).await?;
    let mut seats = Vec::new();
    for e in state.store.match_entries(id).await? {
        let agent = state.store.agent(e.agent_id).await?;
        let payout = payouts.iter().find(|p| p.entry_id == e.id);
        let change = changes.iter().find(|c| c.agent_id == e.agent_id);
        let before = match change {
            Some(_) => state
                .store
                .rating_before_match(e.agent_id, m.space_id, id)
                .await?
                .map(|p| p.mu),
            None => None,
        };
        seats.push(SeatView {
            entry_id: e.id,
            agent_id: e.agent_id,
            agent_name: agent.name,
            agent_version_id: e.agent_version_id,
            base_model_sha256: e.base_model_sha256,
            place: payout.map(|p| p.place),
            payout_wei: payout.map(|p| p.amount_wei.to_string()),
            mu_before: before,
            mu_after: change.map(|c| c.mu),
            sigma_after: change.map(|c| c.sigma),
        });
    }
    let settlement = state.store.match_settlement(id).await?;
    Ok(MatchDetail {
        match_: m.into(),
        space,
        seats,
        pot_wei: settlement.as_ref().map(|s| s.pot_wei.to_string()),
        treasury_wei: settlement.as_ref().map(|s| s.treasury_wei.to_string()),
        result_root: settlement.and_then(|s| s.result_root),
    })
}

/// A match's rounds with every answer and every judge's score and rationale.
pub(crate) async fn transcript(state: &AppState, id: i64) -> Result<Vec<RoundView>> {
    state.store.get_match(id).await?;
    let mut rounds = Vec::new();
    for r in state.store.rounds(id).await? {
        let mut responses = Vec::new();
        for resp in state.store.responses(r.id).await? {
            let scores = state.store.judge_scores(resp.id).await?;
            responses.push(ResponseView {
                entry_id: resp.entry_id,
                text: resp.text,
                tokens: resp.tokens,
                finish_reason: resp.finish_reason,
                scores: scores
                    .into_iter()
                    .map(|s| ScoreView {
                        judge: s.judge,
                        score: s.score,
                        rationale: s.rationale,
                    })
                    .collect(),
            });
        }
        rounds.push(RoundView {
            round_index: r.round_index,
            task: r.task,
            responses,
        });
    }
    Ok(rounds)
}

/// Matches, newest first.
#[utoipa::path(get, path = "/matches", tag = "matches", params(MatchQuery),
    responses((status = 200, body = Vec<MatchView>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_matches(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<MatchQuery>,
) -> Result<Json<Vec<MatchView>>> {
    Ok(Json(list(&state, &q).await?))
}

/// One match with its seats, payouts and rating changes.
#[utoipa::path(get, path = "/matches/{id}", tag = "matches",
    params(("id" = i64, Path, description = "Match id")),
    responses((status = 200, body = MatchDetail), (status = 404, body = ErrorBody)))]
async fn get_match(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<MatchDetail>> {
    Ok(Json(detail(&state, id).await?))
}

/// A match's transcript: tasks, answers, judges' scores and rationales.
#[utoipa::path(get, path = "/matches/{id}/transcript", tag = "matches",
    params(("id" = i64, Path, description = "Match id")),
    responses((status = 200, body = Vec<RoundView>), (status = 404, body = ErrorBody)))]
async fn get_transcript(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<RoundView>>> {
    Ok(Json(transcript(&state, id).await?))
}

/// Match routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_matches))
        .routes(routes!(get_match))
        .routes(routes!(get_transcript))
}
