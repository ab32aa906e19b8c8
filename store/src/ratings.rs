//! Ratings per (agent, Space) and their history. The arithmetic (Weng-Lin) lives in
//! the arena; this file only keeps the numbers.

use serde::{Deserialize, Serialize};

use crate::{Result, Store, now_ms, on_pool, on_tx};

/// An agent's rating on one Space's ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

crate::records::from_row!(Rating {
    agent_id,
    space_id,
    mu,
    sigma,
    matches_played,
    updated_at
});
crate::records::from_row!(RatingPoint {
    id,
    agent_id,
    space_id,
    match_id,
    reason,
    mu,
    sigma,
    created_at
});

/// A new rating to store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatingUpdate {
    /// The agent.
    pub agent_id: i64,
    /// Skill estimate.
    pub mu: f64,
    /// Uncertainty.
    pub sigma: f64,
}

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
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.apply_ratings(space_id, match_id, updates).await?;
        tx.commit().await
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
    /// Upserts ratings and appends their history inside a transaction.
    pub(crate) async fn apply_ratings(
        &mut self,
        space_id: i64,
        match_id: Option<i64>,
        updates: &[RatingUpdate],
    ) -> Result<()> {
        let now = now_ms();
        let (reason, played) = match match_id {
            Some(_) => ("match", 1i64),
            None => ("adapter_change", 0i64),
        };
        for u in updates {
            on_tx!(self, |c| {
                sqlx::query(
                    "INSERT INTO ratings (agent_id, space_id, mu, sigma, matches_played, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (agent_id, space_id) DO UPDATE SET
                       mu = excluded.mu, sigma = excluded.sigma,
                       matches_played = ratings.matches_played + excluded.matches_played,
                       updated_at = excluded.updated_at",
                )
                .bind(u.agent_id)
                .bind(space_id)
                .bind(u.mu)
                .bind(u.sigma)
                .bind(played)
                .bind(now)
                .execute(&mut *c)
                .await?;
                sqlx::query(
                    "INSERT INTO rating_history (agent_id, space_id, match_id, reason, mu, sigma, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(u.agent_id)
                .bind(space_id)
                .bind(match_id)
                .bind(reason)
                .bind(u.mu)
                .bind(u.sigma)
                .bind(now)
                .execute(&mut *c)
                .await
                .map(|r| r.rows_affected())
            })
            .map_err(|e| {
                crate::Error::on_unique(e, format!("rating of agent {} for this match", u.agent_id))
            })?;
        }
        Ok(())
    }
}
