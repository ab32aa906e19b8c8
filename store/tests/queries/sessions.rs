//! `store`'s sessions queries on both engines.

use store::Store;
use testkit::db::TestDb;

async fn nonces_sessions_and_tokens(store: &Store) {
    let far = store::now_ms() + 60_000;
    store.create_nonce("n1", far).await.unwrap();
    assert!(
        store.create_nonce("n1", far).await.is_err(),
        "nonces are unique"
    );
    assert!(store.consume_nonce("n1").await.unwrap());
    assert!(!store.consume_nonce("n1").await.unwrap(), "single use");
    assert!(!store.consume_nonce("never-issued").await.unwrap());
    store
        .create_nonce("old", store::now_ms() - 1)
        .await
        .unwrap();
    assert!(!store.consume_nonce("old").await.unwrap(), "expired");

    let alice = store
        .upsert_user(&format!("0x{}", "a1".repeat(20)))
        .await
        .unwrap();
    let bob = store
        .upsert_user(&format!("0x{}", "b2".repeat(20)))
        .await
        .unwrap();
    store
        .create_session("h1", alice.id, "csrf", far)
        .await
        .unwrap();
    store
        .create_session("gone", alice.id, "csrf", store::now_ms() - 1)
        .await
        .unwrap();
    let s = store.session("h1").await.unwrap().unwrap();
    assert_eq!((s.user_id, s.csrf_token.as_str()), (alice.id, "csrf"));
    assert!(store.session("gone").await.unwrap().is_none(), "expired");
    store.delete_session("h1").await.unwrap();
    assert!(store.session("h1").await.unwrap().is_none());

    let t = store
        .create_api_token(alice.id, "ci", "th", "rlfc_ab")
        .await
        .unwrap();
    assert_eq!(
        store.use_api_token("th").await.unwrap().unwrap().user_id,
        alice.id
    );
    assert!(
        store.revoke_api_token(bob.id, t.id).await.is_err(),
        "another user's token is not found"
    );
    assert!(store.use_api_token("th").await.unwrap().is_some());
    let revoked = store.revoke_api_token(alice.id, t.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(
        store.use_api_token("th").await.unwrap().is_none(),
        "revoked"
    );
    assert_eq!(store.api_tokens(alice.id).await.unwrap().len(), 1);
    assert!(store.api_tokens(bob.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn sessions_sqlite() {
    let db = TestDb::sqlite().await;
    nonces_sessions_and_tokens(&db.store).await;
}

#[tokio::test]
async fn sessions_postgres() {
    if let Some(db) = TestDb::postgres().await {
        nonces_sessions_and_tokens(&db.store).await;
    }
}
