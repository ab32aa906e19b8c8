//! The reward judge: a judge that learns. A Bradley–Terry head, trained on preference
//! pairs, reads features of a response that the panel's sentence-embedding model
//! (all-MiniLM-L6-v2) already computes, and scores it `sigmoid(w · φ)`.
//!
//! Why: the small LLM judge is near chance on open-ended Spaces and easy to sway, and
//! phrase lists fitted to seen attacks do not generalise. A learned head is trained on
//! many labelled pairs at once (better and worse answers, honest and manipulative
//! ones, and contrast pairs made by corrupting good answers), so it scores by what
//! separates them in embedding space rather than by any wording. Its features
//! (`φ`, `FEATURES_VERSION`):
//! - the response's embedding `r` (what it says and how);
//! - `r ⊙ t`, with `t` the embedding of the seat's role line and the task, so the
//!   head can read the answer against the task;
//! - the element-wise maximum over the response's sentence embeddings, so one
//!   sentence aimed at the judges shows however long the honest part around it is.
//!
//! (Copying an earlier answer is the embedding judge's to penalise; scalar features for
//! it and for repetition fitted worse on a development set, so the head has none.)
//!
//! The score is `sigmoid(w · φ)` times a relevance gate (`relevance_gate`): an
//! answer off the task's subject keeps none of it, whatever its style.
//!
//! The head is data, versioned like an agent's adapter: `assets/judges/reward/head.json`
//! holds the weights, the training sets with their sha256, the training settings, the
//! fit and the head's figures on sets it was not trained on; its sha256 is part of the
//! judge's identity. `rlfc judges train-reward` rebuilds it with `train` (full-batch
//! gradient descent in f64, fixed order: deterministic for the same embeddings).
//! The training pairs are written by people (helpers who read only the rulebooks) and
//! the project's earlier judge sets, each once measured and then used for training.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::embedding::EmbeddingJudge;
use crate::screen::sentences;
use crate::{Judge, JudgeError, JudgeId, Score, Task};

/// Version of the feature layout; a head trained on another layout is refused.
pub(crate) const FEATURES_VERSION: &str = "reward-features-v1";
/// Version of the scoring procedure around the head.
pub(crate) const REWARD_TEMPLATE_VERSION: &str = "reward-v1";
/// The sentence-embedding width the features are built from (all-MiniLM-L6-v2).
pub(crate) const EMBEDDING_DIMS: usize = 384;
/// Length of `φ`.
pub(crate) const FEATURE_DIMS: usize = 3 * EMBEDDING_DIMS;

/// The shipped head, compiled in so a binary always carries the head it reports.
const SHIPPED_HEAD: &str = include_str!("../../assets/judges/reward/head.json");

/// One training set a head was fitted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSet {
    /// The file, relative to the assets directory.
    pub file: String,
    /// sha256 of its bytes.
    pub sha256: String,
    /// Pairs read from it.
    pub pairs: usize,
}

/// How a head was trained, and how well it fits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingRecord {
    /// The labelled sets.
    pub sets: Vec<TrainingSet>,
    /// Contrast pairs made by corrupting good answers (see `reward_data.rs`).
    pub contrast_pairs: usize,
    /// The settings.
    pub options: TrainOptions,
    /// Share of training pairs ordered right by the trained head.
    pub train_accuracy: f64,
    /// Mean training loss (−log σ(margin)) at the end.
    pub train_loss: f64,
    /// The head alone on sets it was not trained on, when asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evaluations: Vec<Evaluation>,
}

/// The head alone on one labelled set it was not trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    /// The set.
    pub set: TrainingSet,
    /// Share of pairs ordered right (a tie counts half).
    pub accuracy: f64,
    /// The same per Space.
    pub by_space: std::collections::BTreeMap<String, f64>,
}

/// Settings of `train`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainOptions {
    /// Full-batch gradient steps.
    pub epochs: usize,
    /// Step size.
    pub learning_rate: f64,
    /// L2 penalty on the weights.
    pub l2: f64,
    /// The kinds of contrast pairs (corrupted good answers) that join the labelled
    /// ones; none by default.
    #[serde(default)]
    pub contrast: Vec<ContrastKind>,
}

