//! Gas figures for each contract operation, measured by running them on a chain (the
//! embedded one by default; gas is the same on any chain with Cancun rules). Used by
//! `cargo run -p chain --example gas` to print the table in `docs/benchmarks.md`.

use alloy::primitives::{Address, B256, U256};

use crate::backend::Chain;
use crate::contracts::{ArenaTerms, Contracts, NewRecord, Payout};
use crate::error::{ChainError, Result};
use crate::merkle;

/// Players in the measured match.
pub const PLAYERS: usize = 8;

const ETH: u128 = 10u128.pow(18);
const SPACE: u64 = 1;
const RAKE_BPS: u16 = 500;
const FEE: u128 = ETH / 10;

/// The gas one operation used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GasFigure {
    /// What was done.
    pub operation: String,
    /// Gas used, as a receipt reports it (sum over transactions for multi-tx rows).
    pub gas: u64,
    /// Transactions it took.
    pub transactions: usize,
}

impl GasFigure {
    fn new(operation: impl Into<String>, gas: u64, transactions: usize) -> Self {
        Self {
            operation: operation.into(),
            gas,
            transactions,
        }
    }
}

/// Measures every operation on `chain`, which needs at least `PLAYERS + 2` accounts:
/// the first deploys and operates, the next eight play, the one after is the treasury.
/// Players deposit twice the fee first, so payouts credit balances that are not zero
/// (the steady state of a returning player).
pub async fn measure<C: Chain>(chain: C) -> Result<Vec<GasFigure>> {
    let accounts = chain.accounts();
    if accounts.len() < PLAYERS + 2 {
        return Err(ChainError::UnknownAccount(Address::ZERO));
    }
    let operator = accounts[0];
    let players = &accounts[1..=PLAYERS];
    let treasury = accounts[PLAYERS + 1];
    let mut figures = Vec::new();

    let terms = ArenaTerms {
        treasury,
        ..ArenaTerms::operated_by(operator)
    };
    let contracts = Contracts::deploy_with(chain, operator, terms).await?;
    // Every measured match is in Space 1, whose rake is 5%.
    contracts.declare_space(operator, SPACE, RAKE_BPS).await?;
    let first_deposit = contracts.deposit(players[0], 2 * FEE).await?;
    figures.push(GasFigure::new(
        "deposit (first, new balance)",
        first_deposit.gas_used,
        1,
    ));
    let top_up = contracts.deposit(players[0], FEE).await?;
    figures.push(GasFigure::new("deposit (top-up)", top_up.gas_used, 1));
    for p in &players[1..] {
        contracts.deposit(*p, 3 * FEE).await?;
    }
    // The treasury has been paid before, as it will have been in steady state.
    contracts.deposit(treasury, FEE).await?;

    // One 8-player match settled in one call.
    let mut lock_first = 0;
    let mut lock_next = 0;
    for (i, p) in players.iter().enumerate() {
        let r = contracts.lock_fee(operator, 1, SPACE, *p, FEE).await?;
        if i == 0 {
            lock_first = r.gas_used
        } else {
            lock_next = r.gas_used
        }
    }
    figures.push(GasFigure::new(
        "lockFee (first entry of a match)",
        lock_first,
        1,
    ));
    figures.push(GasFigure::new("lockFee (later entry)", lock_next, 1));
    let payouts = split_pot(players, FEE * PLAYERS as u128);
    let root = result_root(1);
    let settle = contracts.settle(operator, 1, &payouts, root).await?;
    figures.push(GasFigure::new(
        format!("settle, {PLAYERS} payees in one call"),
        settle.gas_used,
        1,
    ));

    // The same eight payouts as eight transactions (one single-payee settlement each).
    let mut separate = 0;
    for (i, p) in players.iter().enumerate() {
        let match_id = 100 + i as u64;
        contracts
            .lock_fee(operator, match_id, SPACE, *p, FEE)
            .await?;
        let one = [Payout {
            payee: *p,
            amount: FEE - FEE * u128::from(RAKE_BPS) / 10_000,
        }];
        separate += contracts
            .settle(operator, match_id, &one, result_root(match_id))
            .await?
            .gas_used;
    }
    figures.push(GasFigure::new(
        format!("{PLAYERS} separate payouts (one settle each)"),
        separate,
        PLAYERS,
    ));

    // Plain ETH transfers: the floor for any scheme that pays each winner in its own tx.
    let mut transfers = 0;
    for p in players {
        let tx = crate::backend::TxRequest {
            from: operator,
            to: Some(*p),
            value: U256::from(FEE),
            ..Default::default()
        };
        transfers += contracts.chain().send(tx).await?.gas_used;
    }
    figures.push(GasFigure::new(
        format!("{PLAYERS} plain ETH transfers (reference)"),
        transfers,
        PLAYERS,
    ));

    for p in players {
        contracts.lock_fee(operator, 2, SPACE, *p, FEE).await?;
    }
    let refund = contracts.refund(operator, 2).await?;
    figures.push(GasFigure::new(
        format!("refund, {PLAYERS} entries"),
        refund.gas_used,
        1,
    ));

    let anchor = contracts.anchor_result(operator, 3, result_root(3)).await?;
    figures.push(GasFigure::new(
        "anchorResult (a free match's result root)",
        anchor.gas_used,
        1,
    ));

    let withdraw = contracts.withdraw(players[0], FEE).await?;
    figures.push(GasFigure::new("withdraw", withdraw.gas_used, 1));

    let record = NewRecord {
        agent_id: 1,
        parent_adapter_hash: B256::repeat_byte(1),
        new_adapter_hash: B256::repeat_byte(2),
        pairs_root: B256::repeat_byte(3),
        results_root: B256::repeat_byte(4),
        hyperparams_hash: B256::repeat_byte(5),
    };
    let (_, first_record) = contracts.record(operator, &record).await?;
    figures.push(GasFigure::new(
        "record (proof of learning)",
        first_record.gas_used,
        1,
    ));

    // Fees in an ERC-20 token (the TokenArena): only money in and out differs; locks,
    // settlements and refunds run the same escrow code on balances held inside.
    let chain = contracts.chain();
    let token = Contracts::deploy_test_token(chain, operator, 6, &players[..1], 10 * FEE).await?;
    let tokens =
        Contracts::deploy_for(chain, operator, terms, crate::FeeAsset::Token(token)).await?;
    let approve = tokens.approve(players[0], token, 3 * FEE).await?;
    figures.push(GasFigure::new(
        "token: approve (before a wallet's deposit)",
        approve.gas_used,
        1,
    ));
    let first = tokens.deposit(players[0], 2 * FEE).await?;
    figures.push(GasFigure::new(
        "token: deposit (first, new balance)",
        first.gas_used,
        1,
    ));
    let top_up = tokens.deposit(players[0], FEE).await?;
    figures.push(GasFigure::new(
        "token: deposit (top-up)",
        top_up.gas_used,
        1,
    ));
    let withdraw = tokens.withdraw(players[0], FEE).await?;
    figures.push(GasFigure::new("token: withdraw", withdraw.gas_used, 1));
    Ok(figures)
}

