//! Restarting the embedded chain from its directory keeps every balance, escrow, record,
//! block, receipt and log, and the chain carries on from where it stopped.

use alloy::primitives::{B256, U256};
use chain::{Chain, ChainConfig, MatchStatus, NewRecord, Payout, open_contracts};

const FEE: u128 = 10u128.pow(17);

#[tokio::test]
async fn restart_keeps_state() {
    let data = tempfile::tempdir().unwrap();
    let cfg = ChainConfig::default();

    let (deployment, accounts, receipt, block, record_id) = {
        let c = open_contracts(&cfg, data.path()).await.unwrap();
        let a = c.chain().accounts();
        let (op, alice, bob, treasury) = (a[0], a[1], a[2], a[3]);
        c.deposit(alice, 5 * FEE).await.unwrap();
        c.deposit(bob, 5 * FEE).await.unwrap();
        // A Space whose rake is half the pot; the treasury is the operator's choice
        // at deployment (the config's default: the operator), then the admin's.
        c.declare_space(op, 7, 5_000).await.unwrap();
        c.set_treasury(op, treasury).await.unwrap();
        c.lock_fee(op, 1, 7, alice, FEE).await.unwrap();
        c.lock_fee(op, 1, 7, bob, FEE).await.unwrap();
        let payout = [
            Payout {
                payee: alice,
                amount: FEE,
            },
            Payout {
                payee: bob,
                amount: 0,
            },
        ];
        c.settle(op, 1, &payout, B256::repeat_byte(1))
            .await
            .unwrap();
        c.lock_fee(op, 2, 7, alice, FEE).await.unwrap();
        let rec = NewRecord {
            agent_id: 3,
            new_adapter_hash: B256::repeat_byte(2),
            ..NewRecord::default()
        };
        c.set_trainer(op, bob, true).await.unwrap();
        let (record_id, receipt) = c.record(bob, &rec).await.unwrap();
        let block = c.chain().block_number().await.unwrap();
        (c.deployment(), a, receipt, block, record_id)
    };

    let c = open_contracts(&cfg, data.path()).await.unwrap();
    assert_eq!(c.deployment(), deployment, "contracts are not redeployed");
    let (op, alice, bob, treasury) = (accounts[0], accounts[1], accounts[2], accounts[3]);
    assert_eq!(c.chain().block_number().await.unwrap(), block);
    assert_eq!(c.balance_of(alice).await.unwrap(), 4 * FEE);
    assert_eq!(c.balance_of(bob).await.unwrap(), 4 * FEE);
    assert_eq!(c.balance_of(treasury).await.unwrap(), FEE);
    assert_eq!(c.escrow(1).await.unwrap().status, MatchStatus::Settled);
    assert_eq!(c.escrow(2).await.unwrap().held, FEE);
    assert_eq!(c.result_root(1).await.unwrap(), B256::repeat_byte(1));
    assert_eq!(c.get_record(record_id).await.unwrap().trainer, bob);
    assert_eq!(c.arena_funds().await.unwrap(), 10 * FEE);
    assert_eq!(
        c.chain().receipt(receipt.tx_hash).await.unwrap(),
        Some(receipt.clone())
    );
    let logs = c
        .chain()
        .logs(deployment.proof_of_learning, 0)
        .await
        .unwrap();
    // The registry's logs: the operator and bob registered as trainers, then the record.
    assert_eq!(logs.len(), 3);
    assert_eq!(logs[2].tx_hash, receipt.tx_hash);

    // The chain carries on: nonces, blocks and the open escrow all continue.
    c.refund(op, 2).await.unwrap();
    assert_eq!(c.balance_of(alice).await.unwrap(), 5 * FEE);
    assert_eq!(c.chain().block_number().await.unwrap(), block + 1);
    let eth = c.chain().balance(alice).await.unwrap();
    c.chain().fund(alice, U256::from(7)).await.unwrap();
    drop(c);

    let c = open_contracts(&cfg, data.path()).await.unwrap();
    assert_eq!(c.chain().block_number().await.unwrap(), block + 1);
    assert_eq!(c.escrow(2).await.unwrap().status, MatchStatus::Refunded);
    assert_eq!(c.chain().balance(alice).await.unwrap(), eth + U256::from(7));
}

