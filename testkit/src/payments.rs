//! [`LedgerPayments`]: the web layer's payments with no chain behind them, for the
//! web tests and the benchmarks that serve the UI over a bare store.

use store::{Store, Wei};
use web::{PaymentError, PaymentFuture, Payments};

/// Payments straight through the database ledger, with no chain behind them: for tests
/// and benchmarks only, since a deposit here is money nobody paid in.
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
