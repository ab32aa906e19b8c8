//! `rlfc bench decode`: prefill and decode throughput of this runtime on a GGUF file
//! (single stream, and 1/4/8 concurrent sequences each with its own r=8 adapter), peak
//! memory, and the same prefill/decode figures for stock candle `quantized_llama`.

use agents::Model;
use agents::Result;
use agents::{KvCache, Logits, Segment};
use agents::{LoraAdapter, LoraConfig};
use candle_core::{Device, Tensor};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What can stop a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Loading or running the model failed.
    #[error(transparent)]
    Agent(#[from] agents::AgentError),
    /// A tensor operation of the baseline failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A report or pair file could not be written as JSON.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl BenchError {
    /// An I/O error on `path`.
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
        move |source| BenchError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Prompt length for the prefill measure (and the context decoding starts from).
    pub prompt_tokens: usize,
    /// Tokens generated for the single-stream decode measure.
    pub decode_tokens: usize,
    /// Decode steps timed for each batch size.
    pub batch_steps: usize,
    /// Concurrent sequence counts, each sequence with its own adapter.
    pub batch_sizes: Vec<usize>,
    /// LoRA rank of the per-sequence adapters.
    pub adapter_rank: usize,
    /// Also measure stock candle-transformers `quantized_llama`.
    pub baseline: bool,
    /// Timed repetitions of each measure; the best is reported.
    pub repeats: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            prompt_tokens: 64,
            decode_tokens: 64,
            batch_steps: 32,
            batch_sizes: vec![1, 4, 8],
            adapter_rank: 8,
            baseline: true,
            repeats: 3,
        }
    }
}

