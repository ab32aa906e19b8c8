//! `store`'s escrow queries on both engines.

use store::{Store, Wei};
use testkit::db::TestDb;

async fn settlement_rows_read_back_and_withdrawals_reverse_once(store: &Store) {
    let user = store
        .upsert_user("0x00000000000000000000000000000000000000a1")
        .await
        .unwrap();
    store.deposit(user.id, Wei(100), "tx1").await.unwrap();
    store.withdraw(user.id, Wei(40), "w1").await.unwrap();
    let b = store
        .reverse_withdrawal(user.id, Wei(40), "w1")
        .await
        .unwrap();
    assert_eq!(b.available_wei, Wei(100));
    assert!(
        store
            .reverse_withdrawal(user.id, Wei(40), "w1")
            .await
            .is_err(),
        "a reversal is applied once"
    );
    assert_eq!(
        store.balance(user.id).await.unwrap().available_wei,
        Wei(100)
    );

    let ct = store
        .begin_chain_tx("settle:match:1", "settle")
        .await
        .unwrap();
    assert_eq!(
        store
            .chain_txs_with_status(store::TxStatus::Pending)
            .await
            .unwrap()
            .len(),
        1
    );
    let found = store
        .chain_tx_by_key("settle:match:1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, ct.id);
    assert!(
        store
            .chain_tx_by_key("settle:match:2")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.match_settlement(1).await.unwrap().is_none());
    assert!(store.match_payouts(1).await.unwrap().is_empty());
}

#[tokio::test]
async fn escrow_reads_sqlite() {
    let db = TestDb::sqlite().await;
    settlement_rows_read_back_and_withdrawals_reverse_once(&db.store).await;
}

#[tokio::test]
async fn escrow_reads_postgres() {
    if let Some(db) = TestDb::postgres().await {
        settlement_rows_read_back_and_withdrawals_reverse_once(&db.store).await;
    }
}
