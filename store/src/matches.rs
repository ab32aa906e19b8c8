//! Matches, the entries that play them, and what happens inside: rounds, responses,
//! judge scores and the preference pairs cut from them.

use crate::{
    Entry, Error, JudgeScore, Match, PreferencePair, Response, Result, Round, Store, match_status,
    now_ms, on_pool, on_tx,
};

/// A response to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewResponse<'a> {
    /// The round.
    pub round_id: i64,
    /// The entry that answered.
    pub entry_id: i64,
    /// The exact prompt the policy saw.
    pub prompt: &'a str,
    /// The completion.
    pub text: &'a str,
    /// Generated tokens.
    pub tokens: i64,
    /// Why generation stopped.
    pub finish_reason: &'a str,
}

/// A judge score to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJudgeScore<'a> {
    /// The response judged.
    pub response_id: i64,
    /// The judge's name.
    pub judge: &'a str,
    /// Hash of its model.
    pub model_hash: &'a str,
    /// Version of its template.
    pub template_version: &'a str,
    /// Score in [0, 1].
    pub score: f64,
    /// Short rationale.
    pub rationale: &'a str,
}

/// A preference pair to store; the texts, prompt, agents and Space are copied from
/// the two responses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NewPreferencePair {
    /// The better response.
    pub chosen_response_id: i64,
    /// The worse response.
    pub rejected_response_id: i64,
    /// Score margin.
    pub margin: f64,
    /// Share of judges agreeing, in [0, 1].
    pub judge_agreement: f64,
}

impl Store {
    /// Makes a match from queued entries of one Space and fee tier. Every entry must
    /// still be queued; one that was taken by another match fails the whole call, so
    /// no entry ever plays in two matches.
    pub async fn create_match(
        &self,
        space_id: i64,
        fee_tier_id: i64,
        seed: i64,
        space_version: &str,
        entry_ids: &[i64],
    ) -> Result<Match> {
        self.create_match_leased(space_id, fee_tier_id, seed, space_version, entry_ids, None)
            .await
    }

