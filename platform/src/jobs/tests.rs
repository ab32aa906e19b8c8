//! The queue's contract, checked on both backends: the in-process one and Redis
//! Streams on the real server (`RLFC_TEST_REDIS_URL`, else `redis://127.0.0.1:6379`;
//! under `CI=true` an unreachable Redis fails the test instead of skipping it).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::*;
use testkit::redis::{TestNamespace, redis_url};

/// Runs `test` on an in-process queue and on a Redis queue in a fresh namespace.
async fn on_both(claim_timeout: Duration, test: impl AsyncFn(MatchQueue)) {
    test(MatchQueue::in_process_with_timeout(claim_timeout)).await;
    let Some(url) = redis_url().await else {
        return;
    };
    let ns = TestNamespace::new(&url);
    let queue = MatchQueue::redis(&url, ns.name(), claim_timeout)
        .await
        .expect("open the Redis queue");
    test(queue).await;
    drop(ns);
}

fn job(id: i64) -> MatchJob {
    MatchJob { match_id: id }
}

fn ids(jobs: &[ClaimedJob]) -> Vec<i64> {
    jobs.iter().map(|j| j.job.match_id).collect()
}

const NOW: Duration = Duration::ZERO;

#[tokio::test]
async fn jobs_are_claimed_in_order_and_gone_once_acknowledged() {
    on_both(Duration::from_secs(60), async |q: MatchQueue| {
        for i in 1..=3 {
            q.enqueue(job(i)).await.unwrap();
        }
        let first = q.claim("w1", 2, NOW).await.unwrap();
        assert_eq!(ids(&first), vec![1, 2]);
        assert!(
            first
                .iter()
                .all(|j| j.deliveries == 1 && j.consumer == "w1")
        );
        assert_eq!(
            q.depth().await.unwrap(),
            QueueDepth {
                waiting: 1,
                pending: 2
            }
        );
        for j in &first {
            q.ack(j).await.unwrap();
        }
        // A second ack is harmless.
        q.ack(&first[0]).await.unwrap();
        let rest = q.claim("w2", 10, NOW).await.unwrap();
        assert_eq!(ids(&rest), vec![3]);
        q.ack(&rest[0]).await.unwrap();
        assert_eq!(q.depth().await.unwrap(), QueueDepth::default());
        let started = Instant::now();
        let none = q.claim("w2", 10, Duration::from_millis(200)).await.unwrap();
        assert!(none.is_empty());
        assert!(
            started.elapsed() >= Duration::from_millis(190),
            "an empty claim waits for its block time"
        );
    })
    .await;
}

#[tokio::test]
async fn a_dead_workers_job_is_reclaimed_after_the_timeout_and_not_before() {
    let timeout = Duration::from_millis(1500);
    on_both(timeout, async |q: MatchQueue| {
        q.enqueue(job(7)).await.unwrap();
        let claimed_at = Instant::now();
        let dead = q.claim("dies", 1, NOW).await.unwrap();
        assert_eq!(ids(&dead), vec![7]);
        let early = q.claim("survivor", 1, NOW).await.unwrap();
        if claimed_at.elapsed() < timeout {
            assert!(early.is_empty(), "reclaimed before the timeout");
        }
        // Blocking past the timeout: the job comes back to the survivor.
        let mut late = Vec::new();
        while late.is_empty() && claimed_at.elapsed() < timeout * 4 {
            late = q
                .claim("survivor", 1, Duration::from_millis(300))
                .await
                .unwrap();
        }
        assert!(claimed_at.elapsed() >= timeout);
        assert_eq!(ids(&late), vec![7]);
        assert_eq!(late[0].deliveries, 2);
        assert_eq!(late[0].consumer, "survivor");
        // The dead worker's handle no longer holds it.
        assert!(!q.touch(&dead[0]).await.unwrap());
        assert!(!q.release(&dead[0]).await.unwrap());
        q.ack(&late[0]).await.unwrap();
        assert_eq!(q.depth().await.unwrap(), QueueDepth::default());
    })
    .await;
}

#[tokio::test]
async fn touching_a_job_keeps_it_from_being_reclaimed() {
    let timeout = Duration::from_millis(800);
    on_both(timeout, async |q: MatchQueue| {
        q.enqueue(job(3)).await.unwrap();
        let held = q.claim("slow", 1, NOW).await.unwrap();
        for _ in 0..4 {
            tokio::time::sleep(timeout / 3).await;
            let touched_at = Instant::now();
            assert!(q.touch(&held[0]).await.unwrap());
            let other = q.claim("other", 1, NOW).await.unwrap();
            if touched_at.elapsed() < timeout {
                assert!(other.is_empty(), "a touched job was reclaimed");
            }
        }
        q.ack(&held[0]).await.unwrap();
        assert_eq!(q.depth().await.unwrap(), QueueDepth::default());
    })
    .await;
}

