//! Learning from competition: each agent's training policy, the training run that
//! turns its new preference pairs into a new adapter version with DPO, the
//! proof-of-learning record that ties that version to the exact pairs and match
//! results behind it, and the verifier that re-runs the training to check a record.
//!
//! A record binds: the parent and new adapter hashes, the Merkle root of the pairs in
//! training order (each leaf is the pair's index and its exact content), the Merkle
//! root of the results of the matches those pairs came from (one leaf per match: its
//! id and settled result root), and the hash of the hyperparameters. Training is
//! deterministic on CPU, so a verifier with the same inputs gets the same bytes.

use crate::outbox::{Landed, OnError, Outbox, SendError};
use std::sync::Arc;

use agents::LoraAdapter;
use agents::dpo::{DpoConfig, train_dpo};
use alloy::primitives::{Address, B256};
use chain::{AnyChain, Contracts};
use serde::{Deserialize, Serialize};
use store::{Store, TrainingPair};

use crate::runtime::AdapterLibrary;
use arena::ratings::{ADAPTER_CHANGE_TAU, Skill};

pub mod evaluate;
pub(crate) mod scheduler;
mod verify;

pub use evaluate::{Evaluation, Gate, GatePlan, evaluate_against_parent};

pub use verify::{
    CommittedPair, RunEvidence, StoredAdapter, Verdict, chain_checks, local_evidence,
    prompt_sha256, verify_evidence, verify_record,
};
pub(crate) use verify::{dpo_pairs, pairs_root};
use verify::{hex32, match_results, results_leaves};

/// What can go wrong while training or verifying.
#[derive(Debug, thiserror::Error)]
pub enum LearningError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The chain failed.
    #[error("chain: {0}")]
    Chain(#[from] chain::ChainError),
    /// The trainer failed.
    #[error(transparent)]
    Training(#[from] agents::AgentError),
    /// A setting or a record is wrong.
    #[error("{0}")]
    Invalid(String),
}

/// The result type of this module.
pub type Result<T> = std::result::Result<T, LearningError>;

/// An agent's training settings (its version's `training` JSON), the one type the web
/// API takes as its schema, the studio edits and the trainer reads: after every
/// `train_every_pairs` new pairs whose margin is at least `min_margin`, a DPO run trains
/// the next adapter version. The studio's form shows the first five fields; the rest
/// keep their values (defaults unless set through the API). An empty object means
/// every default. [`TrainingPolicy::check`] holds the one set of ranges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingPolicy {
    /// LoRA rank of a first adapter version.
    pub lora_rank: usize,
    /// LoRA alpha of a first adapter version.
    pub lora_alpha: f32,
    /// AdamW learning rate (default 5e-4: at 5e-5 one run of 64 pairs barely moved the
    /// policy, validation loss ln 2, no gain on held-out tasks; at 5e-4 it gained
    /// significantly on two Spaces, `docs/benchmarks.md`).
    pub learning_rate: f64,
    /// DPO beta.
    pub dpo_beta: f64,
    /// New pairs (at or above `min_margin`) that trigger a run (1 to 10000).
    pub train_every_pairs: usize,
    /// The smallest margin a pair needs to count (0 to 1).
    pub min_margin: f64,
    /// The most pairs one run trains on (the newest are kept, 1 to 10000).
    pub max_pairs: usize,
    /// The most optimizer steps per run; a run always makes at least one full pass
    /// over its training pairs, so every pair it commits to is used.
    pub max_steps: usize,
    /// Passes over the training pairs (1 to 100), within `max_steps`.
    pub epochs: usize,
    /// Share of a run's pairs (its newest) held out to measure validation loss (0 to
    /// 0.5; 0 trains on all and measures none).
    pub validation_share: f64,
    /// Stop once this many validation checks in a row have not improved, keeping
    /// the best adapter (0: run every step, still keeping the best).
    pub patience: usize,
    /// Conservative DPO's label smoothing (at least 0, below 0.5): the share of pairs assumed
    /// mislabelled by the judges. It bounds how far a run can push a pair's margin,
    /// so a run cannot memorise its pairs (0: plain DPO).
    pub label_smoothing: f64,
    /// Pairs per step.
    pub batch_size: usize,
    /// Tokens of prompt plus answer kept per pair.
    pub max_length: usize,
    /// Seed of a first version's LoRA matrices.
    pub seed: u64,
    /// Head-to-head matches the new adapter plays against its parent on held-out
    /// tasks before it is played (0 to 1000; 0 skips the gate). A version that loses
    /// significantly is kept in the lineage but not played.
    pub evaluation_matches: usize,
}

