//! The effective configuration, layered in this order (later wins): built-in
//! defaults, then `rlfc.toml` (or `--config PATH`), then `RLFC_*` environment
//! variables (plus `DATABASE_URL` and `REDIS_URL`), then command-line flags.
//!
//! An environment variable names a key with its section and an underscore:
//! `RLFC_MODELS_DIR` is `models.dir`, `RLFC_LOG_FORMAT` is `log.format`. Every
//! table refuses unknown keys, and every value is checked, so a typo or an
//! out-of-range value stops the program with a message that names the key.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use platform::config::{
    ArenaConfig, DatabaseConfig, JudgesConfig, ModelsConfig, PlatformConfig, RedisConfig,
};

/// Sections of the configuration, used to map `RLFC_SECTION_KEY` onto `section.key`.
const SECTIONS: &[&str] = &[
    "log", "database", "models", "chain", "arena", "web", "redis", "judges",
];

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the SQLite database and other local state live.
    pub data_dir: PathBuf,
    /// The shipped assets: Space rulebooks (`spaces/`), judge test sets (`judges/`).
    pub assets_dir: PathBuf,
    /// Logging.
    pub log: LogConfig,
    /// The database.
    pub database: DatabaseConfig,
    /// Model weights.
    pub models: ModelsConfig,
    /// The EVM chain: the embedded revm chain, or a JSON-RPC endpoint.
    #[serde(default)]
    pub chain: chain::ChainConfig,
    /// The match runner.
    #[serde(default)]
    pub arena: ArenaConfig,
    /// The web server.
    #[serde(default)]
    pub web: WebConfig,
    /// Redis: the shared event bus and match-job queue of a scaled-out deployment.
    #[serde(default)]
    pub redis: RedisConfig,
    /// The judge panel.
    #[serde(default)]
    pub judges: JudgesConfig,
}

/// `[web]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Address the web UI and API listen on.
    pub bind: String,
    /// The URL users reach the server at (`scheme://host[:port]`), empty for
    /// `http://<bind>`: sign-in messages must name it, requests for any other host are
    /// refused, and the session cookie is `Secure` when it is https.
    pub public_url: String,
    /// Concurrent websocket spectators per client address.
    pub ws_per_ip: usize,
    /// Reverse proxies whose `X-Forwarded-For` names the client (IP addresses).
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Default for WebConfig {
    fn default() -> WebConfig {
        WebConfig {
            bind: "127.0.0.1:8080".into(),
            public_url: String::new(),
            ws_per_ip: 16,
            trusted_proxies: Vec::new(),
        }
    }
}

impl WebConfig {
    /// The public origin: `public_url`, or `http://<bind>` with a wildcard address
    /// read as `localhost`.
    pub fn public(&self) -> Result<web::PublicUrl> {
        let url = if self.public_url.is_empty() {
            format!(
                "http://{}",
                self.bind
                    .replace("0.0.0.0", "localhost")
                    .replace("[::]", "localhost")
            )
        } else {
            self.public_url.clone()
        };
        web::PublicUrl::parse(&url).map_err(|e| anyhow::anyhow!("invalid web.public_url: {e}"))
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing env-filter directive, e.g. `info` or `rlfc=debug,sqlx=warn`.
    pub filter: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("data"),
            assets_dir: PathBuf::from("assets"),
            log: LogConfig {
                filter: "info".into(),
                format: LogFormat::Text,
            },
            database: DatabaseConfig { url: String::new() },
            models: ModelsConfig {
                dir: models::default_models_dir(),
                python: "python3".into(),
                pip_args: Vec::new(),
                base_models: Default::default(),
            },
            chain: chain::ChainConfig::default(),
            arena: ArenaConfig::default(),
            web: WebConfig::default(),
            redis: RedisConfig::default(),
            judges: JudgesConfig::default(),
        }
    }
}

/// Values given on the command line; `None` leaves the lower layers in charge.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    /// `--data-dir`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--database-url`
    #[serde(skip_serializing_if = "Option::is_none", rename = "database.url")]
    pub database_url: Option<String>,
    /// `--models-dir`
    #[serde(skip_serializing_if = "Option::is_none", rename = "models.dir")]
    pub models_dir: Option<PathBuf>,
    /// `--log-format`
    #[serde(skip_serializing_if = "Option::is_none", rename = "log.format")]
    pub log_format: Option<LogFormat>,
    /// `--log-filter`
    #[serde(skip_serializing_if = "Option::is_none", rename = "log.filter")]
    pub log_filter: Option<String>,
}

