//! The project's own llama/qwen2 model: loading the quantized weights. The fast
//! inference pass with KV cache and batching lives in [`crate::infer`], the DPO
//! trainer's forward and backward in `dpo_forward` and `dpo_ops`; the differentiable
//! candle forward pass here is compiled for the tests only, as the reference those
//! are checked against.

use crate::error::{AgentError, Result};
use crate::gguf::{Architecture, GgufFile, ModelConfig};
use crate::linear::BaseLinear;
use crate::lora::Target;
use crate::tokenizer::ChatTokenizer;
use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor};
use std::path::Path;
#[cfg(test)]
use {
    crate::lora::LoraAdapter,
    crate::seq::{Logits, Segment},
    candle_core::D,
};

pub(crate) struct Block {
    pub(crate) host: HostBlock,
    /// q, k, v, o, gate, up, down: indexed like [`Target::ALL`].
    pub(crate) proj: [BaseLinear; 7],
}

/// Norms and biases of a block as plain vectors (the inference pass and the trainer
/// read them as they are).
pub(crate) struct HostBlock {
    pub(crate) attn_norm: Vec<f32>,
    pub(crate) ffn_norm: Vec<f32>,
    pub(crate) q_bias: Option<Vec<f32>>,
    pub(crate) k_bias: Option<Vec<f32>>,
    pub(crate) v_bias: Option<Vec<f32>>,
}

impl HostBlock {
    fn new(
        attn_norm: &Tensor,
        ffn_norm: &Tensor,
        biases: [&Option<Tensor>; 3],
    ) -> candle_core::Result<Self> {
        let v = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        let ov = |t: &Option<Tensor>| t.as_ref().map(v).transpose();
        Ok(Self {
            attn_norm: v(attn_norm)?,
            ffn_norm: v(ffn_norm)?,
            q_bias: ov(biases[0])?,
            k_bias: ov(biases[1])?,
            v_bias: ov(biases[2])?,
        })
    }
}

/// A loaded base model: quantized weights plus what the forward pass needs.
pub struct Model {
    pub(crate) config: ModelConfig,
    pub(crate) embed: BaseLinear,
    pub(crate) blocks: Vec<Block>,
    pub(crate) final_norm_host: Vec<f32>,
    pub(crate) lm_head: BaseLinear,
    /// `cos`/`sin` as plain vectors: `[position][head_dim / 2]`.
    pub(crate) cos_host: Vec<f32>,
    pub(crate) sin_host: Vec<f32>,
    device: Device,
    /// Hex sha256 of the GGUF file it was loaded from (`None` for a model built in
    /// memory, such as a random test model).
    source_sha256: Option<String>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .finish()
    }
}

