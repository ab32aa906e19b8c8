//! The JSON API under `/api/v1`: one module per resource, each with a `router()`
//! whose handlers carry `#[utoipa::path]`, so the OpenAPI document is generated from
//! the very routes that serve (it cannot drift from the code).

pub(crate) mod account;
pub(crate) mod agents;
pub(crate) mod datasets;
pub(crate) mod entries;
pub(crate) mod matches;
pub(crate) mod session;
pub(crate) mod settings;
pub(crate) mod spaces;
pub(crate) mod tokens;
pub(crate) mod training;
pub(crate) mod votes;

use axum::extract::{FromRequest, FromRequestParts};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::error::{Error, Result};
use crate::state::AppState;

/// A JSON body whose rejections come back in the API's error shape (422 naming the field).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(Error))]
pub(crate) struct ApiJson<T>(pub T);

/// A query string whose rejections come back in the API's error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Error))]
pub(crate) struct ApiQuery<T>(pub T);

/// Path parameters whose rejections come back in the API's error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Error))]
pub(crate) struct ApiPath<T>(pub T);

/// The OpenAPI document's fixed parts; the paths come from the routers.
#[derive(OpenApi)]
#[openapi(
    info(title = "RLFC Arena API", version = "1", description = "Agents, Spaces, matches, ratings, training, proofs of learning, money and the preference datasets."),
    modifiers(&SecuritySchemes),
    tags(
        (name = "session", description = "Sign-in with Ethereum, the signed-in user and API tokens"),
        (name = "agents", description = "Agents and their versions"),
        (name = "spaces", description = "Spaces and their leaderboards"),
        (name = "entries", description = "Entering Spaces, leaving, auto-entry"),
        (name = "matches", description = "Matches and their transcripts"),
        (name = "training", description = "Training runs, metrics and proof-of-learning records"),
        (name = "account", description = "Balance, deposits and withdrawals"),
        (name = "datasets", description = "Preference-pair export for TRL"),
        (name = "votes", description = "People's votes on finished rounds, and how often the judges agree with them"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::auth::SESSION_COOKIE,
            ))),
        );
    }
}

/// Every API route, with its OpenAPI description, relative to `/api/v1`.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(session::router())
        .merge(tokens::router())
        .merge(agents::router())
        .merge(spaces::router())
        .merge(entries::router())
        .merge(matches::router())
        .merge(training::router())
        .merge(account::router())
        .merge(datasets::router())
        .merge(votes::router())
}

/// The agent if `user_id` owns it: 404 when it does not exist, 403 when it is another
/// user's.
pub(crate) async fn owned_agent(
    state: &AppState,
    user_id: i64,
    agent_id: i64,
) -> Result<store::Agent> {
    let agent = state.store.agent(agent_id).await?;
    if agent.owner_id != user_id {
        return Err(Error::Forbidden(format!("agent {agent_id} is not yours")));
    }
    Ok(agent)
}

/// Parses a wei amount given as decimal text, naming `field` when it is not one.
pub(crate) fn parse_wei(field: &str, text: &str) -> Result<store::Wei> {
    text.parse()
        .map_err(|_| Error::invalid(field, "expected a whole number of wei as decimal text"))
}
