//! Redis for tests: the server's URL and a fresh key namespace per test, whose keys
//! are deleted when it is dropped, so concurrent test runs never collide.
//!
//! Redis is reached through `RLFC_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`).
//! Under `CI=true` an unreachable server fails the test; elsewhere the Redis half of
//! a test is skipped with a message.

use std::sync::atomic::{AtomicU32, Ordering};

/// The Redis URL tests use.
pub fn test_redis_url() -> String {
    std::env::var("RLFC_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// The test Redis URL when the server answers, or `None` (with a message) outside
/// CI. Under `CI=true` an unreachable server panics.
pub async fn redis_url() -> Option<String> {
    let url = test_redis_url();
    let answer = async {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    }
    .await;
    match answer {
        Ok(_) => Some(url),
        Err(e) if !crate::in_ci() => {
            eprintln!("Redis unreachable, skipping the Redis half of this test: {e}");
            None
        }
        Err(e) => panic!(
            "CI=true and Redis is unreachable at {}: {e}",
            store::redact_url(&url)
        ),
    }
}

/// A key namespace of its own; every key under it is deleted on drop.
pub struct TestNamespace {
    url: String,
    name: String,
}

impl TestNamespace {
    /// A fresh namespace on the Redis at `url`.
    pub fn new(url: &str) -> TestNamespace {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        TestNamespace {
            url: url.to_string(),
            name: format!(
                "rlfc-test-{}-{}-{nanos}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    /// The namespace.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn clean(&self) -> redis::RedisResult<()> {
        let client = redis::Client::open(self.url.as_str())?;
        let mut conn = client.get_connection()?;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.name))
            .query(&mut conn)?;
        if !keys.is_empty() {
            redis::cmd("DEL").arg(keys).query::<()>(&mut conn)?;
        }
        Ok(())
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if let Err(e) = self.clean() {
            eprintln!("could not delete test keys under {}: {e}", self.name);
        }
    }
}
