//! Property test on the embedded chain: random sequences of deposits, withdrawals, fee
//! locks, settlements and refunds (many of them meant to fail) are run against the
//! contract and a plain Rust model of it. After every step the contract must agree with
//! the model on success or the exact refusal, and its ETH balance must equal the users'
//! balances plus the treasury's plus every open escrow.

use std::collections::HashMap;

use alloy::primitives::{Address, B256};
use chain::bindings::Arena::ArenaErrors;
use chain::embedded::{DEFAULT_CHAIN_ID, Embedded};
use chain::{Chain, ChainError, Contracts, MatchStatus, Payout};
use proptest::prelude::*;

const UNIT: u128 = 1_000_000_000_000_000;
const USERS: usize = 4;
const MATCHES: u64 = 4;
/// Account indices: 0 operator, 1..=USERS users, USERS + 1 treasury, USERS + 2 outsider.
const TREASURY: usize = USERS + 1;
const OUTSIDER: usize = USERS + 2;

#[derive(Clone, Debug)]
enum Op {
    Deposit {
        user: usize,
        units: u128,
    },
    Withdraw {
        user: usize,
        units: u128,
    },
    Lock {
        by_operator: bool,
        m: u64,
        user: usize,
        units: u128,
    },
    Settle {
        by_operator: bool,
        m: u64,
        shares: Vec<(usize, u128)>,
    },
    Refund {
        by_operator: bool,
        m: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let user = 1..=USERS;
    let payee = 1..=TREASURY;
    let by_operator = prop::bool::weighted(0.85);
    prop_oneof![
        (user.clone(), 0..4u128).prop_map(|(user, units)| Op::Deposit { user, units }),
        (user.clone(), 0..5u128).prop_map(|(user, units)| Op::Withdraw { user, units }),
        (by_operator, 0..MATCHES, user, 0..3u128).prop_map(|(by_operator, m, user, units)| {
            Op::Lock {
                by_operator,
                m,
                user,
                units,
            }
        }),
        (
            by_operator,
            0..MATCHES,
            prop::collection::vec((payee, 0..700u128), 0..4)
        )
            .prop_map(|(by_operator, m, shares)| Op::Settle {
                by_operator,
                m,
                shares
            }),
        (by_operator, 0..MATCHES).prop_map(|(by_operator, m)| Op::Refund { by_operator, m }),
    ]
}

/// A match escrow in the model: held wei, status, and the locked (user, fee) entries.
type ModelEscrow = (u128, MatchStatus, Vec<(usize, u128)>);

/// What the contract should hold, kept in plain Rust.
#[derive(Default)]
struct Model {
    balances: HashMap<usize, u128>,
    escrows: HashMap<u64, ModelEscrow>,
}

impl Model {
    fn balance(&self, who: usize) -> u128 {
        self.balances.get(&who).copied().unwrap_or(0)
    }

    /// Applies `op`; returns the name of the error the contract must give, if any.
    fn apply(&mut self, op: &Op) -> Result<(), &'static str> {
        match op {
            Op::Deposit { user, units } => {
                if *units == 0 {
                    return Err("ZeroAmount");
                }
                *self.balances.entry(*user).or_default() += units * UNIT;
            }
            Op::Withdraw { user, units } => {
                if *units == 0 {
                    return Err("ZeroAmount");
                }
                if self.balance(*user) < units * UNIT {
                    return Err("InsufficientBalance");
                }
                *self.balances.entry(*user).or_default() -= units * UNIT;
            }
            Op::Lock {
                by_operator,
                m,
                user,
                units,
            } => {
                let fee = units * UNIT;
                if !by_operator {
                    return Err("NotOperator");
                }
                if fee == 0 {
                    return Err("ZeroAmount");
                }
                let escrow = self
                    .escrows
                    .entry(*m)
                    .or_insert((0, MatchStatus::None, vec![]));
                if matches!(escrow.1, MatchStatus::Settled | MatchStatus::Refunded) {
                    return Err("MatchClosed");
                }
                let balance = self.balances.entry(*user).or_default();
                if *balance < fee {
                    return Err("InsufficientBalance");
                }
                *balance -= fee;
                escrow.0 += fee;
                escrow.1 = MatchStatus::Open;
                escrow.2.push((*user, fee));
            }
            Op::Settle {
                by_operator,
                m,
                shares,
            } => {
                if !by_operator {
                    return Err("NotOperator");
                }
                let Some((pot, MatchStatus::Open, _)) = self.escrows.get(m).cloned() else {
                    return Err("MatchNotOpen");
                };
                let amounts: Vec<(usize, u128)> = shares
                    .iter()
                    .map(|(who, permille)| (*who, pot * permille / 1000))
                    .collect();
                let paid: u128 = amounts.iter().map(|(_, a)| a).sum();
                if paid > pot {
                    return Err("PayoutExceedsPot");
                }
                for (who, amount) in amounts {
                    *self.balances.entry(who).or_default() += amount;
                }
                *self.balances.entry(TREASURY).or_default() += pot - paid;
                self.escrows.insert(*m, (0, MatchStatus::Settled, vec![]));
            }
            Op::Refund { by_operator, m } => {
                if !by_operator {
                    return Err("NotOperator");
                }
                let Some((_, MatchStatus::Open, entries)) = self.escrows.get(m).cloned() else {
                    return Err("MatchNotOpen");
                };
                for (who, fee) in entries {
                    *self.balances.entry(who).or_default() += fee;
                }
                self.escrows.insert(*m, (0, MatchStatus::Refunded, vec![]));
            }
        }
        Ok(())
    }
}

