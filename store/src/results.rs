//! A played match written as one transaction: its rounds, responses, judge scores,
//! preference pairs, settlement (payouts and journal), and rating changes. A crash
//! anywhere leaves the match as it was (running, hence refundable), never half
//! written.

use crate::ratings::RatingUpdate;
use crate::{Error, Result, Settlement, Store, Tx, now_ms, on_tx};

/// One judge's score of one response.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreRecord {
    /// Judge name.
    pub judge: String,
    /// sha256 of its model.
    pub model_hash: String,
    /// Its template version.
    pub template_version: String,
    /// Score in [0, 1].
    pub score: f64,
    /// Its rationale.
    pub rationale: String,
}

/// One seat's response in one round.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseRecord {
    /// The entry.
    pub entry_id: i64,
    /// The exact prompt the policy saw (with the agent's private meta-prompt).
    pub prompt: String,
    /// The round's text as the seat saw it, without the meta-prompt (what public
    /// exports show).
    pub task_prompt: String,
    /// The answer.
    pub text: String,
    /// Generated tokens.
    pub tokens: i64,
    /// Why generation stopped.
    pub finish_reason: String,
    /// Every judge's score.
    pub scores: Vec<ScoreRecord>,
}

/// A preference pair between two responses of the same round, by index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairRecord {
    /// Index of the better response in the round's `responses`.
    pub chosen: usize,
    /// Index of the worse response.
    pub rejected: usize,
    /// Score margin.
    pub margin: f64,
    /// Share of judges agreeing.
    pub judge_agreement: f64,
}

/// One round.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundRecordIn {
    /// 0-based index.
    pub round_index: i64,
    /// The task.
    pub task: String,
    /// The responses, in seat order.
    pub responses: Vec<ResponseRecord>,
    /// Pairs cut from this round's ranking.
    pub pairs: Vec<PairRecord>,
}

/// Everything a played match writes.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchRecord {
    /// The Space (for ratings).
    pub space_id: i64,
    /// The rounds.
    pub rounds: Vec<RoundRecordIn>,
    /// The payout.
    pub settlement: Settlement,
    /// New ratings of the agents that played.
    pub ratings: Vec<RatingUpdate>,
    /// Each seat's entry and the sha256 of the base model it played on (empty when
    /// the match did not record them).
    pub base_models: Vec<(i64, String)>,
}

/// Where a failure is injected in [`Store::record_match_with_fault`], for tests that
/// prove a crash at any step leaves nothing half written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordStep {
    /// After the rounds, responses and scores.
    AfterRounds,
    /// After the preference pairs.
    AfterPairs,
    /// After the settlement.
    AfterSettlement,
    /// After the ratings, just before commit.
    BeforeCommit,
}

/// Ids of what [`Store::record_match`] wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordedMatch {
    /// Response ids per round, in seat order.
    pub response_ids: Vec<Vec<i64>>,
    /// Preference pair ids, in order.
    pub pair_ids: Vec<i64>,
    /// The ratings as written, in the order of [`MatchRecord::ratings`].
    pub ratings: Vec<crate::AppliedRating>,
}

impl Store {
    /// Writes a played match in one transaction.
    pub async fn record_match(&self, record: &MatchRecord) -> Result<RecordedMatch> {
        self.record_match_with_fault(record, None).await
    }

