//! `rlfc bench learning`: does training actually help? One agent plays a Space whose
//! rules give a verifiable preference, learns from self-play pairs judged by those
//! rules over several DPO updates, and then the trained agent meets its frozen parent
//! on held-out tasks.
//!
//! Everything real: the SmolLM2 weights, the match engine ([`RuntimeEngine`], the same
//! batched decoder, chat template, sampling and adapters-by-hash the match world
//! drives), the Space's rule verifiers, the DPO trainer, and the Space's judge panel
//! for the head-to-head matches, ranked as a match ranks a round (an answer that keeps
//! the hard rules beats one that breaks them; two broken answers compare by closeness).
//!
//! - **Pairs:** for each training task the current policy samples `candidates`
//!   answers; the best answer that passes every hard rule is chosen, the worst that
//!   fails one is rejected. Update `u` trains from the adapter of update `u - 1` (the
//!   frozen parent is the DPO reference) on pairs sampled from that parent: on-policy,
//!   iterative DPO.
//! - **Held out:** a task text is held out when its sha256 starts with a byte divisible
//!   by 4 (about a quarter of the Space's texts); training never sees those texts, and
//!   the evaluation uses only them, with sampling seeds of their own.
//! - **Evaluation:** per held-out task, three answers: the parent with seed `a`, the
//!   parent with seed `b`, the trained agent with seed `a`. "Before" is the parent's
//!   `a` answer against the parent's `b` answer (the control: the same model on both
//!   sides); "after" is the trained `a` answer against the same `b` answer. Seats
//!   alternate between tasks. The rule-pass rate is the share of `a` answers that pass
//!   every hard rule, parent (before) and trained (after).
//! - **Intervals:** Wilson score intervals at 95%. A win rate counts decisive matches
//!   (equal scores, e.g. both answers breaking a hard rule, are draws and reported
//!   apart). A gain is called significant when the after interval lies wholly above
//!   the before interval (conservative).

use std::sync::Arc;
use std::time::Instant;

use agents::dpo::{DpoConfig, DpoPair, train_dpo};
use agents::{ChatTokenizer, Model};
use serde::Serialize;
use sha2::{Digest, Sha256};
use spaces::{Rulebook, Task};

use arena::engine::GenRequest;
use arena::judging::RoundJudge;
pub use platform::learning::evaluate::{HeadToHead, Proportion, wilson};
use platform::learning::evaluate::{generate, head_to_head, rules};
use platform::learning::{LearningError, Result};
use platform::runtime::{AdapterLibrary, RuntimeEngine};

/// The agent that learns: the demo's "Poet" meta-prompt and sampling settings.
pub const BENCH_SYSTEM_PROMPT: &str =
    "You love vivid images and rhythm, but you always follow the requested format exactly.";

/// What the benchmark does and with which settings.
#[derive(Debug, Clone, Serialize)]
pub struct LearningBenchConfig {
    /// DPO updates, each from the previous one's adapter.
    pub updates: usize,
    /// Preference pairs per update.
    pub pairs_per_update: usize,
    /// Answers sampled per training task to cut a pair from.
    pub candidates: usize,
    /// Head-to-head matches before and after (held-out tasks).
    pub eval_matches: usize,
    /// Sequences decoded at once.
    pub batch: usize,
    /// The agent's sampling settings (stored JSON, as on an agent version).
    pub sampling: serde_json::Value,
    /// The DPO settings of every update (`max_steps` is per update).
    pub dpo: DpoConfig,
}

/// One DPO update.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateReport {
    /// 1-based.
    pub update: usize,
    /// Training tasks sampled to find the pairs.
    pub tasks_sampled: usize,
    /// Pairs found (at most `pairs_per_update`).
    pub pairs: usize,
    /// Share of the sampled answers that passed every hard rule (the policy trained
    /// from, on training tasks).
    pub sampled_pass_rate: f64,
    /// Loss of the first and the last step.
    pub loss_first_last: [f64; 2],
    /// Reward accuracy of the last step.
    pub reward_accuracy_last: f64,
    /// Reward margin of the last step.
    pub reward_margin_last: f64,
    /// The new adapter's hash.
    pub adapter_hash: String,
    /// Seconds sampling pairs and training.
    pub seconds_sampling: f64,
    /// Seconds in the trainer.
    pub seconds_training: f64,
}

