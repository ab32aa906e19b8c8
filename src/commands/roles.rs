//! The two process roles of a scaled-out deployment, and their health check:
//!
//! - `rlfc serve`: the API, the web UI, spectating, auto-entry and matchmaking. It
//!   forms matches, locks their fees and puts one job per match on the shared queue.
//! - `rlfc worker`: claims match jobs, plays them (generation and judging), settles or
//!   refunds them and acknowledges the job; on a model worker, also trains the agents
//!   whose policy is due.
//! - `rlfc health`: asks a process's health endpoint and exits 0 when it is up.
//!
//! Any number of each run against one database, one Redis and one chain. Every
//! process serves `/health` and `/metrics` (Prometheus) on its ops address, sweeps
//! expired leases (refunding the matches of processes that died and resending
//! unconfirmed chain transactions), and stops gracefully on SIGTERM or Ctrl-C: a
//! server stops forming matches and finishes its requests; a worker stops claiming,
//! plays its matches to the end within `arena.shutdown_grace_secs`, and hands back
//! whatever is still unfinished.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use platform::bus::Bus;
use platform::jobs::MatchQueue;
use platform::match_worker::MatchWorker;
use platform::matchmaker::Matchmaker;
use platform::metrics::{MeteredEngine, MeteredJudge, Metrics};
use platform::payments::Reclaim;
use serde::Serialize;
use tokio::sync::watch;

use crate::config::Config;
use platform::play::log_report;
use platform::{BaseModels, Platform};

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

/// What `/health` reports.
#[derive(Debug, Clone, Serialize)]
struct Health {
    role: &'static str,
    id: String,
    /// `ok`, or `draining` once a stop signal arrived.
    status: &'static str,
    uptime_secs: u64,
    matches_in_flight: i64,
    queue_waiting: i64,
    queue_pending: i64,
    /// The last error of the main loop, if the latest pass failed.
    last_error: Option<String>,
}

#[derive(Clone)]
struct Ops {
    health: Arc<Mutex<Health>>,
    metrics: Metrics,
    started: Instant,
}

impl Ops {
    fn new(role: &'static str, id: &str, metrics: Metrics) -> Ops {
        Ops {
            health: Arc::new(Mutex::new(Health {
                role,
                id: id.to_string(),
                status: "ok",
                uptime_secs: 0,
                matches_in_flight: 0,
                queue_waiting: 0,
                queue_pending: 0,
                last_error: None,
            })),
            metrics,
            started: Instant::now(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut Health)) {
        f(&mut self.health.lock().expect("health lock"));
    }

    /// Records the outcome of one pass of the main loop.
    fn pass<T>(&self, what: &str, result: Result<T>) -> Option<T> {
        match result {
            Ok(v) => {
                self.update(|h| h.last_error = None);
                Some(v)
            }
            Err(e) => {
                let text = format!("{what}: {e:#}");
                tracing::error!(error = %text, "pass failed; retrying");
                self.update(|h| h.last_error = Some(text));
                None
            }
        }
    }

    async fn refresh_queue(&self, queue: &MatchQueue) -> Result<platform::jobs::QueueDepth> {
        let depth = queue.depth().await.context("read the queue depth")?;
        self.metrics.queue_waiting.set(depth.waiting as i64);
        self.metrics.queue_pending.set(depth.pending as i64);
        self.update(|h| {
            h.queue_waiting = depth.waiting as i64;
            h.queue_pending = depth.pending as i64;
        });
        Ok(depth)
    }

    fn set_in_flight(&self, n: usize) {
        self.metrics.matches_in_flight.set(n as i64);
        self.update(|h| h.matches_in_flight = n as i64);
    }

    /// Serves `/health` and `/metrics` on `bind`; returns the bound address.
    async fn serve(&self, bind: &str, mut stop: watch::Receiver<bool>) -> Result<String> {
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("bind --ops-bind {bind}"))?;
        let addr = listener.local_addr()?.to_string();
        let app = Router::new()
            .route("/health", get(health))
            .route("/metrics", get(metrics))
            .with_state(self.clone());
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
                // Let a last scrape or health probe see the drain.
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::error!(error = %e, "ops endpoint stopped");
            }
        });
        Ok(addr)
    }
}

async fn health(State(ops): State<Ops>) -> impl IntoResponse {
    let mut h = ops.health.lock().expect("health lock").clone();
    h.uptime_secs = ops.started.elapsed().as_secs();
    let code = if h.status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(h))
}

async fn metrics(State(ops): State<Ops>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ops.metrics.render(),
    )
}

/// `HOST-PID`, for default process names.
fn host_pid() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!("{host}-{}", std::process::id())
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

/// Both roles share the database, the chain and the job queue only through Redis.
fn require_shared<'a>(config: &'a Config, role: &str) -> Result<&'a str> {
    match config.redis.configured_url() {
        Some(url) => Ok(url),
        None => bail!(
            "rlfc {role} needs redis.url (REDIS_URL or RLFC_REDIS_URL): servers and workers \
             share the match-job queue and the event bus through Redis. For one process \
             with everything in it, run `rlfc demo`"
        ),
    }
}

