//! The DPO trainer: turns an agent's preference pairs into a new LoRA adapter version.
//!
//! Sigmoid DPO loss (Rafailov et al. 2023) with the policy a trainable copy of the parent
//! adapter (or a fresh adapter for a first version) and the reference the frozen parent
//! (or the bare base model). The base stays quantized in the model and is computed
//! dequantized (QLoRA, see `dpo_forward.rs` and `dpo_ops.rs`).
//!
//! Training is deterministic on CPU so that a verifier can replay it from the exported
//! pairs and get the same adapter bytes: the pairs are visited in the order given,
//! cyclically; each pass packs a fixed number of pairs; gradients are summed on the host
//! in a fixed order; and AdamW is our own loop over plain vectors.

use crate::adapter::adapter_hash;
use crate::dpo_forward::{PackedBatch, TrainBase};
use crate::error::{AgentError, Result};
use crate::lora::{LoraAdapter, LoraConfig, Target};
use crate::model::Model;
use crate::tokenizer::ChatTokenizer;
use candle_core::{Device, Tensor, Var};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

/// Names the training algorithm inside the hyperparameter hash, so a change to how
/// training works (not only to its settings) changes the hash too: this is the training
/// code's version that a proof-of-learning record commits to.
///
/// Version 2: every matrix product is our own (`sgemm`), one fused multiply-add chain
/// per element whatever the CPU, instead of the `gemm` crate's, whose sums depend on
/// the vector width it picks; products round differently, so adapters differ.
pub const DPO_ALGORITHM: &str = "rlfc-dpo-sigmoid/2";

/// Earlier training code versions, newest first: runs recorded under them hash their
/// hyperparameters with that tag, and this code cannot reproduce their adapters.
pub(crate) const EARLIER_DPO_ALGORITHMS: &[&str] = &["rlfc-dpo-sigmoid/1"];

/// Pairs packed into one forward/backward pass. Part of the algorithm: float sums
/// depend on how rows are grouped, so it is a constant, not a tuning knob.
const PAIRS_PER_PASS: usize = 4;

/// Hyperparameters of one DPO run (all of them enter [`DpoConfig::hyperparameters_hash`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DpoConfig {
    /// DPO temperature: how far the policy may move from the reference.
    pub beta: f64,
    /// AdamW learning rate (constant).
    pub learning_rate: f64,
    /// AdamW first-moment decay.
    pub adam_beta1: f64,
    /// AdamW second-moment decay.
    pub adam_beta2: f64,
    /// AdamW denominator epsilon.
    pub adam_epsilon: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0 = no clipping).
    pub max_grad_norm: f64,
    /// Micro-batches whose gradients are summed before each optimizer step.
    pub grad_accumulation: usize,
    /// Optimizer steps to take.
    pub max_steps: usize,
    /// Pairs per micro-batch.
    pub batch_size: usize,
    /// Most tokens of prompt plus completion per sequence (the prompt is cut from the left).
    pub max_length: usize,
    /// LoRA rank of a first adapter version (a parent adapter must match it).
    pub lora_rank: usize,
    /// LoRA alpha of a first adapter version (a parent adapter must match it).
    pub lora_alpha: f32,
    /// Seed of a first version's LoRA A matrices.
    pub seed: u64,
    /// Share of the pairs held out to measure the validation loss (the last ones in
    /// training order; at least one pair is held out and one trained on when set); 0
    /// trains on every pair and measures none. Left out of the hashed JSON when 0, so
    /// runs recorded before it hash as they did.
    #[serde(skip_serializing_if = "is_zero_f64")]
    pub validation_share: f64,
    /// With a validation share: stop once this many validation checks in a row (one
    /// after each pass over the training pairs) have not improved on the best, and
    /// keep the adapter of the best check; 0 never stops early (the best check's
    /// adapter is still the one kept). Left out of the hashed JSON when 0.
    #[serde(skip_serializing_if = "is_zero_usize")]
    pub patience: usize,
    /// Conservative DPO (Mitchell 2023): the share ε of pairs assumed mislabelled. Each
    /// pair's loss is `(1 − ε)·(−log σ(z)) + ε·(−log σ(−z))`, whose optimum is the
    /// finite margin `z = ln((1 − ε)/ε)`, so noisy judge labels cannot push the policy
    /// to memorise them (the loss never drops below the binary entropy of ε). 0 is
    /// plain sigmoid DPO. The validation loss stays the plain sigmoid loss. Left out
    /// of the hashed JSON when 0, so runs recorded before it hash as they did.
    #[serde(skip_serializing_if = "is_zero_f64")]
    pub label_smoothing: f64,
    /// Hex sha256 of the base model's GGUF file the run trains on top of, so that a
    /// proof-of-learning record (through this hash) names the base model as well as
    /// the settings; a verifier must re-train on the same file. Empty for runs
    /// recorded before it (left out of the hashed JSON when empty, so they hash as
    /// they did) and for in-memory test models.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub base_model_sha256: String,
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

