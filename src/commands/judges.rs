//! `rlfc judges train-reward`: fits the reward judge's head on the labelled sets it
//! lists (`judges::reward_data::TRAINING_SETS`) and writes it where the build ships
//! it from, so a new head is one command, one diff and one rebuild.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use judges::EmbeddingJudge;
use judges::reward::TrainOptions;
use judges::reward_data::{Featurizer, TRAINING_SETS, train_head};

use crate::config::Config;

/// The judge panel's own models.
#[derive(Debug, Subcommand)]
pub enum JudgesCommand {
    /// Train the reward judge's head (Bradley–Terry on MiniLM features) on the shipped
    /// labelled sets, and write it.
    TrainReward {
        /// Where to write the head (default: `assets_dir/judges/reward/head.json`).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Full-batch gradient steps.
        #[arg(long, default_value_t = TrainOptions::default().epochs)]
        epochs: usize,
        /// Train on these sets (paths relative to `assets_dir`) instead of the shipped
        /// list; repeat for several.
        #[arg(long = "set", value_name = "FILE")]
        sets: Vec<String>,
        /// After training, score the head alone on these sets (relative to
        /// `assets_dir`; repeat for several) and record the figures in the head.
        #[arg(long = "eval", value_name = "FILE")]
        evals: Vec<String>,
        /// L2 penalty on the weights.
        #[arg(long, default_value_t = TrainOptions::default().l2)]
        l2: f64,
        /// The kinds of contrast pairs (corrupted good answers) to add to the labelled
        /// ones: off-topic, truncated, repeated, copied-history, manipulation, or none
        /// (repeat for several; default: none).
        #[arg(long, value_name = "KIND")]
        contrast: Vec<String>,
        /// Keep embeddings between runs in this JSON file (text to vector), to try
        /// settings quickly; it must come from the same embedding model.
        #[arg(long, value_name = "FILE")]
        embedding_cache: Option<PathBuf>,
    },
}

/// Runs a `judges` command.
pub fn run(command: JudgesCommand, config: &Config) -> Result<()> {
    match command {
        JudgesCommand::TrainReward {
            out,
            epochs,
            sets,
            evals,
            l2,
            contrast,
            embedding_cache,
        } => {
            let fetcher = config.models.fetcher();
            fetcher.ensure(&models::MINILM)?;
            let embedding = EmbeddingJudge::load(
                &fetcher.model_dir(&models::MINILM),
                &candle_core::Device::Cpu,
            )?;
            let mut options = TrainOptions {
                epochs,
                l2,
                ..TrainOptions::default()
            };
            if !contrast.is_empty() {
                options.contrast = contrast
                    .iter()
                    .filter(|k| k.as_str() != "none")
                    .map(|k| {
                        serde_json::from_value(serde_json::Value::String(k.replace('-', "_")))
                            .with_context(|| {
                                format!(
                                    "--contrast {k}: expected off-topic, truncated, repeated, \
                                     copied-history, manipulation or none"
                                )
                            })
                    })
                    .collect::<Result<_>>()?;
            }
            let cache: HashMap<String, Vec<f32>> = match &embedding_cache {
                Some(path) if path.exists() => serde_json::from_slice(&std::fs::read(path)?)
                    .with_context(|| format!("reading {}", path.display()))?,
                _ => HashMap::new(),
            };
            let mut featurizer = Featurizer::new(&embedding, &config.assets_dir, cache)?;
            let sets: Vec<&str> = if sets.is_empty() {
                TRAINING_SETS.to_vec()
            } else {
                sets.iter().map(String::as_str).collect()
            };
            let evals: Vec<&str> = evals.iter().map(String::as_str).collect();
            let head = train_head(&mut featurizer, &config.assets_dir, &sets, &evals, options)?;
            if let Some(path) = &embedding_cache {
                std::fs::write(path, serde_json::to_vec(&featurizer.into_cache())?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let out = out.unwrap_or_else(|| config.assets_dir.join("judges/reward/head.json"));
            // Written beside the target and renamed over it: a failed write never
            // leaves half a head where the build reads it.
            let tmp = out.with_extension("json.tmp");
            std::fs::write(&tmp, head.to_json())
                .with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &out).with_context(|| format!("writing {}", out.display()))?;
            let summary = serde_json::json!({
                "head": out.display().to_string(),
                "sha256": head.sha256(),
                "labelled_pairs": head.training.sets.iter().map(|s| s.pairs).sum::<usize>(),
                "contrast_pairs": head.training.contrast_pairs,
                "train_accuracy": head.training.train_accuracy,
                "train_loss": head.training.train_loss,
                "evaluations": head.training.evaluations,
            });
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
    }
}
