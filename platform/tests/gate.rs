//! The regression gate (issue 21, item 9) on the real SmolLM2 weights: before a new
//! adapter is played it meets its parent on held-out tasks, judged by the Space's
//! panel (here a panel that prefers full answers) and ranked as a match ranks a round.
//!
//! - An adapter that changes nothing draws every match and is played.
//! - A run whose pairs taught the agent to answer in one word loses to its parent
//!   significantly: its version is kept in the lineage with the reason, its record is
//!   on chain, the agent plays on from a version that restores the parent's adapter,
//!   and its ratings keep their sigma. (The studio's page and API showing why are
//!   tested in `web::pages`.)

mod common;

use std::sync::Arc;

use agents::{LoraAdapter, LoraConfig};
use arena::engine::InstantEngine;
use common::ByLength;
use platform::bus::Bus;
use platform::demo::{ETH, seed_demo};
use platform::learning::{Gate, GatePlan, Trainer, evaluate_against_parent};
use platform::play::RunnerConfig;
use platform::runner::MatchRunner;
use platform::runtime::AdapterLibrary;
use store::Wei;

fn smollm2() -> (Arc<agents::Model>, Arc<agents::ChatTokenizer>) {
    let gguf = models::smollm2_gguf().expect("SmolLM2 weights");
    let (model, tokenizer) = agents::Model::load(&gguf).unwrap();
    (Arc::new(model), Arc::new(tokenizer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_that_changes_nothing_draws_and_is_played() {
    let db = testkit::db::TestDb::sqlite().await;
    let spaces = common::shipped_spaces(&db.store, &["tweet-duel"]).await;
    let (model, tokenizer) = smollm2();
    let dir = tempfile::tempdir().unwrap();
    let adapters = Arc::new(AdapterLibrary::new(dir.path().join("adapters")));
    // A fresh LoRA adapter is a no-op (B is zero), so both sides answer alike.
    let noop = LoraAdapter::new(model.config(), LoraConfig::all_targets(4, 8.0), 1).unwrap();
    let hash = adapters.save(&noop, model.config(), None).unwrap();
    let plan = GatePlan {
        books: vec![spaces[0].rulebook.clone()],
        matches: 4,
        system_prompt: "You write short, lively posts.".into(),
        sampling: agents::SamplingParams::default(),
        parent: None,
        candidate: hash,
        trained_prompts: Vec::new(),
        seed: 11,
        batch: 8,
    };
    let e = evaluate_against_parent(&model, &tokenizer, &adapters, &ByLength, &plan).unwrap();
    assert_eq!(e.matches, 4);
    assert_eq!(e.spaces, vec!["tweet-duel".to_string()]);
    assert_eq!((e.result.wins, e.result.draws, e.result.losses), (0, 4, 0));
    assert!(!e.held_back, "{e:?}");
    assert!(e.summary().contains("no decisive match"), "{}", e.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_loses_to_its_parent_is_held_back() {
    let db = testkit::db::TestDb::sqlite().await;
    let store = &db.store;
    let dir = tempfile::tempdir().unwrap();
    let (contracts, payments) = common::embedded_payments(store).await;
    let dev = chain::dev::dev_accounts(10);
    let spaces = common::shipped_spaces(store, &["tweet-duel"]).await;
    let demo = seed_demo(store, &payments, &spaces, &[("free", Wei(0))], Wei(ETH))
        .await
        .unwrap();
    let agent = demo.agents[0];
    let v1 = store.latest_agent_version(agent).await.unwrap();
    store
        .add_agent_version(
            agent,
            v1.id,
            &store::NewAgentVersion {
                system_prompt: v1.system_prompt.clone(),
                sampling: serde_json::from_str(&v1.sampling).unwrap(),
                training: serde_json::json!({
                    "train_every_pairs": 3,
                    "min_margin": 0.0,
                    "max_pairs": 6,
                    "epochs": 3,
                    "validation_share": 0.0,
                    "batch_size": 2,
                    "max_length": 64,
                    "lora_rank": 8,
                    "lora_alpha": 16.0,
                    "learning_rate": 0.01,
                    // Plain DPO, so that the run memorises its one-word pairs (the
                    // product's label smoothing would bound how far it moves).
                    "label_smoothing": 0.0,
                    "seed": 5,
                    "evaluation_matches": 6,
                }),
                adapter_hash: None,
            },
        )
        .await
        .unwrap();
    let mut runner = MatchRunner::new(
        store.clone(),
        payments.clone(),
        Bus::new(),
        Box::new(InstantEngine::new()),
        Box::new(ByLength),
        spaces.clone(),
        RunnerConfig::default(),
    );
    runner.set_seed_salt(3);
    for _ in 0..6 {
        runner.step().await.unwrap();
    }
    let (model, tokenizer) = smollm2();
    let adapters = Arc::new(AdapterLibrary::new(dir.path().join("adapters")));
    let trainer = Trainer::new(
        store.clone(),
        contracts.clone(),
        dev[0],
        platform::base_models::AgentModels::single(model, tokenizer),
        adapters,
        Gate::new(Arc::new(ByLength), &spaces),
    );
    let due = trainer
        .due_pairs(agent)
        .await
        .unwrap()
        .expect("enough pairs for a run");
    // Pairs that teach a one-word answer over the full one.
    let pairs: Vec<store::TrainingPair> = due
        .into_iter()
        .map(|p| store::TrainingPair {
            rejected: p.chosen.clone(),
            rejected_finish: p.chosen_finish.clone(),
            chosen: "Fine.".into(),
            chosen_finish: "stop".into(),
            ..p
        })
        .collect();
    let parent = store.latest_agent_version(agent).await.unwrap();
    let sigma_before: Vec<f64> = store
        .agent_ratings(agent)
        .await
        .unwrap()
        .iter()
        .map(|r| r.sigma)
        .collect();
    let trained = trainer.train(agent, pairs).await.unwrap();

    let e = trained.evaluation.clone().expect("the gate ran");
    assert!(e.held_back, "{e:?}");
    assert_eq!(e.matches, 6);
    assert!(e.result.losses > e.result.wins, "{e:?}");
    assert!(e.result.win_rate.ci95[1] < 0.5, "{e:?}");
    // The held-back version is in the lineage with its adapter and the reason.
    let held = store.agent_version(trained.version_id).await.unwrap();
    assert_eq!(
        held.adapter_hash.as_deref(),
        Some(trained.adapter_hash.as_str())
    );
    let reason = held.held_back.clone().expect("a reason");
    assert_eq!(reason, e.summary());
    assert!(reason.contains("held back"), "{reason}");
    // The agent plays on from the next version, with the parent's adapter.
    let playing = store.latest_agent_version(agent).await.unwrap();
    assert_eq!(playing.id, trained.playing_version_id);
    assert_ne!(playing.id, held.id);
    assert_eq!(playing.parent_version_id, Some(held.id));
    assert_eq!(playing.adapter_hash, parent.adapter_hash);
    assert_eq!(playing.system_prompt, parent.system_prompt);
    assert_eq!(playing.held_back, None);
    // The run keeps the gate's findings; its record is on chain; sigma is unchanged.
    let run = store.training_run(trained.training_run_id).await.unwrap();
    assert_eq!(run.new_version_id, Some(held.id));
    let stored: platform::learning::Evaluation =
        serde_json::from_str(run.evaluation.as_deref().expect("stored")).unwrap();
    assert_eq!(stored, e);
    let record = contracts.get_record(trained.record_id).await.unwrap();
    assert_eq!(record.fields.agent_id, agent as u64);
    let sigma_after: Vec<f64> = store
        .agent_ratings(agent)
        .await
        .unwrap()
        .iter()
        .map(|r| r.sigma)
        .collect();
    assert_eq!(sigma_after, sigma_before);
}
