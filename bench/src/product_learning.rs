//! `rlfc bench learning --product`: does training help on the product's own path?
//!
//! Where [`crate::learning`] trains on same-prompt self-play labelled by a Space's hard
//! rules, this mode runs what a user's agent goes through, with the product's
//! defaults end to end, on a throwaway data directory (SQLite, the embedded chain):
//!
//! - **Matches against other agents.** Per Space, a fresh learner (the demo Poet's
//!   meta-prompt and sampling, training settings `{}`: every product default) is
//!   entered in the free tier with rivals from the demo population (frozen, adapter-less
//!   personas with other meta-prompts), one match at a time so that the learner plays
//!   every match; the rivals rotate through the population. Matches run in the match
//!   world on the real models and are judged by the Space's judge panel, then settled
//!   and recorded as in production.
//! - **Cross-agent pairs and the product's training policy.** Once the trainer's
//!   scheduler says a run is due (`train_every_pairs` new pairs at the policy's
//!   margin), the product's [`platform::learning::Trainer`] trains the next version on
//!   them (the learner's own prompt and role on both sides, validation split, early
//!   stop, label smoothing, the regression gate, the proof-of-learning record).
//! - **Trained against frozen parent.** The new adapter then meets the learner's frozen
//!   parent (the bare base model) on `eval_matches` held-out tasks of the same Space
//!   (tasks whose text no trained pair's prompt contains), both under the learner's
//!   prompt and sampling with the same seeds, judged by the panel and ranked as a match
//!   ranks a round ([`evaluate_against_parent`]). The win rate counts decisive matches,
//!   with its 95% Wilson interval; a gain is significant when the interval lies wholly
//!   above one half.

use std::time::Instant;

use serde::Serialize;

use platform::learning::evaluate::{Evaluation, GatePlan, HeadToHead, evaluate_against_parent};
use platform::play::MatchEnd;
use platform::runner::MatchRunner;
use platform::{BaseModels, Platform, PlatformConfig};
use store::NewAgentVersion;

use crate::BenchError;
use crate::learning::BENCH_SYSTEM_PROMPT;

type Result<T> = std::result::Result<T, BenchError>;

/// What the product-path mode plays, per Space.
#[derive(Debug, Clone, Serialize)]
pub struct ProductLearningConfig {
    /// The Spaces (slugs), each with its own learner.
    pub spaces: Vec<String>,
    /// The most matches the learner plays in a Space waiting for its training run to
    /// be due; a Space that yields too few pairs by then reports no run.
    pub max_matches: usize,
    /// Held-out head-to-head matches of the trained agent against its frozen parent.
    pub eval_matches: usize,
    /// Sequences decoded at once in the evaluation.
    pub batch: usize,
    /// The learner's sampling settings (stored JSON, as on an agent version).
    pub sampling: serde_json::Value,
    /// The learner's training settings (stored JSON): `{}` is every product default,
    /// the mode's point; other values are for quick checks.
    pub training: serde_json::Value,
}

/// The training run of one Space's learner, as the product's trainer reported it.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// Pairs the run committed to (trained on or held out).
    pub pairs: usize,
    /// Of those, held out for the validation loss.
    pub held_out: usize,
    /// Steps taken, and the step whose adapter was kept.
    pub steps: usize,
    /// The kept step.
    pub best_step: usize,
    /// Training loss at the kept step.
    pub train_loss: f64,
    /// Validation loss of the kept adapter.
    pub validation_loss: Option<f64>,
    /// The regression gate's finding (16 matches by default).
    pub gate: Option<Evaluation>,
    /// The new adapter.
    pub adapter_hash: String,
    /// Seconds in the trainer (training and gate).
    pub seconds: f64,
}

/// One Space's result.
#[derive(Debug, Clone, Serialize)]
pub struct SpaceLearning {
    /// The Space.
    pub space: String,
    /// Matches the learner played (settled).
    pub matches: usize,
    /// Matches refunded (none expected).
    pub refunded: usize,
    /// Pairs the learner has (as chosen or rejected side), at any margin (the run
    /// takes those at the policy's `min_margin`).
    pub learner_pairs: usize,
    /// Seconds playing matches.
    pub seconds_matches: f64,
    /// The training run (`None`: too few pairs within `max_matches`).
    pub run: Option<RunSummary>,
    /// The trained agent against its frozen parent on held-out tasks.
    pub trained_vs_parent: Option<HeadToHead>,
    /// The win rate's interval lies wholly above one half.
    pub significant_gain: bool,
    /// Seconds in the evaluation.
    pub seconds_evaluation: f64,
}

