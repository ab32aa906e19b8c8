//! Quantized matmul kernels for the GGUF block formats SmolLM2 ships in (Q4_1 layers,
//! Q8_0 embedding/output). candle 0.11's Q4_1 dot product is scalar; here the blocks
//! are repacked at load time into a layout without f16 scales (per-row f32 scale and
//! minimum arrays, then the packed quants), and the dot products use AVX-VNNI or
//! AVX2+FMA when the CPU has them (detected at run time), or a portable scalar loop.
//!
//! Every output element is computed from its own weight row and its own activation row
//! in a fixed order, so a row's result never depends on what else is batched with it.

use crate::blocks::{Acts, BLOCK, BlockKind};
use crate::tiles::{TILE, TileWeight};
use half::f16;
use rayon::prelude::*;

/// A weight matrix `(n, k)` repacked for the kernels: f32 scales and minimums per
/// block, quants contiguous per row.
#[derive(Debug, Clone)]
pub(crate) struct PackedWeight {
    kind: BlockKind,
    n: usize,
    k: usize,
    d: Vec<f32>,
    m: Vec<f32>,
    q: Vec<u8>,
    /// The 8-row interleaved layout, used instead of `d`/`m`/`q` on AVX-VNNI CPUs.
    tiles: Option<TileWeight>,
}

#[inline(always)]
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

impl PackedWeight {
    /// Repacks GGUF block bytes of an `(n, k)` matrix in the best layout for this CPU.
    pub(crate) fn from_gguf_bytes(kind: BlockKind, n: usize, k: usize, bytes: &[u8]) -> Self {
        let tiled = level_has_vnni() && n.is_multiple_of(TILE);
        Self::with_layout(kind, n, k, bytes, tiled)
    }

    /// Repacks GGUF block bytes of an `(n, k)` matrix, per row or in 8-row tiles.
    pub(crate) fn with_layout(
        kind: BlockKind,
        n: usize,
        k: usize,
        bytes: &[u8],
        tiled: bool,
    ) -> Self {
        assert!(k.is_multiple_of(BLOCK));
        let blocks = n * k / BLOCK;
        assert_eq!(bytes.len(), blocks * kind.file_block_bytes());
        let mut d = Vec::with_capacity(blocks);
        let mut m = Vec::new();
        let mut q = Vec::with_capacity(blocks * kind.quant_bytes());
        for b in bytes.chunks_exact(kind.file_block_bytes()) {
            d.push(f16_at(b, 0));
            match kind {
                BlockKind::Q4_1 => {
                    m.push(f16_at(b, 2));
                    q.extend_from_slice(&b[4..20]);
                }
                BlockKind::Q8_0 => q.extend_from_slice(&b[2..34]),
            }
        }
        if tiled {
            let tiles = TileWeight::from_rows(kind, n, k, &d, &m, &q);
            return Self {
                kind,
                n,
                k,
                d: Vec::new(),
                m: Vec::new(),
                q: Vec::new(),
                tiles: Some(tiles),
            };
        }
        Self {
            kind,
            n,
            k,
            d,
            m,
            q,
            tiles: None,
        }
    }

    /// Output rows.
    pub(crate) fn rows(&self) -> usize {
        self.n
    }

    /// Input width.
    pub(crate) fn cols(&self) -> usize {
        self.k
    }

    /// Row `r` dequantized into `out` (length k).
    pub(crate) fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        if let Some(t) = &self.tiles {
            return t.dequantize_row(r, out);
        }
        let kb = self.k / BLOCK;
        let qb = self.kind.quant_bytes();
        for b in 0..kb {
            let i = r * kb + b;
            let d = self.d[i];
            let q = &self.q[i * qb..(i + 1) * qb];
            let o = &mut out[b * BLOCK..(b + 1) * BLOCK];
            match self.kind {
                BlockKind::Q4_1 => {
                    let m = self.m[i];
                    for j in 0..16 {
                        o[j] = d * (q[j] & 15) as f32 + m;
                        o[j + 16] = d * (q[j] >> 4) as f32 + m;
                    }
                }
                BlockKind::Q8_0 => {
                    for (o, v) in o.iter_mut().zip(q) {
                        *o = d * (*v as i8) as f32;
                    }
                }
            }
        }
    }

    /// The whole matrix dequantized, row-major.
    pub(crate) fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.n * self.k];
        for (r, row) in out.chunks_exact_mut(self.k).enumerate() {
            self.dequantize_row(r, row);
        }
        out
    }
}

fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn dot_scalar(w: &PackedWeight, row: usize, acts: &Acts, ar: usize) -> f32 {
    let kb = acts.kb;
    let qb = w.kind.quant_bytes();
    let mut sum = 0f32;
    for b in 0..kb {
        let wi = row * kb + b;
        let ai = ar * kb + b;
        let wq = &w.q[wi * qb..(wi + 1) * qb];
        let xq = &acts.q[ai * BLOCK..(ai + 1) * BLOCK];
        let mut isum = 0i32;
        match w.kind {
            BlockKind::Q4_1 => {
                for j in 0..16 {
                    isum += (wq[j] & 15) as i32 * xq[j] as i32;
                    isum += (wq[j] >> 4) as i32 * xq[j + 16] as i32;
                }
            }
            BlockKind::Q8_0 => {
                for j in 0..BLOCK {
                    isum += (wq[j] as i8) as i32 * xq[j] as i32;
                }
            }
        }
        sum += w.d[wi] * acts.d[ai] * isum as f32;
    }
    if w.kind == BlockKind::Q4_1 {
        sum += dot_f32(
            &w.m[row * kb..(row + 1) * kb],
            &acts.s[ar * kb..(ar + 1) * kb],
        );
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Acts, BLOCK, PackedWeight, dot_f32};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
    }

    #[target_feature(enable = "avx2,fma")]
    fn dot_avx2(w: __m256i, x: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1))
    }

    #[target_feature(enable = "avx2,fma,avxvnni")]
    fn dot_vnni(w: __m256i, x: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), w, x)
    }

    macro_rules! tile {
        ($name:ident, $feat:literal, $dot:ident) => {
            /// Dot products of weight row `row` with activation rows `ars`.
            #[target_feature(enable = $feat)]
            pub(super) unsafe fn $name<const R: usize, const Q8: bool>(
                w: &PackedWeight,
                row: usize,
                acts: &Acts,
                ars: [usize; R],
                out: &mut [f32; R],
            ) {
                let kb = acts.kb;
                let wd = &w.d[row * kb..(row + 1) * kb];
                let mask = _mm256_set1_epi8(0x0F);
                let shifts = _mm256_set_epi32(4, 4, 4, 4, 0, 0, 0, 0);
                let qb = if Q8 { 32 } else { 16 };
                let wq = w.q[row * kb * qb..(row + 1) * kb * qb].as_ptr();
                let xq = acts.q.as_ptr();
                let xd = acts.d.as_ptr();
                // SAFETY (all loads below): b < kb, so reads stay inside this weight row's
                // quants and inside each activation row's `kb` blocks.
                let unpack = |b: usize| -> (__m256i, __m256i) {
                    unsafe {
                        if Q8 {
                            let q = _mm256_loadu_si256(wq.add(b * 32) as *const __m256i);
                            (_mm256_sign_epi8(q, q), q)
                        } else {
                            let q = _mm256_broadcastsi128_si256(_mm_loadu_si128(
                                wq.add(b * 16) as *const __m128i
                            ));
                            let v = _mm256_and_si256(_mm256_srlv_epi32(q, shifts), mask);
                            (v, v)
                        }
                    }
                };
                let term = |acc: __m256, wv: (__m256i, __m256i), ai: usize, wdb: f32| -> __m256 {
                    unsafe {
                        let xv = _mm256_loadu_si256(xq.add(ai * BLOCK) as *const __m256i);
                        let xv = if Q8 { _mm256_sign_epi8(xv, wv.1) } else { xv };
                        let p = _mm256_cvtepi32_ps($dot(wv.0, xv));
                        _mm256_fmadd_ps(_mm256_set1_ps(wdb * *xd.add(ai)), p, acc)
                    }
                };
                let mut acc0 = [_mm256_setzero_ps(); R];
                let mut acc1 = [_mm256_setzero_ps(); R];
                let mut b = 0;
                while b + 2 <= kb {
                    let w0 = unpack(b);
                    let w1 = unpack(b + 1);
                    for r in 0..R {
                        let ai = ars[r] * kb + b;
                        acc0[r] = term(acc0[r], w0, ai, wd[b]);
                        acc1[r] = term(acc1[r], w1, ai + 1, wd[b + 1]);
                    }
                    b += 2;
                }
                if b < kb {
                    let w0 = unpack(b);
                    for r in 0..R {
                        let ai = ars[r] * kb + b;
                        acc0[r] = term(acc0[r], w0, ai, wd[b]);
                    }
                }
                for r in 0..R {
                    let mut v = hsum(_mm256_add_ps(acc0[r], acc1[r]));
                    if !Q8 {
                        let ar = ars[r];
                        v += dot_f32(
                            &w.m[row * kb..(row + 1) * kb],
                            &acts.s[ar * kb..(ar + 1) * kb],
                        );
                    }
                    out[r] = v;
                }
            }
        };
    }

    tile!(tile_avx2, "avx2,fma", dot_avx2);
    tile!(tile_vnni, "avx2,fma,avxvnni", dot_vnni);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Vnni,
}

fn level_has_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        level() == Level::Vnni
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn level() -> Level {
    static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        match x86_tier(|| std::is_x86_feature_detected!("avxvnni")) {
            Tier::Scalar => Level::Scalar,
            Tier::Avx2 => Level::Avx2,
            Tier::Wider => Level::Vnni,
        }
        #[cfg(not(target_arch = "x86_64"))]
        Level::Scalar
    })
}

/// An x86 CPU's kernel tier, shared by the decode kernels and the trainer's products.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Tier {
    Scalar,
    /// AVX2 and FMA.
    Avx2,
    /// AVX2 and FMA plus the wider extension the caller asked about.
    Wider,
}

