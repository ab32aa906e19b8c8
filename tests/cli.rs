//! End-to-end tests of the `rlfc` binary: help, configuration errors, the model
//! fetch on an empty cache, and migrations on both database engines.

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
fn help_lists_the_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let out = rlfc(dir.path(), &["--help"], &[]);
    assert!(out.status.success());
    let help = text(&out);
    for sub in ["models", "config", "db", "chain"] {
        assert!(help.contains(sub), "{help}");
    }
}

#[test]
fn bad_configuration_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rlfc.toml"), "[log]\nformat = \"yaml\"\n").unwrap();
    let out = rlfc(dir.path(), &["config"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("log.format"), "{}", text(&out));
    std::fs::write(dir.path().join("rlfc.toml"), "surprise = 1\n").unwrap();
    let out = rlfc(dir.path(), &["config"], &[]);
    assert!(text(&out).contains("surprise"), "{}", text(&out));
}

#[test]
fn config_shows_layers_and_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rlfc.toml"), "data_dir = \"file-dir\"\n").unwrap();
    let out = rlfc(
        dir.path(),
        &["config", "--log-format", "json"],
        &[
            ("DATABASE_URL", "postgres://app:s3cret@db/rlfc"),
            ("RLFC_DATA_DIR", "env-dir"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("data_dir = \"env-dir\""), "{shown}");
    assert!(shown.contains("format = \"json\""), "{shown}");
    assert!(
        shown.contains("app:***@db") && !shown.contains("s3cret"),
        "{shown}"
    );
}

#[test]
fn models_fetch_on_an_empty_cache_then_cached() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("models");
    let cache_s = cache.to_str().unwrap();
    let out = rlfc(
        dir.path(),
        &["models", "fetch", "--models-dir", cache_s],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let first = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(first.contains("smollm2-135m-instruct: fetched"), "{first}");
    assert!(first.contains("all-minilm-l6-v2: fetched"), "{first}");
    let gguf = cache.join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(
        models::sha256_file(&gguf).unwrap(),
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    let out = rlfc(
        dir.path(),
        &["models", "fetch"],
        &[("RLFC_MODELS_DIR", cache_s)],
    );
    let second = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        second.contains("smollm2-135m-instruct: cached, nothing to do"),
        "{second}"
    );
    assert!(
        second.contains("all-minilm-l6-v2: cached, nothing to do"),
        "{second}"
    );
    let out = rlfc(
        dir.path(),
        &["models", "list", "--models-dir", cache_s],
        &[],
    );
    let list = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(list.matches("verified").count(), 4, "{list}");
    let out = rlfc(
        dir.path(),
        &["models", "fetch", "nope", "--models-dir", cache_s],
        &[],
    );
    assert!(
        !out.status.success() && text(&out).contains("unknown model"),
        "{}",
        text(&out)
    );
}

#[test]
fn db_migrate_is_idempotent_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for _ in 0..2 {
        let out = rlfc(
            dir.path(),
            &["db", "migrate", "--data-dir", data.to_str().unwrap()],
            &[],
        );
        assert!(out.status.success(), "{}", text(&out));
        let n = store::MIGRATIONS.len();
        assert!(
            text(&out).contains(&format!("sqlite: schema at migration {n} ({n} applied)")),
            "{}",
            text(&out)
        );
    }
    assert!(data.join("rlfc.sqlite").exists());
}

#[tokio::test]
async fn db_migrate_runs_on_postgres() {
    let Some(db) = testkit::db::TestDb::postgres().await else {
        return;
    };
    let url = testkit::db::database_url_with_name(&testkit::db::postgres_admin_url(), &db.name);
    let dir = tempfile::tempdir().unwrap();
    let out = rlfc(dir.path(), &["db", "status"], &[("DATABASE_URL", &url)]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains("backend:    postgres") && shown.contains("PostgreSQL"),
        "{shown}"
    );
}

#[test]
fn chain_status_on_the_embedded_chain_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let first = rlfc(dir.path(), &["chain", "status", "--data-dir", data_s], &[]);
    assert!(first.status.success(), "{}", text(&first));
    let shown = text(&first);
    assert!(
        shown.contains("backend:    embedded") && shown.contains("chain id:   31337"),
        "{shown}"
    );
    let arena_line = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("arena:"))
            .map(str::to_string)
    };
    let again = rlfc(dir.path(), &["chain", "status", "--data-dir", data_s], &[]);
    assert_eq!(
        arena_line(&shown),
        arena_line(&text(&again)),
        "contracts persist across restarts"
    );
    let bad = rlfc(
        dir.path(),
        &["chain", "status"],
        &[("RLFC_CHAIN_BACKEND", "rpc")],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).contains("chain.rpc_url"), "{}", text(&bad));
}

#[test]
fn bench_spectate_runs_its_spectators_in_a_child_process_and_the_counts_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let out = rlfc(
        dir.path(),
        &[
            "bench",
            "spectate",
            "--spectators",
            "10",
            "--seats",
            "2",
            "--rounds",
            "1",
            "--tokens",
            "5",
            "--steps-per-sec",
            "500",
            "--export-rows",
            "0",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let figures: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = &figures["spectate"][0];
    assert_eq!(run["clients_in_child_process"], true);
    // One round: the task, 5 steps × 2 seats, 2 answers, 2 scores; then 4 closing events.
    assert_eq!(run["events_emitted"], 1 + 10 + 2 + 2 + 4);
    assert_eq!(run["deliveries"], run["deliveries_expected"]);
    assert_eq!(run["deliveries"], 10 * (1 + 10 + 2 + 2 + 4));
    assert_eq!(run["complete"], 10);
    assert_eq!(run["delay"]["samples"], run["deliveries"]);
    assert!(
        figures["export"].is_null(),
        "--export-rows 0 skips the export"
    );
}
