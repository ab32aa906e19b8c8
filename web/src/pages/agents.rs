//! The agent studio: create an agent, edit its meta-prompt and every hyperparameter
//! (errors shown next to the field at fault), the version history with a word diff
//! of the prompts, the rating chart, recent matches, and training runs with their
//! loss curves and proof-of-learning records.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde_json::{Value, json};
use similar::{ChangeTag, TextDiff};

use super::spaces::CsrfForm;
use super::{charts, nav, render, respond, when};
use crate::api::agents::{self, AgentEdit, NewAgent, VersionView, agent_view};
use crate::api::settings::{SamplingParams, TrainingPolicy};
use crate::auth::{MaybeUser, PageUser};
use crate::error::{Error, Result};
use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/agents/new", get(new_page).post(create))
        .route("/agents/{id}", get(studio).post(save))
        .route("/agents/{id}/archive", post(archive))
        .route("/agents/{id}/auto-entry", post(set_auto_entry))
}

/// One form field: (name, label, kind, min, max, step, hint).
type FieldSpec = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

const IDENTITY: &[FieldSpec] = &[
    ("name", "Name", "text", "", "64", "", "1 to 64 characters"),
    (
        "base_model",
        "Base model",
        "select",
        "",
        "128",
        "",
        "the weights the agent runs on; its adapters train on them",
    ),
];
const PROMPT: FieldSpec = (
    "system_prompt",
    "Meta-prompt",
    "textarea",
    "",
    "4000",
    "",
    "at most 4000 characters",
);
const SETTINGS: &[FieldSpec] = &[
    (
        "sampling.temperature",
        "Temperature",
        "number",
        "0",
        "2",
        "0.01",
        "0 to 2; 0 is greedy",
    ),
    (
        "sampling.top_p",
        "Top p",
        "number",
        "0.01",
        "1",
        "0.01",
        "above 0, at most 1",
    ),
    (
        "sampling.top_k",
        "Top k",
        "number",
        "0",
        "200",
        "1",
        "0 to 200; 0 disables",
    ),
    (
        "sampling.repetition_penalty",
        "Repetition penalty",
        "number",
        "1",
        "2",
        "0.01",
        "1 to 2",
    ),
    (
        "sampling.repeat_last_n",
        "Repeat window",
        "number",
        "0",
        "512",
        "1",
        "0 to 512 tokens",
    ),
    (
        "sampling.max_new_tokens",
        "Max new tokens",
        "number",
        "1",
        "1024",
        "1",
        "1 to 1024",
    ),
    (
        "sampling.stop",
        "Stop strings",
        "text",
        "",
        "140",
        "",
        "comma-separated, up to 4",
    ),
    (
        "training.lora_rank",
        "LoRA rank",
        "number",
        "1",
        "64",
        "1",
        "1 to 64",
    ),
    (
        "training.lora_alpha",
        "LoRA alpha",
        "number",
        "0.1",
        "256",
        "0.1",
        "above 0, at most 256",
    ),
    (
        "training.learning_rate",
        "Learning rate",
        "number",
        "0.0000001",
        "0.01",
        "any",
        "above 0, at most 0.01",
    ),
    (
        "training.dpo_beta",
        "DPO beta",
        "number",
        "0.001",
        "1",
        "0.001",
        "above 0, at most 1",
    ),
    (
        "training.train_every_pairs",
        "Train every K pairs",
        "number",
        "1",
        "10000",
        "1",
        "1 to 10000",
    ),
];

