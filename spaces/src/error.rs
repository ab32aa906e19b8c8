//! The one error type of the crate. Every rulebook problem names the file, the key as a
//! dotted path (`rules[2].max`), and what is wrong, so an author can fix it without
//! reading code.

use std::fmt;

/// Why a Space rulebook could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SpaceError {
    /// The file or directory could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The path as given by the caller.
        file: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML.
    #[error("{file}: not valid TOML: {problem}")]
    Syntax {
        /// The path as given by the caller.
        file: String,
        /// The parser's message, with the line where it stopped.
        problem: String,
    },
    /// The TOML is valid but a key is missing, unknown, mistyped or out of range.
    #[error("{file}: key {key}: {problem}")]
    Invalid {
        /// The path as given by the caller.
        file: String,
        /// Dotted path of the offending key, e.g. `payout.weights[1]`.
        key: String,
        /// What is wrong, in a few words.
        problem: String,
    },
}

impl SpaceError {
    /// Builds an [`SpaceError::Invalid`].
    pub(crate) fn invalid(file: &str, key: impl fmt::Display, problem: impl fmt::Display) -> Self {
        SpaceError::Invalid {
            file: file.to_owned(),
            key: key.to_string(),
            problem: problem.to_string(),
        }
    }
}

/// A validation problem before the file name is attached: the key path and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyError {
    /// Dotted path of the key.
    pub key: String,
    /// What is wrong.
    pub problem: String,
}

impl KeyError {
    /// Builds a key error from anything printable.
    pub(crate) fn new(key: impl fmt::Display, problem: impl fmt::Display) -> Self {
        KeyError {
            key: key.to_string(),
            problem: problem.to_string(),
        }
    }

    /// Attaches the file name.
    pub(crate) fn in_file(self, file: &str) -> SpaceError {
        SpaceError::invalid(file, self.key, self.problem)
    }
}
