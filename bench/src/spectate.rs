//! Many spectators of one live match: real websockets (tokio-tungstenite clients)
//! against the real server (`/ws/matches/{id}`), fed through the real event bus.
//!
//! The server runs on a runtime of its own and the clients on another, in this one
//! process. Once every spectator is connected and has its snapshot, a dedicated
//! thread publishes a scripted match at a live match's pace: each round a task, one
//! token delta per seat per decode step, every seat's complete answer and its judge
//! scores, then ranking, payouts, rating changes and the settlement. Every client
//! parses each event, checks its sequence number and takes the delay from the event's
//! `at_ms` (stamped by the bus at publish, millisecond resolution) to its receipt.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arena::events::{EventKind, SeatInfo};
use platform::bus::Bus;
use serde::Serialize;

use crate::spectators::{ClientPlan, ClientReport, Ready, now_us};
use crate::{BenchError, Percentiles, mib, proc_status_kib, round2};
use testkit::payments::LedgerPayments;
use web::{AppState, WebConfig};

/// What to run.
#[derive(Debug, Clone)]
pub struct SpectateOptions {
    /// Concurrent spectators of the one match.
    pub spectators: usize,
    /// Seats at the match (one token delta per seat per decode step).
    pub seats: usize,
    /// Rounds the match plays.
    pub rounds: u32,
    /// Tokens each seat writes per round.
    pub tokens: u32,
    /// Decode steps per second: the match's pace.
    pub steps_per_sec: f64,
    /// Worker threads of the server's runtime.
    pub server_threads: usize,
    /// Worker threads of the clients' runtime.
    pub client_threads: usize,
    /// Handshakes in flight at once while the spectators connect.
    pub connect_concurrency: usize,
    /// Where the spectators run.
    pub clients: Clients,
}

/// Where the spectators run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clients {
    /// On a runtime of their own in this process.
    InProcess,
    /// In a child process: `program args… --threads N PLAN_JSON` must call
    /// [`crate::spectators::child_main`] (`rlfc bench spectate` runs itself).
    Child {
        /// The program.
        program: std::path::PathBuf,
        /// Its leading arguments.
        args: Vec<String>,
    },
}