/// The current values of every settings field.
fn settings_values(
    prompt: &str,
    s: &SamplingParams,
    t: &TrainingPolicy,
) -> HashMap<String, String> {
    let mut v = HashMap::new();
    v.insert("system_prompt".into(), prompt.to_string());
    v.insert("sampling.temperature".into(), s.temperature.to_string());
    v.insert("sampling.top_p".into(), s.top_p.to_string());
    v.insert("sampling.top_k".into(), s.top_k.to_string());
    v.insert(
        "sampling.repetition_penalty".into(),
        s.repetition_penalty.to_string(),
    );
    v.insert("sampling.repeat_last_n".into(), s.repeat_last_n.to_string());
    v.insert(
        "sampling.max_new_tokens".into(),
        s.max_new_tokens.to_string(),
    );
    v.insert("sampling.stop".into(), s.stop.join(","));
    v.insert("training.lora_rank".into(), t.lora_rank.to_string());
    v.insert("training.lora_alpha".into(), t.lora_alpha.to_string());
    v.insert("training.learning_rate".into(), t.learning_rate.to_string());
    v.insert("training.dpo_beta".into(), t.dpo_beta.to_string());
    v.insert(
        "training.train_every_pairs".into(),
        t.train_every_pairs.to_string(),
    );
    v
}

fn fields(
    specs: &[&FieldSpec],
    values: &HashMap<String, String>,
    errors: &HashMap<String, String>,
    models: &platform::base_models::BaseModelMenu,
) -> Vec<Value> {
    specs
        .iter()
        .map(|(name, label, kind, min, max, step, hint)| {
            let value = values.get(*name).cloned().unwrap_or_default();
            // The base model is chosen from what the workers serve.
            let options: Vec<Value> = if *kind == "select" {
                let chosen = models.resolve(&value).map(|c| c.name.clone()).ok();
                models
                    .choices()
                    .iter()
                    .map(|c| {
                        json!({"value": c.name, "label": c.name, "title": c.description,
                               "selected": chosen.as_deref() == Some(c.name.as_str())})
                    })
                    .collect()
            } else {
                Vec::new()
            };
            json!({"name": name, "label": label, "kind": kind, "min": min, "max": max, "step": step, "hint": hint,
                   "value": value, "error": errors.get(*name), "options": options})
        })
        .collect()
}

fn all_specs(with_identity: bool) -> Vec<&'static FieldSpec> {
    let mut v: Vec<&FieldSpec> = Vec::new();
    if with_identity {
        v.extend(IDENTITY.iter());
    }
    v.push(&PROMPT);
    v.extend(SETTINGS.iter());
    v
}

/// Reads the settings from a posted form, collecting a message per bad field. The
/// form shows five training fields; the others keep `base`'s values.
fn parse_settings(
    form: &HashMap<String, String>,
    errors: &mut HashMap<String, String>,
    base: &TrainingPolicy,
) -> (SamplingParams, TrainingPolicy) {
    fn num<T: std::str::FromStr>(
        form: &HashMap<String, String>,
        errors: &mut HashMap<String, String>,
        key: &str,
        default: T,
    ) -> T {
        match form.get(key).map(|s| s.trim()) {
            None | Some("") => default,
            Some(text) => text.parse().unwrap_or_else(|_| {
                errors.insert(key.to_string(), "must be a number".into());
                default
            }),
        }
    }
    let d = SamplingParams::default();
    let s = SamplingParams {
        temperature: num(form, errors, "sampling.temperature", d.temperature),
        top_p: num(form, errors, "sampling.top_p", d.top_p),
        top_k: num(form, errors, "sampling.top_k", d.top_k),
        repetition_penalty: num(
            form,
            errors,
            "sampling.repetition_penalty",
            d.repetition_penalty,
        ),
        repeat_last_n: num(form, errors, "sampling.repeat_last_n", d.repeat_last_n),
        max_new_tokens: num(form, errors, "sampling.max_new_tokens", d.max_new_tokens),
        stop: form
            .get("sampling.stop")
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    };
    let d = base.clone();
    let t = TrainingPolicy {
        lora_rank: num(form, errors, "training.lora_rank", d.lora_rank),
        lora_alpha: num(form, errors, "training.lora_alpha", d.lora_alpha),
        learning_rate: num(form, errors, "training.learning_rate", d.learning_rate),
        dpo_beta: num(form, errors, "training.dpo_beta", d.dpo_beta),
        train_every_pairs: num(
            form,
            errors,
            "training.train_every_pairs",
            d.train_every_pairs,
        ),
        ..d.clone()
    };
    (s, t)
}

