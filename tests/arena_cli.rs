//! End-to-end tests of the arena commands: a headless tournament on the test policy,
//! the demo playing a real match on the real models, a replay of that match
//! reproducing its result hash, and a second run reusing the demo population.

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