/// What the benchmark found.
#[derive(Debug, Clone, Serialize)]
pub struct LearningBenchReport {
    /// The Space.
    pub space: String,
    /// The agent's meta-prompt.
    pub system_prompt: String,
    /// The settings.
    pub config: LearningBenchConfig,
    /// Each update.
    pub updates: Vec<UpdateReport>,
    /// Distinct held-out task texts among the evaluation tasks.
    pub held_out_task_texts: usize,
    /// The parent against itself (the control).
    pub win_rate_before: HeadToHead,
    /// The trained agent against the parent.
    pub win_rate_after: HeadToHead,
    /// The parent's answers passing every hard rule.
    pub rule_pass_before: Proportion,
    /// The trained agent's answers passing every hard rule.
    pub rule_pass_after: Proportion,
    /// The after interval of the win rate lies wholly above the before interval.
    pub win_gain_significant: bool,
    /// The after interval of the rule-pass rate lies wholly above the before interval.
    pub rule_pass_gain_significant: bool,
    /// Seconds in the evaluation (decoding and judging).
    pub seconds_evaluation: f64,
    /// Seconds in all.
    pub seconds_total: f64,
}

/// Whether a task text is held out of training (about a quarter of the texts).
pub fn held_out(task_text: &str) -> bool {
    Sha256::digest(task_text.as_bytes())[0] % 4 == 0
}

