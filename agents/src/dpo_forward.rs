//! The DPO trainer's forward and backward passes over the frozen base model.
//!
//! A batch is packed row after row into one `(tokens, hidden)` matrix, so each
//! projection is one large matmul. A pair's chosen and rejected answers share one copy
//! of its prompt: the prompt's rows are computed once and both answers attend to them,
//! which is exact under causal attention and saves the prompt's share of the work. The
//! quantized base weights are dequantized once per run to f32 (QLoRA: stored quantized,
//! computed dequantized). The forward keeps what the backward needs (a tape); the
//! backward walks the layers in reverse with the ops of [`crate::dpo_ops`] and returns
//! the LoRA matrices' gradients. Only the adapter is trained: the frozen weights get no
//! gradient, only the rows flowing through them do.

use crate::dpo_ops::{
    Frozen, Head, LoraGrads, PackedAttention, PromptGroup, RmsNorm, Rope, StackLora, swiglu,
    swiglu_backward,
};
use crate::error::{AgentError, Result};
use crate::gguf::{Architecture, ModelConfig};
use crate::linear::BaseLinear;
use crate::lora::{LoraAdapter, Target};
use crate::model::Model;
use candle_core::{Device, Tensor};
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

/// Prompts, each followed by the completions that continue it, packed row after row.
#[derive(Debug, Clone, Default)]
pub(crate) struct PackedBatch {
    tokens: Vec<u32>,
    groups: Vec<PromptGroup>,
}

impl PackedBatch {
    /// Appends a non-empty prompt and its completions (their log-probs come out in order).
    pub(crate) fn push(&mut self, prompt: &[u32], completions: &[&[u32]]) {
        debug_assert!(!prompt.is_empty());
        self.groups.push(PromptGroup {
            start: self.tokens.len(),
            prompt_len: prompt.len(),
            completion_lens: completions.iter().map(|c| c.len()).collect(),
        });
        self.tokens.extend_from_slice(prompt);
        for c in completions {
            self.tokens.extend_from_slice(c);
        }
    }

    /// Rows in the batch (each prompt counted once).
    pub(crate) fn num_tokens(&self) -> usize {
        self.tokens.len()
    }
}

/// One stack of projections that read the same input (q/k/v, gate/up, o, down).
struct Stack {
    frozen: Frozen,
    targets: Vec<Target>,
}

