//! `rlfc bench dpo`: seconds per DPO step and peak memory of the trainer on a real
//! model, with the same batch shape the TRL anchor (`scripts/bench_trl_dpo.py`) uses.

use agents::Model;
use agents::dpo::{DpoConfig, DpoPair, train_dpo};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Instant;

/// Settings of one DPO benchmark run.
#[derive(Debug, Clone)]
pub struct DpoBenchOptions {
    /// Timed optimizer steps (after one warm-up step).
    pub steps: usize,
    /// Pairs per step.
    pub batch: usize,
    /// `max_length`: prompt plus answer tokens per sequence.
    pub seq_len: usize,
    /// LoRA rank (alpha is twice the rank).
    pub rank: usize,
}

const SYSTEM: &str = "You are a careful assistant in a friendly competition. Answer the task \
                      directly, in plain words, and keep the answer short.";

const TASKS: [(&str, &str, &str); 4] = [
    (
        "Explain why the sky looks blue on a clear day.",
        "Sunlight holds every colour. Air molecules scatter short blue waves far more than \
         long red ones, so blue light reaches our eyes from every part of the sky, while the \
         sun itself looks a little yellow because some blue has been scattered away.",
        "The sky is blue because it reflects the ocean, which is blue. On cloudy days the \
         ocean is grey, so the sky turns grey too. This is also why the sky is darker over \
         deserts and lighter over large lakes and seas.",
    ),
    (
        "Give one good reason to write tests for a program.",
        "Tests catch mistakes early. When you change the code later, a test suite tells you \
         at once whether something that used to work is now broken, so you can fix it before \
         users see it and refactor with confidence.",
        "Tests are not really needed if the programmer is careful. They mostly slow down the \
         work, and a good developer can see bugs by reading the code once. Writing tests is \
         a habit of large companies rather than a real need.",
    ),
    (
        "What does a plant need to grow well?",
        "A plant needs light for photosynthesis, water, air with carbon dioxide, a suitable \
         temperature, and soil or another medium that gives it nutrients such as nitrogen, \
         phosphorus and potassium. Too much water can rot its roots.",
        "Plants only need water to grow. Light and soil do not matter much, since the plant \
         makes everything it needs from the water it drinks. That is why you can grow any \
         plant in a dark cupboard if you water it often.",
    ),
    (
        "Why do we have seasons on Earth?",
        "Earth's axis is tilted by about 23 degrees. As Earth orbits the Sun, each hemisphere \
         leans towards the Sun for part of the year, getting longer days and more direct \
         light, which makes summer, and leans away for winter.",
        "We have seasons because Earth moves closer to the Sun in summer and farther away in \
         winter. The distance changes a lot during the year, and that is the only thing that \
         makes the weather warmer or colder in every country.",
    ),
];

/// The benchmark's preference pairs: `n` chat-formatted prompts with a good and a poor answer.
pub fn bench_pairs(tok: &agents::ChatTokenizer, n: usize) -> Vec<DpoPair> {
    (0..n)
        .map(|i| {
            let (task, good, bad) = TASKS[i % TASKS.len()];
            DpoPair {
                prompt: tok.chat_prompt(SYSTEM, task),
                chosen: good.to_string(),
                rejected: bad.to_string(),
                ..DpoPair::default()
            }
        })
        .collect()
}

/// Peak resident memory of this process in bytes (`VmHWM`), where the kernel reports it.
fn peak_rss_bytes() -> Option<u64> {
    crate::proc_status_kib("VmHWM").map(|kib| kib * 1024)
}

/// Trains `1 + opts.steps` DPO steps on the model at `path` and reports the timed steps.
pub fn bench_dpo(
    path: &Path,
    opts: &DpoBenchOptions,
    pairs_out: Option<&Path>,
) -> Result<Value, crate::decode::BenchError> {
    let (model, tok) = Model::load(path)?;
    let rss_loaded = peak_rss_bytes();
    let pairs = bench_pairs(&tok, opts.batch);
    if let Some(out) = pairs_out {
        std::fs::write(out, serde_json::to_vec_pretty(&pairs)?)
            .map_err(crate::decode::BenchError::io(out))?;
    }
    let cfg = DpoConfig {
        max_steps: opts.steps + 1,
        batch_size: opts.batch,
        max_length: opts.seq_len,
        lora_rank: opts.rank,
        lora_alpha: 2.0 * opts.rank as f32,
        learning_rate: 5e-5,
        ..DpoConfig::default()
    };
    let start = Instant::now();
    let mut marks = Vec::new();
    let outcome = train_dpo(&model, &tok, None, &pairs, &cfg, |_| {
        marks.push(Instant::now())
    })?;
    let times: Vec<f64> = marks
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    let max = times.iter().copied().fold(0.0, f64::max);
    let last = outcome.steps.last().expect("at least one step");
    let mb = |b: Option<u64>| b.map(|b| (b as f64 / 1e6 * 10.0).round() / 10.0);
    Ok(json!({
        "model": path.display().to_string(),
        "threads": candle_core::utils::get_num_threads(),
        "product_kernel": agents::product_kernel_name(),
        "settings": {
            "batch_pairs": opts.batch,
            "max_length": opts.seq_len,
            "lora_rank": opts.rank,
            "lora_alpha": cfg.lora_alpha,
            "targets": "q,k,v,o,gate,up,down",
            "warmup_steps": 1,
            "timed_steps": opts.steps,
            "reference": "bare base model, computed once per distinct batch and cached",
        },
        "tokens_per_step": last.tokens,
        "sequences_per_step": 2 * opts.batch,
        "seconds_per_step": { "mean": mean, "min": min, "max": max },
        "setup_and_first_step_s": (marks[0] - start).as_secs_f64(),
        "peak_rss_mb": mb(peak_rss_bytes()),
        "peak_rss_after_model_load_mb": mb(rss_loaded),
        "final_loss": last.loss,
        "adapter_hash": outcome.adapter_hash,
    }))
}