#[tokio::test]
async fn a_released_job_goes_to_a_waiting_worker_at_once() {
    on_both(Duration::from_secs(60), async |q: MatchQueue| {
        q.enqueue(job(11)).await.unwrap();
        let held = q.claim("leaving", 1, NOW).await.unwrap();
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let got = q
                    .claim("staying", 1, Duration::from_secs(20))
                    .await
                    .unwrap();
                (got, started.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(q.release(&held[0]).await.unwrap());
        let (got, waited) = waiter.await.unwrap();
        assert_eq!(ids(&got), vec![11]);
        assert!(waited < Duration::from_secs(10), "woken by the hand-back");
        assert_eq!(got[0].deliveries, 1, "a hand-back is not a failed delivery");
        assert!(!q.release(&held[0]).await.unwrap(), "released only once");
        q.ack(&got[0]).await.unwrap();
        assert_eq!(q.depth().await.unwrap(), QueueDepth::default());
    })
    .await;
}

#[tokio::test]
async fn concurrent_workers_never_share_a_job_and_lose_none() {
    on_both(Duration::from_secs(60), async |q: MatchQueue| {
        const JOBS: i64 = 200;
        let producer = {
            let q = q.clone();
            tokio::spawn(async move {
                for i in 0..JOBS {
                    q.enqueue(job(i)).await.unwrap();
                    if i % 20 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        };
        let mut workers = Vec::new();
        for w in 0..4 {
            let q = q.clone();
            workers.push(tokio::spawn(async move {
                let name = format!("worker-{w}");
                let mut seen = Vec::new();
                let mut idle = 0;
                while idle < 3 {
                    let got = q.claim(&name, 5, Duration::from_millis(150)).await.unwrap();
                    if got.is_empty() {
                        idle += 1;
                        continue;
                    }
                    idle = 0;
                    for j in got {
                        assert_eq!(j.deliveries, 1);
                        seen.push(j.job.match_id);
                        q.ack(&j).await.unwrap();
                    }
                }
                seen
            }));
        }
        producer.await.unwrap();
        let mut count: HashMap<i64, usize> = HashMap::new();
        for w in workers {
            for id in w.await.unwrap() {
                *count.entry(id).or_default() += 1;
            }
        }
        assert_eq!(count.len(), JOBS as usize, "every job delivered");
        assert!(count.values().all(|&n| n == 1), "no job delivered twice");
        assert_eq!(q.depth().await.unwrap(), QueueDepth::default());
    })
    .await;
}

#[tokio::test]
async fn nothing_is_lost_when_a_redis_queue_handle_is_dropped_and_reopened() {
    let Some(url) = redis_url().await else {
        return;
    };
    let ns = TestNamespace::new(&url);
    let timeout = Duration::from_millis(500);
    let first = MatchQueue::redis(&url, ns.name(), timeout).await.unwrap();
    for i in 1..=3 {
        first.enqueue(job(i)).await.unwrap();
    }
    let held = first.claim("gone", 1, NOW).await.unwrap();
    assert_eq!(ids(&held), vec![1]);
    drop(first);

    let second = MatchQueue::redis(&url, ns.name(), timeout).await.unwrap();
    assert_eq!(
        second.depth().await.unwrap(),
        QueueDepth {
            waiting: 2,
            pending: 1
        }
    );
    tokio::time::sleep(timeout).await;
    let got = second.claim("next", 10, NOW).await.unwrap();
    let mut got_ids = ids(&got);
    got_ids.sort();
    assert_eq!(got_ids, vec![1, 2, 3]);
    for j in &got {
        second.ack(j).await.unwrap();
    }
    assert_eq!(second.depth().await.unwrap(), QueueDepth::default());
    drop(ns);
}

#[tokio::test]
async fn bad_settings_are_refused_with_the_setting_named() {
    let q = MatchQueue::in_process();
    let err = q.claim("has space", 1, NOW).await.unwrap_err();
    assert!(err.to_string().contains("consumer"), "{err}");
    let err = q.claim("w", 0, NOW).await.unwrap_err();
    assert!(err.to_string().contains("max"), "{err}");
    let err = MatchQueue::redis("http://x", "ns", Duration::from_secs(1))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("redis.url"), "{err}");
    let err = MatchQueue::redis(
        "redis://user:secret@127.0.0.1:1",
        "bad namespace",
        Duration::from_secs(1),
    )
    .await
    .err()
    .unwrap();
    assert!(err.to_string().contains("redis.namespace"), "{err}");
    let err = MatchQueue::connect(None, "ns", Duration::ZERO)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("claim_timeout"), "{err}");
    let err = MatchQueue::redis(
        "redis://user:secret@127.0.0.1:1",
        "ns",
        Duration::from_secs(1),
    )
    .await
    .err()
    .unwrap();
    assert!(!err.to_string().contains("secret"), "password shown: {err}");
}