impl Config {
    /// Loads the layers. `file` is `--config`; without it `rlfc.toml` in the working
    /// directory is read if it exists. `env` is the process environment (passed in so
    /// tests can supply their own).
    pub fn load(
        file: Option<&Path>,
        env: &[(String, String)],
        overrides: &Overrides,
    ) -> Result<Config> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => {
                if !path.is_file() {
                    bail!("configuration file {} does not exist", path.display());
                }
                figment = figment.merge(Toml::file_exact(path));
            }
            None if Path::new("rlfc.toml").is_file() => {
                figment = figment.merge(Toml::file_exact("rlfc.toml"));
            }
            None => {}
        }
        figment = figment.merge(env_layer(env)?);
        let flat: Vec<(String, toml::Value)> = serde_json::to_value(overrides)?
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| Ok((k.clone(), json_to_toml(v)?)))
            .collect::<Result<_>>()?;
        for (key, value) in flat {
            figment = figment.merge(Serialized::global(&key, value));
        }
        let config: Config = figment.extract().map_err(describe)?;
        config.validate()?;
        Ok(config)
    }

    /// Range and format checks that the types alone cannot express.
    pub fn validate(&self) -> Result<()> {
        if self.data_dir.as_os_str().is_empty() {
            bail!("invalid data_dir: must not be empty");
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.filter).map_err(|e| {
            anyhow::anyhow!(
                "invalid log.filter {:?}: {e} (accepts tracing directives such as `info` or `rlfc=debug,sqlx=warn`)",
                self.log.filter
            )
        })?;
        let url = &self.database.url;
        if !(url.is_empty()
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("sqlite:"))
        {
            bail!(
                "invalid database.url {:?}: accepts postgres://…, sqlite:PATH, or empty for <data_dir>/rlfc.sqlite",
                store::redact_url(url)
            );
        }
        if self.models.dir.as_os_str().is_empty() {
            bail!("invalid models.dir: must not be empty");
        }
        if self.models.python.trim().is_empty() {
            bail!("invalid models.python: must name a Python interpreter");
        }
        platform::base_models::validate_files(&self.models.base_models)
            .map_err(|e| anyhow::anyhow!("invalid {e}"))?;
        self.chain
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid {e}"))?;
        let a = &self.arena;
        if !(1..=256).contains(&a.max_live_matches) {
            bail!(
                "invalid arena.max_live_matches {}: accepts 1 to 256",
                a.max_live_matches
            );
        }
        if !(10..=86_400).contains(&a.match_deadline_secs) {
            bail!(
                "invalid arena.match_deadline_secs {}: accepts 10 to 86400",
                a.match_deadline_secs
            );
        }
        if !(0.0..=50.0).contains(&a.matchmaking_gap) {
            bail!(
                "invalid arena.matchmaking_gap {}: accepts 0 to 50",
                a.matchmaking_gap
            );
        }
        if !(0.0..=10.0).contains(&a.matchmaking_widen_per_sec) {
            bail!(
                "invalid arena.matchmaking_widen_per_sec {}: accepts 0 to 10",
                a.matchmaking_widen_per_sec
            );
        }
        if !(5..=3600).contains(&a.lease_secs) {
            bail!(
                "invalid arena.lease_secs {}: accepts 5 to 3600",
                a.lease_secs
            );
        }
        if !(10..=86_400).contains(&a.queue_wait_secs) {
            bail!(
                "invalid arena.queue_wait_secs {}: accepts 10 to 86400",
                a.queue_wait_secs
            );
        }
        if !(1..=10_000).contains(&a.max_queued_matches) {
            bail!(
                "invalid arena.max_queued_matches {}: accepts 1 to 10000",
                a.max_queued_matches
            );
        }
        if a.shutdown_grace_secs > 3600 {
            bail!(
                "invalid arena.shutdown_grace_secs {}: accepts 0 to 3600",
                a.shutdown_grace_secs
            );
        }
        if !(1..=3600).contains(&a.sweep_secs) {
            bail!(
                "invalid arena.sweep_secs {}: accepts 1 to 3600",
                a.sweep_secs
            );
        }
        if self.web.bind.parse::<std::net::SocketAddr>().is_err() {
            bail!(
                "invalid web.bind {:?}: accepts an address and port such as 127.0.0.1:8080",
                self.web.bind
            );
        }
        if !self.web.public_url.is_empty() {
            self.web.public()?;
        }
        if !(1..=100_000).contains(&self.web.ws_per_ip) {
            bail!(
                "invalid web.ws_per_ip {}: accepts 1 to 100000",
                self.web.ws_per_ip
            );
        }
        let r = &self.redis;
        if !r.url.is_empty() {
            platform::redis_setup::open_client(&r.url).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        platform::redis_setup::check_namespace(&r.namespace).map_err(|e| anyhow::anyhow!("{e}"))?;
        if !(5..=3600).contains(&r.claim_timeout_secs) {
            bail!(
                "invalid redis.claim_timeout_secs {}: accepts 5 to 3600",
                r.claim_timeout_secs
            );
        }
        if !self.judges.device.is_cpu() && !agents::DeviceSpec::CUDA_BUILT {
            bail!(
                "invalid judges.device \"{}\": this build has no CUDA support (rebuild with `--features cuda`, or use \"cpu\")",
                self.judges.device
            );
        }
        let j = &self.judges;
        let web_url = j.endpoint.starts_with("http://") || j.endpoint.starts_with("https://");
        if !j.endpoint.is_empty() && !web_url {
            bail!(
                "invalid judges.endpoint {:?}: accepts an http:// or https:// URL, or empty to judge in process",
                j.endpoint
            );
        }
        if !(1..=3600).contains(&j.endpoint_timeout_secs) {
            bail!(
                "invalid judges.endpoint_timeout_secs {}: accepts 1 to 3600",
                j.endpoint_timeout_secs
            );
        }
        if j.endpoint_retries > 10 {
            bail!(
                "invalid judges.endpoint_retries {}: accepts 0 to 10",
                j.endpoint_retries
            );
        }
        if !(1..=256).contains(&j.endpoint_batch) {
            bail!(
                "invalid judges.endpoint_batch {}: accepts 1 to 256",
                j.endpoint_batch
            );
        }
        if !(1..=1000).contains(&j.endpoint_top_logprobs) {
            bail!(
                "invalid judges.endpoint_top_logprobs {}: accepts 1 to 1000",
                j.endpoint_top_logprobs
            );
        }
        if !self.judges.llm_model.is_empty() {
            check_gguf(Path::new(&self.judges.llm_model)).map_err(|why| {
                anyhow::anyhow!(
                    "invalid judges.llm_model {:?}: {why}; accepts the path of a GGUF chat model file, or empty for SmolLM2",
                    self.judges.llm_model
                )
            })?;
        }
        Ok(())
    }

    /// The sections the platform is built from.
    pub fn platform(&self) -> PlatformConfig {
        PlatformConfig {
            data_dir: self.data_dir.clone(),
            assets_dir: self.assets_dir.clone(),
            database: self.database.clone(),
            models: self.models.clone(),
            chain: self.chain.clone(),
            arena: self.arena.clone(),
            redis: self.redis.clone(),
            judges: self.judges.clone(),
        }
    }

    /// The configuration as TOML with secrets masked, for `rlfc config`.
    pub fn to_masked_toml(&self) -> Result<String> {
        let mut shown = self.clone();
        shown.database.url = store::redact_url(&shown.database.url);
        if shown.chain.private_key.is_some() {
            shown.chain.private_key = Some(chain::Secret::new("***"));
        }
        if let Some(url) = &shown.chain.rpc_url {
            shown.chain.rpc_url = Some(store::redact_url(url));
        }
        shown.redis.url = store::redact_url(&shown.redis.url);
        toml::to_string_pretty(&shown).context("render configuration")
    }
}

