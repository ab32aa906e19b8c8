//! Loopback ports for child processes (servers, workers, Hardhat, llama-server) that a
//! test or benchmark starts and then talks to.
//!
//! The usual trick, binding port 0 and closing the listener, hands out a port from the
//! kernel's ephemeral range. Between that choice and the child's own bind, the kernel
//! may give the same port to any outgoing connection (tests open many, to PostgreSQL,
//! Redis and Hardhat) or to another test doing the same trick, and the child then dies
//! with "Address already in use". [`reserve`] closes both holes:
//!
//! - ports come from a band just outside the ephemeral range
//!   (`/proc/sys/net/ipv4/ip_local_port_range`), which the kernel never hands to an
//!   outgoing connection or to a bind on port 0;
//! - each port is reserved with an exclusive lock on `$TMPDIR/rlfc-ports/<port>.lock`,
//!   held until this process exits, so no other process using this module (nextest
//!   runs each test in its own process) and no other call in this one picks it again;
//! - a port something already listens on is skipped.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::net::TcpListener;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Mutex;

/// The locks of the ports this process reserved, held until it exits.
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// How many ports the band outside the ephemeral range spans.
const BAND: u16 = 10_000;
/// Ports below this are left alone (well-known and registered services).
const LOWEST: u16 = 10_000;

/// The kernel's ephemeral range `(low, high)`, inclusive; Linux's default when the
/// file cannot be read.
pub fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// The band [`reserve`] draws from: the `BAND` ports below the ephemeral range, or
/// above it when there is no room below.
pub fn band() -> io::Result<Range<u16>> {
    let (low, high) = ephemeral_range();
    if low >= LOWEST + BAND {
        Ok(low - BAND..low)
    } else if high <= u16::MAX - BAND {
        Ok(high + 1..high + 1 + BAND)
    } else {
        Err(io::Error::other(format!(
            "no band of {BAND} ports outside the ephemeral range {low}-{high}"
        )))
    }
}

/// The folder of the reservation locks.
pub fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("rlfc-ports")
}

/// A loopback port nothing listens on, that no other caller of this function (in this
/// process or another) gets while this process runs, and that the kernel does not hand
/// out on its own.
pub fn reserve() -> io::Result<u16> {
    reserve_in(band()?)
}

fn reserve_in(band: Range<u16>) -> io::Result<u16> {
    let dir = lock_dir();
    std::fs::create_dir_all(&dir)?;
    let span = u32::from(band.end - band.start);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let start = (std::process::id().wrapping_mul(7919) ^ nanos) % span;
    for i in 0..span {
        let port = band.start + ((start + i) % span) as u16;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{port}.lock")))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => continue,
            Err(TryLockError::Error(e)) => return Err(e),
        }
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        HELD.lock().unwrap_or_else(|e| e.into_inner()).push(file);
        return Ok(port);
    }
    Err(io::Error::other(format!(
        "every port in {}-{} is in use or reserved",
        band.start,
        band.end - 1
    )))
}

/// [`reserve`], panicking with the reason (for tests).
pub fn port() -> u16 {
    reserve().unwrap_or_else(|e| panic!("reserve a loopback port: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_outside_the_ephemeral_range_and_locked() {
        let (low, high) = ephemeral_range();
        let ports: Vec<u16> = (0..50).map(|_| port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "a port was handed out twice");
        for p in &ports {
            assert!(*p < low || *p > high, "{p} is in the ephemeral range");
            // Another process opening the lock (a new open file description) cannot
            // take it while this one runs.
            let again = File::open(lock_dir().join(format!("{p}.lock"))).unwrap();
            assert!(
                matches!(again.try_lock(), Err(TryLockError::WouldBlock)),
                "{p} is not locked"
            );
            // Nothing listens yet: the child can bind it.
            TcpListener::bind(("127.0.0.1", *p)).unwrap();
        }
    }

    #[test]
    fn a_port_something_listens_on_is_skipped() {
        // A band of five free ports, this test listening on the first four: the fifth
        // is the answer. (Bands another test happens to use are passed over.)
        let band = band().unwrap();
        let free = |p: u16| {
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(lock_dir().join(format!("{p}.lock")))
                .unwrap();
            lock.try_lock().is_ok() && TcpListener::bind(("127.0.0.1", p)).is_ok()
        };
        std::fs::create_dir_all(lock_dir()).unwrap();
        let (base, taken) = (band.start..band.end - 5)
            .step_by(5)
            .find_map(|base| {
                let taken: Vec<TcpListener> = (base..base + 4)
                    .filter_map(|p| TcpListener::bind(("127.0.0.1", p)).ok())
                    .collect();
                (taken.len() == 4 && free(base + 4)).then_some((base, taken))
            })
            .unwrap();
        assert_eq!(reserve_in(base..base + 5).unwrap(), base + 4);
        // With every port of a band listened on or reserved, the error says so.
        let err = reserve_in(base..base + 5).unwrap_err().to_string();
        assert!(err.contains("in use or reserved"), "{err}");
        drop(taken);
    }
}
