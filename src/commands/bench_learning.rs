//! `rlfc bench learning`: does training help? One agent learns a Space's verifiable
//! preference (its hard rules) over several DPO updates from self-play pairs, then
//! meets its frozen parent on held-out tasks; prints JSON with the win rate and the
//! rule-pass rate before and after, each with a 95% Wilson interval. The method is
//! documented in `bench/src/learning.rs`.

use std::sync::Arc;

use anyhow::{Context, Result};
use bench::learning::{LearningBenchConfig, run_learning_bench};
use platform::runtime::AdapterLibrary;

use crate::config::Config;
use platform::BaseModels;

/// `rlfc bench learning` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchLearningArgs {
    /// The Space (it needs hard rules: they are the preference).
    #[arg(long, default_value = "haiku")]
    pub space: String,
    /// DPO updates, each from the previous update's adapter.
    #[arg(long, default_value_t = 2)]
    pub updates: usize,
    /// Preference pairs per update.
    #[arg(long, default_value_t = 32)]
    pub pairs: usize,
    /// Answers sampled per training task to cut a pair from.
    #[arg(long, default_value_t = 4)]
    pub candidates: usize,
    /// Optimizer steps per update.
    #[arg(long, default_value_t = 8)]
    pub steps: usize,
    /// Pairs per optimizer step.
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    /// Head-to-head matches against the frozen parent, before and after.
    #[arg(long, default_value_t = 200)]
    pub eval_matches: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 5e-4)]
    pub learning_rate: f64,
    /// DPO beta.
    #[arg(long, default_value_t = 0.1)]
    pub beta: f64,
    /// LoRA rank (alpha = 2 × rank).
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    /// Sampling temperature of the agent.
    #[arg(long, default_value_t = 0.9)]
    pub temperature: f64,
    /// Sequences decoded at once.
    #[arg(long, default_value_t = 16)]
    pub decode_batch: usize,
    /// The product-path mode: per Space, a learner with every product default plays
    /// matches against the demo population, judged by the panel, until the product's
    /// trainer runs on its cross-agent pairs; the trained agent then meets its frozen
    /// parent on `--eval-matches` held-out tasks (see `bench/src/product_learning.rs`).
    /// `--space`, `--updates`, `--pairs`, `--candidates`, `--steps`, `--batch-size`,
    /// `--learning-rate`, `--beta` and `--rank` belong to the self-play mode.
    #[arg(long)]
    pub product: bool,
    /// Product-path mode: the Spaces, comma-separated (default: every Space).
    #[arg(long, value_delimiter = ',')]
    pub spaces: Vec<String>,
    /// Product-path mode: the most matches the learner plays in a Space before its
    /// training run is due; a Space that gives too few pairs reports no run.
    #[arg(long, default_value_t = 300)]
    pub max_matches: usize,
    /// Product-path mode: the learner's training settings as JSON; `{}` (the default)
    /// is every product default, the mode's point. Other values are for quick checks.
    #[arg(long, default_value = "{}")]
    pub training: String,
}

/// Runs the benchmark on the real models and prints its JSON report.
pub fn run(args: BenchLearningArgs, config: &Config) -> Result<()> {
    if args.product {
        return crate::runtime()?.block_on(run_product(args, config));
    }
    let books = spaces::load_dir(config.assets_dir.join("spaces"))?;
    let book = books
        .into_iter()
        .find(|b| b.slug == args.space)
        .with_context(|| format!("--space: no Space named {:?}", args.space))?;
    let book = Arc::new(book);
    let models = BaseModels::load(&config.platform())?;
    let loaded = judges::LoadedJudges::new(
        Some(models.llm_judge.clone()),
        Some(models.embedding_judge.clone()),
    )?;
    let judge = platform::runtime::PanelJudge::new(std::slice::from_ref(&book), &loaded)?;
    let scratch = tempfile::tempdir()?;
    let adapters = Arc::new(AdapterLibrary::new(scratch.path().join("adapters")));
    let cfg = LearningBenchConfig {
        updates: args.updates,
        pairs_per_update: args.pairs,
        candidates: args.candidates,
        eval_matches: args.eval_matches,
        batch: args.decode_batch,
        sampling: serde_json::json!({ "temperature": args.temperature, "top_p": 0.95 }),
        dpo: agents::dpo::DpoConfig {
            beta: args.beta,
            learning_rate: args.learning_rate,
            max_steps: args.steps,
            batch_size: args.batch_size,
            max_length: 160,
            lora_rank: args.rank,
            lora_alpha: 2.0 * args.rank as f32,
            seed: 1,
            ..agents::dpo::DpoConfig::default()
        },
    };
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let report = run_learning_bench(
        &models.model,
        &models.tokenizer,
        &judge,
        &book,
        &adapters,
        &cfg,
    )?;
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut json = serde_json::to_value(&report)?;
    json["loadavg_before"] = load_before.trim().into();
    json["loadavg_after"] = load_after.trim().into();
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}

/// The product-path mode: prints its JSON report.
async fn run_product(args: BenchLearningArgs, config: &Config) -> Result<()> {
    let platform_config = config.platform();
    let spaces = if args.spaces.is_empty() {
        spaces::load_dir(config.assets_dir.join("spaces"))?
            .into_iter()
            .map(|b| b.slug)
            .collect()
    } else {
        args.spaces.clone()
    };
    let cfg = bench::product_learning::ProductLearningConfig {
        spaces,
        max_matches: args.max_matches,
        eval_matches: args.eval_matches,
        batch: args.decode_batch,
        sampling: serde_json::json!({ "temperature": args.temperature, "top_p": 0.95 }),
        training: serde_json::from_str(&args.training)
            .with_context(|| format!("--training: not a JSON object: {}", args.training))?,
    };
    let load_before = bench::load_average();
    let report = bench::product_learning::run(&cfg, &platform_config).await?;
    let mut json = serde_json::to_value(&report)?;
    json["loadavg_before"] = serde_json::json!(load_before);
    json["loadavg_after"] = serde_json::json!(bench::load_average());
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}
