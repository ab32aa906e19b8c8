//! Training runs with their pairs and per-step metrics, and the proof-of-learning
//! records that anchor each new adapter version (their chain side goes through the outbox).

use crate::{
    Error, PolRecord, PreferencePair, Result, Store, TrainingMetric, TrainingRun, now_ms, on_pool,
    on_tx,
};

/// A training run to start.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTrainingRun<'a> {
    /// The agent trained.
    pub agent_id: i64,
    /// The version trained from.
    pub parent_version_id: i64,
    /// Hyperparameters, JSON.
    pub hyperparams: &'a serde_json::Value,
    /// Their hash.
    pub hyperparams_hash: &'a str,
    /// Merkle root of the pairs, in order.
    pub pairs_root: &'a str,
    /// Root of the match results.
    pub results_root: &'a str,
    /// The pairs used, in training order.
    pub pair_ids: &'a [i64],
}

/// A proof-of-learning record to mirror.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPolRecord<'a> {
    /// The record's id on chain.
    pub record_id: i64,
    /// The training run.
    pub training_run_id: i64,
    /// New adapter hash.
    pub new_hash: &'a str,
    /// Parent adapter hash.
    pub parent_hash: &'a str,
    /// The trainer's address.
    pub trainer: &'a str,
    /// Block of the record.
    pub block_number: i64,
    /// The transaction that wrote it.
    pub chain_tx_id: Option<i64>,
}

/// The leaf layout of the pairs root new training runs write (see
/// `migrations/0020_training_pair_leaf.sql`): each pair trains under the run's own
/// agent's prompt, and an answer cut off at the token limit stays open.
pub const PAIR_LEAF: i64 = 3;

/// A preference pair as a training run trains it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TrainingPair {
    /// The pair's id.
    pub id: i64,
    /// Its match.
    pub match_id: i64,
    /// Its round.
    pub round_id: i64,
    /// Score margin.
    pub margin: f64,
    /// The exact prompt the pair trains under (meta-prompt included).
    pub prompt: String,
    /// The better completion.
    pub chosen: String,
    /// The worse completion.
    pub rejected: String,
    /// The version that wrote the better one.
    pub chosen_agent_version_id: i64,
    /// The version that wrote the worse one.
    pub rejected_agent_version_id: i64,
    /// Why the better answer stopped.
    pub chosen_finish: String,
    /// Why the worse answer stopped.
    pub rejected_finish: String,
    /// The leaf layout the pair is committed and trained under ([`PAIR_LEAF`] for new
    /// runs, 2 for runs made before it).
    pub leaf: i64,
}

