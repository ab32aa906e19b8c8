//! The DPO trainer's layer arithmetic on plain row-major slices, forward and backward:
//! frozen projection plus LoRA, RMSNorm, SwiGLU, RoPE, causal attention over packed
//! prompt-sharing sequences, and the output head fused with the per-token
//! log-probability. [`crate::dpo_forward`] chains them through the layers and back.
//!
//! Why by hand and not through candle's autograd: candle's matmul backward always
//! computes a weight gradient, which for a frozen base projection is a wasted full-size
//! product; its composite ops save many intermediates; every op's input and output were
//! copied in and out of tensors; and its backprop zero-fills and adds a fresh buffer for
//! every gradient on one thread while the other core waits. Here each product is one
//! call of our own product on borrowed slices ([`matmul`], [`crate::sgemm`]), and LoRA
//! updates and residual gradients are added in place.
//!
//! Determinism: every output value is computed by one task with a fixed loop order.
//! Parallel work is split by rows, or by (prompt group, kv head) for attention, and
//! never reduces across tasks. The product splits output tiles across threads but sums
//! the inner dimension as one fused multiply-add chain in a fixed order, whatever the
//! thread count, the tile shape or the CPU's vector width.

use crate::infer::dot;
use crate::sgemm::Mat;
use crate::sgemm::{Path, sgemm};
use rayon::prelude::*;
use std::sync::Arc;

/// `dst (m×n, rows ld apart, from column col) (+)= beta · lhs (m×k) · rhs (k×n)`: one
/// call of [`sgemm`] on borrowed slices, on this CPU's fastest path and every thread,
/// added to `dst` when `accumulate`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    mkn: (usize, usize, usize),
    lhs: Mat<'_>,
    rhs: Mat<'_>,
    dst: &mut [f32],
    at: (usize, usize),
    beta: f32,
    accumulate: bool,
) {
    let threads = rayon::current_num_threads();
    sgemm(
        mkn,
        lhs,
        rhs,
        dst,
        at,
        beta,
        accumulate,
        Path::for_products(),
        threads,
    );
}

/// The LoRA matrices of one projection stack's targets that carry an update.
pub(crate) struct StackLora {
    /// `(column offset, width)` of each target carrying an update, in stacking order.
    pub blocks: Vec<(usize, usize)>,
    /// The targets' A matrices `(rank, in)` stacked along rows.
    pub a: Vec<f32>,
    /// The targets' B matrices `(width, rank)` stacked along rows.
    pub b: Vec<f32>,
    /// LoRA rank.
    pub rank: usize,
    /// LoRA `alpha / rank`.
    pub scale: f32,
}

/// Gradients of one stack's LoRA matrices, laid out as [`StackLora`]'s `a` and `b`.
pub(crate) struct LoraGrads {
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

/// A frozen base projection `(out, in)` (targets stacked along `out`) with an optional
/// constant bias: `x · Wᵀ (+ bias)`, plus `scale · (x·A_tᵀ)·B_tᵀ` in each LoRA target's
/// column block.
pub(crate) struct Frozen {
    /// Dequantized f32 weight, row-major `(out, in)`.
    pub w: Vec<f32>,
    pub out: usize,
    pub inp: usize,
    /// Constant bias `(out,)`, if the model has one.
    pub bias: Option<Vec<f32>>,
}

impl Frozen {
    /// The projection of `m` rows, and `x · Aᵀ` (kept for the backward) when `lora`.
    pub(crate) fn forward(
        &self,
        x: &[f32],
        m: usize,
        lora: Option<&StackLora>,
    ) -> (Vec<f32>, Option<Vec<f32>>) {
        let (out, k) = (self.out, self.inp);
        let mut y = vec![0f32; m * out];
        matmul(
            (m, k, out),
            Mat::rows(x, k),
            Mat::transposed(&self.w, k),
            &mut y,
            (out, 0),
            1.0,
            false,
        );
        if let Some(b) = &self.bias {
            y.par_chunks_mut(out)
                .for_each(|row| row.iter_mut().zip(b).for_each(|(v, c)| *v += c));
        }
        let Some(l) = lora else {
            return (y, None);
        };
        let (r, hw) = (l.rank, l.rank * l.blocks.len());
        let mut h = vec![0f32; m * hw];
        matmul(
            (m, k, hw),
            Mat::rows(x, k),
            Mat::transposed(&l.a, k),
            &mut h,
            (hw, 0),
            1.0,
            false,
        );
        let mut b_row = 0;
        for (i, &(col, width)) in l.blocks.iter().enumerate() {
            let hi = Mat::rows(&h, hw).skip_cols(i * r);
            let bi = Mat::transposed(&l.b[b_row * r..(b_row + width) * r], r);
            b_row += width;
            matmul((m, r, width), hi, bi, &mut y, (out, col), l.scale, true);
        }
        (y, Some(h))
    }

