//! The repository API, run against both engines: every check below is one async
//! function, and `both!` makes a SQLite test and a PostgreSQL test of it.

use store::{
    Backend, Error, NewAgentVersion, NewJudgeScore, NewPolRecord, NewPreferencePair, NewResponse,
    NewSpace, NewTrainingRun, Payout, Settlement, Store, TrainingMetric, Wei, match_status,
};
use testkit::db::TestDb;
use testkit::in_ci;

macro_rules! both {
    ($check:ident) => {
        mod $check {
            #[tokio::test]
            async fn sqlite() {
                let db = testkit::db::TestDb::sqlite().await;
                super::$check(&db.store).await;
            }
            #[tokio::test]
            async fn postgres() {
                if let Some(db) = testkit::db::TestDb::postgres().await {
                    super::$check(&db.store).await;
                }
            }
        }
    };
}

const ETH: u128 = 1_000_000_000_000_000_000;

fn version(prompt: &str) -> NewAgentVersion {
    NewAgentVersion {
        system_prompt: prompt.into(),
        sampling: serde_json::json!({"temperature": 0.7}),
        training: serde_json::json!({"lora_rank": 8}),
        adapter_hash: None,
    }
}

fn wallet(n: u8) -> String {
    format!("0x{}", format!("{n:02x}").repeat(20))
}

/// A Space with a free and a paid tier, and `n` funded users with one agent each.
struct World {
    space_id: i64,
    paid_tier: i64,
    users: Vec<i64>,
    versions: Vec<i64>,
}

async fn world(store: &Store, n: u8, fee: Wei, deposit: Wei) -> World {
    let (space, tiers) = store
        .upsert_space(&NewSpace {
            slug: "tweet-duel",
            name: "Tweet Duel",
            description: "short persuasive writing",
            rulebook: "name = 'Tweet Duel'",
            version_hash: "abc",
            fee_tiers: &[("free", Wei::ZERO), ("paid", fee)],
        })
        .await
        .unwrap();
    let paid_tier = tiers.iter().find(|t| t.name == "paid").unwrap().id;
    let mut users = Vec::new();
    let mut versions = Vec::new();
    for i in 0..n {
        let u = store.upsert_user(&wallet(i + 1)).await.unwrap();
        let (_, v) = store
            .create_agent(u.id, &format!("agent {i}"), "smollm2", &version("be brief"))
            .await
            .unwrap();
        if deposit > Wei::ZERO {
            store
                .deposit(u.id, deposit, &format!("0xdep{i}"))
                .await
                .unwrap();
        }
        users.push(u.id);
        versions.push(v.id);
    }
    World {
        space_id: space.id,
        paid_tier,
        users,
        versions,
    }
}

async fn migrations_apply_once(store: &Store) {
    let before = store.applied_migrations().await.unwrap();
    assert_eq!(
        before,
        (1..=store::MIGRATIONS.len() as i64).collect::<Vec<_>>()
    );
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.applied_migrations().await.unwrap(), before);
}
both!(migrations_apply_once);

async fn users_are_keyed_by_wallet(store: &Store) {
    let a = store
        .upsert_user(&wallet(7).to_uppercase().replace("0X", "0x"))
        .await
        .unwrap();
    let b = store.upsert_user(&wallet(7)).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(a.wallet_address, wallet(7));
    let err = store.upsert_user("0x1234").await.unwrap_err();
    assert!(err.to_string().contains("wallet_address"), "{err}");
    assert!(store.user_by_wallet(&wallet(8)).await.unwrap().is_none());
}
both!(users_are_keyed_by_wallet);

async fn agents_have_versions(store: &Store) {
    let u = store.upsert_user(&wallet(1)).await.unwrap();
    let (agent, v1) = store
        .create_agent(u.id, "poet", "smollm2", &version("rhyme"))
        .await
        .unwrap();
    assert_eq!(v1.version, 1);
    let mut next = version("rhyme better");
    next.adapter_hash = Some("ab".repeat(32));
    let v2 = store
        .add_agent_version(agent.id, v1.id, &next)
        .await
        .unwrap();
    assert_eq!((v2.version, v2.parent_version_id), (2, Some(v1.id)));
    assert_eq!(store.latest_agent_version(agent.id).await.unwrap(), v2);
    assert_eq!(store.agent_versions(agent.id).await.unwrap().len(), 2);
    let archived = store.archive_agent(agent.id).await.unwrap();
    assert!(archived.archived_at.is_some());
    assert_eq!(store.agents_by_owner(u.id).await.unwrap(), vec![archived]);
    let err = store
        .create_agent(u.id, "  ", "smollm2", &version("x"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("name"), "{err}");
}
both!(agents_have_versions);

async fn an_agent_plays_once_per_match(store: &Store) {
    let w = world(store, 1, Wei(10), Wei(100)).await;
    let e1 = store
        .enter(w.users[0], w.versions[0], w.paid_tier)
        .await
        .unwrap();
    // One queued entry per agent per tier: a second is refused.
    let twice = store
        .enter(w.users[0], w.versions[0], w.paid_tier)
        .await
        .unwrap_err();
    assert!(matches!(twice, Error::Duplicate { .. }), "{twice}");
    // In another tier it queues, but still never joins a match beside itself.
    let free = store.fee_tiers(w.space_id).await.unwrap()[0].id;
    let e2 = store.enter(w.users[0], w.versions[0], free).await.unwrap();
    let err = store
        .create_match(w.space_id, w.paid_tier, 1, "abc", &[e1.id, e2.id])
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Duplicate { .. } | Error::Invalid { .. }),
        "{err}"
    );
    // The failed match left nothing behind: both entries are still queued.
    assert_eq!(
        store
            .queued_entries(w.space_id, w.paid_tier)
            .await
            .unwrap()
            .len()
            + store.queued_entries(w.space_id, free).await.unwrap().len(),
        2
    );
    assert!(
        store
            .matches_with_status(match_status::PENDING)
            .await
            .unwrap()
            .is_empty()
    );
}
both!(an_agent_plays_once_per_match);

