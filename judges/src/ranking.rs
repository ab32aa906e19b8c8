//! The one ranking rule matches use, applied to the panel's verdicts on a round.
//!
//! An answer that kept the Space's hard rules ranks above every answer that broke one,
//! whatever the judges say; within each group the better standing wins. An answer's
//! standing is its combined score when it kept the rules; when it broke one, it is its
//! grade (how close it came to keeping them), which the judges' combined score can
//! lower by at most half: `grade × (1 + combined) / 2`. So a round where every answer
//! broke a hard rule (every number wrong, every haiku four lines long) still ranks its
//! answers and yields preference pairs: the near miss above the far one, and between
//! two equally near misses the one the judges prefer. The judges' agreement with a
//! pair ([`agreement`]) is here too: the one agreement rule stored pairs record.

use std::cmp::Ordering;

use crate::ResponseVerdict;

/// The share of the weakest kept answer's score that bounds a failed answer's round
/// score: a failed answer never scores as much as one that kept the rules.
pub(crate) const FAILED_SHARE: f64 = 0.1;

/// The standing of an answer within its group (kept or broken rules).
pub(crate) fn standing(v: &ResponseVerdict) -> f64 {
    if v.hard_failed {
        v.grade.unwrap_or(1.0) * (1.0 + v.combined) / 2.0
    } else {
        v.combined
    }
}

/// How `a` ranks against `b` in a round: kept rules first, then the standing.
pub fn order(a: &ResponseVerdict, b: &ResponseVerdict) -> Ordering {
    b.hard_failed
        .cmp(&a.hard_failed)
        .then(standing(a).total_cmp(&standing(b)))
}

/// Places (1 = best, ties share a place) under [`order`].
pub fn places(verdicts: &[ResponseVerdict]) -> Vec<usize> {
    verdicts
        .iter()
        .map(|v| {
            1 + verdicts
                .iter()
                .filter(|o| order(o, v) == Ordering::Greater)
                .count()
        })
        .collect()
}

/// The judges' agreement with a pair that prefers `a` to `b`: the share of judges
/// that order `a` over `b` (a judge that ties them counts half), 0 when the verdicts
/// carry no judges' scores or different numbers of them. This is what each stored
/// preference pair records as its `judge_agreement`.
pub fn agreement(a: &ResponseVerdict, b: &ResponseVerdict) -> f64 {
    if a.scores.is_empty() || a.scores.len() != b.scores.len() {
        return 0.0;
    }
    let votes: f64 = a
        .scores
        .iter()
        .zip(&b.scores)
        .map(|(x, y)| {
            if x.score > y.score {
                1.0
            } else if x.score == y.score {
                0.5
            } else {
                0.0
            }
        })
        .sum();
    votes / a.scores.len() as f64
}

/// The margin by which `a` beats `b` (negative when it loses): the difference of their
/// standings when both kept or both broke the rules, and `a`'s combined score when
/// only `b` broke them (a broken answer counts zero against a kept one).
pub fn pair_margin(a: &ResponseVerdict, b: &ResponseVerdict) -> f64 {
    match (a.hard_failed, b.hard_failed) {
        (false, true) => a.combined,
        (true, false) => -b.combined,
        _ => standing(a) - standing(b),
    }
}

/// Each answer's score in the round, what a match's totals (its places and payouts)
/// average: a kept answer's combined score; a failed answer's standing times
/// `FAILED_SHARE`, and never above that share of the weakest kept answer's score.
/// So failed answers earn a sliver that orders them among themselves, and in a round
/// where every answer failed the sliver is all there is to split.
pub fn round_scores(verdicts: &[ResponseVerdict]) -> Vec<f64> {
    let weakest_kept = verdicts
        .iter()
        .filter(|v| !v.hard_failed)
        .map(|v| v.combined)
        .min_by(f64::total_cmp);
    verdicts
        .iter()
        .map(|v| {
            if !v.hard_failed {
                return v.combined;
            }
            let own = standing(v);
            FAILED_SHARE * weakest_kept.map_or(own, |w| own.min(w))
        })
        .collect()
}

