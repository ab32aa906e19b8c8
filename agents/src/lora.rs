//! LoRA adapters: low-rank `B·A` updates on the attention (q, k, v, o) and MLP
//! (gate, up, down) projections, held as trainable candle `Var`s.

use crate::error::{AgentError, Result};
use crate::gguf::ModelConfig;
use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use std::path::Path;

/// A projection a LoRA adapter can attach to, named as in Hugging Face PEFT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// Attention query projection.
    Q,
    /// Attention key projection.
    K,
    /// Attention value projection.
    V,
    /// Attention output projection.
    O,
    /// MLP gate projection.
    Gate,
    /// MLP up projection.
    Up,
    /// MLP down projection.
    Down,
}

impl Target {
    /// Every target, in a fixed order.
    pub(crate) const ALL: [Target; 7] = [
        Target::Q,
        Target::K,
        Target::V,
        Target::O,
        Target::Gate,
        Target::Up,
        Target::Down,
    ];

    /// The PEFT module name (`q_proj`, ..., `down_proj`).
    pub(crate) fn module_name(self) -> &'static str {
        match self {
            Target::Q => "q_proj",
            Target::K => "k_proj",
            Target::V => "v_proj",
            Target::O => "o_proj",
            Target::Gate => "gate_proj",
            Target::Up => "up_proj",
            Target::Down => "down_proj",
        }
    }

    /// The PEFT parent module (`self_attn` or `mlp`).
    pub(crate) fn parent(self) -> &'static str {
        match self {
            Target::Q | Target::K | Target::V | Target::O => "self_attn",
            _ => "mlp",
        }
    }

    /// Parses a PEFT module name.
    pub(crate) fn from_module_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.module_name() == name)
    }

    /// `(out, in)` of this projection in a model with config `cfg`.
    pub(crate) fn dims(self, cfg: &ModelConfig) -> (usize, usize) {
        match self {
            Target::Q => (cfg.q_dim(), cfg.hidden_size),
            Target::K | Target::V => (cfg.kv_dim(), cfg.hidden_size),
            Target::O => (cfg.hidden_size, cfg.q_dim()),
            Target::Gate | Target::Up => (cfg.intermediate_size, cfg.hidden_size),
            Target::Down => (cfg.hidden_size, cfg.intermediate_size),
        }
    }

    fn index(self) -> usize {
        Target::ALL.iter().position(|t| *t == self).expect("listed")
    }
}

/// Rank, scaling and targets of an adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// The rank r.
    pub rank: usize,
    /// The scaling numerator: updates are scaled by `alpha / rank`.
    pub alpha: f32,
    /// Which projections carry an update.
    pub targets: Vec<Target>,
}

impl LoraConfig {
    /// Rank `rank`, alpha `alpha`, on all seven projections.
    pub fn all_targets(rank: usize, alpha: f32) -> Self {
        Self {
            rank,
            alpha,
            targets: Target::ALL.to_vec(),
        }
    }

    /// `alpha / rank`.
    pub(crate) fn scale(&self) -> f32 {
        self.alpha / self.rank as f32
    }
}

/// The `A (r×in)` and `B (out×r)` matrices of one projection.
#[derive(Debug, Clone)]
pub struct LoraPair {
    /// Down-projection, shape `(r, in)`.
    pub a: Var,
    /// Up-projection, shape `(out, r)`, in the row order the runtime computes in.
    pub b: Var,
}

/// A LoRA adapter for every layer of one base model.
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    config: LoraConfig,
    /// `layers[l][target index]`.
    layers: Vec<[Option<LoraPair>; 7]>,
}

