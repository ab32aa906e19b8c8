//! The client side of `rlfc verify-pol --from URL`: gathers a proof-of-learning
//! record's evidence from a server's public API instead of a local database. The
//! record's run comes from `GET /api/v1/agents/{agent}/pol-records`, its
//! hyperparameters from `GET /api/v1/training-runs/{id}`, and its pairs (in training
//! order, with their rounds and their matches' settled result roots) from
//! `GET /api/v1/datasets/preferences?training_run={id}`. Nothing here is trusted:
//! [`platform::learning::verify_evidence`] checks all of it against the record on chain.

use std::collections::BTreeMap;

use platform::learning::{CommittedPair, RunEvidence};
use serde::Deserialize;

/// Why the evidence could not be gathered.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The URL is not http(s)://.
    #[error("--from must be the server's base URL (http:// or https://), got {0:?}")]
    Url(String),
    /// The request failed or the server answered with an error.
    #[error("{url}: {reason}")]
    Http {
        /// What was requested.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The server's answer does not fit the record.
    #[error("{0}")]
    Mismatch(String),
}

#[derive(Deserialize)]
struct PolRecordRow {
    record_id: i64,
    training_run_id: i64,
    parent_hash: String,
}

#[derive(Deserialize)]
struct RunDetail {
    run: RunRow,
}

#[derive(Deserialize)]
struct RunRow {
    hyperparams: serde_json::Value,
    pairs_root: String,
}

#[derive(Deserialize)]
struct ExportRow {
    #[serde(flatten)]
    pair: CommittedPair,
    match_result_root: Option<String>,
    training_position: Option<i64>,
}

async fn get_text(client: &reqwest::Client, url: &str) -> Result<String, EvidenceError> {
    String::from_utf8(get_bytes(client, url).await?).map_err(|e| EvidenceError::Http {
        url: url.to_string(),
        reason: format!("not UTF-8: {e}"),
    })
}

async fn get_json<T: for<'de> Deserialize<'de>>(
    client: &reqwest::Client,
    url: &str,
) -> Result<T, EvidenceError> {
    let body = get_text(client, url).await?;
    serde_json::from_str(&body).map_err(|e| EvidenceError::Http {
        url: url.to_string(),
        reason: format!("unexpected answer: {e}"),
    })
}

/// The evidence for `record` (as read from the chain) from the server at `base`.
pub async fn fetch_evidence(
    base: &str,
    record: &chain::LearningRecord,
) -> Result<RunEvidence, EvidenceError> {
    let base = base.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(EvidenceError::Url(base.to_string()));
    }
    let api = format!("{base}/api/v1");
    let client = reqwest::Client::new();
    let agent = record.fields.agent_id;
    let records: Vec<PolRecordRow> =
        get_json(&client, &format!("{api}/agents/{agent}/pol-records")).await?;
    let row = records
        .iter()
        .find(|r| r.record_id == record.id as i64)
        .ok_or_else(|| {
            EvidenceError::Mismatch(format!(
                "the server lists no record {} for agent {agent}",
                record.id
            ))
        })?;
    let run = row.training_run_id;
    let detail: RunDetail = get_json(&client, &format!("{api}/training-runs/{run}")).await?;
    let hyperparams = serde_json::from_value(detail.run.hyperparams).map_err(|e| {
        EvidenceError::Mismatch(format!("training run {run}'s hyperparameters: {e}"))
    })?;
    let url = format!("{api}/datasets/preferences?training_run={run}");
    let body = get_text(&client, &url).await?;
    let mut rows = Vec::new();
    for (n, line) in body
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let row: ExportRow = serde_json::from_str(line).map_err(|e| EvidenceError::Http {
            url: url.clone(),
            reason: format!("line {}: {e}", n + 1),
        })?;
        rows.push(row);
    }
    let mut positioned = Vec::with_capacity(rows.len());
    let mut match_results = BTreeMap::new();
    for row in rows {
        let position = row.training_position.ok_or_else(|| {
            EvidenceError::Mismatch(format!(
                "pair {} came without its training position",
                row.pair.id
            ))
        })?;
        let root = row.match_result_root.ok_or_else(|| {
            EvidenceError::Mismatch(format!(
                "match {} of pair {} is not settled with a result",
                row.pair.match_id, row.pair.id
            ))
        })?;
        match_results.insert(row.pair.match_id, root);
        positioned.push((position, row.pair));
    }
    positioned.sort_by_key(|(position, _)| *position);
    let parent = row.parent_hash.trim();
    Ok(RunEvidence {
        pairs: positioned.into_iter().map(|(_, p)| p).collect(),
        match_results,
        hyperparams,
        parent_adapter_hash: (!parent.is_empty()).then(|| parent.to_string()),
        stored_pairs_root: Some(detail.run.pairs_root),
    })
}

