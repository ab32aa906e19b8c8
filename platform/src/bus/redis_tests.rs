//! The bus over the real Redis: separate `Bus` handles on one namespace stand for
//! separate processes (a worker publishing, servers watching).

use std::time::Duration;

use super::*;
use testkit::redis::{TestNamespace, redis_url};

fn delta(text: &str) -> EventKind {
    EventKind::TokenDelta {
        round: 0,
        entry_id: 1,
        text: text.into(),
    }
}

fn settled() -> EventKind {
    EventKind::MatchSettled {
        result_hash: "h".into(),
    }
}

/// Two handles ("processes") on a fresh namespace, or `None` without Redis.
async fn two_handles() -> Option<(TestNamespace, Bus, Bus)> {
    let url = redis_url().await?;
    let ns = TestNamespace::new(&url);
    let worker = Bus::redis(&url, ns.name()).await.expect("worker bus");
    let server = Bus::redis(&url, ns.name()).await.expect("server bus");
    Some((ns, worker, server))
}

/// Every event of `spectator` until the final one, the snapshot included.
async fn drain(mut spectator: Spectator) -> Vec<LiveEvent> {
    let mut seen = std::mem::take(&mut spectator.snapshot);
    loop {
        let e = tokio::time::timeout(Duration::from_secs(20), spectator.next())
            .await
            .expect("an event within 20 s")
            .expect("spectator not cut off");
        let last = e.kind.is_final();
        seen.push(e);
        if last {
            return seen;
        }
    }
}

fn seqs(events: &[LiveEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

#[tokio::test]
async fn a_match_published_by_one_process_is_watched_whole_and_in_order_on_another() {
    let Some((_ns, worker, server)) = two_handles().await else {
        return;
    };
    let watcher = server.watch(1).await.unwrap();
    assert!(watcher.snapshot.is_empty());
    let mut all = server.subscribe();
    worker.publish(
        1,
        EventKind::MatchCreated {
            space: "tweet-duel".into(),
            seats: vec![],
            seed: 9,
        },
    );
    for i in 0..300 {
        worker.publish(1, delta(&i.to_string()));
        if i % 50 == 0 {
            worker.publish(2, delta("another match"));
        }
    }
    worker.publish(1, settled());
    let seen = drain(watcher).await;
    assert_eq!(seqs(&seen), (0..302).collect::<Vec<u64>>());
    assert_eq!(seen[5].kind, delta("4"), "payloads arrive intact");
    // The all-matches feed carries both matches, each in order.
    let mut per_match: HashMap<i64, Vec<u64>> = HashMap::new();
    while per_match.get(&1).map_or(0, Vec::len) < 302 {
        let e = tokio::time::timeout(Duration::from_secs(20), all.recv())
            .await
            .unwrap()
            .unwrap();
        per_match.entry(e.match_id).or_default().push(e.seq);
    }
    assert_eq!(per_match[&2], (0..6).collect::<Vec<u64>>());
}

#[tokio::test]
async fn a_late_joiner_on_another_process_gets_snapshot_then_live_without_gap_or_duplicate() {
    let Some((_ns, worker, server)) = two_handles().await else {
        return;
    };
    for i in 0..40 {
        worker.publish(7, delta(&format!("early {i}")));
    }
    worker.flush().await.unwrap();
    let publisher = {
        let worker = worker.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                worker.publish(7, delta(&format!("live {i}")));
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            worker.publish(7, settled());
            worker.flush().await.unwrap();
        })
    };
    // Joins while the publisher is mid-match.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let late = server.watch(7).await.unwrap();
    assert!(
        late.snapshot.len() >= 40,
        "the snapshot holds what was stored"
    );
    let seen = drain(late).await;
    publisher.await.unwrap();
    assert_eq!(seqs(&seen), (0..241).collect::<Vec<u64>>());
    // Once over, the match has left the bus, as in-process.
    assert!(server.watch(7).await.unwrap().snapshot.is_empty());
}

#[tokio::test]
async fn numbering_carries_on_when_another_worker_takes_over_a_match() {
    let Some((ns, crashed, server)) = two_handles().await else {
        return;
    };
    let watcher = server.watch(5).await.unwrap();
    for i in 0..10 {
        crashed.publish(5, delta(&format!("first attempt {i}")));
    }
    crashed.flush().await.unwrap();
    drop(crashed);
    let url = redis_url().await.unwrap();
    let successor = Bus::redis(&url, ns.name()).await.unwrap();
    for i in 0..10 {
        successor.publish(5, delta(&format!("second attempt {i}")));
    }
    successor.publish(5, settled());
    let seen = drain(watcher).await;
    assert_eq!(seqs(&seen), (0..21).collect::<Vec<u64>>());
    assert_eq!(seen[10].kind, delta("second attempt 0"));
}

#[tokio::test]
async fn a_retried_batch_is_stored_once() {
    let Some((_ns, worker, server)) = two_handles().await else {
        return;
    };
    let Backend::Redis(redis) = &worker.backend else {
        unreachable!("a Redis bus")
    };
    let events: Vec<(u64, streams::Pending)> = (1..=3)
        .map(|n| (n, streams::Pending::new(4, 0, delta(&n.to_string()))))
        .collect();
    // The same batch twice, as after a reply lost to a dropped connection.
    redis.store_batch(&events).await.unwrap();
    redis.store_batch(&events).await.unwrap();
    worker.publish(4, settled());
    worker.flush().await.unwrap();
    let Backend::Redis(reader) = &server.backend else {
        unreachable!("a Redis bus")
    };
    let (history, next) = reader.history(4).await.unwrap();
    assert!(history.is_empty(), "the match is over");
    assert_eq!(
        next,
        Some(4),
        "three deltas and the final event, no repeats"
    );
}

#[tokio::test]
async fn a_slow_spectator_on_redis_is_cut_off_not_waited_for() {
    let Some((_ns, worker, server)) = two_handles().await else {
        return;
    };
    let mut slow = server.watch(3).await.unwrap();
    let fast = server.watch(3).await.unwrap();
    for i in 0..(SUBSCRIBER_BUFFER + 100) {
        worker.publish(3, delta(&i.to_string()));
    }
    worker.publish(3, settled());
    // The fast spectator gets everything while the slow one reads nothing.
    let seen = drain(fast).await;
    assert_eq!(seen.len(), SUBSCRIBER_BUFFER + 101);
    assert!(matches!(slow.next().await, Err(SpectatorError::Lagged(_))));
}

#[tokio::test]
async fn a_bad_redis_url_or_namespace_is_named() {
    let err = Bus::redis("http://nowhere", "ns").await.err().unwrap();
    assert!(err.to_string().contains("redis.url"), "{err}");
    let err = Bus::redis("redis://127.0.0.1:6379", "")
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("redis.namespace"), "{err}");
}
