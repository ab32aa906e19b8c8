//! The judge panel: judges turn a round's answers into scores in [0, 1], and the panel
//! combines them by a Space's weights into the ranking that pays out, rates and trains.
//!
//! Every score carries its judge's identity (model hash and template version) so it
//! can be traced and re-run, and every judge's individual score is kept so agreement
//! between judges can be shown and exported.
//!
//! Judges: [`LlmJudge`] (SmolLM2 or any GGUF on the agents runtime, pointwise or
//! pairwise), [`EmbeddingJudge`] (MiniLM relevance and copying) and [`RulesJudge`]
//! (the Space's rule verifiers). [`Panel::from_rulebook`] weighs them as a Space says,
//! controls length, ranks hard-rule failures last and zeroes responses that try to
//! address the judges (see `panel.rs`).

pub mod bench;
pub mod dataset;
pub mod embedding;
pub mod endpoint;
pub mod injection;
pub mod llm;
mod panel;
pub mod ranking;
pub mod reward;
pub mod reward_data;
mod rules;
pub mod screen;
mod text;
mod verdict;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use agents::DeviceSpec;
pub use embedding::EmbeddingJudge;
pub use llm::{LlmJudge, LlmMode, PairVerdict, Preference};
pub use panel::{LoadedJudges, Panel, PanelMember, PanelRound};
pub use ranking::{agreement, pair_margin, places, round_scores};
pub use reward::{RewardHead, RewardJudge};
pub use rules::RulesJudge;
pub use screen::SemanticScreen;
pub use verdict::ResponseVerdict;

/// What the judges are told about a round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// The task as the agents saw it.
    pub prompt: String,
    /// The Space's rubric.
    pub rubric: String,
    /// The verifiable answer, for exact-answer Spaces (only the rule judge reads it).
    #[serde(default)]
    pub answer: Option<String>,
    /// The values that filled the task template (for `{var}` rules).
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Each seat's role line (debate sides), in seat order; empty when the Space gives
    /// none. Judges read a response against its own seat's role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The earlier answers the seats were shown this round (the opponent's last turn in
    /// a debate); empty in the first round and in Spaces without history. A response
    /// should answer them, and copying them earns nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<String>,
}

impl Task {
    /// A task with a prompt and rubric and no verifiable answer.
    pub fn new(prompt: impl Into<String>, rubric: impl Into<String>) -> Task {
        Task {
            prompt: prompt.into(),
            rubric: rubric.into(),
            answer: None,
            vars: BTreeMap::new(),
            roles: Vec::new(),
            history: Vec::new(),
        }
    }

    /// The role line of the seat that wrote response `i`, if the Space gives roles.
    pub(crate) fn role(&self, i: usize) -> Option<&str> {
        self.roles.get(i).map(String::as_str)
    }

    /// The judges' view of one round's task of a Space.
    pub fn from_space(book: &spaces::Rulebook, task: &spaces::Task) -> Task {
        Task {
            prompt: task.prompt.clone(),
            rubric: book.rubric.trim().to_string(),
            answer: task.answer.clone(),
            vars: task.vars.clone(),
            roles: book.roles.clone(),
            history: Vec::new(),
        }
    }

    /// The task as the rule verifiers take it.
    pub(crate) fn to_space(&self) -> spaces::Task {
        spaces::Task {
            prompt: self.prompt.clone(),
            answer: self.answer.clone(),
            vars: self.vars.clone(),
        }
    }
}

/// Who produced a score, precisely enough to re-run it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct JudgeId {
    /// The judge's kind (`llm`, `embedding`, `rules`…).
    pub name: String,
    /// sha256 of its model file(s); empty for judges without a model.
    pub model_hash: String,
    /// Version of its prompt template or scoring procedure.
    pub template_version: String,
}

/// One judge's verdict on one response: what the panel returns, the match world
/// keeps, the events carry and the store writes. Its JSON is flat (`judge` is the
/// judge's name, beside `model_hash` and `template_version`), the layout result hashes
/// have always used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "FlatScore", from = "FlatScore")]
pub struct Score {
    /// In [0, 1], higher is better.
    pub score: f64,
    /// A short reason.
    pub rationale: String,
    /// Who scored it.
    pub judge: JudgeId,
}

