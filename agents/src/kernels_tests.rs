//! Tests of the quantized matmul kernels against dequantized references, across
//! both weight layouts and the scalar path.

use super::*;

fn make_q4_1(rows: &[Vec<f32>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rows {
        for c in r.chunks_exact(BLOCK) {
            let mn = c.iter().cloned().fold(f32::INFINITY, f32::min);
            let mx = c.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let d = (mx - mn) / 15.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
            out.extend_from_slice(&f16::from_f32(mn).to_bits().to_le_bytes());
            for j in 0..16 {
                let lo = (((c[j] - mn) * id).round() as u8).min(15);
                let hi = (((c[j + 16] - mn) * id).round() as u8).min(15);
                out.push(lo | (hi << 4));
            }
        }
    }
    out
}

fn pseudo(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

fn check(kind: BlockKind, bytes: &[u8], n: usize, k: usize, tol: f32) {
    check_layout(kind, bytes, n, k, tol, false);
    if level_has_vnni() {
        check_layout(kind, bytes, n, k, tol, true);
    }
}

fn check_layout(kind: BlockKind, bytes: &[u8], n: usize, k: usize, tol: f32, tiled: bool) {
    let w = PackedWeight::with_layout(kind, n, k, bytes, tiled);
    let rows = PackedWeight::with_layout(kind, n, k, bytes, false);
    assert_eq!(
        w.dequantize(),
        rows.dequantize(),
        "layouts dequantize alike"
    );
    let wf = w.dequantize();
    let m = 6;
    let x = pseudo(m * k, 99);
    let out = matmul_many(&[&w, &w], &x, k);
    assert_eq!(out[0], out[1]);
    let dst = &out[0];
    for i in 0..m {
        for j in 0..n {
            let r: f32 = (0..k).map(|t| x[i * k + t] * wf[j * k + t]).sum();
            let got = dst[i * n + j];
            assert!(
                (got - r).abs() < tol * (1.0 + r.abs()),
                "{kind:?} {i},{j}: {got} vs {r}"
            );
        }
    }
    // The SIMD path agrees with the scalar one, and a row alone equals it batched.
    let acts = Acts::quantize(&x, k);
    for j in 0..n {
        let s = dot_scalar(&rows, j, &acts, 2);
        assert!(
            (s - dst[2 * n + j]).abs() < 1e-3 * (1.0 + s.abs()),
            "{s} vs {}",
            dst[2 * n + j]
        );
    }
    let one = matmul_many(&[&w], &x[2 * k..3 * k], k).remove(0);
    assert_eq!(&one[..], &dst[2 * n..3 * n]);
}

#[test]
fn q4_1_matmul_matches_dequantized_reference() {
    let (n, k) = (40, 96);
    let rows: Vec<Vec<f32>> = (0..n).map(|i| pseudo(k, i as u32 + 7)).collect();
    check(BlockKind::Q4_1, &make_q4_1(&rows), n, k, 0.05);
}

#[test]
fn q8_0_matmul_matches_reference() {
    let (n, k) = (24, 64);
    let wf = pseudo(n * k, 3);
    let mut w = Vec::new();
    for c in wf.chunks_exact(BLOCK) {
        let amax = c.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = f16::from_f32(amax / 127.0);
        w.extend_from_slice(&d.to_bits().to_le_bytes());
        for v in c {
            w.push((v / d.to_f32()).round() as i8 as u8);
        }
    }
    check(BlockKind::Q8_0, &w, n, k, 0.03);
}

/// Prints kernel throughput; run with `--ignored --nocapture` in release.
#[test]
#[ignore]
fn probe_kernel_speed() {
    let (n, k) = (1536, 576);
    let bytes: Vec<u8> = (0..n * k / 32 * 20)
        .map(|i| (i * 7 % 251) as u8 & 0x3f)
        .collect();
    let w = PackedWeight::from_gguf_bytes(BlockKind::Q4_1, n, k, &bytes);
    for m in [1, 8] {
        let x: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let iters = 2000;
        let t = std::time::Instant::now();
        for _ in 0..iters {
            std::hint::black_box(matmul_many(&[&w], &x, k));
        }
        let per = t.elapsed().as_secs_f64() / iters as f64;
        let blocks = (n * k / 32) as f64;
        eprintln!(
            "{} m={m}: {:.1} us per matmul, {:.2} ns per weight block",
            kernel_name(),
            per * 1e6,
            per * 1e9 / blocks
        );
    }
}
