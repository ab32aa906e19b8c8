//! The bus over Redis Streams, for many API servers and match workers.
//!
//! Keys, under the namespace: `bus:match:{id}` is a stream of one match's events
//! (the history a late joiner reads with `XRANGE`), `bus:seq:{id}` a hash holding
//! the match's next sequence number, and `bus:feed` a stream of every event of
//! every match (capped near [`FEED_MAXLEN`]), which one task per process reads with
//! `XREAD BLOCK` into that process's broadcast.
//!
//! One Lua script stores an event: it takes the next sequence number from Redis and
//! appends the event to the match's stream and to the feed, atomically. Numbers are
//! therefore per match and gap-free whichever process publishes: when a worker dies
//! mid-match and another replays the match, spectators see the first attempt's
//! events, then the new attempt's from the next number on (it starts again with
//! `match_created`), then one final event. A match's keys expire [`FINISHED_TTL`]
//! after its final event (and [`LIVE_TTL`] after its last one, for abandoned ones).
//!
//! `publish` only queues the event on an unbounded channel; one task per bus drains
//! it in order and stores batches in one pipeline. A batch that fails is retried
//! until Redis takes it; each event carries its publisher's id and a counter that the
//! script checks, so a retried batch never stores an event twice.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use redis::{AsyncConnectionConfig, Client, Script};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::AbortHandle;

use super::{BusError, LiveEvent};
use crate::redis_setup::{check_namespace, open_client};
use arena::events::{EventKind, MatchEvent};

/// The feed keeps about this many recent events (a process that loses Redis for
/// longer than the feed takes to turn over misses events in its live stream).
pub const FEED_MAXLEN: usize = 100_000;
/// A match's keys live this long after its last event.
pub const LIVE_TTL: Duration = Duration::from_secs(24 * 3600);
/// A match's keys live this long after its final event.
pub const FINISHED_TTL: Duration = Duration::from_secs(600);
/// The most events stored in one pipeline.
const BATCH: usize = 256;
/// How long one `XREAD` of the feed blocks before it is re-issued.
const FEED_BLOCK: Duration = Duration::from_secs(2);

/// KEYS: match stream, seq hash, feed. ARGV: publisher, counter, match id, at_ms,
/// kind JSON, final (0/1), feed cap, live TTL s, finished TTL s. Returns the
/// sequence number, or -1 for an event this publisher already stored.
const STORE_EVENT: &str = r"
local n = tonumber(ARGV[2])
local last = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '-1')
if n <= last then return -1 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local seq = redis.call('HINCRBY', KEYS[2], 'next', 1) - 1
redis.call('XADD', KEYS[1], '*', 'seq', seq, 'at', ARGV[4], 'kind', ARGV[5])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*',
  'match', ARGV[3], 'seq', seq, 'at', ARGV[4], 'kind', ARGV[5])
local ttl = ARGV[8]
if ARGV[6] == '1' then ttl = ARGV[9] end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
return seq
";

/// Key names under one namespace.
#[derive(Clone)]
struct Keys {
    namespace: String,
}

impl Keys {
    fn events(&self, match_id: i64) -> String {
        format!("{}:bus:match:{match_id}", self.namespace)
    }

    fn seq(&self, match_id: i64) -> String {
        format!("{}:bus:seq:{match_id}", self.namespace)
    }

    fn feed(&self) -> String {
        format!("{}:bus:feed", self.namespace)
    }
}

/// An event waiting for the publisher task.
pub(super) struct Pending {
    match_id: i64,
    at_ms: i64,
    kind: EventKind,
}

#[cfg(test)]
impl Pending {
    pub(super) fn new(match_id: i64, at_ms: i64, kind: EventKind) -> Pending {
        Pending {
            match_id,
            at_ms,
            kind,
        }
    }
}

enum Outgoing {
    Event(Pending),
    /// Answered once every event queued before it is stored.
    Flush(oneshot::Sender<()>),
}