impl LoraAdapter {
    /// A fresh adapter: A drawn uniformly in ±1/sqrt(in) from `seed`, B zero (so it starts
    /// as a no-op, as PEFT does).
    pub fn new(model: &ModelConfig, config: LoraConfig, seed: u64) -> Result<Self> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let r = config.rank;
        let layers = (0..model.num_layers)
            .map(|_| {
                let mut slots: [Option<LoraPair>; 7] = Default::default();
                for t in &config.targets {
                    let (out, inp) = t.dims(model);
                    let bound = 1.0 / (inp as f32).sqrt();
                    let a: Vec<f32> = (0..r * inp)
                        .map(|_| rng.random_range(-bound..bound))
                        .collect();
                    let a = Var::from_tensor(&Tensor::from_vec(a, (r, inp), &Device::Cpu)?)?;
                    let b = Var::zeros((out, r), DType::F32, &Device::Cpu)?;
                    slots[t.index()] = Some(LoraPair { a, b });
                }
                Ok(slots)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { config, layers })
    }

    /// Builds an adapter from explicit pairs, checking every shape against `model`.
    pub(crate) fn from_pairs(
        model: &ModelConfig,
        config: LoraConfig,
        pairs: Vec<(usize, Target, Tensor, Tensor)>,
        source: &Path,
    ) -> Result<Self> {
        let mismatch = |detail: String| AgentError::AdapterMismatch {
            path: source.to_path_buf(),
            detail,
        };
        let mut layers: Vec<[Option<LoraPair>; 7]> =
            (0..model.num_layers).map(|_| Default::default()).collect();
        for (layer, target, a, b) in pairs {
            if layer >= model.num_layers {
                return Err(mismatch(format!(
                    "layer {layer} does not exist (the base model has {} layers)",
                    model.num_layers
                )));
            }
            if !config.targets.contains(&target) {
                return Err(mismatch(format!(
                    "weights for `{}` but it is not in target_modules",
                    target.module_name()
                )));
            }
            let (out, inp) = target.dims(model);
            let want_a = [config.rank, inp];
            let want_b = [out, config.rank];
            if a.dims() != want_a || b.dims() != want_b {
                return Err(mismatch(format!(
                    "layer {layer} {}: lora_A {:?} / lora_B {:?}, base model needs {want_a:?} / {want_b:?}",
                    target.module_name(),
                    a.dims(),
                    b.dims()
                )));
            }
            layers[layer][target.index()] = Some(LoraPair {
                a: Var::from_tensor(&a.to_dtype(DType::F32)?)?,
                b: Var::from_tensor(&b.to_dtype(DType::F32)?)?,
            });
        }
        for (l, slots) in layers.iter().enumerate() {
            for t in &config.targets {
                if slots[t.index()].is_none() {
                    return Err(mismatch(format!(
                        "layer {l} {} is a target module but has no weights",
                        t.module_name()
                    )));
                }
            }
        }
        Ok(Self { config, layers })
    }

    /// Rank, alpha and targets.
    pub(crate) fn config(&self) -> &LoraConfig {
        &self.config
    }

    /// Number of layers covered.
    pub(crate) fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// The pair on `target` of layer `layer`, if any.
    pub(crate) fn pair(&self, layer: usize, target: Target) -> Option<&LoraPair> {
        self.layers.get(layer)?[target.index()].as_ref()
    }

    /// Every trainable variable, in a fixed order (layer, then target, then A before B).
    pub fn vars(&self) -> Vec<Var> {
        let mut v = Vec::new();
        for slots in &self.layers {
            for p in slots.iter().flatten() {
                v.push(p.a.clone());
                v.push(p.b.clone());
            }
        }
        v
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> usize {
        self.vars().iter().map(|v| v.elem_count()).sum()
    }

    /// The update `scale · (x·Aᵀ)·Bᵀ` of `target` in `layer` for rows `x`, if present.
    #[cfg(test)]
    pub(crate) fn delta(
        &self,
        layer: usize,
        target: Target,
        x: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let Some(p) = self.pair(layer, target) else {
            return Ok(None);
        };
        let h = x.matmul(&p.a.as_tensor().t()?)?;
        let d = h.matmul(&p.b.as_tensor().t()?)?;
        Ok(Some((d * self.config.scale() as f64)?))
    }
}
