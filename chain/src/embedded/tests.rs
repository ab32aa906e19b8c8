//! Tests of the embedded chain: persistence (replay, snapshots, torn writes, failed
//! writes), the one-writer lock, and that reverted transactions are never mined.

use super::*;
use crate::contracts::{Contracts, NewRecord, Payout};

fn transfer(from: Address, to: Address, wei: u64) -> TxRequest {
    TxRequest {
        from,
        to: Some(to),
        value: U256::from(wei),
        ..Default::default()
    }
}

#[tokio::test]
async fn replayed_state_equals_the_live_state() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Embedded::open(dir.path(), DEFAULT_CHAIN_ID, 4).unwrap();
    let a = chain.accounts();
    let c = Contracts::deploy(&chain, a[0], a[0]).await.unwrap();
    c.deposit(a[1], 500).await.unwrap();
    c.deposit(a[2], 500).await.unwrap();
    c.declare_space(a[0], 4, 2_500).await.unwrap();
    c.lock_fee(a[0], 9, 4, a[1], 100).await.unwrap();
    c.lock_fee(a[0], 9, 4, a[2], 100).await.unwrap();
    let payouts = [
        Payout {
            payee: a[1],
            amount: 150,
        },
        Payout {
            payee: a[2],
            amount: 0,
        },
    ];
    c.settle(a[0], 9, &payouts, B256::repeat_byte(3))
        .await
        .unwrap();
    c.withdraw(a[1], 550).await.unwrap(); // clears a[1]'s balance slot
    let rec = NewRecord {
        agent_id: 1,
        new_adapter_hash: B256::repeat_byte(1),
        ..NewRecord::default()
    };
    c.set_trainer(a[0], a[2], true).await.unwrap();
    c.record(a[2], &rec).await.unwrap();
    let live = chain.world().capture();
    drop(chain);

    let reopened = Embedded::open(dir.path(), DEFAULT_CHAIN_ID, 4).unwrap();
    assert_eq!(reopened.world().capture(), live);
}

#[tokio::test]
async fn snapshots_are_taken_and_replay_continues_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Embedded::open(dir.path(), DEFAULT_CHAIN_ID, 2).unwrap();
    let a = chain.accounts();
    let blocks = SNAPSHOT_EVERY + 5;
    for _ in 0..blocks {
        chain.send(transfer(a[0], a[1], 1)).await.unwrap();
    }
    let saved: SavedState =
        serde_json::from_slice(&std::fs::read(dir.path().join("state.json")).unwrap()).unwrap();
    assert_eq!(
        saved.head, SNAPSHOT_EVERY,
        "a snapshot is taken every {SNAPSHOT_EVERY} blocks"
    );
    let live = chain.world().capture();
    drop(chain);

    let reopened = Embedded::open(dir.path(), DEFAULT_CHAIN_ID, 2).unwrap();
    assert_eq!(reopened.block_number().await.unwrap(), blocks);
    assert_eq!(reopened.world().capture(), live);
    let expected = U256::from(dev::DEV_BALANCE_WEI + u128::from(blocks));
    assert_eq!(reopened.balance(a[1]).await.unwrap(), expected);
    assert_eq!(
        reopened.block(blocks).unwrap().parent_hash,
        reopened.block(blocks - 1).unwrap().hash
    );
}

#[tokio::test]
async fn missing_state_next_to_blocks_is_refused_not_wiped() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Embedded::open(dir.path(), DEFAULT_CHAIN_ID, 2).unwrap();
    let a = chain.accounts();
    chain.send(transfer(a[0], a[1], 1)).await.unwrap();
    drop(chain);
    std::fs::remove_file(dir.path().join("state.json")).unwrap();
    let err = Embedded::open(dir.path(), DEFAULT_CHAIN_ID, 2).unwrap_err();
    assert!(matches!(err, ChainError::CorruptState { .. }), "{err}");
    assert!(
        std::fs::metadata(dir.path().join("blocks.jsonl"))
            .unwrap()
            .len()
            > 0
    );
}

#[tokio::test]
async fn a_failed_block_write_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Embedded::open(dir.path(), DEFAULT_CHAIN_ID, 2).unwrap();
    let a = chain.accounts();
    // A directory where the block file should be makes the append fail.
    std::fs::remove_file(dir.path().join("blocks.jsonl")).ok();
    std::fs::create_dir(dir.path().join("blocks.jsonl")).unwrap();
    let before = chain.balance(a[1]).await.unwrap();
    let err = chain.send(transfer(a[0], a[1], 5)).await.unwrap_err();
    assert!(matches!(err, ChainError::Io { .. }), "{err}");
    assert_eq!(chain.block_number().await.unwrap(), 0);
    assert_eq!(chain.balance(a[1]).await.unwrap(), before);
}

#[test]
fn one_opener_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = Embedded::open(dir.path(), DEFAULT_CHAIN_ID, 1).unwrap();
    let second = Embedded::open(dir.path(), DEFAULT_CHAIN_ID, 1).unwrap_err();
    assert!(matches!(second, ChainError::InUse(_)), "{second}");
    drop(first);
    Embedded::open(dir.path(), DEFAULT_CHAIN_ID, 1).unwrap();
}

#[tokio::test]
async fn reverted_transactions_are_not_mined() {
    let chain = Embedded::ephemeral(DEFAULT_CHAIN_ID, 2);
    let a = chain.accounts();
    let c = Contracts::deploy(&chain, a[0], a[0]).await.unwrap();
    let head = chain.block_number().await.unwrap();
    assert!(c.withdraw(a[1], 1).await.is_err());
    assert_eq!(chain.block_number().await.unwrap(), head);
    c.deposit(a[1], 1).await.unwrap();
    assert_eq!(chain.block_number().await.unwrap(), head + 1);
}
