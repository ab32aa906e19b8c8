//! The demo population: a few owners on local dev wallets, funded through the Arena
//! contract, and a dozen agents with varied meta-prompts and sampling settings,
//! entered automatically (under a spending cap) into every Space. Seeding is
//! idempotent: a restart reuses what is there and tops up what ran low.

use alloy::primitives::Address;
use store::{FeeTier, NewAgentVersion, Store, Wei};

use crate::Platform;
use crate::payments::Payments;
use crate::play::{MatchEnd, RunnerConfig, RunnerError, SpaceSlot};
use crate::runner::MatchRunner;

/// One wei-denominated ether.
pub const ETH: u128 = 1_000_000_000_000_000_000;

/// A demo agent: name, meta-prompt, sampling settings.
struct Persona {
    name: &'static str,
    prompt: &'static str,
    temperature: f64,
    top_p: f64,
}

/// How each persona learns: every fourth trains after 12 new pairs with small DPO runs
/// that fit two CPU cores beside live matches; the others keep their adapter-less
/// base for the length of a demo (they would train after 10000 pairs).
fn demo_training(index: usize) -> serde_json::Value {
    let every = if index.is_multiple_of(4) { 12 } else { 10_000 };
    serde_json::json!({
        "lora_rank": 8,
        "lora_alpha": 16.0,
        "learning_rate": 0.0005,
        "dpo_beta": 0.1,
        "train_every_pairs": every,
    })
}

const PERSONAS: [Persona; 12] = [
    Persona {
        name: "Plainspoken",
        prompt: "You answer in plain, short sentences. Do exactly what the task asks and nothing more.",
        temperature: 0.3,
        top_p: 0.9,
    },
    Persona {
        name: "Cheerleader",
        prompt: "You are upbeat and encouraging. Give one concrete reason, stay friendly, keep it short.",
        temperature: 0.8,
        top_p: 0.95,
    },
    Persona {
        name: "Professor",
        prompt: "You are a careful teacher. Be precise and correct; prefer facts over flourish.",
        temperature: 0.2,
        top_p: 0.85,
    },
    Persona {
        name: "Poet",
        prompt: "You love vivid images and rhythm, but you always follow the requested format exactly.",
        temperature: 0.9,
        top_p: 0.95,
    },
    Persona {
        name: "Minimalist",
        prompt: "Use as few words as possible. Never add explanations the task did not ask for.",
        temperature: 0.1,
        top_p: 0.8,
    },
    Persona {
        name: "Salesperson",
        prompt: "You persuade with benefits the reader cares about. End with a clear call to action.",
        temperature: 0.7,
        top_p: 0.9,
    },
    Persona {
        name: "Skeptic",
        prompt: "You weigh both sides, then take a clear position and defend it with one strong reason.",
        temperature: 0.5,
        top_p: 0.9,
    },
    Persona {
        name: "Engineer",
        prompt: "You are exact. For calculations give only the number; for data give only valid JSON.",
        temperature: 0.0,
        top_p: 1.0,
    },
    Persona {
        name: "Storyteller",
        prompt: "You make every answer feel like a tiny story, while keeping to the task's limits.",
        temperature: 1.0,
        top_p: 0.95,
    },
    Persona {
        name: "Coach",
        prompt: "You speak directly to the reader as a friendly coach. Short, warm, practical.",
        temperature: 0.6,
        top_p: 0.9,
    },
    Persona {
        name: "Debater",
        prompt: "You argue crisply: state your claim, give evidence, answer the strongest objection.",
        temperature: 0.4,
        top_p: 0.9,
    },
    Persona {
        name: "Wildcard",
        prompt: "Be surprising and original, but stay on topic and respect every rule of the task.",
        temperature: 1.2,
        top_p: 0.98,
    },
];

/// How many demo owners there are; dev account 0 is the chain operator.
pub const DEMO_OWNERS: usize = 4;

/// The demo's owners and agents.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoPopulation {
    /// Owner user ids.
    pub owners: Vec<i64>,
    /// Agent ids, in persona order.
    pub agents: Vec<i64>,
}