fn error_name(e: &ChainError) -> &'static str {
    match e.arena_error() {
        Some(ArenaErrors::ZeroAmount(_)) => "ZeroAmount",
        Some(ArenaErrors::InsufficientBalance(_)) => "InsufficientBalance",
        Some(ArenaErrors::NotOperator(_)) => "NotOperator",
        Some(ArenaErrors::MatchClosed(_)) => "MatchClosed",
        Some(ArenaErrors::MatchNotOpen(_)) => "MatchNotOpen",
        Some(ArenaErrors::PayoutExceedsPot(_)) => "PayoutExceedsPot",
        _ => panic!("unexpected error {e}"),
    }
}

async fn run_on_chain(c: &Contracts<Embedded>, a: &[Address], op: &Op) -> Result<(), ChainError> {
    let caller = |by_operator: bool| if by_operator { a[0] } else { a[OUTSIDER] };
    match op {
        Op::Deposit { user, units } => c.deposit(a[*user], units * UNIT).await.map(drop),
        Op::Withdraw { user, units } => c.withdraw(a[*user], units * UNIT).await.map(drop),
        Op::Lock {
            by_operator,
            m,
            user,
            units,
        } => c
            .lock_fee(caller(*by_operator), *m, a[*user], units * UNIT)
            .await
            .map(drop),
        Op::Settle {
            by_operator,
            m,
            shares,
        } => {
            // The pot as the contract holds it; amounts are shares of it, possibly too many.
            let pot = c.escrow(*m).await?.held;
            let payouts: Vec<Payout> = shares
                .iter()
                .map(|(who, permille)| Payout {
                    payee: a[*who],
                    amount: pot * permille / 1000,
                })
                .collect();
            let root = B256::from(alloy::primitives::U256::from(*m));
            c.settle(caller(*by_operator), *m, &payouts, a[TREASURY], root)
                .await
                .map(drop)
        }
        Op::Refund { by_operator, m } => c.refund(caller(*by_operator), *m).await.map(drop),
    }
}

async fn check(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let chain = Embedded::ephemeral(DEFAULT_CHAIN_ID, OUTSIDER + 1);
    let a = chain.accounts();
    let c = Contracts::deploy(chain, a[0], a[0]).await.unwrap();
    let mut model = Model::default();
    for (step, op) in ops.iter().enumerate() {
        let expected = model.apply(op);
        let got = run_on_chain(&c, &a, op).await;
        match (&expected, &got) {
            (Ok(()), Ok(())) => {}
            (Err(name), Err(e)) => prop_assert_eq!(*name, error_name(e), "step {}: {:?}", step, op),
            _ => prop_assert!(
                false,
                "step {step}: {op:?}: model {expected:?}, chain {got:?}"
            ),
        }
        let mut owed = 0;
        for (who, account) in a.iter().enumerate().take(TREASURY + 1).skip(1) {
            let on_chain = c.balance_of(*account).await.unwrap();
            prop_assert_eq!(
                on_chain,
                model.balance(who),
                "balance of {} at step {}",
                who,
                step
            );
            owed += on_chain;
        }
        for m in 0..MATCHES {
            let escrow = c.escrow(m).await.unwrap();
            if escrow.status == MatchStatus::Open {
                owed += escrow.held;
            } else {
                prop_assert_eq!(escrow.held, 0);
            }
        }
        prop_assert_eq!(
            c.arena_eth_balance().await.unwrap(),
            owed,
            "solvency at step {}",
            step
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn contract_balance_always_equals_what_it_owes(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(check(ops))?;
    }
}
