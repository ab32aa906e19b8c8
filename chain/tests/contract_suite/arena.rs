//! Arena scenarios of the suite: deposits and withdrawals, locking, settling, refunds,
//! the escrow rules that protect entrants from the operator (payees only entrants, the
//! pot less the declared rake, reclaim after the delay), anchoring free matches'
//! results, the operator and admin rules, and concurrent sends around a revert.

use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::SolCall;
use chain::bindings::Arena::{self, ArenaErrors};
use chain::bindings::{TestToken, TokenArena};
use chain::contracts::events;
use chain::{
    Chain, ChainError, Contracts, FeeAsset, MatchStatus, Payout, Revert, TxReceipt, TxRequest,
    merkle,
};

use crate::{Cast, ETH, FEE, RECLAIM_AFTER_SECS};

/// The Space the suite's matches are in, and its rake: 10%.
pub const SPACE: u64 = 1;
pub const RAKE_BPS: u16 = 1_000;

fn pay(lines: &[(Address, u128)]) -> Vec<Payout> {
    lines
        .iter()
        .map(|(payee, amount)| Payout {
            payee: *payee,
            amount: *amount,
        })
        .collect()
}

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

/// What only the token Arena does: a deposit takes the approved tokens and credits
/// what arrived; a deposit beyond the allowance, or beyond the wallet, is refused with
/// nothing credited; ETH sent to it is refused; it cannot be built on a non-token.
pub async fn token_deposits<C: Chain>(c: &Contracts<C>, cast: &Cast) {
    let FeeAsset::Token(token) = c.fee_asset() else {
        panic!("token_deposits runs on the token Arena");
    };
    let arena = c.deployment().arena;
    let (wallet, held) = (
        c.wallet_funds(cast.carol).await.unwrap(),
        c.arena_funds().await.unwrap(),
    );
    // Approve, then deposit: the tokens move from the wallet into the Arena.
    let r = c.deposit(cast.carol, FEE).await.unwrap();
    assert_eq!(
        events::<Arena::Deposited>(&r),
        vec![Arena::Deposited {
            user: cast.carol,
            amount: U256::from(FEE),
            balance: U256::from(FEE),
        }]
    );
    assert_eq!(c.wallet_funds(cast.carol).await.unwrap(), wallet - FEE);
    assert_eq!(c.arena_funds().await.unwrap(), held + FEE);

    // A deposit past the allowance: refused, nothing moves.
    c.approve(cast.carol, token, FEE - 1).await.unwrap();
    let call = TokenArena::depositCall {
        amount: U256::from(FEE),
    };
    let send = |from: Address, to: Address, data: Vec<u8>, value: u128| TxRequest {
        from,
        to: Some(to),
        data: data.into(),
        value: U256::from(value),
    };
    let refused = c
        .chain()
        .send(send(cast.carol, arena, call.abi_encode(), 0))
        .await
        .unwrap_err();
    assert_eq!(
        refused.revert(),
        Some(&Revert::TokenArena(
            TokenArena::TokenArenaErrors::TokenTransferFailed(TokenArena::TokenTransferFailed {
                token,
                from: cast.carol,
                to: arena,
                amount: U256::from(FEE),
            })
        ))
    );
    // Approved, but more than the wallet holds: refused the same way.
    let all = c.wallet_funds(cast.mallory).await.unwrap();
    c.approve(cast.mallory, token, all + 1).await.unwrap();
    let call = TokenArena::depositCall {
        amount: U256::from(all + 1),
    };
    let refused = c
        .chain()
        .send(send(cast.mallory, arena, call.abi_encode(), 0))
        .await
        .unwrap_err();
    assert!(
        matches!(refused.revert(), Some(Revert::TokenArena(_))),
        "{refused}"
    );
    assert_eq!(c.balance_of(cast.carol).await.unwrap(), FEE);
    assert_eq!(c.balance_of(cast.mallory).await.unwrap(), 0);
    assert_eq!(c.arena_funds().await.unwrap(), held + FEE);

    // ETH sent to the token Arena, with or without a call, is refused.
    let eth_deposit = Arena::depositCall {}.abi_encode();
    assert!(
        c.chain()
            .send(send(cast.carol, arena, eth_deposit, FEE))
            .await
            .unwrap_err()
            .revert()
            .is_some()
    );
    assert_eq!(c.chain().balance(arena).await.unwrap(), U256::ZERO);

    // The token's own rules: only its minter mints.
    let mint = TestToken::mintCall {
        to: cast.mallory,
        amount: U256::from(1u8),
    };
    let refused = c
        .chain()
        .send(send(cast.mallory, token, mint.abi_encode(), 0))
        .await
        .unwrap_err();
    assert_eq!(
        refused.revert(),
        Some(&Revert::Token(TestToken::TestTokenErrors::NotMinter(
            TestToken::NotMinter {
                caller: cast.mallory
            }
        )))
    );

    // Carol takes her deposit back out, so the scenarios after this start as on ETH.
    c.withdraw(cast.carol, FEE).await.unwrap();
    assert_eq!(c.wallet_funds(cast.carol).await.unwrap(), wallet);
    c.approve(cast.mallory, token, 0).await.unwrap();
}

