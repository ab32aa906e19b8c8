//! The trainer's f32 matrix product, with a result that does not depend on the CPU.
//!
//! Every output element is `Σ_p a[i][p] · b[p][j]` summed as one chain of fused
//! multiply-adds in increasing `p`, starting from zero, and then scaled (and added to the
//! destination) with one more rounding step. Blocking, packing, the register tile, the
//! vector width and the thread count change where the partial sums live, never the order
//! in which they are formed, so the scalar, AVX2 and AVX-512 paths give the same bits on
//! every machine and at every thread count. That is what lets anyone re-run a
//! proof-of-learning record's training on their own CPU and get the same adapter.
//! Two limits: the scalar path's `f32::mul_add` is the platform's `fmaf` where the CPU
//! has no FMA instruction (glibc's is correctly rounded; some other C libraries are
//! not), and NaN payloads are not reproducible (no caller's sums are NaN).
//!
//! The layout is the classic one of BLIS and GotoBLAS: the right operand is packed in
//! `KC × NC` blocks of `NR`-wide column panels, the left one in `MC × KC` blocks of
//! `MR`-tall row panels, and a register-resident `MR × NR` tile runs over each pair of
//! panels. Between `KC` blocks a tile's partial sums wait in a scratch buffer (or in the
//! destination itself when it is not accumulated into), which keeps the chain unbroken.

#[cfg(target_arch = "x86_64")]
use crate::kernels::Tier;
use rayon::prelude::*;

/// A matrix operand inside a slice: element `(i, j)` is `data[off + i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) off: usize,
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major matrix with rows `cols` apart.
    pub(crate) fn rows(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            off: 0,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix whose rows are `cols` apart.
    pub(crate) fn transposed(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            off: 0,
            rs: 1,
            cs: cols,
        }
    }

    /// The same matrix starting `cols` columns to the right.
    pub(crate) fn skip_cols(self, cols: usize) -> Self {
        Self {
            off: self.off + cols * self.cs,
            ..self
        }
    }

    /// The same elements read as the transpose.
    fn t(self) -> Self {
        Self {
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// Whether an `(r, c)` matrix fits inside the slice.
    /// Checked arithmetic: a stride that wraps around cannot pass.
    fn fits(&self, r: usize, c: usize) -> bool {
        r == 0
            || c == 0
            || (r - 1)
                .checked_mul(self.rs)
                .zip((c - 1).checked_mul(self.cs))
                .and_then(|(a, b)| a.checked_add(b)?.checked_add(self.off))
                .is_some_and(|last| last < self.data.len())
    }

    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[self.off + i * self.rs + j * self.cs]
    }
}

/// Depth of one packed block (the `p` range a tile runs over between visits to memory)
/// in products deeper than [`WHOLE_DEPTH`].
const KC: usize = 1024;
/// Products at most this deep run as one block: each tile keeps its sums in registers
/// over the whole depth, and no partial sum goes through memory. (On a 2-core AMD EPYC
/// this took the head's forward from about 290 to 340–400 GFLOP/s and left the layers'
/// products no slower; `rlfc bench products`.)
const WHOLE_DEPTH: usize = 1536;
/// Rows of the left operand packed at once; a multiple of every path's `MR`.
const MC: usize = 96;
/// Columns of the right operand packed at once; a multiple of every path's `NR`.
const NC: usize = 1024;

/// The path tests force on every product of this process (`Path as u8`; 0: none).
#[cfg(test)]
static FORCED: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Forces `path` on the trainer's products in this process (`None`: back to detection),
/// so a test can train once per path. nextest runs each test in its own process; under
/// `cargo test` other tests may see the forced path, which by this module's rule gives
/// them the same bits.
#[cfg(test)]
pub(crate) fn force(path: Option<Path>) {
    FORCED.store(
        path.map_or(0, |p| p as u8),
        std::sync::atomic::Ordering::SeqCst,
    );
}

/// Which register tile this CPU runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Path {
    /// `f32::mul_add`, 4 × 8 tile: any CPU.
    Scalar = 1,
    /// AVX2 + FMA, 6 × 16 tile.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512F, 12 × 32 tile.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Path {
    /// `(MR, NR)`: the register tile's rows and columns.
    fn tile(self) -> (usize, usize) {
        match self {
            Path::Scalar => (4, 8),
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => (6, 16),
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => (12, 32),
        }
    }

    /// The fastest path this CPU runs; `RLFC_KERNEL=scalar|avx2` forces a slower one
    /// (the same switch as the decode kernels').
    pub(crate) fn detect() -> Path {
        static PATH: std::sync::OnceLock<Path> = std::sync::OnceLock::new();
        *PATH.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            match crate::kernels::x86_tier(|| std::is_x86_feature_detected!("avx512f")) {
                Tier::Scalar => Path::Scalar,
                Tier::Avx2 => Path::Avx2,
                Tier::Wider => Path::Avx512,
            }
            #[cfg(not(target_arch = "x86_64"))]
            Path::Scalar
        })
    }

    /// The path's name, for benchmark reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Path::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => "avx2+fma",
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => "avx512f",
        }
    }

    /// Whether this CPU has the instructions the path's kernels use.
    fn runs_here(self) -> bool {
        match self {
            Path::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => {
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => Path::Avx2.runs_here() && std::is_x86_feature_detected!("avx512f"),
        }
    }

    /// The path the trainer's products take: [`Path::detect`]'s, or in this crate's
    /// tests the one [`force`] set.
    pub(crate) fn for_products() -> Path {
        #[cfg(test)]
        {
            let forced = FORCED.load(std::sync::atomic::Ordering::SeqCst);
            if let Some(p) = Path::available().into_iter().find(|p| *p as u8 == forced) {
                return p;
            }
        }
        Path::detect()
    }

    /// Every path this CPU can run, slowest first.
    pub(crate) fn available() -> Vec<Path> {
        let mut out = vec![Path::Scalar];
        #[cfg(target_arch = "x86_64")]
        out.extend([Path::Avx2, Path::Avx512]);
        out.retain(|p| p.runs_here());
        out
    }
}

