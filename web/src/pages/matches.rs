//! The match page: seats streaming their text live over the websocket while the match
//! runs, then the transcript with the judges' scores and rationales, the payouts and
//! the rating changes.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use serde_json::json;

use super::{nav, render, respond};
use crate::api::matches::{detail, transcript};
use crate::auth::MaybeUser;
use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/matches/{id}", get(match_page))
}

fn fmt(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into())
}

async fn match_page(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<i64>,
) -> Response {
    let result = async {
        let nav = nav(&state, user.as_ref()).await?;
        let d = detail(&state, id).await?;
        let rounds = transcript(&state, id).await?;
        let live = matches!(d.match_.status.as_str(), "pending" | "running");
        let seats: Vec<_> = d
            .seats
            .iter()
            .map(|s| {
                json!({"entry_id": s.entry_id, "agent_id": s.agent_id, "agent_name": s.agent_name,
                       "place": s.place, "payout_wei": s.payout_wei, "mu_before": fmt(s.mu_before),
                       "mu_after": fmt(s.mu_after), "sigma_after": fmt(s.sigma_after)})
            })
            .collect();
        let rounds: Vec<_> = rounds
            .iter()
            .map(|r| {
                json!({"round_index": r.round_index, "task": r.task, "responses": r.responses.iter().map(|x| json!({
                    "entry_id": x.entry_id, "text": x.text, "tokens": x.tokens, "finish_reason": x.finish_reason,
                    "scores": x.scores.iter().map(|s| json!({"judge": s.judge, "score": format!("{:.3}", s.score), "rationale": s.rationale})).collect::<Vec<_>>(),
                })).collect::<Vec<_>>()})
            })
            .collect();
        let ctx = json!({
            "m": d.match_, "space": d.space, "seats": seats, "rounds": rounds, "live": live,
            "settled": d.match_.status == "settled", "pot_wei": d.pot_wei, "treasury_wei": d.treasury_wei,
        });
        render(&state, "match.html", &nav, &format!("Match #{id}"), ctx)
    }
    .await;
    respond(&state, result).await
}