#[tokio::test]
async fn a_torn_last_block_line_is_dropped_on_load() {
    let data = tempfile::tempdir().unwrap();
    let cfg = ChainConfig::default();
    let block = {
        let c = open_contracts(&cfg, data.path()).await.unwrap();
        c.deposit(c.chain().accounts()[1], FEE).await.unwrap();
        c.chain().block_number().await.unwrap()
    };
    let blocks = chain::any::embedded_dir(data.path()).join("blocks.jsonl");
    let mut text = std::fs::read_to_string(&blocks).unwrap();
    text.push_str("{\"number\": 99, \"trunc");
    std::fs::write(&blocks, text).unwrap();

    let c = open_contracts(&cfg, data.path()).await.unwrap();
    assert_eq!(c.chain().block_number().await.unwrap(), block);
    c.deposit(c.chain().accounts()[1], FEE).await.unwrap();
    assert_eq!(
        c.balance_of(c.chain().accounts()[1]).await.unwrap(),
        2 * FEE
    );
}

#[tokio::test]
async fn a_saved_chain_with_another_id_is_refused() {
    let data = tempfile::tempdir().unwrap();
    open_contracts(&ChainConfig::default(), data.path())
        .await
        .unwrap();
    let other = ChainConfig {
        chain_id: Some(5),
        ..ChainConfig::default()
    };
    let err = open_contracts(&other, data.path()).await.unwrap_err();
    assert!(
        matches!(
            err,
            chain::ChainError::ChainIdMismatch {
                expected: 5,
                actual: 31337
            }
        ),
        "{err}"
    );
}

/// `chain.fee_token = "test"` on the embedded chain: the first open deploys a test token
/// (minted to every dev account) and a token Arena; the next open finds them again;
/// opening the same chain as ETH, or naming another token, is refused by name.
#[tokio::test]
async fn a_test_token_arena_is_deployed_once_and_kept() {
    let data = tempfile::tempdir().unwrap();
    let cfg = ChainConfig {
        fee_token: Some(chain::FeeTokenSetting::Test),
        ..ChainConfig::default()
    };
    let (deployment, alice) = {
        let c = open_contracts(&cfg, data.path()).await.unwrap();
        let token = c.deployment().fee_token.expect("a token Arena");
        assert_eq!(c.fee_asset(), chain::FeeAsset::Token(token));
        assert_eq!(
            c.fee_unit().await.unwrap(),
            chain::FeeUnit {
                symbol: chain::TEST_TOKEN_SYMBOL.into(),
                decimals: chain::any::TEST_TOKEN_DECIMALS,
            }
        );
        let alice = c.chain().accounts()[1];
        assert_eq!(
            c.wallet_funds(alice).await.unwrap(),
            chain::any::TEST_TOKEN_MINT
        );
        c.deposit(alice, FEE).await.unwrap();
        (c.deployment(), alice)
    };
    let c = open_contracts(&cfg, data.path()).await.unwrap();
    assert_eq!(c.deployment(), deployment, "nothing is redeployed");
    assert_eq!(c.balance_of(alice).await.unwrap(), FEE);
    assert_eq!(c.arena_funds().await.unwrap(), FEE);
    drop(c);
    // Unset, the Arena's own asset is taken; "eth" or another token is refused.
    let unset = open_contracts(&ChainConfig::default(), data.path())
        .await
        .unwrap();
    assert_eq!(unset.deployment(), deployment);
    drop(unset);
    for other in [
        chain::FeeTokenSetting::Eth,
        chain::FeeTokenSetting::Token(alloy::primitives::Address::repeat_byte(7)),
    ] {
        let cfg = ChainConfig {
            fee_token: Some(other),
            ..ChainConfig::default()
        };
        let err = open_contracts(&cfg, data.path()).await.unwrap_err();
        assert!(
            matches!(err, chain::ChainError::FeeAssetMismatch { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chain.fee_token"), "{err}");
    }
}
