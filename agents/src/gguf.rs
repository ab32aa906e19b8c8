//! Opening GGUF model files: header checks (missing, truncated, unsupported
//! architecture), the model hyper-parameters, and reading tensors kept quantized.

use crate::error::{AgentError, Result};
use candle_core::Device;
use candle_core::quantized::{QTensor, gguf_file};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// The transformer families this runtime can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// Llama (and SmolLM2): no attention biases, GGUF q/k rows permuted for interleaved RoPE.
    Llama,
    /// Qwen2: q/k/v biases, NeoX (half-split) RoPE.
    Qwen2,
}

/// Hyper-parameters of a decoder-only transformer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelConfig {
    /// The architecture family.
    pub architecture: Architecture,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Number of transformer blocks.
    pub num_layers: usize,
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads (grouped-query attention).
    pub num_kv_heads: usize,
    /// Width of each head.
    pub head_dim: usize,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
    /// Maximum context length in tokens.
    pub context_length: usize,
}

impl ModelConfig {
    /// Output width of the key and value projections.
    pub(crate) fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }
    /// Output width of the query projection.
    pub(crate) fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }
}

/// An opened, header-checked GGUF file.
pub(crate) struct GgufFile {
    path: PathBuf,
    content: gguf_file::Content,
    reader: BufReader<File>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .finish()
    }
}

impl GgufFile {
    /// Opens `path`, parses the header and checks that every tensor's bytes are in the file.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(AgentError::ModelNotFound {
                    path: path.to_path_buf(),
                });
            }
            Err(e) => {
                return Err(AgentError::InvalidModel {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                });
            }
        };
        let file_size = file
            .metadata()
            .map_err(|e| AgentError::InvalidModel {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?
            .len();
        let mut reader = BufReader::new(file);
        let content = gguf_file::Content::read(&mut reader).map_err(|e| {
            let detail = e.to_string();
            // A short read inside the header means the download stopped early.
            if detail.contains("failed to fill whole buffer")
                || detail.contains("remaining")
                || detail.contains("UnexpectedEof")
            {
                AgentError::TruncatedModel {
                    path: path.to_path_buf(),
                    detail: format!("the header ends early ({file_size} bytes in file): {detail}"),
                }
            } else {
                AgentError::InvalidModel {
                    path: path.to_path_buf(),
                    detail,
                }
            }
        })?;
        let mut needed = content.tensor_data_offset;
        let mut last = String::new();
        for (name, info) in &content.tensor_infos {
            let elems = info.shape.elem_count();
            let bytes = (elems / info.ggml_dtype.block_size()) * info.ggml_dtype.type_size();
            let end = content.tensor_data_offset + info.offset + bytes as u64;
            if end > needed {
                needed = end;
                last = name.clone();
            }
        }
        if needed > file_size {
            return Err(AgentError::TruncatedModel {
                path: path.to_path_buf(),
                detail: format!(
                    "tensor `{last}` ends at byte {needed} but the file has only {file_size} bytes"
                ),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            content,
            reader,
        })
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The parsed header and the reader positioned anywhere in the file, for loaders
    /// that read the tensors themselves.
    pub(crate) fn into_parts(self) -> (gguf_file::Content, BufReader<File>) {
        (self.content, self.reader)
    }

    /// The parsed header (metadata and tensor table).
    pub(crate) fn content(&self) -> &gguf_file::Content {
        &self.content
    }

    /// The `general.architecture` string.
    pub(crate) fn architecture_name(&self) -> Result<String> {
        Ok(self.meta("general.architecture")?.to_string()?.clone())
    }

    /// A metadata value, or an error naming the file and the key.
    pub(crate) fn meta(&self, key: &str) -> Result<&gguf_file::Value> {
        self.content
            .metadata
            .get(key)
            .ok_or_else(|| AgentError::InvalidModel {
                path: self.path.clone(),
                detail: format!("missing metadata key `{key}`"),
            })
    }

    fn meta_usize(&self, key: &str) -> Result<usize> {
        let v = self.meta(key)?;
        let n = v.to_u64().or_else(|_| v.to_u32().map(u64::from));
        n.map(|n| n as usize).map_err(|e| AgentError::InvalidModel {
            path: self.path.clone(),
            detail: format!("metadata key `{key}`: {e}"),
        })
    }

    fn meta_f32(&self, key: &str) -> Result<f32> {
        self.meta(key)?
            .to_f32()
            .map_err(|e| AgentError::InvalidModel {
                path: self.path.clone(),
                detail: format!("metadata key `{key}`: {e}"),
            })
    }

    /// The model hyper-parameters; fails on an architecture other than llama or qwen2.
    pub(crate) fn config(&self) -> Result<ModelConfig> {
        let arch_name = self.architecture_name()?;
        let architecture = match arch_name.as_str() {
            "llama" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            _ => {
                return Err(AgentError::UnsupportedArchitecture {
                    path: self.path.clone(),
                    architecture: arch_name,
                });
            }
        };
        let p = arch_name.as_str();
        let hidden_size = self.meta_usize(&format!("{p}.embedding_length"))?;
        let num_heads = self.meta_usize(&format!("{p}.attention.head_count"))?;
        let num_kv_heads = self
            .meta_usize(&format!("{p}.attention.head_count_kv"))
            .unwrap_or(num_heads);
        let head_dim = self
            .meta_usize(&format!("{p}.attention.key_length"))
            .unwrap_or(hidden_size / num_heads);
        let vocab_size = match self.content.tensor_infos.get("token_embd.weight") {
            Some(info) => info.shape.dims()[0],
            None => {
                return Err(AgentError::InvalidModel {
                    path: self.path.clone(),
                    detail: "missing tensor `token_embd.weight`".into(),
                });
            }
        };
        Ok(ModelConfig {
            architecture,
            vocab_size,
            hidden_size,
            intermediate_size: self.meta_usize(&format!("{p}.feed_forward_length"))?,
            num_layers: self.meta_usize(&format!("{p}.block_count"))?,
            num_heads,
            num_kv_heads,
            head_dim,
            rope_theta: self
                .meta_f32(&format!("{p}.rope.freq_base"))
                .unwrap_or(10_000.0),
            rms_norm_eps: self.meta_f32(&format!("{p}.attention.layer_norm_rms_epsilon"))?,
            context_length: self.meta_usize(&format!("{p}.context_length"))?,
        })
    }

    /// Whether the file holds a tensor named `name`.
    pub(crate) fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Reads one tensor, kept in its quantized form.
    pub(crate) fn tensor(&mut self, name: &str) -> Result<QTensor> {
        if !self.has_tensor(name) {
            return Err(AgentError::InvalidModel {
                path: self.path.clone(),
                detail: format!("missing tensor `{name}`"),
            });
        }
        self.content
            .tensor(&mut self.reader, name, &Device::Cpu)
            .map_err(|e| AgentError::InvalidModel {
                path: self.path.clone(),
                detail: format!("tensor `{name}`: {e}"),
            })
    }
}