/// A tensor's values, row-major.
fn values(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

impl Stack {
    fn new(parts: &[(Target, &BaseLinear)], bias: Option<Vec<f32>>) -> Result<Self> {
        let ws = parts
            .iter()
            .map(|(_, p)| p.dequantize(&Device::Cpu))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let w = Tensor::cat(&ws, 0)?;
        let (out, inp) = w.dims2()?;
        Ok(Self {
            frozen: Frozen {
                w: values(&w)?,
                out,
                inp,
                bias,
            },
            targets: parts.iter().map(|(t, _)| *t).collect(),
        })
    }

    /// The adapter's current matrices for this stack's targets at `layer`, if any.
    fn lora(
        &self,
        cfg: &ModelConfig,
        layer: usize,
        adapter: Option<&LoraAdapter>,
    ) -> Result<Option<(StackLora, Vec<Target>)>> {
        let Some(ad) = adapter else {
            return Ok(None);
        };
        let (mut blocks, mut a, mut b, mut with) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut col = 0;
        for &t in &self.targets {
            let width = t.dims(cfg).0;
            if let Some(p) = ad.pair(layer, t) {
                blocks.push((col, width));
                a.extend(values(p.a.as_tensor())?);
                b.extend(values(p.b.as_tensor())?);
                with.push(t);
            }
            col += width;
        }
        if blocks.is_empty() {
            return Ok(None);
        }
        let lora = StackLora {
            blocks,
            a,
            b,
            rank: ad.config().rank,
            scale: ad.config().scale(),
        };
        Ok(Some((lora, with)))
    }
}

struct TrainLayer {
    attn_norm: RmsNorm,
    ffn_norm: RmsNorm,
    qkv: Stack,
    o: Stack,
    gate_up: Stack,
    down: Stack,
}

/// One projection's forward, as the backward needs it: its input, `x · Aᵀ`, and the
/// adapter matrices it used (with the targets they belong to).
struct ProjTape {
    input: Vec<f32>,
    h: Option<Vec<f32>>,
    lora: Option<(StackLora, Vec<Target>)>,
}

/// What the backward needs from one layer's forward: each norm's input (`x`, `mid`), each
/// projection's input (the norms' outputs among them, in [`ProjTape`]), attention's
/// input (the roped rows) and SwiGLU's input.
struct LayerTape {
    /// The layer's input rows.
    x: Vec<f32>,
    qkv: ProjTape,
    /// The roped `[q | k | v]` rows, attention's input.
    roped: Vec<f32>,
    o: ProjTape,
    /// The rows after the attention block's residual add.
    mid: Vec<f32>,
    gate_up: ProjTape,
    /// The `[gate | up]` rows, SwiGLU's input.
    gu: Vec<f32>,
    down: ProjTape,
}

/// A forward pass kept for its backward.
pub(crate) struct Tape {
    layers: Vec<LayerTape>,
    rope: Rope,
    attention: PackedAttention,
    rows: usize,
    /// Rows that predict a completion token, the token each predicts, and how many
    /// such rows each completion has.
    pick: Vec<usize>,
    targets: Vec<u32>,
    counts: Vec<usize>,
    /// The picked rows before the final norm, and the head's softmax.
    picked: Vec<f32>,
    probs: Vec<f32>,
}

/// Gradients of the adapter's matrices: `(A, B)` per `(layer, target)`.
pub(crate) type AdapterGrads = HashMap<(usize, Target), (Vec<f32>, Vec<f32>)>;

/// The base model prepared for training: f32 weights, q/k/v and gate/up stacked.
pub(crate) struct TrainBase {
    config: ModelConfig,
    embed: BaseLinear,
    layers: Vec<TrainLayer>,
    final_norm: RmsNorm,
    lm_head: Vec<f32>,
    cos: Arc<Vec<f32>>,
    sin: Arc<Vec<f32>>,
}

impl TrainBase {
    /// Dequantizes `model`'s weights once for a training run.
    pub(crate) fn new(model: &Model) -> Result<Self> {
        let cfg = model.config().clone();
        let eps = cfg.rms_norm_eps;
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for b in &model.blocks {
            let p = |t: Target| (t, &b.proj[t as usize]);
            let h = &b.host;
            let qkv_bias = match (&h.q_bias, &h.k_bias, &h.v_bias) {
                (None, None, None) => None,
                (q, k, v) => {
                    let mut all = q.clone().unwrap_or_else(|| vec![0.0; cfg.q_dim()]);
                    all.extend(k.clone().unwrap_or_else(|| vec![0.0; cfg.kv_dim()]));
                    all.extend(v.clone().unwrap_or_else(|| vec![0.0; cfg.kv_dim()]));
                    Some(all)
                }
            };
            layers.push(TrainLayer {
                attn_norm: RmsNorm {
                    weight: h.attn_norm.clone(),
                    eps,
                },
                ffn_norm: RmsNorm {
                    weight: h.ffn_norm.clone(),
                    eps,
                },
                qkv: Stack::new(&[p(Target::Q), p(Target::K), p(Target::V)], qkv_bias)?,
                o: Stack::new(&[p(Target::O)], None)?,
                gate_up: Stack::new(&[p(Target::Gate), p(Target::Up)], None)?,
                down: Stack::new(&[p(Target::Down)], None)?,
            });
        }
        Ok(Self {
            embed: model.embed.clone(),
            layers,
            final_norm: RmsNorm {
                weight: model.final_norm_host.clone(),
                eps,
            },
            lm_head: values(&model.lm_head.dequantize(&Device::Cpu)?)?,
            cos: Arc::new(model.cos_host.clone()),
            sin: Arc::new(model.sin_host.clone()),
            config: cfg,
        })
    }

    /// Summed log-probability of every completion's tokens (prompt positions masked
    /// out), in packing order.
    pub(crate) fn completion_logprobs(
        &self,
        batch: &PackedBatch,
        adapter: Option<&LoraAdapter>,
    ) -> Result<Vec<f32>> {
        Ok(self.forward(batch, adapter, false)?.0)
    }

    /// [`Self::completion_logprobs`] and the tape [`Self::backward`] needs.
    pub(crate) fn logprobs_with_tape(
        &self,
        batch: &PackedBatch,
        adapter: &LoraAdapter,
    ) -> Result<(Vec<f32>, Tape)> {
        let (lp, tape) = self.forward(batch, Some(adapter), true)?;
        Ok((lp, tape.expect("kept")))
    }

    fn forward(
        &self,
        batch: &PackedBatch,
        adapter: Option<&LoraAdapter>,
        keep: bool,
    ) -> Result<(Vec<f32>, Option<Tape>)> {
        let cfg = &self.config;
        for g in &batch.groups {
            let longest = g.prompt_len + g.completion_lens.iter().max().copied().unwrap_or(0);
            if longest > cfg.context_length {
                return Err(AgentError::PromptTooLong {
                    prompt_tokens: longest,
                    context: cfg.context_length,
                });
            }
        }
        let rows = batch.num_tokens();
        let mut positions = Vec::with_capacity(rows);
        for g in &batch.groups {
            for (_, n, pos) in g.segments() {
                positions.extend(pos..pos + n);
            }
        }
        let rope = Rope {
            cos: self.cos.clone(),
            sin: self.sin.clone(),
            positions: Arc::new(positions),
            head_dim: cfg.head_dim,
            rotated_heads: cfg.num_heads + cfg.num_kv_heads,
            interleaved: cfg.architecture == Architecture::Llama,
            inverse: false,
        };
        let attention = PackedAttention {
            groups: Arc::new(batch.groups.clone()),
            heads: cfg.num_heads,
            kv_heads: cfg.num_kv_heads,
            head_dim: cfg.head_dim,
        };
        let proj = |stack: &Stack, l: usize, input: Vec<f32>| -> Result<(Vec<f32>, ProjTape)> {
            let lora = stack.lora(cfg, l, adapter)?;
            let (y, h) = stack
                .frozen
                .forward(&input, rows, lora.as_ref().map(|(s, _)| s));
            Ok((y, ProjTape { input, h, lora }))
        };
        let mut x = self.embed.rows(&batch.tokens)?;
        let mut tapes = Vec::new();
        for (l, layer) in self.layers.iter().enumerate() {
            let (qkv, qkv_t) = proj(&layer.qkv, l, layer.attn_norm.forward(&x))?;
            let roped = rope.apply(&qkv, qkv.len() / rows.max(1));
            let attn = attention.forward(&roped, rows);
            let (o, o_t) = proj(&layer.o, l, attn)?;
            let mid = added(&x, &o);
            let (gu, gu_t) = proj(&layer.gate_up, l, layer.ffn_norm.forward(&mid))?;
            let act = swiglu(&gu, gu.len() / rows.max(1) / 2);
            let (down, down_t) = proj(&layer.down, l, act)?;
            let next = added(&mid, &down);
            if keep {
                tapes.push(LayerTape {
                    x,
                    qkv: qkv_t,
                    roped,
                    o: o_t,
                    mid,
                    gate_up: gu_t,
                    gu,
                    down: down_t,
                });
            }
            x = next;
        }
        // Only rows that predict a completion token reach the (large) vocabulary
        // projection: a completion's first token is predicted by its prompt's last row.
        let mut pick = Vec::new();
        let mut targets = Vec::new();
        let mut counts = Vec::new();
        for g in &batch.groups {
            for (start, n, _) in g.segments().into_iter().skip(1) {
                for i in 0..n {
                    let from = if i == 0 {
                        g.start + g.prompt_len - 1
                    } else {
                        start + i - 1
                    };
                    pick.push(from);
                    targets.push(batch.tokens[start + i]);
                }
                counts.push(n);
            }
        }
        let d = cfg.hidden_size;
        let picked: Vec<f32> = pick
            .iter()
            .flat_map(|&r| &x[r * d..(r + 1) * d])
            .copied()
            .collect();
        let head = self.head();
        let (lp, probs) = head.forward(&self.final_norm.forward(&picked), &targets);
        let mut sums = Vec::with_capacity(counts.len());
        let mut off = 0;
        for &n in &counts {
            sums.push(lp[off..off + n].iter().sum::<f32>());
            off += n;
        }
        let tape = keep.then_some(Tape {
            layers: tapes,
            rope,
            attention,
            rows,
            pick,
            targets,
            counts,
            picked,
            probs,
        });
        Ok((sums, tape))
    }

    fn head(&self) -> Head<'_> {
        Head {
            w: &self.lm_head,
            vocab: self.lm_head.len() / self.config.hidden_size,
            hidden: self.config.hidden_size,
        }
    }

    /// Gradients of `Σ weights[i] · logprob[i]` (one weight per completion, in packing
    /// order) with respect to the adapter matrices the taped forward used.
    pub(crate) fn backward(&self, tape: Tape, weights: &[f32]) -> Result<AdapterGrads> {
        if weights.len() != tape.counts.len() {
            return Err(AgentError::Training(format!(
                "{} loss weights for {} completions",
                weights.len(),
                tape.counts.len()
            )));
        }
        let d = self.config.hidden_size;
        let rows = tape.rows;
        let mut g_tok = Vec::with_capacity(tape.targets.len());
        for (&n, &w) in tape.counts.iter().zip(weights) {
            g_tok.extend(std::iter::repeat_n(w, n));
        }
        let d_normed = self.head().backward(tape.probs, &tape.targets, &g_tok);
        let mut d_picked = vec![0f32; d_normed.len()];
        self.final_norm
            .backward_into(&tape.picked, &d_normed, &mut d_picked);
        // Rows picked twice (a prompt's last row starts each of its completions) add up.
        let mut dx = vec![0f32; rows * d];
        for (i, &r) in tape.pick.iter().enumerate() {
            for (a, b) in dx[r * d..(r + 1) * d]
                .iter_mut()
                .zip(&d_picked[i * d..(i + 1) * d])
            {
                *a += b;
            }
        }
        let mut grads = AdapterGrads::new();
        let inverse = Rope {
            inverse: !tape.rope.inverse,
            ..tape.rope.clone()
        };
        for (l, (layer, t)) in self.layers.iter().zip(tape.layers).enumerate().rev() {
            let mut back = |stack: &Stack, p: ProjTape, g: &[f32]| -> Vec<f32> {
                let lora = match (&p.lora, &p.h) {
                    (Some((s, _)), Some(h)) => Some((s, h.as_slice())),
                    _ => None,
                };
                let (dx, lg) = stack.frozen.backward(g, rows, &p.input, lora);
                if let (Some(LoraGrads { a, b }), Some((s, with))) = (lg, &p.lora) {
                    split_grads(&mut grads, l, s, with, &a, &b);
                }
                dx
            };
            // dx is the gradient of this layer's output: down's output and the residual.
            let d_act = back(&layer.down, t.down, &dx);
            let inter = t.gu.len() / rows.max(1) / 2;
            let d_gu = swiglu_backward(&t.gu, &d_act, inter);
            let d_h2 = back(&layer.gate_up, t.gate_up, &d_gu);
            layer.ffn_norm.backward_into(&t.mid, &d_h2, &mut dx);
            // dx is now the gradient of `mid`: o's output and the residual.
            let d_attn = back(&layer.o, t.o, &dx);
            let d_roped = tape.attention.backward(&t.roped, &d_attn, rows);
            let d_qkv = inverse.apply(&d_roped, d_roped.len() / rows.max(1));
            let d_h1 = back(&layer.qkv, t.qkv, &d_qkv);
            layer.attn_norm.backward_into(&t.x, &d_h1, &mut dx);
        }
        Ok(grads)
    }
}

/// `a + b`, element-wise, split across threads by fixed chunks.
fn added(a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; a.len()];
    out.par_chunks_mut(4096)
        .zip(a.par_chunks(4096).zip(b.par_chunks(4096)))
        .for_each(|(o, (a, b))| {
            for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
                *o = a + b;
            }
        });
    out
}

/// Splits a stack's stacked LoRA gradients into each target's `(A, B)`.
fn split_grads(
    grads: &mut AdapterGrads,
    layer: usize,
    s: &StackLora,
    with: &[Target],
    da: &[f32],
    db: &[f32],
) {
    let a_len = da.len() / with.len();
    let mut b_off = 0;
    for (i, (&t, &(_, width))) in with.iter().zip(&s.blocks).enumerate() {
        let b_len = width * s.rank;
        grads.insert(
            (layer, t),
            (
                da[i * a_len..(i + 1) * a_len].to_vec(),
                db[b_off..b_off + b_len].to_vec(),
            ),
        );
        b_off += b_len;
    }
}
