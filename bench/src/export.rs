//! The dataset export's speed against PostgreSQL's own bulk copy of the same rows.
//!
//! A scratch PostgreSQL database gets `rows` preference pairs (one played match from
//! the store's fixtures, then generated rounds, responses and pairs of realistic size,
//! written by SQL in the server). Then:
//! - the real server streams `GET /api/v1/datasets/preferences` (TRL JSON lines) over
//!   loopback HTTP to a client that counts lines and bytes;
//! - `psql -c "\copy (SELECT …) TO '/dev/null'"` copies the same rows, selected by the
//!   same joins, in PostgreSQL's text format.
//!
//! The process's peak RSS is taken over an export of a tenth of the rows and over the
//! whole export: when it does not grow with the row count, memory is constant. The
//! scratch database is dropped at the end.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use store::Store;

use crate::{BenchError, mib, proc_status_kib, reset_peak_rss, round2};
use testkit::payments::LedgerPayments;
use web::{AppState, WebConfig};

/// What to run.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Preference pairs to seed and export.
    pub rows: u64,
    /// A PostgreSQL URL whose role may create databases; the scratch database lives
    /// next to the one it names.
    pub admin_url: String,
    /// The `psql` program.
    pub psql: String,
}

impl Default for ExportOptions {
    fn default() -> ExportOptions {
        ExportOptions {
            rows: 200_000,
            admin_url: "postgres://postgres@127.0.0.1:5432/postgres".into(),
            psql: "psql".into(),
        }
    }
}

/// One timed read of the rows.
#[derive(Debug, Clone, Serialize)]
pub struct Transfer {
    /// Rows received.
    pub rows: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Wall seconds.
    pub secs: f64,
    /// Rows per second.
    pub rows_per_sec: f64,
    /// MiB per second.
    pub mib_per_sec: f64,
}

impl Transfer {
    fn new(rows: u64, bytes: u64, secs: f64) -> Transfer {
        let secs = secs.max(1e-9);
        Transfer {
            rows,
            bytes,
            secs: round2(secs),
            rows_per_sec: round2(rows as f64 / secs),
            mib_per_sec: round2(bytes as f64 / secs / (1024.0 * 1024.0)),
        }
    }
}