/// Name of the path the DPO trainer's products take on this CPU, for benchmark reports.
pub fn product_kernel_name() -> &'static str {
    Path::detect().name()
}

/// The product paths this CPU runs, slowest first, by name: `scalar`, then `avx2+fma`
/// and `avx512f` where the CPU has them.
pub fn product_kernels() -> Vec<&'static str> {
    Path::available().into_iter().map(Path::name).collect()
}

/// `out (m × n, row-major) = lhs · rhs`: the DPO trainer's product on the named path
/// (one of [`product_kernels`]) and every rayon thread, for benchmarks and outside
/// checks. `lhs` is `m × k` row-major, or when `lhs_t` its transpose stored row-major
/// (`k × m`); likewise `rhs`, `k × n` or when `rhs_t` `n × k`. Errors name an unknown
/// or unavailable path and a slice whose length does not match its shape.
#[allow(clippy::too_many_arguments)]
pub fn product(
    kernel: &str,
    (m, k, n): (usize, usize, usize),
    lhs: &[f32],
    lhs_t: bool,
    rhs: &[f32],
    rhs_t: bool,
    out: &mut [f32],
) -> Result<(), String> {
    let path = Path::available()
        .into_iter()
        .find(|p| p.name() == kernel)
        .ok_or_else(|| {
            format!(
                "kernel {kernel:?}: this CPU runs {}",
                product_kernels().join(", ")
            )
        })?;
    for (name, len, want) in [
        ("lhs", lhs.len(), m * k),
        ("rhs", rhs.len(), k * n),
        ("out", out.len(), m * n),
    ] {
        if len != want {
            return Err(format!(
                "{name}: {len} floats for a {m}×{k}×{n} product, expected {want}"
            ));
        }
    }
    let a = if lhs_t {
        Mat::transposed(lhs, m)
    } else {
        Mat::rows(lhs, k)
    };
    let b = if rhs_t {
        Mat::transposed(rhs, k)
    } else {
        Mat::rows(rhs, n)
    };
    let threads = rayon::current_num_threads();
    sgemm((m, k, n), a, b, out, (n, 0), 1.0, false, path, threads);
    Ok(())
}

/// Where a tile's sums come from and go to: windows `(pointer, row stride, column
/// stride)` of at least the tile's valid rows and columns.
#[derive(Clone, Copy)]
struct Tile {
    /// The partial sums of the previous `KC` blocks; `None` starts from zero.
    src: Option<(*const f32, usize, usize)>,
    /// Where the sums go.
    dst: (*mut f32, usize, usize),
    /// `Some((beta, accumulate))` on the last block: `dst = beta·sum (+ dst)`;
    /// `None`: `dst = sum` (a partial).
    last: Option<(f32, bool)>,
}

/// `dst (m×n, rows ld apart, from column col) (+)= beta · lhs (m×k) · rhs (k×n)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    (m, k, n): (usize, usize, usize),
    lhs: Mat<'_>,
    rhs: Mat<'_>,
    dst: &mut [f32],
    (ld, col): (usize, usize),
    beta: f32,
    accumulate: bool,
    path: Path,
    threads: usize,
) {
    assert!(
        lhs.fits(m, k) && rhs.fits(k, n),
        "matmul operand out of range"
    );
    // Rows may not overlap (`col + n <= ld`): tasks write disjoint elements only if
    // every output element has its own address.
    assert!(
        m == 0
            || n == 0
            || col.checked_add(n).is_some_and(|end| end <= ld)
                && (m - 1)
                    .checked_mul(ld)
                    .and_then(|r| r.checked_add(col + n))
                    .is_some_and(|end| end <= dst.len()),
        "matmul destination out of range"
    );
    assert!(
        path.runs_here(),
        "the {path:?} product does not run on this CPU"
    );
    let threads = threads.max(1);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // The empty chain is +0.0, scaled like any other sum.
        for r in dst.chunks_mut(ld).take(m) {
            for d in &mut r[col..col + n] {
                *d = if accumulate {
                    beta.mul_add(0.0, *d)
                } else {
                    beta * 0.0
                };
            }
        }
        return;
    }
    // SAFETY: the asserts above keep every `(i, j)` with `i < m`, `j < n` at
    // `col + i·ld + j` inside `dst`, one address each.
    let out = Out(unsafe { dst.as_mut_ptr().add(col) });
    if n <= THIN {
        thin(
            (m, k, n),
            lhs,
            rhs,
            (out, ld, 1),
            beta,
            accumulate,
            path,
            threads,
        );
    } else if m <= THIN {
        // `dstᵀ = rhsᵀ · lhsᵀ`: the same sums, with the thin side on the right.
        thin(
            (n, k, m),
            rhs.t(),
            lhs.t(),
            (out, 1, ld),
            beta,
            accumulate,
            path,
            threads,
        );
    } else {
        core(
            (m, k, n),
            lhs,
            rhs,
            (out, ld, 1),
            beta,
            accumulate,
            path,
            threads,
        );
    }
}

