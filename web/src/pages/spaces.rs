//! The home page (live matches, Spaces) and a Space's page (leaderboard, recent
//! matches, entering and leaving at a fee tier).

use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::templates::show;
use super::{nav, render, respond, when};
use crate::api::entries::{self, NewEntry};
use crate::api::spaces::{leaderboard_rows, space_view};
use crate::auth::{MaybeUser, PageUser};
use crate::error::{Error, Result};
use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/spaces/{slug}", get(space_page))
        .route("/spaces/{slug}/enter", post(enter))
        .route("/entries/{id}/leave", post(leave))
}

async fn match_rows(
    state: &AppState,
    matches: Vec<store::Match>,
) -> Result<Vec<serde_json::Value>> {
    let spaces = state.store.spaces().await?;
    Ok(matches
        .into_iter()
        .map(|m| {
            let slug = spaces.iter().find(|s| s.id == m.space_id).map(|s| s.slug.clone());
            json!({"id": m.id, "space": slug, "status": m.status, "when": when(m.started_at.unwrap_or(m.created_at))})
        })
        .collect())
}

/// The home page's query: `signin=required` when a page sent a signed-out visitor here.
#[derive(Debug, Default, serde::Deserialize)]
struct HomeQuery {
    signin: Option<String>,
}

async fn home(
    State(state): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<HomeQuery>,
    MaybeUser(user): MaybeUser,
) -> Response {
    let signin_required = user.is_none() && query.signin.as_deref() == Some("required");
    let result = async {
        let nav = nav(&state, user.as_ref()).await?;
        let mut live = state.store.recent_matches(None, Some(store::MatchStatus::Running), None, 20).await?;
        live.extend(state.store.recent_matches(None, Some(store::MatchStatus::Pending), None, 20).await?);
        let recent = state.store.recent_matches(None, Some(store::MatchStatus::Settled), None, 10).await?;
        let mut spaces = Vec::new();
        let mut free_space = None;
        for s in state.store.spaces().await? {
            let v = space_view(&state, s).await?;
            let tiers: Vec<String> = v.fee_tiers.iter().map(|t| format!("{} {}", t.name, show(&state.money, &t.fee_wei))).collect();
            if free_space.is_none() && v.fee_tiers.iter().any(|t| t.fee_wei == "0") {
                free_space = Some(json!({"slug": v.slug, "name": v.name}));
            }
            spaces.push(json!({"slug": v.slug, "name": v.name, "description": v.description, "tiers": tiers.join(" · ")}));
        }
        let ctx = json!({
            "live": match_rows(&state, live).await?,
            "recent": match_rows(&state, recent).await?,
            "spaces": spaces,
            "signin_required": signin_required,
            "first_run": first_run(&state, user.as_ref().map(|u| u.user_id), free_space).await?,
        });
        render(&state, "home.html", &nav, "Live", ctx)
    }
    .await;
    respond(&state, result).await
}

/// The home page's guided first run: sign in, create an agent from a template, enter
/// it in a free Space, watch its first match; each step says whether it is done and
/// links to the next. `done` once every step is.
async fn first_run(
    state: &AppState,
    user_id: Option<i64>,
    free_space: Option<serde_json::Value>,
) -> Result<serde_json::Value> {
    let Some(user_id) = user_id else {
        return Ok(json!({"signed_in": false, "agent": null, "entered": false,
            "match_id": null, "free_space": free_space, "done": false}));
    };
    let agent = state
        .store
        .agents_by_owner(user_id)
        .await?
        .into_iter()
        .find(|a| a.archived_at.is_none())
        .map(|a| json!({"id": a.id, "name": a.name}));
    // Newest first: the last one with a match is the first match.
    let entries = state.store.entries_by_user(user_id, 200).await?;
    let match_id = entries.iter().rev().find_map(|e| e.match_id);
    let done = agent.is_some() && match_id.is_some();
    Ok(
        json!({"signed_in": true, "agent": agent, "entered": !entries.is_empty(),
        "match_id": match_id, "free_space": free_space, "done": done}),
    )
}

/// Leaderboard rows per page of a Space's page.
const LEADERBOARD_PAGE: usize = 50;

/// Which leaderboard page to show.
#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    #[serde(default)]
    page: Option<usize>,
}

