//! ProofOfLearning scenarios of the suite (records, queries, Merkle proofs checked on
//! chain) and the receipts and logs every backend keeps.

use alloy::primitives::{B256, U256};
use alloy::sol_types::SolEvent;
use chain::bindings::Arena;
use chain::bindings::ProofOfLearning::{self, ProofOfLearningErrors};
use chain::contracts::events;
use chain::{Chain, Contracts, NewRecord, RecordRoot, merkle};

use crate::{Cast, FEE};

/// Records, queries by id and agent, and Rust-built Merkle proofs checked on chain.
pub async fn proof_of_learning<C: Chain>(c: &Contracts<C>, cast: &Cast) {
    let pairs: Vec<B256> = (0..5u64)
        .map(|i| merkle::ordered_leaf(i, format!("pair {i}").as_bytes()))
        .collect();
    let results: Vec<B256> = (0..3u64)
        .map(|i| merkle::leaf_hash(format!("match {i}").as_bytes()))
        .collect();
    let rec = NewRecord {
        agent_id: 42,
        parent_adapter_hash: B256::ZERO,
        new_adapter_hash: B256::repeat_byte(0xa1),
        pairs_root: merkle::root(&pairs),
        results_root: merkle::root(&results),
        hyperparams_hash: B256::repeat_byte(0x07),
    };
    // Only registered trainers write: the operator from deployment, others once the
    // admin adds them.
    assert!(c.is_trainer(cast.operator).await.unwrap());
    assert!(!c.is_trainer(cast.carol).await.unwrap());
    let refused = c.record(cast.carol, &rec).await.unwrap_err();
    assert_eq!(
        refused.pol_error(),
        Some(&ProofOfLearningErrors::NotTrainer(
            ProofOfLearning::NotTrainer { sender: cast.carol }
        ))
    );
    let not_admin = c
        .set_trainer(cast.carol, cast.carol, true)
        .await
        .unwrap_err();
    assert_eq!(
        not_admin.pol_error(),
        Some(&ProofOfLearningErrors::NotRegistryAdmin(
            ProofOfLearning::NotRegistryAdmin { sender: cast.carol }
        ))
    );
    c.set_trainer(cast.admin, cast.carol, true).await.unwrap();
    assert!(c.is_trainer(cast.carol).await.unwrap());
    let (id, r) = c.record(cast.carol, &rec).await.unwrap();
    let ev = &events::<ProofOfLearning::Recorded>(&r)[0];
    assert_eq!(
        (ev.agentId, ev.trainer, ev.pairsRoot),
        (42, cast.carol, rec.pairs_root)
    );
    let stored = c.get_record(id).await.unwrap();
    assert_eq!(
        (stored.fields, stored.trainer, stored.block_number),
        (rec, cast.carol, r.block_number)
    );

    let next = NewRecord {
        parent_adapter_hash: rec.new_adapter_hash,
        new_adapter_hash: B256::repeat_byte(0xa2),
        ..rec
    };
    let (id2, _) = c.record(cast.carol, &next).await.unwrap();
    assert_eq!(id2, id + 1);
    let history = c.agent_records(42).await.unwrap();
    assert_eq!(
        history.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![id, id2]
    );
    assert_eq!(c.agent_record_count(43).await.unwrap(), 0);
    assert_eq!(c.record_count().await.unwrap(), id2 + 1);

    // Every Rust-built proof checks out on chain; tampered ones do not.
    let tree = merkle::MerkleTree::new(pairs.clone());
    for (i, leaf) in pairs.iter().enumerate() {
        let proof = tree.proof(i).unwrap();
        assert!(c.verify_proof(&proof, tree.root(), *leaf).await.unwrap());
        assert!(
            c.verify_in_record(id, RecordRoot::Pairs, &proof, *leaf)
                .await
                .unwrap()
        );
        assert!(
            !c.verify_in_record(id, RecordRoot::Results, &proof, *leaf)
                .await
                .unwrap()
        );
    }
    let proof0 = tree.proof(0).unwrap();
    assert!(
        !c.verify_proof(&proof0, tree.root(), pairs[1])
            .await
            .unwrap(),
        "proof for another leaf"
    );
    let mut bad = proof0.clone();
    bad[0] = B256::repeat_byte(0xee);
    assert!(
        !c.verify_proof(&bad, tree.root(), pairs[0]).await.unwrap(),
        "tampered sibling"
    );
    let rproof = merkle::proof(&results, 2).unwrap();
    assert!(
        c.verify_in_record(id, RecordRoot::Results, &rproof, results[2])
            .await
            .unwrap()
    );

    // Typed errors of the registry.
    let unknown = c.get_record(999).await.unwrap_err();
    let expect = ProofOfLearningErrors::UnknownRecord(ProofOfLearning::UnknownRecord {
        id: U256::from(999),
    });
    assert_eq!(unknown.pol_error(), Some(&expect));
    let empty = NewRecord {
        new_adapter_hash: B256::ZERO,
        ..rec
    };
    let err = c.record(cast.carol, &empty).await.unwrap_err();
    assert_eq!(
        err.pol_error(),
        Some(&ProofOfLearningErrors::EmptyAdapterHash(
            ProofOfLearning::EmptyAdapterHash {}
        ))
    );
    // A trainer taken off the register writes no more; its records stay.
    c.set_trainer(cast.admin, cast.carol, false).await.unwrap();
    assert!(c.record(cast.carol, &next).await.is_err());
    assert_eq!(c.get_record(id).await.unwrap().trainer, cast.carol);
}

/// Receipts and logs are kept and found again by hash and by emitter.
pub async fn receipts_and_logs<C: Chain>(c: &Contracts<C>, cast: &Cast) {
    let r = c.deposit(cast.carol, FEE).await.unwrap();
    let again = c
        .chain()
        .receipt(r.tx_hash)
        .await
        .unwrap()
        .expect("receipt is kept");
    let arena = c.deployment().arena;
    let from_arena =
        |logs: &[alloy::primitives::Log]| logs.iter().filter(|l| l.address == arena).count();
    assert_eq!(
        (again.block_number, again.gas_used, again.logs.len()),
        (r.block_number, r.gas_used, r.logs.len())
    );
    // The Arena's Deposited (a token deposit also has the token's Transfer).
    assert_eq!(from_arena(&again.logs), 1);
    assert!(c.chain().block_number().await.unwrap() >= r.block_number);
    let logs = c.chain().logs(c.deployment().arena, 0).await.unwrap();
    assert!(
        logs.iter()
            .any(|l| l.tx_hash == r.tx_hash && l.block_number == r.block_number)
    );
    let deposits = logs
        .iter()
        .filter(|l| Arena::Deposited::decode_log(&l.log).is_ok())
        .count();
    // Alice, bob and carol (and carol once more in the token's own scenario); the
    // refused zero deposit left no log.
    let expected = match c.fee_asset() {
        chain::FeeAsset::Eth => 3,
        chain::FeeAsset::Token(_) => 4,
    };
    assert_eq!(deposits, expected);
}
