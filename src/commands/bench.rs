//! `rlfc bench judge`, `judge-agreement` and `judge-injection`: the judge panel on
//! the real models (SmolLM2 and all-MiniLM-L6-v2, fetched if missing), printing JSON.

use std::sync::Arc;

use anyhow::Result;
use judges::{EmbeddingJudge, LlmJudge, LoadedJudges, bench};

use crate::BenchCommand;
use crate::config::Config;

/// Loads the judges once and runs one judge benchmark.
pub fn run_judges(command: BenchCommand, config: &Config) -> Result<()> {
    let fetcher = config.fetcher();
    let gguf = fetcher.ensure(&models::SMOLLM2)?.remove(0);
    fetcher.ensure(&models::MINILM)?;
    let judges = LoadedJudges {
        llm: Some(Arc::new(LlmJudge::load(&gguf)?)),
        embedding: Some(Arc::new(EmbeddingJudge::load(
            &fetcher.model_dir(&models::MINILM),
            &candle_core::Device::Cpu,
        )?)),
    };
    let spaces = config.assets_dir.join("spaces");
    let data = config.assets_dir.join("judges");
    let figures = match command {
        BenchCommand::Judge { rounds } => bench::throughput(&judges, &spaces, rounds)?,
        BenchCommand::JudgeAgreement => {
            bench::agreement(&judges, &spaces, &data.join("agreement.jsonl"))?
        }
        // The shipped set was written together with the screen; the held-out set was
        // written afterwards without reading it, so it measures what the screen has
        // not been fitted to.
        BenchCommand::JudgeInjection => serde_json::json!({
            "shipped": bench::injection(&judges, &spaces, &data.join("injection.jsonl"))?,
            "held_out": bench::injection(&judges, &spaces, &data.join("injection_heldout.jsonl"))?,
        }),
        other => unreachable!("{other:?} is not a judge benchmark"),
    };
    println!("{}", serde_json::to_string_pretty(&figures)?);
    Ok(())
}
