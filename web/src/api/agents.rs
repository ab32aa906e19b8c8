//! Agents and their versions. Anyone may see an agent's public face (name, model,
//! ratings); only its owner may create versions, archive it, or read its versions
//! (the meta-prompt and hyperparameters are the owner's work).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::settings::{self, SamplingParams, TrainingPolicy};
use super::{ApiJson, ApiPath, owned_agent};
use crate::auth::AuthUser;
use crate::error::{Error, ErrorBody, Result};
use crate::state::AppState;

/// An agent's public face.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentView {
    /// Id.
    pub id: i64,
    /// The owner's user id.
    pub owner_id: i64,
    /// Name.
    pub name: String,
    /// Base model: the name of one of the served base models (`GET
    /// /api/v1/base-models`).
    pub base_model: String,
    /// The sha256 of that model's weights as served here (`None` when this server
    /// does not serve it).
    pub base_model_sha256: Option<String>,
    /// Created, ms.
    pub created_at: i64,
    /// Archived, ms (archived agents enter no new matches).
    pub archived_at: Option<i64>,
    /// The newest version number.
    pub latest_version: i64,
    /// Whether the owner opted the agent's exact prompts (meta-prompt included) into
    /// public dataset exports; by default exports show only the task.
    pub public_prompt: bool,
    /// Its rating in each Space it has played.
    pub ratings: Vec<AgentRating>,
}

/// An agent's rating in one Space.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentRating {
    /// The Space.
    pub space_id: i64,
    /// Skill estimate.
    pub mu: f64,
    /// Uncertainty.
    pub sigma: f64,
    /// Rated matches.
    pub matches_played: i64,
}

/// One version of an agent, with its settings (owner only).
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionView {
    /// Row id (what entries and pairs refer to).
    pub id: i64,
    /// 1, 2, 3… per agent.
    pub version: i64,
    /// The version it was derived from.
    pub parent_version_id: Option<i64>,
    /// The meta-prompt.
    pub system_prompt: String,
    /// Sampling settings.
    pub sampling: SamplingParams,
    /// Training settings.
    pub training: TrainingPolicy,
    /// sha256 of its adapter, if trained.
    pub adapter_hash: Option<String>,
    /// Created, ms.
    pub created_at: i64,
    /// Why this version is never played: its training run's regression gate held
    /// its adapter back (the next version restores the parent's adapter).
    pub held_back: Option<String>,
}

impl From<store::AgentVersion> for VersionView {
    fn from(v: store::AgentVersion) -> VersionView {
        VersionView {
            id: v.id,
            version: v.version,
            parent_version_id: v.parent_version_id,
            sampling: settings::stored(&v.sampling),
            training: settings::stored(&v.training),
            system_prompt: v.system_prompt,
            adapter_hash: v.adapter_hash,
            created_at: v.created_at,
            held_back: v.held_back,
        }
    }
}

/// An agent with its newest version (what its owner sees after a write).
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentDetail {
    /// The agent.
    pub agent: AgentView,
    /// Its newest version.
    pub version: VersionView,
}

/// A new agent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    /// 1 to 64 characters, no control, bidirectional-override or zero-width characters.
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    /// The base model: one of the served names (`GET /api/v1/base-models`), such as
    /// `smollm2-135m-instruct`.
    #[schema(min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9._:/-]+$")]
    pub base_model: String,
    /// The meta-prompt: at most 4000 characters and 1024 tokens of the agents' model.
    #[schema(max_length = 4000)]
    pub system_prompt: String,
    /// Sampling settings (defaults for what is left out).
    #[serde(default)]
    pub sampling: SamplingParams,
    /// Training settings (defaults for what is left out).
    #[serde(default)]
    pub training: TrainingPolicy,
}

/// A change that makes a new version; what is left out is kept from the newest one.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentEdit {
    /// New meta-prompt: at most 4000 characters and 1024 tokens of the agents' model.
    #[schema(max_length = 4000)]
    pub system_prompt: Option<String>,
    /// New sampling settings.
    pub sampling: Option<SamplingParams>,
    /// New training settings.
    pub training: Option<TrainingPolicy>,
    /// Opt the agent's exact prompts (meta-prompt included) into public dataset
    /// exports (`true`) or keep them private (`false`, the default). Changing only
    /// this makes no new version.
    pub public_prompt: Option<bool>,
}

