//! The vote page: two answers of a finished round, names hidden, in an order that
//! does not give the panel's choice away; after the vote, who wrote which and whether
//! the judges agreed.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::json;

use super::{nav, render, respond};
use crate::api::votes::{NewVote, cast, offer};
use crate::auth::PageUser;
use crate::error::Error;
use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/vote", get(vote_page).post(vote))
}

async fn vote_page(State(state): State<AppState>, PageUser(user): PageUser) -> Response {
    let result = async {
        let nav = nav(&state, Some(&user)).await?;
        let offer = offer(&state, user.user_id).await?;
        render(
            &state,
            "vote.html",
            &nav,
            "Vote",
            json!({"offer": offer, "result": null, "error": null}),
        )
    }
    .await;
    respond(&state, result).await
}

/// The vote form.
#[derive(Debug, Deserialize)]
struct VoteForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    pair_id: i64,
    chosen_response_id: i64,
}

async fn vote(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Form(form): Form<VoteForm>,
) -> Response {
    let result = async {
        user.check_csrf(&form.csrf)?;
        let nav = nav(&state, Some(&user)).await?;
        let cast = cast(
            &state,
            user.user_id,
            &NewVote {
                pair_id: form.pair_id,
                chosen_response_id: form.chosen_response_id,
            },
        )
        .await;
        match cast {
            Ok(result) => render(
                &state,
                "vote.html",
                &nav,
                "Vote",
                json!({"offer": null, "result": result, "error": null}),
            ),
            Err(e @ (Error::Conflict(_) | Error::Invalid { .. } | Error::NotFound(_))) => {
                let offer = offer(&state, user.user_id).await?;
                let page = render(
                    &state,
                    "vote.html",
                    &nav,
                    "Vote",
                    json!({"offer": offer, "result": null, "error": e.body().error.message}),
                )?;
                Ok((e.status(), page).into_response())
            }
            Err(e) => Err(e),
        }
    }
    .await;
    respond(&state, result).await
}
