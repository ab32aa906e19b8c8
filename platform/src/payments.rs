//! Money on both sides: the Arena contract holds the funds, the database journal
//! mirrors them. Every movement is ordered so that a crash at any point leaves
//! something the start-up [`Payments::reconcile`] can finish, and nothing is ever paid
//! or refunded twice:
//!
//! - deposits are credited in the database once per chain transaction hash;
//! - withdrawals are debited in the database first (which checks the spendable
//!   balance), then sent on chain; a failed transfer reverses the debit;
//! - entry fees are locked on chain when a match forms (one chain transaction per
//!   entry, keyed by the entry);
//! - a played match is written to the database in one transaction (rounds, pairs,
//!   payouts, journal, ratings) with a pending chain transaction keyed by the match,
//!   then settled on chain; a refund goes the same way. The contract itself refuses a
//!   second settlement or refund of a match, and the database refuses a second
//!   settlement row.
//!
//! A match with a zero pot (the free tier) locks nothing; once played, its result root
//! is anchored on chain under the same match key (`Arena.anchorResult`), so that every
//! match's result can be checked against the contract. The contract only accepts a
//! settlement that pays the match's entrants, in lock order, the pot less the rake
//! the Space declared there: `Payments::lock_fees` makes sure the rulebook's rake is
//! the declared one before the first fee is locked.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use alloy::primitives::{Address, B256};
use chain::{AnyChain, Chain, Contracts, MatchStatus};
use store::{Balance, Store, Wei};

use crate::outbox::{Landed, OnError, Outbox, SendError, tx_hex};

mod follow;
mod reconcile;
pub use follow::Followed;
pub use reconcile::{Reclaim, Reconciled};

/// What can go wrong moving money.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The database refused or failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The chain refused or failed.
    #[error("chain: {0}")]
    Chain(#[from] chain::ChainError),
    /// The request itself is wrong.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A transaction is mined but not yet `need` blocks deep (`chain.confirmations`).
    #[error("{tx_hash} is {have} blocks deep; it counts at {need}")]
    Unconfirmed {
        /// The transaction.
        tx_hash: String,
        /// Blocks above it now.
        have: u64,
        /// Blocks it must have.
        need: u64,
    },
    /// The chain and the database disagree in a way only a person can resolve.
    #[error("match {match_id}: {detail}")]
    Inconsistent {
        /// The match.
        match_id: i64,
        /// What disagrees.
        detail: String,
    },
}

impl<E: Into<PaymentError>> From<SendError<E>> for PaymentError {
    fn from(e: SendError<E>) -> PaymentError {
        match e {
            SendError::Store(e) => e.into(),
            SendError::Send(e) => e.into(),
        }
    }
}

/// The result type of this module.
pub type Result<T> = std::result::Result<T, PaymentError>;

/// Money movements over the Arena contract and the database journal.
pub struct Payments {
    store: Store,
    outbox: Outbox,
    contracts: Arc<Contracts<AnyChain>>,
    operator: Address,
    withdrawals: AtomicU64,
    /// Blocks below the head the chain follower stays (`chain.confirmations`).
    confirmations: u64,
    /// Where the follower starts without a cursor (`chain.start_block`).
    start_block: u64,
    /// The unit of the fee asset (ETH, or the fee token's symbol and decimals).
    money: store::Money,
}

fn settle_key(match_id: i64) -> String {
    format!("settle:match:{match_id}")
}

/// The outbox key of a withdrawal: the user, the amount and the journal key, all that
/// reconciliation needs to reverse its debit.
fn withdraw_key(user_id: i64, amount: Wei, journal_key: &str) -> String {
    format!("withdraw:{user_id}:{}:{journal_key}", amount.0)
}

