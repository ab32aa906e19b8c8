//! `rlfc demo`, `rlfc tournament` and `rlfc replay`: the platform assembled from the
//! configuration (store, chain and payments, Spaces, the agent runtime and the judge
//! panel) and the match runner driven in a loop.

use anyhow::{Context, Result, bail};
use platform::bus::Bus;
use platform::{BaseModels, Platform};

use crate::config::Config;

/// `rlfc seed-demo`: the demo owners (funded through the Arena contract) and agents,
/// entered automatically into the given Spaces (all when empty). Idempotent. For a
/// deployment of `rlfc serve` and `rlfc worker` processes, which never seed anything.
pub async fn seed_demo(config: &Config, slugs: &[String]) -> Result<()> {
    let platform = Platform::connect(&config.platform(), Bus::new()).await?;
    let (population, slugs) = platform::demo::seed_spaces(&platform, slugs).await?;
    let tiers = platform::demo::demo_tiers();
    println!(
        "demo population: {} owners, {} agents, auto-entered in {} ({} and {} tiers)",
        population.owners.len(),
        population.agents.len(),
        slugs.join(", "),
        tiers[0].0,
        tiers[1].0,
    );
    Ok(())
}

/// `rlfc demo`: the demo population, the web UI and matches until Ctrl-C (see
/// `platform::demo::run`; the first Ctrl-C or SIGTERM lets the matches in play finish,
/// the second refunds them at once).
pub async fn demo(config: &Config, max_matches: Option<usize>) -> Result<()> {
    let (signals, stops) = tokio::sync::watch::channel(0u8);
    tokio::spawn(async move {
        for n in 1..=2u8 {
            shutdown_signal().await;
            let _ = signals.send(n);
        }
    });
    platform::demo::run(&config.platform(), max_matches, stops, |platform, stop| {
        crate::commands::web::start_web(platform, stop, config.clone(), true)
    })
    .await?;
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
/// with the run's pairs from the local database, or with `from` the evidence and
/// adapters the server there serves (`web::evidence::verify_from`).
pub async fn verify_pol(config: &Config, record_id: u64, from: Option<&str>) -> Result<bool> {
    let platform_config = config.platform();
    let verdict = match from {
        None => {
            let platform = Platform::open(&platform_config).await?;
            let trainer = platform.trainer(&BaseModels::load(&platform_config)?)?;
            trainer.verify(record_id).await?
        }
        Some(url) => {
            web::evidence::verify_from(&platform_config, record_id, url, |line| println!("{line}"))
                .await?
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
    let report = platform::replay::replay_match(
        &platform.store,
        &platform.spaces,
        engine,
        judge,
        &platform.base_models,
        match_id,
    )
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