async fn open_queue(config: &Config, url: &str) -> Result<MatchQueue> {
    MatchQueue::redis(
        url,
        &config.redis.namespace,
        Duration::from_secs(config.redis.claim_timeout_secs),
    )
    .await
    .context("open the match-job queue (redis.url)")
}

/// One lease sweep: refunds the matches whose holder stopped renewing, sends what
/// the database settled or refunded but the chain has not confirmed.
async fn sweep(platform: &Platform, config: &Config, id: &str, ops: &Ops) -> Result<()> {
    let lease_ms = config.arena.lease_secs as i64 * 1000;
    let done = platform
        .payments
        .reconcile(&Reclaim::ExpiredLeases {
            by: id,
            now_ms: store::now_ms(),
            grace_ms: 2 * lease_ms,
        })
        .await
        .context("lease sweep")?;
    if !done.failed.is_empty() {
        tracing::error!(failed = ?done.failed, "lease sweep left these for the next sweep");
    }
    if !done.refunded.is_empty()
        || !done.settlements_pushed.is_empty()
        || !done.refunds_pushed.is_empty()
    {
        tracing::warn!(refunded = ?done.refunded, settlements_sent = ?done.settlements_pushed,
            refunds_sent = ?done.refunds_pushed, "lease sweep finished what stopped processes left");
    }
    ops.metrics.observe_reconciled(&done);
    Ok(())
}

