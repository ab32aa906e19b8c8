//! Weng-Lin (Plackett-Luce) ratings, one ladder per Space.
//!
//! Elo only rates pairs; Weng-Lin takes one full ranking per match, ties included.
//! The leaderboard orders by the conservative estimate mu - 3 sigma, and sigma widens
//! when an agent's adapter changes, because a new version is a partly new player.

use skillratings::MultiTeamOutcome;
use skillratings::weng_lin::{WengLinConfig, WengLinRating, weng_lin_multi_team};

/// A skill estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Skill {
    /// Mean.
    pub mu: f64,
    /// Uncertainty.
    pub sigma: f64,
}

impl Default for Skill {
    fn default() -> Skill {
        let r = WengLinRating::new();
        Skill {
            mu: r.rating,
            sigma: r.uncertainty,
        }
    }
}

impl Skill {
    /// mu - 3 sigma, the cautious rating leaderboards rank by (computed there in SQL).
    #[cfg(test)]
    pub(crate) fn conservative(&self) -> f64 {
        self.mu - 3.0 * self.sigma
    }

    /// Sigma widened for a new adapter version: sigma' = sqrt(sigma^2 + tau^2),
    /// capped at the prior's sigma so a retrained agent never looks newer than new.
    pub fn widened(&self, tau: f64) -> Skill {
        let prior = Skill::default().sigma;
        Skill {
            mu: self.mu,
            sigma: (self.sigma.powi(2) + tau.powi(2))
                .sqrt()
                .min(prior.max(self.sigma)),
        }
    }
}

/// How much sigma widens when an agent's adapter changes.
pub const ADAPTER_CHANGE_TAU: f64 = 25.0 / 12.0;

/// Rates one match. `places` holds each player's place (1 = best); equal places are
/// ties. Returns the new skills in the same order.
pub(crate) fn rate_match(players: &[Skill], places: &[usize]) -> Vec<Skill> {
    assert_eq!(players.len(), places.len(), "one place per player");
    let teams: Vec<[WengLinRating; 1]> = players
        .iter()
        .map(|s| {
            [WengLinRating {
                rating: s.mu,
                uncertainty: s.sigma,
            }]
        })
        .collect();
    let input: Vec<(&[WengLinRating], MultiTeamOutcome)> = teams
        .iter()
        .zip(places)
        .map(|(t, &p)| (&t[..], MultiTeamOutcome::new(p)))
        .collect();
    weng_lin_multi_team(&input, &WengLinConfig::new())
        .into_iter()
        .map(|team| Skill {
            mu: team[0].rating,
            sigma: team[0].uncertainty,
        })
        .collect()
}

/// One played match for [`bootstrap_rank_ranges`]: each seat's agent and place.
pub type PlayedPlaces = Vec<(i64, usize)>;

