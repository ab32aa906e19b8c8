//! Agents choose their base model (issue 21 item 5): the runtime engine serves several
//! base models at once, decoding each one's seats together in every step, and a match
//! whose seats run on two base models plays in one world and records each seat's
//! model in its result. On two tiny random-weight models, so no file is needed.

mod common;

use std::sync::Arc;

use agents::SamplingParams;
use arena::engine::{Engine, EngineOutput, GenRequest, Ticket};
use arena::judging::RulesOnlyJudge;
use arena::types::{MatchResult, MatchSpec, SeatSpec};
use arena::world::MatchWorld;
use common::tiny_model as loaded;
use platform::base_models::AgentModels;
use platform::bus::Bus;
use platform::runtime::{AdapterLibrary, RuntimeEngine};

/// "alpha" (the default) and "beta": two different random models.
fn two_models() -> AgentModels {
    AgentModels::new(vec![loaded("alpha", 'a', 2, 1), loaded("beta", 'b', 3, 2)])
}

fn library() -> (tempfile::TempDir, Arc<AdapterLibrary>) {
    let dir = tempfile::tempdir().unwrap();
    let lib = Arc::new(AdapterLibrary::new(dir.path().join("adapters")));
    (dir, lib)
}

/// Seeded sampling from the whole distribution, repeats penalised: a random-weight
/// model with tied embeddings otherwise copies the prompt's last token whatever its
/// weights, and two different models would look alike.
fn sampled() -> SamplingParams {
    SamplingParams {
        temperature: 1.0,
        top_p: 1.0,
        repetition_penalty: 2.0,
        ..SamplingParams::default()
    }
}

fn request(base_model: &str, user: &str, seed: u64) -> GenRequest {
    GenRequest {
        system: "You are terse.".into(),
        user: user.into(),
        sampling: sampled(),
        seed,
        adapter_hash: None,
        base_model: base_model.into(),
        max_new_tokens: 12,
    }
}

/// Runs the engine until every ticket is done; the texts by ticket.
fn drain(engine: &mut dyn Engine) -> std::collections::BTreeMap<Ticket, String> {
    let mut texts = std::collections::BTreeMap::new();
    for step in 0.. {
        assert!(step < 100, "the engine finishes");
        for out in engine.step().unwrap() {
            if let EngineOutput::Done { ticket, text, .. } = out {
                texts.insert(ticket, text);
            }
        }
        if engine.live() == 0 {
            break;
        }
    }
    texts
}

#[test]
fn one_engine_serves_two_base_models_each_seat_on_its_own() {
    let models = two_models();
    let (_dir, adapters) = library();
    let mut both = RuntimeEngine::serving(&models, adapters.clone());
    let asks = [
        ("alpha", "Add 2 and 3.", 7),
        ("beta", "Add 2 and 3.", 7),
        ("", "Name a colour.", 8),
        ("beta", "Name a colour.", 8),
    ];
    let tickets: Vec<Ticket> = asks
        .iter()
        .map(|(m, u, s)| both.submit(request(m, u, *s)).unwrap())
        .collect();
    // One step decodes a token for every sequence of every model: each base model's
    // batch runs in the same step.
    assert!(
        both.step()
            .unwrap()
            .iter()
            .all(|o| matches!(o, EngineOutput::Delta { .. }))
    );
    assert_eq!(both.generated_tokens(), 4);
    let texts = drain(&mut both);
    // Each answer is the one its own model gives alone.
    for (i, (m, u, s)) in asks.iter().enumerate() {
        let own = models.get(m).unwrap();
        let mut alone =
            RuntimeEngine::new(own.model.clone(), own.tokenizer.clone(), adapters.clone());
        alone.submit(request("", u, *s)).unwrap();
        let alone_texts = drain(&mut alone);
        assert_eq!(
            texts[&tickets[i]],
            alone_texts.into_values().next().unwrap(),
            "request {i} on {m:?}"
        );
    }
    assert_ne!(
        texts[&tickets[0]], texts[&tickets[1]],
        "the two models answer the same request differently"
    );
    // A model the engine does not serve is refused by name.
    let e = both.submit(request("gamma", "x", 1)).unwrap_err();
    assert!(
        e.0.contains("\"gamma\"") && e.0.contains("alpha, beta"),
        "{e}"
    );
}

fn seats(models: &[(&str, char)]) -> Vec<SeatSpec> {
    models
        .iter()
        .enumerate()
        .map(|(i, (name, sha))| SeatSpec {
            entry_id: 10 + i as i64,
            agent_id: 100 + i as i64,
            agent_version_id: 200 + i as i64,
            system_prompt: format!("You are agent {i}."),
            sampling: sampled(),
            adapter_hash: None,
            base_model: name.to_string(),
            base_model_sha256: Some(sha.to_string().repeat(64)),
        })
        .collect()
}

fn play(engine: Box<dyn Engine>, seats: Vec<SeatSpec>) -> MatchResult {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/spaces");
    let book = spaces::load_dir(dir)
        .unwrap()
        .into_iter()
        .find(|b| b.slug == "math-sprint")
        .unwrap();
    let mut world = MatchWorld::new(engine, Box::new(RulesOnlyJudge), Bus::new());
    world.add_match(MatchSpec {
        match_id: 1,
        rulebook: Arc::new(book),
        seed: 99,
        seats,
        deadline_ms: i64::MAX,
    });
    for tick in 0..10_000 {
        if let Some(o) = world.tick(tick).pop() {
            return o.result.unwrap();
        }
    }
    panic!("the match did not finish");
}

fn answers(result: &MatchResult, seat: usize) -> Vec<String> {
    result
        .rounds
        .iter()
        .map(|r| r.seats[seat].text.clone())
        .collect()
}

#[test]
fn a_match_on_two_base_models_plays_in_one_world_and_records_each_seats_model() {
    let models = two_models();
    let (_dir, adapters) = library();
    let mixed = play(
        Box::new(RuntimeEngine::serving(&models, adapters.clone())),
        seats(&[("alpha", 'a'), ("beta", 'b'), ("alpha", 'a'), ("beta", 'b')]),
    );
    assert_eq!(
        mixed.base_models,
        vec![
            "a".repeat(64),
            "b".repeat(64),
            "a".repeat(64),
            "b".repeat(64)
        ],
        "the result commits to each seat's base model"
    );
    // The same match with every seat on alpha: the alpha seats answer as before (each
    // seat decodes as it would alone), the beta seats differently.
    let alpha = play(
        Box::new(RuntimeEngine::serving(&models, adapters)),
        seats(&[
            ("alpha", 'a'),
            ("alpha", 'a'),
            ("alpha", 'a'),
            ("alpha", 'a'),
        ]),
    );
    assert_eq!(answers(&mixed, 0), answers(&alpha, 0));
    assert_eq!(answers(&mixed, 2), answers(&alpha, 2));
    assert_ne!(answers(&mixed, 1), answers(&alpha, 1));
    assert_ne!(mixed.hash(), alpha.hash());
}

#[test]
fn a_result_without_every_seats_model_hashes_as_before() {
    let models = two_models();
    let (_dir, adapters) = library();
    let mut old = seats(&[("alpha", 'a'), ("beta", 'b'), ("alpha", 'a'), ("beta", 'b')]);
    old[1].base_model_sha256 = None;
    let result = play(Box::new(RuntimeEngine::serving(&models, adapters)), old);
    assert!(result.base_models.is_empty());
    assert!(
        !serde_json::to_string(&result)
            .unwrap()
            .contains("base_models"),
        "a replay of a match settled before seats recorded their model reproduces its hash"
    );
}
