//! What the end-to-end tests of the binary share: `rlfc` processes (serve, worker,
//! seed) on loopback with their logs, and the environment of a deployment on
//! PostgreSQL, Redis and a Hardhat node.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port for a child process (see [`testkit::ports`]).
pub fn free_port() -> u16 {
    testkit::ports::port()
}

/// One `rlfc` process, its output in a log file.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
    pub ops: String,
    pub web: Option<u16>,
}

impl Proc {
    pub fn spawn(name: &str, dir: &Path, env: &[(String, String)], args: &[String]) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let data = dir.join(name);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rlfc"));
        for (k, _) in std::env::vars() {
            if k.starts_with("RLFC_") || k == "DATABASE_URL" || k == "REDIS_URL" {
                cmd.env_remove(k);
            }
        }
        cmd.current_dir(dir)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("RLFC_DATA_DIR", &data)
            .env("NO_COLOR", "1")
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = cmd.spawn().expect("start rlfc");
        let ops = args
            .iter()
            .position(|a| a == "--ops-bind")
            .map(|i| format!("http://{}", args[i + 1]))
            .unwrap_or_default();
        Proc {
            name: name.to_string(),
            child,
            log,
            ops,
            web: None,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `/health` answers 200.
    pub async fn wait_healthy(&mut self, http: &reqwest::Client, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited early ({status}):\n{}",
                    self.name,
                    self.log_text()
                );
            }
            if let Ok(r) = http.get(format!("{}/health", self.ops)).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not healthy within {within:?}:\n{}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn stop(&mut self, within: Duration) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "{} exited with {status} after SIGTERM:\n{}",
                    self.name,
                    self.log_text()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running {within:?} after SIGTERM:\n{}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn ops_args(role: &str, ops: u16) -> Vec<String> {
    vec![
        role.to_string(),
        "--ops-bind".into(),
        format!("127.0.0.1:{ops}"),
    ]
}

pub fn server(name: &str, dir: &Path, env: &[(String, String)], extra: &[&str]) -> Proc {
    let (ops, web) = (free_port(), free_port());
    let mut env = env.to_vec();
    env.push(("RLFC_WEB_BIND".into(), format!("127.0.0.1:{web}")));
    let mut args = ops_args("serve", ops);
    args.extend(["--id".into(), name.into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut p = Proc::spawn(name, dir, &env, &args);
    p.web = Some(web);
    p
}

pub fn worker(name: &str, dir: &Path, env: &[(String, String)], extra: &[&str]) -> Proc {
    let mut args = ops_args("worker", free_port());
    args.extend(["--id".into(), name.into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    Proc::spawn(name, dir, env, &args)
}

/// The environment of `rlfc` processes in one deployment: the PostgreSQL database at
/// `db_url`, Redis at `redis` under `namespace` (claims time out after 5 s), the
/// Hardhat node at `node_url` with the Arena and ProofOfLearning contracts of
/// `deployment`, signed by dev account 0 (their admin and operator), the repository's
/// assets and the shared model cache.
pub fn deployment_env(
    db_url: &str,
    redis: &str,
    namespace: &str,
    node_url: &str,
    deployment: &chain::Deployment,
) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", db_url.to_string()),
        ("RLFC_REDIS_URL", redis.to_string()),
        ("RLFC_REDIS_NAMESPACE", namespace.to_string()),
        ("RLFC_REDIS_CLAIM_TIMEOUT_SECS", "5".into()),
        ("RLFC_CHAIN_BACKEND", "rpc".into()),
        ("RLFC_CHAIN_RPC_URL", node_url.to_string()),
        ("RLFC_CHAIN_CHAIN_ID", "31337".into()),
        ("RLFC_CHAIN_PRIVATE_KEY", chain::dev::dev_keys_env(1)),
        ("RLFC_CHAIN_RPC_DEV_SIGNERS", "true".into()),
        (
            "RLFC_CHAIN_ARENA_ADDRESS",
            format!("{:#x}", deployment.arena),
        ),
        (
            "RLFC_CHAIN_PROOF_OF_LEARNING_ADDRESS",
            format!("{:#x}", deployment.proof_of_learning),
        ),
        (
            "RLFC_ASSETS_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/assets").into(),
        ),
        (
            "RLFC_MODELS_DIR",
            models::default_models_dir().display().to_string(),
        ),
        ("RLFC_LOG_FILTER", "info,sqlx=warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// What a deployment test runs on: a fresh PostgreSQL database, a Redis namespace, a
/// Hardhat node and the contracts deployed there by dev account 0 (admin, operator
/// and treasury).
pub struct Services {
    pub db: testkit::db::TestDb,
    pub redis: String,
    pub namespace: testkit::redis::TestNamespace,
    pub node: testkit::hardhat::HardhatNode,
    pub contracts: chain::Contracts<chain::AnyChain>,
    pub db_url: String,
}

/// The services, or `None` (with a message) when one is missing outside CI; under
/// `CI=true` a missing one fails.
pub async fn services() -> Option<Services> {
    services_paid_in(None).await
}

/// As [`services`], with entry fees in a test token of `decimals` decimals (minted to
/// the ten dev accounts, 10,000 whole tokens' worth of base units at 18 decimals each)
/// when `Some`.
pub async fn services_paid_in(token_decimals: Option<u8>) -> Option<Services> {
    let db = testkit::db::TestDb::postgres().await?;
    let redis = testkit::redis::redis_url().await?;
    let namespace = testkit::redis::TestNamespace::new(&redis);
    let node = match tokio::task::spawn_blocking(testkit::hardhat::HardhatNode::start)
        .await
        .unwrap()
    {
        Ok(n) => n,
        Err(e) if !testkit::in_ci() => {
            eprintln!("skipping: no Hardhat node: {e}");
            return None;
        }
        Err(e) => panic!("CI=true and the Hardhat node could not start: {e}"),
    };
    let operator = chain::dev::dev_accounts(1)[0];
    let rpc = chain::AnyChain::Rpc(node.rpc().await);
    let asset = match token_decimals {
        None => chain::FeeAsset::Eth,
        Some(decimals) => {
            let holders = chain::dev::dev_accounts(10);
            let minted = chain::dev::DEV_BALANCE_WEI;
            let token =
                chain::Contracts::deploy_test_token(&rpc, operator, decimals, &holders, minted)
                    .await
                    .unwrap();
            chain::FeeAsset::Token(token)
        }
    };
    let terms = chain::ArenaTerms::operated_by(operator);
    let contracts = chain::Contracts::deploy_for(rpc, operator, terms, asset)
        .await
        .unwrap();
    let db_url = testkit::db::database_url_with_name(&testkit::db::postgres_admin_url(), &db.name);
    Some(Services {
        db,
        redis,
        namespace,
        node,
        contracts,
        db_url,
    })
}