impl Default for SpectateOptions {
    /// One 4-player Tweet Duel as the real models play it here (docs/benchmarks.md,
    /// arena: 4 seats × about 50 tokens decoded in about 4 s, i.e. 12.5 steps a
    /// second, 50 token deltas a second), three rounds long.
    fn default() -> SpectateOptions {
        SpectateOptions {
            spectators: 1000,
            seats: 4,
            rounds: 3,
            tokens: 50,
            steps_per_sec: 12.5,
            server_threads: 2,
            client_threads: 2,
            connect_concurrency: 128,
            clients: Clients::InProcess,
        }
    }
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct SpectateFigures {
    /// Spectators asked for.
    pub spectators: usize,
    /// Whether the spectators ran in a child process of their own.
    pub clients_in_child_process: bool,
    /// Seconds to connect them all (each until it had the snapshot).
    pub connect_secs: f64,
    /// Events published after everyone connected (the snapshot's one event aside).
    pub events_emitted: u64,
    /// Of which token deltas.
    pub token_deltas: u64,
    /// Seconds from the first to the last publish.
    pub emit_secs: f64,
    /// Events published per second.
    pub emitted_per_sec: f64,
    /// `spectators × events_emitted`.
    pub deliveries_expected: u64,
    /// Live events received by all clients together.
    pub deliveries: u64,
    /// Seconds from the first publish to the last receipt.
    pub delivery_secs: f64,
    /// Deliveries per second over that span.
    pub delivered_per_sec: f64,
    /// Spectators that received every event once, in order, then a normal close.
    pub complete: usize,
    /// Spectators the server cut off as too slow (close code 4008).
    pub cut_off: usize,
    /// Spectators that ended any other way (error, other close, a gap in sequence).
    pub other: usize,
    /// Delay from emit to receipt over every delivery.
    pub delay: Percentiles,
    /// Peak RSS of the server's process (with the clients too when in process), MiB.
    pub server_peak_rss_mib: Option<f64>,
    /// Peak RSS of the clients' process, MiB.
    pub clients_peak_rss_mib: Option<f64>,
    /// CPU seconds the server's process used from the first publish to the last
    /// receipt (the server and the emitter thread; the clients too when in process).
    pub server_cpu_secs: Option<f64>,
    /// CPU seconds the clients' process used over about the same span (from when
    /// all were connected), when it is a child process.
    pub clients_cpu_secs: Option<f64>,
}

fn check(opts: &SpectateOptions) -> Result<(), BenchError> {
    let invalid = |field, reason: &str| {
        Err(BenchError::Invalid {
            field,
            reason: reason.into(),
        })
    };
    if opts.spectators == 0 || opts.spectators > 100_000 {
        return invalid("spectators", "must be within 1..=100000");
    }
    if !(2..=16).contains(&opts.seats) {
        return invalid("seats", "must be within 2..=16");
    }
    if !(1..=100).contains(&opts.rounds) {
        return invalid("rounds", "must be within 1..=100");
    }
    if !(1..=4096).contains(&opts.tokens) {
        return invalid("tokens", "must be within 1..=4096");
    }
    if !(opts.steps_per_sec.is_finite()
        && opts.steps_per_sec > 0.0
        && opts.steps_per_sec <= 10_000.0)
    {
        return invalid("steps_per_sec", "must be within (0, 10000]");
    }
    if opts.server_threads == 0 || opts.client_threads == 0 || opts.connect_concurrency == 0 {
        return invalid(
            "threads",
            "server, client and connect counts must be at least 1",
        );
    }
    Ok(())
}

/// Runs `opts.spectators` spectators against a fresh server and returns the figures.
/// The server's process needs an open file per spectator, and so does the clients'
/// (the same one with [`Clients::InProcess`]; see [`crate::raise_open_files`]).
pub fn spectate(opts: &SpectateOptions) -> Result<SpectateFigures, BenchError> {
    check(opts)?;
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.server_threads)
        .thread_name("bench-server")
        .enable_all()
        .build()
        .map_err(BenchError::io("starting the server's runtime"))?;
    let dir = tempfile::tempdir().map_err(BenchError::io("temporary directory"))?;
    let bus = Bus::new();
    let (addr, match_id, seats, stop) = server_rt.block_on(start_server(opts, &bus, dir.path()))?;

    // The snapshot every spectator gets first: the match's announcement.
    bus.publish(
        match_id,
        EventKind::MatchCreated {
            space: "tweet-duel".into(),
            seats: seats.clone(),
            seed: 7,
        },
    );
    let expected = script_len(opts);
    let plan = ClientPlan {
        url: format!("ws://{addr}/ws/matches/{match_id}"),
        spectators: opts.spectators,
        events: expected,
        connect_concurrency: opts.connect_concurrency,
        timeout_secs: (expected as f64 / opts.steps_per_sec) as u64 + 120,
    };
    let mut clients = Spectators::start(&opts.clients, plan, opts.client_threads)?;
    let ready = clients.ready()?;

    let cpu_at_start = crate::cpu_secs();
    let emitter = {
        let (bus, opts) = (bus.clone(), opts.clone());
        std::thread::Builder::new()
            .name("bench-emitter".into())
            .spawn(move || emit_match(&bus, match_id, &seats, &opts))
            .map_err(BenchError::io("starting the emitter thread"))?
    };
    let emitted = emitter
        .join()
        .map_err(|_| BenchError::Check("the emitter thread panicked".into()))?;
    let report = clients.report()?;
    let server_cpu_secs = crate::cpu_secs()
        .zip(cpu_at_start)
        .map(|(end, start)| round2(end - start));
    let _ = stop.send(());
    server_rt.shutdown_timeout(Duration::from_secs(10));
    if emitted.events != expected {
        return Err(BenchError::Check(format!(
            "the emitter published {} events, the script has {expected}",
            emitted.events
        )));
    }

