//! Exactly once across processes, on the orchestration test policy with fees on the
//! embedded chain, on PostgreSQL (the scale-out deployment) and SQLite. Each "process"
//! has its own connection pool on the one database:
//!
//! - two servers matchmake the same queues at once: no entry joins two matches, and
//!   every formed match has all its fees in escrow exactly once;
//! - two workers race to settle one match: exactly one settlement lands, in the
//!   database and on chain;
//! - a worker dies mid-match: nothing is reclaimed while its lease runs, then the
//!   match is refunded once, whoever gets there first (a sweep or another worker
//!   claiming the redelivered job).

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use arena::engine::InstantEngine;
use arena::judging::RulesOnlyJudge;
use arena::ratings::Skill;
use arena::record::{SeatFacts, book_match};
use chain::MatchStatus;
use platform::bus::Bus;
use platform::demo::{ETH, seed_demo};
use platform::jobs::MatchQueue;
use platform::match_worker::MatchWorker;
use platform::matchmaker::Matchmaker;
use platform::payments::{Payments, Reclaim};
use platform::play::{RunnerConfig, SpaceSlot};
use store::{Store, Wei};
use testkit::db::TestDb;

use common::OPERATOR;

/// A second pool on the same database, as another process would open.
async fn second_pool(db: &TestDb) -> Store {
    match db.store.backend() {
        store::Backend::Postgres => Store::open_url(&testkit::db::database_url_with_name(
            &testkit::db::postgres_admin_url(),
            &db.name,
        ))
        .await
        .unwrap(),
        store::Backend::Sqlite => Store::open_sqlite(std::path::Path::new(&db.name))
            .await
            .unwrap(),
    }
}

fn payments_on(store: &Store, like: &Payments) -> Arc<Payments> {
    let dev = chain::dev::dev_accounts(10);
    Arc::new(Payments::new(
        store.clone(),
        like.contracts().clone(),
        dev[OPERATOR],
    ))
}

fn maker(
    store: &Store,
    payments: &Arc<Payments>,
    queue: &MatchQueue,
    spaces: &[SpaceSlot],
    owner: &str,
) -> Matchmaker {
    Matchmaker::new(
        store.clone(),
        payments.clone(),
        Bus::new(),
        queue.clone(),
        spaces.to_vec(),
        RunnerConfig::default(),
        owner.into(),
    )
}

fn worker(
    store: &Store,
    payments: &Arc<Payments>,
    queue: &MatchQueue,
    spaces: &[SpaceSlot],
    cfg: RunnerConfig,
    id: &str,
) -> MatchWorker {
    MatchWorker::new(
        store.clone(),
        payments.clone(),
        Bus::new(),
        queue.clone(),
        Box::new(InstantEngine::new()),
        Box::new(RulesOnlyJudge),
        spaces.to_vec(),
        cfg,
        id.into(),
    )
}

async fn two_servers_never_share_an_entry(db: &TestDb) {
    let store = &db.store;
    let other = second_pool(db).await;
    let (contracts, payments) = common::embedded_payments(store).await;
    let spaces = common::shipped_spaces(store, &[]).await;
    seed_demo(store, &payments, &spaces, &[("bronze", Wei(ETH))], Wei(ETH))
        .await
        .unwrap();
    let queue = MatchQueue::in_process();
    let mut a = maker(store, &payments, &queue, &spaces, "srv-a");
    let mut b = maker(
        &other,
        &payments_on(&other, &payments),
        &queue,
        &spaces,
        "srv-b",
    );
    let mut formed = Vec::new();
    for _ in 0..3 {
        a.auto_enter().await.unwrap();
        let (fa, fb) = tokio::join!(a.matchmake(100), b.matchmake(100));
        formed.extend(fa.unwrap());
        formed.extend(fb.unwrap());
    }
    assert!(formed.len() >= 3, "too few matches formed: {formed:?}");
    let mut seen = HashSet::new();
    for &id in &formed {
        let entries = store.match_entries(id).await.unwrap();
        let m = store.get_match(id).await.unwrap();
        let slot = spaces.iter().find(|s| s.space.id == m.space_id).unwrap();
        assert_eq!(
            entries.len(),
            slot.rulebook.players,
            "match {id} lost an entry"
        );
        for e in &entries {
            assert!(seen.insert(e.id), "entry {} in two matches", e.id);
        }
        let pot: u128 = entries.iter().map(|e| e.fee_wei.0).sum();
        let escrow = contracts.escrow(id as u64).await.unwrap();
        assert_eq!(escrow.held, pot, "escrow of match {id}");
    }
    assert_eq!(queue.depth().await.unwrap().waiting as usize, formed.len());
    other.close().await;
}