/// Creates (or finds) the demo owners on dev wallets 1..=4, keeps each one's balance
/// at `top_up` or more by depositing through the chain, creates the twelve agents, and
/// sets each agent's auto-entry in every Space for each `(tier name, spending cap)`.
pub async fn seed_demo(
    store: &Store,
    payments: &Payments,
    spaces: &[SpaceSlot],
    tiers: &[(&str, Wei)],
    top_up: Wei,
) -> Result<DemoPopulation, RunnerError> {
    let wallets: Vec<Address> = chain::dev::dev_accounts(DEMO_OWNERS + 1)[1..].to_vec();
    let mut owners = Vec::new();
    for wallet in wallets {
        let user = store.upsert_user(&format!("{wallet:#x}")).await?;
        let balance = store.balance(user.id).await?;
        if balance.available_wei.0 < top_up.0 {
            payments
                .deposit(user.id, Wei(top_up.0 - balance.available_wei.0))
                .await?;
        }
        owners.push(user.id);
    }
    let mut agents = Vec::new();
    for (i, persona) in PERSONAS.iter().enumerate() {
        let owner = owners[i % owners.len()];
        let existing = store
            .agents_by_owner(owner)
            .await?
            .into_iter()
            .find(|a| a.name == persona.name);
        let agent = match existing {
            Some(a) => a,
            None => {
                store
                    .create_agent(
                        owner,
                        persona.name,
                        "smollm2-135m-instruct",
                        &NewAgentVersion {
                            system_prompt: persona.prompt.into(),
                            sampling: serde_json::json!({
                                "temperature": persona.temperature,
                                "top_p": persona.top_p,
                            }),
                            training: demo_training(i),
                            adapter_hash: None,
                        },
                    )
                    .await?
                    .0
            }
        };
        for slot in spaces {
            for (tier, cap) in tiers {
                if let Some(t) = slot.tiers.iter().find(|t| t.name == *tier) {
                    store.set_auto_entry(agent.id, t.id, *cap, true).await?;
                }
            }
        }
        agents.push(agent.id);
    }
    Ok(DemoPopulation { owners, agents })
}

/// Matches of a tournament so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TournamentTally {
    /// Played, paid and rated.
    pub settled: usize,
    /// Every fee returned.
    pub refunded: usize,
}

/// `rlfc tournament`: plays `matches` matches of one Space's fee `tier` headless with
/// the demo population (seeded and funded for them), keeping every agent queued until
/// enough matches have started, on `engine` and `judge`. `on_match` sees the tally
/// after each finished match. Entries still queued at the end go back to their owners.
#[allow(clippy::too_many_arguments)]
pub async fn tournament(
    platform: &Platform,
    slot: &SpaceSlot,
    tier: &FeeTier,
    matches: usize,
    engine: Box<dyn arena::engine::Engine>,
    judge: Box<dyn arena::judging::RoundJudge>,
    cfg: RunnerConfig,
    mut on_match: impl FnMut(&TournamentTally),
) -> Result<TournamentTally, RunnerError> {
    let population = seed_demo(
        &platform.store,
        &platform.payments,
        &[],
        &[],
        Wei(tier
            .fee_wei
            .0
            .saturating_mul(3 * (matches as u128 + 1))
            .max(ETH)),
    )
    .await?;
    let mut runner = MatchRunner::new(
        platform.store.clone(),
        platform.payments.clone(),
        platform.bus.clone(),
        engine,
        judge,
        vec![slot.clone()],
        cfg,
    )
    .with_base_models(platform.base_models.clone());
    let (mut started, mut done) = (0usize, TournamentTally::default());
    while done.settled + done.refunded < matches {
        // Keep every agent queued while matches remain to be started.
        if started < matches {
            let queued = platform
                .store
                .queued_entries(slot.space.id, tier.id)
                .await?;
            for &agent in &population.agents {
                if queued.iter().any(|e| e.agent_id == agent) {
                    continue;
                }
                let owner = platform.store.agent(agent).await?.owner_id;
                let version = platform.store.latest_agent_version(agent).await?;
                platform.store.enter(owner, version.id, tier.id).await?;
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
                MatchEnd::Settled { .. } | MatchEnd::SettledChainPending { .. } => {
                    done.settled += 1
                }
                MatchEnd::Refunded { .. } => done.refunded += 1,
                MatchEnd::ClosedElsewhere { .. } => {}
            }
            on_match(&done);
        }
        // Matches beyond `matches` may have formed in the last round of matchmaking.
        if started >= matches && runner.live_matches() == 0 {
            break;
        }
    }
    // Entries still queued go back to their owners.
    for e in platform
        .store
        .queued_entries(slot.space.id, tier.id)
        .await?
    {
        platform.store.leave(e.id).await?;
    }
    Ok(done)
}

