//! The embedding judge: all-MiniLM-L6-v2 (candle BERT, mean pooling, L2 norm).
//!
//! It scores relevance (cosine between the task and the response) and penalises
//! copying: a response that repeats another competitor's text, or the task text
//! itself, loses the share it copied. Copying is measured on word 4-grams, which
//! catches verbatim reuse that a paraphrase-tolerant embedding would forgive.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

use crate::text::containment;
use crate::{Judge, JudgeError, JudgeId, Score, Task};

/// Version of this judge's scoring procedure; bump it when the formula changes.
/// v2: relevance saturates at cosine 0.30 (was 0.60). v3: copying an earlier answer
/// the seats were shown (`Task::history`) is penalised like copying a rival.
pub const EMBEDDING_TEMPLATE_VERSION: &str = "embedding-v3";

/// Cosine similarity that maps to relevance 0 (unrelated text sits near it).
const COS_FLOOR: f64 = 0.05;
/// Cosine similarity that maps to relevance 1. Relevance is a gate, not a grade: on
/// the shipped judge sets, answers on the task's subject sit at cosine 0.26 to 0.84
/// and off-topic ones mostly at 0.01 to 0.21, while above 0.30 a higher cosine
/// rewards repeating the task's words ("rain rain rain" over a real haiku about rain)
/// rather than a better answer. So every on-topic answer gets full relevance and
/// quality is left to the other judges.
const COS_FULL: f64 = 0.30;
/// Containment below this is ordinary overlap (shared names, set phrases).
const COPY_FREE: f64 = 0.25;

/// A sentence-embedding model and the judge built on it.
pub struct EmbeddingJudge {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    model_hash: String,
}

fn model_err(path: &Path, reason: impl ToString) -> JudgeError {
    JudgeError::Model {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

impl EmbeddingJudge {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir`.
    pub fn load(dir: &Path, device: &Device) -> Result<EmbeddingJudge, JudgeError> {
        let file = |name: &str| -> PathBuf { dir.join(name) };
        let config_path = file("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|e| model_err(&config_path, e))?;
        let config: Config = serde_json::from_str(&text).map_err(|e| model_err(&config_path, e))?;
        let tok_path = file("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| model_err(&tok_path, e))?;
        tokenizer.with_padding(Some(PaddingParams::default()));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: 256,
                ..TruncationParams::default()
            }))
            .map_err(|e| model_err(&tok_path, e))?;
        let weights = file("model.safetensors");
        let bytes = std::fs::read(&weights).map_err(|e| model_err(&weights, e))?;
        let model_hash = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&bytes))
        };
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, device)
            .map_err(|e| model_err(&weights, e))?;
        let model = BertModel::load(vb, &config).map_err(|e| model_err(&weights, e))?;
        Ok(EmbeddingJudge {
            model,
            tokenizer,
            device: device.clone(),
            model_hash,
        })
    }

    /// sha256 of the model's weights file.
    pub(crate) fn model_hash(&self) -> &str {
        &self.model_hash
    }

    /// Unit-length sentence embeddings, one row per text.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, JudgeError> {
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| JudgeError::Tokenizer(e.to_string()))?;
        let ids: Vec<Tensor> = enc
            .iter()
            .map(|e| Tensor::new(e.get_ids(), &self.device))
            .collect::<Result<_, _>>()?;
        let masks: Vec<Tensor> = enc
            .iter()
            .map(|e| Tensor::new(e.get_attention_mask(), &self.device))
            .collect::<Result<_, _>>()?;
        let ids = Tensor::stack(&ids, 0)?;
        let mask = Tensor::stack(&masks, 0)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        // Mean over real tokens only: padding must not dilute short texts.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
        Ok(mean.broadcast_div(&norm)?.to_vec2()?)
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

/// The share a copied response loses: nothing up to [`COPY_FREE`], all of it when
/// the whole response is copied.
fn copy_penalty(copied: f64) -> f64 {
    ((copied - COPY_FREE) / (1.0 - COPY_FREE)).clamp(0.0, 1.0)
}

impl Judge for EmbeddingJudge {
    fn id(&self) -> JudgeId {
        JudgeId {
            name: "embedding".into(),
            model_hash: self.model_hash.clone(),
            // Off the CPU the embeddings (and so the scores) are not the same bits.
            template_version: if self.device.is_cpu() {
                EMBEDDING_TEMPLATE_VERSION.into()
            } else {
                format!(
                    "{EMBEDDING_TEMPLATE_VERSION}+{}",
                    crate::device_kind(&self.device)
                )
            },
        }
    }

    fn score(&self, task: &Task, responses: &[&str]) -> Result<Vec<Score>, JudgeError> {
        let mut texts = vec![task.prompt.as_str()];
        texts.extend_from_slice(responses);
        let emb = self.embed(&texts)?;
        let id = self.id();
        Ok(responses
            .iter()
            .enumerate()
            .map(|(i, resp)| {
                let cos = cosine(&emb[0], &emb[i + 1]);
                let relevance = ((cos - COS_FLOOR) / (COS_FULL - COS_FLOOR)).clamp(0.0, 1.0);
                let from_task = containment(resp, &task.prompt);
                let (from_other, other) = responses
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(j, o)| (containment(resp, o), Some(j)))
                    .fold(
                        (0.0, None),
                        |best, (c, j)| if c > best.0 { (c, j) } else { best },
                    );
                // An earlier answer the seats were shown (the opponent's last turn) is
                // a rival's text too: repeating it is not a reply.
                let from_history = task
                    .history
                    .iter()
                    .map(|h| containment(resp, h))
                    .fold(0.0, f64::max);
                let penalty = copy_penalty(from_task.max(from_other).max(from_history));
                let mut rationale = format!("relevance {relevance:.2} (cosine {cos:.2})");
                if penalty > 0.0 {
                    let source = if from_history >= from_task.max(from_other) {
                        format!("{:.0}% of an earlier answer", from_history * 100.0)
                    } else if from_task >= from_other {
                        format!("{:.0}% of the task text", from_task * 100.0)
                    } else {
                        format!(
                            "{:.0}% of response {}",
                            from_other * 100.0,
                            other.unwrap_or(0) + 1
                        )
                    };
                    rationale.push_str(&format!("; copies {source}"));
                }
                Score {
                    score: relevance * (1.0 - penalty),
                    rationale,
                    judge: id.clone(),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_penalty_is_zero_below_the_threshold_and_full_at_one() {
        assert_eq!(copy_penalty(0.1), 0.0);
        assert_eq!(copy_penalty(1.0), 1.0);
        assert!(copy_penalty(0.6) > 0.0 && copy_penalty(0.6) < 1.0);
    }
}