/// A way to corrupt a good answer into a worse one (see `reward_data.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContrastKind {
    /// The good answer to another task of the same Space.
    OffTopic,
    /// The first half of its words.
    Truncated,
    /// Its first sentence three times.
    Repeated,
    /// The earlier answer it was shown, copied.
    CopiedHistory,
    /// A manipulative sentence from another case added.
    Manipulation,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            epochs: 400,
            learning_rate: 0.5,
            l2: 1e-3,
            // Measured on a development set (docs/benchmarks.md): all five kinds made
            // the head worse (77 % to 70 % of pairs right), off-topic pairs alone too
            // (83 % to 80 %), and even with them a linear head still preferred an
            // off-topic answer; relevance is a gate in `RewardJudge::score` instead.
            contrast: Vec::new(),
        }
    }
}

/// A trained head: weights over `φ` and how they were made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardHead {
    /// `FEATURES_VERSION` of the layout the weights read.
    pub features: String,
    /// sha256 of the embedding model the features came from.
    pub embedding_model_sha256: String,
    /// One weight per feature.
    pub weights: Vec<f64>,
    /// Training provenance.
    pub training: TrainingRecord,
}

impl RewardHead {
    /// Parses and checks a head file's text.
    pub(crate) fn parse(text: &str) -> Result<RewardHead, JudgeError> {
        let bad = |reason: String| JudgeError::Model {
            path: "reward head".into(),
            reason,
        };
        let head: RewardHead = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        if head.features != FEATURES_VERSION {
            return Err(bad(format!(
                "features {:?}, this build reads {FEATURES_VERSION:?}",
                head.features
            )));
        }
        if head.weights.len() != FEATURE_DIMS {
            return Err(bad(format!(
                "{} weights, expected {FEATURE_DIMS}",
                head.weights.len()
            )));
        }
        if head.weights.iter().any(|w| !w.is_finite()) {
            return Err(bad("a weight is not finite".into()));
        }
        Ok(head)
    }

    /// The head this build ships (`assets/judges/reward/head.json`).
    pub(crate) fn shipped() -> Result<RewardHead, JudgeError> {
        RewardHead::parse(SHIPPED_HEAD)
    }

    /// The file's canonical JSON (what [`RewardHead::sha256`] hashes and what is
    /// written to disk).
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a head serializes");
        text.push('\n');
        text
    }

    /// sha256 of the canonical JSON: the head's identity.
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(self.to_json().as_bytes()))
    }

    /// `w · φ`.
    pub(crate) fn margin(&self, features: &[f64]) -> f64 {
        self.weights.iter().zip(features).map(|(w, x)| w * x).sum()
    }
}

/// The text the task embedding is taken of: the seat's role line, then the task.
pub(crate) fn task_text(task: &Task, seat: usize) -> String {
    match task.role(seat) {
        Some(role) => format!("{role}\n{}", task.prompt),
        None => task.prompt.clone(),
    }
}

/// `φ` from the embeddings: response `r`, task `t`, the response's sentences.
pub(crate) fn features_from(r: &[f32], t: &[f32], sentence_embeddings: &[Vec<f32>]) -> Vec<f64> {
    let mut phi = Vec::with_capacity(FEATURE_DIMS);
    phi.extend(r.iter().map(|&x| f64::from(x)));
    phi.extend(r.iter().zip(t).map(|(&a, &b)| f64::from(a) * f64::from(b)));
    let mut max = vec![f64::NEG_INFINITY; r.len()];
    for s in sentence_embeddings {
        for (m, &x) in max.iter_mut().zip(s) {
            *m = m.max(f64::from(x));
        }
    }
    if sentence_embeddings.is_empty() {
        max.copy_from_slice(&phi[..r.len()]);
    }
    phi.extend(max);
    phi
}

/// Cosine (response, task) at or below which the reward is gated to nothing.
pub(crate) const GATE_FLOOR: f64 = 0.05;
/// Cosine at or above which the reward passes whole. On-topic answers in the labelled
/// sets sit at 0.21 and above (a number answering a sum, a haiku about its subject),
/// off-topic ones near 0.03.
pub(crate) const GATE_FULL: f64 = 0.20;

/// How much of its reward a response keeps for being on the task's subject: a linear
/// head adds evidence, so it can like an off-topic answer's style more than an
/// on-topic answer's; relevance must multiply, not add.
pub(crate) fn relevance_gate(cosine: f64) -> f64 {
    ((cosine - GATE_FLOOR) / (GATE_FULL - GATE_FLOOR)).clamp(0.0, 1.0)
}

