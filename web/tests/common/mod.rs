//! Shared test harness: an app over a fresh database (SQLite or PostgreSQL), requests
//! sent in process with `oneshot`, and signed-in clients.

#![allow(dead_code)]

pub mod browser;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::Value;
use testkit::db::TestDb;
use testkit::payments::LedgerPayments;
use tower::ServiceExt as _;
use web::{AppState, WebConfig};

/// Makes a SQLite and a PostgreSQL test of `async fn $check(app: TestApp)`.
#[macro_export]
macro_rules! both {
    ($check:ident) => {
        mod $check {
            #[tokio::test]
            async fn sqlite() {
                let db = testkit::db::TestDb::sqlite().await;
                super::$check($crate::common::TestApp::new(db).await).await;
            }
            #[tokio::test]
            async fn postgres() {
                if let Some(db) = testkit::db::TestDb::postgres().await {
                    super::$check($crate::common::TestApp::new(db).await).await;
                }
            }
        }
    };
}

/// The test configuration: demo login on, cookies not `Secure` (plain HTTP).
pub fn config() -> WebConfig {
    WebConfig {
        demo_login: true,
        cookie_secure: false,
        ..WebConfig::default()
    }
}

/// The Space rulebooks shipped under `assets/spaces`.
pub fn rulebooks() -> Vec<spaces::Rulebook> {
    spaces::load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/spaces")).expect("rulebooks")
}

/// An app over its own database.
pub struct TestApp {
    /// Keeps the database alive.
    pub db: TestDb,
    /// The state (store, bus…).
    pub state: AppState,
    /// The router under test.
    pub router: Router,
}

/// How a request authenticates.
#[derive(Debug, Clone, Default)]
pub struct Who {
    /// `rlfc_session=…`.
    pub cookie: Option<String>,
    /// The CSRF token to send with cookie writes.
    pub csrf: Option<String>,
    /// An API token.
    pub bearer: Option<String>,
    /// The user id.
    pub user_id: i64,
}

impl Who {
    /// Nobody.
    pub fn anon() -> Who {
        Who::default()
    }

    /// The same session without its CSRF token.
    pub fn without_csrf(&self) -> Who {
        Who {
            csrf: None,
            ..self.clone()
        }
    }
}

/// A response: status, JSON body (or `Value::String` for text), headers.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Body as JSON (text bodies as a string).
    pub json: Value,
    /// Headers.
    pub headers: HeaderMap,
    /// The body as text.
    pub text: String,
}

impl Reply {
    /// The error code of an error reply.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }

    /// The field of a validation error.
    pub fn field(&self) -> &str {
        self.json["error"]["field"].as_str().unwrap_or("")
    }
}

impl TestApp {
    /// An app with the default test configuration.
    pub async fn new(db: TestDb) -> TestApp {
        TestApp::with_config(db, config()).await
    }

    /// An app with `config`.
    pub async fn with_config(db: TestDb, config: WebConfig) -> TestApp {
        let store = db.store.clone();
        let state = AppState::new(
            store.clone(),
            platform::bus::Bus::new(),
            rulebooks(),
            Arc::new(LedgerPayments::new(store)),
            config,
        );
        let router = web::router(state.clone());
        TestApp { db, state, router }
    }

    /// The store.
    pub fn store(&self) -> &store::Store {
        &self.db.store
    }

    /// Sends a request and reads the whole reply.
    pub async fn send(&self, req: Request<Body>) -> Reply {
        let res = self.router.clone().oneshot(req).await.expect("infallible");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(text.clone()));
        Reply {
            status,
            json,
            headers,
            text,
        }
    }

    /// Sends `method uri` as `who` with an optional JSON body.
    pub async fn call(&self, method: Method, uri: &str, who: &Who, body: Option<Value>) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(c) = &who.cookie {
            req = req.header(header::COOKIE, c);
        }
        if let Some(t) = &who.csrf {
            req = req.header("x-csrf-token", t);
        }
        if let Some(b) = &who.bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {b}"));
        }
        let req = match body {
            Some(v) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string())),
            None => req.body(Body::empty()),
        };
        self.send(req.expect("request")).await
    }

    /// GET as `who`.
    pub async fn get(&self, uri: &str, who: &Who) -> Reply {
        self.call(Method::GET, uri, who, None).await
    }

    /// POST JSON as `who`.
    pub async fn post(&self, uri: &str, who: &Who, body: Value) -> Reply {
        self.call(Method::POST, uri, who, Some(body)).await
    }

    /// Signs in with the dev login as dev account `account`.
    pub async fn login(&self, account: usize) -> Who {
        let r = self
            .call(
                Method::POST,
                &format!("/api/v1/auth/dev-login?account={account}"),
                &Who::anon(),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
        Who {
            cookie: Some(session_cookie(&r.headers)),
            csrf: r.json["csrf_token"].as_str().map(str::to_string),
            bearer: None,
            user_id: r.json["user"]["id"].as_i64().expect("user id"),
        }
    }

    /// Signs in as dev account `account` and credits `wei` to them.
    pub async fn funded(&self, account: usize, wei: u128) -> Who {
        let who = self.login(account).await;
        self.store()
            .deposit(
                who.user_id,
                store::Wei(wei),
                &format!("test:{account}:{wei}"),
            )
            .await
            .expect("deposit");
        who
    }

    /// Creates an agent for `who`; returns its id.
    pub async fn agent(&self, who: &Who, name: &str) -> i64 {
        let r = self
            .post(
                "/api/v1/agents",
                who,
                serde_json::json!({
                    "name": name,
                    "base_model": "smollm2-135m",
                    "system_prompt": "Be brief and kind.",
                }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json);
        r.json["agent"]["id"].as_i64().expect("agent id")
    }
}

/// The `rlfc_session=…` pair from a reply's `Set-Cookie`.
pub fn session_cookie(headers: &HeaderMap) -> String {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("rlfc_session="))
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_string()
}
