//! `store`'s browse queries on both engines.

use store::Store;
use testkit::db::TestDb;
use testkit::fixtures::played_match;

async fn lists(store: &Store) {
    let p = played_match(store, 3).await;
    let q = played_match(store, 2).await;
    assert_eq!(store.space(p.space_id).await.unwrap().slug, "tweet-duel");
    assert!(store.space(p.space_id + 99).await.is_err());
    let all = store.recent_matches(None, None, None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![q.match_id, p.match_id]
    );
    let older = store
        .recent_matches(
            Some(p.space_id),
            Some(store::MatchStatus::Settled),
            Some(q.match_id),
            10,
        )
        .await
        .unwrap();
    assert_eq!(older.len(), 1);
    assert!(
        store
            .recent_matches(None, Some(store::MatchStatus::Running), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.agent_matches(p.agent_ids[0], 10).await.unwrap()[0].id,
        p.match_id
    );
    assert_eq!(
        store
            .entries_by_user(p.user_ids[1], 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(
        store
            .training_runs_for_agent(p.agent_ids[0])
            .await
            .unwrap()
            .is_empty()
    );
    store
        .set_auto_entry(p.agent_ids[0], p.tier_id, store::Wei(500), false)
        .await
        .unwrap();
    assert_eq!(
        store
            .auto_entries_for_agent(p.agent_ids[0])
            .await
            .unwrap()
            .len(),
        1
    );
    let changes = store.match_rating_changes(q.match_id).await.unwrap();
    assert_eq!(changes.len(), 2);
    let before = store
        .rating_before_match(q.agent_ids[0], q.space_id, q.match_id)
        .await
        .unwrap();
    assert!(before.is_none(), "a fresh agent has no earlier rating");
}

#[tokio::test]
async fn browse_sqlite() {
    let db = TestDb::sqlite().await;
    lists(&db.store).await;
}

#[tokio::test]
async fn browse_postgres() {
    if let Some(db) = TestDb::postgres().await {
        lists(&db.store).await;
    }
}
