//! The signed-in user's money: balance, deposits and withdrawals (through the
//! [`Payments`](crate::Payments) rail), and the journal of every movement. Nobody
//! can see or move another user's money: every route acts on the caller only.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, parse_wei};
use crate::auth::AuthUser;
use crate::error::{Error, ErrorBody, Result};
use crate::payments::PaymentError;
use crate::state::AppState;

/// Balances, wei as decimal text.
#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceView {
    /// Spendable.
    pub available_wei: String,
    /// Locked in entry fees.
    pub locked_wei: String,
}

impl From<store::Balance> for BalanceView {
    fn from(b: store::Balance) -> BalanceView {
        BalanceView {
            available_wei: b.available_wei.to_string(),
            locked_wei: b.locked_wei.to_string(),
        }
    }
}

/// An amount to move.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Amount {
    /// Wei as decimal text, above zero.
    #[schema(pattern = r"^[1-9][0-9]{0,37}$")]
    pub amount_wei: String,
}

/// A transaction the caller's own wallet sent to the Arena contract.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WalletTx {
    /// The transaction hash, `0x` and 64 hex digits.
    #[schema(pattern = r"^0x[0-9a-fA-F]{64}$")]
    pub tx_hash: String,
}

/// Where your wallet pays in and out.
#[derive(Debug, Serialize, ToSchema)]
pub struct WalletView {
    /// Your wallet, the only one whose transactions count for you.
    pub wallet: String,
    /// The chain and contract (`null` when this server has no chain).
    pub terms: Option<crate::payments::WalletTerms>,
}

