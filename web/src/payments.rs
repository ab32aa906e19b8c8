//! Deposits and withdrawals behind one trait, so the routes do not care how money
//! moves: through the chain (the production handle, in the binary), or, in tests and
//! benchmarks, straight through the ledger (`testkit::payments::LedgerPayments`).

use std::future::Future;
use std::pin::Pin;

use store::{Balance, Money, Wei};

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
    /// A field of the request was refused, with why.
    #[error("{field}: {reason}")]
    InvalidField {
        /// The field at fault (`tx_hash`, `amount_wei`).
        field: String,
        /// Why, with the limit.
        reason: String,
    },
    /// The transaction is not deep enough yet; reporting it again later works.
    #[error("{0}")]
    Pending(String),
    /// This server does not move money that way (for example, it signs for no
    /// wallet on a real network: the user's own wallet does).
    #[error("{0}")]
    Unsupported(String),
    /// The payment rail failed; nothing was moved.
    #[error("payment failed: {0}")]
    Failed(String),
}

/// Where users' own wallets send money: the chain and the Arena contract, for the
/// browser's wallet (EIP-1193) to sign `deposit()` (ETH) or, when fees are in a token,
/// the token's `approve(arena, amount)` and then `deposit(amount)`, and
/// `withdraw(amount)` there.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct WalletTerms {
    /// The EIP-155 chain id the wallet must be on.
    pub chain_id: u64,
    /// The Arena contract, `0x…`.
    pub arena: String,
    /// Blocks a deposit or withdrawal must be under before it counts.
    pub confirmations: u64,
    /// The fee token, `0x…`, when fees are paid in one (null for ETH): the wallet
    /// approves the Arena on it before depositing.
    pub fee_token: Option<String>,
    /// What amounts are shown and typed in: `ETH`, or the token's symbol. Every
    /// `*_wei` amount of the API is in the asset's smallest unit.
    pub symbol: String,
    /// Digits after the point of a whole unit: 18 for ETH, the token's decimals.
    pub decimals: u8,
    /// Whether this server also signs for users' dev wallets (the embedded chain,
    /// whose keys are public), offering the one-click path.
    pub server_signs: bool,
}

/// Moves money in and out of a user's available balance; returns the new balance.
pub trait Payments: Send + Sync + 'static {
    /// Credits `amount` to `user_id`.
    fn deposit(&self, user_id: i64, amount: Wei) -> PaymentFuture<'_>;
    /// Debits `amount` from `user_id`, or fails without moving anything.
    fn withdraw(&self, user_id: i64, amount: Wei) -> PaymentFuture<'_>;
    /// Where users' wallets pay in and out; `None` when there is no chain.
    fn wallet_terms(&self) -> Option<WalletTerms> {
        None
    }
    /// The unit money is in: the fee asset's (ETH unless fees are in a token).
    fn money(&self) -> Money {
        self.wallet_terms()
            .map(|t| Money::token(t.symbol, t.decimals))
            .unwrap_or_default()
    }
    /// Whether [`Payments::deposit`] and [`Payments::withdraw`] may move money for a
    /// user (a ledger with no chain, or dev wallets whose keys the server holds).
    fn signs_for_users(&self) -> bool {
        true
    }
    /// Credits the deposit the user's own wallet sent in transaction `tx_hash`
    /// (`0x…`); reporting it twice credits it once.
    fn record_deposit<'a>(&'a self, user_id: i64, tx_hash: &'a str) -> PaymentFuture<'a> {
        let _ = (user_id, tx_hash);
        Box::pin(async { Err(PaymentError::Unsupported(NO_CHAIN.into())) })
    }
    /// Debits the withdrawal the user's own wallet sent in transaction `tx_hash`;
    /// reporting it twice debits it once.
    fn record_withdrawal<'a>(&'a self, user_id: i64, tx_hash: &'a str) -> PaymentFuture<'a> {
        let _ = (user_id, tx_hash);
        Box::pin(async { Err(PaymentError::Unsupported(NO_CHAIN.into())) })
    }
}

const NO_CHAIN: &str = "this server keeps balances in its ledger only, with no chain: there is no wallet transaction to report";