/// A proc status field in KiB (`VmRSS`, `VmHWM`), or 0 where unavailable.
fn proc_kib(field: &str) -> u64 {
    crate::proc_status_kib(field).unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// A deterministic prompt of `n` ordinary token ids.
fn bench_prompt(n: usize, vocab: usize, salt: usize) -> Vec<u32> {
    (0..n)
        .map(|i| (1000 + (i * 131 + salt * 977) % (vocab - 1000).max(1)) as u32)
        .collect()
}

fn argmax(t: &Tensor) -> Result<u32> {
    Ok(t.flatten_all()?.argmax(0)?.to_scalar::<u32>()?)
}

/// An r-rank adapter on every projection with small nonzero B, as a trained one would be.
fn bench_adapter(model: &Model, rank: usize, seed: u64) -> Result<LoraAdapter> {
    let a = LoraAdapter::new(
        model.config(),
        LoraConfig::all_targets(rank, 2.0 * rank as f32),
        seed,
    )?;
    for (i, v) in a.vars().iter().enumerate() {
        if i % 2 == 1 {
            v.set(&(v.as_tensor().ones_like()? * 1e-3)?)?;
        }
    }
    Ok(a)
}

fn ours(model: &Model, opts: &BenchOptions) -> Result<Value> {
    let vocab = model.config().vocab_size;
    let prompt = bench_prompt(opts.prompt_tokens, vocab, 0);
    // Prefill: one pass over the whole prompt.
    let mut best_prefill = f64::MAX;
    for _ in 0..opts.repeats {
        let mut cache = KvCache::new();
        let t = Instant::now();
        let mut segs = [Segment {
            tokens: &prompt,
            cache: &mut cache,
            adapter: None,
        }];
        model.forward(&mut segs, Logits::Last)?;
        best_prefill = best_prefill.min(t.elapsed().as_secs_f64());
    }
    // Single stream, greedy, no adapter.
    let mut best_decode = f64::MAX;
    for _ in 0..opts.repeats {
        let mut cache = KvCache::new();
        let mut segs = [Segment {
            tokens: &prompt,
            cache: &mut cache,
            adapter: None,
        }];
        let mut next = argmax(&model.forward(&mut segs, Logits::Last)?[0])?;
        let t = Instant::now();
        for _ in 0..opts.decode_tokens {
            let tok = [next];
            let mut segs = [Segment {
                tokens: &tok,
                cache: &mut cache,
                adapter: None,
            }];
            next = argmax(&model.forward(&mut segs, Logits::Last)?[0])?;
        }
        best_decode = best_decode.min(t.elapsed().as_secs_f64());
    }
    let max_batch = opts.batch_sizes.iter().copied().max().unwrap_or(0);
    let adapters: Vec<LoraAdapter> = (0..max_batch)
        .map(|i| bench_adapter(model, opts.adapter_rank, 1000 + i as u64))
        .collect::<Result<_>>()?;
    let adapter_bytes = adapters.first().map(|a| a.num_params() * 4).unwrap_or(0);
    let mut batches = serde_json::Map::new();
    for &b in &opts.batch_sizes {
        let mut best = f64::MAX;
        for _ in 0..opts.repeats {
            // Different prompt lengths per sequence, prefilled before timing.
            let prompts: Vec<Vec<u32>> = (0..b)
                .map(|i| bench_prompt(opts.prompt_tokens / 2 + 7 * i, vocab, i + 1))
                .collect();
            let mut caches: Vec<KvCache> = (0..b).map(|_| KvCache::new()).collect();
            let mut segs: Vec<Segment<'_>> = prompts
                .iter()
                .zip(caches.iter_mut())
                .zip(&adapters)
                .map(|((p, c), a)| Segment {
                    tokens: p,
                    cache: c,
                    adapter: Some(a),
                })
                .collect();
            let logits = model.forward(&mut segs, Logits::Last)?;
            drop(segs);
            let mut next: Vec<[u32; 1]> = logits
                .iter()
                .map(|l| argmax(l).map(|t| [t]))
                .collect::<Result<_>>()?;
            let t = Instant::now();
            for _ in 0..opts.batch_steps {
                let mut segs: Vec<Segment<'_>> = next
                    .iter()
                    .zip(caches.iter_mut())
                    .zip(&adapters)
                    .map(|((tok, c), a)| Segment {
                        tokens: tok,
                        cache: c,
                        adapter: Some(a),
                    })
                    .collect();
                let logits = model.forward(&mut segs, Logits::Last)?;
                drop(segs);
                next = logits
                    .iter()
                    .map(|l| argmax(l).map(|t| [t]))
                    .collect::<Result<_>>()?;
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        batches.insert(
            b.to_string(),
            json!(round1((b * opts.batch_steps) as f64 / best)),
        );
    }
    Ok(json!({
        "prefill_tok_s": round1(opts.prompt_tokens as f64 / best_prefill),
        "decode_tok_s": round1(opts.decode_tokens as f64 / best_decode),
        "aggregate_decode_tok_s_with_r8_adapters": Value::Object(batches),
        "adapter_bytes_f32": adapter_bytes,
    }))
}

fn baseline(
    path: &Path,
    opts: &BenchOptions,
    vocab: usize,
) -> std::result::Result<Value, BenchError> {
    use candle_transformers::models::quantized_llama::ModelWeights;
    let mut file = std::fs::File::open(path).map_err(BenchError::io(path))?;
    let content = candle_core::quantized::gguf_file::Content::read(&mut file)?;
    let device = Device::Cpu;
    let mut model = ModelWeights::from_gguf(content, &mut file, &device)?;
    let prompt = bench_prompt(opts.prompt_tokens, vocab, 0);
    let mut best_prefill = f64::MAX;
    let mut best_decode = f64::MAX;
    for _ in 0..opts.repeats {
        // Each prompt pass starts at position 0, which resets the stock KV cache.
        let input = Tensor::new(prompt.as_slice(), &device)?.unsqueeze(0)?;
        let t = Instant::now();
        let logits = model.forward(&input, 0)?;
        best_prefill = best_prefill.min(t.elapsed().as_secs_f64());
        let mut next = logits.flatten_all()?.argmax(0)?.to_scalar::<u32>()?;
        let t = Instant::now();
        for i in 0..opts.decode_tokens {
            let input = Tensor::new(&[next], &device)?.unsqueeze(0)?;
            let logits = model.forward(&input, prompt.len() + i)?;
            next = logits.flatten_all()?.argmax(0)?.to_scalar::<u32>()?;
        }
        best_decode = best_decode.min(t.elapsed().as_secs_f64());
    }
    Ok(json!({
        "prefill_tok_s": round1(opts.prompt_tokens as f64 / best_prefill),
        "decode_tok_s": round1(opts.decode_tokens as f64 / best_decode),
    }))
}

/// Runs the decode benchmark on the GGUF file at `path` and returns the figures as JSON.
pub fn bench_decode(path: &Path, opts: &BenchOptions) -> std::result::Result<Value, BenchError> {
    let rss_before = proc_kib("VmRSS");
    let load = Instant::now();
    let (model, _tok) = Model::load(path)?;
    let load_s = load.elapsed().as_secs_f64();
    let rss_loaded = proc_kib("VmRSS");
    let file_bytes = std::fs::metadata(path).map_err(BenchError::io(path))?.len();
    let ours = ours(&model, opts)?;
    let peak_ours = proc_kib("VmHWM");
    let vocab = model.config().vocab_size;
    drop(model);
    let base = if opts.baseline {
        baseline(path, opts, vocab)?
    } else {
        Value::Null
    };
    Ok(json!({
        "model": path.display().to_string(),
        "model_file_mib": mib(file_bytes / 1024),
        "threads": rayon::current_num_threads(),
        "kernel": agents::kernel_name(),
        "load_s": (load_s * 100.0).round() / 100.0,
        "prompt_tokens": opts.prompt_tokens,
        "decode_tokens": opts.decode_tokens,
        "batch_steps": opts.batch_steps,
        "rlfc": ours,
        "resident_model_mib": mib(rss_loaded.saturating_sub(rss_before)),
        "peak_rss_mib": mib(peak_ours),
        "candle_quantized_llama": base,
        "peak_rss_mib_with_baseline": mib(proc_kib("VmHWM")),
    }))
}
