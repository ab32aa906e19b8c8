//! Adapter files in the Hugging Face PEFT layout: `adapter_model.safetensors` (keys
//! such as `base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight`) plus
//! `adapter_config.json`. Saves are atomic (temporary file, then rename); an adapter's
//! identity is the sha256 of its canonical bytes.

use crate::error::{AgentError, Result};
use crate::gguf::{Architecture, ModelConfig};
use crate::lora::{LoraAdapter, LoraConfig, Target};
use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// File name of the weights inside an adapter directory.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// File name of the PEFT config inside an adapter directory.
pub const CONFIG_FILE: &str = "adapter_config.json";

/// The subset of PEFT's `adapter_config.json` this runtime writes and reads.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct PeftConfig {
    /// Always `LORA`.
    pub peft_type: String,
    /// Always `CAUSAL_LM`.
    pub task_type: String,
    /// The base model this adapter was trained on.
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// LoRA rank.
    pub r: usize,
    /// LoRA alpha (updates scale by `alpha / r`).
    pub lora_alpha: f32,
    /// Dropout used in training (0 here).
    #[serde(default)]
    pub lora_dropout: f32,
    /// PEFT module names carrying an update.
    pub target_modules: Vec<String>,
    /// Bias handling; only `none` is supported.
    #[serde(default = "bias_none")]
    pub bias: String,
    /// Whether rank-stabilized scaling is used; only `false` is supported.
    #[serde(default)]
    pub use_rslora: bool,
    /// Whether weights are stored transposed; only `false` is supported.
    #[serde(default)]
    pub fan_in_fan_out: bool,
    /// Marks the adapter as frozen for inference.
    #[serde(default)]
    pub inference_mode: bool,
}

fn bias_none() -> String {
    "none".to_string()
}

fn key(layer: usize, t: Target, ab: &str) -> String {
    format!(
        "base_model.model.model.layers.{layer}.{}.{}.lora_{ab}.weight",
        t.parent(),
        t.module_name()
    )
}

/// Row order map between GGUF llama q/k rows (interleaved RoPE pairs) and Hugging Face
/// rows (half-split): `result[hf_row] = gguf_row`.
fn hf_from_gguf_rows(n_heads: usize, head_dim: usize) -> Vec<u32> {
    let half = head_dim / 2;
    let mut idx = vec![0u32; n_heads * head_dim];
    for h in 0..n_heads {
        for i in 0..half {
            for j in 0..2 {
                idx[h * head_dim + j * half + i] = (h * head_dim + 2 * i + j) as u32;
            }
        }
    }
    idx
}

fn gguf_from_hf_rows(n_heads: usize, head_dim: usize) -> Vec<u32> {
    let fwd = hf_from_gguf_rows(n_heads, head_dim);
    let mut inv = vec![0u32; fwd.len()];
    for (hf, g) in fwd.iter().enumerate() {
        inv[*g as usize] = hf as u32;
    }
    inv
}

/// The q/k heads whose B rows are permuted between GGUF and HF order, if any.
fn permuted_heads(model: &ModelConfig, t: Target) -> Option<usize> {
    match (model.architecture, t) {
        (Architecture::Llama, Target::Q) => Some(model.num_heads),
        (Architecture::Llama, Target::K) => Some(model.num_kv_heads),
        _ => None,
    }
}

