//! The chain outbox's storage: a chain transaction is recorded under an idempotency
//! key before it is sent (`begin_chain_tx`), found again by key or status, and closed
//! as confirmed or failed. `platform::outbox` is the one sequence over it.

use crate::{ChainTransaction, Error, Result, Store, now_ms, on_pool};

impl Store {
    /// Records an intended chain transaction under its idempotency key, or returns
    /// the one already recorded under that key.
    pub async fn begin_chain_tx(
        &self,
        idempotency_key: &str,
        kind: &str,
    ) -> Result<ChainTransaction> {
        let now = now_ms();
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO chain_transactions (idempotency_key, kind, status, created_at, updated_at)
                 VALUES ($1, $2, 'pending', $3, $3) ON CONFLICT (idempotency_key) DO NOTHING",
            )
            .bind(idempotency_key)
            .bind(kind)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(
                sqlx::query_as("SELECT * FROM chain_transactions WHERE idempotency_key = $1")
                    .bind(idempotency_key)
                    .fetch_one(pool)
                    .await?,
            )
        })
    }

    /// Marks a chain transaction confirmed in `block_number`.
    pub async fn confirm_chain_tx(
        &self,
        id: i64,
        tx_hash: &str,
        block_number: i64,
    ) -> Result<ChainTransaction> {
        self.update_chain_tx(
            id,
            crate::TxStatus::Confirmed,
            Some(tx_hash),
            Some(block_number),
            None,
        )
        .await
    }

    /// Notes that a pending chain transaction was sent as `tx_hash` but is not
    /// confirmed (`why`); it stays pending for reconciliation.
    pub async fn note_chain_tx_sent(
        &self,
        id: i64,
        tx_hash: &str,
        why: &str,
    ) -> Result<ChainTransaction> {
        self.update_chain_tx(id, crate::TxStatus::Pending, Some(tx_hash), None, Some(why))
            .await
    }

    /// Marks a chain transaction failed.
    pub async fn fail_chain_tx(&self, id: i64, error: &str) -> Result<ChainTransaction> {
        self.update_chain_tx(id, crate::TxStatus::Failed, None, None, Some(error))
            .await
    }

    async fn update_chain_tx(
        &self,
        id: i64,
        status: crate::TxStatus,
        tx_hash: Option<&str>,
        block_number: Option<i64>,
        error: Option<&str>,
    ) -> Result<ChainTransaction> {
        on_pool!(self, |pool| sqlx::query_as(
            "UPDATE chain_transactions
             SET status = $2, tx_hash = COALESCE($3, tx_hash), block_number = COALESCE($4, block_number),
                 error = $5, updated_at = $6
             WHERE id = $1 RETURNING *"
        )
        .bind(id)
        .bind(status)
        .bind(tx_hash)
        .bind(block_number)
        .bind(error)
        .bind(now_ms())
        .fetch_optional(pool)
        .await)?
        .ok_or(Error::NotFound {
            what: "chain transaction",
            id: id.to_string(),
        })
    }

    /// The outbox row that sent `tx_hash` (`0x…`), if any.
    pub async fn chain_tx_by_hash(&self, tx_hash: &str) -> Result<Option<ChainTransaction>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM chain_transactions WHERE tx_hash = $1 ORDER BY id LIMIT 1"
        )
        .bind(tx_hash)
        .fetch_optional(pool)
        .await)?)
    }

    /// The last block whose events the chain follower named `name` has put in the
    /// journal; `None` before its first pass.
    pub async fn chain_cursor(&self, name: &str) -> Result<Option<i64>> {
        let row: Option<(i64,)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT block FROM chain_cursors WHERE name = $1"
        )
        .bind(name)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(|r| r.0))
    }

    /// Records that the follower `name` has put every event up to `block` in the
    /// journal.
    pub async fn set_chain_cursor(&self, name: &str, block: i64) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query(
            "INSERT INTO chain_cursors (name, block, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET block = excluded.block, updated_at = excluded.updated_at"
        )
        .bind(name)
        .bind(block)
        .bind(now_ms())
        .execute(pool)
        .await
        .map(drop)
        })?;
        Ok(())
    }

    /// Chain transactions in a status (`pending`, `confirmed`, `failed`), oldest first.
    pub async fn chain_txs_with_status(
        &self,
        status: crate::TxStatus,
    ) -> Result<Vec<ChainTransaction>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM chain_transactions WHERE status = $1 ORDER BY id"
        )
        .bind(status)
        .fetch_all(pool)
        .await)?)
    }

    /// The chain transaction with this idempotency key, if one was begun.
    pub async fn chain_tx_by_key(&self, key: &str) -> Result<Option<ChainTransaction>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM chain_transactions WHERE idempotency_key = $1"
        )
        .bind(key)
        .fetch_optional(pool)
        .await)?)
    }
}
