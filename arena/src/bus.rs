//! The in-process event bus: a broadcast of every match event, plus each live
//! match's history so a spectator who joins late gets a snapshot first.
//!
//! Subscribing and taking the snapshot happen under one lock, so the snapshot ends
//! exactly where the live stream begins: no gap, no duplicate. A subscriber that
//! falls too far behind is dropped by the broadcast (it sees `Lagged`) rather than
//! slowing the publisher or anyone else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::events::{EventKind, MatchEvent};

/// How many events a slow subscriber may fall behind before it is cut off.
pub const SUBSCRIBER_BUFFER: usize = 4096;

#[derive(Default)]
struct Inner {
    /// Events of matches still running, for late joiners.
    history: HashMap<i64, Vec<MatchEvent>>,
    /// The next sequence number per live match.
    next_seq: HashMap<i64, u64>,
}

/// The bus. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<MatchEvent>,
    inner: Arc<Mutex<Inner>>,
}

impl Default for Bus {
    fn default() -> Bus {
        Bus::new()
    }
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Bus {
        let (tx, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        Bus {
            tx,
            inner: Arc::default(),
        }
    }

    /// Publishes one event of a match, giving it the match's next sequence number.
    pub fn publish(&self, match_id: i64, kind: EventKind) -> MatchEvent {
        let mut inner = self.inner.lock().expect("bus lock");
        let seq = inner.next_seq.entry(match_id).or_insert(0);
        let event = MatchEvent {
            match_id,
            seq: *seq,
            at_ms: store::now_ms(),
            kind,
        };
        *seq += 1;
        if event.kind.is_final() {
            inner.history.remove(&match_id);
            inner.next_seq.remove(&match_id);
        } else {
            inner
                .history
                .entry(match_id)
                .or_default()
                .push(event.clone());
        }
        // No receiver is fine: nobody is watching.
        let _ = self.tx.send(event.clone());
        event
    }

    /// Every event from now on, of every match.
    pub fn subscribe(&self) -> broadcast::Receiver<MatchEvent> {
        self.tx.subscribe()
    }

    /// A snapshot of a live match so far plus the live stream after it, taken
    /// atomically. Live events with `seq` below the snapshot's end are duplicates the
    /// caller must skip; [`Spectator`] does that.
    pub fn watch(&self, match_id: i64) -> Spectator {
        let inner = self.inner.lock().expect("bus lock");
        let rx = self.tx.subscribe();
        let snapshot = inner.history.get(&match_id).cloned().unwrap_or_default();
        Spectator {
            match_id,
            next_seq: snapshot.len() as u64,
            snapshot,
            rx,
        }
    }
}

/// One spectator of one match: the snapshot, then the live events in order.
pub struct Spectator {
    match_id: i64,
    next_seq: u64,
    /// Events before the live stream.
    pub snapshot: Vec<MatchEvent>,
    rx: broadcast::Receiver<MatchEvent>,
}

/// Why a spectator stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SpectatorError {
    /// The spectator fell too far behind and was cut off.
    #[error("spectator fell behind by {0} events and was cut off")]
    Lagged(u64),
    /// The bus is gone.
    #[error("event bus closed")]
    Closed,
}

impl Spectator {
    /// The next live event of this match (skipping other matches and anything the
    /// snapshot already held).
    pub async fn next(&mut self) -> Result<MatchEvent, SpectatorError> {
        loop {
            match self.rx.recv().await {
                Ok(e) if e.match_id == self.match_id && e.seq >= self.next_seq => {
                    self.next_seq = e.seq + 1;
                    return Ok(e);
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    return Err(SpectatorError::Lagged(n));
                }
                Err(broadcast::error::RecvError::Closed) => return Err(SpectatorError::Closed),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(text: &str) -> EventKind {
        EventKind::TokenDelta {
            round: 0,
            entry_id: 1,
            text: text.into(),
        }
    }

    #[tokio::test]
    async fn a_late_joiner_sees_every_event_once_in_order() {
        let bus = Bus::new();
        for i in 0..5 {
            bus.publish(7, delta(&i.to_string()));
        }
        bus.publish(8, delta("other match"));
        let mut late = bus.watch(7);
        assert_eq!(late.snapshot.len(), 5);
        let publisher = {
            let bus = bus.clone();
            tokio::spawn(async move {
                for i in 5..20 {
                    bus.publish(7, delta(&i.to_string()));
                    tokio::task::yield_now().await;
                }
                bus.publish(
                    7,
                    EventKind::MatchSettled {
                        result_hash: "h".into(),
                    },
                );
            })
        };
        let mut seqs: Vec<u64> = late.snapshot.iter().map(|e| e.seq).collect();
        loop {
            let e = late.next().await.unwrap();
            seqs.push(e.seq);
            if e.kind.is_final() {
                break;
            }
        }
        publisher.await.unwrap();
        assert_eq!(seqs, (0..21).collect::<Vec<u64>>());
        assert!(
            bus.watch(7).snapshot.is_empty(),
            "history is dropped once the match ends"
        );
    }

    #[tokio::test]
    async fn a_slow_spectator_is_cut_off_not_waited_for() {
        let bus = Bus::new();
        let mut slow = bus.watch(1);
        for i in 0..(SUBSCRIBER_BUFFER + 10) {
            bus.publish(1, delta(&i.to_string()));
        }
        assert!(matches!(slow.next().await, Err(SpectatorError::Lagged(_))));
    }
}
