//! `rlfc bench scale`: matches per second of a scaled-out deployment against its
//! number of workers, on the test policy.
//!
//! For each worker count it builds a fresh deployment on this machine, as separate
//! processes of this binary: a scratch PostgreSQL database, a fresh Redis namespace, a
//! Hardhat node with the contracts deployed, the demo population (twelve agents
//! auto-entered in every Space, free and paid tiers), `--servers` API servers and N
//! workers on the test policy. After a warm-up it counts the matches closed (settled
//! or refunded) in a fixed window, samples the job queue's depth (a full queue means
//! the workers are the limit, an empty one that matchmaking is), then stops every
//! process with SIGTERM and drops the database.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use store::{Store, match_status};

use crate::BenchError;

type Result<T, E = BenchError> = std::result::Result<T, E>;

/// A run that went wrong: its message (with the process log's tail where one is).
fn fail(message: String) -> BenchError {
    BenchError::Check(message)
}

/// What `rlfc bench scale` measures.
#[derive(Debug, Clone)]
pub struct ScaleOptions {
    /// Worker counts to measure, one run each.
    pub workers: Vec<usize>,
    /// API servers (matchmakers) in every run.
    pub servers: usize,
    /// Seconds measured per run, after the warm-up.
    pub secs: u64,
    /// Seconds of warm-up per run.
    pub warmup_secs: u64,
    /// Wall time of one test-policy engine step, ms (0: answers are instant).
    pub step_ms: u64,
    /// Matches in play per worker at most.
    pub live_per_worker: usize,
    /// PostgreSQL URL of a role that may create the scratch databases.
    pub admin_url: String,
    /// The Redis to use (each run gets a namespace of its own, deleted afterwards).
    pub redis_url: String,
}

struct Proc {
    name: String,
    child: Child,
    log: std::path::PathBuf,
}

