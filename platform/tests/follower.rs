//! The chain follower (issue 20, item 2): deposits and withdrawals that wallets make on
//! the Arena contract directly reach the journal exactly once, mixed with the server's
//! own deposits and withdrawals, with the follower stopped and started again (a fresh
//! `Payments` over the same database) at random points. After every step and every
//! pass, each wallet's balance in the contract equals its user's balance in the journal
//! (available plus locked) once the follower has caught up, and the contract holds
//! exactly the users' balances.

mod common;

use std::sync::Arc;

use chain::{AnyChain, Chain as _, Contracts};
use platform::payments::{Payments, Reclaim};
use store::Wei;
use testkit::db::TestDb;

const UNIT: u128 = 10u128.pow(15);

/// A small deterministic generator, so each seed replays the same sequence.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

async fn journal_matches_chain(
    store: &store::Store,
    contracts: &Contracts<AnyChain>,
    wallets: &[chain::Address],
    step: &str,
) {
    let mut owed = 0;
    for wallet in wallets {
        let on_chain = contracts.balance_of(*wallet).await.unwrap();
        let journal = match store.user_by_wallet(&format!("{wallet:#x}")).await.unwrap() {
            Some(user) => {
                let b = store.balance(user.id).await.unwrap();
                b.available_wei.0 + b.locked_wei.0
            }
            None => 0,
        };
        assert_eq!(on_chain, journal, "{wallet:#x} after {step}");
        owed += on_chain;
    }
    assert_eq!(
        contracts.arena_funds().await.unwrap(),
        owed,
        "the contract holds what the users own, after {step}"
    );
}

async fn random_sequences_keep_the_journal_equal_to_the_chain(
    store: &store::Store,
    contracts: Arc<Contracts<AnyChain>>,
    first: Arc<Payments>,
) {
    let dev = chain::dev::dev_accounts(10);
    let operator = dev[common::OPERATOR];
    // Wallets 4 and 5 signed in; 6 never did (its direct deposit creates its user).
    let wallets = [dev[4], dev[5], dev[6]];
    for w in &wallets[..2] {
        store.upsert_user(&format!("{w:#x}")).await.unwrap();
    }
    let fresh = || Arc::new(Payments::new(store.clone(), contracts.clone(), operator));
    let mut payments = first;
    let mut rng = Lcg(7);
    let mut direct_deposits = 0;
    let mut direct_withdrawals = 0;
    for step in 0..40 {
        let who = wallets[rng.next(3) as usize];
        let user = store.user_by_wallet(&format!("{who:#x}")).await.unwrap();
        let units = 1 + u128::from(rng.next(4));
        let what = match rng.next(6) {
            0 => {
                contracts.deposit(who, units * UNIT).await.unwrap();
                direct_deposits += 1;
                "a direct deposit"
            }
            1 => {
                let held = contracts.balance_of(who).await.unwrap();
                if held < units * UNIT {
                    continue;
                }
                // The follower must have caught up with this wallet's deposits first,
                // as a real wallet's withdrawal comes after its deposit is journaled.
                payments.follow_chain().await.unwrap();
                contracts.withdraw(who, units * UNIT).await.unwrap();
                direct_withdrawals += 1;
                "a direct withdrawal"
            }
            2 => match &user {
                Some(u) => {
                    payments.deposit(u.id, Wei(units * UNIT)).await.unwrap();
                    "a server deposit"
                }
                None => continue,
            },
            3 => match &user {
                Some(u) => {
                    payments.follow_chain().await.unwrap();
                    let available = store.balance(u.id).await.unwrap().available_wei.0;
                    if available < units * UNIT {
                        continue;
                    }
                    payments.withdraw(u.id, Wei(units * UNIT)).await.unwrap();
                    "a server withdrawal"
                }
                None => continue,
            },
            4 => {
                // Stopped and started again: only the database remembers.
                payments = fresh();
                "a restart"
            }
            _ => {
                let done = payments.reconcile(&Reclaim::Everything).await.unwrap();
                assert!(done.failed.is_empty(), "{done:?}");
                "a sweep"
            }
        };
        payments.follow_chain().await.unwrap();
        journal_matches_chain(store, &contracts, &wallets, &format!("step {step}: {what}")).await;
        // A second pass finds nothing new.
        let again = payments.follow_chain().await.unwrap();
        assert!(
            again.deposits_credited.is_empty() && again.withdrawals_debited.is_empty(),
            "{again:?}"
        );
    }
    assert!(
        direct_deposits > 3 && direct_withdrawals > 0,
        "the sequence exercised direct moves: {direct_deposits} deposits, {direct_withdrawals} withdrawals"
    );
    // Replaying the whole history from the first block changes nothing.
    let head = contracts.chain().block_number().await.unwrap();
    assert!(head > 0);
    let name = format!("arena-events:{:#x}", contracts.deployment().arena);
    store.set_chain_cursor(&name, -1).await.unwrap();
    let replay = fresh().follow_chain().await.unwrap();
    assert!(
        replay.deposits_credited.is_empty() && replay.withdrawals_debited.is_empty(),
        "{replay:?}"
    );
    journal_matches_chain(store, &contracts, &wallets, "a replay from block 0").await;
}

