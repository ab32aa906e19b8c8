//! Head-to-head evaluation of an adapter against its parent, shared by the regression
//! gate every training run passes before its version is played (issue 21, item 9) and
//! by `rlfc bench learning`: answers decoded by the runtime engine, judged two seats
//! at a time by the Space's judge panel, counted as wins, draws and losses with a 95%
//! Wilson interval on the win rate.
//!
//! **The gate.** A run's new adapter and its parent answer the same held-out tasks
//! (task texts that none of the run's pairs came from) under the agent's own
//! meta-prompt and sampling settings, with the same seed on both sides, so that only
//! the adapter differs; seats alternate between tasks. The new version *loses
//! significantly* when the upper end of its win rate's interval (draws left out) is
//! below one half. Such a version is kept in the lineage, with its record on chain,
//! but is not played: the agent plays on with its parent's adapter.

use std::collections::HashMap;
use std::sync::Arc;

use agents::{ChatTokenizer, Model, SamplingParams};
use arena::engine::{Engine, EngineOutput, GenRequest};
use arena::judging::RoundJudge;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spaces::{Rulebook, Task};

use super::{LearningError, Result};
use crate::play::SpaceSlot;
use crate::runtime::{AdapterLibrary, RuntimeEngine};

/// A proportion with its 95% Wilson interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proportion {
    /// Successes.
    pub successes: usize,
    /// Trials.
    pub trials: usize,
    /// successes / trials (0 when there are no trials).
    pub rate: f64,
    /// The 95% Wilson score interval.
    pub ci95: [f64; 2],
}

impl Proportion {
    /// `successes` of `trials` with its Wilson interval.
    pub fn new(successes: usize, trials: usize) -> Proportion {
        let (lo, hi) = wilson(successes, trials);
        Proportion {
            successes,
            trials,
            rate: if trials == 0 {
                0.0
            } else {
                successes as f64 / trials as f64
            },
            ci95: [lo, hi],
        }
    }
}

/// The 95% Wilson score interval of `k` successes in `n` trials ((0, 1) when n = 0).
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    const Z: f64 = 1.959_963_984_540_054;
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = Z * Z;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = Z / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// Head-to-head results of one side against the frozen parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadToHead {
    /// Matches the candidate scored higher.
    pub wins: usize,
    /// Matches with equal scores.
    pub draws: usize,
    /// Matches the parent scored higher.
    pub losses: usize,
    /// Wins among decisive matches, with its interval.
    pub win_rate: Proportion,
}

impl HeadToHead {
    pub fn from_outcomes(outcomes: &[std::cmp::Ordering]) -> HeadToHead {
        use std::cmp::Ordering::*;
        let wins = outcomes.iter().filter(|o| **o == Greater).count();
        let losses = outcomes.iter().filter(|o| **o == Less).count();
        HeadToHead {
            wins,
            draws: outcomes.len() - wins - losses,
            losses,
            win_rate: Proportion::new(wins, wins + losses),
        }
    }
}

/// One finished generation.
pub struct Generated {
    /// The answer.
    pub text: String,
    /// The prompt as the model saw it.
    pub prompt: String,
}

/// Runs `requests` through the engine, at most `batch` at once, results in order.
pub fn generate(
    engine: &mut RuntimeEngine,
    requests: Vec<GenRequest>,
    batch: usize,
) -> Result<Vec<Generated>> {
    let total = requests.len();
    let mut queue = requests.into_iter().enumerate();
    let mut slot_of: HashMap<u64, usize> = HashMap::new();
    let mut out: Vec<Option<Generated>> = (0..total).map(|_| None).collect();
    let mut done = 0;
    while done < total {
        while engine.live() < batch.max(1) {
            let Some((i, r)) = queue.next() else { break };
            let ticket = engine
                .submit(r)
                .map_err(|e| LearningError::Invalid(e.to_string()))?;
            slot_of.insert(ticket, i);
        }
        for o in engine
            .step()
            .map_err(|e| LearningError::Invalid(e.to_string()))?
        {
            if let EngineOutput::Done {
                ticket,
                text,
                prompt,
                ..
            } = o
            {
                out[slot_of[&ticket]] = Some(Generated { text, prompt });
                done += 1;
            }
        }
    }
    Ok(out
        .into_iter()
        .map(|g| g.expect("every request finished"))
        .collect())
}

/// Whether an answer passes every hard rule, and its share of rules passed.
pub fn rules(book: &Rulebook, task: &Task, answer: &str) -> (bool, f64) {
    let outcomes = spaces::verify(book, task, answer);
    (
        !spaces::hard_failed(&outcomes),
        spaces::pass_rate(&outcomes),
    )
}

