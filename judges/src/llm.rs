//! The LLM judge on the agents runtime (SmolLM2 by default, any llama/qwen2 GGUF).
//!
//! Scores never come from parsed text. Pointwise, the prompt ends where the judge's
//! answer starts and the score is the probability-weighted mean over the rating tokens
//! "1".."9" (softmax restricted to them), mapped to [0, 1]. Pairwise, the judge sees
//! both responses in both orders and the probability of "A" against "B" is read the
//! same way; the orders are averaged, and when they disagree the verdict is a tie.
//!
//! Responses are untrusted data: the template puts each between delimiters and tells
//! the judge to follow nothing inside them, and chat special tokens written in a
//! response are broken up so a response cannot close its own turn.
//!
//! Cost: the system prompt and rubric come first and their KV cache is kept between
//! calls (they are the same for every round of a Space); the task text is prefilled
//! once per round; then every response (or ordered pair) runs on a copy of that cache.
//! [`Judge::score_many`] does this for the rounds of many matches at once (different
//! tasks, rubrics and Spaces): one pass prefills every round's task, then the bodies of
//! every round share the batched passes. The runtime is bit-identical batched or alone
//! and whatever the prefill split, so a round scores the same bits judged alone (as a
//! replay judges it) or beside other matches, and [`Judge::score`] is simply a batch
//! of one.

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};

use agents::{ChatTokenizer, DeviceLm, KvCache, Model};
use candle_core::Device;
use sha2::{Digest, Sha256};

use crate::{Judge, JudgeError, JudgeId, Round, Score, Task};

/// Version of the pointwise prompt template; bump it whenever its text changes.
/// v2: the seat's role line before the response, and the earlier answers the seats
/// were shown after the task.
pub(crate) const POINTWISE_TEMPLATE_VERSION: &str = "llm-pointwise-v2";
/// Version of the pairwise prompt template; bump it whenever its text changes.
/// v2: each order's P("A") is calibrated against the round's content-free prior.
/// v3: the earlier answers the seats were shown follow the task.
pub(crate) const PAIRWISE_TEMPLATE_VERSION: &str = "llm-pairwise-v3";

/// The answer shown in both slots to read the judge's position prior for a task:
/// contextual calibration ("Calibrate Before Use", Zhao et al., ICML 2021, which uses
/// "N/A" as its content-free input).
const CONTENT_FREE: &str = "N/A";
/// Probabilities are clamped this far from 0 and 1 before taking logits.
const P_EPS: f64 = 1e-9;

/// The markers the templates put around responses. A response that contains one is
/// flagged by the injection screen (see `panel.rs`).
pub(crate) const DELIMITERS: [&str; 6] = [
    "<<<RESPONSE>>>",
    "<<<END RESPONSE>>>",
    "<<<RESPONSE A>>>",
    "<<<END RESPONSE A>>>",
    "<<<RESPONSE B>>>",
    "<<<END RESPONSE B>>>",
];

/// A prompt head's text and its KV cache.
type PrefilledHead = (String, Arc<KvCache>);

/// Which way the judge scores when used as a panel member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmMode {
    /// Each response rated alone on 1..9.
    Pointwise,
    /// Every pair compared in both orders; a response scores its mean preference.
    Pairwise,
}

/// The outcome of a pairwise comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preference {
    /// The first response is better in both orders.
    First,
    /// The second response is better in both orders.
    Second,
    /// The orders disagree (or the judge is exactly undecided).
    Tie,
}

