//! The learning loop end to end: matches produce preference pairs, an agent whose
//! training policy is due trains a new adapter version with DPO on the real SmolLM2
//! weights, the version is stored with its hash and parent, sigma widens, the
//! proof-of-learning record lands on chain, and verifying the record by replay passes.
//! The flow runs on the embedded chain and on a Hardhat node over JSON-RPC (started by
//! `testkit::hardhat`; under `CI=true` a missing node fails the test). On the embedded
//! chain, each kind of tampering then makes verification fail and name the cause: a
//! changed pair, reordered pairs, a changed hyperparameter, a match result outside the
//! results root, and a tampered adapter file.

mod common;

use std::sync::Arc;

use arena::engine::InstantEngine;
use common::ByLength;
use common::sqlite_sql as sql;
use platform::bus::Bus;
use platform::demo::{ETH, seed_demo};
use platform::learning::{
    Gate, StoredAdapter, Trainer, local_evidence, verify_evidence, verify_record,
};
use platform::play::RunnerConfig;
use platform::runner::MatchRunner;
use platform::runtime::AdapterLibrary;
use store::Wei;

/// What the shared flow leaves for a test to look at further.
struct Trained {
    pairs: Vec<store::TrainingPair>,
    trained: platform::learning::TrainedVersion,
    model: Arc<agents::Model>,
    tokenizer: Arc<agents::ChatTokenizer>,
    adapters: Arc<AdapterLibrary>,
    fresh: AdapterLibrary,
}

