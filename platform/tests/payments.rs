//! Payments through the Arena contract: a deposit the wallet cannot pay is a clear
//! validation error naming the field, not a server error (issue 19, item 6), and the
//! journal is untouched.

mod common;

use store::Wei;
use store::testing::TestDb;

async fn a_deposit_over_the_wallet_is_refused_with_the_reason(db: TestDb) {
    let store = &db.store;
    let (_contracts, payments) = common::embedded_payments(store).await;
    let wallet = chain::dev::dev_accounts(6)[5];
    let user = store.upsert_user(&format!("{wallet:#x}")).await.unwrap();
    let err = payments
        .deposit(user.id, Wei(10u128.pow(30)))
        .await
        .unwrap_err();
    match &err {
        platform::payments::PaymentError::Invalid { field, reason } => {
            assert_eq!(*field, "amount_wei");
            assert!(reason.contains("holds"), "{reason}");
        }
        other => panic!("expected a validation error, got {other}"),
    }
    let b = store.balance(user.id).await.unwrap();
    assert_eq!((b.available_wei, b.locked_wei), (Wei::ZERO, Wei::ZERO));
    // What the wallet holds goes in.
    let ok = payments
        .deposit(user.id, Wei(10u128.pow(18)))
        .await
        .unwrap();
    assert_eq!(ok.available_wei, Wei(10u128.pow(18)));
}

#[tokio::test]
async fn a_deposit_over_the_wallet_is_refused_with_the_reason_on_sqlite() {
    a_deposit_over_the_wallet_is_refused_with_the_reason(TestDb::sqlite().await).await;
}

#[tokio::test]
async fn a_deposit_over_the_wallet_is_refused_with_the_reason_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        a_deposit_over_the_wallet_is_refused_with_the_reason(db).await;
    }
}