/// Products with at most this many columns (LoRA's rank-wide ones) skip the blocked
/// path: packing the large operand would cost more than the product.
const THIN: usize = 8;

/// `dst (m × n ≤ THIN)`: the right operand packed into one `k × THIN` panel, the left
/// one read in place, rows split across threads. Same sums as [`core`].
#[allow(clippy::too_many_arguments)]
fn thin(
    (m, k, n): (usize, usize, usize),
    lhs: Mat<'_>,
    rhs: Mat<'_>,
    (out, drs, dcs): (Out, usize, usize),
    beta: f32,
    accumulate: bool,
    path: Path,
    threads: usize,
) {
    let mut b = vec![0.0f32; k * THIN];
    for (p, row) in b.chunks_exact_mut(THIN).enumerate() {
        for (j, v) in row.iter_mut().take(n).enumerate() {
            *v = rhs.at(p, j);
        }
    }
    let b = &b[..];
    const ROWS: usize = 48;
    let work = |i0: usize| {
        for i in (i0..(i0 + ROWS).min(m)).step_by(THIN_MR) {
            let rows = THIN_MR.min(m - i);
            let mut acc = [[0.0f32; THIN]; THIN_MR];
            thin_rows(path, lhs, i, rows, k, b, &mut acc);
            for (r, sums) in acc.iter().take(rows).enumerate() {
                for (j, &v) in sums.iter().take(n).enumerate() {
                    // SAFETY: `(i + r, j)` is inside the caller's window, and only
                    // this task writes row `i + r`.
                    unsafe {
                        let d = out.at((i + r) * drs + j * dcs);
                        *d = if accumulate {
                            beta.mul_add(v, *d)
                        } else {
                            beta * v
                        };
                    }
                }
            }
        }
    };
    if threads > 1 && m > ROWS {
        (0..m).into_par_iter().step_by(ROWS).for_each(work);
    } else {
        (0..m).step_by(ROWS).for_each(work);
    }
}

/// Rows of the thin kernel's register tile.
const THIN_MR: usize = 12;

/// The sums of `rows ≤ THIN_MR` rows of `lhs` from row `i` with the packed `k × THIN`
/// panel `b`, each one fused multiply-add chain in increasing `p`.
fn thin_rows(
    path: Path,
    lhs: Mat<'_>,
    i: usize,
    rows: usize,
    k: usize,
    b: &[f32],
    acc: &mut [[f32; THIN]; THIN_MR],
) {
    assert!(lhs.fits(i + rows, k) && b.len() >= k * THIN);
    #[cfg(target_arch = "x86_64")]
    if path != Path::Scalar {
        // SAFETY: AVX2 and FMA are present on both vector paths; the assert keeps
        // every read in bounds.
        unsafe { x86::thin(lhs, i, rows, k, b, acc) };
        return;
    }
    let _ = path;
    for (r, sums) in acc.iter_mut().take(rows).enumerate() {
        for (p, bp) in b[..k * THIN].chunks_exact(THIN).enumerate() {
            let x = lhs.at(i + r, p);
            for (v, &y) in sums.iter_mut().zip(bp) {
                *v = x.mul_add(y, *v);
            }
        }
    }
}