impl Default for TrainingPolicy {
    fn default() -> TrainingPolicy {
        TrainingPolicy {
            lora_rank: 8,
            lora_alpha: 16.0,
            learning_rate: 5e-4,
            dpo_beta: 0.1,
            train_every_pairs: 64,
            min_margin: 0.1,
            max_pairs: 64,
            max_steps: 64,
            epochs: 3,
            validation_share: 0.2,
            patience: 1,
            label_smoothing: 0.1,
            batch_size: 4,
            max_length: 256,
            seed: 0,
            evaluation_matches: 16,
        }
    }
}

/// A training setting outside its range: the field and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// The field (`lora_rank`, …).
    pub field: &'static str,
    /// The rule, with the limit (`must be within [1, 64]`).
    pub rule: &'static str,
}

impl TrainingPolicy {
    /// The one set of ranges of an agent's training settings: what the web API
    /// accepts (its 422 names the field and the rule) and what the trainer reads.
    pub fn check(&self) -> std::result::Result<(), SettingError> {
        let rule = |ok: bool, field: &'static str, rule: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(SettingError { field, rule })
            }
        };
        let within = |x: f64, lo_open: f64, hi: f64| x.is_finite() && x > lo_open && x <= hi;
        rule(
            (1..=64).contains(&self.lora_rank),
            "lora_rank",
            "must be within [1, 64]",
        )?;
        rule(
            within(f64::from(self.lora_alpha), 0.0, 256.0),
            "lora_alpha",
            "must be within (0, 256]",
        )?;
        rule(
            within(self.learning_rate, 0.0, 0.01),
            "learning_rate",
            "must be within (0, 0.01]",
        )?;
        rule(
            within(self.dpo_beta, 0.0, 1.0),
            "dpo_beta",
            "must be within (0, 1]",
        )?;
        rule(
            (1..=10_000).contains(&self.train_every_pairs),
            "train_every_pairs",
            "must be within [1, 10000]",
        )?;
        rule(
            self.min_margin.is_finite() && (0.0..=1.0).contains(&self.min_margin),
            "min_margin",
            "must be within [0, 1]",
        )?;
        rule(
            (1..=10_000).contains(&self.max_pairs),
            "max_pairs",
            "must be within [1, 10000]",
        )?;
        rule(
            (1..=10_000).contains(&self.max_steps),
            "max_steps",
            "must be within [1, 10000]",
        )?;
        rule(
            (1..=100).contains(&self.epochs),
            "epochs",
            "must be within [1, 100]",
        )?;
        rule(
            self.validation_share.is_finite() && (0.0..=0.5).contains(&self.validation_share),
            "validation_share",
            "must be within [0, 0.5]",
        )?;
        rule(
            (0..=1000).contains(&self.patience),
            "patience",
            "must be within [0, 1000]",
        )?;
        rule(
            self.label_smoothing.is_finite() && (0.0..0.5).contains(&self.label_smoothing),
            "label_smoothing",
            "must be within [0, 0.5)",
        )?;
        rule(
            (1..=64).contains(&self.batch_size),
            "batch_size",
            "must be within [1, 64]",
        )?;
        rule(
            (2..=4096).contains(&self.max_length),
            "max_length",
            "must be within [2, 4096]",
        )?;
        rule(
            self.evaluation_matches <= 1000,
            "evaluation_matches",
            "must be within [0, 1000]",
        )
    }

    /// Reads a version's training settings. Errors name the key and the limit.
    pub fn from_json(text: &str) -> Result<TrainingPolicy> {
        let value: serde_json::Value = if text.trim().is_empty() {
            serde_json::json!({})
        } else {
            serde_json::from_str(text)
                .map_err(|e| LearningError::Invalid(format!("training: {e}")))?
        };
        let policy: TrainingPolicy = serde_path_to_error::deserialize(value)
            .map_err(|e| LearningError::Invalid(format!("training.{}: {}", e.path(), e.inner())))?;
        policy
            .check()
            .map_err(|e| LearningError::Invalid(format!("training.{} {}", e.field, e.rule)))?;
        policy.dpo().validate().map_err(|e| match e {
            agents::AgentError::InvalidTrainingConfig { field, detail } => {
                LearningError::Invalid(format!("training.{field} {detail}"))
            }
            other => LearningError::Training(other),
        })?;
        Ok(policy)
    }

    /// The DPO hyperparameters of a run on `pairs` pairs: `epochs` passes over the
    /// pairs not held out, within `max_steps` but never less than one full pass.
    pub fn dpo_for(&self, pairs: usize) -> DpoConfig {
        let dpo = self.dpo();
        let pass = dpo.steps_per_pass(pairs - dpo.validation_pairs(pairs).min(pairs));
        DpoConfig {
            max_steps: (pass * self.epochs).min(self.max_steps).max(pass),
            ..dpo
        }
    }

    /// The DPO hyperparameters of this policy, with `max_steps` as the step count
    /// ([`TrainingPolicy::dpo_for`] sizes a run to its pairs).
    pub fn dpo(&self) -> DpoConfig {
        DpoConfig {
            beta: self.dpo_beta,
            learning_rate: self.learning_rate,
            max_steps: self.max_steps,
            batch_size: self.batch_size,
            max_length: self.max_length,
            lora_rank: self.lora_rank,
            lora_alpha: self.lora_alpha,
            seed: self.seed,
            validation_share: self.validation_share,
            patience: self.patience,
            label_smoothing: self.label_smoothing,
            ..DpoConfig::default()
        }
    }
}