impl Store {
    /// Starts a run and records its pairs in order, in one transaction.
    pub async fn create_training_run(&self, new: &NewTrainingRun<'_>) -> Result<TrainingRun> {
        let mut tx = self.begin().await?;
        let run: TrainingRun = on_tx!(&mut tx, |c| sqlx::query_as(
            "INSERT INTO training_runs
               (agent_id, parent_version_id, status, hyperparams, hyperparams_hash, pairs_root,
                results_root, started_at, pair_leaf)
             VALUES ($1, $2, 'running', $3, $4, $5, $6, $7, $8) RETURNING *"
        )
        .bind(new.agent_id)
        .bind(new.parent_version_id)
        .bind(new.hyperparams.to_string())
        .bind(new.hyperparams_hash)
        .bind(new.pairs_root)
        .bind(new.results_root)
        .bind(now_ms())
        .bind(PAIR_LEAF)
        .fetch_one(&mut *c)
        .await)
        .map_err(|e| {
            Error::on_unique(
                e,
                format!("a training run in progress for agent {}", new.agent_id),
            )
        })?;
        for (position, &pair_id) in new.pair_ids.iter().enumerate() {
            on_tx!(&mut tx, |c| sqlx::query(
                "INSERT INTO training_run_pairs (training_run_id, position, pair_id) VALUES ($1, $2, $3)"
            )
            .bind(run.id)
            .bind(position as i64)
            .bind(pair_id)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
            .map_err(|e| Error::on_unique(e, format!("pair {pair_id} twice in one run")))?;
        }
        tx.commit().await?;
        Ok(run)
    }

    /// Records one optimiser step.
    pub async fn add_training_metric(&self, m: &TrainingMetric) -> Result<()> {
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO training_metrics
               (training_run_id, step, loss, reward_accuracy, chosen_reward, rejected_reward,
                validation_loss)
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )
        .bind(m.training_run_id)
        .bind(m.step)
        .bind(m.loss)
        .bind(m.reward_accuracy)
        .bind(m.chosen_reward)
        .bind(m.rejected_reward)
        .bind(m.validation_loss)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| {
            Error::on_unique(e, format!("step {} of run {}", m.step, m.training_run_id))
        })?;
        Ok(())
    }

    /// Closes as failed every run still `running` that started before `started_before`
    /// (ms): left by a process that stopped mid-run, it would otherwise keep its agent
    /// from training again. Returns the runs closed.
    pub async fn fail_stale_training_runs(&self, started_before: i64) -> Result<Vec<i64>> {
        let rows: Vec<(i64,)> = on_pool!(self, |pool| sqlx::query_as(
            "UPDATE training_runs SET status = 'failed', finished_at = $2,
                    error = 'interrupted: its process stopped before the run finished'
             WHERE status = 'running' AND started_at < $1 RETURNING id"
        )
        .bind(started_before)
        .bind(now_ms())
        .fetch_all(pool)
        .await)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Ends a run: `Ok(new_version_id)` on success, `Err(message)` on failure.
    pub async fn finish_training_run(
        &self,
        run_id: i64,
        outcome: std::result::Result<i64, &str>,
    ) -> Result<TrainingRun> {
        let (status, version, error) = match outcome {
            Ok(v) => (crate::RunStatus::Succeeded, Some(v), None),
            Err(e) => (crate::RunStatus::Failed, None, Some(e)),
        };
        on_pool!(self, |pool| {
            sqlx::query_as(
            "UPDATE training_runs SET status = $2, new_version_id = $3, error = $4, finished_at = $5
             WHERE id = $1 AND status = 'running' RETURNING *"
        )
        .bind(run_id)
        .bind(status)
        .bind(version)
        .bind(error)
        .bind(now_ms())
        .fetch_optional(pool)
        .await
        })?
        .ok_or(Error::Invalid {
            field: "training_run_id",
            reason: format!("run {run_id} is not running"),
        })
    }

    /// Stores what a running run's regression gate found (JSON), before the run ends.
    pub async fn set_training_evaluation(&self, run_id: i64, evaluation: &str) -> Result<()> {
        let changed = on_pool!(self, |pool| sqlx::query(
            "UPDATE training_runs SET evaluation = $2 WHERE id = $1 AND status = 'running'"
        )
        .bind(run_id)
        .bind(evaluation)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        if changed == 0 {
            return Err(Error::Invalid {
                field: "training_run_id",
                reason: format!("run {run_id} is not running"),
            });
        }
        Ok(())
    }

    /// One training run.
    pub async fn training_run(&self, id: i64) -> Result<TrainingRun> {
        on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM training_runs WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(pool)
        .await)?
        .ok_or(Error::NotFound {
            what: "training run",
            id: id.to_string(),
        })
    }

    /// A run's metrics, by step.
    pub async fn training_metrics(&self, run_id: i64) -> Result<Vec<TrainingMetric>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM training_metrics WHERE training_run_id = $1 ORDER BY step"
        )
        .bind(run_id)
        .fetch_all(pool)
        .await)?)
    }

    /// The pairs a run used, in training order, as it trained them: under the prompt
    /// its leaf layout names (the run's own agent's for layout 3, the chosen answer's
    /// before), with whether each answer was cut off.
    pub async fn training_run_training_pairs(&self, run_id: i64) -> Result<Vec<TrainingPair>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT p.id, p.match_id, p.round_id, p.margin, p.chosen, p.rejected,
                    p.chosen_agent_version_id, p.rejected_agent_version_id,
                    CASE WHEN r.pair_leaf < 3 THEN p.prompt
                         WHEN cv.agent_id = r.agent_id THEN cr.prompt
                         ELSE rr.prompt END AS prompt,
                    cr.finish_reason AS chosen_finish, rr.finish_reason AS rejected_finish,
                    r.pair_leaf AS leaf
             FROM training_run_pairs t
             JOIN training_runs r ON r.id = t.training_run_id
             JOIN preference_pairs p ON p.id = t.pair_id
             JOIN agent_versions cv ON cv.id = p.chosen_agent_version_id
             JOIN responses cr ON cr.id = p.chosen_response_id
             JOIN responses rr ON rr.id = p.rejected_response_id
             WHERE t.training_run_id = $1 ORDER BY t.position"
        )
        .bind(run_id)
        .fetch_all(pool)
        .await)?)
    }

    /// Up to `limit` pairs with id above `after` where `agent_id` wrote the chosen or
    /// the rejected answer, in id order, as a new run trains them: under the prompt the
    /// agent itself saw in that round (its own meta-prompt and role), with whether each
    /// answer was cut off.
    pub async fn training_pairs_for_agent(
        &self,
        agent_id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<TrainingPair>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT p.id, p.match_id, p.round_id, p.margin, p.chosen, p.rejected,
                    p.chosen_agent_version_id, p.rejected_agent_version_id,
                    CASE WHEN cv.agent_id = $1 THEN cr.prompt ELSE rr.prompt END AS prompt,
                    cr.finish_reason AS chosen_finish, rr.finish_reason AS rejected_finish,
                    $4 AS leaf
             FROM preference_pairs p
             JOIN agent_versions cv ON cv.id = p.chosen_agent_version_id
             JOIN agent_versions rv ON rv.id = p.rejected_agent_version_id
             JOIN responses cr ON cr.id = p.chosen_response_id
             JOIN responses rr ON rr.id = p.rejected_response_id
             WHERE p.id > $2 AND (cv.agent_id = $1 OR rv.agent_id = $1)
             ORDER BY p.id LIMIT $3"
        )
        .bind(agent_id)
        .bind(after)
        .bind(limit)
        .bind(PAIR_LEAF)
        .fetch_all(pool)
        .await)?)
    }

    /// The pairs a run used, in training order.
    pub async fn training_run_pairs(&self, run_id: i64) -> Result<Vec<PreferencePair>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT p.* FROM training_run_pairs t JOIN preference_pairs p ON p.id = t.pair_id
             WHERE t.training_run_id = $1 ORDER BY t.position"
        )
        .bind(run_id)
        .fetch_all(pool)
        .await)?)
    }

    /// Mirrors a proof-of-learning record; roots and hashes come from its run.
    pub async fn add_pol_record(&self, new: &NewPolRecord<'_>) -> Result<PolRecord> {
        let run = self.training_run(new.training_run_id).await?;
        on_pool!(self, |pool| sqlx::query_as(
            "INSERT INTO pol_records
               (record_id, agent_id, training_run_id, parent_hash, new_hash, pairs_root,
                results_root, hyperparams_hash, trainer, block_number, chain_tx_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING *"
        )
        .bind(new.record_id)
        .bind(run.agent_id)
        .bind(run.id)
        .bind(new.parent_hash)
        .bind(new.new_hash)
        .bind(&run.pairs_root)
        .bind(&run.results_root)
        .bind(&run.hyperparams_hash)
        .bind(new.trainer)
        .bind(new.block_number)
        .bind(new.chain_tx_id)
        .bind(now_ms())
        .fetch_one(pool)
        .await)
        .map_err(|e| Error::on_unique(e, format!("proof-of-learning record {}", new.record_id)))
    }

    /// The proof-of-learning records of an agent, oldest first.
    pub async fn pol_records(&self, agent_id: i64) -> Result<Vec<PolRecord>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM pol_records WHERE agent_id = $1 ORDER BY record_id"
        )
        .bind(agent_id)
        .fetch_all(pool)
        .await)?)
    }
}
