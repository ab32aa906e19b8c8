//! Who is asking: a session cookie (browsers) or an API token (`Authorization:
//! Bearer`, scripts). Cookie-authenticated writes must echo the session's CSRF token
//! (header `x-csrf-token` for the API, a `_csrf` form field for pages); token
//! requests carry no ambient credentials, so they need none. Every authenticated write
//! also spends from the user's rate limit.

pub(crate) mod siwe;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use rand::Rng as _;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::limits::is_write;
use crate::state::AppState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "rlfc_session";
/// The header cookie-authenticated API writes carry the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The prefix of every API token.
pub const TOKEN_PREFIX: &str = "rlfc_";

/// A signed-in user, resolved from a session cookie or an API token.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// The user's id.
    pub user_id: i64,
    /// The session's CSRF token; `None` when signed in with an API token.
    pub csrf: Option<String>,
}

/// The scope a request needs from an API token: `withdraw` to take money out, `play`
/// for any other write, `read` for reads. Tokens never create or revoke tokens.
fn needed_scope(parts: &Parts) -> Result<&'static str> {
    let path = parts.uri.path();
    let write = is_write(&parts.method);
    if write && (path.starts_with("/api/v1/tokens") || path.starts_with("/account/tokens")) {
        return Err(Error::Forbidden(
            "an API token cannot create or revoke tokens; sign in to manage them".into(),
        ));
    }
    Ok(
        if path == "/api/v1/account/withdraw" || path == "/account/withdraw" {
            "withdraw"
        } else if write {
            "play"
        } else {
            "read"
        },
    )
}

/// The signed-in user if there is one (pages that also serve visitors).
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<AuthUser>);

/// A signed-in user for pages: a visitor is sent home instead of getting a 401, and
/// form posts check the form's `_csrf` field with [`AuthUser::check_csrf`] instead of
/// the header.
#[derive(Debug, Clone)]
pub struct PageUser(pub AuthUser);

impl AuthUser {
    /// Refuses a form post whose `_csrf` field does not match the session.
    pub(crate) fn check_csrf(&self, token: &str) -> Result<()> {
        match &self.csrf {
            None => Ok(()),
            Some(expected) if constant_time_eq(expected.as_bytes(), token.as_bytes()) => Ok(()),
            Some(_) => Err(Error::Csrf),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// sha256 of a secret, hex: what the database keeps instead of the secret.
pub(crate) fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A fresh random secret of 32 bytes, hex.
pub(crate) fn new_secret() -> String {
    hex::encode(rand::rng().random::<[u8; 32]>())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Resolves the caller; `header_csrf` demands the CSRF header on cookie writes.
async fn resolve(parts: &Parts, state: &AppState, header_csrf: bool) -> Result<Option<AuthUser>> {
    let user = if let Some(token) = bearer(&parts.headers) {
        let found = state.store.use_api_token(&hash_secret(token)).await?;
        // A wrong or revoked token is an error, not an anonymous request.
        let token = found.ok_or(Error::Unauthorized)?;
        let scope = needed_scope(parts)?;
        if !token.scopes.split(',').any(|s| s == scope) {
            return Err(Error::Forbidden(format!(
                "this API token lacks the {scope:?} scope (it has {})",
                token.scopes
            )));
        }
        AuthUser {
            user_id: token.user_id,
            csrf: None,
        }
    } else {
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(cookie) = jar.get(SESSION_COOKIE) else {
            return Ok(None);
        };
        let Some(session) = state.store.session(&hash_secret(cookie.value())).await? else {
            return Ok(None);
        };
        let user = AuthUser {
            user_id: session.user_id,
            csrf: Some(session.csrf_token),
        };
        if header_csrf && is_write(&parts.method) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            user.check_csrf(sent)?;
        }
        user
    };
    if is_write(&parts.method) {
        state.limits.user_write(user.user_id)?;
    }
    Ok(Some(user))
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        resolve(parts, state, true)
            .await?
            .ok_or(Error::Unauthorized)
    }
}

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        Ok(MaybeUser(resolve(parts, state, true).await?))
    }
}

