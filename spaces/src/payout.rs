//! Splitting a match pot among the players by a Space's payout rule.
//!
//! All arithmetic is integer wei (`u128`). The treasury first takes its rake; the rest
//! is shared by the rule. Rounding dust and any share that cannot be split evenly
//! between tied players goes to the treasury, so the split always sums exactly to the
//! pot and no player is ever favoured by input order.

/// How the pot (after the rake) is shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayoutRule {
    /// The best-ranked player takes everything (tied winners share it).
    WinnerTakesAll,
    /// Places 1..=k share by relative weights, e.g. `[60, 30, 10]`.
    TopK {
        /// Relative weight of each paid place, best first, non-increasing.
        weights: Vec<u32>,
    },
    /// Each player gets a share proportional to their score.
    Proportional,
}

/// A payout rule plus the treasury's cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutPolicy {
    /// How the players share the pot.
    pub rule: PayoutRule,
    /// The treasury's rake in basis points (0 to 10 000).
    pub rake_bps: u16,
}

/// The result of splitting a pot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutSplit {
    /// Wei paid to each player, indexed like the input scores.
    pub amounts: Vec<u128>,
    /// Each player's place, 1 = best; tied players share the best place of their group.
    pub places: Vec<u32>,
    /// Wei kept by the treasury: the rake plus rounding dust.
    pub treasury: u128,
}

impl PayoutSplit {
    /// Sum of all player amounts and the treasury; always equals the pot.
    pub fn total(&self) -> u128 {
        self.amounts.iter().sum::<u128>() + self.treasury
    }
}

/// Scores at most this fine are told apart by the proportional rule.
const SCORE_UNITS: f64 = 1_000_000.0;

/// `value * num / den` without overflow, for `num <= den` and `den` below 2⁶⁴.
fn mul_div(value: u128, num: u128, den: u128) -> u128 {
    debug_assert!(num <= den && den > 0);
    let (q, r) = (value / den, value % den);
    // q * num <= value, and r * num < den² < 2¹²⁸.
    q * num + r * num / den
}

/// Scores with NaN treated as the lowest possible score.
fn sortable(score: f64) -> f64 {
    if score.is_nan() {
        f64::NEG_INFINITY
    } else {
        score
    }
}

/// Groups of tied players, best group first; within a group, input order.
fn tie_groups(scores: &[f64]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| {
        sortable(scores[b])
            .total_cmp(&sortable(scores[a]))
            .then(a.cmp(&b))
    });
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for i in order {
        match groups.last_mut() {
            Some(group) if sortable(scores[group[0]]) == sortable(scores[i]) => group.push(i),
            _ => groups.push(vec![i]),
        }
    }
    groups
}

/// Splits `pot` wei among players with the given scores (higher is better).
///
/// A player whose hard rule failed should be given the lowest score by the caller.
/// With no players, everything goes to the treasury.
pub(crate) fn payouts(policy: &PayoutPolicy, pot: u128, scores: &[f64]) -> PayoutSplit {
    let n = scores.len();
    let groups = tie_groups(scores);
    let mut places = vec![0u32; n];
    let mut place = 1u32;
    for group in &groups {
        for &i in group {
            places[i] = place;
        }
        place += group.len() as u32;
    }
    let rake_bps = u128::from(policy.rake_bps.min(10_000));
    let rake = mul_div(pot, rake_bps, 10_000);
    let prize = pot - rake;
    let mut amounts = vec![0u128; n];
    if n > 0 {
        match &policy.rule {
            PayoutRule::WinnerTakesAll => share_group(&mut amounts, &groups[0], prize),
            PayoutRule::TopK { weights } => {
                let paid = weights.len().min(n);
                let total: u128 = weights[..paid].iter().map(|w| u128::from(*w)).sum();
                if total > 0 {
                    let mut next_place = 0usize;
                    for group in &groups {
                        let covered = next_place..(next_place + group.len()).min(paid);
                        let weight: u128 = weights
                            .get(covered)
                            .unwrap_or(&[])
                            .iter()
                            .map(|w| u128::from(*w))
                            .sum();
                        next_place += group.len();
                        share_group(&mut amounts, group, mul_div(prize, weight, total));
                    }
                }
            }
            PayoutRule::Proportional => {
                let units: Vec<u128> = scores
                    .iter()
                    .map(|s| {
                        if s.is_finite() && *s > 0.0 {
                            (s * SCORE_UNITS).round().min(1e12) as u128
                        } else {
                            0
                        }
                    })
                    .collect();
                let total: u128 = units.iter().sum();
                if total == 0 {
                    // Nobody earned anything: an even split is the only fair reading.
                    let all: Vec<usize> = (0..n).collect();
                    share_group(&mut amounts, &all, prize);
                } else {
                    for (amount, unit) in amounts.iter_mut().zip(&units) {
                        *amount = mul_div(prize, *unit, total);
                    }
                }
            }
        }
    }
    let paid: u128 = amounts.iter().sum();
    PayoutSplit {
        amounts,
        places,
        treasury: pot - paid,
    }
}

