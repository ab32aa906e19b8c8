//! One contract test suite, written once over the `Chain` trait and run against both
//! backends: the embedded revm chain, and a Hardhat node (started here on a free port
//! and stopped afterwards) through the RPC backend. Each backend runs it twice: on the
//! ETH `Arena`, and on the `TokenArena` with a 6-decimal test token (as USDC has), so
//! every escrow rule is checked for both fee assets.

use testkit::hardhat as support;

mod arena;
mod registry;

use alloy::primitives::Address;
use chain::embedded::{DEFAULT_CHAIN_ID, Embedded};
use chain::{ArenaTerms, Chain, ChainError, Contracts, FeeAsset, FeeUnit};

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

/// Which fee asset a run of the suite uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Asset {
    Eth,
    /// A test token with 6 decimals, minted to every account of the cast.
    Token,
}

/// Runs every scenario on `chain`, with fees in `asset`.
async fn suite<C: Chain>(chain: &C, asset: Asset) {
    let cast = Cast::of(chain);
    let terms = ArenaTerms {
        operator: cast.operator,
        treasury: cast.treasury,
        reclaim_after_secs: RECLAIM_AFTER_SECS,
    };
    let fee_asset = match asset {
        Asset::Eth => FeeAsset::Eth,
        Asset::Token => {
            // A token Arena over an account that is not a contract is refused.
            let not_a_token = FeeAsset::Token(cast.alice);
            let refused = match Contracts::deploy_for(chain, cast.admin, terms, not_a_token).await {
                Err(e) => e,
                Ok(_) => panic!("a token Arena over a non-contract was deployed"),
            };
            assert!(
                matches!(
                    refused.arena_error(),
                    Some(chain::bindings::Arena::ArenaErrors::ZeroAddress(_))
                ),
                "{refused}"
            );
            let holders = chain.accounts();
            let token = Contracts::deploy_test_token(chain, cast.admin, 6, &holders, 100 * ETH)
                .await
                .unwrap();
            FeeAsset::Token(token)
        }
    };
    let c = Contracts::deploy_for(chain, cast.admin, terms, fee_asset)
        .await
        .unwrap();
    assert_eq!(c.fee_asset(), fee_asset);
    let unit = c.fee_unit().await.unwrap();
    match asset {
        Asset::Eth => assert_eq!(unit, FeeUnit::eth()),
        Asset::Token => {
            assert_eq!(
                unit,
                FeeUnit {
                    symbol: chain::TEST_TOKEN_SYMBOL.into(),
                    decimals: 6
                }
            );
            arena::token_deposits(&c, &cast).await;
        }
    }
    // Opening the same addresses again finds the same asset.
    let found = Contracts::discover(
        chain,
        c.deployment().arena,
        c.deployment().proof_of_learning,
    )
    .await
    .unwrap();
    assert_eq!(found.deployment(), c.deployment());
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
    assert_eq!(c.arena_funds().await.unwrap(), owed);
}

#[tokio::test]
async fn suite_on_embedded_chain() {
    let chain = Embedded::ephemeral(DEFAULT_CHAIN_ID, 10);
    suite(&chain, Asset::Eth).await;
}

#[tokio::test]
async fn suite_on_embedded_chain_with_a_fee_token() {
    let chain = Embedded::ephemeral(DEFAULT_CHAIN_ID, 10);
    suite(&chain, Asset::Token).await;
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
    suite(&rpc, Asset::Eth).await;
    suite(&rpc, Asset::Token).await;

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

mod hook {
    #![allow(missing_docs, clippy::too_many_arguments)]
    alloy::sol!(
        #[derive(Debug, PartialEq, Eq)]
        HookToken,
        "tests/fixtures/HookToken.json"
    );
}

/// A token that calls back into the Arena from inside `transferFrom` (as a token with
/// transfer hooks would) cannot re-enter `deposit`: the nested call is refused with
/// `Reentered`, while the token itself would have let it through (the hook holds
/// tokens and an allowance), and the outer deposit credits exactly what arrived.
#[tokio::test]
async fn a_token_that_calls_back_cannot_reenter_a_deposit() {
    use alloy::primitives::U256;
    use alloy::sol_types::{SolCall, SolError};
    use chain::bindings::TokenArena;
    let chain = Embedded::ephemeral(DEFAULT_CHAIN_ID, 10);
    let cast = Cast::of(&chain);
    let send = |from: Address, to: Option<Address>, data: Vec<u8>| chain::TxRequest {
        from,
        to,
        data: data.into(),
        value: U256::ZERO,
    };
    let created = chain
        .send(send(cast.admin, None, hook::HookToken::BYTECODE.to_vec()))
        .await
        .unwrap();
    let token = created.contract_address.unwrap();
    let terms = ArenaTerms::operated_by(cast.operator);
    let c = Contracts::deploy_for(&chain, cast.admin, terms, FeeAsset::Token(token))
        .await
        .unwrap();
    let arena = c.deployment().arena;
    let call = |to: Address, data: Vec<u8>| chain.send(send(cast.admin, Some(to), data));
    for (to, amount) in [(cast.alice, 10 * FEE), (token, FEE)] {
        let mint = hook::HookToken::mintCall {
            to,
            amount: U256::from(amount),
        };
        call(token, mint.abi_encode()).await.unwrap();
    }
    let nested = TokenArena::depositCall {
        amount: U256::from(1u8),
    };
    let set = hook::HookToken::setHookCall {
        target: arena,
        data: nested.abi_encode().into(),
    };
    call(token, set.abi_encode()).await.unwrap();

    c.deposit(cast.alice, FEE).await.unwrap();
    let view = |data: Vec<u8>| chain.call(send(Address::ZERO, Some(token), data));
    let ok = hook::HookToken::hookOkCall {}.abi_encode();
    let ok = hook::HookToken::hookOkCall::abi_decode_returns(&view(ok).await.unwrap()).unwrap();
    assert!(!ok, "the nested deposit must be refused");
    let ret = hook::HookToken::hookReturnCall {}.abi_encode();
    let ret =
        hook::HookToken::hookReturnCall::abi_decode_returns(&view(ret).await.unwrap()).unwrap();
    assert_eq!(
        ret.as_ref(),
        TokenArena::Reentered {}.abi_encode().as_slice(),
        "refused as a re-entry"
    );
    assert_eq!(c.balance_of(cast.alice).await.unwrap(), FEE);
    assert_eq!(c.balance_of(token).await.unwrap(), 0);
    assert_eq!(c.arena_funds().await.unwrap(), FEE);
}
