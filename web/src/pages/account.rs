//! The account page (balance, deposit and withdraw, API tokens, the journal), the
//! datasets page (filters, a preview, the download link), and the sign-in forms
//! (dev login in demo mode, sign-out).

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;
use serde_json::{Value, json};

use super::spaces::CsrfForm;
use super::{nav, render, respond, when};
use crate::api::datasets::{ExportQuery, parse};
use crate::api::tokens;
use crate::auth::{self, MaybeUser, PageUser, siwe};
use crate::error::{Error, Result};
use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/account", get(account_page))
        .route("/account/deposit", post(deposit))
        .route("/account/withdraw", post(withdraw))
        .route("/account/tokens", post(create_token))
        .route("/account/tokens/{id}/revoke", post(revoke_token))
        .route("/datasets", get(datasets_page))
        .route("/auth/dev-login", post(dev_login))
        .route("/auth/logout", post(logout))
}

async fn account_context(state: &AppState, user_id: i64) -> Result<Value> {
    let user = state.store.user(user_id).await?;
    let balance = state.store.balance(user_id).await?;
    let tokens: Vec<Value> = state
        .store
        .api_tokens(user_id)
        .await?
        .into_iter()
        .map(|t| json!({"id": t.id, "name": t.name, "prefix": t.prefix, "revoked": t.revoked_at.is_some(),
                        "scopes": t.scopes.replace(',', ", "),
                        "expires": t.expires_at.map(when).unwrap_or_else(|| "never".into()),
                        "last_used": t.last_used_at.map(when).unwrap_or_else(|| "never".into())}))
        .collect();
    let journal: Vec<Value> = state
        .store
        .journal(Some(user_id))
        .await?
        .into_iter()
        .rev()
        .take(50)
        .map(|l| {
            json!({"id": l.id, "kind": l.kind, "account": l.account, "direction": l.direction,
                        "amount_wei": l.amount_wei.to_string(), "match_id": l.match_id})
        })
        .collect();
    let agents: Vec<Value> = state
        .store
        .agents_by_owner(user_id)
        .await?
        .into_iter()
        .map(|a| json!({"id": a.id, "name": a.name, "archived_at": a.archived_at}))
        .collect();
    Ok(json!({
        "wallet": user.wallet_address,
        "balance": {"available_wei": balance.available_wei.to_string(), "locked_wei": balance.locked_wei.to_string()},
        "tokens": tokens, "journal": journal, "agents": agents, "new_token": null, "error": null,
        // One-click money where the server signs for dev wallets (or there is no
        // chain); otherwise the browser's own wallet signs (assets/web/static/app.js).
        "server_signs": state.payments.signs_for_users(),
        "wallet_terms": state.payments.wallet_terms(),
    }))
}

async fn account_page(State(state): State<AppState>, PageUser(user): PageUser) -> Response {
    let result = async {
        let nav = nav(&state, Some(&user)).await?;
        let ctx = account_context(&state, user.user_id).await?;
        render(&state, "account.html", &nav, "Account", ctx)
    }
    .await;
    respond(&state, result).await
}

/// An amount form: ether, as people write it (`0.05`).
#[derive(Debug, Deserialize)]
struct AmountForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    amount_eth: String,
}

/// Parses the form's amount, in whole units of the fee asset, above zero.
fn amount_eth(money: &store::Money, text: &str) -> Result<store::Wei> {
    match money.parse(text) {
        Ok(store::Wei::ZERO) => Err(Error::invalid("amount_eth", "must be above zero")),
        Ok(wei) => Ok(wei),
        Err(e) => Err(Error::invalid("amount_eth", e.to_string())),
    }
}