/// Deposits, a refused zero deposit, withdrawals, and withdrawing more than one owns.
pub async fn deposit_and_withdraw<C: Chain>(c: &Contracts<C>, cast: &Cast) {
    let held_before = c.arena_funds().await.unwrap();
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
    assert_eq!(c.arena_funds().await.unwrap(), held_before + ETH + ETH / 2);

    // A zero deposit is refused.
    assert_eq!(
        arena_err(c.deposit(cast.alice, 0).await),
        ArenaErrors::ZeroAmount(Arena::ZeroAmount {})
    );

    // Withdraw part of one's own balance: the funds arrive in the wallet (less the
    // gas paid, when the fee asset is ETH).
    let funds_before = c.wallet_funds(cast.alice).await.unwrap();
    let r = c.withdraw(cast.alice, ETH / 4).await.unwrap();
    let gas_paid = match c.fee_asset() {
        FeeAsset::Eth => r.gas_used as u128 * r.effective_gas_price,
        FeeAsset::Token(_) => 0,
    };
    let funds_after = c.wallet_funds(cast.alice).await.unwrap();
    assert_eq!(funds_after + gas_paid, funds_before + ETH / 4);
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
    // No fee can be locked in a Space the admin has not declared, and only the admin
    // declares (the operator cannot choose a match's rake).
    assert_eq!(
        arena_err(c.lock_fee(cast.operator, 1, SPACE, cast.alice, FEE).await),
        ArenaErrors::SpaceNotDeclared(Arena::SpaceNotDeclared {
            spaceId: U256::from(SPACE)
        })
    );
    assert_eq!(
        arena_err(c.declare_space(cast.operator, SPACE, 0).await),
        ArenaErrors::NotAdmin(Arena::NotAdmin {
            caller: cast.operator
        })
    );
    assert_eq!(
        arena_err(c.declare_space(cast.admin, SPACE, 10_001).await),
        ArenaErrors::RakeTooLarge(Arena::RakeTooLarge {
            rakeBps: U256::from(10_001)
        })
    );
    c.declare_space(cast.admin, SPACE, RAKE_BPS).await.unwrap();
    assert_eq!(
        c.space_terms(SPACE).await.unwrap(),
        chain::SpaceTerms {
            declared: true,
            rake_bps: RAKE_BPS
        }
    );
    let r = c
        .lock_fee(cast.operator, 1, SPACE, cast.alice, FEE)
        .await
        .unwrap();
    assert_eq!(events::<Arena::FeeLocked>(&r)[0].held, U256::from(FEE));
    c.lock_fee(cast.operator, 1, SPACE, cast.bob, FEE)
        .await
        .unwrap();
    let escrow = c.escrow(1).await.unwrap();
    assert_eq!(
        (escrow.held, escrow.status, escrow.space_id, escrow.rake_bps),
        (2 * FEE, MatchStatus::Open, SPACE as u32, RAKE_BPS)
    );
    assert!(escrow.opened_at > 0);
    // A later lock must name the match's Space.
    c.declare_space(cast.admin, 2, 0).await.unwrap();
    assert_eq!(
        arena_err(c.lock_fee(cast.operator, 1, 2, cast.alice, FEE).await),
        ArenaErrors::SpaceMismatch(Arena::SpaceMismatch {
            matchId: U256::from(1),
            spaceId: U256::from(SPACE),
            given: U256::from(2),
        })
    );
    assert_eq!(
        c.entries(1).await.unwrap(),
        pay(&[(cast.alice, FEE), (cast.bob, FEE)])
    );
    assert_eq!(c.balance_of(cast.alice).await.unwrap(), alice0 - FEE);

    // Insufficient balance, and a caller who is not the operator.
    assert_eq!(
        arena_err(c.lock_fee(cast.operator, 1, SPACE, cast.carol, FEE).await),
        insufficient(cast.carol, 0, FEE)
    );
    let not_op = ArenaErrors::NotOperator(Arena::NotOperator {
        caller: cast.mallory,
    });
    assert_eq!(
        arena_err(c.lock_fee(cast.mallory, 1, SPACE, cast.alice, FEE).await),
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
        arena_err(c.settle(cast.mallory, 1, &payouts, root).await),
        not_op
    );
    let r = c.settle(cast.operator, 1, &payouts, root).await.unwrap();
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
    let escrow = c.escrow(1).await.unwrap();
    assert_eq!((escrow.held, escrow.status), (0, MatchStatus::Settled));
    assert_eq!(c.result_root(1).await.unwrap(), root);

    // No double settlement, no refund or new fee after settlement.
    assert_eq!(
        arena_err(c.settle(cast.operator, 1, &payouts, root).await),
        not_open(1, 2)
    );
    assert_eq!(arena_err(c.refund(cast.operator, 1).await), not_open(1, 2));
    let closed = ArenaErrors::MatchClosed(Arena::MatchClosed {
        matchId: U256::from(1),
        status: 2,
    });
    assert_eq!(
        arena_err(c.lock_fee(cast.operator, 1, SPACE, cast.alice, FEE).await),
        closed
    );
    // A match that never opened cannot be settled.
    assert_eq!(
        arena_err(c.settle(cast.operator, 77, &[], root).await),
        not_open(77, 0)
    );
}

