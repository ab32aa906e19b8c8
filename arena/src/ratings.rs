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
    /// The leaderboard key: mu - 3 sigma.
    pub fn conservative(&self) -> f64 {
        self.mu - 3.0 * self.sigma
    }

    /// A 99.7% interval for the skill, shown next to a rank.
    pub fn interval(&self) -> (f64, f64) {
        (self.mu - 3.0 * self.sigma, self.mu + 3.0 * self.sigma)
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
pub fn rate_match(players: &[Skill], places: &[usize]) -> Vec<Skill> {
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

/// Places (1-based, ties share the better place) from scores, higher is better.
pub fn places_from_scores(scores: &[f64]) -> Vec<usize> {
    scores
        .iter()
        .map(|s| 1 + scores.iter().filter(|o| *o > s).count())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn places_share_ties() {
        assert_eq!(places_from_scores(&[0.5, 0.9, 0.5, 0.1]), vec![2, 1, 2, 4]);
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