/// Splits `pot` over `players` by a falling schedule (8, 7, ... parts), 95% paid out
/// (the pot less the Space's 5% rake, less the rounding).
fn split_pot(players: &[Address], pot: u128) -> Vec<Payout> {
    let paid = pot / 100 * 95;
    let parts: u128 = (1..=players.len() as u128).sum();
    players
        .iter()
        .enumerate()
        .map(|(i, p)| Payout {
            payee: *p,
            amount: paid * (players.len() - i) as u128 / parts,
        })
        .collect()
}

fn result_root(match_id: u64) -> B256 {
    let leaves: Vec<B256> = (0..PLAYERS as u64)
        .map(|rank| merkle::ordered_leaf(rank, &match_id.to_be_bytes()))
        .collect();
    merkle::root(&leaves)
}

/// The figures as a Markdown table.
pub fn markdown_table(figures: &[GasFigure]) -> String {
    let mut out = String::from("| operation | transactions | gas |\n|---|---:|---:|\n");
    for f in figures {
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            f.operation, f.transactions, f.gas
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::{DEFAULT_CHAIN_ID, Embedded};

    #[tokio::test]
    async fn one_settlement_is_cheaper_than_eight_payouts() {
        let figures = measure(Embedded::ephemeral(DEFAULT_CHAIN_ID, PLAYERS + 2))
            .await
            .unwrap();
        let gas = |prefix: &str| {
            figures
                .iter()
                .find(|f| f.operation.starts_with(prefix))
                .unwrap()
                .gas
        };
        let one_call = gas("settle, 8 payees");
        assert!(one_call < gas("8 separate payouts"), "{figures:?}");
        assert!(one_call < gas("8 plain ETH transfers"), "{figures:?}");
        assert_eq!(gas("8 plain ETH transfers"), 8 * 21_000);
        assert!(markdown_table(&figures).lines().count() == figures.len() + 2);
    }
}
