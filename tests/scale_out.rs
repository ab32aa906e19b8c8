//! The scaled-out deployment end to end, as separate processes on loopback: two
//! `rlfc serve` and three `rlfc worker` against one PostgreSQL database, one Redis and
//! a Hardhat node. Fifty-odd matches in three Spaces run on the test policy while a
//! worker is killed with SIGKILL in the middle of a match and then a server too (it is
//! restarted on new ports); then a server and a worker on the real models play three
//! more matches. At the end every match is settled or refunded exactly once, the
//! contract's balances equal the database journal, no round or pair was written
//! twice, and every spectator (websockets on both servers, through the Redis bus)
//! received every event of the matches it watched, in order and identical across
//! servers.
//!
//! It needs PostgreSQL, Redis and Node.js (for Hardhat); outside CI a missing one skips
//! the test with a message, under `CI=true` it fails.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chain::{AnyChain, Contracts};
use common::{Proc, deployment_env, server, worker};
use futures_util::StreamExt;
use store::{Store, match_status};

/// Matches the test-policy phase runs at least.
const TEST_POLICY_MATCHES: usize = 50;
/// Spaces of three shapes: 3 players and 1 round, 4 players and 3 rounds, a
/// 2-player debate of 3 rounds that shows each side the other's last answer.
const SPACES: [&str; 3] = ["haiku", "math-sprint", "debate"];

/// What one websocket spectator received: per match, its events in arrival order.
type Seen = Arc<Mutex<BTreeMap<i64, Vec<serde_json::Value>>>>;

/// A spectator of a Space's live matches on one server, until the socket ends.
struct Spectator {
    server: String,
    seen: Seen,
    ended: Arc<Mutex<bool>>,
}

async fn spectate(server: &str, port: u16, space: &str) -> Spectator {
    let url = format!("ws://127.0.0.1:{port}/ws/spaces/{space}");
    let (mut socket, _) = tokio_tungstenite::connect_async(&url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    let seen: Seen = Arc::default();
    let ended = Arc::new(Mutex::new(false));
    let (s, e) = (seen.clone(), ended.clone());
    tokio::spawn(async move {
        while let Some(Ok(msg)) = socket.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(text) = msg {
                let v: serde_json::Value = serde_json::from_str(&text).expect("event JSON");
                let id = v["match_id"].as_i64().expect("match_id");
                s.lock().unwrap().entry(id).or_default().push(v);
            }
        }
        *e.lock().unwrap() = true;
    });
    Spectator {
        server: server.to_string(),
        seen,
        ended,
    }
}

async fn closed_matches(store: &Store) -> usize {
    let mut n = 0;
    for s in [match_status::SETTLED, match_status::REFUNDED] {
        n += store.matches_with_status(s).await.unwrap().len();
    }
    n
}

async fn unfinished_matches(store: &Store) -> Vec<i64> {
    let mut ids = Vec::new();
    for s in [match_status::PENDING, match_status::RUNNING] {
        ids.extend(
            store
                .matches_with_status(s)
                .await
                .unwrap()
                .iter()
                .map(|m| m.id),
        );
    }
    ids
}

/// The matches a worker's log says it started.
fn started_by(p: &Proc) -> Vec<i64> {
    p.log_text()
        .lines()
        .filter(|l| l.contains("match started"))
        .filter_map(|l| l.split("match_id=").nth(1)?.split(' ').next()?.parse().ok())
        .collect()
}

/// The running matches by the worker holding their lease.
async fn held_by(store: &Store) -> HashMap<String, Vec<i64>> {
    let mut held: HashMap<String, Vec<i64>> = HashMap::new();
    for m in store
        .matches_with_status(match_status::RUNNING)
        .await
        .unwrap()
    {
        let lease = store.match_lease(m.id).await.unwrap();
        if let Some(owner) = lease.lease_owner {
            held.entry(owner).or_default().push(m.id);
        }
    }
    held
}

