//! The chain outbox, written once: every chain transaction the platform sends (fee
//! locks, settlements, refunds, proof-of-learning records) is first recorded under an
//! idempotency key ([`Outbox::begin`]), sent by whoever finds it pending
//! ([`Outbox::send`]), and closed as confirmed with where it landed, or failed with
//! why. A crash between any two steps leaves a pending row that reconciliation finds
//! by its key, so nothing is sent twice and nothing is forgotten.

use std::future::Future;

use alloy::primitives::B256;
use store::{ChainTransaction, Store};

/// A transaction hash as the database keeps it (`0x…`, lower-case).
pub fn tx_hex(hash: B256) -> String {
    format!("{hash:#x}")
}

/// Where a sent transaction landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landed {
    /// Its hash (`0x…`), empty when nothing needed sending.
    pub tx_hash: String,
    /// Its block, 0 when it was found afterwards rather than sent here.
    pub block_number: i64,
}

impl Landed {
    /// A receipt of a transaction this process sent.
    pub(crate) fn sent(tx_hash: B256, block_number: u64) -> Landed {
        Landed {
            tx_hash: tx_hex(tx_hash),
            block_number: block_number as i64,
        }
    }

    /// A transaction found on chain afterwards (sent before a crash, or by another
    /// process).
    pub(crate) fn found(tx_hash: String) -> Landed {
        Landed {
            tx_hash,
            block_number: 0,
        }
    }
}

/// What a failed send leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// The row is closed as failed: the caller gives the operation up (a fee lock, a
    /// proof-of-learning record).
    Fail,
    /// The row stays pending for reconciliation to send again: the database already
    /// holds what the chain must follow (a settlement, a refund).
    KeepPending,
}

/// Why a send failed.
#[derive(Debug)]
pub enum SendError<E> {
    /// The outbox row could not be written.
    Store(store::Error),
    /// The chain call failed; the row is failed or left pending as asked.
    Send(E),
}

/// The outbox over the store's `chain_transactions`.
#[derive(Clone)]
pub struct Outbox {
    store: Store,
}

impl Outbox {
    /// The outbox in `store`.
    pub(crate) fn new(store: Store) -> Outbox {
        Outbox { store }
    }

    /// Records the intent to send `kind` under `key`, or returns the row already
    /// recorded under it (which may be pending, confirmed or failed).
    pub(crate) async fn begin(&self, key: &str, kind: &str) -> store::Result<ChainTransaction> {
        self.store.begin_chain_tx(key, kind).await
    }

    /// The row under `key` while it is pending; `None` when none was begun or it is
    /// closed.
    pub(crate) async fn pending(&self, key: &str) -> store::Result<Option<ChainTransaction>> {
        Ok(self
            .store
            .chain_tx_by_key(key)
            .await?
            .filter(|ct| ct.status == store::TxStatus::Pending))
    }

    /// Every pending row, oldest first.
    pub(crate) async fn all_pending(&self) -> store::Result<Vec<ChainTransaction>> {
        self.store
            .chain_txs_with_status(store::TxStatus::Pending)
            .await
    }

    /// Sends `ct` once: `send` runs, its receipt (read by `landed`) confirms the row;
    /// an error fails the row or leaves it pending (`on_error`) and is returned.
    pub(crate) async fn send<T, E>(
        &self,
        ct: &ChainTransaction,
        on_error: OnError,
        send: impl Future<Output = Result<T, E>>,
        landed: impl FnOnce(&T) -> Landed,
    ) -> Result<T, SendError<E>>
    where
        E: std::fmt::Display,
    {
        match send.await {
            Ok(sent) => {
                self.confirm(ct, landed(&sent))
                    .await
                    .map_err(SendError::Store)?;
                Ok(sent)
            }
            Err(e) => {
                if on_error == OnError::Fail {
                    self.fail(ct, &e.to_string())
                        .await
                        .map_err(SendError::Store)?;
                }
                Err(SendError::Send(e))
            }
        }
    }

    /// Closes `ct` as confirmed where it `landed`.
    pub(crate) async fn confirm(&self, ct: &ChainTransaction, landed: Landed) -> store::Result<()> {
        self.store
            .confirm_chain_tx(ct.id, &landed.tx_hash, landed.block_number)
            .await
            .map(drop)
    }

    /// Closes `ct` as failed, with why (a chain error, or `superseded: …` when the
    /// database closed the match the other way).
    pub(crate) async fn fail(&self, ct: &ChainTransaction, why: &str) -> store::Result<()> {
        self.store.fail_chain_tx(ct.id, why).await.map(drop)
    }
}