/// A finished training run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainedVersion {
    /// The agent.
    pub agent_id: i64,
    /// The training run.
    pub training_run_id: i64,
    /// The new agent version.
    pub version_id: i64,
    /// The new adapter's hash.
    pub adapter_hash: String,
    /// The on-chain record's id.
    pub record_id: u64,
    /// Pairs the record commits to (trained on or held out).
    pub pairs: usize,
    /// Of those, held out to measure the validation loss.
    pub held_out: usize,
    /// The training loss of the kept step.
    pub final_loss: f64,
    /// The kept adapter's loss on the held-out pairs (`None` without a share).
    pub validation_loss: Option<f64>,
    /// The step whose adapter was kept, and the steps taken.
    pub best_step: usize,
    /// Steps taken (fewer than planned when the validation loss stopped improving).
    pub steps: usize,
    /// What the regression gate found (`None` when the policy skips it).
    pub evaluation: Option<Evaluation>,
    /// The version the agent plays now: `version_id`, or when the gate held that back,
    /// the version after it that restores the parent's adapter.
    pub playing_version_id: i64,
}

/// Trains agents on their pairs and records each new version on chain.
pub struct Trainer {
    store: Store,
    contracts: Arc<Contracts<AnyChain>>,
    trainer: Address,
    models: crate::base_models::AgentModels,
    adapters: Arc<AdapterLibrary>,
    gate: Gate,
}

/// Sequences the regression gate decodes at once.
const GATE_BATCH: usize = 8;

impl Trainer {
    /// A trainer signing records as `trainer`, training each agent on its own base
    /// model (one of `models`), whose new adapters pass `gate` (the judge panel and the
    /// Spaces' rulebooks) before they are played.
    pub fn new(
        store: Store,
        contracts: Arc<Contracts<AnyChain>>,
        trainer: Address,
        models: crate::base_models::AgentModels,
        adapters: Arc<AdapterLibrary>,
        gate: Gate,
    ) -> Trainer {
        Trainer {
            store,
            contracts,
            trainer,
            models,
            adapters,
            gate,
        }
    }

    /// The loaded base model `agent_id` chose; an agent whose model is not served here
    /// cannot train here.
    async fn agent_model(&self, agent_id: i64) -> Result<crate::base_models::LoadedModel> {
        let agent = self.store.agent(agent_id).await?;
        self.models
            .get(&agent.base_model)
            .cloned()
            .map_err(|e| LearningError::Invalid(format!("agent {agent_id}: {e}")))
    }

    /// The rulebooks the gate draws a run's tasks from: the Spaces of the matches its
    /// pairs came from, most pairs first (ties in first-seen order).
    async fn gate_books(&self, pairs: &[TrainingPair]) -> Result<Vec<Arc<spaces::Rulebook>>> {
        let mut space_of_match: std::collections::HashMap<i64, i64> = Default::default();
        let mut counts: Vec<(i64, usize)> = Vec::new();
        for p in pairs {
            let space_id = match space_of_match.get(&p.match_id) {
                Some(s) => *s,
                None => {
                    let s = self.store.get_match(p.match_id).await?.space_id;
                    space_of_match.insert(p.match_id, s);
                    s
                }
            };
            match counts.iter_mut().find(|(s, _)| *s == space_id) {
                Some((_, n)) => *n += 1,
                None => counts.push((space_id, 1)),
            }
        }
        counts.sort_by_key(|c| std::cmp::Reverse(c.1));
        counts
            .into_iter()
            .map(|(space_id, _)| {
                self.gate.book(space_id).cloned().ok_or_else(|| {
                    LearningError::Invalid(format!(
                        "the regression gate has no rulebook for Space {space_id}, where \
                         this run's pairs were played (set training.evaluation_matches \
                         to 0 to skip the gate)"
                    ))
                })
            })
            .collect()
    }

