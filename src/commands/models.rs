//! `rlfc models fetch` and `rlfc models list`.

use std::io::IsTerminal;

use anyhow::Result;
use clap::Subcommand;
use models::{Fetcher, FileState, ModelSpec};

use crate::config::Config;

/// `rlfc models …`
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Download and verify model weights (all of the catalogue by default).
    Fetch {
        /// Model names (see `rlfc models list`).
        names: Vec<String>,
    },
    /// List the catalogue and the state of each cached file.
    List,
}

fn fetcher(config: &Config) -> Fetcher {
    config
        .models
        .fetcher()
        .progress(std::io::stderr().is_terminal())
}

fn selected(names: &[String]) -> Result<Vec<&'static ModelSpec>> {
    if names.is_empty() {
        return Ok(models::catalogue());
    }
    Ok(names
        .iter()
        .map(|n| models::find(n))
        .collect::<Result<_, _>>()?)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Runs a `models` subcommand.
pub fn run(command: ModelsCommand, config: &Config) -> Result<()> {
    let fetcher = fetcher(config);
    match command {
        ModelsCommand::Fetch { names } => {
            for spec in selected(&names)? {
                eprintln!(
                    "{}: checking {} ({}) in {}",
                    spec.name,
                    spec.requirement(),
                    mib(spec.total_size()),
                    fetcher.model_dir(spec).display()
                );
                let report = fetcher.fetch(spec)?;
                for name in &report.repaired {
                    println!(
                        "{}: {name} was damaged and has been fetched again",
                        spec.name
                    );
                }
                let what = if report.cached {
                    "cached, nothing to do"
                } else {
                    "fetched"
                };
                println!(
                    "{}: {what} ({} file(s), sha256 verified)",
                    spec.name,
                    report.paths.len()
                );
            }
            Ok(())
        }
        ModelsCommand::List => {
            println!(
                "{:<24} {:<10} {:>10}  {:<28} PATH",
                "NAME", "STATE", "SIZE", "PACKAGE"
            );
            for spec in models::catalogue() {
                for (path, state) in fetcher.check(spec)? {
                    let state = match state {
                        FileState::Verified => "verified".to_string(),
                        FileState::Missing => "missing".to_string(),
                        FileState::Corrupt { .. } => "corrupt".to_string(),
                    };
                    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    println!(
                        "{:<24} {:<10} {:>10}  {:<28} {}",
                        spec.name,
                        state,
                        mib(size),
                        spec.requirement(),
                        path.display()
                    );
                }
            }
            Ok(())
        }
    }
}
