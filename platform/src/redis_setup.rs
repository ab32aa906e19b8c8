//! Checks shared by the Redis backends of the bus and the job queue: the URL and the
//! key namespace, refused with the setting named before anything connects.

/// A Redis setting that is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct BadSetting {
    /// The setting.
    pub field: &'static str,
    /// What is accepted.
    pub reason: String,
}

/// Checks a key namespace: 1 to 64 characters of letters, digits, `_-.:`.
pub fn check_namespace(namespace: &str) -> Result<(), BadSetting> {
    let ok = (1..=64).contains(&namespace.len())
        && namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(BadSetting {
            field: "redis.namespace",
            reason: format!("{namespace:?}: accepts 1 to 64 letters, digits, '_', '-', '.', ':'"),
        })
    }
}

/// Opens a client for `url` (nothing connects yet); the password never appears in
/// the error.
pub fn open_client(url: &str) -> Result<redis::Client, BadSetting> {
    let bad = |why: String| BadSetting {
        field: "redis.url",
        reason: format!("{:?}: {why}", store::redact_url(url)),
    };
    if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix:")) {
        return Err(bad(
            "accepts redis://[user:password@]host[:port][/db] or unix:PATH".into(),
        ));
    }
    redis::Client::open(url).map_err(|e| bad(e.to_string()))
}

/// How long a non-blocking command may take before it counts as failed. Generous:
/// a loaded machine can stall a reply well past redis-rs's default of 500 ms.
pub(crate) const RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A reconnecting, multiplexed connection for non-blocking commands.
pub(crate) async fn connection_manager(
    client: &redis::Client,
) -> redis::RedisResult<redis::aio::ConnectionManager> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(std::time::Duration::from_secs(5)))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(3);
    client.get_connection_manager_with_config(config).await
}
