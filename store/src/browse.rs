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

#[cfg(test)]
mod tests {
    use crate::Store;
    use crate::fixtures::played_match;
    use crate::testing::TestDb;

    async fn lists(store: &Store) {
        let p = played_match(store, 3).await;
        let q = played_match(store, 2).await;
        assert_eq!(store.space(p.space_id).await.unwrap().slug, "tweet-duel");
        assert!(store.space(p.space_id + 99).await.is_err());
        let all = store.recent_matches(None, None, None, 10).await.unwrap();
        assert_eq!(
            all.iter().map(|m| m.id).collect::<Vec<_>>(),
            vec![q.match_id, p.match_id]
        );
        let older = store
            .recent_matches(
                Some(p.space_id),
                Some(crate::MatchStatus::Settled),
                Some(q.match_id),
                10,
            )
            .await
            .unwrap();
        assert_eq!(older.len(), 1);
        assert!(
            store
                .recent_matches(None, Some(crate::MatchStatus::Running), None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.agent_matches(p.agent_ids[0], 10).await.unwrap()[0].id,
            p.match_id
        );
        assert_eq!(
            store
                .entries_by_user(p.user_ids[1], 10)
                .await
                .unwrap()
                .len(),
            2
        );
        assert!(
            store
                .training_runs_for_agent(p.agent_ids[0])
                .await
                .unwrap()
                .is_empty()
        );
        store
            .set_auto_entry(p.agent_ids[0], p.tier_id, crate::Wei(500), false)
            .await
            .unwrap();
        assert_eq!(
            store
                .auto_entries_for_agent(p.agent_ids[0])
                .await
                .unwrap()
                .len(),
            1
        );
        let changes = store.match_rating_changes(q.match_id).await.unwrap();
        assert_eq!(changes.len(), 2);
        let before = store
            .rating_before_match(q.agent_ids[0], q.space_id, q.match_id)
            .await
            .unwrap();
        assert!(before.is_none(), "a fresh agent has no earlier rating");
    }

    #[tokio::test]
    async fn browse_sqlite() {
        let db = TestDb::sqlite().await;
        lists(&db.store).await;
    }

    #[tokio::test]
    async fn browse_postgres() {
        if let Some(db) = TestDb::postgres().await {
            lists(&db.store).await;
        }
    }
}