fn reorder(b: &Tensor, rows: Vec<u32>) -> candle_core::Result<Tensor> {
    let idx = Tensor::new(rows.as_slice(), b.device())?;
    b.index_select(&idx, 0)
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> AgentError {
    AgentError::AdapterIo {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// The PEFT config describing `adapter`.
pub(crate) fn peft_config(adapter: &LoraAdapter, base_model: Option<&str>) -> PeftConfig {
    let c = adapter.config();
    PeftConfig {
        peft_type: "LORA".into(),
        task_type: "CAUSAL_LM".into(),
        base_model_name_or_path: base_model.map(str::to_string),
        r: c.rank,
        lora_alpha: c.alpha,
        lora_dropout: 0.0,
        target_modules: Target::ALL
            .iter()
            .filter(|t| c.targets.contains(t))
            .map(|t| t.module_name().to_string())
            .collect(),
        bias: bias_none(),
        use_rslora: false,
        fan_in_fan_out: false,
        inference_mode: true,
    }
}

/// The safetensors bytes of `adapter` in PEFT key names and HF row order.
pub(crate) fn weights_bytes(adapter: &LoraAdapter, model: &ModelConfig) -> Result<Vec<u8>> {
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for l in 0..adapter.num_layers() {
        for t in Target::ALL {
            let Some(p) = adapter.pair(l, t) else {
                continue;
            };
            let mut b = p.b.as_tensor().clone();
            if let Some(heads) = permuted_heads(model, t) {
                b = reorder(&b, hf_from_gguf_rows(heads, model.head_dim))?;
            }
            tensors.push((key(l, t, "A"), p.a.as_tensor().contiguous()?));
            tensors.push((key(l, t, "B"), b.contiguous()?));
        }
    }
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    let data: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(k, t)| {
            let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            Ok((k.clone(), bytes, t.dims().to_vec()))
        })
        .collect::<Result<_>>()?;
    let views = data
        .iter()
        .map(|(k, bytes, shape)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (k.clone(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| AgentError::Encoding(e.to_string()))?;
    safetensors::tensor::serialize(views, Some(meta))
        .map_err(|e| AgentError::Encoding(e.to_string()))
}

/// The canonical bytes: the safetensors weights, a newline, then the canonical config
/// (rank, alpha, targets) as compact JSON.
pub fn canonical_bytes(adapter: &LoraAdapter, model: &ModelConfig) -> Result<Vec<u8>> {
    let mut bytes = weights_bytes(adapter, model)?;
    let c = peft_config(adapter, None);
    let canon = serde_json::json!({
        "r": c.r,
        "lora_alpha": c.lora_alpha,
        "target_modules": c.target_modules,
    });
    bytes.push(b'\n');
    bytes.extend_from_slice(canon.to_string().as_bytes());
    Ok(bytes)
}

/// Whether `text` is a sha256 as this project writes them (an adapter's, a base
/// model's): 64 lower-case hex digits, so it is also safe as a directory name.
pub fn is_hash(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The adapter's identity: hex sha256 of [`canonical_bytes`].
pub fn adapter_hash(adapter: &LoraAdapter, model: &ModelConfig) -> Result<String> {
    Ok(hex::encode(Sha256::digest(canonical_bytes(
        adapter, model,
    )?)))
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    write_atomic_with(dir, name, |f| f.write_all(bytes))
}

/// Writes `dir/name` through a temporary file in `dir` that is renamed over the target
/// only once `write` and the sync succeed; on any failure the temporary file is removed
/// (dropped) and the old file stays as it was.
fn write_atomic_with(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let target = dir.join(name);
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io_err(&target, e))?;
    write(tmp.as_file_mut()).map_err(|e| io_err(&target, e))?;
    tmp.as_file().sync_all().map_err(|e| io_err(&target, e))?;
    tmp.persist(&target).map_err(|e| io_err(&target, e.error))?;
    Ok(())
}

/// Saves `adapter` into directory `dir` (created if missing), each file written
/// atomically; returns the adapter's hash.
pub fn save_adapter(
    adapter: &LoraAdapter,
    model: &ModelConfig,
    dir: &Path,
    base_model: Option<&str>,
) -> Result<String> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let weights = weights_bytes(adapter, model)?;
    let config = serde_json::to_vec_pretty(&peft_config(adapter, base_model))
        .map_err(|e| io_err(&dir.join(CONFIG_FILE), e))?;
    write_atomic(dir, CONFIG_FILE, &config)?;
    write_atomic(dir, WEIGHTS_FILE, &weights)?;
    adapter_hash(adapter, model)
}

fn parse_key(k: &str) -> Option<(usize, Target, bool)> {
    let rest = k.strip_prefix("base_model.model.model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer = layer.parse().ok()?;
    let (parent, rest) = rest.split_once('.')?;
    let (module, rest) = rest.split_once('.')?;
    let t = Target::from_module_name(module)?;
    if t.parent() != parent {
        return None;
    }
    match rest {
        "lora_A.weight" => Some((layer, t, true)),
        "lora_B.weight" => Some((layer, t, false)),
        _ => None,
    }
}

/// Loads a PEFT adapter directory (or its `adapter_model.safetensors`) for `model`,
/// checking target modules and every shape.
pub fn load_adapter(path: &Path, model: &ModelConfig) -> Result<LoraAdapter> {
    let dir: PathBuf = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    };
    let cfg_path = dir.join(CONFIG_FILE);
    let w_path = if path.is_dir() {
        dir.join(WEIGHTS_FILE)
    } else {
        path.to_path_buf()
    };
    let cfg_bytes = std::fs::read(&cfg_path).map_err(|e| io_err(&cfg_path, e))?;
    let cfg: PeftConfig = serde_json::from_slice(&cfg_bytes).map_err(|e| io_err(&cfg_path, e))?;
    let mismatch = |detail: String| AgentError::AdapterMismatch {
        path: cfg_path.clone(),
        detail,
    };
    if cfg.peft_type != "LORA" {
        return Err(mismatch(format!(
            "peft_type `{}` is not LORA",
            cfg.peft_type
        )));
    }
    if cfg.use_rslora || cfg.fan_in_fan_out || cfg.bias != "none" {
        return Err(mismatch(
            "use_rslora, fan_in_fan_out and biases are not supported".into(),
        ));
    }
    if cfg.r == 0 {
        return Err(mismatch("rank r is 0".into()));
    }
    let mut targets = Vec::new();
    for m in &cfg.target_modules {
        match Target::from_module_name(m) {
            Some(t) => targets.push(t),
            None => {
                return Err(mismatch(format!(
                    "target module `{m}` is not one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"
                )));
            }
        }
    }
    targets.sort();
    targets.dedup();
    let tensors =
        candle_core::safetensors::load(&w_path, &Device::Cpu).map_err(|e| io_err(&w_path, e))?;
    let mut halves: HashMap<(usize, Target), (Option<Tensor>, Option<Tensor>)> = HashMap::new();
    for (k, t) in tensors {
        let Some((layer, target, is_a)) = parse_key(&k) else {
            return Err(AgentError::AdapterMismatch {
                path: w_path.clone(),
                detail: format!("unexpected tensor `{k}`"),
            });
        };
        let slot = halves.entry((layer, target)).or_default();
        if is_a {
            slot.0 = Some(t);
        } else {
            slot.1 = Some(t);
        }
    }
    let mut pairs = Vec::new();
    for ((layer, target), (a, b)) in halves {
        let (Some(a), Some(b)) = (a, b) else {
            return Err(AgentError::AdapterMismatch {
                path: w_path.clone(),
                detail: format!(
                    "layer {layer} {} lacks lora_A or lora_B",
                    target.module_name()
                ),
            });
        };
        let (out, _) = target.dims(model);
        let b = match permuted_heads(model, target) {
            Some(heads) if b.dims().first() == Some(&out) => reorder(
                &b.to_dtype(candle_core::DType::F32)?,
                gguf_from_hf_rows(heads, model.head_dim),
            )?,
            _ => b,
        };
        pairs.push((layer, target, a, b));
    }
    pairs.sort_by_key(|p| (p.0, p.1));
    let config = LoraConfig {
        rank: cfg.r,
        alpha: cfg.lora_alpha,
        targets,
    };
    LoraAdapter::from_pairs(model, config, pairs, &w_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_maps_are_inverse_permutations() {
        let f = hf_from_gguf_rows(3, 8);
        let g = gguf_from_hf_rows(3, 8);
        for (i, &x) in f.iter().enumerate() {
            assert_eq!(g[x as usize] as usize, i);
        }
        // HF row 1 (first half, i=1) comes from GGUF row 2 (pair 1, j=0).
        assert_eq!(f[1], 2);
        assert_eq!(f[4], 1);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), WEIGHTS_FILE, b"version one").unwrap();
        let err = write_atomic_with(dir.path(), WEIGHTS_FILE, |f| {
            f.write_all(b"half of version tw")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("disk full") && err.contains(WEIGHTS_FILE),
            "{err}"
        );
        let kept = std::fs::read(dir.path().join(WEIGHTS_FILE)).unwrap();
        assert_eq!(kept, b"version one");
        // The temporary file is gone too.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn parses_peft_keys() {
        assert_eq!(
            parse_key("base_model.model.model.layers.12.mlp.down_proj.lora_B.weight"),
            Some((12, Target::Down, false))
        );
        assert_eq!(
            parse_key("base_model.model.model.layers.1.mlp.q_proj.lora_A.weight"),
            None
        );
    }
}
