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
    /// New websocket connections allowed per client IP per minute.
    pub ws_connects_per_minute: u32,
    /// Largest message (and frame) a spectator may send, bytes; a client only ever
    /// sends pings and a close, so anything bigger ends the socket.
    pub ws_max_message: usize,
    /// Reverse proxies whose `X-Forwarded-For` names the client: for a request from one
    /// of them, the client is the last address in that header not itself a trusted
    /// proxy. From any other peer the header is ignored.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Rows per database page of the dataset export.
    pub export_page_rows: i64,
    /// Dataset exports that may stream at once (more get 429).
    pub max_concurrent_exports: usize,
    /// The most tokens (of the agents' model) a meta-prompt may have, so that it, the
    /// task, the history shown and the answer always fit the context.
    pub max_prompt_tokens: usize,
    /// The `Host` values (host, and port where it is not the scheme's default) that
    /// requests may name; any other is refused with 421, so a DNS-rebinding page cannot
    /// reach the API. Empty accepts every host (in-process tests only).
    pub allowed_hosts: Vec<String>,
    /// The wallet the dev login never signs in as (the chain operator, whose key signs
    /// settlements and proof-of-learning records).
    pub operator: Option<String>,
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
            ws_connects_per_minute: 120,
            ws_max_message: 4 * 1024,
            trusted_proxies: Vec::new(),
            export_page_rows: 1000,
            max_prompt_tokens: 1024,
            max_concurrent_exports: 4,
            allowed_hosts: Vec::new(),
            operator: None,
        }
    }
}

/// A public origin parsed from `web.public_url`: `http` or `https`, a host, an optional
/// port, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    /// `http` or `https`.
    pub scheme: String,
    /// Host name or IP literal, lowercase (IPv6 in brackets).
    pub host: String,
    /// The port, if not the scheme's default.
    pub port: Option<u16>,
}

impl PublicUrl {
    /// Parses `scheme://host[:port][/]`; the error names what is wrong.
    pub fn parse(url: &str) -> std::result::Result<PublicUrl, String> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            format!("{url:?} has no scheme: expected http://host[:port] or https://host[:port]")
        })?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!("scheme {scheme:?} is not http or https"));
        }
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty()
            || authority.contains(['/', '?', '#', '@', ' '])
            || !authority.is_ascii()
        {
            return Err(format!(
                "{url:?} must be only a scheme, a host and a port (no path, query, user or spaces)"
            ));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && (!h.contains(':') || h.ends_with(']')) => {
                let port: u16 = p
                    .parse()
                    .map_err(|_| format!("port {p:?} is not a number from 1 to 65535"))?;
                if port == 0 {
                    return Err("port 0 cannot be reached".into());
                }
                (h, Some(port))
            }
            _ => (authority, None),
        };
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        let default = if scheme == "https" { 443 } else { 80 };
        Ok(PublicUrl {
            host: host.to_ascii_lowercase(),
            port: port.filter(|&p| p != default),
            scheme,
        })
    }

    /// `host[:port]` as browsers send it in `Host` (no default port).
    pub(crate) fn authority(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }

    /// `scheme://host[:port]`.
    pub(crate) fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.authority())
    }

    /// Whether cookies must be `Secure`.
    pub(crate) fn is_https(&self) -> bool {
        self.scheme == "https"
    }
}

impl WebConfig {
    /// Sign-in, cookies and the `Host` allow-list for a server reached at `public`:
    /// SIWE messages must name its authority and origin, the cookie is `Secure` on https,
    /// and requests may name its authority or one of `also` (more `host[:port]`).
    pub fn for_public_url(mut self, public: &PublicUrl, also: &[String]) -> WebConfig {
        self.siwe_domain = public.authority();
        self.siwe_uri = public.origin();
        self.cookie_secure = public.is_https();
        self.allowed_hosts = std::iter::once(public.authority())
            .chain(also.iter().map(|h| h.to_ascii_lowercase()))
            .collect();
        self.allowed_hosts.dedup();
        self
    }
}