fn check_csrf(user: &crate::auth::AuthUser, form: &HashMap<String, String>) -> Result<()> {
    user.check_csrf(form.get("_csrf").map(String::as_str).unwrap_or(""))
}

/// Starting points for a first agent: a name and a meta-prompt the studio fills in,
/// each suited to some of the shipped Spaces. The owner edits them before creating.
pub(crate) const TEMPLATES: [AgentTemplate; 4] = [
    AgentTemplate {
        slug: "poet",
        title: "Poet",
        fits: "Haiku, Tweet Duel",
        name: "Quiet Poet",
        prompt: "You are a poet. Answer with exactly what the task asks for and nothing else: \
                 no title, no explanation. Prefer concrete images over abstract words, and \
                 count syllables and characters carefully.",
    },
    AgentTemplate {
        slug: "solver",
        title: "Careful solver",
        fits: "Math Sprint",
        name: "Careful Solver",
        prompt: "You solve arithmetic and word problems. Work the numbers out carefully, then \
                 answer with the final number only, with no units or words around it.",
    },
    AgentTemplate {
        slug: "extractor",
        title: "Exact extractor",
        fits: "JSON Extract",
        name: "Exact Extractor",
        prompt: "You turn text into JSON. Output one JSON object and nothing else: no prose, \
                 no code fences. Use exactly the field names and types the task asks for, and \
                 copy values from the text without inventing any.",
    },
    AgentTemplate {
        slug: "debater",
        title: "Debater",
        fits: "Debate",
        name: "Sharp Debater",
        prompt: "You argue the side you are given. Make one clear claim, support it with a \
                 concrete reason or example, and answer the other side's strongest point \
                 directly. Stay civil and within the length asked for.",
    },
];

/// A starting point for a new agent (see [`TEMPLATES`]).
pub(crate) struct AgentTemplate {
    /// Its key in `/agents/new?template=…`.
    pub slug: &'static str,
    /// What the card says.
    pub title: &'static str,
    /// The Spaces it suits.
    pub fits: &'static str,
    /// The agent's name, filled in.
    pub name: &'static str,
    /// The meta-prompt, filled in.
    pub prompt: &'static str,
}

/// Which template to start from.
#[derive(Debug, Default, serde::Deserialize)]
struct NewQuery {
    #[serde(default)]
    template: Option<String>,
}

async fn new_page(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    axum::extract::Query(query): axum::extract::Query<NewQuery>,
) -> Response {
    let result = async {
        let nav = nav(&state, Some(&user)).await?;
        let chosen = TEMPLATES
            .iter()
            .find(|t| query.template.as_deref() == Some(t.slug));
        let mut values = settings_values(
            chosen.map_or("", |t| t.prompt),
            &SamplingParams::default(),
            &TrainingPolicy::default(),
        );
        values.insert(
            "base_model".into(),
            state.base_models.default_choice().name.clone(),
        );
        if let Some(t) = chosen {
            values.insert("name".into(), t.name.into());
        }
        let templates: Vec<Value> = TEMPLATES
            .iter()
            .map(|t| {
                json!({"slug": t.slug, "title": t.title, "fits": t.fits, "prompt": t.prompt,
                "chosen": chosen.is_some_and(|c| c.slug == t.slug)})
            })
            .collect();
        let ctx = json!({"fields": fields(
            &all_specs(true),
            &values,
            &HashMap::new(),
            &state.base_models,
        ),
            "templates": templates});
        render(&state, "agent_new.html", &nav, "New agent", ctx)
    }
    .await;
    respond(&state, result).await
}

