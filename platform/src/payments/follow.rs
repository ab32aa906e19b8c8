//! The chain follower: the Arena contract's `Deposited` and `Withdrawn` events, read
//! from the block after the last one processed up to `confirmations` blocks below the
//! head, are put in the journal exactly once each. A deposit a wallet sent to the
//! contract directly (not through this server) is credited to that wallet's user
//! (created if the wallet never signed in); a withdrawal a wallet made directly is
//! debited. The server's own deposits and withdrawals are recognised (by their
//! transaction hash, or, for a withdrawal still in flight, by its outbox row) and not
//! counted twice. The cursor is stored in the database after each pass, and every
//! journal line is keyed by its transaction, so a pass cut short by a crash is simply
//! repeated. Reorganisations up to `confirmations` blocks deep never reach the journal,
//! since nothing younger is read.
//!
//! Locks, settlements and refunds are sent only by the operator, that is by this
//! platform, whose own flows journal them (see the module above); the follower leaves
//! them to those flows.

use alloy::primitives::{Address, B256};
use alloy::sol_types::SolEvent;
use chain::Chain as _;
use chain::bindings::Arena;
use store::Wei;

use super::{Payments, Result, parse_withdraw_key};
use crate::outbox::tx_hex;

/// Blocks per log query.
const LOG_WINDOW: u64 = 2_000;

/// Blocks one pass reads at most (a fresh follower on a long chain catches up over
/// several passes).
const MAX_BLOCKS_PER_PASS: u64 = 50_000;

/// What one pass of the follower did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Followed {
    /// The last block now in the journal (`None`: nothing old enough yet).
    pub to_block: Option<u64>,
    /// Deposits credited by this pass (transaction hashes).
    pub deposits_credited: Vec<String>,
    /// Direct withdrawals debited by this pass (transaction hashes).
    pub withdrawals_debited: Vec<String>,
    /// Events that could not be journaled yet, with why; the cursor stops before the
    /// first of them, so the next pass tries again.
    pub waiting: Vec<String>,
}

impl Followed {
    /// Whether the pass put nothing in the journal and waits on nothing (where it
    /// read up to does not matter).
    pub fn journaled_nothing(&self) -> bool {
        self.deposits_credited.is_empty()
            && self.withdrawals_debited.is_empty()
            && self.waiting.is_empty()
    }
}

enum Outcome {
    Done,
    Credited,
    Debited,
    Wait(String),
}

impl Payments {
    /// The follower's cursor name: one per Arena contract.
    fn cursor_name(&self) -> String {
        format!("arena-events:{:#x}", self.contracts.deployment().arena)
    }

    /// One pass of the chain follower (see the module documentation).
    pub async fn follow_chain(&self) -> Result<Followed> {
        let mut done = Followed::default();
        let chain = self.contracts.chain();
        let head = chain.block_number().await?;
        let Some(to) = head.checked_sub(self.confirmations) else {
            return Ok(done);
        };
        let name = self.cursor_name();
        let from = match self.store.chain_cursor(&name).await? {
            Some(b) => u64::try_from(b).unwrap_or(0) + 1,
            None => self.start_block,
        };
        if from > to {
            done.to_block = Some(to);
            return Ok(done);
        }
        // Bounded windows: public RPC providers refuse unbounded log queries. A pass
        // reads at most `MAX_BLOCKS_PER_PASS` blocks; the next pass goes on.
        let to = to.min(from.saturating_add(MAX_BLOCKS_PER_PASS - 1));
        let arena = self.contracts.deployment().arena;
        let mut logs = Vec::new();
        let mut start = from;
        while start <= to {
            let end = to.min(start.saturating_add(LOG_WINDOW - 1));
            logs.extend(chain.logs_between(arena, start, end).await?);
            start = end + 1;
        }
        logs.sort_by_key(|l| l.block_number);
        let mut reached = to;
        for mined in logs {
            let outcome = if let Ok(e) = Arena::Deposited::decode_log_data(&mined.log.data) {
                self.journal_deposit(e.user, e.amount.saturating_to(), mined.tx_hash)
                    .await?
            } else if let Ok(e) = Arena::Withdrawn::decode_log_data(&mined.log.data) {
                self.journal_withdrawal(e.user, e.amount.saturating_to(), mined.tx_hash)
                    .await?
            } else {
                Outcome::Done
            };
            let tx = tx_hex(mined.tx_hash);
            match outcome {
                Outcome::Done => {}
                Outcome::Credited => done.deposits_credited.push(tx),
                Outcome::Debited => done.withdrawals_debited.push(tx),
                Outcome::Wait(why) => {
                    done.waiting.push(format!("{tx}: {why}"));
                    reached = mined.block_number.saturating_sub(1);
                    break;
                }
            }
        }
        if reached + 1 >= from {
            self.store
                .set_chain_cursor(&name, i64::try_from(reached).unwrap_or(i64::MAX))
                .await?;
            done.to_block = Some(reached);
        }
        Ok(done)
    }

    /// Credits a `Deposited` event once: keyed by its transaction, as the server's
    /// own deposits are, so a deposit the server sent is never credited twice.
    async fn journal_deposit(&self, wallet: Address, amount: u128, tx: B256) -> Result<Outcome> {
        let user = self.store.upsert_user(&format!("{wallet:#x}")).await?;
        match self.store.deposit(user.id, Wei(amount), &tx_hex(tx)).await {
            Ok(_) => Ok(Outcome::Credited),
            Err(store::Error::Duplicate { .. }) => Ok(Outcome::Done),
            Err(e) => Err(e.into()),
        }
    }

    /// Debits a `Withdrawn` event once, unless the server sent it (then its own debit
    /// stands).
    async fn journal_withdrawal(&self, wallet: Address, amount: u128, tx: B256) -> Result<Outcome> {
        let hash = tx_hex(tx);
        if let Some(ct) = self.store.chain_tx_by_hash(&hash).await?
            && ct.idempotency_key.starts_with("withdraw:")
        {
            return Ok(Outcome::Done);
        }
        let Some(user) = self.store.user_by_wallet(&format!("{wallet:#x}")).await? else {
            // Every deposit makes a user, so a wallet without one was only ever paid
            // by settlements: the treasury taking its rakes out. The journal keeps
            // the treasury's share per match; this is not a user's money.
            tracing::info!(%wallet, amount, tx = %hash, "a withdrawal by a wallet with no user (the treasury's)");
            return Ok(Outcome::Done);
        };
        // A withdrawal this server sent whose receipt it has not seen yet: its outbox
        // row was written before the send, with the user and amount in its key.
        for ct in self.outbox.all_pending().await? {
            let in_flight = ct.tx_hash.as_deref().is_none_or(str::is_empty)
                && parse_withdraw_key(&ct.idempotency_key)
                    .is_some_and(|(u, a, _)| u == user.id && a.0 == amount);
            if in_flight {
                self.store
                    .note_chain_tx_sent(ct.id, &hash, "seen on chain by the follower")
                    .await?;
                return Ok(Outcome::Done);
            }
        }
        match self
            .store
            .withdraw(user.id, Wei(amount), &format!("chain:{hash}"))
            .await
        {
            Ok(_) => Ok(Outcome::Debited),
            Err(store::Error::Duplicate { .. }) => Ok(Outcome::Done),
            // The chain let the wallet take funds the journal holds for its queued
            // entries: wait until those entries play or are refunded.
            Err(e @ store::Error::InsufficientBalance { .. }) => Ok(Outcome::Wait(e.to_string())),
            Err(e) => Err(e.into()),
        }
    }
}
