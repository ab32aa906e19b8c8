//! People's votes (issue 22): a signed-in spectator is shown two answers of one
//! finished round that the judge panel paired, and says which is better. One vote per
//! account per round, never on a match where the voter owns a seat; each vote records
//! whether the panel chose the same answer, so the votes measure how often the panel
//! agrees with people, per Space, and form their own preference dataset.

use serde::Serialize;

use crate::{Error, Result, Store, now_ms, on_pool};

/// A pair offered to a voter: the round's task and the two answers, without names.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct VoteCandidate {
    /// The preference pair.
    pub pair_id: i64,
    /// Its round.
    pub round_id: i64,
    /// Its match.
    pub match_id: i64,
    /// The Space's slug.
    pub space: String,
    /// The round's task as posed.
    pub task: String,
    /// The panel's chosen answer.
    pub chosen_response_id: i64,
    /// Its text.
    pub chosen: String,
    /// The panel's rejected answer.
    pub rejected_response_id: i64,
    /// Its text.
    pub rejected: String,
}

/// A recorded vote, with what the voter may now see.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct HumanVote {
    /// Row id.
    pub id: i64,
    /// The pair voted on.
    pub pair_id: i64,
    /// Its match.
    pub match_id: i64,
    /// Its round.
    pub round_id: i64,
    /// The voter.
    pub user_id: i64,
    /// The answer the voter preferred.
    pub chosen_response_id: i64,
    /// The other.
    pub rejected_response_id: i64,
    /// 1 when the panel preferred the same answer.
    pub agrees: i64,
    /// When, ms.
    pub created_at: i64,
}

/// How often the panel agreed with people in one Space.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct VoteAgreement {
    /// The Space's slug.
    pub space: String,
    /// Votes cast.
    pub votes: i64,
    /// Votes where the panel chose the same answer.
    pub agreed: i64,
}

/// One vote as a preference row: the people's chosen and rejected answers.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct VoteRow {
    /// The vote (the resume cursor).
    pub vote_id: i64,
    /// The panel's pair it was cast on.
    pub pair_id: i64,
    /// The match.
    pub match_id: i64,
    /// The round.
    pub round_id: i64,
    /// The Space's slug.
    pub space: String,
    /// The round's task.
    pub prompt: String,
    /// The answer people preferred.
    pub chosen: String,
    /// The other.
    pub rejected: String,
    /// 1 when the panel preferred the same answer.
    pub agrees: i64,
    /// When, ms.
    pub created_at: i64,
}

