//! API tokens for scripts: created (the secret is shown once), listed and revoked by
//! their owner. Only the sha256 of a token is stored.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiPath};
use crate::auth::{self, AuthUser, TOKEN_PREFIX};
use crate::error::{Error, ErrorBody, Result};
use crate::state::AppState;

/// Longest token label, characters.
pub const MAX_TOKEN_NAME: usize = 64;

/// A token as listed (never the secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    /// Id.
    pub id: i64,
    /// Label.
    pub name: String,
    /// The token's first characters.
    pub prefix: String,
    /// Created, ms.
    pub created_at: i64,
    /// Last used, ms.
    pub last_used_at: Option<i64>,
    /// Revoked, ms.
    pub revoked_at: Option<i64>,
    /// What it may do: `read`, `play` (every write but withdrawals and tokens),
    /// `withdraw`.
    pub scopes: Vec<String>,
    /// When it stops working, ms; `None` never (tokens made before expiry existed).
    pub expires_at: Option<i64>,
}

impl From<store::ApiToken> for TokenView {
    fn from(t: store::ApiToken) -> TokenView {
        TokenView {
            id: t.id,
            name: t.name,
            prefix: t.prefix,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
            scopes: t.scopes.split(',').map(str::to_string).collect(),
            expires_at: t.expires_at,
        }
    }
}

/// Every scope a token may carry.
pub const SCOPES: [&str; 3] = ["read", "play", "withdraw"];
/// The scopes of a token that names none.
pub const DEFAULT_SCOPES: [&str; 2] = ["read", "play"];
/// Days a token lives when none is asked for.
pub const DEFAULT_TOKEN_DAYS: u32 = 90;
/// The longest life a token may ask for, days.
pub const MAX_TOKEN_DAYS: u32 = 365;

/// A new token: its label, what it may do and how long it lives.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// 1 to 64 characters.
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    /// Any of `read`, `play`, `withdraw` (default `read` and `play`).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Days until it stops working, 1 to 365 (default 90).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 365)]
    pub expires_in_days: Option<u32>,
}

/// A created token: the secret appears here once and never again.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    /// The stored token.
    pub info: TokenView,
}

/// Creates a token and shows its secret once.
#[utoipa::path(post, path = "/tokens", tag = "session", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
async fn create_token(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>)> {
    // A token cannot mint tokens: only a signed-in browser session can.
    if user.csrf.is_none() {
        return Err(Error::Forbidden(
            "an API token cannot create tokens; sign in to make one".into(),
        ));
    }
    let scopes = body
        .scopes
        .clone()
        .unwrap_or_else(|| DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect());
    let (token, info) = create_scoped(
        &state,
        user.user_id,
        &body.name,
        &scopes,
        body.expires_in_days.unwrap_or(DEFAULT_TOKEN_DAYS),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { token, info })))
}

/// Creates a token for `user_id` limited to `scopes` that lives `days`.
pub(crate) async fn create_scoped(
    state: &AppState,
    user_id: i64,
    name: &str,
    scopes: &[String],
    days: u32,
) -> Result<(String, TokenView)> {
    if scopes.is_empty() || scopes.iter().any(|s| !SCOPES.contains(&s.as_str())) {
        return Err(Error::invalid(
            "scopes",
            "must be one or more of read, play, withdraw",
        ));
    }
    if !(1..=MAX_TOKEN_DAYS).contains(&days) {
        return Err(Error::invalid(
            "expires_in_days",
            format!("must be 1 to {MAX_TOKEN_DAYS}"),
        ));
    }
    let mut scopes: Vec<&str> = SCOPES
        .iter()
        .copied()
        .filter(|s| scopes.iter().any(|x| x == s))
        .collect();
    scopes.dedup();
    let expires_at = store::now_ms() + i64::from(days) * 24 * 3600 * 1000;
    let name = name.trim();
    super::settings::validate_display_text("name", name)?;
    if name.is_empty() || name.chars().count() > MAX_TOKEN_NAME {
        return Err(Error::invalid(
            "name",
            format!("must be 1 to {MAX_TOKEN_NAME} characters"),
        ));
    }
    let token = format!("{TOKEN_PREFIX}{}", auth::new_secret());
    let prefix: String = token.chars().take(TOKEN_PREFIX.len() + 6).collect();
    let row = state
        .store
        .create_scoped_api_token(
            user_id,
            name,
            &auth::hash_secret(&token),
            &prefix,
            &scopes.join(","),
            Some(expires_at),
        )
        .await?;
    Ok((token, row.into()))
}

/// The signed-in user's tokens.
#[utoipa::path(get, path = "/tokens", tag = "session",
    responses((status = 200, body = Vec<TokenView>), (status = 401, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
async fn list_tokens(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Vec<TokenView>>> {
    let rows = state.store.api_tokens(user.user_id).await?;
    Ok(Json(rows.into_iter().map(TokenView::from).collect()))
}

/// Revokes one of the signed-in user's tokens (another user's token is 404).
#[utoipa::path(delete, path = "/tokens/{id}", tag = "session",
    params(("id" = i64, Path, description = "Token id")),
    responses((status = 200, body = TokenView), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
async fn revoke_token(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<TokenView>> {
    Ok(Json(
        state.store.revoke_api_token(user.user_id, id).await?.into(),
    ))
}

/// Token routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(revoke_token))
}
