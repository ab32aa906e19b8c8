//! The match runner end to end on the orchestration test policy, with fees locked and
//! paid on the embedded chain, on SQLite and PostgreSQL: matches settle with exact
//! payouts and the contract's balances equal the database journal; a stalled match is
//! refunded at its deadline; a chain failure after the database write is finished by
//! reconciliation; a crash with matches in play refunds them on restart.

mod common;

use std::sync::Arc;

use alloy::primitives::{Address, B256};
use arena::engine::{Engine, EngineError, EngineOutput, GenRequest, InstantEngine, Ticket};
use arena::events::EventKind;
use arena::judging::RulesOnlyJudge;
use chain::{AnyChain, Contracts, MatchStatus};
use platform::bus::Bus;
use platform::demo::{ETH, seed_demo};
use platform::payments::{Payments, Reclaim};
use platform::play::{MatchEnd, RunnerConfig, SpaceSlot};
use platform::runner::MatchRunner;
use store::{Store, Wei, match_status};

use common::{OPERATOR, TREASURY};

struct Rig {
    store: Store,
    payments: Arc<Payments>,
    contracts: Arc<Contracts<AnyChain>>,
    spaces: Vec<SpaceSlot>,
    bus: Bus,
}

async fn rig(store: &Store) -> Rig {
    let (contracts, payments) = common::embedded_payments(store).await;
    rig_with(store, contracts, payments).await
}

async fn rig_with(
    store: &Store,
    contracts: Arc<Contracts<AnyChain>>,
    payments: Arc<Payments>,
) -> Rig {
    Rig {
        store: store.clone(),
        payments,
        contracts,
        spaces: common::shipped_spaces(store, &[]).await,
        bus: Bus::new(),
    }
}

impl Rig {
    fn runner(&self, engine: Box<dyn Engine>, cfg: RunnerConfig) -> MatchRunner {
        MatchRunner::new(
            self.store.clone(),
            self.payments.clone(),
            self.bus.clone(),
            engine,
            Box::new(RulesOnlyJudge),
            self.spaces.clone(),
            cfg,
        )
    }

    /// Every owner's contract balance equals their spendable plus queued-locked
    /// balance in the database, each escrow of a match in play holds its pot, and the
    /// treasury's contract balance equals the journal's treasury account.
    async fn assert_books_agree(&self) {
        let mut locked_in_matches = 0u128;
        for status in [match_status::PENDING, match_status::RUNNING] {
            for m in self.store.matches_with_status(status).await.unwrap() {
                let pot: u128 = self
                    .store
                    .match_entries(m.id)
                    .await
                    .unwrap()
                    .iter()
                    .map(|e| e.fee_wei.0)
                    .sum();
                let escrow = self.contracts.escrow(m.id as u64).await.unwrap();
                assert_eq!(escrow.held, pot, "escrow of live match {}", m.id);
                locked_in_matches += pot;
            }
        }
        let wallets = &chain::dev::dev_accounts(5)[1..];
        let mut db_locked_total = 0u128;
        for wallet in wallets {
            let user = self
                .store
                .user_by_wallet(&format!("{wallet:#x}"))
                .await
                .unwrap()
                .unwrap();
            let b = self.store.balance(user.id).await.unwrap();
            let on_chain = self.contracts.balance_of(*wallet).await.unwrap();
            // Fees of entries still queued are locked in the database but still in
            // the owner's contract balance; fees of matches in play are in escrow.
            db_locked_total += b.locked_wei.0;
            let in_play: u128 = self.locked_in_play(user.id).await;
            assert_eq!(
                on_chain,
                b.available_wei.0 + b.locked_wei.0 - in_play,
                "contract balance of {wallet} vs database"
            );
        }
        assert_eq!(
            db_locked_total - locked_in_matches,
            self.queued_fees().await,
            "locked = queued fees + fees in play"
        );
        let treasury = chain::dev::dev_accounts(10)[TREASURY];
        assert_eq!(
            self.contracts.balance_of(treasury).await.unwrap(),
            self.store.treasury_total().await.unwrap().0,
            "treasury"
        );
    }

    async fn locked_in_play(&self, user_id: i64) -> u128 {
        let mut sum = 0;
        for status in [match_status::PENDING, match_status::RUNNING] {
            for m in self.store.matches_with_status(status).await.unwrap() {
                for e in self.store.match_entries(m.id).await.unwrap() {
                    if e.user_id == user_id {
                        sum += e.fee_wei.0;
                    }
                }
            }
        }
        sum
    }