impl Score {
    /// `judge`'s `score` of a response, with why.
    pub fn new(judge: JudgeId, score: f64, rationale: impl Into<String>) -> Score {
        Score {
            score,
            rationale: rationale.into(),
            judge,
        }
    }
}

/// [`Score`] as JSON: the judge's identity inlined, in the order result hashes use.
#[derive(Serialize, Deserialize)]
struct FlatScore {
    judge: String,
    #[serde(default)]
    model_hash: String,
    #[serde(default)]
    template_version: String,
    score: f64,
    rationale: String,
}

impl From<Score> for FlatScore {
    fn from(s: Score) -> FlatScore {
        FlatScore {
            judge: s.judge.name,
            model_hash: s.judge.model_hash,
            template_version: s.judge.template_version,
            score: s.score,
            rationale: s.rationale,
        }
    }
}

impl From<FlatScore> for Score {
    fn from(s: FlatScore) -> Score {
        Score {
            score: s.score,
            rationale: s.rationale,
            judge: JudgeId {
                name: s.judge,
                model_hash: s.model_hash,
                template_version: s.template_version,
            },
        }
    }
}

/// A judge failure.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// A model file could not be read or is malformed.
    #[error("{path}: {reason}")]
    Model {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The tensor library failed.
    #[error("judge computation failed: {0}")]
    Compute(#[from] candle_core::Error),
    /// Tokenisation failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The LLM runtime failed.
    #[error("LLM judge: {0}")]
    Runtime(#[from] agents::AgentError),
    /// The inference server the LLM judge runs on failed or refused.
    #[error("judge endpoint {url}: {reason}")]
    Endpoint {
        /// The request's URL.
        url: String,
        /// What went wrong (after the retries).
        reason: String,
    },
    /// A Space's weights name a judge that was not loaded.
    #[error("the Space weighs the {0} judge but it was not loaded")]
    MissingJudge(&'static str),
    /// A labelled data set could not be read.
    #[error("{path}:{line}: {reason}")]
    Dataset {
        /// The file.
        path: String,
        /// The 1-based line (0 for the whole file).
        line: usize,
        /// Why.
        reason: String,
    },
}

/// One round for a judge to score: a task and the responses to it.
#[derive(Debug, Clone, Copy)]
pub struct Round<'a> {
    /// The task.
    pub task: &'a Task,
    /// The responses, in seat order.
    pub responses: &'a [&'a str],
}

/// A judge: scores N responses to one task.
pub trait Judge: Send + Sync {
    /// This judge's identity.
    fn id(&self) -> JudgeId;
    /// One score per response, in order.
    fn score(&self, task: &Task, responses: &[&str]) -> Result<Vec<Score>, JudgeError>;
    /// Scores several rounds (of different tasks, even different Spaces), one result per
    /// round in order. A judge that can share work across rounds (one batched forward
    /// pass) overrides this; either way each round gets bit for bit what
    /// [`Judge::score`] gives it alone, and a failing round fails alone.
    fn score_many(&self, rounds: &[Round<'_>]) -> Vec<Result<Vec<Score>, JudgeError>> {
        rounds
            .iter()
            .map(|r| self.score(r.task, r.responses))
            .collect()
    }
    /// Whether the panel must show this judge the whole response rather than the
    /// length-controlled prefix (true for objective checks such as length rules).
    fn sees_full_text(&self) -> bool {
        false
    }
}

/// The kind of a device, as a judge's identity names it when it scores off the
/// runtime's CPU kernels (`cpu`, `cuda`, `metal`).
pub fn device_kind(device: &candle_core::Device) -> &'static str {
    match device {
        candle_core::Device::Cpu => "cpu",
        candle_core::Device::Cuda(_) => "cuda",
        candle_core::Device::Metal(_) => "metal",
    }
}