    /// The database it trains from.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The pairs an agent would train on now, if its policy says a run is due.
    pub async fn due_pairs(&self, agent_id: i64) -> Result<Option<Vec<TrainingPair>>> {
        let version = self.store.latest_agent_version(agent_id).await?;
        let policy = TrainingPolicy::from_json(&version.training)?;
        let after = self.store.last_trained_pair_id(agent_id).await?;
        let mut fresh = Vec::new();
        let mut cursor = after;
        loop {
            let page = self
                .store
                .training_pairs_for_agent(agent_id, cursor, 500)
                .await?;
            let Some(last) = page.last() else { break };
            cursor = last.id;
            fresh.extend(page.into_iter().filter(|p| p.margin >= policy.min_margin));
        }
        if fresh.len() < policy.train_every_pairs {
            return Ok(None);
        }
        let keep = fresh.len().saturating_sub(policy.max_pairs);
        Ok(Some(fresh.split_off(keep)))
    }

    /// One training run for `agent_id` on `pairs` (in that order): the new version is
    /// stored with its adapter, hash and parent, the agent's sigma widens in every
    /// Space, and the record lands on chain. The DPO steps run on a blocking thread.
    pub async fn train(&self, agent_id: i64, pairs: Vec<TrainingPair>) -> Result<TrainedVersion> {
        let parent = self.store.latest_agent_version(agent_id).await?;
        let policy = TrainingPolicy::from_json(&parent.training)?;
        // The agent's own base model: its adapters, its runs and its proofs are on it.
        let base = self.agent_model(agent_id).await?;
        // Refuse before training what the gate could not evaluate.
        let gate_books = if policy.evaluation_matches > 0 {
            self.gate_books(&pairs).await?
        } else {
            Vec::new()
        };
        let parent_adapter: Option<Arc<LoraAdapter>> = match &parent.adapter_hash {
            Some(h) => {
                // Trained on another host, perhaps: fetch it from the database.
                self.adapters
                    .fetch(h)
                    .await
                    .map_err(LearningError::Invalid)?;
                Some(
                    self.adapters
                        .get(h, base.model.config())
                        .map_err(LearningError::Invalid)?,
                )
            }
            None => None,
        };
        let committed: Vec<CommittedPair> = pairs.iter().map(CommittedPair::from).collect();
        let results = match_results(&self.store, &committed).await?;
        let pairs_root = pairs_root(&committed);
        let results_root = chain::merkle::root(&results_leaves(&results));
        let dpo = agents::dpo::DpoConfig {
            // The record commits to the base model through the hyperparameters hash.
            base_model_sha256: base.model.source_sha256().unwrap_or_default().to_string(),
            ..policy.dpo_for(pairs.len())
        };
        let hyper_json = serde_json::to_value(&dpo).expect("serializes");
        let hyper_hash = dpo.hyperparameters_hash();
        let pair_ids: Vec<i64> = pairs.iter().map(|p| p.id).collect();
        let run = self
            .store
            .create_training_run(&store::NewTrainingRun {
                agent_id,
                parent_version_id: parent.id,
                hyperparams: &hyper_json,
                hyperparams_hash: &hyper_hash,
                pairs_root: &format!("{pairs_root}"),
                results_root: &format!("{results_root}"),
                pair_ids: &pair_ids,
            })
            .await?;
        // Whatever fails from here until the new version is stored closes the run as
        // failed, so the agent's next run is not blocked by this one.
        let produced: Result<_> = async {
            let trained = {
                let model = base.model.clone();
                let tokenizer = base.tokenizer.clone();
                let dpo = dpo.clone();
                let data = dpo_pairs(&committed, verify::PairLeaf::V3);
                let parent = parent_adapter.clone();
                tokio::task::spawn_blocking(move || {
                    let mut steps = Vec::new();
                    let out = train_dpo(&model, &tokenizer, parent.as_deref(), &data, &dpo, |s| {
                        steps.push(s.clone())
                    });
                    out.map(|o| (o, steps))
                })
                .await
                .map_err(|e| LearningError::Invalid(format!("the training task failed: {e}")))?
            };
            let (outcome, steps) = trained?;
            for s in &steps {
                self.store
                    .add_training_metric(&store::TrainingMetric {
                        training_run_id: run.id,
                        step: s.step as i64,
                        loss: s.loss,
                        reward_accuracy: s.reward_accuracy,
                        chosen_reward: s.chosen_reward,
                        rejected_reward: s.rejected_reward,
                        validation_loss: s.validation_loss,
                    })
                    .await?;
            }
            let hash = self
                .adapters
                .save(&outcome.adapter, base.model.config(), None)?;
            if hash != outcome.adapter_hash {
                return Err(LearningError::Invalid(format!(
                    "the saved adapter hashes to {hash}, the trainer reported {}",
                    outcome.adapter_hash
                )));
            }
            // Every host on the database plays it and can train from it.
            self.adapters
                .publish(&hash)
                .await
                .map_err(LearningError::Invalid)?;
            // The regression gate: the new adapter meets its parent on held-out tasks
            // under the agent's latest settings, the ones it would play with.
            let evaluation = if gate_books.is_empty() {
                None
            } else {
                let latest = self.store.latest_agent_version(agent_id).await?;
                let stored: serde_json::Value = serde_json::from_str(&latest.sampling)
                    .map_err(|e| LearningError::Invalid(format!("sampling: {e}")))?;
                let plan = GatePlan {
                    books: gate_books.clone(),
                    matches: policy.evaluation_matches,
                    system_prompt: latest.system_prompt.clone(),
                    sampling: agents::SamplingParams::from_stored(&stored)
                        .map_err(LearningError::Invalid)?,
                    parent: parent.adapter_hash.clone(),
                    candidate: hash.clone(),
                    trained_prompts: committed.iter().map(|p| p.prompt.clone()).collect(),
                    seed: evaluate::gate_seed(run.id),
                    batch: GATE_BATCH,
                };
                let (model, tokenizer, adapters, gate) = (
                    base.model.clone(),
                    base.tokenizer.clone(),
                    self.adapters.clone(),
                    self.gate.clone(),
                );
                let evaluation = tokio::task::spawn_blocking(move || {
                    evaluate_against_parent(&model, &tokenizer, &adapters, gate.judge(), &plan)
                })
                .await
                .map_err(|e| LearningError::Invalid(format!("the gate's task failed: {e}")))??;
                self.store
                    .set_training_evaluation(
                        run.id,
                        &serde_json::to_string(&evaluation).expect("serializes"),
                    )
                    .await?;
                Some(evaluation)
            };
            // The new adapter goes on top of the owner's latest settings: an edit saved
            // while this run trained is kept (issue 21). A held-back adapter stays in
            // the lineage, and the version after it plays the parent's adapter.
            let (version, playing) = match &evaluation {
                Some(e) if e.held_back => {
                    let (held, restored) = self
                        .store
                        .add_held_back_version(agent_id, parent.id, &hash, &e.summary())
                        .await?;
                    (held, restored)
                }
                _ => {
                    let v = self
                        .store
                        .add_trained_version(agent_id, parent.id, &hash)
                        .await?;
                    (v.clone(), v)
                }
            };
            Ok((
                version,
                playing,
                evaluation,
                hash,
                steps,
                outcome.best_step,
                outcome.validation_loss,
            ))
        }
        .await;
        let (version, playing, evaluation, hash, steps, best_step, validation_loss) = match produced
        {
            Ok(p) => p,
            Err(e) => {
                if let Err(closing) = self
                    .store
                    .finish_training_run(run.id, Err(&e.to_string()))
                    .await
                {
                    tracing::warn!(run = run.id, error = %closing, "could not close the failed run");
                }
                return Err(e);
            }
        };
        self.store
            .finish_training_run(run.id, Ok(version.id))
            .await?;
        // A new adapter is a partly new player: widen sigma on every ladder (not when
        // the gate held it back: the agent plays on with the parent's adapter).
        let played = playing.id == version.id;
        for r in self
            .store
            .agent_ratings(agent_id)
            .await?
            .into_iter()
            .filter(|_| played)
        {
            let widened = Skill {
                mu: r.mu,
                sigma: r.sigma,
            }
            .widened(ADAPTER_CHANGE_TAU);
            self.store
                .update_ratings(
                    r.space_id,
                    None,
                    &[store::RatingUpdate::change(
                        agent_id,
                        (r.mu, r.sigma),
                        (widened.mu, widened.sigma),
                    )],
                )
                .await?;
        }
        let key = format!("pol:run:{}", run.id);
        let outbox = Outbox::new(self.store.clone());
        let ct = outbox.begin(&key, "pol_record").await?;
        let record = chain::NewRecord {
            agent_id: agent_id as u64,
            parent_adapter_hash: match &parent.adapter_hash {
                Some(h) => hex32(h)?,
                None => B256::ZERO,
            },
            new_adapter_hash: hex32(&hash)?,
            pairs_root,
            results_root,
            hyperparams_hash: hex32(&hyper_hash)?,
        };
        let send = self.contracts.record(self.trainer, &record);
        let (record_id, receipt) = outbox
            .send(&ct, OnError::Fail, send, |(_, r)| {
                Landed::sent(r.tx_hash, r.block_number)
            })
            .await
            .map_err(|e| match e {
                SendError::Store(e) => LearningError::Store(e),
                SendError::Send(e) => LearningError::Chain(e),
            })?;
        self.store
            .add_pol_record(&store::NewPolRecord {
                record_id: record_id as i64,
                training_run_id: run.id,
                new_hash: &hash,
                parent_hash: parent.adapter_hash.as_deref().unwrap_or(""),
                trainer: &format!("{:#x}", self.trainer),
                block_number: receipt.block_number as i64,
                chain_tx_id: Some(ct.id),
            })
            .await?;
        Ok(TrainedVersion {
            agent_id,
            training_run_id: run.id,
            version_id: version.id,
            adapter_hash: hash,
            record_id,
            pairs: pairs.len(),
            held_out: dpo.validation_pairs(pairs.len()),
            final_loss: steps
                .iter()
                .find(|s| s.step == best_step)
                .map_or(f64::NAN, |s| s.loss),
            validation_loss,
            best_step,
            steps: steps.len(),
            evaluation,
            playing_version_id: playing.id,
        })
    }

