//! `rlfc bench arena`: what the arena costs on top of the models (`bench::arena`),
//! printed as JSON.

use anyhow::Result;

use crate::config::Config;

/// `rlfc bench arena` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArenaArgs {
    /// Matches for the orchestration measure.
    #[arg(long, default_value_t = 400)]
    pub matches: usize,
    /// Skip the real-model measures.
    #[arg(long)]
    pub orchestration_only: bool,
}

/// Runs the benchmark on a throwaway data directory and prints JSON.
pub async fn run(args: BenchArenaArgs, config: &Config) -> Result<()> {
    let figures =
        bench::arena::run(args.matches, args.orchestration_only, &config.platform()).await?;
    println!("{}", serde_json::to_string_pretty(&figures)?);
    Ok(())
}
