//! People's votes on finished rounds: a signed-in spectator is offered two answers of
//! one round that the judge panel paired, in an order fixed per voter and pair, with
//! no names, and says which is better. One vote per account per round, never on a
//! match where the voter owns a seat. The votes form their own preference dataset
//! (`GET /datasets/human-votes`) and measure, per Space, how often the panel agreed
//! with people (`GET /votes/agreement`): Chatbot Arena's signal, inside the arena.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiQuery};
use crate::auth::AuthUser;
use crate::error::{Error, ErrorBody, Result};
use crate::state::AppState;

/// One answer on offer, without its agent.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Answer {
    /// The answer (what a vote names).
    pub response_id: i64,
    /// Its text.
    pub text: String,
}

/// Two answers to compare.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VoteOffer {
    /// The pair to vote on.
    pub pair_id: i64,
    /// The Space's slug.
    pub space: String,
    /// The round's task.
    pub task: String,
    /// Answer A and answer B, in an order that does not say which the panel chose.
    pub answers: [Answer; 2],
}

/// A vote.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVote {
    /// The pair offered.
    pub pair_id: i64,
    /// The answer you found better (one of the pair's two `response_id`s).
    pub chosen_response_id: i64,
}

/// A seat revealed after the vote.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Revealed {
    /// The answer.
    pub response_id: i64,
    /// Its agent.
    pub agent_id: i64,
    /// The agent's name.
    pub agent_name: String,
}

/// What a vote reveals: who wrote which answer, and what the panel chose.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VoteResult {
    /// The vote.
    pub vote_id: i64,
    /// The match, now safe to open.
    pub match_id: i64,
    /// The answer you preferred.
    pub chosen: Revealed,
    /// The other.
    pub rejected: Revealed,
    /// Whether the judge panel preferred the same answer.
    pub panel_agrees: bool,
}

/// How often the panel agreed with people in one Space.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AgreementView {
    /// The Space's slug.
    pub space: String,
    /// Votes cast.
    pub votes: i64,
    /// Votes where the panel chose the same answer.
    pub agreed: i64,
    /// `agreed / votes`.
    pub agreement: f64,
}

/// Which side answer A is for this voter and pair: fixed, so a reload shows the same
/// order, and independent of which answer the panel chose.
fn chosen_first(user_id: i64, pair_id: i64) -> bool {
    let mut z = (user_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (pair_id as u64);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) & 1 == 0
}

/// The next pair `user_id` may vote on, if any.
pub(crate) async fn offer(state: &AppState, user_id: i64) -> Result<Option<VoteOffer>> {
    let Some(c) = state.store.next_vote(user_id).await? else {
        return Ok(None);
    };
    let chosen = Answer {
        response_id: c.chosen_response_id,
        text: c.chosen,
    };
    let rejected = Answer {
        response_id: c.rejected_response_id,
        text: c.rejected,
    };
    let answers = if chosen_first(user_id, c.pair_id) {
        [chosen, rejected]
    } else {
        [rejected, chosen]
    };
    Ok(Some(VoteOffer {
        pair_id: c.pair_id,
        space: c.space,
        task: c.task,
        answers,
    }))
}

/// Records a vote and reveals the seats.
pub(crate) async fn cast(state: &AppState, user_id: i64, vote: &NewVote) -> Result<VoteResult> {
    let v = state
        .store
        .record_vote(user_id, vote.pair_id, vote.chosen_response_id)
        .await?;
    let responses = state.store.responses(v.round_id).await?;
    let detail = crate::api::matches::detail(state, v.match_id).await?;
    let reveal = |response_id: i64| -> Revealed {
        let entry = responses
            .iter()
            .find(|x| x.id == response_id)
            .map(|x| x.entry_id);
        let seat = detail.seats.iter().find(|s| Some(s.entry_id) == entry);
        Revealed {
            response_id,
            agent_id: seat.map_or(0, |s| s.agent_id),
            agent_name: seat.map_or_else(|| "?".into(), |s| s.agent_name.clone()),
        }
    };
    Ok(VoteResult {
        vote_id: v.id,
        match_id: v.match_id,
        chosen: reveal(v.chosen_response_id),
        rejected: reveal(v.rejected_response_id),
        panel_agrees: v.agrees == 1,
    })
}

/// Per Space, how often the panel agreed with people.
pub(crate) async fn agreement(state: &AppState) -> Result<Vec<AgreementView>> {
    Ok(state
        .store
        .vote_agreement()
        .await?
        .into_iter()
        .map(|a| AgreementView {
            agreement: if a.votes > 0 {
                a.agreed as f64 / a.votes as f64
            } else {
                0.0
            },
            space: a.space,
            votes: a.votes,
            agreed: a.agreed,
        })
        .collect())
}