/// The process's memory around the export, MiB (`/proc/self/status`).
#[derive(Debug, Clone, Serialize)]
pub struct ExportMemory {
    /// RSS with the server up, before any export.
    pub rss_before_mib: Option<f64>,
    /// Rows in the small export.
    pub small_rows: u64,
    /// Peak RSS while exporting a tenth of the rows.
    pub peak_small_mib: Option<f64>,
    /// Peak RSS while exporting every row.
    pub peak_full_mib: Option<f64>,
    /// RSS after the full export.
    pub rss_after_mib: Option<f64>,
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct ExportFigures {
    /// Pairs in the scratch database.
    pub rows: u64,
    /// Seconds to seed them.
    pub seed_secs: f64,
    /// The streamed HTTP export (`format=trl`).
    pub http_export: Transfer,
    /// `psql \copy` of the same rows (bytes: not counted, written to /dev/null).
    pub psql_copy: Transfer,
    /// HTTP export rows/s as a share of `psql \copy` rows/s.
    pub export_vs_copy: f64,
    /// Memory.
    pub memory: ExportMemory,
}

/// The rows the export reads, with the same joins, in id order (for `\copy`).
const SAME_ROWS: &str = "SELECT p.id, p.match_id, r.round_index, s.slug AS space, p.prompt, p.chosen, \
     p.rejected, cv.agent_id AS chosen_agent_id, p.chosen_agent_version_id, \
     rv.agent_id AS rejected_agent_id, p.rejected_agent_version_id, \
     p.margin, p.judge_agreement, p.created_at \
     FROM preference_pairs p \
     JOIN rounds r ON r.id = p.round_id \
     JOIN spaces s ON s.id = p.space_id \
     JOIN agent_versions cv ON cv.id = p.chosen_agent_version_id \
     JOIN agent_versions rv ON rv.id = p.rejected_agent_version_id \
     ORDER BY p.id";

/// Seeds a scratch database with `opts.rows` pairs, times both reads, drops it.
pub fn export(opts: &ExportOptions) -> Result<ExportFigures, BenchError> {
    if !(10..=50_000_000).contains(&opts.rows) {
        return Err(BenchError::Invalid {
            field: "rows",
            reason: "must be within 10..=50000000".into(),
        });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-export")
        .enable_all()
        .build()
        .map_err(BenchError::io("starting the export runtime"))?;
    runtime.block_on(async {
        let admin = Store::open_url(&opts.admin_url).await?;
        let name = format!(
            "rlfc_bench_export_{}_{}",
            std::process::id(),
            store::now_ms()
        );
        admin
            .execute_admin(&format!("CREATE DATABASE {name}"))
            .await?;
        let url = testkit::db::database_url_with_name(&opts.admin_url, &name);
        let result = run(opts, &url).await;
        // Always drop the scratch database, whatever happened.
        let dropped = admin
            .execute_admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
        admin.close().await;
        let figures = result?;
        dropped?;
        Ok(figures)
    })
}

async fn run(opts: &ExportOptions, url: &str) -> Result<ExportFigures, BenchError> {
    let store = Store::open_url(url).await?;
    store.migrate().await?;
    let seed_start = Instant::now();
    seed(&store, opts.rows).await?;
    let seed_secs = seed_start.elapsed().as_secs_f64();

    let state = AppState::new(
        store.clone(),
        platform::bus::Bus::new(),
        Vec::new(),
        Arc::new(LedgerPayments::new(store.clone())),
        WebConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(BenchError::io("binding the server"))?;
    let addr = listener
        .local_addr()
        .map_err(BenchError::io("server address"))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = web::serve(listener, state, async move {
            let _ = stopped.await;
        })
        .await;
    });
    let client = reqwest::Client::builder().no_proxy().build()?;
    let endpoint = format!("http://{addr}/api/v1/datasets/preferences?format=trl");

    let rss_before = proc_status_kib("VmRSS");
    let small_rows = opts.rows / 10;
    reset_peak_rss();
    let small = fetch(&client, &format!("{endpoint}&limit={small_rows}")).await?;
    let peak_small = proc_status_kib("VmHWM");
    reset_peak_rss();
    let http_export = fetch(&client, &endpoint).await?;
    let peak_full = proc_status_kib("VmHWM");
    let rss_after = proc_status_kib("VmRSS");
    let _ = stop.send(());
    let _ = server.await;
    store.close().await;

    let psql_copy = copy_with_psql(&opts.psql, url).await?;
    for (what, got) in [
        ("the small HTTP export", (small.rows, small_rows)),
        ("the HTTP export", (http_export.rows, opts.rows)),
        ("psql \\copy", (psql_copy.rows, opts.rows)),
    ] {
        if got.0 != got.1 {
            return Err(BenchError::Check(format!(
                "{what} gave {} rows, expected {}",
                got.0, got.1
            )));
        }
    }
    Ok(ExportFigures {
        rows: opts.rows,
        seed_secs: round2(seed_secs),
        export_vs_copy: round2(http_export.rows_per_sec / psql_copy.rows_per_sec.max(1e-9)),
        http_export,
        psql_copy,
        memory: ExportMemory {
            rss_before_mib: mib(rss_before),
            small_rows,
            peak_small_mib: mib(peak_small),
            peak_full_mib: mib(peak_full),
            rss_after_mib: mib(rss_after),
        },
    })
}

/// Streams one export, counting its lines and bytes.
async fn fetch(client: &reqwest::Client, url: &str) -> Result<Transfer, BenchError> {
    let start = Instant::now();
    let mut response = client.get(url).send().await?.error_for_status()?;
    let (mut rows, mut bytes) = (0u64, 0u64);
    while let Some(chunk) = response.chunk().await? {
        bytes += chunk.len() as u64;
        rows += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
    }
    Ok(Transfer::new(rows, bytes, start.elapsed().as_secs_f64()))
}

/// Times `psql \copy` of the same rows to /dev/null; psql reports the row count.
async fn copy_with_psql(psql: &str, url: &str) -> Result<Transfer, BenchError> {
    let start = Instant::now();
    let out = tokio::process::Command::new(psql)
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-d", url, "-c"])
        .arg(format!("\\copy ({SAME_ROWS}) TO '/dev/null'"))
        .output()
        .await
        .map_err(BenchError::io(format!("running {psql}")))?;
    let secs = start.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(BenchError::Check(format!(
            "{psql} \\copy failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let rows = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("COPY ")?.parse::<u64>().ok())
        .ok_or_else(|| BenchError::Check(format!("{psql} printed no COPY count: {stdout}")))?;
    Ok(Transfer::new(rows, 0, secs))
}

/// `rows` pairs: the fixture match's one, then `rows - 1` more, each in a round of its
/// own with two responses, of the sizes a Tweet Duel produces (a ChatML prompt of
/// about 300 bytes, answers of about 150).
async fn seed(store: &Store, rows: u64) -> Result<(), BenchError> {
    let played = testkit::fixtures::played_match(store, 2).await;
    let (m, space) = (played.match_id, played.space_id);
    let (e0, e1) = (played.entry_ids[0], played.entry_ids[1]);
    let (v0, v1) = (played.version_ids[0], played.version_ids[1]);
    let more = rows - 1;
    let now = store::now_ms();
    let prompt = "'<|im_start|>system\nYou are a witty copywriter. Write one tweet, under 280 characters, no hashtags spam.<|im_end|>\n<|im_start|>user\nWrite a tweet that makes people want to drink tea this morning (variant ' || r.round_index || ').<|im_end|>\n<|im_start|>assistant\n'";
    let sql = format!(
        "INSERT INTO rounds (match_id, round_index, task, started_at, finished_at)
         SELECT {m}, g, 'Write a tweet that makes people want to drink tea this morning (variant ' || g || ').', {now}, {now}
         FROM generate_series(1, {more}) g;
         INSERT INTO responses (round_id, entry_id, prompt, text, tokens, finish_reason, created_at)
         SELECT r.id, e.entry_id, {prompt},
                CASE WHEN e.entry_id = {e0}
                     THEN 'Steam rising, pages turning: tea is the quiet engine of every good morning. Pour a cup, take a breath, begin. ' || md5(r.id::text)
                     ELSE 'Tea is nice. Drink tea in the morning because it is a drink and mornings are when people drink. ' || md5(r.id::text)
                END,
                40, 'stop', {now}
         FROM rounds r CROSS JOIN (VALUES ({e0}), ({e1})) AS e(entry_id)
         WHERE r.match_id = {m} AND r.round_index >= 1;
         INSERT INTO preference_pairs (match_id, round_id, space_id, prompt, chosen_response_id,
             rejected_response_id, chosen, rejected, chosen_agent_version_id,
             rejected_agent_version_id, margin, judge_agreement, created_at)
         SELECT {m}, r.id, {space}, c.prompt, c.id, w.id, c.text, w.text, {v0}, {v1},
                0.05 + (r.round_index % 90) / 100.0, CASE WHEN r.round_index % 3 = 0 THEN 0.5 ELSE 1.0 END,
                {now} + r.round_index
         FROM rounds r
         JOIN responses c ON c.round_id = r.id AND c.entry_id = {e0}
         JOIN responses w ON w.round_id = r.id AND w.entry_id = {e1}
         WHERE r.match_id = {m} AND r.round_index >= 1
         ORDER BY r.round_index;
         ANALYZE;"
    );
    store.execute_admin(&sql).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hundred_rows_come_out_of_both_paths() {
        let ci = testkit::in_ci();
        let psql_here = std::process::Command::new("psql")
            .arg("--version")
            .output()
            .is_ok();
        if !psql_here && !ci {
            eprintln!("psql not installed, skipping the export benchmark test");
            return;
        }
        let opts = ExportOptions {
            rows: 100,
            admin_url: testkit::db::postgres_admin_url(),
            ..ExportOptions::default()
        };
        let f = match export(&opts) {
            Err(BenchError::Store(e)) if !ci => {
                eprintln!("PostgreSQL unreachable, skipping the export benchmark test: {e}");
                return;
            }
            other => other.unwrap(),
        };
        // `export` itself refuses counts that differ; these say what it compared.
        assert_eq!(f.rows, 100);
        assert_eq!(f.http_export.rows, 100);
        assert_eq!(f.psql_copy.rows, 100);
        assert_eq!(f.memory.small_rows, 10);
        assert!(
            f.http_export.bytes > 100 * 300,
            "each line holds a prompt and two answers"
        );
    }

    #[test]
    fn too_few_rows_names_the_field() {
        let e = export(&ExportOptions {
            rows: 1,
            ..ExportOptions::default()
        })
        .unwrap_err();
        assert!(e.to_string().starts_with("rows:"), "{e}");
    }
}
