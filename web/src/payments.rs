//! Deposits and withdrawals behind one trait, so the routes do not care whether money
//! moves through the chain (the production handle) or straight through the ledger
//! (demo mode and tests).

use std::future::Future;
use std::pin::Pin;

use store::{Balance, Store, Wei};

/// A boxed future of a payment's outcome.
pub type PaymentFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Balance, PaymentError>> + Send + 'a>>;

/// Why a deposit or withdrawal did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The available balance does not cover a withdrawal.
    #[error("insufficient balance: have {have} wei, need {need} wei")]
    InsufficientFunds {
        /// Available now.
        have: Wei,
        /// Asked for.
        need: Wei,
    },
    /// The amount or account was refused (e.g. zero, or above a limit).
    #[error("{0}")]
    Rejected(String),
    /// The payment rail failed; nothing was moved.
    #[error("payment failed: {0}")]
    Failed(String),
}

/// Moves money in and out of a user's available balance; returns the new balance.
pub trait Payments: Send + Sync + 'static {
    /// Credits `amount` to `user_id`.
    fn deposit(&self, user_id: i64, amount: Wei) -> PaymentFuture<'_>;
    /// Debits `amount` from `user_id`, or fails without moving anything.
    fn withdraw(&self, user_id: i64, amount: Wei) -> PaymentFuture<'_>;
}

/// Payments straight through the database ledger, with no chain behind them: for demo
/// mode and tests only, since a deposit here is money nobody paid in.
#[derive(Debug, Clone)]
pub struct LedgerPayments {
    store: Store,
}

impl LedgerPayments {
    /// Payments over `store`'s ledger.
    pub fn new(store: Store) -> LedgerPayments {
        LedgerPayments { store }
    }
}

fn key() -> String {
    use rand::Rng as _;
    hex::encode(rand::rng().random::<[u8; 16]>())
}

fn payment_error(e: store::Error) -> PaymentError {
    match e {
        store::Error::InsufficientBalance { have, need, .. } => {
            PaymentError::InsufficientFunds { have, need }
        }
        store::Error::Invalid { field, reason } => {
            PaymentError::Rejected(format!("{field}: {reason}"))
        }
        other => PaymentError::Failed(other.to_string()),
    }
}

impl Payments for LedgerPayments {
    fn deposit(&self, user_id: i64, amount: Wei) -> PaymentFuture<'_> {
        Box::pin(async move {
            self.store
                .deposit(user_id, amount, &format!("web:{}", key()))
                .await
                .map_err(payment_error)
        })
    }

    fn withdraw(&self, user_id: i64, amount: Wei) -> PaymentFuture<'_> {
        Box::pin(async move {
            self.store
                .withdraw(user_id, amount, &format!("web:{}", key()))
                .await
                .map_err(payment_error)
        })
    }
}