fn is_zero_usize(v: &usize) -> bool {
    *v == 0
}

impl Default for DpoConfig {
    fn default() -> Self {
        Self {
            beta: 0.1,
            learning_rate: 5e-5,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            grad_accumulation: 1,
            max_steps: 10,
            batch_size: 4,
            max_length: 512,
            lora_rank: 8,
            lora_alpha: 16.0,
            seed: 0,
            validation_share: 0.0,
            patience: 0,
            label_smoothing: 0.0,
            base_model_sha256: String::new(),
        }
    }
}

fn invalid(field: &'static str, detail: String) -> AgentError {
    AgentError::InvalidTrainingConfig { field, detail }
}

fn check_f64(
    field: &'static str,
    v: f64,
    lo: f64,
    lo_open: bool,
    hi: f64,
    hi_open: bool,
) -> Result<()> {
    let above = if lo_open { v > lo } else { v >= lo };
    let below = if hi_open { v < hi } else { v <= hi };
    if v.is_finite() && above && below {
        return Ok(());
    }
    let (l, h) = (
        if lo_open { "(" } else { "[" },
        if hi_open { ")" } else { "]" },
    );
    Err(invalid(
        field,
        format!("must be in {l}{lo}, {hi}{h}, got {v}"),
    ))
}

fn check_usize(field: &'static str, v: usize, lo: usize, hi: usize) -> Result<()> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(invalid(field, format!("must be in [{lo}, {hi}], got {v}")))
    }
}

impl DpoConfig {
    /// Checks every setting against its range; the error names the field and the limit.
    pub fn validate(&self) -> Result<()> {
        check_f64("beta", self.beta, 0.0, true, 1e3, false)?;
        check_f64("learning_rate", self.learning_rate, 0.0, true, 1.0, false)?;
        check_f64("adam_beta1", self.adam_beta1, 0.0, false, 1.0, true)?;
        check_f64("adam_beta2", self.adam_beta2, 0.0, false, 1.0, true)?;
        check_f64("adam_epsilon", self.adam_epsilon, 0.0, true, 1.0, false)?;
        check_f64("weight_decay", self.weight_decay, 0.0, false, 1.0, false)?;
        check_f64("max_grad_norm", self.max_grad_norm, 0.0, false, 1e6, false)?;
        check_usize("grad_accumulation", self.grad_accumulation, 1, 1024)?;
        check_usize("max_steps", self.max_steps, 1, 1_000_000)?;
        check_usize("batch_size", self.batch_size, 1, 1024)?;
        check_usize("max_length", self.max_length, 2, 1 << 20)?;
        check_usize("lora_rank", self.lora_rank, 1, 1024)?;
        check_f64("lora_alpha", self.lora_alpha as f64, 0.0, true, 1e6, false)?;
        check_f64(
            "validation_share",
            self.validation_share,
            0.0,
            false,
            0.5,
            false,
        )?;
        check_usize("patience", self.patience, 0, 1000)?;
        check_f64(
            "label_smoothing",
            self.label_smoothing,
            0.0,
            false,
            0.5,
            true,
        )?;
        let sha = &self.base_model_sha256;
        if !sha.is_empty() && !crate::adapter::is_hash(sha) {
            return Err(invalid(
                "base_model_sha256",
                format!("must be 64 lower-case hex digits or empty, got {sha:?}"),
            ));
        }
        Ok(())
    }

