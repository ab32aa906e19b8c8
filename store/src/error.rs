//! The storage error type: what went wrong, in words a caller can act on.

use std::path::PathBuf;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database URL could not be parsed.
    #[error("database URL {url}: {reason}")]
    Url {
        /// The URL, password hidden.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The database could not be reached.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The URL, password hidden.
        url: String,
        /// The driver's message.
        reason: String,
    },
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row that was asked for does not exist.
    #[error("{what} {id} not found")]
    NotFound {
        /// The kind of row.
        what: &'static str,
        /// Its id or key.
        id: String,
    },
    /// A uniqueness rule refused the write (e.g. the same agent twice in one match).
    #[error("{what} already exists")]
    Duplicate {
        /// What was duplicated.
        what: String,
    },
    /// The match has already been settled or refunded.
    #[error("match {match_id} is already {outcome}")]
    AlreadySettled {
        /// The match.
        match_id: i64,
        /// `settled` or `refunded`.
        outcome: String,
    },
    /// A balance would go below zero.
    #[error("insufficient {account} balance for user {user_id}: have {have} wei, need {need} wei")]
    InsufficientBalance {
        /// The user.
        user_id: i64,
        /// `available` or `locked`.
        account: &'static str,
        /// The current balance.
        have: crate::Wei,
        /// The amount asked for.
        need: crate::Wei,
    },
    /// The request breaks a rule of the data model.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// The result type of every storage call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Maps a unique-constraint violation onto [`Error::Duplicate`], naming `what`.
    pub(crate) fn on_unique(e: sqlx::Error, what: impl Into<String>) -> Error {
        if let sqlx::Error::Database(db) = &e
            && db.is_unique_violation()
        {
            return Error::Duplicate { what: what.into() };
        }
        Error::Database(e)
    }
}
