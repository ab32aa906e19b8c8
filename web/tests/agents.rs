//! Agents and versions, entries and auto-entry, and the account's money, through the
//! API, including every validation limit.

mod common;

use axum::http::{Method, StatusCode};
use common::{TestApp, Who};
use serde_json::{Value, json};

fn agent_body(extra: Value) -> Value {
    let mut body = json!({
        "name": "Haiku Hero",
        "base_model": "smollm2-135m",
        "system_prompt": "Write vivid haiku.",
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

async fn agents_are_created_edited_versioned_and_archived(app: TestApp) {
    let who = app.login(3).await;
    let r = app
        .post("/api/v1/agents", &Who::anon(), agent_body(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let r = app
        .post(
            "/api/v1/agents",
            &who,
            agent_body(json!({"sampling": {"temperature": 1.2}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json);
    let id = r.json["agent"]["id"].as_i64().unwrap();
    assert_eq!(r.json["version"]["version"], 1);
    assert_eq!(r.json["version"]["sampling"]["temperature"], 1.2);
    assert_eq!(
        r.json["version"]["sampling"]["top_p"], 0.9,
        "defaults fill in"
    );
    assert_eq!(r.json["version"]["training"]["lora_rank"], 8);

    let public = app.get(&format!("/api/v1/agents/{id}"), &Who::anon()).await;
    assert_eq!(public.status, StatusCode::OK);
    assert_eq!(public.json["name"], "Haiku Hero");
    assert!(
        public.json.get("system_prompt").is_none(),
        "the meta-prompt is private"
    );

    let e = app
        .call(
            Method::PATCH,
            &format!("/api/v1/agents/{id}"),
            &who,
            Some(json!({"system_prompt": "Write vivid, seasonal haiku.", "training": {"dpo_beta": 0.2}})),
        )
        .await;
    assert_eq!(e.status, StatusCode::OK, "{:?}", e.json);
    assert_eq!(e.json["version"]["version"], 2);
    assert_eq!(e.json["version"]["sampling"]["temperature"], 1.2, "kept");
    assert_eq!(e.json["version"]["training"]["dpo_beta"], 0.2);

    let versions = app
        .get(&format!("/api/v1/agents/{id}/versions"), &who)
        .await;
    assert_eq!(versions.json.as_array().unwrap().len(), 2);
    let v1 = app
        .get(&format!("/api/v1/agents/{id}/versions/1"), &who)
        .await;
    assert_eq!(v1.json["system_prompt"], "Write vivid haiku.");
    let v9 = app
        .get(&format!("/api/v1/agents/{id}/versions/9"), &who)
        .await;
    assert_eq!(v9.status, StatusCode::NOT_FOUND);
    let mine = app.get("/api/v1/agents", &who).await;
    assert_eq!(mine.json.as_array().unwrap().len(), 1);

    let a = app
        .call(
            Method::POST,
            &format!("/api/v1/agents/{id}/archive"),
            &who,
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.json["archived_at"].is_i64());
    let late = app
        .call(
            Method::PATCH,
            &format!("/api/v1/agents/{id}"),
            &who,
            Some(json!({"system_prompt": "x"})),
        )
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT);
    assert_eq!(
        app.get("/api/v1/agents/999999", &who).await.status,
        StatusCode::NOT_FOUND
    );
    let bad_id = app.get("/api/v1/agents/abc", &who).await;
    assert_eq!(
        (bad_id.status, bad_id.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "path")
    );
}
both!(agents_are_created_edited_versioned_and_archived);

async fn every_limit_is_a_422_naming_the_field(app: TestApp) {
    let who = app.login(3).await;
    let cases = [
        (json!({"name": ""}), "name"),
        (json!({"name": "x".repeat(65)}), "name"),
        (json!({"base_model": "no spaces"}), "base_model"),
        (json!({"system_prompt": "p".repeat(4001)}), "system_prompt"),
        (
            json!({"sampling": {"temperature": 2.01}}),
            "sampling.temperature",
        ),
        (
            json!({"sampling": {"temperature": -0.1}}),
            "sampling.temperature",
        ),
        (json!({"sampling": {"top_p": 0.0}}), "sampling.top_p"),
        (json!({"sampling": {"top_p": 1.01}}), "sampling.top_p"),
        (json!({"sampling": {"top_k": 201}}), "sampling.top_k"),
        (
            json!({"sampling": {"repetition_penalty": 0.5}}),
            "sampling.repetition_penalty",
        ),
        (
            json!({"sampling": {"repeat_last_n": 513}}),
            "sampling.repeat_last_n",
        ),
        (
            json!({"sampling": {"max_new_tokens": 0}}),
            "sampling.max_new_tokens",
        ),
        (
            json!({"sampling": {"max_new_tokens": 1025}}),
            "sampling.max_new_tokens",
        ),
        (
            json!({"sampling": {"stop": ["a", "b", "c", "d", "e"]}}),
            "sampling.stop",
        ),
        (json!({"training": {"lora_rank": 0}}), "training.lora_rank"),
        (json!({"training": {"lora_rank": 65}}), "training.lora_rank"),
        (
            json!({"training": {"lora_alpha": 0}}),
            "training.lora_alpha",
        ),
        (
            json!({"training": {"learning_rate": 0.5}}),
            "training.learning_rate",
        ),
        (json!({"training": {"dpo_beta": 0}}), "training.dpo_beta"),
        (
            json!({"training": {"train_every_pairs": 0}}),
            "training.train_every_pairs",
        ),
        (
            json!({"sampling": {"temprature": 1.0}}),
            "sampling.temprature",
        ),
        (
            json!({"sampling": {"temperature": "hot"}}),
            "sampling.temperature",
        ),
    ];
    for (extra, field) in cases {
        let r = app
            .post("/api/v1/agents", &who, agent_body(extra.clone()))
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{extra}: {:?}",
            r.json
        );
        assert_eq!(r.code(), "invalid");
        assert_eq!(r.field(), field, "{extra}: {:?}", r.json);
    }
    let missing = app.post("/api/v1/agents", &who, json!({"name": "x"})).await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.get("/api/v1/agents", &who).await.json,
        json!([]),
        "nothing was stored"
    );
}
both!(every_limit_is_a_422_naming_the_field);

async fn entries_lock_fees_and_leave_unlocks_them(app: TestApp) {
    let (_, tier) = testkit::fixtures::fixture_space(app.store()).await;
    let who = app.funded(3, 250).await;
    let agent = app.agent(&who, "entrant").await;
    let r = app
        .post(
            "/api/v1/entries",
            &who,
            json!({"agent_id": agent, "fee_tier_id": tier}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json);
    assert_eq!(r.json["status"], "queued");
    assert_eq!(r.json["fee_wei"], "100");
    let entry = r.json["id"].as_i64().unwrap();
    let bal = app.get("/api/v1/account/balance", &who).await;
    assert_eq!(
        bal.json,
        json!({"available_wei": "150", "locked_wei": "100"})
    );

    // One queued entry per agent per tier: a second one is a conflict.
    let twice = app
        .post(
            "/api/v1/entries",
            &who,
            json!({"agent_id": agent, "fee_tier_id": tier}),
        )
        .await;
    assert_eq!(twice.status, StatusCode::CONFLICT, "{:?}", twice.json);
    let other = app.agent(&who, "second entrant").await;
    let second = app
        .post(
            "/api/v1/entries",
            &who,
            json!({"agent_id": other, "fee_tier_id": tier}),
        )
        .await;
    assert_eq!(second.status, StatusCode::CREATED);
    let third = app.agent(&who, "third entrant").await;
    let broke = app
        .post(
            "/api/v1/entries",
            &who,
            json!({"agent_id": third, "fee_tier_id": tier}),
        )
        .await;
    assert_eq!(
        (broke.status, broke.code()),
        (StatusCode::CONFLICT, "insufficient_funds")
    );
    let no_tier = app
        .post(
            "/api/v1/entries",
            &who,
            json!({"agent_id": agent, "fee_tier_id": 999999}),
        )
        .await;
    assert_eq!(
        (no_tier.status, no_tier.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "fee_tier_id")
    );

    let left = app
        .call(
            Method::DELETE,
            &format!("/api/v1/entries/{entry}"),
            &who,
            None,
        )
        .await;
    assert_eq!(left.status, StatusCode::OK);
    assert_eq!(left.json["status"], "withdrawn");
    let again = app
        .call(
            Method::DELETE,
            &format!("/api/v1/entries/{entry}"),
            &who,
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let listed = app.get("/api/v1/entries", &who).await;
    assert_eq!(listed.json.as_array().unwrap().len(), 2);

    let rule = app
        .call(
            Method::PUT,
            &format!("/api/v1/agents/{agent}/auto-entry/{tier}"),
            &who,
            Some(json!({"cap_wei": "1000", "enabled": true})),
        )
        .await;
    assert_eq!(rule.status, StatusCode::OK, "{:?}", rule.json);
    assert_eq!(rule.json["cap_wei"], "1000");
    let rules = app
        .get(&format!("/api/v1/agents/{agent}/auto-entry"), &who)
        .await;
    assert_eq!(rules.json.as_array().unwrap().len(), 1);
    let bad_cap = app
        .call(
            Method::PUT,
            &format!("/api/v1/agents/{agent}/auto-entry/{tier}"),
            &who,
            Some(json!({"cap_wei": "-5", "enabled": true})),
        )
        .await;
    assert_eq!(
        (bad_cap.status, bad_cap.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "cap_wei")
    );

    app.call(
        Method::POST,
        &format!("/api/v1/agents/{agent}/archive"),
        &who,
        None,
    )
    .await;
    let archived = app
        .post(
            "/api/v1/entries",
            &who,
            json!({"agent_id": agent, "fee_tier_id": tier}),
        )
        .await;
    assert_eq!(archived.status, StatusCode::CONFLICT);
}
both!(entries_lock_fees_and_leave_unlocks_them);

async fn deposits_and_withdrawals_move_only_your_money(app: TestApp) {
    let who = app.login(3).await;
    assert_eq!(
        app.get("/api/v1/account/balance", &Who::anon())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let d = app
        .post(
            "/api/v1/account/deposit",
            &who,
            json!({"amount_wei": "1000"}),
        )
        .await;
    assert_eq!(d.status, StatusCode::OK, "{:?}", d.json);
    assert_eq!(d.json["available_wei"], "1000");
    let w = app
        .post(
            "/api/v1/account/withdraw",
            &who,
            json!({"amount_wei": "400"}),
        )
        .await;
    assert_eq!(w.json["available_wei"], "600");
    let over = app
        .post(
            "/api/v1/account/withdraw",
            &who,
            json!({"amount_wei": "601"}),
        )
        .await;
    assert_eq!(
        (over.status, over.code()),
        (StatusCode::CONFLICT, "insufficient_funds")
    );
    for bad in ["0", "-1", "1.5", "abc", "007"] {
        let r = app
            .post("/api/v1/account/deposit", &who, json!({"amount_wei": bad}))
            .await;
        assert_eq!(
            (r.status, r.field()),
            (StatusCode::UNPROCESSABLE_ENTITY, "amount_wei"),
            "{bad}"
        );
    }
    let journal = app.get("/api/v1/account/journal", &who).await;
    let kinds: Vec<&str> = journal
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["deposit", "withdrawal"]);
}
both!(deposits_and_withdrawals_move_only_your_money);

/// A wallet's own transactions are reported by hash; the hash is checked for shape
/// first (naming the field), and a server with no chain says there is nothing to
/// report rather than crediting anything.
async fn wallet_reports_need_a_chain(app: TestApp) {
    let who = app.login(3).await;
    let terms = app.get("/api/v1/account/wallet", &who).await;
    assert_eq!(terms.status, StatusCode::OK);
    let wallet = app.store().user(who.user_id).await.unwrap().wallet_address;
    assert_eq!(terms.json["wallet"], wallet);
    assert!(terms.json["terms"].is_null(), "{:?}", terms.json);
    for path in ["/api/v1/account/deposits", "/api/v1/account/withdrawals"] {
        for bad in [
            "",
            "0x12",
            &format!("0x{}", "g".repeat(64)),
            &"a".repeat(66),
        ] {
            let r = app.post(path, &who, json!({"tx_hash": bad})).await;
            assert_eq!(
                (r.status, r.field()),
                (StatusCode::UNPROCESSABLE_ENTITY, "tx_hash"),
                "{path} {bad}"
            );
        }
        let r = app
            .post(
                path,
                &who,
                json!({"tx_hash": format!("0x{}", "ab".repeat(32))}),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::CONFLICT, "conflict"),
            "{path}"
        );
        let anon = app
            .post(
                path,
                &Who::anon(),
                json!({"tx_hash": format!("0x{}", "ab".repeat(32))}),
            )
            .await;
        assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    }
    let journal = app.get("/api/v1/account/journal", &who).await;
    assert_eq!(journal.json.as_array().unwrap().len(), 0);
}
both!(wallet_reports_need_a_chain);