async fn metric(http: &reqwest::Client, p: &Proc, line_start: &str) -> f64 {
    let text = http
        .get(format!("{}/metrics", p.ops))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Waits until no chain transaction is pending in the database.
async fn wait_chain_confirmed(pool: &sqlx::PgPool, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let open: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT idempotency_key, kind, status, error FROM chain_transactions
              WHERE status <> 'confirmed' ORDER BY id",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        if open.iter().all(|(_, _, status, _)| status != "pending") {
            if !open.is_empty() {
                eprintln!("chain transactions that failed (and were handled): {open:?}");
            }
            return;
        }
        assert!(
            Instant::now() < deadline,
            "chain transactions still pending after {within:?}: {open:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every owner's contract balance equals the journal (nothing is in play at the end:
/// fees of entries still queued are locked in the database but still in the owner's
/// contract balance), every escrow is closed as the database says, and the treasury
/// matches.
async fn assert_chain_equals_journal(store: &Store, contracts: &Contracts<AnyChain>) {
    assert_eq!(unfinished_matches(store).await, Vec::<i64>::new());
    for wallet in &chain::dev::dev_accounts(platform::demo::DEMO_OWNERS + 1)[1..] {
        let user = store
            .user_by_wallet(&format!("{wallet:#x}"))
            .await
            .unwrap()
            .expect("demo owner");
        let b = store.balance(user.id).await.unwrap();
        assert_eq!(
            contracts.balance_of(*wallet).await.unwrap(),
            b.available_wei.0 + b.locked_wei.0,
            "contract balance of {wallet} vs the journal"
        );
    }
    let treasury = chain::dev::dev_accounts(1)[0];
    assert_eq!(
        contracts.balance_of(treasury).await.unwrap(),
        store.treasury_total().await.unwrap().0,
        "treasury"
    );
    for (status, chain_status) in [
        (match_status::SETTLED, chain::MatchStatus::Settled),
        (match_status::REFUNDED, chain::MatchStatus::Refunded),
    ] {
        for m in store.matches_with_status(status).await.unwrap() {
            let escrow = contracts.escrow(m.id as u64).await.unwrap();
            // A free match locks nothing on chain; a paid one closes as the database says.
            let fees: u128 = store
                .match_entries(m.id)
                .await
                .unwrap()
                .iter()
                .map(|e| e.fee_wei.0)
                .sum();
            // A match refunded before any of its fees was locked on chain (its lock
            // failed) has no escrow at all.
            let never_locked =
                status == match_status::REFUNDED && escrow.status == chain::MatchStatus::None;
            if fees > 0 && !never_locked {
                assert_eq!(
                    (escrow.status, escrow.held),
                    (chain_status, 0),
                    "escrow of {status} match {}",
                    m.id
                );
            }
        }
    }
}

/// No match was written twice: a refunded match has no rounds, a settled one has each
/// round once with one response per seat, and its pairs come from its own responses.
async fn assert_written_once(pool: &sqlx::PgPool) {
    let rows: Vec<(i64, String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT m.id, m.status,
                (SELECT COUNT(*) FROM rounds r WHERE r.match_id = m.id),
                (SELECT COUNT(DISTINCT r.round_index) FROM rounds r WHERE r.match_id = m.id),
                (SELECT COUNT(*) FROM responses p JOIN rounds r ON p.round_id = r.id
                  WHERE r.match_id = m.id),
                (SELECT COUNT(*) FROM entries e WHERE e.match_id = m.id)
           FROM matches m ORDER BY m.id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (id, status, rounds, distinct_rounds, responses, seats) in rows {
        match status.as_str() {
            "refunded" => assert_eq!(rounds, 0, "refunded match {id} has rounds"),
            "settled" => {
                assert!(rounds > 0, "settled match {id} has no rounds");
                assert_eq!(rounds, distinct_rounds, "a round of match {id} twice");
                assert_eq!(responses, rounds * seats, "responses of match {id}");
            }
            other => panic!("match {id} is {other}"),
        }
    }
    let foreign: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM preference_pairs pp
           JOIN responses c ON c.id = pp.chosen_response_id
           JOIN rounds rc ON rc.id = c.round_id
           JOIN responses r ON r.id = pp.rejected_response_id
           JOIN rounds rr ON rr.id = r.round_id
          WHERE rc.match_id <> pp.match_id OR rr.match_id <> pp.match_id
             OR rc.id <> pp.round_id OR rr.id <> pp.round_id",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(foreign, 0, "pairs whose responses are another round's");
    let dupes: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (
           SELECT round_id, chosen_agent_version_id, rejected_agent_version_id
             FROM preference_pairs
            GROUP BY round_id, chosen_agent_version_id, rejected_agent_version_id,
                     chosen_response_id, rejected_response_id
           HAVING COUNT(*) > 1) d",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(dupes, 0, "duplicate preference pairs");
}

/// Every spectator saw, for each match it followed, the events from where it began
/// watching with no gap, ending with the final event once the match closed (unless
/// its socket ended first); and any two spectators agree on every event both saw.
async fn assert_spectators_complete(spectators: &[Spectator], store: &Store) -> usize {
    let mut reference: HashMap<(i64, u64), serde_json::Value> = HashMap::new();
    let mut complete = 0;
    for s in spectators {
        let ended = *s.ended.lock().unwrap();
        let seen = s.seen.lock().unwrap().clone();
        for (id, events) in seen.iter() {
            let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
            let first = seqs[0];
            assert_eq!(
                seqs,
                (first..first + seqs.len() as u64).collect::<Vec<_>>(),
                "spectator on {} of match {id}: a gap or a duplicate",
                s.server
            );
            let last = events.last().unwrap();
            let is_final = matches!(
                last["type"].as_str(),
                Some("match_settled" | "match_refunded")
            );
            let status = store.get_match(*id).await.unwrap().status;
            if !ended {
                assert!(
                    is_final,
                    "spectator on {} of match {id} ({status}) missed its end: last {last}",
                    s.server
                );
            }
            if is_final {
                let expected = if status == "settled" {
                    "match_settled"
                } else {
                    "match_refunded"
                };
                assert_eq!(last["type"], expected, "match {id}");
                if first == 0 {
                    complete += 1;
                }
            }
            for e in events {
                let key = (*id, e["seq"].as_u64().unwrap());
                match reference.get(&key) {
                    Some(r) => {
                        assert_eq!(r, e, "spectators disagree on event {key:?} ({})", s.server)
                    }
                    None => {
                        reference.insert(key, e.clone());
                    }
                }
            }
        }
    }
    complete
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_and_three_workers_settle_every_match_exactly_once_through_kills() {
    let Some(services) = common::services().await else {
        return;
    };
    let common::Services {
        db,
        redis,
        namespace,
        node,
        contracts,
        db_url,
    } = &services;
    let pool = sqlx::PgPool::connect(db_url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = deployment_env(
        db_url,
        redis,
        namespace.name(),
        &node.url,
        &contracts.deployment(),
    );
    env.extend(
        [
            ("RLFC_ARENA_LEASE_SECS", "5"),
            ("RLFC_ARENA_SWEEP_SECS", "1"),
            ("RLFC_ARENA_QUEUE_WAIT_SECS", "120"),
            ("RLFC_ARENA_MAX_LIVE_MATCHES", "4"),
            ("RLFC_ARENA_MAX_QUEUED_MATCHES", "6"),
            ("RLFC_ARENA_MATCHMAKING_GAP", "50"),
            ("RLFC_ARENA_SHUTDOWN_GRACE_SECS", "30"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // The population: four funded owners, twelve agents auto-entered in three Spaces.
    let mut seed = Proc::spawn(
        "seed",
        dir.path(),
        &env,
        &["seed-demo".into(), "--spaces".into(), SPACES.join(",")],
    );
    let status = seed.child.wait().unwrap();
    assert!(status.success(), "seed-demo:\n{}", seed.log_text());

    let mut servers = vec![
        server("s1", dir.path(), &env, &[]),
        server("s2", dir.path(), &env, &[]),
    ];
    let pace = ["--test-policy", "--test-policy-step-ms", "40"];
    let mut workers = vec![
        worker("w1", dir.path(), &env, &pace),
        worker("w2", dir.path(), &env, &pace),
        worker("w3", dir.path(), &env, &pace),
    ];
    for p in servers.iter_mut().chain(workers.iter_mut()) {
        p.wait_healthy(&http, Duration::from_secs(120)).await;
    }
    // Spectators on both servers, watching each Space from before its first match.
    let mut spectators = Vec::new();
    for s in &servers {
        for space in SPACES {
            spectators.push(spectate(&s.name, s.web.unwrap(), space).await);
        }
    }

    let started = Instant::now();
    let mut killed_worker: Option<(String, Vec<i64>)> = None;
    let mut killed_server = false;
    let mut stopped: Option<Vec<i64>> = None;
    let mut handed_back: Option<Vec<i64>> = None;
    loop {
        let closed = closed_matches(&db.store).await;
        if killed_worker.is_none() && closed >= 12 {
            // SIGKILL a worker in the middle of a match.
            let mut held = held_by(&db.store).await;
            if let Some(i) = workers
                .iter()
                .position(|w| held.get(&w.name).is_some_and(|h| !h.is_empty()))
            {
                let victim = workers.remove(i);
                let mut victim = victim;
                victim.kill9();
                let ids = held.remove(&victim.name).unwrap();
                eprintln!("killed {} holding matches {ids:?}", victim.name);
                killed_worker = Some((victim.name.clone(), ids));
            }
        }
        if killed_worker.is_some() && !killed_server && closed >= 25 {
            // SIGKILL a server, then bring up a replacement with fresh spectators.
            let mut victim = servers.remove(1);
            victim.kill9();
            eprintln!("killed {}", victim.name);
            killed_server = true;
            let mut s3 = server("s3", dir.path(), &env, &[]);
            s3.wait_healthy(&http, Duration::from_secs(120)).await;
            for space in SPACES {
                spectators.push(spectate(&s3.name, s3.web.unwrap(), space).await);
            }
            servers.push(s3);
        }
        if killed_server && stopped.is_none() && closed >= 32 {
            // SIGTERM a worker while it plays: it finishes its matches, then exits 0.
            let held = held_by(&db.store).await;
            // Only matches it plays: a match it is taking over to refund (a dead
            // worker's) is briefly leased to it too.
            let playing = |w: &Proc| -> Vec<i64> {
                let started = started_by(w);
                held.get(&w.name)
                    .map(|h| {
                        h.iter()
                            .copied()
                            .filter(|id| started.contains(id))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            if let Some(i) = workers.iter().position(|w| !playing(w).is_empty()) {
                let ids = playing(&workers[i]);
                let mut w = workers.remove(i);
                w.stop(Duration::from_secs(60)).await;
                eprintln!("stopped {} gracefully while it played {ids:?}", w.name);
                stopped = Some(ids);
                // A slow replacement with no grace period, to be stopped mid-match.
                let mut slow_env = env.clone();
                slow_env.push(("RLFC_ARENA_SHUTDOWN_GRACE_SECS".into(), "0".into()));
                let mut w5 = worker(
                    "w5",
                    dir.path(),
                    &slow_env,
                    &["--test-policy", "--test-policy-step-ms", "400"],
                );
                w5.wait_healthy(&http, Duration::from_secs(120)).await;
                workers.push(w5);
            }
        }
        if stopped.is_some() && handed_back.is_none() {
            let held = held_by(&db.store).await;
            let i = workers.iter().position(|w| w.name == "w5").unwrap();
            let started = started_by(&workers[i]);
            let ids: Vec<i64> = held
                .get("w5")
                .map(|h| {
                    h.iter()
                        .copied()
                        .filter(|id| started.contains(id))
                        .collect()
                })
                .unwrap_or_default();
            if !ids.is_empty() {
                let mut w5 = workers.remove(i);
                w5.stop(Duration::from_secs(60)).await;
                assert!(
                    w5.log_text().contains("handed the unfinished matches back"),
                    "{}",
                    w5.log_text()
                );
                eprintln!("stopped w5 with no grace while it played {ids:?}");
                handed_back = Some(ids);
                workers.push(worker("w6", dir.path(), &env, &pace));
                workers
                    .last_mut()
                    .unwrap()
                    .wait_healthy(&http, Duration::from_secs(120))
                    .await;
            }
        }
        if handed_back.is_some() && closed >= TEST_POLICY_MATCHES {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "only {closed} matches closed in 10 minutes; logs:\n{}",
            servers
                .iter()
                .chain(&workers)
                .map(|p| format!("== {}\n{}", p.name, p.log_text()))
                .collect::<String>()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    eprintln!(
        "{} matches closed in {:.1} s on the test policy",
        closed_matches(&db.store).await,
        started.elapsed().as_secs_f64()
    );
    // Metrics and health of live processes, through the CLI and over HTTP.
    let w = &workers[0];
    assert!(metric(&http, w, "rlfc_tokens_generated_total ").await > 0.0);
    assert!(
        metric(&http, w, "rlfc_matches_finished_total{end=\"settled\"} ").await > 0.0,
        "{}",
        w.log_text()
    );
    assert!(metric(&http, &servers[0], "rlfc_matches_formed_total ").await > 0.0);
    let health = Command::new(env!("CARGO_BIN_EXE_rlfc"))
        .args(["health", "--url", &w.ops])
        .output()
        .unwrap();
    assert!(
        health.status.success(),
        "{}",
        String::from_utf8_lossy(&health.stdout)
    );
    assert!(String::from_utf8_lossy(&health.stdout).contains("\"status\":\"ok\""));

    // Graceful stop: servers stop forming matches, workers play out what is queued
    // (and sweep what the killed processes left), then stop on SIGTERM.
    for s in &mut servers {
        s.stop(Duration::from_secs(60)).await;
    }
    let drain = Instant::now();
    while !unfinished_matches(&db.store).await.is_empty() {
        assert!(
            drain.elapsed() < Duration::from_secs(180),
            "matches still unfinished: {:?}",
            unfinished_matches(&db.store).await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Settlements and refunds written in the database but not yet confirmed on chain
    // (a process died between the two) are resent by the workers' lease sweeps.
    wait_chain_confirmed(&pool, Duration::from_secs(90)).await;
    for w in &mut workers {
        w.stop(Duration::from_secs(60)).await;
        assert!(w.log_text().contains("worker stopped"));
    }

    // The killed worker's matches: one it was about to settle as it died may have
    // settled; the rest were taken over and refunded (their engine state died with it).
    let (victim, held) = killed_worker.unwrap();
    let mut interrupted = 0;
    for id in &held {
        let m = db.store.get_match(*id).await.unwrap();
        if m.status == "refunded" {
            let why = m.error.clone().unwrap_or_default();
            assert!(why.contains("interrupted"), "match {id}: {why}");
            interrupted += 1;
        } else {
            assert_eq!(m.status, "settled", "match {id} of the killed {victim}");
        }
    }
    assert!(
        interrupted > 0,
        "none of {victim}'s matches {held:?} was interrupted"
    );
    // The gracefully stopped worker finished what it played; the matches handed
    // back by the one with no grace were played again by another worker.
    for id in stopped.unwrap().iter().chain(&handed_back.unwrap()) {
        let m = db.store.get_match(*id).await.unwrap();
        assert_eq!(m.status, "settled", "match {id}: {:?}", m.error);
    }
    let settled = db
        .store
        .matches_with_status(match_status::SETTLED)
        .await
        .unwrap();
    assert!(closed_matches(&db.store).await >= TEST_POLICY_MATCHES);
    for slug in SPACES {
        let space = db.store.space_by_slug(slug).await.unwrap();
        assert!(
            settled.iter().any(|m| m.space_id == space.id),
            "no settled {slug} match"
        );
    }
    assert_chain_equals_journal(&db.store, contracts).await;
    assert_written_once(&pool).await;
    let complete = assert_spectators_complete(&spectators, &db.store).await;
    assert!(
        complete >= 10,
        "only {complete} matches were followed from start to end"
    );

    // Three matches on the real models: one server forming three haiku matches, one
    // model worker playing them (SmolLM2 agents, the real judge panel).
    let before = closed_matches(&db.store).await;
    let mut s4 = server(
        "s4",
        dir.path(),
        &env,
        &["--spaces", "haiku", "--max-matches", "3"],
    );
    let mut w4 = worker("w4", dir.path(), &env, &["--no-training"]);
    s4.wait_healthy(&http, Duration::from_secs(120)).await;
    w4.wait_healthy(&http, Duration::from_secs(300)).await;
    let real = Instant::now();
    while closed_matches(&db.store).await < before + 3 {
        assert!(
            real.elapsed() < Duration::from_secs(900),
            "the real-model matches did not finish:\n{}\n{}",
            s4.log_text(),
            w4.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "three real-model haiku matches closed in {:.1} s (model load included)",
        real.elapsed().as_secs_f64()
    );
    s4.stop(Duration::from_secs(60)).await;
    w4.stop(Duration::from_secs(120)).await;
    let newest: Vec<store::Match> = db
        .store
        .matches_with_status(match_status::SETTLED)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| !settled.iter().any(|s| s.id == m.id))
        .collect();
    assert_eq!(newest.len(), 3, "{}", w4.log_text());
    let llm_scores: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM judge_scores js
           JOIN responses p ON p.id = js.response_id
           JOIN rounds r ON r.id = p.round_id
          WHERE r.match_id = ANY($1) AND js.judge = 'llm' AND js.model_hash <> ''",
    )
    .bind(newest.iter().map(|m| m.id).collect::<Vec<_>>())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(llm_scores, 9, "3 matches x 3 seats scored by the LLM judge");
    assert_chain_equals_journal(&db.store, contracts).await;
    assert_written_once(&pool).await;
    pool.close().await;
}