/// The Redis side of one [`super::Bus`].
pub(super) struct RedisBus {
    keys: Keys,
    conn: ConnectionManager,
    outbox: mpsc::UnboundedSender<Outgoing>,
    feed_reader: AbortHandle,
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        // The publisher task ends by itself once the outbox is drained.
        self.feed_reader.abort();
    }
}

impl RedisBus {
    /// Connects, and starts the publisher task and the feed reader, which sends
    /// every event stored from now on to `live`.
    pub(super) async fn open(
        url: &str,
        namespace: &str,
        live: broadcast::Sender<LiveEvent>,
    ) -> Result<RedisBus, BusError> {
        check_namespace(namespace)?;
        let client = open_client(url)?;
        let mut conn = crate::redis_setup::connection_manager(&client).await?;
        let keys = Keys {
            namespace: namespace.to_string(),
        };
        let script = Script::new(STORE_EVENT);
        redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(STORE_EVENT)
            .query_async::<String>(&mut conn)
            .await?;
        // The feed's newest entry now: the reader starts right after it.
        let newest: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(keys.feed())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await?;
        let start = newest
            .ids
            .first()
            .map_or_else(|| "0-0".to_string(), |e| e.id.clone());
        let (outbox, inbox) = mpsc::unbounded_channel();
        let publisher = Publisher {
            id: publisher_id(),
            counter: 0,
            keys: keys.clone(),
            conn: conn.clone(),
            script,
        };
        tokio::spawn(publisher.run(inbox));
        let feed_reader = tokio::spawn(read_feed(client, keys.feed(), start, live)).abort_handle();
        Ok(RedisBus {
            keys,
            conn,
            outbox,
            feed_reader,
        })
    }

    pub(super) fn publish(&self, match_id: i64, at_ms: i64, kind: EventKind) {
        let queued = self.outbox.send(Outgoing::Event(Pending {
            match_id,
            at_ms,
            kind,
        }));
        if queued.is_err() {
            tracing::error!(match_id, "event bus publisher stopped; event dropped");
        }
    }

    pub(super) async fn flush(&self) -> Result<(), BusError> {
        let (done, wait) = oneshot::channel();
        self.outbox
            .send(Outgoing::Flush(done))
            .map_err(|_| BusError::Stopped)?;
        wait.await.map_err(|_| BusError::Stopped)
    }

    /// Stores numbered events as one fixed publisher would, for tests of the
    /// script's duplicate check.
    #[cfg(test)]
    pub(super) async fn store_batch(&self, events: &[(u64, Pending)]) -> redis::RedisResult<()> {
        let mut publisher = Publisher {
            id: "test-publisher".into(),
            counter: 0,
            keys: self.keys.clone(),
            conn: self.conn.clone(),
            script: Script::new(STORE_EVENT),
        };
        publisher.store(events).await
    }

    /// A match's stored events, and the number after the last one. A match whose
    /// last event is final has ended: its snapshot is empty, as in-process.
    pub(super) async fn history(
        &self,
        match_id: i64,
    ) -> Result<(Vec<MatchEvent>, Option<u64>), BusError> {
        let mut conn = self.conn.clone();
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.keys.events(match_id))
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await?;
        let mut events: Vec<MatchEvent> = reply
            .ids
            .iter()
            .filter_map(|entry| parse_event(entry, Some(match_id)))
            .collect();
        let next_seq = events.last().map(|e| e.seq + 1);
        if events.last().is_some_and(|e| e.kind.is_final()) {
            events.clear();
        }
        Ok((events, next_seq))
    }
}

/// A publisher id unique to this bus handle: the process id, the clock and a
/// counter (two handles in one process differ).
fn publisher_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static HANDLES: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "p{}-{nanos}-{}",
        std::process::id(),
        HANDLES.fetch_add(1, Ordering::Relaxed)
    )
}

/// The task that stores queued events, in order.
struct Publisher {
    id: String,
    /// Numbers events in the order queued; the script drops a number it has seen.
    counter: u64,
    keys: Keys,
    conn: ConnectionManager,
    script: Script,
}

