//! Runs the judge benchmarks on the real models and prints their JSON figures:
//! `cargo run --release -p judges --example bench [judge|cross-match|agreement|injection|all]`.

use std::path::Path;
use std::sync::Arc;

use judges::{EmbeddingJudge, LlmJudge, LoadedJudges, bench};

fn main() -> anyhow::Result<()> {
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let spaces = root.join("assets/spaces");
    let data = root.join("assets/judges");
    let judges = LoadedJudges::new(
        Some(Arc::new(LlmJudge::load(&models::smollm2_gguf()?)?)),
        Some(Arc::new(EmbeddingJudge::load(
            &models::minilm_dir()?,
            &candle_core::Device::Cpu,
        )?)),
    )?;
    if which == "judge" || which == "all" {
        let v = bench::throughput(&judges, &spaces, 5)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    if which == "cross-match" || which == "all" {
        let v = bench::cross_match(&judges, &spaces, 8, 4)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    if which == "agreement" || which == "all" {
        let v = bench::agreement(&judges, &spaces, &data.join("agreement.jsonl"))?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    if which == "injection" || which == "all" {
        let v = bench::injection(&judges, &spaces, &data.join("injection.jsonl"))?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(())
}