    /// The input gradient `g·W (+ scale · g_t·B_t·A_t)` of `m` rows and, with `lora`,
    /// its matrices' gradients; `x` and `h` are the forward's input and `x · Aᵀ`.
    pub(crate) fn backward(
        &self,
        g: &[f32],
        m: usize,
        x: &[f32],
        lora: Option<(&StackLora, &[f32])>,
    ) -> (Vec<f32>, Option<LoraGrads>) {
        let (out, k) = (self.out, self.inp);
        let mut dx = vec![0f32; m * k];
        matmul(
            (m, out, k),
            Mat::rows(g, out),
            Mat::rows(&self.w, k),
            &mut dx,
            (k, 0),
            1.0,
            false,
        );
        let Some((l, h)) = lora else {
            return (dx, None);
        };
        let (r, hw) = (l.rank, l.rank * l.blocks.len());
        // gb = scale · [g_t · B_t], (m, hw); db_t = scale · g_tᵀ · h_t, (width, r).
        let mut gb = vec![0f32; m * hw];
        let mut db = vec![0f32; l.b.len()];
        let mut b_row = 0;
        for (i, &(col, width)) in l.blocks.iter().enumerate() {
            let gi = Mat::rows(g, out).skip_cols(col);
            let bi = Mat::rows(&l.b[b_row * r..(b_row + width) * r], r);
            matmul((m, width, r), gi, bi, &mut gb, (hw, i * r), l.scale, false);
            let git = Mat::transposed(g, out);
            let git = Mat { off: col, ..git };
            let hi = Mat::rows(h, hw).skip_cols(i * r);
            matmul(
                (width, m, r),
                git,
                hi,
                &mut db[b_row * r..(b_row + width) * r],
                (r, 0),
                l.scale,
                false,
            );
            b_row += width;
        }
        // dx += gb · A; da = gbᵀ · x.
        matmul(
            (m, hw, k),
            Mat::rows(&gb, hw),
            Mat::rows(&l.a, k),
            &mut dx,
            (k, 0),
            1.0,
            true,
        );
        let mut da = vec![0f32; hw * k];
        matmul(
            (hw, m, k),
            Mat::transposed(&gb, hw),
            Mat::rows(x, k),
            &mut da,
            (k, 0),
            1.0,
            false,
        );
        (dx, Some(LoraGrads { a: da, b: db }))
    }
}

/// RMSNorm of each row with a constant weight.
pub(crate) struct RmsNorm {
    /// Per-channel weight.
    pub weight: Vec<f32>,
    /// Added to the mean square.
    pub eps: f32,
}

impl RmsNorm {
    fn inv(&self, row: &[f32]) -> f32 {
        1.0 / (dot(row, row) / row.len() as f32 + self.eps).sqrt()
    }

