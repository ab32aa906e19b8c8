//! `rlfc bench spectate`: websocket spectators of one live match (delivered events per
//! second, p99 delay from emit to receipt) for each `--spectators` count, then the
//! dataset export's rows per second against `psql \copy` of the same rows, as JSON.
//!
//! The benchmarks themselves live in the `bench` crate; this is the command-line edge. The
//! spectators run in a child process (this binary again, `bench spectate-clients`), so
//! the server's process and the clients' each hold one socket per spectator; both
//! raise their open-file limit to that plus headroom first.

use anyhow::{Context, Result};
use bench::{export::ExportOptions, spectate::Clients, spectate::SpectateOptions};
use serde_json::json;

/// `rlfc bench spectate` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchSpectateArgs {
    /// Concurrent spectators; repeat for several runs.
    #[arg(long = "spectators", value_name = "N", default_values_t = [1000usize, 10000])]
    pub spectators: Vec<usize>,
    /// Seats at the match (one token delta per seat per decode step).
    #[arg(long, default_value_t = 4)]
    pub seats: usize,
    /// Rounds the match plays.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Tokens each seat writes per round.
    #[arg(long, default_value_t = 50)]
    pub tokens: u32,
    /// Decode steps per second (the default is one real Tweet Duel's pace here).
    #[arg(long, default_value_t = 12.5)]
    pub steps_per_sec: f64,
    /// Preference pairs to seed and export (0 skips the export measure).
    #[arg(long, value_name = "N", default_value_t = 200_000)]
    pub export_rows: u64,
    /// PostgreSQL URL of a role that may create the export's scratch database.
    #[arg(
        long,
        value_name = "URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub export_admin_url: String,
    /// The psql program to compare against.
    #[arg(long, default_value = "psql")]
    pub psql: String,
}

/// Runs the spectator measures, then the export measure, and prints JSON.
pub fn run(args: BenchSpectateArgs) -> Result<()> {
    let most = args.spectators.iter().copied().max().unwrap_or(0) as u64;
    let open_files = bench::raise_open_files(most + 1024)?;
    let program = std::env::current_exe().context("locating this program")?;
    let load_before = bench::load_average();
    let mut runs = Vec::new();
    for &spectators in &args.spectators {
        let opts = SpectateOptions {
            spectators,
            seats: args.seats,
            rounds: args.rounds,
            tokens: args.tokens,
            steps_per_sec: args.steps_per_sec,
            clients: Clients::Child {
                program: program.clone(),
                args: vec!["bench".into(), "spectate-clients".into()],
            },
            ..SpectateOptions::default()
        };
        let figures = bench::spectate::spectate(&opts)
            .with_context(|| format!("spectate with {spectators} spectators"))?;
        eprintln!(
            "{spectators} spectators: {} deliveries/s, p99 {} ms",
            figures.delivered_per_sec, figures.delay.p99_ms
        );
        runs.push(figures);
    }
    let export = if args.export_rows > 0 {
        let figures = bench::export::export(&ExportOptions {
            rows: args.export_rows,
            admin_url: args.export_admin_url.clone(),
            psql: args.psql.clone(),
        })
        .context("export benchmark")?;
        Some(figures)
    } else {
        None
    };
    let out = json!({
        "open_files": open_files,
        "load_average_before": load_before,
        "load_average_after": bench::load_average(),
        "spectate": runs,
        "export": export,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// `rlfc bench spectate-clients` (hidden) options.
#[derive(Debug, Clone, clap::Args)]
pub struct SpectateClientsArgs {
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// The plan, as JSON.
    pub plan: String,
}

/// The spectators' process of `bench spectate`.
pub fn run_clients(args: SpectateClientsArgs) -> Result<()> {
    let plan: bench::spectators::ClientPlan =
        serde_json::from_str(&args.plan).context("the spectators' plan")?;
    bench::raise_open_files(plan.spectators as u64 + 1024)?;
    bench::spectators::child_main(plan, args.threads)?;
    Ok(())
}
