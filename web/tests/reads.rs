//! The public reads: Spaces and leaderboards, matches and transcripts, training runs
//! and proof-of-learning records.

mod common;

use axum::http::StatusCode;
use common::{TestApp, Who};
use serde_json::json;

async fn spaces_and_leaderboards(app: TestApp) {
    web::sync_spaces(app.store(), &common::rulebooks())
        .await
        .unwrap();
    let list = app.get("/api/v1/spaces", &Who::anon()).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.json.as_array().unwrap().len() >= 5);
    let played = testkit::fixtures::played_match(app.store(), 3).await;
    let s = app.get("/api/v1/spaces/tweet-duel", &Who::anon()).await;
    assert_eq!(s.json["slug"], "tweet-duel");
    assert!(
        s.json["players"].as_u64().unwrap() >= 2,
        "rulebook fields come from the loaded book"
    );
    assert!(!s.json["fee_tiers"].as_array().unwrap().is_empty());
    assert_eq!(
        app.get("/api/v1/spaces/nope", &Who::anon()).await.status,
        StatusCode::NOT_FOUND
    );

    let lb = app
        .get("/api/v1/spaces/tweet-duel/leaderboard", &Who::anon())
        .await;
    let rows = lb.json.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["agent_id"], played.agent_ids[0]);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["rank"], i + 1);
        let (best, worst) = (
            row["rank_best"].as_u64().unwrap(),
            row["rank_worst"].as_u64().unwrap(),
        );
        assert!(best <= (i + 1) as u64 && (i + 1) as u64 <= worst, "{row}");
        let c = row["mu"].as_f64().unwrap() - 3.0 * row["sigma"].as_f64().unwrap();
        assert!((row["conservative"].as_f64().unwrap() - c).abs() < 1e-9);
    }
    // sigma 8 against mu gaps of 2: every interval overlaps, so any rank is possible.
    assert_eq!(
        (
            rows[0]["rank_best"].as_u64(),
            rows[0]["rank_worst"].as_u64()
        ),
        (Some(1), Some(3))
    );
}
both!(spaces_and_leaderboards);

async fn matches_list_detail_and_transcript(app: TestApp) {
    let first = testkit::fixtures::played_match(app.store(), 2).await;
    let second = testkit::fixtures::played_match(app.store(), 3).await;
    let all = app.get("/api/v1/matches", &Who::anon()).await;
    let ids: Vec<i64> = all
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [second.match_id, first.match_id]);
    let page = app
        .get(
            &format!("/api/v1/matches?before={}&limit=1", second.match_id),
            &Who::anon(),
        )
        .await;
    assert_eq!(page.json[0]["id"], first.match_id);
    let settled = app
        .get(
            "/api/v1/matches?space=tweet-duel&status=settled",
            &Who::anon(),
        )
        .await;
    assert_eq!(settled.json.as_array().unwrap().len(), 2);
    assert!(
        app.get("/api/v1/matches?status=running", &Who::anon())
            .await
            .json
            .as_array()
            .unwrap()
            .is_empty()
    );
    let bad = app.get("/api/v1/matches?status=bogus", &Who::anon()).await;
    assert_eq!(
        (bad.status, bad.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "status")
    );
    let bad = app.get("/api/v1/matches?limit=0", &Who::anon()).await;
    assert_eq!(
        (bad.status, bad.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "limit")
    );
    let bad = app.get("/api/v1/matches?before=x", &Who::anon()).await;
    assert_eq!(
        (bad.status, bad.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "query")
    );

    let d = app
        .get(
            &format!("/api/v1/matches/{}", second.match_id),
            &Who::anon(),
        )
        .await;
    assert_eq!(d.status, StatusCode::OK, "{:?}", d.json);
    assert_eq!(d.json["match"]["status"], "settled");
    assert_eq!(d.json["space"], "tweet-duel");
    assert_eq!(d.json["pot_wei"], "300");
    // The fixture settles with result root `0xroot`.
    assert_eq!(d.json["result_root"], "0xroot");
    let seats = d.json["seats"].as_array().unwrap();
    assert_eq!(seats.len(), 3);
    assert_eq!(seats[0]["place"], 1);
    assert_eq!(seats[0]["payout_wei"], "290");
    assert!(seats[0]["mu_after"].is_f64());
    // The same wallets played the first match, but with other agents: no earlier rating.
    assert!(seats[0]["mu_before"].is_null());
    // Each seat shows the base model it played on, which the result hash commits to.
    assert_eq!(
        seats[2]["base_model_sha256"],
        testkit::fixtures::FIXTURE_BASE_MODEL_SHA256
    );

    let t = app
        .get(
            &format!("/api/v1/matches/{}/transcript", second.match_id),
            &Who::anon(),
        )
        .await;
    let round = &t.json[0];
    assert_eq!(round["task"], "Write a tweet about tea.");
    let resp = &round["responses"][0];
    assert_eq!(resp["text"], "Tea, take 0.");
    let scores = resp["scores"].as_array().unwrap();
    assert_eq!(scores.len(), 2);
    assert_eq!(scores[0]["judge"], "llm");
    assert_eq!(scores[0]["rationale"], "seat 0 reads well");
    assert_eq!(
        app.get("/api/v1/matches/424242", &Who::anon()).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/v1/matches/424242/transcript", &Who::anon())
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}
both!(matches_list_detail_and_transcript);