    /// [`Store::record_match`] that fails on purpose at `fault`, to test atomicity.
    pub async fn record_match_with_fault(
        &self,
        record: &MatchRecord,
        fault: Option<RecordStep>,
    ) -> Result<RecordedMatch> {
        let match_id = record.settlement.match_id;
        let plan = self.plan_settlement(&record.settlement).await?;
        let inject = |step: RecordStep| -> Result<()> {
            if fault == Some(step) {
                return Err(Error::Invalid {
                    field: "fault",
                    reason: format!("injected failure {step:?}"),
                });
            }
            Ok(())
        };
        let mut tx = self.begin().await?;
        let mut out = RecordedMatch::default();
        let mut round_ids = Vec::new();
        for round in &record.rounds {
            let (round_id, ids) = tx.insert_round(match_id, round).await?;
            round_ids.push(round_id);
            out.response_ids.push(ids);
        }
        for (entry_id, sha256) in &record.base_models {
            on_tx!(&mut tx, |c| sqlx::query(
                "UPDATE entries SET base_model_sha256 = $1 WHERE id = $2 AND match_id = $3"
            )
            .bind(sha256)
            .bind(entry_id)
            .bind(match_id)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))?;
        }
        inject(RecordStep::AfterRounds)?;
        for (r, round) in record.rounds.iter().enumerate() {
            for pair in &round.pairs {
                let ids = &out.response_ids[r];
                let (chosen, rejected) = match (ids.get(pair.chosen), ids.get(pair.rejected)) {
                    (Some(c), Some(x)) if c != x => (*c, *x),
                    _ => {
                        return Err(Error::Invalid {
                            field: "pairs",
                            reason: format!(
                                "round {} pair indexes out of range",
                                round.round_index
                            ),
                        });
                    }
                };
                let id: i64 = on_tx!(&mut tx, |c| sqlx::query_scalar(
                    "INSERT INTO preference_pairs
                       (match_id, round_id, space_id, prompt, task_prompt, chosen_response_id,
                        rejected_response_id, chosen, rejected, chosen_agent_version_id,
                        rejected_agent_version_id, margin, judge_agreement, created_at)
                     SELECT $1, $2, $3, ch.prompt, ch.task_prompt, ch.id, rj.id, ch.text, rj.text,
                            ce.agent_version_id, re.agent_version_id, $6, $7, $8
                     FROM responses ch
                     JOIN responses rj ON rj.id = $5
                     JOIN entries ce ON ce.id = ch.entry_id
                     JOIN entries re ON re.id = rj.entry_id
                     WHERE ch.id = $4
                     RETURNING id"
                )
                .bind(match_id)
                .bind(round_ids[r])
                .bind(record.space_id)
                .bind(chosen)
                .bind(rejected)
                .bind(pair.margin)
                .bind(pair.judge_agreement)
                .bind(now_ms())
                .fetch_one(&mut *c)
                .await)
                .map_err(|e| Error::on_unique(e, format!("pair ({chosen}, {rejected})")))?;
                out.pair_ids.push(id);
            }
        }
        inject(RecordStep::AfterPairs)?;
        tx.apply_settlement(&record.settlement, &plan).await?;
        inject(RecordStep::AfterSettlement)?;
        out.ratings = tx
            .apply_ratings(record.space_id, Some(match_id), &record.ratings)
            .await?;
        inject(RecordStep::BeforeCommit)?;
        tx.commit().await?;
        Ok(out)
    }
}

impl Tx {
    /// Inserts a round with its responses and their scores.
    async fn insert_round(
        &mut self,
        match_id: i64,
        round: &RoundRecordIn,
    ) -> Result<(i64, Vec<i64>)> {
        let now = now_ms();
        let round_id: i64 = on_tx!(self, |c| sqlx::query_scalar(
            "INSERT INTO rounds (match_id, round_index, task, started_at, finished_at)
             VALUES ($1, $2, $3, $4, $4) RETURNING id"
        )
        .bind(match_id)
        .bind(round.round_index)
        .bind(&round.task)
        .bind(now)
        .fetch_one(&mut *c)
        .await)
        .map_err(|e| {
            Error::on_unique(
                e,
                format!("round {} of match {match_id}", round.round_index),
            )
        })?;
        let mut ids = Vec::with_capacity(round.responses.len());
        for r in &round.responses {
            let id: i64 = on_tx!(self, |c| {
                sqlx::query_scalar(
                "INSERT INTO responses (round_id, entry_id, prompt, task_prompt, text, tokens, finish_reason, created_at)
                 VALUES ($1, $2, $3, $8, $4, $5, $6, $7) RETURNING id"
            )
            .bind(round_id)
            .bind(r.entry_id)
            .bind(&r.prompt)
            .bind(&r.text)
            .bind(r.tokens)
            .bind(&r.finish_reason)
            .bind(now)
            .bind(&r.task_prompt)
            .fetch_one(&mut *c)
            .await
            })?;
            for s in &r.scores {
                if !(0.0..=1.0).contains(&s.score) {
                    return Err(Error::Invalid {
                        field: "score",
                        reason: format!("{} is outside [0, 1]", s.score),
                    });
                }
                on_tx!(self, |c| {
                    sqlx::query(
                    "INSERT INTO judge_scores (response_id, judge, model_hash, template_version, score, rationale)
                     VALUES ($1, $2, $3, $4, $5, $6)"
                )
                .bind(id)
                .bind(&s.judge)
                .bind(&s.model_hash)
                .bind(&s.template_version)
                .bind(s.score)
                .bind(&s.rationale)
                .execute(&mut *c)
                .await
                .map(|r| r.rows_affected())
                })?;
            }
            ids.push(id);
        }
        Ok((round_id, ids))
    }
}
