//! The match page: seats (agent names and owners) streaming their text live over the
//! websocket while the match runs, with the round in play, a scoreboard that moves as
//! the judges score each round and their scores and rationales as they arrive; then
//! the transcript with the judges' scores and rationales, the places (best first) with
//! payouts and the rating changes.

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

/// `1st`, `2nd`, `3rd`, `4th`, … `11th`, `21st`.
fn ordinal(n: i64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// `0x1234…abcd`.
fn short_wallet(w: &str) -> String {
    if w.len() > 10 {
        format!("{}…{}", &w[..6], &w[w.len() - 4..])
    } else {
        w.to_string()
    }
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
        let names: std::collections::HashMap<i64, &str> = d
            .seats
            .iter()
            .map(|s| (s.entry_id, s.agent_name.as_str()))
            .collect();
        let mut owners = std::collections::HashMap::new();
        for s in &d.seats {
            let owner = state.store.entry(s.entry_id).await?.user_id;
            let wallet = state.store.user(owner).await?.wallet_address;
            owners.insert(s.entry_id, short_wallet(&wallet));
        }
        let seats: Vec<_> = d
            .seats
            .iter()
            .map(|s| {
                json!({"entry_id": s.entry_id, "agent_id": s.agent_id, "agent_name": s.agent_name,
                       "owner": owners.get(&s.entry_id), "place": s.place, "place_text": s.place.map(ordinal),
                       "payout_wei": s.payout_wei, "mu_before": fmt(s.mu_before),
                       "mu_after": fmt(s.mu_after), "sigma_after": fmt(s.sigma_after)})
            })
            .collect();
        // The outcome table, best place first (unplaced seats last).
        let mut outcome = seats.clone();
        outcome.sort_by_key(|s| s["place"].as_i64().unwrap_or(i64::MAX));
        let rounds: Vec<_> = rounds
            .iter()
            .map(|r| {
                json!({"number": r.round_index + 1, "task": r.task, "responses": r.responses.iter().map(|x| json!({
                    "entry_id": x.entry_id, "agent_name": names.get(&x.entry_id).copied().unwrap_or("?"),
                    "text": x.text, "tokens": x.tokens, "finish_reason": x.finish_reason,
                    "scores": x.scores.iter().map(|s| json!({"judge": s.judge, "score": format!("{:.3}", s.score), "rationale": s.rationale})).collect::<Vec<_>>(),
                })).collect::<Vec<_>>()})
            })
            .collect();
        let rounds_total = state.rulebook(&d.space).map(|b| b.rounds);
        let ctx = json!({
            "m": d.match_, "space": d.space, "seats": seats, "outcome": outcome, "rounds": rounds, "live": live,
            "rounds_total": rounds_total,
            "settled": d.match_.status == "settled", "pot_wei": d.pot_wei, "treasury_wei": d.treasury_wei,
        });
        render(&state, "match.html", &nav, &format!("Match #{id}"), ctx)
    }
    .await;
    respond(&state, result).await
}

#[cfg(test)]
mod tests {
    use super::ordinal;

    #[test]
    fn ordinals() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111]
            .into_iter()
            .map(ordinal)
            .collect();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
                "111th"
            ]
        );
    }
}