async fn money(
    state: &AppState,
    user: &auth::AuthUser,
    form: &AmountForm,
    deposit: bool,
) -> Result<Response> {
    user.check_csrf(&form.csrf)?;
    let checked = amount_eth(&state.money, &form.amount_eth).and_then(|wei| {
        crate::api::account::server_signs(state, if deposit { "deposit" } else { "withdrawal" })
            .map(|()| wei)
    });
    let moved = match checked {
        Ok(wei) if deposit => state
            .payments
            .deposit(user.user_id, wei)
            .await
            .map_err(Error::from),
        Ok(wei) => state
            .payments
            .withdraw(user.user_id, wei)
            .await
            .map_err(Error::from),
        Err(e) => Err(e),
    };
    match moved {
        Ok(_) => Ok(Redirect::to("/account").into_response()),
        Err(e @ (Error::Invalid { .. } | Error::InsufficientFunds(_) | Error::Conflict(_))) => {
            let nav = nav(state, Some(user)).await?;
            let mut ctx = account_context(state, user.user_id).await?;
            ctx["error"] = json!(e.body().error.message);
            Ok((
                e.status(),
                render(state, "account.html", &nav, "Account", ctx)?,
            )
                .into_response())
        }
        Err(e) => Err(e),
    }
}

async fn deposit(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Form(form): Form<AmountForm>,
) -> Response {
    let result = money(&state, &user, &form, true).await;
    respond(&state, result).await
}

async fn withdraw(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Form(form): Form<AmountForm>,
) -> Response {
    let result = money(&state, &user, &form, false).await;
    respond(&state, result).await
}

/// The new-token form: a name, a checkbox per scope, and a lifetime in days.
#[derive(Debug, Deserialize)]
struct TokenForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    name: String,
    #[serde(default)]
    scope_read: Option<String>,
    #[serde(default)]
    scope_play: Option<String>,
    #[serde(default)]
    scope_withdraw: Option<String>,
    #[serde(default)]
    expires_in_days: Option<String>,
}

async fn create_token(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Form(form): Form<TokenForm>,
) -> Response {
    let result = async {
        user.check_csrf(&form.csrf)?;
        let nav = nav(&state, Some(&user)).await?;
        let scopes: Vec<String> = [
            ("read", &form.scope_read),
            ("play", &form.scope_play),
            ("withdraw", &form.scope_withdraw),
        ]
        .into_iter()
        .filter(|(_, on)| on.is_some())
        .map(|(s, _)| s.to_string())
        .collect();
        let days = match form.expires_in_days.as_deref().map(str::trim) {
            None | Some("") => Ok(tokens::DEFAULT_TOKEN_DAYS),
            Some(d) => d.parse::<u32>().map_err(|_| {
                Error::invalid(
                    "expires_in_days",
                    format!(
                        "must be a whole number of days, 1 to {}",
                        tokens::MAX_TOKEN_DAYS
                    ),
                )
            }),
        };
        let made = match days {
            Ok(days) => {
                tokens::create_scoped(&state, user.user_id, &form.name, &scopes, days).await
            }
            Err(e) => Err(e),
        };
        let (status, extra) = match made {
            Ok((secret, _)) => (StatusCode::OK, ("new_token", secret)),
            Err(e @ Error::Invalid { .. }) => (e.status(), ("error", e.body().error.message)),
            Err(e) => return Err(e),
        };
        let mut ctx = account_context(&state, user.user_id).await?;
        ctx[extra.0] = json!(extra.1);
        Ok((
            status,
            render(&state, "account.html", &nav, "Account", ctx)?,
        )
            .into_response())
    }
    .await;
    respond(&state, result).await
}

async fn revoke_token(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let result = async {
        user.check_csrf(&form.csrf)?;
        state.store.revoke_api_token(user.user_id, id).await?;
        Ok(Redirect::to("/account").into_response())
    }
    .await;
    respond(&state, result).await
}

