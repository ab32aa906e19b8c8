//! Real matches on the real models: SmolLM2-135M-Instruct plays through the runtime
//! engine and the full judge panel (LLM, embedding and rules) scores, in two Spaces of
//! different shapes (Tweet Duel: 4 players, one round of persuasive writing; Math
//! Sprint: 4 players, three rounds of exact answers). Fees are locked on the embedded chain, matches settle with exact payouts,
//! pairs are stored, ratings move, and a replay reproduces the result hash.

mod common;

use std::sync::Arc;

use chain::MatchStatus;
use platform::bus::Bus;
use platform::demo::{ETH, seed_demo};
use platform::play::{MatchEnd, RunnerConfig, SpaceSlot};
use platform::runner::MatchRunner;
use platform::runtime::PanelJudge;
use platform::runtime::{AdapterLibrary, RuntimeEngine};
use store::Wei;

fn engine_and_judge(
    spaces: &[SpaceSlot],
    adapters: Arc<AdapterLibrary>,
) -> (Box<RuntimeEngine>, Box<PanelJudge>) {
    let gguf = models::smollm2_gguf().expect("SmolLM2 weights");
    let (model, tokenizer) = agents::Model::load(&gguf).unwrap();
    let engine = RuntimeEngine::new(Arc::new(model), Arc::new(tokenizer), adapters);
    let loaded = judges::LoadedJudges::new(
        Some(Arc::new(judges::LlmJudge::load(&gguf).unwrap())),
        Some(Arc::new(
            judges::EmbeddingJudge::load(
                &models::minilm_dir().expect("MiniLM weights"),
                &candle_core::Device::Cpu,
            )
            .unwrap(),
        )),
    )
    .unwrap();
    let books: Vec<_> = spaces.iter().map(|s| s.rulebook.clone()).collect();
    (
        Box::new(engine),
        Box::new(PanelJudge::new(&books, &loaded).unwrap()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_matches_settle_on_chain_and_replay_to_the_same_hash() {
    let db = testkit::db::TestDb::sqlite().await;
    let store = &db.store;
    let dir = tempfile::tempdir().unwrap();
    let dev = chain::dev::dev_accounts(10);
    let (contracts, payments) = common::embedded_payments(store).await;
    let spaces = common::shipped_spaces(store, &["tweet-duel", "math-sprint"]).await;
    assert_eq!(spaces.len(), 2);
    let demo = seed_demo(store, &payments, &[], &[], Wei(ETH))
        .await
        .unwrap();
    // One match per Space: the first `players` agents enter the bronze tier.
    for slot in &spaces {
        let tier = slot.tiers.iter().find(|t| t.name == "bronze").unwrap();
        for &agent in &demo.agents[..slot.rulebook.players] {
            let owner = store.agent(agent).await.unwrap().owner_id;
            let version = store.latest_agent_version(agent).await.unwrap();
            store.enter(owner, version.id, tier.id).await.unwrap();
        }
    }
    let adapters = Arc::new(AdapterLibrary::new(dir.path().join("adapters")));
    let (engine, judge) = engine_and_judge(&spaces, adapters.clone());
    let bus = Bus::new();
    let mut tokens = bus.subscribe();
    let mut runner = MatchRunner::new(
        store.clone(),
        payments.clone(),
        bus.clone(),
        engine,
        judge,
        spaces.clone(),
        RunnerConfig::default(),
    );
    runner.set_seed_salt(20261122);
    let started = runner.matchmake().await.unwrap();
    assert_eq!(started.len(), 2, "one match per Space");
    let mut reports = Vec::new();
    while runner.live_matches() > 0 {
        let outcomes = tokio::task::block_in_place(|| runner.tick());
        reports.extend(runner.finish(outcomes).await.unwrap());
    }
    assert_eq!(reports.len(), 2);
    let mut deltas = 0;
    while let Ok(e) = tokens.try_recv() {
        if matches!(e.kind, arena::events::EventKind::TokenDelta { .. }) {
            deltas += 1;
        }
    }
    assert!(deltas > 20, "token deltas were streamed ({deltas})");
    let mut pairs = 0;
    let mut mu_moved = false;
    for report in &reports {
        let MatchEnd::Settled {
            seats,
            pairs: p,
            result_root,
            ..
        } = &report.end
        else {
            panic!("{report:?}");
        };
        pairs += p;
        let s = store
            .match_settlement(report.match_id)
            .await
            .unwrap()
            .unwrap();
        let paid: u128 = seats
            .iter()
            .map(|s| s.payout_wei.parse::<u128>().unwrap())
            .sum();
        assert_eq!(paid + s.treasury_wei.0, s.pot_wei.0, "exact payouts");
        assert!(s.pot_wei.0 > 0);
        let escrow = contracts.escrow(report.match_id as u64).await.unwrap();
        assert_eq!(escrow.status, MatchStatus::Settled);
        assert_eq!(
            format!(
                "{}",
                contracts.result_root(report.match_id as u64).await.unwrap()
            ),
            *result_root
        );
        // Every answer came from the model and every judge scored it.
        for round in store.rounds(report.match_id).await.unwrap() {
            for r in store.responses(round.id).await.unwrap() {
                assert!(
                    r.prompt.contains("<|im_start|>"),
                    "the exact chat prompt is kept"
                );
                assert!(r.tokens > 0);
                let judges: Vec<String> = store
                    .judge_scores(r.id)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|s| s.judge)
                    .collect();
                assert!(
                    judges.len() >= 2,
                    "every judge of the panel scored: {judges:?}"
                );
            }
        }
        let board = store
            .leaderboard(store.get_match(report.match_id).await.unwrap().space_id)
            .await
            .unwrap();
        assert!(board.iter().all(|r| r.matches_played == 1));
        // A tie leaves mu alone but still shrinks sigma.
        assert!(board.iter().all(|r| r.sigma < 25.0 / 3.0), "{board:?}");
        mu_moved |= board.iter().any(|r| (r.mu - 25.0).abs() > 1e-6);
    }
    assert!(mu_moved, "ratings moved in at least one Space");
    assert!(pairs > 0, "preference pairs were cut");
    // Each owner's contract balance equals the database's spendable balance.
    for wallet in &dev[1..5] {
        let user = store
            .user_by_wallet(&format!("{wallet:#x}"))
            .await
            .unwrap()
            .unwrap();
        let b = store.balance(user.id).await.unwrap();
        assert_eq!(b.locked_wei, Wei(0));
        assert_eq!(
            contracts.balance_of(*wallet).await.unwrap(),
            b.available_wei.0
        );
    }
    assert_eq!(
        contracts.balance_of(dev[9]).await.unwrap(),
        store.treasury_total().await.unwrap().0
    );

    // A replay on fresh model instances reproduces the result hash.
    let (engine, judge) = engine_and_judge(&spaces, adapters);
    let math = reports
        .iter()
        .find(|r| r.space == "math-sprint")
        .unwrap()
        .match_id;
    let replay =
        platform::replay::replay_match(store, &spaces, engine, judge, &Default::default(), math)
            .await
            .unwrap();
    assert_eq!(replay.dispute, None, "{replay:?}");
    assert_eq!(replay.replay_hash, replay.stored_hash);
}

fn config_listing(
    data_dir: &std::path::Path,
    name: &str,
    file: platform::base_models::BaseModelFile,
) -> platform::PlatformConfig {
    platform::PlatformConfig {
        data_dir: data_dir.to_path_buf(),
        assets_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../assets").into(),
        database: platform::config::DatabaseConfig { url: String::new() },
        models: platform::config::ModelsConfig {
            dir: models::default_models_dir(),
            python: "python3".into(),
            pip_args: Vec::new(),
            base_models: std::collections::BTreeMap::from([(name.to_string(), file)]),
        },
        chain: Default::default(),
        arena: Default::default(),
        redis: Default::default(),
        judges: Default::default(),
    }
}

/// A GGUF file listed under `[models.base_models]` is served beside SmolLM2 once its
/// hash checks out, and refused by its key when the hash differs.
#[test]
fn a_listed_gguf_file_is_served_once_its_hash_checks_out() {
    let gguf = models::smollm2_gguf().expect("SmolLM2 weights");
    let dir = tempfile::tempdir().unwrap();
    // Another GGUF file: the same weights copied under another name.
    let copy = dir.path().join("copy.gguf");
    std::fs::copy(&gguf, &copy).unwrap();
    let sha = models::SMOLLM2.files[0].sha256.clone();
    let listed = |sha256: &str| platform::base_models::BaseModelFile {
        path: copy.clone(),
        sha256: sha256.to_string(),
        description: "a copy".into(),
    };
    let models =
        platform::BaseModels::load(&config_listing(dir.path(), "copy", listed(&sha))).unwrap();
    let names: Vec<&str> = models.agents.menu().names();
    assert_eq!(names, vec!["smollm2-135m-instruct", "copy"]);
    let served = models.agents.get("copy").unwrap();
    assert_eq!(served.model.source_sha256(), Some(sha.as_str()));
    assert_eq!(served.choice.description, "a copy");

    let wrong = "0".repeat(64);
    let e = platform::BaseModels::load(&config_listing(dir.path(), "copy", listed(&wrong)))
        .err()
        .expect("a file whose hash differs is refused")
        .to_string();
    assert!(
        e.starts_with("models.base_models.copy.sha256:") && e.contains(&sha) && e.contains(&wrong),
        "{e}"
    );
}