async fn an_entry_joins_one_match(store: &Store) {
    let w = world(store, 2, Wei(10), Wei(100)).await;
    let a = store
        .enter(w.users[0], w.versions[0], w.paid_tier)
        .await
        .unwrap();
    let b = store
        .enter(w.users[1], w.versions[1], w.paid_tier)
        .await
        .unwrap();
    let m = store
        .create_match(w.space_id, w.paid_tier, 7, "abc", &[a.id, b.id])
        .await
        .unwrap();
    let err = store
        .create_match(w.space_id, w.paid_tier, 8, "abc", &[a.id])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not queued"), "{err}");
    let entries = store.match_entries(m.id).await.unwrap();
    assert!(
        entries
            .iter()
            .all(|e| e.status == "matched" && e.match_id == Some(m.id))
    );
}
both!(an_entry_joins_one_match);

async fn entering_locks_the_fee_or_nothing(store: &Store) {
    let w = world(store, 1, Wei(3 * ETH), Wei(5 * ETH)).await;
    let u = w.users[0];
    store.enter(u, w.versions[0], w.paid_tier).await.unwrap();
    let b = store.balance(u).await.unwrap();
    assert_eq!(
        (b.available_wei, b.locked_wei),
        (Wei(2 * ETH), Wei(3 * ETH))
    );
    let (_, second) = store
        .create_agent(u, "second", "smollm2-135m", &version("p"))
        .await
        .unwrap();
    let err = store.enter(u, second.id, w.paid_tier).await.unwrap_err();
    assert!(matches!(err, Error::InsufficientBalance { .. }), "{err}");
    // The refused entry was rolled back with its fee.
    assert_eq!(
        store
            .queued_entries(w.space_id, w.paid_tier)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.balance(u).await.unwrap(), b);
    let err = store.withdraw(u, Wei(2 * ETH + 1), "w1").await.unwrap_err();
    assert!(
        err.to_string().contains("insufficient available balance"),
        "{err}"
    );
    let after = store.withdraw(u, Wei(ETH), "w2").await.unwrap();
    assert_eq!(after.available_wei, Wei(ETH));
    // A replayed deposit is refused rather than credited twice.
    let err = store.deposit(u, Wei(1), "0xdep0").await.unwrap_err();
    assert!(matches!(err, Error::Duplicate { .. }), "{err}");
}
both!(entering_locks_the_fee_or_nothing);

async fn settlement_pays_exactly_once(store: &Store) {
    let fee = Wei(ETH / 100);
    let w = world(store, 4, fee, Wei(ETH)).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            store
                .enter(w.users[i], w.versions[i], w.paid_tier)
                .await
                .unwrap()
                .id,
        );
    }
    let m = store
        .create_match(w.space_id, w.paid_tier, 42, "abc", &ids)
        .await
        .unwrap();
    store.start_match(m.id).await.unwrap();
    let pot = fee.0 * 4;
    let bad = Settlement {
        match_id: m.id,
        payouts: vec![Payout {
            entry_id: ids[0],
            place: 1,
            amount: Wei(pot),
        }],
        treasury: Wei(1),
        result_root: "0x01".into(),
        result_hash: "h".into(),
        chain_tx_id: None,
    };
    let err = store.settle_match(&bad).await.unwrap_err();
    assert!(err.to_string().contains("payouts"), "{err}");
    let good = Settlement {
        payouts: vec![
            Payout {
                entry_id: ids[0],
                place: 1,
                amount: Wei(pot * 6 / 10),
            },
            Payout {
                entry_id: ids[1],
                place: 2,
                amount: Wei(pot * 3 / 10),
            },
            Payout {
                entry_id: ids[2],
                place: 3,
                amount: Wei::ZERO,
            },
            Payout {
                entry_id: ids[3],
                place: 4,
                amount: Wei::ZERO,
            },
        ],
        treasury: Wei(pot / 10),
        ..bad
    };
    store.settle_match(&good).await.unwrap();
    let err = store.settle_match(&good).await.unwrap_err();
    assert!(matches!(err, Error::AlreadySettled { .. }), "{err}");
    let err = store.refund_match(m.id, "late", None).await.unwrap_err();
    assert!(matches!(err, Error::AlreadySettled { .. }), "{err}");
    let m = store.get_match(m.id).await.unwrap();
    assert_eq!(m.status, match_status::SETTLED);
    let winner = store.balance(w.users[0]).await.unwrap();
    assert_eq!(winner.available_wei, Wei(ETH - fee.0 + pot * 6 / 10));
    assert_eq!(winner.locked_wei, Wei::ZERO);
    assert_eq!(store.treasury_total().await.unwrap(), Wei(pot / 10));
    // Money is conserved: deposits = balances + treasury.
    let mut total = store.treasury_total().await.unwrap();
    for &u in &w.users {
        let b = store.balance(u).await.unwrap();
        total = total
            .checked_add(b.available_wei)
            .unwrap()
            .checked_add(b.locked_wei)
            .unwrap();
    }
    assert_eq!(total, Wei(4 * ETH));
}
both!(settlement_pays_exactly_once);

