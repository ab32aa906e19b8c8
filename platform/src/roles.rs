//! The two process roles of a scaled-out deployment:
//!
//! - [`serve`]: auto-entry and matchmaking beside the web UI, API and spectating that
//!   the caller starts. It forms matches, locks their fees and puts one job per match
//!   on the shared queue.
//! - [`work`]: claims match jobs, plays them (generation and judging), settles or
//!   refunds them and acknowledges the job; on a model worker, also trains the agents
//!   whose policy is due.
//!
//! Any number of each run against one database, one Redis and one chain. Every
//! process serves `/health` (which `rlfc health` asks) and `/metrics` (Prometheus) on
//! its ops address, sweeps expired leases (refunding the matches of processes that
//! died and resending unconfirmed chain transactions), and stops gracefully once its
//! stop watch turns true: a server stops forming matches and finishes its requests; a
//! worker stops claiming, plays its matches to the end within
//! `arena.shutdown_grace_secs`, and hands back whatever is still unfinished.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::bus::Bus;
use crate::config::PlatformConfig;
use crate::jobs::{MatchQueue, QueueDepth};
use crate::match_worker::MatchWorker;
use crate::matchmaker::Matchmaker;
use crate::metrics::{MeteredEngine, MeteredJudge, Metrics};
use crate::payments::Reclaim;
use crate::platform::{PlatformError, Result, setup};
use crate::play::log_report;
use crate::{BaseModels, Platform};

/// The start of the web server over a platform: its task once it listens.
pub type StartWeb<'a> = Pin<Box<dyn Future<Output = Result<JoinHandle<()>>> + 'a>>;

/// What `serve` runs with (the command line's choices).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address of `/health` and `/metrics` (port 0 picks a free one).
    pub ops_bind: String,
    /// The name recorded as the holder of the matches it forms (default
    /// `serve-HOST-PID`).
    pub id: Option<String>,
    /// Form matches only in these Spaces (slugs; empty: all).
    pub spaces: Vec<String>,
    /// Stop forming matches after this many (the server keeps serving).
    pub max_matches: Option<usize>,
}

/// What `work` runs with (the command line's choices).
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Address of `/health` and `/metrics` (port 0 picks a free one).
    pub ops_bind: String,
    /// The queue consumer and lease-holder name (default `worker-HOST-PID`).
    pub id: Option<String>,
    /// Play with the orchestration test policy, each engine step taking this long,
    /// instead of the models (for testing and benchmarking the platform; never
    /// trains). At most 10 s.
    pub test_policy: Option<Duration>,
    /// Run training jobs on this worker (model workers only).
    pub training: bool,
}

/// The longest test-policy step a worker accepts.
pub const MAX_TEST_POLICY_STEP: Duration = Duration::from_secs(10);

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

/// An error and its causes on one line, `a: b: c`.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
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
                let text = format!("{what}: {}", causes(&e));
                tracing::error!(error = %text, "pass failed; retrying");
                self.update(|h| h.last_error = Some(text));
                None
            }
        }
    }

    async fn refresh_queue(&self, queue: &MatchQueue) -> Result<QueueDepth> {
        let depth = queue.depth().await.map_err(setup("read the queue depth"))?;
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
            .map_err(setup(format!("bind --ops-bind {bind}")))?;
        let addr = listener
            .local_addr()
            .map_err(setup(format!("bind --ops-bind {bind}")))?
            .to_string();
        let app = Router::new()
            .route("/health", get(health_endpoint))
            .route("/metrics", get(metrics_endpoint))
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

async fn health_endpoint(State(ops): State<Ops>) -> impl IntoResponse {
    let mut h = ops.health.lock().expect("health lock").clone();
    h.uptime_secs = ops.started.elapsed().as_secs();
    let code = if h.status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(h))
}

async fn metrics_endpoint(State(ops): State<Ops>) -> impl IntoResponse {
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

/// Both roles share the database, the chain and the job queue only through Redis.
fn require_shared<'a>(config: &'a PlatformConfig, role: &str) -> Result<&'a str> {
    config
        .redis
        .configured_url()
        .ok_or_else(|| PlatformError::Setup {
            what: format!("rlfc {role} needs redis.url (REDIS_URL or RLFC_REDIS_URL)"),
            source: "servers and workers share the match-job queue and the event bus \
                     through Redis. For one process with everything in it, run `rlfc demo`"
                .into(),
        })
}

/// The platform and the job queue of a role, both on the shared Redis.
async fn connect(config: &PlatformConfig, role: &str) -> Result<(Platform, MatchQueue)> {
    let url = require_shared(config, role)?;
    let bus = Bus::connect(Some(url), &config.redis.namespace)
        .await
        .map_err(setup("connect the event bus (redis.url)"))?;
    let platform = Platform::connect(config, bus).await?;
    let queue = MatchQueue::redis(
        url,
        &config.redis.namespace,
        Duration::from_secs(config.redis.claim_timeout_secs),
    )
    .await
    .map_err(setup("open the match-job queue (redis.url)"))?;
    Ok((platform, queue))
}

