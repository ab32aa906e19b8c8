//! `rlfc demo`, `rlfc tournament` and `rlfc replay`: the platform assembled from the
//! configuration (store, chain and payments, Spaces, the agent runtime and the judge
//! panel) and the match runner driven in a loop.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use platform::bus::Bus;
use platform::play::SpaceSlot;
use platform::runtime::AdapterLibrary;
use platform::{BaseModels, Platform};
use store::Wei;

use crate::config::Config;

/// The demo's fee tiers and each agent's spending cap per Space in each.
fn demo_tiers() -> [(&'static str, Wei); 2] {
    [("free", Wei(0)), ("bronze", Wei(platform::demo::ETH / 10))]
}

/// `rlfc seed-demo`: the demo owners (funded through the Arena contract) and agents,
/// entered automatically into the given Spaces (all when empty). Idempotent. For a
/// deployment of `rlfc serve` and `rlfc worker` processes, which never seed anything.
pub async fn seed_demo(config: &Config, slugs: &[String]) -> Result<()> {
    let platform = Platform::connect(&config.platform(), Bus::new()).await?;
    let spaces: Vec<SpaceSlot> = if slugs.is_empty() {
        platform.spaces.clone()
    } else {
        slugs
            .iter()
            .map(|slug| platform.space(slug).cloned())
            .collect::<Result<_, _>>()?
    };
    let population = platform::demo::seed_demo(
        &platform.store,
        &platform.payments,
        &spaces,
        &demo_tiers(),
        Wei(platform::demo::ETH),
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

/// Seconds between the demo's chain follower passes.
const FOLLOW_EVERY_SECS: u64 = 5;

/// `rlfc demo`: seeds the demo population and runs matches until Ctrl-C.
pub async fn demo(config: &Config, max_matches: Option<usize>) -> Result<()> {
    let platform_config = config.platform();
    let platform = Platform::open(&platform_config).await?;
    let population = platform::demo::seed_demo(
        &platform.store,
        &platform.payments,
        &platform.spaces,
        &demo_tiers(),
        Wei(platform::demo::ETH),
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
    // The chain follower: deposits and withdrawals wallets make on the Arena contract
    // directly reach the journal within a few seconds.
    let follower = {
        let payments = platform.payments.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(FOLLOW_EVERY_SECS)).await;
                match payments.follow_chain().await {
                    Ok(f)
                        if !f.deposits_credited.is_empty() || !f.withdrawals_debited.is_empty() =>
                    {
                        tracing::info!(deposits = ?f.deposits_credited, withdrawals = ?f.withdrawals_debited,
                            "journaled what wallets did on the Arena contract directly");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "the chain follower's pass failed; retrying")
                    }
                }
            }
        })
    };
    let models = BaseModels::load(&platform_config)?;
    let mut runner = platform.model_runner(&platform_config, &models)?;
    tracing::info!("running matches (Ctrl-C stops: matches in play finish or are refunded)");
    let run = platform::runner::play_until_stopped(
        &mut runner,
        Some(platform.trainer(&models)?),
        stops,
        Duration::from_secs(config.arena.shutdown_grace_secs),
        max_matches,
        "the demo was stopped",
    )
    .await?;
    follower.abort();
    let _ = server_stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    tracing::info!(
        finished = run.finished,
        refunded = run.refunded_at_stop.len(),
        "demo stopped"
    );
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

/// `rlfc verify-pol`: checks a proof-of-learning record by replaying its training,
/// with the run's pairs from the local database, or from the export API of the server
/// at `from`. Adapters come from the local adapter library either way.
pub async fn verify_pol(config: &Config, record_id: u64, from: Option<&str>) -> Result<bool> {
    let platform_config = config.platform();
    let verdict = match from {
        None => {
            let platform = Platform::open(&platform_config).await?;
            let trainer = platform.trainer(&BaseModels::load(&platform_config)?)?;
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
            let chain = platform::learning::chain_checks(&contracts, &record, &evidence).await?;
            if chain.passed() {
                let models = BaseModels::load(&platform_config)?;
                let adapters = AdapterLibrary::new(config.data_dir.join("adapters"));
                // The parent and new adapters come from the server too, checked against
                // their hashes when loaded.
                let new_hash = format!("{:x}", record.fields.new_adapter_hash);
                for hash in evidence.parent_adapter_hash.iter().chain([&new_hash]) {
                    let had = adapters.dir_of(hash).is_dir();
                    if !had && web::evidence::fetch_adapter(url, hash, &adapters).await? {
                        println!("adapter {hash}: fetched from {url}");
                    }
                }
                chain.then(
                    platform::learning::verify_evidence(
                        &record,
                        &evidence,
                        &models.model,
                        &models.tokenizer,
                        &adapters,
                        platform::learning::StoredAdapter::IfPresent,
                    )
                    .await?,
                )
            } else {
                chain
            }
        }
    };
    println!("proof-of-learning record {record_id}");
    for (check, ok) in &verdict.checks {
        println!("  {} {check}", if *ok { "ok  " } else { "FAIL" });
    }
    for note in &verdict.notes {
        println!("  note {note}");
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
    let platform_config = config.platform();
    if matches == 0 {
        bail!("--matches must be at least 1");
    }
    let platform = Platform::open(&platform_config).await?;
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
    let (engine, judge): (
        Box<dyn arena::engine::Engine>,
        Box<dyn arena::judging::RoundJudge>,
    ) = if test_policy {
        (
            Box::new(arena::engine::InstantEngine::new()),
            Box::new(arena::judging::RulesOnlyJudge),
        )
    } else {
        platform.model_engine_and_judge(&BaseModels::load(&platform_config)?)?
    };
    let bar = indicatif::ProgressBar::new(matches as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {pos}/{len} matches [{elapsed_precise}] {wide_bar} {msg}",
        )
        .expect("valid template"),
    );
    let played = platform::demo::tournament(
        &platform,
        &slot,
        &tier_row,
        matches,
        engine,
        judge,
        Platform::runner_config(&platform_config),
        |done| {
            bar.inc(1);
            bar.set_message(format!(
                "{} settled, {} refunded",
                done.settled, done.refunded
            ));
        },
    )
    .await?;
    bar.finish();
    let (settled, refunded) = (played.settled, played.refunded);
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
    let where_ = match config.database.configured_url() {
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
    let platform_config = config.platform();
    let platform = Platform::open(&platform_config).await?;
    let (engine, judge) = platform.model_engine_and_judge(&BaseModels::load(&platform_config)?)?;
    let report =
        platform::replay::replay_match(&platform.store, &platform.spaces, engine, judge, match_id)
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
