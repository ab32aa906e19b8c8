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
//! Matches with a zero pot (the free tier) never touch the chain.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use alloy::primitives::{Address, B256};
use chain::{AnyChain, Chain, Contracts, MatchStatus};
use store::{Balance, Store, Wei};

use crate::outbox::{Landed, OnError, Outbox, SendError, tx_hex};

mod reconcile;
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
    treasury: Address,
    withdrawals: AtomicU64,
}

fn settle_key(match_id: i64) -> String {
    format!("settle:match:{match_id}")
}

fn refund_key(match_id: i64) -> String {
    format!("refund:match:{match_id}")
}

fn landed(r: &chain::TxReceipt) -> Landed {
    Landed::sent(r.tx_hash, r.block_number)
}

fn chain_match_id(match_id: i64) -> Result<u64> {
    u64::try_from(match_id).map_err(|_| PaymentError::Invalid {
        field: "match_id",
        reason: format!("{match_id} is negative"),
    })
}

impl Payments {
    /// Payments by `operator` on `contracts`, the rake going to `treasury`.
    pub fn new(
        store: Store,
        contracts: Arc<Contracts<AnyChain>>,
        operator: Address,
        treasury: Address,
    ) -> Payments {
        Payments {
            outbox: Outbox::new(store.clone()),
            store,
            contracts,
            operator,
            treasury,
            withdrawals: AtomicU64::new(0),
        }
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
        // say so before sending (gas comes on top, so this is a floor).
        {
            let held = self.contracts.chain().balance(wallet).await?;
            if held < alloy::primitives::U256::from(amount.0) {
                return Err(PaymentError::Invalid {
                    field: "amount_wei",
                    reason: format!(
                        "wallet {wallet} holds {held} wei, less than the {} wei to deposit",
                        amount.0
                    ),
                });
            }
        }
        let receipt = self.contracts.deposit(wallet, amount.0).await?;
        Ok(self
            .store
            .deposit(user_id, amount, &tx_hex(receipt.tx_hash))
            .await?)
    }

    /// Credits a deposit the user sent from their own wallet, after checking its
    /// `Deposited` event on chain. Crediting one transaction twice fails.
    pub async fn credit_deposit(&self, user_id: i64, tx_hash: B256) -> Result<Balance> {
        let wallet = self.wallet(user_id).await?;
        let receipt = self
            .contracts
            .chain()
            .receipt(tx_hash)
            .await?
            .ok_or_else(|| PaymentError::Invalid {
                field: "tx_hash",
                reason: format!("{} is not mined", tx_hex(tx_hash)),
            })?;
        let arena = self.contracts.deployment().arena;
        let amount: u128 = chain::contracts::events::<chain::bindings::Arena::Deposited>(&receipt)
            .into_iter()
            .filter(|e| e.user == wallet)
            .map(|e| u128::try_from(e.amount).unwrap_or(u128::MAX))
            .sum();
        if receipt.to != Some(arena) || amount == 0 {
            return Err(PaymentError::Invalid {
                field: "tx_hash",
                reason: format!(
                    "{} is not a deposit by {wallet} into the Arena contract",
                    tx_hex(tx_hash)
                ),
            });
        }
        Ok(self
            .store
            .deposit(user_id, Wei(amount), &tx_hex(tx_hash))
            .await?)
    }

