//! The security suite (issue 19): each test replays an attack from the outside test of
//! the running demo against a real server over HTTP or websockets, on SQLite and
//! PostgreSQL, and proves the defect fixed. The store-level halves (ratings under
//! concurrent settlements, one owner per match) live in `store/tests/repository.rs`
//! and `arena/src/matchmaking.rs`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use alloy::signers::SignerSync as _;
use axum::http::StatusCode;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use testkit::db::TestDb;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use web::WebConfig;

/// Makes a SQLite and a PostgreSQL test of `async fn $check(db: TestDb)`.
macro_rules! both_db {
    ($check:ident) => {
        mod $check {
            #[tokio::test]
            async fn sqlite() {
                super::$check(testkit::db::TestDb::sqlite().await).await;
            }
            #[tokio::test]
            async fn postgres() {
                if let Some(db) = testkit::db::TestDb::postgres().await {
                    super::$check(db).await;
                }
            }
        }
    };
}

/// A real server on a free loopback port, configured by `configure` once its address
/// is known (the `Host` allow-list names the port).
struct Server {
    app: common::TestApp,
    addr: SocketAddr,
    http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    async fn start(
        db: TestDb,
        configure: impl FnOnce(WebConfig, SocketAddr) -> WebConfig,
    ) -> Server {
        Server::start_counting(db, configure, None).await
    }