    let events = emitted.events;
    let delivery_secs = (report.last_receipt_us - emitted.start_us).max(0) as f64 / 1e6;
    let emit_secs = emitted.end.duration_since(emitted.start).as_secs_f64();
    Ok(SpectateFigures {
        spectators: opts.spectators,
        clients_in_child_process: matches!(opts.clients, Clients::Child { .. }),
        connect_secs: ready.connect_secs,
        events_emitted: events,
        token_deltas: emitted.token_deltas,
        emit_secs: round2(emit_secs),
        emitted_per_sec: round2(events as f64 / emit_secs.max(1e-9)),
        deliveries_expected: events * opts.spectators as u64,
        deliveries: report.deliveries,
        delivery_secs: round2(delivery_secs),
        delivered_per_sec: round2(report.deliveries as f64 / delivery_secs.max(1e-9)),
        complete: report.complete,
        cut_off: report.cut_off,
        other: report.other,
        delay: report.delay,
        server_peak_rss_mib: mib(proc_status_kib("VmHWM")),
        clients_peak_rss_mib: report.peak_rss_mib,
        server_cpu_secs,
        clients_cpu_secs: report.cpu_secs.filter(|_| {
            // In process, the one process's CPU is already the server's figure.
            matches!(opts.clients, Clients::Child { .. })
        }),
    })
}

/// The spectators, running.
enum Spectators {
    InProcess {
        runtime: tokio::runtime::Runtime,
        ready: Option<tokio::sync::oneshot::Receiver<Result<Ready, BenchError>>>,
        task: tokio::task::JoinHandle<ClientReport>,
    },
    Child {
        child: std::process::Child,
        lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    },
}

impl Spectators {
    fn start(how: &Clients, plan: ClientPlan, threads: usize) -> Result<Spectators, BenchError> {
        match how {
            Clients::InProcess => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .thread_name("bench-clients")
                    .enable_all()
                    .build()
                    .map_err(BenchError::io("starting the clients' runtime"))?;
                let (tx, rx) = tokio::sync::oneshot::channel();
                let task = runtime.spawn(crate::spectators::run(plan, tx));
                Ok(Spectators::InProcess {
                    runtime,
                    ready: Some(rx),
                    task,
                })
            }
            Clients::Child { program, args } => {
                use std::io::BufRead as _;
                let mut child = std::process::Command::new(program)
                    .args(args)
                    .arg("--threads")
                    .arg(threads.to_string())
                    .arg(serde_json::to_string(&plan).expect("plans serialize"))
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .map_err(BenchError::io(format!("starting {}", program.display())))?;
                let stdout = child.stdout.take().expect("piped stdout");
                Ok(Spectators::Child {
                    child,
                    lines: std::io::BufReader::new(stdout).lines(),
                })
            }
        }
    }

    fn ready(&mut self) -> Result<Ready, BenchError> {
        match self {
            Spectators::InProcess { ready, .. } => ready
                .take()
                .expect("asked once")
                .blocking_recv()
                .map_err(|_| {
                    BenchError::Check("the spectators stopped before connecting".into())
                })?,
            Spectators::Child { .. } => self.line(),
        }
    }

    fn report(self) -> Result<ClientReport, BenchError> {
        match self {
            Spectators::InProcess { runtime, task, .. } => {
                let report = runtime
                    .block_on(task)
                    .map_err(|e| BenchError::Check(format!("the spectators' task failed: {e}")));
                runtime.shutdown_timeout(Duration::from_secs(10));
                report
            }
            mut child @ Spectators::Child { .. } => {
                let report = child.line();
                if let Spectators::Child { mut child, .. } = child {
                    let _ = child.wait();
                }
                report
            }
        }
    }

    /// The child's next JSON line.
    fn line<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, BenchError> {
        let Spectators::Child { child, lines } = self else {
            unreachable!("only the child speaks in lines")
        };
        match lines.next() {
            Some(Ok(line)) => serde_json::from_str(&line).map_err(|e| {
                BenchError::Check(format!("the spectators' process said {line:?}: {e}"))
            }),
            _ => {
                let status = child
                    .wait()
                    .map_err(BenchError::io("waiting for the spectators"))?;
                Err(BenchError::Check(format!(
                    "the spectators' process ended early ({status}); its error is on stderr"
                )))
            }
        }
    }
}

