//! A small played match for tests of what reads matches back (the export, the web
//! API): a Space, funded users with one agent each, one settled match with judge
//! scores, preference pairs and ratings, all written through the public API.

use std::sync::atomic::{AtomicU32, Ordering};

use store::{
    MatchRecord, NewAgentVersion, NewSpace, PairRecord, Payout, RatingUpdate, ResponseRecord,
    RoundRecordIn, ScoreRecord, Settlement, Store, Wei,
};

/// The fee of the fixture Space's paid tier, in wei.
pub const FIXTURE_FEE: Wei = Wei(100);

/// The base model hash every fixture seat records with its result.
pub const FIXTURE_BASE_MODEL_SHA256: &str =
    "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

/// What [`played_match`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayedMatch {
    /// The Space (`tweet-duel`).
    pub space_id: i64,
    /// Its paid tier (fee [`FIXTURE_FEE`]).
    pub tier_id: i64,
    /// The settled match.
    pub match_id: i64,
    /// One user per seat.
    pub user_ids: Vec<i64>,
    /// One agent per seat.
    pub agent_ids: Vec<i64>,
    /// The version each agent played.
    pub version_ids: Vec<i64>,
    /// The entries, in seat order.
    pub entry_ids: Vec<i64>,
    /// The preference pairs, in order.
    pub pair_ids: Vec<i64>,
}

/// The `tweet-duel` Space with a free and a paid tier; returns (space id, paid tier id).
pub async fn fixture_space(store: &Store) -> (i64, i64) {
    let (space, tiers) = store
        .upsert_space(&NewSpace {
            slug: "tweet-duel",
            name: "Tweet Duel",
            description: "short persuasive writing",
            rulebook: "(fixture)",
            version_hash: "fixture",
            fee_tiers: &[("free", Wei::ZERO), ("bronze", FIXTURE_FEE)],
        })
        .await
        .expect("fixture space");
    let paid = tiers
        .iter()
        .find(|t| t.name == "bronze")
        .expect("paid tier");
    (space.id, paid.id)
}