    /// How many of `pairs` pairs are held out for validation: none without a share or
    /// with fewer than two pairs, otherwise the rounded share, at least one and at
    /// most all but one.
    pub fn validation_pairs(&self, pairs: usize) -> usize {
        if self.validation_share <= 0.0 || pairs < 2 {
            return 0;
        }
        ((pairs as f64 * self.validation_share).round() as usize).clamp(1, pairs - 1)
    }

    /// Optimizer steps in one pass over `train_pairs` training pairs.
    pub fn steps_per_pass(&self, train_pairs: usize) -> usize {
        train_pairs
            .div_ceil(self.batch_size * self.grad_accumulation)
            .max(1)
    }

    /// The canonical JSON hashed by [`Self::hyperparameters_hash`]: every field plus the
    /// algorithm name, keys sorted, no whitespace.
    pub fn canonical_json(&self) -> String {
        self.canonical_json_as(DPO_ALGORITHM)
    }

    /// [`Self::canonical_json`] with another training code version's tag.
    fn canonical_json_as(&self, algorithm: &str) -> String {
        let mut v = serde_json::to_value(self).expect("plain struct serializes");
        v["algorithm"] = algorithm.into();
        // Sort keys ourselves: serde_json keeps insertion order when another crate in
        // the build enables its `preserve_order` feature.
        fn sorted(v: serde_json::Value) -> serde_json::Value {
            match v {
                serde_json::Value::Object(m) => {
                    let mut items: Vec<_> = m.into_iter().collect();
                    items.sort_by(|a, b| a.0.cmp(&b.0));
                    serde_json::Value::Object(
                        items.into_iter().map(|(k, v)| (k, sorted(v))).collect(),
                    )
                }
                other => other,
            }
        }
        sorted(v).to_string()
    }

    /// Hex sha256 of [`Self::canonical_json`]: what a proof-of-learning record stores.
    pub fn hyperparameters_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_json().as_bytes()))
    }

    /// The earlier training code version (`rlfc-dpo-sigmoid/1`, …) whose tag makes
    /// these settings hash to `recorded`, if any: a record whose hash matches none of
    /// the current code's was written by older training code, not with other settings.
    pub fn earlier_algorithm_for(&self, recorded: &str) -> Option<&'static str> {
        EARLIER_DPO_ALGORITHMS.iter().copied().find(|a| {
            hex::encode(Sha256::digest(self.canonical_json_as(a).as_bytes()))
                .eq_ignore_ascii_case(recorded.trim_start_matches("0x"))
        })
    }
}

/// One preference pair as the trainer sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DpoPair {
    /// The exact chat-formatted prompt text the policy saw.
    pub prompt: String,
    /// The preferred answer.
    pub chosen: String,
    /// The dispreferred answer.
    pub rejected: String,
    /// The preferred answer was cut off at the token limit: it is trained without the
    /// end-of-turn token, so the policy does not learn to stop where it was cut.
    #[serde(default)]
    pub chosen_truncated: bool,
    /// The dispreferred answer was cut off at the token limit.
    #[serde(default)]
    pub rejected_truncated: bool,
}

/// What one optimizer step measured, averaged over its pairs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StepMetrics {
    /// 1-based optimizer step.
    pub step: usize,
    /// Mean training loss: sigmoid DPO, label-smoothed when
    /// [`DpoConfig::label_smoothing`] is set (`ln 2` when policy equals reference).
    pub loss: f64,
    /// Share of pairs whose chosen reward beats the rejected one.
    pub reward_accuracy: f64,
    /// Mean `beta · (log π(chosen) − log π_ref(chosen))`.
    pub chosen_reward: f64,
    /// Mean `beta · (log π(rejected) − log π_ref(rejected))`.
    pub rejected_reward: f64,
    /// Mean chosen minus rejected reward.
    pub reward_margin: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Pairs in this step.
    pub pairs: usize,
    /// Token rows run through the policy in this step (a pair's prompt counts once:
    /// chosen and rejected share its computation).
    pub tokens: usize,
    /// The mean DPO loss on the held-out pairs after this step, on the steps that end
    /// a pass over the training pairs (and the last step); `None` on other steps and
    /// without a validation share.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_loss: Option<f64>,
}