/// The user, amount and journal key of a withdrawal's outbox key.
fn parse_withdraw_key(key: &str) -> Option<(i64, Wei, &str)> {
    let rest = key.strip_prefix("withdraw:")?;
    let (user, rest) = rest.split_once(':')?;
    let (amount, journal_key) = rest.split_once(':')?;
    Some((user.parse().ok()?, Wei(amount.parse().ok()?), journal_key))
}

fn refund_key(match_id: i64) -> String {
    format!("refund:match:{match_id}")
}

fn landed(r: &chain::TxReceipt) -> Landed {
    Landed::sent(r.tx_hash, r.block_number)
}

fn parse_root(match_id: i64, root: Option<&str>) -> Result<B256> {
    root.unwrap_or_default()
        .parse()
        .map_err(|e| PaymentError::Inconsistent {
            match_id,
            detail: format!("result root: {e}"),
        })
}

fn chain_match_id(match_id: i64) -> Result<u64> {
    u64::try_from(match_id).map_err(|_| PaymentError::Invalid {
        field: "match_id",
        reason: format!("{match_id} is negative"),
    })
}

impl Payments {
    /// Payments by `operator` on `contracts` (whose treasury takes the rakes).
    pub fn new(store: Store, contracts: Arc<Contracts<AnyChain>>, operator: Address) -> Payments {
        Payments {
            outbox: Outbox::new(store.clone()),
            store,
            contracts,
            operator,
            withdrawals: AtomicU64::new(0),
            confirmations: 0,
            start_block: 0,
            money: store::Money::eth(),
        }
    }

    /// The same payments, showing amounts in `money` (the fee token's unit, as
    /// [`chain::Contracts::fee_unit`] reads it from the chain).
    pub fn with_money(mut self, money: store::Money) -> Payments {
        self.money = money;
        self
    }

    /// The unit of the fee asset.
    pub fn money(&self) -> &store::Money {
        &self.money
    }

    /// The same payments, with the chain follower starting at `start_block` when it
    /// has read nothing yet (`chain.start_block`: the Arena contract's deployment).
    pub fn with_start_block(mut self, start_block: u64) -> Payments {
        self.start_block = start_block;
        self
    }

    /// The same payments, with the chain follower reading only blocks at least
    /// `confirmations` below the head (`chain.confirmations`).
    pub fn with_confirmations(mut self, confirmations: u64) -> Payments {
        self.confirmations = confirmations;
        self
    }

    /// Blocks a wallet's own deposit or withdrawal must be under before it counts
    /// (`chain.confirmations`).
    pub fn confirmations(&self) -> u64 {
        self.confirmations
    }

    /// The contracts.
    pub fn contracts(&self) -> &Arc<Contracts<AnyChain>> {
        &self.contracts
    }

    /// The operator account.
    pub fn operator(&self) -> Address {
        self.operator
    }

    async fn wallet(&self, user_id: i64) -> Result<Address> {
        let user = self.store.user(user_id).await?;
        user.wallet_address
            .parse()
            .map_err(|e| PaymentError::Invalid {
                field: "wallet_address",
                reason: format!("{}: {e}", user.wallet_address),
            })
    }

    /// Deposits `amount` from the user's own wallet, which the chain backend must be
    /// able to sign for (the embedded chain's and a dev node's accounts), and credits it.
    pub async fn deposit(&self, user_id: i64, amount: Wei) -> Result<Balance> {
        if amount.0 == 0 {
            return Err(PaymentError::Invalid {
                field: "amount_wei",
                reason: "must be more than 0".into(),
            });
        }
        let wallet = self.wallet(user_id).await?;
        // A deposit the wallet cannot pay is the user's mistake, not a server error:
        // say so before sending (in ETH, gas comes on top, so this is a floor).
        {
            let held = self.contracts.wallet_funds(wallet).await?;
            if held < amount.0 {
                return Err(PaymentError::Invalid {
                    field: "amount_wei",
                    reason: format!(
                        "wallet {wallet} holds {}, less than the {} to deposit",
                        self.money.show(Wei(held)),
                        self.money.show(amount)
                    ),
                });
            }
        }
        let receipt = self.contracts.deposit(wallet, amount.0).await?;
        // What the Arena credited (a token that takes a fee on transfer credits less
        // than was sent), as the chain follower would journal it.
        let credited = self.moved(&receipt, wallet).0;
        match self
            .store
            .deposit(user_id, Wei(credited), &tx_hex(receipt.tx_hash))
            .await
        {
            Ok(balance) => Ok(balance),
            // The chain follower saw the deposit first and credited it.
            Err(store::Error::Duplicate { .. }) => Ok(self.store.balance(user_id).await?),
            Err(e) => Err(e.into()),
        }
    }

