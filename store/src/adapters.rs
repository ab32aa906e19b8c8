//! Trained adapters by hash, where every server and worker on the database reads them:
//! the two files of an adapter's PEFT directory, written once per hash.

use crate::{Result, Store, now_ms, on_pool};

/// An adapter's files as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterFiles {
    /// `adapter_config.json`.
    pub config: String,
    /// `adapter_model.safetensors`.
    pub weights: Vec<u8>,
}

impl Store {
    /// Stores an adapter's files under its hash; storing a hash already there is a
    /// no-op (the content is the same: the hash names it).
    pub async fn put_adapter(&self, hash: &str, files: &AdapterFiles) -> Result<()> {
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO adapters (hash, config, weights, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (hash) DO NOTHING"
        )
        .bind(hash)
        .bind(&files.config)
        .bind(&files.weights)
        .bind(now_ms())
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The files of the adapter with this hash, if stored.
    pub async fn adapter_files(&self, hash: &str) -> Result<Option<AdapterFiles>> {
        let row: Option<(String, Vec<u8>)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT config, weights FROM adapters WHERE hash = $1"
        )
        .bind(hash)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(|(config, weights)| AdapterFiles { config, weights }))
    }
}