async fn create(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let result = async {
        check_csrf(&user, &form)?;
        let mut errors = HashMap::new();
        let (sampling, training) = parse_settings(&form, &mut errors, &TrainingPolicy::default());
        let new = NewAgent {
            name: form.get("name").cloned().unwrap_or_default(),
            base_model: form.get("base_model").cloned().unwrap_or_default(),
            system_prompt: form.get("system_prompt").cloned().unwrap_or_default(),
            sampling,
            training,
        };
        if errors.is_empty() {
            match agents::create(&state, user.user_id, &new).await {
                Ok(detail) => {
                    return Ok(
                        Redirect::to(&format!("/agents/{}", detail.agent.id)).into_response()
                    );
                }
                Err(Error::Invalid { field, message }) => {
                    errors.insert(field, message);
                }
                Err(e) => return Err(e),
            }
        }
        let nav = nav(&state, Some(&user)).await?;
        let values: HashMap<String, String> = form.into_iter().collect();
        let ctx = json!({"fields": fields(&all_specs(true), &values, &errors, &state.base_models), "templates": []});
        let page = render(&state, "agent_new.html", &nav, "New agent", ctx)?;
        Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
    }
    .await;
    respond(&state, result).await
}

/// Word diff of `old` → `new` as tagged segments.
fn prompt_diff(old: &str, new: &str) -> Vec<Value> {
    TextDiff::from_words(old, new)
        .iter_all_changes()
        .map(|c| {
            let tag = match c.tag() {
                ChangeTag::Equal => "equal",
                ChangeTag::Insert => "insert",
                ChangeTag::Delete => "delete",
            };
            json!({"tag": tag, "text": c.value()})
        })
        .collect()
}

/// Versions shown on an agent's page, newest first.
const PAGE_VERSIONS: usize = 50;
/// Rating points per chart (the most recent).
const CHART_POINTS: usize = 500;
/// Training runs shown, newest first.
const PAGE_RUNS: usize = 20;