/// A settlement must pay the match's entrants, in lock order, the pot less the rake
/// (within a wei per entrant): more, less, a stranger or a missing entrant are refused.
/// A refund returns every fee, once.
pub async fn escrow_rules_and_refund<C: Chain>(c: &Contracts<C>, cast: &Cast) {
    c.lock_fee(cast.operator, 2, SPACE, cast.alice, FEE)
        .await
        .unwrap();
    c.lock_fee(cast.operator, 2, SPACE, cast.bob, FEE)
        .await
        .unwrap();
    let alice0 = c.balance_of(cast.alice).await.unwrap();
    let bob0 = c.balance_of(cast.bob).await.unwrap();
    let prize = 2 * FEE - 2 * FEE * u128::from(RAKE_BPS) / 10_000;
    let m = U256::from(2);
    let refused = [
        (
            pay(&[(cast.alice, FEE * 3 / 2), (cast.bob, FEE)]),
            ArenaErrors::PayoutExceedsPrize(Arena::PayoutExceedsPrize {
                matchId: m,
                prize: U256::from(prize),
            }),
        ),
        // The whole prize plus one wei.
        (
            pay(&[(cast.alice, prize), (cast.bob, 1)]),
            ArenaErrors::PayoutExceedsPrize(Arena::PayoutExceedsPrize {
                matchId: m,
                prize: U256::from(prize),
            }),
        ),
        // Three wei short with two entrants: more than rounding explains.
        (
            pay(&[(cast.alice, prize - 3), (cast.bob, 0)]),
            ArenaErrors::PayoutBelowPrize(Arena::PayoutBelowPrize {
                matchId: m,
                prize: U256::from(prize),
                paid: U256::from(prize - 3),
            }),
        ),
        // A payout to someone who did not enter.
        (
            pay(&[(cast.alice, prize / 2), (cast.mallory, prize / 2)]),
            ArenaErrors::NotEntrant(Arena::NotEntrant {
                matchId: m,
                account: cast.mallory,
            }),
        ),
        // The entrants out of lock order.
        (
            pay(&[(cast.bob, prize / 2), (cast.alice, prize / 2)]),
            ArenaErrors::NotEntrant(Arena::NotEntrant {
                matchId: m,
                account: cast.bob,
            }),
        ),
        // An entrant left out.
        (
            pay(&[(cast.alice, prize)]),
            ArenaErrors::EntrantCountMismatch(Arena::EntrantCountMismatch {
                matchId: m,
                entrants: U256::from(2),
                payees: U256::from(1),
            }),
        ),
    ];
    for (payouts, expect) in refused {
        assert_eq!(
            arena_err(c.settle(cast.operator, 2, &payouts, B256::ZERO).await),
            expect,
            "{payouts:?}"
        );
    }
    assert_eq!(
        c.escrow(2).await.unwrap().held,
        2 * FEE,
        "a refused settlement changes nothing"
    );
    assert_eq!(c.balance_of(cast.mallory).await.unwrap(), 0);

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
    let escrow = c.escrow(2).await.unwrap();
    assert_eq!((escrow.held, escrow.status), (0, MatchStatus::Refunded));
    assert_eq!(arena_err(c.refund(cast.operator, 2).await), not_open(2, 3));
    assert_eq!(
        arena_err(c.settle(cast.operator, 2, &[], B256::ZERO).await),
        not_open(2, 3)
    );
}

