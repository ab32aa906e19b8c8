//! One contract test suite, written once over the `Chain` trait and run against both
//! backends: the embedded revm chain, and a Hardhat node (started here on a free port
//! and stopped afterwards) through the RPC backend.

use testkit::hardhat as support;

mod arena;
mod registry;

use alloy::primitives::Address;
use chain::embedded::{DEFAULT_CHAIN_ID, Embedded};
use chain::{ArenaTerms, Chain, ChainError, Contracts};

const ETH: u128 = 1_000_000_000_000_000_000;
const FEE: u128 = ETH / 10;
/// The suite's reclaim delay: short, so that the reclaim scenario can wait it out.
const RECLAIM_AFTER_SECS: u64 = 3;

/// The roles in the suite, all dev accounts.
struct Cast {
    admin: Address,
    operator: Address,
    alice: Address,
    bob: Address,
    carol: Address,
    treasury: Address,
    mallory: Address,
    successor: Address,
}

impl Cast {
    fn of(chain: &impl Chain) -> Self {
        let a = chain.accounts();
        assert!(a.len() >= 8, "the suite needs 8 accounts");
        Self {
            admin: a[0],
            operator: a[1],
            alice: a[2],
            bob: a[3],
            carol: a[4],
            treasury: a[5],
            mallory: a[6],
            successor: a[7],
        }
    }
}

/// Runs every scenario on `chain`.
async fn suite<C: Chain>(chain: &C) {
    let cast = Cast::of(chain);
    let terms = ArenaTerms {
        operator: cast.operator,
        treasury: cast.treasury,
        reclaim_after_secs: RECLAIM_AFTER_SECS,
    };
    let c = Contracts::deploy_with(chain, cast.admin, terms)
        .await
        .unwrap();
    assert_eq!(c.admin().await.unwrap(), cast.admin);
    assert_eq!(c.operator().await.unwrap(), cast.operator);
    assert_eq!(c.treasury().await.unwrap(), cast.treasury);
    assert_eq!(c.arena_version().await.unwrap(), chain::ARENA_VERSION);

    arena::deposit_and_withdraw(&c, &cast).await;
    arena::lock_and_settle(&c, &cast).await;
    arena::escrow_rules_and_refund(&c, &cast).await;
    arena::rounding_dust(&c, &cast).await;
    arena::operator_rules(&c, &cast).await;
    registry::proof_of_learning(&c, &cast).await;
    registry::receipts_and_logs(&c, &cast).await;
    arena::reclaim_after_the_delay(&c, &cast).await;
    arena::anchor_free_results(&c, &cast).await;
    arena::concurrent_sends_around_a_revert(&c, &cast).await;

    // Solvency after everything: the contract holds exactly what it owes.
    let mut owed = 0;
    for who in [
        cast.alice,
        cast.bob,
        cast.carol,
        cast.treasury,
        cast.mallory,
    ] {
        owed += c.balance_of(who).await.unwrap();
    }
    for m in [1, 2, 3, 4, 5, 6, 20, 21] {
        owed += c.escrow(m).await.unwrap().held;
    }
    assert_eq!(c.arena_eth_balance().await.unwrap(), owed);
}

#[tokio::test]
async fn suite_on_embedded_chain() {
    let chain = Embedded::ephemeral(DEFAULT_CHAIN_ID, 10);
    suite(&chain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_on_hardhat_via_rpc() {
    let started = tokio::task::spawn_blocking(support::HardhatNode::start)
        .await
        .unwrap();
    let node = match started {
        Ok(node) => node,
        Err(reason) => {
            testkit::unavailable::<()>(&reason);
            return;
        }
    };
    let rpc = node.rpc().await;
    assert_eq!(rpc.chain_id().await.unwrap(), 31337);
    suite(&rpc).await;

    // Same bytecode, same EVM rules: every gas figure matches the embedded chain's.
    let on_hardhat = chain::gas::measure(&rpc).await.unwrap();
    let embedded = chain::gas::measure(Embedded::ephemeral(DEFAULT_CHAIN_ID, 10))
        .await
        .unwrap();
    assert_eq!(on_hardhat, embedded);

    // An unknown sender is refused before anything is signed.
    let stranger = Address::repeat_byte(0x99);
    let tx = chain::TxRequest {
        from: stranger,
        to: Some(stranger),
        ..Default::default()
    };
    assert!(matches!(rpc.send(tx).await, Err(ChainError::UnknownAccount(a)) if a == stranger));
    drop(node);
}
