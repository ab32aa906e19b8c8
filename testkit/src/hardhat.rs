//! Test fixtures for every crate's integration tests that need a real EVM node:
//! finding Node.js and npm, installing `chain/node_modules` with `npm ci` when it is
//! missing, and a Hardhat dev node started on 127.0.0.1 on a reserved port
//! ([`crate::ports`]) and killed when dropped.
//!
//! Node is `$RLFC_NODE` if set, else `node` on `PATH`; npm is `$RLFC_NPM`, else `npm`.
//! Outside CI a missing tool skips the RPC half (with a message); under `CI=true` it
//! fails the test, so CI can never pass without running against Hardhat.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chain::{Chain, Rpc, dev};

/// Accounts the Hardhat node funds (the same dev accounts the embedded chain has).
pub const ACCOUNTS: usize = 10;

/// The `chain/` directory.
pub fn chain_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../chain"))
}

/// The Node.js binary, if it runs.
pub fn node() -> Option<PathBuf> {
    let node = std::env::var_os("RLFC_NODE").map_or_else(|| PathBuf::from("node"), PathBuf::from);
    let ok = Command::new(&node)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(node)
}

/// Makes sure `chain/node_modules` holds the pinned packages, running `npm ci` if not.
pub fn ensure_node_modules() -> Result<(), String> {
    let dir = chain_dir();
    let hardhat = dir.join("node_modules/hardhat/internal/cli/bootstrap.js");
    let solc = dir.join("node_modules/solc/index.js");
    let installed = || hardhat.exists() && solc.exists();
    if installed() {
        return Ok(());
    }
    // Test binaries (nextest runs each test in its own process) may get here at the
    // same time: one installs while the others wait on the lock, then find it done.
    let lock_path = std::env::temp_dir().join("rlfc-chain-npm-ci.lock");
    let lock =
        std::fs::File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
    if installed() {
        return Ok(());
    }
    let npm = std::env::var_os("RLFC_NPM").unwrap_or_else(|| "npm".into());
    let status = Command::new(&npm)
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .map_err(|e| format!("npm is not available ({e}) to install chain/node_modules"))?;
    if !status.success() {
        return Err(format!(
            "`npm ci` in {} failed with {status}",
            dir.display()
        ));
    }
    Ok(())
}

/// A running Hardhat node.
pub struct HardhatNode {
    child: Child,
    /// Its JSON-RPC URL.
    pub url: String,
    log: PathBuf,
    _logdir: tempfile::TempDir,
}

impl HardhatNode {
    /// Starts a node and waits until it answers, or explains why it could not.
    pub fn start() -> Result<Self, String> {
        let node = node().ok_or("node (Node.js) is not available; set RLFC_NODE or PATH")?;
        ensure_node_modules()?;
        let port = crate::ports::reserve().map_err(|e| format!("a port for hardhat: {e}"))?;
        let logdir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let log = logdir.path().join("hardhat.log");
        let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(node)
            .arg(chain_dir().join("node_modules/hardhat/internal/cli/bootstrap.js"))
            .args([
                "node",
                "--hostname",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .current_dir(chain_dir())
            .env("RLFC_DEV_KEYS", dev::dev_keys_env(ACCOUNTS))
            .env("HARDHAT_DISABLE_TELEMETRY_PROMPT", "true")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("could not start hardhat: {e}"))?;
        let mut me = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _logdir: logdir,
        };
        me.wait_ready()?;
        Ok(me)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(90);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "hardhat exited early ({status}):\n{}",
                    self.log_text()
                ));
            }
            let ready = rt.block_on(async {
                match Rpc::connect(
                    &self.url,
                    dev::dev_signers(1),
                    Some(31337),
                    Duration::from_secs(5),
                )
                .await
                {
                    Ok(rpc) => rpc.block_number().await.is_ok(),
                    Err(_) => false,
                }
            });
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "hardhat did not answer within 90 s:\n{}",
                    self.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// What the node printed so far (for failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A backend signing for every dev account.
    pub async fn rpc(&self) -> Rpc {
        Rpc::connect(
            &self.url,
            dev::dev_signers(ACCOUNTS),
            Some(31337),
            Duration::from_secs(30),
        )
        .await
        .expect("connect to hardhat")
    }
}

impl Drop for HardhatNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `node scripts/compile.js --check` in `dir`; `Ok(false)` means stale artifacts.
pub fn artifacts_match(node: &Path, dir: &Path) -> Result<bool, String> {
    let out = Command::new(node)
        .args(["scripts/compile.js", "--check"])
        .current_dir(dir)
        .output()
        .map_err(|e| e.to_string())?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(format!(
            "compile.js failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}
