//! An agent's base model follows it from the match to its training run (issue 21
//! item 5): its seats resolve the model by name and each entry records the model's
//! hash with the result; the trainer trains the agent on its own model, so the new
//! adapter fits that model's shapes and no other; an agent whose model is not served
//! is refused by name. On two tiny random-weight models and the test policy.

mod common;

use std::sync::Arc;

use arena::engine::InstantEngine;
use common::{ByLength, sqlite_sql as sql, tiny_model as loaded};
use platform::base_models::{AgentModels, DEFAULT_BASE_MODEL};
use platform::bus::Bus;
use platform::demo::{ETH, seed_demo};
use platform::learning::{Gate, Trainer};
use platform::play::RunnerConfig;
use platform::runner::MatchRunner;
use platform::runtime::AdapterLibrary;
use store::Wei;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_plays_and_trains_on_its_own_base_model() {
    let db = testkit::db::TestDb::sqlite().await;
    let store = &db.store;
    let dir = tempfile::tempdir().unwrap();
    let (contracts, payments) = common::embedded_payments(store).await;
    let dev = chain::dev::dev_accounts(10);
    let spaces = common::shipped_spaces(store, &["tweet-duel"]).await;
    let demo = seed_demo(store, &payments, &spaces, &[("free", Wei(0))], Wei(ETH))
        .await
        .unwrap();
    // The default (under SmolLM2's name, which the demo agents chose) and "beta", a
    // model of another shape.
    let models = AgentModels::new(vec![
        loaded(DEFAULT_BASE_MODEL, 'a', 2, 1),
        loaded("beta", 'b', 3, 2),
    ]);
    let (learner, stranger) = (demo.agents[0], demo.agents[1]);
    sql(
        &db.name,
        &format!("UPDATE agents SET base_model = 'beta' WHERE id = {learner}"),
    )
    .await;
    let v1 = store.latest_agent_version(learner).await.unwrap();
    store
        .add_agent_version(
            learner,
            v1.id,
            &store::NewAgentVersion {
                system_prompt: v1.system_prompt.clone(),
                sampling: serde_json::from_str(&v1.sampling).unwrap(),
                training: serde_json::json!({
                    "train_every_pairs": 3,
                    "min_margin": 0.0,
                    "max_pairs": 6,
                    "max_steps": 2,
                    "batch_size": 2,
                    "max_length": 64,
                    "lora_rank": 4,
                    "lora_alpha": 8.0,
                    "seed": 3,
                    "evaluation_matches": 0,
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
    )
    .with_base_models(Arc::new(models.menu().clone()));
    runner.set_seed_salt(5);
    for _ in 0..6 {
        runner.step().await.unwrap();
    }
    // Every seat that played recorded its base model with the result.
    let mut seen_beta = false;
    for m in store
        .matches_with_status(store::MatchStatus::Settled)
        .await
        .unwrap()
    {
        for e in store.match_entries(m.id).await.unwrap() {
            let want = if e.agent_id == learner { 'b' } else { 'a' };
            seen_beta |= e.agent_id == learner;
            assert_eq!(
                e.base_model_sha256,
                Some(want.to_string().repeat(64)),
                "entry {} of agent {}",
                e.id,
                e.agent_id
            );
        }
    }
    assert!(seen_beta, "the learner played");

    let adapters = Arc::new(AdapterLibrary::new(dir.path().join("adapters")));
    let trainer = Trainer::new(
        store.clone(),
        contracts.clone(),
        dev[0],
        models.clone(),
        adapters.clone(),
        Gate::new(Arc::new(ByLength), &spaces),
    );
    let pairs = trainer
        .due_pairs(learner)
        .await
        .unwrap()
        .expect("enough pairs for a run");
    let trained = trainer.train(learner, pairs.clone()).await.unwrap();
    let beta = models.get("beta").unwrap();
    let default = models.get(DEFAULT_BASE_MODEL).unwrap();
    assert!(
        adapters
            .get(&trained.adapter_hash, beta.model.config())
            .is_ok(),
        "the adapter was trained on the learner's model"
    );
    // A library that has loaded nothing yet (a library caches what it loaded by hash).
    let fresh = AdapterLibrary::new(dir.path().join("adapters"));
    assert!(
        fresh
            .get(&trained.adapter_hash, default.model.config())
            .is_err(),
        "and fits no other"
    );

    // An agent whose base model this trainer does not serve cannot train here.
    sql(
        &db.name,
        &format!("UPDATE agents SET base_model = 'gamma' WHERE id = {stranger}"),
    )
    .await;
    let e = trainer
        .train(stranger, pairs)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("agent {stranger}")) && e.contains("\"gamma\" is not served"),
        "{e}"
    );
}