/// One lease sweep: refunds the matches whose holder stopped renewing, sends what
/// the database settled or refunded but the chain has not confirmed.
async fn sweep(platform: &Platform, config: &PlatformConfig, id: &str, ops: &Ops) -> Result<()> {
    let lease_ms = config.arena.lease_secs as i64 * 1000;
    let done = platform
        .payments
        .reconcile(&Reclaim::ExpiredLeases {
            by: id,
            now_ms: store::now_ms(),
            grace_ms: 2 * lease_ms,
        })
        .await
        .map_err(setup("lease sweep"))?;
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

/// The serve role: auto-entry and matchmaking until `stop` turns true. `start_web`
/// starts the web UI, API and spectating over the platform (bound before the ops
/// endpoint, so `/health` never answers "ok" while the API port still refuses
/// connections) and returns its task, which ends once the stop watch turns true and
/// its requests are done.
pub async fn serve<W>(
    config: &PlatformConfig,
    opts: ServeOptions,
    stop: watch::Receiver<bool>,
    start_web: W,
) -> Result<()>
where
    W: for<'a> FnOnce(&'a Platform, watch::Receiver<bool>) -> StartWeb<'a>,
{
    let id = opts.id.unwrap_or_else(|| format!("serve-{}", host_pid()));
    let (platform, queue) = connect(config, "serve").await?;
    let spaces = if opts.spaces.is_empty() {
        platform.spaces.clone()
    } else {
        let mut picked = Vec::new();
        for slug in &opts.spaces {
            picked.push(platform.space(slug)?.clone());
        }
        picked
    };
    let metrics = Metrics::new("serve", &id);
    let ops = Ops::new("serve", &id, metrics.clone());
    let web = start_web(&platform, stop.clone()).await?;
    let ops_addr = ops.serve(&opts.ops_bind, stop.clone()).await?;
    let mut matchmaker = Matchmaker::new(
        platform.store.clone(),
        platform.payments.clone(),
        platform.bus.clone(),
        queue.clone(),
        spaces,
        Platform::runner_config(config),
        id.clone(),
    )
    .with_base_models(platform.base_models.clone());
    matchmaker.limit_new_matches(opts.max_matches);
    tracing::info!(%id, ops = %format!("http://{ops_addr}"),
        spaces = matchmaker.spaces().len(), "server up: serving and matchmaking");
    let sweep_every = Duration::from_secs(config.arena.sweep_secs);
    let mut last_sweep = Instant::now() - sweep_every;
    let mut formed_total = 0usize;
    let mut stop_rx = stop.clone();
    while !*stop_rx.borrow() {
        // One whole pass at a time: a stop signal never cuts a match in half-formed.
        let pass = async {
            matchmaker.auto_enter().await.map_err(setup("auto-entry"))?;
            let depth = ops.refresh_queue(&queue).await?;
            let room = config
                .arena
                .max_queued_matches
                .saturating_sub(depth.waiting as usize);
            let formed = if room > 0 {
                matchmaker
                    .matchmake(room)
                    .await
                    .map_err(setup("matchmaking"))?
            } else {
                Vec::new()
            };
            Ok(formed)
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

/// The worker role: claims match jobs, plays, settles, acknowledges and trains when
/// due, until `stop` turns true; then drains as the module says.
pub async fn work(
    config: &PlatformConfig,
    opts: WorkerOptions,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    if let Some(step_time) = opts.test_policy
        && step_time > MAX_TEST_POLICY_STEP
    {
        return Err(PlatformError::Setup {
            what: format!(
                "--test-policy-step-ms {}: accepts 0 to {}",
                step_time.as_millis(),
                MAX_TEST_POLICY_STEP.as_millis()
            ),
            source: "a test-policy step stands in for one decode step".into(),
        });
    }
    let id = opts.id.unwrap_or_else(|| format!("worker-{}", host_pid()));
    let (platform, queue) = connect(config, "worker").await?;
    let metrics = Metrics::new("worker", &id);
    let ops = Ops::new("worker", &id, metrics.clone());
    let ops_addr = ops.serve(&opts.ops_bind, stop.clone()).await?;
    let (engine, judge, models): (
        Box<dyn arena::engine::Engine>,
        Box<dyn arena::judging::RoundJudge>,
        Option<BaseModels>,
    ) = match opts.test_policy {
        Some(step_time) => {
            let engine = if step_time.is_zero() {
                arena::engine::InstantEngine::new()
            } else {
                arena::engine::InstantEngine::paced(step_time)
            };
            (
                Box::new(engine),
                Box::new(arena::judging::RulesOnlyJudge),
                None,
            )
        }
        None => {
            let models = BaseModels::load(config)?;
            let (engine, judge) = platform.model_engine_and_judge(&models)?;
            (engine, judge, Some(models))
        }
    };
    let mut worker = MatchWorker::new(
        platform.store.clone(),
        platform.payments.clone(),
        platform.bus.clone(),
        queue.clone(),
        Box::new(MeteredEngine::new(engine, &metrics)),
        Box::new(MeteredJudge::new(judge, &metrics)),
        platform.spaces.clone(),
        Platform::runner_config(config),
        id.clone(),
    )
    .with_adapters(platform.adapters.clone())
    .with_base_models(platform.base_models.clone());
    let renewer = worker.spawn_lease_renewer();
    let training = match (&models, opts.training) {
        (Some(models), true) => Some(tokio::spawn(
            crate::learning::scheduler::train_due_agents_forever(platform.trainer(models)?),
        )),
        _ => None,
    };
    tracing::info!(%id, ops = %format!("http://{ops_addr}"),
        policy = if opts.test_policy.is_some() { "test" } else { "models" },
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
                worker.claim(block).await.map_err(setup("claim match jobs")),
            );
        }
        ops.pass(
            "renew",
            worker.renew_leases().await.map_err(setup("renew leases")),
        );
        let outcomes = if worker.live_matches() == 0 {
            Vec::new()
        } else {
            tokio::task::block_in_place(|| worker.tick())
        };
        if let Some(reports) = ops.pass(
            "settle",
            worker
                .finish(outcomes)
                .await
                .map_err(setup("settle matches")),
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