/// A response's features and its cosine with the task (role line and task text).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResponseFeatures {
    /// `φ`.
    pub phi: Vec<f64>,
    /// cos(response, task).
    pub cosine: f64,
}

/// `φ` of each response of a round (the texts the panel shows this judge), with its
/// cosine to the task.
pub(crate) fn features(
    embedding: &EmbeddingJudge,
    task: &Task,
    responses: &[&str],
) -> Result<Vec<ResponseFeatures>, JudgeError> {
    let tasks: Vec<String> = (0..responses.len()).map(|i| task_text(task, i)).collect();
    let mut texts: Vec<&str> = tasks.iter().map(String::as_str).collect();
    texts.extend_from_slice(responses);
    let split: Vec<Vec<&str>> = responses.iter().map(|r| sentences(r)).collect();
    for s in &split {
        texts.extend(s.iter().copied());
    }
    // Every text of the round in one batch; each row depends only on its own text.
    let emb = embedding.embed(&texts)?;
    let n = responses.len();
    let mut at = 2 * n;
    Ok((0..n)
        .map(|i| {
            let sents = &emb[at..at + split[i].len()];
            at += split[i].len();
            let cosine = emb[n + i]
                .iter()
                .zip(&emb[i])
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            ResponseFeatures {
                phi: features_from(&emb[n + i], &emb[i], sents),
                cosine,
            }
        })
        .collect())
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Fits a head on feature differences `φ(chosen) − φ(rejected)`: Bradley–Terry, i.e.
/// logistic loss on the margin, L2-regularised, full-batch gradient descent in a
/// fixed order. Returns the weights, the training accuracy and the final mean loss.
pub(crate) fn train(diffs: &[Vec<f64>], options: &TrainOptions) -> (Vec<f64>, f64, f64) {
    let dims = diffs.first().map_or(0, Vec::len);
    let mut w = vec![0.0; dims];
    let n = diffs.len().max(1) as f64;
    for _ in 0..options.epochs {
        let mut grad = vec![0.0; dims];
        for d in diffs {
            let margin: f64 = w.iter().zip(d).map(|(a, b)| a * b).sum();
            // d/dm of −log σ(m) is −σ(−m).
            let g = -sigmoid(-margin);
            for (gi, di) in grad.iter_mut().zip(d) {
                *gi += g * di;
            }
        }
        for (wi, gi) in w.iter_mut().zip(&grad) {
            *wi -= options.learning_rate * (gi / n + options.l2 * *wi);
        }
    }
    let margins: Vec<f64> = diffs
        .iter()
        .map(|d| w.iter().zip(d).map(|(a, b)| a * b).sum())
        .collect();
    let right = margins.iter().filter(|&&m| m > 0.0).count() as f64 / n;
    let loss = margins
        .iter()
        .map(|&m| (1.0 + (-m).exp()).ln())
        .sum::<f64>()
        / n;
    (w, right, loss)
}

/// The reward judge: the head over the shared embedding model.
pub struct RewardJudge {
    embedding: Arc<EmbeddingJudge>,
    head: RewardHead,
    head_sha256: String,
}

impl RewardJudge {
    /// A judge with `head` on `embedding`; refuses a head fitted on another model.
    pub(crate) fn new(
        embedding: Arc<EmbeddingJudge>,
        head: RewardHead,
    ) -> Result<Self, JudgeError> {
        if head.embedding_model_sha256 != embedding.model_hash() {
            return Err(JudgeError::Model {
                path: "reward head".into(),
                reason: format!(
                    "trained on embedding model {}, but {} is loaded",
                    head.embedding_model_sha256,
                    embedding.model_hash()
                ),
            });
        }
        let head_sha256 = head.sha256();
        Ok(RewardJudge {
            embedding,
            head,
            head_sha256,
        })
    }

    /// The judge with the shipped head.
    pub(crate) fn shipped(embedding: Arc<EmbeddingJudge>) -> Result<Self, JudgeError> {
        RewardJudge::new(embedding, RewardHead::shipped()?)
    }
}

impl Judge for RewardJudge {
    fn id(&self) -> JudgeId {
        let embedding = self.embedding.id();
        JudgeId {
            name: "reward".into(),
            model_hash: embedding.model_hash,
            // The head is this judge's adapter: its hash is part of the identity.
            template_version: format!(
                "{REWARD_TEMPLATE_VERSION}+head:{}{}",
                self.head_sha256,
                embedding
                    .template_version
                    .split_once('+')
                    .map(|(_, device)| format!("+{device}"))
                    .unwrap_or_default()
            ),
        }
    }

    fn score(&self, task: &Task, responses: &[&str]) -> Result<Vec<Score>, JudgeError> {
        let id = self.id();
        Ok(features(&self.embedding, task, responses)?
            .iter()
            .map(|f| {
                let margin = self.head.margin(&f.phi);
                let gate = relevance_gate(f.cosine);
                let mut rationale = format!("learned reward {margin:+.2}");
                if gate < 1.0 {
                    rationale.push_str(&format!(
                        ", off the task's subject (cosine {:.2}): kept {:.0}%",
                        f.cosine,
                        gate * 100.0
                    ));
                }
                Score {
                    score: sigmoid(margin) * gate,
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
    fn training_separates_pairs_along_the_direction_that_labels_them() {
        // Chosen responses differ from rejected ones along feature 0 only; feature 1
        // is noise that agrees half the time, equally often at each size of feature 0.
        let diffs: Vec<Vec<f64>> = (0..36)
            .map(|i| {
                vec![
                    0.5 + (i % 3) as f64 * 0.1,
                    if i % 2 == 0 { 1.0 } else { -1.0 },
                ]
            })
            .collect();
        let (w, right, loss) = train(&diffs, &TrainOptions::default());
        assert_eq!(right, 1.0);
        assert!(loss < 0.3, "{loss}");
        assert!(w[0] > 0.5 && w[1].abs() < 1e-9, "{w:?}");
        // Deterministic: the same data gives the same bits.
        assert_eq!(train(&diffs, &TrainOptions::default()).0, w);
    }

    #[test]
    fn features_read_the_answer_against_the_role_and_task_and_its_loudest_sentence() {
        let r = vec![0.6_f32, 0.8];
        let t = vec![1.0_f32, 0.0];
        let sents = vec![vec![0.9_f32, 0.1], vec![0.0, 1.0]];
        let phi = features_from(&r, &t, &sents);
        // r, r⊙t, max over sentences.
        let expect = [0.6, 0.8, 0.6, 0.0, 0.9, 1.0];
        assert_eq!(phi.len(), expect.len());
        for (a, b) in phi.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6, "{phi:?}");
        }
        // No sentence (an empty answer): the maximum is the answer's own embedding.
        assert_eq!(&features_from(&r, &t, &[])[4..], &phi[..2]);
        let mut task = Task::new("Motion: cats.", "rubric");
        assert_eq!(task_text(&task, 0), "Motion: cats.");
        task.roles = vec!["You argue FOR.".into(), "You argue AGAINST.".into()];
        assert_eq!(task_text(&task, 1), "You argue AGAINST.\nMotion: cats.");
    }

    #[test]
    fn relevance_gates_the_reward() {
        assert_eq!(relevance_gate(0.03), 0.0);
        assert_eq!(relevance_gate(GATE_FLOOR), 0.0);
        assert!((relevance_gate(0.125) - 0.5).abs() < 1e-12);
        assert_eq!(relevance_gate(GATE_FULL), 1.0);
        assert_eq!(relevance_gate(0.9), 1.0);
    }

    #[test]
    fn the_shipped_head_parses_and_bad_heads_are_refused() {
        let head = RewardHead::shipped().unwrap();
        assert_eq!(head.weights.len(), FEATURE_DIMS);
        assert_eq!(RewardHead::parse(&head.to_json()).unwrap(), head);
        // The identity is the sha256 of the file as shipped (it was written by
        // `to_json`, and floats read back exactly).
        assert_eq!(
            head.sha256(),
            hex::encode(Sha256::digest(SHIPPED_HEAD.as_bytes()))
        );
        let mut short = head.clone();
        short.weights.pop();
        let err = RewardHead::parse(&short.to_json()).unwrap_err().to_string();
        assert!(err.contains("weights, expected"), "{err}");
        let mut other = head.clone();
        other.features = "reward-features-v0".into();
        let err = RewardHead::parse(&other.to_json()).unwrap_err().to_string();
        assert!(err.contains("this build reads"), "{err}");
    }
}