/// Matches on the test policy give an agent pairs; it trains on the real model; the
/// version, metrics, widened sigma and the record on `contracts` are checked; and
/// verifying the record by replay (with an adapter library that has cached nothing)
/// passes.
async fn matches_train_record_and_verify(
    store: &store::Store,
    contracts: Arc<chain::Contracts<chain::AnyChain>>,
    payments: Arc<platform::payments::Payments>,
    dir: &std::path::Path,
) -> Trained {
    let dev = chain::dev::dev_accounts(10);
    let spaces = common::shipped_spaces(store, &["tweet-duel"]).await;
    let demo = seed_demo(store, &payments, &spaces, &[("free", Wei(0))], Wei(ETH))
        .await
        .unwrap();
    // The first agent trains after 3 pairs, a few small steps.
    let agent = demo.agents[0];
    let v1 = store.latest_agent_version(agent).await.unwrap();
    let training = serde_json::json!({
        "train_every_pairs": 3,
        "min_margin": 0.0,
        "max_pairs": 6,
        "max_steps": 2,
        "batch_size": 2,
        "max_length": 96,
        "lora_rank": 4,
        "lora_alpha": 8.0,
        "learning_rate": 1e-3,
        "seed": 7,
        // The regression gate has its own test (`gate.rs`); this one checks the record.
        "evaluation_matches": 0,
    });
    store
        .add_agent_version(
            agent,
            v1.id,
            &store::NewAgentVersion {
                system_prompt: v1.system_prompt.clone(),
                sampling: serde_json::from_str(&v1.sampling).unwrap(),
                training: training.clone(),
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
    runner.set_seed_salt(7);
    for _ in 0..6 {
        runner.step().await.unwrap();
    }

    let gguf = models::smollm2_gguf().expect("SmolLM2 weights");
    let (model, tokenizer) = agents::Model::load(&gguf).unwrap();
    let (model, tokenizer) = (Arc::new(model), Arc::new(tokenizer));
    let adapters = Arc::new(AdapterLibrary::new(dir.join("adapters")));
    let trainer = Trainer::new(
        store.clone(),
        contracts.clone(),
        dev[0],
        platform::base_models::AgentModels::single(model.clone(), tokenizer.clone()),
        adapters.clone(),
        Gate::new(Arc::new(ByLength), &spaces),
    );
    assert!(
        trainer.due_pairs(demo.agents[1]).await.unwrap().is_none(),
        "a demo agent without training waits for 10000 pairs"
    );
    let pairs = trainer
        .due_pairs(agent)
        .await
        .unwrap()
        .expect("enough pairs for a run");
    assert!((3..=6).contains(&pairs.len()), "{}", pairs.len());
    let sigma_before: Vec<f64> = store
        .agent_ratings(agent)
        .await
        .unwrap()
        .iter()
        .map(|r| r.sigma)
        .collect();
    let trained = trainer.train(agent, pairs.clone()).await.unwrap();

    // The new version, its adapter, metrics, widened sigma and the record.
    let v3 = store.latest_agent_version(agent).await.unwrap();
    assert_eq!(v3.id, trained.version_id);
    assert_eq!(
        v3.adapter_hash.as_deref(),
        Some(trained.adapter_hash.as_str())
    );
    assert!(adapters.dir_of(&trained.adapter_hash).is_dir());
    let metrics = store
        .training_metrics(trained.training_run_id)
        .await
        .unwrap();
    // `max_steps: 2` is below one pass over the pairs not held out, and every run
    // makes at least one full pass (issue 21): every pair the record commits to is used.
    let policy = platform::learning::TrainingPolicy::from_json(&training.to_string()).unwrap();
    let dpo = policy.dpo_for(pairs.len());
    let held_out = dpo.validation_pairs(pairs.len());
    assert_eq!(trained.held_out, held_out);
    assert!(held_out >= 1);
    assert_eq!(dpo.max_steps, (pairs.len() - held_out).div_ceil(2));
    assert_eq!(metrics.len(), trained.steps);
    assert!(metrics.len() <= dpo.max_steps);
    // The held-out loss is measured at the end of each pass and stored with its step.
    assert!(metrics.iter().any(|m| m.validation_loss.is_some()));
    assert_eq!(
        trained.validation_loss,
        metrics
            .iter()
            .filter_map(|m| m.validation_loss)
            .min_by(f64::total_cmp)
    );
    let sigma_after: Vec<f64> = store
        .agent_ratings(agent)
        .await
        .unwrap()
        .iter()
        .map(|r| r.sigma)
        .collect();
    assert!(
        sigma_after.iter().zip(&sigma_before).all(|(a, b)| a >= b) && sigma_after != sigma_before,
        "{sigma_before:?} -> {sigma_after:?}"
    );
    let record = contracts.get_record(trained.record_id).await.unwrap();
    assert_eq!(record.fields.agent_id, agent as u64);
    assert!(
        trainer.due_pairs(agent).await.unwrap().is_none(),
        "the pairs it trained on are used up"
    );

    // Honest: verification re-trains and gets the same bytes.
    let fresh = AdapterLibrary::new(dir.join("adapters"));
    let verdict = verify_record(
        store,
        &contracts,
        &model,
        &tokenizer,
        &fresh,
        trained.record_id,
    )
    .await
    .unwrap();
    assert!(verdict.passed(), "{verdict:?}");
    Trained {
        pairs,
        trained,
        model,
        tokenizer,
        adapters,
        fresh,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_trains_records_on_chain_and_verification_catches_tampering() {
    let db = testkit::db::TestDb::sqlite().await;
    let store = &db.store;
    let dir = tempfile::tempdir().unwrap();
    let (contracts, payments) = common::embedded_payments(store).await;
    let Trained {
        pairs,
        trained,
        model,
        tokenizer,
        adapters,
        fresh,
    } = matches_train_record_and_verify(store, contracts.clone(), payments, dir.path()).await;

    // Each tampering fails, naming its cause (each check runs before any re-training).
    let path = db.name.clone();
    let first = pairs[0].id;
    let original_root = store
        .match_settlement(pairs[0].match_id)
        .await
        .unwrap()
        .unwrap()
        .result_root
        .unwrap();
    let run = trained.training_run_id;
    let cases: Vec<(&str, String, String, &str)> = vec![
        (
            "changed pair",
            format!("UPDATE preference_pairs SET chosen = chosen || '!' WHERE id = {first}"),
            format!("UPDATE preference_pairs SET chosen = substr(chosen, 1, length(chosen) - 1) WHERE id = {first}"),
            "pairs root",
        ),
        (
            "reordered pairs",
            format!(
                "UPDATE training_run_pairs SET position = 1000000 WHERE training_run_id = {run} AND position = 0;
                 UPDATE training_run_pairs SET position = 0 WHERE training_run_id = {run} AND position = 1;
                 UPDATE training_run_pairs SET position = 1 WHERE training_run_id = {run} AND position = 1000000"
            ),
            format!(
                "UPDATE training_run_pairs SET position = 1000000 WHERE training_run_id = {run} AND position = 0;
                 UPDATE training_run_pairs SET position = 0 WHERE training_run_id = {run} AND position = 1;
                 UPDATE training_run_pairs SET position = 1 WHERE training_run_id = {run} AND position = 1000000"
            ),
            "pairs root",
        ),
        (
            "changed hyperparameter",
            format!("UPDATE training_runs SET hyperparams = replace(hyperparams, '\"beta\":0.1', '\"beta\":0.2') WHERE id = {run}"),
            format!("UPDATE training_runs SET hyperparams = replace(hyperparams, '\"beta\":0.2', '\"beta\":0.1') WHERE id = {run}"),
            "hyperparameters hash",
        ),
        (
            // Every match's root is on chain now (free ones anchored), so the
            // contract's stored root catches a changed result first.
            "match result the Arena contract did not store",
            format!("UPDATE match_settlements SET result_root = '0x' || substr('{}', 1, 64) WHERE match_id = {}", "ab".repeat(32), pairs[0].match_id),
            format!(
                "UPDATE match_settlements SET result_root = '{original_root}' WHERE match_id = {}",
                pairs[0].match_id
            ),
            "as the Arena contract stored it",
        ),
    ];
    for (what, tamper, restore, cause) in cases {
        sql(&path, &tamper).await;
        let v = verify_record(
            store,
            &contracts,
            &model,
            &tokenizer,
            &fresh,
            trained.record_id,
        )
        .await
        .unwrap();
        let failure = v.failure.clone().unwrap_or_default();
        assert!(!v.passed() && failure.contains(cause), "{what}: {v:?}");
        if !restore.is_empty() {
            sql(&path, &restore).await;
        }
    }
    // Past the contract (as if its stored root were forged too), the record's own
    // results root still catches a changed match result.
    sql(
        &path,
        &format!(
            "UPDATE match_settlements SET result_root = '0x' || substr('{}', 1, 64) WHERE match_id = {}",
            "ab".repeat(32),
            pairs[0].match_id
        ),
    )
    .await;
    let record = contracts.get_record(trained.record_id).await.unwrap();
    let evidence = local_evidence(store, trained.record_id).await.unwrap();
    let v = verify_evidence(
        &record,
        &evidence,
        &model,
        &tokenizer,
        &fresh,
        StoredAdapter::Required,
    )
    .await
    .unwrap();
    let failure = v.failure.clone().unwrap_or_default();
    assert!(
        !v.passed() && failure.contains("in the results root"),
        "{v:?}"
    );
    sql(
        &path,
        &format!(
            "UPDATE match_settlements SET result_root = '{original_root}' WHERE match_id = {}",
            pairs[0].match_id
        ),
    )
    .await;
    // The run names its base model: a verifier with another one is refused before
    // it re-trains (here, a random model of the same shape, built in memory).
    let evidence = local_evidence(store, trained.record_id).await.unwrap();
    assert_eq!(
        evidence.hyperparams.base_model_sha256,
        model.source_sha256().unwrap(),
        "the run recorded the base model's file hash"
    );
    let other = Arc::new(agents::Model::random(model.config().clone(), 5).unwrap());
    let v = verify_evidence(
        &record,
        &evidence,
        &other,
        &tokenizer,
        &fresh,
        StoredAdapter::Required,
    )
    .await
    .unwrap();
    let failure = v.failure.clone().unwrap_or_default();
    assert!(!v.passed() && failure.starts_with("base model:"), "{v:?}");
    // A tampered adapter file (read by a library that has not cached it).
    let weights = adapters
        .dir_of(&trained.adapter_hash)
        .join("adapter_model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&weights, &bytes).unwrap();
    let untouched = AdapterLibrary::new(dir.path().join("adapters"));
    let v = verify_record(
        store,
        &contracts,
        &model,
        &tokenizer,
        &untouched,
        trained.record_id,
    )
    .await
    .unwrap();
    assert!(
        v.failure
            .as_deref()
            .unwrap_or_default()
            .contains("stored adapter"),
        "{v:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_hardhat_node_an_agent_trains_records_and_verifies() {
    let started = tokio::task::spawn_blocking(testkit::hardhat::HardhatNode::start)
        .await
        .unwrap();
    let node = match started {
        Ok(node) => node,
        Err(reason) => {
            testkit::unavailable::<()>(&reason);
            return;
        }
    };
    let db = testkit::db::TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let rpc = node.rpc().await;
    let (contracts, payments) = common::payments_on(&db.store, chain::AnyChain::Rpc(rpc)).await;
    let done =
        matches_train_record_and_verify(&db.store, contracts.clone(), payments, dir.path()).await;
    // The record is the node's: its block is one Hardhat mined, and the mirror agrees.
    let record = contracts.get_record(done.trained.record_id).await.unwrap();
    let mirrored = db
        .store
        .pol_record_by_record_id(done.trained.record_id as i64)
        .await
        .unwrap()
        .expect("the record is mirrored in the database");
    assert_eq!(record.block_number as i64, mirrored.block_number);
    assert_eq!(
        format!("{:x}", record.fields.new_adapter_hash),
        done.trained.adapter_hash
    );
    drop(node);
}