impl Publisher {
    async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<Outgoing>) {
        while let Some(first) = inbox.recv().await {
            let mut events = Vec::new();
            let mut flushes = Vec::new();
            let mut next = Some(first);
            while let Some(item) = next {
                match item {
                    Outgoing::Event(e) => {
                        self.counter += 1;
                        events.push((self.counter, e));
                    }
                    Outgoing::Flush(done) => flushes.push(done),
                }
                next = if events.len() < BATCH {
                    inbox.try_recv().ok()
                } else {
                    None
                };
            }
            self.store_until_done(&events).await;
            for done in flushes {
                let _ = done.send(());
            }
        }
    }

    /// Retries with backoff until Redis takes the batch (the counters make a retry
    /// of an event that was stored a no-op).
    async fn store_until_done(&mut self, events: &[(u64, Pending)]) {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.store(events).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, events = events.len(), "storing bus events failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    // Redis may have restarted and forgotten the script.
                    let _ = redis::cmd("SCRIPT")
                        .arg("LOAD")
                        .arg(STORE_EVENT)
                        .query_async::<String>(&mut self.conn)
                        .await;
                }
            }
        }
    }

    async fn store(&mut self, events: &[(u64, Pending)]) -> redis::RedisResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (n, e) in events {
            let kind = serde_json::to_string(&e.kind).expect("events serialize");
            pipe.cmd("EVALSHA")
                .arg(self.script.get_hash())
                .arg(3)
                .arg(self.keys.events(e.match_id))
                .arg(self.keys.seq(e.match_id))
                .arg(self.keys.feed())
                .arg(&self.id)
                .arg(*n)
                .arg(e.match_id)
                .arg(e.at_ms)
                .arg(kind)
                .arg(u8::from(e.kind.is_final()))
                .arg(FEED_MAXLEN)
                .arg(LIVE_TTL.as_secs())
                .arg(FINISHED_TTL.as_secs())
                .ignore();
        }
        pipe.query_async::<()>(&mut self.conn).await
    }
}

/// An event from a stream entry (`match` comes from the entry on the feed, from
/// the key on a match's own stream). A malformed entry is logged and skipped.
fn parse_event(entry: &StreamId, match_id: Option<i64>) -> Option<MatchEvent> {
    let parsed = (|| {
        let match_id = match_id.or_else(|| entry.get("match"))?;
        let seq: u64 = entry.get("seq")?;
        let at_ms: i64 = entry.get("at")?;
        let kind: String = entry.get("kind")?;
        let kind: EventKind = serde_json::from_str(&kind).ok()?;
        Some(MatchEvent {
            match_id,
            seq,
            at_ms,
            kind,
        })
    })();
    if parsed.is_none() {
        tracing::warn!(id = %entry.id, "skipping a malformed bus event");
    }
    parsed
}

/// Reads the feed from after `last_id` into `live`, for as long as the bus lives;
/// reconnects after errors and carries on from the last entry read.
async fn read_feed(
    client: Client,
    feed: String,
    mut last_id: String,
    live: broadcast::Sender<LiveEvent>,
) {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(FEED_BLOCK + Duration::from_secs(5)));
    let mut conn = None;
    let mut backoff = Duration::from_millis(50);
    loop {
        if conn.is_none() {
            match client
                .get_multiplexed_async_connection_with_config(&config)
                .await
            {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "bus feed: cannot connect to Redis; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        let reply: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(BATCH * 2)
            .arg("BLOCK")
            .arg(FEED_BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&feed)
            .arg(&last_id)
            .query_async(c)
            .await;
        match reply {
            Ok(reply) => {
                backoff = Duration::from_millis(50);
                for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                    // With nobody subscribed, parsing is wasted: a subscriber
                    // that joins later takes its snapshot after this entry.
                    if live.receiver_count() > 0
                        && let Some(event) = parse_event(&entry, None)
                    {
                        let _ = live.send(LiveEvent::new(event));
                    }
                    last_id = entry.id;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "bus feed: read failed; reconnecting");
                conn = None;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
