//! Test fixtures shared by the tests of every crate and by the benchmarks that start
//! real processes:
//!
//! - [`db`]: a migrated throwaway database, a SQLite file or a PostgreSQL database of
//!   its own that is dropped afterwards;
//! - [`fixtures`]: a small played match, and queued entries, written through the
//!   store's public API;
//! - [`redis`]: the test Redis server and a key namespace per test, deleted when
//!   dropped;
//! - [`ports`]: loopback ports handed to child processes, chosen outside the kernel's
//!   ephemeral range and reserved across test processes, so no other test and no
//!   outgoing connection can take one between the choice and the child's bind;
//! - [`hardhat`]: a Hardhat dev node on such a port, killed when dropped;
//! - [`llama`]: llama.cpp's `llama-server` over a GGUF file, for the endpoint judge;
//! - [`payments`]: the web layer's payments straight through the ledger, with no
//!   chain (a deposit there is money nobody paid in);
//! - [`in_ci`] and [`unavailable`]: outside CI a missing tool skips a test with a
//!   message, under `CI=true` it fails it.

pub mod db;
pub mod fixtures;
pub mod hardhat;
pub mod llama;
pub mod payments;
pub mod ports;
pub mod redis;

/// True when running under CI (`CI=true` or `CI=1`).
pub fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// Skips (returns `None`) outside CI, panics under CI.
pub fn unavailable<T>(reason: &str) -> Option<T> {
    if in_ci() {
        panic!("CI=true and {reason}");
    }
    eprintln!("SKIPPED (not in CI): {reason}");
    None
}
