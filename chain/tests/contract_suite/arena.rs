//! Arena scenarios of the suite: deposits and withdrawals, locking, settling, refunds,
//! the operator and admin rules, and concurrent sends around a revert.

use alloy::primitives::{Address, B256, U256};
use chain::bindings::Arena::{self, ArenaErrors};
use chain::contracts::events;
use chain::{Chain, ChainError, Contracts, MatchStatus, Payout, TxReceipt, merkle};

use crate::{Cast, ETH, FEE};

fn arena_err(r: Result<TxReceipt, ChainError>) -> ArenaErrors {
    match r {
        Err(e) => e
            .arena_error()
            .cloned()
            .unwrap_or_else(|| panic!("not an Arena revert: {e}")),
        Ok(receipt) => panic!(
            "expected a revert, got a receipt in block {}",
            receipt.block_number
        ),
    }
}

fn insufficient(account: Address, available: u128, required: u128) -> ArenaErrors {
    ArenaErrors::InsufficientBalance(Arena::InsufficientBalance {
        account,
        available: U256::from(available),
        required: U256::from(required),
    })
}

fn not_open(match_id: u64, status: u8) -> ArenaErrors {
    ArenaErrors::MatchNotOpen(Arena::MatchNotOpen {
        matchId: U256::from(match_id),
        status,
    })
}

/// Deposits, a refused zero deposit, withdrawals, and withdrawing more than one owns.
pub async fn deposit_and_withdraw<C: Chain>(c: &Contracts<C>, cast: &Cast) {
    let held_before = c.arena_eth_balance().await.unwrap();
    let r = c.deposit(cast.alice, ETH).await.unwrap();
    assert_eq!(
        events::<Arena::Deposited>(&r),
        vec![Arena::Deposited {
            user: cast.alice,
            amount: U256::from(ETH),
            balance: U256::from(ETH),
        }]
    );
    c.deposit(cast.bob, ETH / 2).await.unwrap();
    assert_eq!(c.balance_of(cast.alice).await.unwrap(), ETH);
    assert_eq!(
        c.arena_eth_balance().await.unwrap(),
        held_before + ETH + ETH / 2
    );

    // A zero deposit is refused.
    assert_eq!(
        arena_err(c.deposit(cast.alice, 0).await),
        ArenaErrors::ZeroAmount(Arena::ZeroAmount {})
    );

    // Withdraw part of one's own balance: the ETH arrives, less the gas paid.
    let eth_before = c.chain().balance(cast.alice).await.unwrap();
    let r = c.withdraw(cast.alice, ETH / 4).await.unwrap();
    let gas_paid = U256::from(r.gas_used) * U256::from(r.effective_gas_price);
    let eth_after = c.chain().balance(cast.alice).await.unwrap();
    assert_eq!(eth_after + gas_paid, eth_before + U256::from(ETH / 4));
    assert_eq!(c.balance_of(cast.alice).await.unwrap(), ETH - ETH / 4);
    assert_eq!(events::<Arena::Withdrawn>(&r).len(), 1);

    // More than one's own balance, and someone else's funds: both refused, nothing moves.
    assert_eq!(
        arena_err(c.withdraw(cast.alice, ETH).await),
        insufficient(cast.alice, ETH - ETH / 4, ETH)
    );
    assert_eq!(
        arena_err(c.withdraw(cast.mallory, ETH / 2).await),
        insufficient(cast.mallory, 0, ETH / 2)
    );
    assert_eq!(
        arena_err(c.withdraw(cast.bob, ETH).await),
        insufficient(cast.bob, ETH / 2, ETH)
    );
    assert_eq!(c.balance_of(cast.alice).await.unwrap(), ETH - ETH / 4);
    assert_eq!(c.balance_of(cast.bob).await.unwrap(), ETH / 2);
}

