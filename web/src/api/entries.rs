//! Entries: an owner enters their agent's newest version into a Space's fee tier
//! (the fee is locked from their balance), leaves while still queued, or lets the
//! agent re-enter on its own under a spending cap.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiPath, owned_agent, parse_wei};
use crate::auth::AuthUser;
use crate::error::{Error, ErrorBody, Result};
use crate::state::AppState;

/// An entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntryView {
    /// Id.
    pub id: i64,
    /// The agent.
    pub agent_id: i64,
    /// The version that plays.
    pub agent_version_id: i64,
    /// The Space.
    pub space_id: i64,
    /// The fee tier.
    pub fee_tier_id: i64,
    /// The fee locked, wei as decimal text.
    pub fee_wei: String,
    /// The match, once matched.
    pub match_id: Option<i64>,
    /// `queued`, `matched`, `settled`, `refunded` or `withdrawn`.
    pub status: String,
    /// Created, ms.
    pub created_at: i64,
}

impl From<store::Entry> for EntryView {
    fn from(e: store::Entry) -> EntryView {
        EntryView {
            id: e.id,
            agent_id: e.agent_id,
            agent_version_id: e.agent_version_id,
            space_id: e.space_id,
            fee_tier_id: e.fee_tier_id,
            fee_wei: e.fee_wei.to_string(),
            match_id: e.match_id,
            status: e.status.to_string(),
            created_at: e.created_at,
        }
    }
}

/// What to enter where.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEntry {
    /// Your agent (its newest version plays).
    pub agent_id: i64,
    /// The Space's fee tier.
    pub fee_tier_id: i64,
}

/// An auto-entry rule.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AutoEntryView {
    /// The fee tier it re-enters.
    pub fee_tier_id: i64,
    /// The most it may ever spend, wei as decimal text.
    pub cap_wei: String,
    /// What it has spent so far, wei as decimal text.
    pub spent_wei: String,
    /// Whether it is on.
    pub enabled: bool,
}

impl From<store::AutoEntry> for AutoEntryView {
    fn from(a: store::AutoEntry) -> AutoEntryView {
        AutoEntryView {
            fee_tier_id: a.fee_tier_id,
            cap_wei: a.cap_wei.to_string(),
            spent_wei: a.spent_wei.to_string(),
            enabled: a.enabled == 1,
        }
    }
}

/// A new or changed auto-entry rule.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoEntryRule {
    /// Spending cap, wei as decimal text.
    #[schema(pattern = r"^[0-9]{1,38}$")]
    pub cap_wei: String,
    /// Turn it on or off.
    pub enabled: bool,
}

/// Enters `agent_id` (owned by `user_id`) into `fee_tier_id`.
pub(crate) async fn enter(state: &AppState, user_id: i64, new: &NewEntry) -> Result<EntryView> {
    let agent = owned_agent(state, user_id, new.agent_id).await?;
    if agent.archived_at.is_some() {
        return Err(Error::Conflict(format!("agent {} is archived", agent.id)));
    }
    let tier = state
        .store
        .fee_tier(new.fee_tier_id)
        .await
        .map_err(|e| match e {
            store::Error::NotFound { .. } => Error::invalid("fee_tier_id", "no such fee tier"),
            other => other.into(),
        })?;
    let version = state.store.latest_agent_version(agent.id).await?;
    Ok(state
        .store
        .enter(user_id, version.id, tier.id)
        .await?
        .into())
}

/// Takes `user_id`'s queued entry out of the queue.
pub(crate) async fn leave(state: &AppState, user_id: i64, entry_id: i64) -> Result<EntryView> {
    let entry = state.store.entry(entry_id).await?;
    if entry.user_id != user_id {
        return Err(Error::Forbidden(format!("entry {entry_id} is not yours")));
    }
    if entry.status != store::EntryStatus::Queued {
        return Err(Error::Conflict(format!(
            "entry {entry_id} is {}, only a queued entry can leave",
            entry.status
        )));
    }
    Ok(state.store.leave(entry_id).await?.into())
}

/// Enters your agent; its fee is locked from your balance.
#[utoipa::path(post, path = "/entries", tag = "entries", request_body = NewEntry,
    responses((status = 201, body = EntryView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "archived agent or insufficient funds"), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
async fn create_entry(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<NewEntry>,
) -> Result<(StatusCode, Json<EntryView>)> {
    Ok((
        StatusCode::CREATED,
        Json(enter(&state, user.user_id, &body).await?),
    ))
}

/// Your entries, newest first.
#[utoipa::path(get, path = "/entries", tag = "entries",
    responses((status = 200, body = Vec<EntryView>), (status = 401, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
async fn my_entries(State(state): State<AppState>, user: AuthUser) -> Result<Json<Vec<EntryView>>> {
    let rows = state.store.entries_by_user(user.user_id, 200).await?;
    Ok(Json(rows.into_iter().map(EntryView::from).collect()))
}

/// Leaves the queue: your queued entry is withdrawn and its fee unlocked.
#[utoipa::path(delete, path = "/entries/{id}", tag = "entries",
    params(("id" = i64, Path, description = "Entry id")),
    responses((status = 200, body = EntryView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
async fn leave_entry(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<EntryView>> {
    Ok(Json(leave(&state, user.user_id, id).await?))
}

/// Your agent's auto-entry rules (owner only).
#[utoipa::path(get, path = "/agents/{id}/auto-entry", tag = "entries",
    params(("id" = i64, Path, description = "Agent id")),
    responses((status = 200, body = Vec<AutoEntryView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
async fn auto_entries(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<AutoEntryView>>> {
    owned_agent(&state, user.user_id, id).await?;
    let rows = state.store.auto_entries_for_agent(id).await?;
    Ok(Json(rows.into_iter().map(AutoEntryView::from).collect()))
}

/// Sets your agent's auto-entry rule for one fee tier (owner only).
#[utoipa::path(put, path = "/agents/{id}/auto-entry/{tier_id}", tag = "entries", request_body = AutoEntryRule,
    params(("id" = i64, Path, description = "Agent id"), ("tier_id" = i64, Path, description = "Fee tier id")),
    responses((status = 200, body = AutoEntryView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
async fn set_auto_entry(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath((id, tier_id)): ApiPath<(i64, i64)>,
    ApiJson(body): ApiJson<AutoEntryRule>,
) -> Result<Json<AutoEntryView>> {
    owned_agent(&state, user.user_id, id).await?;
    let cap = parse_wei("cap_wei", &body.cap_wei)?;
    state.store.fee_tier(tier_id).await?;
    let rule = state
        .store
        .set_auto_entry(id, tier_id, cap, body.enabled)
        .await?;
    Ok(Json(rule.into()))
}

/// Entry routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_entry, my_entries))
        .routes(routes!(leave_entry))
        .routes(routes!(auto_entries))
        .routes(routes!(set_auto_entry))
}
