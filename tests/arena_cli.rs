//! End-to-end tests of the arena commands: a headless tournament on the test policy,
//! the demo playing a real match on the real models, a replay of that match
//! reproducing its result hash, a second run reusing the demo population, and the
//! product-path learning benchmark.

use std::path::Path;
use std::process::{Command, Output};

fn rlfc(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rlfc"));
    cmd.current_dir(dir).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("RLFC_") || k == "DATABASE_URL" || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    let assets = concat!(env!("CARGO_MANIFEST_DIR"), "/assets");
    let models = models::default_models_dir();
    cmd.env("RLFC_ASSETS_DIR", assets)
        .env("RLFC_MODELS_DIR", &models)
        .env("NO_COLOR", "1");
    cmd.envs(env.iter().copied());
    cmd.output().expect("run rlfc")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_tournament_on_the_test_policy_prints_the_leaderboard() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = [
        "--data-dir",
        data.to_str().unwrap(),
        "tournament",
        "--space",
        "math-sprint",
        "--matches",
        "3",
        "--tier",
        "bronze",
        "--test-policy",
    ];
    let out = rlfc(dir.path(), &args, &[]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("Math Sprint (math-sprint): 3 settled, 0 refunded"),
        "{shown}"
    );
    assert!(
        shown.contains("rank") && shown.contains("Plainspoken"),
        "{shown}"
    );
    assert!(
        shown.contains("preference pairs: table preference_pairs"),
        "{shown}"
    );

    let out = rlfc(
        dir.path(),
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "tournament",
            "--space",
            "chess",
        ],
        &[],
    );
    assert!(!out.status.success());
    let shown = text(&out);
    assert!(
        shown.contains("no Space named \"chess\"") && shown.contains("tweet-duel"),
        "{shown}"
    );
    let out = rlfc(
        dir.path(),
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "tournament",
            "--space",
            "haiku",
            "--tier",
            "platinum",
        ],
        &[],
    );
    assert!(
        text(&out).contains("no fee tier \"platinum\""),
        "{}",
        text(&out)
    );
}

#[test]
fn the_demo_plays_a_real_match_restarts_and_the_match_replays() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let one_at_a_time = [("RLFC_ARENA_MAX_LIVE_MATCHES", "1")];
    let out = rlfc(
        dir.path(),
        &["--data-dir", data, "demo", "--matches", "1"],
        &one_at_a_time,
    );
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("agents=12"), "{shown}");
    assert!(shown.contains("settled:"), "{shown}");
    assert!(shown.contains("demo stopped"), "{shown}");

    // The match it played replays to the same hash on fresh model instances.
    let out = rlfc(dir.path(), &["--data-dir", data, "replay", "1"], &[]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("reproduced"), "{shown}");

    // A second run on the same data reuses the demo population and finds nothing left
    // to reconcile.
    let out = rlfc(
        dir.path(),
        &[
            "--data-dir",
            data,
            "tournament",
            "--space",
            "haiku",
            "--matches",
            "2",
            "--test-policy",
        ],
        &[],
    );
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(!shown.contains("reconciled"), "{shown}");
    assert!(shown.contains("Haiku (haiku): 2 settled"), "{shown}");

    // An unsettled match id is refused with a reason.
    let out = rlfc(dir.path(), &["--data-dir", data, "replay", "9999"], &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("9999"), "{}", text(&out));
}