    /// [`Server::start`] that counts meta-prompt tokens with `tokens`.
    async fn start_counting(
        db: TestDb,
        configure: impl FnOnce(WebConfig, SocketAddr) -> WebConfig,
        tokens: Option<web::TokenCounter>,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = configure(common::config(), addr);
        let mut app = common::TestApp::with_config(db, config).await;
        if let Some(count) = tokens {
            app.state = app.state.clone().with_prompt_tokens(count);
        }
        web::sync_spaces(app.store(), &common::rulebooks())
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let state = app.state.clone();
        tokio::spawn(async move {
            web::serve(listener, state, async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Server {
            app,
            addr,
            http,
            _stop: tx,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Signs in with the dev login as `account`; returns (cookie, csrf token).
    async fn login(&self, account: usize) -> (String, String) {
        let r = self
            .http
            .post(self.url(&format!("/api/v1/auth/dev-login?account={account}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let cookie = common::session_cookie(r.headers());
        let body: Value = r.json().await.unwrap();
        (cookie, body["csrf_token"].as_str().unwrap().to_string())
    }
}

/// The public origin of a server at `addr`, as the binary configures it.
fn public(addr: SocketAddr) -> web::PublicUrl {
    web::PublicUrl::parse(&format!("http://{addr}")).unwrap()
}

/// Item 2: a page on another name that resolves to the server (DNS rebinding) gets
/// nothing: not the API, not a dev-login session. Before the fix `Host:
/// rebind.example:8080` got a session.
async fn a_foreign_host_is_refused(db: TestDb) {
    let s = Server::start(db, |c, addr| c.for_public_url(&public(addr), &[])).await;
    let port = s.addr.port();
    let login = s
        .http
        .post(s.url("/api/v1/auth/dev-login?account=2"))
        .header("host", format!("rebind.example:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::MISDIRECTED_REQUEST);
    assert!(
        login.headers().get("set-cookie").is_none(),
        "no session for a rebinding page"
    );
    let body: Value = login.json().await.unwrap();
    assert_eq!(body["error"]["code"], "host");
    let read = s
        .http
        .get(s.url("/api/v1/spaces"))
        .header("host", format!("rebind.example:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::MISDIRECTED_REQUEST);
    // The configured host works.
    let ok = s.http.get(s.url("/api/v1/spaces")).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    s.login(2).await;
}
both_db!(a_foreign_host_is_refused);

/// Item 2: the dev login never signs in as the chain operator (account 0 by default,
/// whose key signs proof-of-learning records), not even by default.
async fn the_dev_login_never_signs_in_as_the_operator(db: TestDb) {
    let operator = format!("{:#x}", chain::dev::dev_accounts(3)[2]);
    let s = Server::start(db, |c, addr| WebConfig {
        operator: Some(operator.clone()),
        ..c.for_public_url(&public(addr), &[])
    })
    .await;
    let zero = s
        .http
        .post(s.url("/api/v1/auth/dev-login?account=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(zero.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = zero.json().await.unwrap();
    assert_eq!(body["error"]["field"], "account");
    let configured = s
        .http
        .post(s.url("/api/v1/auth/dev-login?account=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(configured.status(), StatusCode::FORBIDDEN);
    // The default account is not the operator.
    let default = s
        .http
        .post(s.url("/api/v1/auth/dev-login"))
        .send()
        .await
        .unwrap();
    assert_eq!(default.status(), StatusCode::OK);
    let me: Value = default.json().await.unwrap();
    assert_eq!(
        me["user"]["wallet_address"],
        format!("{:#x}", chain::dev::dev_accounts(2)[1]).as_str()
    );
    // The page form's default too.
    let page = s
        .http
        .post(s.url("/auth/dev-login"))
        .header("origin", format!("http://{}", s.addr))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.status(),
        StatusCode::SEE_OTHER,
        "signed in and sent home"
    );
}
both_db!(the_dev_login_never_signs_in_as_the_operator);

/// Signs `message` with dev account `account` and posts it to the SIWE endpoint.
async fn sign_in(s: &Server, account: usize, message: &str) -> reqwest::Response {
    let signer = chain::dev::dev_signer(account);
    let sig = signer.sign_message_sync(message.as_bytes()).unwrap();
    s.http
        .post(s.url("/api/v1/auth/siwe"))
        .json(&json!({
            "message": message,
            "signature": alloy::hex::encode_prefixed(sig.as_bytes()),
        }))
        .send()
        .await
        .unwrap()
}

/// Item 2: SIWE checks the message's domain and URI against `web.public_url`, its
/// statement, and that it was not issued in the future or has expired; the session
/// cookie is `Secure` when the public URL is https.
async fn sign_in_messages_are_checked_against_the_public_url(db: TestDb) {
    let s = Server::start(db, |c, addr| {
        let mut c = c.for_public_url(
            &web::PublicUrl::parse("https://arena.example").unwrap(),
            &[addr.to_string()],
        );
        c.demo_login = false;
        c
    })
    .await;
    let address = format!("{:#x}", chain::dev::dev_accounts(4)[3]);
    let fresh = || async {
        let r: Value = s
            .http
            .get(s.url(&format!("/api/v1/auth/nonce?address={address}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["message"].as_str().unwrap().to_string()
    };
    let message = fresh().await;
    assert!(message.starts_with("arena.example wants you"), "{message}");
    assert!(message.contains("URI: https://arena.example"), "{message}");

    let tampered = [
        // Another site's URI under our domain.
        message.replace("URI: https://arena.example", "URI: https://evil.example"),
        // Plain http where the public URL is https.
        message.replace("URI: https://arena.example", "URI: http://arena.example"),
        // A different statement (what the user was shown is not what we issue).
        message.replace("Sign in to RLFC Arena.", "Approve a transfer."),
    ];
    for bad in &tampered {
        let r = sign_in(&s, 3, bad).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    // Issued an hour in the future.
    let future = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let m = fresh().await;
    let issued = m.lines().find(|l| l.starts_with("Issued At: ")).unwrap();
    let r = sign_in(&s, 3, &m.replace(issued, &format!("Issued At: {future}"))).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("future"),
        "{body}"
    );
    // Expired.
    let past = (time::OffsetDateTime::now_utc() - time::Duration::minutes(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let m = fresh().await;
    let exp = m
        .lines()
        .find(|l| l.starts_with("Expiration Time: "))
        .unwrap();
    let r = sign_in(&s, 3, &m.replace(exp, &format!("Expiration Time: {past}"))).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // The untouched message signs in, with a Secure cookie.
    let r = sign_in(&s, 3, &fresh().await).await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("rlfc_session="))
        .unwrap()
        .to_string();
    assert!(cookie.contains("Secure"), "{cookie}");
}
both_db!(sign_in_messages_are_checked_against_the_public_url);

/// Item 2: logout can end every session of the user, not only the one it came from.
async fn logout_can_end_every_session(db: TestDb) {
    let s = Server::start(db, |c, addr| c.for_public_url(&public(addr), &[])).await;
    let (laptop, laptop_csrf) = s.login(4).await;
    let (phone, _) = s.login(4).await;
    let me = |cookie: String| {
        let http = s.http.clone();
        let url = s.url("/api/v1/me");
        async move {
            http.get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(me(phone.clone()).await, StatusCode::OK);
    let out = s
        .http
        .post(s.url("/api/v1/auth/logout?all=true"))
        .header("cookie", &laptop)
        .header("x-csrf-token", &laptop_csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert_eq!(me(laptop).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        me(phone).await,
        StatusCode::UNAUTHORIZED,
        "the other session ended"
    );
}
both_db!(logout_can_end_every_session);

/// Item 3: issuing sign-in nonces (an unauthenticated write) is rate-limited per
/// address (before: 2,000 in a row all succeeded), and expired nonces and sessions
/// are purged.
async fn nonces_are_rate_limited_and_expired_sign_ins_purged(db: TestDb) {
    let s = Server::start(db, |c, addr| WebConfig {
        ip_writes_per_minute: 5,
        ..c.for_public_url(&public(addr), &[])
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(
            s.http
                .get(s.url("/api/v1/auth/nonce"))
                .send()
                .await
                .unwrap()
                .status(),
        );
    }
    assert_eq!(
        statuses.iter().filter(|c| **c == StatusCode::OK).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(statuses[7], StatusCode::TOO_MANY_REQUESTS);

    let store = s.app.store();
    let now = store::now_ms();
    store
        .create_nonce("expiredexpired01", now - 1)
        .await
        .unwrap();
    store
        .create_nonce("livelivelive0001", now + 60_000)
        .await
        .unwrap();
    let user = store
        .upsert_user(&format!("0x{}", "5a".repeat(20)))
        .await
        .unwrap();
    store
        .create_session("expired-hash", user.id, "csrf", now - 1)
        .await
        .unwrap();
    store
        .create_session("live-hash", user.id, "csrf", now + 60_000)
        .await
        .unwrap();
    let (nonces, sessions) = store.purge_expired_auth(store::now_ms()).await.unwrap();
    assert!(nonces >= 1 && sessions == 1, "{nonces} {sessions}");
    assert!(store.consume_nonce("livelivelive0001").await.unwrap());
    assert!(store.session("live-hash").await.unwrap().is_some());
}
both_db!(nonces_are_rate_limited_and_expired_sign_ins_purged);

/// A match that is playing (spectators stay connected to it).
async fn running_match(store: &store::Store) -> i64 {
    let (space_id, tier_id) = testkit::fixtures::fixture_space(store).await;
    let mut entries = Vec::new();
    for i in 0..2u8 {
        let u = store
            .upsert_user(&format!("0x{}", format!("{:02x}", 0x60 + i).repeat(20)))
            .await
            .unwrap();
        store
            .deposit(u.id, store::Wei(1000), &format!("live{i}"))
            .await
            .unwrap();
        let (_, v) = store
            .create_agent(
                u.id,
                "live",
                "smollm2-135m",
                &store::NewAgentVersion {
                    system_prompt: "x".into(),
                    sampling: json!({}),
                    training: json!({}),
                    adapter_hash: None,
                },
            )
            .await
            .unwrap();
        entries.push(store.enter(u.id, v.id, tier_id).await.unwrap().id);
    }
    let m = store
        .create_match(space_id, tier_id, 1, "v", &entries)
        .await
        .unwrap();
    store.start_match(m.id).await.unwrap();
    m.id
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect_ws(
    s: &Server,
    path: &str,
    forwarded: Option<&str>,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{}{path}", s.addr)
        .into_client_request()
        .unwrap();
    if let Some(f) = forwarded {
        req.headers_mut()
            .insert("x-forwarded-for", f.parse().unwrap());
    }
    tokio_tungstenite::connect_async(req).await.map(|(s, _)| s)
}

/// Item 3: a spectator's oversized message ends its socket instead of being read in
/// full (before: a 40 MiB message was buffered whole), and connects are rate-limited.
async fn websocket_messages_and_connects_are_capped(db: TestDb) {
    let s = Server::start(db, |c, addr| WebConfig {
        ws_connects_per_minute: 3,
        ..c.for_public_url(&public(addr), &[])
    })
    .await;
    let path = format!("/ws/matches/{}", running_match(s.app.store()).await);
    let mut socket = connect_ws(&s, &path, None).await.unwrap();
    let big = "x".repeat(1024 * 1024);
    // The server may drop the connection while the client is still sending.
    let _ = socket.send(Message::text(big)).await;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match socket.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert_eq!(
        ended,
        Ok(true),
        "the socket ends after an oversized message"
    );
    // Three connects a minute: two more succeed, the fourth is refused.
    let _a = connect_ws(&s, &path, None).await.unwrap();
    let _b = connect_ws(&s, &path, None).await.unwrap();
    let refused = connect_ws(&s, &path, None).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        }
        other => panic!("expected a 429, got {other:?}"),
    }
}
both_db!(websocket_messages_and_connects_are_capped);

/// Item 3: behind a trusted proxy the per-address spectator cap counts the forwarded
/// client, and from anyone else `X-Forwarded-For` is ignored (it cannot be spoofed to
/// dodge the cap).
async fn the_spectator_cap_knows_a_trusted_proxy(db: TestDb) {
    let direct = Server::start(db, |c, addr| WebConfig {
        ws_per_ip: 1,
        ..c.for_public_url(&public(addr), &[])
    })
    .await;
    let path = format!("/ws/matches/{}", running_match(direct.app.store()).await);
    let _one = connect_ws(&direct, &path, Some("198.51.100.1"))
        .await
        .unwrap();
    assert!(
        connect_ws(&direct, &path, Some("198.51.100.2"))
            .await
            .is_err(),
        "an untrusted peer's forwarded address is ignored"
    );

    let proxied = Server::start(TestDb::sqlite().await, |c, addr| WebConfig {
        ws_per_ip: 1,
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..c.for_public_url(&public(addr), &[])
    })
    .await;
    let path = format!("/ws/matches/{}", running_match(proxied.app.store()).await);
    let _a = connect_ws(&proxied, &path, Some("198.51.100.1"))
        .await
        .unwrap();
    let _b = connect_ws(&proxied, &path, Some("198.51.100.2"))
        .await
        .unwrap();
    assert!(
        connect_ws(&proxied, &path, Some("203.0.113.9, 198.51.100.1"))
            .await
            .is_err(),
        "the same client through the proxy is capped"
    );
}
both_db!(the_spectator_cap_knows_a_trusted_proxy);

/// Item 4: one queued entry per agent per (Space, tier); before, 15 duplicate free
/// entries of one agent were accepted.
async fn an_agent_queues_once_per_tier(db: TestDb) {
    let s = Server::start(db, |c, addr| c.for_public_url(&public(addr), &[])).await;
    let (cookie, csrf) = s.login(5).await;
    let post = |path: &str, body: Value| {
        s.http
            .post(s.url(path))
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf)
            .json(&body)
            .send()
    };
    let agent: Value = post(
        "/api/v1/agents",
        json!({"name": "eager", "base_model": "smollm2-135m", "system_prompt": "Be brief."}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let agent_id = agent["agent"]["id"].as_i64().unwrap();
    let space = s.app.store().space_by_slug("tweet-duel").await.unwrap();
    let free = s.app.store().fee_tiers(space.id).await.unwrap()[0].id;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            post(
                "/api/v1/entries",
                json!({"agent_id": agent_id, "fee_tier_id": free}),
            )
            .await
            .unwrap()
            .status(),
        );
    }
    assert_eq!(statuses[0], StatusCode::CREATED);
    assert!(
        statuses[1..].iter().all(|c| *c == StatusCode::CONFLICT),
        "{statuses:?}"
    );
    let queued = s
        .app
        .store()
        .queued_entries(space.id, free)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.agent_id == agent_id)
        .count();
    assert_eq!(queued, 1);
}
both_db!(an_agent_queues_once_per_tier);

/// Item 1: the public export and the `/datasets` page never show an agent's
/// meta-prompt (before: every pair carried the chosen agent's system prompt); the
/// prompt is the round as the Space posed it, with the exact prompt's hash for proofs.
/// An owner may opt an agent in, and then its exact prompt is published.
async fn meta_prompts_stay_private_unless_opted_in(db: TestDb) {
    let s = Server::start(db, |c, addr| c.for_public_url(&public(addr), &[])).await;
    let played = testkit::fixtures::played_match(s.app.store(), 3).await;
    let secret = "You are agent 0.";
    let export = || async {
        s.http
            .get(s.url("/api/v1/datasets/preferences"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let body = export().await;
    assert!(!body.is_empty());
    assert!(!body.contains(secret), "the meta-prompt leaked: {body}");
    let rows: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for row in &rows {
        assert_eq!(row["prompt"], "Write a tweet about tea.");
        assert!(row["policy_prompt"].is_null());
        assert_eq!(row["prompt_sha256"].as_str().unwrap().len(), 64);
    }
    let conversational = s
        .http
        .get(s.url("/api/v1/datasets/preferences?format=trl-conversational"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!conversational.contains(secret));
    let page = s
        .http
        .get(s.url("/datasets"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Write a tweet about tea."));
    assert!(
        !page.contains(secret),
        "the datasets page leaked the meta-prompt"
    );

    // The owner of seat 0 opts in through the API: its pairs now carry the exact
    // prompt, whose hash is the one published before.
    let token = "rlfc_security_suite_owner_token";
    let hash = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(token.as_bytes()))
    };
    s.app
        .store()
        .create_api_token(played.user_ids[0], "suite", &hash, "rlfc_secu")
        .await
        .unwrap();
    let opt = s
        .http
        .patch(s.url(&format!("/api/v1/agents/{}", played.agent_ids[0])))
        .bearer_auth(token)
        .json(&json!({"public_prompt": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(opt.status(), StatusCode::OK);
    let view: Value = opt.json().await.unwrap();
    assert_eq!(view["agent"]["public_prompt"], true);
    let after: Vec<Value> = export()
        .await
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mine: Vec<&Value> = after
        .iter()
        .filter(|r| r["chosen_agent_id"] == played.agent_ids[0])
        .collect();
    assert!(!mine.is_empty());
    for row in mine {
        let exact = row["policy_prompt"].as_str().unwrap();
        assert!(exact.contains(secret));
        assert_eq!(
            row["prompt_sha256"].as_str().unwrap(),
            platform::learning::prompt_sha256(exact)
        );
    }
    // Nobody else's.
    assert!(
        after
            .iter()
            .filter(|r| r["chosen_agent_id"] != played.agent_ids[0])
            .all(|r| r["policy_prompt"].is_null())
    );
}
both_db!(meta_prompts_stay_private_unless_opted_in);

/// Item 2: API tokens carry scopes and an expiry, and a token cannot mint tokens.
async fn api_tokens_have_scopes_and_expire(db: TestDb) {
    let s = Server::start(db, |c, addr| c.for_public_url(&public(addr), &[])).await;
    let (cookie, csrf) = s.login(6).await;
    let mint = |body: Value| {
        s.http
            .post(s.url("/api/v1/tokens"))
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf)
            .json(&body)
            .send()
    };
    let read_only: Value = mint(json!({"name": "reader", "scopes": ["read"]}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read_only["info"]["scopes"], json!(["read"]));
    let reader = read_only["token"].as_str().unwrap().to_string();
    let default: Value = mint(json!({"name": "player"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(default["info"]["scopes"], json!(["read", "play"]));
    assert!(default["info"]["expires_at"].as_i64().unwrap() > store::now_ms());
    let player = default["token"].as_str().unwrap().to_string();
    let bad = mint(json!({"name": "x", "scopes": ["admin"]}))
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let bad = mint(json!({"name": "x", "expires_in_days": 5000}))
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let as_bearer = |token: &str, method: reqwest::Method, path: &str, body: Value| {
        s.http
            .request(method, s.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let agent = json!({"name": "bot", "base_model": "smollm2-135m", "system_prompt": "x"});
    let r = as_bearer(&reader, reqwest::Method::GET, "/api/v1/me", json!({}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = as_bearer(
        &reader,
        reqwest::Method::POST,
        "/api/v1/agents",
        agent.clone(),
    )
    .await
    .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "a read token cannot play"
    );
    let r = as_bearer(&player, reqwest::Method::POST, "/api/v1/agents", agent)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = as_bearer(
        &player,
        reqwest::Method::POST,
        "/api/v1/account/withdraw",
        json!({"amount_wei": "1"}),
    )
    .await
    .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "withdrawing needs its scope"
    );
    let r = as_bearer(
        &player,
        reqwest::Method::POST,
        "/api/v1/tokens",
        json!({"name": "child", "scopes": ["read", "play", "withdraw"]}),
    )
    .await
    .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "a token cannot mint tokens"
    );

    // An expired token is no token.
    let expired = "rlfc_security_suite_expired_token";
    let hash = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(expired.as_bytes()))
    };
    let me: Value = as_bearer(&player, reqwest::Method::GET, "/api/v1/me", json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    s.app
        .store()
        .create_scoped_api_token(
            me["user"]["id"].as_i64().unwrap(),
            "old",
            &hash,
            "rlfc_secu",
            "read",
            Some(store::now_ms() - 1),
        )
        .await
        .unwrap();
    let r = as_bearer(expired, reqwest::Method::GET, "/api/v1/me", json!({}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
both_db!(api_tokens_have_scopes_and_expire);

/// Item 3: a meta-prompt is limited in tokens of the agents' model, not characters
/// (before: a 4,000-character emoji prompt was 10,032 tokens, over the context, and got
/// other players' matches refunded).
async fn meta_prompts_are_limited_in_tokens(db: TestDb) {
    let gguf = models::smollm2_gguf().expect("SmolLM2 weights (rlfc models fetch)");
    let tokenizer = std::sync::Arc::new(agents::ChatTokenizer::from_gguf_path(&gguf).unwrap());
    let count: web::TokenCounter = std::sync::Arc::new(move |text: &str| {
        tokenizer
            .encode(text)
            .map(|ids| ids.len())
            .map_err(|e| e.to_string())
    });
    let s = Server::start_counting(
        db,
        |c, addr| c.for_public_url(&public(addr), &[]),
        Some(count),
    )
    .await;
    let (cookie, csrf) = s.login(7).await;
    let create = |prompt: String| {
        s.http
            .post(s.url("/api/v1/agents"))
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf)
            .json(&json!({"name": "emoji", "base_model": "smollm2-135m", "system_prompt": prompt}))
            .send()
    };
    // 2,000 characters (within the character limit), far over 1,024 tokens.
    let r = create("\u{1F642}\u{1F680}".repeat(1000)).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["field"], "system_prompt");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1024 tokens"),
        "{body}"
    );
    let r = create("Answer briefly and kindly. ".repeat(30))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // Editing to an over-long prompt is refused the same way.
    let agent: Value = r.json().await.unwrap();
    let id = agent["agent"]["id"].as_i64().unwrap();
    let r = s
        .http
        .patch(s.url(&format!("/api/v1/agents/{id}")))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"system_prompt": "\u{1F642}".repeat(2000)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
both_db!(meta_prompts_are_limited_in_tokens);

/// Item 6: standard security headers on every response (no framing by other sites),
/// `no-store` on signed-in responses, names without control or bidirectional-override
/// characters, and an OpenAPI document that names the project and lists the 422 and
/// 429 answers with the limits the server enforces.
async fn responses_carry_security_headers_and_names_are_clean(db: TestDb) {
    let s = Server::start(db, |c, addr| c.for_public_url(&public(addr), &[])).await;
    let home = s.http.get(s.url("/")).send().await.unwrap();
    let h = home.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h.get("referrer-policy").is_some());
    let (cookie, csrf) = s.login(8).await;
    let balance = s
        .http
        .get(s.url("/api/v1/account/balance"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(balance.headers()["cache-control"], "no-store");
    let account = s
        .http
        .get(s.url("/account"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(account.headers()["cache-control"], "no-store");

    // A name that reads as another (right-to-left override, zero-width space) or
    // holds control characters is refused, naming the field.
    for name in ["evil\u{202E}gnp.exe", "rival\u{200B}", "two\nlines"] {
        let r = s
            .http
            .post(s.url("/api/v1/agents"))
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf)
            .json(&json!({"name": name, "base_model": "smollm2-135m", "system_prompt": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{name:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["field"], "name");
    }

    let doc: Value = s
        .http
        .get(s.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["info"]["title"], "RLFC Arena API");
    let create = &doc["paths"]["/api/v1/agents"]["post"]["responses"];
    assert!(
        create.get("422").is_some() && create.get("429").is_some(),
        "{create}"
    );
    let new_agent = &doc["components"]["schemas"]["NewAgent"]["properties"];
    assert_eq!(new_agent["name"]["maxLength"], 64, "{new_agent}");
    assert_eq!(new_agent["system_prompt"]["maxLength"], 4000);
}
both_db!(responses_carry_security_headers_and_names_are_clean);

/// Item 3: the export checks its filters before it scans: an unknown agent or
/// training run is a 404, a bad number a 422 naming it.
async fn the_export_checks_its_filters(db: TestDb) {
    let s = Server::start(db, |c, addr| c.for_public_url(&public(addr), &[])).await;
    testkit::fixtures::played_match(s.app.store(), 2).await;
    for (query, status) in [
        ("agent=987654", StatusCode::NOT_FOUND),
        ("training_run=987654", StatusCode::NOT_FOUND),
        ("space=no-such-space", StatusCode::NOT_FOUND),
        ("min_agreement=2", StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let r = s
            .http
            .get(s.url(&format!("/api/v1/datasets/preferences?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{query}");
    }
}
both_db!(the_export_checks_its_filters);

/// Item 3: heavy public reads come a page at a time: the leaderboard API takes
/// `offset` and `limit` (at most 500) and says the total; the Space page shows 50 rows.
async fn leaderboards_are_paginated(db: TestDb) {
    let s = Server::start(db, |c, addr| c.for_public_url(&public(addr), &[])).await;
    let played = testkit::fixtures::played_match(s.app.store(), 4).await;
    let space = s.app.store().space(played.space_id).await.unwrap();
    let url = |q: &str| s.url(&format!("/api/v1/spaces/{}/leaderboard?{q}", space.slug));
    let r = s.http.get(url("limit=2")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-total-count"], "4");
    let first: Vec<Value> = r.json().await.unwrap();
    assert_eq!(first.len(), 2);
    let rest: Vec<Value> = s
        .http
        .get(url("offset=2&limit=2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest[0]["rank"], 3);
    assert_ne!(first[0]["agent_id"], rest[0]["agent_id"]);
    for bad in ["limit=0", "limit=501", "limit=-1"] {
        let r = s.http.get(url(bad)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let page = s
        .http
        .get(s.url(&format!("/spaces/{}?page=1", space.slug)))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
}
both_db!(leaderboards_are_paginated);
