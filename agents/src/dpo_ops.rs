//! Fused candle ops with hand-written backward passes for the DPO trainer's forward
//! pass ([`crate::dpo_forward`]): frozen projection plus LoRA, RMSNorm, SwiGLU, RoPE,
//! causal attention over packed prompt-sharing sequences, and the output head fused with
//! the per-token log-probability.
//!
//! The ops read their inputs where candle keeps them and call `gemm` on the borrowed
//! slices ([`matmul`]): no copy of an input or of a product, and a LoRA update or a
//! second product is added in place into the output. (Copying them through candle
//! tensors cost 14 % of a step on SmolLM2-135M; `docs/benchmarks.md`.)
//!
//! Why our own: candle's matmul backward always computes a weight gradient, which for a
//! frozen base projection is a wasted full-size product; its composite norms, softmax
//! and RoPE build several graph nodes each (every one with a saved activation and a
//! zero-then-add gradient buffer); and its element-wise ops run on a spinning thread
//! pool that burns the second core while gemm wants it. Fused, a layer is ten nodes.
//!
//! Determinism: every output value is computed by one task with a fixed loop order.
//! Parallel work is split by rows, or by (prompt group, kv head) for attention, and
//! never reduces across tasks. Matmuls go through candle's CPU `gemm`, which splits
//! output tiles across threads but sums the inner dimension in one fixed order whatever
//! the thread count.

use crate::infer::dot;
use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

/// The f32 slice a contiguous CPU tensor's layout points at.
fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("training ops take f32 tensors");
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("training ops take contiguous tensors"),
    }
}

/// Host copy of a tensor's values, row-major.
fn host(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// Runs `f` on a tensor's values, row-major: borrowed where the tensor is a contiguous
/// CPU tensor, copied otherwise.
fn view<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    if !t.is_contiguous() {
        return Ok(f(&host(t)?));
    }
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(s) => Ok(f(slice(s, layout)?)),
        _ => candle_core::bail!("training ops run on the CPU"),
    }
}

/// How a product is laid out: `(row stride, column stride)` of a row-major matrix or of
/// its transpose.
#[derive(Clone, Copy)]
enum Form {
    /// The matrix as stored, `(rows, cols)` with rows `cols` apart.
    Plain,
    /// The transpose of a stored `(cols, rows)` matrix.
    Transposed,
}

