//! The production [`Engine`]: the agent runtime's continuous batched decoder. Every
//! seat waiting for tokens, in every live match, is one sequence of one
//! [`agents::BatchDecoder`]; each world tick is one decode step, a single forward pass
//! over all of them, each sequence with its own LoRA adapter. Adapters are found by
//! hash in an [`AdapterLibrary`] and shared between the seats that use them. And the
//! production judge, [`PanelJudge`]: each Space's judge panel, every due round of every
//! live match scored in one batch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use agents::{BatchDecoder, ChatTokenizer, GenerationRequest, LoraAdapter, Model, is_hash};

use arena::engine::{Engine, EngineError, EngineOutput, GenRequest, Ticket};
use arena::judging::{RoundJudge, RoundToJudge};
use judges::ResponseVerdict;
use spaces::Rulebook;

/// Adapters on disk, one PEFT directory per adapter named by its hash, loaded once and
/// shared. A new adapter is written to a temporary directory and renamed into place, so
/// a directory named by a hash is always complete. A library over a store
/// ([`AdapterLibrary::shared`]) also publishes each adapter it trains to the database
/// and fetches from there any adapter this host lacks, so every server and worker on
/// the database reads every adapter, whichever host trained it.
pub struct AdapterLibrary {
    root: PathBuf,
    loaded: Mutex<HashMap<String, Arc<LoraAdapter>>>,
    store: Option<store::Store>,
}

impl AdapterLibrary {
    /// The library under `root` (created on first save), on this host alone.
    pub fn new(root: impl Into<PathBuf>) -> AdapterLibrary {
        AdapterLibrary {
            root: root.into(),
            loaded: Mutex::default(),
            store: None,
        }
    }

    /// The library under `root`, backed by `store` (see `AdapterLibrary::publish`
    /// and [`AdapterLibrary::fetch`]).
    pub fn shared(root: impl Into<PathBuf>, store: store::Store) -> AdapterLibrary {
        AdapterLibrary {
            store: Some(store),
            ..AdapterLibrary::new(root)
        }
    }

    /// The two files of the adapter with this hash, from disk or the store.
    pub(crate) async fn files(&self, hash: &str) -> Result<Option<store::AdapterFiles>, String> {
        if !is_hash(hash) {
            return Err(format!("{hash:?} is not an adapter hash (64 hex digits)"));
        }
        let dir = self.dir_of(hash);
        if dir.is_dir() {
            let read = |name: &str| {
                std::fs::read(dir.join(name)).map_err(|e| format!("{}: {e}", dir.display()))
            };
            let config = String::from_utf8(read(agents::adapter::CONFIG_FILE)?)
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            return Ok(Some(store::AdapterFiles {
                config,
                weights: read(agents::adapter::WEIGHTS_FILE)?,
            }));
        }
        match &self.store {
            Some(store) => store.adapter_files(hash).await.map_err(|e| e.to_string()),
            None => Ok(None),
        }
    }

