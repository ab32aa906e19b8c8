//! Property test on the embedded chain: random sequences of deposits, withdrawals, fee
//! locks, settlements and refunds (many of them meant to fail: wrong caller, a payee who
//! is not an entrant, a split over or under the pot less the Space's rake) are run
//! against the contract and a plain Rust model of it. After every step the contract must agree with
//! the model on success or the exact refusal, and its ETH balance must equal the users'
//! balances plus the treasury's plus every open escrow.

use std::collections::HashMap;

use alloy::primitives::{Address, B256};
use chain::bindings::Arena::ArenaErrors;
use chain::embedded::{DEFAULT_CHAIN_ID, Embedded};
use chain::{ArenaTerms, Chain, ChainError, Contracts, MatchStatus, Payout};
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
        /// One weight per payee line; the prize is split by them.
        weights: Vec<u128>,
        /// A line whose payee is replaced by an outsider.
        stranger_at: Option<usize>,
        /// How the split misses the prize on purpose.
        skew: Skew,
    },
    Refund {
        by_operator: bool,
        m: u64,
    },
}

/// A settlement's split: the prize (floored per line), one wei per line too much, or
/// short of the prize by more than the rounding allowance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Skew {
    Exact,
    Over,
    Under,
}

/// The rake of each match's Space: match `m` is in Space `m % 2`.
const RAKES: [u16; 2] = [500, 0];

fn rake_of(m: u64) -> u128 {
    u128::from(RAKES[(m % 2) as usize])
}

/// The payout lines of a settlement of `pot` over `count` entrants.
fn split(pot: u128, rake_bps: u128, weights: &[u128], skew: Skew) -> Vec<u128> {
    let count = weights.len() as u128;
    let prize = pot - pot * rake_bps / 10_000;
    let base = if skew == Skew::Under {
        prize.saturating_sub(count + 1)
    } else {
        prize
    };
    let total: u128 = weights.iter().sum::<u128>().max(1);
    let mut amounts: Vec<u128> = weights.iter().map(|w| base * w / total).collect();
    if skew == Skew::Over
        && let Some(last) = amounts.last_mut()
    {
        *last += count;
    }
    amounts
}

fn op() -> impl Strategy<Value = Op> {
    let user = 1..=USERS;
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
            prop::collection::vec(0..4u128, 0..4),
            prop::option::weighted(0.15, 0..4usize),
            prop_oneof![6 => Just(Skew::Exact), 1 => Just(Skew::Over), 1 => Just(Skew::Under)],
        )
            .prop_map(|(by_operator, m, weights, stranger_at, skew)| Op::Settle {
                by_operator,
                m,
                weights,
                stranger_at,
                skew,
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
                weights,
                stranger_at,
                skew,
            } => {
                if !by_operator {
                    return Err("NotOperator");
                }
                let Some((pot, MatchStatus::Open, entries)) = self.escrows.get(m).cloned() else {
                    return Err("MatchNotOpen");
                };
                if weights.len() != entries.len() {
                    return Err("EntrantCountMismatch");
                }
                let amounts = split(pot, rake_of(*m), weights, *skew);
                let prize = pot - pot * rake_of(*m) / 10_000;
                let mut paid = 0;
                for (i, amount) in amounts.iter().enumerate() {
                    if *stranger_at == Some(i) {
                        return Err("NotEntrant");
                    }
                    if *amount > prize - paid {
                        return Err("PayoutExceedsPrize");
                    }
                    paid += amount;
                }
                if prize - paid > entries.len() as u128 {
                    return Err("PayoutBelowPrize");
                }
                for ((who, _), amount) in entries.iter().zip(amounts) {
                    *self.balances.entry(*who).or_default() += amount;
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
        Some(ArenaErrors::PayoutExceedsPrize(_)) => "PayoutExceedsPrize",
        Some(ArenaErrors::PayoutBelowPrize(_)) => "PayoutBelowPrize",
        Some(ArenaErrors::EntrantCountMismatch(_)) => "EntrantCountMismatch",
        Some(ArenaErrors::NotEntrant(_)) => "NotEntrant",
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
            .lock_fee(caller(*by_operator), *m, *m % 2, a[*user], units * UNIT)
            .await
            .map(drop),
        Op::Settle {
            by_operator,
            m,
            weights,
            stranger_at,
            skew,
        } => {
            // The entrants as the contract lists them, paid a split of the pot it holds.
            let escrow = c.escrow(*m).await?;
            let entrants = c.entries(*m).await?;
            let amounts = split(escrow.held, rake_of(*m), weights, *skew);
            let payouts: Vec<Payout> = amounts
                .iter()
                .enumerate()
                .map(|(i, amount)| Payout {
                    payee: match entrants.get(i) {
                        Some(e) if *stranger_at != Some(i) => e.payee,
                        _ => a[OUTSIDER],
                    },
                    amount: *amount,
                })
                .collect();
            let root = B256::from(alloy::primitives::U256::from(*m));
            c.settle(caller(*by_operator), *m, &payouts, root)
                .await
                .map(drop)
        }
        Op::Refund { by_operator, m } => c.refund(caller(*by_operator), *m).await.map(drop),
    }
}

async fn check(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let chain = Embedded::ephemeral(DEFAULT_CHAIN_ID, OUTSIDER + 1);
    let a = chain.accounts();
    let terms = ArenaTerms {
        treasury: a[TREASURY],
        ..ArenaTerms::operated_by(a[0])
    };
    let c = Contracts::deploy_with(chain, a[0], terms).await.unwrap();
    for (space, rake) in RAKES.iter().enumerate() {
        c.declare_space(a[0], space as u64, *rake).await.unwrap();
    }
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
            c.arena_funds().await.unwrap(),
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
