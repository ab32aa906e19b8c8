//! Ratings per (agent, Space) and their history. The arithmetic (Weng-Lin) lives in
//! the arena; this file only keeps the numbers.

use serde::{Deserialize, Serialize};

use crate::{Result, Store, now_ms, on_pool, on_tx};

/// An agent's rating on one Space's ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Rating {
    /// The agent.
    pub agent_id: i64,
    /// The Space.
    pub space_id: i64,
    /// Skill estimate.
    pub mu: f64,
    /// Uncertainty.
    pub sigma: f64,
    /// Rated matches so far.
    pub matches_played: i64,
    /// Last change, ms.
    pub updated_at: i64,
}

/// One point of an agent's rating history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct RatingPoint {
    /// Row id.
    pub id: i64,
    /// The agent.
    pub agent_id: i64,
    /// The Space.
    pub space_id: i64,
    /// The match that moved it, if any.
    pub match_id: Option<i64>,
    /// `match` or `adapter_change`.
    pub reason: String,
    /// Skill estimate after the change.
    pub mu: f64,
    /// Uncertainty after the change.
    pub sigma: f64,
    /// Time, ms.
    pub created_at: i64,
}

/// A new rating to store.
///
/// With `before`, the update is a *change*: the difference between `before` and
/// (`mu`, `sigma`) is applied to the rating as it stands when the transaction writes it
/// (mu moves by the same amount, sigma scales by the same ratio). Two matches of one
/// agent that settle at the same time then both count, in settlement order, however
/// stale the rating each read when it started. Without `before`, the values are
/// stored as they are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatingUpdate {
    /// The agent.
    pub agent_id: i64,
    /// Skill estimate.
    pub mu: f64,
    /// Uncertainty.
    pub sigma: f64,
    /// The (mu, sigma) that `mu` and `sigma` were computed from, if this is a change.
    pub before: Option<(f64, f64)>,
}

impl RatingUpdate {
    /// Stores `mu` and `sigma` as they are.
    pub fn absolute(agent_id: i64, mu: f64, sigma: f64) -> RatingUpdate {
        RatingUpdate {
            agent_id,
            mu,
            sigma,
            before: None,
        }
    }

    /// Applies the move from `before` to `after` to the current rating.
    pub fn change(agent_id: i64, before: (f64, f64), after: (f64, f64)) -> RatingUpdate {
        RatingUpdate {
            agent_id,
            mu: after.0,
            sigma: after.1,
            before: Some(before),
        }
    }
}

/// A rating as a transaction wrote it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AppliedRating {
    /// The agent.
    pub agent_id: i64,
    /// Skill estimate just before this write (the prior's when it had none).
    pub mu_before: f64,
    /// Skill estimate written.
    pub mu: f64,
    /// Uncertainty written.
    pub sigma: f64,
}

/// The smallest sigma a change can leave.
const MIN_SIGMA: f64 = 1e-3;

impl Store {
    /// The agent's rating in a Space, if it has played there.
    pub async fn rating(&self, agent_id: i64, space_id: i64) -> Result<Option<Rating>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM ratings WHERE agent_id = $1 AND space_id = $2"
        )
        .bind(agent_id)
        .bind(space_id)
        .fetch_optional(pool)
        .await)?)
    }

    /// Stores new ratings for one Space and appends them to the history, in one
    /// transaction. `match_id` is `None` for a change that is not a match (an
    /// adapter update widening sigma); such a change does not count as a match.
    pub async fn update_ratings(
        &self,
        space_id: i64,
        match_id: Option<i64>,
        updates: &[RatingUpdate],
    ) -> Result<Vec<AppliedRating>> {
        let mut tx = self.begin().await?;
        let applied = tx.apply_ratings(space_id, match_id, updates).await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// A Space's ladder, best first by the conservative estimate mu - 3 sigma.
    pub async fn leaderboard(&self, space_id: i64) -> Result<Vec<Rating>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM ratings WHERE space_id = $1
             ORDER BY (mu - 3 * sigma) DESC, agent_id"
        )
        .bind(space_id)
        .fetch_all(pool)
        .await)?)
    }

    /// How many matches of a Space have settled (what [`Store::match_places`] returns
    /// one entry per).
    pub async fn settled_match_count(&self, space_id: i64) -> Result<usize> {
        let (n,): (i64,) = on_pool!(self, |pool| sqlx::query_as(
            "SELECT COUNT(*) FROM matches WHERE space_id = $1 AND status = 'settled'"
        )
        .bind(space_id)
        .fetch_one(pool)
        .await)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Every settled match of a Space, oldest first, as each seat's (agent, place):
    /// what a bootstrap over matches resamples.
    pub async fn match_places(&self, space_id: i64) -> Result<Vec<Vec<(i64, usize)>>> {
        let rows: Vec<(i64, i64, i64)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT p.match_id, e.agent_id, p.place
             FROM payouts p
             JOIN entries e ON e.id = p.entry_id
             JOIN matches m ON m.id = p.match_id
             WHERE m.space_id = $1 AND m.status = 'settled'
             ORDER BY p.match_id, e.id"
        )
        .bind(space_id)
        .fetch_all(pool)
        .await)?;
        let mut out: Vec<Vec<(i64, usize)>> = Vec::new();
        let mut last = None;
        for (match_id, agent_id, place) in rows {
            if last != Some(match_id) {
                out.push(Vec::new());
                last = Some(match_id);
            }
            if let Some(m) = out.last_mut() {
                m.push((agent_id, usize::try_from(place).unwrap_or(usize::MAX)));
            }
        }
        Ok(out)
    }

    /// Every rating of an agent, one per Space it has played.
    pub async fn agent_ratings(&self, agent_id: i64) -> Result<Vec<Rating>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM ratings WHERE agent_id = $1 ORDER BY space_id"
        )
        .bind(agent_id)
        .fetch_all(pool)
        .await)?)
    }

    /// An agent's rating history in a Space, oldest first.
    pub async fn rating_history(&self, agent_id: i64, space_id: i64) -> Result<Vec<RatingPoint>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM rating_history WHERE agent_id = $1 AND space_id = $2 ORDER BY id"
        )
        .bind(agent_id)
        .bind(space_id)
        .fetch_all(pool)
        .await)?)
    }
}