/// Rounding dust of up to a wei per entrant goes to the treasury with the rake.
pub async fn rounding_dust<C: Chain>(c: &Contracts<C>, cast: &Cast) {
    c.lock_fee(cast.operator, 5, SPACE, cast.alice, FEE)
        .await
        .unwrap();
    c.lock_fee(cast.operator, 5, SPACE, cast.bob, FEE)
        .await
        .unwrap();
    let prize = 2 * FEE - 2 * FEE * u128::from(RAKE_BPS) / 10_000;
    let treasury0 = c.balance_of(cast.treasury).await.unwrap();
    let r = c
        .settle(
            cast.operator,
            5,
            &pay(&[(cast.alice, prize / 2 - 1), (cast.bob, prize / 2 - 1)]),
            B256::repeat_byte(5),
        )
        .await
        .unwrap();
    let settled = &events::<Arena::MatchSettled>(&r)[0];
    assert_eq!(settled.toTreasury, U256::from(2 * FEE - prize + 2));
    assert_eq!(settled.treasury, cast.treasury);
    assert_eq!(
        c.balance_of(cast.treasury).await.unwrap(),
        treasury0 + 2 * FEE - prize + 2
    );
}

/// An entrant takes every fee of a match the operator left open back after the delay;
/// before it, or by anyone else, the reclaim is refused.
pub async fn reclaim_after_the_delay<C: Chain>(c: &Contracts<C>, cast: &Cast) {
    assert_eq!(
        c.reclaim_after_secs().await.unwrap(),
        RECLAIM_AFTER_SECS,
        "the deployed delay"
    );
    c.lock_fee(cast.operator, 6, SPACE, cast.alice, FEE)
        .await
        .unwrap();
    c.lock_fee(cast.operator, 6, SPACE, cast.bob, FEE)
        .await
        .unwrap();
    let (alice0, bob0) = (
        c.balance_of(cast.alice).await.unwrap(),
        c.balance_of(cast.bob).await.unwrap(),
    );
    let opened = c.escrow(6).await.unwrap().opened_at;
    assert_eq!(
        arena_err(c.reclaim(cast.alice, 6).await),
        ArenaErrors::TooEarly(Arena::TooEarly {
            matchId: U256::from(6),
            reclaimableAt: U256::from(opened + RECLAIM_AFTER_SECS),
        })
    );
    // Wait out the delay; a tiny deposit each time moves the chain's clock on.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        c.deposit(cast.carol, 1).await.unwrap();
        match c.reclaim(cast.mallory, 6).await {
            Err(e) if matches!(e.arena_error(), Some(ArenaErrors::TooEarly(_))) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the delay never passed"
                );
            }
            other => {
                // Past the delay, someone who did not enter is still refused.
                assert_eq!(
                    arena_err(other),
                    ArenaErrors::NotEntrant(Arena::NotEntrant {
                        matchId: U256::from(6),
                        account: cast.mallory,
                    })
                );
                break;
            }
        }
    }
    let r = c.reclaim(cast.bob, 6).await.unwrap();
    assert_eq!(
        events::<Arena::MatchReclaimed>(&r),
        vec![Arena::MatchReclaimed {
            matchId: U256::from(6),
            by: cast.bob,
        }]
    );
    assert_eq!(c.balance_of(cast.alice).await.unwrap(), alice0 + FEE);
    assert_eq!(c.balance_of(cast.bob).await.unwrap(), bob0 + FEE);
    let escrow = c.escrow(6).await.unwrap();
    assert_eq!((escrow.held, escrow.status), (0, MatchStatus::Refunded));
    assert_eq!(arena_err(c.reclaim(cast.alice, 6).await), not_open(6, 3));
    assert_eq!(
        arena_err(c.settle(cast.operator, 6, &[], B256::ZERO).await),
        not_open(6, 3)
    );
}

