//! Sign-in with Ethereum, sessions, CSRF, API tokens, the OpenAPI document and the
//! request limits.

mod common;

use alloy::signers::SignerSync as _;
use axum::http::{Method, StatusCode, header};
use common::{TestApp, Who, session_cookie};
use serde_json::json;

/// Signs a server-issued nonce into an EIP-4361 message with dev key `key`, naming
/// `address` (normally the key's own) and `domain`.
fn signed(
    key: usize,
    address: alloy::primitives::Address,
    domain: &str,
    nonce: &str,
) -> serde_json::Value {
    let message = format!(
        "{domain} wants you to sign in with your Ethereum account:\n{}\n\nSign in to RLFC Arena.\n\nURI: http://{domain}\nVersion: 1\nChain ID: 31337\nNonce: {nonce}\nIssued At: {}",
        address.to_checksum(None),
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    );
    let sig = chain::dev::dev_signer(key)
        .sign_message_sync(message.as_bytes())
        .unwrap();
    json!({ "message": message, "signature": alloy::hex::encode_prefixed(sig.as_bytes()) })
}

async fn sign_in_with_ethereum(app: TestApp) {
    let signer = chain::dev::dev_signer(3);
    let n = app.get("/api/v1/auth/nonce", &Who::anon()).await;
    assert_eq!(n.status, StatusCode::OK);
    let nonce = n.json["nonce"].as_str().unwrap().to_string();
    assert_eq!(n.json["domain"], "localhost:8080");

    let body = signed(3, signer.address(), "localhost:8080", &nonce);
    let r = app
        .post("/api/v1/auth/siwe", &Who::anon(), body.clone())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    let set = r
        .headers
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    assert!(
        !set.contains("Secure"),
        "Secure is off in this configuration"
    );
    let wallet = format!("{:#x}", signer.address());
    assert_eq!(r.json["user"]["wallet_address"], wallet.as_str());
    let who = Who {
        cookie: Some(session_cookie(&r.headers)),
        csrf: r.json["csrf_token"].as_str().map(str::to_string),
        ..Who::default()
    };
    let me = app.get("/api/v1/me", &who).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json["user"]["wallet_address"], wallet.as_str());

    let replay = app.post("/api/v1/auth/siwe", &Who::anon(), body).await;
    assert_eq!(replay.status, StatusCode::FORBIDDEN, "a nonce works once");

    let n2 = app.get("/api/v1/auth/nonce", &Who::anon()).await;
    let nonce2 = n2.json["nonce"].as_str().unwrap();
    let wrong_domain = signed(3, signer.address(), "evil.example", nonce2);
    let r = app
        .post("/api/v1/auth/siwe", &Who::anon(), wrong_domain)
        .await;
    assert_eq!(
        (r.status, r.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "message")
    );

    let other_key = signed(4, signer.address(), "localhost:8080", nonce2);
    let r = app.post("/api/v1/auth/siwe", &Who::anon(), other_key).await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "signed by a key that is not the address"
    );

    app.store()
        .create_nonce("expiredNonce1234", store::now_ms() - 1)
        .await
        .unwrap();
    let expired = signed(3, signer.address(), "localhost:8080", "expiredNonce1234");
    let r = app.post("/api/v1/auth/siwe", &Who::anon(), expired).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "expired nonce");

    let never = signed(3, signer.address(), "localhost:8080", "neverIssued12345");
    let r = app.post("/api/v1/auth/siwe", &Who::anon(), never).await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "nonce the server never issued"
    );

    let garbage = app
        .post(
            "/api/v1/auth/siwe",
            &Who::anon(),
            json!({"message": "hi", "signature": "0x00"}),
        )
        .await;
    assert_eq!(
        (garbage.status, garbage.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "message")
    );

    let out = app
        .call(Method::POST, "/api/v1/auth/logout", &who, None)
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/v1/me", &who).await.status,
        StatusCode::UNAUTHORIZED
    );
}
both!(sign_in_with_ethereum);