/// `dst[.., col..col + n] (+)= beta · lhs (m×k) · rhs (k×n)`, all row-major in memory:
/// `lhs` is `(m, k)`; `rhs` is `(k, n)` when [`Form::Plain`] or a stored `(n, k)` used
/// transposed; `dst` rows are `ld` apart and are added to when `accumulate`. One call of
/// candle's `gemm`, on borrowed slices: no copies in or out. `gemm` splits output tiles
/// across threads and sums the inner dimension in one fixed order.
#[allow(clippy::too_many_arguments)]
fn matmul(
    lhs: &[f32],
    (m, k, n): (usize, usize, usize),
    rhs: &[f32],
    form: Form,
    dst: &mut [f32],
    (ld, col): (usize, usize),
    beta: f32,
    accumulate: bool,
) {
    assert!(
        lhs.len() >= m * k && rhs.len() >= k * n,
        "matmul operands too short"
    );
    assert!(
        m == 0 || dst.len() >= (m - 1) * ld + col + n,
        "matmul destination too short"
    );
    if m == 0 || n == 0 {
        return;
    }
    let (rhs_rs, rhs_cs) = match form {
        Form::Plain => (n as isize, 1),
        Form::Transposed => (1, k as isize),
    };
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every read inside `lhs` and `rhs` and every write
    // inside `dst` for the strides given; `dst` is borrowed mutably, so nothing aliases it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().add(col),
            1,
            ld as isize,
            accumulate,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            rhs_cs,
            rhs_rs,
            if accumulate { 1.0 } else { 0.0 },
            beta,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// A frozen base projection `(out, in)` (targets stacked along `out`) with an optional
/// bias, plus the LoRA updates of the targets that have one: as a unary op on `x` it is
/// the bare base; as a ternary op on `(x, A, B)` it adds `scale · (x·A_tᵀ)·B_tᵀ` into
/// each target's column block, with `A` the targets' A matrices stacked along rows and
/// `B` their B matrices stacked along rows.
pub(crate) struct FrozenLora {
    /// Dequantized f32 weight `(out, in)`, outside any graph.
    pub w: Arc<Tensor>,
    /// Constant bias `(out,)`, if the model has one.
    pub bias: Option<Arc<Vec<f32>>>,
    /// `(column offset, width)` of each target carrying an update, in stacking order.
    pub blocks: Vec<(usize, usize)>,
    /// LoRA rank.
    pub rank: usize,
    /// LoRA `alpha / rank`.
    pub scale: f64,
}

impl FrozenLora {
    /// `x · Wᵀ (+ bias)` for `x` of `m` rows.
    fn base(&self, x: &[f32], m: usize) -> candle_core::Result<Vec<f32>> {
        let (out, k) = self.w.dims2()?;
        let mut y = vec![0f32; m * out];
        view(&self.w, |w| {
            matmul(
                x,
                (m, k, out),
                w,
                Form::Transposed,
                &mut y,
                (out, 0),
                1.0,
                false,
            )
        })?;
        if let Some(b) = &self.bias {
            y.par_chunks_mut(b.len())
                .for_each(|row| row.iter_mut().zip(b.iter()).for_each(|(v, c)| *v += c));
        }
        Ok(y)
    }

    /// The base plus each target's update, added in place into its column block.
    fn with_lora(
        &self,
        x: &[f32],
        m: usize,
        a: &[f32],
        b: &[f32],
    ) -> candle_core::Result<Vec<f32>> {
        let mut y = self.base(x, m)?;
        let (out, k) = self.w.dims2()?;
        let r = self.rank;
        let hw = r * self.blocks.len();
        let mut h = vec![0f32; m * hw];
        matmul(
            x,
            (m, k, hw),
            a,
            Form::Transposed,
            &mut h,
            (hw, 0),
            1.0,
            false,
        );
        let mut b_row = 0;
        for (i, &(col, width)) in self.blocks.iter().enumerate() {
            // h's columns i·r.. as an (m, r) matrix with rows hw apart: gather them so the
            // product reads a plain row-major operand.
            let hi: Vec<f32> = h
                .chunks_exact(hw)
                .flat_map(|row| &row[i * r..(i + 1) * r])
                .copied()
                .collect();
            let bi = &b[b_row * r..(b_row + width) * r];
            b_row += width;
            matmul(
                &hi,
                (m, r, width),
                bi,
                Form::Transposed,
                &mut y,
                (out, col),
                self.scale as f32,
                true,
            );
        }
        Ok(y)
    }

    /// `g · W`: the input gradient through the frozen weight, `(m, in)`.
    fn input_grad(&self, g: &[f32], m: usize) -> candle_core::Result<Vec<f32>> {
        let (out, k) = self.w.dims2()?;
        let mut dx = vec![0f32; m * k];
        view(&self.w, |w| {
            matmul(g, (m, out, k), w, Form::Plain, &mut dx, (k, 0), 1.0, false)
        })?;
        Ok(dx)
    }
}

impl CustomOp1 for FrozenLora {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, _) = l.shape().dims2()?;
        let y = self.base(slice(s, l)?, m)?;
        let shape = Shape::from((m, self.w.dim(0)?));
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let m = g.dim(0)?;
        let dx = view(g, |g| self.input_grad(g, m))??;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

impl CustomOp3 for FrozenLora {
    fn name(&self) -> &'static str {
        "frozen-linear-lora"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        as_: &CpuStorage,
        al: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, _) = xl.shape().dims2()?;
        let y = self.with_lora(slice(xs, xl)?, m, slice(as_, al)?, slice(bs, bl)?)?;
        let shape = Shape::from((m, self.w.dim(0)?));
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // Detached: nothing computed here needs a graph of its own.
        let (x, a, b, g) = (x.detach(), a.detach(), b.detach(), g.detach());
        let mut gb = Vec::with_capacity(self.blocks.len());
        let mut db = Vec::with_capacity(self.blocks.len());
        let h = x.matmul(&a.t()?)?;
        let mut b_row = 0;
        for (i, &(col, width)) in self.blocks.iter().enumerate() {
            let gi = g.narrow(1, col, width)?.contiguous()?;
            let bi = b.narrow(0, b_row, width)?;
            b_row += width;
            gb.push(gi.matmul(&bi)?);
            let hi = h.narrow(1, i * self.rank, self.rank)?.contiguous()?;
            db.push((gi.t()?.matmul(&hi)? * self.scale)?);
        }
        let gb = (Tensor::cat(&gb, 1)? * self.scale)?.contiguous()?;
        let m = g.dim(0)?;
        let (_, k) = self.w.dims2()?;
        let hw = gb.dim(1)?;
        // dx = g·W + gb·A, the second product added in place.
        let mut dx = view(&g, |gv| self.input_grad(gv, m))??;
        view(&gb, |gbv| {
            view(&a, |av| {
                matmul(gbv, (m, hw, k), av, Form::Plain, &mut dx, (k, 0), 1.0, true)
            })
        })??;
        let da = gb.t()?.matmul(&x)?;
        let dx = Tensor::from_vec(dx, x.shape(), x.device())?;
        Ok((Some(dx), Some(da), Some(Tensor::cat(&db, 0)?)))
    }
}