async fn space_context(
    state: &AppState,
    slug: &str,
    user_id: Option<i64>,
    page: usize,
) -> Result<serde_json::Value> {
    let space = state.store.space_by_slug(slug).await?;
    let view = space_view(state, space.clone()).await?;
    let (rows, total) = leaderboard_rows(
        state,
        space.id,
        page.saturating_sub(1) * LEADERBOARD_PAGE,
        LEADERBOARD_PAGE,
    )
    .await?;
    let pages = total.div_ceil(LEADERBOARD_PAGE).max(1);
    let leaderboard: Vec<_> = rows
        .into_iter()
        .map(|r| {
            json!({"rank": r.rank, "rank_best": r.rank_best, "rank_worst": r.rank_worst, "agent_id": r.agent_id,
                "agent_name": r.agent_name, "mu": format!("{:.2}", r.mu), "sigma": format!("{:.2}", r.sigma),
                "conservative": format!("{:.2}", r.conservative), "matches_played": r.matches_played})
        })
        .collect();
    let matches = state
        .store
        .recent_matches(Some(space.id), None, None, 20)
        .await?;
    let (mut my_agents, mut my_entries) = (Vec::new(), Vec::new());
    if let Some(uid) = user_id {
        for a in state.store.agents_by_owner(uid).await? {
            if a.archived_at.is_none() {
                my_agents.push(json!({"id": a.id, "name": a.name}));
            }
        }
        for e in state.store.entries_by_user(uid, 50).await? {
            if e.space_id == space.id {
                my_entries.push(
                    json!({"id": e.id, "agent_id": e.agent_id, "fee_wei": e.fee_wei.to_string(),
                    "status": e.status, "match_id": e.match_id}),
                );
            }
        }
    }
    let tiers: Vec<_> = view
        .fee_tiers
        .iter()
        .map(|t| json!({"id": t.id, "name": t.name, "fee": show(&state.money, &t.fee_wei), "fee_wei": t.fee_wei}))
        .collect();
    Ok(json!({
        "space": {"slug": view.slug, "name": view.name, "description": view.description,
                  "players": view.players, "rounds": view.rounds,
                  "rake_percent": view.rake_bps.map(|b| (f64::from(b) / 100.0).to_string()), "payout": view.payout},
        "leaderboard": leaderboard,
        "page": page,
        "pages": pages,
        "prev_page": (page > 1).then(|| page - 1),
        "next_page": (page < pages).then(|| page + 1),
        "matches": matches.into_iter().map(|m| json!({"id": m.id, "status": m.status, "when": when(m.created_at)})).collect::<Vec<_>>(),
        "my_agents": my_agents,
        "my_entries": my_entries,
        "tiers": tiers,
        "error": null,
    }))
}

async fn space_page(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(slug): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let page = q.page.unwrap_or(1).max(1);
    let result = async {
        let nav = nav(&state, user.as_ref()).await?;
        let ctx = space_context(&state, &slug, user.as_ref().map(|u| u.user_id), page).await?;
        let title = ctx["space"]["name"].as_str().unwrap_or("Space").to_string();
        render(&state, "space.html", &nav, &title, ctx)
    }
    .await;
    respond(&state, result).await
}

/// The enter form.
#[derive(Debug, Deserialize)]
struct EnterForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    agent_id: i64,
    fee_tier_id: i64,
}

async fn enter(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path(slug): Path<String>,
    Form(form): Form<EnterForm>,
) -> Response {
    let result = async {
        user.check_csrf(&form.csrf)?;
        let tier = state.store.fee_tier(form.fee_tier_id).await?;
        let space = state.store.space_by_slug(&slug).await?;
        if tier.space_id != space.id {
            return Err(Error::invalid(
                "fee_tier_id",
                "that fee tier belongs to another Space",
            ));
        }
        let new = NewEntry {
            agent_id: form.agent_id,
            fee_tier_id: form.fee_tier_id,
        };
        match entries::enter(&state, user.user_id, &new).await {
            Ok(_) => Ok(Redirect::to(&format!("/spaces/{slug}")).into_response()),
            Err(e @ (Error::InsufficientFunds(_) | Error::Conflict(_) | Error::Invalid { .. })) => {
                let nav = nav(&state, Some(&user)).await?;
                let mut ctx = space_context(&state, &slug, Some(user.user_id), 1).await?;
                ctx["error"] = json!(e.body().error.message);
                let page = render(&state, "space.html", &nav, &space.name, ctx)?;
                Ok((e.status(), page).into_response())
            }
            Err(e) => Err(e),
        }
    }
    .await;
    respond(&state, result).await
}

/// A form that carries only the CSRF token.
#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(rename = "_csrf")]
    pub(crate) csrf: String,
}

async fn leave(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let result = async {
        user.check_csrf(&form.csrf)?;
        let entry = entries::leave(&state, user.user_id, id).await?;
        let space = state.store.space(entry.space_id).await?;
        Ok(Redirect::to(&format!("/spaces/{}", space.slug)).into_response())
    }
    .await;
    respond(&state, result).await
}
