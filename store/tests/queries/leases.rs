//! `store`'s leases queries on both engines.

use store::Store;
use testkit::db::TestDb;
use testkit::fixtures;

async fn leases_change_hands_only_when_expired(store: &Store) {
    let (space_id, tier_id, entry_ids) = fixtures::queued_entries(store, 2, 1).await;
    let m = store
        .create_match_leased(
            space_id,
            tier_id,
            7,
            "v1",
            &entry_ids,
            Some(("srv-a", 1_000)),
        )
        .await
        .unwrap();
    let lease = store.match_lease(m.id).await.unwrap();
    assert_eq!(lease.lease_owner.as_deref(), Some("srv-a"));
    assert_eq!(lease.lease_expires_at, Some(1_000));
    // Expired at 2000: listed, and only one process takes it.
    assert_eq!(store.expired_leases(2_000).await.unwrap().len(), 1);
    assert!(store.expired_leases(999).await.unwrap().is_empty());
    assert!(
        store
            .take_expired_lease(m.id, "srv-b", 2_000, 5_000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .take_expired_lease(m.id, "srv-c", 2_000, 5_000)
            .await
            .unwrap()
    );
    // The old holder can no longer renew; the new one can.
    assert!(!store.renew_lease(m.id, "srv-a", 9_000).await.unwrap());
    assert!(store.renew_lease(m.id, "srv-b", 9_000).await.unwrap());
    // A worker starts it once; a second start finds it running.
    let started = store
        .start_leased_match(m.id, "wrk-1", 20_000)
        .await
        .unwrap();
    assert_eq!(started.unwrap().status, "running");
    assert!(
        store
            .start_leased_match(m.id, "wrk-2", 20_000)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .match_lease(m.id)
            .await
            .unwrap()
            .lease_owner
            .as_deref(),
        Some("wrk-1")
    );
    assert!(!store.renew_lease(m.id, "srv-b", 30_000).await.unwrap());
    // Handed back, it is pending again and another worker starts it.
    assert!(!store.hand_back_match(m.id, "wrk-2", 25_000).await.unwrap());
    assert!(store.hand_back_match(m.id, "wrk-1", 25_000).await.unwrap());
    let back = store.match_lease(m.id).await.unwrap();
    assert_eq!((back.status.as_str(), back.lease_owner), ("pending", None));
    assert!(
        store
            .start_leased_match(m.id, "wrk-2", 30_000)
            .await
            .unwrap()
            .is_some()
    );
    // Finished matches have no lease to take or renew.
    store.refund_match(m.id, "test", None).await.unwrap();
    assert!(store.expired_leases(i64::MAX).await.unwrap().is_empty());
    assert!(!store.renew_lease(m.id, "wrk-1", 40_000).await.unwrap());
    assert!(
        !store
            .take_expired_lease(m.id, "x", i64::MAX, 0)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn leases_sqlite() {
    let db = TestDb::sqlite().await;
    leases_change_hands_only_when_expired(&db.store).await;
}

#[tokio::test]
async fn leases_postgres() {
    if let Some(db) = TestDb::postgres().await {
        leases_change_hands_only_when_expired(&db.store).await;
    }
}