/// Events the emitter publishes for `opts` (the snapshot's announcement aside).
pub fn script_len(opts: &SpectateOptions) -> u64 {
    let seats = opts.seats as u64;
    u64::from(opts.rounds) * (1 + u64::from(opts.tokens) * seats + 2 * seats) + 4
}

/// A store with one running match, and the server on it; returns the address, the
/// match, its seats and the server's stop switch.
async fn start_server(
    opts: &SpectateOptions,
    bus: &Bus,
    dir: &std::path::Path,
) -> Result<
    (
        std::net::SocketAddr,
        i64,
        Vec<SeatInfo>,
        tokio::sync::oneshot::Sender<()>,
    ),
    BenchError,
> {
    let store = store::Store::open_sqlite(&dir.join("bench.sqlite")).await?;
    store.migrate().await?;
    let (space_id, _) = testkit::fixtures::fixture_space(&store).await;
    let free_tier = store
        .fee_tiers(space_id)
        .await?
        .into_iter()
        .find(|t| t.fee_wei == store::Wei::ZERO)
        .ok_or_else(|| BenchError::Check("the fixture Space has no free tier".into()))?
        .id;
    let mut seats = Vec::with_capacity(opts.seats);
    for seat in 0..opts.seats {
        let user = store
            .upsert_user(&format!("0x{}", format!("{:02x}", 0x40 + seat).repeat(20)))
            .await?;
        let (agent, version) = store
            .create_agent(
                user.id,
                &format!("spectated {seat}"),
                "smollm2-135m",
                &store::NewAgentVersion {
                    system_prompt: "Write short, vivid tweets.".into(),
                    sampling: serde_json::json!({}),
                    training: serde_json::json!({}),
                    adapter_hash: None,
                },
            )
            .await?;
        let entry = store.enter(user.id, version.id, free_tier).await?;
        seats.push(SeatInfo {
            entry_id: entry.id,
            agent_id: agent.id,
            agent_version_id: version.id,
        });
    }
    let entries: Vec<i64> = seats.iter().map(|s| s.entry_id).collect();
    let m = store
        .create_match(space_id, free_tier, 7, "bench", &entries)
        .await?;
    store.start_match(m.id).await?;
    let state = AppState::new(
        store.clone(),
        bus.clone(),
        Vec::new(),
        Arc::new(LedgerPayments::new(store)),
        WebConfig {
            // Every spectator comes from 127.0.0.1; the default of 16 per IP would
            // refuse all but the first few.
            ws_per_ip: opts.spectators + 16,
            ws_connects_per_minute: u32::try_from(opts.spectators + 16).unwrap_or(u32::MAX),
            ..WebConfig::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(BenchError::io("binding the server"))?;
    let addr = listener
        .local_addr()
        .map_err(BenchError::io("server address"))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = web::serve(listener, state, async move {
            let _ = stopped.await;
        })
        .await;
    });
    Ok((addr, m.id, seats, stop))
}

/// What the emitter published.
struct Emitted {
    events: u64,
    token_deltas: u64,
    start_us: i64,
    start: Instant,
    end: Instant,
}