/// Checks a transaction hash's shape.
pub(crate) fn tx_hash(text: &str) -> Result<String> {
    let t = text.trim();
    let ok = t.len() == 66 && t.starts_with("0x") && t[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if !ok {
        return Err(Error::invalid(
            "tx_hash",
            "must be 0x followed by 64 hex digits",
        ));
    }
    Ok(t.to_ascii_lowercase())
}

/// Refuses the server-signed path where the server holds no user's key.
pub(crate) fn server_signs(state: &AppState, what: &str) -> Result<()> {
    if state.payments.signs_for_users() {
        return Ok(());
    }
    Err(Error::Conflict(format!(
        "this server signs for no user's wallet: send the {what} from your own wallet to the \
         Arena contract (GET /api/v1/account/wallet names it), then report its transaction \
         with POST /api/v1/account/{what}s"
    )))
}

/// One journal line.
#[derive(Debug, Serialize, ToSchema)]
pub struct JournalView {
    /// Order.
    pub id: i64,
    /// `available` or `locked`.
    pub account: String,
    /// `deposit`, `withdrawal`, `lock`, `payout` or `refund`.
    pub kind: String,
    /// `credit` or `debit`.
    pub direction: String,
    /// Wei as decimal text.
    pub amount_wei: String,
    /// The match, if any.
    pub match_id: Option<i64>,
    /// The entry, if any.
    pub entry_id: Option<i64>,
    /// Time, ms.
    pub created_at: i64,
}

/// Parses and checks an amount (above zero).
pub(crate) fn amount(text: &str) -> Result<store::Wei> {
    let wei = parse_wei("amount_wei", text)?;
    if wei == store::Wei::ZERO {
        return Err(Error::invalid("amount_wei", "must be above zero"));
    }
    Ok(wei)
}

impl From<PaymentError> for Error {
    fn from(e: PaymentError) -> Error {
        match e {
            PaymentError::InsufficientFunds { .. } => Error::InsufficientFunds(e.to_string()),
            PaymentError::Rejected(m) => Error::invalid("amount_wei", m),
            PaymentError::InvalidField { field, reason } => Error::invalid(field, reason),
            PaymentError::Pending(m) => Error::Pending(m),
            PaymentError::Unsupported(m) => Error::Conflict(m),
            PaymentError::Failed(m) => Error::Internal(m),
        }
    }
}

/// Your balances.
#[utoipa::path(get, path = "/account/balance", tag = "account",
    responses((status = 200, body = BalanceView), (status = 401, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
async fn balance(State(state): State<AppState>, user: AuthUser) -> Result<Json<BalanceView>> {
    Ok(Json(state.store.balance(user.user_id).await?.into()))
}

/// Deposits into your available balance.
#[utoipa::path(post, path = "/account/deposit", tag = "account", request_body = Amount,
    responses((status = 200, body = BalanceView), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
async fn deposit(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<Amount>,
) -> Result<Json<BalanceView>> {
    let wei = amount(&body.amount_wei)?;
    server_signs(&state, "deposit")?;
    Ok(Json(
        state.payments.deposit(user.user_id, wei).await?.into(),
    ))
}

/// Withdraws from your available balance.
#[utoipa::path(post, path = "/account/withdraw", tag = "account", request_body = Amount,
    responses((status = 200, body = BalanceView), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "insufficient funds"), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
async fn withdraw(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<Amount>,
) -> Result<Json<BalanceView>> {
    let wei = amount(&body.amount_wei)?;
    server_signs(&state, "withdrawal")?;
    Ok(Json(
        state.payments.withdraw(user.user_id, wei).await?.into(),
    ))
}

/// Where your wallet sends deposits and withdrawals: the chain, the Arena contract,
/// the confirmations a transaction needs, and whether this server signs for dev
/// wallets itself.
#[utoipa::path(get, path = "/account/wallet", tag = "account",
    responses((status = 200, body = WalletView), (status = 401, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
async fn wallet(State(state): State<AppState>, user: AuthUser) -> Result<Json<WalletView>> {
    let row = state.store.user(user.user_id).await?;
    Ok(Json(WalletView {
        wallet: row.wallet_address,
        terms: state.payments.wallet_terms(),
    }))
}

/// Reports a deposit your wallet sent (`deposit()` on the Arena contract, with the
/// amount as value): credited once it is mined and deep enough; reporting it again
/// credits nothing more. The chain follower credits it too, without a report.
#[utoipa::path(post, path = "/account/deposits", tag = "account", request_body = WalletTx,
    responses((status = 200, body = BalanceView), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "not deep enough yet, or no chain"),
        (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
async fn report_deposit(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<WalletTx>,
) -> Result<Json<BalanceView>> {
    let hash = tx_hash(&body.tx_hash)?;
    Ok(Json(
        state
            .payments
            .record_deposit(user.user_id, &hash)
            .await?
            .into(),
    ))
}

/// Reports a withdrawal your wallet sent (`withdraw(amount)` on the Arena contract):
/// debited once it is mined and deep enough; reporting it again debits nothing more.
#[utoipa::path(post, path = "/account/withdrawals", tag = "account", request_body = WalletTx,
    responses((status = 200, body = BalanceView), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "not deep enough yet, funds held for queued entries, or no chain"),
        (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
async fn report_withdrawal(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<WalletTx>,
) -> Result<Json<BalanceView>> {
    let hash = tx_hash(&body.tx_hash)?;
    Ok(Json(
        state
            .payments
            .record_withdrawal(user.user_id, &hash)
            .await?
            .into(),
    ))
}

/// Your journal: every movement of your money, in order.
#[utoipa::path(get, path = "/account/journal", tag = "account",
    responses((status = 200, body = Vec<JournalView>), (status = 401, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
async fn journal(State(state): State<AppState>, user: AuthUser) -> Result<Json<Vec<JournalView>>> {
    let rows = state.store.journal(Some(user.user_id)).await?;
    Ok(Json(
        rows.into_iter()
            .map(|l| JournalView {
                id: l.id,
                account: l.account,
                kind: l.kind,
                direction: l.direction,
                amount_wei: l.amount_wei.to_string(),
                match_id: l.match_id,
                entry_id: l.entry_id,
                created_at: l.created_at,
            })
            .collect(),
    ))
}

/// Account routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(balance))
        .routes(routes!(deposit))
        .routes(routes!(withdraw))
        .routes(routes!(journal))
        .routes(routes!(wallet))
        .routes(routes!(report_deposit))
        .routes(routes!(report_withdrawal))
}
