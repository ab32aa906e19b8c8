//! An interleaved weight layout for CPUs with AVX-VNNI: eight output rows per tile,
//! each 32-bit lane holding four consecutive quants of one row, so one `vpdpbusd`
//! multiplies four activations (broadcast) into eight rows at once, and scales and
//! minimums apply to eight rows with one vector op. The per-row layout in
//! [`crate::kernels`] does one row per vector and needs a horizontal sum per row.
//!
//! Each output element still depends only on its own weight row and activation row.

use crate::blocks::{Acts, BLOCK, BlockKind};

/// Rows per tile.
pub(crate) const TILE: usize = 8;

/// A weight matrix in 8-row tiles. Per tile and block: 8 scales, 8 minimums (Q8_0
/// stores its quants offset by +128 as unsigned, with minimum `-128·d`), then the
/// quants as 32-byte groups, lane r = four bytes of row r.
#[derive(Debug, Clone)]
pub(crate) struct TileWeight {
    kind: BlockKind,
    kb: usize,
    d: Vec<f32>,
    m: Vec<f32>,
    q: Vec<u8>,
}

/// 32-byte groups per block.
fn groups(kind: BlockKind) -> usize {
    match kind {
        BlockKind::Q4_1 => 4,
        BlockKind::Q8_0 => 8,
    }
}

impl TileWeight {
    /// Builds tiles from per-row scales, minimums (Q4_1 only) and quants.
    pub(crate) fn from_rows(
        kind: BlockKind,
        n: usize,
        k: usize,
        d: &[f32],
        m: &[f32],
        q: &[u8],
    ) -> Self {
        assert!(n.is_multiple_of(TILE));
        let kb = k / BLOCK;
        let qb = match kind {
            BlockKind::Q4_1 => 16,
            BlockKind::Q8_0 => 32,
        };
        let tiles = n / TILE;
        let mut td = Vec::with_capacity(n * kb);
        let mut tm = Vec::with_capacity(n * kb);
        let mut tq = Vec::with_capacity(n * kb * groups(kind) * 4);
        for t in 0..tiles {
            for b in 0..kb {
                for r in 0..TILE {
                    let i = (t * TILE + r) * kb + b;
                    td.push(d[i]);
                    tm.push(match kind {
                        BlockKind::Q4_1 => m[i],
                        BlockKind::Q8_0 => -128.0 * d[i],
                    });
                }
                for g in 0..groups(kind) {
                    for r in 0..TILE {
                        let i = (t * TILE + r) * kb + b;
                        let src = &q[i * qb + 4 * g..i * qb + 4 * g + 4];
                        match kind {
                            // Byte j: low nibble = quant 4g+j, high nibble = quant 16+4g+j.
                            BlockKind::Q4_1 => tq.extend_from_slice(src),
                            BlockKind::Q8_0 => tq.extend(src.iter().map(|v| v ^ 0x80)),
                        }
                    }
                }
            }
        }
        Self {
            kind,
            kb,
            d: td,
            m: tm,
            q: tq,
        }
    }