/// A settled match of `seats` agents (at least 2) in one round: seat 0 scores best,
/// every better seat is chosen over every worse one, and ratings move.
pub async fn played_match(store: &Store, seats: usize) -> PlayedMatch {
    static RUN: AtomicU32 = AtomicU32::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    assert!(seats >= 2, "a match needs two seats");
    let (space_id, tier_id) = fixture_space(store).await;
    let mut out = PlayedMatch {
        space_id,
        tier_id,
        match_id: 0,
        user_ids: Vec::new(),
        agent_ids: Vec::new(),
        version_ids: Vec::new(),
        entry_ids: Vec::new(),
        pair_ids: Vec::new(),
    };
    for seat in 0..seats {
        let wallet = format!("0x{}", format!("{:02x}", 0x10 + seat).repeat(20));
        let user = store.upsert_user(&wallet).await.expect("user");
        store
            .deposit(
                user.id,
                Wei(1000),
                &format!("fixture:{run}:{seat}:{}", store::now_ms()),
            )
            .await
            .expect("deposit");
        let (agent, version) = store
            .create_agent(
                user.id,
                &format!("agent {seat}"),
                "smollm2-135m",
                &NewAgentVersion {
                    system_prompt: format!("You are agent {seat}. Be brief."),
                    sampling: serde_json::json!({"temperature": 0.7}),
                    training: serde_json::json!({"lora_rank": 8}),
                    adapter_hash: None,
                },
            )
            .await
            .expect("agent");
        let entry = store
            .enter(user.id, version.id, tier_id)
            .await
            .expect("entry");
        out.user_ids.push(user.id);
        out.agent_ids.push(agent.id);
        out.version_ids.push(version.id);
        out.entry_ids.push(entry.id);
    }
    let m = store
        .create_match(space_id, tier_id, 7, "fixture", &out.entry_ids)
        .await
        .expect("match");
    store.start_match(m.id).await.expect("start");
    out.match_id = m.id;
    let score = |seat: usize| 1.0 - seat as f64 / seats as f64;
    let responses = (0..seats)
        .map(|seat| ResponseRecord {
            entry_id: out.entry_ids[seat],
            prompt: format!(
                "<|im_start|>system\nYou are agent {seat}.<|im_end|>\n<|im_start|>user\nWrite a tweet about tea.<|im_end|>"
            ),
            task_prompt: "Write a tweet about tea.".into(),
            text: format!("Tea, take {seat}."),
            tokens: 5,
            finish_reason: "stop".into(),
            scores: vec![
                ScoreRecord {
                    judge: "llm".into(),
                    model_hash: "m".into(),
                    template_version: "1".into(),
                    score: score(seat),
                    rationale: format!("seat {seat} reads well"),
                },
                ScoreRecord {
                    judge: "rules".into(),
                    model_hash: "-".into(),
                    template_version: "1".into(),
                    score: 1.0,
                    rationale: "all rules pass".into(),
                },
            ],
        })
        .collect();
    let mut pairs = Vec::new();
    for better in 0..seats {
        for worse in better + 1..seats {
            pairs.push(PairRecord {
                chosen: better,
                rejected: worse,
                margin: score(better) - score(worse),
                judge_agreement: if (better + worse) % 2 == 0 { 1.0 } else { 0.5 },
            });
        }
    }
    let pot = Wei(FIXTURE_FEE.0 * seats as u128);
    let treasury = Wei(10);
    let payouts = (0..seats)
        .map(|seat| Payout {
            entry_id: out.entry_ids[seat],
            place: seat as i64 + 1,
            amount: if seat == 0 {
                Wei(pot.0 - treasury.0)
            } else {
                Wei::ZERO
            },
        })
        .collect();
    let recorded = store
        .record_match(&MatchRecord {
            space_id,
            rounds: vec![RoundRecordIn {
                round_index: 0,
                task: "Write a tweet about tea.".into(),
                responses,
                pairs,
            }],
            settlement: Settlement {
                match_id: m.id,
                payouts,
                treasury,
                result_root: "0xroot".into(),
                result_hash: "hash".into(),
                chain_tx_id: None,
            },
            ratings: (0..seats)
                .map(|seat| {
                    RatingUpdate::absolute(
                        out.agent_ids[seat],
                        25.0 + 2.0 * (seats - seat) as f64,
                        8.0 - seat as f64 * 0.1,
                    )
                })
                .collect(),
            base_models: out
                .entry_ids
                .iter()
                .map(|&e| (e, FIXTURE_BASE_MODEL_SHA256.to_string()))
                .collect(),
        })
        .await
        .expect("record match");
    out.pair_ids = recorded.pair_ids;
    out
}

/// Entries waiting in the fixture Space's paid tier: `agents` funded users, each with
/// `per_agent` agents entered once. Returns (space id, tier id,
/// entry ids in id order).
pub async fn queued_entries(
    store: &Store,
    agents: usize,
    per_agent: usize,
) -> (i64, i64, Vec<i64>) {
    static RUN: AtomicU32 = AtomicU32::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let (space_id, tier_id) = fixture_space(store).await;
    let mut entry_ids = Vec::new();
    for seat in 0..agents {
        let wallet = format!("0x{}", format!("{:02x}", 0x40 + seat).repeat(20));
        let user = store.upsert_user(&wallet).await.expect("user");
        store
            .deposit(
                user.id,
                Wei(FIXTURE_FEE.0 * per_agent as u128),
                &format!("queued:{run}:{seat}:{}", store::now_ms()),
            )
            .await
            .expect("deposit");
        // One queued entry per agent per tier: each entry is its own agent.
        for k in 0..per_agent {
            let (_, version) = store
                .create_agent(
                    user.id,
                    &format!("queued agent {run}.{seat}.{k}"),
                    "smollm2-135m",
                    &NewAgentVersion {
                        system_prompt: format!("You are agent {seat}."),
                        sampling: serde_json::json!({"temperature": 0.7}),
                        training: serde_json::json!({}),
                        adapter_hash: None,
                    },
                )
                .await
                .expect("agent");
            let entry = store
                .enter(user.id, version.id, tier_id)
                .await
                .expect("entry");
            entry_ids.push(entry.id);
        }
    }
    entry_ids.sort_unstable();
    (space_id, tier_id, entry_ids)
}
