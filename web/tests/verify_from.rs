//! `rlfc verify-pol --from URL` end to end: an agent trains on the real SmolLM2 weights
//! from a settled match's pairs and its record lands on the embedded chain; the app is
//! served over TCP; the verifier gathers the record's evidence from the served export
//! API alone (no database of its own, no adapters of its own) and the record verifies
//! by replay. The evidence from the API equals what the local database gives.

mod common;

use std::sync::Arc;

use platform::learning::{Gate, StoredAdapter, Trainer, local_evidence, verify_evidence};
use platform::runtime::AdapterLibrary;
use testkit::payments::LedgerPayments;
use web::AppState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_verifies_from_the_served_export_api() {
    let db = testkit::db::TestDb::sqlite().await;
    let store = &db.store;
    let played = testkit::fixtures::played_match(store, 4).await;
    let agent = played.agent_ids[0];
    let v1 = store.latest_agent_version(agent).await.unwrap();
    store
        .add_agent_version(
            agent,
            v1.id,
            &store::NewAgentVersion {
                system_prompt: v1.system_prompt.clone(),
                sampling: serde_json::json!({}),
                training: serde_json::json!({
                    "max_steps": 2,
                    "batch_size": 2,
                    "max_length": 64,
                    "lora_rank": 4,
                    "lora_alpha": 8.0,
                    "learning_rate": 1e-3,
                    "seed": 3,
                    "evaluation_matches": 0,
                }),
                adapter_hash: None,
            },
        )
        .await
        .unwrap();
    let pairs = store.training_pairs_for_agent(agent, 0, 100).await.unwrap();
    assert!(pairs.len() >= 2, "{}", pairs.len());

    let dev = chain::dev::dev_accounts(10);
    let dir = tempfile::tempdir().unwrap();
    // The embedded chain in a data directory (operator: dev account 0), so that
    // `verify_from` below can open it again from the configuration.
    let data_dir = dir.path().join("data");
    let chain_config = chain::ChainConfig::default();
    let contracts = Arc::new(
        chain::open_contracts(&chain_config, &data_dir)
            .await
            .unwrap(),
    );
    assert_eq!(contracts.operator().await.unwrap(), dev[0]);
    let gguf = models::smollm2_gguf().expect("SmolLM2 weights");
    let (model, tokenizer) = agents::Model::load(&gguf).unwrap();
    let (model, tokenizer) = (Arc::new(model), Arc::new(tokenizer));
    // The platform's library publishes what it trains to the database.
    let adapters = Arc::new(AdapterLibrary::shared(
        dir.path().join("platform-adapters"),
        store.clone(),
    ));
    let trainer = Trainer::new(
        store.clone(),
        contracts.clone(),
        dev[0],
        platform::base_models::AgentModels::single(model.clone(), tokenizer.clone()),
        adapters,
        // The fixture's Space has no rulebook here; the policy skips the gate.
        Gate::new(Arc::new(arena::judging::RulesOnlyJudge), &[]),
    );
    let trained = trainer.train(agent, pairs).await.unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = AppState::new(
        store.clone(),
        platform::bus::Bus::new(),
        common::rulebooks(),
        Arc::new(LedgerPayments::new(store.clone())),
        common::config(),
    );
    let server = tokio::spawn(web::serve(listener, state, std::future::pending()));

    let record = contracts.get_record(trained.record_id).await.unwrap();
    // Meta-prompts are private by default: an outsider checks the roots and the
    // hyperparameters, but cannot retrain without the exact prompts.
    let private = web::evidence::fetch_evidence(&url, &record).await.unwrap();
    assert!(private.pairs.iter().all(|p| p.prompt.is_empty()));
    let elsewhere = AdapterLibrary::new(dir.path().join("verifier-adapters"));
    let verdict = verify_evidence(
        &record,
        &private,
        &model,
        &tokenizer,
        &elsewhere,
        StoredAdapter::IfPresent,
    )
    .await
    .unwrap();
    assert!(!verdict.passed(), "{verdict:?}");
    assert!(
        verdict
            .checks
            .iter()
            .any(|(c, ok)| c == "pairs root" && *ok),
        "{verdict:?}"
    );
    assert!(
        verdict.failure.as_deref().unwrap_or("").contains("private"),
        "{verdict:?}"
    );
    // Once the owners opt their agents' prompts in, anyone can retrain.
    for &a in &played.agent_ids {
        store.set_public_prompt(a, true).await.unwrap();
    }
    let remote = web::evidence::fetch_evidence(&url, &record).await.unwrap();
    let local = local_evidence(store, trained.record_id).await.unwrap();
    assert_eq!(
        remote, local,
        "the export API gives what the database holds"
    );

    // A verifier elsewhere: its own, empty adapter library.
    let verdict = verify_evidence(
        &record,
        &remote,
        &model,
        &tokenizer,
        &elsewhere,
        StoredAdapter::IfPresent,
    )
    .await
    .unwrap();
    assert!(verdict.passed(), "{verdict:?}");
    assert!(
        verdict
            .checks
            .iter()
            .any(|(c, ok)| c == "retrained adapter hash" && *ok),
        "{verdict:?}"
    );

    // The new adapter is served by hash: a verifier fetches it and then holds the
    // adapter the record names, checked against its hash.
    let new_hash = format!("{:x}", record.fields.new_adapter_hash);
    assert!(!elsewhere.dir_of(&new_hash).exists());
    assert!(
        web::evidence::fetch_adapter(&url, &new_hash, &elsewhere)
            .await
            .unwrap()
    );
    let verdict = verify_evidence(
        &record,
        &remote,
        &model,
        &tokenizer,
        &elsewhere,
        StoredAdapter::Required,
    )
    .await
    .unwrap();
    assert!(verdict.passed(), "{verdict:?}");
    assert!(
        verdict
            .checks
            .iter()
            .any(|(c, ok)| c == "stored adapter" && *ok),
        "{verdict:?}"
    );
    // An adapter the server does not hold, and a malformed hash.
    assert!(
        !web::evidence::fetch_adapter(&url, &"ab".repeat(32), &elsewhere)
            .await
            .unwrap()
    );
    let bad = reqwest::get(format!(
        "{url}/api/v1/adapters/..%2Fetc/adapter_config.json"
    ))
    .await
    .unwrap();
    assert_eq!(bad.status(), 422, "an invalid field, named in the error");
    // Another host on the same database fetches it from there, not from the trainer's disk.
    let other_host = AdapterLibrary::shared(dir.path().join("other-host"), store.clone());
    assert!(other_host.fetch(&new_hash).await.unwrap());
    other_host.get(&new_hash, model.config()).unwrap();

    // Evidence served in another order no longer matches the record.
    let mut reordered = remote.clone();
    reordered.pairs.swap(0, 1);
    let verdict = verify_evidence(
        &record,
        &reordered,
        &model,
        &tokenizer,
        &elsewhere,
        StoredAdapter::IfPresent,
    )
    .await
    .unwrap();
    assert!(
        verdict
            .failure
            .as_deref()
            .unwrap_or("")
            .contains("pairs root"),
        "{verdict:?}"
    );

    // A record the server does not know, and a URL that is not one, are named.
    let mut unknown = record;
    unknown.id += 7;
    let err = web::evidence::fetch_evidence(&url, &unknown)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("lists no record"), "{err}");
    let err = web::evidence::fetch_evidence("localhost:1", &record)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("--from"), "{err}");

    // `rlfc verify-pol --from URL` as one call: the record read from the chain the
    // configuration names, the chain checks, the new adapter fetched from the server
    // into the data directory's empty library, and the retraining.
    drop(trainer);
    drop(contracts);
    let config = platform::PlatformConfig {
        data_dir: data_dir.clone(),
        assets_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../assets").into(),
        database: platform::config::DatabaseConfig { url: String::new() },
        models: platform::config::ModelsConfig {
            dir: models::default_models_dir(),
            python: "python3".into(),
            pip_args: Vec::new(),
            base_models: Default::default(),
        },
        chain: chain_config,
        arena: Default::default(),
        redis: Default::default(),
        judges: Default::default(),
    };
    let mut lines = Vec::new();
    let verdict = web::evidence::verify_from(&config, trained.record_id, &url, |l| lines.push(l))
        .await
        .unwrap();
    assert!(verdict.passed(), "{verdict:?}");
    for check in ["recorded by a registered trainer", "retrained adapter hash"] {
        assert!(
            verdict.checks.iter().any(|(c, ok)| c == check && *ok),
            "{check}: {verdict:?}"
        );
    }
    assert_eq!(
        lines,
        [
            format!(
                "evidence from {url}: {} pairs of {} matches",
                remote.pairs.len(),
                remote.match_results.len()
            ),
            format!("adapter {new_hash}: fetched from {url}"),
        ]
    );
    assert!(
        AdapterLibrary::new(data_dir.join("adapters"))
            .dir_of(&new_hash)
            .is_dir()
    );
    // A record the chain does not hold is an error, not a verdict.
    let err = web::evidence::verify_from(&config, trained.record_id + 7, &url, |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, web::evidence::VerifyFromError::Chain(_)),
        "{err}"
    );
    server.abort();
}
