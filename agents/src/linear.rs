//! Base-model weight matrices, stored quantized. Q4_1 and Q8_0 weights are repacked
//! for the native kernels in [`crate::kernels`]; other block types stay candle
//! `QTensor`s and use candle's `QMatMul`. Training computes with dequantized weights
//! through candle ops so gradients reach the input and the LoRA weights (QLoRA).

use crate::blocks::{BLOCK, BlockKind};
use crate::kernels::{self, PackedWeight};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use std::sync::Arc;

/// A frozen base weight of shape `(out, in)`, kept quantized.
#[derive(Debug, Clone)]
pub(crate) enum BaseLinear {
    /// Repacked for the native kernels.
    Packed(Arc<PackedWeight>),
    /// Any other GGUF type, through candle.
    Candle(Arc<QTensor>, QMatMul),
}

impl BaseLinear {
    /// Wraps a quantized `(out, in)` weight, repacking Q4_1 and Q8_0.
    pub(crate) fn new(weight: QTensor) -> candle_core::Result<Self> {
        let (n, k) = weight.shape().dims2()?;
        let kind = match weight.dtype() {
            GgmlDType::Q4_1 => Some(BlockKind::Q4_1),
            GgmlDType::Q8_0 => Some(BlockKind::Q8_0),
            _ => None,
        };
        match kind {
            Some(kind) if k % BLOCK == 0 => {
                let data = weight.data()?;
                Ok(Self::Packed(Arc::new(PackedWeight::from_gguf_bytes(
                    kind, n, k, &data,
                ))))
            }
            _ => {
                let w = Arc::new(weight);
                let q = QMatMul::from_arc(w.clone())?;
                Ok(Self::Candle(w, q))
            }
        }
    }

    /// Output width.
    pub(crate) fn out_dim(&self) -> usize {
        match self {
            Self::Packed(w) => w.rows(),
            Self::Candle(w, _) => w.shape().dims()[0],
        }
    }

    /// Input width.
    pub(crate) fn in_dim(&self) -> usize {
        match self {
            Self::Packed(w) => w.cols(),
            Self::Candle(w, _) => w.shape().dims()[1],
        }
    }

    /// The weight dequantized to an f32 tensor `(out, in)`.
    pub(crate) fn dequantize(&self, device: &Device) -> candle_core::Result<Tensor> {
        match self {
            Self::Packed(w) => Tensor::from_vec(w.dequantize(), (w.rows(), w.cols()), device),
            Self::Candle(w, _) => w.dequantize(device),
        }
    }

    /// Differentiable `x · Wᵀ` over the dequantized weight (the tests' reference pass).
    #[cfg(test)]
    pub(crate) fn forward_train(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let w = self.dequantize(x.device())?;
        x.matmul(&w.t()?)
    }

    /// `x · Wᵀ` for `m` rows of `in` floats; a row's result never depends on the other rows.
    pub(crate) fn forward_rows(&self, x: &[f32], m: usize) -> candle_core::Result<Vec<f32>> {
        Ok(Self::forward_rows_many(&[self], x, m)?.remove(0))
    }

    /// Several projections of the same rows (q/k/v, gate/up) in one parallel pass.
    pub(crate) fn forward_rows_many(
        lins: &[&BaseLinear],
        x: &[f32],
        m: usize,
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let packed: Option<Vec<&PackedWeight>> = lins
            .iter()
            .map(|l| match l {
                Self::Packed(w) => Some(&**w),
                Self::Candle(..) => None,
            })
            .collect();
        if let Some(ws) = packed {
            let k = x.len() / m.max(1);
            return Ok(kernels::matmul_many(&ws, x, k));
        }
        lins.iter()
            .map(|l| match l {
                Self::Packed(w) => Ok(kernels::matmul_many(&[&**w], x, w.cols()).remove(0)),
                Self::Candle(_, q) => {
                    let t = Tensor::from_slice(x, (m, l.in_dim()), &Device::Cpu)?;
                    q.forward(&t)?.flatten_all()?.to_vec1()
                }
            })
            .collect()
    }

    /// Rows `ids` of the matrix, dequantized (embedding lookup), row-major.
    pub(crate) fn rows(&self, ids: &[u32]) -> candle_core::Result<Vec<f32>> {
        match self {
            Self::Packed(w) => {
                let k = w.cols();
                let mut out = vec![0f32; ids.len() * k];
                for (o, &id) in out.chunks_exact_mut(k).zip(ids) {
                    w.dequantize_row(id as usize, o);
                }
                Ok(out)
            }
            Self::Candle(w, _) => {
                let t = Tensor::new(ids, &Device::Cpu)?;
                w.embedding(&t)?.flatten_all()?.to_vec1()
            }
        }
    }

    /// Rows `ids` as a tensor `(ids, in)`.
    #[cfg(test)]
    pub(crate) fn rows_tensor(&self, ids: &[u32], device: &Device) -> candle_core::Result<Tensor> {
        Tensor::from_vec(self.rows(ids)?, (ids.len(), self.in_dim()), device)
    }
}
