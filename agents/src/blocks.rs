//! The quantization block formats the kernels read (Q4_1 and Q8_0 weights) and the
//! activation rows quantized to 8-bit blocks that the integer kernels multiply, shared
//! by the row kernels (`kernels`) and the tiled VNNI path (`tiles`).

/// Values per quantization block (both Q4_1 and Q8_0).
pub(crate) const BLOCK: usize = 32;

/// Weight block formats with a native kernel here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockKind {
    /// 32 4-bit values `d·q + m`, q in 0..16.
    Q4_1,
    /// 32 signed 8-bit values `d·q`.
    Q8_0,
}

impl BlockKind {
    /// Bytes per block in the GGUF file.
    pub(crate) fn file_block_bytes(self) -> usize {
        match self {
            BlockKind::Q4_1 => 20,
            BlockKind::Q8_0 => 34,
        }
    }
    /// Bytes of quants per block in the packed layout.
    pub(crate) fn quant_bytes(self) -> usize {
        match self {
            BlockKind::Q4_1 => 16,
            BlockKind::Q8_0 => 32,
        }
    }
}

/// Activation rows quantized to 8-bit blocks: scale, scaled sum, quants.
pub(crate) struct Acts {
    pub(crate) kb: usize,
    pub(crate) d: Vec<f32>,
    /// `d * sum(q)` per block, for the Q4_1 minimum term.
    pub(crate) s: Vec<f32>,
    pub(crate) q: Vec<i8>,
}

impl Acts {
    /// Quantizes `m` rows of `k` activations.
    pub(crate) fn quantize(x: &[f32], k: usize) -> Self {
        assert!(k.is_multiple_of(BLOCK));
        let kb = k / BLOCK;
        let blocks = x.len() / BLOCK;
        let mut d = Vec::with_capacity(blocks);
        let mut s = Vec::with_capacity(blocks);
        let mut q = vec![0i8; x.len()];
        for (chunk, qo) in x.chunks_exact(BLOCK).zip(q.chunks_exact_mut(BLOCK)) {
            let amax = chunk.iter().fold(0f32, |a, v| a.max(v.abs()));
            let dd = amax / 127.0;
            let id = if dd > 0.0 { 1.0 / dd } else { 0.0 };
            let mut sum = 0i32;
            for (o, v) in qo.iter_mut().zip(chunk) {
                let r = (v * id).round() as i32;
                *o = r as i8;
                sum += r;
            }
            d.push(dd);
            s.push(dd * sum as f32);
        }
        Self { kb, d, s, q }
    }

    /// Number of activation rows.
    pub(crate) fn rows(&self) -> usize {
        self.d.len() / self.kb.max(1)
    }

    /// Scales, scaled sums and quants.
    pub(crate) fn parts(&self) -> (&[f32], &[f32], &[i8]) {
        (&self.d, &self.s, &self.q)
    }
}