async fn refund_returns_every_fee(store: &Store) {
    let w = world(store, 2, Wei(10), Wei(100)).await;
    let a = store
        .enter(w.users[0], w.versions[0], w.paid_tier)
        .await
        .unwrap();
    let b = store
        .enter(w.users[1], w.versions[1], w.paid_tier)
        .await
        .unwrap();
    let m = store
        .create_match(w.space_id, w.paid_tier, 1, "abc", &[a.id, b.id])
        .await
        .unwrap();
    store
        .refund_match(m.id, "deadline passed", None)
        .await
        .unwrap();
    for &u in &w.users {
        let bal = store.balance(u).await.unwrap();
        assert_eq!((bal.available_wei, bal.locked_wei), (Wei(100), Wei::ZERO));
    }
    let err = store.refund_match(m.id, "again", None).await.unwrap_err();
    assert!(matches!(err, Error::AlreadySettled { .. }), "{err}");
    let m = store.get_match(m.id).await.unwrap();
    assert_eq!(
        (m.status.as_str(), m.error.as_deref()),
        ("refunded", Some("deadline passed"))
    );
    // A queued entry can leave and gets its fee back.
    let c = store
        .enter(w.users[0], w.versions[0], w.paid_tier)
        .await
        .unwrap();
    store.leave(c.id).await.unwrap();
    assert_eq!(
        store.balance(w.users[0]).await.unwrap().available_wei,
        Wei(100)
    );
    assert!(store.leave(c.id).await.is_err());
}
both!(refund_returns_every_fee);

async fn journal_is_append_only(store: &Store) {
    let w = world(store, 1, Wei(1), Wei(50)).await;
    let lines = store.journal(Some(w.users[0])).await.unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(
        (lines[0].kind.as_str(), lines[0].amount_wei),
        ("deposit", Wei(50))
    );
    let update = store
        .execute_admin("UPDATE ledger_journal SET amount_wei = '1'")
        .await;
    assert!(update.unwrap_err().to_string().contains("append-only"));
    let delete = store.execute_admin("DELETE FROM ledger_journal").await;
    assert!(delete.unwrap_err().to_string().contains("append-only"));
    let bad = store
        .execute_admin("INSERT INTO fee_tiers (space_id, name, fee_wei) VALUES (1, 'neg', '-5')");
    assert!(
        bad.await.is_err(),
        "a negative fee must be refused by the schema"
    );
}
both!(journal_is_append_only);

