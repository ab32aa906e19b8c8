//! [`AppState`]: what every handler can reach, cheap to clone.

use std::sync::Arc;

use platform::bus::Bus;
use spaces::Rulebook;
use store::Store;

use crate::config::WebConfig;
use crate::limits::Limits;
use crate::pages::templates::Templates;
use crate::payments::Payments;

/// The shared state of the web layer: the store, the event bus, the Space rulebooks,
/// the payment rail, the configuration and the live limiters.
#[derive(Clone)]
pub struct AppState {
    pub(crate) store: Store,
    pub(crate) bus: Bus,
    pub(crate) rulebooks: Arc<Vec<Rulebook>>,
    pub(crate) payments: Arc<dyn Payments>,
    pub(crate) config: Arc<WebConfig>,
    pub(crate) limits: Arc<Limits>,
    pub(crate) templates: Arc<Templates>,
    /// The unit money is shown and typed in (the fee asset's).
    pub(crate) money: Arc<store::Money>,
    /// Flips to `true` when the server shuts down; long-lived sockets watch it.
    pub(crate) shutdown: Arc<tokio::sync::watch::Sender<bool>>,
    /// Counts a meta-prompt's tokens in the agents' model, when the server has its
    /// tokenizer.
    pub(crate) prompt_tokens: Option<TokenCounter>,
    /// Dataset exports streaming now (`WebConfig::max_concurrent_exports`).
    pub(crate) export_slots: Arc<tokio::sync::Semaphore>,
    /// Leaderboard rank ranges per Space, with the number of matches they were
    /// bootstrapped from (recomputed when a match settles).
    pub(crate) rank_ranges: Arc<std::sync::Mutex<RankRangeCache>>,
    /// The base models agents may choose (`[models]`; default: SmolLM2 alone).
    pub(crate) base_models: Arc<platform::base_models::BaseModelMenu>,
}

/// Per Space: (settled matches, agents, each agent's bootstrapped rank range).
pub(crate) type RankRangeCache = std::collections::HashMap<
    i64,
    (
        usize,
        Vec<i64>,
        std::collections::HashMap<i64, (usize, usize)>,
    ),
>;

/// Counts the tokens of a text in the agents' model.
pub type TokenCounter = Arc<dyn Fn(&str) -> Result<usize, String> + Send + Sync>;

impl AppState {
    /// The state for one server.
    pub fn new(
        store: Store,
        bus: Bus,
        rulebooks: Vec<Rulebook>,
        payments: Arc<dyn Payments>,
        config: WebConfig,
    ) -> AppState {
        let money = payments.money();
        AppState {
            store,
            bus,
            rulebooks: Arc::new(rulebooks),
            payments,
            limits: Arc::new(Limits::new(&config)),
            export_slots: Arc::new(tokio::sync::Semaphore::new(
                config.max_concurrent_exports.max(1),
            )),
            config: Arc::new(config),
            templates: Arc::new(Templates::load(money.clone())),
            money: Arc::new(money),
            shutdown: Arc::new(tokio::sync::watch::Sender::new(false)),
            prompt_tokens: None,
            rank_ranges: Arc::default(),
            base_models: Arc::default(),
        }
    }

    /// The base models agents may choose: what the workers serve.
    pub fn with_base_models(mut self, menu: Arc<platform::base_models::BaseModelMenu>) -> AppState {
        self.base_models = menu;
        self
    }

    /// The served base model `name` names, or a 422 on `base_model` that lists the
    /// served ones.
    pub(crate) fn base_model(
        &self,
        name: &str,
    ) -> crate::Result<&platform::base_models::BaseModelChoice> {
        self.base_models
            .resolve(name)
            .map_err(|e| crate::Error::invalid("base_model", e))
    }

    /// Limits meta-prompts in tokens of the agents' model (`WebConfig::max_prompt_tokens`)
    /// as `count` counts them, not only in characters: 4,000 emoji are 10,000 tokens.
    pub fn with_prompt_tokens(mut self, count: TokenCounter) -> AppState {
        self.prompt_tokens = Some(count);
        self
    }

    /// Refuses a meta-prompt over the token limit, naming the field and the limit.
    pub(crate) fn check_prompt_tokens(&self, prompt: &str) -> crate::Result<()> {
        let Some(count) = &self.prompt_tokens else {
            return Ok(());
        };
        let n = count(prompt).map_err(crate::Error::Internal)?;
        let max = self.config.max_prompt_tokens;
        if n > max {
            return Err(crate::Error::invalid(
                "system_prompt",
                format!("must be at most {max} tokens of the agents' model; this one is {n}"),
            ));
        }
        Ok(())
    }

    /// The event bus behind this state.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The rulebook of a Space, by slug.
    pub(crate) fn rulebook(&self, slug: &str) -> Option<&Rulebook> {
        self.rulebooks.iter().find(|b| b.slug == slug)
    }
}
