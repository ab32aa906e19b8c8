//! `store`'s queries, each on both engines: SQLite, and PostgreSQL (skipped with a
//! message when unreachable outside CI, a failure under `CI=true`). One test binary,
//! so the fixtures crate is linked once.

mod adapters;
mod browse;
mod escrow;
mod export;
mod leases;
mod sessions;
mod votes;