/// The best tier this CPU runs, `wider` telling whether it has the caller's wider
/// extension; `RLFC_KERNEL=scalar|avx2` forces a slower tier, to test every path.
#[cfg(target_arch = "x86_64")]
pub(crate) fn x86_tier(wider: fn() -> bool) -> Tier {
    let forced = std::env::var("RLFC_KERNEL").unwrap_or_default();
    if forced == "scalar" {
        return Tier::Scalar;
    }
    let avx2 = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
    if avx2 && forced != "avx2" && wider() {
        Tier::Wider
    } else if avx2 {
        Tier::Avx2
    } else {
        Tier::Scalar
    }
}

/// Name of the kernel path this CPU takes, for benchmark reports.
pub fn kernel_name() -> &'static str {
    match level() {
        Level::Scalar => "scalar",
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => "avx2+fma",
        #[cfg(target_arch = "x86_64")]
        Level::Vnni => "avx-vnni",
    }
}

/// All activation rows against one weight row, into `out[i]`.
fn weight_row(w: &PackedWeight, row: usize, acts: &Acts, out: &mut [f32]) {
    let m = out.len();
    #[cfg(target_arch = "x86_64")]
    {
        let lv = level();
        if lv != Level::Scalar {
            macro_rules! run {
                ($r:literal, $ars:expr, $o:expr) => {
                    // SAFETY: the CPU has the features `lv` names; shapes were checked.
                    unsafe {
                        match (lv == Level::Vnni, w.kind == BlockKind::Q8_0) {
                            (true, false) => x86::tile_vnni::<$r, false>(w, row, acts, $ars, $o),
                            (true, true) => x86::tile_vnni::<$r, true>(w, row, acts, $ars, $o),
                            (false, false) => x86::tile_avx2::<$r, false>(w, row, acts, $ars, $o),
                            (false, true) => x86::tile_avx2::<$r, true>(w, row, acts, $ars, $o),
                        }
                    }
                };
            }
            let mut i = 0;
            while i + 4 <= m {
                let mut o = [0f32; 4];
                run!(4, [i, i + 1, i + 2, i + 3], &mut o);
                out[i..i + 4].copy_from_slice(&o);
                i += 4;
            }
            while i < m {
                let mut o = [0f32; 1];
                run!(1, [i], &mut o);
                out[i] = o[0];
                i += 1;
            }
            return;
        }
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = dot_scalar(w, row, acts, i);
    }
}

struct SendPtr(*mut f32);
// SAFETY: workers write disjoint output elements.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    fn get(&self) -> *mut f32 {
        self.0
    }
}

/// For each weight `ws[j]` (all with input width `k`), `outs[j] (m×n_j) = x (m×k) · Wⱼᵀ`.
/// The activations are quantized once and the rows of all weights share one parallel pass.
pub(crate) fn matmul_many(ws: &[&PackedWeight], x: &[f32], k: usize) -> Vec<Vec<f32>> {
    let m = x.len() / k;
    assert_eq!(x.len(), m * k);
    for w in ws {
        assert_eq!(w.k, k, "weight input width");
    }
    let acts = Acts::quantize(x, k);
    debug_assert_eq!(acts.rows(), m);
    let mut outs: Vec<Vec<f32>> = ws.iter().map(|w| vec![0f32; m * w.n]).collect();
    let ptrs: Vec<SendPtr> = outs.iter_mut().map(|o| SendPtr(o.as_mut_ptr())).collect();
    let threads = rayon::current_num_threads().max(1);
    let total: usize = ws.iter().map(|w| w.n).sum();
    // Chunks are whole tiles (multiples of 8 rows).
    let chunk = total
        .div_ceil(threads * 4)
        .clamp(16, 2048)
        .next_multiple_of(TILE);
    // Chunks never straddle two weights.
    let mut jobs = Vec::new();
    for (j, w) in ws.iter().enumerate() {
        let mut s = 0;
        while s < w.n {
            jobs.push((j, s, (s + chunk).min(w.n)));
            s += chunk;
        }
    }
    let work = |&(j, s, e): &(usize, usize, usize)| {
        let w = ws[j];
        if let Some(tw) = &w.tiles {
            for t in s / TILE..e.div_ceil(TILE) {
                // SAFETY: tiles exist only when AVX-VNNI was detected; outs[j] is m×n_j and
                // tile t's columns belong to this job only.
                unsafe { tw.run_tile(t, &acts, w.n, ptrs[j].get()) };
            }
            return;
        }
        let mut col = vec![0f32; m];
        for row in s..e {
            weight_row(w, row, &acts, &mut col);
            for (i, v) in col.iter().enumerate() {
                // SAFETY: row < n_j and i < m; each (j, row) belongs to one job only.
                unsafe { *ptrs[j].get().add(i * w.n + row) = *v };
            }
        }
    };
    if jobs.len() == 1 || threads == 1 {
        jobs.iter().for_each(work);
    } else {
        jobs.par_iter().for_each(work);
    }
    outs
}

#[cfg(test)]
#[path = "kernels_tests.rs"]
mod tests;