/// A free match's result root goes on chain once, and closes its id.
pub async fn anchor_free_results<C: Chain>(c: &Contracts<C>, cast: &Cast) {
    let root = B256::repeat_byte(0x20);
    assert_eq!(
        arena_err(c.anchor_result(cast.mallory, 20, root).await),
        ArenaErrors::NotOperator(Arena::NotOperator {
            caller: cast.mallory
        })
    );
    let r = c.anchor_result(cast.operator, 20, root).await.unwrap();
    assert_eq!(
        events::<Arena::ResultAnchored>(&r),
        vec![Arena::ResultAnchored {
            matchId: U256::from(20),
            resultRoot: root,
        }]
    );
    assert_eq!(c.result_root(20).await.unwrap(), root);
    let escrow = c.escrow(20).await.unwrap();
    assert_eq!((escrow.held, escrow.status), (0, MatchStatus::Settled));
    let exists = |status| {
        ArenaErrors::MatchExists(Arena::MatchExists {
            matchId: U256::from(20),
            status,
        })
    };
    assert_eq!(
        arena_err(c.anchor_result(cast.operator, 20, B256::ZERO).await),
        exists(2)
    );
    assert_eq!(
        arena_err(c.lock_fee(cast.operator, 20, SPACE, cast.alice, FEE).await),
        ArenaErrors::MatchClosed(Arena::MatchClosed {
            matchId: U256::from(20),
            status: 2,
        })
    );
    // A paid match's root comes with its settlement, not an anchor.
    c.lock_fee(cast.operator, 21, SPACE, cast.alice, FEE)
        .await
        .unwrap();
    assert_eq!(
        arena_err(c.anchor_result(cast.operator, 21, root).await),
        ArenaErrors::MatchExists(Arena::MatchExists {
            matchId: U256::from(21),
            status: 1,
        })
    );
    c.refund(cast.operator, 21).await.unwrap();
}

/// Only the admin changes the operator, the treasury, the admin and the pause; only the
/// operator locks; while paused no fee is locked.
pub async fn operator_rules<C: Chain>(c: &Contracts<C>, cast: &Cast) {
    let not_admin = ArenaErrors::NotAdmin(Arena::NotAdmin {
        caller: cast.operator,
    });
    assert_eq!(
        arena_err(c.set_operator(cast.operator, cast.mallory).await),
        not_admin
    );
    assert_eq!(
        arena_err(c.set_treasury(cast.operator, cast.mallory).await),
        not_admin
    );
    assert_eq!(
        arena_err(c.set_paused(cast.operator, true).await),
        not_admin
    );
    assert_eq!(
        arena_err(c.set_admin(cast.operator, cast.operator).await),
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
        arena_err(c.lock_fee(cast.operator, 3, SPACE, cast.alice, FEE).await),
        not_op
    );
    c.lock_fee(cast.successor, 3, SPACE, cast.alice, FEE)
        .await
        .unwrap();
    c.set_operator(cast.admin, cast.operator).await.unwrap();

    // Paused: no new fee is locked; settling and refunds go on.
    c.set_paused(cast.admin, true).await.unwrap();
    assert!(c.paused().await.unwrap());
    assert_eq!(
        arena_err(c.lock_fee(cast.operator, 4, SPACE, cast.bob, FEE).await),
        ArenaErrors::EntriesPaused(Arena::EntriesPaused {})
    );
    c.set_paused(cast.admin, false).await.unwrap();
    c.lock_fee(cast.operator, 4, SPACE, cast.bob, FEE)
        .await
        .unwrap();

    // The admin role moves, and the old admin loses it.
    c.set_admin(cast.admin, cast.successor).await.unwrap();
    assert_eq!(c.admin().await.unwrap(), cast.successor);
    assert_eq!(
        arena_err(c.set_paused(cast.admin, true).await),
        ArenaErrors::NotAdmin(Arena::NotAdmin { caller: cast.admin })
    );
    c.set_admin(cast.successor, cast.admin).await.unwrap();
    assert_eq!(c.treasury().await.unwrap(), cast.treasury);
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
