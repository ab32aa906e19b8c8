//! `rlfc bench judge`, `judge-agreement` and `judge-injection`: the judge panel on
//! the real models (SmolLM2, or the GGUF file `judges.llm_model` names, and
//! all-MiniLM-L6-v2, fetched if missing), printing JSON.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use judges::{EmbeddingJudge, LlmJudge, LoadedJudges, bench};

use crate::BenchCommand;
use crate::config::Config;

/// The LLM judge (loaded on the CPU runtime from `gguf`) and the embedding judge
/// (loaded from `minilm_dir`) on `judges.device`: on a GPU the LLM judge scores with
/// the GGUF file loaded there, and the embedding model lives there.
pub fn judges_on_device(
    config: &Config,
    llm: LlmJudge,
    gguf: &Path,
    minilm_dir: &Path,
) -> Result<(LlmJudge, EmbeddingJudge)> {
    let spec = config.judges.device;
    let device = spec
        .open()
        .with_context(|| format!("judges.device = \"{spec}\""))?;
    let llm = if spec.is_cpu() {
        llm
    } else {
        llm.on_device(gguf, &device)?
    };
    let embedding = EmbeddingJudge::load(minilm_dir, &device)?;
    if !spec.is_cpu() {
        tracing::info!(device = %spec, "judges run on the device");
    }
    Ok((llm, embedding))
}

/// The LLM judge with its forward passes on `judges.endpoint` when one is configured
/// (connecting checks the server answers), else unchanged.
pub fn with_endpoint(config: &Config, llm: LlmJudge) -> Result<LlmJudge> {
    let Some(endpoint) = config.judge_endpoint() else {
        return Ok(llm);
    };
    let url = endpoint.url.clone();
    let client = judges::endpoint::EndpointClient::connect(endpoint)
        .with_context(|| format!("judges.endpoint {url}"))?;
    tracing::info!(%url, identity = client.identity(), "LLM judge on an inference server");
    Ok(llm.over_endpoint(Arc::new(client)))
}

/// Loads the judges once and runs one judge benchmark.
pub fn run_judges(command: BenchCommand, config: &Config) -> Result<()> {
    let fetcher = config.fetcher();
    let gguf = match config.judge_model() {
        Some(path) => path.to_path_buf(),
        None => fetcher.ensure(&models::SMOLLM2)?.remove(0),
    };
    fetcher.ensure(&models::MINILM)?;
    let (llm, embedding) = judges_on_device(
        config,
        LlmJudge::load(&gguf).with_context(|| format!("LLM judge model {}", gguf.display()))?,
        &gguf,
        &fetcher.model_dir(&models::MINILM),
    )?;
    let llm = with_endpoint(config, llm)?;
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
