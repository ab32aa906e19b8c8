//! Payments through the Arena contract: a deposit the wallet cannot pay is a clear
//! validation error naming the field, not a server error (issue 19, item 6), and the
//! journal is untouched.

mod common;

use store::Wei;
use testkit::db::TestDb;

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

/// A withdrawal whose receipt does not come in time (a Hardhat node with automatic
/// mining off, and a 2-second receipt timeout) keeps its debit: it may still be mined.
/// Reconciliation confirms it once mined; a second one, dropped by the node, is
/// reversed (issue 20, item 5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_withdrawal_keeps_its_debit_until_the_chain_decides() {
    use platform::payments::{PaymentError, Reclaim};
    let Some(node) = common::hardhat().await else {
        return;
    };
    let db = TestDb::sqlite().await;
    let store = &db.store;
    let rpc = common::impatient_rpc(&node, 2).await;
    let (contracts, payments) = common::payments_on(store, chain::AnyChain::Rpc(rpc)).await;
    let wallet = chain::dev::dev_accounts(10)[4];
    let user = store.upsert_user(&format!("{wallet:#x}")).await.unwrap();
    const ETH: u128 = 10u128.pow(18);
    payments.deposit(user.id, Wei(ETH)).await.unwrap();

    let raw = common::impatient_rpc(&node, 5).await;
    raw.dev_request("evm_setAutomine", serde_json::json!([false]))
        .await
        .unwrap();

    // Sent, not mined: an error that says so, and the debit stays.
    let err = payments.withdraw(user.id, Wei(ETH / 4)).await.unwrap_err();
    let hash = match &err {
        PaymentError::Chain(e) => e.unconfirmed().expect("an unconfirmed transfer"),
        other => panic!("expected an unconfirmed transfer, got {other}"),
    };
    assert!(err.to_string().contains("may still be mined"), "{err}");
    assert_eq!(
        store.balance(user.id).await.unwrap().available_wei,
        Wei(ETH - ETH / 4)
    );
    let sweep = || payments.reconcile(&Reclaim::Everything);
    let done = sweep().await.unwrap();
    assert!(
        done.withdrawals_finished.is_empty(),
        "still in the mempool: {done:?}"
    );
    assert_eq!(
        store.balance(user.id).await.unwrap().available_wei,
        Wei(ETH - ETH / 4)
    );

    // Mined: confirmed, the debit stands, and the contract agrees.
    raw.dev_request("evm_mine", serde_json::json!([]))
        .await
        .unwrap();
    let done = sweep().await.unwrap();
    assert_eq!(done.withdrawals_finished.len(), 1, "{done:?}");
    let key = &done.withdrawals_finished[0];
    let ct = store.chain_tx_by_key(key).await.unwrap().unwrap();
    assert_eq!(ct.status, "confirmed");
    assert_eq!(ct.tx_hash.as_deref(), Some(format!("{hash:#x}").as_str()));
    assert_eq!(
        store.balance(user.id).await.unwrap().available_wei,
        Wei(ETH - ETH / 4)
    );
    assert_eq!(contracts.balance_of(wallet).await.unwrap(), ETH - ETH / 4);

    // Sent, then dropped by the node: reversed, and nothing left the contract.
    let err = payments.withdraw(user.id, Wei(ETH / 2)).await.unwrap_err();
    let dropped = match &err {
        PaymentError::Chain(e) => e.unconfirmed().expect("an unconfirmed transfer"),
        other => panic!("expected an unconfirmed transfer, got {other}"),
    };
    assert_eq!(
        store.balance(user.id).await.unwrap().available_wei,
        Wei(ETH / 4)
    );
    raw.dev_request(
        "hardhat_dropTransaction",
        serde_json::json!([format!("{dropped:#x}")]),
    )
    .await
    .unwrap();
    let done = sweep().await.unwrap();
    assert_eq!(done.withdrawals_finished.len(), 1, "{done:?}");
    let ct = store
        .chain_tx_by_key(&done.withdrawals_finished[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ct.status, "failed");
    assert!(ct.error.unwrap_or_default().contains("dropped"));
    assert_eq!(
        store.balance(user.id).await.unwrap().available_wei,
        Wei(ETH - ETH / 4),
        "the debit is reversed"
    );
    raw.dev_request("evm_setAutomine", serde_json::json!([true]))
        .await
        .unwrap();
    assert_eq!(contracts.balance_of(wallet).await.unwrap(), ETH - ETH / 4);
    drop(node);
}