/// The result of a DPO run.
#[derive(Debug)]
pub struct DpoOutcome {
    /// The trained adapter (the new version).
    pub adapter: LoraAdapter,
    /// Its hash ([`adapter_hash`]).
    pub adapter_hash: String,
    /// [`DpoConfig::hyperparameters_hash`] of the settings used.
    pub hyperparameters_hash: String,
    /// Per-step metrics, in order (every step taken, also those after the best).
    pub steps: Vec<StepMetrics>,
    /// The step whose adapter was kept: the last one, or with a validation share the
    /// one with the lowest validation loss.
    pub best_step: usize,
    /// The kept adapter's validation loss (`None` without a validation share).
    pub validation_loss: Option<f64>,
    /// Whether the run stopped before `max_steps` because the validation loss had
    /// stopped improving.
    pub stopped_early: bool,
}

/// A pair as token ids: one (possibly left-truncated) prompt shared by both answers.
struct EncodedPair {
    prompt: Vec<u32>,
    chosen: Vec<u32>,
    rejected: Vec<u32>,
}

/// Completion ids: the text without BOS, then the template's end-of-turn token when the
/// answer finished (the policy must learn where an answer stops, as TRL's DPOTrainer
/// does with EOS); an answer cut off at the token limit gets none.
fn encode_completion(tok: &ChatTokenizer, text: &str, truncated: bool) -> Result<Vec<u32>> {
    let enc = tok
        .inner()
        .encode(text, false)
        .map_err(|e| AgentError::Encoding(e.to_string()))?;
    let mut ids = enc.get_ids().to_vec();
    if !truncated {
        ids.extend(tok.stop_ids().first());
    }
    Ok(ids)
}

/// Fits prompt plus the longer completion into `max_length`: the prompt keeps its last
/// tokens (at least half the budget when it is that long), then completions are cut at
/// the end. Both answers see the same prompt.
fn encode_pair(
    tok: &ChatTokenizer,
    p: &DpoPair,
    index: usize,
    max_length: usize,
) -> Result<EncodedPair> {
    let mut prompt = tok.encode(&p.prompt)?;
    let mut chosen = encode_completion(tok, &p.chosen, p.chosen_truncated)?;
    let mut rejected = encode_completion(tok, &p.rejected, p.rejected_truncated)?;
    let bad = |what: &str| AgentError::InvalidPair {
        index,
        detail: what.to_string(),
    };
    if prompt.is_empty() {
        return Err(bad("the prompt has no tokens"));
    }
    if chosen.is_empty() || rejected.is_empty() {
        return Err(bad("an answer has no tokens"));
    }
    let longest = chosen.len().max(rejected.len());
    if prompt.len() + longest > max_length {
        let keep = (max_length - longest.min(max_length / 2))
            .min(prompt.len())
            .max(1);
        prompt.drain(..prompt.len() - keep);
        let room = max_length - prompt.len();
        chosen.truncate(room);
        rejected.truncate(room);
    }
    Ok(EncodedPair {
        prompt,
        chosen,
        rejected,
    })
}

/// The pairs packed for one pass: each prompt once, its chosen then rejected answer.
fn pack(pairs: &[&EncodedPair]) -> PackedBatch {
    let mut batch = PackedBatch::default();
    for p in pairs {
        batch.push(&p.prompt, &[&p.chosen, &p.rejected]);
    }
    batch
}

/// Summed completion log-probs of `pairs` under `adapter`, `(chosen, rejected)` per pair.
fn pair_logprobs(
    base: &TrainBase,
    pairs: &[&EncodedPair],
    adapter: Option<&LoraAdapter>,
) -> Result<Vec<(f64, f64)>> {
    let lp = base.completion_logprobs(&pack(pairs), adapter)?;
    Ok(lp
        .chunks_exact(2)
        .map(|c| (c[0] as f64, c[1] as f64))
        .collect())
}