/// The benchmark: see the module documentation.
pub fn run_learning_bench(
    model: &Arc<Model>,
    tokenizer: &Arc<ChatTokenizer>,
    judge: &dyn RoundJudge,
    book: &Arc<Rulebook>,
    adapters: &Arc<AdapterLibrary>,
    cfg: &LearningBenchConfig,
) -> Result<LearningBenchReport> {
    for (name, v) in [
        ("updates", cfg.updates),
        ("pairs", cfg.pairs_per_update),
        ("eval_matches", cfg.eval_matches),
        ("batch", cfg.batch),
    ] {
        if !(1..=10_000).contains(&v) {
            return Err(LearningError::Invalid(format!(
                "{name} {v} is out of range, expected 1 to 10000"
            )));
        }
    }
    if !(2..=32).contains(&cfg.candidates) {
        return Err(LearningError::Invalid(format!(
            "candidates {} is out of range, expected 2 to 32",
            cfg.candidates
        )));
    }
    if book.rules.iter().all(|r| !r.hard) {
        return Err(LearningError::Invalid(format!(
            "space {} has no hard rule, so no verifiable preference",
            book.slug
        )));
    }
    cfg.dpo.validate()?;
    let sampling =
        agents::SamplingParams::from_stored(&cfg.sampling).map_err(LearningError::Invalid)?;
    let started = Instant::now();
    let mut engine = RuntimeEngine::new(model.clone(), tokenizer.clone(), adapters.clone());
    let request = |task: &Task, seed: u64, adapter: &Option<String>| GenRequest {
        system: BENCH_SYSTEM_PROMPT.to_string(),
        user: book.round_task_text(task, 0, 0, &[]),
        sampling: sampling.clone(),
        seed,
        adapter_hash: adapter.clone(),
        base_model: String::new(),
        max_new_tokens: book.max_new_tokens,
    };

    // Training: iterative DPO on self-play pairs judged by the rules.
    let mut current: Option<String> = None;
    let mut task_seed = 0u64;
    let mut updates = Vec::new();
    // Tasks decoded per wave: enough to fill the batch with their candidates.
    let tasks_per_wave = (cfg.batch / cfg.candidates).max(1);
    for update in 1..=cfg.updates {
        let t0 = Instant::now();
        let mut pairs: Vec<DpoPair> = Vec::new();
        let (mut sampled, mut sampled_pass, mut tasks_sampled) = (0usize, 0usize, 0usize);
        // Give up on finding pairs after this many tasks (a policy that always or
        // never passes yields none).
        let max_tasks = cfg.pairs_per_update * 8;
        while pairs.len() < cfg.pairs_per_update && tasks_sampled < max_tasks {
            let mut tasks = Vec::new();
            while tasks.len() < tasks_per_wave {
                task_seed += 1;
                let task = book.task(task_seed, 0);
                if !held_out(&book.round_task_text(&task, 0, 0, &[])) {
                    tasks.push((task_seed, task));
                }
            }
            let requests: Vec<GenRequest> = tasks
                .iter()
                .flat_map(|(s, t)| {
                    (0..cfg.candidates as u64)
                        .map(|j| request(t, s * 1000 + j + update as u64 * 100, &current))
                        .collect::<Vec<_>>()
                })
                .collect();
            let answers = generate(&mut engine, requests, cfg.batch)?;
            for ((_, task), group) in tasks.iter().zip(answers.chunks(cfg.candidates)) {
                tasks_sampled += 1;
                let judged: Vec<(bool, f64)> =
                    group.iter().map(|g| rules(book, task, &g.text)).collect();
                sampled += judged.len();
                sampled_pass += judged.iter().filter(|j| j.0).count();
                let best = (0..group.len())
                    .filter(|&i| judged[i].0)
                    .max_by(|&a, &b| judged[a].1.total_cmp(&judged[b].1).then(b.cmp(&a)));
                let worst = (0..group.len())
                    .filter(|&i| !judged[i].0)
                    .min_by(|&a, &b| judged[a].1.total_cmp(&judged[b].1).then(a.cmp(&b)));
                if let (Some(c), Some(r)) = (best, worst)
                    && pairs.len() < cfg.pairs_per_update
                {
                    pairs.push(DpoPair {
                        prompt: group[c].prompt.clone(),
                        chosen: group[c].text.clone(),
                        rejected: group[r].text.clone(),
                        ..DpoPair::default()
                    });
                }
            }
        }
        if pairs.is_empty() {
            return Err(LearningError::Invalid(format!(
                "update {update}: no pair in {tasks_sampled} tasks ({sampled_pass} of \
                 {sampled} answers passed the hard rules): the policy always or never passes"
            )));
        }
        let seconds_sampling = t0.elapsed().as_secs_f64();
        let parent = match &current {
            Some(h) => Some(
                adapters
                    .get(h, model.config())
                    .map_err(LearningError::Invalid)?,
            ),
            None => None,
        };
        let t1 = Instant::now();
        let mut steps = Vec::new();
        let outcome = train_dpo(model, tokenizer, parent.as_deref(), &pairs, &cfg.dpo, |s| {
            steps.push(s.clone())
        })?;
        let seconds_training = t1.elapsed().as_secs_f64();
        let hash = adapters.save(&outcome.adapter, model.config(), None)?;
        let (first, last) = (steps.first(), steps.last());
        updates.push(UpdateReport {
            update,
            tasks_sampled,
            pairs: pairs.len(),
            sampled_pass_rate: sampled_pass as f64 / sampled.max(1) as f64,
            loss_first_last: [
                first.map_or(f64::NAN, |s| s.loss),
                last.map_or(f64::NAN, |s| s.loss),
            ],
            reward_accuracy_last: last.map_or(f64::NAN, |s| s.reward_accuracy),
            reward_margin_last: last.map_or(f64::NAN, |s| s.reward_margin),
            adapter_hash: hash.clone(),
            seconds_sampling,
            seconds_training,
        });
        tracing::info!(
            update,
            pairs = pairs.len(),
            loss = ?updates.last().map(|u| u.loss_first_last),
            "DPO update done"
        );
        current = Some(hash);
    }

    // Evaluation on held-out task texts.
    let t2 = Instant::now();
    let mut eval_tasks = Vec::new();
    let mut seed = 1_000_000u64;
    while eval_tasks.len() < cfg.eval_matches {
        seed += 1;
        let task = book.task(seed, 0);
        if held_out(&book.round_task_text(&task, 0, 0, &[])) {
            eval_tasks.push((seed, task));
        }
    }
    let texts: std::collections::BTreeSet<String> = eval_tasks
        .iter()
        .map(|(_, t)| book.round_task_text(t, 0, 0, &[]))
        .collect();
    let mut requests = Vec::new();
    for (s, t) in &eval_tasks {
        requests.push(request(t, s * 10 + 1, &None)); // parent, seed a
        requests.push(request(t, s * 10 + 2, &None)); // parent, seed b
        requests.push(request(t, s * 10 + 1, &current)); // trained, seed a
    }
    let answers = generate(&mut engine, requests, cfg.batch)?;
    let (mut before, mut after) = (Vec::new(), Vec::new());
    let (mut pass_before, mut pass_after) = (0usize, 0usize);
    for (i, ((_, task), three)) in eval_tasks.iter().zip(answers.chunks(3)).enumerate() {
        let (parent_a, parent_b, trained_a) = (&three[0].text, &three[1].text, &three[2].text);
        pass_before += usize::from(rules(book, task, parent_a).0);
        pass_after += usize::from(rules(book, task, trained_a).0);
        for (candidate, out) in [(parent_a, &mut before), (trained_a, &mut after)] {
            out.push(head_to_head(
                judge,
                book,
                task,
                candidate,
                parent_b,
                i % 2 == 1,
            )?);
        }
    }
    let n = eval_tasks.len();
    let win_rate_before = HeadToHead::from_outcomes(&before);
    let win_rate_after = HeadToHead::from_outcomes(&after);
    let rule_pass_before = Proportion::new(pass_before, n);
    let rule_pass_after = Proportion::new(pass_after, n);
    Ok(LearningBenchReport {
        space: book.slug.clone(),
        system_prompt: BENCH_SYSTEM_PROMPT.to_string(),
        config: cfg.clone(),
        updates,
        held_out_task_texts: texts.len(),
        win_gain_significant: win_rate_after.win_rate.ci95[0] > win_rate_before.win_rate.ci95[1],
        rule_pass_gain_significant: rule_pass_after.ci95[0] > rule_pass_before.ci95[1],
        win_rate_before,
        win_rate_after,
        rule_pass_before,
        rule_pass_after,
        seconds_evaluation: t2.elapsed().as_secs_f64(),
        seconds_total: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_a_quarter_of_texts_are_held_out() {
        let held = (0..1000).filter(|i| held_out(&format!("task {i}"))).count();
        assert!((180..320).contains(&held), "{held}");
    }
}
