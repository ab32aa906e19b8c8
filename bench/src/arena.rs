//! `rlfc bench arena`: what the arena costs on top of the models.
//!
//! 1. Orchestration alone: matches per second on the instant test policy and the
//!    rules-only judge, for the world by itself and for the whole runner (store,
//!    embedded chain, settlement) on a throwaway SQLite database.
//! 2. One 4-player Tweet Duel on the real models: wall time, and the share of it spent
//!    outside the engine's decode steps and the judge panel.
//! 3. Eight concurrent 4-player Tweet Duels: the arena's aggregate generated tokens
//!    per second against the runtime's own batched decode of the very same requests
//!    (same batch, prompts, settings and seeds) run straight through the decoder.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arena::engine::{Engine, EngineError, EngineOutput, GenRequest, InstantEngine, Ticket};
use arena::judging::{RoundJudge, RoundToJudge, RulesOnlyJudge};
use arena::types::{MatchSpec, SeatSpec};
use arena::world::MatchWorld;
use judges::ResponseVerdict;
use platform::bus::Bus;
use platform::payments::Payments;
use platform::play::{RunnerConfig, SpaceSlot, seed_spaces};
use platform::runner::MatchRunner;
use serde_json::json;
use store::{Store, Wei};

use crate::{BenchError, mib, proc_status_kib};
use platform::{BaseModels, Platform, PlatformConfig};

type Result<T, E = BenchError> = std::result::Result<T, E>;

#[derive(Default)]
struct Timing {
    engine: Duration,
    judge: Duration,
    tokens: u64,
    requests: Vec<GenRequest>,
}

struct TimedEngine {
    inner: Box<dyn Engine>,
    timing: Arc<Mutex<Timing>>,
}

impl Engine for TimedEngine {
    fn submit(&mut self, request: GenRequest) -> Result<Ticket, EngineError> {
        self.timing
            .lock()
            .expect("timing")
            .requests
            .push(request.clone());
        self.inner.submit(request)
    }
    fn step(&mut self) -> Result<Vec<EngineOutput>, EngineError> {
        let t = Instant::now();
        let out = self.inner.step()?;
        let mut timing = self.timing.lock().expect("timing");
        timing.engine += t.elapsed();
        timing.tokens += EngineOutput::finished_tokens(&out);
        Ok(out)
    }
    fn cancel(&mut self, ticket: Ticket) {
        self.inner.cancel(ticket)
    }
    fn live(&self) -> usize {
        self.inner.live()
    }
}

struct TimedJudge {
    inner: Box<dyn RoundJudge>,
    timing: Arc<Mutex<Timing>>,
}