/// Locking fees, settling with a remainder to the treasury, and no double settlement.
pub async fn lock_and_settle<C: Chain>(c: &Contracts<C>, cast: &Cast) {
    let alice0 = c.balance_of(cast.alice).await.unwrap();
    let bob0 = c.balance_of(cast.bob).await.unwrap();
    let r = c.lock_fee(cast.operator, 1, cast.alice, FEE).await.unwrap();
    assert_eq!(events::<Arena::FeeLocked>(&r)[0].held, U256::from(FEE));
    c.lock_fee(cast.operator, 1, cast.bob, FEE).await.unwrap();
    assert_eq!(
        c.escrow(1).await.unwrap(),
        chain::Escrow {
            held: 2 * FEE,
            status: MatchStatus::Open
        }
    );
    assert_eq!(c.balance_of(cast.alice).await.unwrap(), alice0 - FEE);

    // Insufficient balance, and a caller who is not the operator.
    assert_eq!(
        arena_err(c.lock_fee(cast.operator, 1, cast.carol, FEE).await),
        insufficient(cast.carol, 0, FEE)
    );
    let not_op = ArenaErrors::NotOperator(Arena::NotOperator {
        caller: cast.mallory,
    });
    assert_eq!(
        arena_err(c.lock_fee(cast.mallory, 1, cast.alice, FEE).await),
        not_op
    );

    let leaves: Vec<B256> = [cast.alice, cast.bob]
        .iter()
        .enumerate()
        .map(|(rank, who)| merkle::ordered_leaf(rank as u64, who.as_slice()))
        .collect();
    let root = merkle::root(&leaves);
    let payouts = [
        Payout {
            payee: cast.alice,
            amount: FEE * 3 / 2,
        },
        Payout {
            payee: cast.bob,
            amount: FEE * 3 / 10,
        },
    ];
    let treasury0 = c.balance_of(cast.treasury).await.unwrap();
    assert_eq!(
        arena_err(
            c.settle(cast.mallory, 1, &payouts, cast.treasury, root)
                .await
        ),
        not_op
    );
    let r = c
        .settle(cast.operator, 1, &payouts, cast.treasury, root)
        .await
        .unwrap();
    let settled = &events::<Arena::MatchSettled>(&r)[0];
    assert_eq!(
        (settled.paidOut, settled.toTreasury),
        (U256::from(FEE * 18 / 10), U256::from(FEE / 5))
    );
    assert_eq!(settled.resultRoot, root);
    assert_eq!(
        c.balance_of(cast.alice).await.unwrap(),
        alice0 - FEE + FEE * 3 / 2
    );
    assert_eq!(
        c.balance_of(cast.bob).await.unwrap(),
        bob0 - FEE + FEE * 3 / 10
    );
    assert_eq!(
        c.balance_of(cast.treasury).await.unwrap(),
        treasury0 + FEE / 5
    );
    assert_eq!(
        c.escrow(1).await.unwrap(),
        chain::Escrow {
            held: 0,
            status: MatchStatus::Settled
        }
    );
    assert_eq!(c.result_root(1).await.unwrap(), root);

    // No double settlement, no refund or new fee after settlement.
    assert_eq!(
        arena_err(
            c.settle(cast.operator, 1, &payouts, cast.treasury, root)
                .await
        ),
        not_open(1, 2)
    );
    assert_eq!(arena_err(c.refund(cast.operator, 1).await), not_open(1, 2));
    let closed = ArenaErrors::MatchClosed(Arena::MatchClosed {
        matchId: U256::from(1),
        status: 2,
    });
    assert_eq!(
        arena_err(c.lock_fee(cast.operator, 1, cast.alice, FEE).await),
        closed
    );
    // A match that never opened cannot be settled.
    assert_eq!(
        arena_err(c.settle(cast.operator, 77, &[], cast.treasury, root).await),
        not_open(77, 0)
    );
}

