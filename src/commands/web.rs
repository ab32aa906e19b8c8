//! The web server as the binary runs it: the chain-backed payment rail behind the web
//! layer's `Payments` trait, the web configuration from `[web]`, and `rlfc watch`.

use std::sync::Arc;

use anyhow::{Context, Result};
use platform::payments::PaymentError as ArenaPaymentError;
use store::Wei;
use web::{PaymentError, PaymentFuture};

use crate::config::Config;
use platform::Platform;

/// Deposits and withdrawals through the Arena contract, mirrored in the journal. Users'
/// own wallets sign them (the browser's EIP-1193 wallet, reported to the server by
/// transaction hash, and also found by the chain follower); on the embedded chain,
/// whose dev wallets' keys are public, the server also signs them itself (one click).
pub struct ChainPayments {
    /// The payment rail.
    pub payments: Arc<platform::payments::Payments>,
    /// What the browser's wallet needs.
    pub terms: web::WalletTerms,
}

impl ChainPayments {
    /// The rail over `payments` on chain `chain_id`; `server_signs` only for dev wallets.
    pub fn new(
        payments: Arc<platform::payments::Payments>,
        chain_id: u64,
        server_signs: bool,
    ) -> ChainPayments {
        let terms = web::WalletTerms {
            chain_id,
            arena: format!("{:#x}", payments.contracts().deployment().arena),
            confirmations: payments.confirmations(),
            server_signs,
            fee_token: payments
                .contracts()
                .deployment()
                .fee_token
                .map(|t| format!("{t:#x}")),
            symbol: payments.money().symbol.clone(),
            decimals: payments.money().decimals,
        };
        ChainPayments { payments, terms }
    }
}

fn parse_tx(text: &str) -> Result<chain::B256, PaymentError> {
    text.parse().map_err(|e| PaymentError::InvalidField {
        field: "tx_hash".into(),
        reason: format!("{text}: {e}"),
    })
}

fn web_error(e: ArenaPaymentError) -> PaymentError {
    match e {
        ArenaPaymentError::Invalid {
            field: "amount_wei",
            reason,
        } => PaymentError::Rejected(reason),
        ArenaPaymentError::Invalid { field, reason } => PaymentError::InvalidField {
            field: field.into(),
            reason,
        },
        e @ ArenaPaymentError::Unconfirmed { .. } => PaymentError::Pending(format!(
            "{e}: report it again in a little while (the chain follower also credits it)"
        )),
        ArenaPaymentError::Store(e @ store::Error::InsufficientBalance { .. }) => {
            PaymentError::Pending(format!(
                "the chain paid the withdrawal, but your queued entries hold part of it ({e}); \
                 it is debited once they play or are refunded"
            ))
        }
        ArenaPaymentError::Store(store::Error::Invalid { field, reason }) => {
            PaymentError::Rejected(format!("{field}: {reason}"))
        }
        other => PaymentError::Failed(other.to_string()),
    }
}

impl web::Payments for ChainPayments {
    fn deposit(&self, user_id: i64, amount: Wei) -> PaymentFuture<'_> {
        Box::pin(async move {
            self.payments
                .deposit(user_id, amount)
                .await
                .map_err(web_error)
        })
    }

    fn withdraw(&self, user_id: i64, amount: Wei) -> PaymentFuture<'_> {
        Box::pin(async move {
            match self.payments.withdraw(user_id, amount).await {
                Err(ArenaPaymentError::Store(store::Error::InsufficientBalance {
                    have,
                    need,
                    ..
                })) => Err(PaymentError::InsufficientFunds { have, need }),
                other => other.map_err(web_error),
            }
        })
    }

    fn wallet_terms(&self) -> Option<web::WalletTerms> {
        Some(self.terms.clone())
    }

    fn signs_for_users(&self) -> bool {
        self.terms.server_signs
    }

    fn record_deposit<'a>(&'a self, user_id: i64, tx_hash: &'a str) -> PaymentFuture<'a> {
        Box::pin(async move {
            let tx = parse_tx(tx_hash)?;
            self.payments
                .record_wallet_deposit(user_id, tx)
                .await
                .map_err(web_error)
        })
    }

    fn record_withdrawal<'a>(&'a self, user_id: i64, tx_hash: &'a str) -> PaymentFuture<'a> {
        Box::pin(async move {
            let tx = parse_tx(tx_hash)?;
            self.payments
                .record_wallet_withdrawal(user_id, tx)
                .await
                .map_err(web_error)
        })
    }
}