async fn dev_login_only_in_demo_mode(app: TestApp) {
    let who = app.login(1).await;
    let wallet = format!("{:#x}", chain::dev::dev_accounts(2)[1]);
    let me = app.get("/api/v1/me", &who).await;
    assert_eq!(me.json["user"]["wallet_address"], wallet.as_str());
    let bad = app
        .call(
            Method::POST,
            "/api/v1/auth/dev-login?account=99",
            &Who::anon(),
            None,
        )
        .await;
    assert_eq!(
        (bad.status, bad.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "account")
    );

    let db = testkit::db::TestDb::sqlite().await;
    let off = TestApp::with_config(
        db,
        web::WebConfig {
            demo_login: false,
            ..common::config()
        },
    )
    .await;
    let r = off
        .call(Method::POST, "/api/v1/auth/dev-login", &Who::anon(), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
both!(dev_login_only_in_demo_mode);

async fn cookie_writes_need_the_csrf_token(app: TestApp) {
    let who = app.login(3).await;
    let body = json!({"name": "ci"});
    let r = app
        .post("/api/v1/tokens", &who.without_csrf(), body.clone())
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "csrf"));
    let wrong = Who {
        csrf: Some("nope".into()),
        ..who.clone()
    };
    assert_eq!(
        app.post("/api/v1/tokens", &wrong, body.clone())
            .await
            .code(),
        "csrf"
    );
    assert_eq!(
        app.post("/api/v1/tokens", &who, body).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.get("/api/v1/me", &who.without_csrf()).await.status,
        StatusCode::OK,
        "reads need none"
    );
}
both!(cookie_writes_need_the_csrf_token);