impl crate::Tx {
    /// Upserts ratings and appends their history inside a transaction. A change
    /// ([`RatingUpdate::change`]) is applied to the row as it stands, under the row's
    /// write lock, so concurrent settlements never overwrite each other.
    pub(crate) async fn apply_ratings(
        &mut self,
        space_id: i64,
        match_id: Option<i64>,
        updates: &[RatingUpdate],
    ) -> Result<Vec<AppliedRating>> {
        let now = now_ms();
        let (reason, played) = match match_id {
            Some(_) => ("match", 1i64),
            None => ("adapter_change", 0i64),
        };
        let mut applied = Vec::with_capacity(updates.len());
        for u in updates {
            for (field, v) in [("mu", u.mu), ("sigma", u.sigma)] {
                if !v.is_finite() {
                    return Err(crate::Error::Invalid {
                        field,
                        reason: format!("rating of agent {} is not finite", u.agent_id),
                    });
                }
            }
            if u.sigma <= 0.0 {
                return Err(crate::Error::Invalid {
                    field: "sigma",
                    reason: format!("rating of agent {} must be above 0", u.agent_id),
                });
            }
            let (mu_before, mu, sigma): (f64, f64, f64) = on_tx!(self, |c| {
                // Lock the row first (a write: PostgreSQL's row lock, SQLite's write
                // lock), so the read below is the value this write moves.
                sqlx::query(
                    "UPDATE ratings SET updated_at = updated_at WHERE agent_id = $1 AND space_id = $2",
                )
                .bind(u.agent_id)
                .bind(space_id)
                .execute(&mut *c)
                .await?;
                let before: Option<(f64,)> = sqlx::query_as(
                    "SELECT mu FROM ratings WHERE agent_id = $1 AND space_id = $2",
                )
                .bind(u.agent_id)
                .bind(space_id)
                .fetch_optional(&mut *c)
                .await?;
                // A change moves the row as it stands (mu by the same amount, sigma by
                // the same ratio); a new row, or an absolute update, takes the values.
                let (d_mu, ratio) = match u.before {
                    Some((mu0, sigma0)) => (Some(u.mu - mu0), Some(u.sigma / sigma0.max(MIN_SIGMA))),
                    None => (None, None),
                };
                let (mu, sigma): (f64, f64) = sqlx::query_as(
                    "INSERT INTO ratings (agent_id, space_id, mu, sigma, matches_played, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (agent_id, space_id) DO UPDATE SET
                       mu = CASE WHEN $7 IS NULL THEN excluded.mu ELSE ratings.mu + $7 END,
                       sigma = CASE WHEN $8 IS NULL THEN excluded.sigma
                                    WHEN ratings.sigma * $8 < $9 THEN $9
                                    ELSE ratings.sigma * $8 END,
                       matches_played = ratings.matches_played + excluded.matches_played,
                       updated_at = excluded.updated_at
                     RETURNING mu, sigma",
                )
                .bind(u.agent_id)
                .bind(space_id)
                .bind(u.mu)
                .bind(u.sigma)
                .bind(played)
                .bind(now)
                .bind(d_mu)
                .bind(ratio)
                .bind(MIN_SIGMA)
                .fetch_one(&mut *c)
                .await?;
                sqlx::query(
                    "INSERT INTO rating_history (agent_id, space_id, match_id, reason, mu, sigma, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(u.agent_id)
                .bind(space_id)
                .bind(match_id)
                .bind(reason)
                .bind(mu)
                .bind(sigma)
                .bind(now)
                .execute(&mut *c)
                .await?;
                // What this write moved the rating from: for a change, the written
                // value less its move (exact whether the row was inserted or updated,
                // even when a concurrent first rating raced this one's insert).
                let mu_before = match (u.before, before) {
                    (Some((mu0, _)), _) => mu - (u.mu - mu0),
                    (None, Some((m,))) => m,
                    (None, None) => mu,
                };
                Ok::<_, sqlx::Error>((mu_before, mu, sigma))
            })
            .map_err(|e| {
                crate::Error::on_unique(e, format!("rating of agent {} for this match", u.agent_id))
            })?;
            applied.push(AppliedRating {
                agent_id: u.agent_id,
                mu_before,
                mu,
                sigma,
            });
        }
        Ok(applied)
    }
}
