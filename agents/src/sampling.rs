//! Seeded token sampling: temperature, top-k, top-p, repetition penalty. The same
//! seed and the same logits give the same token on every run.

use crate::error::{AgentError, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Most tokens an answer may ask for (a Space may cap it lower).
pub const MAX_NEW_TOKENS: usize = 1024;
/// Most stop strings.
pub const MAX_STOP: usize = 4;

/// Sampling and stopping settings of one generation: the one definition the API, the
/// store (as JSON), the match world and the runtime share. Missing keys take their
/// defaults; unknown keys are refused. As command-line flags (`--temperature`, …,
/// `--stop` repeatable) the defaults are the same.
#[derive(
    Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema, clap::Args,
)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingParams {
    /// Softmax temperature in [0, 2]; 0 is greedy (argmax).
    #[arg(long, default_value_t = SamplingParams::default().temperature)]
    pub temperature: f32,
    /// Nucleus probability in (0, 1]: keep the smallest set of tokens whose probability
    /// reaches it.
    #[arg(long, default_value_t = SamplingParams::default().top_p)]
    pub top_p: f32,
    /// Keep the k likeliest tokens, 0 to 200 (0 disables).
    #[arg(long, default_value_t = SamplingParams::default().top_k)]
    pub top_k: usize,
    /// Repetition penalty in [1, 2]: positive logits of recently seen tokens are
    /// divided by it (negative ones multiplied).
    #[arg(long, default_value_t = SamplingParams::default().repetition_penalty)]
    pub repetition_penalty: f32,
    /// Tokens the penalty looks back over, 0 to 512.
    #[arg(long, default_value_t = SamplingParams::default().repeat_last_n)]
    pub repeat_last_n: usize,
    /// Most tokens per answer, 1 to 1024.
    #[arg(long, default_value_t = SamplingParams::default().max_new_tokens)]
    pub max_new_tokens: usize,
    /// Up to 4 stop strings of 1 to 32 characters; generation stops when the text
    /// contains one, and the text is cut there.
    #[arg(long = "stop")]
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

/// A sampling setting outside its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfRange {
    /// The setting, as `sampling.NAME`.
    pub field: &'static str,
    /// Its range, as a sentence fragment (`must be within [0, 2]`).
    pub rule: &'static str,
}

impl std::fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.field, self.rule)
    }
}

impl SamplingParams {
    /// Every range check, first failure first.
    pub fn check(&self) -> std::result::Result<(), OutOfRange> {
        let need = |ok: bool, field, rule| {
            if ok {
                Ok(())
            } else {
                Err(OutOfRange { field, rule })
            }
        };
        let t = self.temperature;
        need(
            t.is_finite() && (0.0..=2.0).contains(&t),
            "sampling.temperature",
            "must be within [0, 2]",
        )?;
        let p = self.top_p;
        need(
            p.is_finite() && p > 0.0 && p <= 1.0,
            "sampling.top_p",
            "must be within (0, 1]",
        )?;
        need(
            self.top_k <= 200,
            "sampling.top_k",
            "must be within [0, 200]",
        )?;
        let r = self.repetition_penalty;
        need(
            r.is_finite() && (1.0..=2.0).contains(&r),
            "sampling.repetition_penalty",
            "must be within [1, 2]",
        )?;
        need(
            self.repeat_last_n <= 512,
            "sampling.repeat_last_n",
            "must be within [0, 512]",
        )?;
        need(
            (1..=MAX_NEW_TOKENS).contains(&self.max_new_tokens),
            "sampling.max_new_tokens",
            "must be within [1, 1024]",
        )?;
        need(
            self.stop.len() <= MAX_STOP,
            "sampling.stop",
            "at most 4 stop strings",
        )?;
        need(
            self.stop
                .iter()
                .all(|s| (1..=32).contains(&s.chars().count())),
            "sampling.stop",
            "each stop string must be 1 to 32 characters",
        )
    }

    /// Checks that every setting is in range.
    pub fn validate(&self) -> Result<()> {
        self.check()
            .map_err(|e| AgentError::InvalidSampling(e.to_string()))
    }

    /// Settings stored as JSON (an agent version's), over the defaults: `null` is the
    /// defaults, unknown keys and bad values are errors that name the key.
    pub fn from_stored(stored: &serde_json::Value) -> std::result::Result<Self, String> {
        let params = match stored {
            serde_json::Value::Null => SamplingParams::default(),
            serde_json::Value::Object(map) => {
                let known = serde_json::to_value(SamplingParams::default()).expect("serializes");
                let known = known.as_object().expect("an object");
                if let Some(k) = map.keys().find(|k| !known.contains_key(*k)) {
                    return Err(format!(
                        "sampling.{k} is not a sampling setting (expected one of {})",
                        known.keys().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
                serde_json::from_value(stored.clone()).map_err(|e| format!("sampling: {e}"))?
            }
            other => return Err(format!("sampling must be a JSON object, not {other}")),
        };
        params.check().map_err(|e| e.to_string())?;
        Ok(params)
    }

    /// These settings with `max_new_tokens` capped (a Space's limit; at least 1).
    pub fn capped(mut self, cap: usize) -> Self {
        self.max_new_tokens = self.max_new_tokens.min(cap.max(1));
        self
    }
}

/// Draws tokens from logits with one seeded random stream.
#[derive(Debug, Clone)]
pub(crate) struct Sampler {
    params: SamplingParams,
    rng: StdRng,
}

impl Sampler {
    /// A sampler seeded with `seed`.
    pub(crate) fn new(params: SamplingParams, seed: u64) -> Result<Self> {
        params.validate()?;
        Ok(Self {
            params,
            rng: StdRng::seed_from_u64(seed),
        })
    }

    /// The settings.
    pub(crate) fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token from `logits`, given the tokens seen so far (`history`).
    pub(crate) fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
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
            // The top of the one range (1 to 2): 2.0 / 2 falls below 1.5.
            repetition_penalty: 2.0,
            ..Default::default()
        };
        let mut s = Sampler::new(params, 1).unwrap();
        assert_eq!(s.sample(&[0.1, 2.0, 1.5], &[]), 1);
        assert_eq!(s.sample(&[0.1, 2.0, 1.5], &[1]), 2);
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

    #[test]
    fn sampling_settings_merge_over_defaults_and_are_capped() {
        let sampling_params =
            |v: &serde_json::Value, cap| SamplingParams::from_stored(v).map(|p| p.capped(cap));
        let p = sampling_params(&serde_json::json!({"temperature": 0.2}), 32).unwrap();
        assert_eq!(p.temperature, 0.2);
        assert_eq!(p.max_new_tokens, 32);
        assert_eq!(p.top_k, SamplingParams::default().top_k);
        let err = sampling_params(&serde_json::json!({"temprature": 0.2}), 32).unwrap_err();
        assert!(err.contains("sampling.temprature"), "{err}");
        let err = sampling_params(&serde_json::json!({"top_p": 1.5}), 32).unwrap_err();
        assert!(err.contains("top_p"), "{err}");
        let err = sampling_params(&serde_json::json!([1]), 32).unwrap_err();
        assert!(err.contains("JSON object"), "{err}");
    }
}
