//! Runs the decode benchmark from this crate alone (the `rlfc bench decode` command
//! calls the same function): `cargo run --release -p agents --example bench_decode`.

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: agents::cli::BenchDecodeArgs,
}

fn main() -> Result<(), agents::bench::BenchError> {
    agents::cli::run_bench_decode(Cli::parse().args)
}