impl Proc {
    fn spawn(
        program: &Path,
        dir: &Path,
        name: &str,
        env: &[(String, String)],
        args: &[String],
    ) -> Result<Proc> {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)
            .map_err(BenchError::io(format!("create {}", log.display())))?;
        let mut cmd = Command::new(program);
        for (k, _) in std::env::vars() {
            if k.starts_with("RLFC_") || k == "DATABASE_URL" || k == "REDIS_URL" {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .current_dir(dir)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("RLFC_DATA_DIR", dir.join(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(BenchError::io("the log file"))?)
            .stderr(out)
            .spawn()
            .map_err(BenchError::io(format!("start {name}")))?;
        Ok(Proc {
            name: name.into(),
            child,
            log,
        })
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    fn wait_for_exit(&mut self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let exited = self.child.try_wait();
            if let Some(status) =
                exited.map_err(BenchError::io(format!("wait for {}", self.name)))?
            {
                if !status.success() {
                    return Err(fail(format!(
                        "{} exited with {status}:\n{}",
                        self.name,
                        self.tail()
                    )));
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        Err(fail(format!(
            "{} did not stop within {within:?}:\n{}",
            self.name,
            self.tail()
        )))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port for a child process, outside the kernel's ephemeral range and reserved
/// against other callers (see [`testkit::ports`]).
fn free_port() -> Result<u16> {
    testkit::ports::reserve().map_err(BenchError::io("reserve a loopback port"))
}

async fn closed(store: &Store) -> Result<usize> {
    let mut n = 0;
    for s in [match_status::SETTLED, match_status::REFUNDED] {
        n += store.matches_with_status(s).await?.len();
    }
    Ok(n)
}

async fn wait_healthy(http: &reqwest::Client, p: &mut Proc, ops: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let exited = p.child.try_wait();
        if let Some(status) = exited.map_err(BenchError::io(format!("wait for {}", p.name)))? {
            return Err(fail(format!(
                "{} exited early ({status}):\n{}",
                p.name,
                p.tail()
            )));
        }
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{ops}/health"))
            .send()
            .await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(fail(format!(
                "{} not healthy within 120 s:\n{}",
                p.name,
                p.tail()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn queue_waiting(http: &reqwest::Client, ops: u16) -> Option<f64> {
    let text = http
        .get(format!("http://127.0.0.1:{ops}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("rlfc_queue_waiting_jobs "))?
        .trim()
        .parse()
        .ok()
}

/// One run with `workers` workers.
async fn run_once(
    args: &ScaleOptions,
    workers: usize,
    program: &Path,
    assets: &Path,
) -> Result<serde_json::Value> {
    let dir = tempfile::tempdir().map_err(BenchError::io("temporary directory"))?;
    let name = format!("rlfc_bench_scale_{}_{workers}", std::process::id());
    let admin = Store::open_url(&args.admin_url).await?;
    admin
        .execute_admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    admin
        .execute_admin(&format!("CREATE DATABASE {name}"))
        .await?;
    let db_url = testkit::db::database_url_with_name(&args.admin_url, &name);
    let result = async {
        let store = Store::open_url(&db_url).await?;
        store.migrate().await?;
        let namespace = testkit::redis::TestNamespace::new(&args.redis_url);
        let node = tokio::task::spawn_blocking(testkit::hardhat::HardhatNode::start)
            .await
            .map_err(|e| fail(format!("start the Hardhat node: {e}")))?
            .map_err(|e| fail(format!("start the Hardhat node: {e}")))?;
        let operator = chain::dev::dev_accounts(1)[0];
        let contracts =
            chain::Contracts::deploy(chain::AnyChain::Rpc(node.rpc().await), operator, operator)
                .await
                .map_err(platform::platform::PlatformError::from)?;
        let d = contracts.deployment();
        let env: Vec<(String, String)> = [
            ("DATABASE_URL", db_url.clone()),
            ("RLFC_REDIS_URL", args.redis_url.clone()),
            ("RLFC_REDIS_NAMESPACE", namespace.name().to_string()),
            ("RLFC_CHAIN_BACKEND", "rpc".into()),
            ("RLFC_CHAIN_RPC_URL", node.url.clone()),
            ("RLFC_CHAIN_CHAIN_ID", "31337".into()),
            ("RLFC_CHAIN_PRIVATE_KEY", chain::dev::dev_keys_env(1)),
            ("RLFC_CHAIN_RPC_DEV_SIGNERS", "true".into()),
            ("RLFC_CHAIN_ARENA_ADDRESS", format!("{:#x}", d.arena)),
            (
                "RLFC_CHAIN_PROOF_OF_LEARNING_ADDRESS",
                format!("{:#x}", d.proof_of_learning),
            ),
            (
                "RLFC_ARENA_MAX_LIVE_MATCHES",
                args.live_per_worker.to_string(),
            ),
            ("RLFC_ARENA_MATCHMAKING_GAP", "50".into()),
            ("RLFC_ASSETS_DIR", assets.display().to_string()),
            ("RLFC_LOG_FILTER", "warn".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let mut seed = Proc::spawn(program, dir.path(), "seed", &env, &["seed-demo".into()])?;
        seed.wait_for_exit(Duration::from_secs(300))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let mut procs = Vec::new();
        let mut server_ops = Vec::new();
        for i in 0..args.servers {
            let (ops, web) = (free_port()?, free_port()?);
            let mut env = env.clone();
            env.push(("RLFC_WEB_BIND".into(), format!("127.0.0.1:{web}")));
            let a = vec![
                "serve".into(),
                "--ops-bind".into(),
                format!("127.0.0.1:{ops}"),
                "--id".into(),
                format!("s{i}"),
            ];
            procs.push((
                Proc::spawn(program, dir.path(), &format!("s{i}"), &env, &a)?,
                ops,
            ));
            server_ops.push(ops);
        }
        for i in 0..workers {
            let ops = free_port()?;
            let a = vec![
                "worker".into(),
                "--ops-bind".into(),
                format!("127.0.0.1:{ops}"),
                "--id".into(),
                format!("w{i}"),
                "--test-policy".into(),
                "--test-policy-step-ms".into(),
                args.step_ms.to_string(),
            ];
            procs.push((
                Proc::spawn(program, dir.path(), &format!("w{i}"), &env, &a)?,
                ops,
            ));
        }
        for (p, ops) in &mut procs {
            wait_healthy(&http, p, *ops).await?;
        }
        tokio::time::sleep(Duration::from_secs(args.warmup_secs)).await;
        let load_before = crate::load_average();
        let start_count = closed(&store).await?;
        let started = Instant::now();
        let mut depth_samples = Vec::new();
        while started.elapsed() < Duration::from_secs(args.secs) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut waiting = 0.0;
            for ops in &server_ops {
                waiting += queue_waiting(&http, *ops).await.unwrap_or(0.0);
            }
            depth_samples.push(waiting / server_ops.len().max(1) as f64);
        }
        let elapsed = started.elapsed().as_secs_f64();
        let matches = closed(&store).await? - start_count;
        let load_after = crate::load_average();
        for (p, _) in &mut procs {
            p.terminate();
        }
        for (p, _) in &mut procs {
            p.wait_for_exit(Duration::from_secs(90))?;
        }
        store.close().await;
        let mean_depth = depth_samples.iter().sum::<f64>() / depth_samples.len().max(1) as f64;
        Ok::<_, BenchError>(json!({
            "workers": workers,
            "servers": args.servers,
            "matches": matches,
            "secs": elapsed,
            "matches_per_sec": matches as f64 / elapsed,
            "mean_queue_waiting": mean_depth,
            "load_average_before": load_before,
            "load_average_after": load_after,
        }))
    }
    .await;
    admin
        .execute_admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    admin.close().await;
    result
}

/// Runs every worker count, each as a fresh deployment of `program` (this binary:
/// it must have the `seed-demo`, `serve` and `worker` commands) with the shipped
/// assets at `assets` (an absolute path: the processes run in scratch directories).
pub async fn run(args: &ScaleOptions, program: &Path, assets: &Path) -> Result<serde_json::Value> {
    if args.workers.is_empty() || args.workers.iter().any(|&n| n == 0 || n > 64) {
        return Err(BenchError::Invalid {
            field: "workers",
            reason: "each count must be 1 to 64".into(),
        });
    }
    if args.servers == 0 || args.servers > 16 {
        return Err(BenchError::Invalid {
            field: "servers",
            reason: format!("accepts 1 to 16, got {}", args.servers),
        });
    }
    if args.secs == 0 {
        return Err(BenchError::Invalid {
            field: "secs",
            reason: "must be at least 1".into(),
        });
    }
    let mut runs = Vec::new();
    for &n in &args.workers {
        let figures = run_once(args, n, program, assets)
            .await
            .map_err(|e| fail(format!("the run with {n} workers: {e}")))?;
        eprintln!(
            "{n} workers: {:.2} matches/s",
            figures["matches_per_sec"].as_f64().unwrap_or(0.0)
        );
        runs.push(figures);
    }
    Ok(json!({
        "benchmark": "scale",
        "policy": "test (instant answers, rules-only judge)",
        "step_ms": args.step_ms,
        "live_per_worker": args.live_per_worker,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "runs": runs,
    }))
}