async fn studio_context(
    state: &AppState,
    id: i64,
    viewer: Option<i64>,
    form: Option<(HashMap<String, String>, HashMap<String, String>)>,
) -> Result<Value> {
    let agent = state.store.agent(id).await?;
    let owner = viewer == Some(agent.owner_id);
    let view = agent_view(state, agent.clone()).await?;
    let mut versions = Vec::new();
    let mut fields_json = Vec::new();
    if owner {
        let rows = state.store.agent_versions(id).await?;
        // The newest versions only: a long-lived agent's page stays light.
        for (i, v) in rows.iter().enumerate().rev().take(PAGE_VERSIONS) {
            let diff = if i > 0 {
                prompt_diff(&rows[i - 1].system_prompt, &v.system_prompt)
            } else {
                Vec::new()
            };
            let vv = VersionView::from(v.clone());
            versions.push(json!({
                "version": v.version, "when": when(v.created_at), "system_prompt": v.system_prompt, "diff": diff,
                "adapter_hash": v.adapter_hash, "adapter_short": v.adapter_hash.as_deref().map(|h| h.chars().take(12).collect::<String>()),
                "held_back": v.held_back,
                "settings": format!("{} · {}", serde_json::to_string(&vv.sampling).unwrap_or_default(), serde_json::to_string(&vv.training).unwrap_or_default()),
            }));
        }
        let latest = VersionView::from(
            rows.last()
                .cloned()
                .ok_or_else(|| Error::NotFound("version".into()))?,
        );
        let (values, errors) = form.unwrap_or_else(|| {
            (
                settings_values(&latest.system_prompt, &latest.sampling, &latest.training),
                HashMap::new(),
            )
        });
        fields_json = fields(&all_specs(false), &values, &errors, &state.base_models);
    }
    let spaces = state.store.spaces().await?;
    let mut charts_json = Vec::new();
    for r in state.store.agent_ratings(id).await? {
        let history = state.store.rating_history(id, r.space_id).await?;
        // The x-axis counts the agent's matches here, from the prior before the first
        // (match 0), so one match already draws a line; an adapter change moves the
        // rating without a match.
        let prior = arena::ratings::Skill::default();
        let mut points = vec![(0.0, prior.mu, prior.sigma)];
        let mut played = 0u32;
        for p in &history {
            if p.match_id.is_some() {
                played += 1;
            }
            points.push((f64::from(played), p.mu, p.sigma));
        }
        let points = &points[points.len().saturating_sub(CHART_POINTS)..];
        if let Some(svg) = charts::rating_svg(points) {
            let name = spaces
                .iter()
                .find(|s| s.id == r.space_id)
                .map(|s| s.name.clone())
                .unwrap_or_default();
            charts_json.push(json!({"space": name, "svg": svg}));
        }
    }
    let pol = state.store.pol_records(id).await?;
    let mut runs = Vec::new();
    // The store lists runs newest first.
    for run in state
        .store
        .training_runs_for_agent(id)
        .await?
        .into_iter()
        .take(PAGE_RUNS)
    {
        let metrics = state.store.training_metrics(run.id).await?;
        let steps: Vec<(f64, f64)> = metrics.iter().map(|m| (m.step as f64, m.loss)).collect();
        let record = pol.iter().find(|p| p.training_run_id == run.id);
        // The adapter a run keeps is its best held-out check's.
        let best = metrics
            .iter()
            .filter_map(|m| m.validation_loss.map(|v| (v, m)))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(v, m)| {
                format!(
                    "validation loss {v:.3} at step {} (training loss {:.3})",
                    m.step, m.loss
                )
            });
        // What the regression gate found, and whether the new adapter is played.
        let gate = run
            .evaluation
            .as_deref()
            .and_then(|e| serde_json::from_str::<platform::learning::Evaluation>(e).ok())
            .map(|e| json!({"held_back": e.held_back, "summary": e.summary()}));
        runs.push(json!({"id": run.id, "status": run.status, "pairs_root": run.pairs_root, "svg": charts::loss_svg(&steps), "best": best, "gate": gate,
            "pol": record.map(|p| json!({"record_id": p.record_id, "block_number": p.block_number, "new_hash": p.new_hash}))}));
    }
    let matches: Vec<Value> = state
        .store
        .agent_matches(id, 20)
        .await?
        .into_iter()
        .map(|m| json!({"id": m.id, "status": m.status, "when": when(m.created_at)}))
        .collect();
    let auto_entry = if owner {
        auto_entry_rows(state, id).await?
    } else {
        Vec::new()
    };
    Ok(
        json!({"agent": view, "owner": owner, "versions": versions, "fields": fields_json, "charts": charts_json,
              "runs": runs, "matches": matches, "saved": false, "auto_entry": auto_entry, "auto_error": null}),
    )
}

/// The studio's auto-entry table: one row per Space and fee tier, with the agent's
/// rule there (on or off, its spending cap) and what it has spent.
async fn auto_entry_rows(state: &AppState, agent_id: i64) -> Result<Vec<Value>> {
    let rules = state.store.auto_entries_for_agent(agent_id).await?;
    let mut rows = Vec::new();
    for space in state.store.spaces().await? {
        for tier in state.store.fee_tiers(space.id).await? {
            let rule = rules.iter().find(|r| r.fee_tier_id == tier.id);
            let cap = rule.map_or(store::Wei::ZERO, |r| r.cap_wei);
            let spent = rule.map_or(store::Wei::ZERO, |r| r.spent_wei);
            rows.push(json!({
                "space": space.name, "tier_id": tier.id, "tier": tier.name,
                "fee_wei": tier.fee_wei.to_string(), "free": tier.fee_wei == store::Wei::ZERO,
                "enabled": rule.is_some_and(|r| r.enabled != 0),
                "cap_eth": state.money.show(cap).trim_end_matches(&format!(" {}", state.money.symbol)), "cap_wei": cap.to_string(),
                "spent_wei": spent.to_string(),
                "left_wei": cap.checked_sub(spent).unwrap_or(store::Wei::ZERO).to_string(),
            }));
        }
    }
    Ok(rows)
}

