//! The in-process match-job queue: the same semantics as the Redis one (claim,
//! reclaim after the timeout, acknowledge, hand back) inside one process, for the
//! single-process default and the demo.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{ClaimedJob, DeliveryId, MatchJob, QueueDepth};

/// A job not yet delivered, with how many deliveries it already had.
struct Waiting {
    id: u64,
    job: MatchJob,
    deliveries: u64,
}

/// A delivered, unacknowledged job.
struct Held {
    job: MatchJob,
    consumer: String,
    /// Last delivery or touch.
    since: Instant,
    deliveries: u64,
}

#[derive(Default)]
struct State {
    next_id: u64,
    waiting: VecDeque<Waiting>,
    /// By delivery id, so reclaims go oldest first as XAUTOCLAIM's do.
    held: BTreeMap<u64, Held>,
}

/// The in-process queue.
pub(super) struct LocalQueue {
    state: Mutex<State>,
    /// Woken on enqueue and hand-back.
    arrivals: Notify,
    claim_timeout: Duration,
}

impl LocalQueue {
    pub(super) fn new(claim_timeout: Duration) -> LocalQueue {
        LocalQueue {
            state: Mutex::default(),
            arrivals: Notify::new(),
            claim_timeout,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("job queue lock")
    }

    pub(super) fn enqueue(&self, job: MatchJob) {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.waiting.push_back(Waiting {
            id,
            job,
            deliveries: 0,
        });
        drop(state);
        self.arrivals.notify_waiters();
    }

    pub(super) async fn claim(
        &self,
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> Vec<ClaimedJob> {
        let deadline = Instant::now() + block;
        loop {
            // Registered before looking, so an arrival in between still wakes us.
            let arrival = self.arrivals.notified();
            tokio::pin!(arrival);
            arrival.as_mut().enable();
            let (jobs, next_expiry) = self.take(consumer, max);
            if !jobs.is_empty() || Instant::now() >= deadline {
                return jobs;
            }
            let wake = next_expiry.map_or(deadline, |e| e.min(deadline));
            tokio::select! {
                _ = &mut arrival => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Reclaims expired jobs, then takes new ones. Also returns when the next held
    /// job expires, so a blocked claim can wake for it.
    fn take(&self, consumer: &str, max: usize) -> (Vec<ClaimedJob>, Option<Instant>) {
        let now = Instant::now();
        let mut state = self.lock();
        let mut out = Vec::new();
        for (&id, held) in state.held.iter_mut() {
            if out.len() == max {
                break;
            }
            if now.duration_since(held.since) >= self.claim_timeout {
                held.consumer = consumer.to_string();
                held.since = now;
                held.deliveries += 1;
                out.push(ClaimedJob {
                    job: held.job,
                    deliveries: held.deliveries,
                    consumer: consumer.to_string(),
                    id: DeliveryId::Local(id),
                });
            }
        }
        while out.len() < max {
            let Some(w) = state.waiting.pop_front() else {
                break;
            };
            let deliveries = w.deliveries + 1;
            state.held.insert(
                w.id,
                Held {
                    job: w.job,
                    consumer: consumer.to_string(),
                    since: now,
                    deliveries,
                },
            );
            out.push(ClaimedJob {
                job: w.job,
                deliveries,
                consumer: consumer.to_string(),
                id: DeliveryId::Local(w.id),
            });
        }
        let next_expiry = state
            .held
            .values()
            .map(|h| h.since + self.claim_timeout)
            .min();
        (out, next_expiry)
    }

    fn held_id(job: &ClaimedJob) -> Option<u64> {
        match job.id {
            DeliveryId::Local(id) => Some(id),
            DeliveryId::Stream(_) => None,
        }
    }

    pub(super) fn ack(&self, job: &ClaimedJob) {
        if let Some(id) = Self::held_id(job) {
            self.lock().held.remove(&id);
        }
    }

    pub(super) fn release(&self, job: &ClaimedJob) -> bool {
        let Some(id) = Self::held_id(job) else {
            return false;
        };
        let mut state = self.lock();
        let Some(held) = state.held.remove_entry(&id).map(|(_, h)| h) else {
            return false;
        };
        if held.consumer != job.consumer {
            state.held.insert(id, held);
            return false;
        }
        let id = state.next_id;
        state.next_id += 1;
        state.waiting.push_back(Waiting {
            id,
            job: held.job,
            // A graceful hand-back is not a failed delivery.
            deliveries: held.deliveries.saturating_sub(1),
        });
        drop(state);
        self.arrivals.notify_waiters();
        true
    }

    pub(super) fn touch(&self, job: &ClaimedJob) -> bool {
        let Some(id) = Self::held_id(job) else {
            return false;
        };
        match self.lock().held.get_mut(&id) {
            Some(h) if h.consumer == job.consumer => {
                h.since = Instant::now();
                true
            }
            _ => false,
        }
    }

    pub(super) fn depth(&self) -> QueueDepth {
        let state = self.lock();
        QueueDepth {
            waiting: state.waiting.len() as u64,
            pending: state.held.len() as u64,
        }
    }
}