/// The blocked product into the window `dst` = `(pointer, row stride, column stride)`.
#[allow(clippy::too_many_arguments)]
fn core(
    (m, k, n): (usize, usize, usize),
    lhs: Mat<'_>,
    rhs: Mat<'_>,
    (out, drs, dcs): (Out, usize, usize),
    beta: f32,
    accumulate: bool,
    path: Path,
    threads: usize,
) {
    let (mr, nr) = path.tile();
    // Partial sums between KC blocks: in the destination when nothing is added to it,
    // otherwise in a scratch strip `m × min(n, NC)`.
    let kcb = if k <= WHOLE_DEPTH { k } else { KC };
    let strip = k > kcb && accumulate;
    let mut scratch = if strip {
        vec![0.0f32; m * n.min(NC)]
    } else {
        Vec::new()
    };
    let part = Out(scratch.as_mut_ptr());
    let mut bpack = take(&BPACK, kcb * NC.min(n.div_ceil(nr) * nr));
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        let panels = nc.div_ceil(nr);
        for pc in (0..k).step_by(kcb) {
            let kc = kcb.min(k - pc);
            let first = pc == 0;
            let last = pc + kc == k;
            pack_b(path, rhs, pc, kc, jc, nc, nr, &mut bpack, threads);
            // Work items: (row block, run of column panels), enough for every thread.
            let blocks = m.div_ceil(MC);
            let runs = if threads == 1 || blocks % threads == 0 && blocks >= 2 * threads {
                1
            } else {
                (4 * threads).div_ceil(blocks).min(panels)
            };
            let per_run = panels.div_ceil(runs);
            let items: Vec<(usize, usize)> = (0..blocks)
                .flat_map(|b| (0..runs).map(move |r| (b, r)))
                .filter(|&(_, r)| r * per_run < panels)
                .collect();
            let bpack = &*bpack;
            let work = |&(b, r): &(usize, usize)| {
                let mut apack = take(&APACK, MC * kcb);
                let ic = b * MC;
                let mc = MC.min(m - ic);
                pack_a(lhs, ic, mc, pc, kc, mr, &mut apack);
                for jp in r * per_run..((r + 1) * per_run).min(panels) {
                    let jr = jp * nr;
                    let nw = nr.min(nc - jr);
                    let bp = &bpack[jp * nr * kc..(jp + 1) * nr * kc];
                    for ir in (0..mc).step_by(mr) {
                        let mw = mr.min(mc - ir);
                        let ap = &apack[ir * kc..(ir + mr) * kc];
                        let (row, c) = (ic + ir, jc + jr);
                        // SAFETY: inside the destination (and the strip) by the
                        // caller's bounds; tiles of different items are disjoint.
                        let d = (unsafe { out.at(row * drs + c * dcs) }, drs, dcs);
                        let keep = if strip {
                            (unsafe { part.at(row * nc + jr) }, nc, 1)
                        } else {
                            d
                        };
                        let tile = Tile {
                            src: (!first).then_some((keep.0 as *const f32, keep.1, keep.2)),
                            dst: if last { d } else { keep },
                            last: last.then_some((beta, accumulate)),
                        };
                        // SAFETY: as above, for `mw × nw` elements.
                        unsafe { run_tile(path, kc, ap, bp, tile, mw, nw) };
                    }
                }
                APACK.set(apack);
            };
            if threads > 1 && items.len() > 1 {
                items.par_iter().for_each(work);
            } else {
                items.iter().for_each(work);
            }
        }
    }
    BPACK.set(bpack);
}

thread_local! {
    /// Each thread's packing buffers, kept between calls (every element a tile reads
    /// is written by the packing first).
    static APACK: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    static BPACK: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// This thread's buffer, at least `len` long. Taken out while in use, so a product
/// started on this thread while it waits for its tasks gets a buffer of its own.
fn take(key: &'static std::thread::LocalKey<std::cell::RefCell<Vec<f32>>>, len: usize) -> Vec<f32> {
    let mut buf = key.take();
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    buf
}

/// The destination's base pointer, shared by the tasks that write its disjoint tiles.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: every task writes only its own tiles.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// The element `off` places on. A method, so closures capture the whole wrapper
    /// (which is `Send`) rather than its pointer field.
    ///
    /// # Safety
    /// `off` stays inside the allocation the pointer came from.
    unsafe fn at(self, off: usize) -> *mut f32 {
        unsafe { self.0.add(off) }
    }
}

