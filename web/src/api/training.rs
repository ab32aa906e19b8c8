//! Training runs (DPO on an agent's adapter), their per-step metrics, and the
//! proof-of-learning records that anchor each new adapter on chain. These are public:
//! the records are on chain anyway, and anyone may replay a run to check it.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiPath;
use crate::error::{ErrorBody, Result};
use crate::state::AppState;

/// A training run.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrainingRunView {
    /// Id.
    pub id: i64,
    /// The agent.
    pub agent_id: i64,
    /// The version trained from.
    pub parent_version_id: i64,
    /// The version produced, once it succeeded.
    pub new_version_id: Option<i64>,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// Hyperparameters (JSON).
    pub hyperparams: serde_json::Value,
    /// Their hash.
    pub hyperparams_hash: String,
    /// Merkle root of the pairs.
    pub pairs_root: String,
    /// Root of the match results.
    pub results_root: String,
    /// Started, ms.
    pub started_at: i64,
    /// Finished, ms.
    pub finished_at: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
    /// What the regression gate found before the new adapter was played: the new
    /// adapter against its parent on held-out tasks, and whether it was held back.
    #[schema(value_type = Option<Object>)]
    pub evaluation: Option<serde_json::Value>,
}

impl From<store::TrainingRun> for TrainingRunView {
    fn from(r: store::TrainingRun) -> TrainingRunView {
        TrainingRunView {
            id: r.id,
            agent_id: r.agent_id,
            parent_version_id: r.parent_version_id,
            new_version_id: r.new_version_id,
            status: r.status.to_string(),
            hyperparams: serde_json::from_str(&r.hyperparams).unwrap_or(serde_json::Value::Null),
            hyperparams_hash: r.hyperparams_hash,
            pairs_root: r.pairs_root,
            results_root: r.results_root,
            started_at: r.started_at,
            finished_at: r.finished_at,
            error: r.error,
            evaluation: r
                .evaluation
                .as_deref()
                .and_then(|e| serde_json::from_str(e).ok()),
        }
    }
}

/// One optimiser step.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricView {
    /// Step from 0.
    pub step: i64,
    /// DPO loss.
    pub loss: f64,
    /// Share of pairs ranked right by the implicit reward.
    pub reward_accuracy: f64,
    /// Mean reward of the chosen answers.
    pub chosen_reward: f64,
    /// Mean reward of the rejected answers.
    pub rejected_reward: f64,
    /// Loss on the run's held-out pairs after this step, where measured.
    pub validation_loss: Option<f64>,
}

/// A run with its metrics.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrainingRunDetail {
    /// The run.
    pub run: TrainingRunView,
    /// Its steps, in order.
    pub metrics: Vec<MetricView>,
}

/// A proof-of-learning record.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolRecordView {
    /// The record's id on chain.
    pub record_id: i64,
    /// The agent.
    pub agent_id: i64,
    /// The training run it records.
    pub training_run_id: i64,
    /// Parent adapter hash.
    pub parent_hash: String,
    /// New adapter hash.
    pub new_hash: String,
    /// Merkle root of the pairs.
    pub pairs_root: String,
    /// Root of the match results.
    pub results_root: String,
    /// Hash of the hyperparameters.
    pub hyperparams_hash: String,
    /// The trainer's address.
    pub trainer: String,
    /// Block of the record.
    pub block_number: i64,
    /// Time, ms.
    pub created_at: i64,
}

impl From<store::PolRecord> for PolRecordView {
    fn from(p: store::PolRecord) -> PolRecordView {
        PolRecordView {
            record_id: p.record_id,
            agent_id: p.agent_id,
            training_run_id: p.training_run_id,
            parent_hash: p.parent_hash,
            new_hash: p.new_hash,
            pairs_root: p.pairs_root,
            results_root: p.results_root,
            hyperparams_hash: p.hyperparams_hash,
            trainer: p.trainer,
            block_number: p.block_number,
            created_at: p.created_at,
        }
    }
}