/// Issue 19, item 7: Ctrl-C on `rlfc demo` stops cleanly. Before, the match that was
/// playing was refunded on the spot, or stayed `running` in the database when the
/// signal cancelled a settlement halfway. Now no new matches form, the match in play
/// finishes (settles) within the grace period, and the process exits with nothing
/// left running.
#[test]
fn ctrl_c_on_the_demo_leaves_no_match_running() {
    use std::io::Read as _;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rlfc"));
    cmd.current_dir(dir.path())
        .args(["--data-dir", data.to_str().unwrap(), "demo"]);
    for (k, _) in std::env::vars() {
        if k.starts_with("RLFC_") || k == "DATABASE_URL" || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    // Output goes to a file: a pipe nobody reads would fill and stall the demo.
    let log_path = dir.path().join("demo.log");
    let log = std::fs::File::create(&log_path).unwrap();
    cmd.env(
        "RLFC_ASSETS_DIR",
        concat!(env!("CARGO_MANIFEST_DIR"), "/assets"),
    )
    .env("RLFC_MODELS_DIR", models::default_models_dir())
    .env("RLFC_WEB_BIND", "127.0.0.1:0")
    .env("RLFC_ARENA_SHUTDOWN_GRACE_SECS", "600")
    .env("RLFC_ARENA_MAX_LIVE_MATCHES", "1")
    .env("NO_COLOR", "1")
    .stdout(log.try_clone().unwrap())
    .stderr(log);
    let mut child = cmd.spawn().expect("start rlfc demo");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = data.join("rlfc.sqlite");
    // Match ids by status: pending, running, settled, refunded.
    let statuses = |db: &Path| {
        rt.block_on(async {
            let store = store::Store::open_sqlite(db).await.ok()?;
            let mut out = Vec::new();
            for s in ["pending", "running", "settled", "refunded"] {
                let ids: Vec<i64> = store
                    .matches_with_status(s.parse().ok()?)
                    .await
                    .ok()?
                    .into_iter()
                    .map(|m| m.id)
                    .collect();
                out.push(ids);
            }
            store.close().await;
            Some(out)
        })
    };
    // Wait until a match is in play.
    let started = Instant::now();
    let playing = loop {
        if let Some(n) = db.exists().then(|| statuses(&db)).flatten()
            && let Some(&id) = n[1].first()
        {
            break id;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the demo exited early: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no match started within 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if stopped.elapsed() > Duration::from_secs(660) {
            child.kill().ok();
            panic!("the demo did not stop within the grace period after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    std::fs::File::open(&log_path)
        .unwrap()
        .read_to_string(&mut err)
        .ok();
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("stopping: no new matches"), "{err}");
    assert!(err.contains("demo stopped"), "{err}");
    let n = statuses(&db).expect("read the demo's database");
    assert!(
        n[0].is_empty() && n[1].is_empty(),
        "nothing left pending or running: {n:?}\n{err}"
    );
    assert!(
        n[2].contains(&playing),
        "the match in play when Ctrl-C came finished and settled: {n:?}\n{err}"
    );
}

/// `rlfc bench learning --product` end to end on the real models, sized down: the
/// learner plays Haiku against the demo population until two pairs make a one-step
/// run due, the product trainer trains and records it, and the trained adapter meets
/// its frozen parent on four held-out tasks.
#[test]
fn bench_learning_product_plays_trains_and_evaluates_a_learner() {
    let dir = tempfile::tempdir().unwrap();
    let out = rlfc(
        dir.path(),
        &[
            "bench",
            "learning",
            "--product",
            "--spaces",
            "haiku",
            "--max-matches",
            "8",
            "--eval-matches",
            "4",
            "--decode-batch",
            "8",
            "--training",
            r#"{"train_every_pairs": 2, "max_pairs": 4, "max_steps": 1, "epochs": 1, "evaluation_matches": 0, "max_length": 96}"#,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["training_policy"]["train_every_pairs"], 2);
    assert_eq!(report["training_policy"]["label_smoothing"], 0.1);
    let haiku = &report["spaces"][0];
    assert_eq!(haiku["space"], "haiku");
    let matches = haiku["matches"].as_u64().unwrap();
    assert!((1..=8).contains(&matches), "{haiku}");
    let run = &haiku["run"];
    assert!(run["pairs"].as_u64().unwrap() >= 2, "{haiku}");
    assert!(
        haiku["learner_pairs"].as_u64() >= run["pairs"].as_u64(),
        "{haiku}"
    );
    assert_eq!(run["adapter_hash"].as_str().unwrap().len(), 64, "{haiku}");
    assert!(run["gate"].is_null(), "evaluation_matches 0 skips the gate");
    let h2h = &haiku["trained_vs_parent"];
    let played = ["wins", "draws", "losses"]
        .iter()
        .map(|k| h2h[k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(played, 4, "{h2h}");
    let ci = &h2h["win_rate"]["ci95"];
    assert!(ci[0].as_f64() <= ci[1].as_f64(), "{h2h}");
    assert_eq!(
        haiku["significant_gain"].as_bool().unwrap(),
        ci[0].as_f64().unwrap() > 0.5 && h2h["win_rate"]["trials"].as_u64().unwrap() > 0
    );
    assert_eq!(
        report["significant_gains"],
        u64::from(haiku["significant_gain"] == true)
    );

    // Bad settings name the option.
    let out = rlfc(
        dir.path(),
        &[
            "bench",
            "learning",
            "--product",
            "--training",
            r#"{"epochs": 0}"#,
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("training.epochs"), "{}", text(&out));
}
