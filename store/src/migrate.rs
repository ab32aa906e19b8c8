//! The numbered migrations under `migrations/`, rendered for each engine.
//!
//! Most migrations are one portable file; two tokens stand for what the engines spell
//! differently: `ID_PK` (an auto-assigned 64-bit primary key) and `WEI_CHECK(col)` (a
//! check that `col` is a canonical decimal wei amount). A migration that cannot be
//! portable has one file per engine (`NNNN_name.sqlite.sql`, `NNNN_name.postgres.sql`).
//! Migrations are compiled into the binary, so a deployment needs no files.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType};

use crate::Backend;

/// Where a migration's SQL comes from.
#[derive(Debug, Clone, Copy)]
pub enum MigrationSource {
    /// One file for both engines.
    Portable(&'static str),
    /// One file per engine.
    PerBackend {
        /// The SQLite text.
        sqlite: &'static str,
        /// The PostgreSQL text.
        postgres: &'static str,
    },
}

macro_rules! migration_file {
    ($name:literal) => {
        include_str!(concat!("../../migrations/", $name))
    };
}

/// Every migration, in order: (version, file stem, source).
pub const MIGRATIONS: &[(i64, &str, MigrationSource)] = {
    use MigrationSource::*;
    &[
        (1, "users", Portable(migration_file!("0001_users.sql"))),
        (2, "agents", Portable(migration_file!("0002_agents.sql"))),
        (3, "spaces", Portable(migration_file!("0003_spaces.sql"))),
        (
            4,
            "matches_and_entries",
            Portable(migration_file!("0004_matches_and_entries.sql")),
        ),
        (
            5,
            "rounds_responses_scores",
            Portable(migration_file!("0005_rounds_responses_scores.sql")),
        ),
        (
            6,
            "preference_pairs",
            Portable(migration_file!("0006_preference_pairs.sql")),
        ),
        (
            7,
            "training_runs",
            Portable(migration_file!("0007_training_runs.sql")),
        ),
        (
            8,
            "chain_records",
            Portable(migration_file!("0008_chain_records.sql")),
        ),
        (
            9,
            "settlements_and_journal",
            Portable(migration_file!("0009_settlements_and_journal.sql")),
        ),
        (
            10,
            "journal_append_only",
            PerBackend {
                sqlite: migration_file!("0010_journal_append_only.sqlite.sql"),
                postgres: migration_file!("0010_journal_append_only.postgres.sql"),
            },
        ),
        (11, "ratings", Portable(migration_file!("0011_ratings.sql"))),
        (
            12,
            "auto_entry",
            Portable(migration_file!("0012_auto_entry.sql")),
        ),
        (
            13,
            "sessions_and_api_tokens",
            Portable(migration_file!("0013_sessions_and_api_tokens.sql")),
        ),
        (
            14,
            "browse_indexes",
            Portable(migration_file!("0014_browse_indexes.sql")),
        ),
        (
            15,
            "match_leases",
            Portable(migration_file!("0015_match_leases.sql")),
        ),
        (
            16,
            "one_training_run_per_agent",
            Portable(migration_file!("0016_one_training_run_per_agent.sql")),
        ),
        (
            17,
            "private_prompts",
            Portable(migration_file!("0017_private_prompts.sql")),
        ),
        (
            18,
            "token_scopes",
            Portable(migration_file!("0018_token_scopes.sql")),
        ),
        (
            19,
            "auto_entry_refunds",
            Portable(migration_file!("0019_auto_entry_refunds.sql")),
        ),
        (
            20,
            "training_pair_leaf",
            Portable(migration_file!("0020_training_pair_leaf.sql")),
        ),
        (
            21,
            "adapters",
            PerBackend {
                sqlite: migration_file!("0021_adapters.sqlite.sql"),
                postgres: migration_file!("0021_adapters.postgres.sql"),
            },
        ),
        (
            22,
            "chain_cursors",
            Portable(migration_file!("0022_chain_cursors.sql")),
        ),
        (
            23,
            "human_votes",
            Portable(migration_file!("0023_human_votes.sql")),
        ),
        (
            24,
            "regression_gate",
            Portable(migration_file!("0024_regression_gate.sql")),
        ),
        (
            25,
            "entry_base_model",
            Portable(migration_file!("0025_entry_base_model.sql")),
        ),
    ]
};

/// The migrations of one engine, ready to run.
#[derive(Debug)]
pub(crate) struct Migrator(sqlx::migrate::Migrator);

impl Migrator {
    /// Renders every migration for `backend`.
    pub(crate) fn for_backend(backend: Backend) -> Migrator {
        let migrations = MIGRATIONS
            .iter()
            .map(|&(version, name, source)| {
                let sql = render(source, backend);
                Migration::new(
                    version,
                    Cow::Borrowed(name),
                    MigrationType::Simple,
                    sqlx::AssertSqlSafe(sql).into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrator(sqlx::migrate::Migrator::with_migrations(migrations))
    }

    /// The sqlx migrator underneath.
    pub(crate) fn inner(&self) -> &sqlx::migrate::Migrator {
        &self.0
    }
}

/// The SQL text of one migration for one engine.
pub fn render(source: MigrationSource, backend: Backend) -> String {
    let text = match (source, backend) {
        (MigrationSource::Portable(t), _) => t,
        (MigrationSource::PerBackend { sqlite, .. }, Backend::Sqlite) => sqlite,
        (MigrationSource::PerBackend { postgres, .. }, Backend::Postgres) => postgres,
    };
    let id_pk = match backend {
        Backend::Sqlite => "INTEGER PRIMARY KEY",
        Backend::Postgres => "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    };
    expand_wei_checks(&text.replace("ID_PK", id_pk))
}

/// Replaces each `WEI_CHECK(col)` with a check that `col` holds 1 to 78 digits
/// without a leading zero, using only functions both engines have.
fn expand_wei_checks(sql: &str) -> String {
    const TOKEN: &str = "WEI_CHECK(";
    let mut out = String::with_capacity(sql.len() + 256);
    let mut rest = sql;
    while let Some(at) = rest.find(TOKEN) {
        out.push_str(&rest[..at]);
        let after = &rest[at + TOKEN.len()..];
        let close = after
            .find(')')
            .expect("WEI_CHECK( without a closing parenthesis");
        let col = after[..close].trim();
        out.push_str(&format!(
            "CHECK (length({col}) BETWEEN 1 AND 78 AND ltrim({col}, '0123456789') = '' \
             AND ({col} = '0' OR substr({col}, 1, 1) <> '0'))"
        ));
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

use sqlx::SqlSafeStr as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_migrations_is_listed_once() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        on_disk.sort();
        let mut listed = Vec::new();
        for &(version, name, source) in MIGRATIONS {
            let stem = format!("{version:04}_{name}");
            match source {
                MigrationSource::Portable(_) => listed.push(format!("{stem}.sql")),
                MigrationSource::PerBackend { .. } => {
                    listed.push(format!("{stem}.postgres.sql"));
                    listed.push(format!("{stem}.sqlite.sql"));
                }
            }
        }
        listed.sort();
        assert_eq!(on_disk, listed);
    }

    #[test]
    fn versions_increase_by_one() {
        for (i, &(version, _, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(version, i as i64 + 1);
        }
    }

    #[test]
    fn tokens_are_fully_rendered() {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            for &(_, name, source) in MIGRATIONS {
                let sql = render(source, backend);
                assert!(
                    !sql.contains("ID_PK") && !sql.contains("WEI_CHECK"),
                    "{name}"
                );
            }
        }
        let sql = expand_wei_checks("fee TEXT NOT NULL WEI_CHECK(fee),");
        assert!(sql.contains("ltrim(fee, '0123456789')"), "{sql}");
        assert!(sql.ends_with("),"), "{sql}");
    }
}
