//! `rlfc bench scale`: matches per second of a scaled-out deployment against its
//! number of workers, on the test policy (`bench::scale`), printed as JSON.

use anyhow::{Context, Result};

/// `rlfc bench scale` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchScaleArgs {
    /// Worker counts to measure; repeat for several runs.
    #[arg(long = "workers", value_name = "N", default_values_t = [1usize, 2, 4])]
    pub workers: Vec<usize>,
    /// API servers (matchmakers) in every run.
    #[arg(long, default_value_t = 1)]
    pub servers: usize,
    /// Seconds measured per run, after the warm-up.
    #[arg(long, default_value_t = 60)]
    pub secs: u64,
    /// Seconds of warm-up per run.
    #[arg(long, default_value_t = 15)]
    pub warmup_secs: u64,
    /// Wall time of one test-policy engine step, ms (0: answers are instant, so the
    /// figure is the platform's own cost).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub step_ms: u64,
    /// Matches in play per worker at most.
    #[arg(long, default_value_t = 8)]
    pub live_per_worker: usize,
    /// PostgreSQL URL of a role that may create the scratch databases.
    #[arg(
        long,
        value_name = "URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub admin_url: String,
    /// The Redis to use (each run gets a namespace of its own, deleted afterwards).
    #[arg(long, value_name = "URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
}

/// Runs every worker count and prints JSON. The processes are this binary, with the
/// configured assets directory made absolute (they run in scratch directories).
pub async fn run(args: BenchScaleArgs, config: &crate::config::Config) -> Result<()> {
    let program = std::env::current_exe().context("locating this program")?;
    let assets = std::path::absolute(&config.assets_dir)
        .with_context(|| format!("assets_dir {}", config.assets_dir.display()))?;
    let options = bench::scale::ScaleOptions {
        workers: args.workers,
        servers: args.servers,
        secs: args.secs,
        warmup_secs: args.warmup_secs,
        step_ms: args.step_ms,
        live_per_worker: args.live_per_worker,
        admin_url: args.admin_url,
        redis_url: args.redis_url,
    };
    let figures = bench::scale::run(&options, &program, &assets).await?;
    println!("{}", serde_json::to_string_pretty(&figures)?);
    Ok(())
}
