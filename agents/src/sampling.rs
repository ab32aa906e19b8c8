//! Seeded token sampling: temperature, top-k, top-p, repetition penalty. The same
//! seed and the same logits give the same token on every run.

use crate::error::{AgentError, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Sampling and stopping settings of one generation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingParams {
    /// Softmax temperature; 0 means greedy (argmax).
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches this.
    pub top_p: f32,
    /// Keep only the k most likely tokens; 0 disables.
    pub top_k: usize,
    /// Divide positive logits (multiply negative ones) of recently seen tokens by this.
    pub repetition_penalty: f32,
    /// How many recent tokens the repetition penalty looks at.
    pub repeat_last_n: usize,
    /// The most tokens to generate.
    pub max_new_tokens: usize,
    /// Generation stops when the text contains any of these; the match is cut off.
    pub stop: Vec<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.7,
            top_p: 0.9,
            top_k: 40,
            repetition_penalty: 1.1,
            repeat_last_n: 64,
            max_new_tokens: 256,
            stop: Vec::new(),
        }
    }
}

impl SamplingParams {
    /// Checks that every setting is in range.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(AgentError::InvalidSampling(m.to_string()));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad("temperature must be a finite number >= 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p must be in (0, 1]");
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad("repetition_penalty must be > 0");
        }
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens must be at least 1");
        }
        if self.stop.iter().any(|s| s.is_empty()) {
            return bad("stop sequences must not be empty");
        }
        Ok(())
    }
}

/// Draws tokens from logits with one seeded random stream.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
}

impl Sampler {
    /// A sampler seeded with `seed`.
    pub fn new(params: SamplingParams, seed: u64) -> Result<Self> {
        params.validate()?;
        Ok(Self {
            params,
            rng: StdRng::seed_from_u64(seed),
        })
    }

    /// The settings.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token from `logits`, given the tokens seen so far (`history`).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let p = &self.params;
        let mut logits = logits.to_vec();
        if p.repetition_penalty != 1.0 {
            let start = history.len().saturating_sub(p.repeat_last_n);
            let mut seen = history[start..].to_vec();
            seen.sort_unstable();
            seen.dedup();
            for t in seen {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l >= 0.0 {
                        *l / p.repetition_penalty
                    } else {
                        *l * p.repetition_penalty
                    };
                }
            }
        }
        if p.temperature == 0.0 {
            return argmax(&logits);
        }
        // Candidates sorted by logit, ties by id, so the order never depends on the sort.
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        idx.sort_unstable_by(|&a, &b| {
            logits[b as usize]
                .total_cmp(&logits[a as usize])
                .then(a.cmp(&b))
        });
        if p.top_k > 0 && p.top_k < idx.len() {
            idx.truncate(p.top_k);
        }
        let max = logits[idx[0] as usize];
        let mut probs: Vec<f32> = idx
            .iter()
            .map(|&i| ((logits[i as usize] - max) / p.temperature).exp())
            .collect();
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= total);
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            let mut keep = probs.len();
            for (i, pr) in probs.iter().enumerate() {
                acc += pr;
                if acc >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            idx.truncate(keep);
        }
        let total: f32 = probs.iter().sum();
        let mut u = self.rng.random::<f32>() * total;
        for (i, pr) in probs.iter().enumerate() {
            if u < *pr {
                return idx[i];
            }
            u -= pr;
        }
        *idx.last().expect("at least one candidate")
    }
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_max_and_penalty_applies() {
        let params = SamplingParams {
            temperature: 0.0,
            repetition_penalty: 4.0,
            ..Default::default()
        };
        let mut s = Sampler::new(params, 1).unwrap();
        assert_eq!(s.sample(&[0.1, 2.0, 1.0], &[]), 1);
        assert_eq!(s.sample(&[0.1, 2.0, 1.0], &[1]), 2);
    }

    #[test]
    fn same_seed_same_tokens_and_top_k_one_is_greedy() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let params = SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            ..Default::default()
        };
        let run = |seed| {
            let mut s = Sampler::new(params.clone(), seed).unwrap();
            (0..20).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let mut s = Sampler::new(SamplingParams { top_k: 1, ..params }, 3).unwrap();
        assert_eq!(s.sample(&logits, &[]), argmax(&logits));
    }

    #[test]
    fn rejects_bad_settings() {
        let p = SamplingParams {
            top_p: 0.0,
            ..Default::default()
        };
        assert!(Sampler::new(p, 0).is_err());
    }
}