/// RMSNorm of each row with a constant weight.
pub(crate) struct RmsNorm {
    /// Per-channel weight.
    pub weight: Arc<Vec<f32>>,
    /// Added to the mean square.
    pub eps: f32,
}

impl RmsNorm {
    fn inv(&self, row: &[f32]) -> f32 {
        1.0 / (dot(row, row) / row.len() as f32 + self.eps).sqrt()
    }
}

impl CustomOp1 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s, l)?;
        let d = self.weight.len();
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(d)
            .zip(x.par_chunks(d))
            .for_each(|(yr, xr)| {
                let inv = self.inv(xr);
                for ((o, v), w) in yr.iter_mut().zip(xr).zip(self.weight.iter()) {
                    *o = v * inv * w;
                }
            });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let dx = view(x, |xv| {
            view(g, |gv| {
                let d = self.weight.len();
                let mut dx = vec![0f32; xv.len()];
                dx.par_chunks_mut(d)
                    .zip(xv.par_chunks(d).zip(gv.par_chunks(d)))
                    .for_each(|(dr, (xr, gr))| {
                        let inv = self.inv(xr);
                        // y = x·inv·w, inv = (mean x² + eps)^-½: dx = inv·(g·w) − x·inv³/d·Σ(g·w·x).
                        let mut s = 0f32;
                        for ((gi, wi), xi) in gr.iter().zip(self.weight.iter()).zip(xr) {
                            s = (gi * wi).mul_add(*xi, s);
                        }
                        let c = inv * inv * inv * s / d as f32;
                        for (((o, gi), wi), xi) in
                            dr.iter_mut().zip(gr).zip(self.weight.iter()).zip(xr)
                        {
                            *o = inv * gi * wi - c * xi;
                        }
                    });
                dx
            })
        })??;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