/// Publishes one scripted match at `opts.steps_per_sec` decode steps a second.
fn emit_match(bus: &Bus, match_id: i64, seats: &[SeatInfo], opts: &SpectateOptions) -> Emitted {
    const WORDS: [&str; 12] = [
        " Tea", " is", " the", " quiet", " engine", " of", " every", " good", " morning", ",",
        " #tea", ".",
    ];
    let step = Duration::from_secs_f64(1.0 / opts.steps_per_sec);
    let start_us = now_us();
    let start = Instant::now();
    let mut events = 0u64;
    let mut token_deltas = 0u64;
    let mut publish = |kind: EventKind| {
        bus.publish(match_id, kind);
        events += 1;
    };
    let mut steps = 0u32;
    for round in 0..opts.rounds {
        publish(EventKind::RoundStarted {
            round,
            task: "Write a tweet that makes people want to drink tea this morning.".into(),
        });
        let mut answers = vec![String::new(); seats.len()];
        for t in 0..opts.tokens {
            // Pace by deadline so a late wake-up does not slow the whole stream.
            steps += 1;
            let due = start + step * steps;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            for (i, seat) in seats.iter().enumerate() {
                let text = WORDS[(t as usize + i) % WORDS.len()].to_string();
                answers[i].push_str(&text);
                publish(EventKind::TokenDelta {
                    round,
                    entry_id: seat.entry_id,
                    text,
                });
                token_deltas += 1;
            }
        }
        for (seat, text) in seats.iter().zip(&answers) {
            publish(EventKind::ResponseComplete {
                round,
                entry_id: seat.entry_id,
                text: text.clone(),
                tokens: opts.tokens,
                finish: "length".into(),
            });
        }
        for (i, seat) in seats.iter().enumerate() {
            let score = 1.0 - i as f64 / seats.len() as f64;
            publish(EventKind::Scores {
                round,
                entry_id: seat.entry_id,
                combined: score,
                hard_failed: false,
                judges: ["llm", "embedding", "rules"]
                    .iter()
                    .map(|judge| {
                        let id = judges::JudgeId {
                            name: (*judge).into(),
                            model_hash: String::new(),
                            template_version: String::new(),
                        };
                        let why = "On topic, vivid and within the length limit; the hook lands.";
                        judges::Score::new(id, score, why)
                    })
                    .collect(),
            });
        }
    }
    publish(EventKind::Ranking {
        places: seats
            .iter()
            .enumerate()
            .map(|(i, s)| (s.entry_id, i + 1))
            .collect(),
    });
    publish(EventKind::Payouts {
        payouts: seats
            .iter()
            .map(|s| (s.entry_id, "0".to_string()))
            .collect(),
        treasury: "0".into(),
    });
    publish(EventKind::RatingChanges {
        changes: seats
            .iter()
            .enumerate()
            .map(|(i, s)| (s.agent_id, 25.0, 26.0 - i as f64, 8.0))
            .collect(),
    });
    publish(EventKind::MatchSettled {
        result_hash: "0xbench".into(),
    });
    Emitted {
        events,
        token_deltas,
        start_us,
        start,
        end: Instant::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spectator_gets_every_event_and_the_counts_add_up() {
        let opts = SpectateOptions {
            spectators: 10,
            seats: 2,
            rounds: 2,
            tokens: 5,
            steps_per_sec: 500.0,
            ..SpectateOptions::default()
        };
        let f = spectate(&opts).unwrap();
        // Per round: the task, 5 steps × 2 seats, 2 answers, 2 scores; then 4 closing events.
        assert_eq!(f.events_emitted, 2 * (1 + 10 + 2 + 2) + 4);
        assert_eq!(f.events_emitted, script_len(&opts));
        assert_eq!(f.token_deltas, 20);
        assert_eq!(f.deliveries_expected, 10 * f.events_emitted);
        assert_eq!(f.deliveries, f.deliveries_expected);
        assert_eq!((f.complete, f.cut_off, f.other), (10, 0, 0));
        assert_eq!(f.delay.samples as u64, f.deliveries);
    }

    #[test]
    fn options_out_of_range_name_the_field() {
        let e = spectate(&SpectateOptions {
            spectators: 0,
            ..SpectateOptions::default()
        })
        .unwrap_err();
        assert!(e.to_string().starts_with("spectators:"), "{e}");
    }
}
