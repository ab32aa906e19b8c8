//! Matchmaking: groups queued entries of one (Space, fee tier) into matches of close
//! rating. The allowed rating gap starts narrow and widens the longer the oldest
//! entry waits, so nobody waits forever and early matches stay fair.

use std::collections::{HashMap, HashSet};

/// An entry waiting in a queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    /// The entry.
    pub entry_id: i64,
    /// Its agent (one agent never plays twice in one match).
    pub agent_id: i64,
    /// The agent's owner (one owner holds at most the policy's seats per match).
    pub owner_id: i64,
    /// The agent's skill estimate on this Space's ladder (mu).
    pub rating: f64,
    /// Seconds it has waited.
    pub waited_secs: f64,
}

/// How matches are formed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchmakingPolicy {
    /// Players per match.
    pub players: usize,
    /// The most seats one owner may hold in a match.
    pub seats_per_owner: usize,
    /// Allowed rating gap for a fresh entry.
    pub base_gap: f64,
    /// Extra gap per second the anchor has waited.
    pub widen_per_sec: f64,
}

impl MatchmakingPolicy {
    /// The gap allowed for an anchor that has waited `secs`.
    pub(crate) fn allowed_gap(&self, secs: f64) -> f64 {
        self.base_gap + self.widen_per_sec * secs.max(0.0)
    }
}

