//! Authorization: nobody edits, enters, spends for, or reads the private data of
//! another user. One test per forbidden path; each also checks nothing changed.

mod common;

use axum::http::{Method, StatusCode};
use common::{TestApp, Who};
use serde_json::json;

/// Alice (funded, with an agent, a queued entry and a token) and Bob (funded).
struct Pair {
    alice: Who,
    bob: Who,
    agent: i64,
    entry: i64,
    tier: i64,
    token_id: i64,
}

async fn setup(app: &TestApp) -> Pair {
    let (_, tier) = testkit::fixtures::fixture_space(app.store()).await;
    let alice = app.funded(3, 1000).await;
    let bob = app.funded(1, 1000).await;
    let agent = app.agent(&alice, "alice's").await;
    let e = app
        .post(
            "/api/v1/entries",
            &alice,
            json!({"agent_id": agent, "fee_tier_id": tier}),
        )
        .await;
    let t = app
        .post("/api/v1/tokens", &alice, json!({"name": "alice"}))
        .await;
    Pair {
        entry: e.json["id"].as_i64().unwrap(),
        token_id: t.json["info"]["id"].as_i64().unwrap(),
        alice,
        bob,
        agent,
        tier,
    }
}

fn forbidden(r: &common::Reply) {
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "forbidden"),
        "{:?}",
        r.json
    );
}

async fn nobody_edits_another_users_agent(app: TestApp) {
    let p = setup(&app).await;
    let r = app
        .call(
            Method::PATCH,
            &format!("/api/v1/agents/{}", p.agent),
            &p.bob,
            Some(json!({"system_prompt": "mine now"})),
        )
        .await;
    forbidden(&r);
    assert_eq!(app.store().agent_versions(p.agent).await.unwrap().len(), 1);
}
both!(nobody_edits_another_users_agent);

async fn nobody_archives_another_users_agent(app: TestApp) {
    let p = setup(&app).await;
    forbidden(
        &app.call(
            Method::POST,
            &format!("/api/v1/agents/{}/archive", p.agent),
            &p.bob,
            None,
        )
        .await,
    );
    assert!(
        app.store()
            .agent(p.agent)
            .await
            .unwrap()
            .archived_at
            .is_none()
    );
}
both!(nobody_archives_another_users_agent);

async fn nobody_reads_another_users_versions(app: TestApp) {
    let p = setup(&app).await;
    forbidden(
        &app.get(&format!("/api/v1/agents/{}/versions", p.agent), &p.bob)
            .await,
    );
    forbidden(
        &app.get(&format!("/api/v1/agents/{}/versions/1", p.agent), &p.bob)
            .await,
    );
    let anon = app
        .get(
            &format!("/api/v1/agents/{}/versions", p.agent),
            &Who::anon(),
        )
        .await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
}
both!(nobody_reads_another_users_versions);

async fn nobody_enters_another_users_agent(app: TestApp) {
    let p = setup(&app).await;
    let r = app
        .post(
            "/api/v1/entries",
            &p.bob,
            json!({"agent_id": p.agent, "fee_tier_id": p.tier}),
        )
        .await;
    forbidden(&r);
    let bal = app.store().balance(p.bob.user_id).await.unwrap();
    assert_eq!(bal.locked_wei, store::Wei::ZERO, "Bob spent nothing");
    assert_eq!(
        app.store()
            .balance(p.alice.user_id)
            .await
            .unwrap()
            .locked_wei,
        store::Wei(100)
    );
}
both!(nobody_enters_another_users_agent);

async fn nobody_withdraws_another_users_entry(app: TestApp) {
    let p = setup(&app).await;
    forbidden(
        &app.call(
            Method::DELETE,
            &format!("/api/v1/entries/{}", p.entry),
            &p.bob,
            None,
        )
        .await,
    );
    assert_eq!(app.store().entry(p.entry).await.unwrap().status, "queued");
}
both!(nobody_withdraws_another_users_entry);

async fn nobody_sets_another_users_auto_entry(app: TestApp) {
    let p = setup(&app).await;
    let r = app
        .call(
            Method::PUT,
            &format!("/api/v1/agents/{}/auto-entry/{}", p.agent, p.tier),
            &p.bob,
            Some(json!({"cap_wei": "1000000", "enabled": true})),
        )
        .await;
    forbidden(&r);
    assert!(
        app.store()
            .auto_entries_for_agent(p.agent)
            .await
            .unwrap()
            .is_empty()
    );
}
both!(nobody_sets_another_users_auto_entry);

async fn nobody_reads_another_users_auto_entry(app: TestApp) {
    let p = setup(&app).await;
    forbidden(
        &app.get(&format!("/api/v1/agents/{}/auto-entry", p.agent), &p.bob)
            .await,
    );
}
both!(nobody_reads_another_users_auto_entry);

async fn nobody_revokes_another_users_token(app: TestApp) {
    let p = setup(&app).await;
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{}", p.token_id),
            &p.bob,
            None,
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "another user's token does not exist for you"
    );
    assert!(
        app.store().api_tokens(p.alice.user_id).await.unwrap()[0]
            .revoked_at
            .is_none()
    );
}
both!(nobody_revokes_another_users_token);

async fn nobody_sees_another_users_money_entries_or_tokens(app: TestApp) {
    let p = setup(&app).await;
    let bal = app.get("/api/v1/account/balance", &p.bob).await;
    assert_eq!(
        bal.json,
        json!({"available_wei": "1000", "locked_wei": "0"}),
        "Bob sees only his own"
    );
    let journal = app.get("/api/v1/account/journal", &p.bob).await;
    assert_eq!(
        journal.json.as_array().unwrap().len(),
        1,
        "only Bob's deposit"
    );
    assert!(
        app.get("/api/v1/entries", &p.bob)
            .await
            .json
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        app.get("/api/v1/tokens", &p.bob)
            .await
            .json
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        app.get("/api/v1/agents", &p.bob)
            .await
            .json
            .as_array()
            .unwrap()
            .is_empty()
    );
}
both!(nobody_sees_another_users_money_entries_or_tokens);

async fn nobody_spends_another_users_balance(app: TestApp) {
    let p = setup(&app).await;
    // Withdrawals act on the caller only: Bob draining "everything" leaves Alice whole.
    let r = app
        .post(
            "/api/v1/account/withdraw",
            &p.bob,
            json!({"amount_wei": "1000"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let over = app
        .post(
            "/api/v1/account/withdraw",
            &p.bob,
            json!({"amount_wei": "1"}),
        )
        .await;
    assert_eq!(over.code(), "insufficient_funds");
    assert_eq!(
        app.store()
            .balance(p.alice.user_id)
            .await
            .unwrap()
            .available_wei,
        store::Wei(900)
    );
    let anon = app
        .post(
            "/api/v1/account/withdraw",
            &Who::anon(),
            json!({"amount_wei": "1"}),
        )
        .await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
}
both!(nobody_spends_another_users_balance);
