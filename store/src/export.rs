//! The preference-pair export: pages of pairs with the metadata a dataset needs,
//! filtered by Space, agent, time, margin, judge agreement and training run, read by keyset
//! (`id > after`, ascending) so a caller streams millions of rows a page at a time
//! and resumes an interrupted download from the last id it received.

use serde::{Deserialize, Serialize};

use crate::{Result, Store, on_pool};

/// Which pairs to export; `None` means no restriction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PairFilter {
    /// Only pairs of this Space.
    pub space_id: Option<i64>,
    /// Only pairs where this agent wrote the chosen or the rejected side.
    pub agent_id: Option<i64>,
    /// Created at or after this time, ms.
    pub since_ms: Option<i64>,
    /// Created strictly before this time, ms.
    pub until_ms: Option<i64>,
    /// Margin at least this.
    pub min_margin: Option<f64>,
    /// Judge agreement at least this.
    pub min_agreement: Option<f64>,
    /// Only the pairs this training run trained on (each row then carries its
    /// position in the run's training order).
    pub training_run_id: Option<i64>,
    /// Only pairs where neither answer was cut off at the token limit.
    pub complete_only: bool,
}

/// Whether an answer that stopped for `finish_reason` was cut off rather than
/// finished (the Space's token limit, or the context, ran out).
pub fn is_truncated(finish_reason: &str) -> bool {
    matches!(finish_reason, "length" | "context_full")
}

/// One exported pair with its metadata columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ExportPair {
    /// Pair id (the resume cursor).
    pub id: i64,
    /// The match.
    pub match_id: i64,
    /// The round's row id.
    pub round_id: i64,
    /// The round's 0-based index.
    pub round_index: i64,
    /// The Space's slug.
    pub space: String,
    /// The round's text as the chosen seat saw it, without its meta-prompt (the
    /// round's task for pairs written before that was kept): what public exports show.
    /// Filtered on a training run (of leaf layout 3), the text as the run's own agent
    /// saw it, the prompt the run trained the pair under.
    pub prompt: String,
    /// The exact prompt the chosen policy saw, meta-prompt included (filtered on a
    /// training run of layout 3: the one the run's agent saw). Private: exports publish
    /// only its sha256, and the text only when `public_prompt` is 1.
    pub exact_prompt: String,
    /// 1 when the owner of the agent whose prompt `exact_prompt` is opted its exact
    /// prompts into public exports.
    pub public_prompt: i64,
    /// The better completion.
    pub chosen: String,
    /// The worse completion.
    pub rejected: String,
    /// The agent that wrote the better one.
    pub chosen_agent_id: i64,
    /// Its version row.
    pub chosen_agent_version_id: i64,
    /// The agent that wrote the worse one.
    pub rejected_agent_id: i64,
    /// Its version row.
    pub rejected_agent_version_id: i64,
    /// Score margin.
    pub margin: f64,
    /// Share of judges that agreed, in [0, 1].
    pub judge_agreement: f64,
    /// Time, ms.
    pub created_at: i64,
    /// The settled result root of the pair's match (what a proof-of-learning results
    /// root commits to), once the match is settled.
    pub match_result_root: Option<String>,
    /// The pair's 0-based position in the training order of the run filtered on.
    pub training_position: Option<i64>,
    /// Why the better answer stopped (`end_of_turn`, `stop_sequence`, `length`, …).
    pub chosen_finish: String,
    /// Why the worse answer stopped.
    pub rejected_finish: String,
}

