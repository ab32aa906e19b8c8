//! Turning a played match into what is paid, rated, learned and stored: the payout
//! split, the preference pairs of each round, the new ratings, the result root, and
//! the one-transaction [`store::MatchRecord`].

use store::{
    MatchRecord, PairRecord, Payout, ResponseRecord, RoundRecordIn, ScoreRecord, Settlement, Wei,
};

use crate::ratings::{Skill, rate_match};
use crate::types::MatchResult;
use judges::ResponseVerdict;

/// The (chosen, rejected) pairs of one round whose margin ([`judges::pair_margin`])
/// clears `min_margin`, best margins first, each answer pair at most once. Two answers
/// that both broke a hard rule pair up by their grades, so a round where every answer
/// failed still teaches the near miss over the far one.
pub(crate) fn round_pairs(verdicts: &[ResponseVerdict], min_margin: f64) -> Vec<PairRecord> {
    let mut pairs = Vec::new();
    for (i, a) in verdicts.iter().enumerate() {
        for (j, b) in verdicts.iter().enumerate() {
            let margin = judges::pair_margin(a, b);
            if i != j && margin >= min_margin && margin > 0.0 {
                pairs.push(PairRecord {
                    chosen: i,
                    rejected: j,
                    margin,
                    judge_agreement: judges::agreement(a, b),
                });
            }
        }
    }
    pairs.sort_by(|x, y| {
        y.margin
            .total_cmp(&x.margin)
            .then(x.chosen.cmp(&y.chosen))
            .then(x.rejected.cmp(&y.rejected))
    });
    pairs
}

/// The leaves of a match's result root: one per seat, binding the match, the entry,
/// its place, its payout and the result hash.
pub(crate) fn result_leaves(
    match_id: i64,
    entry_ids: &[i64],
    places: &[usize],
    amounts: &[u128],
    result_hash: &str,
) -> Vec<[u8; 32]> {
    entry_ids
        .iter()
        .zip(places)
        .zip(amounts)
        .map(|((entry, place), amount)| {
            let data = format!("rlfc-result:{match_id}:{entry}:{place}:{amount}:{result_hash}");
            chain::merkle::leaf_hash(data.as_bytes()).0
        })
        .collect()
}

/// What a played match pays and writes.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchBook {
    /// The record to write in one transaction.
    pub record: MatchRecord,
    /// Payout per seat (wei), in seat order.
    pub amounts: Vec<u128>,
    /// The treasury's share (wei).
    pub treasury: u128,
    /// The result root (0x-hex).
    pub result_root: String,
    /// New skills per seat.
    pub skills: Vec<Skill>,
}

/// Seat facts the book needs beyond the result.
#[derive(Debug, Clone, PartialEq)]
pub struct SeatFacts {
    /// The entry.
    pub entry_id: i64,
    /// The agent.
    pub agent_id: i64,
    /// The fee it paid (wei).
    pub fee: u128,
    /// Its skill before the match.
    pub skill: Skill,
}

