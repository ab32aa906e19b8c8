//! Test fixtures for the endpoint judge: llama.cpp's `llama-server`, built by
//! `scripts/build-llama-server.sh` into `~/.cache/rlfc/llama-server/<version>/`, started
//! on 127.0.0.1 on a reserved port ([`crate::ports`]) over a GGUF file and killed when dropped (or on demand,
//! to test a server that dies mid-round).
//!
//! The binary is `$RLFC_LLAMA_SERVER` if set, else the cached build; when neither
//! exists the fixture builds it with the script (minutes, once per machine). Outside CI
//! a failed build skips the test with a message; under `CI=true` it fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The llama-cpp-python release whose vendored llama.cpp the server is built from.
pub const LLAMA_CPP_PYTHON_VERSION: &str = "0.3.36";
/// The model name the fixture's server answers to.
pub const MODEL_ALIAS: &str = "smollm2-135m-instruct";

use crate::unavailable;

/// The cached build's path.
pub fn cached_binary() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    let root = std::env::var_os("RLFC_LLAMA_SERVER_CACHE")
        .map_or_else(|| home.join(".cache/rlfc/llama-server"), PathBuf::from);
    root.join(LLAMA_CPP_PYTHON_VERSION).join("llama-server")
}

/// The `llama-server` binary: `$RLFC_LLAMA_SERVER`, the cached build, or a fresh build
/// by `scripts/build-llama-server.sh`.
pub fn llama_server() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RLFC_LLAMA_SERVER") {
        return Some(PathBuf::from(p));
    }
    let cached = cached_binary();
    if cached.exists() {
        return Some(cached);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-llama-server.sh");
    eprintln!(
        "building llama-server with {} (once per machine)",
        script.display()
    );
    let built = Command::new("bash").arg(&script).status();
    match built {
        Ok(s) if s.success() && cached.exists() => Some(cached),
        Ok(s) => unavailable(&format!("building llama-server failed ({s})")),
        Err(e) => unavailable(&format!("cannot run {}: {e}", script.display())),
    }
}

/// Whether `GET /health` on the port answers 200 (a plain HTTP/1.0 request, so the
/// fixture needs no HTTP client and works inside or outside an async runtime).
fn healthy(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.ends_with(b"200")
}

/// A running `llama-server`.
pub struct LlamaServer {
    child: Option<Child>,
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub url: String,
}

impl LlamaServer {
    /// Starts `llama-server` over `gguf` with `parallel` slots and waits until it is
    /// healthy (up to two minutes); `None` (or a panic under CI) when it cannot.
    pub fn start(gguf: &Path, parallel: usize) -> Option<LlamaServer> {
        let bin = llama_server()?;
        let port = match crate::ports::reserve() {
            Ok(p) => p,
            Err(e) => return unavailable(&format!("no port for llama-server: {e}")),
        };
        let ctx = 2048 * parallel.max(1);
        let child = Command::new(&bin)
            .args(["--model", &gguf.display().to_string()])
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--alias", MODEL_ALIAS])
            .args(["--ctx-size", &ctx.to_string()])
            .args(["--parallel", &parallel.max(1).to_string()])
            .args(["--threads", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => return unavailable(&format!("cannot start {}: {e}", bin.display())),
        };
        let server = LlamaServer {
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
        };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(120) {
            if healthy(port) {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        unavailable(&format!(
            "llama-server at {} never became healthy",
            server.url
        ))
    }

    /// Kills the server now (a server that dies mid-round).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        self.kill();
    }
}
