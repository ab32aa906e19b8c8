//! Running a model on a chosen device (CPU, or a CUDA GPU with the `cuda` feature).
//!
//! The project's own forward pass ([`crate::Model`]) is written for CPUs: repacked
//! quantized weights and SIMD kernels. On a GPU the same GGUF file runs through
//! candle's quantized llama and qwen2 models instead, whose tensors live on the device
//! (quantized matmuls, attention and norms all as device kernels). [`DeviceLm`] is that
//! path for prompt scoring: feed tokens after a cached prefix and read the next-token
//! logits, with the prefix's keys and values kept on the device and shared by clones.
//! It carries no LoRA adapters: the judges, its user, run the base model.
//!
//! Every sequence runs alone (batch of one), so a sequence's logits depend only on its
//! own tokens and prefix split, never on what else is being scored; on one machine and
//! device the same inputs give the same bits. (candle's qwen2 model cannot share a
//! cached prefix, so for qwen2 each feed recomputes the whole sequence.)

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::{quantized_llama, quantized_qwen2};

use crate::error::{AgentError, Result};
use crate::gguf::{Architecture, GgufFile, ModelConfig};

/// Where a model runs, as the configuration names it: `cpu`, `cuda` (device 0) or
/// `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The CPU (the project's own kernels where it has them).
    #[default]
    Cpu,
    /// The CUDA device with this ordinal.
    Cuda(usize),
}

impl DeviceSpec {
    /// Whether this build can open CUDA devices (built with `--features cuda`).
    pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

    /// Whether this is the CPU.
    pub fn is_cpu(self) -> bool {
        self == DeviceSpec::Cpu
    }

    /// Opens the device. A CUDA device in a build without CUDA, or one the driver
    /// cannot open, is an error that says which.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(n) if !Self::CUDA_BUILT => Err(AgentError::Device(format!(
                "cuda:{n} was asked for, but this build has no CUDA support (rebuild with `--features cuda`)"
            ))),
            DeviceSpec::Cuda(n) => Device::new_cuda(n)
                .map_err(|e| AgentError::Device(format!("cannot open CUDA device {n}: {e}"))),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("{s:?} is not a device (accepts cpu, cuda or cuda:N)");
        match s.trim() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(n) if n.len() <= 3 => n.parse().map(DeviceSpec::Cuda).map_err(|_| bad()),
                _ => Err(bad()),
            },
        }
    }
}

impl serde::Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The model's weights, and for llama the keys and values fed so far. candle's
/// qwen2 model cannot be cloned with its cache, so a qwen2 sequence keeps its tokens
/// and each feed runs the whole sequence again on the shared weights.
#[derive(Clone)]
enum Weights {
    Llama(Box<quantized_llama::ModelWeights>),
    Qwen2 {
        weights: Arc<Mutex<quantized_qwen2::ModelWeights>>,
        tokens: Vec<u32>,
    },
}

impl fmt::Debug for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Weights::Llama(_) => "Llama",
            Weights::Qwen2 { .. } => "Qwen2",
        })
    }
}

/// A GGUF chat model on a device, with the keys and values of what it has been fed.
///
/// Cloning is cheap (weights and cached tensors are shared), so a prefix is fed once
/// and each continuation runs on its own clone.
#[derive(Debug, Clone)]
pub struct DeviceLm {
    weights: Weights,
    device: Device,
    config: ModelConfig,
    context: usize,
    len: usize,
}

impl DeviceLm {
    /// Loads a llama or qwen2 GGUF file onto `device`, weights kept quantized.
    pub fn load(path: &Path, device: &Device) -> Result<DeviceLm> {
        let gguf = GgufFile::open(path)?;
        let config = gguf.config()?;
        let (content, mut reader) = gguf.into_parts();
        let weights = match config.architecture {
            Architecture::Llama => Weights::Llama(Box::new(
                quantized_llama::ModelWeights::from_gguf(content, &mut reader, device)?,
            )),
            Architecture::Qwen2 => Weights::Qwen2 {
                weights: Arc::new(Mutex::new(quantized_qwen2::ModelWeights::from_gguf(
                    content,
                    &mut reader,
                    device,
                )?)),
                tokens: Vec::new(),
            },
        };
        // candle's llama precomputes its rotary table for 4096 positions.
        let context = match config.architecture {
            Architecture::Llama => config.context_length.min(quantized_llama::MAX_SEQ_LEN),
            Architecture::Qwen2 => config.context_length,
        };
        Ok(DeviceLm {
            weights,
            device: device.clone(),
            config,
            context,
            len: 0,
        })
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The longest sequence this model runs, in tokens.
    pub fn context(&self) -> usize {
        self.context
    }

    /// Tokens fed so far (the position of the next one).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Feeds `tokens` after what is cached and returns the next-token logits at the
    /// last of them (on the host, as f32).
    pub fn feed(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(AgentError::Encoding(
                "nothing to feed: a forward pass needs at least one token".into(),
            ));
        }
        let total = self.len + tokens.len();
        if total > self.context {
            return Err(AgentError::PromptTooLong {
                prompt_tokens: total,
                context: self.context,
            });
        }
        let logits = match &mut self.weights {
            Weights::Llama(w) => {
                let x = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
                w.forward(&x, self.len)?
            }
            Weights::Qwen2 {
                weights,
                tokens: fed,
            } => {
                let mut all = fed.clone();
                all.extend_from_slice(tokens);
                let x = Tensor::new(all.as_slice(), &self.device)?.unsqueeze(0)?;
                let mut w = weights.lock().unwrap_or_else(|e| e.into_inner());
                w.clear_kv_cache();
                let logits = w.forward(&x, 0);
                w.clear_kv_cache();
                drop(w);
                let logits = logits?;
                *fed = all;
                logits
            }
        };
        self.len = total;
        Ok(logits.squeeze(0)?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_specs_parse_and_print() {
        for (text, spec) in [
            ("cpu", DeviceSpec::Cpu),
            ("cuda", DeviceSpec::Cuda(0)),
            ("cuda:0", DeviceSpec::Cuda(0)),
            ("cuda:3", DeviceSpec::Cuda(3)),
        ] {
            assert_eq!(text.parse::<DeviceSpec>(), Ok(spec), "{text}");
        }
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "CPU0", "cuda:99999"] {
            let err = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(err.contains("accepts cpu, cuda or cuda:N"), "{bad}: {err}");
        }
    }

    #[test]
    fn cpu_opens_and_cuda_needs_the_feature() {
        assert!(DeviceSpec::Cpu.open().unwrap().is_cpu());
        if !DeviceSpec::CUDA_BUILT {
            let err = DeviceSpec::Cuda(0).open().unwrap_err().to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
    }
}