/// Payouts over the pot are refused; a refund returns every fee, once.
pub async fn over_pot_and_refund<C: Chain>(c: &Contracts<C>, cast: &Cast) {
    c.lock_fee(cast.operator, 2, cast.alice, FEE).await.unwrap();
    c.lock_fee(cast.operator, 2, cast.bob, FEE).await.unwrap();
    let alice0 = c.balance_of(cast.alice).await.unwrap();
    let bob0 = c.balance_of(cast.bob).await.unwrap();
    let over = [
        Payout {
            payee: cast.alice,
            amount: FEE * 3 / 2,
        },
        Payout {
            payee: cast.bob,
            amount: FEE,
        },
    ];
    let expect = ArenaErrors::PayoutExceedsPot(Arena::PayoutExceedsPot {
        matchId: U256::from(2),
        pot: U256::from(2 * FEE),
    });
    assert_eq!(
        arena_err(
            c.settle(cast.operator, 2, &over, cast.treasury, B256::ZERO)
                .await
        ),
        expect
    );
    assert_eq!(
        c.escrow(2).await.unwrap().held,
        2 * FEE,
        "a refused settlement changes nothing"
    );

    let not_op = ArenaErrors::NotOperator(Arena::NotOperator {
        caller: cast.mallory,
    });
    assert_eq!(arena_err(c.refund(cast.mallory, 2).await), not_op);
    let r = c.refund(cast.operator, 2).await.unwrap();
    let refunded = &events::<Arena::MatchRefunded>(&r)[0];
    assert_eq!(
        (refunded.refunded, refunded.entries),
        (U256::from(2 * FEE), U256::from(2))
    );
    assert_eq!(c.balance_of(cast.alice).await.unwrap(), alice0 + FEE);
    assert_eq!(c.balance_of(cast.bob).await.unwrap(), bob0 + FEE);
    assert_eq!(
        c.escrow(2).await.unwrap(),
        chain::Escrow {
            held: 0,
            status: MatchStatus::Refunded
        }
    );
    assert_eq!(arena_err(c.refund(cast.operator, 2).await), not_open(2, 3));
    assert_eq!(
        arena_err(
            c.settle(cast.operator, 2, &[], cast.treasury, B256::ZERO)
                .await
        ),
        not_open(2, 3)
    );
}

/// Only the admin changes the operator; only the operator locks.
pub async fn operator_rules<C: Chain>(c: &Contracts<C>, cast: &Cast) {
    let not_admin = ArenaErrors::NotAdmin(Arena::NotAdmin {
        caller: cast.operator,
    });
    assert_eq!(
        arena_err(c.set_operator(cast.operator, cast.mallory).await),
        not_admin
    );
    let r = c.set_operator(cast.admin, cast.successor).await.unwrap();
    let changed = &events::<Arena::OperatorChanged>(&r)[0];
    assert_eq!(
        (changed.previous, changed.current),
        (cast.operator, cast.successor)
    );
    let not_op = ArenaErrors::NotOperator(Arena::NotOperator {
        caller: cast.operator,
    });
    assert_eq!(
        arena_err(c.lock_fee(cast.operator, 3, cast.alice, FEE).await),
        not_op
    );
    c.lock_fee(cast.successor, 3, cast.alice, FEE)
        .await
        .unwrap();
    c.set_operator(cast.admin, cast.operator).await.unwrap();
    c.lock_fee(cast.operator, 4, cast.bob, FEE).await.unwrap();
}

/// Sends from one account in flight together, one of them reverting: the others all
/// land (no nonce gap or reuse) and the revert leaves nothing behind.
pub async fn concurrent_sends_around_a_revert<C: Chain>(c: &Contracts<C>, cast: &Cast) {
    let before = c.balance_of(cast.carol).await.unwrap();
    let (a, b, bad, d) = tokio::join!(
        c.deposit(cast.carol, 1),
        c.deposit(cast.carol, 2),
        c.withdraw(cast.carol, before + 100),
        c.deposit(cast.carol, 4),
    );
    a.unwrap();
    b.unwrap();
    d.unwrap();
    assert!(matches!(
        bad.unwrap_err().arena_error(),
        Some(ArenaErrors::InsufficientBalance(_))
    ));
    c.withdraw(cast.carol, 7).await.unwrap();
    assert_eq!(c.balance_of(cast.carol).await.unwrap(), before);
}
