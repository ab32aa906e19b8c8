//! Abuse limits: write rate per client IP and per user (token buckets from
//! `governor`), and concurrent websocket spectators per IP.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use axum::extract::ConnectInfo;
use axum::http::Method;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::WebConfig;
use crate::error::{Error, Result};

/// The live limiters of one server.
pub(crate) struct Limits {
    user_writes: DefaultKeyedRateLimiter<i64>,
    ip_writes: DefaultKeyedRateLimiter<IpAddr>,
    ws_per_ip: usize,
    ws_open: Mutex<HashMap<IpAddr, usize>>,
    ws_connects: DefaultKeyedRateLimiter<IpAddr>,
    trusted_proxies: Vec<IpAddr>,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).expect("at least one"))
}

impl Limits {
    /// Limiters sized from the configuration.
    pub(crate) fn new(config: &WebConfig) -> Limits {
        Limits {
            user_writes: RateLimiter::keyed(per_minute(config.user_writes_per_minute)),
            ip_writes: RateLimiter::keyed(per_minute(config.ip_writes_per_minute)),
            ws_per_ip: config.ws_per_ip,
            ws_open: Mutex::default(),
            ws_connects: RateLimiter::keyed(per_minute(config.ws_connects_per_minute)),
            trusted_proxies: config.trusted_proxies.clone(),
        }
    }

    /// Takes one write from `user_id`'s bucket, or refuses with 429.
    pub(crate) fn user_write(&self, user_id: i64) -> Result<()> {
        self.user_writes
            .check_key(&user_id)
            .map_err(|_| Error::RateLimited)
    }

    /// Takes one write from `ip`'s bucket, or refuses with 429.
    pub(crate) fn ip_write(&self, ip: IpAddr) -> Result<()> {
        if self.ip_writes.len() > 100_000 {
            // Forget full buckets so a flood of addresses cannot grow the map forever.
            self.ip_writes.retain_recent();
        }
        self.ip_writes
            .check_key(&ip)
            .map_err(|_| Error::RateLimited)
    }

    /// Admits one more websocket from `ip`, or `None` when it already has the most
    /// open or has connected too often this minute.
    pub(crate) fn open_ws(self: &Arc<Self>, ip: IpAddr) -> Option<WsPermit> {
        if self.ws_connects.len() > 100_000 {
            self.ws_connects.retain_recent();
        }
        self.ws_connects.check_key(&ip).ok()?;
        let mut open = self.ws_open.lock().expect("ws limit lock");
        let n = open.entry(ip).or_insert(0);
        if *n >= self.ws_per_ip {
            return None;
        }
        *n += 1;
        Some(WsPermit {
            limits: self.clone(),
            ip,
        })
    }
}

/// One admitted websocket; dropping it frees the slot.
pub(crate) struct WsPermit {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Drop for WsPermit {
    fn drop(&mut self) {
        let mut open = self.limits.ws_open.lock().expect("ws limit lock");
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Whether a method changes state (and so counts as a write).
pub(crate) fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl Limits {
    /// The client's IP: the socket peer, or, when the peer is a trusted proxy, the
    /// last address in `X-Forwarded-For` that is not a trusted proxy. Without
    /// connection info (in-process tests) all requests share the unspecified address.
    pub(crate) fn client_ip(
        &self,
        headers: &axum::http::HeaderMap,
        extensions: &axum::http::Extensions,
    ) -> IpAddr {
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        if !self.trusted_proxies.contains(&peer) {
            return peer;
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !self.trusted_proxies.contains(ip))
            .unwrap_or(peer)
    }
}