/// The rope tables, `cos` and `sin`: `[position][head_dim / 2]`.
fn rope_tables(cfg: &ModelConfig) -> (Vec<f32>, Vec<f32>) {
    let half = cfg.head_dim / 2;
    let inv: Vec<f32> = (0..half)
        .map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f32 / cfg.head_dim as f32))
        .collect();
    let n = cfg.context_length;
    let mut cos = Vec::with_capacity(n * half);
    let mut sin = Vec::with_capacity(n * half);
    for p in 0..n {
        for f in &inv {
            let a = p as f32 * f;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    (cos, sin)
}

const GGUF_NAMES: [&str; 7] = [
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

impl Model {
    /// Loads a llama or qwen2 GGUF file, keeping the projection weights quantized.
    pub fn load(path: &Path) -> Result<(Self, ChatTokenizer)> {
        let mut gguf = GgufFile::open(path)?;
        let config = gguf.config()?;
        let tokenizer = ChatTokenizer::from_gguf(&gguf)?;
        let device = Device::Cpu;
        let embed = BaseLinear::new(gguf.tensor("token_embd.weight")?)?;
        let dense = |q: QTensor| -> Result<Tensor> { Ok(q.dequantize(&device)?) };
        let mut blocks = Vec::with_capacity(config.num_layers);
        for l in 0..config.num_layers {
            let mut proj = Vec::with_capacity(7);
            for name in GGUF_NAMES {
                let t = gguf.tensor(&format!("blk.{l}.{name}.weight"))?;
                proj.push(BaseLinear::new(t)?);
            }
            let mut bias = |n: &str| -> Result<Option<Tensor>> {
                let key = format!("blk.{l}.{n}.bias");
                if gguf.has_tensor(&key) {
                    Ok(Some(dense(gguf.tensor(&key)?)?))
                } else {
                    Ok(None)
                }
            };
            let (q_bias, k_bias, v_bias) = (bias("attn_q")?, bias("attn_k")?, bias("attn_v")?);
            let attn_norm = dense(gguf.tensor(&format!("blk.{l}.attn_norm.weight"))?)?;
            let ffn_norm = dense(gguf.tensor(&format!("blk.{l}.ffn_norm.weight"))?)?;
            blocks.push(Block {
                host: HostBlock::new(&attn_norm, &ffn_norm, [&q_bias, &k_bias, &v_bias])?,
                proj: proj.try_into().map_err(|_| AgentError::InvalidModel {
                    path: path.to_path_buf(),
                    detail: "projection count".into(),
                })?,
            });
        }
        let final_norm = dense(gguf.tensor("output_norm.weight")?)?;
        let lm_head = if gguf.has_tensor("output.weight") {
            BaseLinear::new(gguf.tensor("output.weight")?)?
        } else {
            embed.clone()
        };
        let mut model = Self::assemble(config, embed, blocks, final_norm, lm_head, device)?;
        model.check_shapes(path)?;
        model.source_sha256 = Some(file_sha256(path)?);
        Ok((model, tokenizer))
    }

    fn assemble(
        config: ModelConfig,
        embed: BaseLinear,
        blocks: Vec<Block>,
        final_norm: Tensor,
        lm_head: BaseLinear,
        device: Device,
    ) -> Result<Self> {
        let (cos_host, sin_host) = rope_tables(&config);
        Ok(Self {
            cos_host,
            sin_host,
            final_norm_host: final_norm.to_vec1()?,
            config,
            embed,
            blocks,
            lm_head,
            device,
            source_sha256: None,
        })
    }

    /// Hex sha256 of the GGUF file this model was loaded from: the base model's
    /// identity in training records and replays. `None` for a model built in memory.
    pub fn source_sha256(&self) -> Option<&str> {
        self.source_sha256.as_deref()
    }

    fn check_shapes(&self, path: &Path) -> Result<()> {
        for (l, b) in self.blocks.iter().enumerate() {
            for (t, p) in Target::ALL.iter().zip(&b.proj) {
                let want = t.dims(&self.config);
                if (p.out_dim(), p.in_dim()) != want {
                    return Err(AgentError::InvalidModel {
                        path: path.to_path_buf(),
                        detail: format!(
                            "layer {l} {} is {}x{}, config implies {}x{}",
                            t.module_name(),
                            p.out_dim(),
                            p.in_dim(),
                            want.0,
                            want.1
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// A model with random weights (quantized like SmolLM2: Q4_1 layers, Q8_0 embedding)
    /// for tests and benchmarks of the machinery.
    pub fn random(config: ModelConfig, seed: u64) -> Result<Self> {
        use candle_core::quantized::GgmlDType;
        use rand::{Rng, SeedableRng};
        let device = Device::Cpu;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut rand_tensor = |shape: (usize, usize), scale: f32| -> Result<Tensor> {
            let v: Vec<f32> = (0..shape.0 * shape.1)
                .map(|_| rng.random_range(-scale..scale))
                .collect();
            Ok(Tensor::from_vec(v, shape, &device)?)
        };
        let embed = BaseLinear::new(QTensor::quantize(
            &rand_tensor((config.vocab_size, config.hidden_size), 1.0)?,
            GgmlDType::Q8_0,
        )?)?;
        let mut blocks = Vec::new();
        for _ in 0..config.num_layers {
            let mut proj = Vec::new();
            for t in Target::ALL {
                let (o, i) = t.dims(&config);
                let w = rand_tensor((o, i), 1.0 / (i as f32).sqrt())?;
                proj.push(BaseLinear::new(QTensor::quantize(&w, GgmlDType::Q4_1)?)?);
            }
            let norm = |x: Tensor| -> Result<Tensor> { Ok((x.flatten_all()? + 1.0)?) };
            let biased = config.architecture == Architecture::Qwen2;
            let mut bias = |n: usize| -> Result<Option<Tensor>> {
                if biased {
                    Ok(Some(rand_tensor((1, n), 0.1)?.flatten_all()?))
                } else {
                    Ok(None)
                }
            };
            let (qb, kb, vb) = (
                bias(config.q_dim())?,
                bias(config.kv_dim())?,
                bias(config.kv_dim())?,
            );
            let attn_norm = norm(rand_tensor((1, config.hidden_size), 0.1)?)?;
            let ffn_norm = norm(rand_tensor((1, config.hidden_size), 0.1)?)?;
            blocks.push(Block {
                host: HostBlock::new(&attn_norm, &ffn_norm, [&qb, &kb, &vb])?,
                proj: proj
                    .try_into()
                    .map_err(|_| AgentError::Encoding("proj".into()))?,
            });
        }
        let final_norm = Tensor::ones(config.hidden_size, DType::F32, &device)?;
        let lm_head = embed.clone();
        Self::assemble(config, embed, blocks, final_norm, lm_head, device)
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The device the model computes on.
    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    /// A vector the model keeps on the host as a tensor of `shape`, for the tests'
    /// reference forward pass.
    #[cfg(test)]
    fn tensor(
        &self,
        values: &[f32],
        shape: impl Into<candle_core::Shape>,
    ) -> candle_core::Result<Tensor> {
        Tensor::from_slice(values, shape, &self.device)
    }

    #[cfg(test)]
    fn rope_train(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let t = x.dim(2)?;
        let half = self.config.head_dim / 2;
        let cos = self.tensor(&self.cos_host[..t * half], (t, half))?;
        let sin = self.tensor(&self.sin_host[..t * half], (t, half))?;
        match self.config.architecture {
            Architecture::Llama => candle_nn::rotary_emb::rope_i_slow(x, &cos, &sin),
            Architecture::Qwen2 => candle_nn::rotary_emb::rope_slow(x, &cos, &sin),
        }
    }

    #[cfg(test)]
    fn project_train(
        &self,
        layer: usize,
        target: Target,
        x: &Tensor,
        adapter: Option<&LoraAdapter>,
    ) -> candle_core::Result<Tensor> {
        let base = self.blocks[layer].proj[target as usize].forward_train(x)?;
        match adapter
            .map(|a| a.delta(layer, target, x))
            .transpose()?
            .flatten()
        {
            Some(d) => base + d,
            None => Ok(base),
        }
    }

    #[cfg(test)]
    fn attention_train(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> candle_core::Result<Tensor> {
        let cfg = &self.config;
        let (nh, nkv, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let l = q.dim(0)?;
        let q = self.rope_train(&q.reshape((1, l, nh, hd))?.transpose(1, 2)?.contiguous()?)?;
        let k = self.rope_train(&k.reshape((1, l, nkv, hd))?.transpose(1, 2)?.contiguous()?)?;
        let v = v.reshape((l, nkv, hd))?.transpose(0, 1)?.contiguous()?;
        let group = nh / nkv;
        // Query heads sharing a kv head are stacked as extra query rows of that head.
        let q = q.squeeze(0)?.reshape((nkv, group * l, hd))?;
        let k = k.squeeze(0)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let mut scores = (q.matmul(&k.t()?)? * scale)?;
        if l > 1 {
            let mut mask = Vec::with_capacity(group * l * l);
            for _ in 0..group {
                for i in 0..l {
                    for j in 0..l {
                        mask.push(if j <= i { 0f32 } else { f32::NEG_INFINITY });
                    }
                }
            }
            let mask = Tensor::from_vec(mask, (1, group * l, l), &self.device)?;
            scores = scores.broadcast_add(&mask)?;
        }
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let out = probs.matmul(&v)?;
        out.reshape((nh, l, hd))?
            .transpose(0, 1)?
            .reshape((l, nh * hd))
    }

    /// The reference forward pass (tests only) with dequantized weights and
    /// differentiable candle ops, so gradients flow to the adapters' `Var`s. Each
    /// segment is a whole sequence from position 0: caches must be empty, and they are
    /// left untouched.
    #[cfg(test)]
    pub(crate) fn forward_train(
        &self,
        segments: &mut [Segment<'_>],
        logits: Logits,
    ) -> Result<Vec<Tensor>> {
        let eps = self.config.rms_norm_eps;
        let mut result = Vec::with_capacity(segments.len());
        for s in segments.iter() {
            if !s.cache.is_empty() {
                return Err(AgentError::InvalidSampling(
                    "forward_train runs whole sequences; the cache must be empty".into(),
                ));
            }
            if s.tokens.len() > self.config.context_length {
                return Err(AgentError::PromptTooLong {
                    prompt_tokens: s.tokens.len(),
                    context: self.config.context_length,
                });
            }
            let mut x = self.embed.rows_tensor(s.tokens, &self.device)?;
            for (l, block) in self.blocks.iter().enumerate() {
                let host = &block.host;
                let attn_norm = self.tensor(&host.attn_norm, host.attn_norm.len())?;
                let h = candle_nn::ops::rms_norm_slow(&x, &attn_norm, eps)?;
                let mut q = self.project_train(l, Target::Q, &h, s.adapter)?;
                let mut k = self.project_train(l, Target::K, &h, s.adapter)?;
                let mut v = self.project_train(l, Target::V, &h, s.adapter)?;
                if let Some(b) = &host.q_bias {
                    q = q.broadcast_add(&self.tensor(b, b.len())?)?;
                }
                if let Some(b) = &host.k_bias {
                    k = k.broadcast_add(&self.tensor(b, b.len())?)?;
                }
                if let Some(b) = &host.v_bias {
                    v = v.broadcast_add(&self.tensor(b, b.len())?)?;
                }
                let attn = self.attention_train(&q, &k, &v)?;
                x = (x + self.project_train(l, Target::O, &attn, s.adapter)?)?;
                let ffn_norm = self.tensor(&host.ffn_norm, host.ffn_norm.len())?;
                let h = candle_nn::ops::rms_norm_slow(&x, &ffn_norm, eps)?;
                let gate = self.project_train(l, Target::Gate, &h, s.adapter)?;
                let up = self.project_train(l, Target::Up, &h, s.adapter)?;
                let act = (candle_nn::ops::silu(&gate)? * up)?;
                x = (x + self.project_train(l, Target::Down, &act, s.adapter)?)?;
            }
            if logits == Logits::Last {
                x = x.narrow(0, s.tokens.len() - 1, 1)?;
            }
            let final_norm = self.tensor(&self.final_norm_host, self.final_norm_host.len())?;
            let x = candle_nn::ops::rms_norm_slow(&x, &final_norm, eps)?;
            result.push(self.lm_head.forward_train(&x)?);
        }
        Ok(result)
    }
}

/// Hex sha256 of a file, read in chunks.
fn file_sha256(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let io = |e: std::io::Error| AgentError::InvalidModel {
        path: path.to_path_buf(),
        detail: format!("reading it to hash: {e}"),
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