    /// What `receipt` moved for `wallet` in the Arena, by the Arena's own events:
    /// (deposited, withdrawn).
    fn moved(&self, receipt: &chain::TxReceipt, wallet: Address) -> (u128, u128) {
        use chain::bindings::Arena::{Deposited, Withdrawn};
        use chain::contracts::events_from;
        let arena = self.contracts.deployment().arena;
        let sum = |lines: Vec<(Address, alloy::primitives::U256)>| -> u128 {
            lines
                .into_iter()
                .filter(|(user, _)| *user == wallet)
                .map(|(_, amount)| u128::try_from(amount).unwrap_or(u128::MAX))
                .sum()
        };
        let deposited = events_from::<Deposited>(receipt, arena)
            .into_iter()
            .map(|e| (e.user, e.amount))
            .collect();
        let withdrawn = events_from::<Withdrawn>(receipt, arena)
            .into_iter()
            .map(|e| (e.user, e.amount))
            .collect();
        (sum(deposited), sum(withdrawn))
    }

    /// The receipt of a transaction the user's own wallet sent to the Arena contract,
    /// once it is mined and `chain.confirmations` blocks deep.
    async fn wallet_receipt(
        &self,
        user_id: i64,
        tx_hash: B256,
    ) -> Result<(Address, chain::TxReceipt)> {
        let wallet = self.wallet(user_id).await?;
        let chain = self.contracts.chain();
        let receipt = chain
            .receipt(tx_hash)
            .await?
            .ok_or_else(|| PaymentError::Invalid {
                field: "tx_hash",
                reason: format!("{} is not mined (yet)", tx_hex(tx_hash)),
            })?;
        let arena = self.contracts.deployment().arena;
        if receipt.to != Some(arena) || receipt.from != wallet {
            return Err(PaymentError::Invalid {
                field: "tx_hash",
                reason: format!(
                    "{} is not a transaction from {wallet} to the Arena contract {arena}",
                    tx_hex(tx_hash)
                ),
            });
        }
        let head = chain.block_number().await?;
        let deep = head.saturating_sub(receipt.block_number);
        if deep < self.confirmations {
            return Err(PaymentError::Unconfirmed {
                tx_hash: tx_hex(tx_hash),
                have: deep,
                need: self.confirmations,
            });
        }
        Ok((wallet, receipt))
    }

    /// Credits a deposit the user sent from their own wallet (`deposit()` on the Arena
    /// contract), after checking its `Deposited` event on chain, once it is
    /// `chain.confirmations` blocks deep. Keyed by the transaction as the chain
    /// follower's credits are, so a deposit is credited once however often it is
    /// reported and whichever of the two sees it first.
    pub async fn record_wallet_deposit(&self, user_id: i64, tx_hash: B256) -> Result<Balance> {
        let (wallet, receipt) = self.wallet_receipt(user_id, tx_hash).await?;
        let amount = self.moved(&receipt, wallet).0;
        if amount == 0 {
            return Err(PaymentError::Invalid {
                field: "tx_hash",
                reason: format!("{} deposited nothing for {wallet}", tx_hex(tx_hash)),
            });
        }
        match self
            .store
            .deposit(user_id, Wei(amount), &tx_hex(tx_hash))
            .await
        {
            Ok(balance) => Ok(balance),
            Err(store::Error::Duplicate { .. }) => Ok(self.store.balance(user_id).await?),
            Err(e) => Err(e.into()),
        }
    }

