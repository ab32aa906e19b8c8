//! Agents choose their base model (issue 21 item 5): the API lists the served base
//! models, an agent must name one of them (the default's old alias included), the
//! agent's public face carries the model's hash, and the studio offers the choice.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use common::{TestApp, Who};
use platform::base_models::{BaseModelFile, BaseModelMenu, DEFAULT_BASE_MODEL};
use serde_json::json;

/// The app serving SmolLM2 and one listed file, "qwen-mini".
fn with_two_models(mut app: TestApp) -> TestApp {
    let menu = BaseModelMenu::from_config(&platform::config::ModelsConfig {
        dir: "/unused".into(),
        python: "python3".into(),
        pip_args: Vec::new(),
        base_models: BTreeMap::from([(
            "qwen-mini".to_string(),
            BaseModelFile {
                path: "/models/qwen-mini.gguf".into(),
                sha256: "ab".repeat(32),
                description: "Qwen2 mini, Q4_0".into(),
            },
        )]),
    });
    app.state = app.state.clone().with_base_models(Arc::new(menu));
    app.router = web::router(app.state.clone());
    app
}

async fn agents_choose_a_served_base_model(app: TestApp) {
    let app = with_two_models(app);
    let listed = app.get("/api/v1/base-models", &Who::anon()).await;
    assert_eq!(listed.status, StatusCode::OK);
    let models = listed.json.as_array().unwrap();
    assert_eq!(models.len(), 2);
    assert_eq!(models[0]["name"], DEFAULT_BASE_MODEL);
    assert_eq!(
        models[0]["sha256"],
        models::SMOLLM2.files[0].sha256.as_str()
    );
    assert_eq!(models[0]["default"], true);
    assert_eq!(models[1]["name"], "qwen-mini");
    assert_eq!(models[1]["sha256"], "ab".repeat(32));
    assert_eq!(models[1]["description"], "Qwen2 mini, Q4_0");

    let who = app.login(3).await;
    let body =
        |model: &str| json!({"name": "Poet", "base_model": model, "system_prompt": "Rhyme."});
    let refused = app.post("/api/v1/agents", &who, body("llama-70b")).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.field(), "base_model");
    let message = refused.json.to_string();
    assert!(
        message.contains("not served here") && message.contains("smollm2-135m-instruct, qwen-mini"),
        "{message}"
    );

    let qwen = app.post("/api/v1/agents", &who, body("qwen-mini")).await;
    assert_eq!(qwen.status, StatusCode::CREATED, "{:?}", qwen.json);
    assert_eq!(qwen.json["agent"]["base_model"], "qwen-mini");
    assert_eq!(qwen.json["agent"]["base_model_sha256"], "ab".repeat(32));
    let id = qwen.json["agent"]["id"].as_i64().unwrap();
    assert_eq!(app.store().agent(id).await.unwrap().base_model, "qwen-mini");

    // The name agents were created with before the menu is the default, stored by
    // its served name.
    let old = app.post("/api/v1/agents", &who, body("smollm2-135m")).await;
    assert_eq!(old.status, StatusCode::CREATED, "{:?}", old.json);
    assert_eq!(old.json["agent"]["base_model"], DEFAULT_BASE_MODEL);
    assert_eq!(
        old.json["agent"]["base_model_sha256"],
        models::SMOLLM2.files[0].sha256.as_str()
    );

    // The studio offers the served models, the default chosen, and the agent's page
    // names its model and hash.
    let studio = app.get("/agents/new", &who).await;
    let page = studio.json.as_str().unwrap();
    assert!(
        page.contains(r#"<select id="f-base_model" name="base_model">"#),
        "{page}"
    );
    assert!(page.contains(r#"<option value="qwen-mini""#));
    assert!(page.contains(&format!(
        r#"<option value="{DEFAULT_BASE_MODEL}" title="SmolLM2"#
    )));
    assert!(
        page.contains(" selected>smollm2-135m-instruct</option>"),
        "{page}"
    );
    let agent_page = app.get(&format!("/agents/{id}"), &who).await;
    let page = agent_page.json.as_str().unwrap();
    assert!(page.contains("base model qwen-mini"), "{page}");
    assert!(page.contains(&format!("weights sha256 {}", "ab".repeat(32))));
}
both!(agents_choose_a_served_base_model);
