//! What the operator sets: sign-in identity, cookie flags and every limit.

use std::time::Duration;

/// The web layer's configuration.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Offer the one-click dev login (`POST /auth/dev-login`) with local dev wallets.
    pub demo_login: bool,
    /// Mark the session cookie `Secure` (serve over HTTPS in production).
    pub cookie_secure: bool,
    /// The EIP-4361 `domain` sign-in messages must name (host and port as browsers see it).
    pub siwe_domain: String,
    /// The EIP-4361 `uri` the server uses in messages it builds (dev login).
    pub siwe_uri: String,
    /// The EIP-4361 chain id messages must name.
    pub chain_id: u64,
    /// Largest accepted request body, bytes.
    pub body_limit: usize,
    /// How long a session lasts.
    pub session_ttl: Duration,
    /// How long a sign-in nonce stays valid.
    pub nonce_ttl: Duration,
    /// Writes (POST/PUT/PATCH/DELETE) allowed per user per minute.
    pub user_writes_per_minute: u32,
    /// Writes allowed per client IP per minute.
    pub ip_writes_per_minute: u32,
    /// Concurrent websocket spectators per client IP.
    pub ws_per_ip: usize,
    /// Rows per database page of the dataset export.
    pub export_page_rows: i64,
}

impl Default for WebConfig {
    fn default() -> WebConfig {
        WebConfig {
            demo_login: false,
            cookie_secure: true,
            siwe_domain: "localhost:8080".into(),
            siwe_uri: "http://localhost:8080".into(),
            chain_id: 31337,
            body_limit: 64 * 1024,
            session_ttl: Duration::from_secs(7 * 24 * 3600),
            nonce_ttl: Duration::from_secs(10 * 60),
            user_writes_per_minute: 120,
            ip_writes_per_minute: 600,
            ws_per_ip: 16,
            export_page_rows: 1000,
        }
    }
}
