//! The client side of [`crate::spectate`]: websocket spectators on tokio-tungstenite
//! that connect to a match, take its snapshot, then time every live event.
//!
//! They run in the benchmark's own process (small runs, the tests) or in a child
//! process (`rlfc bench spectate` always does this), which is what lets 10,000 of them
//! fit under a 20,000 open-file limit: each process then holds one socket per
//! spectator. The child speaks two JSON lines on stdout, [`Ready`] once every
//! spectator has its snapshot, then the [`ClientReport`].

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::{BenchError, Percentiles, mib, proc_status_kib, round2};

/// Who to connect and what to expect.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientPlan {
    /// The match's websocket URL (`ws://…/ws/matches/{id}`).
    pub url: String,
    /// Spectators.
    pub spectators: usize,
    /// Live events each should receive after the snapshot.
    pub events: u64,
    /// Handshakes in flight at once.
    pub connect_concurrency: usize,
    /// How long to wait for the stream to end once everyone is connected.
    pub timeout_secs: u64,
}

/// Every spectator is connected and has its snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ready {
    /// Seconds it took.
    pub connect_secs: f64,
}

/// What the spectators saw, together.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientReport {
    /// Live events received by all spectators.
    pub deliveries: u64,
    /// Spectators that received every event once, in order, then a normal close.
    pub complete: usize,
    /// Spectators the server cut off as too slow (close code 4008).
    pub cut_off: usize,
    /// Spectators that ended any other way.
    pub other: usize,
    /// The last receipt, µs since the epoch.
    pub last_receipt_us: i64,
    /// Delay from emit to receipt over every delivery.
    pub delay: Percentiles,
    /// Peak RSS of the clients' process, MiB.
    pub peak_rss_mib: Option<f64>,
    /// CPU seconds the clients' process used from when every spectator was
    /// connected to the end (reading, parsing and timing every event).
    #[serde(default)]
    pub cpu_secs: Option<f64>,
}

/// What one spectator saw.
#[derive(Debug, Default)]
struct Tally {
    delays_us: Vec<u32>,
    in_order: bool,
    close_code: Option<u16>,
    last_receipt_us: i64,
}

/// The two fields a spectator reads of each event (serde skips the rest).
#[derive(Debug, PartialEq, Deserialize)]
struct Stamp {
    seq: u64,
    at_ms: i64,
}

/// An event's stamp, read from the start of its text where the server writes it
/// (`{"match_id":…,"seq":…,"at_ms":…,`), else by parsing the whole event. The
/// clients share the server's cores, so what they spend per event is kept small;
/// the receipt time is taken before this anyway.
fn stamp(text: &str) -> Option<Stamp> {
    /// The number after `key` up to the next comma, and the text after that comma.
    fn field<'a, T: std::str::FromStr>(text: &'a str, key: &str) -> Option<(T, &'a str)> {
        let (value, rest) = text.strip_prefix(key)?.split_once(',')?;
        Some((value.parse().ok()?, rest))
    }
    let quick = || {
        let (_, rest): (i64, _) = field(text, "{\"match_id\":")?;
        let (seq, rest) = field(rest, "\"seq\":")?;
        let (at_ms, _) = field(rest, "\"at_ms\":")?;
        Some(Stamp { seq, at_ms })
    };
    quick().or_else(|| serde_json::from_str(text).ok())
}

/// Microseconds since the epoch.
pub(crate) fn now_us() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Connects every spectator, says so on `ready`, then listens until every stream
/// ends (or the plan's timeout passes) and sums up.
pub async fn run(
    plan: ClientPlan,
    ready: tokio::sync::oneshot::Sender<Result<Ready, BenchError>>,
) -> ClientReport {
    let start = Instant::now();
    let (clients, connected) = connect_all(&plan).await;
    let ok = connected.is_ok();
    let _ = ready.send(connected.map(|_| Ready {
        connect_secs: round2(start.elapsed().as_secs_f64()),
    }));
    let cpu_at_ready = crate::cpu_secs();
    let mut tallies = Vec::with_capacity(clients.len());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(plan.timeout_secs);
    for client in clients {
        if !ok {
            client.abort();
            continue;
        }
        match tokio::time::timeout_at(deadline, client).await {
            Ok(Ok(t)) => tallies.push(t),
            // Still running at the deadline, or panicked: counts as "other".
            _ => tallies.push(Tally::default()),
        }
    }
    let mut report = sum_up(&tallies, plan.events);
    report.cpu_secs = crate::cpu_secs()
        .zip(cpu_at_ready)
        .map(|(end, start)| round2(end - start));
    report
}

fn sum_up(tallies: &[Tally], events: u64) -> ClientReport {
    let mut delays: Vec<u32> = Vec::with_capacity(tallies.iter().map(|t| t.delays_us.len()).sum());
    let (mut complete, mut cut_off, mut other, mut last) = (0, 0, 0, 0);
    for t in tallies {
        delays.extend_from_slice(&t.delays_us);
        last = last.max(t.last_receipt_us);
        match t.close_code {
            Some(1000) if t.in_order && t.delays_us.len() as u64 == events => complete += 1,
            Some(web::ws::CLOSE_TOO_SLOW) => cut_off += 1,
            _ => other += 1,
        }
    }
    ClientReport {
        deliveries: delays.len() as u64,
        complete,
        cut_off,
        other,
        last_receipt_us: last,
        delay: Percentiles::of_micros(&mut delays),
        peak_rss_mib: mib(proc_status_kib("VmHWM")),
        cpu_secs: None,
    }
}