/// Gives each member of a tied group an equal share; the remainder stays unpaid (it
/// becomes treasury dust) so that input order never decides who gets an extra wei.
fn share_group(amounts: &mut [u128], group: &[usize], share: u128) {
    let each = share / group.len() as u128;
    for &i in group {
        amounts[i] += each;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(rule: PayoutRule, rake_bps: u16) -> PayoutPolicy {
        PayoutPolicy { rule, rake_bps }
    }

    #[test]
    fn winner_takes_all_with_rake() {
        let split = payouts(
            &policy(PayoutRule::WinnerTakesAll, 500),
            1000,
            &[0.2, 0.9, 0.5],
        );
        assert_eq!(split.amounts, vec![0, 950, 0]);
        assert_eq!(split.treasury, 50);
        assert_eq!(split.places, vec![3, 1, 2]);
    }

    #[test]
    fn tied_winners_share_and_dust_goes_to_treasury() {
        let split = payouts(
            &policy(PayoutRule::WinnerTakesAll, 0),
            1001,
            &[0.9, 0.9, 0.1],
        );
        assert_eq!(split.amounts, vec![500, 500, 0]);
        assert_eq!(split.treasury, 1);
        assert_eq!(split.places, vec![1, 1, 3]);
    }

    #[test]
    fn top_k_splits_by_weights_and_ties_pool_their_places() {
        let rule = PayoutRule::TopK {
            weights: vec![60, 30, 10],
        };
        let split = payouts(&policy(rule.clone(), 0), 1000, &[0.1, 0.8, 0.5, 0.9]);
        assert_eq!(split.amounts, vec![0, 300, 100, 600]);
        let tied = payouts(&policy(rule, 0), 1000, &[0.5, 0.9, 0.5, 0.5]);
        // Places 2, 3 and 4 are tied: they pool 30 + 10 + 0 = 40% and share it.
        assert_eq!(tied.amounts, vec![133, 600, 133, 133]);
        assert_eq!(tied.treasury, 1);
    }

    #[test]
    fn proportional_follows_scores_and_zero_scores_split_evenly() {
        let split = payouts(&policy(PayoutRule::Proportional, 1000), 1000, &[0.75, 0.25]);
        assert_eq!(split.amounts, vec![675, 225]);
        assert_eq!(split.treasury, 100);
        let none = payouts(
            &policy(PayoutRule::Proportional, 0),
            10,
            &[0.0, -1.0, f64::NAN],
        );
        assert_eq!(none.amounts, vec![3, 3, 3]);
        assert_eq!(none.treasury, 1);
    }

    #[test]
    fn nan_ranks_last_and_huge_pots_do_not_overflow() {
        let split = payouts(
            &policy(PayoutRule::WinnerTakesAll, 10_000),
            u128::MAX,
            &[f64::NAN, 0.0],
        );
        assert_eq!(split.places, vec![2, 1]);
        assert_eq!(split.treasury, u128::MAX);
        let split = payouts(
            &policy(PayoutRule::WinnerTakesAll, 1),
            u128::MAX,
            &[f64::NAN, 0.0],
        );
        assert_eq!(split.total(), u128::MAX);
        assert!(split.amounts[1] > u128::MAX / 10_000 * 9_998);
    }

    fn any_rule() -> impl Strategy<Value = PayoutRule> {
        prop_oneof![
            Just(PayoutRule::WinnerTakesAll),
            Just(PayoutRule::Proportional),
            proptest::collection::vec(1u32..1000, 1..8).prop_map(|mut weights| {
                weights.sort_unstable_by(|a, b| b.cmp(a));
                PayoutRule::TopK { weights }
            }),
        ]
    }

    fn any_score() -> impl Strategy<Value = f64> {
        // A few discrete values make ties common; arbitrary values cover the rest.
        prop_oneof![
            prop::sample::select(vec![0.0, 0.25, 0.5, 1.0]),
            -1.0f64..2.0,
            Just(f64::NAN),
        ]
    }

    proptest! {
        #[test]
        fn split_sums_exactly_to_the_pot(
            rule in any_rule(),
            rake in 0u16..=10_000,
            pot in prop_oneof![0u128..10_000, any::<u128>()],
            scores in proptest::collection::vec(any_score(), 0..8),
        ) {
            let policy = policy(rule, rake);
            let split = payouts(&policy, pot, &scores);
            prop_assert_eq!(split.total(), pot);
            prop_assert_eq!(split.amounts.len(), scores.len());
            prop_assert!(split.amounts.iter().all(|a| *a <= pot));
            prop_assert!(split.treasury >= mul_div(pot, u128::from(rake), 10_000));
            prop_assert_eq!(&split, &payouts(&policy, pot, &scores));
        }

        #[test]
        fn better_places_never_earn_less_and_ties_earn_the_same(
            rule in any_rule(),
            rake in 0u16..=10_000,
            pot in any::<u128>(),
            scores in proptest::collection::vec(any_score(), 1..8),
        ) {
            let split = payouts(&policy(rule, rake), pot, &scores);
            for i in 0..scores.len() {
                for j in 0..scores.len() {
                    if split.places[i] < split.places[j] {
                        prop_assert!(split.amounts[i] >= split.amounts[j]);
                    }
                    if split.places[i] == split.places[j] {
                        prop_assert_eq!(split.amounts[i], split.amounts[j]);
                    }
                }
            }
        }

        #[test]
        fn permuting_players_permutes_their_amounts(
            rule in any_rule(),
            pot in any::<u128>(),
            scores in proptest::collection::vec(any_score(), 1..8),
        ) {
            let policy = policy(rule, 250);
            let split = payouts(&policy, pot, &scores);
            let reversed: Vec<f64> = scores.iter().rev().copied().collect();
            let mut back = payouts(&policy, pot, &reversed).amounts;
            back.reverse();
            prop_assert_eq!(split.amounts, back);
        }

        #[test]
        fn winner_takes_all_pays_only_the_top_group(
            pot in any::<u128>(),
            scores in proptest::collection::vec(any_score(), 1..8),
        ) {
            let split = payouts(&policy(PayoutRule::WinnerTakesAll, 0), pot, &scores);
            for (amount, place) in split.amounts.iter().zip(&split.places) {
                if *place > 1 {
                    prop_assert_eq!(*amount, 0);
                }
            }
            prop_assert!(split.treasury < scores.len() as u128);
        }
    }
}
