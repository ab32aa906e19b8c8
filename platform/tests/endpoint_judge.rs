//! Matches judged by the LLM judge over a real `llama-server`: a match plays to a
//! result while the server is up, and once the server dies the next match's round
//! fails whole ("judging failed"), which the runner refunds (the refund of a failed
//! outcome is `world.rs`'s `a_round_that_fails_judging_refunds_only_its_match` and the
//! runner's settle-or-refund path): no match is ever half-judged.

use std::sync::Arc;
use std::time::Duration;

use arena::engine::InstantEngine;
use arena::types::{MatchOutcome, MatchSpec, SeatSpec};
use arena::world::MatchWorld;
use judges::endpoint::{EndpointClient, EndpointConfig};
use platform::bus::Bus;
use platform::runtime::PanelJudge;
use spaces::Rulebook;
use testkit::llama::{LlamaServer, MODEL_ALIAS};

fn tweet_duel() -> Arc<Rulebook> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/spaces");
    Arc::new(
        spaces::load_dir(dir)
            .unwrap()
            .into_iter()
            .find(|b| b.slug == "tweet-duel")
            .unwrap(),
    )
}

fn play(world: &mut MatchWorld, book: &Arc<Rulebook>, match_id: i64) -> MatchOutcome {
    world.add_match(MatchSpec {
        match_id,
        rulebook: book.clone(),
        seed: 7,
        seats: (0..book.players)
            .map(|i| SeatSpec {
                entry_id: 10 * match_id + i as i64,
                agent_id: 100 + i as i64,
                agent_version_id: 200 + i as i64,
                system_prompt: format!("You are agent {i}."),
                sampling: agents::SamplingParams::default(),
                adapter_hash: None,
                base_model: String::new(),
                base_model_sha256: None,
            })
            .collect(),
        deadline_ms: i64::MAX,
    });
    for t in 0..50 {
        if let Some(done) = world.tick(t).pop() {
            return done;
        }
    }
    panic!("match {match_id} did not finish");
}

#[test]
fn a_dead_judge_server_fails_the_round_whole() {
    let gguf = models::smollm2_gguf().expect("SmolLM2 weights");
    let Some(mut server) = LlamaServer::start(&gguf, 2) else {
        return;
    };
    let mut config = EndpointConfig::new(&server.url, MODEL_ALIAS);
    config.retries = 1;
    config.timeout = Duration::from_secs(60);
    let client = Arc::new(EndpointClient::connect(config).unwrap());
    let llm = judges::LlmJudge::load(&gguf).unwrap().over_endpoint(client);
    let loaded = judges::LoadedJudges::new(
        Some(Arc::new(llm)),
        Some(Arc::new(
            judges::EmbeddingJudge::load(
                &models::minilm_dir().expect("MiniLM weights"),
                &candle_core::Device::Cpu,
            )
            .unwrap(),
        )),
    )
    .unwrap();
    let book = tweet_duel();
    assert!(
        book.judges.llm > 0.0,
        "Tweet Duel weighs the LLM judge, so the endpoint takes part"
    );
    let judge = PanelJudge::new(std::slice::from_ref(&book), &loaded).unwrap();
    let mut world = MatchWorld::new(Box::new(InstantEngine::new()), Box::new(judge), Bus::new());

    let up = play(&mut world, &book, 1);
    let result = up.result.expect("judged while the server is up");
    let scored = &result.rounds[0].seats[0].verdict.scores;
    assert!(
        scored
            .iter()
            .any(|s| s.judge.name == "llm" && s.judge.template_version.ends_with("+endpoint")),
        "{scored:?}"
    );

    server.kill();
    let down = play(&mut world, &book, 2);
    let reason = down.result.expect_err("no verdicts without the judge");
    assert!(
        reason.starts_with("judging failed: judge endpoint"),
        "{reason}"
    );
    assert_eq!(world.live_matches(), 0);
}