    /// Debits a withdrawal the user sent from their own wallet (`withdraw(amount)` on
    /// the Arena contract), after checking its `Withdrawn` event on chain, once it is
    /// `chain.confirmations` blocks deep. Keyed as the chain follower's debits are
    /// (`chain:{tx}`), so it is debited once. When the journal holds part of the
    /// amount for queued entries the debit waits (an error saying so): the follower
    /// makes it once those entries play or are refunded.
    pub async fn record_wallet_withdrawal(&self, user_id: i64, tx_hash: B256) -> Result<Balance> {
        let (wallet, receipt) = self.wallet_receipt(user_id, tx_hash).await?;
        let amount = self.moved(&receipt, wallet).1;
        if amount == 0 {
            return Err(PaymentError::Invalid {
                field: "tx_hash",
                reason: format!("{} withdrew nothing for {wallet}", tx_hex(tx_hash)),
            });
        }
        let hash = tx_hex(tx_hash);
        match self
            .store
            .withdraw(user_id, Wei(amount), &format!("chain:{hash}"))
            .await
        {
            Ok(balance) => Ok(balance),
            Err(store::Error::Duplicate { .. }) => Ok(self.store.balance(user_id).await?),
            Err(e) => Err(e.into()),
        }
    }

    /// Withdraws `amount` of the user's spendable balance to their wallet. The debit
    /// comes first and is reversed only when the chain refused the transfer; a transfer
    /// that was sent but not confirmed keeps the debit and is finished by
    /// [`Payments::reconcile`] (confirmed once mined, reversed once dropped).
    pub async fn withdraw(&self, user_id: i64, amount: Wei) -> Result<Balance> {
        if amount.0 == 0 {
            return Err(PaymentError::Invalid {
                field: "amount_wei",
                reason: "must be more than 0".into(),
            });
        }
        let wallet = self.wallet(user_id).await?;
        let key = format!(
            "{user_id}:{}:{}",
            store::now_ms(),
            self.withdrawals.fetch_add(1, Ordering::Relaxed)
        );
        self.store.withdraw(user_id, amount, &key).await?;
        let ct = self
            .outbox
            .begin(&withdraw_key(user_id, amount, &key), "withdraw")
            .await?;
        match self.contracts.withdraw(wallet, amount.0).await {
            Ok(receipt) => {
                self.outbox.confirm(&ct, landed(&receipt)).await?;
                Ok(self.store.balance(user_id).await?)
            }
            Err(e) => match e.unconfirmed() {
                Some(hash) => {
                    // It may still be mined: the debit stays until the chain decides.
                    self.store
                        .note_chain_tx_sent(ct.id, &tx_hex(hash), &e.to_string())
                        .await?;
                    Err(e.into())
                }
                None => {
                    self.store.reverse_withdrawal(user_id, amount, &key).await?;
                    self.outbox.fail(&ct, &e.to_string()).await?;
                    Err(e.into())
                }
            },
        }
    }

