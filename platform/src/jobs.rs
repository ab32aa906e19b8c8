//! The match-job queue: matchmaking enqueues a `MatchJob` once a match is formed
//! (its row stored, its entries and fees locked); a worker claims it, plays it,
//! settles or refunds it, and only then acknowledges it. Jobs are never lost: a job
//! claimed by a worker that dies is handed to another worker once it has sat
//! unacknowledged (and untouched) longer than the claim timeout.
//!
//! Two backends with the same semantics: in-process (the single-process default and
//! the demo) and Redis Streams with one consumer group (`XADD`, `XREADGROUP`,
//! `XAUTOCLAIM`, `XACK`), for many workers on many machines.
//!
//! Delivery is at least once. A worker that is alive but slower than the claim
//! timeout loses its job to another worker unless it calls `MatchQueue::touch`
//! more often than the timeout; either way the match itself must settle exactly
//! once, which the store and the contract guarantee, not the queue.

mod local;
mod streams;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A match ready to be played.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct MatchJob {
    /// The stored match.
    pub match_id: i64,
}

/// Which backend delivered a job, and under what id.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DeliveryId {
    /// The in-process queue's counter.
    Local(u64),
    /// The Redis stream entry id (`1700000000000-0`).
    Stream(String),
}

/// A job as delivered to one worker; `ack` it once the match is settled or refunded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimedJob {
    /// The job.
    pub job: MatchJob,
    /// How many times this job has been delivered, this delivery included. Above 1 it
    /// was reclaimed from a worker that died or stalled; graceful hand-backs
    /// ([`MatchQueue::release`]) do not count.
    pub deliveries: u64,
    /// The consumer it was delivered to.
    pub consumer: String,
    id: DeliveryId,
}

/// How many jobs wait and how many are claimed but not yet acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct QueueDepth {
    /// Enqueued, never delivered (or handed back).
    pub waiting: u64,
    /// Delivered to a worker, not yet acknowledged.
    pub pending: u64,
}

/// What the queue can fail with.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A setting is out of range.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// What is accepted.
        reason: String,
    },
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl From<crate::redis_setup::BadSetting> for QueueError {
    fn from(e: crate::redis_setup::BadSetting) -> QueueError {
        QueueError::Invalid {
            field: e.field,
            reason: e.reason,
        }
    }
}

#[derive(Clone)]
enum Backend {
    Local(Arc<local::LocalQueue>),
    Redis(Arc<streams::StreamQueue>),
}

/// The queue. Cheap to clone; clones share one queue.
#[derive(Clone)]
pub struct MatchQueue {
    backend: Backend,
}

/// The claim timeout of [`MatchQueue::in_process`].
pub(crate) const DEFAULT_CLAIM_TIMEOUT: Duration = Duration::from_secs(60);

impl MatchQueue {
    /// An in-process queue with the default claim timeout.
    pub fn in_process() -> MatchQueue {
        MatchQueue::in_process_with_timeout(DEFAULT_CLAIM_TIMEOUT)
    }

    /// An in-process queue whose claimed jobs are reclaimable after `claim_timeout`.
    pub fn in_process_with_timeout(claim_timeout: Duration) -> MatchQueue {
        MatchQueue {
            backend: Backend::Local(Arc::new(local::LocalQueue::new(claim_timeout))),
        }
    }

    /// A queue on the Redis at `url`, its keys under `namespace` (the stream is
    /// `{namespace}:jobs`, the consumer group `workers`). Creates both if missing.
    pub(crate) async fn redis(
        url: &str,
        namespace: &str,
        claim_timeout: Duration,
    ) -> Result<MatchQueue, QueueError> {
        let queue = streams::StreamQueue::open(url, namespace, claim_timeout).await?;
        Ok(MatchQueue {
            backend: Backend::Redis(Arc::new(queue)),
        })
    }

