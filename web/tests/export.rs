//! The preference-dataset export: both TRL layouts, every filter, paging across
//! database pages, and resuming from a cursor.

mod common;

use axum::http::StatusCode;
use common::{TestApp, Who};
use serde_json::Value;

fn lines(r: &common::Reply) -> Vec<Value> {
    r.text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

async fn small_pages(db: testkit::db::TestDb) -> TestApp {
    TestApp::with_config(
        db,
        web::WebConfig {
            export_page_rows: 2,
            ..common::config()
        },
    )
    .await
}

async fn trl_rows_stream_across_pages_and_resume(app: TestApp) {
    let app = small_pages(app.db).await;
    let played = testkit::fixtures::played_match(app.store(), 4).await; // 6 pairs
    let r = app.get("/api/v1/datasets/preferences", &Who::anon()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/x-ndjson");
    let rows = lines(&r);
    assert_eq!(rows.len(), 6, "every pair, across three database pages");
    let ids: Vec<i64> = rows
        .iter()
        .map(|r| r["pair_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, played.pair_ids);
    let first = &rows[0];
    for col in ["prompt", "chosen", "rejected"] {
        assert!(first[col].is_string(), "{col} is text in the trl layout");
    }
    for col in [
        "match_id",
        "round",
        "space",
        "chosen_agent_id",
        "rejected_agent_version_id",
        "margin",
        "judge_agreement",
        "created_at",
    ] {
        assert!(!first[col].is_null(), "metadata column {col}");
    }
    assert_eq!(first["chosen"], "Tea, take 0.");

    let resumed = app
        .get(
            &format!("/api/v1/datasets/preferences?after={}", ids[2]),
            &Who::anon(),
        )
        .await;
    let rest: Vec<i64> = lines(&resumed)
        .iter()
        .map(|r| r["pair_id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        rest,
        ids[3..],
        "resuming after the last id received gives exactly the rest"
    );
    let capped = app
        .get("/api/v1/datasets/preferences?limit=3", &Who::anon())
        .await;
    assert_eq!(lines(&capped).len(), 3);
}
both!(trl_rows_stream_across_pages_and_resume);

async fn conversational_layout_holds_messages(app: TestApp) {
    testkit::fixtures::played_match(app.store(), 2).await;
    let r = app
        .get(
            "/api/v1/datasets/preferences?format=trl-conversational",
            &Who::anon(),
        )
        .await;
    let rows = lines(&r);
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        row["prompt"],
        serde_json::json!([{"role": "user", "content": "Write a tweet about tea."}])
    );
    assert_eq!(
        row["chosen"],
        serde_json::json!([{"role": "assistant", "content": "Tea, take 0."}])
    );
    assert_eq!(row["rejected"][0]["role"], "assistant");
}
both!(conversational_layout_holds_messages);

async fn filters_narrow_the_export(app: TestApp) {
    let played = testkit::fixtures::played_match(app.store(), 4).await;
    let count = |q: String| {
        let app = &app;
        async move {
            lines(
                &app.get(&format!("/api/v1/datasets/preferences?{q}"), &Who::anon())
                    .await,
            )
            .len()
        }
    };
    assert_eq!(count("space=tweet-duel".into()).await, 6);
    assert_eq!(count(format!("agent={}", played.agent_ids[3])).await, 3);
    assert_eq!(
        count("min_margin=0.5".into()).await,
        3,
        "margins are 0.25, 0.5, 0.75"
    );
    assert_eq!(count("min_agreement=1".into()).await, 2);
    assert_eq!(count("since=0".into()).await, 6);
    assert_eq!(count("until=0".into()).await, 0);
    assert_eq!(count("since=2000-01-01T00:00:00Z".into()).await, 6);
    assert_eq!(count("until=2000-01-01T00:00:00Z".into()).await, 0);

    for (q, field) in [
        ("format=csv", "format"),
        ("min_margin=-1", "min_margin"),
        ("min_agreement=2", "min_agreement"),
        ("since=yesterday", "since"),
    ] {
        let r = app
            .get(&format!("/api/v1/datasets/preferences?{q}"), &Who::anon())
            .await;
        assert_eq!(
            (r.status, r.field()),
            (StatusCode::UNPROCESSABLE_ENTITY, field),
            "{q}"
        );
    }
    let unknown = app
        .get("/api/v1/datasets/preferences?space=nope", &Who::anon())
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let no_run = app
        .get(
            "/api/v1/datasets/preferences?training_run=999",
            &Who::anon(),
        )
        .await;
    assert_eq!(no_run.status, StatusCode::NOT_FOUND);
}
both!(filters_narrow_the_export);

async fn a_training_runs_pairs_come_with_their_order_and_match_results(app: TestApp) {
    let played = testkit::fixtures::played_match(app.store(), 4).await;
    let used = [played.pair_ids[4], played.pair_ids[1], played.pair_ids[2]];
    let run = app
        .store()
        .create_training_run(&store::NewTrainingRun {
            agent_id: played.agent_ids[0],
            parent_version_id: played.version_ids[0],
            hyperparams: &serde_json::json!({"beta": 0.1}),
            hyperparams_hash: "0xhyper",
            pairs_root: "0xpairs",
            results_root: "0xresults",
            pair_ids: &used,
        })
        .await
        .unwrap();
    let r = app
        .get(
            &format!("/api/v1/datasets/preferences?training_run={}", run.id),
            &Who::anon(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let rows = lines(&r);
    let mut order: Vec<(i64, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["training_position"].as_i64().unwrap(),
                r["pair_id"].as_i64().unwrap(),
            )
        })
        .collect();
    order.sort();
    assert_eq!(order, vec![(0, used[0]), (1, used[1]), (2, used[2])]);
    for row in &rows {
        assert_eq!(row["match_id"], played.match_id);
        assert_eq!(row["match_result_root"], "0xroot");
        assert!(row["round_id"].as_i64().unwrap() > 0);
    }
    let all = lines(&app.get("/api/v1/datasets/preferences", &Who::anon()).await);
    assert!(
        all.iter().all(|r| r.get("training_position").is_none()),
        "the position appears only for a training run's export"
    );
}
both!(a_training_runs_pairs_come_with_their_order_and_match_results);

/// Each row says whether either answer was cut off at the token limit, and
/// `complete_only=true` leaves such pairs out (issue 21: truncated answers are not
/// finished answers).
async fn truncated_answers_are_flagged_and_can_be_left_out(app: TestApp) {
    testkit::fixtures::played_match(app.store(), 3).await;
    app.store()
        .execute_admin(
            "UPDATE responses SET finish_reason = 'length' WHERE id = \
             (SELECT rejected_response_id FROM preference_pairs ORDER BY id LIMIT 1)",
        )
        .await
        .unwrap();
    let all = lines(&app.get("/api/v1/datasets/preferences", &Who::anon()).await);
    assert!(all.len() >= 2, "{}", all.len());
    let cut: Vec<&Value> = all
        .iter()
        .filter(|r| r["rejected_truncated"] == true || r["chosen_truncated"] == true)
        .collect();
    assert!(!cut.is_empty());
    assert!(all.iter().all(|r| r["chosen_truncated"].is_boolean()));
    let complete = lines(
        &app.get(
            "/api/v1/datasets/preferences?complete_only=true",
            &Who::anon(),
        )
        .await,
    );
    assert_eq!(complete.len(), all.len() - cut.len());
    assert!(
        complete
            .iter()
            .all(|r| r["rejected_truncated"] == false && r["chosen_truncated"] == false)
    );
}
both!(truncated_answers_are_flagged_and_can_be_left_out);

/// At most `max_concurrent_exports` exports stream at once: while the only slot is held
/// by a download whose body nobody has read yet, the next is a 429; once that body is
/// dropped, the next gets through (issue 19: exports never starve the runner of
/// connections).
#[tokio::test]
async fn exports_beyond_the_limit_are_refused_until_a_slot_frees() {
    use axum::body::Body;
    use tower::ServiceExt as _;
    let db = testkit::db::TestDb::sqlite().await;
    let app = TestApp::with_config(
        db,
        web::WebConfig {
            max_concurrent_exports: 1,
            ..common::config()
        },
    )
    .await;
    let get = || {
        axum::http::Request::get("/api/v1/datasets/preferences")
            .body(Body::empty())
            .unwrap()
    };
    // The served body holds the slot until it is consumed or dropped.
    let in_progress = app.router.clone().oneshot(get()).await.unwrap();
    assert_eq!(in_progress.status(), StatusCode::OK);
    let refused = app.router.clone().oneshot(get()).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    drop(in_progress);
    let served = app.router.clone().oneshot(get()).await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    drop(served);
    let again = app.router.clone().oneshot(get()).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
}
