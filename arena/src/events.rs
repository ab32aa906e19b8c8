//! Match events: every state change of a match, in the order it happened. Spectators
//! and the UI consume them; each carries a per-match sequence number so a late joiner
//! can take a snapshot and then the live stream with no gap and no duplicate.

use serde::{Deserialize, Serialize};

/// One seat at a match, as announced when it is created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeatInfo {
    /// The entry.
    pub entry_id: i64,
    /// The agent.
    pub agent_id: i64,
    /// The agent version that plays.
    pub agent_version_id: i64,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A match was made from queued entries.
    MatchCreated {
        /// The Space's slug.
        space: String,
        /// The seats.
        seats: Vec<SeatInfo>,
        /// The match seed.
        seed: i64,
    },
    /// A round's task was published.
    RoundStarted {
        /// 0-based round.
        round: u32,
        /// The task text.
        task: String,
    },
    /// New text from one agent.
    TokenDelta {
        /// 0-based round.
        round: u32,
        /// The entry writing.
        entry_id: i64,
        /// The new text.
        text: String,
    },
    /// One agent finished its answer.
    ResponseComplete {
        /// 0-based round.
        round: u32,
        /// The entry.
        entry_id: i64,
        /// The whole answer.
        text: String,
        /// Generated tokens.
        tokens: u32,
        /// Why it stopped.
        finish: String,
    },
    /// The judges scored one answer.
    Scores {
        /// 0-based round.
        round: u32,
        /// The entry.
        entry_id: i64,
        /// The panel's combined score.
        combined: f64,
        /// Whether a hard rule failed.
        hard_failed: bool,
        /// Every judge's score.
        judges: Vec<judges::Score>,
    },
    /// Final places (1 = best; ties share).
    Ranking {
        /// (entry, place) pairs.
        places: Vec<(i64, usize)>,
    },
    /// The pot was paid out.
    Payouts {
        /// (entry, wei as text) pairs.
        payouts: Vec<(i64, String)>,
        /// Treasury share, wei as text.
        treasury: String,
    },
    /// Ratings moved.
    RatingChanges {
        /// (agent, mu before, mu after, sigma after).
        changes: Vec<(i64, f64, f64, f64)>,
    },
    /// The match settled; its result hash lets anyone replay it.
    MatchSettled {
        /// Hash of the result.
        result_hash: String,
    },
    /// The match failed and every entry was refunded.
    MatchRefunded {
        /// Why.
        reason: String,
    },
}

impl EventKind {
    /// Whether this event ends its match's stream.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            EventKind::MatchSettled { .. } | EventKind::MatchRefunded { .. }
        )
    }
}

/// What spectators are told when a match is refunded: user-facing text for the kind
/// of failure, never the internal error (which stays in the logs and the match row).
pub fn public_refund_reason(internal: &str) -> String {
    let r = internal.to_ascii_lowercase();
    let why = if r.starts_with("seat ") && r.contains("refused") || r.starts_with("agent ") {
        "an agent's settings could not be played (for example a meta-prompt too long for its model)"
    } else if r.starts_with("generation failed") {
        "the model failed while writing an answer"
    } else if r.starts_with("judging failed") {
        "the judges could not score a round"
    } else if r.starts_with("deadline passed") {
        "the match ran past its time limit"
    } else if r.starts_with("interrupted") || r.contains("stopped") || r.contains("shut") {
        "the server stopped before the match finished"
    } else if r.starts_with("settlement failed") || r.starts_with("locking the entry fees") {
        "the payment step could not be completed"
    } else if r.starts_with("space ") {
        "no match worker plays this Space right now"
    } else {
        "the match could not be completed"
    };
    format!("{why}; every entry fee is returned")
}

/// An event of one match with its place in that match's stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchEvent {
    /// The match.
    pub match_id: i64,
    /// 0, 1, 2… within the match.
    pub seq: u64,
    /// Milliseconds since the epoch.
    pub at_ms: i64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Where the world sends its events: the event bus in the platform, anything that
/// records them in a test. The world calls it from one system, in event order.
pub trait EventSink: Send + Sync + 'static {
    /// Publishes one event of `match_id`.
    fn publish(&self, match_id: i64, kind: EventKind);
}

#[cfg(test)]
mod tests {
    #[test]
    fn refund_reasons_for_spectators_hold_no_internals() {
        for (internal, expect) in [
            (
                "seat 2 refused: prompt of 10032 tokens does not fit the context of 2048",
                "settings",
            ),
            (
                "settlement failed: database error: error returned from database: deadlock detected",
                "payment",
            ),
            (
                "generation failed: CUDA_ERROR_OUT_OF_MEMORY at 0x7f3a",
                "model",
            ),
            ("the demo was stopped", "server stopped"),
            (
                "something odd: /var/lib/rlfc/secret.sqlite",
                "could not be completed",
            ),
        ] {
            let public = super::public_refund_reason(internal);
            assert!(public.contains(expect), "{internal} -> {public}");
            for leak in ["database", "CUDA", "tokens", "/var", "0x7f", "deadlock"] {
                assert!(!public.contains(leak), "{public} leaks {leak}");
            }
        }
    }
}
