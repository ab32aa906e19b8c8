//! Generates one answer from this crate alone (the `rlfc generate` command calls the
//! same function): `cargo run --release -p agents --example generate -- --prompt "Hi"`.

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: agents::cli::GenerateArgs,
}

fn main() -> Result<(), agents::AgentError> {
    agents::cli::run_generate(Cli::parse().args)
}