/// Rank ranges by a bootstrap over matches: `replicates` times, draw as many matches
/// as were played, with replacement, keep them in the order they were played, replay
/// the ratings from the prior over them, draw each agent's skill from N(μ, σ²) of
/// that replay (so one match, which leaves σ wide, says little) and rank `agents` by
/// it (an agent with no match in a draw keeps the prior). An agent's range is the
/// 2.5th to 97.5th percentile of its ranks: where it would stand, 95 times in 100,
/// had the matches gone a little differently. Deterministic in `seed`. Adapter changes
/// (which widen σ) are left out: the range reflects match results only.
pub fn bootstrap_rank_ranges(
    matches: &[PlayedPlaces],
    agents: &[i64],
    replicates: usize,
    seed: u64,
) -> std::collections::HashMap<i64, (usize, usize)> {
    use std::collections::HashMap;
    if matches.is_empty() {
        return agents.iter().map(|a| (*a, (1, agents.len()))).collect();
    }
    let index: HashMap<i64, usize> = agents.iter().enumerate().map(|(i, a)| (*a, i)).collect();
    let mut ranks: Vec<Vec<usize>> = vec![Vec::with_capacity(replicates); agents.len()];
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    // splitmix64: a small, fixed generator, so the ranges never change between runs.
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let m = matches.len();
    let mut draw = vec![0usize; m];
    for _ in 0..replicates {
        for d in draw.iter_mut() {
            *d = (next() % m.max(1) as u64) as usize;
        }
        draw.sort_unstable();
        let mut skills = vec![Skill::default(); agents.len()];
        for &i in &draw {
            let seats: Vec<(usize, usize)> = matches[i]
                .iter()
                .filter_map(|(a, place)| index.get(a).map(|&k| (k, *place)))
                .collect();
            if seats.len() < 2 {
                continue;
            }
            let players: Vec<Skill> = seats.iter().map(|(k, _)| skills[*k]).collect();
            let places: Vec<usize> = seats.iter().map(|(_, p)| *p).collect();
            for ((k, _), new) in seats.iter().zip(rate_match(&players, &places)) {
                skills[*k] = new;
            }
        }
        // A normal draw per agent (Box-Muller on two uniforms in (0, 1]).
        let drawn: Vec<f64> = skills
            .iter()
            .map(|s| {
                let u1 = ((next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
                let u2 = ((next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                s.mu + s.sigma * z
            })
            .collect();
        let mut order: Vec<usize> = (0..agents.len()).collect();
        order.sort_by(|a, b| {
            drawn[*b]
                .total_cmp(&drawn[*a])
                .then(agents[*a].cmp(&agents[*b]))
        });
        for (rank, k) in order.into_iter().enumerate() {
            ranks[k].push(rank + 1);
        }
    }
    agents
        .iter()
        .zip(ranks)
        .map(|(a, mut r)| {
            if r.is_empty() {
                return (*a, (1, agents.len()));
            }
            r.sort_unstable();
            let at = |q: f64| r[((r.len() - 1) as f64 * q).round() as usize];
            (*a, (at(0.025), at(0.975)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clear order over many matches gives tight ranges at the right ranks; an agent
    /// that won and lost evenly against another shares its range.
    #[test]
    fn bootstrap_ranges_follow_the_evidence() {
        // Agent 1 always beats 2, which always beats 3; 4 and 5 split their matches.
        let mut matches: Vec<PlayedPlaces> = Vec::new();
        for i in 0..60 {
            matches.push(vec![(1, 1), (2, 2), (3, 3)]);
            if i % 2 == 0 {
                matches.push(vec![(4, 1), (5, 2)]);
            } else {
                matches.push(vec![(5, 1), (4, 2)]);
            }
        }
        let ranges = bootstrap_rank_ranges(&matches, &[1, 2, 3], 100, 7);
        assert_eq!(ranges[&1], (1, 1), "{ranges:?}");
        assert_eq!(ranges[&2], (2, 2), "{ranges:?}");
        assert_eq!(ranges[&3], (3, 3), "{ranges:?}");
        let even = bootstrap_rank_ranges(&matches, &[4, 5], 200, 7);
        assert_eq!(even[&4], (1, 2), "{even:?}");
        assert_eq!(even[&5], (1, 2), "{even:?}");
        assert_eq!(
            bootstrap_rank_ranges(&matches, &[4, 5], 200, 7),
            even,
            "deterministic"
        );
        // No matches at all: every agent could be anywhere.
        let none = bootstrap_rank_ranges(&[], &[1, 2, 3], 10, 1);
        assert_eq!(none[&2], (1, 3));
    }

    #[test]
    fn winner_gains_loser_loses_and_sigma_shrinks() {
        let new = rate_match(&[Skill::default(); 4], &[1, 2, 3, 4]);
        assert!(new[0].mu > new[1].mu && new[1].mu > new[2].mu && new[2].mu > new[3].mu);
        assert!(new.iter().all(|s| s.sigma < Skill::default().sigma));
    }

    #[test]
    fn ties_move_equal_players_equally() {
        let new = rate_match(&[Skill::default(); 3], &[1, 1, 3]);
        assert!((new[0].mu - new[1].mu).abs() < 1e-12);
        assert!(new[0].mu > new[2].mu);
    }

    #[test]
    fn widening_raises_sigma_within_the_prior() {
        let s = Skill {
            mu: 30.0,
            sigma: 2.0,
        };
        let w = s.widened(ADAPTER_CHANGE_TAU);
        assert!(w.sigma > s.sigma && w.mu == s.mu);
        assert!(w.conservative() < s.conservative());
        let fresh = Skill::default().widened(ADAPTER_CHANGE_TAU);
        assert_eq!(fresh.sigma, Skill::default().sigma);
    }
}