    /// [`Store::create_match`], with the new match leased to `lease` (owner, expiry in
    /// ms) in the same transaction, so no other process reclaims it while its maker
    /// locks the fees. The entries are claimed in id order by a conditional `UPDATE`
    /// on their queued state: two servers matchmaking the same queue at once block on
    /// the first entry they share, and the second finds it taken and fails whole.
    pub async fn create_match_leased(
        &self,
        space_id: i64,
        fee_tier_id: i64,
        seed: i64,
        space_version: &str,
        entry_ids: &[i64],
        lease: Option<(&str, i64)>,
    ) -> Result<Match> {
        let mut entry_ids = entry_ids.to_vec();
        // One lock order for every caller, so two overlapping claims never deadlock.
        entry_ids.sort_unstable();
        if entry_ids.is_empty() {
            return Err(Error::Invalid {
                field: "entry_ids",
                reason: "a match needs at least one entry".into(),
            });
        }
        let mut tx = self.begin().await?;
        let m: Match = on_tx!(&mut tx, |c| {
            sqlx::query_as(
            "INSERT INTO matches (space_id, fee_tier_id, seed, space_version, status, created_at,
                                  lease_owner, lease_expires_at)
             VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7) RETURNING *",
        )
        .bind(space_id)
        .bind(fee_tier_id)
        .bind(seed)
        .bind(space_version)
        .bind(now_ms())
        .bind(lease.map(|(owner, _)| owner))
        .bind(lease.map(|(_, until)| until))
        .fetch_one(&mut *c)
        .await
        })?;
        for &entry_id in &entry_ids {
            let taken = on_tx!(&mut tx, |c| sqlx::query(
                "UPDATE entries SET match_id = $1, status = 'matched'
                 WHERE id = $2 AND status = 'queued' AND match_id IS NULL
                   AND space_id = $3 AND fee_tier_id = $4",
            )
            .bind(m.id)
            .bind(entry_id)
            .bind(space_id)
            .bind(fee_tier_id)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| Error::on_unique(
                e,
                format!("an entry of the same agent in match {}", m.id)
            )))?;
            if taken != 1 {
                return Err(Error::Invalid {
                    field: "entry_ids",
                    reason: format!(
                        "entry {entry_id} is not queued in space {space_id}, tier {fee_tier_id}"
                    ),
                });
            }
        }
        tx.commit().await?;
        Ok(m)
    }

    /// The match with this id.
    pub async fn get_match(&self, id: i64) -> Result<Match> {
        on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM matches WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(pool)
        .await)?
        .ok_or(Error::NotFound {
            what: "match",
            id: id.to_string(),
        })
    }

    /// Matches in a given status, oldest first.
    pub async fn matches_with_status(&self, status: crate::MatchStatus) -> Result<Vec<Match>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM matches WHERE status = $1 ORDER BY id"
        )
        .bind(status)
        .fetch_all(pool)
        .await)?)
    }

    /// Moves a pending match to running.
    pub async fn start_match(&self, id: i64) -> Result<Match> {
        on_pool!(self, |pool| sqlx::query_as(
            "UPDATE matches SET status = 'running', started_at = $2
             WHERE id = $1 AND status = 'pending' RETURNING *"
        )
        .bind(id)
        .bind(now_ms())
        .fetch_optional(pool)
        .await)?
        .ok_or(Error::Invalid {
            field: "match_id",
            reason: format!("match {id} is not pending"),
        })
    }

    /// The entries playing in a match, by id.
    pub async fn match_entries(&self, match_id: i64) -> Result<Vec<Entry>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM entries WHERE match_id = $1 ORDER BY id"
        )
        .bind(match_id)
        .fetch_all(pool)
        .await)?)
    }

    /// Entries waiting for a match in one Space and fee tier, oldest first.
    pub async fn queued_entries(&self, space_id: i64, fee_tier_id: i64) -> Result<Vec<Entry>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM entries WHERE space_id = $1 AND fee_tier_id = $2 AND status = 'queued'
             ORDER BY id"
        )
        .bind(space_id)
        .bind(fee_tier_id)
        .fetch_all(pool)
        .await)?)
    }

    /// One entry.
    pub async fn entry(&self, id: i64) -> Result<Entry> {
        on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM entries WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(pool)
        .await)?
        .ok_or(Error::NotFound {
            what: "entry",
            id: id.to_string(),
        })
    }

    /// Starts round `round_index` of a running match with its task.
    pub async fn create_round(&self, match_id: i64, round_index: i64, task: &str) -> Result<Round> {
        let m = self.get_match(match_id).await?;
        if m.status != match_status::RUNNING {
            return Err(Error::Invalid {
                field: "match_id",
                reason: format!("match {match_id} is {}, not running", m.status),
            });
        }
        on_pool!(self, |pool| sqlx::query_as(
            "INSERT INTO rounds (match_id, round_index, task, started_at)
             VALUES ($1, $2, $3, $4) RETURNING *"
        )
        .bind(match_id)
        .bind(round_index)
        .bind(task)
        .bind(now_ms())
        .fetch_one(pool)
        .await)
        .map_err(|e| Error::on_unique(e, format!("round {round_index} of match {match_id}")))
    }

    /// The rounds of a match, in order.
    pub async fn rounds(&self, match_id: i64) -> Result<Vec<Round>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM rounds WHERE match_id = $1 ORDER BY round_index"
        )
        .bind(match_id)
        .fetch_all(pool)
        .await)?)
    }

    /// Stores one entry's response to a round (once per entry and round).
    pub async fn add_response(&self, new: &NewResponse<'_>) -> Result<Response> {
        on_pool!(self, |pool| sqlx::query_as(
            "INSERT INTO responses (round_id, entry_id, prompt, text, tokens, finish_reason, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *"
        )
        .bind(new.round_id)
        .bind(new.entry_id)
        .bind(new.prompt)
        .bind(new.text)
        .bind(new.tokens)
        .bind(new.finish_reason)
        .bind(now_ms())
        .fetch_one(pool)
        .await)
        .map_err(|e| {
            Error::on_unique(e, format!("a response of entry {} in round {}", new.entry_id, new.round_id))
        })
    }

    /// The responses of a round, by entry.
    pub async fn responses(&self, round_id: i64) -> Result<Vec<Response>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM responses WHERE round_id = $1 ORDER BY entry_id"
        )
        .bind(round_id)
        .fetch_all(pool)
        .await)?)
    }

    /// Stores one judge's score of a response (once per judge and response).
    pub async fn add_judge_score(&self, new: &NewJudgeScore<'_>) -> Result<JudgeScore> {
        if !(0.0..=1.0).contains(&new.score) {
            return Err(Error::Invalid {
                field: "score",
                reason: format!("{} is outside [0, 1]", new.score),
            });
        }
        on_pool!(self, |pool| sqlx::query_as(
            "INSERT INTO judge_scores (response_id, judge, model_hash, template_version, score, rationale)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING *"
        )
        .bind(new.response_id)
        .bind(new.judge)
        .bind(new.model_hash)
        .bind(new.template_version)
        .bind(new.score)
        .bind(new.rationale)
        .fetch_one(pool)
        .await)
        .map_err(|e| Error::on_unique(e, format!("a {} score of response {}", new.judge, new.response_id)))
    }

    /// Every judge's score of a response.
    pub async fn judge_scores(&self, response_id: i64) -> Result<Vec<JudgeScore>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM judge_scores WHERE response_id = $1 ORDER BY judge"
        )
        .bind(response_id)
        .fetch_all(pool)
        .await)?)
    }

    /// Stores a preference pair between two responses of the same round, copying the
    /// prompt, both texts, both agent versions and the Space from them.
    pub async fn add_preference_pair(&self, new: &NewPreferencePair) -> Result<PreferencePair> {
        if !(new.margin >= 0.0 && new.margin.is_finite()) {
            return Err(Error::Invalid {
                field: "margin",
                reason: format!("{} is not a finite number >= 0", new.margin),
            });
        }
        if !(0.0..=1.0).contains(&new.judge_agreement) {
            return Err(Error::Invalid {
                field: "judge_agreement",
                reason: format!("{} is outside [0, 1]", new.judge_agreement),
            });
        }
        on_pool!(self, |pool| sqlx::query_as(
            "INSERT INTO preference_pairs
               (match_id, round_id, space_id, prompt, chosen_response_id, rejected_response_id,
                chosen, rejected, chosen_agent_version_id, rejected_agent_version_id,
                margin, judge_agreement, created_at)
             SELECT r.match_id, r.id, m.space_id, c.prompt, c.id, x.id, c.text, x.text,
                    ce.agent_version_id, xe.agent_version_id, $3, $4, $5
             FROM responses c
             JOIN responses x ON x.id = $2 AND x.round_id = c.round_id
             JOIN rounds r ON r.id = c.round_id
             JOIN matches m ON m.id = r.match_id
             JOIN entries ce ON ce.id = c.entry_id
             JOIN entries xe ON xe.id = x.entry_id
             WHERE c.id = $1
             RETURNING *"
        )
        .bind(new.chosen_response_id)
        .bind(new.rejected_response_id)
        .bind(new.margin)
        .bind(new.judge_agreement)
        .bind(now_ms())
        .fetch_optional(pool)
        .await)
        .map_err(|e| {
            Error::on_unique(
                e,
                format!(
                    "pair ({}, {})",
                    new.chosen_response_id, new.rejected_response_id
                ),
            )
        })?
        .ok_or(Error::Invalid {
            field: "rejected_response_id",
            reason: "the two responses must exist and belong to the same round".into(),
        })
    }

    /// Pairs whose chosen or rejected side was written by a version of `agent_id`,
    /// oldest first, from pair id `after` on (exclusive).
    pub async fn preference_pairs_for_agent(
        &self,
        agent_id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<PreferencePair>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT p.* FROM preference_pairs p
             WHERE p.id > $2 AND EXISTS (
               SELECT 1 FROM agent_versions v
               WHERE v.agent_id = $1
                 AND v.id IN (p.chosen_agent_version_id, p.rejected_agent_version_id))
             ORDER BY p.id LIMIT $3"
        )
        .bind(agent_id)
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await)?)
    }
}
