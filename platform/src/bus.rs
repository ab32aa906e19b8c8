//! The event bus: every match event goes out to spectators, and each live match's
//! history is kept so a spectator who joins late gets a snapshot first.
//!
//! Two backends behind the one [`Bus`] type. In-process (the default): a tokio
//! broadcast plus a per-match history, where subscribing and taking the snapshot
//! happen under one lock. Redis (`redis.url` set, many processes): one Redis Stream
//! per match is both the history and the sequence authority, and a feed stream of
//! every event is read by each process into its own broadcast (see `bus/streams.rs`).
//!
//! Either way a snapshot ends exactly where the live stream begins: live events
//! with `seq` below the snapshot's end are dropped by [`Spectator`], so there is no
//! gap and no duplicate. A subscriber that falls more than [`SUBSCRIBER_BUFFER`]
//! events behind is dropped by its broadcast (it sees `Lagged`) rather than slowing
//! the publisher or anyone else. Publishing never waits on the network.
//!
//! Subscribers share each event: the broadcast carries a [`LiveEvent`], a reference
//! to one event whose JSON text is made once, so ten thousand spectators of a match
//! cost one clone of a pointer each, not a copy and a serialization each.

mod streams;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::redis_setup::BadSetting;
use arena::events::{EventKind, MatchEvent};

/// How many events a slow subscriber may fall behind before it is cut off.
pub const SUBSCRIBER_BUFFER: usize = 4096;

/// One published event as every subscriber shares it: cloning it clones a pointer,
/// and its JSON text (what a websocket sends) is made once, by the first reader
/// that asks for it, then shared by all.
#[derive(Clone)]
pub struct LiveEvent(Arc<Shared>);

struct Shared {
    event: MatchEvent,
    json: OnceLock<Bytes>,
}

impl LiveEvent {
    /// Shares `event`.
    pub(crate) fn new(event: MatchEvent) -> LiveEvent {
        LiveEvent(Arc::new(Shared {
            event,
            json: OnceLock::new(),
        }))
    }

    /// The event.
    #[cfg(test)]
    pub(crate) fn event(&self) -> &MatchEvent {
        &self.0.event
    }

    /// The event as JSON text (UTF-8), serialized on the first call only.
    pub fn json(&self) -> &Bytes {
        self.0.json.get_or_init(|| {
            Bytes::from(serde_json::to_vec(&self.0.event).expect("events serialize"))
        })
    }
}

impl std::ops::Deref for LiveEvent {
    type Target = MatchEvent;

    fn deref(&self) -> &MatchEvent {
        &self.0.event
    }
}

impl From<MatchEvent> for LiveEvent {
    fn from(event: MatchEvent) -> LiveEvent {
        LiveEvent::new(event)
    }
}

impl std::fmt::Debug for LiveEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.event.fmt(f)
    }
}

impl PartialEq for LiveEvent {
    fn eq(&self, other: &LiveEvent) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.event == other.0.event
    }
}

#[derive(Default)]
struct History {
    /// Events of matches still running, for late joiners.
    history: HashMap<i64, Vec<LiveEvent>>,
    /// The next sequence number per live match.
    next_seq: HashMap<i64, u64>,
}

#[derive(Clone)]
enum Backend {
    Local(Arc<Mutex<History>>),
    Redis(Arc<streams::RedisBus>),
}

/// The bus. Cheap to clone; clones share one bus.
#[derive(Clone)]
pub struct Bus {
    /// This process's live events (in-process: published here; Redis: read from
    /// the feed).
    tx: broadcast::Sender<LiveEvent>,
    backend: Backend,
}

/// What the bus can fail with (only the Redis backend fails).
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A setting is out of range.
    #[error(transparent)]
    Invalid(#[from] BadSetting),
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The bus's publisher task is gone (the runtime is shutting down).
    #[error("the event bus publisher stopped")]
    Stopped,
}

