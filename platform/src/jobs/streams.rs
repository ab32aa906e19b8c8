//! The match-job queue on Redis Streams: one stream `{namespace}:jobs` with one
//! consumer group `workers`. Enqueue is `XADD`; a claim first takes over entries idle
//! in the group's pending list longer than the claim timeout (`XAUTOCLAIM`), then
//! reads new ones (`XREADGROUP ... >`, blocking on a connection of its own). An
//! acknowledged entry is also deleted (`XACK` + `XDEL` in one `MULTI`), so the
//! stream's length is exactly the jobs not yet done and `depth` is two counters.
//!
//! Each entry carries `match_id` and `prior`, the deliveries before this entry: a
//! hand-back re-adds the job with its count so far, which keeps
//! [`ClaimedJob::deliveries`] meaningful across hand-backs.

use std::sync::Mutex;
use std::time::Duration;

use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};
use redis::{AsyncConnectionConfig, Client, Script};

use super::{ClaimedJob, DeliveryId, MatchJob, QueueDepth, QueueError, check_timeout};
use crate::redis_setup::{check_namespace, open_client};

/// The consumer group every worker reads through.
const GROUP: &str = "workers";

/// Re-adds a job held by `ARGV[2]` (entry `ARGV[3]`) at the back of the stream with
/// `prior` deliveries, atomically with acknowledging the old entry.
const RELEASE: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
redis.call('XADD', KEYS[1], '*', 'match_id', ARGV[4], 'prior', ARGV[5])
return 1
";

/// Resets the idle time of entry `ARGV[3]` if consumer `ARGV[2]` still holds it.
/// `XCLAIM ... JUSTID` leaves the delivery count alone.
const TOUCH: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
";

/// The Redis queue.
pub(super) struct StreamQueue {
    client: Client,
    /// Every non-blocking command (reconnects by itself).
    conn: ConnectionManager,
    /// Connections for blocking reads, one per concurrent claim, reused.
    blocking: Mutex<Vec<MultiplexedConnection>>,
    stream: String,
    claim_timeout: Duration,
    release: Script,
    touch: Script,
}