async fn datasets_page(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    RawQuery(raw): RawQuery,
) -> Response {
    let result = async {
        let nav = nav(&state, user.as_ref()).await?;
        let raw = raw.unwrap_or_default();
        // Empty form fields mean "no filter".
        let cleaned: String = raw
            .split('&')
            .filter(|kv| kv.split_once('=').is_some_and(|(_, v)| !v.is_empty()))
            .collect::<Vec<_>>()
            .join("&");
        let q: ExportQuery = serde_urlencoded_from(&cleaned)?;
        let (preview, counts, error) = match parse(&state, &q).await {
            Ok(export) => {
                let rows = state.store.export_pairs_page(&export.filter, export.after, 20).await?;
                let counts = state.store.export_pair_counts(&export.filter).await?;
                (rows, counts, None)
            }
            Err(e) => (Vec::new(), Vec::new(), Some(e.body().error.message)),
        };
        let total: i64 = counts.iter().map(|c| c.pairs).sum();
        let mean_agreement = if total > 0 {
            counts.iter().map(|c| c.mean_agreement * c.pairs as f64).sum::<f64>() / total as f64
        } else {
            0.0
        };
        let counts: Vec<Value> = counts
            .iter()
            .map(|c| json!({"space": c.space, "pairs": c.pairs, "agreement": format!("{:.2}", c.mean_agreement)}))
            .collect();
        let download = if cleaned.is_empty() {
            "/api/v1/datasets/preferences".to_string()
        } else {
            format!("/api/v1/datasets/preferences?{cleaned}")
        };
        let base = state.config.siwe_uri.trim_end_matches('/').to_string();
        let file = crate::api::datasets::file_name(&q);
        let votes: Vec<Value> = crate::api::votes::agreement(&state)
            .await?
            .into_iter()
            .map(|a| json!({"space": a.space, "votes": a.votes, "agreed": a.agreed,
                "percent": format!("{:.0}", 100.0 * a.agreement)}))
            .collect();
        let spaces: Vec<Value> = state
            .store
            .spaces()
            .await?
            .into_iter()
            .map(|s| json!({"slug": s.slug, "name": s.name, "selected": q.space.as_deref() == Some(s.slug.as_str())}))
            .collect();
        let format = q.format.clone().unwrap_or_else(|| "trl".into());
        let preview: Vec<Value> = preview
            .into_iter()
            .map(|p| json!({"id": p.id, "space": p.space, "margin": format!("{:.3}", p.margin),
                            "judge_agreement": format!("{:.2}", p.judge_agreement),
                            "prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}))
            .collect();
        let formats: Vec<Value> = ["trl", "trl-conversational"]
            .iter()
            .map(|f| json!({"value": f, "selected": *f == format}))
            .collect();
        let ctx = json!({
            "spaces": spaces,
            "formats": formats,
            "q": {"agent": q.agent, "since": q.since, "until": q.until, "min_margin": q.min_margin, "min_agreement": q.min_agreement},
            "preview": preview, "error": error,
            "counts": counts, "total": total, "mean_agreement": format!("{:.2}", mean_agreement),
            "complete_only": q.complete_only == Some(true),
            "file": file, "base": base, "votes": votes,
            "download_url": format!("{base}{download}"),
            "download": download,
        });
        render(&state, "datasets.html", &nav, "Datasets", ctx)
    }
    .await;
    respond(&state, result).await
}

fn serde_urlencoded_from(query: &str) -> Result<ExportQuery> {
    axum::extract::Query::<ExportQuery>::try_from_uri(
        &format!("/?{query}")
            .parse()
            .map_err(|_| Error::invalid("query", "bad query"))?,
    )
    .map(|q| q.0)
    .map_err(Error::from)
}

/// The dev login form.
#[derive(Debug, Deserialize)]
struct DevLoginForm {
    #[serde(default = "default_dev_account")]
    account: usize,
}

fn default_dev_account() -> usize {
    siwe::DEFAULT_DEV_ACCOUNT
}

async fn dev_login(
    State(state): State<AppState>,
    jar: CookieJar,
    Form(form): Form<DevLoginForm>,
) -> Response {
    let result = async {
        let user = siwe::dev_sign_in(&state, form.account).await?;
        let (cookie, _) = auth::start_session(&state, user.id).await?;
        Ok((jar.add(cookie), Redirect::to("/")).into_response())
    }
    .await;
    respond(&state, result).await
}

async fn logout(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    jar: CookieJar,
    Form(form): Form<CsrfForm>,
) -> Response {
    let result = async {
        user.check_csrf(&form.csrf)?;
        let removal = auth::end_session(&state, &jar).await?;
        Ok((jar.add(removal), Redirect::to("/")).into_response())
    }
    .await;
    respond(&state, result).await
}