/// The world publishes its events on the bus.
impl arena::events::EventSink for Bus {
    fn publish(&self, match_id: i64, kind: EventKind) {
        Bus::publish(self, match_id, kind);
    }
}

impl Default for Bus {
    fn default() -> Bus {
        Bus::new()
    }
}

impl Bus {
    /// An empty in-process bus.
    pub fn new() -> Bus {
        let (tx, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        Bus {
            tx,
            backend: Backend::Local(Arc::default()),
        }
    }

    /// A bus over the Redis at `url`, its keys under `namespace`: every `Bus` on
    /// the same Redis and namespace, in any process, sees the same events.
    pub(crate) async fn redis(url: &str, namespace: &str) -> Result<Bus, BusError> {
        let (tx, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        let redis = streams::RedisBus::open(url, namespace, tx.clone()).await?;
        Ok(Bus {
            tx,
            backend: Backend::Redis(Arc::new(redis)),
        })
    }

    /// The Redis bus when `redis_url` is set, else an in-process one.
    pub(crate) async fn connect(redis_url: Option<&str>, namespace: &str) -> Result<Bus, BusError> {
        match redis_url {
            Some(url) => Bus::redis(url, namespace).await,
            None => Ok(Bus::new()),
        }
    }

    /// Publishes one event of a match; it gets the match's next sequence number.
    /// Never blocks on the network: over Redis the event is queued for this
    /// process's publisher task, which stores events in the order published.
    pub fn publish(&self, match_id: i64, kind: EventKind) {
        match &self.backend {
            Backend::Local(history) => self.publish_local(history, match_id, kind),
            Backend::Redis(redis) => redis.publish(match_id, store::now_ms(), kind),
        }
    }

    fn publish_local(&self, history: &Mutex<History>, match_id: i64, kind: EventKind) {
        let mut inner = history.lock().expect("bus lock");
        let seq = inner.next_seq.entry(match_id).or_insert(0);
        let event = LiveEvent::new(MatchEvent {
            match_id,
            seq: *seq,
            at_ms: store::now_ms(),
            kind,
        });
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
        let _ = self.tx.send(event);
    }

    /// Every event from now on, of every match.
    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.tx.subscribe()
    }

    /// A snapshot of a live match so far plus the live stream after it. Live events
    /// with `seq` below the snapshot's end are duplicates that [`Spectator`] skips.
    /// A match that has ended (or never started) has an empty snapshot.
    pub async fn watch(&self, match_id: i64) -> Result<Spectator, BusError> {
        match &self.backend {
            Backend::Local(history) => {
                let inner = history.lock().expect("bus lock");
                let rx = self.tx.subscribe();
                let snapshot = inner.history.get(&match_id).cloned().unwrap_or_default();
                Ok(Spectator::new(match_id, snapshot, None, rx))
            }
            Backend::Redis(redis) => {
                // Subscribed before reading the history: an event stored after the
                // read is still ahead in this process's feed.
                let rx = self.tx.subscribe();
                let (snapshot, next_seq) = redis.history(match_id).await?;
                let snapshot = snapshot.into_iter().map(LiveEvent::new).collect();
                Ok(Spectator::new(match_id, snapshot, next_seq, rx))
            }
        }
    }

    /// Waits until every event published through this handle so far is stored
    /// (Redis; immediate in-process), e.g. before a worker exits.
    pub(crate) async fn flush(&self) -> Result<(), BusError> {
        match &self.backend {
            Backend::Local(_) => Ok(()),
            Backend::Redis(redis) => redis.flush().await,
        }
    }
}

/// One spectator of one match: the snapshot, then the live events in order.
pub struct Spectator {
    match_id: i64,
    next_seq: u64,
    /// Events before the live stream.
    pub snapshot: Vec<LiveEvent>,
    rx: broadcast::Receiver<LiveEvent>,
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
    /// `next_seq` defaults to just past the snapshot.
    fn new(
        match_id: i64,
        snapshot: Vec<LiveEvent>,
        next_seq: Option<u64>,
        rx: broadcast::Receiver<LiveEvent>,
    ) -> Spectator {
        let next_seq = next_seq.unwrap_or_else(|| snapshot.last().map_or(0, |e| e.seq + 1));
        Spectator {
            match_id,
            next_seq,
            snapshot,
            rx,
        }
    }