async fn two_workers_race_to_settle_one_match(db: &TestDb) {
    let store = &db.store;
    let other = second_pool(db).await;
    let (contracts, payments) = common::embedded_payments(store).await;
    let spaces = common::shipped_spaces(store, &["tweet-duel"]).await;
    seed_demo(store, &payments, &spaces, &[("bronze", Wei(ETH))], Wei(ETH))
        .await
        .unwrap();
    let queue = MatchQueue::in_process();
    let mut a = maker(store, &payments, &queue, &spaces, "srv-a");
    a.auto_enter().await.unwrap();
    a.limit_new_matches(Some(1));
    let id = a.matchmake(1).await.unwrap()[0];
    // One worker plays it to the end; the settlement it would write is raced by a
    // second worker holding the same result (a redelivered job).
    let mut w = worker(
        store,
        &payments,
        &queue,
        &spaces,
        RunnerConfig::default(),
        "w1",
    );
    assert_eq!(w.claim(Duration::ZERO).await.unwrap(), vec![id]);
    let outcome = loop {
        if let Some(o) = w.tick().into_iter().next() {
            break o;
        }
    };
    let result = outcome.result.clone().unwrap();
    let slot = &spaces[0];
    let facts: Vec<SeatFacts> = store
        .match_entries(id)
        .await
        .unwrap()
        .iter()
        .map(|e| SeatFacts {
            entry_id: e.id,
            agent_id: e.agent_id,
            fee: e.fee_wei.0,
            skill: Skill::default(),
        })
        .collect();
    let book = book_match(id, slot.space.id, &slot.rulebook, &facts, &result);
    let p1 = payments.clone();
    let p2 = payments_on(&other, &payments);
    let (r1, r2) = tokio::join!(
        p1.settle(book.record.clone()),
        p2.settle(book.record.clone())
    );
    let oks = [r1.is_ok(), r2.is_ok()];
    assert_eq!(oks.iter().filter(|&&ok| ok).count(), 1, "{r1:?} {r2:?}");
    let lost = if r1.is_ok() { r2 } else { r1 };
    assert!(
        matches!(
            lost,
            Err(platform::payments::PaymentError::Store(
                store::Error::AlreadySettled { .. }
            ))
        ),
        "{lost:?}"
    );
    // Once in the database, once on chain, and nothing left for reconciliation.
    let s = store.match_settlement(id).await.unwrap().unwrap();
    assert_eq!(s.outcome, "settled");
    assert_eq!(
        contracts.escrow(id as u64).await.unwrap().status,
        MatchStatus::Settled
    );
    let key = format!("settle:match:{id}");
    assert_eq!(
        store.chain_tx_by_key(&key).await.unwrap().unwrap().status,
        "confirmed"
    );
    let done = payments
        .reconcile(&Reclaim::ExpiredLeases {
            by: "sweeper",
            now_ms: i64::MAX,
            grace_ms: 0,
        })
        .await
        .unwrap();
    assert_nothing_done(done);
    // The worker that played it finds it closed and reports so.
    let reports = w.finish(vec![outcome]).await.unwrap();
    assert!(
        matches!(&reports[0].end, platform::play::MatchEnd::ClosedElsewhere { closed_as } if closed_as == "settled"),
        "{reports:?}"
    );
    other.close().await;
}