#[tokio::test]
async fn the_follower_journals_each_direct_move_once_on_the_embedded_chain() {
    for db in [Some(TestDb::sqlite().await), TestDb::postgres().await]
        .into_iter()
        .flatten()
    {
        let (contracts, payments) = common::embedded_payments(&db.store).await;
        random_sequences_keep_the_journal_equal_to_the_chain(&db.store, contracts, payments).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_follower_journals_each_direct_move_once_on_hardhat() {
    let Some(node) = common::hardhat().await else {
        return;
    };
    for token in [false, true] {
        let db = TestDb::sqlite().await;
        let (contracts, payments) =
            common::payments_in(&db.store, AnyChain::Rpc(node.rpc().await), token).await;
        random_sequences_keep_the_journal_equal_to_the_chain(&db.store, contracts, payments).await;
    }
    drop(node);
}

/// The same, with fees in an ERC-20 token: direct token deposits (approve, then
/// `deposit(amount)`) and withdrawals reach the journal once.
#[tokio::test]
async fn the_follower_journals_each_direct_token_move_once() {
    for db in [Some(TestDb::sqlite().await), TestDb::postgres().await]
        .into_iter()
        .flatten()
    {
        let chain = AnyChain::Embedded(chain::Embedded::ephemeral(31337, 10));
        let (contracts, payments) = common::payments_in(&db.store, chain, true).await;
        assert!(matches!(contracts.fee_asset(), chain::FeeAsset::Token(_)));
        random_sequences_keep_the_journal_equal_to_the_chain(&db.store, contracts, payments).await;
    }
}

/// Only blocks `confirmations` below the head are read: a deposit is journaled once
/// it is deep enough, never before.
#[tokio::test]
async fn the_follower_waits_for_confirmations() {
    let db = TestDb::sqlite().await;
    let store = &db.store;
    let (contracts, _) = common::embedded_payments(store).await;
    let dev = chain::dev::dev_accounts(10);
    let payments = Payments::new(store.clone(), contracts.clone(), dev[common::OPERATOR])
        .with_confirmations(3);
    let wallet = dev[4];
    contracts.deposit(wallet, UNIT).await.unwrap();
    let first = payments.follow_chain().await.unwrap();
    assert!(first.deposits_credited.is_empty(), "{first:?}");
    assert!(
        store
            .user_by_wallet(&format!("{wallet:#x}"))
            .await
            .unwrap()
            .is_none()
    );
    // Three more blocks (other wallets' deposits) bury it deep enough.
    for _ in 0..3 {
        contracts.deposit(dev[5], UNIT).await.unwrap();
    }
    let then = payments.follow_chain().await.unwrap();
    assert_eq!(then.deposits_credited.len(), 1, "{then:?}");
    let user = store
        .user_by_wallet(&format!("{wallet:#x}"))
        .await
        .unwrap()
        .expect("a wallet that deposited directly has a user");
    assert_eq!(
        store.balance(user.id).await.unwrap().available_wei,
        Wei(UNIT)
    );
}

/// A withdrawal this server sent and the chain mined, seen by the follower before the
/// server recorded its hash (its outbox row still pending, hashless): the follower
/// takes it for the server's (same user, same amount), notes the hash, and debits
/// nothing more. A withdrawal by a wallet with no user (the treasury's rakes) is left
/// out of users' balances.
#[tokio::test]
async fn an_in_flight_server_withdrawal_is_not_debited_twice() {
    let db = TestDb::sqlite().await;
    let store = &db.store;
    let (contracts, payments) = common::embedded_payments(store).await;
    let dev = chain::dev::dev_accounts(10);
    let wallet = dev[4];
    let user = store.upsert_user(&format!("{wallet:#x}")).await.unwrap();
    payments.deposit(user.id, Wei(5 * UNIT)).await.unwrap();
    // What `Payments::withdraw` does before its transfer returns: the debit, then the
    // outbox row keyed by user, amount and journal key.
    store
        .withdraw(user.id, Wei(2 * UNIT), "in-flight")
        .await
        .unwrap();
    let key = format!("withdraw:{}:{}:in-flight", user.id, 2 * UNIT);
    store.begin_chain_tx(&key, "withdraw").await.unwrap();
    let receipt = contracts.withdraw(wallet, 2 * UNIT).await.unwrap();
    let followed = payments.follow_chain().await.unwrap();
    assert!(followed.journaled_nothing(), "{followed:?}");
    let row = store.chain_tx_by_key(&key).await.unwrap().unwrap();
    assert_eq!(row.status, "pending");
    assert_eq!(
        row.tx_hash.as_deref(),
        Some(format!("{:#x}", receipt.tx_hash).as_str())
    );
    let b = store.balance(user.id).await.unwrap();
    assert_eq!(b.available_wei, Wei(3 * UNIT), "debited once");
    assert_eq!(contracts.balance_of(wallet).await.unwrap(), 3 * UNIT);
    // The sweep then confirms it from its receipt.
    let done = payments.reconcile(&Reclaim::Everything).await.unwrap();
    assert_eq!(done.withdrawals_finished, vec![key.clone()]);
    assert_eq!(
        store.chain_tx_by_key(&key).await.unwrap().unwrap().status,
        "confirmed"
    );
    assert_eq!(
        store.balance(user.id).await.unwrap().available_wei,
        Wei(3 * UNIT)
    );

    // A wallet with no user taking funds out (as the treasury takes its rakes, which
    // settlements credited without any deposit): here a wallet whose deposit the
    // follower never read (its cursor already past it).
    let stranger = dev[7];
    contracts.deposit(stranger, UNIT).await.unwrap();
    let head = contracts.chain().block_number().await.unwrap();
    let name = format!("arena-events:{:#x}", contracts.deployment().arena);
    store.set_chain_cursor(&name, head as i64).await.unwrap();
    contracts.withdraw(stranger, UNIT).await.unwrap();
    let followed = payments.follow_chain().await.unwrap();
    assert!(followed.journaled_nothing(), "{followed:?}");
    assert_eq!(
        followed.to_block,
        Some(head + 1),
        "the cursor moves past it"
    );
    assert!(
        store
            .user_by_wallet(&format!("{stranger:#x}"))
            .await
            .unwrap()
            .is_none()
    );
}

/// A wallet's own deposit and withdrawal, reported to the server by transaction hash
/// (what the browser does after its wallet sent them): counted once deep enough, once
/// however often reported and whether the follower or the report comes first, and
/// only for the wallet that sent them.
async fn wallet_reports_count_once(store: &store::Store) {
    let (contracts, _) = common::embedded_payments(store).await;
    let dev = chain::dev::dev_accounts(10);
    let payments = Payments::new(store.clone(), contracts.clone(), dev[common::OPERATOR])
        .with_confirmations(2);
    let (wallet, other) = (dev[4], dev[6]);
    let user = store.upsert_user(&format!("{wallet:#x}")).await.unwrap();
    let stranger = store.upsert_user(&format!("{other:#x}")).await.unwrap();
    let bury = || async {
        for _ in 0..2 {
            contracts.deposit(dev[5], UNIT).await.unwrap();
        }
    };

    let sent = contracts.deposit(wallet, 3 * UNIT).await.unwrap().tx_hash;
    let early = payments.record_wallet_deposit(user.id, sent).await;
    assert!(
        matches!(
            early,
            Err(platform::payments::PaymentError::Unconfirmed {
                have: 0,
                need: 2,
                ..
            })
        ),
        "{early:?}"
    );
    bury().await;
    let credited = payments.record_wallet_deposit(user.id, sent).await.unwrap();
    assert_eq!(credited.available_wei, Wei(3 * UNIT));
    let again = payments.record_wallet_deposit(user.id, sent).await.unwrap();
    assert_eq!(
        again.available_wei,
        Wei(3 * UNIT),
        "reported twice, credited once"
    );
    let theirs = payments.record_wallet_deposit(stranger.id, sent).await;
    assert!(
        matches!(
            &theirs,
            Err(platform::payments::PaymentError::Invalid {
                field: "tx_hash",
                ..
            })
        ),
        "another user cannot claim it: {theirs:?}"
    );
    let followed = payments.follow_chain().await.unwrap();
    assert!(
        !followed.deposits_credited.contains(&format!("{sent:#x}")),
        "the follower does not credit it again: {followed:?}"
    );

    let out = contracts.withdraw(wallet, UNIT).await.unwrap().tx_hash;
    bury().await;
    let as_deposit = payments.record_wallet_deposit(user.id, out).await;
    assert!(
        matches!(
            &as_deposit,
            Err(platform::payments::PaymentError::Invalid { reason, .. }) if reason.contains("deposited nothing")
        ),
        "{as_deposit:?}"
    );
    let debited = payments
        .record_wallet_withdrawal(user.id, out)
        .await
        .unwrap();
    assert_eq!(debited.available_wei, Wei(2 * UNIT));
    let again = payments
        .record_wallet_withdrawal(user.id, out)
        .await
        .unwrap();
    assert_eq!(
        again.available_wei,
        Wei(2 * UNIT),
        "reported twice, debited once"
    );
    bury().await;
    let followed = payments.follow_chain().await.unwrap();
    assert!(followed.withdrawals_debited.is_empty(), "{followed:?}");
    assert_eq!(
        contracts.balance_of(wallet).await.unwrap(),
        store.balance(user.id).await.unwrap().available_wei.0,
        "the contract and the journal agree on the wallet"
    );
}

#[tokio::test]
async fn a_wallet_reports_its_own_deposit_and_withdrawal_once() {
    for db in [Some(TestDb::sqlite().await), TestDb::postgres().await]
        .into_iter()
        .flatten()
    {
        wallet_reports_count_once(&db.store).await;
    }
}

/// A follower with no cursor starts at `chain.start_block` (the contracts'
/// deployment), not at the genesis block: nothing older is read.
#[tokio::test]
async fn the_follower_starts_at_the_start_block() {
    let db = TestDb::sqlite().await;
    let store = &db.store;
    let (contracts, _) = common::embedded_payments(store).await;
    let dev = chain::dev::dev_accounts(10);
    contracts.deposit(dev[4], UNIT).await.unwrap();
    let start = contracts.chain().block_number().await.unwrap() + 1;
    let payments = Payments::new(store.clone(), contracts.clone(), dev[common::OPERATOR])
        .with_start_block(start);
    contracts.deposit(dev[5], 2 * UNIT).await.unwrap();
    let followed = payments.follow_chain().await.unwrap();
    assert_eq!(followed.deposits_credited.len(), 1, "{followed:?}");
    assert!(
        store
            .user_by_wallet(&format!("{:#x}", dev[4]))
            .await
            .unwrap()
            .is_none(),
        "the deposit before the start block is not read"
    );
    let later = store
        .user_by_wallet(&format!("{:#x}", dev[5]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.balance(later.id).await.unwrap().available_wei,
        Wei(2 * UNIT)
    );
}

/// With fees in a token, the server-signed deposit checks the wallet's tokens, not its
/// ETH: a wallet that holds ETH but no tokens is refused before anything is sent, in
/// the token's units, and a deposit it can pay is journaled as the Arena credited it.
#[tokio::test]
async fn a_token_deposit_checks_the_wallets_tokens() {
    use alloy::sol_types::SolCall as _;
    let db = TestDb::sqlite().await;
    let chain = AnyChain::Embedded(chain::Embedded::ephemeral(31337, 10));
    let (contracts, payments) = common::payments_in(&db.store, chain, true).await;
    let chain::FeeAsset::Token(token) = contracts.fee_asset() else {
        panic!("a token Arena");
    };
    let payments = Arc::new(
        Arc::try_unwrap(payments)
            .unwrap_or_else(|_| panic!("one handle"))
            .with_money(store::Money::token(chain::TEST_TOKEN_SYMBOL, 18)),
    );
    let dev = chain::dev::dev_accounts(10);
    let (wallet, elsewhere) = (dev[4], dev[5]);
    let user = db.store.upsert_user(&format!("{wallet:#x}")).await.unwrap();
    // The wallet gives all its tokens away; it keeps its ETH.
    let all = contracts.wallet_funds(wallet).await.unwrap();
    let give = chain::bindings::TestToken::transferCall {
        to: elsewhere,
        amount: alloy::primitives::U256::from(all),
    };
    contracts
        .chain()
        .send(chain::TxRequest {
            from: wallet,
            to: Some(token),
            data: give.abi_encode().into(),
            value: alloy::primitives::U256::ZERO,
        })
        .await
        .unwrap();
    assert_eq!(contracts.wallet_funds(wallet).await.unwrap(), 0);
    assert!(contracts.chain().balance(wallet).await.unwrap() > alloy::primitives::U256::ZERO);
    let err = payments.deposit(user.id, Wei(UNIT)).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("amount_wei:")
            && text.contains("holds 0 TUSD")
            && text.contains("0.001 TUSD"),
        "{text}"
    );
    assert_eq!(contracts.balance_of(wallet).await.unwrap(), 0);
    // Tokens back: the deposit goes through and the journal credits what arrived.
    let back = chain::bindings::TestToken::transferCall {
        to: wallet,
        amount: alloy::primitives::U256::from(UNIT),
    };
    contracts
        .chain()
        .send(chain::TxRequest {
            from: elsewhere,
            to: Some(token),
            data: back.abi_encode().into(),
            value: alloy::primitives::U256::ZERO,
        })
        .await
        .unwrap();
    let balance = payments.deposit(user.id, Wei(UNIT)).await.unwrap();
    assert_eq!(balance.available_wei, Wei(UNIT));
    assert_eq!(contracts.balance_of(wallet).await.unwrap(), UNIT);
}