/// `rlfc serve`: the API, UI and spectating, auto-entry and matchmaking.
pub async fn serve(config: &Config, args: ServeArgs) -> Result<()> {
    let platform_config = config.platform();
    let url = require_shared(config, "serve")?;
    let id = args.id.unwrap_or_else(|| format!("serve-{}", host_pid()));
    let stop = stop_signal()?;
    let bus = Bus::connect(Some(url), &config.redis.namespace)
        .await
        .context("connect the event bus (redis.url)")?;
    let platform = Platform::connect(&platform_config, bus).await?;
    let queue = open_queue(config, url).await?;
    let spaces = if args.spaces.is_empty() {
        platform.spaces.clone()
    } else {
        let mut picked = Vec::new();
        for slug in &args.spaces {
            picked.push(platform.space(slug)?.clone());
        }
        picked
    };
    let metrics = Metrics::new("serve", &id);
    let ops = Ops::new("serve", &id, metrics.clone());
    // The web listener is bound first, so `/health` never answers "ok" while the API
    // port still refuses connections.
    let web = {
        let mut stop = stop.clone();
        crate::commands::web::spawn_server_until(&platform, config, args.dev_login, async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await?
    };
    let ops_addr = ops.serve(&args.ops_bind, stop.clone()).await?;
    let mut matchmaker = Matchmaker::new(
        platform.store.clone(),
        platform.payments.clone(),
        platform.bus.clone(),
        queue.clone(),
        spaces,
        Platform::runner_config(&platform_config),
        id.clone(),
    );
    matchmaker.limit_new_matches(args.max_matches);
    tracing::info!(%id, ops = %format!("http://{ops_addr}"), web = %config.web.bind,
        spaces = matchmaker.spaces().len(), "server up: serving and matchmaking");
    let sweep_every = Duration::from_secs(config.arena.sweep_secs);
    let mut last_sweep = Instant::now() - sweep_every;
    let mut formed_total = 0usize;
    let mut stop_rx = stop.clone();
    while !*stop_rx.borrow() {
        // One whole pass at a time: a stop signal never cuts a match in half-formed.
        let pass = async {
            matchmaker.auto_enter().await.context("auto-entry")?;
            let depth = ops.refresh_queue(&queue).await?;
            let room = config
                .arena
                .max_queued_matches
                .saturating_sub(depth.waiting as usize);
            let formed = if room > 0 {
                matchmaker.matchmake(room).await.context("matchmaking")?
            } else {
                Vec::new()
            };
            anyhow::Ok(formed)
        };
        let mut busy = false;
        if let Some(formed) = ops.pass("serve", pass.await) {
            metrics.matches_formed.inc_by(formed.len() as u64);
            formed_total += formed.len();
            busy = !formed.is_empty();
        }
        if last_sweep.elapsed() >= sweep_every {
            last_sweep = Instant::now();
            ops.pass("sweep", sweep(&platform, config, &id, &ops).await);
        }
        // Straight on while matches form; otherwise wait for entries to queue up.
        let pause = if busy {
            Duration::ZERO
        } else {
            Duration::from_millis(250)
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop_rx.changed() => {}
        }
    }
    ops.update(|h| h.status = "draining");
    tracing::info!(
        formed = formed_total,
        "server stopping: no more matchmaking; finishing requests"
    );
    if tokio::time::timeout(Duration::from_secs(30), web)
        .await
        .is_err()
    {
        tracing::warn!("requests still open after 30 s; stopping anyway");
    }
    platform.bus.flush().await.ok();
    tracing::info!("server stopped");
    Ok(())
}

/// `rlfc worker`: claims match jobs, plays, settles, acknowledges; trains when due.
pub async fn worker(config: &Config, args: WorkerArgs) -> Result<()> {
    let platform_config = config.platform();
    let url = require_shared(config, "worker")?;
    if args.test_policy_step_ms > 10_000 {
        bail!(
            "--test-policy-step-ms {}: accepts 0 to 10000",
            args.test_policy_step_ms
        );
    }
    let id = args.id.unwrap_or_else(|| format!("worker-{}", host_pid()));
    let stop = stop_signal()?;
    let bus = Bus::connect(Some(url), &config.redis.namespace)
        .await
        .context("connect the event bus (redis.url)")?;
    let platform = Platform::connect(&platform_config, bus).await?;
    let queue = open_queue(config, url).await?;
    let metrics = Metrics::new("worker", &id);
    let ops = Ops::new("worker", &id, metrics.clone());
    let ops_addr = ops.serve(&args.ops_bind, stop.clone()).await?;
    let (engine, judge, models): (
        Box<dyn arena::engine::Engine>,
        Box<dyn arena::judging::RoundJudge>,
        Option<BaseModels>,
    ) = if args.test_policy {
        let engine = if args.test_policy_step_ms == 0 {
            arena::engine::InstantEngine::new()
        } else {
            arena::engine::InstantEngine::paced(Duration::from_millis(args.test_policy_step_ms))
        };
        (
            Box::new(engine),
            Box::new(arena::judging::RulesOnlyJudge),
            None,
        )
    } else {
        let models = BaseModels::load(&platform_config)?;
        let (engine, judge) = platform.model_engine_and_judge(&models)?;
        (engine, judge, Some(models))
    };
    let mut worker = MatchWorker::new(
        platform.store.clone(),
        platform.payments.clone(),
        platform.bus.clone(),
        queue.clone(),
        Box::new(MeteredEngine::new(engine, &metrics)),
        Box::new(MeteredJudge::new(judge, &metrics)),
        platform.spaces.clone(),
        Platform::runner_config(&platform_config),
        id.clone(),
    )
    .with_adapters(platform.adapters.clone());
    let renewer = worker.spawn_lease_renewer();
    let training = match (&models, args.no_training) {
        (Some(models), false) => Some(tokio::spawn(
            platform::learning::scheduler::train_due_agents_forever(platform.trainer(models)?),
        )),
        _ => None,
    };
    tracing::info!(%id, ops = %format!("http://{ops_addr}"),
        policy = if args.test_policy { "test" } else { "models" },
        training = training.is_some(), "worker up: claiming match jobs");
    let sweep_every = Duration::from_secs(config.arena.sweep_secs);
    let grace = Duration::from_secs(config.arena.shutdown_grace_secs);
    let mut last_sweep = Instant::now() - sweep_every;
    let mut last_depth = Instant::now() - Duration::from_secs(1);
    let mut draining_since: Option<Instant> = None;
    let mut finished = 0usize;
    loop {
        if draining_since.is_none() && *stop.borrow() {
            draining_since = Some(Instant::now());
            ops.update(|h| h.status = "draining");
            if let Some(t) = &training {
                t.abort();
            }
            tracing::info!(
                live = worker.live_matches(),
                grace_secs = grace.as_secs(),
                "worker stopping: no more claims; finishing the matches in play"
            );
        }
        if let Some(since) = draining_since {
            if worker.live_matches() == 0 {
                break;
            }
            if since.elapsed() >= grace {
                match worker.hand_back_all().await {
                    Ok(ids) => tracing::warn!(matches = ?ids,
                        "grace period over: handed the unfinished matches back to the queue"),
                    Err(e) => tracing::error!(error = %e,
                        "handing matches back failed; the lease sweep will refund them"),
                }
                break;
            }
        } else {
            // Wait for work only when idle; otherwise just take what is queued.
            let block = if worker.live_matches() == 0 {
                Duration::from_millis(500)
            } else {
                Duration::ZERO
            };
            ops.pass(
                "claim",
                worker.claim(block).await.context("claim match jobs"),
            );
        }
        ops.pass("renew", worker.renew_leases().await.context("renew leases"));
        let outcomes = if worker.live_matches() == 0 {
            Vec::new()
        } else {
            tokio::task::block_in_place(|| worker.tick())
        };
        if let Some(reports) = ops.pass(
            "settle",
            worker.finish(outcomes).await.context("settle matches"),
        ) {
            for report in &reports {
                log_report(report);
                metrics.observe_report(report);
            }
            finished += reports.len();
        }
        ops.set_in_flight(worker.live_matches());
        if last_depth.elapsed() >= Duration::from_secs(1) {
            last_depth = Instant::now();
            ops.pass("queue depth", ops.refresh_queue(&queue).await);
        }
        if draining_since.is_none() && last_sweep.elapsed() >= sweep_every {
            last_sweep = Instant::now();
            ops.pass("sweep", sweep(&platform, config, &id, &ops).await);
        }
    }
    renewer.abort();
    ops.set_in_flight(0);
    platform.bus.flush().await.ok();
    tracing::info!(finished, "worker stopped");
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
