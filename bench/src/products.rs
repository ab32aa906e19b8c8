//! `rlfc bench products`: the DPO trainer's f32 product (`agents::product`) on each path
//! this CPU runs, against the `gemm` crate (the product the trainer used before, with its
//! default features) on the trainer's own shapes: GFLOP/s, whether every path gave the
//! same bits, and the largest difference from `gemm`'s result.

use serde_json::{Value, json};
use std::time::Instant;

/// One product the trainer computes: name, `(m, k, n)`, and whether each operand is
/// stored transposed.
struct Shape {
    name: &'static str,
    mkn: (usize, usize, usize),
    lhs_t: bool,
    rhs_t: bool,
}

/// SmolLM2-135M's widths (hidden 576, MLP 1536, vocabulary 49,152), `rlfc bench dpo`'s
/// 571 rows per pass and 440 scored rows, LoRA rank 8.
fn shapes() -> Vec<Shape> {
    let s = |name, mkn, lhs_t, rhs_t| Shape {
        name,
        mkn,
        lhs_t,
        rhs_t,
    };
    vec![
        s("gate/up forward x·Wᵀ", (571, 576, 1536), false, true),
        s("down forward x·Wᵀ", (571, 1536, 576), false, true),
        s("down backward g·W", (571, 576, 1536), false, false),
        s("head forward x·Wᵀ", (440, 576, 49152), false, true),
        s("head backward g·W", (440, 49152, 576), false, false),
        s("LoRA x·Aᵀ", (571, 576, 8), false, true),
        s("LoRA gradient gᵀ·h", (1536, 571, 8), true, false),
        s("LoRA h·Bᵀ", (571, 8, 1536), false, true),
    ]
}

/// Deterministic values in [-0.5, 0.5).
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

/// Best wall time of `f` over at least 3 calls and at least `min_s` seconds.
fn best(min_s: f64, mut f: impl FnMut()) -> f64 {
    let (start, mut best, mut calls) = (Instant::now(), f64::INFINITY, 0);
    while calls < 3 || start.elapsed().as_secs_f64() < min_s {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        calls += 1;
    }
    best
}

/// `gemm`'s product of the same operands into row-major `out`, on every rayon thread.
fn gemm_product(s: &Shape, lhs: &[f32], rhs: &[f32], out: &mut [f32]) {
    let (m, k, n) = s.mkn;
    // (row stride, column stride) of each operand as stored.
    let (a_rs, a_cs) = if s.lhs_t { (1, m) } else { (k, 1) };
    let (b_rs, b_cs) = if s.rhs_t { (1, k) } else { (n, 1) };
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    assert!(lhs.len() == m * k && rhs.len() == k * n && out.len() == m * n);
    // SAFETY: the strides above address exactly the `m·k`, `k·n` and `m·n` elements of
    // the three slices checked just above; `out` is borrowed mutably.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            rhs.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Times every shape; `min_s` is the least time spent on each measure.
pub fn bench_products(min_s: f64) -> Result<Value, String> {
    let kernels = agents::product_kernels();
    let mut rows = Vec::new();
    for (i, s) in shapes().iter().enumerate() {
        let (m, k, n) = s.mkn;
        let lhs = noise(m * k, 2 * i as u64);
        let rhs = noise(k * n, 2 * i as u64 + 1);
        let gflop = 2.0 * (m * k * n) as f64 / 1e9;
        let mut reference = vec![0f32; m * n];
        let t = best(min_s, || gemm_product(s, &lhs, &rhs, &mut reference));
        let mut ours = serde_json::Map::new();
        let mut first: Option<Vec<f32>> = None;
        let (mut same_bits, mut max_diff) = (true, 0f32);
        for &kernel in &kernels {
            let mut out = vec![0f32; m * n];
            let mut err = None;
            let tk = best(min_s, || {
                if let Err(e) =
                    agents::product(kernel, s.mkn, &lhs, s.lhs_t, &rhs, s.rhs_t, &mut out)
                {
                    err = Some(e);
                }
            });
            if let Some(e) = err {
                return Err(e);
            }
            ours.insert(
                kernel.to_string(),
                json!((gflop / tk * 10.0).round() / 10.0),
            );
            max_diff = out
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - b).abs())
                .fold(max_diff, f32::max);
            match &first {
                None => first = Some(out),
                Some(f) => same_bits &= f.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()),
            }
        }
        rows.push(json!({
            "product": s.name,
            "m_k_n": [m, k, n],
            "gemm_gflops": (gflop / t * 10.0).round() / 10.0,
            "ours_gflops": ours,
            "same_bits_on_every_path": same_bits,
            "max_abs_diff_from_gemm": max_diff,
        }));
    }
    Ok(json!({
        "threads": rayon::current_num_threads(),
        "paths": kernels,
        "trainer_path": agents::product_kernel_name(),
        "peer": "gemm 0.19, default features (the trainer's products before rlfc-dpo-sigmoid/2)",
        "products": rows,
    }))
}