/// A pairwise verdict, judged in both orders.
///
/// A small judge has a strong position bias (SmolLM2-135M says "A" for nearly any
/// pair), so each order's raw P("A") is read against the judge's prior for the same
/// task with no content to compare: P("A") when both slots hold `N/A`. An
/// order favours the first-shown response when its P("A") is above that prior; the
/// calibrated probability is `sigmoid(logit(p) - logit(prior))`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairVerdict {
    /// Calibrated P(first is better) shown as (first, second), then shown as
    /// (second, first).
    pub orders: [f64; 2],
    /// The raw P("A") read in each order (before calibration): the first-shown
    /// response's chance as the judge gave it.
    pub shown_first: [f64; 2],
    /// P("A") on the content-free pair: the judge's position prior for this task.
    pub prior: f64,
    /// The mean of the two orders: P(first is better) with position averaged out.
    pub p_first: f64,
    /// The verdict; a tie when the orders disagree.
    pub preference: Preference,
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(P_EPS, 1.0 - P_EPS);
    (p / (1.0 - p)).ln()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl PairVerdict {
    /// From the raw P("A") of each order and the content-free prior.
    fn calibrated(shown_first: [f64; 2], prior: f64) -> PairVerdict {
        let adjust = |p: f64| sigmoid(logit(p) - logit(prior));
        let mut v =
            PairVerdict::from_orders([adjust(shown_first[0]), 1.0 - adjust(shown_first[1])]);
        v.shown_first = shown_first;
        v.prior = prior;
        v
    }

    /// From P(first is better) in each order, uncalibrated (prior 0.5).
    fn from_orders(orders: [f64; 2]) -> PairVerdict {
        let preference = match (orders[0] > 0.5, orders[1] > 0.5) {
            (true, true) => Preference::First,
            _ if orders[0] < 0.5 && orders[1] < 0.5 => Preference::Second,
            _ => Preference::Tie,
        };
        PairVerdict {
            orders,
            shown_first: [orders[0], 1.0 - orders[1]],
            prior: 0.5,
            p_first: (orders[0] + orders[1]) / 2.0,
            preference,
        }
    }
}

/// An LLM judge. Cloning shares the loaded model.
#[derive(Clone)]
pub struct LlmJudge {
    model: Arc<Model>,
    tokenizer: Arc<ChatTokenizer>,
    model_hash: String,
    mode: LlmMode,
    rating_ids: [u32; 9],
    choice_ids: [u32; 2],
    /// Prefilled heads, most recent last; shared by clones.
    heads: Arc<Mutex<Vec<PrefilledHead>>>,
    /// Set when the judge scores on a device (a CUDA GPU) instead of the runtime's
    /// CPU kernels; shared by clones.
    pub(super) on_device: Option<Arc<OnDevice>>,
    /// Set when the judge's forward passes run on an inference server.
    pub(super) endpoint: Option<Arc<crate::endpoint::EndpointClient>>,
}

/// The judge's model on a device, and its prefilled heads there.
pub(super) struct OnDevice {
    /// The model with nothing fed.
    pub(super) base: DeviceLm,
    /// Prefilled heads (the model after each head), most recent last.
    pub(super) heads: Mutex<Vec<(String, DeviceLm)>>,
}

impl std::fmt::Debug for LlmJudge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmJudge")
            .field("model_hash", &self.model_hash)
            .field("mode", &self.mode)
            .finish()
    }
}