    /// Row `row` dequantized into `out`.
    pub(crate) fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        let (t, lane) = (row / TILE, row % TILE);
        let gs = groups(self.kind);
        for b in 0..self.kb {
            let tb = t * self.kb + b;
            let (d, m) = (self.d[tb * TILE + lane], self.m[tb * TILE + lane]);
            let o = &mut out[b * BLOCK..(b + 1) * BLOCK];
            for g in 0..gs {
                let at = (tb * gs + g) * 32 + lane * 4;
                for j in 0..4 {
                    let v = self.q[at + j];
                    match self.kind {
                        BlockKind::Q4_1 => {
                            o[4 * g + j] = d * (v & 15) as f32 + m;
                            o[16 + 4 * g + j] = d * (v >> 4) as f32 + m;
                        }
                        BlockKind::Q8_0 => o[4 * g + j] = d * v as f32 + m,
                    }
                }
            }
        }
    }

    /// Computes tile `t` (rows `8t..8t+8`) for every activation row into `dst`
    /// (`m × n`, row-major) through `dst_ptr`.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and AVX-VNNI; `dst_ptr` must point to `m × n` floats
    /// and no other thread may write rows `8t..8t+8` of any activation row.
    pub(crate) unsafe fn run_tile(&self, t: usize, acts: &Acts, n: usize, dst_ptr: *mut f32) {
        let m = acts.rows();
        let mut i = 0;
        // SAFETY: forwarded from the caller.
        unsafe {
            while i + 4 <= m {
                x86::tile::<4>(self, t, acts, [i, i + 1, i + 2, i + 3], n, dst_ptr);
                i += 4;
            }
            while i < m {
                x86::tile::<1>(self, t, acts, [i], n, dst_ptr);
                i += 1;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{TILE, TileWeight, groups};
    use crate::blocks::{Acts, BLOCK, BlockKind};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma,avxvnni")]
    pub(super) unsafe fn tile<const R: usize>(
        w: &TileWeight,
        t: usize,
        acts: &Acts,
        ars: [usize; R],
        n: usize,
        dst: *mut f32,
    ) {
        let kb = w.kb;
        let gs = groups(w.kind);
        let q4 = w.kind == BlockKind::Q4_1;
        let mask = _mm256_set1_epi8(0x0F);
        let (ad, as_, aq) = acts.parts();
        let mut acc = [_mm256_setzero_ps(); R];
        let mut acc_min = [_mm256_setzero_ps(); R];
        for b in 0..kb {
            let tb = t * kb + b;
            // SAFETY: tb indexes this matrix's tiles; act rows hold `kb` blocks each.
            unsafe {
                let dv = _mm256_loadu_ps(w.d.as_ptr().add(tb * TILE));
                let mv = _mm256_loadu_ps(w.m.as_ptr().add(tb * TILE));
                let qp = w.q.as_ptr().add(tb * gs * 32);
                let mut ops = [_mm256_setzero_si256(); 8];
                if q4 {
                    for g in 0..4 {
                        let v = _mm256_loadu_si256(qp.add(g * 32) as *const __m256i);
                        ops[g] = _mm256_and_si256(v, mask);
                        ops[g + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
                    }
                } else {
                    for (g, op) in ops.iter_mut().enumerate() {
                        *op = _mm256_loadu_si256(qp.add(g * 32) as *const __m256i);
                    }
                }
                for r in 0..R {
                    let ai = ars[r] * kb + b;
                    let xp = aq.as_ptr().add(ai * BLOCK) as *const i32;
                    // Operand g multiplies activations 4g..4g+4 (both layouts order
                    // Q4_1's high nibbles as quants 16.. = operands 4..8).
                    let mut s0 = _mm256_setzero_si256();
                    let mut s1 = _mm256_setzero_si256();
                    for g in (0..8).step_by(2) {
                        s0 = _mm256_dpbusd_avx_epi32(
                            s0,
                            ops[g],
                            _mm256_set1_epi32(xp.add(g).read_unaligned()),
                        );
                        s1 = _mm256_dpbusd_avx_epi32(
                            s1,
                            ops[g + 1],
                            _mm256_set1_epi32(xp.add(g + 1).read_unaligned()),
                        );
                    }
                    let isum = _mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1));
                    let scale = _mm256_mul_ps(dv, _mm256_set1_ps(*ad.get_unchecked(ai)));
                    acc[r] = _mm256_fmadd_ps(scale, isum, acc[r]);
                    acc_min[r] =
                        _mm256_fmadd_ps(mv, _mm256_set1_ps(*as_.get_unchecked(ai)), acc_min[r]);
                }
            }
        }
        let _ = gs;
        for r in 0..R {
            let v = _mm256_add_ps(acc[r], acc_min[r]);
            // SAFETY: row ars[r] < m and columns 8t..8t+8 < n, per the caller.
            unsafe { _mm256_storeu_ps(dst.add(ars[r] * n + t * TILE), v) };
        }
    }
}