/// One judged two-seat round, ranked by the rule matches use
/// ([`judges::ranking::order`]): an answer that keeps the hard rules beats one that
/// breaks them, and two answers in the same group compare by their standing (a
/// broken answer's by its closeness to the rules). `swap` seats the opponent first.
pub fn head_to_head(
    judge: &dyn RoundJudge,
    book: &Rulebook,
    task: &Task,
    candidate: &str,
    opponent: &str,
    swap: bool,
) -> Result<std::cmp::Ordering> {
    let seats = if swap {
        [opponent, candidate]
    } else {
        [candidate, opponent]
    };
    let checks: Vec<(bool, f64)> = seats
        .iter()
        .map(|a| {
            let outcomes = spaces::verify(book, task, a);
            (
                spaces::hard_failed(&outcomes),
                spaces::hard_grade(&outcomes),
            )
        })
        .collect();
    let hard: Vec<bool> = checks.iter().map(|c| c.0).collect();
    let mut verdicts = judge
        .judge(book, task, &seats, &hard)
        .map_err(|e| LearningError::Invalid(format!("judging: {e}")))?;
    judges::ranking::set_grades(&mut verdicts, &checks);
    let (c, o) = if swap { (1, 0) } else { (0, 1) };
    Ok(judges::ranking::order(&verdicts[c], &verdicts[o]))
}

/// What the gate needs beside the trainer's model: the judge panel and each Space's
/// rulebook, by Space id.
#[derive(Clone)]
pub struct Gate {
    judge: Arc<dyn RoundJudge>,
    books: HashMap<i64, Arc<Rulebook>>,
}

impl Gate {
    /// A gate judging with `judge` on the Spaces in `spaces`.
    pub fn new(judge: Arc<dyn RoundJudge>, spaces: &[SpaceSlot]) -> Gate {
        Gate {
            judge,
            books: spaces
                .iter()
                .map(|s| (s.space.id, s.rulebook.clone()))
                .collect(),
        }
    }

    /// The rulebook of a Space, if the gate knows it.
    pub(crate) fn book(&self, space_id: i64) -> Option<&Arc<Rulebook>> {
        self.books.get(&space_id)
    }

    /// The judge panel.
    pub(crate) fn judge(&self) -> &dyn RoundJudge {
        self.judge.as_ref()
    }
}

/// What one gate evaluation plays.
#[derive(Debug, Clone)]
pub struct GatePlan {
    /// The Spaces to draw tasks from, in turn.
    pub books: Vec<Arc<Rulebook>>,
    /// Head-to-head matches to play (split over the Spaces in turn).
    pub matches: usize,
    /// The agent's meta-prompt.
    pub system_prompt: String,
    /// The agent's sampling settings.
    pub sampling: SamplingParams,
    /// The parent's adapter (`None`: the bare base model).
    pub parent: Option<String>,
    /// The new adapter.
    pub candidate: String,
    /// Prompts the run trained on: a task whose text appears in one is not held out.
    pub trained_prompts: Vec<String>,
    /// Seeds the task draw and the sampling (the same for a run, so a re-run agrees).
    pub seed: u64,
    /// Sequences decoded at once.
    pub batch: usize,
}

/// What the gate found: the new adapter against its parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The Spaces the tasks came from (slugs).
    pub spaces: Vec<String>,
    /// Held-out tasks played (one match each).
    pub matches: usize,
    /// The new adapter's results: wins, draws, losses, and its win rate among
    /// decisive matches with the 95% Wilson interval.
    pub result: HeadToHead,
    /// The new version lost significantly (the interval lies wholly below one half)
    /// and is not played.
    pub held_back: bool,
}

impl Evaluation {
    /// One sentence for people: the record and the decision.
    pub fn summary(&self) -> String {
        let r = &self.result;
        let pct = |x: f64| format!("{:.0}%", x * 100.0);
        let rate = if r.win_rate.trials == 0 {
            "no decisive match".to_string()
        } else {
            format!(
                "win rate {} (95% interval {} to {})",
                pct(r.win_rate.rate),
                pct(r.win_rate.ci95[0]),
                pct(r.win_rate.ci95[1])
            )
        };
        let verdict = if self.held_back {
            "held back: it lost to its parent significantly, so the agent plays on with the parent's adapter"
        } else {
            "played: it did not lose to its parent significantly"
        };
        format!(
            "{} wins, {} draws, {} losses against its parent on {} held-out tasks in {}; {rate}; {verdict}",
            r.wins,
            r.draws,
            r.losses,
            self.matches,
            self.spaces.join(", ")
        )
    }
}