impl Store {
    /// Up to `limit` pairs matching `filter` with id above `after`, in id order.
    pub async fn export_pairs_page(
        &self,
        filter: &PairFilter,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ExportPair>> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT p.id, p.match_id, p.round_id, r.round_index, s.slug AS space,
                    CASE WHEN own.id IS NOT NULL AND own.task_prompt <> '' THEN own.task_prompt
                         WHEN p.task_prompt = '' THEN r.task ELSE p.task_prompt END AS prompt,
                    COALESCE(own.prompt, p.prompt) AS exact_prompt,
                    CASE WHEN own.id = rr.id AND own.id <> cr.id THEN ra.public_prompt
                         ELSE ca.public_prompt END AS public_prompt,
                    p.chosen, p.rejected, cv.agent_id AS chosen_agent_id,
                    p.chosen_agent_version_id, rv.agent_id AS rejected_agent_id,
                    p.rejected_agent_version_id, p.margin, p.judge_agreement, p.created_at,
                    ms.result_root AS match_result_root, t.position AS training_position,
                    cr.finish_reason AS chosen_finish, rr.finish_reason AS rejected_finish
             FROM preference_pairs p
             JOIN rounds r ON r.id = p.round_id
             JOIN spaces s ON s.id = p.space_id
             JOIN agent_versions cv ON cv.id = p.chosen_agent_version_id
             JOIN agents ca ON ca.id = cv.agent_id
             JOIN agent_versions rv ON rv.id = p.rejected_agent_version_id
             JOIN agents ra ON ra.id = rv.agent_id
             JOIN responses cr ON cr.id = p.chosen_response_id
             JOIN responses rr ON rr.id = p.rejected_response_id
             LEFT JOIN match_settlements ms ON ms.match_id = p.match_id
             LEFT JOIN training_run_pairs t ON t.pair_id = p.id AND t.training_run_id = $9
             LEFT JOIN training_runs tr ON tr.id = t.training_run_id AND tr.pair_leaf >= 3
             LEFT JOIN responses own ON own.id = CASE WHEN cv.agent_id = tr.agent_id
                                                      THEN cr.id ELSE rr.id END
                                    AND tr.id IS NOT NULL
             WHERE p.id > $1
               AND ($9 IS NULL OR t.training_run_id IS NOT NULL)
               AND ($2 IS NULL OR p.space_id = $2)
               AND ($3 IS NULL OR cv.agent_id = $3 OR rv.agent_id = $3)
               AND ($4 IS NULL OR p.created_at >= $4)
               AND ($5 IS NULL OR p.created_at < $5)
               AND ($6 IS NULL OR p.margin >= $6)
               AND ($7 IS NULL OR p.judge_agreement >= $7)
               AND ($10 = 0 OR (cr.finish_reason NOT IN ('length', 'context_full')
                                AND rr.finish_reason NOT IN ('length', 'context_full')))
             ORDER BY p.id
             LIMIT $8",
            )
            .bind(after)
            .bind(filter.space_id)
            .bind(filter.agent_id)
            .bind(filter.since_ms)
            .bind(filter.until_ms)
            .bind(filter.min_margin)
            .bind(filter.min_agreement)
            .bind(limit)
            .bind(filter.training_run_id)
            .bind(i64::from(filter.complete_only))
            .fetch_all(pool)
            .await
        })?)
    }
}

/// How many pairs one Space has under a filter, and their mean judge agreement.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct PairCount {
    /// The Space's slug.
    pub space: String,
    /// Pairs.
    pub pairs: i64,
    /// Mean judge agreement of those pairs.
    pub mean_agreement: f64,
}

impl Store {
    /// Pairs per Space that [`Store::export_pairs_page`] would export under `filter`
    /// (Spaces with none left out), in slug order.
    pub async fn export_pair_counts(&self, filter: &PairFilter) -> Result<Vec<PairCount>> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT s.slug AS space, COUNT(*) AS pairs,
                        CAST(AVG(p.judge_agreement) AS DOUBLE PRECISION) AS mean_agreement
             FROM preference_pairs p
             JOIN spaces s ON s.id = p.space_id
             JOIN agent_versions cv ON cv.id = p.chosen_agent_version_id
             JOIN agent_versions rv ON rv.id = p.rejected_agent_version_id
             JOIN responses cr ON cr.id = p.chosen_response_id
             JOIN responses rr ON rr.id = p.rejected_response_id
             LEFT JOIN training_run_pairs t ON t.pair_id = p.id AND t.training_run_id = $7
             WHERE ($7 IS NULL OR t.training_run_id IS NOT NULL)
               AND ($1 IS NULL OR p.space_id = $1)
               AND ($2 IS NULL OR cv.agent_id = $2 OR rv.agent_id = $2)
               AND ($3 IS NULL OR p.created_at >= $3)
               AND ($4 IS NULL OR p.created_at < $4)
               AND ($5 IS NULL OR p.margin >= $5)
               AND ($6 IS NULL OR p.judge_agreement >= $6)
               AND ($8 = 0 OR (cr.finish_reason NOT IN ('length', 'context_full')
                                AND rr.finish_reason NOT IN ('length', 'context_full')))
             GROUP BY s.slug
             ORDER BY s.slug",
            )
            .bind(filter.space_id)
            .bind(filter.agent_id)
            .bind(filter.since_ms)
            .bind(filter.until_ms)
            .bind(filter.min_margin)
            .bind(filter.min_agreement)
            .bind(filter.training_run_id)
            .bind(i64::from(filter.complete_only))
            .fetch_all(pool)
            .await
        })?)
    }
}