/// The demo's fee tiers and each agent's spending cap per Space in each.
pub fn demo_tiers() -> [(&'static str, Wei); 2] {
    [("free", Wei(0)), ("bronze", Wei(ETH / 10))]
}

/// Seeds the demo population into `spaces` of a connected platform (all when `slugs`
/// is empty), each owner topped up to one ether: what `rlfc seed-demo` does for a
/// deployment of `rlfc serve` and `rlfc worker` processes, which never seed anything.
/// Returns the population and the Spaces' slugs.
pub async fn seed_spaces(
    platform: &Platform,
    slugs: &[String],
) -> crate::platform::Result<(DemoPopulation, Vec<String>)> {
    let spaces: Vec<SpaceSlot> = if slugs.is_empty() {
        platform.spaces.clone()
    } else {
        slugs
            .iter()
            .map(|slug| platform.space(slug).cloned())
            .collect::<Result<_, _>>()?
    };
    let population = seed_demo(
        &platform.store,
        &platform.payments,
        &spaces,
        &demo_tiers(),
        Wei(ETH),
    )
    .await?;
    let slugs = spaces.iter().map(|s| s.rulebook.slug.clone()).collect();
    Ok((population, slugs))
}

/// Seconds between the demo's chain follower passes.
const FOLLOW_EVERY_SECS: u64 = 5;

/// The demo: opens the platform on `config`, seeds the demo population, starts the
/// web server with `start_web`, follows the chain (deposits and withdrawals wallets
/// make on the Arena contract directly reach the journal within a few seconds), and
/// runs matches on the models with training beside them until `stops` says so (1:
/// form no more matches and let those in play finish within
/// `arena.shutdown_grace_secs`, then refund the rest; 2: refund at once) or
/// `max_matches` have finished. Steps are never cancelled halfway, so no match is left
/// started but untracked.
pub async fn run<W>(
    config: &crate::PlatformConfig,
    max_matches: Option<usize>,
    stops: tokio::sync::watch::Receiver<u8>,
    start_web: W,
) -> crate::platform::Result<crate::runner::RunSummary>
where
    W: for<'a> FnOnce(
        &'a Platform,
        tokio::sync::watch::Receiver<bool>,
    ) -> crate::roles::StartWeb<'a>,
{
    use std::time::Duration;
    let platform = Platform::open(config).await?;
    let population = seed_demo(
        &platform.store,
        &platform.payments,
        &platform.spaces,
        &demo_tiers(),
        Wei(ETH),
    )
    .await?;
    tracing::info!(
        owners = population.owners.len(),
        agents = population.agents.len(),
        spaces = platform.spaces.len(),
        data_dir = %config.data_dir.display(),
        "demo population ready; loading the models"
    );
    let (web_stop, web_stopped) = tokio::sync::watch::channel(false);
    let server = start_web(&platform, web_stopped).await?;
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
    let models = crate::BaseModels::load(config)?;
    let mut runner = platform.model_runner(config, &models)?;
    tracing::info!("running matches (Ctrl-C stops: matches in play finish or are refunded)");
    let run = crate::runner::play_until_stopped(
        &mut runner,
        Some(platform.trainer(&models)?),
        stops,
        Duration::from_secs(config.arena.shutdown_grace_secs),
        max_matches,
        "the demo was stopped",
    )
    .await;
    follower.abort();
    web_stop.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    let run = run?;
    tracing::info!(
        finished = run.finished,
        refunded = run.refunded_at_stop.len(),
        "demo stopped"
    );
    Ok(run)
}
