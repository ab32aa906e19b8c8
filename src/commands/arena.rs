//! `rlfc demo`, `rlfc tournament` and `rlfc replay`: the platform assembled from the
//! configuration (store, chain and payments, Spaces, the agent runtime and the judge
//! panel) and the match runner driven in a loop.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use arena::bus::Bus;
use arena::payments::{Payments, Reclaim};
use arena::runner::{MatchEnd, MatchReport, MatchRunner, RunnerConfig, SpaceSlot, seed_spaces};
use arena::runtime::{AdapterLibrary, RuntimeEngine};
use store::{Store, Wei};

use crate::config::Config;

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
}

impl Platform {
    /// Opens the store and the chain, seeds the Spaces and finishes whatever a
    /// previous run left unsettled. For the single-process commands (`demo`,
    /// `tournament`): every unfinished match was left by a stopped run.
    pub async fn open(config: &Config) -> Result<Platform> {
        let bus = Bus::connect(config.redis_url(), &config.redis.namespace)
            .await
            .context("connect the event bus (redis.url)")?;
        let platform = Platform::connect(config, bus).await?;
        let done = platform.payments.reconcile(&Reclaim::Everything).await?;
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
    pub async fn connect(config: &Config, bus: Bus) -> Result<Platform> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("create data_dir {}", config.data_dir.display()))?;
        let store = Store::connect(config.database_url(), &config.data_dir).await?;
        let contracts = chain::open_contracts(&config.chain, &config.data_dir).await?;
        let operator = chain::any::operator_of(&config.chain, contracts.chain())?;
        let treasury = chain::any::treasury_of(&config.chain, contracts.chain())?;
        let payments = Arc::new(Payments::new(
            store.clone(),
            Arc::new(contracts),
            operator,
            treasury,
        ));
        let spaces = seed_spaces(&store, &config.assets_dir.join("spaces")).await?;
        Ok(Platform {
            store,
            payments,
            spaces,
            bus,
            adapters: Arc::new(AdapterLibrary::new(config.data_dir.join("adapters"))),
        })
    }

    /// The runner configuration from `[arena]`.
    pub fn runner_config(config: &Config) -> RunnerConfig {
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
    pub fn model_runner(&self, config: &Config, models: &BaseModels) -> Result<MatchRunner> {
        let (engine, judge) = self.model_engine_and_judge(models)?;
        Ok(MatchRunner::new(
            self.store.clone(),
            self.payments.clone(),
            self.bus.clone(),
            engine,
            judge,
            self.spaces.clone(),
            Platform::runner_config(config),
        ))
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
        let engine = RuntimeEngine::new(
            models.model.clone(),
            models.tokenizer.clone(),
            self.adapters.clone(),
        );
        let loaded = judges::LoadedJudges::new(
            Some(models.llm_judge.clone()),
            Some(models.embedding_judge.clone()),
        )?;
        let books: Vec<_> = self.spaces.iter().map(|s| s.rulebook.clone()).collect();
        let judge = arena::judging::PanelJudge::new(&books, &loaded)?;
        Ok((Box::new(engine), Box::new(judge)))
    }

    /// A trainer on the shared base model, signing records as the chain operator.
    pub fn trainer(&self, models: &BaseModels) -> arena::learning::Trainer {
        arena::learning::Trainer::new(
            self.store.clone(),
            self.payments.contracts().clone(),
            self.payments.operator(),
            models.model.clone(),
            models.tokenizer.clone(),
            self.adapters.clone(),
        )
    }

    /// The Space with this slug.
    pub fn space(&self, slug: &str) -> Result<&SpaceSlot> {
        self.spaces
            .iter()
            .find(|s| s.rulebook.slug == slug)
            .with_context(|| {
                format!(
                    "no Space named {slug:?} (known: {})",
                    self.spaces
                        .iter()
                        .map(|s| s.rulebook.slug.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }
}

/// The base models, loaded once and shared by the engine, the LLM judge and the
/// trainer (each only reads the weights).
pub struct BaseModels {
    /// SmolLM2, the agents' base model (and the LLM judge's, unless `judges.llm_model`
    /// names another GGUF file).
    pub model: Arc<agents::Model>,
    /// Its tokenizer.
    pub tokenizer: Arc<agents::ChatTokenizer>,
    /// The LLM judge over `model`.
    pub llm_judge: Arc<judges::LlmJudge>,
    /// The embedding judge on all-MiniLM-L6-v2.
    pub embedding_judge: Arc<judges::EmbeddingJudge>,
}

impl BaseModels {
    /// Fetches the models if missing (sha256-checked) and loads each once.
    pub fn load(config: &Config) -> Result<BaseModels> {
        let fetcher = config.fetcher();
        let gguf = fetcher.ensure(&models::SMOLLM2)?.remove(0);
        fetcher.ensure(&models::MINILM)?;
        let (model, tokenizer) = agents::Model::load(&gguf)?;
        let (model, tokenizer) = (Arc::new(model), Arc::new(tokenizer));
        // The judge shares the agents' model unless `judges.llm_model` names another.
        let (judge, judge_gguf) = match config.judge_model() {
            Some(path) => (
                judges::LlmJudge::load(path)
                    .with_context(|| format!("judges.llm_model {}", path.display()))?,
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
        let (llm_judge, embedding_judge) = crate::commands::bench::judges_on_device(
            config,
            judge,
            &judge_gguf,
            &fetcher.model_dir(&models::MINILM),
        )?;
        // With `judges.endpoint`, the LLM judge's forward passes run on that server.
        let llm_judge = crate::commands::bench::with_endpoint(config, llm_judge)?;
        Ok(BaseModels {
            model,
            tokenizer,
            llm_judge: Arc::new(llm_judge),
            embedding_judge: Arc::new(embedding_judge),
        })
    }
}

/// Logs one finished match as a single line.
pub fn log_report(report: &MatchReport) {
    match &report.end {
        MatchEnd::Settled {
            seats,
            result_hash,
            pairs,
            ..
        } => {
            let places: Vec<String> = seats
                .iter()
                .map(|s| {
                    format!(
                        "#{} agent {} (score {:.3}, paid {} wei, mu {:.2})",
                        s.place, s.agent_id, s.score, s.payout_wei, s.mu
                    )
                })
                .collect();
            tracing::info!(
                match_id = report.match_id,
                space = %report.space,
                pairs,
                result_hash = %&result_hash[..16],
                "settled: {}",
                places.join("; ")
            );
        }
        MatchEnd::Refunded { reason } => {
            tracing::warn!(match_id = report.match_id, space = %report.space, %reason, "refunded");
        }
        MatchEnd::SettledChainPending { result_hash, error } => {
            tracing::error!(match_id = report.match_id, space = %report.space,
                result_hash = %&result_hash[..16], %error,
                "settled in the database; the chain settlement is pending");
        }
        MatchEnd::ClosedElsewhere { closed_as } => {
            tracing::warn!(match_id = report.match_id, space = %report.space, %closed_as,
                "closed by another process");
        }
    }
}

/// The demo's fee tiers and each agent's spending cap per Space in each.
fn demo_tiers() -> [(&'static str, Wei); 2] {
    [("free", Wei(0)), ("bronze", Wei(arena::demo::ETH / 10))]
}

/// `rlfc seed-demo`: the demo owners (funded through the Arena contract) and agents,
/// entered automatically into the given Spaces (all when empty). Idempotent. For a
/// deployment of `rlfc serve` and `rlfc worker` processes, which never seed anything.
pub async fn seed_demo(config: &Config, slugs: &[String]) -> Result<()> {
    let platform = Platform::connect(config, Bus::new()).await?;
    let spaces: Vec<SpaceSlot> = if slugs.is_empty() {
        platform.spaces.clone()
    } else {
        slugs
            .iter()
            .map(|slug| platform.space(slug).cloned())
            .collect::<Result<_>>()?
    };
    let population = arena::demo::seed_demo(
        &platform.store,
        &platform.payments,
        &spaces,
        &demo_tiers(),
        Wei(arena::demo::ETH),
    )
    .await?;
    println!(
        "demo population: {} owners, {} agents, auto-entered in {} ({} and {} tiers)",
        population.owners.len(),
        population.agents.len(),
        spaces
            .iter()
            .map(|s| s.rulebook.slug.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        demo_tiers()[0].0,
        demo_tiers()[1].0,
    );
    Ok(())
}

/// `rlfc demo`: seeds the demo population and runs matches until Ctrl-C.
pub async fn demo(config: &Config, max_matches: Option<usize>) -> Result<()> {
    let platform = Platform::open(config).await?;
    let population = arena::demo::seed_demo(
        &platform.store,
        &platform.payments,
        &platform.spaces,
        &demo_tiers(),
        Wei(arena::demo::ETH),
    )
    .await?;
    tracing::info!(
        owners = population.owners.len(),
        agents = population.agents.len(),
        spaces = platform.spaces.len(),
        data_dir = %config.data_dir.display(),
        "demo population ready; loading the models"
    );
    // Ctrl-C (or SIGTERM) once: stop forming matches and let those in play finish within
    // `arena.shutdown_grace_secs`, then refund the rest; twice: refund at once. Steps
    // are never cancelled halfway, so no match is left started but untracked.
    let (signals, stops) = tokio::sync::watch::channel(0u8);
    tokio::spawn(async move {
        for n in 1..=2u8 {
            shutdown_signal().await;
            let _ = signals.send(n);
        }
    });
    let (server_stop, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = crate::commands::web::spawn_server_until(&platform, config, true, async move {
        let _ = server_stopped.await;
    })
    .await?;
    let models = BaseModels::load(config)?;
    let mut runner = platform.model_runner(config, &models)?;
    let learning = tokio::spawn(train_due_agents_forever(platform.trainer(&models)));
    tracing::info!("running matches (Ctrl-C stops: matches in play finish or are refunded)");
    let grace = Duration::from_secs(config.arena.shutdown_grace_secs);
    let mut finished = 0usize;
    let mut draining_since: Option<std::time::Instant> = None;
    loop {
        let signalled = *stops.borrow();
        if signalled >= 2 {
            break;
        }
        if signalled == 1 && draining_since.is_none() {
            draining_since = Some(std::time::Instant::now());
            learning.abort();
            tracing::info!(
                live = runner.live_matches(),
                grace_secs = grace.as_secs(),
                "stopping: no new matches; finishing the matches in play (Ctrl-C again refunds them now)"
            );
        }
        let reports = match draining_since {
            None => runner.step().await?,
            Some(since) => {
                if runner.live_matches() == 0 || since.elapsed() >= grace {
                    break;
                }
                runner.drain_step().await?
            }
        };
        for report in &reports {
            log_report(report);
        }
        finished += reports.len();
        if max_matches.is_some_and(|m| finished >= m) {
            break;
        }
        if runner.live_matches() == 0 {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    learning.abort();
    let abandoned = runner.abandon_all("the demo was stopped").await?;
    runner.bus().flush().await.ok();
    let _ = server_stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    tracing::info!(finished, refunded = abandoned.len(), "demo stopped");
    Ok(())
}

/// Resolves on Ctrl-C (SIGINT) or, on Unix, SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// How long a training run may stay `running` before another process takes it for
/// abandoned (its process stopped mid-run) and closes it as failed.
const STALE_TRAINING_MS: i64 = 2 * 60 * 60 * 1000;

/// The training loop beside live matches: every active agent whose policy is due gets
/// one run, one at a time, each on a blocking thread so the match loop keeps its
/// pace. Several processes may run this loop on one database: the store admits one
/// running run per agent, so a process that finds an agent already training skips it.
pub(crate) async fn train_due_agents_forever(trainer: arena::learning::Trainer) {
    loop {
        match trainer
            .store()
            .fail_stale_training_runs(store::now_ms() - STALE_TRAINING_MS)
            .await
        {
            Ok(closed) if !closed.is_empty() => {
                tracing::warn!(runs = ?closed, "closed training runs abandoned by a stopped process")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not sweep stale training runs"),
        }
        let agents = match trainer.store().active_agent_ids().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "could not list the agents to train");
                Vec::new()
            }
        };
        for agent in agents {
            let due = match trainer.due_pairs(agent).await {
                Ok(Some(pairs)) => pairs,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(agent, error = %e, "training policy unreadable");
                    continue;
                }
            };
            tracing::info!(agent, pairs = due.len(), "training a new adapter version");
            match trainer.train(agent, due).await {
                Ok(v) => tracing::info!(
                    agent,
                    version_id = v.version_id,
                    adapter = %&v.adapter_hash[..16],
                    record_id = v.record_id,
                    final_loss = v.final_loss,
                    "trained; proof-of-learning recorded on chain"
                ),
                Err(arena::learning::LearningError::Store(store::Error::Duplicate { .. })) => {
                    tracing::info!(agent, "another process is training this agent; skipped")
                }
                Err(e) => tracing::error!(agent, error = %e, "training failed"),
            }
        }
        tokio::time::sleep(Duration::from_secs(20)).await;
    }
}

/// `rlfc verify-pol`: checks a proof-of-learning record by replaying its training,
/// with the run's pairs from the local database, or from the export API of the server
/// at `from`. Adapters come from the local adapter library either way.
pub async fn verify_pol(config: &Config, record_id: u64, from: Option<&str>) -> Result<bool> {
    let verdict = match from {
        None => {
            let platform = Platform::open(config).await?;
            let trainer = platform.trainer(&BaseModels::load(config)?);
            trainer.verify(record_id).await?
        }
        Some(url) => {
            let contracts = chain::open_contracts(&config.chain, &config.data_dir).await?;
            let record = contracts.get_record(record_id).await?;
            let evidence = web::evidence::fetch_evidence(url, &record).await?;
            println!(
                "evidence from {url}: {} pairs of {} matches",
                evidence.pairs.len(),
                evidence.match_results.len()
            );
            let models = BaseModels::load(config)?;
            let adapters = AdapterLibrary::new(config.data_dir.join("adapters"));
            arena::learning::verify_evidence(
                &record,
                &evidence,
                &models.model,
                &models.tokenizer,
                &adapters,
                arena::learning::StoredAdapter::IfPresent,
            )
            .await?
        }
    };
    println!("proof-of-learning record {record_id}");
    for (check, ok) in &verdict.checks {
        println!("  {} {check}", if *ok { "ok  " } else { "FAIL" });
    }
    match &verdict.failure {
        None => {
            println!("verdict: verified: re-training from the parent gives the recorded adapter");
            Ok(true)
        }
        Some(why) => {
            println!("verdict: NOT verified: {why}");
            Ok(false)
        }
    }
}

/// `rlfc tournament`: plays `matches` matches of one Space headless, then prints the
/// leaderboard.
pub async fn tournament(
    config: &Config,
    space: &str,
    tier: &str,
    matches: usize,
    test_policy: bool,
) -> Result<()> {
    if matches == 0 {
        bail!("--matches must be at least 1");
    }
    let platform = Platform::open(config).await?;
    let slot = platform.space(space)?.clone();
    let tier_row = slot
        .tiers
        .iter()
        .find(|t| t.name == tier)
        .with_context(|| {
            format!(
                "Space {space} has no fee tier {tier:?} (tiers: {})",
                slot.tiers
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?
        .clone();
    let population = arena::demo::seed_demo(
        &platform.store,
        &platform.payments,
        &[],
        &[],
        Wei(tier_row
            .fee_wei
            .0
            .saturating_mul(3 * (matches as u128 + 1))
            .max(arena::demo::ETH)),
    )
    .await?;
    let (engine, judge): (
        Box<dyn arena::engine::Engine>,
        Box<dyn arena::judging::RoundJudge>,
    ) = if test_policy {
        (
            Box::new(arena::engine::InstantEngine::new()),
            Box::new(arena::judging::RulesOnlyJudge),
        )
    } else {
        platform.model_engine_and_judge(&BaseModels::load(config)?)?
    };
    let mut runner = MatchRunner::new(
        platform.store.clone(),
        platform.payments.clone(),
        platform.bus.clone(),
        engine,
        judge,
        vec![slot.clone()],
        Platform::runner_config(config),
    );
    let bar = indicatif::ProgressBar::new(matches as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {pos}/{len} matches [{elapsed_precise}] {wide_bar} {msg}",
        )
        .expect("valid template"),
    );
    let (mut started, mut settled, mut refunded) = (0usize, 0usize, 0usize);
    while settled + refunded < matches {
        // Keep every agent queued while matches remain to be started.
        if started < matches {
            let queued = platform
                .store
                .queued_entries(slot.space.id, tier_row.id)
                .await?;
            for &agent in &population.agents {
                if queued.iter().any(|e| e.agent_id == agent) {
                    continue;
                }
                let owner = platform.store.agent(agent).await?.owner_id;
                let version = platform.store.latest_agent_version(agent).await?;
                platform.store.enter(owner, version.id, tier_row.id).await?;
            }
        }
        if started < matches {
            runner.limit_new_matches(Some(matches - started));
            started += runner.matchmake().await?.len();
        }
        let outcomes = if runner.live_matches() == 0 {
            Vec::new()
        } else {
            tokio::task::block_in_place(|| runner.tick())
        };
        for report in runner.finish(outcomes).await? {
            match report.end {
                MatchEnd::Settled { .. } | MatchEnd::SettledChainPending { .. } => settled += 1,
                MatchEnd::Refunded { .. } => refunded += 1,
                MatchEnd::ClosedElsewhere { .. } => {}
            }
            bar.inc(1);
            bar.set_message(format!("{settled} settled, {refunded} refunded"));
        }
        // Matches beyond `matches` may have formed in the last round of matchmaking.
        if started >= matches && runner.live_matches() == 0 {
            break;
        }
    }
    bar.finish();
    // Entries still queued go back to their owners.
    for e in platform
        .store
        .queued_entries(slot.space.id, tier_row.id)
        .await?
    {
        platform.store.leave(e.id).await?;
    }
    println!(
        "\n{} ({}): {settled} settled, {refunded} refunded",
        slot.rulebook.name, slot.rulebook.slug
    );
    println!(
        "{:>4}  {:<14} {:>8} {:>7} {:>9}  {:>7}",
        "rank", "agent", "mu", "sigma", "mu-3σ", "matches"
    );
    for (i, r) in platform
        .store
        .leaderboard(slot.space.id)
        .await?
        .iter()
        .enumerate()
    {
        let name = platform.store.agent(r.agent_id).await?.name;
        println!(
            "{:>4}  {:<14} {:>8.2} {:>7.2} {:>9.2}  {:>7}",
            i + 1,
            name,
            r.mu,
            r.sigma,
            r.mu - 3.0 * r.sigma,
            r.matches_played
        );
    }
    let where_ = match config.database_url() {
        Some(url) => store::redact_url(url),
        None => config.data_dir.join("rlfc.sqlite").display().to_string(),
    };
    println!(
        "\npreference pairs: table preference_pairs in {where_} (space_id {}); export them with \
         GET /api/v1/datasets/preferences?space={}",
        slot.space.id, slot.rulebook.slug
    );
    Ok(())
}

/// `rlfc replay`: re-runs a settled match on the real models and compares hashes.
pub async fn replay(config: &Config, match_id: i64) -> Result<bool> {
    let platform = Platform::open(config).await?;
    let (engine, judge) = platform.model_engine_and_judge(&BaseModels::load(config)?)?;
    let report =
        arena::replay::replay_match(&platform.store, &platform.spaces, engine, judge, match_id)
            .await?;
    println!("match {}", report.match_id);
    println!("  stored hash: {}", report.stored_hash);
    println!("  replay hash: {}", report.replay_hash);
    match &report.dispute {
        None => {
            println!("  verdict:     reproduced: the replay gives the same result");
            Ok(true)
        }
        Some(diff) => {
            println!("  verdict:     DISPUTE: the replay differs");
            println!("  first difference: {diff}");
            Ok(false)
        }
    }
}
