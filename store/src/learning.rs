//! What the training loop reads back: where an agent's last training run stopped in
//! its stream of pairs, and proof-of-learning records by their on-chain id.

use crate::{PolRecord, Result, Store, TrainingRun, on_pool};

impl Store {
    /// The highest preference-pair id any finished run of this agent trained on (0 if
    /// none): newer pairs are what the next run may use.
    pub async fn last_trained_pair_id(&self, agent_id: i64) -> Result<i64> {
        let row: (Option<i64>,) = on_pool!(self, |pool| sqlx::query_as(
            "SELECT MAX(t.pair_id) FROM training_run_pairs t
             JOIN training_runs r ON r.id = t.training_run_id
             WHERE r.agent_id = $1 AND r.status = 'succeeded'"
        )
        .bind(agent_id)
        .fetch_one(pool)
        .await)?;
        Ok(row.0.unwrap_or(0))
    }

    /// An agent's training runs, newest first.
    pub async fn training_runs_for_agent(&self, agent_id: i64) -> Result<Vec<TrainingRun>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM training_runs WHERE agent_id = $1 ORDER BY id DESC"
        )
        .bind(agent_id)
        .fetch_all(pool)
        .await)?)
    }

    /// The mirrored proof-of-learning record with this on-chain id.
    pub async fn pol_record_by_record_id(&self, record_id: i64) -> Result<Option<PolRecord>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM pol_records WHERE record_id = $1"
        )
        .bind(record_id)
        .fetch_optional(pool)
        .await)?)
    }
}