    /// Stores the adapter with this hash (already saved here) where every host on the
    /// database reads it; a library without a store keeps it on this host.
    pub(crate) async fn publish(&self, hash: &str) -> Result<(), String> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let files = self
            .files(hash)
            .await?
            .ok_or_else(|| format!("adapter {hash} is not in {}", self.root.display()))?;
        store
            .put_adapter(hash, &files)
            .await
            .map_err(|e| e.to_string())
    }

    /// Makes sure the adapter with this hash is on this host, fetching it from the
    /// store when it is not; `false` when neither holds it. Its hash is checked when
    /// it is loaded ([`AdapterLibrary::get`]).
    pub async fn fetch(&self, hash: &str) -> Result<bool, String> {
        if self.dir_of(hash).is_dir() {
            return Ok(true);
        }
        let Some(store) = &self.store else {
            return Ok(false);
        };
        match store.adapter_files(hash).await.map_err(|e| e.to_string())? {
            Some(files) => self.place(hash, &files).map(|()| true),
            None => Ok(false),
        }
    }

    /// Writes an adapter's files (fetched from elsewhere) under `hash`, complete or
    /// not at all. Nothing vouches for them until [`AdapterLibrary::get`] checks the
    /// hash.
    pub fn place(&self, hash: &str, files: &store::AdapterFiles) -> Result<(), String> {
        if !is_hash(hash) {
            return Err(format!("{hash:?} is not an adapter hash (64 hex digits)"));
        }
        let dir = self.dir_of(hash);
        if dir.is_dir() {
            return Ok(());
        }
        let io = |e: std::io::Error| format!("{}: {e}", self.root.display());
        std::fs::create_dir_all(&self.root).map_err(io)?;
        let tmp = tempfile::Builder::new()
            .prefix(".incoming-")
            .tempdir_in(&self.root)
            .map_err(io)?;
        std::fs::write(
            tmp.path().join(agents::adapter::CONFIG_FILE),
            files.config.as_bytes(),
        )
        .map_err(io)?;
        std::fs::write(
            tmp.path().join(agents::adapter::WEIGHTS_FILE),
            &files.weights,
        )
        .map_err(io)?;
        let tmp = tmp.keep();
        if let Err(e) = std::fs::rename(&tmp, &dir) {
            let _ = std::fs::remove_dir_all(&tmp);
            if !dir.is_dir() {
                return Err(format!("{}: {e}", dir.display()));
            }
        }
        Ok(())
    }

    /// Where the adapter with this hash lives.
    pub fn dir_of(&self, hash: &str) -> PathBuf {
        self.root.join(hash)
    }

    /// Saves `adapter` for `model` and returns its hash. Saving an adapter that is
    /// already there is a no-op.
    pub fn save(
        &self,
        adapter: &LoraAdapter,
        model: &agents::ModelConfig,
        base_model: Option<&str>,
    ) -> agents::Result<String> {
        let hash = agents::adapter_hash(adapter, model)?;
        let dir = self.dir_of(&hash);
        if !dir.exists() {
            std::fs::create_dir_all(&self.root).map_err(|e| io_err(&self.root, e))?;
            let tmp = tempfile::Builder::new()
                .prefix(".incoming-")
                .tempdir_in(&self.root)
                .map_err(|e| io_err(&self.root, e))?;
            agents::save_adapter(adapter, model, tmp.path(), base_model)?;
            let tmp = tmp.keep();
            if let Err(e) = std::fs::rename(&tmp, &dir) {
                let _ = std::fs::remove_dir_all(&tmp);
                // Another writer may have placed the same adapter first.
                if !dir.exists() {
                    return Err(io_err(&dir, e));
                }
            }
        }
        Ok(hash)
    }

    /// The adapter with this hash, loaded from disk on first use and checked against
    /// its hash.
    pub fn get(&self, hash: &str, model: &agents::ModelConfig) -> Result<Arc<LoraAdapter>, String> {
        if let Some(a) = self.loaded.lock().expect("adapter cache").get(hash) {
            return Ok(a.clone());
        }
        let dir = self.dir_of(hash);
        let adapter = agents::load_adapter(&dir, model)
            .map_err(|e| format!("adapter {hash} ({}): {e}", dir.display()))?;
        let actual = agents::adapter_hash(&adapter, model).map_err(|e| e.to_string())?;
        if actual != hash {
            return Err(format!(
                "adapter {} holds an adapter whose hash is {actual}, not {hash}",
                dir.display()
            ));
        }
        let adapter = Arc::new(adapter);
        self.loaded
            .lock()
            .expect("adapter cache")
            .insert(hash.to_string(), adapter.clone());
        Ok(adapter)
    }
}

