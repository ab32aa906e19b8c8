//! The LLM judge over an OpenAI-compatible inference server (llama.cpp's
//! `llama-server`, vLLM, TGI): `POST {url}/v1/completions` with the very token ids the
//! in-process judge would feed its model, one token generated, and the next-token
//! log-probabilities (`logprobs`) read back. Scores come from those log-probabilities of
//! the rating tokens, exactly as in process (a restricted softmax over "1".."9", or
//! over "A"/"B"), never from generated text.
//!
//! Requests are batched (a list of token-id prompts per request), time out, and are
//! retried with exponential backoff on connection errors, 429 and 5xx; once the
//! retries are spent the judge returns an error and the round fails whole (the world
//! refunds the match). The HTTP client lives on its own thread, so the judge may be
//! called from anywhere, inside an async runtime or not.
//!
//! Replays: a server's kernels, batch shapes and quantisation are not this process's,
//! so an endpoint judge reproduces its scores within a tolerance, not bit for bit; its
//! identity names the endpoint and its model (`JudgeId::model_hash` is
//! `endpoint:<model>` plus the weights' sha256 when the server reports one).

use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::JudgeError;

/// Where and how to reach the server.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointConfig {
    /// Base URL, e.g. `http://127.0.0.1:8081` (the API is under `/v1`).
    pub url: String,
    /// The model name to ask for (`model` in the request).
    pub model: String,
    /// Sent as `Authorization: Bearer` when set (read from the environment by the caller).
    pub api_key: Option<String>,
    /// One request's time limit.
    pub timeout: Duration,
    /// Retries after the first attempt (connection errors, 429, 5xx).
    pub retries: u32,
    /// Prompts per request.
    pub batch: usize,
    /// How many top log-probabilities to ask for per prompt; the rating tokens must be
    /// among them (a missing one counts as no likelier than the least likely returned).
    pub top_logprobs: usize,
}

impl EndpointConfig {
    /// Defaults for `url` and `model`: 60 s timeout, 3 retries, 16 prompts a request,
    /// the top 20 log-probabilities (the OpenAI API's limit).
    pub fn new(url: &str, model: &str) -> EndpointConfig {
        EndpointConfig {
            url: url.trim_end_matches('/').to_string(),
            model: model.to_string(),
            api_key: None,
            timeout: Duration::from_secs(60),
            retries: 3,
            batch: 16,
            top_logprobs: 20,
        }
    }
}

type Reply = Result<Value, JudgeError>;

/// A request for the HTTP thread: URL, JSON body (None for GET), where to answer.
struct Job {
    url: String,
    body: Option<Value>,
    reply: mpsc::Sender<Reply>,
}

/// A client of one server. Cloning is not needed: share it in an `Arc`.
pub struct EndpointClient {
    config: EndpointConfig,
    jobs: Mutex<mpsc::Sender<Job>>,
    /// The server's own name for its model and, when it reports one, a hash of the
    /// weights, read once at connect.
    identity: String,
}

impl std::fmt::Debug for EndpointClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointClient")
            .field("url", &self.config.url)
            .field("identity", &self.identity)
            .finish()
    }
}

fn endpoint_error(url: &str, reason: impl std::fmt::Display) -> JudgeError {
    JudgeError::Endpoint {
        url: url.to_string(),
        reason: reason.to_string(),
    }
}