/// Prices, pairs and rates a played match for `rulebook`.
pub fn book_match(
    match_id: i64,
    space_id: i64,
    rulebook: &spaces::Rulebook,
    seats: &[SeatFacts],
    result: &MatchResult,
) -> MatchBook {
    let pot: u128 = seats.iter().map(|s| s.fee).sum();
    let split = rulebook.payouts(pot, &result.totals);
    let result_hash = result.hash();
    let entry_ids: Vec<i64> = seats.iter().map(|s| s.entry_id).collect();
    let leaves = result_leaves(
        match_id,
        &entry_ids,
        &result.places,
        &split.amounts,
        &result_hash,
    );
    let root = chain::merkle::root(&leaves.iter().map(|l| (*l).into()).collect::<Vec<_>>());
    let skills = rate_match(
        &seats.iter().map(|s| s.skill).collect::<Vec<_>>(),
        &result.places,
    );
    let rounds = result
        .rounds
        .iter()
        .map(|r| {
            let verdicts: Vec<ResponseVerdict> =
                r.seats.iter().map(|s| s.verdict.clone()).collect();
            RoundRecordIn {
                round_index: i64::from(r.round),
                task: r.task.clone(),
                responses: r
                    .seats
                    .iter()
                    .map(|s| ResponseRecord {
                        entry_id: s.entry_id,
                        prompt: s.prompt.clone(),
                        task_prompt: s.task_prompt.clone(),
                        text: s.text.clone(),
                        tokens: i64::from(s.tokens),
                        finish_reason: s.finish.clone(),
                        scores: s
                            .verdict
                            .scores
                            .iter()
                            .map(|l| ScoreRecord {
                                judge: l.judge.name.clone(),
                                model_hash: l.judge.model_hash.clone(),
                                template_version: l.judge.template_version.clone(),
                                score: l.score.clamp(0.0, 1.0),
                                rationale: l.rationale.clone(),
                            })
                            .collect(),
                    })
                    .collect(),
                pairs: round_pairs(&verdicts, rulebook.pair_margin),
            }
        })
        .collect();
    let result_root = format!("{root}");
    MatchBook {
        record: MatchRecord {
            space_id,
            rounds,
            settlement: Settlement {
                match_id,
                payouts: seats
                    .iter()
                    .enumerate()
                    .map(|(i, s)| Payout {
                        entry_id: s.entry_id,
                        place: result.places[i] as i64,
                        amount: Wei(split.amounts[i]),
                    })
                    .collect(),
                treasury: Wei(split.treasury),
                result_root: result_root.clone(),
                result_hash,
                chain_tx_id: None,
            },
            ratings: seats
                .iter()
                .zip(&skills)
                .map(|(s, k)| {
                    store::RatingUpdate::change(
                        s.agent_id,
                        (s.skill.mu, s.skill.sigma),
                        (k.mu, k.sigma),
                    )
                })
                .collect(),
            base_models: seats
                .iter()
                .zip(&result.base_models)
                .map(|(s, sha)| (s.entry_id, sha.clone()))
                .collect(),
        },
        amounts: split.amounts,
        treasury: split.treasury,
        result_root,
        skills,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use judges::{JudgeId, Score};

    fn verdict(scores: &[f64], hard: bool) -> ResponseVerdict {
        let judge = JudgeId {
            name: "j".into(),
            model_hash: String::new(),
            template_version: "t".into(),
        };
        ResponseVerdict::from_scores(
            scores.iter().sum::<f64>() / scores.len() as f64,
            hard,
            scores
                .iter()
                .map(|&score| Score::new(judge.clone(), score, ""))
                .collect(),
        )
    }

    #[test]
    fn pairs_clear_the_margin_and_hard_failures_lose() {
        let v = [
            verdict(&[0.9, 0.7], false),
            verdict(&[0.8, 0.8], false),
            verdict(&[1.0, 1.0], true),
        ];
        let pairs = round_pairs(&v, 0.1);
        let idx: Vec<(usize, usize)> = pairs.iter().map(|p| (p.chosen, p.rejected)).collect();
        assert_eq!(idx, vec![(0, 2), (1, 2)]);
        // A hard-failed answer with perfect judge scores: the judges disagree with the order.
        assert_eq!(pairs[0].judge_agreement, 0.0);
        assert_eq!(judges::agreement(&v[0], &v[1]), 0.5);
        assert!(round_pairs(&v, 0.9).is_empty());
    }

    #[test]
    fn a_round_where_every_answer_failed_pairs_by_grade() {
        let graded = |scores: &[f64], grade: f64| {
            let mut v = verdict(scores, true);
            v.grade = Some(grade);
            v
        };
        let v = [
            graded(&[0.8, 0.6], 0.98),
            graded(&[0.9, 0.7], 0.1),
            graded(&[0.7, 0.7], 0.9),
        ];
        let pairs = round_pairs(&v, 0.2);
        let idx: Vec<(usize, usize)> = pairs.iter().map(|p| (p.chosen, p.rejected)).collect();
        assert_eq!(idx, vec![(0, 1), (2, 1)]);
        assert!((pairs[0].margin - (0.98 * 0.85 - 0.1 * 0.9)).abs() < 1e-12);
        // The judges scored the far miss higher: they disagree with the order.
        assert_eq!(pairs[0].judge_agreement, 0.0);
        // Without grades, failures tie and nothing pairs, as before.
        let ungraded: Vec<ResponseVerdict> = [0.7, 0.7, 0.7]
            .iter()
            .map(|&s| verdict(&[s], true))
            .collect();
        assert!(round_pairs(&ungraded, 0.01).is_empty());
    }
}