/// The child process's main: reads nothing, connects per `plan`, prints [`Ready`]
/// and then the [`ClientReport`] as JSON lines on stdout.
pub fn child_main(plan: ClientPlan, threads: usize) -> Result<(), BenchError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("bench-clients")
        .enable_all()
        .build()
        .map_err(BenchError::io("starting the clients' runtime"))?;
    let report = runtime.block_on(async move {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let clients = tokio::spawn(run(plan, tx));
        let ready = rx
            .await
            .map_err(|_| BenchError::Check("the spectators stopped before connecting".into()))??;
        print_line(&ready)?;
        clients
            .await
            .map_err(|e| BenchError::Check(format!("the spectators' task failed: {e}")))
    })?;
    print_line(&report)
}

fn print_line(value: &impl Serialize) -> Result<(), BenchError> {
    let line = serde_json::to_string(value).expect("figures serialize");
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|_| out.flush())
        .map_err(BenchError::io("writing to stdout"))
}

/// Connects every spectator; each client task runs until its socket closes. Returns
/// the tasks and how many connected, or the first failure.
async fn connect_all(
    plan: &ClientPlan,
) -> (
    Vec<tokio::task::JoinHandle<Tally>>,
    Result<usize, BenchError>,
) {
    let gate = Arc::new(tokio::sync::Semaphore::new(plan.connect_concurrency.max(1)));
    let ready = Arc::new(AtomicUsize::new(0));
    let (failed_tx, mut failed_rx) = tokio::sync::mpsc::unbounded_channel::<BenchError>();
    let all_ready = Arc::new(tokio::sync::Notify::new());
    let mut clients = Vec::with_capacity(plan.spectators);
    for _ in 0..plan.spectators {
        let (url, gate, ready, failed, all_ready) = (
            plan.url.clone(),
            gate.clone(),
            ready.clone(),
            failed_tx.clone(),
            all_ready.clone(),
        );
        let total = plan.spectators;
        clients.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.expect("gate open");
            let mut socket = match open(&url).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = failed.send(e);
                    return Tally::default();
                }
            };
            // The snapshot: the match's announcement, seq 0.
            match socket.next().await {
                Some(Ok(Message::Text(_))) => {}
                other => {
                    let _ = failed.send(BenchError::Check(format!(
                        "a spectator got {other:?} instead of the snapshot"
                    )));
                    return Tally::default();
                }
            }
            drop(permit);
            if ready.fetch_add(1, Ordering::SeqCst) + 1 == total {
                all_ready.notify_one();
            }
            listen(socket).await
        }));
    }
    drop(failed_tx);
    let outcome = tokio::select! {
        _ = all_ready.notified() => Ok(ready.load(Ordering::SeqCst)),
        Some(e) = failed_rx.recv() => Err(BenchError::Check(format!(
            "{} of {} spectators connected, then: {e}",
            ready.load(Ordering::SeqCst),
            plan.spectators
        ))),
    };
    (clients, outcome)
}

type Socket = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn open(url: &str) -> Result<Socket, BenchError> {
    let addr = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| BenchError::Invalid {
            field: "url",
            reason: format!("expected ws://HOST:PORT/…, got {url}"),
        })?;
    let stream = TcpStream::connect(addr)
        .await
        .map_err(BenchError::io(format!("connecting a spectator to {addr}")))?;
    stream
        .set_nodelay(true)
        .map_err(BenchError::io("TCP_NODELAY"))?;
    // Spectators only read small frames (and tungstenite zeroes the free part of
    // the buffer before each read, so a large one costs time as well as memory).
    let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
    let (socket, _) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await?;
    Ok(socket)
}

/// Reads live events until the socket closes.
async fn listen(mut socket: Socket) -> Tally {
    let mut tally = Tally {
        in_order: true,
        ..Tally::default()
    };
    let mut expected = 1;
    while let Some(message) = socket.next().await {
        match message {
            Ok(Message::Text(text)) => {
                let received = now_us();
                let Some(stamp) = stamp(text.as_str()) else {
                    tally.in_order = false;
                    break;
                };
                // `at_ms` is whole milliseconds, so a delay reads up to 1 ms long.
                let delay = received.saturating_sub(stamp.at_ms.saturating_mul(1000));
                tally
                    .delays_us
                    .push(u32::try_from(delay.max(0)).unwrap_or(u32::MAX));
                tally.in_order &= stamp.seq == expected;
                expected = stamp.seq + 1;
                tally.last_receipt_us = received;
            }
            Ok(Message::Close(frame)) => {
                tally.close_code = frame.map(|f| u16::from(f.code));
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;
    use arena::events::{EventKind, MatchEvent};

    #[test]
    fn the_stamp_is_read_from_the_start_of_the_text_as_json_would() {
        let event = MatchEvent {
            match_id: 12,
            seq: 345,
            at_ms: 1_764_000_000_123,
            kind: EventKind::TokenDelta {
                round: 0,
                entry_id: 3,
                text: " tea, \"hot\"".into(),
            },
        };
        let text = serde_json::to_string(&event).unwrap();
        let want = Stamp {
            seq: 345,
            at_ms: 1_764_000_000_123,
        };
        assert_eq!(stamp(&text), Some(want));
        assert_eq!(serde_json::from_str::<Stamp>(&text).ok(), stamp(&text));
        // Another field order still parses, the slow way.
        assert_eq!(
            stamp(r#"{"seq":1,"at_ms":2,"match_id":3}"#),
            Some(Stamp { seq: 1, at_ms: 2 })
        );
        assert_eq!(stamp("not json"), None);
    }
}
