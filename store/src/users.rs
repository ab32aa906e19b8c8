//! Users, keyed by wallet address.

use crate::{Error, Result, Store, User, now_ms, on_pool};

/// Checks and normalises a wallet address to lower-case `0x` + 40 hex digits.
pub(crate) fn normalize_wallet(address: &str) -> Result<String> {
    let hex = address
        .strip_prefix("0x")
        .or_else(|| address.strip_prefix("0X"))
        .unwrap_or("");
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Invalid {
            field: "wallet_address",
            reason: "expected 0x followed by 40 hex digits".into(),
        });
    }
    Ok(format!("0x{}", hex.to_ascii_lowercase()))
}

impl Store {
    /// Returns the user with this wallet, creating them on first sight.
    pub async fn upsert_user(&self, wallet_address: &str) -> Result<User> {
        let wallet = normalize_wallet(wallet_address)?;
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO users (wallet_address, created_at) VALUES ($1, $2)
                 ON CONFLICT (wallet_address) DO NOTHING",
            )
            .bind(&wallet)
            .bind(now_ms())
            .execute(pool)
            .await?;
            Ok(
                sqlx::query_as("SELECT * FROM users WHERE wallet_address = $1")
                    .bind(&wallet)
                    .fetch_one(pool)
                    .await?,
            )
        })
    }

    /// The user with this id.
    pub async fn user(&self, id: i64) -> Result<User> {
        on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM users WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(pool)
        .await)?
        .ok_or(Error::NotFound {
            what: "user",
            id: id.to_string(),
        })
    }

    /// The user with this wallet, if any.
    pub async fn user_by_wallet(&self, wallet_address: &str) -> Result<Option<User>> {
        let wallet = normalize_wallet(wallet_address)?;
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM users WHERE wallet_address = $1"
        )
        .bind(&wallet)
        .fetch_optional(pool)
        .await)?)
    }
}
