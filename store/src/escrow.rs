//! What the chain side of settlement reads back: a match's settlement row and payouts,
//! chain transactions by status (for start-up reconciliation), and the reversal of a
//! withdrawal whose chain transfer failed.

use serde::{Deserialize, Serialize};

use crate::{Balance, Result, Store, Wei, on_pool};

/// A match's settlement or refund, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct MatchSettlement {
    /// The match.
    pub match_id: i64,
    /// `settled` or `refunded`.
    pub outcome: String,
    /// The pot (wei).
    pub pot_wei: Wei,
    /// The treasury's share (wei).
    pub treasury_wei: Wei,
    /// The result root (0x-hex), for settled matches.
    pub result_root: Option<String>,
    /// The chain transaction that mirrors it, if the pot was not zero.
    pub chain_tx_id: Option<i64>,
    /// Time, ms.
    pub created_at: i64,
}

/// One seat's payout in a settled match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct PayoutRow {
    /// The entry paid.
    pub entry_id: i64,
    /// Its place (1 = best).
    pub place: i64,
    /// The amount (wei).
    pub amount_wei: Wei,
}

impl Store {
    /// The settlement (or refund) of a match, if it has one.
    pub async fn match_settlement(&self, match_id: i64) -> Result<Option<MatchSettlement>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT match_id, outcome, pot_wei, treasury_wei, result_root, chain_tx_id, created_at
             FROM match_settlements WHERE match_id = $1"
        )
        .bind(match_id)
        .fetch_optional(pool)
        .await)?)
    }

    /// A settled match's payouts, by entry id.
    pub async fn match_payouts(&self, match_id: i64) -> Result<Vec<PayoutRow>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT entry_id, place, amount_wei FROM payouts WHERE match_id = $1 ORDER BY entry_id"
        )
        .bind(match_id)
        .fetch_all(pool)
        .await)?)
    }

    /// Gives back a withdrawal whose chain transfer failed: a `refund` credit to the
    /// available balance, once per `idempotency_key` (the withdrawal's own key).
    pub async fn reverse_withdrawal(
        &self,
        user_id: i64,
        amount: Wei,
        idempotency_key: &str,
    ) -> Result<Balance> {
        self.move_available(
            user_id,
            amount,
            true,
            "refund",
            &format!("withdrawal-reversed:{idempotency_key}"),
        )
        .await
    }
}