/// A trainable deep copy of `parent` (its `Var`s are shared by `clone`, so copy the data).
fn detached_copy(model: &Model, parent: &LoraAdapter) -> Result<LoraAdapter> {
    let mut pairs = Vec::new();
    for l in 0..parent.num_layers() {
        for t in &parent.config().targets {
            if let Some(p) = parent.pair(l, *t) {
                pairs.push((l, *t, p.a.as_tensor().copy()?, p.b.as_tensor().copy()?));
            }
        }
    }
    LoraAdapter::from_pairs(
        model.config(),
        parent.config().clone(),
        pairs,
        Path::new("<parent adapter>"),
    )
}

/// AdamW with decoupled weight decay (as in PyTorch), state in plain vectors.
struct AdamW {
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    t: i32,
}

impl AdamW {
    fn new(sizes: &[usize]) -> Self {
        Self {
            m: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            v: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            t: 0,
        }
    }

    fn step(&mut self, cfg: &DpoConfig, params: &mut [Vec<f32>], grads: &[Vec<f32>]) {
        self.t += 1;
        let (b1, b2) = (cfg.adam_beta1 as f32, cfg.adam_beta2 as f32);
        let lr = cfg.learning_rate as f32;
        let bc1 = (1.0 - cfg.adam_beta1.powi(self.t)) as f32;
        let bc2 = (1.0 - cfg.adam_beta2.powi(self.t)) as f32;
        let decay = 1.0 - lr * cfg.weight_decay as f32;
        let eps = cfg.adam_epsilon as f32;
        for (((p, g), m), v) in params
            .iter_mut()
            .zip(grads)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            for i in 0..p.len() {
                m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                let update = (m[i] / bc1) / ((v[i] / bc2).sqrt() + eps);
                p[i] = p[i] * decay - lr * update;
            }
        }
    }
}