    async fn queued_fees(&self) -> u128 {
        let mut sum = 0;
        for slot in &self.spaces {
            for t in &slot.tiers {
                for e in self
                    .store
                    .queued_entries(slot.space.id, t.id)
                    .await
                    .unwrap()
                {
                    sum += e.fee_wei.0;
                }
            }
        }
        sum
    }
}

async fn matches_settle_with_exact_payouts(store: &Store) {
    let rig = rig(store).await;
    let demo = seed_demo(
        store,
        &rig.payments,
        &rig.spaces,
        &[("bronze", Wei(ETH)), ("free", Wei(0))],
        Wei(ETH),
    )
    .await
    .unwrap();
    assert_eq!(demo.agents.len(), 12);
    let mut events = rig.bus.subscribe();
    let mut runner = rig.runner(Box::new(InstantEngine::new()), RunnerConfig::default());
    let mut reports = Vec::new();
    for _ in 0..6 {
        reports.extend(runner.step().await.unwrap());
    }
    // Drain: no new entries, finish what is in play.
    for _ in 0..20 {
        runner.matchmake().await.unwrap();
        let outcomes = runner.tick();
        reports.extend(runner.finish(outcomes).await.unwrap());
    }
    assert_eq!(runner.live_matches(), 0);
    let settled: Vec<_> = reports
        .iter()
        .filter(|r| matches!(r.end, MatchEnd::Settled { .. }))
        .collect();
    assert!(settled.len() >= 10, "{} settled", settled.len());
    assert!(
        reports
            .iter()
            .all(|r| matches!(r.end, MatchEnd::Settled { .. })),
        "{reports:?}"
    );
    let spaces_played: std::collections::HashSet<&str> =
        settled.iter().map(|r| r.space.as_str()).collect();
    assert_eq!(spaces_played.len(), 5, "{spaces_played:?}");
    let mut paid_matches = 0;
    for r in &settled {
        let m = store.get_match(r.match_id).await.unwrap();
        assert_eq!(m.status, "settled");
        let s = store.match_settlement(r.match_id).await.unwrap().unwrap();
        let payouts: u128 = store
            .match_payouts(r.match_id)
            .await
            .unwrap()
            .iter()
            .map(|p| p.amount_wei.0)
            .sum();
        assert_eq!(payouts + s.treasury_wei.0, s.pot_wei.0, "exact payout");
        let escrow = rig.contracts.escrow(r.match_id as u64).await.unwrap();
        if s.pot_wei.0 > 0 {
            paid_matches += 1;
            assert!(escrow.opened_at > 0, "a paid match's escrow was opened");
        } else {
            assert_eq!(escrow.opened_at, 0, "a free match locks nothing");
        }
        // Paid matches are settled there, free ones anchored: every root is on chain.
        assert_eq!(escrow.status, MatchStatus::Settled);
        assert_eq!(escrow.held, 0);
        let root: B256 = s.result_root.as_deref().unwrap().parse().unwrap();
        assert_eq!(
            rig.contracts.result_root(r.match_id as u64).await.unwrap(),
            root
        );
        let ct = store
            .chain_tx_by_key(&format!("settle:match:{}", r.match_id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ct.status, "confirmed");
    }
    assert!(paid_matches >= 5, "{paid_matches} paid matches");
    rig.assert_books_agree().await;
    // Pairs were cut and ratings moved.
    let board = store.leaderboard(rig.spaces[0].space.id).await.unwrap();
    assert!(board.iter().any(|r| r.matches_played > 0));
    let mut saw_payouts = 0;
    while let Ok(e) = events.try_recv() {
        if matches!(e.kind, EventKind::Payouts { .. }) {
            saw_payouts += 1;
        }
    }
    assert_eq!(saw_payouts, settled.len());
    // Leaving the queue returns every queued fee; the books still agree.
    for slot in &rig.spaces {
        for t in &slot.tiers {
            for e in store.queued_entries(slot.space.id, t.id).await.unwrap() {
                store.leave(e.id).await.unwrap();
            }
        }
    }
    rig.assert_books_agree().await;
}

/// An engine that accepts generations and never finishes them.
struct Stalled(u64);
impl Engine for Stalled {
    fn submit(&mut self, _: GenRequest) -> Result<Ticket, EngineError> {
        self.0 += 1;
        Ok(self.0)
    }
    fn step(&mut self) -> Result<Vec<EngineOutput>, EngineError> {
        Ok(Vec::new())
    }
    fn cancel(&mut self, _: Ticket) {}
    fn live(&self) -> usize {
        self.0 as usize
    }
}

async fn stalled_matches_are_refunded_on_chain(store: &Store) {
    let rig = rig(store).await;
    seed_demo(
        store,
        &rig.payments,
        &rig.spaces,
        &[("bronze", Wei(ETH))],
        Wei(ETH),
    )
    .await
    .unwrap();
    let cfg = RunnerConfig {
        match_deadline_ms: 0,
        ..RunnerConfig::default()
    };
    let mut runner = rig.runner(Box::new(Stalled(0)), cfg);
    let started = {
        runner.auto_enter().await.unwrap();
        runner.matchmake().await.unwrap()
    };
    assert!(!started.is_empty());
    for &id in &started {
        let escrow = rig.contracts.escrow(id as u64).await.unwrap();
        assert_eq!(escrow.status, MatchStatus::Open);
        assert!(escrow.held > 0);
    }
    rig.assert_books_agree().await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let outcomes = runner.tick();
    let reports = runner.finish(outcomes).await.unwrap();
    assert_eq!(reports.len(), started.len());
    for r in &reports {
        assert!(
            matches!(&r.end, MatchEnd::Refunded { reason } if reason.contains("deadline")),
            "{r:?}"
        );
        assert_eq!(
            rig.contracts
                .escrow(r.match_id as u64)
                .await
                .unwrap()
                .status,
            MatchStatus::Refunded
        );
        assert_eq!(
            store.get_match(r.match_id).await.unwrap().status,
            "refunded"
        );
    }
    rig.assert_books_agree().await;
}

async fn a_chain_failure_after_the_database_write_is_reconciled(store: &Store) {
    let rig = rig(store).await;
    seed_demo(
        store,
        &rig.payments,
        &rig.spaces,
        &[("bronze", Wei(ETH))],
        Wei(ETH),
    )
    .await
    .unwrap();
    let mut runner = rig.runner(Box::new(InstantEngine::new()), RunnerConfig::default());
    runner.auto_enter().await.unwrap();
    let started = runner.matchmake().await.unwrap();
    assert!(!started.is_empty());
    // The operator loses its role: the chain refuses the settlements.
    let dev = chain::dev::dev_accounts(10);
    let stranger: Address = dev[8];
    rig.contracts
        .set_operator(dev[OPERATOR], stranger)
        .await
        .unwrap();
    let mut reports = Vec::new();
    while runner.live_matches() > 0 {
        let outcomes = runner.tick();
        reports.extend(runner.finish(outcomes).await.unwrap());
    }
    assert_eq!(reports.len(), started.len());
    for &id in &started {
        assert_eq!(store.get_match(id).await.unwrap().status, "settled");
        assert_eq!(
            rig.contracts.escrow(id as u64).await.unwrap().status,
            MatchStatus::Open,
            "the chain refused"
        );
    }
    // While the chain still refuses, a sweep reports each match and carries on.
    let refused = rig.payments.reconcile(&Reclaim::Everything).await.unwrap();
    assert!(refused.settlements_pushed.is_empty(), "{refused:?}");
    assert_eq!(refused.failed.len(), started.len(), "{refused:?}");
    // One match's rows now disagree (a payout to an entry outside it): that match
    // alone is left pending; the sweep sends every other.
    let mut expected = started.clone();
    expected.sort_unstable();
    assert!(expected.len() >= 2, "{expected:?}");
    let bad = expected[0];
    let own = store.match_entries(bad).await.unwrap()[0].id;
    let outside = store.match_entries(expected[1]).await.unwrap()[0].id;
    store
        .execute_admin(&format!(
            "UPDATE payouts SET entry_id = {outside} WHERE match_id = {bad} AND entry_id = {own}"
        ))
        .await
        .unwrap();
    // Restored, reconciliation sends every pending settlement exactly once.
    rig.contracts
        .set_operator(dev[OPERATOR], dev[OPERATOR])
        .await
        .unwrap();
    let done = rig.payments.reconcile(&Reclaim::Everything).await.unwrap();
    assert_eq!(done.failed.len(), 1, "{done:?}");
    assert!(
        done.failed[0].starts_with(&format!("match {bad}:")),
        "{done:?}"
    );
    let mut pushed = done.settlements_pushed.clone();
    pushed.sort_unstable();
    assert_eq!(pushed, expected[1..]);
    // Mended, the next sweep sends it.
    store
        .execute_admin(&format!(
            "UPDATE payouts SET entry_id = {own} WHERE match_id = {bad} AND entry_id = {outside}"
        ))
        .await
        .unwrap();
    let mended = rig.payments.reconcile(&Reclaim::Everything).await.unwrap();
    assert_eq!(mended.settlements_pushed, vec![bad], "{mended:?}");
    assert!(mended.failed.is_empty(), "{mended:?}");
    for &id in &started {
        assert_eq!(
            rig.contracts.escrow(id as u64).await.unwrap().status,
            MatchStatus::Settled
        );
    }
    let again = rig.payments.reconcile(&Reclaim::Everything).await.unwrap();
    assert!(again.settlements_pushed.is_empty(), "{again:?}");
    rig.assert_books_agree().await;
}

async fn a_crash_with_matches_in_play_refunds_them_on_restart(store: &Store) {
    let rig = rig(store).await;
    seed_demo(
        store,
        &rig.payments,
        &rig.spaces,
        &[("bronze", Wei(ETH))],
        Wei(ETH),
    )
    .await
    .unwrap();
    let started = {
        let mut runner = rig.runner(Box::new(Stalled(0)), RunnerConfig::default());
        runner.auto_enter().await.unwrap();
        let started = runner.matchmake().await.unwrap();
        runner.tick();
        started
        // The runner is dropped here, as a crashed process would be.
    };
    assert!(!started.is_empty());
    let done = rig.payments.reconcile(&Reclaim::Everything).await.unwrap();
    let mut refunded = done.refunded.clone();
    refunded.sort_unstable();
    let mut expected = started.clone();
    expected.sort_unstable();
    assert_eq!(refunded, expected);
    for &id in &started {
        assert_eq!(store.get_match(id).await.unwrap().status, "refunded");
        assert_eq!(
            rig.contracts.escrow(id as u64).await.unwrap().status,
            MatchStatus::Refunded
        );
    }
    rig.assert_books_agree().await;
    assert!(
        rig.payments
            .reconcile(&Reclaim::Everything)
            .await
            .unwrap()
            .refunded
            .is_empty()
    );
}

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

/// Issue 20, item 2: conservation at every step of a random sequence of deposits and
/// withdrawals (made by wallets on the contract directly, and by the server),
/// entries, played and settled matches, refunded matches and restarts (the payments
/// and runner dropped as a killed process's are, then reconciled and the follower
/// started afresh from the database). After each step and a follower pass, the
/// contract's ETH equals what it owes (every wallet's balance, the escrows and the
/// treasury's), and the journal equals the contract per wallet
/// (`Rig::assert_books_agree`).
async fn random_money_and_matches_conserve(mut rig: Rig, seed: u64) {
    let store = rig.store.clone();
    let demo = seed_demo(
        &store,
        &rig.payments,
        &rig.spaces,
        &[("bronze", Wei(ETH)), ("free", Wei(0))],
        Wei(ETH),
    )
    .await
    .unwrap();
    let owners: Vec<(i64, Address)> = {
        let mut out = Vec::new();
        for id in demo.owners {
            let w = store
                .user(id)
                .await
                .unwrap()
                .wallet_address
                .parse()
                .unwrap();
            out.push((id, w));
        }
        out
    };
    let operator = chain::dev::dev_accounts(10)[OPERATOR];
    let unit = ETH / 100;
    let mut rng = Lcg(seed);
    let mut runner = rig.runner(Box::new(InstantEngine::new()), RunnerConfig::default());
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    for step in 0..36 {
        let (user, wallet) = owners[rng.next(owners.len() as u64) as usize];
        let amount = unit * (1 + u128::from(rng.next(5)));
        let what = match rng.next(8) {
            0 => {
                rig.contracts.deposit(wallet, amount).await.unwrap();
                "a direct deposit"
            }
            1 => {
                rig.payments.follow_chain().await.unwrap();
                let available = store.balance(user).await.unwrap().available_wei.0;
                if available < amount {
                    continue;
                }
                rig.contracts.withdraw(wallet, amount).await.unwrap();
                "a direct withdrawal"
            }
            2 => {
                rig.payments.deposit(user, Wei(amount)).await.unwrap();
                "a server deposit"
            }
            3 => {
                rig.payments.follow_chain().await.unwrap();
                let available = store.balance(user).await.unwrap().available_wei.0;
                if available < amount {
                    continue;
                }
                rig.payments.withdraw(user, Wei(amount)).await.unwrap();
                "a server withdrawal"
            }
            4 | 5 => {
                // Entries (auto-entry), new matches, and play until they settle.
                runner.step().await.unwrap();
                for _ in 0..10 {
                    let outcomes = runner.tick();
                    runner.finish(outcomes).await.unwrap();
                    if runner.live_matches() == 0 {
                        break;
                    }
                }
                "matches played"
            }
            6 => {
                runner.auto_enter().await.unwrap();
                runner.matchmake().await.unwrap();
                runner.abandon_all("refunded by the test").await.unwrap();
                "matches refunded"
            }
            _ => {
                // Killed: the runner and the payments go; a new process reconciles
                // (refunding what was in play) and follows the chain from the
                // database's cursor.
                runner.auto_enter().await.unwrap();
                runner.matchmake().await.unwrap();
                drop(runner);
                rig.payments = Arc::new(Payments::new(
                    store.clone(),
                    rig.contracts.clone(),
                    operator,
                ));
                let done = rig.payments.reconcile(&Reclaim::Everything).await.unwrap();
                assert!(done.failed.is_empty(), "{done:?}");
                runner = rig.runner(Box::new(InstantEngine::new()), RunnerConfig::default());
                "a restart"
            }
        };
        *kinds.entry(what).or_default() += 1;
        let followed = rig.payments.follow_chain().await.unwrap();
        assert!(followed.waiting.is_empty(), "step {step}: {followed:?}");
        // The contract's own books: its ETH is exactly what it owes.
        let mut owed = 0u128;
        for (_, w) in &owners {
            owed += rig.contracts.balance_of(*w).await.unwrap();
        }
        owed += rig
            .contracts
            .balance_of(chain::dev::dev_accounts(10)[TREASURY])
            .await
            .unwrap();
        for status in [match_status::PENDING, match_status::RUNNING] {
            for m in store.matches_with_status(status).await.unwrap() {
                owed += rig.contracts.escrow(m.id as u64).await.unwrap().held;
            }
        }
        assert_eq!(
            rig.contracts.arena_funds().await.unwrap(),
            owed,
            "step {step} ({what}): the contract holds what it owes"
        );
        rig.assert_books_agree().await;
    }
    for kind in [
        "a direct deposit",
        "a server withdrawal",
        "matches played",
        "matches refunded",
        "a restart",
    ] {
        assert!(
            kinds.contains_key(kind),
            "the sequence had {kind}: {kinds:?}"
        );
    }
    let settled = store
        .matches_with_status(match_status::SETTLED)
        .await
        .unwrap();
    assert!(!settled.is_empty(), "matches settled along the way");
}

async fn random_sequences_conserve_on_the_embedded_chain(store: &Store) {
    random_money_and_matches_conserve(rig(store).await, 11).await;
}

/// The same sequence with entry fees in an ERC-20 token (issue 20, item 4): the token
/// Arena's balance of the token is what it owes, at every step.
async fn random_sequences_conserve_with_a_fee_token(store: &Store) {
    let chain = AnyChain::Embedded(chain::Embedded::ephemeral(31337, 10));
    let (contracts, payments) = common::payments_in(store, chain, true).await;
    assert!(matches!(contracts.fee_asset(), chain::FeeAsset::Token(_)));
    let rig = rig_with(store, contracts, payments).await;
    random_money_and_matches_conserve(rig, 11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sequences_conserve_on_hardhat() {
    let Some(node) = common::hardhat().await else {
        return;
    };
    let db = testkit::db::TestDb::sqlite().await;
    let (contracts, payments) =
        common::payments_on(&db.store, AnyChain::Rpc(node.rpc().await)).await;
    let rig = rig_with(&db.store, contracts, payments).await;
    random_money_and_matches_conserve(rig, 11).await;
    // And with fees in a token, on a second pair of contracts on the same node.
    let db = testkit::db::TestDb::sqlite().await;
    let (contracts, payments) =
        common::payments_in(&db.store, AnyChain::Rpc(node.rpc().await), true).await;
    assert!(matches!(contracts.fee_asset(), chain::FeeAsset::Token(_)));
    let rig = rig_with(&db.store, contracts, payments).await;
    random_money_and_matches_conserve(rig, 12).await;
    drop(node);
}

macro_rules! both {
    ($check:ident) => {
        mod $check {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = testkit::db::TestDb::sqlite().await;
                super::$check(&db.store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = testkit::db::TestDb::postgres().await {
                    super::$check(&db.store).await;
                }
            }
        }
    };
}

both!(matches_settle_with_exact_payouts);
both!(stalled_matches_are_refunded_on_chain);
both!(a_chain_failure_after_the_database_write_is_reconciled);
both!(a_crash_with_matches_in_play_refunds_them_on_restart);
both!(random_sequences_conserve_on_the_embedded_chain);
both!(random_sequences_conserve_with_a_fee_token);
