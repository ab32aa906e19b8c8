//! The pages: each renders, forms check the CSRF token, validation errors show next to
//! their field, and the page flows (dev login, create and edit an agent, enter a
//! Space, move money, make a token) work without JavaScript.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{TestApp, Who};

async fn form(app: &TestApp, uri: &str, who: &Who, fields: &[(&str, &str)]) -> common::Reply {
    let mut pairs: Vec<(&str, &str)> = fields.to_vec();
    let csrf = who.csrf.clone().unwrap_or_default();
    if !fields.iter().any(|(k, _)| *k == "_csrf") {
        pairs.push(("_csrf", &csrf));
    }
    let body = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut req =
        Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = &who.cookie {
        req = req.header(header::COOKIE, c);
    }
    app.send(req.body(Body::from(body)).unwrap()).await
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn html(r: &common::Reply) -> &str {
    r.json.as_str().unwrap_or("")
}

async fn pages_render_for_visitors(app: TestApp) {
    web::sync_spaces(app.store(), &common::rulebooks())
        .await
        .unwrap();
    let played = testkit::fixtures::played_match(app.store(), 3).await;
    let home = app.get("/", &Who::anon()).await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(html(&home).contains("Tweet Duel") && html(&home).contains("Dev login"));
    let space = app.get("/spaces/tweet-duel", &Who::anon()).await;
    assert!(html(&space).contains("Leaderboard") && html(&space).contains("agent 0"));
    assert!(
        html(&home).contains(" ETH") && !html(&home).contains(" wei"),
        "fee tiers in ETH"
    );
    assert!(
        html(&space).contains("keeps a 5 % rake")
            && html(&space).contains("place 1: 60 %, place 2: 30 %, place 3: 10 %"),
        "the rake and the payout rule before entry: {}",
        html(&space)
    );
    let m = app
        .get(&format!("/matches/{}", played.match_id), &Who::anon())
        .await;
    assert_eq!(m.status, StatusCode::OK);
    let page = html(&m);
    assert!(page.contains("seat 0 reads well"), "rationales shown");
    assert!(page.contains("290"), "payouts shown");
    assert!(
        page.contains(r#"<td title="290 wei">0.00000000000000029 ETH</td>"#)
            && page.contains(r#"Pot <span title="300 wei">0.0000000000000003 ETH</span>"#),
        "money in ETH with the wei on hover: {page}"
    );
    assert!(page.contains("Outcome"));
    let agent = app
        .get(&format!("/agents/{}", played.agent_ids[0]), &Who::anon())
        .await;
    assert!(html(&agent).contains("<svg"), "rating chart");
    assert!(
        !html(&agent).contains("You are agent 0"),
        "visitors never see the meta-prompt"
    );
    let ds = app
        .get(
            "/datasets?space=tweet-duel&min_margin=&format=trl",
            &Who::anon(),
        )
        .await;
    assert_eq!(ds.status, StatusCode::OK);
    assert!(html(&ds).contains("Tea, take 0."), "preview rows");
    assert!(html(&ds).contains("/api/v1/datasets/preferences?space=tweet-duel&amp;format=trl"));
    let bad = app.get("/datasets?min_agreement=5", &Who::anon()).await;
    assert!(html(&bad).contains("within [0, 1]"));
    assert_eq!(
        app.get("/matches/999", &Who::anon()).await.status,
        StatusCode::NOT_FOUND
    );
    let css = app.get("/static/style.css", &Who::anon()).await;
    assert_eq!(css.headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
    assert_eq!(
        app.get("/static/app.js", &Who::anon()).await.status,
        StatusCode::OK
    );
    let account = app.get("/account", &Who::anon()).await;
    assert_eq!(
        account.status,
        StatusCode::SEE_OTHER,
        "visitors are sent home"
    );
    // ... where home says why.
    assert_eq!(account.headers[header::LOCATION], "/?signin=required");
    let sent = app.get("/?signin=required", &Who::anon()).await;
    assert!(html(&sent).contains("id=\"signin-required\""));
    assert!(!html(&home).contains("id=\"signin-required\""));
    // Unknown paths: a themed page naming the path, or the API's JSON error.
    let missing = app.get("/no/such/page", &Who::anon()).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(html(&missing).contains("There is no page at /no/such/page."));
    assert!(html(&missing).contains("Back to the arena"));
    let api = app.get("/api/v1/no-such-thing", &Who::anon()).await;
    assert_eq!(api.status, StatusCode::NOT_FOUND);
    assert_eq!(api.json["error"]["code"], "not_found", "{:?}", api.json);
}
both!(pages_render_for_visitors);

async fn the_studio_flow_works_without_javascript(app: TestApp) {
    let (_, tier) = testkit::fixtures::fixture_space(app.store()).await;
    let login = form(&app, "/auth/dev-login", &Who::anon(), &[("account", "2")]).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    let cookie = common::session_cookie(&login.headers);
    assert!(
        login.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("HttpOnly")
    );
    let me = app
        .get(
            "/api/v1/me",
            &Who {
                cookie: Some(cookie.clone()),
                ..Who::default()
            },
        )
        .await;
    let who = Who {
        cookie: Some(cookie),
        csrf: me.json["csrf_token"].as_str().map(str::to_string),
        user_id: me.json["user"]["id"].as_i64().unwrap(),
        bearer: None,
    };
    assert!(html(&app.get("/agents/new", &who).await).contains("Meta-prompt"));

    let bad = form(
        &app,
        "/agents/new",
        &who,
        &[
            ("name", "Poet"),
            ("base_model", "smollm2-135m"),
            ("system_prompt", "Rhyme."),
            ("sampling.temperature", "3"),
        ],
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let page = html(&bad);
    assert!(
        page.contains(r#"data-error-for="sampling.temperature""#),
        "the error sits by its field"
    );
    assert!(page.contains("must be within [0, 2]"));
    assert!(page.contains(r#"value="Poet""#), "what was typed is kept");
    let nan = form(
        &app,
        "/agents/new",
        &who,
        &[
            ("name", "Poet"),
            ("base_model", "m"),
            ("training.lora_rank", "lots"),
        ],
    )
    .await;
    assert!(html(&nan).contains(r#"data-error-for="training.lora_rank""#));

    let forged = form(
        &app,
        "/agents/new",
        &who,
        &[("_csrf", "forged"), ("name", "Poet"), ("base_model", "m")],
    )
    .await;
    assert_eq!(
        forged.status,
        StatusCode::FORBIDDEN,
        "form posts need the session's CSRF token"
    );

    let ok = form(
        &app,
        "/agents/new",
        &who,
        &[
            ("name", "Poet"),
            ("base_model", "smollm2-135m"),
            ("system_prompt", "Rhyme softly."),
            ("sampling.temperature", "0.9"),
        ],
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    let location = ok.headers[header::LOCATION].to_str().unwrap().to_string();
    let id: i64 = location.rsplit('/').next().unwrap().parse().unwrap();
    let edit = form(
        &app,
        &location,
        &who,
        &[
            ("system_prompt", "Rhyme loudly."),
            ("sampling.temperature", "0.9"),
        ],
    )
    .await;
    assert_eq!(edit.status, StatusCode::SEE_OTHER);
    let studio = app.get(&location, &who).await;
    let page = html(&studio);
    assert!(
        page.contains(r#"<span class="insert">loudly.</span>"#),
        "the prompt diff: {page}"
    );
    assert!(page.contains("v2"));
    let bad_edit = form(
        &app,
        &location,
        &who,
        &[("system_prompt", "x"), ("sampling.top_p", "0")],
    )
    .await;
    assert!(html(&bad_edit).contains(r#"data-error-for="sampling.top_p""#));

    let broke = form(
        &app,
        "/spaces/tweet-duel/enter",
        &who,
        &[
            ("agent_id", &id.to_string()),
            ("fee_tier_id", &tier.to_string()),
        ],
    )
    .await;
    assert_eq!(broke.status, StatusCode::CONFLICT);
    assert!(html(&broke).contains("insufficient balance"));
    let dep = form(
        &app,
        "/account/deposit",
        &who,
        &[("amount_eth", "0.0000000000000005")],
    )
    .await;
    assert_eq!(dep.status, StatusCode::SEE_OTHER);
    let bad_dep = form(&app, "/account/deposit", &who, &[("amount_eth", "lots")]).await;
    assert_eq!(bad_dep.status, StatusCode::UNPROCESSABLE_ENTITY);
    let entered = form(
        &app,
        "/spaces/tweet-duel/enter",
        &who,
        &[
            ("agent_id", &id.to_string()),
            ("fee_tier_id", &tier.to_string()),
        ],
    )
    .await;
    assert_eq!(entered.status, StatusCode::SEE_OTHER);
    let space = app.get("/spaces/tweet-duel", &who).await;
    assert!(html(&space).contains("queued"));
    let entry = app.store().entries_by_user(who.user_id, 1).await.unwrap()[0].id;
    let left = form(&app, &format!("/entries/{entry}/leave"), &who, &[]).await;
    assert_eq!(left.status, StatusCode::SEE_OTHER);
    let w = form(
        &app,
        "/account/withdraw",
        &who,
        &[("amount_eth", "0.0000000000000001")],
    )
    .await;
    assert_eq!(w.status, StatusCode::SEE_OTHER);
    let account = app.get("/account", &who).await;
    assert!(
        html(&account).contains(">0.0000000000000004 ETH<")
            && html(&account).contains("title=\"400 wei\""),
        "balance after deposit 500 and withdraw 100, in ETH with the wei on hover"
    );
    let token = form(
        &app,
        "/account/tokens",
        &who,
        &[
            ("name", "laptop"),
            ("scope_read", "1"),
            ("scope_withdraw", "1"),
            ("expires_in_days", "7"),
        ],
    )
    .await;
    assert!(
        html(&token).contains("rlfc_"),
        "the new token is shown once"
    );
    let made = app.store().api_tokens(who.user_id).await.unwrap();
    assert_eq!(made[0].scopes, "read,withdraw", "the scopes ticked");
    let days = (made[0].expires_at.unwrap() - store::now_ms()) as f64 / 86_400_000.0;
    assert!((6.9..=7.0).contains(&days), "{days}");
    // No scope ticked, or a lifetime out of range, is refused with the reason.
    let none = form(&app, "/account/tokens", &who, &[("name", "bare")]).await;
    assert_eq!(none.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html(&none).contains("read, play, withdraw"));
    let long = form(
        &app,
        "/account/tokens",
        &who,
        &[
            ("name", "old"),
            ("scope_read", "1"),
            ("expires_in_days", "9999"),
        ],
    )
    .await;
    assert_eq!(long.status, StatusCode::UNPROCESSABLE_ENTITY);
    let out = form(&app, "/auth/logout", &who, &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(
        app.get("/api/v1/me", &who).await.status,
        StatusCode::UNAUTHORIZED
    );
}
both!(the_studio_flow_works_without_javascript);

/// A long-lived agent's page stays light: the newest 50 versions are listed, not all
/// of them (issue 19: heavy pages bounded).
async fn an_agent_page_lists_only_the_newest_versions(app: TestApp) {
    let who = app.login(3).await;
    let agent = app.agent(&who, "prolific").await;
    let mut parent = app.store().latest_agent_version(agent).await.unwrap().id;
    for i in 0..60 {
        parent = app
            .store()
            .add_agent_version(
                agent,
                parent,
                &store::NewAgentVersion {
                    system_prompt: format!("prompt number {i:03}"),
                    sampling: serde_json::json!({}),
                    training: serde_json::json!({}),
                    adapter_hash: None,
                },
            )
            .await
            .unwrap()
            .id;
    }
    let reply = app.get(&format!("/agents/{agent}"), &who).await;
    let page = html(&reply);
    // 61 versions: v61 down to v12 are listed, v11 and older are not.
    assert_eq!(
        page.matches("<summary>v").count(),
        50,
        "the newest 50 versions"
    );
    assert!(page.contains("<summary>v61 "), "the newest is listed");
    assert!(page.contains("<summary>v12 "), "the 50th newest is listed");
    assert!(!page.contains("<summary>v11 "), "older ones are not");
}
both!(an_agent_page_lists_only_the_newest_versions);

/// Training settings are one type: what the API set beyond the studio's five fields
/// survives a save from the studio's form, and the trainer reads the result.
async fn the_studio_keeps_training_settings_it_does_not_show(app: TestApp) {
    let who = app.login(2).await;
    let made = app
        .post(
            "/api/v1/agents",
            &who,
            serde_json::json!({"name": "Keeper", "base_model": "smollm2-135m",
                "system_prompt": "Be brief.",
                "training": {"min_margin": 0.3, "epochs": 5, "lora_rank": 4}}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.json);
    assert_eq!(made.json["version"]["training"]["min_margin"], 0.3);
    let id = made.json["agent"]["id"].as_i64().unwrap();
    let saved = form(
        &app,
        &format!("/agents/{id}"),
        &who,
        &[
            ("system_prompt", "Be brief and kind."),
            ("training.lora_rank", "8"),
            ("training.lora_alpha", "16"),
            ("training.learning_rate", "0.0001"),
            ("training.dpo_beta", "0.1"),
            ("training.train_every_pairs", "20"),
        ],
    )
    .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER);
    let latest = app.store().latest_agent_version(id).await.unwrap();
    let policy = platform::learning::TrainingPolicy::from_json(&latest.training).unwrap();
    assert_eq!(policy.min_margin, 0.3, "{}", latest.training);
    assert_eq!(policy.epochs, 5);
    assert_eq!(policy.lora_rank, 8, "the form's own field changed");
    assert_eq!(policy.train_every_pairs, 20);
}
both!(the_studio_keeps_training_settings_it_does_not_show);

/// A version the regression gate held back: the studio's version history marks it
/// and says why, the public training section shows the gate's record and decision,
/// and the API carries both.
async fn the_studio_shows_why_a_version_was_held_back(app: TestApp) {
    use std::cmp::Ordering::{Equal, Less};
    let who = app.login(2).await;
    let id = app.agent(&who, "Regressor").await;
    let store = app.store();
    let v1 = store.latest_agent_version(id).await.unwrap();
    let run = store
        .create_training_run(&store::NewTrainingRun {
            agent_id: id,
            parent_version_id: v1.id,
            hyperparams: &serde_json::json!({}),
            hyperparams_hash: "h",
            pairs_root: "p",
            results_root: "r",
            pair_ids: &[],
        })
        .await
        .unwrap();
    let mut outcomes = vec![Less; 7];
    outcomes.push(Equal);
    let evaluation = platform::learning::Evaluation {
        spaces: vec!["haiku".into()],
        matches: 8,
        result: platform::learning::evaluate::HeadToHead::from_outcomes(&outcomes),
        held_back: true,
    };
    store
        .set_training_evaluation(run.id, &serde_json::to_string(&evaluation).unwrap())
        .await
        .unwrap();
    let (held, restored) = store
        .add_held_back_version(id, v1.id, &"ab".repeat(32), &evaluation.summary())
        .await
        .unwrap();
    store
        .finish_training_run(run.id, Ok(held.id))
        .await
        .unwrap();

    let page = app.get(&format!("/agents/{id}"), &who).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("Never played."), "{}", page.text);
    assert!(
        page.text
            .contains("0 wins, 1 draws, 7 losses against its parent on 8 held-out tasks in haiku"),
        "{}",
        page.text
    );
    assert!(page.text.contains("Regression gate"), "{}", page.text);
    // Visitors see the run's gate too, not the owner's version history.
    let public = app.get(&format!("/agents/{id}"), &Who::anon()).await;
    assert!(public.text.contains("Regression gate"), "{}", public.text);
    assert!(!public.text.contains("Never played."));

    let runs = app
        .get(&format!("/api/v1/agents/{id}/training-runs"), &who)
        .await;
    assert_eq!(runs.status, StatusCode::OK);
    assert_eq!(runs.json[0]["evaluation"]["held_back"], true);
    assert_eq!(runs.json[0]["evaluation"]["result"]["losses"], 7);
    let versions = app
        .get(&format!("/api/v1/agents/{id}/versions"), &who)
        .await;
    assert_eq!(versions.status, StatusCode::OK, "{:?}", versions.json);
    let list = versions.json.as_array().unwrap();
    let shown = list.iter().find(|v| v["id"] == held.id).unwrap();
    assert_eq!(shown["held_back"], evaluation.summary());
    let last = list.iter().find(|v| v["id"] == restored.id).unwrap();
    assert!(last["held_back"].is_null());
}
both!(the_studio_shows_why_a_version_was_held_back);
