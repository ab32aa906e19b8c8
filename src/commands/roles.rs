//! `rlfc serve`, `rlfc worker` and `rlfc health`: their flags, and the one call each
//! makes into `platform::roles` (which says what the roles do). The binary adds the
//! stop signal (SIGTERM or Ctrl-C) and, for `serve`, the web server.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use platform::roles::{MAX_TEST_POLICY_STEP, ServeOptions, WorkerOptions};
use tokio::sync::watch;

use crate::config::Config;

/// `rlfc serve` flags.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address of this process's `/health` and `/metrics` (port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9090")]
    pub ops_bind: String,
    /// This server's name, recorded as the holder of the matches it forms (default
    /// `serve-HOST-PID`).
    #[arg(long)]
    pub id: Option<String>,
    /// Form matches only in these Spaces (slugs, comma-separated; default: all).
    #[arg(long, value_delimiter = ',', value_name = "SLUG,...")]
    pub spaces: Vec<String>,
    /// Stop forming matches after this many (the server keeps serving).
    #[arg(long, value_name = "N")]
    pub max_matches: Option<usize>,
    /// Offer the one-click dev login (embedded chain only: its wallets' keys are
    /// public).
    #[arg(long)]
    pub dev_login: bool,
}

/// `rlfc worker` flags.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Address of this process's `/health` and `/metrics` (port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9091")]
    pub ops_bind: String,
    /// This worker's name: its queue consumer and lease-holder name (default
    /// `worker-HOST-PID`). Two live workers must not share one.
    #[arg(long)]
    pub id: Option<String>,
    /// Play with the orchestration test policy (answers derived from the task, one
    /// word per step, and the rules-only judge) instead of the models: for testing and
    /// benchmarking the platform, never for real results. Does not train.
    #[arg(long)]
    pub test_policy: bool,
    /// With `--test-policy`: wall time of one engine step, in ms (0 to 10000), standing
    /// in for a model's decode step.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub test_policy_step_ms: u64,
    /// Do not run training jobs on this worker.
    #[arg(long)]
    pub no_training: bool,
}

/// `rlfc health` flags.
#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// The process's ops address (its `--ops-bind`), e.g. http://127.0.0.1:9091.
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    pub url: String,
}

/// A watch that turns true on SIGTERM or Ctrl-C.
fn stop_signal() -> Result<watch::Receiver<bool>> {
    let (tx, rx) = watch::channel(false);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("install the SIGTERM handler")?;
    tokio::spawn(async move {
        let which = tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        tracing::info!(signal = which, "stopping gracefully");
        tx.send_replace(true);
        // Keep the sender alive so receivers never see the channel close.
        std::future::pending::<()>().await;
    });
    Ok(rx)
}

/// `rlfc serve`: the API, UI and spectating, auto-entry and matchmaking.
pub async fn serve(config: &Config, args: ServeArgs) -> Result<()> {
    let opts = ServeOptions {
        ops_bind: args.ops_bind,
        id: args.id,
        spaces: args.spaces,
        max_matches: args.max_matches,
    };
    let dev_login = args.dev_login;
    let stop = stop_signal()?;
    platform::roles::serve(&config.platform(), opts, stop, |platform, stop| {
        crate::commands::web::start_web(platform, stop, config.clone(), dev_login)
    })
    .await?;
    Ok(())
}

/// `rlfc worker`: claims match jobs, plays, settles, acknowledges; trains when due.
pub async fn worker(config: &Config, args: WorkerArgs) -> Result<()> {
    let step = Duration::from_millis(args.test_policy_step_ms);
    if step > MAX_TEST_POLICY_STEP {
        bail!(
            "--test-policy-step-ms {}: accepts 0 to {}",
            args.test_policy_step_ms,
            MAX_TEST_POLICY_STEP.as_millis()
        );
    }
    let opts = WorkerOptions {
        ops_bind: args.ops_bind,
        id: args.id,
        test_policy: args.test_policy.then_some(step),
        training: !args.no_training,
    };
    platform::roles::work(&config.platform(), opts, stop_signal()?).await?;
    Ok(())
}

/// `rlfc health`: prints a process's health; `Ok(true)` when it is up and not
/// draining.
pub async fn health_check(args: &HealthArgs) -> Result<bool> {
    let base = args.url.trim_end_matches('/');
    let url = format!("{base}/health");
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    println!("{body}");
    Ok(status.is_success())
}
