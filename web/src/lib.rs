//! The RLFC Arena web layer: the JSON API under `/api/v1` (with its generated OpenAPI
//! document), Sign-In with Ethereum and API tokens, the streamed preference-dataset
//! export, websocket spectating, the server-rendered pages, and the client that gathers a
//! proof-of-learning record's evidence from a server (`rlfc verify-pol --from`).
//!
//! The binary builds an [`AppState`] (store, event bus, rulebooks, payment rail,
//! configuration) and calls [`serve`]; tests call [`router`] and drive it in process.

#![warn(missing_docs)]

mod api;
mod auth;
mod config;
mod error;
pub mod evidence;
mod limits;
mod pages;
mod payments;
mod state;
pub mod watch;
pub mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;

pub use config::{PublicUrl, WebConfig};
pub use error::{Error, Result};
pub use payments::{PaymentError, PaymentFuture, Payments, WalletTerms};
pub use state::{AppState, TokenCounter};

/// The OpenAPI document of the JSON API, generated from the routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = OpenApiRouter::<AppState>::new()
        .nest("/api/v1", api::router())
        .into_openapi();
    describe_responses(&mut doc);
    doc
}

/// Names the project and its version, lists the 422 (validation) and 429 (rate
/// limit) answers every operation can give, and gives every response without a
/// description its status's reason phrase, since OpenAPI requires one.
fn describe_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{RefOr, ResponseBuilder};
    doc.info.title = "RLFC Arena API".into();
    doc.info.description = Some(
        "Reinforcement Learning from Competition: agents, Spaces, entries, matches, \
         ratings, preference datasets and proof-of-learning records. Errors are \
         `{\"error\": {\"code\", \"message\", \"field\"}}`; a 422 names the field and the \
         limit it broke; writes are rate-limited per user and per address (429)."
            .into(),
    );
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    let ensure = |op: &mut utoipa::openapi::path::Operation, status: &str, description: &str| {
        op.responses
            .responses
            .entry(status.into())
            .or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description(description)
                        .content(
                            "application/json",
                            utoipa::openapi::ContentBuilder::new()
                                .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                                .build(),
                        )
                        .build(),
                )
            });
    };
    for item in doc.paths.paths.values_mut() {
        let ops = [
            (&mut item.get, false),
            (&mut item.put, true),
            (&mut item.post, true),
            (&mut item.delete, true),
            (&mut item.patch, true),
        ];
        for (op, write) in ops {
            let Some(op) = op else { continue };
            if write {
                ensure(op, "429", "Too many writes: slow down");
                ensure(op, "422", "A field broke a rule (the error names it)");
            } else if op.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
                ensure(op, "422", "A parameter broke a rule (the error names it)");
            }
            if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                ensure(op, "401", "Sign in first");
                ensure(op, "403", "Not yours, or the API token lacks the scope");
            }
            for (status, response) in op.responses.responses.iter_mut() {
                if let RefOr::T(r) = response
                    && r.description.is_empty()
                {
                    r.description = status
                        .parse::<u16>()
                        .ok()
                        .and_then(|c| axum::http::StatusCode::from_u16(c).ok())
                        .and_then(|c| c.canonical_reason())
                        .unwrap_or("Response")
                        .to_string();
                }
            }
        }
    }
}

/// Every route: the API, its OpenAPI document, the websockets and the pages, with the
/// body-size and write-rate limits applied.
pub fn router(state: AppState) -> Router {
    let (api, mut doc) = OpenApiRouter::new()
        .nest("/api/v1", api::router())
        .split_for_parts();
    describe_responses(&mut doc);
    let doc = Arc::new(doc);
    let body_limit = state.config.body_limit;
    Router::new()
        .merge(api)
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .merge(ws::router())
        .merge(pages::router())
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn(auth::same_origin))
        .layer(axum::middleware::from_fn(auth::security_headers))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::limit_ip_writes,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::allowed_host,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` completes, then stops taking
/// requests, tells open websockets to close, and waits for requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop = state.shutdown.clone();
    // Expired nonces and sessions are deleted once a minute while the server runs.
    let purge_store = state.store.clone();
    let mut purge_stop = state.shutdown.subscribe();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = every.tick() => {
                    match purge_store.purge_expired_auth(store::now_ms()).await {
                        Ok((n, s)) if n + s > 0 => {
                            tracing::debug!(nonces = n, sessions = s, "purged expired sign-ins");
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "purging expired sign-ins failed"),
                    }
                }
                _ = purge_stop.changed() => break,
            }
        }
    });
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            stop.send_replace(true);
        })
        .await
}

/// Stores the loaded rulebooks as Spaces with their fee tiers (creating or updating
/// by slug), so entries and matches can refer to them.
pub async fn sync_spaces(
    store: &store::Store,
    rulebooks: &[spaces::Rulebook],
) -> store::Result<()> {
    for book in rulebooks {
        let tiers: Vec<(&str, store::Wei)> = book
            .fees
            .iter()
            .map(|f| (f.name.as_str(), store::Wei(f.wei)))
            .collect();
        store
            .upsert_space(&store::NewSpace {
                slug: &book.slug,
                name: &book.name,
                description: &book.description,
                rulebook: &format!("assets/spaces/{}.toml", book.slug),
                version_hash: book.version_hash(),
                fee_tiers: &tiers,
            })
            .await?;
    }
    Ok(())
}