impl Store {
    /// A pair `user_id` may vote on, picked at random: a panel pair of a settled
    /// match where the user owns no seat, in a round the user has not voted on.
    pub async fn next_vote(&self, user_id: i64) -> Result<Option<VoteCandidate>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT p.id AS pair_id, p.round_id, p.match_id, s.slug AS space, r.task,
                    p.chosen_response_id, p.chosen, p.rejected_response_id, p.rejected
             FROM preference_pairs p
             JOIN matches m ON m.id = p.match_id AND m.status = 'settled'
             JOIN rounds r ON r.id = p.round_id
             JOIN spaces s ON s.id = p.space_id
             WHERE NOT EXISTS (SELECT 1 FROM human_votes v
                               WHERE v.round_id = p.round_id AND v.user_id = $1)
               AND NOT EXISTS (SELECT 1 FROM entries e
                               WHERE e.match_id = p.match_id AND e.user_id = $1)
             ORDER BY random()
             LIMIT 1"
        )
        .bind(user_id)
        .fetch_optional(pool)
        .await)?)
    }

    /// Records `user_id`'s vote on pair `pair_id`: `preferred_response_id` is the
    /// answer they found better (one of the pair's two). Refuses an answer outside
    /// the pair, a match that is not settled, a match where the voter owns a seat,
    /// and a second vote on the same round ([`Error::Duplicate`]).
    pub async fn record_vote(
        &self,
        user_id: i64,
        pair_id: i64,
        preferred_response_id: i64,
    ) -> Result<HumanVote> {
        let pair: Option<(i64, i64, i64, i64, i64, crate::MatchStatus)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT p.round_id, p.match_id, p.space_id, p.chosen_response_id,
                        p.rejected_response_id, m.status
                 FROM preference_pairs p JOIN matches m ON m.id = p.match_id
                 WHERE p.id = $1",
            )
            .bind(pair_id)
            .fetch_optional(pool)
            .await
        })?;
        let Some((round_id, match_id, space_id, chosen, rejected, status)) = pair else {
            return Err(Error::NotFound {
                what: "pair",
                id: pair_id.to_string(),
            });
        };
        if status != crate::MatchStatus::Settled {
            return Err(Error::Invalid {
                field: "pair_id",
                reason: format!("match {match_id} is {status}; only settled matches take votes"),
            });
        }
        let (preferred, other) = if preferred_response_id == chosen {
            (chosen, rejected)
        } else if preferred_response_id == rejected {
            (rejected, chosen)
        } else {
            return Err(Error::Invalid {
                field: "chosen_response_id",
                reason: format!("must be one of the pair's two answers, {chosen} or {rejected}"),
            });
        };
        let own: Option<(i64,)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT id FROM entries WHERE match_id = $1 AND user_id = $2 LIMIT 1"
        )
        .bind(match_id)
        .bind(user_id)
        .fetch_optional(pool)
        .await)?;
        if own.is_some() {
            return Err(Error::Invalid {
                field: "pair_id",
                reason: "you own a seat in this match: vote on other people's matches".into(),
            });
        }
        on_pool!(self, |pool| sqlx::query_as(
            "INSERT INTO human_votes (pair_id, match_id, round_id, space_id, user_id,
                                      chosen_response_id, rejected_response_id, agrees, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             RETURNING id, pair_id, match_id, round_id, user_id, chosen_response_id,
                       rejected_response_id, agrees, created_at"
        )
        .bind(pair_id)
        .bind(match_id)
        .bind(round_id)
        .bind(space_id)
        .bind(user_id)
        .bind(preferred)
        .bind(other)
        .bind(i64::from(preferred == chosen))
        .bind(now_ms())
        .fetch_one(pool)
        .await)
        .map_err(|e| Error::on_unique(e, format!("your vote on round {round_id}")))
    }

    /// Per Space: votes cast and how many the panel agreed with, in slug order.
    pub async fn vote_agreement(&self) -> Result<Vec<VoteAgreement>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT s.slug AS space, COUNT(*) AS votes,
                    CAST(COALESCE(SUM(v.agrees), 0) AS BIGINT) AS agreed
             FROM human_votes v JOIN spaces s ON s.id = v.space_id
             GROUP BY s.slug ORDER BY s.slug"
        )
        .fetch_all(pool)
        .await)?)
    }

    /// Votes after `after` (vote id), oldest first, at most `limit`, of one Space or
    /// all: the people's preference dataset.
    pub async fn export_votes_page(
        &self,
        space_id: Option<i64>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<VoteRow>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT v.id AS vote_id, v.pair_id, v.match_id, v.round_id, s.slug AS space,
                    r.task AS prompt, c.text AS chosen, x.text AS rejected, v.agrees, v.created_at
             FROM human_votes v
             JOIN rounds r ON r.id = v.round_id
             JOIN spaces s ON s.id = v.space_id
             JOIN responses c ON c.id = v.chosen_response_id
             JOIN responses x ON x.id = v.rejected_response_id
             WHERE v.id > $1 AND ($2 IS NULL OR v.space_id = $2)
             ORDER BY v.id
             LIMIT $3"
        )
        .bind(after)
        .bind(space_id)
        .bind(limit)
        .fetch_all(pool)
        .await)?)
    }
}
