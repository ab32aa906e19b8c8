//! The terminal spectator behind `rlfc watch MATCH_ID`: connects to a server's
//! `/ws/matches/{id}` with tokio-tungstenite and prints the match as it happens, each
//! agent's text streaming in as it is generated.

use std::io::Write;

use arena::events::{EventKind, MatchEvent};
use futures_util::StreamExt as _;
use tokio_tungstenite::tungstenite::Message;

/// Why watching stopped early.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The server URL is not http(s):// or ws(s)://.
    #[error("server URL must start with http://, https://, ws:// or wss://: {0}")]
    Url(String),
    /// The websocket failed.
    #[error("websocket: {0}")]
    Socket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The server sent something that is not a match event.
    #[error("bad event from server: {0}")]
    Decode(#[from] serde_json::Error),
    /// Printing failed.
    #[error("output: {0}")]
    Io(#[from] std::io::Error),
}

/// The websocket URL of match `match_id` on the server at `base` (http or ws form).
pub(crate) fn match_url(base: &str, match_id: i64) -> Result<String, WatchError> {
    let base = base.trim_end_matches('/');
    let ws = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if base.starts_with("ws://") || base.starts_with("wss://") {
        base.to_string()
    } else {
        return Err(WatchError::Url(base.to_string()));
    };
    Ok(format!("{ws}/ws/matches/{match_id}"))
}

/// Watches match `match_id` on the server at `url`, printing to stdout until it ends.
pub async fn run(url: &str, match_id: i64) -> Result<(), WatchError> {
    let mut out = std::io::stdout().lock();
    watch_into(url, match_id, &mut out).await.map(|_| ())
}

/// Watches a match, printing to `out`; returns the events received, in order.
pub async fn watch_into(
    url: &str,
    match_id: i64,
    out: &mut impl Write,
) -> Result<Vec<MatchEvent>, WatchError> {
    let (mut socket, _) = tokio_tungstenite::connect_async(match_url(url, match_id)?).await?;
    let mut events = Vec::new();
    let mut printer = Printer::default();
    while let Some(message) = socket.next().await {
        match message? {
            Message::Text(text) => {
                let event: MatchEvent = serde_json::from_str(text.as_str())?;
                printer.print(&event, out)?;
                let last = event.kind.is_final();
                events.push(event);
                if last {
                    break;
                }
            }
            Message::Close(frame) => {
                if let Some(f) = frame
                    && !f.reason.is_empty()
                {
                    writeln!(out, "\n[closed: {}]", f.reason)?;
                }
                break;
            }
            _ => {}
        }
    }
    out.flush()?;
    Ok(events)
}

/// Lays events out as text: token deltas run on from the same agent's line.
#[derive(Default)]
struct Printer {
    writing: Option<i64>,
}

impl Printer {
    fn print(&mut self, event: &MatchEvent, out: &mut impl Write) -> std::io::Result<()> {
        if let EventKind::TokenDelta { entry_id, text, .. } = &event.kind {
            if self.writing != Some(*entry_id) {
                write!(out, "\n[entry {entry_id}] ")?;
                self.writing = Some(*entry_id);
            }
            return write!(out, "{text}");
        }
        if self.writing.take().is_some() {
            writeln!(out)?;
        }
        writeln!(out, "{}", describe(&event.kind))
    }
}

/// One line describing an event other than a token delta.
pub(crate) fn describe(kind: &EventKind) -> String {
    match kind {
        EventKind::MatchCreated { space, seats, seed } => {
            format!("== match in {space}: {} seats, seed {seed}", seats.len())
        }
        EventKind::RoundStarted { round, task } => format!("== round {round}: {task}"),
        EventKind::TokenDelta { entry_id, text, .. } => format!("[entry {entry_id}] {text}"),
        EventKind::ResponseComplete {
            entry_id,
            tokens,
            finish,
            ..
        } => {
            format!("-- entry {entry_id} done: {tokens} tokens ({finish})")
        }
        EventKind::Scores {
            entry_id,
            combined,
            judges,
            ..
        } => {
            let each: Vec<String> = judges
                .iter()
                .map(|j| format!("{} {:.2}: {}", j.judge.name, j.score, j.rationale))
                .collect();
            format!(
                "-- entry {entry_id} scored {combined:.3} [{}]",
                each.join("; ")
            )
        }
        EventKind::Ranking { places } => {
            let p: Vec<String> = places
                .iter()
                .map(|(e, p)| format!("#{p} entry {e}"))
                .collect();
            format!("== ranking: {}", p.join(", "))
        }
        EventKind::Payouts { payouts, treasury } => {
            let p: Vec<String> = payouts
                .iter()
                .map(|(e, w)| format!("entry {e} {w} wei"))
                .collect();
            format!("== payouts: {} (treasury {treasury} wei)", p.join(", "))
        }
        EventKind::RatingChanges { changes } => {
            let c: Vec<String> = changes
                .iter()
                .map(|(a, before, after, sigma)| {
                    format!("agent {a} {before:.2}→{after:.2} (σ {sigma:.2})")
                })
                .collect();
            format!("== ratings: {}", c.join(", "))
        }
        EventKind::MatchSettled { result_hash } => format!("== settled, result {result_hash}"),
        EventKind::MatchRefunded { reason } => format!("== refunded: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_lines() {
        assert_eq!(
            match_url("http://h:1/", 5).unwrap(),
            "ws://h:1/ws/matches/5"
        );
        assert_eq!(match_url("https://h", 5).unwrap(), "wss://h/ws/matches/5");
        assert!(match_url("h:1", 5).is_err());
        let mut out = Vec::new();
        let mut p = Printer::default();
        for (seq, text) in ["Tea", " time"].iter().enumerate() {
            let e = MatchEvent {
                match_id: 1,
                seq: seq as u64,
                at_ms: 0,
                kind: EventKind::TokenDelta {
                    round: 0,
                    entry_id: 3,
                    text: text.to_string(),
                },
            };
            p.print(&e, &mut out).unwrap();
        }
        let e = MatchEvent {
            match_id: 1,
            seq: 2,
            at_ms: 0,
            kind: EventKind::MatchSettled {
                result_hash: "h".into(),
            },
        };
        p.print(&e, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\n[entry 3] Tea time\n== settled, result h\n"
        );
    }
}