/// Whether `path` is a readable file that starts with the GGUF magic.
fn check_gguf(path: &Path) -> std::result::Result<(), String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot open it ({e})"))?;
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic)
        .map_err(|_| "it is too short to be a GGUF file".to_string())?;
    if &magic != b"GGUF" {
        return Err("it is not a GGUF file (no GGUF magic)".into());
    }
    Ok(())
}

/// `RLFC_*` variables that are not configuration: `RLFC_KERNEL` (`scalar` or `avx2`: the
/// CPU kernels a benchmark or test forces, read by `agents`), and `RLFC_NODE` and
/// `RLFC_NPM` (the Node.js the tests run).
const NOT_CONFIG: [&str; 3] = ["KERNEL", "NODE", "NPM"];

/// The `RLFC_*`, `DATABASE_URL` and `REDIS_URL` variables as a figment layer. `RLFC_TEST_*` is
/// reserved for the test suite and is not configuration, and neither are the switches
/// read where they act ([`NOT_CONFIG`]).
fn env_layer(env: &[(String, String)]) -> Result<EnvVars> {
    use figment::value::{Dict, Value};
    let mut values = Dict::new();
    for (name, raw) in env {
        let key = if name == "DATABASE_URL" {
            "database_url".to_string()
        } else if name == "REDIS_URL" {
            "redis_url".to_string()
        } else if let Some(rest) = name.strip_prefix("RLFC_") {
            if rest.starts_with("TEST_") || NOT_CONFIG.contains(&rest) {
                continue;
            }
            rest.to_ascii_lowercase()
        } else {
            continue;
        };
        // Figment's value syntax: `[a, b]` is a list, `true` a bool, `3` a number.
        let value: Value = raw.parse().unwrap_or_else(|never| match never {});
        let section = SECTIONS
            .iter()
            .find(|s| key.strip_prefix(**s).is_some_and(|r| r.starts_with('_')));
        match section {
            Some(s) => {
                let table = values
                    .entry(s.to_string())
                    .or_insert_with(|| Dict::new().into());
                if let Value::Dict(_, d) = table {
                    d.insert(key[s.len() + 1..].to_string(), value);
                }
            }
            None => {
                values.insert(key, value);
            }
        }
    }
    Ok(EnvVars(values))
}