/// Builds the public view of an agent.
pub(crate) async fn agent_view(state: &AppState, agent: store::Agent) -> Result<AgentView> {
    let latest = state.store.latest_agent_version(agent.id).await?;
    let ratings = state.store.agent_ratings(agent.id).await?;
    Ok(AgentView {
        id: agent.id,
        owner_id: agent.owner_id,
        name: agent.name,
        base_model_sha256: state
            .base_models
            .resolve(&agent.base_model)
            .ok()
            .map(|c| c.sha256.clone()),
        base_model: agent.base_model,
        created_at: agent.created_at,
        archived_at: agent.archived_at,
        latest_version: latest.version,
        public_prompt: agent.public_prompt != 0,
        ratings: ratings
            .into_iter()
            .map(|r| AgentRating {
                space_id: r.space_id,
                mu: r.mu,
                sigma: r.sigma,
                matches_played: r.matches_played,
            })
            .collect(),
    })
}

/// Validates and stores a new agent for `owner_id`.
pub(crate) async fn create(state: &AppState, owner_id: i64, new: &NewAgent) -> Result<AgentDetail> {
    settings::validate_name(&new.name)?;
    settings::validate_base_model(&new.base_model)?;
    // Stored by its served name (the default's old alias included).
    let base_model = state.base_model(&new.base_model)?.name.clone();
    settings::validate_prompt(&new.system_prompt)?;
    state.check_prompt_tokens(&new.system_prompt)?;
    settings::check_sampling(&new.sampling)?;
    settings::check_training(&new.training)?;
    let (agent, version) = state
        .store
        .create_agent(
            owner_id,
            new.name.trim(),
            &base_model,
            &store::NewAgentVersion {
                system_prompt: new.system_prompt.clone(),
                sampling: to_json(&new.sampling)?,
                training: to_json(&new.training)?,
                adapter_hash: None,
            },
        )
        .await?;
    Ok(AgentDetail {
        agent: agent_view(state, agent).await?,
        version: version.into(),
    })
}

/// Validates an edit of `agent_id` by `user_id` and stores it as a new version.
pub(crate) async fn edit(
    state: &AppState,
    user_id: i64,
    agent_id: i64,
    edit: &AgentEdit,
) -> Result<AgentDetail> {
    let mut agent = owned_agent(state, user_id, agent_id).await?;
    if agent.archived_at.is_some() {
        return Err(Error::Conflict(format!("agent {agent_id} is archived")));
    }
    if let Some(public) = edit.public_prompt {
        agent = state.store.set_public_prompt(agent_id, public).await?;
    }
    let latest = state.store.latest_agent_version(agent_id).await?;
    if edit.system_prompt.is_none() && edit.sampling.is_none() && edit.training.is_none() {
        return Ok(AgentDetail {
            agent: agent_view(state, agent).await?,
            version: latest.into(),
        });
    }
    let current = VersionView::from(latest.clone());
    let prompt = edit.system_prompt.clone().unwrap_or(current.system_prompt);
    let sampling = edit.sampling.clone().unwrap_or(current.sampling);
    let training = edit.training.clone().unwrap_or(current.training);
    settings::validate_prompt(&prompt)?;
    state.check_prompt_tokens(&prompt)?;
    settings::check_sampling(&sampling)?;
    settings::check_training(&training)?;
    let version = state
        .store
        .add_agent_version(
            agent_id,
            latest.id,
            &store::NewAgentVersion {
                system_prompt: prompt,
                sampling: to_json(&sampling)?,
                training: to_json(&training)?,
                // Training settings change how the adapter learns, not the adapter itself.
                adapter_hash: latest.adapter_hash,
            },
        )
        .await?;
    Ok(AgentDetail {
        agent: agent_view(state, agent).await?,
        version: version.into(),
    })
}

fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| Error::Internal(e.to_string()))
}