impl StreamQueue {
    pub(super) async fn open(
        url: &str,
        namespace: &str,
        claim_timeout: Duration,
    ) -> Result<StreamQueue, QueueError> {
        check_namespace(namespace)?;
        check_timeout(claim_timeout)?;
        let client = open_client(url)?;
        let mut conn = crate::redis_setup::connection_manager(&client).await?;
        let stream = format!("{namespace}:jobs");
        // From id 0, so entries added before the group existed are still delivered.
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(e.into()),
        }
        Ok(StreamQueue {
            client,
            conn,
            blocking: Mutex::default(),
            stream,
            claim_timeout,
            release: Script::new(RELEASE),
            touch: Script::new(TOUCH),
        })
    }

    fn timeout_ms(&self) -> u64 {
        self.claim_timeout.as_millis() as u64
    }

    pub(super) async fn enqueue(&self, job: MatchJob) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        redis::cmd("XADD")
            .arg(&self.stream)
            .arg("*")
            .arg("match_id")
            .arg(job.match_id)
            .arg("prior")
            .arg(0)
            .query_async::<String>(&mut conn)
            .await?;
        Ok(())
    }

    pub(super) async fn claim(
        &self,
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> Result<Vec<ClaimedJob>, QueueError> {
        let mut out = self.reclaim(consumer, max).await?;
        if out.len() < max {
            // Never block when reclaimed jobs are already in hand.
            let block = if out.is_empty() {
                block
            } else {
                Duration::ZERO
            };
            let entries = self.read_new(consumer, max - out.len(), block).await?;
            for entry in entries {
                if let Some(job) = self.parse(entry, consumer, None).await? {
                    out.push(job);
                }
            }
        }
        Ok(out)
    }

    /// `XAUTOCLAIM` through the pending list until `max` are claimed or it is
    /// scanned to the end.
    async fn reclaim(&self, consumer: &str, max: usize) -> Result<Vec<ClaimedJob>, QueueError> {
        let mut conn = self.conn.clone();
        let mut out = Vec::new();
        let mut cursor = "0-0".to_string();
        // Each call scans at most 10 × COUNT entries; a handful covers any real list.
        for _ in 0..16 {
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&self.stream)
                .arg(GROUP)
                .arg(consumer)
                .arg(self.timeout_ms())
                .arg(&cursor)
                .arg("COUNT")
                .arg(max - out.len())
                .query_async(&mut conn)
                .await?;
            for entry in reply.claimed {
                let deliveries = self.times_delivered(&entry.id).await?;
                if let Some(job) = self.parse(entry, consumer, Some(deliveries)).await? {
                    out.push(job);
                }
            }
            cursor = reply.next_stream_id;
            if out.len() >= max || cursor == "0-0" {
                break;
            }
        }
        Ok(out)
    }

    /// How many times the group delivered entry `id` (`XPENDING` counts them).
    async fn times_delivered(&self, id: &str) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        let reply: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(id)
            .arg(id)
            .arg(1)
            .query_async(&mut conn)
            .await?;
        Ok(reply.ids.first().map_or(1, |p| p.times_delivered as u64))
    }

    /// `XREADGROUP ... >`: entries never delivered, blocking up to `block` when
    /// there are none (on a connection of its own, so nothing queues behind it).
    async fn read_new(
        &self,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<StreamId>, QueueError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count);
        let block_ms = block.as_millis() as u64;
        // BLOCK 0 would mean forever; no BLOCK means return at once.
        if block_ms > 0 {
            cmd.arg("BLOCK").arg(block_ms);
        }
        cmd.arg("STREAMS").arg(&self.stream).arg(">");
        let reply: Option<StreamReadReply> = if block_ms > 0 {
            let mut conn = self.blocking_connection(block).await?;
            let reply = cmd.query_async(&mut conn).await?;
            // Only a connection that finished its command goes back for reuse.
            self.blocking.lock().expect("connection pool").push(conn);
            reply
        } else {
            cmd.query_async(&mut self.conn.clone()).await?
        };
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .collect())
    }

    async fn blocking_connection(
        &self,
        block: Duration,
    ) -> Result<MultiplexedConnection, QueueError> {
        let pooled = self.blocking.lock().expect("connection pool").pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(5)))
                    .set_response_timeout(None);
                self.client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?
            }
        };
        conn.set_response_timeout(block + Duration::from_secs(5));
        Ok(conn)
    }

    /// Turns a stream entry into a claimed job. An entry without a valid `match_id`
    /// cannot be played by anyone: it is logged, acknowledged and deleted.
    async fn parse(
        &self,
        entry: StreamId,
        consumer: &str,
        delivered: Option<u64>,
    ) -> Result<Option<ClaimedJob>, QueueError> {
        let match_id: Option<i64> = entry.get("match_id");
        let prior: u64 = entry.get("prior").unwrap_or(0);
        let Some(match_id) = match_id else {
            tracing::error!(stream = %self.stream, id = %entry.id, "dropping a job entry without a match_id");
            self.ack_id(&entry.id).await?;
            return Ok(None);
        };
        Ok(Some(ClaimedJob {
            job: MatchJob { match_id },
            deliveries: prior + delivered.unwrap_or(1),
            consumer: consumer.to_string(),
            id: DeliveryId::Stream(entry.id),
        }))
    }

    fn entry_id(job: &ClaimedJob) -> Option<&str> {
        match &job.id {
            DeliveryId::Stream(id) => Some(id),
            DeliveryId::Local(_) => None,
        }
    }

    async fn ack_id(&self, id: &str) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .cmd("XACK")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(id)
            .ignore()
            .cmd("XDEL")
            .arg(&self.stream)
            .arg(id)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    pub(super) async fn ack(&self, job: &ClaimedJob) -> Result<(), QueueError> {
        match Self::entry_id(job) {
            Some(id) => self.ack_id(id).await,
            None => Ok(()),
        }
    }

    pub(super) async fn release(&self, job: &ClaimedJob) -> Result<bool, QueueError> {
        let Some(id) = Self::entry_id(job) else {
            return Ok(false);
        };
        let mut conn = self.conn.clone();
        let done: i64 = self
            .release
            .key(&self.stream)
            .arg(GROUP)
            .arg(&job.consumer)
            .arg(id)
            .arg(job.job.match_id)
            .arg(job.deliveries.saturating_sub(1))
            .invoke_async(&mut conn)
            .await?;
        Ok(done == 1)
    }

    pub(super) async fn touch(&self, job: &ClaimedJob) -> Result<bool, QueueError> {
        let Some(id) = Self::entry_id(job) else {
            return Ok(false);
        };
        let mut conn = self.conn.clone();
        let done: i64 = self
            .touch
            .key(&self.stream)
            .arg(GROUP)
            .arg(&job.consumer)
            .arg(id)
            .invoke_async(&mut conn)
            .await?;
        Ok(done == 1)
    }

    pub(super) async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let mut conn = self.conn.clone();
        let (len, pending): (u64, redis::streams::StreamPendingReply) = redis::pipe()
            .atomic()
            .cmd("XLEN")
            .arg(&self.stream)
            .cmd("XPENDING")
            .arg(&self.stream)
            .arg(GROUP)
            .query_async(&mut conn)
            .await?;
        let pending = pending.count() as u64;
        Ok(QueueDepth {
            waiting: len.saturating_sub(pending),
            pending,
        })
    }
}