async fn a_dead_workers_match_is_refunded_once_its_lease_expires(db: &TestDb) {
    let store = &db.store;
    let (contracts, payments) = common::embedded_payments(store).await;
    let spaces = common::shipped_spaces(store, &["tweet-duel"]).await;
    seed_demo(store, &payments, &spaces, &[("bronze", Wei(ETH))], Wei(ETH))
        .await
        .unwrap();
    let queue = MatchQueue::in_process_with_timeout(Duration::from_millis(50));
    let mut a = maker(store, &payments, &queue, &spaces, "srv-a");
    a.auto_enter().await.unwrap();
    a.limit_new_matches(Some(2));
    let ids = a.matchmake(2).await.unwrap();
    assert_eq!(ids.len(), 2);
    let short = RunnerConfig {
        lease_ms: 300,
        ..RunnerConfig::default()
    };
    {
        let mut doomed = worker(store, &payments, &queue, &spaces, short, "doomed");
        assert_eq!(doomed.claim(Duration::ZERO).await.unwrap().len(), 2);
        doomed.tick();
        // Dropped mid-match, as a killed process.
    }
    let sweep = |now_ms| Reclaim::ExpiredLeases {
        by: "sweeper",
        now_ms,
        grace_ms: 0,
    };
    // While the lease runs, nobody reclaims.
    let early = payments.reconcile(&sweep(store::now_ms())).await.unwrap();
    assert!(early.refunded.is_empty(), "{early:?}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Another worker gets the redelivered jobs and refunds both matches.
    let mut heir = worker(store, &payments, &queue, &spaces, short, "heir");
    assert!(heir.claim(Duration::ZERO).await.unwrap().is_empty());
    assert_eq!(heir.live_matches(), 0);
    for &id in &ids {
        assert_eq!(store.get_match(id).await.unwrap().status, "refunded");
        assert_eq!(
            contracts.escrow(id as u64).await.unwrap().status,
            MatchStatus::Refunded
        );
    }
    // A sweep afterwards finds nothing more to do, and the jobs are done.
    let late = payments.reconcile(&sweep(store::now_ms())).await.unwrap();
    assert_nothing_done(late);
    let depth = queue.depth().await.unwrap();
    assert_eq!((depth.waiting, depth.pending), (0, 0));
}

/// A worker blocked longer than its lease (a long judge pass) keeps its matches: the
/// background renewer extends their leases meanwhile, so neither another process's
/// sweep nor its own reclaims them, and it settles them afterwards.
async fn a_busy_worker_keeps_its_leases(db: &TestDb) {
    let store = &db.store;
    let (_contracts, payments) = common::embedded_payments(store).await;
    let spaces = common::shipped_spaces(store, &["tweet-duel"]).await;
    seed_demo(store, &payments, &spaces, &[("bronze", Wei(ETH))], Wei(ETH))
        .await
        .unwrap();
    let queue = MatchQueue::in_process_with_timeout(Duration::from_secs(60));
    let mut a = maker(store, &payments, &queue, &spaces, "srv-a");
    a.auto_enter().await.unwrap();
    let ids = a.matchmake(2).await.unwrap();
    assert_eq!(ids.len(), 2);
    let short = RunnerConfig {
        lease_ms: 300,
        ..RunnerConfig::default()
    };
    let mut busy = worker(store, &payments, &queue, &spaces, short, "busy");
    let renewer = busy.spawn_lease_renewer();
    assert_eq!(busy.claim(Duration::ZERO).await.unwrap().len(), 2);
    // Three lease periods without a call to renew_leases, as in one long tick.
    tokio::time::sleep(Duration::from_millis(900)).await;
    for by in ["sweeper", "busy"] {
        let swept = payments
            .reconcile(&Reclaim::ExpiredLeases {
                by,
                now_ms: store::now_ms(),
                grace_ms: 0,
            })
            .await
            .unwrap();
        assert!(swept.refunded.is_empty(), "{by} reclaimed {swept:?}");
    }
    busy.renew_leases().await.unwrap();
    assert_eq!(busy.live_matches(), 2);
    let mut settled = 0;
    while busy.live_matches() > 0 {
        let outcomes = busy.tick();
        for report in busy.finish(outcomes).await.unwrap() {
            assert!(
                matches!(report.end, platform::play::MatchEnd::Settled { .. }),
                "{report:?}"
            );
            settled += 1;
        }
    }
    assert_eq!(settled, 2);
    // Without the renewer, its own sweep still leaves a lapsed lease of its own alone;
    // another process's sweep takes it.
    renewer.abort();
    a.auto_enter().await.unwrap();
    let ids = a.matchmake(1).await.unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(busy.claim(Duration::ZERO).await.unwrap(), ids);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let own = payments
        .reconcile(&Reclaim::ExpiredLeases {
            by: "busy",
            now_ms: store::now_ms(),
            grace_ms: 0,
        })
        .await
        .unwrap();
    assert!(own.refunded.is_empty(), "{own:?}");
    let other = payments
        .reconcile(&Reclaim::ExpiredLeases {
            by: "sweeper",
            now_ms: store::now_ms(),
            grace_ms: 0,
        })
        .await
        .unwrap();
    assert_eq!(other.refunded, ids);
}

macro_rules! both {
    ($check:ident) => {
        mod $check {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = testkit::db::TestDb::sqlite().await;
                super::$check(&db).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = testkit::db::TestDb::postgres().await {
                    super::$check(&db).await;
                }
            }
        }
    };
}

both!(two_servers_never_share_an_entry);
both!(two_workers_race_to_settle_one_match);
both!(a_dead_workers_match_is_refunded_once_its_lease_expires);
both!(a_busy_worker_keeps_its_leases);

/// A sweep that found nothing to do: nothing refunded, sent or finished, and its chain
/// follower journaled nothing (however far it read).
fn assert_nothing_done(done: platform::payments::Reconciled) {
    assert!(done.followed.journaled_nothing(), "{done:?}");
    assert_eq!(
        platform::payments::Reconciled {
            followed: Default::default(),
            ..done
        },
        Default::default()
    );
}
