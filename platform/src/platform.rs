//! The composition root: storage, chain and payments, the Spaces and the bus
//! ([`Platform`]), and the base models shared by the runtime, the judges and the
//! trainer ([`BaseModels`]).

use std::path::Path;
use std::sync::Arc;

use judges::{EmbeddingJudge, LlmJudge};
use store::Store;

use crate::bus::Bus;
use crate::config::{JudgesConfig, PlatformConfig};
use crate::payments::{PaymentError, Payments, Reclaim};
use crate::play::{RunnerConfig, RunnerError, SpaceSlot, seed_spaces};
use crate::runner::MatchRunner;
use crate::runtime::{AdapterLibrary, RuntimeEngine};

/// Why the platform could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The chain failed.
    #[error("chain: {0}")]
    Chain(#[from] chain::ChainError),
    /// Reconciling payments failed.
    #[error(transparent)]
    Payments(#[from] PaymentError),
    /// The Spaces could not be loaded or stored.
    #[error(transparent)]
    Runner(#[from] RunnerError),
    /// A judge could not be built.
    #[error(transparent)]
    Judges(#[from] judges::JudgeError),
    /// The base model could not be loaded.
    #[error(transparent)]
    Model(#[from] agents::AgentError),
    /// The model files could not be fetched.
    #[error(transparent)]
    Fetch(#[from] models::Error),
    /// A base model listed under `[models.base_models]` could not be served (the
    /// message names the setting).
    #[error("{0}")]
    BaseModel(String),
    /// No Space has this slug.
    #[error("no Space named {slug:?} (known: {known})")]
    NoSpace {
        /// The slug asked for.
        slug: String,
        /// The slugs there are.
        known: String,
    },
    /// A step of the setup failed; `what` names the step and the setting.
    #[error("{what}")]
    Setup {
        /// The step, with the setting it read.
        what: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The result type of the composition root.
pub type Result<T, E = PlatformError> = std::result::Result<T, E>;

/// Wraps an error with the setup step it interrupted (or the step of a role's loop).
pub(crate) fn setup<E: std::error::Error + Send + Sync + 'static>(
    what: impl Into<String>,
) -> impl FnOnce(E) -> PlatformError {
    let what = what.into();
    move |e| PlatformError::Setup {
        what,
        source: Box::new(e),
    }
}

/// Everything but the models: storage, chain, payments, Spaces, the bus.
pub struct Platform {
    /// The database.
    pub store: Store,
    /// Money through the Arena contract.
    pub payments: Arc<Payments>,
    /// The Spaces, stored and loaded.
    pub spaces: Vec<SpaceSlot>,
    /// The event bus.
    pub bus: Bus,
    /// Trained adapters by hash.
    pub adapters: Arc<AdapterLibrary>,
    /// The base models agents may choose (`[models]`), known without loading them.
    pub base_models: Arc<crate::base_models::BaseModelMenu>,
}

impl Platform {
    /// Opens the store and the chain, seeds the Spaces and finishes whatever a
    /// previous run left unsettled. For the single-process commands (`demo`,
    /// `tournament`): every unfinished match was left by a stopped run.
    pub async fn open(config: &PlatformConfig) -> Result<Platform> {
        let bus = Bus::connect(config.redis.configured_url(), &config.redis.namespace)
            .await
            .map_err(setup("connect the event bus (redis.url)"))?;
        let platform = Platform::connect(config, bus).await?;
        let done = platform.payments.reconcile(&Reclaim::Everything).await?;
        if !done.failed.is_empty() {
            tracing::error!(
                failed = ?done.failed,
                "start-up reconciliation could not finish these; they stay pending for the next start"
            );
        }
        if !done.refunded.is_empty()
            || !done.settlements_pushed.is_empty()
            || !done.refunds_pushed.is_empty()
        {
            tracing::warn!(
                refunded = ?done.refunded,
                settlements_pushed = ?done.settlements_pushed,
                refunds_pushed = ?done.refunds_pushed,
                "reconciled what the previous run left unfinished"
            );
        }
        Ok(platform)
    }

    /// Opens the store and the chain and seeds the Spaces, publishing on `bus`,
    /// without reconciling (other processes may be playing matches right now).
    pub async fn connect(config: &PlatformConfig, bus: Bus) -> Result<Platform> {
        std::fs::create_dir_all(&config.data_dir).map_err(setup(format!(
            "create data_dir {}",
            config.data_dir.display()
        )))?;
        let store = Store::connect(config.database.configured_url(), &config.data_dir).await?;
        let contracts = chain::open_contracts(&config.chain, &config.data_dir).await?;
        let operator = chain::any::operator_of(&config.chain, contracts.chain())?;
        let unit = contracts.fee_unit().await?;
        let payments = Arc::new(
            Payments::new(store.clone(), Arc::new(contracts), operator)
                .with_money(store::Money::token(unit.symbol, unit.decimals))
                .with_confirmations(config.chain.confirmations)
                .with_start_block(config.chain.start_block),
        );
        let spaces = seed_spaces(&store, &config.assets_dir.join("spaces")).await?;
        let adapters = Arc::new(AdapterLibrary::shared(
            config.data_dir.join("adapters"),
            store.clone(),
        ));
        Ok(Platform {
            store,
            payments,
            spaces,
            bus,
            adapters,
            base_models: Arc::new(crate::base_models::BaseModelMenu::from_config(
                &config.models,
            )),
        })
    }

    /// The runner configuration from `[arena]`.
    pub fn runner_config(config: &PlatformConfig) -> RunnerConfig {
        RunnerConfig {
            match_deadline_ms: config.arena.match_deadline_secs as i64 * 1000,
            base_gap: config.arena.matchmaking_gap,
            widen_per_sec: config.arena.matchmaking_widen_per_sec,
            max_live_matches: config.arena.max_live_matches,
            lease_ms: config.arena.lease_secs as i64 * 1000,
            queue_wait_ms: config.arena.queue_wait_secs as i64 * 1000,
        }
    }

    /// A runner on the real models: the agent runtime and the judge panel.
    pub(crate) fn model_runner(
        &self,
        config: &PlatformConfig,
        models: &BaseModels,
    ) -> Result<MatchRunner> {
        let (engine, judge) = self.model_engine_and_judge(models)?;
        Ok(MatchRunner::new(
            self.store.clone(),
            self.payments.clone(),
            self.bus.clone(),
            engine,
            judge,
            self.spaces.clone(),
            Platform::runner_config(config),
        )
        .with_adapters(self.adapters.clone())
        .with_base_models(self.base_models.clone()))
    }

    /// The real engine and judge panel (LLM judge on SmolLM2, embedding judge on
    /// all-MiniLM-L6-v2, rules) over the loaded models.
    pub fn model_engine_and_judge(
        &self,
        models: &BaseModels,
    ) -> Result<(
        Box<dyn arena::engine::Engine>,
        Box<dyn arena::judging::RoundJudge>,
    )> {
        let engine = RuntimeEngine::serving(&models.agents, self.adapters.clone());
        let judge = self.panel_judge(models)?;
        Ok((Box::new(engine), Box::new(judge)))
    }

    /// Every Space's judge panel over the loaded judges.
    fn panel_judge(&self, models: &BaseModels) -> Result<crate::runtime::PanelJudge> {
        let loaded = judges::LoadedJudges::new(
            Some(models.llm_judge.clone()),
            Some(models.embedding_judge.clone()),
        )?;
        let books: Vec<_> = self.spaces.iter().map(|s| s.rulebook.clone()).collect();
        Ok(crate::runtime::PanelJudge::new(&books, &loaded)?)
    }

    /// A trainer on the shared base model, signing records as the chain operator,
    /// whose new adapters pass the regression gate (the Spaces' judge panels, on the
    /// loaded judges) before they are played.
    pub fn trainer(&self, models: &BaseModels) -> Result<crate::learning::Trainer> {
        let judge = self.panel_judge(models)?;
        Ok(crate::learning::Trainer::new(
            self.store.clone(),
            self.payments.contracts().clone(),
            self.payments.operator(),
            models.agents.clone(),
            self.adapters.clone(),
            crate::learning::Gate::new(Arc::new(judge), &self.spaces),
        ))
    }

    /// The Space with this slug.
    pub fn space(&self, slug: &str) -> Result<&SpaceSlot> {
        self.spaces
            .iter()
            .find(|s| s.rulebook.slug == slug)
            .ok_or_else(|| PlatformError::NoSpace {
                slug: slug.to_string(),
                known: self
                    .spaces
                    .iter()
                    .map(|s| s.rulebook.slug.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// The base models, loaded once and shared by the engine, the LLM judge and the
/// trainer (each only reads the weights).
pub struct BaseModels {
    /// SmolLM2, the agents' default base model (and the LLM judge's, unless
    /// `judges.llm_model` names another GGUF file).
    pub model: Arc<agents::Model>,
    /// Its tokenizer.
    pub tokenizer: Arc<agents::ChatTokenizer>,
    /// Every base model agents may choose: SmolLM2 first, then the files listed under
    /// `[models.base_models]`.
    pub agents: crate::base_models::AgentModels,
    /// The LLM judge over `model`.
    pub llm_judge: Arc<judges::LlmJudge>,
    /// The embedding judge on all-MiniLM-L6-v2.
    pub embedding_judge: Arc<judges::EmbeddingJudge>,
}

impl BaseModels {
    /// Fetches the models if missing (sha256-checked) and loads each once.
    pub fn load(config: &PlatformConfig) -> Result<BaseModels> {
        let fetcher = config.models.fetcher();
        let gguf = fetcher.ensure(&models::SMOLLM2)?.remove(0);
        fetcher.ensure(&models::MINILM)?;
        let (model, tokenizer) = agents::Model::load(&gguf)?;
        let (model, tokenizer) = (Arc::new(model), Arc::new(tokenizer));
        let menu = crate::base_models::BaseModelMenu::from_config(&config.models);
        let mut served = vec![crate::base_models::LoadedModel {
            choice: menu.default_choice().clone(),
            model: model.clone(),
            tokenizer: tokenizer.clone(),
        }];
        served.extend(crate::base_models::load_listed(&menu).map_err(PlatformError::BaseModel)?);
        let agents = crate::base_models::AgentModels::new(served);
        // The judge shares the agents' model unless `judges.llm_model` names another.
        let (judge, judge_gguf) = match config.judges.model_file() {
            Some(path) => (
                judges::LlmJudge::load(path)
                    .map_err(setup(format!("judges.llm_model {}", path.display())))?,
                path.to_path_buf(),
            ),
            None => (
                judges::LlmJudge::from_parts(
                    model.clone(),
                    tokenizer.clone(),
                    judges::llm::file_sha256(&gguf)?,
                )?,
                gguf.clone(),
            ),
        };
        let (llm_judge, embedding_judge) = judges_on_device(
            &config.judges,
            judge,
            &judge_gguf,
            &fetcher.model_dir(&models::MINILM),
        )?;
        // With `judges.endpoint`, the LLM judge's forward passes run on that server.
        let llm_judge = with_endpoint(&config.judges, llm_judge)?;
        Ok(BaseModels {
            model,
            tokenizer,
            agents,
            llm_judge: Arc::new(llm_judge),
            embedding_judge: Arc::new(embedding_judge),
        })
    }
}

/// The LLM judge (loaded on the CPU runtime from `gguf`) and the embedding judge
/// (loaded from `minilm_dir`) on `judges.device`: on a GPU the LLM judge scores with
/// the GGUF file loaded there, and the embedding model lives there.
pub fn judges_on_device(
    config: &JudgesConfig,
    llm: LlmJudge,
    gguf: &Path,
    minilm_dir: &Path,
) -> Result<(LlmJudge, EmbeddingJudge)> {
    let spec = config.device;
    let device = spec
        .open()
        .map_err(setup(format!("judges.device = \"{spec}\"")))?;
    let llm = if spec.is_cpu() {
        llm
    } else {
        llm.on_device(gguf, &device)?
    };
    let embedding = EmbeddingJudge::load(minilm_dir, &device)?;
    if !spec.is_cpu() {
        tracing::info!(device = %spec, "judges run on the device");
    }
    Ok((llm, embedding))
}

/// The LLM judge with its forward passes on `judges.endpoint` when one is configured
/// (connecting checks the server answers), else unchanged.
pub fn with_endpoint(config: &JudgesConfig, llm: LlmJudge) -> Result<LlmJudge> {
    let Some(endpoint) = config.endpoint_config() else {
        return Ok(llm);
    };
    let url = endpoint.url.clone();
    let client = judges::endpoint::EndpointClient::connect(endpoint)
        .map_err(setup(format!("judges.endpoint {url}")))?;
    tracing::info!(%url, identity = client.identity(), "LLM judge on an inference server");
    Ok(llm.over_endpoint(Arc::new(client)))
}