/// Hex sha256 of a file, streamed.
pub fn file_sha256(path: &Path) -> Result<String, JudgeError> {
    let err = |e: std::io::Error| JudgeError::Model {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut file = std::fs::File::open(path).map_err(err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

impl LlmJudge {
    /// Loads a GGUF chat model; the judge starts pointwise.
    pub fn load(path: &Path) -> Result<LlmJudge, JudgeError> {
        let model_hash = file_sha256(path)?;
        let (model, tokenizer) = Model::load(path)?;
        LlmJudge::from_parts(Arc::new(model), Arc::new(tokenizer), model_hash)
    }

    /// A judge on an already loaded model (shared with the agents, say); `model_hash`
    /// is the GGUF file's sha256, its identity.
    pub fn from_parts(
        model: Arc<Model>,
        tokenizer: Arc<ChatTokenizer>,
        model_hash: String,
    ) -> Result<LlmJudge, JudgeError> {
        let id = |t: &str| {
            tokenizer
                .inner()
                .token_to_id(t)
                .ok_or_else(|| JudgeError::Tokenizer(format!("no single token for {t:?}")))
        };
        let mut rating_ids = [0u32; 9];
        for (k, slot) in rating_ids.iter_mut().enumerate() {
            *slot = id(&(k + 1).to_string())?;
        }
        let choice_ids = [id("A")?, id("B")?];
        Ok(LlmJudge {
            model,
            tokenizer,
            model_hash,
            mode: LlmMode::Pointwise,
            rating_ids,
            choice_ids,
            heads: Arc::default(),
            on_device: None,
            endpoint: None,
        })
    }

    /// The same judge with its forward passes on an OpenAI-compatible inference server
    /// serving the same model (see [`crate::endpoint`]): the prompts are the same token
    /// ids, the scores come from the returned log-probabilities of the rating tokens.
    /// The identity names the endpoint's model, and replays agree within a tolerance,
    /// not bit for bit.
    pub fn over_endpoint(self, client: Arc<crate::endpoint::EndpointClient>) -> LlmJudge {
        LlmJudge {
            model_hash: client.identity().to_string(),
            endpoint: Some(client),
            on_device: None,
            ..self
        }
    }

    /// The inference server the judge scores on, if any.
    pub fn endpoint(&self) -> Option<&crate::endpoint::EndpointClient> {
        self.endpoint.as_deref()
    }

    /// The same judge scoring on `device` (a CUDA GPU, say): the GGUF file at `path`,
    /// the one this judge's model was loaded from, is loaded there and every forward
    /// pass of the judge runs on it. Scores on a device are close to the CPU
    /// runtime's but not the same bits, so the judge's identity names the device kind.
    pub fn on_device(self, path: &Path, device: &Device) -> Result<LlmJudge, JudgeError> {
        let base = DeviceLm::load(path, device)?;
        let (want, got) = (self.model.config().vocab_size, base.config().vocab_size);
        if want != got {
            return Err(JudgeError::Model {
                path: path.display().to_string(),
                reason: format!(
                    "vocabulary of {got} tokens, but the judge's model has {want}: not the same model"
                ),
            });
        }
        Ok(LlmJudge {
            on_device: Some(Arc::new(OnDevice {
                base,
                heads: Mutex::default(),
            })),
            ..self
        })
    }

    /// The device the judge scores on, when not the runtime's CPU kernels.
    pub fn device(&self) -> Option<&Device> {
        self.on_device.as_ref().map(|d| d.base.device())
    }

    /// The same judge (sharing the model) scoring in `mode` as a panel member.
    pub fn with_mode(&self, mode: LlmMode) -> LlmJudge {
        LlmJudge {
            mode,
            ..self.clone()
        }
    }

    /// The mode used as a panel member.
    #[cfg(test)]
    pub(crate) fn mode(&self) -> LlmMode {
        self.mode
    }

    /// The GGUF file's sha256.
    pub(crate) fn model_hash(&self) -> &str {
        &self.model_hash
    }

    /// Pointwise ratings in [0, 1], one per response, with the expected rating (1..9).
    pub fn rate(&self, task: &Task, responses: &[&str]) -> Result<Vec<(f64, f64)>, JudgeError> {
        self.rate_many(&[Round { task, responses }])
            .pop()
            .expect("one round in, one out")
    }

    /// [`LlmJudge::rate`] for several rounds (of any tasks and rubrics) in one batched
    /// pass; one result per round, in order, each the same bits as rated alone.
    pub fn rate_many(&self, rounds: &[Round<'_>]) -> Vec<Result<Vec<(f64, f64)>, JudgeError>> {
        let prepared = rounds
            .iter()
            .map(|r| self.pointwise_prompts(r.task, r.responses))
            .collect();
        self.logits_per_round(prepared)
            .into_iter()
            .map(|logits| {
                Ok(logits?
                    .iter()
                    .map(|l| {
                        let p = restricted_softmax(l, &self.rating_ids);
                        let mean: f64 = p.iter().enumerate().map(|(k, p)| (k + 1) as f64 * p).sum();
                        ((mean - 1.0) / 8.0, mean)
                    })
                    .collect())
            })
            .collect()
    }

    /// Judges each pair (first, second) in both orders, all orders batched.
    pub fn prefer(
        &self,
        task: &Task,
        pairs: &[(&str, &str)],
    ) -> Result<Vec<PairVerdict>, JudgeError> {
        self.prefer_many(&[(task, pairs)])
            .pop()
            .expect("one round in, one out")
    }

    /// [`LlmJudge::prefer`] for several rounds' pairs, every order of every round in
    /// one batched pass, with one content-free pair per round for the prior.
    fn prefer_many(
        &self,
        rounds: &[(&Task, &[(&str, &str)])],
    ) -> Vec<Result<Vec<PairVerdict>, JudgeError>> {
        let prepared = rounds
            .iter()
            .map(|&(task, pairs)| {
                if pairs.is_empty() {
                    return self.pairwise_prompts(task, &[]);
                }
                let mut shown: Vec<(&str, &str)> =
                    pairs.iter().flat_map(|&(a, b)| [(a, b), (b, a)]).collect();
                shown.push((CONTENT_FREE, CONTENT_FREE));
                self.pairwise_prompts(task, &shown)
            })
            .collect();
        self.logits_per_round(prepared)
            .into_iter()
            .map(|logits| {
                let mut p: Vec<f64> = logits?
                    .iter()
                    .map(|l| restricted_softmax(l, &self.choice_ids)[0])
                    .collect();
                let Some(prior) = p.pop() else {
                    return Ok(Vec::new());
                };
                Ok(p.chunks_exact(2)
                    .map(|o| PairVerdict::calibrated([o[0], o[1]], prior))
                    .collect())
            })
            .collect()
    }

    fn identity(&self, mode: LlmMode) -> JudgeId {
        let version = match mode {
            LlmMode::Pointwise => POINTWISE_TEMPLATE_VERSION,
            LlmMode::Pairwise => PAIRWISE_TEMPLATE_VERSION,
        };
        let template_version = match (self.endpoint.is_some(), self.device()) {
            (true, _) => format!("{version}+endpoint"),
            (false, None) => version.to_string(),
            (false, Some(device)) => format!("{version}+{}", crate::device_kind(device)),
        };
        JudgeId {
            name: "llm".into(),
            model_hash: self.model_hash.clone(),
            template_version,
        }
    }
}

/// Softmax over the logits of `ids` only, in f64, in a fixed order.
fn restricted_softmax(logits: &[f32], ids: &[u32]) -> Vec<f64> {
    let picked: Vec<f64> = ids.iter().map(|&i| f64::from(logits[i as usize])).collect();
    let max = picked.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = picked.iter().map(|x| (x - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

/// Pairwise panel scores of one round's `n` responses from the verdicts on every pair
/// (i, j), i < j, in order: each response scores its mean preference.
fn pairwise_scores(n: usize, verdicts: &[PairVerdict], id: &JudgeId) -> Vec<Score> {
    if n < 2 {
        // Nothing to compare against: every response is neutral.
        return (0..n)
            .map(|_| Score {
                score: 0.5,
                rationale: "no rival to compare with".into(),
                judge: id.clone(),
            })
            .collect();
    }
    let mut sum = vec![0.0; n];
    let mut wins = vec![0usize; n];
    let mut ties = vec![0usize; n];
    let mut k = 0;
    for i in 0..n {
        for j in i + 1..n {
            let v = verdicts[k];
            k += 1;
            sum[i] += v.p_first;
            sum[j] += 1.0 - v.p_first;
            match v.preference {
                Preference::First => wins[i] += 1,
                Preference::Second => wins[j] += 1,
                Preference::Tie => {
                    ties[i] += 1;
                    ties[j] += 1;
                }
            }
        }
    }
    (0..n)
        .map(|i| Score {
            score: sum[i] / (n - 1) as f64,
            rationale: format!(
                "won {} of {} pairs in both orders, {} ties",
                wins[i],
                n - 1,
                ties[i]
            ),
            judge: id.clone(),
        })
        .collect()
}

impl Judge for LlmJudge {
    fn id(&self) -> JudgeId {
        self.identity(self.mode)
    }

    fn score(&self, task: &Task, responses: &[&str]) -> Result<Vec<Score>, JudgeError> {
        // Alone is a batch of one: a replay that judges one match goes through the
        // same code as a tick that judged eight.
        self.score_many(&[Round { task, responses }])
            .pop()
            .expect("one round in, one out")
    }

    fn score_many(&self, rounds: &[Round<'_>]) -> Vec<Result<Vec<Score>, JudgeError>> {
        let id = self.id();
        match self.mode {
            LlmMode::Pointwise => self
                .rate_many(rounds)
                .into_iter()
                .map(|rated| {
                    Ok(rated?
                        .into_iter()
                        .map(|(score, mean)| Score {
                            score,
                            rationale: format!("expected rating {mean:.2} of 9"),
                            judge: id.clone(),
                        })
                        .collect())
                })
                .collect(),
            LlmMode::Pairwise => {
                let pairs: Vec<Vec<(&str, &str)>> = rounds
                    .iter()
                    .map(|r| {
                        let n = r.responses.len();
                        (0..n)
                            .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
                            .map(|(i, j)| (r.responses[i], r.responses[j]))
                            .collect()
                    })
                    .collect();
                let asked: Vec<(&Task, &[(&str, &str)])> = rounds
                    .iter()
                    .zip(&pairs)
                    .map(|(r, p)| (r.task, p.as_slice()))
                    .collect();
                rounds
                    .iter()
                    .zip(self.prefer_many(&asked))
                    .map(|(r, verdicts)| Ok(pairwise_scores(r.responses.len(), &verdicts?, &id)))
                    .collect()
            }
        }
    }
}

#[path = "llm_prompts.rs"]
mod prompts;

#[cfg(test)]
#[path = "llm_tests.rs"]
mod tests;