impl EndpointClient {
    /// Connects: starts the HTTP thread and reads the server's model list (and, from
    /// llama.cpp, its `/props`) for the judge's identity. Fails when the server does not
    /// answer within the timeout and retries.
    pub fn connect(config: EndpointConfig) -> Result<EndpointClient, JudgeError> {
        if !(config.url.starts_with("http://") || config.url.starts_with("https://")) {
            return Err(endpoint_error(
                &config.url,
                "judges.endpoint must be an http:// or https:// URL",
            ));
        }
        if config.batch == 0 || config.top_logprobs == 0 {
            return Err(endpoint_error(
                &config.url,
                "batch and top_logprobs must be at least 1",
            ));
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let (timeout, key) = (config.timeout, config.api_key.clone());
        std::thread::Builder::new()
            .name("judge-endpoint".into())
            .spawn(move || http_thread(rx, timeout, key))
            .map_err(|e| endpoint_error(&config.url, e))?;
        let mut client = EndpointClient {
            config,
            jobs: Mutex::new(tx),
            identity: String::new(),
        };
        client.identity = client.read_identity()?;
        Ok(client)
    }

    /// `endpoint:<model>` and, when the server reports it, `@sha256:<hash>` of the weights.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The configuration.
    pub(crate) fn config(&self) -> &EndpointConfig {
        &self.config
    }

    fn read_identity(&self) -> Result<String, JudgeError> {
        let models = self.send(&format!("{}/v1/models", self.config.url), None)?;
        let listed: Vec<String> = models["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let mut id = format!("endpoint:{}", self.config.model);
        if !listed.is_empty() && !listed.iter().any(|m| m == &self.config.model) {
            tracing::warn!(model = %self.config.model, served = ?listed,
                "the judge endpoint does not list the configured model");
        }
        // vLLM and TGI report no weights hash; some servers put one in the model's
        // metadata. Record it where present.
        if let Some(hash) = models["data"]
            .as_array()
            .and_then(|a| a.iter().find_map(|m| m["meta"]["sha256"].as_str()))
        {
            id.push_str(&format!("@sha256:{hash}"));
        }
        Ok(id)
    }

    /// One request through the HTTP thread, with retries and backoff.
    fn send(&self, url: &str, body: Option<Value>) -> Result<Value, JudgeError> {
        let mut delay = Duration::from_millis(200);
        let mut last = None;
        for attempt in 0..=self.config.retries {
            if attempt > 0 {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            let (reply_tx, reply_rx) = mpsc::channel();
            let job = Job {
                url: url.to_string(),
                body: body.clone(),
                reply: reply_tx,
            };
            self.jobs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .send(job)
                .map_err(|_| endpoint_error(url, "the HTTP thread stopped"))?;
            match reply_rx.recv() {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(JudgeError::Endpoint { reason, .. })) if reason.starts_with("refused:") => {
                    // A 4xx other than 429: retrying cannot help.
                    return Err(endpoint_error(url, reason));
                }
                Ok(Err(e)) => {
                    tracing::warn!(%url, attempt, error = %e, "judge endpoint request failed");
                    last = Some(e);
                }
                Err(_) => return Err(endpoint_error(url, "the HTTP thread stopped")),
            }
        }
        Err(last.unwrap_or_else(|| endpoint_error(url, "no attempt made")))
    }

    /// The next-token top log-probabilities of each prompt (token ids), in order.
    pub(crate) fn next_token_logprobs(
        &self,
        prompts: &[Vec<u32>],
    ) -> Result<Vec<Vec<TopLogprob>>, JudgeError> {
        let url = format!("{}/v1/completions", self.config.url);
        let mut out = Vec::with_capacity(prompts.len());
        for chunk in prompts.chunks(self.config.batch) {
            let body = json!({
                "model": self.config.model,
                "prompt": chunk,
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": self.config.top_logprobs,
                // llama.cpp: probabilities before sampling, with token ids.
                "n_probs": self.config.top_logprobs,
                "post_sampling_probs": false,
                "cache_prompt": true,
            });
            let reply = self.send(&url, Some(body))?;
            let choices = reply["choices"]
                .as_array()
                .ok_or_else(|| endpoint_error(&url, format!("no choices in {reply}")))?;
            let mut by_index: Vec<Option<Vec<TopLogprob>>> = vec![None; chunk.len()];
            for (k, choice) in choices.iter().enumerate() {
                let i = choice["index"].as_u64().map_or(k, |i| i as usize);
                if i >= chunk.len() {
                    return Err(endpoint_error(
                        &url,
                        format!("choice index {i} out of range"),
                    ));
                }
                by_index[i] = Some(parse_logprobs(&choice["logprobs"]).ok_or_else(|| {
                    endpoint_error(&url, "a choice came without next-token log-probabilities")
                })?);
            }
            for (i, p) in by_index.into_iter().enumerate() {
                out.push(
                    p.ok_or_else(|| endpoint_error(&url, format!("no choice for prompt {i}")))?,
                );
            }
        }
        Ok(out)
    }
}

/// One of the most likely next tokens the server reported.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TopLogprob {
    /// Its id, where the server says (llama.cpp does; the OpenAI layout gives text only).
    pub id: Option<u32>,
    /// Its text.
    pub token: String,
    /// Its log-probability.
    pub logprob: f32,
}

/// Reads one choice's first-token top log-probabilities: llama.cpp's layout
/// (`content[0].top_logprobs[] = {id, token, logprob}`) or the OpenAI legacy layout
/// (`top_logprobs[0] = {token text: logprob}`, as vLLM and TGI answer).
fn parse_logprobs(lp: &Value) -> Option<Vec<TopLogprob>> {
    if let Some(first) = lp["content"].as_array().and_then(|c| c.first()) {
        return first["top_logprobs"]
            .as_array()?
            .iter()
            .map(|t| {
                Some(TopLogprob {
                    id: t["id"].as_u64().and_then(|i| u32::try_from(i).ok()),
                    token: t["token"].as_str()?.to_string(),
                    logprob: t["logprob"].as_f64()? as f32,
                })
            })
            .collect();
    }
    let first = lp["top_logprobs"].as_array()?.first()?.as_object()?;
    first
        .iter()
        .map(|(token, p)| {
            Some(TopLogprob {
                id: None,
                token: token.clone(),
                logprob: p.as_f64()? as f32,
            })
        })
        .collect()
}

/// The HTTP thread: one blocking client, serving jobs until every sender is gone.
fn http_thread(jobs: mpsc::Receiver<Job>, timeout: Duration, key: Option<String>) {
    let client = match reqwest::blocking::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            for job in jobs {
                let _ = job.reply.send(Err(endpoint_error(&job.url, &e)));
            }
            return;
        }
    };
    for job in jobs {
        let mut req = match &job.body {
            Some(b) => client.post(&job.url).json(b),
            None => client.get(&job.url),
        };
        if let Some(k) = &key {
            req = req.bearer_auth(k);
        }
        let result = req
            .send()
            .map_err(|e| endpoint_error(&job.url, e))
            .and_then(|r| {
                let status = r.status();
                let text = r.text().map_err(|e| endpoint_error(&job.url, e))?;
                if status.is_success() {
                    serde_json::from_str(&text).map_err(|e| {
                        endpoint_error(&job.url, format!("not JSON ({e}): {text:.200}"))
                    })
                } else if status.is_client_error() && status.as_u16() != 429 {
                    Err(endpoint_error(
                        &job.url,
                        format!("refused: {status}: {text:.300}"),
                    ))
                } else {
                    Err(endpoint_error(&job.url, format!("{status}: {text:.300}")))
                }
            });
        let _ = job.reply.send(result);
    }
}
