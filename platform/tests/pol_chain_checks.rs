//! `verify-pol`'s checks against the chain's own facts: a record must be written by
//! the Arena operator or a trainer the registry lists, and each match result it builds on must be the root the Arena
//! contract stored when it settled the match (a free-tier match, never settled on
//! chain, is noted as unanchored).

mod common;

use std::collections::BTreeMap;

use alloy::primitives::B256;
use platform::learning::{RunEvidence, chain_checks};

fn evidence(results: &[(i64, B256)]) -> RunEvidence {
    RunEvidence {
        pairs: Vec::new(),
        match_results: results
            .iter()
            .map(|(id, root)| (*id, format!("{root}")))
            .collect::<BTreeMap<_, _>>(),
        hyperparams: agents::dpo::DpoConfig::default(),
        parent_adapter_hash: None,
        stored_pairs_root: None,
    }
}

#[tokio::test]
async fn records_by_unlisted_trainers_and_results_the_contract_did_not_settle_are_refused() {
    let db = testkit::db::TestDb::sqlite().await;
    let (contracts, _) = common::embedded_payments(&db.store).await;
    let dev = chain::dev::dev_accounts(10);
    let (operator, player, stranger) = (dev[common::OPERATOR], dev[1], dev[3]);
    // Match 5 is paid: its fee is locked and its settlement stores the result root.
    let settled = B256::repeat_byte(0x5a);
    contracts.deposit(player, 1_000).await.unwrap();
    contracts.declare_space(operator, 1, 500).await.unwrap();
    contracts
        .lock_fee(operator, 5, 1, player, 100)
        .await
        .unwrap();
    contracts
        .settle(
            operator,
            5,
            &[chain::Payout {
                payee: player,
                amount: 95,
            }],
            settled,
        )
        .await
        .unwrap();
    let fields = chain::NewRecord {
        agent_id: 1,
        parent_adapter_hash: B256::ZERO,
        new_adapter_hash: B256::repeat_byte(1),
        pairs_root: B256::repeat_byte(2),
        results_root: B256::repeat_byte(3),
        hyperparams_hash: B256::repeat_byte(4),
    };
    let (by_operator, _) = contracts.record(operator, &fields).await.unwrap();
    let record = contracts.get_record(by_operator).await.unwrap();

    // Match 7 is free: nothing is locked, its result root is anchored.
    contracts
        .anchor_result(operator, 7, B256::repeat_byte(7))
        .await
        .unwrap();

    // The settled and anchored roots agree; match 6 (free tier, from before
    // anchoring) has no root on chain: a note.
    let honest = evidence(&[
        (5, settled),
        (6, B256::repeat_byte(6)),
        (7, B256::repeat_byte(7)),
    ]);
    let verdict = chain_checks(&contracts, &record, &honest).await.unwrap();
    assert!(verdict.passed(), "{verdict:?}");
    assert_eq!(
        verdict.checks,
        vec![
            ("recorded by a registered trainer".to_string(), true),
            (
                "match 5 result root as the Arena contract stored it".to_string(),
                true
            ),
            (
                "match 7 result root as the Arena contract stored it".to_string(),
                true
            )
        ]
    );
    assert_eq!(verdict.notes.len(), 1);
    assert!(verdict.notes[0].contains("match 6"), "{:?}", verdict.notes);

    // A result root the contract did not settle is refused, naming both roots.
    let forged = evidence(&[(5, B256::repeat_byte(0x66))]);
    let verdict = chain_checks(&contracts, &record, &forged).await.unwrap();
    let why = verdict.failure.unwrap();
    assert!(
        why.contains("match 5") && why.contains(&format!("{settled}")),
        "{why}"
    );
    // So is one that disagrees with an anchored free match's root.
    let forged = evidence(&[(7, B256::repeat_byte(0x77))]);
    let verdict = chain_checks(&contracts, &record, &forged).await.unwrap();
    let why = verdict.failure.unwrap();
    assert!(
        why.contains("match 7") && why.contains(&format!("{}", B256::repeat_byte(7))),
        "{why}"
    );

    // An account the registry does not list cannot write at all.
    let refused = contracts.record(stranger, &fields).await.unwrap_err();
    assert!(refused.to_string().contains("NotTrainer"), "{refused}");
    // One the admin registered may; once taken off the register, its records are no
    // longer vouched for, and verification stops before anything else.
    contracts
        .set_trainer(operator, stranger, true)
        .await
        .unwrap();
    let (by_stranger, _) = contracts.record(stranger, &fields).await.unwrap();
    let record = contracts.get_record(by_stranger).await.unwrap();
    let verdict = chain_checks(&contracts, &record, &honest).await.unwrap();
    assert!(verdict.passed(), "{verdict:?}");
    contracts
        .set_trainer(operator, stranger, false)
        .await
        .unwrap();
    let verdict = chain_checks(&contracts, &record, &honest).await.unwrap();
    assert_eq!(
        verdict.checks,
        vec![("recorded by a registered trainer".to_string(), false)]
    );
    assert!(verdict.failure.unwrap().contains(&format!("{stranger:#x}")),);
}
