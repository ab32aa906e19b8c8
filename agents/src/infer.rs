//! The inference forward pass: one pass over the shared quantized base weights for
//! many sequences at once, each with its own KV cache, position and LoRA adapter.
//!
//! Everything here works row by row in a fixed order (quantized matmul, norms, RoPE,
//! attention, LoRA), so a sequence's logits are bit-identical whether it runs alone or
//! batched, and whether its prompt was prefilled in one pass or fed token by token.

use crate::error::{AgentError, Result};
use crate::gguf::Architecture;
use crate::linear::BaseLinear;
use crate::lora::{LoraAdapter, Target};
use crate::model::Model;
use crate::seq::{Logits, Segment};
use candle_core::{Storage, Tensor};

/// A contiguous run of rows belonging to one segment.
#[derive(Clone, Copy)]
struct Span<'a> {
    start: usize,
    len: usize,
    pos: usize,
    adapter: Option<&'a LoraAdapter>,
}

#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] = x[i].mul_add(y[i], acc[i]);
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let h = w.len();
    for (xr, or) in x.chunks_exact(h).zip(out.chunks_exact_mut(h)) {
        let ms = dot(xr, xr) / h as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for ((o, v), g) in or.iter_mut().zip(xr).zip(w) {
            *o = v * inv * g;
        }
    }
}

/// Runs `f` on the f32 contents of a contiguous CPU tensor without copying.
fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(cpu), Some((a, b))) => Ok(f(&cpu.as_slice::<f32>()?[a..b])),
        _ => {
            drop(storage);
            let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
            Ok(f(&v))
        }
    }
}

/// `y += B·h` for a rank known at compile time, so each output is one short vector op.
#[inline]
fn lora_up<const R: usize>(h: &[f32], b: &[f32], y: &mut [f32]) {
    let h: &[f32; R] = h.try_into().expect("rank R");
    for (yo, bo) in y.iter_mut().zip(b.chunks_exact(R)) {
        let bo: &[f32; R] = bo.try_into().expect("chunk of R");
        let mut p = [0f32; R];
        for i in 0..R {
            p[i] = h[i] * bo[i];
        }
        *yo += p.iter().sum::<f32>();
    }
}

/// Adds `scale · B·(A·x)` for each of `rows` rows of `x` (width `in`) into `y` (width `out`).
fn add_lora_rows(
    adapter: &LoraAdapter,
    layer: usize,
    target: Target,
    x: &[f32],
    y: &mut [f32],
    rows: usize,
) -> candle_core::Result<()> {
    let Some(pair) = adapter.pair(layer, target) else {
        return Ok(());
    };
    let scale = adapter.config().scale();
    let r = adapter.config().rank;
    let inp = x.len() / rows;
    let out = y.len() / rows;
    with_slice(pair.a.as_tensor(), |a| {
        with_slice(pair.b.as_tensor(), |b| {
            let mut h = vec![0f32; r];
            for (xr, yr) in x.chunks_exact(inp).zip(y.chunks_exact_mut(out)) {
                for (j, hj) in h.iter_mut().enumerate() {
                    *hj = scale * dot(xr, &a[j * inp..(j + 1) * inp]);
                }
                match r {
                    4 => lora_up::<4>(&h, b, yr),
                    8 => lora_up::<8>(&h, b, yr),
                    16 => lora_up::<16>(&h, b, yr),
                    _ => {
                        for (yo, bo) in yr.iter_mut().zip(b.chunks_exact(r)) {
                            *yo += dot(&h, bo);
                        }
                    }
                }
            }
        })
    })?
}