/// A match's first fee lock whose receipt does not come in time: the match is refused
/// and refunded in the database, the lock stays pending with its hash, and when it
/// lands after all, reconciliation returns the fee from the escrow on chain, so that
/// the contract and the journal agree again (issue 20, item 5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fee_lock_that_lands_after_its_match_was_refunded_is_returned() {
    use platform::payments::Reclaim;
    let Some(node) = common::hardhat().await else {
        return;
    };
    let db = TestDb::sqlite().await;
    let store = &db.store;
    let rpc = common::impatient_rpc(&node, 2).await;
    let (contracts, payments) = common::payments_on(store, chain::AnyChain::Rpc(rpc)).await;
    let (owners, mut maker) = entered_demo(store, &payments).await;
    let raw = common::impatient_rpc(&node, 5).await;
    raw.dev_request("evm_setAutomine", serde_json::json!([false]))
        .await
        .unwrap();

    // Each match's first lock is sent but not mined: the match is refused and
    // refunded (the matchmaker may try more than one).
    let formed = maker.matchmake(1).await.unwrap();
    assert!(formed.is_empty(), "{formed:?}");
    let pending = store
        .chain_txs_with_status(store::TxStatus::Pending)
        .await
        .unwrap();
    let locks: Vec<_> = pending
        .iter()
        .filter(|ct| ct.idempotency_key.starts_with("lock:entry:"))
        .collect();
    assert!(!locks.is_empty(), "{pending:?}");
    let mut matches = Vec::new();
    for lock in &locks {
        assert!(lock.tx_hash.is_some(), "the sent lock's hash is kept");
        let entry_id: i64 = lock.idempotency_key["lock:entry:".len()..].parse().unwrap();
        let match_id = store.entry(entry_id).await.unwrap().match_id.unwrap();
        assert_eq!(
            store.get_match(match_id).await.unwrap().status,
            store::match_status::REFUNDED
        );
        matches.push(match_id as u64);
    }

    // Still in the mempool: a sweep leaves them.
    payments.reconcile(&Reclaim::Everything).await.unwrap();
    for lock in &locks {
        let row = store.chain_tx_by_key(&lock.idempotency_key).await.unwrap();
        assert_eq!(row.unwrap().status, "pending");
    }

    // They land after all. Hardhat answers calls from its pending block, so the
    // refunds saw the pending locks and were sent behind them (unconfirmed too); on a
    // node that answers from the latest block, the sweep below refunds the escrow
    // the late lock opened. Either way, after the sweep no fee is left in an escrow.
    raw.dev_request("evm_mine", serde_json::json!([]))
        .await
        .unwrap();
    raw.dev_request("evm_setAutomine", serde_json::json!([true]))
        .await
        .unwrap();
    let done = payments.reconcile(&Reclaim::Everything).await.unwrap();
    assert!(done.failed.is_empty(), "{done:?}");
    for &m in &matches {
        let escrow = contracts.escrow(m).await.unwrap();
        assert_eq!(
            (escrow.status, escrow.held),
            (chain::MatchStatus::Refunded, 0)
        );
    }
    for lock in &locks {
        let row = store
            .chain_tx_by_key(&lock.idempotency_key)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.status, "failed");
        assert!(row.error.unwrap_or_default().contains("landed after"));
    }
    // Every owner's balance in the contract is what the journal says.
    common::assert_journal_matches_chain(store, &contracts, &owners).await;
    drop(node);
}

/// The sweep's side of a late fee lock, on the embedded chain: the database refunded
/// a match (as a refusal after an unconfirmed lock does) while the lock, noted as
/// sent, landed in the escrow; the sweep returns the escrow on chain (issue 20, item 5).
#[tokio::test]
async fn the_sweep_returns_an_escrow_a_late_lock_opened() {
    use platform::payments::Reclaim;
    let db = TestDb::sqlite().await;
    let store = &db.store;
    let (contracts, payments) = common::embedded_payments(store).await;
    let (owners, mut maker) = entered_demo(store, &payments).await;
    let formed = maker.matchmake(1).await.unwrap();
    let match_id = formed[0];
    // As after an unconfirmed lock: the lock row pending with its hash, the match
    // refunded in the database only, the fees still in the escrow.
    let entry = store.match_entries(match_id).await.unwrap()[0].clone();
    let key = format!("lock:entry:{}", entry.id);
    let row = store.chain_tx_by_key(&key).await.unwrap().unwrap();
    let hash = row.tx_hash.clone().unwrap();
    store
        .note_chain_tx_sent(row.id, &hash, "sent but not confirmed (test)")
        .await
        .unwrap();
    store
        .refund_match(match_id, "refused: its fee lock was not confirmed", None)
        .await
        .unwrap();
    let escrow = contracts.escrow(match_id as u64).await.unwrap();
    assert_eq!(escrow.status, chain::MatchStatus::Open);

    let done = payments.reconcile(&Reclaim::Everything).await.unwrap();
    assert!(done.failed.is_empty(), "{done:?}");
    let escrow = contracts.escrow(match_id as u64).await.unwrap();
    assert_eq!(
        (escrow.status, escrow.held),
        (chain::MatchStatus::Refunded, 0)
    );
    let row = store.chain_tx_by_key(&key).await.unwrap().unwrap();
    assert_eq!(row.status, "failed");
    assert!(row.error.unwrap_or_default().contains("landed after"));
    common::assert_journal_matches_chain(store, &contracts, &owners).await;
}

/// The demo owners and agents on `payments`, in Math Sprint's bronze tier, every agent
/// entered; returns the owners and a matchmaker ready to form their matches.
async fn entered_demo(
    store: &store::Store,
    payments: &std::sync::Arc<platform::payments::Payments>,
) -> (Vec<i64>, platform::matchmaker::Matchmaker) {
    let spaces = common::shipped_spaces(store, &["math-sprint"]).await;
    let eth = Wei(platform::demo::ETH);
    let population = platform::demo::seed_demo(store, payments, &spaces, &[("bronze", eth)], eth)
        .await
        .unwrap();
    let maker = platform::matchmaker::Matchmaker::new(
        store.clone(),
        payments.clone(),
        platform::bus::Bus::new(),
        platform::jobs::MatchQueue::in_process(),
        spaces,
        platform::play::RunnerConfig::default(),
        "srv".into(),
    );
    maker.auto_enter().await.unwrap();
    (population.owners, maker)
}
