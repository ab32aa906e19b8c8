//! The server-rendered pages (tera templates under `assets/web/templates`) and the
//! project's own static CSS and JS (`assets/web/static`), all compiled into the
//! binary so a deployment needs no files and nothing is fetched from elsewhere.
//!
//! Pages call the same functions as the JSON API, so a rule (ownership, a limit)
//! holds on both. Forms post with a `_csrf` field checked against the session.

mod account;
mod agents;
pub(crate) mod charts;
mod matches;
mod spaces;
pub(crate) mod templates;
mod votes;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::{Value, json};

use crate::auth::AuthUser;
use crate::error::{Error, Result};
use crate::state::AppState;

const STYLE_CSS: &str = include_str!("../../../assets/web/static/style.css");
const APP_JS: &str = include_str!("../../../assets/web/static/app.js");
const ICON_SVG: &str = include_str!("../../../assets/web/static/icon.svg");

async fn icon() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        ICON_SVG,
    )
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLE_CSS,
    )
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
}

/// Page and static-file routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/static/style.css", get(style))
        .route("/static/app.js", get(script))
        .route("/static/icon.svg", get(icon))
        .route("/favicon.ico", get(icon))
        .merge(spaces::router())
        .merge(agents::router())
        .merge(matches::router())
        .merge(account::router())
        .merge(votes::router())
}

/// The header's view of who is signed in.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Nav {
    user: Option<NavUser>,
    csrf: Option<String>,
    demo_login: bool,
}

#[derive(Debug, Clone, Serialize)]
struct NavUser {
    id: i64,
    wallet_short: String,
}

/// Builds the header for `user` (if signed in).
pub(crate) async fn nav(state: &AppState, user: Option<&AuthUser>) -> Result<Nav> {
    let user_view = match user {
        Some(u) => {
            let row = state.store.user(u.user_id).await?;
            let w = &row.wallet_address;
            Some(NavUser {
                id: row.id,
                wallet_short: format!("{}…{}", &w[..6], &w[w.len() - 4..]),
            })
        }
        None => None,
    };
    Ok(Nav {
        user: user_view,
        csrf: user.and_then(|u| u.csrf.clone()),
        demo_login: state.config.demo_login,
    })
}

/// Renders `template` with `context` plus the header (`nav`), `title` and no flash.
pub(crate) fn render(
    state: &AppState,
    template: &str,
    nav: &Nav,
    title: &str,
    mut context: Value,
) -> Result<Response> {
    context["nav"] = serde_json::to_value(nav).map_err(|e| Error::Internal(e.to_string()))?;
    context["title"] = json!(title);
    // The unit money is shown and typed in: `money.symbol`, `money.decimals`, and
    // `money.base` (what the exact amounts on hover count: `wei`).
    context["money"] = json!({
        "symbol": state.money.symbol,
        "decimals": state.money.decimals,
        "base": state.money.base_unit(),
    });
    if context.get("flash").is_none() {
        context["flash"] = Value::Null;
    }
    Ok(state.templates.render(template, &context)?.into_response())
}

/// Turns a page handler's result into a response: sign-in problems go home, other
/// errors become an error page with the right status.
pub(crate) async fn respond(state: &AppState, result: Result<Response>) -> Response {
    let e = match result {
        Ok(r) => return r,
        Err(e) => e,
    };
    if matches!(e, Error::Unauthorized) {
        // Home says why the visitor was sent there.
        return Redirect::to("/?signin=required").into_response();
    }
    let status = e.status();
    let body = e.body();
    let nav = Nav {
        user: None,
        csrf: None,
        demo_login: state.config.demo_login,
    };
    match render(
        state,
        "error.html",
        &nav,
        status.canonical_reason().unwrap_or("Error"),
        json!({"status": status.as_u16(), "message": body.error.message}),
    ) {
        Ok(page) => (status, page).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "error").into_response(),
    }
}

/// Any path no route serves: the API answers in its JSON error shape, pages with the
/// themed error page, both 404 and naming the path.
pub(crate) async fn not_found(
    axum::extract::State(state): axum::extract::State<AppState>,
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> Response {
    let path = uri.path();
    if path.starts_with("/api/") {
        return Error::NotFound(format!("no route {method} {path}")).into_response();
    }
    respond(
        &state,
        Err(Error::NotFound(format!("There is no page at {path}."))),
    )
    .await
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM UTC`.
pub(crate) fn when(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute()),
        Err(_) => String::new(),
    }
}
