//! An embedded chain saved by an older build, with the version-1 Arena contract (its
//! committed bytecode, `tests/fixtures/arena-v1.json`), moves to the current contract
//! on open: open escrows are returned, every dev wallet's balance moves across, old
//! result roots are anchored in the new contract, the registry and its records stay.
//! A configured (RPC-style) deployment of the old version is refused with a clear error.

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::sol;
use alloy::sol_types::{SolCall, SolConstructor};
use chain::bindings::ProofOfLearning;
use chain::{Chain, ChainConfig, ChainError, Contracts, Deployment, Embedded, TxRequest};

sol! {
    contract ArenaV1 {
        constructor(address initialOperator);
        function lockFee(uint256 matchId, address user, uint256 fee) external;
        function settle(uint256 matchId, address[] payees, uint256[] amounts, address treasury, bytes32 resultRoot) external;
    }
}

const FEE: u128 = 10u128.pow(17);

fn v1_bytecode() -> Vec<u8> {
    let text = include_str!("fixtures/arena-v1.json");
    let json: serde_json::Value = serde_json::from_str(text).unwrap();
    let hex = json["bytecode"].as_str().unwrap();
    alloy::hex::decode(hex.trim_start_matches("0x")).unwrap()
}

async fn create(chain: &Embedded, from: Address, init: Vec<u8>) -> Address {
    let receipt = chain
        .send(TxRequest {
            from,
            to: None,
            data: Bytes::from(init),
            value: U256::ZERO,
        })
        .await
        .unwrap();
    receipt.contract_address.unwrap()
}

async fn send(chain: &Embedded, from: Address, to: Address, data: Vec<u8>) {
    chain
        .send(TxRequest {
            from,
            to: Some(to),
            data: Bytes::from(data),
            value: U256::ZERO,
        })
        .await
        .unwrap();
}

/// An embedded chain in `data` as a version-1 build left it: two matches, one settled
/// and one still open, and one proof-of-learning record.
async fn old_chain(data: &std::path::Path) -> (Deployment, Vec<Address>, B256) {
    let dir = chain::any::embedded_dir(data);
    let chain = Embedded::open(&dir, 31337, chain::dev::DEFAULT_DEV_ACCOUNTS).unwrap();
    let a = chain.accounts();
    let (op, alice, bob) = (a[0], a[1], a[2]);
    let init = [
        v1_bytecode(),
        ArenaV1::constructorCall {
            initialOperator: op,
        }
        .abi_encode(),
    ]
    .concat();
    let arena = create(&chain, op, init).await;
    let pol_init = [
        ProofOfLearning::BYTECODE.to_vec(),
        ProofOfLearning::constructorCall { initialTrainer: op }.abi_encode(),
    ]
    .concat();
    let proof_of_learning = create(&chain, op, pol_init).await;
    let deployment = Deployment {
        arena,
        proof_of_learning,
        fee_token: None,
    };
    let c = Contracts::at(&chain, deployment);
    c.deposit(alice, 5 * FEE).await.unwrap();
    c.deposit(bob, 5 * FEE).await.unwrap();
    let lock = |m: u64, who: Address| {
        ArenaV1::lockFeeCall {
            matchId: U256::from(m),
            user: who,
            fee: U256::from(FEE),
        }
        .abi_encode()
    };
    send(&chain, op, arena, lock(1, alice)).await;
    send(&chain, op, arena, lock(1, bob)).await;
    let root = B256::repeat_byte(0x11);
    let settle = ArenaV1::settleCall {
        matchId: U256::from(1),
        payees: vec![alice],
        amounts: vec![U256::from(FEE * 3 / 2)],
        treasury: op,
        resultRoot: root,
    }
    .abi_encode();
    send(&chain, op, arena, settle).await;
    send(&chain, op, arena, lock(2, alice)).await;
    let record = chain::NewRecord {
        agent_id: 4,
        new_adapter_hash: B256::repeat_byte(4),
        ..chain::NewRecord::default()
    };
    c.record(op, &record).await.unwrap();
    std::fs::write(
        dir.join("deployment.json"),
        serde_json::to_vec(&deployment).unwrap(),
    )
    .unwrap();
    (deployment, a, root)
}

#[tokio::test]
async fn an_old_embedded_chain_moves_to_the_current_arena() {
    let data = tempfile::tempdir().unwrap();
    let (old, a, root) = old_chain(data.path()).await;
    let (op, alice, bob) = (a[0], a[1], a[2]);
    let cfg = ChainConfig::default();

    let c = chain::open_contracts(&cfg, data.path()).await.unwrap();
    let now = c.deployment();
    assert_ne!(now.arena, old.arena, "a new Arena contract");
    assert_eq!(
        now.proof_of_learning, old.proof_of_learning,
        "the registry stays"
    );
    assert_eq!(c.arena_version().await.unwrap(), chain::ARENA_VERSION);
    // Alice: 5 - 1 - 1 + 1.5 paid + 1 refunded (match 2 was open); Bob: 5 - 1.
    assert_eq!(c.balance_of(alice).await.unwrap(), 11 * FEE / 2);
    assert_eq!(c.balance_of(bob).await.unwrap(), 4 * FEE);
    assert_eq!(c.balance_of(op).await.unwrap(), FEE / 2, "the old rake");
    assert_eq!(c.arena_funds().await.unwrap(), 10 * FEE);
    assert_eq!(
        c.chain().balance(old.arena).await.unwrap(),
        U256::ZERO,
        "nothing is left in the old contract"
    );
    assert_eq!(c.result_root(1).await.unwrap(), root, "old roots anchored");
    assert_eq!(c.escrow(2).await.unwrap().status, chain::MatchStatus::None);
    assert_eq!(c.record_count().await.unwrap(), 1, "records kept");
    drop(c);

    // Opening again finds the current contract: nothing moves twice.
    let again = chain::open_contracts(&cfg, data.path()).await.unwrap();
    assert_eq!(again.deployment(), now);
    assert_eq!(again.balance_of(alice).await.unwrap(), 11 * FEE / 2);
}

#[tokio::test]
async fn a_configured_old_arena_is_refused_by_name() {
    let data = tempfile::tempdir().unwrap();
    let (old, _, _) = old_chain(data.path()).await;
    let cfg = ChainConfig {
        arena_address: Some(old.arena),
        proof_of_learning_address: Some(old.proof_of_learning),
        ..ChainConfig::default()
    };
    let err = chain::open_contracts(&cfg, data.path()).await.unwrap_err();
    assert!(
        matches!(err, ChainError::WrongArenaVersion(at) if at == old.arena),
        "{err}"
    );
    assert!(err.to_string().contains("rlfc chain deploy"), "{err}");
}
