//! [`AppState`]: what every handler can reach, cheap to clone.

use std::sync::Arc;

use arena::bus::Bus;
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
    /// Flips to `true` when the server shuts down; long-lived sockets watch it.
    pub(crate) shutdown: Arc<tokio::sync::watch::Sender<bool>>,
}

impl AppState {
    /// The state for one server.
    pub fn new(
        store: Store,
        bus: Bus,
        rulebooks: Vec<Rulebook>,
        payments: Arc<dyn Payments>,
        config: WebConfig,
    ) -> AppState {
        AppState {
            store,
            bus,
            rulebooks: Arc::new(rulebooks),
            payments,
            limits: Arc::new(Limits::new(&config)),
            config: Arc::new(config),
            templates: Arc::new(Templates::load()),
            shutdown: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }

    /// The store behind this state.
    pub fn store(&self) -> &Store {
        &self.store
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