fn io_err(path: &Path, e: std::io::Error) -> agents::AgentError {
    agents::AgentError::AdapterIo {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

struct LiveSeq {
    /// Which decoder (base model) runs it, and its id there.
    model: usize,
    id: u64,
    prompt: String,
    pending: Arc<Mutex<String>>,
}

/// One served base model's decoder.
struct ModelLane {
    name: String,
    decoder: BatchDecoder<'static>,
}

/// The agent runtime as the match world's engine: one batched decoder per base model,
/// so each step decodes every seat of a base model in one forward pass, whichever
/// match it sits in.
pub struct RuntimeEngine {
    // The world's resources must be `Sync`; the decoder's delta callbacks are only
    // `Send`. Every use goes through `&mut self`, so the lock is never contended.
    lanes: Mutex<Vec<ModelLane>>,
    adapters: Arc<AdapterLibrary>,
    live: HashMap<Ticket, LiveSeq>,
    /// Engine tickets, unique across the decoders.
    next_ticket: Ticket,
    generated_tokens: u64,
    menu: crate::base_models::BaseModelMenu,
}

impl RuntimeEngine {
    /// An engine over one loaded model (served as the default base model), finding
    /// adapters in `adapters`.
    pub fn new(
        model: Arc<Model>,
        tokenizer: Arc<ChatTokenizer>,
        adapters: Arc<AdapterLibrary>,
    ) -> RuntimeEngine {
        RuntimeEngine::serving(
            &crate::base_models::AgentModels::single(model, tokenizer),
            adapters,
        )
    }

    /// An engine over every base model in `models`: a request names its model
    /// ([`GenRequest::base_model`], empty for the default).
    pub fn serving(
        models: &crate::base_models::AgentModels,
        adapters: Arc<AdapterLibrary>,
    ) -> RuntimeEngine {
        let lanes = models
            .all()
            .iter()
            .map(|l| ModelLane {
                name: l.choice.name.clone(),
                decoder: BatchDecoder::shared(l.model.clone(), l.tokenizer.clone()),
            })
            .collect();
        RuntimeEngine {
            lanes: Mutex::new(lanes),
            adapters,
            live: HashMap::new(),
            next_ticket: 0,
            generated_tokens: 0,
            menu: models.menu().clone(),
        }
    }

    /// Tokens generated since the engine was made.
    pub fn generated_tokens(&self) -> u64 {
        self.generated_tokens
    }
}

impl Engine for RuntimeEngine {
    fn submit(&mut self, request: GenRequest) -> Result<Ticket, EngineError> {
        let lanes = self.lanes.get_mut().expect("decoder lock");
        let lane = if request.base_model.is_empty() {
            0
        } else {
            let name = &self
                .menu
                .resolve(&request.base_model)
                .map_err(EngineError)?
                .name;
            lanes
                .iter()
                .position(|l| &l.name == name)
                .expect("the menu lists the engine's models")
        };
        let decoder = &mut lanes[lane].decoder;
        let params = request.sampling.clone().capped(request.max_new_tokens);
        params.validate().map_err(|e| EngineError(e.to_string()))?;
        let adapter = match &request.adapter_hash {
            Some(hash) => Some(
                self.adapters
                    .get(hash, decoder.model().config())
                    .map_err(EngineError)?,
            ),
            None => None,
        };
        let tokenizer = decoder.tokenizer();
        let prompt = tokenizer.chat_prompt(&request.system, &request.user);
        let prompt_tokens = tokenizer
            .encode(&prompt)
            .map_err(|e| EngineError(e.to_string()))?;
        let pending = Arc::new(Mutex::new(String::new()));
        let sink = pending.clone();
        let id = decoder
            .add(
                GenerationRequest {
                    prompt_tokens,
                    params,
                    seed: request.seed,
                    adapter,
                },
                Some(Box::new(move |delta: &str| {
                    sink.lock().expect("delta buffer").push_str(delta)
                })),
            )
            .map_err(|e| EngineError(e.to_string()))?;
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.live.insert(
            ticket,
            LiveSeq {
                model: lane,
                id,
                prompt,
                pending,
            },
        );
        Ok(ticket)
    }

    fn step(&mut self) -> Result<Vec<EngineOutput>, EngineError> {
        let lanes = self.lanes.get_mut().expect("decoder lock");
        // Each base model's seats decode together, one forward pass per model.
        let mut finished = Vec::new();
        for (lane, l) in lanes.iter_mut().enumerate() {
            if l.decoder.is_empty() {
                continue;
            }
            let live_before = l.decoder.len() as u64;
            let done = l.decoder.step().map_err(|e| EngineError(e.to_string()))?;
            self.generated_tokens += live_before;
            finished.extend(done.into_iter().map(|g| (lane, g)));
        }
        let mut out = Vec::new();
        let mut tickets: Vec<Ticket> = self.live.keys().copied().collect();
        tickets.sort_unstable();
        for &ticket in &tickets {
            let seq = &self.live[&ticket];
            let text = std::mem::take(&mut *seq.pending.lock().expect("delta buffer"));
            if !text.is_empty() {
                out.push(EngineOutput::Delta { ticket, text });
            }
        }
        let mut done = Vec::new();
        for (lane, g) in finished {
            let Some(&ticket) = tickets
                .iter()
                .find(|t| self.live[t].model == lane && self.live[t].id == g.id)
            else {
                continue;
            };
            done.push((ticket, g));
        }
        done.sort_by_key(|(t, _)| *t);
        for (ticket, g) in done {
            let seq = self.live.remove(&ticket).expect("a live ticket");
            out.push(EngineOutput::Done {
                ticket,
                tokens: g.tokens.len() as u32,
                text: g.text,
                finish: finish_name(g.finish).to_string(),
                prompt: seq.prompt,
            });
        }
        Ok(out)
    }

    fn cancel(&mut self, ticket: Ticket) {
        if let Some(seq) = self.live.remove(&ticket) {
            self.lanes.get_mut().expect("decoder lock")[seq.model]
                .decoder
                .cancel(seq.id);
        }
    }

    fn live(&self) -> usize {
        self.live.len()
    }
}

fn finish_name(f: agents::FinishReason) -> &'static str {
    match f {
        agents::FinishReason::EndOfTurn => "end_of_turn",
        agents::FinishReason::StopSequence => "stop_sequence",
        agents::FinishReason::Length => "length",
        agents::FinishReason::ContextFull => "context_full",
    }
}

/// A [`RoundJudge`] that runs each Space's judge panel, built once per Space.
pub struct PanelJudge {
    panels: std::collections::HashMap<String, judges::Panel>,
}

impl PanelJudge {
    /// Builds the panel of every rulebook over the loaded judge models (shared
    /// through `Arc`, so each model is loaded once).
    pub fn new(
        rulebooks: &[std::sync::Arc<Rulebook>],
        loaded: &judges::LoadedJudges,
    ) -> Result<PanelJudge, judges::JudgeError> {
        let mut panels = std::collections::HashMap::new();
        for book in rulebooks {
            panels.insert(
                book.slug.clone(),
                judges::Panel::from_rulebook(book.clone(), loaded)?,
            );
        }
        Ok(PanelJudge { panels })
    }
}

impl RoundJudge for PanelJudge {
    fn judge(
        &self,
        rulebook: &Rulebook,
        task: &spaces::Task,
        responses: &[&str],
        hard_failed: &[bool],
    ) -> Result<Vec<ResponseVerdict>, judges::JudgeError> {
        // Alone is a batch of one: a replay judges through the same code as a tick.
        self.judge_many(&[RoundToJudge {
            rulebook,
            task,
            responses,
            hard_failed,
            history: &[],
        }])
        .pop()
        .expect("one round in, one out")
    }

    /// Every round goes to [`judges::Panel::judge_many`] together, so the LLM judge
    /// shared by the Spaces' panels scores every answer of every round in one batch.
    fn judge_many(
        &self,
        rounds: &[RoundToJudge<'_>],
    ) -> Vec<Result<Vec<ResponseVerdict>, judges::JudgeError>> {
        let tasks: Vec<judges::Task> = rounds
            .iter()
            .map(|r| {
                let mut task = judges::Task::from_space(r.rulebook, r.task);
                task.history = r.history.to_vec();
                task
            })
            .collect();
        let mut results: Vec<Option<Result<Vec<ResponseVerdict>, judges::JudgeError>>> =
            Vec::with_capacity(rounds.len());
        let mut asked = Vec::new();
        let mut at = Vec::new();
        for (i, (r, task)) in rounds.iter().zip(&tasks).enumerate() {
            match self.panels.get(&r.rulebook.slug) {
                Some(panel) => {
                    asked.push(judges::PanelRound {
                        panel,
                        task,
                        responses: r.responses,
                        hard_failed: r.hard_failed,
                    });
                    at.push(i);
                    results.push(None);
                }
                None => results.push(Some(Err(judges::JudgeError::Model {
                    path: r.rulebook.slug.clone(),
                    reason: "no judge panel was built for this Space".into(),
                }))),
            }
        }
        for (i, judged) in at.into_iter().zip(judges::Panel::judge_many(&asked)) {
            results[i] = Some(judged);
        }
        results
            .into_iter()
            .map(|r| r.expect("every round has a result"))
            .collect()
    }
}
