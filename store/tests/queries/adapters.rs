//! `store`'s adapters queries on both engines.

use store::AdapterFiles;
use store::Store;
use testkit::db::TestDb;

async fn stored_once_read_by_hash(store: &Store) {
    let files = AdapterFiles {
        config: "{\"r\": 8}".into(),
        weights: vec![0, 1, 2, 255, 0],
    };
    assert_eq!(store.adapter_files("ab").await.unwrap(), None);
    store.put_adapter("ab", &files).await.unwrap();
    // A second writer of the same hash changes nothing.
    store
        .put_adapter(
            "ab",
            &AdapterFiles {
                config: "other".into(),
                weights: Vec::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(store.adapter_files("ab").await.unwrap(), Some(files));
}

#[tokio::test]
async fn adapters_sqlite() {
    let db = TestDb::sqlite().await;
    stored_once_read_by_hash(&db.store).await;
}

#[tokio::test]
async fn adapters_postgres() {
    if let Some(db) = TestDb::postgres().await {
        stored_once_read_by_hash(&db.store).await;
    }
}
