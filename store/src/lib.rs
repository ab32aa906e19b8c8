//! Storage for RLFC Arena: one repository API over SQLite (the embedded default, a
//! WAL-mode file in the data directory) and PostgreSQL (`DATABASE_URL=postgres://…`).
//!
//! Every query is written once, in SQL that both engines accept, and runs on whichever
//! pool the [`Store`] holds. Amounts are wei as [`Wei`] (exact integers stored as
//! canonical decimal text), never floats. The schema itself refuses what must never
//! happen: an agent entered twice in one match, a match settled twice, an edit to the
//! balance journal.

mod adapters;
mod agents;
mod browse;
mod error;
mod escrow;
mod export;
mod learning;
mod leases;
mod ledger;
mod matches;
mod migrate;
mod outbox;
mod ratings;
mod records;
mod results;
mod sessions;
mod spaces;
mod status;
mod training;
mod users;
mod votes;
mod wei;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use adapters::AdapterFiles;
pub use agents::NewAgentVersion;
pub use error::{Error, Result};
pub use escrow::{MatchSettlement, PayoutRow};
pub use export::{ExportPair, PairCount, PairFilter, is_truncated};
pub use leases::{MatchLease, is_unfinished};
pub use ledger::{Payout, Settlement};
pub use matches::{NewJudgeScore, NewPreferencePair, NewResponse};
use migrate::Migrator;
pub use migrate::{MIGRATIONS, MigrationSource};
pub use ratings::{AppliedRating, Rating, RatingPoint, RatingUpdate};
pub use records::*;
pub use results::{
    MatchRecord, PairRecord, RecordStep, RecordedMatch, ResponseRecord, RoundRecordIn, ScoreRecord,
};
pub use sessions::{ApiToken, Session};
pub use spaces::NewSpace;
pub use status::{EntryStatus, MatchStatus, ParseStatusError, RunStatus, TxStatus};
pub use training::{NewPolRecord, NewTrainingRun, PAIR_LEAF, TrainingPair};
pub use votes::{HumanVote, VoteAgreement, VoteCandidate, VoteRow};
pub use wei::{Money, ParseEthError, Wei};

/// Which database engine a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file (the embedded default).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// The backend's name as shown to users.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The repository: a connection pool to SQLite or PostgreSQL and every query the
/// platform runs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
}

/// Runs `$body` with `$pool` bound to the concrete pool, so one query text serves
/// both engines.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pool {
            $crate::Pool::Sqlite($pool) => $body,
            $crate::Pool::Postgres($pool) => $body,
        }
    };
}

/// A transaction on either engine. Dropping it without [`Tx::commit`] rolls it back.
pub(crate) enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// Runs `$body` with `$conn` bound to the transaction's concrete connection.
macro_rules! on_tx {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match $tx {
            $crate::Tx::Sqlite(t) => {
                let $conn = &mut **t;
                $body
            }
            $crate::Tx::Postgres(t) => {
                let $conn = &mut **t;
                $body
            }
        }
    };
}

impl Tx {
    /// Makes the transaction's writes permanent.
    pub(crate) async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }
}
pub(crate) use {on_pool, on_tx};

impl Store {
    /// Opens the database named by `database_url`, or the SQLite file
    /// `<data_dir>/rlfc.sqlite` when it is `None`, and applies pending migrations.
    pub async fn connect(database_url: Option<&str>, data_dir: &Path) -> Result<Store> {
        let store = match database_url {
            Some(url) => Store::open_url(url).await?,
            None => {
                std::fs::create_dir_all(data_dir).map_err(|source| Error::DataDir {
                    path: data_dir.to_path_buf(),
                    source,
                })?;
                Store::open_sqlite(&data_dir.join("rlfc.sqlite")).await?
            }
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Opens `postgres://…` or `sqlite:…` without migrating.
    pub async fn open_url(url: &str) -> Result<Store> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url).map_err(|e| Error::Url {
                url: redact_url(url),
                reason: e.to_string(),
            })?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await
                .map_err(|e| Error::Connect {
                    url: redact_url(url),
                    reason: e.to_string(),
                })?;
            Ok(Store {
                pool: Pool::Postgres(pool),
            })
        } else if let Some(path) = url
            .strip_prefix("sqlite://")
            .or(url.strip_prefix("sqlite:"))
        {
            Store::open_sqlite(Path::new(path)).await
        } else {
            Err(Error::Url {
                url: redact_url(url),
                reason: "expected a postgres:// or sqlite: URL".into(),
            })
        }
    }

    /// Opens (creating if needed) an SQLite file in WAL mode, without migrating.
    pub async fn open_sqlite(path: &Path) -> Result<Store> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await
            .map_err(|e| Error::Connect {
                url: format!("sqlite:{}", path.display()),
                reason: e.to_string(),
            })?;
        Ok(Store {
            pool: Pool::Sqlite(pool),
        })
    }

    /// Starts a transaction.
    pub(crate) async fn begin(&self) -> Result<Tx> {
        Ok(match &self.pool {
            Pool::Sqlite(p) => Tx::Sqlite(p.begin().await?),
            Pool::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// The engine behind this store.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// The server's own version string, e.g. `PostgreSQL 15.19 …` or `SQLite 3.46.0`.
    pub async fn server_version(&self) -> Result<String> {
        Ok(match &self.pool {
            Pool::Sqlite(p) => {
                let v: String = sqlx::query_scalar("SELECT sqlite_version()")
                    .fetch_one(p)
                    .await?;
                format!("SQLite {v}")
            }
            Pool::Postgres(p) => sqlx::query_scalar("SELECT version()").fetch_one(p).await?,
        })
    }

    /// SQLite's journal mode (`wal` for the embedded default); `None` on PostgreSQL.
    pub async fn sqlite_journal_mode(&self) -> Result<Option<String>> {
        match &self.pool {
            Pool::Sqlite(p) => Ok(Some(
                sqlx::query_scalar("PRAGMA journal_mode")
                    .fetch_one(p)
                    .await?,
            )),
            Pool::Postgres(_) => Ok(None),
        }
    }

    /// Applies every pending migration; applying them again is a no-op.
    pub async fn migrate(&self) -> Result<()> {
        let migrator = Migrator::for_backend(self.backend());
        on_pool!(self, |pool| migrator.inner().run(pool).await)?;
        Ok(())
    }

    /// Versions of the migrations recorded as applied, in order.
    pub async fn applied_migrations(&self) -> Result<Vec<i64>> {
        Ok(on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success = TRUE ORDER BY version"
        )
        .fetch_all(pool)
        .await)?)
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await)
    }
}

/// Hides the password of a database URL, for messages and `rlfc config`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((creds, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match creds.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// Milliseconds since the Unix epoch, the timestamp unit of every table.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Runs one administrative statement (CREATE/DROP DATABASE) outside a transaction.
    pub async fn execute_admin(&self, sql: &str) -> Result<()> {
        on_pool!(self, |pool| sqlx::raw_sql(sqlx::AssertSqlSafe(
            sql.to_string()
        ))
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password_only() {
        assert_eq!(
            redact_url("postgres://bob:hunter2@db:5432/x"),
            "postgres://bob:***@db:5432/x"
        );
        assert_eq!(redact_url("postgres://bob@db/x"), "postgres://bob@db/x");
        assert_eq!(redact_url("sqlite:data/x.db"), "sqlite:data/x.db");
    }
}