async fn api_tokens_are_hashed_and_revocable(app: TestApp) {
    let who = app.login(3).await;
    let r = app
        .post("/api/v1/tokens", &who, json!({"name": "script"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let token = r.json["token"].as_str().unwrap().to_string();
    let id = r.json["info"]["id"].as_i64().unwrap();
    let stored = app.store().api_tokens(who.user_id).await.unwrap();
    assert_ne!(stored[0].token_hash, token, "only the hash is stored");
    assert!(!stored[0].token_hash.contains(&token[5..]));

    let bot = Who {
        bearer: Some(token.clone()),
        user_id: who.user_id,
        ..Who::default()
    };
    assert_eq!(
        app.get("/api/v1/me", &bot).await.json["user"]["id"],
        who.user_id
    );
    let agent = app
        .post(
            "/api/v1/agents",
            &bot,
            json!({"name": "bot", "base_model": "smollm2-135m", "system_prompt": "x"}),
        )
        .await;
    assert_eq!(
        agent.status,
        StatusCode::CREATED,
        "bearer writes need no CSRF token"
    );
    let list = app.get("/api/v1/tokens", &who).await;
    assert_eq!(list.json.as_array().unwrap().len(), 1);
    assert!(
        list.json[0].get("token").is_none(),
        "the secret is never listed"
    );

    let bad = app.post("/api/v1/tokens", &who, json!({"name": ""})).await;
    assert_eq!(
        (bad.status, bad.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "name")
    );

    let revoked = app
        .call(Method::DELETE, &format!("/api/v1/tokens/{id}"), &who, None)
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert!(revoked.json["revoked_at"].is_i64());
    assert_eq!(
        app.get("/api/v1/me", &bot).await.status,
        StatusCode::UNAUTHORIZED
    );
    let forged = Who {
        bearer: Some("rlfc_forged".into()),
        ..Who::default()
    };
    assert_eq!(
        app.get("/api/v1/me", &forged).await.status,
        StatusCode::UNAUTHORIZED
    );
}
both!(api_tokens_are_hashed_and_revocable);

async fn openapi_document_covers_the_routes(app: TestApp) {
    let r = app.get("/api/v1/openapi.json", &Who::anon()).await;
    assert_eq!(r.status, StatusCode::OK);
    let paths = r.json["paths"].as_object().unwrap();
    for p in [
        "/api/v1/auth/nonce",
        "/api/v1/auth/siwe",
        "/api/v1/me",
        "/api/v1/tokens/{id}",
        "/api/v1/agents",
        "/api/v1/agents/{id}/versions/{version}",
        "/api/v1/spaces/{slug}/leaderboard",
        "/api/v1/entries/{id}",
        "/api/v1/agents/{id}/auto-entry/{tier_id}",
        "/api/v1/matches/{id}/transcript",
        "/api/v1/training-runs/{id}",
        "/api/v1/agents/{id}/pol-records",
        "/api/v1/account/withdraw",
        "/api/v1/datasets/preferences",
    ] {
        assert!(paths.contains_key(p), "{p} missing from {:?}", paths.keys());
    }
    assert!(r.json["components"]["schemas"]["ErrorBody"].is_object());
    assert_eq!(r.json, serde_json::to_value(web::openapi()).unwrap());
}
both!(openapi_document_covers_the_routes);

async fn oversized_bodies_are_refused(app: TestApp) {
    let who = app.login(3).await;
    let huge = "x".repeat(70 * 1024);
    let r = app
        .post(
            "/api/v1/agents",
            &who,
            json!({"name": "big", "base_model": "m", "system_prompt": huge}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
    );
}
both!(oversized_bodies_are_refused);

#[tokio::test]
async fn writes_are_rate_limited_per_user_and_ip() {
    let db = testkit::db::TestDb::sqlite().await;
    let strict = TestApp::with_config(
        db,
        web::WebConfig {
            user_writes_per_minute: 2,
            ip_writes_per_minute: 6,
            ..common::config()
        },
    )
    .await;
    let a = strict.login(3).await; // 1 IP write
    let body = json!({"name": "t"});
    assert_eq!(
        strict.post("/api/v1/tokens", &a, body.clone()).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        strict.post("/api/v1/tokens", &a, body.clone()).await.status,
        StatusCode::CREATED
    );
    let third = strict.post("/api/v1/tokens", &a, body.clone()).await;
    assert_eq!(
        (third.status, third.code()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    assert_eq!(
        strict.get("/api/v1/tokens", &a).await.status,
        StatusCode::OK,
        "reads are not limited"
    );
    let b = strict.login(1).await; // 5 IP writes so far
    assert_eq!(
        strict.post("/api/v1/tokens", &b, body.clone()).await.status,
        StatusCode::CREATED
    );
    let over_ip = strict.post("/api/v1/tokens", &b, body).await;
    assert_eq!(
        over_ip.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the IP bucket is spent"
    );
}

async fn cross_site_writes_are_refused(app: TestApp) {
    let who = app.login(3).await;
    let send = |origin: &'static str| {
        let who = who.clone();
        let app = &app;
        async move {
            let req = axum::http::Request::post("/api/v1/tokens")
                .header(header::HOST, "localhost:8080")
                .header(header::ORIGIN, origin)
                .header(header::COOKIE, who.cookie.unwrap())
                .header("x-csrf-token", who.csrf.unwrap())
                .header(header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from(r#"{"name":"x"}"#))
                .unwrap();
            app.send(req).await
        }
    };
    let evil = send("https://evil.example").await;
    assert_eq!((evil.status, evil.code()), (StatusCode::FORBIDDEN, "csrf"));
    assert_eq!(
        send("http://localhost:8080").await.status,
        StatusCode::CREATED
    );
    let forged_login = app
        .send(
            axum::http::Request::post("/auth/dev-login")
                .header(header::HOST, "localhost:8080")
                .header(header::ORIGIN, "https://evil.example")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        forged_login.status,
        StatusCode::FORBIDDEN,
        "no forged cross-site sign-in"
    );
}
both!(cross_site_writes_are_refused);

/// The generated document passes an OpenAPI validator (Python's
/// `openapi-spec-validator`, when installed; skipped otherwise).
#[test]
fn openapi_document_is_valid_openapi() {
    let has = std::process::Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        eprintln!("openapi-spec-validator not installed; skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, serde_json::to_vec(&web::openapi()).unwrap()).unwrap();
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1])))",
            path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn the_server_writes_the_message_a_wallet_signs(app: TestApp) {
    let signer = chain::dev::dev_signer(5);
    let lower = format!("{:#x}", signer.address());
    let n = app
        .get(&format!("/api/v1/auth/nonce?address={lower}"), &Who::anon())
        .await;
    let message = n.json["message"].as_str().unwrap().to_string();
    assert!(
        message.contains(&signer.address().to_checksum(None)),
        "EIP-55 address"
    );
    assert!(message.starts_with("localhost:8080 wants you to sign in"));
    let sig = signer.sign_message_sync(message.as_bytes()).unwrap();
    let r = app
        .post(
            "/api/v1/auth/siwe",
            &Who::anon(),
            json!({"message": message, "signature": alloy::hex::encode_prefixed(sig.as_bytes())}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    assert_eq!(r.json["user"]["wallet_address"], lower.as_str());
    let bad = app
        .get("/api/v1/auth/nonce?address=0x12", &Who::anon())
        .await;
    assert_eq!(
        (bad.status, bad.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "address")
    );
}
both!(the_server_writes_the_message_a_wallet_signs);
