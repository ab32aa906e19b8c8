//! Sign-in and the signed-in user: nonce, Sign-In with Ethereum, dev login (demo
//! mode), sign-out, and `me`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum_extra::extract::cookie::CookieJar;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiQuery};
use crate::auth::{self, AuthUser, siwe};
use crate::error::{ErrorBody, Result};
use crate::state::AppState;

/// A user as shown to anyone.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// Id.
    pub id: i64,
    /// Lower-case 0x wallet address.
    pub wallet_address: String,
    /// Display name, if set.
    pub display_name: Option<String>,
    /// Joined, ms since the epoch.
    pub created_at: i64,
}

impl From<store::User> for UserView {
    fn from(u: store::User) -> UserView {
        UserView {
            id: u.id,
            wallet_address: u.wallet_address,
            display_name: u.display_name,
            created_at: u.created_at,
        }
    }
}

/// A sign-in nonce and what the message must name.
#[derive(Debug, Serialize, ToSchema)]
pub struct NonceView {
    /// Put this in the message's `Nonce:` line; it works once.
    pub nonce: String,
    /// It expires at this time, ms.
    pub expires_at: i64,
    /// The message's domain.
    pub domain: String,
    /// The message's URI.
    pub uri: String,
    /// The message's chain id.
    pub chain_id: u64,
    /// The whole message to sign, when the request named an address.
    pub message: Option<String>,
}

/// Who is about to sign in.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NonceQuery {
    /// The wallet address (any case); the reply then holds the full message to sign.
    #[param(pattern = r"^0x[0-9a-fA-F]{40}$")]
    pub address: Option<String>,
}

/// A signed EIP-4361 message.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SignIn {
    /// The message exactly as signed (EIP-4361: it names this server's domain and
    /// URI, the statement "Sign in to RLFC Arena.", a nonce from `/auth/nonce`).
    #[schema(min_length = 100)]
    pub message: String,
    /// The 65-byte signature, 0x-hex.
    #[schema(pattern = r"^(0x)?[0-9a-fA-F]{130}$")]
    pub signature: String,
}

/// The dev login's choice of local wallet.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DevLogin {
    /// Dev account index, 1 to 9 (default 1; account 0 is the chain operator).
    #[serde(default = "default_dev_account")]
    #[param(minimum = 1, maximum = 9)]
    pub account: usize,
}

fn default_dev_account() -> usize {
    siwe::DEFAULT_DEV_ACCOUNT
}

/// The signed-in user and the CSRF token cookie-authenticated writes must send in
/// `x-csrf-token`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// The user.
    pub user: UserView,
    /// Present when signed in by cookie.
    pub csrf_token: Option<String>,
}

/// Issues a single-use sign-in nonce.
#[utoipa::path(get, path = "/auth/nonce", tag = "session", params(NonceQuery),
    responses((status = 200, body = NonceView), (status = 422, body = ErrorBody),
        (status = 429, description = "Too many nonces from this address: slow down", body = ErrorBody)))]
async fn nonce(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<NonceQuery>,
) -> Result<Json<NonceView>> {
    let address = q
        .address
        .map(|a| {
            a.parse::<alloy::primitives::Address>().map_err(|_| {
                crate::Error::invalid("address", "expected 0x followed by 40 hex digits")
            })
        })
        .transpose()?;
    let (nonce, expires_at) = siwe::issue_nonce(&state).await?;
    let message = address
        .map(|a| siwe::sign_in_message(&state, a, &nonce))
        .transpose()?;
    Ok(Json(NonceView {
        message,
        nonce,
        expires_at,
        domain: state.config.siwe_domain.clone(),
        uri: state.config.siwe_uri.clone(),
        chain_id: state.config.chain_id,
    }))
}

/// Signs in with a signed EIP-4361 message; sets the session cookie.
#[utoipa::path(post, path = "/auth/siwe", tag = "session", request_body = SignIn,
    responses((status = 200, body = Me), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn sign_in(
    State(state): State<AppState>,
    jar: CookieJar,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<impl IntoResponse> {
    let user = siwe::verify_sign_in(&state, &body.message, &body.signature).await?;
    session_response(&state, jar, user).await
}

/// Signs in as a local dev wallet (demo mode only; 404 otherwise).
#[utoipa::path(post, path = "/auth/dev-login", tag = "session", params(DevLogin),
    responses((status = 200, body = Me), (status = 404, body = ErrorBody)))]
async fn dev_login(
    State(state): State<AppState>,
    jar: CookieJar,
    ApiQuery(q): ApiQuery<DevLogin>,
) -> Result<impl IntoResponse> {
    let user = siwe::dev_sign_in(&state, q.account).await?;
    session_response(&state, jar, user).await
}

async fn session_response(
    state: &AppState,
    jar: CookieJar,
    user: store::User,
) -> Result<(CookieJar, Json<Me>)> {
    let (cookie, csrf) = auth::start_session(state, user.id).await?;
    Ok((
        jar.add(cookie),
        Json(Me {
            user: user.into(),
            csrf_token: Some(csrf),
        }),
    ))
}

/// Where to sign out.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogoutQuery {
    /// `true` ends every session of the user (every browser), not only this one.
    #[serde(default)]
    pub all: bool,
}

/// Signs out: ends the session (or, with `all=true`, every session of the user) and
/// clears the cookie.
#[utoipa::path(post, path = "/auth/logout", tag = "session", params(LogoutQuery),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn logout(
    State(state): State<AppState>,
    user: AuthUser,
    jar: CookieJar,
    ApiQuery(q): ApiQuery<LogoutQuery>,
) -> Result<impl IntoResponse> {
    let removal = auth::end_session(&state, &jar).await?;
    if q.all {
        state.store.delete_user_sessions(user.user_id).await?;
    }
    Ok((jar.add(removal), StatusCode::NO_CONTENT))
}

/// The signed-in user.
#[utoipa::path(get, path = "/me", tag = "session",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
async fn me(State(state): State<AppState>, user: AuthUser) -> Result<Json<Me>> {
    Ok(Json(Me {
        user: state.store.user(user.user_id).await?.into(),
        csrf_token: user.csrf,
    }))
}

/// Session routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(nonce))
        .routes(routes!(sign_in))
        .routes(routes!(dev_login))
        .routes(routes!(logout))
        .routes(routes!(me))
}