/// Packs `rhs[pc.., jc..]` (`kc × nc`) into `NR`-wide panels, each `kc` rows of `NR`
/// floats, zero beyond `nc`.
#[allow(clippy::too_many_arguments)]
fn pack_b(
    path: Path,
    rhs: Mat<'_>,
    pc: usize,
    kc: usize,
    jc: usize,
    nc: usize,
    nr: usize,
    out: &mut [f32],
    threads: usize,
) {
    let panels = nc.div_ceil(nr);
    let fill = |(jp, panel): (usize, &mut [f32])| {
        let j0 = jc + jp * nr;
        let w = nr.min(nc - jp * nr);
        if rhs.cs == 1 {
            for p in 0..kc {
                let s = rhs.off + (pc + p) * rhs.rs + j0;
                panel[p * nr..p * nr + w].copy_from_slice(&rhs.data[s..s + w]);
                panel[p * nr + w..(p + 1) * nr].fill(0.0);
            }
        } else {
            // Column `j` of the block is a contiguous run of the slice when `rs == 1`.
            if rhs.rs == 1 {
                // Whole 8 × 8 blocks by vector transposes where the CPU has AVX2, the
                // rest one by one.
                let mut done = (0, 0);
                #[cfg(not(target_arch = "x86_64"))]
                let _ = path;
                #[cfg(target_arch = "x86_64")]
                if path != Path::Scalar {
                    let (w8, k8) = (w / 8 * 8, kc / 8 * 8);
                    let base = rhs.off + j0 * rhs.cs + pc;
                    assert!(
                        w8 == 0 || k8 == 0 || base + (w8 - 1) * rhs.cs + k8 <= rhs.data.len(),
                        "packing reads inside the operand"
                    );
                    assert!(panel.len() >= kc * nr && nr.is_multiple_of(8));
                    // SAFETY: AVX2 is present on every vector path; the asserts keep
                    // the 8 × 8 blocks' reads and writes inside both slices.
                    unsafe { x86::transpose_into(&rhs.data[base..], rhs.cs, w8, k8, panel, nr) };
                    done = (w8, k8);
                }
                for j in 0..w {
                    let from = if j < done.0 { done.1 } else { 0 };
                    let s = rhs.off + (j0 + j) * rhs.cs + pc;
                    for (dst, &v) in panel
                        .iter_mut()
                        .skip(from * nr + j)
                        .step_by(nr)
                        .zip(&rhs.data[s + from..s + kc])
                    {
                        *dst = v;
                    }
                }
            } else {
                for j in 0..w {
                    for p in 0..kc {
                        panel[p * nr + j] = rhs.at(pc + p, j0 + j);
                    }
                }
            }
            for row in panel.chunks_exact_mut(nr) {
                row[w..].fill(0.0);
            }
        }
    };
    let out = &mut out[..panels * nr * kc];
    if threads > 1 && panels > 1 {
        out.par_chunks_mut(nr * kc).enumerate().for_each(fill);
    } else {
        out.chunks_mut(nr * kc).enumerate().for_each(fill);
    }
}

/// Packs `lhs[ic.., pc..]` (`mc × kc`) into `MR`-tall panels, each `kc` columns of `MR`
/// floats, zero beyond `mc`.
fn pack_a(lhs: Mat<'_>, ic: usize, mc: usize, pc: usize, kc: usize, mr: usize, out: &mut [f32]) {
    for (ip, panel) in out[..mc.div_ceil(mr) * mr * kc]
        .chunks_mut(mr * kc)
        .enumerate()
    {
        let i0 = ic + ip * mr;
        let h = mr.min(mc - ip * mr);
        if lhs.cs == 1 {
            for i in 0..mr {
                if i < h {
                    let s = lhs.off + (i0 + i) * lhs.rs + pc;
                    for (p, &v) in lhs.data[s..s + kc].iter().enumerate() {
                        panel[p * mr + i] = v;
                    }
                } else {
                    for p in 0..kc {
                        panel[p * mr + i] = 0.0;
                    }
                }
            }
        } else {
            for p in 0..kc {
                for i in 0..mr {
                    panel[p * mr + i] = if i < h { lhs.at(i0 + i, pc + p) } else { 0.0 };
                }
            }
        }
    }
}

/// Runs one register tile; a tile cut by the matrix edge, or whose windows are not
/// row-major, goes through a full-size local tile so the kernels only ever see whole
/// row-major tiles.
///
/// # Safety
/// `tile`'s windows hold at least `mw × nw` elements, and no other task touches them.
unsafe fn run_tile(path: Path, kc: usize, a: &[f32], b: &[f32], tile: Tile, mw: usize, nw: usize) {
    let (mr, nr) = path.tile();
    let (d, drs, dcs) = tile.dst;
    if mw == mr && nw == nr && dcs == 1 && tile.src.is_none_or(|(_, _, cs)| cs == 1) {
        // SAFETY: the caller's contract, for a whole row-major tile.
        unsafe { kernel(path, kc, a, b, tile) };
        return;
    }
    debug_assert!(
        mr * nr <= 12 * 32,
        "local tiles hold the largest register tile"
    );
    let mut src = [0.0f32; 12 * 32];
    let mut dst = [0.0f32; 12 * 32];
    // SAFETY: only the `mw × nw` valid elements of the caller's windows are touched.
    unsafe {
        if let Some((s, rs, cs)) = tile.src {
            for i in 0..mw {
                for j in 0..nw {
                    src[i * nr + j] = *s.add(i * rs + j * cs);
                }
            }
        }
        if let Some((_, true)) = tile.last {
            for i in 0..mw {
                for j in 0..nw {
                    dst[i * nr + j] = *d.add(i * drs + j * dcs);
                }
            }
        }
        let local = Tile {
            src: tile.src.map(|_| (src.as_ptr(), nr, 1)),
            dst: (dst.as_mut_ptr(), nr, 1),
            last: tile.last,
        };
        kernel(path, kc, a, b, local);
        for i in 0..mw {
            for j in 0..nw {
                *d.add(i * drs + j * dcs) = dst[i * nr + j];
            }
        }
    }
}