/// The environment layer, named so that errors say where a bad value came from.
struct EnvVars(figment::value::Dict);

impl figment::Provider for EnvVars {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("RLFC_* environment variables")
    }

    fn data(&self) -> figment::Result<figment::value::Map<figment::Profile, figment::value::Dict>> {
        Ok(figment::Profile::Default.collect(self.0.clone()))
    }
}

fn json_to_toml(v: &serde_json::Value) -> Result<toml::Value> {
    Ok(toml::Value::try_from(v)?)
}

/// Figment's errors, one per line, each naming its key and where it came from.
fn describe(err: figment::Error) -> anyhow::Error {
    let lines: Vec<String> = err
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let origin = e
                .metadata
                .as_ref()
                .map(|m| match &m.source {
                    Some(source) => format!(" (from {source})"),
                    None => format!(" (from {})", m.name),
                })
                .unwrap_or_default();
            if key.is_empty() {
                format!("{}{origin}", e.kind)
            } else {
                format!("key `{key}`: {}{origin}", e.kind)
            }
        })
        .collect();
    anyhow::anyhow!("invalid configuration:\n  {}", lines.join("\n  "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("rlfc.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "data_dir = \"from-file\"\n[log]\nformat = \"json\"\nfilter = \"debug\"\n",
        );
        let c = Config::load(Some(&file), &[], &Overrides::default()).unwrap();
        assert_eq!(
            (c.data_dir.to_str(), c.log.format),
            (Some("from-file"), LogFormat::Json)
        );
        let e = env(&[("RLFC_DATA_DIR", "from-env"), ("RLFC_LOG_FILTER", "warn")]);
        let c = Config::load(Some(&file), &e, &Overrides::default()).unwrap();
        assert_eq!(
            (c.data_dir.to_str(), c.log.filter.as_str()),
            (Some("from-env"), "warn")
        );
        let flags = Overrides {
            data_dir: Some("from-flag".into()),
            log_format: Some(LogFormat::Text),
            ..Overrides::default()
        };
        let c = Config::load(Some(&file), &e, &flags).unwrap();
        assert_eq!(
            (c.data_dir.to_str(), c.log.format),
            (Some("from-flag"), LogFormat::Text)
        );
        assert_eq!(c.log.filter, "warn");
    }

    #[test]
    fn database_url_env_and_masking() {
        let e = env(&[("DATABASE_URL", "postgres://u:secret@127.0.0.1/db")]);
        let c = Config::load(None, &e, &Overrides::default()).unwrap();
        assert_eq!(
            c.database.configured_url(),
            Some("postgres://u:secret@127.0.0.1/db")
        );
        let shown = c.to_masked_toml().unwrap();
        assert!(
            !shown.contains("secret") && shown.contains("u:***@"),
            "{shown}"
        );
        let e = env(&[(
            "RLFC_MODELS_PIP_ARGS",
            "[\"--index-url\", \"http://m/simple\"]",
        )]);
        let c = Config::load(None, &e, &Overrides::default()).unwrap();
        assert_eq!(c.models.pip_args, vec!["--index-url", "http://m/simple"]);
        let key = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
        let e = env(&[
            ("RLFC_CHAIN_BACKEND", "rpc"),
            ("RLFC_CHAIN_RPC_URL", "http://127.0.0.1:8545"),
            ("RLFC_CHAIN_PRIVATE_KEY", key),
        ]);
        let c = Config::load(None, &e, &Overrides::default()).unwrap();
        assert_eq!(c.chain.private_key.as_ref().map(|k| k.expose()), Some(key));
        let shown = c.to_masked_toml().unwrap();
        assert!(
            !shown.contains(&key[2..]) && shown.contains("private_key = \"***\""),
            "{shown}"
        );
    }

    #[test]
    fn redis_url_env_and_masking() {
        let c = Config::load(None, &[], &Overrides::default()).unwrap();
        assert_eq!(c.redis.configured_url(), None, "in-process by default");
        let e = env(&[("REDIS_URL", "redis://:hunter2@127.0.0.1:6379/0")]);
        let c = Config::load(None, &e, &Overrides::default()).unwrap();
        assert_eq!(
            c.redis.configured_url(),
            Some("redis://:hunter2@127.0.0.1:6379/0")
        );
        let shown = c.to_masked_toml().unwrap();
        assert!(
            !shown.contains("hunter2") && shown.contains(":***@127.0.0.1"),
            "{shown}"
        );
        let e = env(&[
            ("RLFC_REDIS_URL", "redis://127.0.0.1:6380"),
            ("RLFC_REDIS_NAMESPACE", "staging"),
        ]);
        let c = Config::load(None, &e, &Overrides::default()).unwrap();
        assert_eq!(
            (c.redis.configured_url(), c.redis.namespace.as_str()),
            (Some("redis://127.0.0.1:6380"), "staging")
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "[log]\nformt = \"json\"\n");
        let err = Config::load(Some(&file), &[], &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`log.formt`") && err.contains("rlfc.toml"),
            "{err}"
        );
        let err = Config::load(
            None,
            &env(&[("RLFC_DATA_DIRR", "x")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("data_dirr"), "{err}");
        // The test suite's own variables are not configuration.
        Config::load(
            None,
            &env(&[("RLFC_TEST_DATABASE_URL", "x")]),
            &Overrides::default(),
        )
        .unwrap();
        // Nor is the kernel switch a benchmark sets (`RLFC_KERNEL=avx2 rlfc bench dpo`).
        Config::load(
            None,
            &env(&[("RLFC_KERNEL", "avx2"), ("RLFC_NPM", "npm")]),
            &Overrides::default(),
        )
        .unwrap();
    }

    #[test]
    fn judges_device_from_file_and_environment() {
        assert!(Config::default().judges.device.is_cpu(), "CPU by default");
        let e = env(&[("RLFC_JUDGES_DEVICE", "cuda:1")]);
        let result = Config::load(None, &e, &Overrides::default());
        if agents::DeviceSpec::CUDA_BUILT {
            assert_eq!(result.unwrap().judges.device, agents::DeviceSpec::Cuda(1));
        } else {
            let err = result.unwrap_err().to_string();
            assert!(
                err.contains("judges.device") && err.contains("--features cuda"),
                "{err}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "[judges]\ndevice = \"cpu\"\n");
        let c = Config::load(Some(&file), &[], &Overrides::default()).unwrap();
        assert!(c.judges.device.is_cpu());
        assert_eq!(c.judges.model_file(), None, "SmolLM2 by default");
    }

    #[test]
    fn judge_model_names_a_gguf_file() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("judge.gguf");
        std::fs::write(&model, b"GGUF\x03\x00\x00\x00").unwrap();
        let e = env(&[("RLFC_JUDGES_LLM_MODEL", model.to_str().unwrap())]);
        let c = Config::load(None, &e, &Overrides::default()).unwrap();
        assert_eq!(c.judges.model_file(), Some(model.as_path()));
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not a model").unwrap();
        let e = env(&[("RLFC_JUDGES_LLM_MODEL", text.to_str().unwrap())]);
        let err = Config::load(None, &e, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("judges.llm_model") && err.contains("GGUF"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_the_key_and_what_it_accepts() {
        let cases = [
            ("[log]\nformat = \"xml\"\n", "log.format"),
            ("[log]\nfilter = \"rlfc=[\"\n", "log.filter"),
            ("[database]\nurl = \"mysql://x\"\n", "database.url"),
            ("[models]\npython = \" \"\n", "models.python"),
            ("[models]\npip_args = 3\n", "models.pip_args"),
            (
                "[models.base_models.qwen]\npath = \"/m/q.gguf\"\nsha256 = \"abc\"\n",
                "models.base_models.qwen.sha256",
            ),
            (
                "[models.base_models.qwen]\nsha256 = \"abc\"\n",
                "models.base_models.qwen",
            ),
            (
                "[models.base_models.smollm2-135m]\npath = \"/m/q.gguf\"\nsha256 = \"abc\"\n",
                "models.base_models.smollm2-135m",
            ),
            ("[chain]\nbackend = \"ganache\"\n", "chain.backend"),
            ("[chain]\nbackend = \"rpc\"\n", "chain.rpc_url"),
            ("[arena]\nmax_live_matches = 0\n", "arena.max_live_matches"),
            (
                "[arena]\nmatch_deadline_secs = 1\n",
                "arena.match_deadline_secs",
            ),
            ("[web]\nbind = \"nowhere\"\n", "web.bind"),
            (
                "[web]\npublic_url = \"ftp://arena.example\"\n",
                "web.public_url",
            ),
            (
                "[web]\npublic_url = \"https://arena.example/app\"\n",
                "web.public_url",
            ),
            ("[web]\nws_per_ip = 0\n", "web.ws_per_ip"),
            (
                "[judges]\nendpoint = \"localhost:8081\"\n",
                "judges.endpoint",
            ),
            ("[judges]\nendpoint_batch = 0\n", "judges.endpoint_batch"),
            (
                "[judges]\nendpoint_top_logprobs = 5000\n",
                "judges.endpoint_top_logprobs",
            ),
            ("[redis]\nurl = \"http://x\"\n", "redis.url"),
            ("[redis]\nnamespace = \"a b\"\n", "redis.namespace"),
            (
                "[redis]\nclaim_timeout_secs = 1\n",
                "redis.claim_timeout_secs",
            ),
            ("[arena]\nlease_secs = 1\n", "arena.lease_secs"),
            (
                "[arena]\nmax_queued_matches = 0\n",
                "arena.max_queued_matches",
            ),
            (
                "[arena]\nshutdown_grace_secs = 7200\n",
                "arena.shutdown_grace_secs",
            ),
            ("[arena]\nsweep_secs = 0\n", "arena.sweep_secs"),
            ("[judges]\ndevice = \"gpu\"\n", "judges.device"),
            (
                "[judges]\nllm_model = \"/no/such/model.gguf\"\n",
                "judges.llm_model",
            ),
            (
                "[judges]\nllm_model = \"/etc/hostname\"\n",
                "judges.llm_model",
            ),
            (
                "[chain]\nrpc_dev_signers = true\nchain_id = 1\n",
                "chain.rpc_dev_signers",
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (text, key) in cases {
            let file = write(dir.path(), text);
            let err = Config::load(Some(&file), &[], &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{text:?} -> {err}");
        }
        let err = Config::load(Some(Path::new("/no/such.toml")), &[], &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("/no/such.toml"), "{err}");
    }
}