/// `silu(gate) · up` over rows `[gate | up]` of width `2 · inter`.
pub(crate) struct SwiGlu;

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl CustomOp1 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s, l)?;
        let (m, w) = l.shape().dims2()?;
        let inter = w / 2;
        let mut y = vec![0f32; m * inter];
        y.par_chunks_mut(inter)
            .zip(x.par_chunks(w))
            .for_each(|(yr, xr)| {
                let (gate, up) = xr.split_at(inter);
                for ((o, g), u) in yr.iter_mut().zip(gate).zip(up) {
                    *o = g * sigmoid(*g) * u;
                }
            });
        Ok((CpuStorage::F32(y), Shape::from((m, inter))))
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let w = x.dim(1)?;
        let dx = view(x, |xv| {
            view(g, |gv| {
                let inter = w / 2;
                let mut dx = vec![0f32; xv.len()];
                dx.par_chunks_mut(w)
                    .zip(xv.par_chunks(w).zip(gv.par_chunks(inter)))
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
            })
        })??;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
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
    pub fn rows(&self) -> usize {
        self.prompt_len + self.completion_lens.iter().sum::<usize>()
    }

    /// `(first row, rows, position of the first row)` of each segment: the prompt, then
    /// each completion (whose positions continue after the prompt).
    pub fn segments(&self) -> Vec<(usize, usize, usize)> {
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
    fn apply(&self, x: &[f32], width: usize) -> Vec<f32> {
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

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "packed-rope"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let width = l.shape().dims2()?.1;
        let out = self.apply(slice(s, l)?, width);
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _: &Tensor, _: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let inv = Rope {
            cos: self.cos.clone(),
            sin: self.sin.clone(),
            positions: self.positions.clone(),
            inverse: !self.inverse,
            ..*self
        };
        let width = g.dim(1)?;
        let out = view(g, |gv| inv.apply(gv, width))?;
        Ok(Some(Tensor::from_vec(out, g.shape(), g.device())?))
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

    fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
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
    fn backward(&self, x: &[f32], dout: &[f32], rows: usize) -> Vec<f32> {
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

impl CustomOp1 for PackedAttention {
    fn name(&self) -> &'static str {
        "packed-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let rows = l.shape().dims2()?.0;
        let out = self.forward(slice(s, l)?, rows);
        Ok((
            CpuStorage::F32(out),
            Shape::from((rows, self.heads * self.head_dim)),
        ))
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let rows = x.dim(0)?;
        let dx = view(x, |xv| view(g, |gv| self.backward(xv, gv, rows)))??;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

/// The output head and the log-probability of one target token per row, fused: on
/// hidden rows `(rows, hidden)` it computes the logits `x · Wᵀ` into one buffer, turns
/// that buffer into the softmax in place, and returns each row's target log-probability.
/// The backward turns the kept softmax into `g · (onehot − softmax)` in place and
/// multiplies it by `W`. The `(rows, vocab)` logits are never copied or kept twice.
pub(crate) struct HeadLogProb {
    /// Dequantized head weight `(vocab, hidden)`, outside any graph.
    pub w: Arc<Tensor>,
    /// The token each row scores.
    pub targets: Arc<Vec<u32>>,
    /// Softmax of the forward's logits, taken by the backward.
    pub probs: std::sync::Mutex<Option<Vec<f32>>>,
}

impl HeadLogProb {
    /// Scores `targets`, one per row, through the head `w`.
    pub fn new(w: Arc<Tensor>, targets: Vec<u32>) -> Self {
        Self {
            w,
            targets: Arc::new(targets),
            probs: std::sync::Mutex::new(None),
        }
    }
}

impl CustomOp1 for HeadLogProb {
    fn name(&self) -> &'static str {
        "head-token-logprob"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s, l)?;
        let (rows, hidden) = l.shape().dims2()?;
        let (vocab, _) = self.w.dims2()?;
        if self.targets.len() != rows {
            candle_core::bail!("{} targets for {rows} rows", self.targets.len());
        }
        let mut probs = vec![0f32; rows * vocab];
        view(&self.w, |w| {
            matmul(
                x,
                (rows, hidden, vocab),
                w,
                Form::Transposed,
                &mut probs,
                (vocab, 0),
                1.0,
                false,
            )
        })?;
        let out: Vec<f32> = probs
            .par_chunks_mut(vocab)
            .zip(self.targets.par_iter())
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
        *self.probs.lock().expect("not poisoned") = Some(probs);
        Ok((CpuStorage::F32(out), Shape::from(rows)))
    }

    fn bwd(&self, arg: &Tensor, _: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (rows, hidden) = arg.dims2()?;
        let (vocab, _) = self.w.dims2()?;
        let g = host(grad)?;
        let Some(mut d) = self.probs.lock().expect("not poisoned").take() else {
            candle_core::bail!("head-token-logprob backward ran twice");
        };
        d.par_chunks_mut(vocab)
            .zip(self.targets.par_iter().zip(g.par_iter()))
            .for_each(|(d, (&t, &gi))| {
                d.iter_mut().for_each(|dj| *dj *= -gi);
                d[t as usize] += gi;
            });
        let mut dx = vec![0f32; rows * hidden];
        view(&self.w, |w| {
            matmul(
                &d,
                (rows, vocab, hidden),
                w,
                Form::Plain,
                &mut dx,
                (hidden, 0),
                1.0,
                false,
            )
        })?;
        Ok(Some(Tensor::from_vec(dx, (rows, hidden), arg.device())?))
    }
}