    /// The normalised rows.
    pub(crate) fn forward(&self, x: &[f32]) -> Vec<f32> {
        let d = self.weight.len();
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(d)
            .zip(x.par_chunks(d))
            .for_each(|(yr, xr)| {
                let inv = self.inv(xr);
                for ((o, v), w) in yr.iter_mut().zip(xr).zip(&self.weight) {
                    *o = v * inv * w;
                }
            });
        y
    }

    /// Adds the input gradient for output gradient `g` into `dx`.
    pub(crate) fn backward_into(&self, x: &[f32], g: &[f32], dx: &mut [f32]) {
        let d = self.weight.len();
        dx.par_chunks_mut(d)
            .zip(x.par_chunks(d).zip(g.par_chunks(d)))
            .for_each(|(dr, (xr, gr))| {
                let inv = self.inv(xr);
                // y = x·inv·w, inv = (mean x² + eps)^-½: dx = inv·(g·w) − x·inv³/d·Σ(g·w·x).
                let mut s = 0f32;
                for ((gi, wi), xi) in gr.iter().zip(&self.weight).zip(xr) {
                    s = (gi * wi).mul_add(*xi, s);
                }
                let c = inv * inv * inv * s / d as f32;
                for (((o, gi), wi), xi) in dr.iter_mut().zip(gr).zip(&self.weight).zip(xr) {
                    *o += inv * gi * wi - c * xi;
                }
            });
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `silu(gate) · up` over rows `[gate | up]` of width `2 · inter`.
pub(crate) fn swiglu(x: &[f32], inter: usize) -> Vec<f32> {
    let mut y = vec![0f32; x.len() / 2];
    y.par_chunks_mut(inter)
        .zip(x.par_chunks(2 * inter))
        .for_each(|(yr, xr)| {
            let (gate, up) = xr.split_at(inter);
            for ((o, g), u) in yr.iter_mut().zip(gate).zip(up) {
                *o = g * sigmoid(*g) * u;
            }
        });
    y
}

/// The gradient of [`swiglu`]'s input rows for output gradient `g`.
pub(crate) fn swiglu_backward(x: &[f32], g: &[f32], inter: usize) -> Vec<f32> {
    let w = 2 * inter;
    let mut dx = vec![0f32; x.len()];
    dx.par_chunks_mut(w)
        .zip(x.par_chunks(w).zip(g.par_chunks(inter)))
        .for_each(|(dr, (xr, gr))| {
            let (gate, up) = xr.split_at(inter);
            let (dgate, dup) = dr.split_at_mut(inter);
            for i in 0..inter {
                let sg = sigmoid(gate[i]);
                let silu = gate[i] * sg;
                dgate[i] = gr[i] * up[i] * sg * (1.0 + gate[i] * (1.0 - sg));
                dup[i] = gr[i] * silu;
            }
        });
    dx
}

/// One prompt and the completions that continue it, packed contiguously: the prompt's
/// rows first, then each completion's rows.
#[derive(Debug, Clone)]
pub(crate) struct PromptGroup {
    /// First row of the prompt.
    pub start: usize,
    /// Prompt rows.
    pub prompt_len: usize,
    /// Rows of each completion, in packing order.
    pub completion_lens: Vec<usize>,
}

impl PromptGroup {
    /// Rows of the whole group.
    pub(crate) fn rows(&self) -> usize {
        self.prompt_len + self.completion_lens.iter().sum::<usize>()
    }

    /// `(first row, rows, position of the first row)` of each segment: the prompt, then
    /// each completion (whose positions continue after the prompt).
    pub(crate) fn segments(&self) -> Vec<(usize, usize, usize)> {
        let mut v = vec![(self.start, self.prompt_len, 0)];
        let mut row = self.start + self.prompt_len;
        for &n in &self.completion_lens {
            v.push((row, n, self.prompt_len));
            row += n;
        }
        v
    }
}

/// Rotary position embedding of the q and k heads inside packed `[q | k | v]` rows, each
/// row at its own position; v passes through. Its backward is the inverse rotation.
#[derive(Clone)]
pub(crate) struct Rope {
    /// `cos[position][head_dim / 2]`.
    pub cos: Arc<Vec<f32>>,
    /// `sin[position][head_dim / 2]`.
    pub sin: Arc<Vec<f32>>,
    /// Position of each row.
    pub positions: Arc<Vec<usize>>,
    /// Width of a head.
    pub head_dim: usize,
    /// Query plus key heads (the rotated leading columns).
    pub rotated_heads: usize,
    /// Llama GGUF rows rotate adjacent pairs; Qwen2 rotates the two halves.
    pub interleaved: bool,
    /// Rotate backwards (the gradient).
    pub inverse: bool,
}

impl Rope {
    /// The rotation (or, with `inverse`, its gradient) of rows `width` wide.
    pub(crate) fn apply(&self, x: &[f32], width: usize) -> Vec<f32> {
        let (hd, half) = (self.head_dim, self.head_dim / 2);
        let rot = self.rotated_heads * hd;
        let mut out = x.to_vec();
        out.par_chunks_mut(width)
            .zip(self.positions.par_iter())
            .for_each(|(o, &p)| {
                let cos = &self.cos[p * half..(p + 1) * half];
                let sin = &self.sin[p * half..(p + 1) * half];
                for oh in o[..rot].chunks_exact_mut(hd) {
                    for i in 0..half {
                        let (ia, ib) = if self.interleaved {
                            (2 * i, 2 * i + 1)
                        } else {
                            (i, i + half)
                        };
                        let (c, s) = (cos[i], if self.inverse { -sin[i] } else { sin[i] });
                        let (a, b) = (oh[ia], oh[ib]);
                        oh[ia] = a * c - b * s;
                        oh[ib] = a * s + b * c;
                    }
                }
            });
        out
    }
}

/// Causal grouped-query attention over packed `[q | k | v]` rows, output `(rows, q)`:
/// a prompt attends to itself; each completion attends to its prompt and to itself.
#[derive(Clone)]
pub(crate) struct PackedAttention {
    /// The prompt groups, in row order.
    pub groups: Arc<Vec<PromptGroup>>,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Width of a head.
    pub head_dim: usize,
}

impl PackedAttention {
    fn width(&self) -> usize {
        (self.heads + 2 * self.kv_heads) * self.head_dim
    }

    /// Rows of the keys a query at segment-relative index `i` sees, in order.
    fn keys(
        prompt: (usize, usize),
        seg: (usize, usize, usize),
        i: usize,
    ) -> impl Iterator<Item = usize> {
        let shared = if seg.2 == 0 {
            0..0
        } else {
            prompt.0..prompt.0 + prompt.1
        };
        shared.chain(seg.0..seg.0 + i + 1)
    }

    /// Softmax weights of query row `qr` (head `h`) over `keys`, into `p`.
    fn probs(&self, x: &[f32], qr: usize, h: usize, keys: &[usize], p: &mut Vec<f32>) {
        let (hd, w) = (self.head_dim, self.width());
        let g = h / (self.heads / self.kv_heads);
        let koff = self.heads * hd + g * hd;
        let qi = &x[qr * w + h * hd..][..hd];
        let scale = 1.0 / (hd as f32).sqrt();
        p.clear();
        let mut max = f32::NEG_INFINITY;
        for &kr in keys {
            let s = dot(qi, &x[kr * w + koff..][..hd]) * scale;
            max = max.max(s);
            p.push(s);
        }
        let mut sum = 0f32;
        for pj in p.iter_mut() {
            *pj = (*pj - max).exp();
            sum += *pj;
        }
        let inv = 1.0 / sum;
        p.iter_mut().for_each(|pj| *pj *= inv);
    }

    fn tasks(&self, per_group: usize) -> Vec<(usize, usize)> {
        (0..self.groups.len())
            .flat_map(|g| (0..per_group).map(move |h| (g, h)))
            .collect()
    }

    /// Attention output `(rows, heads · head_dim)` of packed `[q | k | v]` rows.
    pub(crate) fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let (hd, w) = (self.head_dim, self.width());
        let qw = self.heads * hd;
        let group = self.heads / self.kv_heads;
        let tasks = self.tasks(self.heads);
        // Each task owns one (prompt group, head) block of the output.
        let blocks: Vec<Vec<f32>> = tasks
            .par_iter()
            .map(|&(gi, h)| {
                let grp = &self.groups[gi];
                let voff = qw + self.kv_heads * hd + (h / group) * hd;
                let mut o = vec![0f32; grp.rows() * hd];
                let (mut p, mut keys) = (Vec::new(), Vec::new());
                for seg in grp.segments() {
                    for i in 0..seg.1 {
                        keys.clear();
                        keys.extend(Self::keys((grp.start, grp.prompt_len), seg, i));
                        self.probs(x, seg.0 + i, h, &keys, &mut p);
                        let oi = &mut o[(seg.0 + i - grp.start) * hd..][..hd];
                        for (&kr, &pj) in keys.iter().zip(&p) {
                            for (a, b) in oi.iter_mut().zip(&x[kr * w + voff..][..hd]) {
                                *a = pj.mul_add(*b, *a);
                            }
                        }
                    }
                }
                o
            })
            .collect();
        let mut out = vec![0f32; rows * qw];
        for (&(gi, h), o) in tasks.iter().zip(&blocks) {
            let grp = &self.groups[gi];
            for r in 0..grp.rows() {
                out[(grp.start + r) * qw + h * hd..][..hd].copy_from_slice(&o[r * hd..][..hd]);
            }
        }
        out
    }

    /// Gradient of the packed `[q | k | v]` rows given the output gradient `dout`.
    pub(crate) fn backward(&self, x: &[f32], dout: &[f32], rows: usize) -> Vec<f32> {
        let (hd, w) = (self.head_dim, self.width());
        let qw = self.heads * hd;
        let group = self.heads / self.kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let tasks = self.tasks(self.kv_heads);
        // One task per (prompt group, kv head): every query that reads a key or value
        // row of this head adds into its gradient inside this task, in a fixed order.
        let blocks: Vec<Vec<f32>> = tasks
            .par_iter()
            .map(|&(gi, g)| {
                let grp = &self.groups[gi];
                let n = grp.rows();
                // Local rows × [dq of the group's heads | dk | dv].
                let lw = (group + 2) * hd;
                let mut d = vec![0f32; n * lw];
                let (koff, voff) = (qw + g * hd, qw + self.kv_heads * hd + g * hd);
                let (mut p, mut dp, mut keys) = (Vec::new(), Vec::new(), Vec::new());
                for hg in 0..group {
                    let h = g * group + hg;
                    for seg in grp.segments() {
                        for i in 0..seg.1 {
                            let qr = seg.0 + i;
                            keys.clear();
                            keys.extend(Self::keys((grp.start, grp.prompt_len), seg, i));
                            self.probs(x, qr, h, &keys, &mut p);
                            let doi = &dout[qr * qw + h * hd..][..hd];
                            dp.clear();
                            let mut dsum = 0f32;
                            for (&kr, &pj) in keys.iter().zip(&p) {
                                let v = dot(doi, &x[kr * w + voff..][..hd]);
                                dsum = pj.mul_add(v, dsum);
                                dp.push(v);
                            }
                            let qi = &x[qr * w + h * hd..][..hd];
                            let ql = qr - grp.start;
                            for ((&kr, &pj), &dpj) in keys.iter().zip(&p).zip(&dp) {
                                let ds = pj * (dpj - dsum) * scale;
                                let kl = kr - grp.start;
                                let kj = &x[kr * w + koff..][..hd];
                                let dq = &mut d[ql * lw + hg * hd..][..hd];
                                for (a, b) in dq.iter_mut().zip(kj) {
                                    *a = ds.mul_add(*b, *a);
                                }
                                let dk = &mut d[kl * lw + group * hd..][..hd];
                                for (a, b) in dk.iter_mut().zip(qi) {
                                    *a = ds.mul_add(*b, *a);
                                }
                                let dv = &mut d[kl * lw + (group + 1) * hd..][..hd];
                                for (a, b) in dv.iter_mut().zip(doi) {
                                    *a = pj.mul_add(*b, *a);
                                }
                            }
                        }
                    }
                }
                d
            })
            .collect();
        let mut dx = vec![0f32; rows * w];
        let lw = (group + 2) * hd;
        for (&(gi, g), d) in tasks.iter().zip(&blocks) {
            let grp = &self.groups[gi];
            for r in 0..grp.rows() {
                let row = &mut dx[(grp.start + r) * w..][..w];
                let src = &d[r * lw..][..lw];
                row[g * group * hd..][..group * hd].copy_from_slice(&src[..group * hd]);
                row[qw + g * hd..][..hd].copy_from_slice(&src[group * hd..][..hd]);
                row[qw + self.kv_heads * hd + g * hd..][..hd]
                    .copy_from_slice(&src[(group + 1) * hd..][..hd]);
            }
        }
        dx
    }
}

/// The output head fused with the log-probability of one target token per row: the
/// logits `x · Wᵀ` go into one buffer that becomes the softmax in place, so the
/// `(rows, vocab)` logits are never copied or kept twice.
pub(crate) struct Head<'a> {
    /// Dequantized head weight, row-major `(vocab, hidden)`.
    pub w: &'a [f32],
    pub vocab: usize,
    pub hidden: usize,
}

impl Head<'_> {
    /// Each row's log-probability of its target and the softmax (for the backward).
    pub(crate) fn forward(&self, x: &[f32], targets: &[u32]) -> (Vec<f32>, Vec<f32>) {
        let (rows, vocab, hidden) = (targets.len(), self.vocab, self.hidden);
        let mut probs = vec![0f32; rows * vocab];
        matmul(
            (rows, hidden, vocab),
            Mat::rows(x, hidden),
            Mat::transposed(self.w, hidden),
            &mut probs,
            (vocab, 0),
            1.0,
            false,
        );
        let lp = probs
            .par_chunks_mut(vocab)
            .zip(targets.par_iter())
            .map(|(p, &t)| {
                let max = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let target = p[t as usize];
                // f32 exponentials, summed in f64 in index order.
                let mut sum = 0f64;
                for pj in p.iter_mut() {
                    *pj = (*pj - max).exp();
                    sum += *pj as f64;
                }
                let inv = (1.0 / sum) as f32;
                p.iter_mut().for_each(|pj| *pj *= inv);
                ((target - max) as f64 - sum.ln()) as f32
            })
            .collect();
        (lp, probs)
    }

    /// The gradient of the hidden rows given each row's log-probability gradient `g`:
    /// `g · (onehot − softmax)`, formed in place in `probs`, times `W`.
    pub(crate) fn backward(&self, mut probs: Vec<f32>, targets: &[u32], g: &[f32]) -> Vec<f32> {
        let (rows, vocab, hidden) = (targets.len(), self.vocab, self.hidden);
        probs
            .par_chunks_mut(vocab)
            .zip(targets.par_iter().zip(g.par_iter()))
            .for_each(|(d, (&t, &gi))| {
                d.iter_mut().for_each(|dj| *dj *= -gi);
                d[t as usize] += gi;
            });
        let mut dx = vec![0f32; rows * hidden];
        matmul(
            (rows, vocab, hidden),
            Mat::rows(&probs, vocab),
            Mat::rows(self.w, hidden),
            &mut dx,
            (hidden, 0),
            1.0,
            false,
        );
        dx
    }
}
