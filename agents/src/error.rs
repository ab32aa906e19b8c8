//! The runtime's error type: every variant names the file (where there is one) and the problem.

use std::path::PathBuf;

/// Everything the agent runtime can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The GGUF model file does not exist.
    #[error("model file {path} not found (run `rlfc models fetch` to download the default model)")]
    ModelNotFound {
        /// The path that was looked up.
        path: PathBuf,
    },
    /// The GGUF file ends before the data its header promises.
    #[error("model file {path} is truncated: {detail}")]
    TruncatedModel {
        /// The model file.
        path: PathBuf,
        /// What was missing.
        detail: String,
    },
    /// The GGUF file is not a readable GGUF file at all.
    #[error("model file {path} is not a valid GGUF file: {detail}")]
    InvalidModel {
        /// The model file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The GGUF file holds an architecture this runtime cannot run.
    #[error(
        "model file {path} has unsupported architecture `{architecture}` (supported: llama, qwen2)"
    )]
    UnsupportedArchitecture {
        /// The model file.
        path: PathBuf,
        /// The `general.architecture` value found.
        architecture: String,
    },
    /// The GGUF file's tokenizer metadata cannot be turned into a tokenizer.
    #[error("model file {path} has an unusable tokenizer: {detail}")]
    Tokenizer {
        /// The model file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// An adapter does not fit the base model (shapes, target modules or layer count).
    #[error("adapter {path} does not match the base model: {detail}")]
    AdapterMismatch {
        /// The adapter file or directory.
        path: PathBuf,
        /// What did not match.
        detail: String,
    },
    /// An adapter file cannot be read or written.
    #[error("adapter {path}: {detail}")]
    AdapterIo {
        /// The adapter file or directory.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The prompt (plus what must still be generated) does not fit in the context window.
    #[error(
        "prompt of {prompt_tokens} tokens is longer than the model context of {context} tokens"
    )]
    PromptTooLong {
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// The model's context length.
        context: usize,
    },
    /// Sampling settings out of range.
    #[error("invalid sampling settings: {0}")]
    InvalidSampling(String),
    /// A tensor computation failed.
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// Text could not be encoded or decoded.
    #[error("tokenizer failed: {0}")]
    Encoding(String),
    /// A DPO training setting is out of range.
    #[error("invalid DPO setting `{field}`: {detail}")]
    InvalidTrainingConfig {
        /// The setting's field name in `DpoConfig`.
        field: &'static str,
        /// The limit it breaks and the value found.
        detail: String,
    },
    /// A preference pair cannot be trained on.
    #[error("preference pair {index} is unusable: {detail}")]
    InvalidPair {
        /// Position of the pair in the training order (0-based).
        index: usize,
        /// What is wrong with it.
        detail: String,
    },
    /// A compute device cannot be used (no CUDA in this build, or the driver refused).
    #[error("device: {0}")]
    Device(String),
    /// A training run cannot start or failed.
    #[error("DPO training: {0}")]
    Training(String),
}

/// The runtime's result type.
pub type Result<T> = std::result::Result<T, AgentError>;
