//! Read-only lists the web pages and API show: a Space by id, recent matches (of a
//! Space or an agent), a user's entries, an agent's auto-entry rules, and the rating
//! changes one match caused.

use crate::{AutoEntry, Entry, Error, Match, RatingPoint, Result, Space, Store, on_pool};

impl Store {
    /// The Space with this id.
    pub async fn space(&self, id: i64) -> Result<Space> {
        on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM spaces WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(pool)
        .await)?
        .ok_or(Error::NotFound {
            what: "space",
            id: id.to_string(),
        })
    }

    /// Matches newest first, optionally of one Space and one status, with id below
    /// `before` (a keyset cursor; `None` starts from the newest).
    pub async fn recent_matches(
        &self,
        space_id: Option<i64>,
        status: Option<crate::MatchStatus>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Match>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM matches
             WHERE ($1 IS NULL OR space_id = $1) AND ($2 IS NULL OR status = $2)
               AND ($3 IS NULL OR id < $3)
             ORDER BY id DESC LIMIT $4"
        )
        .bind(space_id)
        .bind(status)
        .bind(before)
        .bind(limit)
        .fetch_all(pool)
        .await)?)
    }

    /// Matches an agent played in, newest first.
    pub async fn agent_matches(&self, agent_id: i64, limit: i64) -> Result<Vec<Match>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT m.* FROM matches m
             WHERE EXISTS (SELECT 1 FROM entries e WHERE e.match_id = m.id AND e.agent_id = $1)
             ORDER BY m.id DESC LIMIT $2"
        )
        .bind(agent_id)
        .bind(limit)
        .fetch_all(pool)
        .await)?)
    }

    /// A user's entries, newest first.
    pub async fn entries_by_user(&self, user_id: i64, limit: i64) -> Result<Vec<Entry>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM entries WHERE user_id = $1 ORDER BY id DESC LIMIT $2"
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(pool)
        .await)?)
    }

    /// An agent's auto-entry rules, disabled ones included.
    pub async fn auto_entries_for_agent(&self, agent_id: i64) -> Result<Vec<AutoEntry>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM auto_entries WHERE agent_id = $1 ORDER BY fee_tier_id"
        )
        .bind(agent_id)
        .fetch_all(pool)
        .await)?)
    }

    /// The ratings a match set, one row per agent that played it.
    pub async fn match_rating_changes(&self, match_id: i64) -> Result<Vec<RatingPoint>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM rating_history WHERE match_id = $1 ORDER BY agent_id"
        )
        .bind(match_id)
        .fetch_all(pool)
        .await)?)
    }

    /// The rating an agent had in a Space just before `match_id` moved it, if any.
    pub async fn rating_before_match(
        &self,
        agent_id: i64,
        space_id: i64,
        match_id: i64,
    ) -> Result<Option<RatingPoint>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM rating_history
             WHERE agent_id = $1 AND space_id = $2
               AND id < (SELECT MIN(id) FROM rating_history
                         WHERE agent_id = $1 AND space_id = $2 AND match_id = $3)
             ORDER BY id DESC LIMIT 1"
        )
        .bind(agent_id)
        .bind(space_id)
        .bind(match_id)
        .fetch_optional(pool)
        .await)?)
    }
}
