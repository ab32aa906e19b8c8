//! Sign-in state: single-use Sign-In with Ethereum nonces, browser sessions and API
//! tokens. The web layer makes the secrets and hashes them; this file only keeps the
//! hashes, so nothing here can sign anyone in on its own.

use serde::{Deserialize, Serialize};

use crate::{Error, Result, Store, now_ms, on_pool};

/// A browser session, found by the hash of its cookie.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Session {
    /// sha256 of the cookie value (hex).
    pub token_hash: String,
    /// The signed-in user.
    pub user_id: i64,
    /// The token form posts and cookie-authenticated writes must echo.
    pub csrf_token: String,
    /// Created, ms.
    pub created_at: i64,
    /// Expiry, ms.
    pub expires_at: i64,
}

/// An API token for scripts (`Authorization: Bearer …`), as listed to its owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ApiToken {
    /// Row id.
    pub id: i64,
    /// The owner.
    pub user_id: i64,
    /// The owner's label for it.
    pub name: String,
    /// sha256 of the token (hex).
    pub token_hash: String,
    /// The token's first characters, to tell tokens apart.
    pub prefix: String,
    /// Created, ms.
    pub created_at: i64,
    /// Last use, ms.
    pub last_used_at: Option<i64>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
    /// What it may do, comma-separated: `read`, `play`, `withdraw`.
    pub scopes: String,
    /// When it stops working, ms; `None` never.
    pub expires_at: Option<i64>,
}

impl Store {
    /// Records a freshly issued sign-in nonce that expires at `expires_at` (ms).
    pub async fn create_nonce(&self, nonce: &str, expires_at: i64) -> Result<()> {
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO siwe_nonces (nonce, created_at, expires_at) VALUES ($1, $2, $3)"
        )
        .bind(nonce)
        .bind(now_ms())
        .bind(expires_at)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| Error::on_unique(e, "nonce"))?;
        Ok(())
    }

    /// Spends a nonce: `true` exactly once for a nonce that was issued and has not
    /// expired, `false` for an unknown, expired or already used one.
    pub async fn consume_nonce(&self, nonce: &str) -> Result<bool> {
        let now = now_ms();
        let used = on_pool!(self, |pool| sqlx::query(
            "UPDATE siwe_nonces SET used_at = $2
             WHERE nonce = $1 AND used_at IS NULL AND expires_at > $2"
        )
        .bind(nonce)
        .bind(now)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(used == 1)
    }

    /// Starts a session for `user_id` under the hash of its cookie.
    pub async fn create_session(
        &self,
        token_hash: &str,
        user_id: i64,
        csrf_token: &str,
        expires_at: i64,
    ) -> Result<Session> {
        on_pool!(self, |pool| sqlx::query_as(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5) RETURNING *"
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(csrf_token)
        .bind(now_ms())
        .bind(expires_at)
        .fetch_one(pool)
        .await)
        .map_err(|e| Error::on_unique(e, "session"))
    }

    /// The unexpired session with this cookie hash, if any.
    pub async fn session(&self, token_hash: &str) -> Result<Option<Session>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM sessions WHERE token_hash = $1 AND expires_at > $2"
        )
        .bind(token_hash)
        .bind(now_ms())
        .fetch_optional(pool)
        .await)?)
    }

    /// Deletes sign-in nonces that expired or were spent and sessions that expired
    /// before `now_ms`; returns how many of each went.
    pub async fn purge_expired_auth(&self, now_ms: i64) -> Result<(u64, u64)> {
        let nonces = on_pool!(self, |pool| sqlx::query(
            "DELETE FROM siwe_nonces WHERE expires_at <= $1 OR used_at IS NOT NULL"
        )
        .bind(now_ms)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        let sessions = on_pool!(self, |pool| sqlx::query(
            "DELETE FROM sessions WHERE expires_at <= $1"
        )
        .bind(now_ms)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok((nonces, sessions))
    }

    /// Ends every session of `user_id` (sign out everywhere); returns how many ended.
    pub async fn delete_user_sessions(&self, user_id: i64) -> Result<u64> {
        Ok(on_pool!(self, |pool| sqlx::query(
            "DELETE FROM sessions WHERE user_id = $1"
        )
        .bind(user_id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?)
    }

    /// Ends a session (signing out); ending an unknown one is a no-op.
    pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
        on_pool!(self, |pool| sqlx::query(
            "DELETE FROM sessions WHERE token_hash = $1"
        )
        .bind(token_hash)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Stores a new API token of `user_id` by its hash.
    pub async fn create_api_token(
        &self,
        user_id: i64,
        name: &str,
        token_hash: &str,
        prefix: &str,
    ) -> Result<ApiToken> {
        self.create_scoped_api_token(
            user_id,
            name,
            token_hash,
            prefix,
            "read,play,withdraw",
            None,
        )
        .await
    }

    /// Stores a new API token limited to `scopes` (comma-separated) that stops working
    /// at `expires_at` (ms) if given.
    pub async fn create_scoped_api_token(
        &self,
        user_id: i64,
        name: &str,
        token_hash: &str,
        prefix: &str,
        scopes: &str,
        expires_at: Option<i64>,
    ) -> Result<ApiToken> {
        on_pool!(self, |pool| sqlx::query_as(
            "INSERT INTO api_tokens (user_id, name, token_hash, prefix, created_at, scopes, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *"
        )
        .bind(user_id)
        .bind(name)
        .bind(token_hash)
        .bind(prefix)
        .bind(now_ms())
        .bind(scopes)
        .bind(expires_at)
        .fetch_one(pool)
        .await)
        .map_err(|e| Error::on_unique(e, "API token"))
    }

    /// A user's API tokens, revoked ones included, oldest first.
    pub async fn api_tokens(&self, user_id: i64) -> Result<Vec<ApiToken>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM api_tokens WHERE user_id = $1 ORDER BY id"
        )
        .bind(user_id)
        .fetch_all(pool)
        .await)?)
    }

    /// Revokes one of `user_id`'s tokens. A token of another user is `NotFound`, so
    /// nobody can probe or revoke tokens that are not theirs.
    pub async fn revoke_api_token(&self, user_id: i64, token_id: i64) -> Result<ApiToken> {
        on_pool!(self, |pool| sqlx::query_as(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $3)
             WHERE id = $1 AND user_id = $2 RETURNING *"
        )
        .bind(token_id)
        .bind(user_id)
        .bind(now_ms())
        .fetch_optional(pool)
        .await)?
        .ok_or(Error::NotFound {
            what: "API token",
            id: token_id.to_string(),
        })
    }

    /// The live (unrevoked, unexpired) token with this hash, marking it used.
    pub async fn use_api_token(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "UPDATE api_tokens SET last_used_at = $2
             WHERE token_hash = $1 AND revoked_at IS NULL
               AND (expires_at IS NULL OR expires_at > $2) RETURNING *"
        )
        .bind(token_hash)
        .bind(now_ms())
        .fetch_optional(pool)
        .await)?)
    }
}