impl Model {
    /// Base projections of all rows (several targets sharing the input in one pass),
    /// plus each span's LoRA update on its own rows.
    fn project_rows(
        &self,
        layer: usize,
        targets: &[Target],
        x: &[f32],
        rows: usize,
        spans: &[Span<'_>],
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let lins: Vec<&BaseLinear> = targets
            .iter()
            .map(|t| &self.blocks[layer].proj[*t as usize])
            .collect();
        let mut ys = BaseLinear::forward_rows_many(&lins, x, rows)?;
        for ((t, lin), y) in targets.iter().zip(&lins).zip(ys.iter_mut()) {
            let (inp, out) = (lin.in_dim(), lin.out_dim());
            for s in spans {
                if let Some(a) = s.adapter {
                    let xs = &x[s.start * inp..(s.start + s.len) * inp];
                    let ys = &mut y[s.start * out..(s.start + s.len) * out];
                    add_lora_rows(a, layer, *t, xs, ys, s.len)?;
                }
            }
        }
        Ok(ys)
    }

    /// Rotates `rows` rows of `heads` heads in place, row `i` at position `pos + i`.
    fn rope_rows(&self, x: &mut [f32], heads: usize, pos: usize) {
        let hd = self.config.head_dim;
        let half = hd / 2;
        for (i, row) in x.chunks_exact_mut(heads * hd).enumerate() {
            let cos = &self.cos_host[(pos + i) * half..(pos + i + 1) * half];
            let sin = &self.sin_host[(pos + i) * half..(pos + i + 1) * half];
            for head in row.chunks_exact_mut(hd) {
                match self.config.architecture {
                    Architecture::Llama => {
                        for j in 0..half {
                            let (a, b) = (head[2 * j], head[2 * j + 1]);
                            head[2 * j] = a * cos[j] - b * sin[j];
                            head[2 * j + 1] = a * sin[j] + b * cos[j];
                        }
                    }
                    Architecture::Qwen2 => {
                        for j in 0..half {
                            let (a, b) = (head[j], head[j + half]);
                            head[j] = a * cos[j] - b * sin[j];
                            head[j + half] = a * sin[j] + b * cos[j];
                        }
                    }
                }
            }
        }
    }

    /// Causal attention of `len` query rows at positions `pos..` over a cache that
    /// already holds their keys and values.
    fn attend(&self, q: &[f32], keys: &[f32], values: &[f32], pos: usize, out: &mut [f32]) {
        let cfg = &self.config;
        let (nh, nkv, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let (qd, kvd) = (nh * hd, nkv * hd);
        let group = nh / nkv;
        let scale = 1.0 / (hd as f32).sqrt();
        let mut scores = vec![0f32; keys.len() / kvd];
        for (i, (qr, or)) in q.chunks_exact(qd).zip(out.chunks_exact_mut(qd)).enumerate() {
            let total = pos + i + 1;
            for h in 0..nh {
                let kh = h / group;
                let qh = &qr[h * hd..(h + 1) * hd];
                let mut max = f32::NEG_INFINITY;
                for (t, s) in scores[..total].iter_mut().enumerate() {
                    *s = dot(qh, &keys[t * kvd + kh * hd..t * kvd + (kh + 1) * hd]) * scale;
                    max = max.max(*s);
                }
                let mut sum = 0f32;
                for s in scores[..total].iter_mut() {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                let inv = 1.0 / sum;
                let oh = &mut or[h * hd..(h + 1) * hd];
                oh.fill(0.0);
                for (t, s) in scores[..total].iter().enumerate() {
                    let p = s * inv;
                    let vr = &values[t * kvd + kh * hd..t * kvd + (kh + 1) * hd];
                    for (o, v) in oh.iter_mut().zip(vr) {
                        *o = p.mul_add(*v, *o);
                    }
                }
            }
        }
    }

    /// One forward pass over several sequences at once. Each segment's tokens follow
    /// what its cache already holds; caches grow in place. Returns per segment the
    /// logits `(rows, vocab)` of its last position or of every position.
    pub fn forward(&self, segments: &mut [Segment<'_>], logits: Logits) -> Result<Vec<Tensor>> {
        let cfg = &self.config;
        let ctx = cfg.context_length;
        let mut ids = Vec::new();
        let mut spans = Vec::with_capacity(segments.len());
        for s in segments.iter() {
            let end = s.cache.len + s.tokens.len();
            if end > ctx {
                return Err(AgentError::PromptTooLong {
                    prompt_tokens: end,
                    context: ctx,
                });
            }
            if s.tokens.is_empty() {
                return Err(AgentError::InvalidSampling(
                    "a segment has no tokens".into(),
                ));
            }
            if let Some(a) = s.adapter
                && a.num_layers() != cfg.num_layers
            {
                return Err(AgentError::AdapterMismatch {
                    path: "<in memory>".into(),
                    detail: format!(
                        "adapter has {} layers, model has {}",
                        a.num_layers(),
                        cfg.num_layers
                    ),
                });
            }
            spans.push(Span {
                start: ids.len(),
                len: s.tokens.len(),
                pos: s.cache.len,
                adapter: s.adapter,
            });
            ids.extend_from_slice(s.tokens);
        }
        let vocab = cfg.vocab_size;
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= vocab) {
            return Err(AgentError::Encoding(format!(
                "token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        let rows = ids.len();
        let (hidden, qd, kvd) = (cfg.hidden_size, cfg.q_dim(), cfg.kv_dim());
        let eps = cfg.rms_norm_eps;
        let mut x: Vec<f32> = self.embed.rows(&ids)?;
        let mut h = vec![0f32; rows * hidden];
        let mut attn = vec![0f32; rows * qd];
        for (l, block) in self.blocks.iter().enumerate() {
            rms_norm_rows(&x, &block.host.attn_norm, eps, &mut h);
            let mut qkv =
                self.project_rows(l, &[Target::Q, Target::K, Target::V], &h, rows, &spans)?;
            let mut v = qkv.pop().expect("v");
            let mut k = qkv.pop().expect("k");
            let mut q = qkv.pop().expect("q");
            for (buf, bias) in [
                (&mut q, &block.host.q_bias),
                (&mut k, &block.host.k_bias),
                (&mut v, &block.host.v_bias),
            ] {
                if let Some(b) = bias {
                    for row in buf.chunks_exact_mut(b.len()) {
                        row.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                    }
                }
            }
            for (seg, s) in segments.iter_mut().zip(&spans) {
                let qs = &mut q[s.start * qd..(s.start + s.len) * qd];
                let ks = &mut k[s.start * kvd..(s.start + s.len) * kvd];
                self.rope_rows(qs, cfg.num_heads, s.pos);
                self.rope_rows(ks, cfg.num_kv_heads, s.pos);
                if seg.cache.layers.len() <= l {
                    seg.cache.layers.resize_with(l + 1, Default::default);
                }
                let (kc, vc) = &mut seg.cache.layers[l];
                kc.truncate(s.pos * kvd);
                vc.truncate(s.pos * kvd);
                kc.extend_from_slice(ks);
                vc.extend_from_slice(&v[s.start * kvd..(s.start + s.len) * kvd]);
                let out = &mut attn[s.start * qd..(s.start + s.len) * qd];
                self.attend(qs, kc, vc, s.pos, out);
            }
            let o = self
                .project_rows(l, &[Target::O], &attn, rows, &spans)?
                .remove(0);
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            rms_norm_rows(&x, &block.host.ffn_norm, eps, &mut h);
            let mut gate_up =
                self.project_rows(l, &[Target::Gate, Target::Up], &h, rows, &spans)?;
            let mut up = gate_up.pop().expect("up");
            let gate = gate_up.pop().expect("gate");
            for (u, g) in up.iter_mut().zip(&gate) {
                *u *= g / (1.0 + (-g).exp());
            }
            let down = self
                .project_rows(l, &[Target::Down], &up, rows, &spans)?
                .remove(0);
            x.iter_mut().zip(&down).for_each(|(a, b)| *a += b);
        }
        for (seg, s) in segments.iter_mut().zip(&spans) {
            seg.cache.len = s.pos + s.len;
        }
        // Only the rows whose logits are wanted go through the final norm and the head.
        let picked: Vec<(usize, usize)> = match logits {
            Logits::All => spans.iter().map(|s| (s.start, s.len)).collect(),
            Logits::Last => spans.iter().map(|s| (s.start + s.len - 1, 1)).collect(),
        };
        let mut sel = Vec::new();
        for &(start, len) in &picked {
            sel.extend_from_slice(&x[start * hidden..(start + len) * hidden]);
        }
        let n_sel = sel.len() / hidden;
        let mut normed = vec![0f32; sel.len()];
        rms_norm_rows(&sel, &self.final_norm_host, eps, &mut normed);
        let out = self.lm_head.forward_rows(&normed, n_sel)?;
        let all = Tensor::from_vec(out, (n_sel, vocab), self.device())?;
        let mut result = Vec::with_capacity(picked.len());
        let mut at = 0;
        for &(_, len) in &picked {
            result.push(all.narrow(0, at, len)?);
            at += len;
        }
        Ok(result)
    }
}