async fn get_bytes(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, EvidenceError> {
    let http = |reason: String| EvidenceError::Http {
        url: url.to_string(),
        reason,
    };
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| http(e.to_string()))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| http(e.to_string()))?;
    if !status.is_success() {
        return Err(http(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body).trim()
        )));
    }
    Ok(body.to_vec())
}

/// Fetches the adapter with `hash` from the server at `base` (`GET
/// /api/v1/adapters/{hash}/{file}`) into `library`, unless it is already there. `false`
/// when the server does not hold it. The files are checked against the hash when the
/// library loads them, so a server cannot pass off other weights.
pub async fn fetch_adapter(
    base: &str,
    hash: &str,
    library: &platform::runtime::AdapterLibrary,
) -> Result<bool, EvidenceError> {
    if library.dir_of(hash).is_dir() {
        return Ok(true);
    }
    let base = base.trim_end_matches('/');
    let client = reqwest::Client::new();
    let url = |file: &str| format!("{base}/api/v1/adapters/{hash}/{file}");
    let config_url = url(agents::adapter::CONFIG_FILE);
    let config = match get_bytes(&client, &config_url).await {
        Ok(bytes) => bytes,
        Err(EvidenceError::Http { reason, .. }) if reason.starts_with("404") => {
            return Ok(false);
        }
        Err(e) => return Err(e),
    };
    let weights = get_bytes(&client, &url(agents::adapter::WEIGHTS_FILE)).await?;
    let config = String::from_utf8(config).map_err(|e| EvidenceError::Http {
        url: config_url.clone(),
        reason: format!("not UTF-8: {e}"),
    })?;
    library
        .place(hash, &store::AdapterFiles { config, weights })
        .map_err(EvidenceError::Mismatch)?;
    Ok(true)
}

/// Why `verify_from` could not reach a verdict.
#[derive(Debug, thiserror::Error)]
pub enum VerifyFromError {
    /// The server's evidence could not be gathered.
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    /// The record could not be read from the chain.
    #[error(transparent)]
    Chain(#[from] chain::ChainError),
    /// A check could not run.
    #[error(transparent)]
    Learning(#[from] platform::learning::LearningError),
    /// The base model could not be loaded.
    #[error(transparent)]
    Platform(#[from] platform::platform::PlatformError),
}

/// `rlfc verify-pol --from URL`: checks proof-of-learning record `record_id` (read
/// from the chain of `config`) against the evidence the server at `url` serves: its
/// chain checks first, then, if they pass, the training re-run from the parent
/// adapter. The parent and new adapters come from the server when the local library
/// (`data_dir/adapters`) lacks them, checked against their hashes when loaded.
/// `progress` gets a line for the evidence fetched and for each adapter fetched.
pub async fn verify_from(
    config: &platform::PlatformConfig,
    record_id: u64,
    url: &str,
    mut progress: impl FnMut(String),
) -> Result<platform::learning::Verdict, VerifyFromError> {
    let contracts = chain::open_contracts(&config.chain, &config.data_dir).await?;
    let record = contracts.get_record(record_id).await?;
    let evidence = fetch_evidence(url, &record).await?;
    progress(format!(
        "evidence from {url}: {} pairs of {} matches",
        evidence.pairs.len(),
        evidence.match_results.len()
    ));
    let chain = platform::learning::chain_checks(&contracts, &record, &evidence).await?;
    if !chain.passed() {
        return Ok(chain);
    }
    let models = platform::BaseModels::load(config)?;
    let adapters = platform::runtime::AdapterLibrary::new(config.data_dir.join("adapters"));
    let new_hash = format!("{:x}", record.fields.new_adapter_hash);
    for hash in evidence.parent_adapter_hash.iter().chain([&new_hash]) {
        let had = adapters.dir_of(hash).is_dir();
        if !had && fetch_adapter(url, hash, &adapters).await? {
            progress(format!("adapter {hash}: fetched from {url}"));
        }
    }
    // Retrain on the base model the run names, when this configuration serves it.
    let base = models
        .agents
        .for_run(&evidence.hyperparams.base_model_sha256);
    Ok(chain.then(
        platform::learning::verify_evidence(
            &record,
            &evidence,
            &base.model,
            &base.tokenizer,
            &adapters,
            platform::learning::StoredAdapter::IfPresent,
        )
        .await?,
    ))
}