/// # Safety
/// As [`run_tile`], for a whole `MR × NR` tile; `a` holds `kc·MR` and `b` `kc·NR` floats.
unsafe fn kernel(path: Path, kc: usize, a: &[f32], b: &[f32], tile: Tile) {
    match path {
        Path::Scalar => scalar::kernel(kc, a, b, tile),
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => unsafe { x86::avx2(kc, a, b, tile) },
        #[cfg(target_arch = "x86_64")]
        Path::Avx512 => unsafe { x86::avx512(kc, a, b, tile) },
    }
}

mod scalar {
    use super::Tile;

    const MR: usize = 4;
    const NR: usize = 8;

    pub(super) fn kernel(kc: usize, a: &[f32], b: &[f32], tile: Tile) {
        let mut acc = [[0.0f32; NR]; MR];
        if let Some((s, ld, _)) = tile.src {
            for (i, row) in acc.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    // SAFETY: the caller's contract on `tile`.
                    *v = unsafe { *s.add(i * ld + j) };
                }
            }
        }
        for (ap, bp) in a[..kc * MR]
            .chunks_exact(MR)
            .zip(b[..kc * NR].chunks_exact(NR))
        {
            for (row, &x) in acc.iter_mut().zip(ap) {
                for (v, &y) in row.iter_mut().zip(bp) {
                    *v = x.mul_add(y, *v);
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                // SAFETY: as above.
                unsafe {
                    let d = tile.dst.0.add(i * tile.dst.1 + j);
                    *d = match tile.last {
                        None => v,
                        Some((beta, false)) => beta * v,
                        Some((beta, true)) => beta.mul_add(v, *d),
                    };
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Tile;
    use std::arch::x86_64::*;

    /// A register tile of `MR` rows by two vectors of `$lanes` floats: the sums start
    /// from the source's partials (or zero), run one fused multiply-add per element and
    /// `p`, and are stored as partials or scaled into the destination.
    macro_rules! tile_kernel {
        ($name:ident, $feature:literal, $mr:literal, $lanes:literal,
         $zero:ident, $load:ident, $store:ident, $set1:ident, $fmadd:ident, $mul:ident) => {
            #[target_feature(enable = $feature)]
            pub(super) unsafe fn $name(kc: usize, a: &[f32], b: &[f32], tile: Tile) {
                const MR: usize = $mr;
                const NR: usize = 2 * $lanes;
                assert!(a.len() >= kc * MR && b.len() >= kc * NR);
                let (a, b) = (a.as_ptr(), b.as_ptr());
                unsafe {
                    let mut acc = [[$zero(); 2]; MR];
                    if let Some((s, ld, _)) = tile.src {
                        for (i, r) in acc.iter_mut().enumerate() {
                            r[0] = $load(s.add(i * ld));
                            r[1] = $load(s.add(i * ld + $lanes));
                        }
                    }
                    for p in 0..kc {
                        let b0 = $load(b.add(p * NR));
                        let b1 = $load(b.add(p * NR + $lanes));
                        for (i, r) in acc.iter_mut().enumerate() {
                            let x = $set1(*a.add(p * MR + i));
                            r[0] = $fmadd(x, b0, r[0]);
                            r[1] = $fmadd(x, b1, r[1]);
                        }
                    }
                    for (i, r) in acc.iter().enumerate() {
                        for (h, &v) in r.iter().enumerate() {
                            let d = tile.dst.0.add(i * tile.dst.1 + $lanes * h);
                            let v = match tile.last {
                                None => v,
                                Some((beta, false)) => $mul($set1(beta), v),
                                Some((beta, true)) => $fmadd($set1(beta), v, $load(d)),
                            };
                            $store(d, v);
                        }
                    }
                }
            }
        };
    }

    // 6 × 16: twelve accumulators of the sixteen `ymm` registers.
    tile_kernel!(
        avx2,
        "avx2,fma",
        6,
        8,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_mul_ps
    );
    // 12 × 32: twenty-four accumulators of the thirty-two `zmm` registers.
    tile_kernel!(
        avx512,
        "avx512f",
        12,
        16,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_mul_ps
    );

    /// `out[p·ld + j] = src[j·cs + p]` for `j < w8`, `p < k8` (both multiples of 8), by
    /// 8 × 8 register transposes.
    ///
    /// # Safety
    /// AVX2 is present; `src` holds `(w8 − 1)·cs + k8` floats and `out` `(k8 − 1)·ld + w8`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn transpose_into(
        src: &[f32],
        cs: usize,
        w8: usize,
        k8: usize,
        out: &mut [f32],
        ld: usize,
    ) {
        let (src, out) = (src.as_ptr(), out.as_mut_ptr());
        for j in (0..w8).step_by(8) {
            for p in (0..k8).step_by(8) {
                // SAFETY: the caller's bounds.
                unsafe {
                    let r = |q: usize| _mm256_loadu_ps(src.add((j + q) * cs + p));
                    let (r0, r1, r2, r3) = (r(0), r(1), r(2), r(3));
                    let (r4, r5, r6, r7) = (r(4), r(5), r(6), r(7));
                    let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
                    let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
                    let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
                    let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
                    let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                    let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                    let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                    let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                    let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                    let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                    let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                    let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                    let w = |q: usize, v: __m256| _mm256_storeu_ps(out.add((p + q) * ld + j), v);
                    w(0, _mm256_permute2f128_ps::<0x20>(s0, s4));
                    w(1, _mm256_permute2f128_ps::<0x20>(s1, s5));
                    w(2, _mm256_permute2f128_ps::<0x20>(s2, s6));
                    w(3, _mm256_permute2f128_ps::<0x20>(s3, s7));
                    w(4, _mm256_permute2f128_ps::<0x31>(s0, s4));
                    w(5, _mm256_permute2f128_ps::<0x31>(s1, s5));
                    w(6, _mm256_permute2f128_ps::<0x31>(s2, s6));
                    w(7, _mm256_permute2f128_ps::<0x31>(s3, s7));
                }
            }
        }
    }

    /// The thin kernel: up to twelve rows of one `ymm` each.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn thin(
        lhs: super::Mat<'_>,
        i: usize,
        rows: usize,
        k: usize,
        b: &[f32],
        acc: &mut [[f32; super::THIN]; super::THIN_MR],
    ) {
        // SAFETY: the caller checked that rows `i..i + rows` and columns `..k` of
        // `lhs`, and `k` rows of `b`, are in bounds.
        unsafe {
            let base = lhs.data.as_ptr().add(lhs.off + i * lhs.rs);
            let b = b.as_ptr();
            if rows == super::THIN_MR {
                let mut v = [_mm256_setzero_ps(); super::THIN_MR];
                for p in 0..k {
                    let y = _mm256_loadu_ps(b.add(p * 8));
                    let col = base.add(p * lhs.cs);
                    for (r, v) in v.iter_mut().enumerate() {
                        *v = _mm256_fmadd_ps(_mm256_broadcast_ss(&*col.add(r * lhs.rs)), y, *v);
                    }
                }
                for (s, v) in acc.iter_mut().zip(v) {
                    _mm256_storeu_ps(s.as_mut_ptr(), v);
                }
            } else {
                for (r, s) in acc.iter_mut().take(rows).enumerate() {
                    let row = base.add(r * lhs.rs);
                    let mut v = _mm256_setzero_ps();
                    for p in 0..k {
                        let y = _mm256_loadu_ps(b.add(p * 8));
                        v = _mm256_fmadd_ps(_mm256_broadcast_ss(&*row.add(p * lhs.cs)), y, v);
                    }
                    _mm256_storeu_ps(s.as_mut_ptr(), v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    /// The definition: one fused multiply-add chain per element, in increasing `p`.
    #[allow(clippy::too_many_arguments)]
    fn chain(
        (m, k, n): (usize, usize, usize),
        a: Mat<'_>,
        b: Mat<'_>,
        dst: &mut [f32],
        (ld, col): (usize, usize),
        beta: f32,
        accumulate: bool,
    ) {
        for i in 0..m {
            for j in 0..n {
                let s = (0..k).fold(0.0f32, |s, p| a.at(i, p).mul_add(b.at(p, j), s));
                let d = &mut dst[i * ld + col + j];
                *d = if accumulate {
                    beta.mul_add(s, *d)
                } else {
                    beta * s
                };
            }
        }
    }

    /// Every path, at one, two and three threads, gives exactly the definition's bits:
    /// thin products both ways round, edge tiles, several `KC` and `NC` blocks (with and
    /// without accumulating), transposed operands and a destination inside wider rows.
    #[test]
    fn every_path_and_thread_count_gives_the_definitions_bits() {
        let shapes = [
            (1, 1, 1),
            (13, 5, 70),
            (37, 600, 45),
            (100, 1000, 33),
            (7, 300, 8),
            (571, 40, 8),
            (8, 531, 97),
            (3, 17, 2),
            (25, 2 * KC + 3, 1100),
            (MC + 5, KC, NC + 40),
            (9, WHOLE_DEPTH + 1, 40),
            (4, 0, 5),
        ];
        for (s, &(m, k, n)) in shapes.iter().enumerate() {
            for (at, bt, acc) in [
                (false, true, false),
                (true, false, true),
                (true, true, true),
            ] {
                let (a, b) = (noise(m * k, 2 * s as u64), noise(k * n, 2 * s as u64 + 1));
                let am = if at {
                    Mat::transposed(&a, m)
                } else {
                    Mat::rows(&a, k)
                };
                let bm = if bt {
                    Mat::transposed(&b, k)
                } else {
                    Mat::rows(&b, n)
                };
                let (ld, col) = (n + 3, 2);
                let init = noise(m * ld, 99);
                // A negative scale too, so a sign slip in the last step shows.
                let beta = if s % 2 == 0 { 0.7 } else { -1.3 };
                let mut want = init.clone();
                chain((m, k, n), am, bm, &mut want, (ld, col), beta, acc);
                for path in Path::available() {
                    for threads in [1, 2, 3] {
                        let pool = rayon::ThreadPoolBuilder::new()
                            .num_threads(threads)
                            .build()
                            .unwrap();
                        let mut got = init.clone();
                        pool.install(|| {
                            sgemm(
                                (m, k, n),
                                am,
                                bm,
                                &mut got,
                                (ld, col),
                                beta,
                                acc,
                                path,
                                threads,
                            )
                        });
                        let same = got
                            .iter()
                            .zip(&want)
                            .all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(
                            same,
                            "{path:?}, {threads} threads, {m}x{k}x{n}, transposed {at}/{bt}, accumulate {acc}"
                        );
                    }
                }
            }
        }
    }

    /// Operands with neither stride 1 take the packings' general branches.
    #[test]
    fn operands_with_no_unit_stride_give_the_definitions_bits() {
        for (m, k, n) in [(29, 300, 45), (5, 40, 3), (40, 7, 100)] {
            let (a, b) = (noise(2 * m * k, 7), noise(3 * k * n, 8));
            let am = Mat {
                data: &a,
                off: 1,
                rs: 2 * k,
                cs: 2,
            };
            let bm = Mat {
                data: &b,
                off: 0,
                rs: 3,
                cs: 3 * k,
            };
            let mut want = noise(m * n, 9);
            let init = want.clone();
            chain((m, k, n), am, bm, &mut want, (n, 0), 1.0, true);
            for path in Path::available() {
                let mut got = init.clone();
                sgemm((m, k, n), am, bm, &mut got, (n, 0), 1.0, true, path, 2);
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{path:?}"
                );
            }
        }
    }

    /// The public entry point: the same bits as the definition, and errors that name
    /// the path or the slice that is wrong.
    #[test]
    fn the_public_product_checks_its_input() {
        let (a, b) = (noise(6 * 5, 1), noise(5 * 4, 2));
        let mut want = vec![0.0f32; 24];
        chain(
            (6, 5, 4),
            Mat::rows(&a, 5),
            Mat::transposed(&b, 5),
            &mut want,
            (4, 0),
            1.0,
            false,
        );
        for kernel in product_kernels() {
            let mut out = vec![0.0f32; 24];
            product(kernel, (6, 5, 4), &a, false, &b, true, &mut out).unwrap();
            assert_eq!(out, want, "{kernel}");
        }
        let mut out = vec![0.0f32; 24];
        let err = product("avx1024", (6, 5, 4), &a, false, &b, true, &mut out).unwrap_err();
        assert!(err.contains("avx1024") && err.contains("scalar"), "{err}");
        let err = product("scalar", (6, 5, 4), &a[1..], false, &b, true, &mut out).unwrap_err();
        assert!(
            err.starts_with("lhs: 29 floats") && err.contains("expected 30"),
            "{err}"
        );
        let err = product("scalar", (6, 5, 4), &a, false, &b, true, &mut out[1..]).unwrap_err();
        assert!(err.starts_with("out: 23"), "{err}");
    }

    #[test]
    fn an_empty_inner_dimension_scales_a_zero_sum() {
        let e: [f32; 0] = [];
        let (a, b) = (Mat::rows(&e, 0), Mat::rows(&e, 3));
        let mut d = vec![5.0f32; 6];
        sgemm((2, 0, 3), a, b, &mut d, (3, 0), 1.0, true, Path::Scalar, 1);
        assert_eq!(d, [5.0; 6]);
        sgemm(
            (2, 0, 3),
            a,
            b,
            &mut d,
            (3, 0),
            -1.0,
            false,
            Path::Scalar,
            1,
        );
        assert!(d.iter().all(|v| *v == 0.0 && v.is_sign_negative()));
    }

    #[test]
    #[should_panic(expected = "matmul operand out of range")]
    fn a_stride_that_wraps_around_is_refused() {
        let x = [1.0f32; 3];
        let huge = Mat {
            rs: 1 << 63,
            ..Mat::rows(&x, 1)
        };
        let mut d = [0.0f32; 9];
        sgemm(
            (3, 1, 3),
            huge,
            Mat::rows(&x, 3),
            &mut d,
            (3, 0),
            1.0,
            false,
            Path::Scalar,
            1,
        );
    }

    #[test]
    #[should_panic(expected = "matmul destination out of range")]
    fn a_destination_stride_that_wraps_around_is_refused() {
        let x = [1.0f32; 9];
        let mut d = [0.0f32; 9];
        sgemm(
            (3, 1, 9),
            Mat::rows(&x, 1),
            Mat::rows(&x, 9),
            &mut d,
            (1 << 63, 0),
            1.0,
            false,
            Path::Scalar,
            1,
        );
    }

    #[test]
    #[should_panic(expected = "matmul destination out of range")]
    fn overlapping_destination_rows_are_refused() {
        let a = vec![1.0f32; 4];
        let mut d = vec![0.0f32; 8];
        // Rows 2 apart but 3 wide would overlap.
        sgemm(
            (2, 2, 3),
            Mat::rows(&a, 2),
            Mat::rows(&[1.0; 6], 3),
            &mut d,
            (2, 0),
            1.0,
            false,
            Path::Scalar,
            1,
        );
    }
}