impl RoundJudge for TimedJudge {
    fn judge(
        &self,
        rulebook: &spaces::Rulebook,
        task: &spaces::Task,
        responses: &[&str],
        hard_failed: &[bool],
    ) -> Result<Vec<ResponseVerdict>, judges::JudgeError> {
        let t = Instant::now();
        let out = self.inner.judge(rulebook, task, responses, hard_failed);
        self.timing.lock().expect("timing").judge += t.elapsed();
        out
    }
    fn judge_many(
        &self,
        rounds: &[RoundToJudge<'_>],
    ) -> Vec<Result<Vec<ResponseVerdict>, judges::JudgeError>> {
        let t = Instant::now();
        let out = self.inner.judge_many(rounds);
        self.timing.lock().expect("timing").judge += t.elapsed();
        out
    }
}

fn seats(n: usize, first_entry: i64) -> Vec<SeatSpec> {
    const PROMPTS: [&str; 4] = [
        "You answer in plain, short sentences.",
        "You are upbeat and encouraging. Give one concrete reason.",
        "You persuade with benefits the reader cares about.",
        "Use as few words as possible.",
    ];
    (0..n)
        .map(|i| SeatSpec {
            entry_id: first_entry + i as i64,
            agent_id: 1 + i as i64,
            agent_version_id: 1 + i as i64,
            system_prompt: PROMPTS[i % PROMPTS.len()].into(),
            sampling: agents::SamplingParams {
                temperature: 0.7,
                ..Default::default()
            },
            adapter_hash: None,
            base_model: String::new(),
            base_model_sha256: None,
        })
        .collect()
}

/// Plays `specs` to the end in one world; returns the wall time.
fn play(world: &mut MatchWorld, specs: Vec<MatchSpec>) -> Duration {
    let n = specs.len();
    for s in specs {
        world.add_match(s);
    }
    let t = Instant::now();
    let mut done = 0;
    while done < n {
        done += world.tick(0).len();
    }
    t.elapsed()
}

async fn orchestration(
    matches: usize,
    books: &[SpaceSlot],
    assets: &std::path::Path,
) -> Result<serde_json::Value> {
    // The world alone.
    let tweet = books
        .iter()
        .find(|s| s.rulebook.slug == "tweet-duel")
        .expect("the tweet-duel Space ships")
        .rulebook
        .clone();
    let mut world = MatchWorld::new(
        Box::new(InstantEngine::new()),
        Box::new(RulesOnlyJudge),
        Bus::new(),
    );
    let specs = (0..matches)
        .map(|i| MatchSpec {
            match_id: i as i64 + 1,
            rulebook: tweet.clone(),
            seed: i as u64,
            seats: seats(4, 10 * i as i64),
            deadline_ms: i64::MAX,
        })
        .collect();
    let world_wall = play(&mut world, specs);

    // The whole runner: store, embedded chain, fees, settlement.
    let dir = tempfile::tempdir().map_err(BenchError::io("temporary directory"))?;
    let store = Store::open_sqlite(&dir.path().join("rlfc.sqlite")).await?;
    store.migrate().await?;
    let chain = chain::AnyChain::Embedded(chain::Embedded::ephemeral(31337, 10));
    let dev = chain::dev::dev_accounts(10);
    let contracts = Arc::new(
        chain::Contracts::deploy(chain, dev[0], dev[0])
            .await
            .map_err(platform::platform::PlatformError::from)?,
    );
    let payments = Arc::new(Payments::new(store.clone(), contracts, dev[0]));
    let slots = seed_spaces(&store, &assets.join("spaces"))
        .await
        .map_err(platform::platform::PlatformError::from)?;
    platform::demo::seed_demo(
        &store,
        &payments,
        &slots,
        &[("bronze", Wei(100 * platform::demo::ETH))],
        Wei(100 * platform::demo::ETH),
    )
    .await
    .map_err(platform::platform::PlatformError::from)?;
    let mut runner = MatchRunner::new(
        store.clone(),
        payments,
        Bus::new(),
        Box::new(InstantEngine::new()),
        Box::new(RulesOnlyJudge),
        slots,
        RunnerConfig {
            max_live_matches: 64,
            ..RunnerConfig::default()
        },
    );
    let runner_matches = (matches / 4).max(20);
    let t = Instant::now();
    let mut settled = 0;
    while settled < runner_matches {
        settled += runner
            .step()
            .await
            .map_err(platform::platform::PlatformError::from)?
            .len();
    }
    let runner_wall = t.elapsed();
    Ok(json!({
        "world_only": {
            "matches": matches,
            "players": 4,
            "seconds": world_wall.as_secs_f64(),
            "matches_per_sec": matches as f64 / world_wall.as_secs_f64(),
        },
        "runner_with_store_and_chain": {
            "matches": settled,
            "spaces": 5,
            "fee_tier": "bronze",
            "seconds": runner_wall.as_secs_f64(),
            "matches_per_sec": settled as f64 / runner_wall.as_secs_f64(),
        },
    }))
}

/// Runs the benchmark on a throwaway data directory (SQLite, the embedded chain) with
/// `config`'s models and judges: `matches` for the orchestration measure, and the
/// real-model measures unless `orchestration_only`.
pub async fn run(
    matches: usize,
    orchestration_only: bool,
    config: &PlatformConfig,
) -> Result<serde_json::Value> {
    let (_dir, bench_config) = crate::scratch_config(config)?;
    let platform = Platform::open(&bench_config).await?;
    let mut figures = json!({
        "orchestration": orchestration(matches, &platform.spaces, &config.assets_dir).await?,
    });
    if !orchestration_only {
        figures["models"] = models(&platform, &bench_config)?;
    }
    figures["peak_rss_mib"] = json!(mib(proc_status_kib("VmHWM")));
    Ok(figures)
}

fn models(platform: &Platform, config: &PlatformConfig) -> Result<serde_json::Value> {
    let tweet = platform.space("tweet-duel")?.rulebook.clone();
    let timing = Arc::new(Mutex::new(Timing::default()));
    let models = BaseModels::load(config)?;
    let (engine, judge) = platform.model_engine_and_judge(&models)?;
    let mut world = MatchWorld::new(
        Box::new(TimedEngine {
            inner: engine,
            timing: timing.clone(),
        }),
        Box::new(TimedJudge {
            inner: judge,
            timing: timing.clone(),
        }),
        Bus::new(),
    );
    let spec = |i: usize| MatchSpec {
        match_id: i as i64 + 1,
        rulebook: tweet.clone(),
        seed: 1000 + i as u64,
        seats: seats(4, 10 * i as i64),
        deadline_ms: i64::MAX,
    };

    // One match.
    let one_wall = play(&mut world, vec![spec(0)]);
    let one = std::mem::take(&mut *timing.lock().expect("timing"));
    let outside = one_wall.saturating_sub(one.engine + one.judge);

    // Eight at once.
    let eight_wall = play(&mut world, (1..=8).map(spec).collect());
    let eight = std::mem::take(&mut *timing.lock().expect("timing"));
    let gen_secs = eight_wall.saturating_sub(eight.judge).as_secs_f64();

    // The ceiling: the same 32 requests straight through the runtime's decoder.
    let tokenizer = &models.tokenizer;
    let mut decoder = agents::BatchDecoder::new(&models.model, tokenizer);
    for r in &eight.requests {
        let params = r.sampling.clone().capped(r.max_new_tokens);
        let prompt = tokenizer.chat_prompt(&r.system, &r.user);
        decoder
            .add(
                agents::GenerationRequest {
                    prompt_tokens: tokenizer
                        .encode(&prompt)
                        .map_err(platform::platform::PlatformError::from)?,
                    params,
                    seed: r.seed,
                    adapter: None,
                },
                None,
            )
            .map_err(platform::platform::PlatformError::from)?;
    }
    let t = Instant::now();
    let direct = decoder
        .run_to_completion()
        .map_err(platform::platform::PlatformError::from)?;
    let direct_secs = t.elapsed().as_secs_f64();
    let direct_tokens: usize = direct.iter().map(|g| g.tokens.len()).sum();
    let arena_tps = eight.tokens as f64 / gen_secs;
    let ceiling_tps = direct_tokens as f64 / direct_secs;
    Ok(json!({
        "one_tweet_duel": {
            "players": 4,
            "wall_seconds": one_wall.as_secs_f64(),
            "engine_decode_seconds": one.engine.as_secs_f64(),
            "judge_seconds": one.judge.as_secs_f64(),
            "outside_decode_and_judges_seconds": outside.as_secs_f64(),
            "outside_share": outside.as_secs_f64() / one_wall.as_secs_f64(),
            "generated_tokens": one.tokens,
        },
        "eight_tweet_duels": {
            "sequences": eight.requests.len(),
            "wall_seconds": eight_wall.as_secs_f64(),
            "judge_seconds": eight.judge.as_secs_f64(),
            "generated_tokens": eight.tokens,
            "arena_tokens_per_sec": arena_tps,
            "arena_tokens_per_sec_including_judging": eight.tokens as f64 / eight_wall.as_secs_f64(),
            "decoder_ceiling_tokens": direct_tokens,
            "same_tokens_as_arena": direct_tokens as u64 == eight.tokens,
            "decoder_ceiling_seconds": direct_secs,
            "decoder_ceiling_tokens_per_sec": ceiling_tps,
            "arena_share_of_ceiling": arena_tps / ceiling_tps,
        },
    }))
}