/// A run with its metrics.
pub(crate) async fn run_detail(state: &AppState, id: i64) -> Result<TrainingRunDetail> {
    let run = state.store.training_run(id).await?;
    let metrics = state.store.training_metrics(id).await?;
    Ok(TrainingRunDetail {
        run: run.into(),
        metrics: metrics
            .into_iter()
            .map(|m| MetricView {
                step: m.step,
                loss: m.loss,
                reward_accuracy: m.reward_accuracy,
                chosen_reward: m.chosen_reward,
                rejected_reward: m.rejected_reward,
                validation_loss: m.validation_loss,
            })
            .collect(),
    })
}

/// An agent's training runs, newest first.
#[utoipa::path(get, path = "/agents/{id}/training-runs", tag = "training",
    params(("id" = i64, Path, description = "Agent id")),
    responses((status = 200, body = Vec<TrainingRunView>), (status = 404, body = ErrorBody)))]
async fn agent_runs(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<TrainingRunView>>> {
    state.store.agent(id).await?;
    let rows = state.store.training_runs_for_agent(id).await?;
    Ok(Json(rows.into_iter().map(TrainingRunView::from).collect()))
}

/// One training run with its per-step metrics.
#[utoipa::path(get, path = "/training-runs/{id}", tag = "training",
    params(("id" = i64, Path, description = "Training run id")),
    responses((status = 200, body = TrainingRunDetail), (status = 404, body = ErrorBody)))]
async fn get_run(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<TrainingRunDetail>> {
    Ok(Json(run_detail(&state, id).await?))
}

/// An agent's proof-of-learning records, oldest first.
#[utoipa::path(get, path = "/agents/{id}/pol-records", tag = "training",
    params(("id" = i64, Path, description = "Agent id")),
    responses((status = 200, body = Vec<PolRecordView>), (status = 404, body = ErrorBody)))]
async fn agent_pol_records(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<PolRecordView>>> {
    state.store.agent(id).await?;
    let rows = state.store.pol_records(id).await?;
    Ok(Json(rows.into_iter().map(PolRecordView::from).collect()))
}

/// Training routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(agent_runs))
        .routes(routes!(get_run))
        .routes(routes!(agent_pol_records))
        .routes(routes!(adapter_file))
}

/// `GET /adapters/{hash}/{file}`: one file of a trained adapter's PEFT directory, by the
/// adapter's hash, so anyone can fetch the parent and new adapters of a
/// proof-of-learning record and re-run its training (`rlfc verify-pol --from`). The
/// bytes are as trained; a fetcher checks them against the hash.
#[utoipa::path(get, path = "/adapters/{hash}/{file}", tag = "training",
    params(
        ("hash" = String, Path, description = "The adapter's hash (64 hex digits)"),
        ("file" = String, Path, description = "`adapter_config.json` or `adapter_model.safetensors`")
    ),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream"),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)
    ))]
async fn adapter_file(
    State(state): State<AppState>,
    ApiPath((hash, file)): ApiPath<(String, String)>,
) -> Result<axum::response::Response> {
    use axum::response::IntoResponse as _;
    if !agents::is_hash(&hash) {
        return Err(crate::error::Error::invalid(
            "hash",
            "must be 64 lower-case hex digits",
        ));
    }
    let files = state
        .store
        .adapter_files(&hash)
        .await?
        .ok_or_else(|| crate::error::Error::NotFound(format!("adapter {hash} not found")))?;
    let (body, kind) = match file.as_str() {
        agents::adapter::CONFIG_FILE => (files.config.into_bytes(), "application/json"),
        agents::adapter::WEIGHTS_FILE => (files.weights, "application/octet-stream"),
        _ => {
            return Err(crate::error::Error::invalid(
                "file",
                "must be adapter_config.json or adapter_model.safetensors",
            ));
        }
    };
    Ok(([(axum::http::header::CONTENT_TYPE, kind)], body).into_response())
}
