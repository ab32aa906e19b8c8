//! `rlfc db migrate` and `rlfc db status`.

use anyhow::Result;
use clap::Subcommand;
use store::Store;

use crate::config::Config;

/// `rlfc db …`
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply pending migrations (a no-op when the schema is current).
    Migrate,
    /// Show the backend, server version and applied migrations.
    Status,
}

/// Runs a `db` subcommand. Opening the store applies pending migrations either way.
pub async fn run(command: DbCommand, config: &Config) -> Result<()> {
    let store = Store::connect(config.database.configured_url(), &config.data_dir).await?;
    let applied = store.applied_migrations().await?;
    match command {
        DbCommand::Migrate => println!(
            "{}: schema at migration {} ({} applied)",
            store.backend().name(),
            applied.last().copied().unwrap_or(0),
            applied.len()
        ),
        DbCommand::Status => {
            println!("backend:    {}", store.backend().name());
            println!("server:     {}", store.server_version().await?);
            match config.database.configured_url() {
                Some(url) => println!("database:   {}", store::redact_url(url)),
                None => println!(
                    "database:   {}",
                    config.data_dir.join("rlfc.sqlite").display()
                ),
            }
            println!("migrations: {applied:?}");
        }
    }
    store.close().await;
    Ok(())
}
