//! Throwaway databases for tests: a fresh SQLite file, or a fresh PostgreSQL database
//! that is dropped afterwards, so that concurrent test runs never collide.
//!
//! PostgreSQL is reached through `RLFC_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), a role allowed to create
//! databases. Under `CI=true` an unreachable server fails the test; elsewhere the
//! PostgreSQL half of a test is skipped with a message.

use std::sync::atomic::{AtomicU32, Ordering};

use store::{Backend, Store};

use crate::in_ci;

/// The admin URL used to create per-test PostgreSQL databases.
pub fn postgres_admin_url() -> String {
    std::env::var("RLFC_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A migrated store on a database of its own, removed when dropped.
pub struct TestDb {
    /// The store.
    pub store: Store,
    /// The database name (PostgreSQL) or file path (SQLite).
    pub name: String,
    _guard: Guard,
}

enum Guard {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    /// A fresh, migrated SQLite file in a temporary directory.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("rlfc.sqlite");
        let store = Store::open_sqlite(&path).await.expect("open SQLite");
        store.migrate().await.expect("migrate SQLite");
        TestDb {
            store,
            name: path.display().to_string(),
            _guard: Guard::Dir(dir),
        }
    }

    /// A fresh, migrated PostgreSQL database, or `None` (with a message) when the
    /// server is unreachable outside CI. Under `CI=true` an unreachable server panics.
    pub async fn postgres() -> Option<TestDb> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let admin_url = postgres_admin_url();
        let admin = match Store::open_url(&admin_url).await {
            Ok(s) => s,
            Err(e) if !in_ci() => {
                eprintln!("PostgreSQL unreachable, skipping the PostgreSQL half of this test: {e}");
                return None;
            }
            Err(e) => panic!("CI=true and PostgreSQL is unreachable at {admin_url}: {e}"),
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let name = format!(
            "rlfc_test_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        admin
            .execute_admin(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        admin.close().await;
        let url = database_url_with_name(&admin_url, &name);
        let store = Store::open_url(&url)
            .await
            .expect("connect to the test database");
        store.migrate().await.expect("migrate PostgreSQL");
        assert_eq!(store.backend(), Backend::Postgres);
        Some(TestDb {
            store,
            name: name.clone(),
            _guard: Guard::Postgres { admin_url, name },
        })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Guard::Postgres { admin_url, name } = self {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs outside async; a short-lived runtime on its own thread drops
            // the database, forcing off the pool's remaining connections.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    if let Ok(admin) = Store::open_url(&admin_url).await {
                        let _ = admin
                            .execute_admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .await;
                        admin.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// `url` with its database path replaced by `name`.
pub fn database_url_with_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_database_name() {
        assert_eq!(
            database_url_with_name("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            database_url_with_name("postgres://u@h/postgres?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(
            database_url_with_name("postgres://u@h", "x"),
            "postgres://u@h/x"
        );
    }
}