impl FromRequestParts<AppState> for PageUser {
    /// Pages send visitors who are not signed in home (which says why) rather than
    /// showing JSON.
    type Rejection = axum::response::Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> std::result::Result<Self, Self::Rejection> {
        use axum::response::IntoResponse as _;
        match resolve(parts, state, false).await {
            Ok(Some(user)) => Ok(PageUser(user)),
            Ok(None) | Err(Error::Unauthorized) => {
                Err(axum::response::Redirect::to("/?signin=required").into_response())
            }
            Err(e) => Err(e.into_response()),
        }
    }
}

/// Middleware: refuses a cross-site write, one whose `Origin` names another host
/// than the request's `Host` (defence in depth behind SameSite cookies and the CSRF
/// token; it also stops a forged cross-site sign-in). Requests without `Origin`
/// (scripts, older clients) pass on to the token checks.
pub(crate) async fn same_origin(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response> {
    if is_write(request.method())
        && let Some(origin) = request.headers().get(header::ORIGIN)
    {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, rest)| rest.trim_end_matches('/'));
        if host.is_none() || origin_host != host {
            return Err(Error::Csrf);
        }
    }
    Ok(next.run(request).await)
}

/// Middleware: refuses a request whose `Host` (or HTTP/2 authority) is not one the
/// server is configured for (`web.public_url`), so a page on another name that
/// resolves to this server (DNS rebinding) cannot read or write the API. A request
/// with no host at all is refused too. An empty allow-list accepts any host.
pub(crate) async fn allowed_host(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response> {
    let allowed = &state.config.allowed_hosts;
    if !allowed.is_empty() {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| request.uri().authority().map(|a| a.to_string()))
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !allowed.contains(&host) {
            tracing::warn!(%host, "refused a request for a host this server does not serve");
            let shown: String = host.chars().take(100).collect();
            return Err(Error::UnknownHost(shown));
        }
    }
    Ok(next.run(request).await)
}

/// The content security policy of every response: scripts, styles, images and
/// connections from this origin only (inline SVG charts may carry style attributes),
/// no framing by any site, no plugins, forms post only here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Middleware: the standard security headers on every response, and `Cache-Control:
/// no-store` on every response to a signed-in request (balances, tokens, private
/// prompts must not sit in a shared or back-button cache).
pub(crate) async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::HeaderValue;
    let credentialed = request.headers().contains_key(header::AUTHORIZATION)
        || CookieJar::from_headers(request.headers())
            .get(SESSION_COOKIE)
            .is_some();
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if credentialed || h.contains_key(header::SET_COOKIE) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Starts a session for `user_id`: returns the cookie to set and the CSRF token.
pub(crate) async fn start_session(
    state: &AppState,
    user_id: i64,
) -> Result<(Cookie<'static>, String)> {
    let secret = new_secret();
    let csrf = new_secret();
    let ttl = state.config.session_ttl;
    let expires_at = store::now_ms() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
    state
        .store
        .create_session(&hash_secret(&secret), user_id, &csrf, expires_at)
        .await?;
    let cookie = Cookie::build((SESSION_COOKIE, secret))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.config.cookie_secure)
        .max_age(time::Duration::seconds(
            i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
        ))
        .build();
    Ok((cookie, csrf))
}

/// Ends the session named by the request's cookie, if any; returns the removal cookie.
pub(crate) async fn end_session(state: &AppState, jar: &CookieJar) -> Result<Cookie<'static>> {
    if let Some(c) = jar.get(SESSION_COOKIE) {
        state.store.delete_session(&hash_secret(c.value())).await?;
    }
    Ok(Cookie::build((SESSION_COOKIE, ""))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.config.cookie_secure)
        .max_age(time::Duration::ZERO)
        .build())
}

/// Middleware: refuses writes over the per-IP rate.
pub(crate) async fn limit_ip_writes(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response> {
    // Issuing a sign-in nonce writes a row, so it spends like a write.
    if is_write(request.method()) || request.uri().path() == "/api/v1/auth/nonce" {
        let ip = state
            .limits
            .client_ip(request.headers(), request.extensions());
        state.limits.ip_write(ip)?;
    }
    Ok(next.run(request).await)
}