/// The product-path report.
#[derive(Debug, Clone, Serialize)]
pub struct ProductLearningReport {
    /// The settings.
    pub config: ProductLearningConfig,
    /// The learner's meta-prompt.
    pub system_prompt: String,
    /// The training policy the learner used (the product's defaults unless
    /// `training` set some).
    pub training_policy: platform::learning::TrainingPolicy,
    /// Per Space.
    pub spaces: Vec<SpaceLearning>,
    /// Spaces with a significant gain.
    pub significant_gains: usize,
    /// Seconds in all.
    pub seconds_total: f64,
}

/// Runs the product-path mode on a throwaway data directory with `config`'s models and
/// judges (see the module documentation).
pub async fn run(
    cfg: &ProductLearningConfig,
    config: &PlatformConfig,
) -> Result<ProductLearningReport> {
    let invalid = |field: &'static str, reason: String| BenchError::Invalid { field, reason };
    if cfg.spaces.is_empty() {
        return Err(invalid("spaces", "name at least one Space".into()));
    }
    for (field, v) in [
        ("max_matches", cfg.max_matches),
        ("eval_matches", cfg.eval_matches),
        ("batch", cfg.batch),
    ] {
        if !(1..=100_000).contains(&v) {
            return Err(invalid(
                field,
                format!("must be within [1, 100000], got {v}"),
            ));
        }
    }
    let sampling =
        agents::SamplingParams::from_stored(&cfg.sampling).map_err(|e| invalid("sampling", e))?;
    let policy = platform::learning::TrainingPolicy::from_json(&cfg.training.to_string())
        .map_err(|e| invalid("training", e.to_string()))?;
    let started = Instant::now();
    let (_dir, bench_config) = crate::scratch_config(config)?;
    let platform = Platform::open(&bench_config).await?;
    let slots = cfg
        .spaces
        .iter()
        .map(|s| platform.space(s).cloned())
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let models = BaseModels::load(&bench_config)?;
    let trainer = platform.trainer(&models)?;
    // The rivals: the demo population, adapter-less, never trained here.
    let population =
        platform::demo::seed_demo(&platform.store, &platform.payments, &[], &[], store::Wei(0))
            .await
            .map_err(platform::platform::PlatformError::from)?;
    let owner = population.owners[0];
    let mut out = Vec::new();
    for (k, slot) in slots.iter().enumerate() {
        let book = slot.rulebook.clone();
        let tier = slot
            .tiers
            .iter()
            .find(|t| t.fee_wei.0 == 0)
            .ok_or_else(|| invalid("spaces", format!("{} has no free tier", book.slug)))?
            .clone();
        let (learner, _) = platform
            .store
            .create_agent(
                owner,
                &format!("Learner {}", book.slug),
                platform::base_models::DEFAULT_BASE_MODEL,
                &NewAgentVersion {
                    system_prompt: BENCH_SYSTEM_PROMPT.into(),
                    sampling: cfg.sampling.clone(),
                    training: cfg.training.clone(),
                    adapter_hash: None,
                },
            )
            .await?;
        let (engine, judge) = platform.model_engine_and_judge(&models)?;
        let mut runner = MatchRunner::new(
            platform.store.clone(),
            platform.payments.clone(),
            platform.bus.clone(),
            engine,
            judge,
            vec![slot.clone()],
            Platform::runner_config(&bench_config),
        )
        .with_adapters(platform.adapters.clone())
        .with_base_models(platform.base_models.clone());
        let t0 = Instant::now();
        let (mut matches, mut refunded, mut wave) = (0usize, 0usize, 0usize);
        let rivals = book.players.saturating_sub(1).max(1);
        let mut due = None;
        while matches + refunded < cfg.max_matches {
            if let Some(pairs) = trainer.due_pairs(learner.id).await.map_err(learning_err)? {
                due = Some(pairs);
                break;
            }
            // The learner and the next rivals of the population, one match's worth.
            let mut seated = vec![learner.id];
            seated.extend(
                (0..rivals)
                    .map(|i| population.agents[(wave * rivals + i) % population.agents.len()]),
            );
            wave += 1;
            for agent in seated {
                let a = platform.store.agent(agent).await?;
                let version = platform.store.latest_agent_version(agent).await?;
                platform
                    .store
                    .enter(a.owner_id, version.id, tier.id)
                    .await?;
            }
            runner.limit_new_matches(Some(1));
            while runner.matchmake().await.map_err(runner_err)?.is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            while runner.live_matches() > 0 {
                let outcomes = tokio::task::block_in_place(|| runner.tick());
                for report in runner.finish(outcomes).await.map_err(runner_err)? {
                    match report.end {
                        MatchEnd::Settled { .. } | MatchEnd::SettledChainPending { .. } => {
                            matches += 1
                        }
                        MatchEnd::Refunded { .. } => refunded += 1,
                        MatchEnd::ClosedElsewhere { .. } => {}
                    }
                }
            }
        }
        for e in platform
            .store
            .queued_entries(slot.space.id, tier.id)
            .await?
        {
            platform.store.leave(e.id).await?;
        }
        let seconds_matches = t0.elapsed().as_secs_f64();
        let learner_pairs = platform
            .store
            .training_pairs_for_agent(learner.id, 0, 100_000)
            .await?
            .len();
        tracing::info!(space = %book.slug, matches, learner_pairs, "learner's matches played");
        let Some(pairs) = due else {
            out.push(SpaceLearning {
                space: book.slug.clone(),
                matches,
                refunded,
                learner_pairs,
                seconds_matches,
                run: None,
                trained_vs_parent: None,
                significant_gain: false,
                seconds_evaluation: 0.0,
            });
            continue;
        };
        let trained_prompts: Vec<String> = pairs.iter().map(|p| p.prompt.clone()).collect();
        let t1 = Instant::now();
        let trained = trainer
            .train(learner.id, pairs)
            .await
            .map_err(learning_err)?;
        let run = RunSummary {
            pairs: trained.pairs,
            held_out: trained.held_out,
            steps: trained.steps,
            best_step: trained.best_step,
            train_loss: trained.final_loss,
            validation_loss: trained.validation_loss,
            gate: trained.evaluation.clone(),
            adapter_hash: trained.adapter_hash.clone(),
            seconds: t1.elapsed().as_secs_f64(),
        };
        tracing::info!(space = %book.slug, ?run, "learner trained");
        let t2 = Instant::now();
        let (_, judge) = platform.model_engine_and_judge(&models)?;
        let plan = GatePlan {
            books: vec![book.clone()],
            matches: cfg.eval_matches,
            system_prompt: BENCH_SYSTEM_PROMPT.into(),
            sampling: sampling.clone(),
            parent: None,
            candidate: trained.adapter_hash.clone(),
            trained_prompts,
            // Not the gate's seed: other tasks and sampling seeds than the gate saw.
            seed: 0x5eed_0000 + k as u64,
            batch: cfg.batch,
        };
        // The learner's own base model, as the trainer's gate uses.
        let base = models
            .agents
            .get(&learner.base_model)
            .map_err(|e| invalid("learner", e))?;
        let evaluation = tokio::task::block_in_place(|| {
            evaluate_against_parent(
                &base.model,
                &base.tokenizer,
                &platform.adapters,
                &*judge,
                &plan,
            )
        })
        .map_err(learning_err)?;
        let result = evaluation.result;
        out.push(SpaceLearning {
            space: book.slug.clone(),
            matches,
            refunded,
            learner_pairs,
            seconds_matches,
            run: Some(run),
            significant_gain: result.win_rate.trials > 0 && result.win_rate.ci95[0] > 0.5,
            trained_vs_parent: Some(result),
            seconds_evaluation: t2.elapsed().as_secs_f64(),
        });
    }
    Ok(ProductLearningReport {
        config: cfg.clone(),
        system_prompt: BENCH_SYSTEM_PROMPT.into(),
        training_policy: policy,
        significant_gains: out.iter().filter(|s| s.significant_gain).count(),
        spaces: out,
        seconds_total: started.elapsed().as_secs_f64(),
    })
}

fn learning_err(e: platform::learning::LearningError) -> BenchError {
    BenchError::Check(format!("training: {e}"))
}

fn runner_err(e: platform::play::RunnerError) -> BenchError {
    BenchError::Check(format!("match runner: {e}"))
}
