//! The training scheduler: the loop beside live matches that trains every agent whose
//! policy is due.

use std::time::Duration;

use super::{LearningError, Trainer};

/// How long a training run may stay `running` before another process takes it for
/// abandoned (its process stopped mid-run) and closes it as failed.
const STALE_TRAINING_MS: i64 = 2 * 60 * 60 * 1000;

/// The training loop beside live matches: every active agent whose policy is due gets
/// one run, one at a time, each on a blocking thread so the match loop keeps its
/// pace. Several processes may run this loop on one database: the store admits one
/// running run per agent, so a process that finds an agent already training skips it.
pub(crate) async fn train_due_agents_forever(trainer: Trainer) {
    loop {
        match trainer
            .store()
            .fail_stale_training_runs(store::now_ms() - STALE_TRAINING_MS)
            .await
        {
            Ok(closed) if !closed.is_empty() => {
                tracing::warn!(runs = ?closed, "closed training runs abandoned by a stopped process")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not sweep stale training runs"),
        }
        let agents = match trainer.store().active_agent_ids().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "could not list the agents to train");
                Vec::new()
            }
        };
        for agent in agents {
            let due = match trainer.due_pairs(agent).await {
                Ok(Some(pairs)) => pairs,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(agent, error = %e, "training policy unreadable");
                    continue;
                }
            };
            tracing::info!(agent, pairs = due.len(), "training a new adapter version");
            match trainer.train(agent, due).await {
                Ok(v) => tracing::info!(
                    agent,
                    version_id = v.version_id,
                    adapter = %&v.adapter_hash[..16],
                    record_id = v.record_id,
                    pairs = v.pairs,
                    held_out = v.held_out,
                    train_loss = v.final_loss,
                    validation_loss = v.validation_loss,
                    best_step = v.best_step,
                    steps = v.steps,
                    gate = %v.evaluation.as_ref().map_or_else(
                        || "skipped (training.evaluation_matches = 0)".to_string(),
                        |e| e.summary()
                    ),
                    playing_version_id = v.playing_version_id,
                    "trained; proof-of-learning recorded on chain"
                ),
                Err(LearningError::Store(store::Error::Duplicate { .. })) => {
                    tracing::info!(agent, "another process is training this agent; skipped")
                }
                Err(e) => tracing::error!(agent, error = %e, "training failed"),
            }
        }
        tokio::time::sleep(Duration::from_secs(20)).await;
    }
}
