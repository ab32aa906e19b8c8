//! Websocket spectating: `/ws/matches/{id}` streams one match's events as JSON and
//! `/ws/spaces/{id}` every live match of a Space (token deltas included).
//!
//! A spectator who joins late first gets the snapshot of what happened so far, then
//! the live events, with no gap and no duplicate: the bus subscribes before it reads
//! the history, and sequence numbers drop any overlap. A spectator who falls too far behind
//! (the broadcast buffer overflows, or one send stalls) is cut off with close code
//! 4008 rather than slowing the publisher or anyone else. Each IP may hold only so
//! many sockets at once.
//!
//! What one spectator costs is kept small, since a match may have ten thousand:
//! every socket sends the bus's one JSON text of an event (no serialization or copy
//! per spectator), a socket woken for one event also takes every other event already
//! waiting for it and writes them all with one flush, and a socket's read buffer is
//! small (spectators only listen).

use std::collections::HashMap;
use std::time::Duration;

use arena::events::MatchEvent;
use axum::Router;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use futures_util::SinkExt as _;
use platform::bus::{LiveEvent, Spectator, SpectatorError};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::error::{Error, Result};
use crate::limits::WsPermit;
use crate::state::AppState;

/// Close code sent to a spectator that fell behind.
pub const CLOSE_TOO_SLOW: u16 = 4008;
/// Close code sent when the match is already over (read its transcript instead).
pub(crate) const CLOSE_MATCH_OVER: u16 = 4000;
/// How long one send may stall before the spectator counts as too slow.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The most events one write takes (a socket woken for one event takes up to this
/// many that are already waiting).
const MAX_BATCH: usize = 256;
/// A spectator socket's read buffer (the client only ever sends a close or a ping;
/// tungstenite's default of 128 KiB would be 1.3 GB for 10,000 spectators).
const READ_BUFFER: usize = 4 * 1024;

/// Websocket routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/ws/matches/{id}", get(watch_match))
        .route("/ws/spaces/{id}", get(watch_space))
}

fn admit(state: &AppState, request: &axum::extract::Request) -> Result<WsPermit> {
    let ip = state
        .limits
        .client_ip(request.headers(), request.extensions());
    state.limits.open_ws(ip).ok_or(Error::RateLimited)
}

async fn watch_match(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    request: axum::extract::Request,
) -> Result<Response> {
    let permit = admit(&state, &request)?;
    state.store.get_match(id).await?;
    let upgrade = upgrade(request, state.config.ws_max_message).await?;
    Ok(upgrade.on_upgrade(move |socket| async move {
        stream_match(state, socket, id).await;
        drop(permit);
    }))
}

async fn watch_space(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: axum::extract::Request,
) -> Result<Response> {
    let permit = admit(&state, &request)?;
    let space = match id.parse::<i64>() {
        Ok(n) => state.store.space(n).await?,
        Err(_) => state.store.space_by_slug(&id).await?,
    };
    let upgrade = upgrade(request, state.config.ws_max_message).await?;
    Ok(upgrade.on_upgrade(move |socket| async move {
        stream_space(state, socket, space).await;
        drop(permit);
    }))
}

async fn upgrade(request: axum::extract::Request, max_message: usize) -> Result<WebSocketUpgrade> {
    use axum::extract::FromRequest as _;
    WebSocketUpgrade::from_request(request, &())
        .await
        .map(|upgrade| {
            upgrade
                .read_buffer_size(READ_BUFFER)
                .max_message_size(max_message)
                .max_frame_size(max_message)
        })
        .map_err(|e| Error::invalid("upgrade", e.to_string()))
}

/// An event as a text message: the bus's one serialization of it, shared.
fn text(event: &LiveEvent) -> Message {
    Message::Text(Utf8Bytes::try_from(event.json().clone()).expect("JSON is UTF-8"))
}

/// Writes `events` and flushes once; `false` when the client is gone or too slow.
async fn send_all(socket: &mut WebSocket, events: &[LiveEvent]) -> bool {
    if events.is_empty() {
        return true;
    }
    let write = async {
        for event in events {
            socket.feed(text(event)).await?;
        }
        socket.flush().await
    };
    matches!(tokio::time::timeout(SEND_TIMEOUT, write).await, Ok(Ok(())))
}

/// Adds to `batch` the spectator's events that are already waiting, up to
/// [`MAX_BATCH`] and never past the match's final event.
fn gather(spectator: &mut Spectator, batch: &mut Vec<LiveEvent>) -> Result<(), SpectatorError> {
    while batch.len() < MAX_BATCH && !batch.last().is_some_and(|e| e.kind.is_final()) {
        match spectator.try_next()? {
            Some(event) => batch.push(event),
            None => break,
        }
    }
    Ok(())
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
}

