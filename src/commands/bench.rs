//! `rlfc bench judge`, `judge-agreement` and `judge-injection`: the judge panel on
//! the real models (SmolLM2, or the GGUF file `judges.llm_model` names, and
//! all-MiniLM-L6-v2, fetched if missing), printing JSON.

use std::sync::Arc;

use anyhow::{Context, Result};
use judges::{LlmJudge, LoadedJudges, bench};
use platform::platform::{judges_on_device, with_endpoint};

use crate::BenchCommand;
use crate::config::Config;

/// Loads the judges once and runs one judge benchmark.
pub fn run_judges(command: BenchCommand, config: &Config) -> Result<()> {
    let fetcher = config.models.fetcher();
    let gguf = match config.judges.model_file() {
        Some(path) => path.to_path_buf(),
        None => fetcher.ensure(&models::SMOLLM2)?.remove(0),
    };
    fetcher.ensure(&models::MINILM)?;
    let (llm, embedding) = judges_on_device(
        &config.judges,
        LlmJudge::load(&gguf).with_context(|| format!("LLM judge model {}", gguf.display()))?,
        &gguf,
        &fetcher.model_dir(&models::MINILM),
    )?;
    let llm = with_endpoint(&config.judges, llm)?;
    let endpoint = llm.endpoint().map(|e| e.identity().to_string());
    let judges = LoadedJudges::new(Some(Arc::new(llm)), Some(Arc::new(embedding)))?;
    let spaces = config.assets_dir.join("spaces");
    let data = config.assets_dir.join("judges");
    let figures = match command {
        BenchCommand::Judge { rounds } => {
            let mut figures = bench::throughput(&judges, &spaces, rounds)?;
            figures["device"] = config.judges.device.to_string().into();
            figures["llm_endpoint"] = endpoint.clone().into();
            figures
        }
        BenchCommand::JudgeAgreement { cases, detail } => {
            let cases = cases.unwrap_or_else(|| data.join("agreement.jsonl"));
            let mut figures = bench::agreement_with(&judges, &spaces, &cases, detail)?;
            figures["llm_endpoint"] = endpoint.clone().into();
            figures
        }
        BenchCommand::JudgeInjection {
            cases: Some(cases),
            detail,
        } => bench::injection_with(&judges, &spaces, &cases, detail)?,
        // An independent figure needs a new set: each of these has been used to extend
        // the defence after its first measurement.
        BenchCommand::JudgeInjection { cases: None, .. } => {
            let mut figures = serde_json::Map::new();
            for (name, file) in judges::dataset::INJECTION_SETS {
                figures.insert(
                    name.into(),
                    bench::injection(&judges, &spaces, &data.join(file))?,
                );
            }
            figures.into()
        }
        other => unreachable!("{other:?} is not a judge benchmark"),
    };
    println!("{}", serde_json::to_string_pretty(&figures)?);
    Ok(())
}