    /// Withdraws `amount` of the user's spendable balance to their wallet.
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
        match self.contracts.withdraw(wallet, amount.0).await {
            Ok(_) => Ok(self.store.balance(user_id).await?),
            Err(e) => {
                self.store.reverse_withdrawal(user_id, amount, &key).await?;
                Err(e.into())
            }
        }
    }

    /// Locks every entry fee of a newly formed match into its escrow on chain.
    pub async fn lock_fees(&self, match_id: i64) -> Result<()> {
        let chain_id = chain_match_id(match_id)?;
        for entry in self.store.match_entries(match_id).await? {
            if entry.fee_wei.0 == 0 {
                continue;
            }
            let ct = self
                .outbox
                .begin(&format!("lock:entry:{}", entry.id), "lock")
                .await?;
            if ct.status == "confirmed" {
                continue;
            }
            let wallet = self.wallet(entry.user_id).await?;
            let lock = self
                .contracts
                .lock_fee(self.operator, chain_id, wallet, entry.fee_wei.0);
            self.outbox.send(&ct, OnError::Fail, lock, landed).await?;
        }
        Ok(())
    }

    /// Writes a played match (one database transaction) and settles it on chain. If
    /// the chain call fails after the database write, the settlement stays pending
    /// and [`Payments::reconcile`] sends it again.
    pub async fn settle(&self, mut record: store::MatchRecord) -> Result<store::RecordedMatch> {
        let match_id = record.settlement.match_id;
        let pot = Wei::sum(record.settlement.payouts.iter().map(|p| p.amount))
            .and_then(|p| p.checked_add(record.settlement.treasury))
            .ok_or(PaymentError::Invalid {
                field: "payouts",
                reason: "overflow".into(),
            })?;
        if pot.0 == 0 {
            return Ok(self.store.record_match(&record).await?);
        }
        let ct = self.outbox.begin(&settle_key(match_id), "settle").await?;
        record.settlement.chain_tx_id = Some(ct.id);
        let recorded = match self.store.record_match(&record).await {
            Ok(r) => r,
            // A racing writer's rows (its rounds, on PostgreSQL) can fail this write
            // before its settlement row does: what counts is whether the match is
            // closed now.
            Err(e)
                if matches!(e, store::Error::AlreadySettled { .. })
                    || !store::is_unfinished(&self.store.get_match(match_id).await?.status) =>
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
            if !store::is_unfinished(&m.status) {
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
            MatchStatus::Open => {
                let entries = self.store.match_entries(match_id).await?;
                let mut payouts = Vec::new();
                for p in self.store.match_payouts(match_id).await? {
                    let entry = entries.iter().find(|e| e.id == p.entry_id).ok_or(
                        PaymentError::Inconsistent {
                            match_id,
                            detail: format!("payout to entry {} outside the match", p.entry_id),
                        },
                    )?;
                    if p.amount_wei.0 > 0 {
                        payouts.push(chain::Payout {
                            payee: self.wallet(entry.user_id).await?,
                            amount: p.amount_wei.0,
                        });
                    }
                }
                let root: B256 = settlement
                    .result_root
                    .as_deref()
                    .unwrap_or_default()
                    .parse()
                    .map_err(|e| PaymentError::Inconsistent {
                        match_id,
                        detail: format!("result root: {e}"),
                    })?;
                if escrow.held != settlement.pot_wei.0 {
                    return Err(PaymentError::Inconsistent {
                        match_id,
                        detail: format!(
                            "the escrow holds {} wei but the pot is {} wei",
                            escrow.held, settlement.pot_wei.0
                        ),
                    });
                }
                let settle =
                    self.contracts
                        .settle(self.operator, chain_id, &payouts, self.treasury, root);
                match self
                    .outbox
                    .send(&ct, OnError::KeepPending, settle, landed)
                    .await
                {
                    Ok(_) => {}
                    // Another process sent the same settlement first: the contract
                    // refused the second, and the escrow shows the first.
                    Err(SendError::Send(e)) => {
                        if self.contracts.escrow(chain_id).await?.status != MatchStatus::Settled {
                            return Err(e.into());
                        }
                        let hash = self.find_close_tx(chain_id).await?;
                        self.outbox.confirm(&ct, Landed::found(hash)).await?;
                    }
                    Err(e) => return Err(e.into()),
                }
                Ok(true)
            }
            other => Err(PaymentError::Inconsistent {
                match_id,
                detail: format!("settled in the database but the escrow is {other:?}"),
            }),
        }
    }

    /// Refunds every entry of a match in the database and on chain. Refunding a match
    /// already refunded finishes any chain side left pending and is otherwise a no-op.
    pub async fn refund(&self, match_id: i64, reason: &str) -> Result<()> {
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
                    if let Some(ct) = chain_tx.as_ref().filter(|c| c.status == "pending") {
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
            None => Ok(self.store.get_match(match_id).await?.status),
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
            if !store::is_unfinished(&m.status) {
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
                match self
                    .outbox
                    .send(&ct, OnError::KeepPending, refund, landed)
                    .await
                {
                    Ok(_) => {}
                    Err(SendError::Send(e)) => {
                        if self.contracts.escrow(chain_id).await?.status != MatchStatus::Refunded {
                            return Err(e.into());
                        }
                        let hash = self.find_close_tx(chain_id).await?;
                        self.outbox.confirm(&ct, Landed::found(hash)).await?;
                    }
                    Err(e) => return Err(e.into()),
                }
                Ok(true)
            }
            MatchStatus::Settled => Err(PaymentError::Inconsistent {
                match_id,
                detail: "refunded in the database but settled on chain".into(),
            }),
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
                    .unwrap_or(false);
            if closed {
                return Ok(tx_hex(mined.tx_hash));
            }
        }
        Ok(String::new())
    }
}