/// Writes each failed answer's grade from `(failed, grade)` checks in the same order
/// (what `RulesJudge::hard_checks` gives); kept answers keep `None`.
pub fn set_grades(verdicts: &mut [ResponseVerdict], checks: &[(bool, f64)]) {
    for (v, &(failed, grade)) in verdicts.iter_mut().zip(checks) {
        v.grade = (v.hard_failed && failed).then_some(grade);
    }
}

/// A match's places (1-based, ties share the better place) from its seats' scores over
/// the rounds (higher is better).
pub fn places_from_scores(scores: &[f64]) -> Vec<usize> {
    scores
        .iter()
        .map(|s| 1 + scores.iter().filter(|o| *o > s).count())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn match_places_share_ties() {
        assert_eq!(
            super::places_from_scores(&[0.5, 0.9, 0.5, 0.1]),
            vec![2, 1, 2, 4]
        );
    }

    use super::*;

    fn v(combined: f64, grade: Option<f64>) -> ResponseVerdict {
        let mut v = ResponseVerdict::from_scores(combined, grade.is_some(), Vec::new());
        v.grade = grade;
        v
    }

    #[test]
    fn kept_rules_rank_first_and_failures_rank_by_grade() {
        let round = [
            v(0.9, Some(0.2)),
            v(0.3, None),
            v(0.8, Some(0.9)),
            v(0.6, None),
            v(0.9, Some(0.7)),
        ];
        assert_eq!(places(&round), vec![5, 2, 3, 1, 4]);
        // A failure with no grade ranks by its combined score, as before grades.
        assert_eq!(places(&[v(0.5, None), v(0.2, None)]), vec![1, 2]);
        let mut ungraded = v(0.9, None);
        ungraded.hard_failed = true;
        assert_eq!(places(&[ungraded, v(0.1, None)]), vec![2, 1]);
        // Equally near misses: the judges decide, by at most half the standing.
        assert_eq!(places(&[v(0.3, Some(0.5)), v(0.9, Some(0.5))]), vec![2, 1]);
        assert_eq!(places(&[v(1.0, Some(0.4)), v(0.0, Some(0.9))]), vec![2, 1]);
    }

    #[test]
    fn margins_compare_within_a_group_and_count_failures_zero_against_kept() {
        let kept = v(0.4, None);
        let near = v(0.9, Some(0.9));
        let far = v(0.9, Some(0.1));
        assert_eq!(pair_margin(&kept, &near), 0.4);
        assert_eq!(pair_margin(&near, &kept), -0.4);
        assert!((pair_margin(&near, &far) - 0.76).abs() < 1e-12);
        assert!((pair_margin(&v(0.7, None), &kept) - 0.3).abs() < 1e-12);
    }

    #[test]
    fn round_scores_keep_failures_below_every_kept_answer() {
        let scores = round_scores(&[v(0.05, None), v(1.0, Some(0.95)), v(0.6, None)]);
        assert_eq!(scores[0], 0.05);
        assert_eq!(scores[2], 0.6);
        assert!(scores[1] > 0.0 && scores[1] < scores[0]);
        // Every answer failed: the scores order them by standing, in the same ratio.
        let all_failed = round_scores(&[v(0.8, Some(0.5)), v(0.8, Some(0.25)), v(0.8, Some(0.0))]);
        assert!((all_failed[0] / all_failed[1] - 2.0).abs() < 1e-9);
        assert_eq!(all_failed[2], 0.0);
    }

    #[test]
    fn grades_are_written_for_failed_answers_only() {
        let mut round = [v(0.5, None), v(0.5, None)];
        round[1].hard_failed = true;
        set_grades(&mut round, &[(false, 1.0), (true, 0.4)]);
        assert_eq!(round[0].grade, None);
        assert_eq!(round[1].grade, Some(0.4));
    }
}