/// One auto-entry row of the studio: on or off, and the cap in ETH.
#[derive(Debug, serde::Deserialize)]
struct AutoEntryForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    tier_id: i64,
    #[serde(default)]
    enabled: Option<String>,
    #[serde(default)]
    cap_eth: String,
}

async fn set_auto_entry(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path(id): Path<i64>,
    Form(form): Form<AutoEntryForm>,
) -> Response {
    let result = async {
        user.check_csrf(&form.csrf)?;
        crate::api::owned_agent(&state, user.user_id, id).await?;
        let tier = state.store.fee_tier(form.tier_id).await?;
        let enabled = form.enabled.is_some();
        // A free tier costs nothing: its cap does not matter.
        let cap = if tier.fee_wei == store::Wei::ZERO && form.cap_eth.trim().is_empty() {
            Ok(store::Wei::ZERO)
        } else {
            state
                .money
                .parse(&form.cap_eth)
                .map_err(|e| Error::invalid("cap_eth", e.to_string()))
        };
        match cap {
            Ok(cap) => {
                state
                    .store
                    .set_auto_entry(id, tier.id, cap, enabled)
                    .await?;
                Ok(Redirect::to(&format!("/agents/{id}#auto-entry")).into_response())
            }
            Err(e) => {
                let nav = nav(&state, Some(&user)).await?;
                let mut ctx = studio_context(&state, id, Some(user.user_id), None).await?;
                ctx["auto_error"] = json!(e.body().error.message);
                let title = ctx["agent"]["name"].as_str().unwrap_or("Agent").to_string();
                Ok((e.status(), render(&state, "agent.html", &nav, &title, ctx)?).into_response())
            }
        }
    }
    .await;
    respond(&state, result).await
}

async fn studio(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<i64>,
) -> Response {
    let result = async {
        let nav = nav(&state, user.as_ref()).await?;
        let ctx = studio_context(&state, id, user.as_ref().map(|u| u.user_id), None).await?;
        let title = ctx["agent"]["name"].as_str().unwrap_or("Agent").to_string();
        render(&state, "agent.html", &nav, &title, ctx)
    }
    .await;
    respond(&state, result).await
}

async fn save(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path(id): Path<i64>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let result = async {
        check_csrf(&user, &form)?;
        let mut errors = HashMap::new();
        let base: TrainingPolicy =
            crate::api::settings::stored(&state.store.latest_agent_version(id).await?.training);
        let (sampling, training) = parse_settings(&form, &mut errors, &base);
        if errors.is_empty() {
            let edit = AgentEdit {
                system_prompt: form.get("system_prompt").cloned(),
                sampling: Some(sampling),
                training: Some(training),
                public_prompt: Some(form.contains_key("public_prompt")),
            };
            match agents::edit(&state, user.user_id, id, &edit).await {
                Ok(_) => return Ok(Redirect::to(&format!("/agents/{id}")).into_response()),
                Err(Error::Invalid { field, message }) => {
                    errors.insert(field, message);
                }
                Err(e) => return Err(e),
            }
        }
        let nav = nav(&state, Some(&user)).await?;
        let values: HashMap<String, String> = form.into_iter().collect();
        let ctx = studio_context(&state, id, Some(user.user_id), Some((values, errors))).await?;
        let title = ctx["agent"]["name"].as_str().unwrap_or("Agent").to_string();
        let page = render(&state, "agent.html", &nav, &title, ctx)?;
        Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
    }
    .await;
    respond(&state, result).await
}

async fn archive(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let result = async {
        user.check_csrf(&form.csrf)?;
        crate::api::owned_agent(&state, user.user_id, id).await?;
        state.store.archive_agent(id).await?;
        Ok(Redirect::to(&format!("/agents/{id}")).into_response())
    }
    .await;
    respond(&state, result).await
}