async fn stream_match(state: AppState, mut socket: WebSocket, id: i64) {
    let mut spectator = match state.bus.watch(id).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(match_id = id, error = %e, "cannot read the match's events");
            return close(&mut socket, 1011, "event bus unavailable").await;
        }
    };
    if spectator.snapshot.is_empty()
        && let Ok(m) = state.store.get_match(id).await
        && matches!(
            m.status,
            store::MatchStatus::Settled | store::MatchStatus::Refunded | store::MatchStatus::Failed
        )
    {
        close(
            &mut socket,
            CLOSE_MATCH_OVER,
            "match is over; read its transcript",
        )
        .await;
        return;
    }
    if !send_all(&mut socket, &std::mem::take(&mut spectator.snapshot)).await {
        return;
    }
    let mut stopping = state.shutdown.subscribe();
    // One wait on the shutdown signal for the socket's whole life (made anew on
    // every wake-up, it would add and remove a waiter, under a lock shared by all
    // spectators, each time).
    let shutdown = stopping.changed();
    tokio::pin!(shutdown);
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => return close(&mut socket, 1001, "shutting down").await,
            incoming = socket.recv() => match incoming {
                // Spectators only listen; anything but a close is ignored.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            next = spectator.next() => {
                let gathered = next.and_then(|event| {
                    batch.push(event);
                    gather(&mut spectator, &mut batch)
                });
                match gathered {
                    Ok(()) => {
                        let last = batch.last().is_some_and(|e| e.kind.is_final());
                        let sent = send_all(&mut socket, &batch).await;
                        batch.clear();
                        if !sent {
                            return close(&mut socket, CLOSE_TOO_SLOW, "too slow").await;
                        }
                        if last {
                            return close(&mut socket, 1000, "match over").await;
                        }
                    }
                    Err(SpectatorError::Lagged(_)) => {
                        return close(&mut socket, CLOSE_TOO_SLOW, "too slow").await;
                    }
                    Err(SpectatorError::Closed) => {
                        return close(&mut socket, 1001, "shutting down").await;
                    }
                }
            },
        }
    }
}

async fn stream_space(state: AppState, mut socket: WebSocket, space: store::Space) {
    // Subscribe first, then take each live match's snapshot: anything published in
    // between arrives twice and is dropped by its sequence number.
    let mut rx = state.bus.subscribe();
    let mut next_seq: HashMap<i64, Option<u64>> = HashMap::new();
    let live = [
        Some(store::MatchStatus::Pending),
        Some(store::MatchStatus::Running),
    ];
    for status in live {
        let Ok(matches) = state
            .store
            .recent_matches(Some(space.id), status, None, 100)
            .await
        else {
            return;
        };
        for m in matches {
            let snapshot = match state.bus.watch(m.id).await {
                Ok(s) => s.snapshot,
                Err(e) => {
                    tracing::error!(match_id = m.id, error = %e, "cannot read the match's events");
                    return close(&mut socket, 1011, "event bus unavailable").await;
                }
            };
            next_seq.insert(m.id, Some(snapshot.len() as u64));
            if !send_all(&mut socket, &snapshot).await {
                return;
            }
        }
    }
    let mut stopping = state.shutdown.subscribe();
    let shutdown = stopping.changed();
    tokio::pin!(shutdown);
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => return close(&mut socket, 1001, "shutting down").await,
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            next = rx.recv() => {
                // This event, then every other one already waiting, in one write.
                let mut next = next;
                let ended = loop {
                    match next {
                        Ok(event) => {
                            if wanted(&state, &space, &mut next_seq, &event).await {
                                batch.push(event);
                            }
                        }
                        Err(e) => break Some(e),
                    }
                    if batch.len() >= MAX_BATCH {
                        break None;
                    }
                    next = match rx.try_recv() {
                        Ok(event) => Ok(event),
                        Err(TryRecvError::Empty) => break None,
                        Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                        Err(TryRecvError::Closed) => Err(RecvError::Closed),
                    };
                };
                match ended {
                    None => {}
                    Some(RecvError::Lagged(_)) => return close(&mut socket, CLOSE_TOO_SLOW, "too slow").await,
                    Some(RecvError::Closed) => return close(&mut socket, 1001, "shutting down").await,
                }
                let sent = send_all(&mut socket, &batch).await;
                batch.clear();
                if !sent {
                    return close(&mut socket, CLOSE_TOO_SLOW, "too slow").await;
                }
            },
        }
    }
}

/// Whether the Space stream sends `event`: its match belongs to the Space and the
/// event is past what was sent of it (and the bookkeeping for what comes next).
async fn wanted(
    state: &AppState,
    space: &store::Space,
    next_seq: &mut HashMap<i64, Option<u64>>,
    event: &MatchEvent,
) -> bool {
    let seen = match next_seq.get(&event.match_id) {
        Some(known) => *known,
        None => {
            let ours = in_space(state, space, event).await;
            let entry = ours.then_some(0);
            next_seq.insert(event.match_id, entry);
            entry
        }
    };
    if event.kind.is_final() {
        next_seq.remove(&event.match_id);
    }
    let Some(expected) = seen else {
        return false;
    };
    if event.seq < expected {
        return false;
    }
    if !event.kind.is_final() {
        next_seq.insert(event.match_id, Some(event.seq + 1));
    }
    true
}

/// Whether an event's match belongs to `space` (from the event itself when it says,
/// else from the database).
async fn in_space(state: &AppState, space: &store::Space, event: &MatchEvent) -> bool {
    if let arena::events::EventKind::MatchCreated { space: slug, .. } = &event.kind {
        return *slug == space.slug;
    }
    matches!(state.store.get_match(event.match_id).await, Ok(m) if m.space_id == space.id)
}