/// The gate's seed for a training run.
pub(crate) fn gate_seed(training_run_id: i64) -> u64 {
    let d = Sha256::digest(format!("rlfc gate {training_run_id}").as_bytes());
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

/// Plays the new adapter against its parent on held-out tasks and decides whether it
/// lost significantly (see the module documentation). Runs on the calling thread.
pub fn evaluate_against_parent(
    model: &Arc<Model>,
    tokenizer: &Arc<ChatTokenizer>,
    adapters: &Arc<AdapterLibrary>,
    judge: &dyn RoundJudge,
    plan: &GatePlan,
) -> Result<Evaluation> {
    if plan.books.is_empty() {
        return Err(LearningError::Invalid(
            "the gate needs at least one Space to draw tasks from".into(),
        ));
    }
    // Held-out tasks, the Spaces in turn; a Space whose every text was trained on
    // gives none after a bounded search.
    let mut tasks: Vec<(Arc<Rulebook>, Task, u64)> = Vec::with_capacity(plan.matches);
    let mut exhausted = vec![false; plan.books.len()];
    let mut draw = plan.seed;
    let mut i = 0usize;
    while tasks.len() < plan.matches && exhausted.iter().any(|e| !e) {
        let b = i % plan.books.len();
        i += 1;
        if exhausted[b] {
            continue;
        }
        let book = &plan.books[b];
        let mut found = None;
        for _ in 0..64 {
            draw = draw.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let task = book.task(draw, 0);
            let text = book.round_task_text(&task, 0, 0, &[]);
            if !plan.trained_prompts.iter().any(|p| p.contains(&text)) {
                found = Some(task);
                break;
            }
        }
        match found {
            Some(task) => tasks.push((book.clone(), task, draw)),
            None => exhausted[b] = true,
        }
    }
    let mut engine = RuntimeEngine::new(model.clone(), tokenizer.clone(), adapters.clone());
    let request = |book: &Rulebook, task: &Task, seed: u64, adapter: Option<String>| GenRequest {
        system: plan.system_prompt.clone(),
        user: book.round_task_text(task, 0, 0, &[]),
        sampling: plan.sampling.clone().capped(book.max_new_tokens),
        seed,
        adapter_hash: adapter,
        base_model: String::new(),
        max_new_tokens: book.max_new_tokens,
    };
    let mut requests = Vec::with_capacity(tasks.len() * 2);
    for (book, task, seed) in &tasks {
        requests.push(request(book, task, *seed, Some(plan.candidate.clone())));
        requests.push(request(book, task, *seed, plan.parent.clone()));
    }
    let answers = generate(&mut engine, requests, plan.batch)?;
    let mut outcomes = Vec::with_capacity(tasks.len());
    for (k, ((book, task, _), two)) in tasks.iter().zip(answers.chunks(2)).enumerate() {
        outcomes.push(head_to_head(
            judge,
            book,
            task,
            &two[0].text,
            &two[1].text,
            k % 2 == 1,
        )?);
    }
    let result = HeadToHead::from_outcomes(&outcomes);
    let held_back = result.win_rate.trials > 0 && result.win_rate.ci95[1] < 0.5;
    let mut spaces: Vec<String> = Vec::new();
    for (book, _, _) in &tasks {
        if !spaces.contains(&book.slug) {
            spaces.push(book.slug.clone());
        }
    }
    Ok(Evaluation {
        spaces,
        matches: tasks.len(),
        result,
        held_back,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_published_values() {
        // 8 of 10: the textbook interval is (0.490, 0.943).
        let (lo, hi) = wilson(8, 10);
        assert!(
            (lo - 0.4902).abs() < 1e-3 && (hi - 0.9433).abs() < 1e-3,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(0, 20);
        assert!(lo == 0.0 && (hi - 0.1611).abs() < 1e-3, "{hi}");
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }

    #[test]
    fn draws_are_kept_out_of_the_win_rate() {
        use std::cmp::Ordering::*;
        let h = HeadToHead::from_outcomes(&[Greater, Greater, Equal, Less]);
        assert_eq!((h.wins, h.draws, h.losses), (2, 1, 1));
        assert_eq!((h.win_rate.successes, h.win_rate.trials), (2, 3));
    }

    #[test]
    fn the_summary_states_the_record_and_the_decision() {
        use std::cmp::Ordering::*;
        let mut outcomes = vec![Less; 9];
        outcomes.extend([Greater, Equal]);
        let result = HeadToHead::from_outcomes(&outcomes);
        assert!(result.win_rate.ci95[1] < 0.5, "{result:?}");
        let e = Evaluation {
            spaces: vec!["haiku".into()],
            matches: 11,
            result,
            held_back: true,
        };
        let s = e.summary();
        assert!(
            s.starts_with("1 wins, 1 draws, 9 losses against its parent on 11 held-out tasks in haiku; win rate 10%"),
            "{s}"
        );
        assert!(s.contains("held back"), "{s}");
    }
}
