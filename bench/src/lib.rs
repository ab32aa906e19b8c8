//! Benchmarks, kept out of the product crates (issue 17); the `rlfc bench …` commands
//! are their command-line edge:
//!
//! - [`arena`]: what the arena costs on top of the models (orchestration alone, one
//!   match on the real models, eight at once against the decoder's ceiling);
//! - [`decode`]: prefill, single-stream and batched decode speed of the agents' runtime
//!   with per-sequence adapters, against stock candle;
//! - [`dpo`]: seconds per DPO step and peak memory of the trainer, in the TRL anchor's
//!   batch shape;
//! - [`spectate`]: many websocket spectators of one live match over real sockets
//!   against the real server, with delivered events per second and the delay from each
//!   event's emit timestamp to its receipt in the client;
//! - [`export`]: the streamed preference-dataset export over HTTP against `psql \copy`
//!   of the same rows from PostgreSQL, with the process's peak memory;
//! - [`scale`]: matches per second of a scaled-out deployment (servers and workers as
//!   separate processes on PostgreSQL, Redis and a Hardhat node) per worker count;
//! - [`learning`]: does training help? An agent learns a Space's hard rules over
//!   several DPO updates and then meets its frozen parent on held-out tasks;
//! - [`product_learning`]: the same question on the product's own path: matches
//!   against other agents, the judge panel, cross-agent pairs and the product's
//!   training policy, then the trained agent against its frozen parent per Space.
//!
//! This crate root holds what they share: the error type, the process's resource
//! figures (open-file limit, CPU time, peak memory, load average) and delay
//! percentiles. Each benchmark builds its own runtimes and server and returns figures
//! that serialize to JSON; nothing here asserts a speed.

pub mod arena;
pub mod decode;
pub mod dpo;
pub mod export;
pub mod learning;
pub mod product_learning;
pub mod products;
pub mod scale;
pub mod spectate;
pub mod spectators;

use serde::{Deserialize, Serialize};

/// Why a benchmark could not run or its counts did not add up.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The database failed.
    #[error("database: {0}")]
    Store(#[from] store::Error),
    /// A socket, file or process failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A websocket client failed.
    #[error("websocket client: {0}")]
    Socket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The HTTP client failed.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// An option is out of range.
    #[error("{field}: {reason}")]
    Invalid {
        /// The option.
        field: &'static str,
        /// What it accepts.
        reason: String,
    },
    /// The platform (its store, chain, Spaces, models or runner) failed.
    #[error(transparent)]
    Platform(#[from] platform::platform::PlatformError),
    /// A run finished but its results are inconsistent (rows or events missing).
    #[error("{0}")]
    Check(String),
}

impl BenchError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
        let what = what.into();
        move |source| BenchError::Io { what, source }
    }
}

/// A copy of `config` on a throwaway data directory (SQLite, the embedded chain),
/// removed when the returned directory is dropped.
pub(crate) fn scratch_config(
    config: &platform::PlatformConfig,
) -> Result<(tempfile::TempDir, platform::PlatformConfig), BenchError> {
    let dir = tempfile::tempdir().map_err(BenchError::io("temporary directory"))?;
    let mut scratch = config.clone();
    scratch.data_dir = dir.path().to_path_buf();
    scratch.database.url = String::new();
    scratch.chain = chain::ChainConfig::default();
    Ok((dir, scratch))
}

/// The soft limit on open files before and after [`raise_open_files`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OpenFiles {
    /// Soft `RLIMIT_NOFILE` found.
    pub before: u64,
    /// Soft `RLIMIT_NOFILE` now.
    pub after: u64,
}

/// Raises this process's `RLIMIT_NOFILE` soft limit to at least `want` (the hard limit
/// too when it is lower and the process may raise it). Each spectator costs two
/// descriptors here, its client socket and the server's.
pub fn raise_open_files(want: u64) -> Result<OpenFiles, BenchError> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(BenchError::io("getrlimit(RLIMIT_NOFILE)")(
            std::io::Error::last_os_error(),
        ));
    }
    let before = lim.rlim_cur;
    if before >= want {
        return Ok(OpenFiles {
            before,
            after: before,
        });
    }
    let raised = libc::rlimit {
        rlim_cur: want,
        rlim_max: lim.rlim_max.max(want),
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        let source = std::io::Error::last_os_error();
        return Err(BenchError::Io {
            what: format!(
                "raising RLIMIT_NOFILE from {before} (hard {}) to {want}; run as a user allowed to, or `ulimit -n {want}` first",
                lim.rlim_max
            ),
            source,
        });
    }
    Ok(OpenFiles {
        before,
        after: want,
    })
}

/// A line of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`), if the kernel has it.
pub(crate) fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resets the kernel's peak-RSS mark (`VmHWM`) to the current RSS, so the next
/// [`proc_status_kib`]`("VmHWM")` is the peak of what ran in between.
pub(crate) fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// CPU time this process has used so far, user and system together, seconds.
pub(crate) fn cpu_secs() -> Option<f64> {
    // SAFETY: an all-zero `rusage` is a valid value of the plain C struct, and
    // getrusage only writes the struct passed by pointer.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(usage.ru_utime) + secs(usage.ru_stime))
}

pub(crate) fn mib(kib: Option<u64>) -> Option<f64> {
    kib.map(|k| round2(k as f64 / 1024.0))
}

pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The 1-, 5- and 15-minute load averages, as `uptime` prints them.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// Delay percentiles, milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub samples: usize,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Percentiles {
    /// Percentiles of delays in microseconds (reorders `samples`).
    pub fn of_micros(samples: &mut [u32]) -> Percentiles {
        let n = samples.len();
        let mut at = |q: f64| -> f64 {
            if n == 0 {
                return 0.0;
            }
            let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            let (_, v, _) = samples.select_nth_unstable(i);
            round2(f64::from(*v) / 1000.0)
        };
        Percentiles {
            samples: n,
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let mut v: Vec<u32> = (1..=100).map(|ms| ms * 1000).rev().collect();
        let p = Percentiles::of_micros(&mut v);
        assert_eq!(
            (p.samples, p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms),
            (100, 50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!(Percentiles::of_micros(&mut []).samples, 0);
    }

    #[test]
    fn the_open_file_limit_only_goes_up() {
        let now = raise_open_files(0).unwrap();
        assert_eq!(now.before, now.after);
        assert!(now.before > 0);
    }
}