/// `-log σ(z)` computed without overflow.
fn softplus_neg(z: f64) -> f64 {
    if z > 0.0 {
        (-z).exp().ln_1p()
    } else {
        -z + z.exp().ln_1p()
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// One pair's training loss at reward margin `z` and its derivative in `z`: the
/// sigmoid DPO loss `−log σ(z)`, or with label smoothing `ε` the conservative
/// `(1 − ε)·(−log σ(z)) + ε·(−log σ(−z))`, whose derivative
/// `−(1 − ε)·σ(−z) + ε·σ(z)` is zero at `z = ln((1 − ε)/ε)`.
pub(crate) fn pair_loss(z: f64, eps: f64) -> (f64, f64) {
    if eps == 0.0 {
        return (softplus_neg(z), -sigmoid(-z));
    }
    (
        (1.0 - eps) * softplus_neg(z) + eps * softplus_neg(-z),
        -(1.0 - eps) * sigmoid(-z) + eps * sigmoid(z),
    )
}

/// Trains a new adapter version on `pairs` with sigmoid DPO and returns it with per-step
/// metrics; `on_step` sees each step's metrics as it finishes.
///
/// The policy starts as a copy of `parent` (or a fresh LoRA from `cfg.seed` when there is
/// none); the reference is the frozen `parent` (or the bare base model). The same inputs
/// give the same adapter bytes on any run on the same kind of CPU.
pub fn train_dpo(
    model: &Model,
    tokenizer: &ChatTokenizer,
    parent: Option<&LoraAdapter>,
    pairs: &[DpoPair],
    cfg: &DpoConfig,
    mut on_step: impl FnMut(&StepMetrics),
) -> Result<DpoOutcome> {
    cfg.validate()?;
    if pairs.is_empty() {
        return Err(AgentError::Training(
            "there are no preference pairs to train on".into(),
        ));
    }
    let context = model.config().context_length;
    if cfg.max_length > context {
        return Err(invalid(
            "max_length",
            format!(
                "must be at most the model context of {context}, got {}",
                cfg.max_length
            ),
        ));
    }
    if let Some(p) = parent {
        let c = p.config();
        if c.rank != cfg.lora_rank || c.alpha != cfg.lora_alpha {
            return Err(invalid(
                "lora_rank",
                format!(
                    "rank {} / alpha {} must equal the parent adapter's rank {} / alpha {}",
                    cfg.lora_rank, cfg.lora_alpha, c.rank, c.alpha
                ),
            ));
        }
    }
    let mut encoded = pairs
        .iter()
        .enumerate()
        .map(|(i, p)| encode_pair(tokenizer, p, i, cfg.max_length))
        .collect::<Result<Vec<_>>>()?;
    // The last pairs in training order are held out; the rest are trained on.
    let held_out = encoded.split_off(encoded.len() - cfg.validation_pairs(pairs.len()));
    let steps_per_pass = cfg.steps_per_pass(encoded.len());
    let base = TrainBase::new(model)?;
    let held_out_reference = held_out_logprobs(&base, &held_out, parent)?;

    // Reference log-probs of each distinct pass (the pairs packed together), computed
    // the first time that pass is met and then reused: the reference never changes, and
    // packing it exactly as the policy pass is packed makes the two bit-identical while
    // the policy still equals the reference, whatever any op's sums depend on.
    let mut reference: HashMap<Vec<usize>, Vec<(f64, f64)>> = HashMap::new();

    let policy = match parent {
        Some(p) => detached_copy(model, p)?,
        None => LoraAdapter::new(
            model.config(),
            LoraConfig::all_targets(cfg.lora_rank, cfg.lora_alpha),
            cfg.seed,
        )?,
    };
    let vars: Vec<Var> = policy.vars();
    // `(layer, target)` of each (A, B) pair of `vars`, in the same order.
    let var_keys: Vec<(usize, Target)> = (0..policy.num_layers())
        .flat_map(|l| Target::ALL.into_iter().map(move |t| (l, t)))
        .filter(|&(l, t)| policy.pair(l, t).is_some())
        .collect();
    debug_assert_eq!(2 * var_keys.len(), vars.len());
    let mut params: Vec<Vec<f32>> = vars
        .iter()
        .map(|v| v.as_tensor().flatten_all()?.to_vec1::<f32>())
        .collect::<candle_core::Result<_>>()?;
    let mut adam = AdamW::new(&params.iter().map(Vec::len).collect::<Vec<_>>());
    let per_step = cfg.batch_size * cfg.grad_accumulation;
    let mut cursor = 0usize;
    let mut steps = Vec::with_capacity(cfg.max_steps);
    // The best validation check so far: its loss, step and parameters.
    let mut best: Option<(f64, usize, Vec<Vec<f32>>)> = None;
    let mut checks_since_best = 0usize;
    let mut stopped_early = false;

    for step in 1..=cfg.max_steps {
        let mut grads: Vec<Vec<f32>> = params.iter().map(|p| vec![0.0; p.len()]).collect();
        let (mut loss, mut correct, mut chosen_r, mut rejected_r) = (0.0, 0usize, 0.0, 0.0);
        let mut tokens = 0;
        for _ in 0..cfg.grad_accumulation {
            // Pairs in the order given, wrapping around when a step needs more.
            let idx: Vec<usize> = (0..cfg.batch_size)
                .map(|i| (cursor + i) % encoded.len())
                .collect();
            cursor = (cursor + cfg.batch_size) % encoded.len();
            for chunk in idx.chunks(PAIRS_PER_PASS) {
                let refs: Vec<&EncodedPair> = chunk.iter().map(|&i| &encoded[i]).collect();
                if !reference.contains_key(chunk) {
                    let r = pair_logprobs(&base, &refs, parent)?;
                    reference.insert(chunk.to_vec(), r);
                }
                let ref_lp = &reference[chunk];
                let batch = pack(&refs);
                tokens += batch.num_tokens();
                let (host, tape) = base.logprobs_with_tape(&batch, &policy)?;
                // d loss / d logp, per sequence: the loss is a mean of per-pair terms, so
                // backpropagating Σ w·logp with these constant weights gives its gradient.
                let mut w = vec![0f32; 2 * chunk.len()];
                for (i, &(rc, rr)) in ref_lp.iter().enumerate() {
                    let rc_reward = cfg.beta * (host[2 * i] as f64 - rc);
                    let rr_reward = cfg.beta * (host[2 * i + 1] as f64 - rr);
                    let (pair_loss, dz) = pair_loss(rc_reward - rr_reward, cfg.label_smoothing);
                    loss += pair_loss;
                    correct += usize::from(rc_reward > rr_reward);
                    chosen_r += rc_reward;
                    rejected_r += rr_reward;
                    let g = cfg.beta * dz / per_step as f64;
                    w[2 * i] = g as f32;
                    w[2 * i + 1] = -g as f32;
                }
                let mut g = base.backward(tape, &w)?;
                for (acc, key) in grads.chunks_exact_mut(2).zip(&var_keys) {
                    if let Some((ga, gb)) = g.remove(key) {
                        for (a, b) in acc[0].iter_mut().zip(&ga) {
                            *a += b;
                        }
                        for (a, b) in acc[1].iter_mut().zip(&gb) {
                            *a += b;
                        }
                    }
                }
            }
        }
        let norm = grads
            .iter()
            .flatten()
            .map(|&g| g as f64 * g as f64)
            .sum::<f64>()
            .sqrt();
        if cfg.max_grad_norm > 0.0 && norm > cfg.max_grad_norm {
            let s = (cfg.max_grad_norm / (norm + 1e-6)) as f32;
            grads.iter_mut().flatten().for_each(|g| *g *= s);
        }
        adam.step(cfg, &mut params, &grads);
        for (v, p) in vars.iter().zip(&params) {
            v.set(&Tensor::from_slice(p, v.shape(), &Device::Cpu)?)?;
        }
        let n = per_step as f64;
        let mut m = StepMetrics {
            step,
            loss: loss / n,
            reward_accuracy: correct as f64 / n,
            chosen_reward: chosen_r / n,
            rejected_reward: rejected_r / n,
            reward_margin: (chosen_r - rejected_r) / n,
            grad_norm: norm,
            pairs: per_step,
            tokens,
            validation_loss: None,
        };
        let check = !held_out.is_empty() && (step % steps_per_pass == 0 || step == cfg.max_steps);
        if check {
            let v = held_out_loss(&base, &held_out, &held_out_reference, &policy, cfg.beta)?;
            m.validation_loss = Some(v);
            if best.as_ref().is_none_or(|(b, ..)| v < *b) {
                best = Some((v, step, params.clone()));
                checks_since_best = 0;
            } else {
                checks_since_best += 1;
            }
        }
        on_step(&m);
        steps.push(m);
        if check && cfg.patience > 0 && checks_since_best >= cfg.patience {
            stopped_early = step < cfg.max_steps;
            break;
        }
    }
    let (validation_loss, best_step) = match best {
        Some((loss, step, kept)) => {
            for (v, p) in vars.iter().zip(&kept) {
                v.set(&Tensor::from_slice(p, v.shape(), &Device::Cpu)?)?;
            }
            (Some(loss), step)
        }
        None => (None, steps.len()),
    };
    Ok(DpoOutcome {
        adapter_hash: adapter_hash(&policy, model.config())?,
        hyperparameters_hash: cfg.hyperparameters_hash(),
        adapter: policy,
        steps,
        best_step,
        validation_loss,
        stopped_early,
    })
}

/// Reference log-probs `(chosen, rejected)` of the held-out pairs, packed as
/// [`held_out_loss`] packs them.
fn held_out_logprobs(
    base: &TrainBase,
    pairs: &[EncodedPair],
    adapter: Option<&LoraAdapter>,
) -> Result<Vec<(f64, f64)>> {
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(PAIRS_PER_PASS) {
        let refs: Vec<&EncodedPair> = chunk.iter().collect();
        out.extend(pair_logprobs(base, &refs, adapter)?);
    }
    Ok(out)
}

/// The mean sigmoid DPO loss of `policy` on the held-out pairs (`ln 2` while the
/// policy equals the reference).
fn held_out_loss(
    base: &TrainBase,
    pairs: &[EncodedPair],
    reference: &[(f64, f64)],
    policy: &LoraAdapter,
    beta: f64,
) -> Result<f64> {
    let now = held_out_logprobs(base, pairs, Some(policy))?;
    let total: f64 = now
        .iter()
        .zip(reference)
        .map(|(&(c, r), &(rc, rr))| softplus_neg(beta * (c - rc) - beta * (r - rr)))
        .sum();
    Ok(total / pairs.len() as f64)
}