/// Two answers of a finished round to compare, names hidden (404 when there is
/// nothing left for you to vote on).
#[utoipa::path(get, path = "/votes/next", tag = "votes",
    responses((status = 200, body = VoteOffer), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
async fn next_vote(State(state): State<AppState>, user: AuthUser) -> Result<Json<VoteOffer>> {
    offer(&state, user.user_id).await?.map(Json).ok_or_else(|| {
        Error::NotFound("nothing left to vote on: come back after more matches".into())
    })
}

/// Votes for the better answer of a pair; reveals the agents and the panel's choice.
#[utoipa::path(post, path = "/votes", tag = "votes", request_body = NewVote,
    responses((status = 200, body = VoteResult), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "you already voted on this round"),
        (status = 422, body = ErrorBody, description = "an answer outside the pair, an unsettled match, or a match where you own a seat")),
    security(("session" = []), ("bearer" = [])))]
async fn vote(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<NewVote>,
) -> Result<Json<VoteResult>> {
    Ok(Json(cast(&state, user.user_id, &body).await?))
}

/// Per Space: votes cast and how often the judge panel chose the answer people chose.
#[utoipa::path(get, path = "/votes/agreement", tag = "votes",
    responses((status = 200, body = Vec<AgreementView>)))]
async fn vote_agreement(State(state): State<AppState>) -> Result<Json<Vec<AgreementView>>> {
    Ok(Json(agreement(&state).await?))
}

/// The votes export's filters.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VotesQuery {
    /// Only this Space (slug).
    pub space: Option<String>,
    /// Resume after this vote id (the last `vote_id` received).
    #[param(minimum = 0)]
    pub after: Option<i64>,
}

#[derive(Serialize)]
struct VoteLine<'a> {
    prompt: &'a str,
    chosen: &'a str,
    rejected: &'a str,
    /// Whether the judge panel preferred the same answer.
    panel_agrees: bool,
    vote_id: i64,
    pair_id: i64,
    match_id: i64,
    round_id: i64,
    space: &'a str,
    created_at: i64,
}

/// People's votes as a preference dataset: JSON lines of `{prompt, chosen, rejected}`
/// (the people's choice), with `panel_agrees` and where each vote comes from. Voters
/// are not named.
#[utoipa::path(get, path = "/datasets/human-votes", tag = "datasets", params(VotesQuery),
    responses(
        (status = 200, description = "JSON lines, one vote per line; resume with after=<last vote_id>", content_type = "application/x-ndjson", body = String),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn human_votes(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<VotesQuery>,
) -> Result<Response> {
    let space_id = match q.space.as_deref() {
        Some(slug) => Some(state.store.space_by_slug(slug).await?.id),
        None => None,
    };
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(Error::invalid("after", "must be 0 or more"));
    }
    let name = format!(
        "rlfc-human-votes-{}.jsonl",
        q.space
            .as_deref()
            .map(|s| s
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect())
            .unwrap_or_else(|| "all-spaces".to_string())
    );
    let page = state.config.export_page_rows.max(1);
    let body = stream::try_unfold(
        (state, after, false),
        move |(state, after, done)| async move {
            if done {
                return Ok::<_, Error>(None);
            }
            let rows = state.store.export_votes_page(space_id, after, page).await?;
            let Some(last) = rows.last().map(|r| r.vote_id) else {
                return Ok(None);
            };
            let mut chunk = Vec::with_capacity(rows.len() * 256);
            for r in &rows {
                let line = VoteLine {
                    prompt: &r.prompt,
                    chosen: &r.chosen,
                    rejected: &r.rejected,
                    panel_agrees: r.agrees == 1,
                    vote_id: r.vote_id,
                    pair_id: r.pair_id,
                    match_id: r.match_id,
                    round_id: r.round_id,
                    space: &r.space,
                    created_at: r.created_at,
                };
                serde_json::to_writer(&mut chunk, &line)
                    .map_err(|e| Error::Internal(e.to_string()))?;
                chunk.push(b'\n');
            }
            let done = (rows.len() as i64) < page;
            Ok(Some((chunk, (state, last, done))))
        },
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_string()),
            (header::CACHE_CONTROL, "no-store".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// Vote routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(next_vote))
        .routes(routes!(vote))
        .routes(routes!(vote_agreement))
        .routes(routes!(human_votes))
}

#[cfg(test)]
mod tests {
    use super::chosen_first;

    #[test]
    fn the_order_is_fixed_per_voter_and_pair_and_mixed() {
        let firsts = (0..200).filter(|p| chosen_first(7, *p)).count();
        assert!((70..130).contains(&firsts), "{firsts} of 200");
        assert_eq!(chosen_first(7, 11), chosen_first(7, 11));
    }
}
