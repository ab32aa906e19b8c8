//! Command-line glue for `rlfc generate`, `rlfc bench decode` and `rlfc bench dpo`; the binary owns the
//! command tree and calls these.

use agents::adapter::load_adapter;
use agents::batch::{ChatRequest, generate};
use agents::{Model, SamplingParams};
use bench::decode::{BenchError, BenchOptions, bench_decode};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// The default model file: SmolLM2-135M-Instruct Q4_1 in the default model cache
/// (`$RLFC_MODELS_DIR`, else `~/.cache/rlfc/models`), where `rlfc models fetch` puts it.
pub fn default_model_path() -> PathBuf {
    let spec = &*models::SMOLLM2;
    models::Fetcher::new(models::default_models_dir())
        .model_dir(spec)
        .join(&spec.files[0].file_name)
}

/// `rlfc generate`: answer one prompt, streaming tokens to stdout.
#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// GGUF model file (default: the fetched SmolLM2-135M-Instruct Q4_1).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// System prompt.
    #[arg(long, default_value = "")]
    pub system: String,
    /// The task text.
    #[arg(long)]
    pub prompt: String,
    /// PEFT adapter directory (adapter_config.json + adapter_model.safetensors).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sampling settings.
    #[command(flatten)]
    pub sampling: SamplingParams,
}

/// Runs `rlfc generate`: streams the answer to stdout, a summary line to stderr.
pub fn run_generate(args: GenerateArgs) -> agents::Result<()> {
    let path = args.model.clone().unwrap_or_else(default_model_path);
    let (model, tokenizer) = Model::load(&path)?;
    let adapter = match &args.adapter {
        Some(p) => Some(Arc::new(load_adapter(p, model.config())?)),
        None => None,
    };
    let request = ChatRequest {
        system: args.system.clone(),
        user: args.prompt.clone(),
        params: args.sampling.clone(),
        seed: args.seed,
        adapter,
    };
    let start = std::time::Instant::now();
    let out = generate(
        &model,
        &tokenizer,
        &request,
        Some(Box::new(|delta: &str| {
            let mut so = std::io::stdout().lock();
            let _ = so.write_all(delta.as_bytes());
            let _ = so.flush();
        })),
    )?;
    println!();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "[{} prompt tokens, {} generated, {:.1} tok/s, finish: {:?}]",
        out.prompt_tokens,
        out.tokens.len(),
        out.tokens.len() as f64 / secs.max(1e-9),
        out.finish
    );
    Ok(())
}

/// `rlfc bench decode`: prints decode/prefill throughput as JSON.
#[derive(Debug, Clone, Args)]
pub struct BenchDecodeArgs {
    /// GGUF model file (default: the fetched SmolLM2-135M-Instruct Q4_1).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Prompt length for prefill.
    #[arg(long, default_value_t = 64)]
    pub prompt_tokens: usize,
    /// Tokens decoded for the single-stream figure.
    #[arg(long, default_value_t = 64)]
    pub decode_tokens: usize,
    /// Decode steps timed per batch size.
    #[arg(long, default_value_t = 32)]
    pub batch_steps: usize,
    /// Concurrent sequence counts (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
    pub batch_sizes: Vec<usize>,
    /// Timed repetitions; the best is reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Skip the stock candle quantized_llama baseline.
    #[arg(long)]
    pub no_baseline: bool,
}

/// Runs `rlfc bench decode` and prints the JSON report to stdout.
pub fn run_bench_decode(args: BenchDecodeArgs) -> Result<(), BenchError> {
    let path = args.model.clone().unwrap_or_else(default_model_path);
    let opts = BenchOptions {
        prompt_tokens: args.prompt_tokens,
        decode_tokens: args.decode_tokens,
        batch_steps: args.batch_steps,
        batch_sizes: args.batch_sizes.clone(),
        repeats: args.repeats.max(1),
        baseline: !args.no_baseline,
        ..BenchOptions::default()
    };
    let report = bench_decode(&path, &opts)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// `rlfc bench dpo`: prints seconds per DPO training step and peak memory as JSON.
#[derive(Debug, Clone, Args)]
pub struct BenchDpoArgs {
    /// GGUF model file (default: the fetched SmolLM2-135M-Instruct Q4_1).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Timed optimizer steps (one untimed warm-up step runs first).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Preference pairs per step.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Most tokens of prompt plus answer per sequence.
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// LoRA rank (alpha = 2 × rank), on q, k, v, o, gate, up and down.
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    /// Also write the pairs used, as TRL-style JSON, for `scripts/bench_trl_dpo.py`.
    #[arg(long)]
    pub pairs_out: Option<PathBuf>,
}

/// Runs `rlfc bench dpo` and prints the JSON report to stdout.
pub fn run_bench_dpo(args: BenchDpoArgs) -> Result<(), BenchError> {
    let path = args.model.clone().unwrap_or_else(default_model_path);
    let opts = bench::dpo::DpoBenchOptions {
        steps: args.steps.max(1),
        batch: args.batch,
        seq_len: args.seq_len,
        rank: args.rank,
    };
    let report = bench::dpo::bench_dpo(&path, &opts, args.pairs_out.as_deref())?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
