//! Moving an embedded chain from the version-1 Arena contract (before entrant
//! protections) to the current one. Only the embedded chain can do this by itself: it
//! signs for every dev wallet, so it can return each open escrow, withdraw every dev
//! wallet's balance from the old contract and deposit it into the new one, and anchor
//! every old settlement's result root in the new contract (so that proofs of learning
//! over old matches still check against the Arena). The ProofOfLearning registry is
//! unchanged and kept, with its records.
//!
//! On an RPC chain the operator deploys the new contracts (`rlfc chain deploy`) and
//! users withdraw from the old one with their own keys.

use std::collections::BTreeMap;

use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::{SolCall, SolEvent};

use crate::backend::{Chain, TxRequest};
use crate::bindings::Arena;
use crate::contracts::{ArenaTerms, Contracts, Deployment, view};
use crate::error::{ChainError, Result};

/// What a migration did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Migrated {
    /// The old Arena contract.
    pub from: Address,
    /// The new deployment (the registry is the old one).
    pub to: Option<Deployment>,
    /// Matches whose escrow was still open in the old contract and was refunded.
    pub refunded: Vec<u64>,
    /// Accounts whose balance moved, with the amount.
    pub moved: Vec<(Address, u128)>,
    /// Result roots anchored in the new contract.
    pub anchored: usize,
    /// Balances left in the old contract because this chain cannot sign for them.
    pub stranded: Vec<(Address, u128)>,
}

/// Whether the Arena at `deployment` speaks the current rules (a contract from before
/// versions existed has no `VERSION` and reverts).
pub async fn is_current<C: Chain>(chain: &C, deployment: Deployment) -> Result<bool> {
    let tx = TxRequest {
        to: Some(deployment.arena),
        data: Arena::VERSIONCall {}.abi_encode().into(),
        ..Default::default()
    };
    match chain.call(tx).await {
        Ok(out) => Ok(Arena::VERSIONCall::abi_decode_returns(&out)
            .is_ok_and(|v| v == U256::from(crate::rules::ARENA_VERSION))),
        Err(ChainError::Reverted(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

async fn old_send<C: Chain, T: SolCall>(
    chain: &C,
    from: Address,
    to: Address,
    call: T,
) -> Result<()> {
    let tx = TxRequest {
        from,
        to: Some(to),
        data: call.abi_encode().into(),
        value: U256::ZERO,
    };
    chain.send(tx).await.map(drop)
}

/// Deploys a current Arena from `deployer` on `terms` next to the registry of `old`,
/// and moves everything the chain can sign for out of the old Arena into it. The
/// functions used on the old contract (`refund`, `withdraw`, `balanceOf`,
/// `operator`, and the lock, settle and refund events) have the same signatures in
/// both versions.
pub async fn migrate_arena<C: Chain + Clone>(
    chain: C,
    old: Deployment,
    deployer: Address,
    terms: ArenaTerms,
) -> Result<(Deployment, Migrated)> {
    let mut done = Migrated {
        from: old.arena,
        ..Migrated::default()
    };
    let signers = chain.accounts();
    // 1. Return every open escrow in the old contract.
    let mut open: BTreeMap<U256, bool> = BTreeMap::new();
    let mut roots: Vec<(U256, B256)> = Vec::new();
    for mined in chain.logs(old.arena, 0).await? {
        let data = &mined.log.data;
        if let Ok(e) = Arena::FeeLocked::decode_log_data(data) {
            open.entry(e.matchId).or_insert(true);
        } else if let Ok(e) = Arena::MatchSettled::decode_log_data(data) {
            open.insert(e.matchId, false);
            roots.push((e.matchId, e.resultRoot));
        } else if let Ok(e) = Arena::MatchRefunded::decode_log_data(data) {
            open.insert(e.matchId, false);
        }
    }
    let old_operator = view(&chain, old.arena, Arena::operatorCall {}).await?;
    for (match_id, still_open) in &open {
        if *still_open {
            old_send(
                &chain,
                old_operator,
                old.arena,
                Arena::refundCall { matchId: *match_id },
            )
            .await?;
            done.refunded.push(match_id.saturating_to());
        }
    }
    // 2. The new Arena, next to the old registry.
    let fresh = Contracts::deploy_with(chain.clone(), deployer, terms).await?;
    let deployment = Deployment {
        arena: fresh.deployment().arena,
        proof_of_learning: old.proof_of_learning,
        fee_token: None,
    };
    let contracts = Contracts::at(chain.clone(), deployment);
    // 3. Every balance the chain can sign for moves across.
    let mut holders: Vec<Address> = signers.clone();
    // The configured treasury too, which may be an address this chain cannot sign
    // for: its balance is then reported as stranded.
    if !holders.contains(&terms.treasury) {
        holders.push(terms.treasury);
    }
    for who in holders {
        let balance: U256 = view(&chain, old.arena, Arena::balanceOfCall(who)).await?;
        if balance.is_zero() {
            continue;
        }
        let amount: u128 = balance.saturating_to();
        if !signers.contains(&who) {
            done.stranded.push((who, amount));
            continue;
        }
        old_send(
            &chain,
            who,
            old.arena,
            Arena::withdrawCall { amount: balance },
        )
        .await?;
        contracts.deposit(who, amount).await?;
        done.moved.push((who, amount));
    }
    // 4. Old settlements' result roots, anchored where proofs now look.
    for (match_id, root) in roots {
        contracts
            .anchor_result(terms.operator, match_id.saturating_to(), root)
            .await?;
        done.anchored += 1;
    }
    done.to = Some(deployment);
    Ok((deployment, done))
}
