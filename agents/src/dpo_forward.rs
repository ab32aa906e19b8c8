//! The DPO trainer's differentiable forward pass over the frozen base model.
//!
//! A batch is packed row after row into one `(tokens, hidden)` matrix, so each
//! projection is one large matmul. A pair's chosen and rejected answers share one copy
//! of its prompt: the prompt's rows are computed once and both answers attend to them,
//! which is exact under causal attention and saves the prompt's share of the work. The
//! quantized base weights are dequantized once per run to f32 (QLoRA: stored quantized,
//! computed dequantized). Every layer runs through the fused ops of [`crate::dpo_ops`].

use crate::dpo_ops::{
    FrozenLora, HeadLogProb, PackedAttention, PromptGroup, RmsNorm, Rope, SwiGlu,
};
use crate::error::{AgentError, Result};
use crate::gguf::{Architecture, ModelConfig};
use crate::linear::BaseLinear;
use crate::lora::{LoraAdapter, Target};
use crate::model::Model;
use candle_core::{D, Device, Tensor};
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
    w: Arc<Tensor>,
    bias: Option<Arc<Vec<f32>>>,
    targets: Vec<Target>,
}

impl Stack {
    fn new(parts: &[(Target, &BaseLinear)], bias: Option<Vec<f32>>) -> Result<Self> {
        let ws = parts
            .iter()
            .map(|(_, p)| p.dequantize(&Device::Cpu))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            w: Arc::new(Tensor::cat(&ws, 0)?),
            bias: bias.map(Arc::new),
            targets: parts.iter().map(|(t, _)| *t).collect(),
        })
    }

    /// `x · Wᵀ (+ bias)` plus the adapter's updates on these targets.
    fn forward(
        &self,
        cfg: &ModelConfig,
        layer: usize,
        x: &Tensor,
        adapter: Option<&LoraAdapter>,
    ) -> candle_core::Result<Tensor> {
        let mut op = FrozenLora {
            w: self.w.clone(),
            bias: self.bias.clone(),
            blocks: Vec::new(),
            rank: 0,
            scale: 0.0,
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut col = 0;
        for &t in &self.targets {
            let width = t.dims(cfg).0;
            if let Some(p) = adapter.and_then(|ad| ad.pair(layer, t)) {
                op.blocks.push((col, width));
                a.push(p.a.as_tensor().clone());
                b.push(p.b.as_tensor().clone());
            }
            col += width;
        }
        match adapter {
            Some(ad) if !op.blocks.is_empty() => {
                op.rank = ad.config().rank;
                op.scale = ad.config().scale() as f64;
                let (a, b) = (Tensor::cat(&a, 0)?, Tensor::cat(&b, 0)?);
                x.apply_op3(&a, &b, op)
            }
            _ => x.apply_op1(op),
        }
    }
}

struct TrainLayer {
    attn_norm: Arc<Vec<f32>>,
    ffn_norm: Arc<Vec<f32>>,
    qkv: Stack,
    o: Stack,
    gate_up: Stack,
    down: Stack,
}

/// The base model prepared for training: f32 weights, q/k/v and gate/up stacked.
pub(crate) struct TrainBase {
    config: ModelConfig,
    embed: BaseLinear,
    layers: Vec<TrainLayer>,
    final_norm: Arc<Vec<f32>>,
    lm_head: Stack,
    cos: Arc<Vec<f32>>,
    sin: Arc<Vec<f32>>,
}

impl TrainBase {
    /// Dequantizes `model`'s weights once for a training run.
    pub(crate) fn new(model: &Model) -> Result<Self> {
        let cfg = model.config().clone();
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
                attn_norm: Arc::new(h.attn_norm.clone()),
                ffn_norm: Arc::new(h.ffn_norm.clone()),
                qkv: Stack::new(&[p(Target::Q), p(Target::K), p(Target::V)], qkv_bias)?,
                o: Stack::new(&[p(Target::O)], None)?,
                gate_up: Stack::new(&[p(Target::Gate), p(Target::Up)], None)?,
                down: Stack::new(&[p(Target::Down)], None)?,
            });
        }
        Ok(Self {
            embed: model.embed.clone(),
            layers,
            final_norm: Arc::new(model.final_norm_host.clone()),
            lm_head: Stack {
                w: Arc::new(model.lm_head.dequantize(&Device::Cpu)?),
                bias: None,
                targets: Vec::new(),
            },
            cos: Arc::new(model.cos_host.clone()),
            sin: Arc::new(model.sin_host.clone()),
            config: cfg,
        })
    }

    /// Summed log-probability of every completion's tokens (prompt positions masked
    /// out), shape `(completions,)` in packing order; differentiable to `adapter`.
    pub(crate) fn completion_logprobs(
        &self,
        batch: &PackedBatch,
        adapter: Option<&LoraAdapter>,
    ) -> Result<Tensor> {
        let cfg = &self.config;
        let dev = Device::Cpu;
        for g in &batch.groups {
            let longest = g.prompt_len + g.completion_lens.iter().max().copied().unwrap_or(0);
            if longest > cfg.context_length {
                return Err(AgentError::PromptTooLong {
                    prompt_tokens: longest,
                    context: cfg.context_length,
                });
            }
        }
        let eps = cfg.rms_norm_eps;
        let mut positions = Vec::with_capacity(batch.num_tokens());
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
        let norm = |x: &Tensor, w: &Arc<Vec<f32>>| {
            x.apply_op1(RmsNorm {
                weight: w.clone(),
                eps,
            })
        };
        let mut x = self.embed.rows_tensor(&batch.tokens, &dev)?;
        for (l, layer) in self.layers.iter().enumerate() {
            let h = norm(&x, &layer.attn_norm)?;
            let qkv = layer.qkv.forward(cfg, l, &h, adapter)?;
            let qkv = qkv.apply_op1(rope.clone())?;
            let attn = qkv.apply_op1(attention.clone())?;
            x = (x + layer.o.forward(cfg, l, &attn, adapter)?)?;
            let h = norm(&x, &layer.ffn_norm)?;
            let act = layer
                .gate_up
                .forward(cfg, l, &h, adapter)?
                .apply_op1(SwiGlu)?;
            x = (x + layer.down.forward(cfg, l, &act, adapter)?)?;
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
                    pick.push(from as u32);
                    targets.push(batch.tokens[start + i]);
                }
                counts.push(n);
            }
        }
        let n_pick = pick.len();
        let x = x.index_select(&Tensor::from_vec(pick, n_pick, &dev)?, 0)?;
        let x = norm(&x, &self.final_norm)?;
        let lp = x.apply_op1(HeadLogProb::new(self.lm_head.w.clone(), targets))?;
        let mut sums = Vec::with_capacity(counts.len());
        let mut off = 0;
        for n in counts {
            sums.push(lp.narrow(0, off, n)?.sum_keepdim(D::Minus1)?);
            off += n;
        }
        Ok(Tensor::cat(&sums, 0)?)
    }
}
