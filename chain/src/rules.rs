//! What this client expects of the Arena contract it talks to: the version of its rules
//! and the default of its entrants' safety net. A leaf module: the configuration, the
//! errors and the contract client all read it.

/// The version of the Arena contract's rules this client speaks (`Arena.VERSION`).
pub const ARENA_VERSION: u64 = 2;

/// How long after its first lock, by default, an entrant may reclaim an unfinished
/// match's fees: one day.
pub(crate) const DEFAULT_RECLAIM_AFTER_SECS: u64 = 24 * 60 * 60;