async fn rounds_scores_pairs_and_training(store: &Store) {
    let w = world(store, 2, Wei::ZERO, Wei::ZERO).await;
    let free = store.fee_tiers(w.space_id).await.unwrap()[0].id;
    let a = store.enter(w.users[0], w.versions[0], free).await.unwrap();
    let b = store.enter(w.users[1], w.versions[1], free).await.unwrap();
    let m = store
        .create_match(w.space_id, free, 3, "abc", &[a.id, b.id])
        .await
        .unwrap();
    assert!(
        store.create_round(m.id, 0, "task").await.is_err(),
        "match not started"
    );
    store.start_match(m.id).await.unwrap();
    let round = store
        .create_round(m.id, 0, "Write a tweet about tea")
        .await
        .unwrap();
    let mut responses = Vec::new();
    for (entry, text) in [(a.id, "Tea is calm in a cup."), (b.id, "tea")] {
        let r = store
            .add_response(&NewResponse {
                round_id: round.id,
                entry_id: entry,
                prompt: "<|im_start|>system\nbe brief<|im_end|>\n",
                text,
                tokens: 7,
                finish_reason: "stop",
            })
            .await
            .unwrap();
        for (judge, score) in [("llm", 0.8), ("rules", 1.0)] {
            store
                .add_judge_score(&NewJudgeScore {
                    response_id: r.id,
                    judge,
                    model_hash: "m",
                    template_version: "v1",
                    score,
                    rationale: "ok",
                })
                .await
                .unwrap();
        }
        responses.push(r);
    }
    assert_eq!(store.judge_scores(responses[0].id).await.unwrap().len(), 2);
    let err = store
        .add_judge_score(&NewJudgeScore {
            response_id: responses[0].id,
            judge: "x",
            model_hash: "m",
            template_version: "v1",
            score: 1.5,
            rationale: "",
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("score"), "{err}");
    let pair = store
        .add_preference_pair(&NewPreferencePair {
            chosen_response_id: responses[0].id,
            rejected_response_id: responses[1].id,
            margin: 0.4,
            judge_agreement: 1.0,
        })
        .await
        .unwrap();
    assert_eq!(
        (pair.chosen.as_str(), pair.rejected.as_str()),
        ("Tea is calm in a cup.", "tea")
    );
    assert_eq!(pair.chosen_agent_version_id, w.versions[0]);
    let dup = store
        .add_preference_pair(&NewPreferencePair {
            chosen_response_id: responses[0].id,
            rejected_response_id: responses[1].id,
            margin: 0.4,
            judge_agreement: 1.0,
        })
        .await
        .unwrap_err();
    assert!(matches!(dup, Error::Duplicate { .. }), "{dup}");
    let agent_id = store.agent_version(w.versions[0]).await.unwrap().agent_id;
    assert_eq!(
        store
            .preference_pairs_for_agent(agent_id, 0, 10)
            .await
            .unwrap(),
        vec![pair.clone()]
    );

    let hp = serde_json::json!({"beta": 0.1});
    let run = store
        .create_training_run(&NewTrainingRun {
            agent_id,
            parent_version_id: w.versions[0],
            hyperparams: &hp,
            hyperparams_hash: "hh",
            pairs_root: "pr",
            results_root: "rr",
            pair_ids: &[pair.id],
        })
        .await
        .unwrap();
    // One run in progress per agent: a second one is refused while the first runs.
    let second = NewTrainingRun {
        agent_id,
        parent_version_id: w.versions[0],
        hyperparams: &hp,
        hyperparams_hash: "hh",
        pairs_root: "pr",
        results_root: "rr",
        pair_ids: &[pair.id],
    };
    let busy = store.create_training_run(&second).await.unwrap_err();
    assert!(matches!(busy, Error::Duplicate { .. }), "{busy}");
    assert_eq!(
        store
            .fail_stale_training_runs(run.started_at)
            .await
            .unwrap(),
        Vec::<i64>::new(),
        "a run that started at the cutoff is not stale"
    );
    assert!(store.active_agent_ids().await.unwrap().contains(&agent_id));
    for step in 0..3 {
        store
            .add_training_metric(&TrainingMetric {
                training_run_id: run.id,
                step,
                loss: 0.69 - step as f64 * 0.1,
                reward_accuracy: 0.5,
                chosen_reward: 0.1,
                rejected_reward: -0.1,
                validation_loss: (step == 2).then_some(0.65),
            })
            .await
            .unwrap();
    }
    let metrics = store.training_metrics(run.id).await.unwrap();
    assert_eq!(metrics.len(), 3);
    assert_eq!(
        metrics
            .iter()
            .map(|m| m.validation_loss)
            .collect::<Vec<_>>(),
        vec![None, None, Some(0.65)]
    );
    assert_eq!(store.training_run_pairs(run.id).await.unwrap(), vec![pair]);
    let mut next = version("be brief");
    next.adapter_hash = Some("cd".repeat(32));
    let v2 = store
        .add_agent_version(agent_id, w.versions[0], &next)
        .await
        .unwrap();
    let done = store.finish_training_run(run.id, Ok(v2.id)).await.unwrap();
    assert_eq!(
        (done.status.as_str(), done.new_version_id),
        ("succeeded", Some(v2.id))
    );
    assert!(
        store
            .finish_training_run(run.id, Err("again"))
            .await
            .is_err()
    );
    // Once the first has finished, the next may start; one left running by a stopped
    // process is closed as failed by the stale sweep, and frees the agent again.
    let stale = store.create_training_run(&second).await.unwrap();
    assert_eq!(
        store
            .fail_stale_training_runs(stale.started_at + 1)
            .await
            .unwrap(),
        vec![stale.id]
    );
    let closed = store.training_run(stale.id).await.unwrap();
    assert_eq!(closed.status, "failed");
    let third = store.create_training_run(&second).await.unwrap();
    store
        .finish_training_run(third.id, Err("test"))
        .await
        .unwrap();

    let tx1 = store
        .begin_chain_tx("record:run:1", "record")
        .await
        .unwrap();
    let tx2 = store
        .begin_chain_tx("record:run:1", "record")
        .await
        .unwrap();
    assert_eq!(tx1.id, tx2.id, "one idempotency key, one transaction");
    let tx = store.confirm_chain_tx(tx1.id, "0xfeed", 12).await.unwrap();
    assert_eq!(
        (tx.status.as_str(), tx.block_number),
        ("confirmed", Some(12))
    );
    let rec = store
        .add_pol_record(&NewPolRecord {
            record_id: 0,
            training_run_id: run.id,
            new_hash: &"cd".repeat(32),
            parent_hash: "",
            trainer: &wallet(1),
            block_number: 12,
            chain_tx_id: Some(tx.id),
        })
        .await
        .unwrap();
    assert_eq!(
        (rec.pairs_root.as_str(), rec.results_root.as_str()),
        ("pr", "rr")
    );
    assert_eq!(store.pol_records(agent_id).await.unwrap(), vec![rec]);
}
both!(rounds_scores_pairs_and_training);

/// Concurrent entries of one user never overspend: exactly as many succeed as the
/// balance covers.
async fn concurrent_entries_never_overspend(store: &Store) {
    let w = world(store, 1, Wei(10), Wei(55)).await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        // Twelve agents of one user (one queued entry per agent per tier).
        let (_, version) = store
            .create_agent(
                w.users[0],
                &format!("spender {i}"),
                "smollm2-135m",
                &version("p"),
            )
            .await
            .unwrap();
        let (s, u, v, t) = (store.clone(), w.users[0], version.id, w.paid_tier);
        tasks.push(tokio::spawn(async move { s.enter(u, v, t).await }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Error::InsufficientBalance { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(ok, 5);
    let b = store.balance(w.users[0]).await.unwrap();
    assert_eq!((b.available_wei, b.locked_wei), (Wei(5), Wei(50)));
}
mod concurrent_entries_never_overspend {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        let db = testkit::db::TestDb::sqlite().await;
        super::concurrent_entries_never_overspend(&db.store).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        if let Some(db) = testkit::db::TestDb::postgres().await {
            super::concurrent_entries_never_overspend(&db.store).await;
        }
    }
}

/// Proves the PostgreSQL path really ran: under CI the server must answer, and this
/// test's database is its own.
#[tokio::test]
async fn postgres_path_really_runs() {
    let Some(db) = TestDb::postgres().await else {
        assert!(!in_ci(), "under CI PostgreSQL must be reachable");
        return;
    };
    assert_eq!(db.store.backend(), Backend::Postgres);
    let version = db.store.server_version().await.unwrap();
    assert!(version.starts_with("PostgreSQL"), "{version}");
    let other = TestDb::postgres().await.unwrap();
    assert_ne!(db.name, other.name, "each test gets its own database");
    println!("PostgreSQL path ran on {version} in database {}", db.name);
}

#[tokio::test]
async fn sqlite_default_is_a_wal_file_in_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(None, dir.path()).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    assert_eq!(
        store.sqlite_journal_mode().await.unwrap().as_deref(),
        Some("wal")
    );
    assert!(dir.path().join("rlfc.sqlite").exists());
    assert!(store.server_version().await.unwrap().starts_with("SQLite"));
    let err = Store::open_url("mysql://x").await.unwrap_err();
    assert!(err.to_string().contains("postgres://"), "{err}");
}

async fn ratings_and_history(store: &Store) {
    let w = world(store, 3, Wei::ZERO, Wei::ZERO).await;
    let agents: Vec<i64> = {
        let mut v = Vec::new();
        for &ver in &w.versions {
            v.push(store.agent_version(ver).await.unwrap().agent_id);
        }
        v
    };
    let free = store.fee_tiers(w.space_id).await.unwrap()[0].id;
    let mut entries = Vec::new();
    for i in 0..3 {
        entries.push(
            store
                .enter(w.users[i], w.versions[i], free)
                .await
                .unwrap()
                .id,
        );
    }
    let m = store
        .create_match(w.space_id, free, 1, "abc", &entries)
        .await
        .unwrap();
    let updates = [
        store::RatingUpdate::absolute(agents[0], 27.0, 7.0),
        store::RatingUpdate::absolute(agents[1], 25.0, 2.0),
        store::RatingUpdate::absolute(agents[2], 23.0, 7.0),
    ];
    store
        .update_ratings(w.space_id, Some(m.id), &updates)
        .await
        .unwrap();
    assert!(
        store
            .update_ratings(w.space_id, Some(m.id), &updates)
            .await
            .is_err(),
        "one rating per match"
    );
    let board: Vec<i64> = store
        .leaderboard(w.space_id)
        .await
        .unwrap()
        .iter()
        .map(|r| r.agent_id)
        .collect();
    // mu - 3 sigma: 19, 6, 2.
    assert_eq!(board, vec![agents[1], agents[0], agents[2]]);
    store
        .update_ratings(
            w.space_id,
            None,
            &[store::RatingUpdate::absolute(agents[1], 25.0, 4.0)],
        )
        .await
        .unwrap();
    let r = store.rating(agents[1], w.space_id).await.unwrap().unwrap();
    assert_eq!((r.sigma, r.matches_played), (4.0, 1));
    let history = store.rating_history(agents[1], w.space_id).await.unwrap();
    let reasons: Vec<&str> = history.iter().map(|p| p.reason.as_str()).collect();
    assert_eq!(reasons, vec!["match", "adapter_change"]);
}
both!(ratings_and_history);

/// Two matches of one agent that started from the same rating both count when they
/// settle: each applies its change to the rating as it stands (issue 19, item 5). The
/// old code wrote absolute values computed at the start, so the second settlement
/// erased the first ("mu before 27.64 -> after 27.64").
async fn concurrent_settlements_both_move_the_rating(store: &Store) {
    let w = world(store, 2, Wei::ZERO, Wei::ZERO).await;
    let agent = store.agent_version(w.versions[0]).await.unwrap().agent_id;
    let rival = store.agent_version(w.versions[1]).await.unwrap().agent_id;
    let free = store.fee_tiers(w.space_id).await.unwrap()[0].id;
    let mut matches = Vec::new();
    for _ in 0..2 {
        let a = store
            .enter(w.users[0], w.versions[0], free)
            .await
            .unwrap()
            .id;
        let b = store
            .enter(w.users[1], w.versions[1], free)
            .await
            .unwrap()
            .id;
        matches.push(
            store
                .create_match(w.space_id, free, 1, "abc", &[a, b])
                .await
                .unwrap()
                .id,
        );
    }
    // Both matches read (25, 8) for each agent; the agent won both.
    let start = (25.0, 8.0);
    let win = store::RatingUpdate::change(agent, start, (27.0, 7.5));
    let loss = store::RatingUpdate::change(rival, start, (23.0, 7.5));
    // Run the two settlements at the same time.
    let both = [win, loss];
    let (first, second) = tokio::join!(
        store.update_ratings(w.space_id, Some(matches[0]), &both),
        store.update_ratings(w.space_id, Some(matches[1]), &both),
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    let r = store.rating(agent, w.space_id).await.unwrap().unwrap();
    assert!((r.mu - 29.0).abs() < 1e-9, "both wins count: mu {}", r.mu);
    assert!(
        (r.sigma - 8.0 * (7.5f64 / 8.0).powi(2)).abs() < 1e-9,
        "sigma {}",
        r.sigma
    );
    assert_eq!(r.matches_played, 2);
    let l = store.rating(rival, w.space_id).await.unwrap().unwrap();
    assert!((l.mu - 21.0).abs() < 1e-9, "both losses count: mu {}", l.mu);
    // Each settlement reports the move it made, in settlement order.
    let mut moves = [
        (first[0].mu_before, first[0].mu),
        (second[0].mu_before, second[0].mu),
    ];
    moves.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(moves, [(25.0, 27.0), (27.0, 29.0)]);
    let history = store.rating_history(agent, w.space_id).await.unwrap();
    let mus: Vec<f64> = history.iter().map(|p| p.mu).collect();
    assert_eq!(mus, vec![27.0, 29.0]);
    // A change that would drive sigma to nothing is held at a floor, and a non-finite
    // rating is refused with the field named.
    let err = store
        .update_ratings(
            w.space_id,
            None,
            &[store::RatingUpdate::change(agent, start, (f64::NAN, 1.0))],
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("mu"), "{err}");
}
both!(concurrent_settlements_both_move_the_rating);

/// A refunded match (an engine that refused one seat, a deadline) costs no seat its
/// auto-entry cap: each rule gets back what its entry spent (issue 19, item 3).
async fn a_refund_gives_auto_entry_caps_back(store: &Store) {
    let w = world(store, 2, Wei(7), Wei(1000)).await;
    let auto_agent = store.agent_version(w.versions[0]).await.unwrap().agent_id;
    store
        .set_auto_entry(auto_agent, w.paid_tier, Wei(7), true)
        .await
        .unwrap();
    let auto = store
        .auto_enter(auto_agent, w.paid_tier)
        .await
        .unwrap()
        .expect("within the cap");
    assert_eq!(auto.auto_entry, 1);
    let manual = store
        .enter(w.users[1], w.versions[1], w.paid_tier)
        .await
        .unwrap();
    assert_eq!(manual.auto_entry, 0);
    let m = store
        .create_match(w.space_id, w.paid_tier, 1, "abc", &[auto.id, manual.id])
        .await
        .unwrap();
    // The cap is spent: no more entries until the match is over.
    assert_eq!(store.auto_entries().await.unwrap()[0].spent_wei, Wei(7));
    store
        .refund_match(m.id, "seat 1 refused: too long", None)
        .await
        .unwrap();
    assert_eq!(store.auto_entries().await.unwrap()[0].spent_wei, Wei::ZERO);
    assert!(
        store
            .auto_enter(auto_agent, w.paid_tier)
            .await
            .unwrap()
            .is_some(),
        "the rule can enter again"
    );
}
both!(a_refund_gives_auto_entry_caps_back);

/// A trained version keeps the meta-prompt the owner saved while the run trained
/// (issue 21: the run's new version used to replace it with the prompt it started
/// from); the adapter is the run's, and the parent is the version it trained from.
async fn a_trained_version_keeps_an_edit_made_during_training(store: &Store) {
    let w = world(store, 1, Wei::ZERO, Wei::ZERO).await;
    let started_from = store.agent_version(w.versions[0]).await.unwrap();
    let agent = started_from.agent_id;
    // The owner edits while the run trains.
    let edited = store
        .add_agent_version(agent, started_from.id, &version("the owner's new prompt"))
        .await
        .unwrap();
    let trained = store
        .add_trained_version(agent, started_from.id, "abc123")
        .await
        .unwrap();
    assert_eq!(trained.system_prompt, "the owner's new prompt");
    assert_eq!(trained.sampling, edited.sampling);
    assert_eq!(trained.adapter_hash.as_deref(), Some("abc123"));
    assert_eq!(trained.parent_version_id, Some(started_from.id));
    assert_eq!(trained.version, edited.version + 1);
    assert_eq!(
        store.latest_agent_version(agent).await.unwrap().id,
        trained.id
    );
    // A parent of another agent is refused.
    let other = world(store, 1, Wei::ZERO, Wei::ZERO).await;
    let err = store
        .add_trained_version(agent, other.versions[0], "x")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("parent_version_id"), "{err}");
}
both!(a_trained_version_keeps_an_edit_made_during_training);

/// A version the regression gate held back stays in the lineage with its reason, and
/// the version after it (the one played) restores the parent's adapter under the
/// owner's latest settings; a trained version that was played has no reason.
async fn a_held_back_version_is_kept_and_the_parent_adapter_plays_on(store: &Store) {
    let w = world(store, 1, Wei::ZERO, Wei::ZERO).await;
    let first = store.agent_version(w.versions[0]).await.unwrap();
    let agent = first.agent_id;
    let played = store
        .add_trained_version(agent, first.id, "aaa111")
        .await
        .unwrap();
    assert_eq!(played.held_back, None);
    let edited = store
        .add_agent_version(agent, played.id, &{
            let mut v = version("an edit during the next run");
            v.adapter_hash = Some("aaa111".into());
            v
        })
        .await
        .unwrap();
    let (held, restored) = store
        .add_held_back_version(agent, edited.id, "bbb222", "lost 1-9 to its parent")
        .await
        .unwrap();
    assert_eq!(held.adapter_hash.as_deref(), Some("bbb222"));
    assert_eq!(held.held_back.as_deref(), Some("lost 1-9 to its parent"));
    assert_eq!(held.parent_version_id, Some(edited.id));
    assert_eq!(held.system_prompt, "an edit during the next run");
    assert_eq!(held.version, edited.version + 1);
    assert_eq!(restored.version, held.version + 1);
    assert_eq!(restored.parent_version_id, Some(held.id));
    assert_eq!(restored.adapter_hash.as_deref(), Some("aaa111"));
    assert_eq!(restored.system_prompt, "an edit during the next run");
    assert_eq!(restored.held_back, None);
    let latest = store.latest_agent_version(agent).await.unwrap();
    assert_eq!(latest, restored);
    assert_eq!(store.agent_version(held.id).await.unwrap(), held);
    // A parent of another agent is refused, and nothing is written.
    let other = world(store, 1, Wei::ZERO, Wei::ZERO).await;
    let err = store
        .add_held_back_version(agent, other.versions[0], "x", "y")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("parent_version_id"), "{err}");
    assert_eq!(store.latest_agent_version(agent).await.unwrap(), restored);
}
both!(a_held_back_version_is_kept_and_the_parent_adapter_plays_on);

/// A running training run keeps what its gate found; a finished one refuses it.
async fn a_run_keeps_its_gate_evaluation(store: &Store) {
    let w = world(store, 1, Wei::ZERO, Wei::ZERO).await;
    let v = store.agent_version(w.versions[0]).await.unwrap();
    let run = store
        .create_training_run(&store::NewTrainingRun {
            agent_id: v.agent_id,
            parent_version_id: v.id,
            hyperparams: &serde_json::json!({}),
            hyperparams_hash: "h",
            pairs_root: "p",
            results_root: "r",
            pair_ids: &[],
        })
        .await
        .unwrap();
    assert_eq!(run.evaluation, None);
    store
        .set_training_evaluation(run.id, r#"{"held_back":false}"#)
        .await
        .unwrap();
    let done = store.finish_training_run(run.id, Ok(v.id)).await.unwrap();
    assert_eq!(done.evaluation.as_deref(), Some(r#"{"held_back":false}"#));
    let err = store
        .set_training_evaluation(run.id, "{}")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not running"), "{err}");
}
both!(a_run_keeps_its_gate_evaluation);

/// Auto-entry never spends past its cap, even with many concurrent attempts.
async fn auto_entry_respects_the_cap(store: &Store) {
    let w = world(store, 1, Wei(7), Wei(1000)).await;
    let agent_id = store.agent_version(w.versions[0]).await.unwrap().agent_id;
    assert_eq!(
        store.auto_enter(agent_id, w.paid_tier).await.unwrap(),
        None,
        "no rule yet"
    );
    store
        .set_auto_entry(agent_id, w.paid_tier, Wei(30), true)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let s = store.clone();
        let tier = w.paid_tier;
        tasks.push(tokio::spawn(
            async move { s.auto_enter(agent_id, tier).await },
        ));
    }
    // Ten at once: the agent queues once per tier, so one gets in and the rest are
    // refused (nothing spent for them).
    let mut entered = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(Some(_)) => entered += 1,
            Ok(None) | Err(Error::Duplicate { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(entered, 1);
    // Each time the entry leaves the queue the next one spends from the cap.
    let leave_queue = || async {
        for e in store.queued_entries(w.space_id, w.paid_tier).await.unwrap() {
            store.leave(e.id).await.unwrap();
        }
    };
    for _ in 0..10 {
        leave_queue().await;
        if store
            .auto_enter(agent_id, w.paid_tier)
            .await
            .unwrap()
            .is_some()
        {
            entered += 1;
        } else {
            break;
        }
    }
    assert_eq!(entered, 4, "4 x 7 = 28 <= 30 < 35");
    let rule = &store.auto_entries().await.unwrap()[0];
    assert_eq!((rule.spent_wei, rule.cap_wei), (Wei(28), Wei(30)));
    assert_eq!(store.balance(w.users[0]).await.unwrap().locked_wei, Wei(0));
    // Raising the cap keeps what was spent; disabling stops entries.
    store
        .set_auto_entry(agent_id, w.paid_tier, Wei(35), true)
        .await
        .unwrap();
    assert!(
        store
            .auto_enter(agent_id, w.paid_tier)
            .await
            .unwrap()
            .is_some()
    );
    leave_queue().await;
    assert!(
        store
            .auto_enter(agent_id, w.paid_tier)
            .await
            .unwrap()
            .is_none()
    );
    store
        .set_auto_entry(agent_id, w.paid_tier, Wei(1000), false)
        .await
        .unwrap();
    assert!(
        store
            .auto_enter(agent_id, w.paid_tier)
            .await
            .unwrap()
            .is_none()
    );
}
mod auto_entry_respects_the_cap {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        let db = testkit::db::TestDb::sqlite().await;
        super::auto_entry_respects_the_cap(&db.store).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        if let Some(db) = testkit::db::TestDb::postgres().await {
            super::auto_entry_respects_the_cap(&db.store).await;
        }
    }
}

fn record_for(
    space_id: i64,
    match_id: i64,
    entries: &[i64],
    agents: &[i64],
    pot: u128,
) -> store::MatchRecord {
    let responses = entries
        .iter()
        .enumerate()
        .map(|(i, &entry_id)| store::ResponseRecord {
            entry_id,
            prompt: "<|im_start|>user\nWrite a haiku<|im_end|>".into(),
            task_prompt: "Write a haiku".into(),
            text: format!("answer {i}"),
            tokens: 3,
            finish_reason: "end_of_turn".into(),
            scores: vec![store::ScoreRecord {
                judge: "rules".into(),
                model_hash: String::new(),
                template_version: "v1".into(),
                score: 1.0 - i as f64 * 0.3,
                rationale: "ok".into(),
            }],
        })
        .collect();
    store::MatchRecord {
        space_id,
        rounds: vec![store::RoundRecordIn {
            round_index: 0,
            task: "Write a haiku".into(),
            responses,
            pairs: vec![
                store::PairRecord {
                    chosen: 0,
                    rejected: 1,
                    margin: 0.3,
                    judge_agreement: 1.0,
                },
                store::PairRecord {
                    chosen: 0,
                    rejected: 2,
                    margin: 0.6,
                    judge_agreement: 1.0,
                },
            ],
        }],
        settlement: Settlement {
            match_id,
            payouts: vec![
                Payout {
                    entry_id: entries[0],
                    place: 1,
                    amount: Wei(pot * 9 / 10),
                },
                Payout {
                    entry_id: entries[1],
                    place: 2,
                    amount: Wei::ZERO,
                },
                Payout {
                    entry_id: entries[2],
                    place: 3,
                    amount: Wei::ZERO,
                },
            ],
            treasury: Wei(pot - pot * 9 / 10),
            result_root: "0xroot".into(),
            result_hash: "hash".into(),
            chain_tx_id: None,
        },
        ratings: agents
            .iter()
            .enumerate()
            .map(|(i, &agent_id)| store::RatingUpdate::absolute(agent_id, 26.0 - i as f64, 8.0))
            .collect(),
        base_models: entries
            .iter()
            .enumerate()
            .map(|(i, &e)| (e, format!("{i:x}").repeat(64)))
            .collect(),
    }
}

/// A crash at any step of writing a match result leaves nothing behind; the match
/// stays running (refundable), and the full write then lands exactly once.
async fn match_results_are_written_whole_or_not_at_all(store: &Store) {
    let fee = Wei(1_000);
    let w = world(store, 3, fee, Wei(10_000)).await;
    let mut entries = Vec::new();
    let mut agents = Vec::new();
    for i in 0..3 {
        entries.push(
            store
                .enter(w.users[i], w.versions[i], w.paid_tier)
                .await
                .unwrap()
                .id,
        );
        agents.push(store.agent_version(w.versions[i]).await.unwrap().agent_id);
    }
    let m = store
        .create_match(w.space_id, w.paid_tier, 5, "abc", &entries)
        .await
        .unwrap();
    store.start_match(m.id).await.unwrap();
    let record = record_for(w.space_id, m.id, &entries, &agents, 3_000);
    let before: Vec<_> = {
        let mut v = Vec::new();
        for &u in &w.users {
            v.push(store.balance(u).await.unwrap());
        }
        v
    };
    for step in [
        store::RecordStep::AfterRounds,
        store::RecordStep::AfterPairs,
        store::RecordStep::AfterSettlement,
        store::RecordStep::BeforeCommit,
    ] {
        let err = store
            .record_match_with_fault(&record, Some(step))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("injected"), "{err}");
        assert!(
            store.rounds(m.id).await.unwrap().is_empty(),
            "{step:?} left rounds"
        );
        assert!(
            store
                .match_entries(m.id)
                .await
                .unwrap()
                .iter()
                .all(|e| e.base_model_sha256.is_none()),
            "{step:?} left the seats' base models"
        );
        assert_eq!(
            store.get_match(m.id).await.unwrap().status,
            match_status::RUNNING
        );
        assert!(
            store.rating(agents[0], w.space_id).await.unwrap().is_none(),
            "{step:?} left ratings"
        );
        assert_eq!(store.treasury_total().await.unwrap(), Wei::ZERO);
        for (i, &u) in w.users.iter().enumerate() {
            assert_eq!(
                store.balance(u).await.unwrap(),
                before[i],
                "{step:?} moved money"
            );
        }
    }
    let written = store.record_match(&record).await.unwrap();
    assert_eq!(written.pair_ids.len(), 2);
    let models: Vec<_> = store
        .match_entries(m.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.base_model_sha256)
        .collect();
    assert_eq!(
        models,
        vec![
            Some("0".repeat(64)),
            Some("1".repeat(64)),
            Some("2".repeat(64))
        ],
        "each seat records the base model it played on, with the result"
    );
    assert_eq!(store.rounds(m.id).await.unwrap().len(), 1);
    assert_eq!(
        store.get_match(m.id).await.unwrap().status,
        match_status::SETTLED
    );
    assert_eq!(
        store.balance(w.users[0]).await.unwrap().available_wei,
        Wei(10_000 - 1_000 + 2_700)
    );
    assert_eq!(store.treasury_total().await.unwrap(), Wei(300));
    assert_eq!(
        store
            .rating(agents[2], w.space_id)
            .await
            .unwrap()
            .unwrap()
            .mu,
        24.0
    );
    let pairs = store
        .preference_pairs_for_agent(agents[0], 0, 10)
        .await
        .unwrap();
    assert_eq!(pairs.len(), 2);
    assert_eq!(
        (pairs[0].chosen.as_str(), pairs[0].rejected.as_str()),
        ("answer 0", "answer 1")
    );
    let again = store.record_match(&record).await.unwrap_err();
    assert!(matches!(again, Error::AlreadySettled { .. }), "{again}");
    assert!(store.refund_match(m.id, "late", None).await.is_err());
}
both!(match_results_are_written_whole_or_not_at_all);

/// A debit posted again with its idempotency key is a duplicate, not a shortfall,
/// even once the first has spent the balance (issue 20: the chain follower and the
/// wallet's own report of one withdrawal race each other), concurrently too.
async fn a_repeated_debit_is_a_duplicate_even_when_the_balance_is_spent(store: &Store) {
    let w = world(store, 1, Wei::ZERO, Wei(500)).await;
    let user = w.users[0];
    store.withdraw(user, Wei(500), "chain:0xab").await.unwrap();
    let again = store
        .withdraw(user, Wei(500), "chain:0xab")
        .await
        .unwrap_err();
    assert!(matches!(again, store::Error::Duplicate { .. }), "{again:?}");
    // Racing: of two posts with one key, one debits and the other is a duplicate.
    store.deposit(user, Wei(300), "chain:0xcd").await.unwrap();
    let (a, b) = tokio::join!(
        store.withdraw(user, Wei(300), "chain:0xef"),
        store.withdraw(user, Wei(300), "chain:0xef")
    );
    let outcomes = [a, b];
    assert_eq!(
        outcomes.iter().filter(|r| r.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .any(|r| matches!(r, Err(store::Error::Duplicate { .. }))),
        "{outcomes:?}"
    );
    assert_eq!(store.balance(user).await.unwrap().available_wei, Wei::ZERO);
    // A different key still finds the balance short.
    let short = store
        .withdraw(user, Wei(1), "chain:0x01")
        .await
        .unwrap_err();
    assert!(
        matches!(short, store::Error::InsufficientBalance { .. }),
        "{short:?}"
    );
}
both!(a_repeated_debit_is_a_duplicate_even_when_the_balance_is_spent);