    /// Verifies an on-chain record by replay on the served base model the run names
    /// (the default for runs recorded before runs named one); see [`verify_record`].
    pub async fn verify(&self, record_id: u64) -> Result<Verdict> {
        let evidence = local_evidence(&self.store, record_id).await?;
        let base = self.models.for_run(&evidence.hyperparams.base_model_sha256);
        verify_record(
            &self.store,
            &self.contracts,
            &base.model,
            &base.tokenizer,
            &self.adapters,
            record_id,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::TrainingPolicy;

    #[test]
    fn a_run_covers_every_pair_it_commits_to() {
        let policy = TrainingPolicy::default();
        // 64 pairs: 13 held out, 51 trained on in batches of 4 (13 steps a pass).
        let dpo = policy.dpo_for(64);
        assert_eq!(dpo.validation_pairs(64), 13);
        assert_eq!(dpo.max_steps, 3 * 13);
        // A cap below one pass still makes one full pass.
        let capped = TrainingPolicy {
            max_steps: 5,
            ..policy.clone()
        };
        assert_eq!(capped.dpo_for(64).max_steps, 13);
        // A cap between one pass and the planned passes holds.
        let capped = TrainingPolicy {
            max_steps: 20,
            ..policy.clone()
        };
        assert_eq!(capped.dpo_for(64).max_steps, 20);
        // No validation share: every pair trains.
        let all = TrainingPolicy {
            validation_share: 0.0,
            epochs: 1,
            ..policy
        };
        assert_eq!(all.dpo_for(64).max_steps, 16);
    }

    #[test]
    fn settings_out_of_range_name_the_field() {
        let e = TrainingPolicy::from_json(r#"{"epochs": 0}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("training.epochs") && e.contains("[1, 100]"),
            "{e}"
        );
        let e = TrainingPolicy::from_json(r#"{"label_smoothing": 0.5}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("training.label_smoothing") && e.contains("[0, 0.5)"),
            "{e}"
        );
        let e = TrainingPolicy::from_json(r#"{"validation_share": 0.7}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("validation_share") && e.contains("[0, 0.5]"),
            "{e}"
        );
        let legacy = TrainingPolicy::from_json(r#"{"max_steps": 8}"#).unwrap();
        assert_eq!(legacy.validation_share, 0.2);
    }
}