async fn training_runs_metrics_and_proofs(app: TestApp) {
    let played = testkit::fixtures::played_match(app.store(), 2).await;
    let agent = played.agent_ids[0];
    let hp = json!({"lora_rank": 8, "dpo_beta": 0.1});
    let run = app
        .store()
        .create_training_run(&store::NewTrainingRun {
            agent_id: agent,
            parent_version_id: played.version_ids[0],
            hyperparams: &hp,
            hyperparams_hash: "hh",
            pairs_root: "pr",
            results_root: "rr",
            pair_ids: &played.pair_ids,
        })
        .await
        .unwrap();
    for step in 0..3 {
        app.store()
            .add_training_metric(&store::TrainingMetric {
                training_run_id: run.id,
                step,
                loss: 0.69 - 0.1 * step as f64,
                reward_accuracy: 0.5,
                chosen_reward: 0.1,
                rejected_reward: -0.1,
                // The held-out loss is measured at the end of a pass: steps 1 and 2.
                validation_loss: (step > 0).then_some(0.7 - 0.05 * step as f64),
            })
            .await
            .unwrap();
    }
    app.store()
        .finish_training_run(run.id, Ok(played.version_ids[0]))
        .await
        .unwrap();
    app.store()
        .add_pol_record(&store::NewPolRecord {
            record_id: 1,
            training_run_id: run.id,
            new_hash: "new",
            parent_hash: "old",
            trainer: "0xabc",
            block_number: 7,
            chain_tx_id: None,
        })
        .await
        .unwrap();
    let runs = app
        .get(
            &format!("/api/v1/agents/{agent}/training-runs"),
            &Who::anon(),
        )
        .await;
    assert_eq!(runs.json[0]["status"], "succeeded");
    assert_eq!(runs.json[0]["hyperparams"]["dpo_beta"], 0.1);
    let detail = app
        .get(&format!("/api/v1/training-runs/{}", run.id), &Who::anon())
        .await;
    assert_eq!(detail.json["metrics"].as_array().unwrap().len(), 3);
    assert_eq!(detail.json["metrics"][2]["step"], 2);
    assert!(detail.json["metrics"][0]["validation_loss"].is_null());
    assert!(
        (detail.json["metrics"][2]["validation_loss"]
            .as_f64()
            .unwrap()
            - 0.6)
            .abs()
            < 1e-9
    );
    // The agent page sums each run up: the best held-out loss and the training loss
    // at that step.
    let page = app.get(&format!("/agents/{agent}"), &Who::anon()).await;
    assert!(
        page.text
            .contains("validation loss 0.600 at step 2 (training loss 0.490)"),
        "{}",
        page.text
    );
    let pol = app
        .get(&format!("/api/v1/agents/{agent}/pol-records"), &Who::anon())
        .await;
    assert_eq!(pol.json[0]["new_hash"], "new");
    assert_eq!(pol.json[0]["pairs_root"], "pr");
    assert_eq!(
        app.get("/api/v1/training-runs/999", &Who::anon())
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/v1/agents/999/pol-records", &Who::anon())
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}
both!(training_runs_metrics_and_proofs);