/// The web layer's settings for this configuration: sign-in names `web.public_url`
/// (default `http://<web.bind>`), requests must name its host (on a loopback bind also
/// `localhost` and `127.0.0.1` with the bound port), the cookie is `Secure` on https,
/// and the dev login is offered only on the embedded chain (its wallets' keys are
/// public) and a loopback bind, never as the operator.
/// `bound` is the address the listener got (its port, when `web.bind` asks for port 0).
pub fn web_config(
    config: &Config,
    demo: bool,
    operator: Option<String>,
    bound: std::net::SocketAddr,
) -> Result<web::WebConfig> {
    let mut web_section = config.web.clone();
    web_section.bind = bound.to_string();
    let public = web_section.public()?;
    let loopback = bound.ip().is_loopback();
    let also: Vec<String> = match bound {
        addr if loopback && config.web.public_url.is_empty() => {
            let port = addr.port();
            vec![
                format!("localhost:{port}"),
                format!("127.0.0.1:{port}"),
                format!("[::1]:{port}"),
            ]
        }
        _ => Vec::new(),
    };
    let embedded = config.chain.backend == chain::Backend::Embedded;
    if demo && embedded && !loopback {
        tracing::warn!(bind = %config.web.bind,
            "the dev login is off: web.bind is not a loopback address");
    }
    Ok(web::WebConfig {
        demo_login: demo && embedded && loopback,
        ws_per_ip: config.web.ws_per_ip,
        trusted_proxies: config.web.trusted_proxies.clone(),
        chain_id: config.chain.embedded_chain_id(),
        operator,
        ..web::WebConfig::default()
    }
    .for_public_url(&public, &also))
}

/// The web layer's state over the platform.
pub fn app_state(
    platform: &Platform,
    config: &Config,
    demo: bool,
    bound: std::net::SocketAddr,
) -> Result<web::AppState> {
    let operator = Some(format!("{:#x}", platform.payments.operator()));
    // Meta-prompts are limited in tokens of the agents' model (SmolLM2): its tokenizer
    // comes from the model file, without loading the weights.
    let gguf = config
        .models
        .fetcher()
        .ensure(&models::SMOLLM2)
        .context("the agents' model file, to count meta-prompt tokens (run `rlfc models fetch`)")?
        .remove(0);
    let tokenizer = Arc::new(
        agents::ChatTokenizer::from_gguf_path(&gguf)
            .with_context(|| format!("read the tokenizer of {}", gguf.display()))?,
    );
    let count: web::TokenCounter = Arc::new(move |text: &str| {
        tokenizer
            .encode(text)
            .map(|ids| ids.len())
            .map_err(|e| format!("count meta-prompt tokens: {e}"))
    });
    Ok(web::AppState::new(
        platform.store.clone(),
        platform.bus.clone(),
        platform
            .spaces
            .iter()
            .map(|s| (*s.rulebook).clone())
            .collect(),
        Arc::new(ChainPayments::new(
            platform.payments.clone(),
            config.chain.embedded_chain_id(),
            config.chain.backend == chain::Backend::Embedded,
        )),
        web_config(config, demo, operator, bound)?,
    )
    .with_prompt_tokens(count)
    .with_base_models(platform.base_models.clone()))
}

/// The web server as `platform::roles::serve` and `platform::demo::run` start it: the
/// UI and API on `[web] bind` over the platform (`demo`: with the one-click dev login);
/// once `stop` turns true it stops accepting and finishes the requests in progress.
pub fn start_web(
    platform: &Platform,
    mut stop: tokio::sync::watch::Receiver<bool>,
    config: Config,
    demo: bool,
) -> platform::roles::StartWeb<'_> {
    Box::pin(async move {
        let until = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        spawn_server_until(platform, &config, demo, until)
            .await
            .map_err(|e| platform::platform::PlatformError::Setup {
                what: "start the web server".into(),
                source: e.into(),
            })
    })
}

/// Starts the web UI and API on `[web] bind` over the platform; once `stop` resolves
/// it stops accepting and finishes the requests in progress. Returns the task.
async fn spawn_server_until(
    platform: &Platform,
    config: &Config,
    demo: bool,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(&config.web.bind)
        .await
        .with_context(|| format!("bind web.bind {}", config.web.bind))?;
    let addr = listener.local_addr()?;
    let state = app_state(platform, config, demo, addr)?;
    tracing::info!(url = %format!("http://{addr}/"), "web UI and API listening");
    Ok(tokio::spawn(async move {
        if let Err(e) = web::serve(listener, state, stop).await {
            tracing::error!(error = %e, "web server stopped");
        }
    }))
}

/// `rlfc watch`: prints a match's events as they happen.
pub async fn watch(url: &str, match_id: i64) -> Result<()> {
    web::watch::run(url, match_id)
        .await
        .with_context(|| format!("watch match {match_id} at {url}"))
}