    /// The next live event of this match (skipping other matches and anything the
    /// snapshot already held).
    pub async fn next(&mut self) -> Result<LiveEvent, SpectatorError> {
        loop {
            match self.rx.recv().await {
                Ok(e) => {
                    if self.take(&e) {
                        return Ok(e);
                    }
                }
                Err(RecvError::Lagged(n)) => return Err(SpectatorError::Lagged(n)),
                Err(RecvError::Closed) => return Err(SpectatorError::Closed),
            }
        }
    }

    /// The next live event of this match if one is already waiting, without
    /// waiting: a spectator woken for one event takes the rest this way and sends
    /// them together.
    pub fn try_next(&mut self) -> Result<Option<LiveEvent>, SpectatorError> {
        loop {
            match self.rx.try_recv() {
                Ok(e) => {
                    if self.take(&e) {
                        return Ok(Some(e));
                    }
                }
                Err(TryRecvError::Empty) => return Ok(None),
                Err(TryRecvError::Lagged(n)) => return Err(SpectatorError::Lagged(n)),
                Err(TryRecvError::Closed) => return Err(SpectatorError::Closed),
            }
        }
    }

    /// Whether `e` is this match's next event (moving past it if so).
    fn take(&mut self, e: &MatchEvent) -> bool {
        if e.match_id == self.match_id && e.seq >= self.next_seq {
            self.next_seq = e.seq + 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod redis_tests;

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
        let mut late = bus.watch(7).await.unwrap();
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
            bus.watch(7).await.unwrap().snapshot.is_empty(),
            "history is dropped once the match ends"
        );
    }

    #[tokio::test]
    async fn waiting_events_are_taken_at_once_and_share_one_json_text() {
        let bus = Bus::new();
        let mut a = bus.watch(3).await.unwrap();
        let mut b = bus.watch(3).await.unwrap();
        assert_eq!(a.try_next().unwrap(), None);
        bus.publish(3, delta("x"));
        bus.publish(4, delta("another match"));
        bus.publish(3, delta("y"));
        let first = a.try_next().unwrap().unwrap();
        let same = b.next().await.unwrap();
        assert_eq!(first.seq, 0);
        assert_eq!(
            first.json().as_ptr(),
            same.json().as_ptr(),
            "every subscriber sends the one serialization"
        );
        let parsed: MatchEvent = serde_json::from_slice(first.json()).unwrap();
        assert_eq!(&parsed, first.event());
        assert_eq!(
            serde_json::to_string(first.event()).unwrap().as_bytes(),
            &first.json()[..]
        );
        assert_eq!(a.try_next().unwrap().map(|e| e.seq), Some(1));
        assert_eq!(a.try_next().unwrap(), None);
    }

    #[tokio::test]
    async fn a_spectator_taking_without_waiting_is_cut_off_too() {
        let bus = Bus::new();
        let mut slow = bus.watch(1).await.unwrap();
        for i in 0..(SUBSCRIBER_BUFFER + 10) {
            bus.publish(1, delta(&i.to_string()));
        }
        assert!(matches!(slow.try_next(), Err(SpectatorError::Lagged(_))));
    }

    #[tokio::test]
    async fn a_slow_spectator_is_cut_off_not_waited_for() {
        let bus = Bus::new();
        let mut slow = bus.watch(1).await.unwrap();
        for i in 0..(SUBSCRIBER_BUFFER + 10) {
            bus.publish(1, delta(&i.to_string()));
        }
        assert!(matches!(slow.next().await, Err(SpectatorError::Lagged(_))));
    }
}