/// Forms as many matches as the queue allows. The longest-waiting entry anchors
/// each match and takes the closest-rated distinct agents within its allowed gap.
/// The result is deterministic for a given queue.
pub fn form_matches(queue: &[Queued], policy: &MatchmakingPolicy) -> Vec<Vec<i64>> {
    assert!(policy.players >= 2, "a match needs at least two players");
    let mut order: Vec<&Queued> = queue.iter().collect();
    order.sort_by(|a, b| {
        b.waited_secs
            .total_cmp(&a.waited_secs)
            .then(a.entry_id.cmp(&b.entry_id))
    });
    let mut used: HashSet<i64> = HashSet::new();
    let mut matches = Vec::new();
    for anchor in &order {
        if used.contains(&anchor.entry_id) {
            continue;
        }
        let gap = policy.allowed_gap(anchor.waited_secs);
        let mut candidates: Vec<&Queued> = order
            .iter()
            .copied()
            .filter(|q| {
                q.entry_id != anchor.entry_id
                    && !used.contains(&q.entry_id)
                    && q.agent_id != anchor.agent_id
                    && (q.rating - anchor.rating).abs() <= gap
            })
            .collect();
        candidates.sort_by(|a, b| {
            (a.rating - anchor.rating)
                .abs()
                .total_cmp(&(b.rating - anchor.rating).abs())
                .then(a.entry_id.cmp(&b.entry_id))
        });
        let mut group = vec![anchor.entry_id];
        let mut agents = HashSet::from([anchor.agent_id]);
        let mut owners: HashMap<i64, usize> = HashMap::from([(anchor.owner_id, 1)]);
        let per_owner = policy.seats_per_owner.max(1);
        for c in candidates {
            if group.len() == policy.players {
                break;
            }
            let held = owners.get(&c.owner_id).copied().unwrap_or(0);
            if held < per_owner && agents.insert(c.agent_id) {
                owners.insert(c.owner_id, held + 1);
                group.push(c.entry_id);
            }
        }
        if group.len() == policy.players {
            used.extend(group.iter().copied());
            group.sort_unstable();
            matches.push(group);
        }
    }
    matches
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(entry_id: i64, agent_id: i64, rating: f64, waited_secs: f64) -> Queued {
        Queued {
            entry_id,
            agent_id,
            owner_id: agent_id,
            rating,
            waited_secs,
        }
    }

    const POLICY: MatchmakingPolicy = MatchmakingPolicy {
        players: 2,
        seats_per_owner: 1,
        base_gap: 2.0,
        widen_per_sec: 1.0,
    };

    #[test]
    fn one_owner_never_fills_a_match() {
        // Owner 1 queues three agents, owner 2 one: a 4-player match with at most 3
        // seats per owner forms; with 2 per owner it cannot (only 3 seats fit).
        let mut queue = vec![
            q(1, 11, 25.0, 3.0),
            q(2, 12, 25.0, 2.0),
            q(3, 13, 25.0, 1.0),
        ];
        for e in &mut queue {
            e.owner_id = 1;
        }
        let four = |seats_per_owner| MatchmakingPolicy {
            players: 4,
            seats_per_owner,
            base_gap: 5.0,
            widen_per_sec: 0.0,
        };
        let mut solo = queue.clone();
        solo.push(Queued {
            owner_id: 1,
            ..q(4, 14, 25.0, 0.0)
        });
        assert!(
            form_matches(&solo, &four(3)).is_empty(),
            "all four seats one owner's"
        );
        assert_eq!(form_matches(&solo, &four(4)), vec![vec![1, 2, 3, 4]]);
        queue.push(q(4, 21, 25.0, 0.0));
        assert_eq!(form_matches(&queue, &four(3)), vec![vec![1, 2, 3, 4]]);
        assert!(form_matches(&queue, &four(2)).is_empty());
    }

    #[test]
    fn close_ratings_pair_up() {
        let queue = [
            q(1, 1, 25.0, 0.0),
            q(2, 2, 40.0, 0.0),
            q(3, 3, 26.0, 0.0),
            q(4, 4, 41.0, 0.0),
        ];
        assert_eq!(form_matches(&queue, &POLICY), vec![vec![1, 3], vec![2, 4]]);
    }

    #[test]
    fn the_gap_widens_with_waiting() {
        let fresh = [q(1, 1, 20.0, 0.0), q(2, 2, 30.0, 0.0)];
        assert!(form_matches(&fresh, &POLICY).is_empty());
        let waited = [q(1, 1, 20.0, 9.0), q(2, 2, 30.0, 0.0)];
        assert_eq!(form_matches(&waited, &POLICY), vec![vec![1, 2]]);
    }

    #[test]
    fn one_agent_never_plays_itself() {
        let queue = [q(1, 7, 25.0, 5.0), q(2, 7, 25.0, 4.0), q(3, 8, 25.0, 0.0)];
        assert_eq!(form_matches(&queue, &POLICY), vec![vec![1, 3]]);
    }

    proptest! {
        #[test]
        fn matches_are_disjoint_full_and_within_gap(
            raw in proptest::collection::vec((0i64..6, 0.0f64..50.0, 0.0f64..30.0), 0..40),
            players in 2usize..6,
        ) {
            let queue: Vec<Queued> = raw
                .iter()
                .enumerate()
                .map(|(i, &(agent, rating, waited))| Queued {
                    owner_id: agent % 3,
                    ..q(i as i64, agent, rating, waited)
                })
                .collect();
            let seats_per_owner = players - 1;
            let policy = MatchmakingPolicy { players, seats_per_owner, base_gap: 3.0, widen_per_sec: 0.5 };
            let matches = form_matches(&queue, &policy);
            let mut seen = HashSet::new();
            for m in &matches {
                prop_assert_eq!(m.len(), players);
                let entries: Vec<&Queued> = m.iter().map(|id| &queue[*id as usize]).collect();
                let agents: HashSet<i64> = entries.iter().map(|e| e.agent_id).collect();
                prop_assert_eq!(agents.len(), players);
                for owner in 0..3 {
                    let held = entries.iter().filter(|e| e.owner_id == owner).count();
                    prop_assert!(held <= seats_per_owner, "owner {} holds {} seats", owner, held);
                }
                let longest = entries.iter().map(|e| e.waited_secs).fold(0.0, f64::max);
                let (lo, hi) = entries.iter().fold((f64::MAX, f64::MIN), |(lo, hi), e| (lo.min(e.rating), hi.max(e.rating)));
                prop_assert!(hi - lo <= 2.0 * policy.allowed_gap(longest) + 1e-9);
                for id in m {
                    prop_assert!(seen.insert(*id), "entry {} in two matches", id);
                }
            }
        }
    }
}
