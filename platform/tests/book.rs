//! A match played in the world on the instant test policy, booked and written by the
//! store in one transaction: exact payouts, pairs stored, ratings moved, on SQLite
//! and PostgreSQL.

mod common;

use std::sync::Arc;

use arena::engine::InstantEngine;
use arena::ratings::Skill;
use arena::record::{SeatFacts, book_match};
use arena::types::{MatchSpec, SeatSpec};
use arena::world::MatchWorld;
use common::ByLength;
use platform::bus::Bus;
use spaces::Rulebook;
use store::{NewAgentVersion, NewSpace, Store, Wei};

async fn play_and_book(store: &Store) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/spaces");
    let book: Arc<Rulebook> = Arc::new(
        spaces::load_dir(dir)
            .unwrap()
            .into_iter()
            .find(|b| b.slug == "tweet-duel")
            .unwrap(),
    );
    let fee = book.fee_tier("bronze").unwrap().wei;
    let tiers: Vec<(&str, Wei)> = book
        .fees
        .iter()
        .map(|f| (f.name.as_str(), Wei(f.wei)))
        .collect();
    let (space, stored_tiers) = store
        .upsert_space(&NewSpace {
            slug: &book.slug,
            name: &book.name,
            description: &book.description,
            rulebook: "(test)",
            version_hash: book.version_hash(),
            fee_tiers: &tiers,
        })
        .await
        .unwrap();
    let tier = stored_tiers.iter().find(|t| t.name == "bronze").unwrap();
    let mut seats = Vec::new();
    let mut facts = Vec::new();
    let mut users = Vec::new();
    for i in 0..4u8 {
        let u = store
            .upsert_user(&format!("0x{}", format!("{:02x}", i + 1).repeat(20)))
            .await
            .unwrap();
        store
            .deposit(u.id, Wei(fee * 10), &format!("dep{i}"))
            .await
            .unwrap();
        let (agent, v) = store
            .create_agent(
                u.id,
                &format!("agent {i}"),
                "smollm2",
                &NewAgentVersion {
                    system_prompt: format!("You are agent {i}."),
                    sampling: serde_json::json!({}),
                    training: serde_json::json!({}),
                    adapter_hash: None,
                },
            )
            .await
            .unwrap();
        let e = store.enter(u.id, v.id, tier.id).await.unwrap();
        seats.push(SeatSpec {
            entry_id: e.id,
            agent_id: agent.id,
            agent_version_id: v.id,
            system_prompt: v.system_prompt.clone(),
            sampling: agents::SamplingParams::default(),
            adapter_hash: None,
            base_model: String::new(),
            base_model_sha256: None,
        });
        facts.push(SeatFacts {
            entry_id: e.id,
            agent_id: agent.id,
            fee,
            skill: Skill::default(),
        });
        users.push(u.id);
    }
    let entry_ids: Vec<i64> = seats.iter().map(|s| s.entry_id).collect();
    let m = store
        .create_match(space.id, tier.id, 11, book.version_hash(), &entry_ids)
        .await
        .unwrap();
    store.start_match(m.id).await.unwrap();
    let mut world = MatchWorld::new(
        Box::new(InstantEngine::new()),
        Box::new(ByLength),
        Bus::new(),
    );
    world.add_match(MatchSpec {
        match_id: m.id,
        rulebook: book.clone(),
        seed: 11,
        seats,
        deadline_ms: i64::MAX,
    });
    let outcome = world.tick(0).remove(0);
    let result = outcome.result.unwrap();
    let booked = book_match(m.id, space.id, &book, &facts, &result);
    assert_eq!(
        booked.amounts.iter().sum::<u128>() + booked.treasury,
        4 * fee,
        "the pot is paid exactly"
    );
    let written = store.record_match(&booked.record).await.unwrap();
    assert_eq!(written.pair_ids.len(), booked.record.rounds[0].pairs.len());
    let settled = store.get_match(m.id).await.unwrap();
    assert_eq!(settled.status, "settled");
    assert_eq!(settled.result_hash.as_deref(), Some(result.hash().as_str()));
    let mut total = store.treasury_total().await.unwrap().0;
    for (i, &u) in users.iter().enumerate() {
        let b = store.balance(u).await.unwrap();
        assert_eq!(b.locked_wei, Wei::ZERO);
        assert_eq!(b.available_wei.0, fee * 10 - fee + booked.amounts[i]);
        total += b.available_wei.0;
    }
    assert_eq!(total, 40 * fee, "money is conserved");
    let board = store.leaderboard(space.id).await.unwrap();
    assert_eq!(board.len(), 4);
    let winner = result.places.iter().position(|&p| p == 1).unwrap();
    assert!(
        board
            .iter()
            .any(|r| r.agent_id == facts[winner].agent_id && r.mu > Skill::default().mu)
    );
}

#[tokio::test]
async fn a_played_match_is_booked_exactly_on_sqlite() {
    let db = testkit::db::TestDb::sqlite().await;
    play_and_book(&db.store).await;
}

#[tokio::test]
async fn a_played_match_is_booked_exactly_on_postgres() {
    if let Some(db) = testkit::db::TestDb::postgres().await {
        play_and_book(&db.store).await;
    }
}