    /// The Redis queue when `redis_url` is set, else an in-process one.
    #[cfg(test)]
    pub(crate) async fn connect(
        redis_url: Option<&str>,
        namespace: &str,
        claim_timeout: Duration,
    ) -> Result<MatchQueue, QueueError> {
        match redis_url {
            Some(url) => MatchQueue::redis(url, namespace, claim_timeout).await,
            None => {
                check_timeout(claim_timeout)?;
                Ok(MatchQueue::in_process_with_timeout(claim_timeout))
            }
        }
    }

    /// Adds a job at the back of the queue.
    pub(crate) async fn enqueue(&self, job: MatchJob) -> Result<(), QueueError> {
        match &self.backend {
            Backend::Local(q) => {
                q.enqueue(job);
                Ok(())
            }
            Backend::Redis(q) => q.enqueue(job).await,
        }
    }

    /// Up to `max` jobs for `consumer`: first jobs held by other consumers idle longer
    /// than the claim timeout (a dead worker's; XAUTOCLAIM), then new ones (XREADGROUP),
    /// waiting at most `block` when there are none.
    ///
    /// Cancelling a claim in flight may leave jobs that Redis already delivered
    /// pending under `consumer`; they are reclaimed after the timeout, never lost.
    pub(crate) async fn claim(
        &self,
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> Result<Vec<ClaimedJob>, QueueError> {
        if consumer.is_empty() || consumer.chars().any(char::is_whitespace) {
            return Err(QueueError::Invalid {
                field: "consumer",
                reason: format!("{consumer:?} must be non-empty and without spaces"),
            });
        }
        if max == 0 || max > 1000 {
            return Err(QueueError::Invalid {
                field: "max",
                reason: format!("{max}: accepts 1 to 1000"),
            });
        }
        match &self.backend {
            Backend::Local(q) => Ok(q.claim(consumer, max, block).await),
            Backend::Redis(q) => q.claim(consumer, max, block).await,
        }
    }

    /// Marks a job done. Call it once the match is settled or refunded. Acknowledging
    /// a job twice, or one reclaimed by another worker since, is harmless: the job is
    /// done whoever finished it.
    pub(crate) async fn ack(&self, job: &ClaimedJob) -> Result<(), QueueError> {
        match &self.backend {
            Backend::Local(q) => {
                q.ack(job);
                Ok(())
            }
            Backend::Redis(q) => q.ack(job).await,
        }
    }

    /// Hands a claimed job back for another worker now (graceful shutdown). It goes
    /// to the back of the queue and wakes a waiting worker. Returns `false` (and
    /// does nothing) when `job` is no longer held by its consumer: another worker
    /// reclaimed it, or it was acknowledged.
    pub(crate) async fn release(&self, job: &ClaimedJob) -> Result<bool, QueueError> {
        match &self.backend {
            Backend::Local(q) => Ok(q.release(job)),
            Backend::Redis(q) => q.release(job).await,
        }
    }

    /// Tells the queue that `job`'s worker is alive and still playing it, so it is
    /// not reclaimed for another claim timeout. Call it more often than the timeout
    /// during long matches. Returns `false` when the job is no longer held by its
    /// consumer (reclaimed by another worker, or acknowledged).
    pub(crate) async fn touch(&self, job: &ClaimedJob) -> Result<bool, QueueError> {
        match &self.backend {
            Backend::Local(q) => Ok(q.touch(job)),
            Backend::Redis(q) => q.touch(job).await,
        }
    }

    /// Waiting and pending (claimed, unacknowledged) counts, for metrics and health.
    pub async fn depth(&self) -> Result<QueueDepth, QueueError> {
        match &self.backend {
            Backend::Local(q) => Ok(q.depth()),
            Backend::Redis(q) => q.depth().await,
        }
    }
}

/// Checks a claim timeout: at least 1 ms, at most a day.
fn check_timeout(claim_timeout: Duration) -> Result<(), QueueError> {
    if claim_timeout < Duration::from_millis(1) || claim_timeout > Duration::from_secs(86_400) {
        return Err(QueueError::Invalid {
            field: "claim_timeout",
            reason: format!("{claim_timeout:?}: accepts 1 ms to 1 day"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