/// Creates an agent with its first version.
#[utoipa::path(post, path = "/agents", tag = "agents", request_body = NewAgent,
    responses((status = 201, body = AgentDetail), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
async fn create_agent(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<NewAgent>,
) -> Result<(StatusCode, Json<AgentDetail>)> {
    Ok((
        StatusCode::CREATED,
        Json(create(&state, user.user_id, &body).await?),
    ))
}

/// The signed-in user's agents, archived ones included.
#[utoipa::path(get, path = "/agents", tag = "agents",
    responses((status = 200, body = Vec<AgentView>), (status = 401, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
async fn my_agents(State(state): State<AppState>, user: AuthUser) -> Result<Json<Vec<AgentView>>> {
    let mut out = Vec::new();
    for agent in state.store.agents_by_owner(user.user_id).await? {
        out.push(agent_view(&state, agent).await?);
    }
    Ok(Json(out))
}

/// One agent's public face.
#[utoipa::path(get, path = "/agents/{id}", tag = "agents",
    params(("id" = i64, Path, description = "Agent id")),
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody)))]
async fn get_agent(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<AgentView>> {
    let agent = state.store.agent(id).await?;
    Ok(Json(agent_view(&state, agent).await?))
}

/// Edits an agent (owner only): stores a new version.
#[utoipa::path(patch, path = "/agents/{id}", tag = "agents", request_body = AgentEdit,
    params(("id" = i64, Path, description = "Agent id")),
    responses((status = 200, body = AgentDetail), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
async fn edit_agent(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<AgentEdit>,
) -> Result<Json<AgentDetail>> {
    Ok(Json(edit(&state, user.user_id, id, &body).await?))
}

/// Archives an agent (owner only); it keeps its history and enters no new matches.
#[utoipa::path(post, path = "/agents/{id}/archive", tag = "agents",
    params(("id" = i64, Path, description = "Agent id")),
    responses((status = 200, body = AgentView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
async fn archive_agent(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<AgentView>> {
    owned_agent(&state, user.user_id, id).await?;
    let agent = state.store.archive_agent(id).await?;
    Ok(Json(agent_view(&state, agent).await?))
}

/// Every version of an agent, oldest first (owner only).
#[utoipa::path(get, path = "/agents/{id}/versions", tag = "agents",
    params(("id" = i64, Path, description = "Agent id")),
    responses((status = 200, body = Vec<VersionView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
async fn versions(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<VersionView>>> {
    owned_agent(&state, user.user_id, id).await?;
    let rows = state.store.agent_versions(id).await?;
    Ok(Json(rows.into_iter().map(VersionView::from).collect()))
}

/// One version of an agent by number (owner only).
#[utoipa::path(get, path = "/agents/{id}/versions/{version}", tag = "agents",
    params(("id" = i64, Path, description = "Agent id"), ("version" = i64, Path, description = "Version number")),
    responses((status = 200, body = VersionView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
async fn version(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath((id, number)): ApiPath<(i64, i64)>,
) -> Result<Json<VersionView>> {
    owned_agent(&state, user.user_id, id).await?;
    let row = state
        .store
        .agent_versions(id)
        .await?
        .into_iter()
        .find(|v| v.version == number)
        .ok_or_else(|| Error::NotFound(format!("version {number} of agent {id} not found")))?;
    Ok(Json(row.into()))
}

/// Agent routes.
/// A base model agents may choose.
#[derive(Debug, Serialize, ToSchema)]
pub struct BaseModelView {
    /// The name an agent gives as `base_model`.
    pub name: String,
    /// The sha256 of its weights (a GGUF file), which matches and proofs of learning
    /// record.
    pub sha256: String,
    /// What it is.
    pub description: String,
    /// Whether agents that leave the choice to the studio get this one.
    pub default: bool,
}

/// The base models this deployment serves, the default first.
#[utoipa::path(get, path = "/base-models", tag = "agents",
    responses((status = 200, body = Vec<BaseModelView>)))]
async fn base_models(State(state): State<AppState>) -> Json<Vec<BaseModelView>> {
    Json(
        state
            .base_models
            .choices()
            .iter()
            .enumerate()
            .map(|(i, c)| BaseModelView {
                name: c.name.clone(),
                sha256: c.sha256.clone(),
                description: c.description.clone(),
                default: i == 0,
            })
            .collect(),
    )
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(base_models))
        .routes(routes!(create_agent, my_agents))
        .routes(routes!(get_agent, edit_agent))
        .routes(routes!(archive_agent))
        .routes(routes!(versions))
        .routes(routes!(version))
}
