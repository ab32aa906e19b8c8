//! Leases on unfinished matches, so that several processes can share one database:
//! the server that forms a match holds its lease while it locks the fees, the worker
//! that plays it takes the lease as it starts the match and renews it while the match
//! is in its world. Another process reclaims (refunds) a match only once its lease has
//! expired, and takes the lease first, so the holder learns at its next renewal that
//! the match is no longer its own. Every change is one conditional `UPDATE` whose row
//! count says who won.

use serde::{Deserialize, Serialize};

use crate::{Match, Result, Store, match_status, now_ms, on_pool};

/// Who holds a match and until when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct MatchLease {
    /// The match.
    pub id: i64,
    /// Where the match is.
    pub status: crate::MatchStatus,
    /// The holder (a server or worker id), if any.
    pub lease_owner: Option<String>,
    /// When the lease runs out, ms.
    pub lease_expires_at: Option<i64>,
}

impl Store {
    /// The lease of a match.
    pub async fn match_lease(&self, match_id: i64) -> Result<MatchLease> {
        on_pool!(self, |pool| sqlx::query_as(
            "SELECT id, status, lease_owner, lease_expires_at FROM matches WHERE id = $1"
        )
        .bind(match_id)
        .fetch_optional(pool)
        .await)?
        .ok_or(crate::Error::NotFound {
            what: "match",
            id: match_id.to_string(),
        })
    }

    /// Starts a pending match for `owner`, leased until `until_ms`. `None` when the
    /// match is no longer pending (another worker started it, or it was refunded).
    pub async fn start_leased_match(
        &self,
        match_id: i64,
        owner: &str,
        until_ms: i64,
    ) -> Result<Option<Match>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "UPDATE matches SET status = 'running', started_at = $2, lease_owner = $3,
                                lease_expires_at = $4
             WHERE id = $1 AND status = 'pending' RETURNING *"
        )
        .bind(match_id)
        .bind(now_ms())
        .bind(owner)
        .bind(until_ms)
        .fetch_optional(pool)
        .await)?)
    }

    /// Extends `owner`'s lease on an unfinished match to `until_ms`. `false` when the
    /// lease is no longer `owner`'s (reclaimed after it expired) or the match is over.
    pub async fn renew_lease(&self, match_id: i64, owner: &str, until_ms: i64) -> Result<bool> {
        let n = on_pool!(self, |pool| sqlx::query(
            "UPDATE matches SET lease_expires_at = $3
             WHERE id = $1 AND lease_owner = $2 AND status IN ('pending', 'running')"
        )
        .bind(match_id)
        .bind(owner)
        .bind(until_ms)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Puts `owner`'s running match back to pending (nothing of it is stored before
    /// it settles, so another worker can play it from its seed), leased until
    /// `until_ms` to nobody, which is the time a worker has to pick it up again.
    /// `false` when the match is no longer `owner`'s.
    pub async fn hand_back_match(&self, match_id: i64, owner: &str, until_ms: i64) -> Result<bool> {
        let n = on_pool!(self, |pool| sqlx::query(
            "UPDATE matches SET status = 'pending', started_at = NULL, lease_owner = NULL,
                                lease_expires_at = $3
             WHERE id = $1 AND lease_owner = $2 AND status = 'running'"
        )
        .bind(match_id)
        .bind(owner)
        .bind(until_ms)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Unfinished matches whose lease ran out before `now_ms`, oldest first. Matches
    /// that never had a lease (single-process runs) are not listed.
    pub async fn expired_leases(&self, now_ms: i64) -> Result<Vec<MatchLease>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT id, status, lease_owner, lease_expires_at FROM matches
             WHERE status IN ('pending', 'running') AND lease_expires_at < $1
             ORDER BY id"
        )
        .bind(now_ms)
        .fetch_all(pool)
        .await)?)
    }

    /// Takes an expired lease for `owner` until `until_ms`, so that only one process
    /// reclaims the match. `false` when the lease was renewed or taken meanwhile, or the
    /// match finished.
    pub async fn take_expired_lease(
        &self,
        match_id: i64,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool> {
        let n = on_pool!(self, |pool| sqlx::query(
            "UPDATE matches SET lease_owner = $2, lease_expires_at = $4
             WHERE id = $1 AND status IN ('pending', 'running') AND lease_expires_at < $3"
        )
        .bind(match_id)
        .bind(owner)
        .bind(now_ms)
        .bind(until_ms)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }
}

/// Whether `status` is one a lease applies to.
pub fn is_unfinished(status: crate::MatchStatus) -> bool {
    status == match_status::PENDING || status == match_status::RUNNING
}