    /// Locks every entry fee of a newly formed match into its escrow on chain, under
    /// its Space's rake, `rake_bps`, which the Arena contract must hold as the Space's
    /// declared rake (declared here when this process can sign as the Arena admin).
    pub(crate) async fn lock_fees(&self, match_id: i64, rake_bps: u16) -> Result<()> {
        let chain_id = chain_match_id(match_id)?;
        let entries = self.store.match_entries(match_id).await?;
        if entries.iter().all(|e| e.fee_wei.0 == 0) {
            return Ok(());
        }
        let space_id = self.store.get_match(match_id).await?.space_id;
        let space = u64::try_from(space_id).map_err(|_| PaymentError::Invalid {
            field: "space_id",
            reason: format!("{space_id} is negative"),
        })?;
        self.ensure_space_declared(space, rake_bps).await?;
        for entry in entries {
            if entry.fee_wei.0 == 0 {
                continue;
            }
            let ct = self
                .outbox
                .begin(&format!("lock:entry:{}", entry.id), "lock")
                .await?;
            if ct.status == store::TxStatus::Confirmed {
                continue;
            }
            let wallet = self.wallet(entry.user_id).await?;
            let lock =
                self.contracts
                    .lock_fee(self.operator, chain_id, space, wallet, entry.fee_wei.0);
            match self
                .outbox
                .send(&ct, OnError::KeepPending, lock, landed)
                .await
            {
                Ok(_) => {}
                Err(SendError::Send(e)) => {
                    match e.unconfirmed() {
                        // Sent but unconfirmed: it may still land in the escrow, so the
                        // row stays pending with its hash; reconciliation returns the
                        // fee if it lands after the match was refunded.
                        Some(hash) => {
                            self.store
                                .note_chain_tx_sent(ct.id, &tx_hex(hash), &e.to_string())
                                .await?;
                        }
                        None => self.outbox.fail(&ct, &e.to_string()).await?,
                    }
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Makes sure the Arena contract holds `rake_bps` as Space `space_id`'s rake, so
    /// that a settlement the rulebook splits is one the contract accepts. Declares it
    /// when this process can sign as the contract's admin; otherwise the admin must.
    async fn ensure_space_declared(&self, space_id: u64, rake_bps: u16) -> Result<()> {
        let terms = self.contracts.space_terms(space_id).await?;
        if terms.declared && terms.rake_bps == rake_bps {
            return Ok(());
        }
        let admin = self.contracts.admin().await?;
        if !self.contracts.chain().accounts().contains(&admin) {
            let on_chain = if terms.declared {
                format!("declares a rake of {} bps", terms.rake_bps)
            } else {
                "has not declared it".to_string()
            };
            return Err(PaymentError::Invalid {
                field: "payout.rake_bps",
                reason: format!(
                    "Space {space_id}'s rulebook takes {rake_bps} bps but the Arena contract \
                     {on_chain}; its admin {admin} must run \
                     `rlfc chain declare-space {space_id} {rake_bps}`"
                ),
            });
        }
        self.contracts
            .declare_space(admin, space_id, rake_bps)
            .await?;
        tracing::info!(space_id, rake_bps, "declared the Space's rake on chain");
        Ok(())
    }

    /// Writes a played match (one database transaction) and settles it on chain (a
    /// free match's result root is anchored there instead). If the chain call fails
    /// after the database write, the settlement stays pending and
    /// [`Payments::reconcile`] sends it again.
    pub async fn settle(&self, mut record: store::MatchRecord) -> Result<store::RecordedMatch> {
        let match_id = record.settlement.match_id;
        Wei::sum(record.settlement.payouts.iter().map(|p| p.amount))
            .and_then(|p| p.checked_add(record.settlement.treasury))
            .ok_or(PaymentError::Invalid {
                field: "payouts",
                reason: "overflow".into(),
            })?;
        let ct = self.outbox.begin(&settle_key(match_id), "settle").await?;
        record.settlement.chain_tx_id = Some(ct.id);
        let recorded = match self.store.record_match(&record).await {
            Ok(r) => r,
            // A racing writer's rows (its rounds, on PostgreSQL) can fail this write
            // before its settlement row does: what counts is whether the match is
            // closed now.
            Err(e)
                if matches!(e, store::Error::AlreadySettled { .. })
                    || !store::is_unfinished(self.store.get_match(match_id).await?.status) =>
            {
                // Refunded meanwhile (its lease was reclaimed): this settle key will
                // never be sent. Settled meanwhile (a racing worker won): the winner
                // sends it, under the same key.
                let outcome = self.closed_as(match_id).await?;
                if outcome == store::match_status::REFUNDED {
                    self.outbox
                        .fail(&ct, "superseded: the match was refunded")
                        .await?;
                }
                return Err(store::Error::AlreadySettled { match_id, outcome }.into());
            }
            Err(e) => return Err(e.into()),
        };
        self.push_settlement(match_id).await?;
        Ok(recorded)
    }

    /// Sends a settlement already written in the database to the chain, unless the
    /// chain has it. Returns whether the chain side is now confirmed by this call.
    pub(super) async fn push_settlement(&self, match_id: i64) -> Result<bool> {
        let Some(ct) = self.outbox.pending(&settle_key(match_id)).await? else {
            return Ok(false);
        };
        let settlement = self.store.match_settlement(match_id).await?;
        let Some(settlement) = settlement.filter(|s| s.outcome == store::match_status::SETTLED)
        else {
            // The settle key was taken but the database holds no settlement (the
            // writer stopped before its transaction, or the match was refunded).
            let m = self.store.get_match(match_id).await?;
            if !store::is_unfinished(m.status) {
                self.outbox
                    .fail(&ct, "superseded: the match was not settled")
                    .await?;
            }
            return Ok(false);
        };
        let chain_id = chain_match_id(match_id)?;
        let escrow = self.contracts.escrow(chain_id).await?;
        match escrow.status {
            MatchStatus::Settled => {
                // Sent before a crash, or by a racing process: record what the chain
                // already holds.
                let hash = self.find_close_tx(chain_id).await?;
                self.outbox.confirm(&ct, Landed::found(hash)).await?;
                Ok(true)
            }
            // A free match: nothing was locked, so only its result root goes on chain.
            MatchStatus::None if settlement.pot_wei.0 == 0 => {
                let root = parse_root(match_id, settlement.result_root.as_deref())?;
                let anchor = self.contracts.anchor_result(self.operator, chain_id, root);
                self.send_close(&ct, chain_id, anchor, MatchStatus::Settled)
                    .await?;
                Ok(true)
            }
            MatchStatus::Open => {
                let payouts = self.chain_payouts(match_id, chain_id).await?;
                let root = parse_root(match_id, settlement.result_root.as_deref())?;
                if escrow.held != settlement.pot_wei.0 {
                    return Err(PaymentError::Inconsistent {
                        match_id,
                        detail: format!(
                            "the escrow holds {} wei but the pot is {} wei",
                            escrow.held, settlement.pot_wei.0
                        ),
                    });
                }
                let settle = self
                    .contracts
                    .settle(self.operator, chain_id, &payouts, root);
                self.send_close(&ct, chain_id, settle, MatchStatus::Settled)
                    .await?;
                Ok(true)
            }
            other => Err(PaymentError::Inconsistent {
                match_id,
                detail: format!("settled in the database but the escrow is {other:?}"),
            }),
        }
    }

    /// Finishes a withdrawal whose transfer was sent but not confirmed: once mined
    /// with its `Withdrawn` event the row is confirmed and the debit stands; once the
    /// chain no longer knows the transaction, or mined it without the event (it
    /// failed), the debit is reversed. Still waiting, or never noted as sent (it may
    /// be in flight): left as it is. Returns whether it was closed.
    pub(super) async fn finish_withdrawal(&self, ct: &store::ChainTransaction) -> Result<bool> {
        let (user_id, amount, journal_key) =
            parse_withdraw_key(&ct.idempotency_key).ok_or(PaymentError::Invalid {
                field: "idempotency_key",
                reason: format!("{} is not a withdrawal key", ct.idempotency_key),
            })?;
        let Some(hash) = ct.tx_hash.as_deref().filter(|h| !h.is_empty()) else {
            // No hash: the transfer is in flight in some process, or that process
            // stopped mid-send. Either way it may land, so the debit stays.
            return Ok(false);
        };
        let hash: B256 = hash.parse().map_err(|e| PaymentError::Invalid {
            field: "tx_hash",
            reason: format!("{hash}: {e}"),
        })?;
        let chain = self.contracts.chain();
        if let Some(receipt) = chain.receipt(hash).await? {
            let withdrawn = chain::contracts::events::<chain::bindings::Arena::Withdrawn>(&receipt)
                .iter()
                .any(|e| e.amount == alloy::primitives::U256::from(amount.0));
            if withdrawn {
                self.outbox.confirm(ct, landed(&receipt)).await?;
            } else {
                self.store
                    .reverse_withdrawal(user_id, amount, journal_key)
                    .await?;
                self.outbox
                    .fail(ct, "mined without a Withdrawn event: the transfer failed")
                    .await?;
            }
            return Ok(true);
        }
        if chain.transaction_known(hash).await? {
            return Ok(false);
        }
        self.store
            .reverse_withdrawal(user_id, amount, journal_key)
            .await?;
        self.outbox
            .fail(ct, "dropped: the chain no longer knows the transaction")
            .await?;
        Ok(true)
    }

    /// A settled match's payouts in the form the contract takes: one line per fee
    /// locked on chain, in lock order, each entrant's whole payout on their first line.
    async fn chain_payouts(&self, match_id: i64, chain_id: u64) -> Result<Vec<chain::Payout>> {
        let entries = self.store.match_entries(match_id).await?;
        let mut owed: Vec<(Address, u128)> = Vec::new();
        for p in self.store.match_payouts(match_id).await? {
            let entry =
                entries
                    .iter()
                    .find(|e| e.id == p.entry_id)
                    .ok_or(PaymentError::Inconsistent {
                        match_id,
                        detail: format!("payout to entry {} outside the match", p.entry_id),
                    })?;
            let wallet = self.wallet(entry.user_id).await?;
            match owed.iter_mut().find(|(w, _)| *w == wallet) {
                Some((_, amount)) => *amount += p.amount_wei.0,
                None => owed.push((wallet, p.amount_wei.0)),
            }
        }
        let mut payouts = self.contracts.entries(chain_id).await?;
        for line in &mut payouts {
            line.amount = owed
                .iter_mut()
                .find(|(w, _)| *w == line.payee)
                .map_or(0, |(_, amount)| std::mem::take(amount));
        }
        if let Some((wallet, amount)) = owed.iter().find(|(_, amount)| *amount > 0) {
            return Err(PaymentError::Inconsistent {
                match_id,
                detail: format!("{amount} wei is owed to {wallet}, who holds no fee on chain"),
            });
        }
        Ok(payouts)
    }

    /// Refunds every entry of a match in the database and on chain. Refunding a match
    /// already refunded finishes any chain side left pending and is otherwise a no-op.
    pub(crate) async fn refund(&self, match_id: i64, reason: &str) -> Result<()> {
        let entries = self.store.match_entries(match_id).await?;
        let pot = Wei::sum(entries.iter().map(|e| e.fee_wei)).unwrap_or(Wei(u128::MAX));
        let chain_tx = if pot.0 == 0 {
            None
        } else {
            Some(self.outbox.begin(&refund_key(match_id), "refund").await?)
        };
        match self
            .store
            .refund_match(match_id, reason, chain_tx.as_ref().map(|c| c.id))
            .await
        {
            Ok(()) => {}
            Err(store::Error::AlreadySettled { .. }) => {
                let outcome = self.closed_as(match_id).await?;
                if outcome != store::match_status::REFUNDED {
                    // Settled meanwhile: this refund key will never be sent.
                    if let Some(ct) = chain_tx
                        .as_ref()
                        .filter(|c| c.status == store::TxStatus::Pending)
                    {
                        self.outbox
                            .fail(ct, "superseded: the match was settled")
                            .await?;
                    }
                    return Err(store::Error::AlreadySettled { match_id, outcome }.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
        if chain_tx.is_some() {
            self.push_refund(match_id).await?;
        }
        Ok(())
    }

    /// How a closed match was closed (`settled` or `refunded`), from its settlement row.
    async fn closed_as(&self, match_id: i64) -> Result<String> {
        match self.store.match_settlement(match_id).await? {
            Some(s) => Ok(s.outcome),
            None => Ok(self.store.get_match(match_id).await?.status.to_string()),
        }
    }

    /// Sends a refund already written in the database to the chain, unless the chain
    /// has it. Returns whether the chain side is now confirmed by this call.
    pub(super) async fn push_refund(&self, match_id: i64) -> Result<bool> {
        let Some(ct) = self.outbox.pending(&refund_key(match_id)).await? else {
            return Ok(false);
        };
        let written = self.store.match_settlement(match_id).await?;
        if written.is_none_or(|s| s.outcome != store::match_status::REFUNDED) {
            let m = self.store.get_match(match_id).await?;
            if !store::is_unfinished(m.status) {
                self.outbox
                    .fail(&ct, "superseded: the match was not refunded")
                    .await?;
            }
            return Ok(false);
        }
        let chain_id = chain_match_id(match_id)?;
        match self.contracts.escrow(chain_id).await?.status {
            // No fee ever reached the escrow: nothing to return on chain.
            MatchStatus::None => {
                self.outbox
                    .confirm(&ct, Landed::found(String::new()))
                    .await?;
                Ok(true)
            }
            MatchStatus::Refunded => {
                let hash = self.find_close_tx(chain_id).await?;
                self.outbox.confirm(&ct, Landed::found(hash)).await?;
                Ok(true)
            }
            MatchStatus::Open => {
                let refund = self.contracts.refund(self.operator, chain_id);
                self.send_close(&ct, chain_id, refund, MatchStatus::Refunded)
                    .await?;
                Ok(true)
            }
            MatchStatus::Settled => Err(PaymentError::Inconsistent {
                match_id,
                detail: "refunded in the database but settled on chain".into(),
            }),
        }
    }

    /// Sends `close`, the transaction that closes match `chain_id` as `closed_as`
    /// (settle, anchor or refund), under the pending outbox row `ct`. If the chain
    /// refuses it because another process sent the same close first, the escrow shows
    /// that one: the row is confirmed with its transaction instead.
    async fn send_close(
        &self,
        ct: &store::ChainTransaction,
        chain_id: u64,
        close: impl std::future::Future<Output = chain::error::Result<chain::TxReceipt>>,
        closed_as: MatchStatus,
    ) -> Result<()> {
        match self
            .outbox
            .send(ct, OnError::KeepPending, close, landed)
            .await
        {
            Ok(_) => Ok(()),
            Err(SendError::Send(e)) => {
                if self.contracts.escrow(chain_id).await?.status != closed_as {
                    return Err(e.into());
                }
                let hash = self.find_close_tx(chain_id).await?;
                self.outbox.confirm(ct, Landed::found(hash)).await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The transaction that closed a match's escrow (settled or refunded), found in
    /// the Arena contract's logs.
    async fn find_close_tx(&self, chain_id: u64) -> Result<String> {
        use alloy::sol_types::SolEvent;
        let arena = self.contracts.deployment().arena;
        let id = alloy::primitives::U256::from(chain_id);
        for mined in self.contracts.chain().logs(arena, 0).await? {
            let data = &mined.log.data;
            let closed = chain::bindings::Arena::MatchSettled::decode_log_data(data)
                .map(|e| e.matchId == id)
                .unwrap_or(false)
                || chain::bindings::Arena::MatchRefunded::decode_log_data(data)
                    .map(|e| e.matchId == id)
                    .unwrap_or(false)
                || chain::bindings::Arena::ResultAnchored::decode_log_data(data)
                    .map(|e| e.matchId == id)
                    .unwrap_or(false);
            if closed {
                return Ok(tx_hex(mined.tx_hash));
            }
        }
        Ok(String::new())
    }
}
