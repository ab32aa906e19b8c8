//! Websocket spectating against a real server: a late joiner gets the snapshot then
//! the live stream with no gap and no duplicate, a slow spectator is cut off, the
//! per-IP connection limit holds, the Space stream filters by Space, and the terminal
//! spectator prints a match to its end.

mod common;

use arena::events::{EventKind, MatchEvent};
use futures_util::StreamExt as _;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Serves `app` on a free local port; returns its base URL and the shutdown trigger.
async fn serve(app: &common::TestApp) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let state = app.state.clone();
    tokio::spawn(async move {
        web::serve(listener, state, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (format!("http://{addr}"), tx)
}

fn delta(text: &str) -> EventKind {
    EventKind::TokenDelta {
        round: 0,
        entry_id: 1,
        text: text.into(),
    }
}

async fn next_event(socket: &mut Socket) -> Option<MatchEvent> {
    loop {
        match socket.next().await? {
            Ok(Message::Text(t)) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

async fn connect(base: &str, path: &str) -> Socket {
    let url = format!("{}{path}", base.replacen("http://", "ws://", 1));
    tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket")
        .0
}

#[tokio::test]
async fn a_late_joiner_gets_every_event_once_in_order() {
    let app = common::TestApp::new(testkit::db::TestDb::sqlite().await).await;
    let played = testkit::fixtures::played_match(app.store(), 2).await;
    // The fixture match is settled; spectate a running one.
    let m = running_match(&app, played.space_id, played.tier_id).await;
    let (base, stop) = serve(&app).await;
    let bus = app.state.bus().clone();
    for i in 0..5 {
        bus.publish(m, delta(&format!("early {i}")));
    }
    bus.publish(m + 1000, delta("another match"));
    let mut socket = connect(&base, &format!("/ws/matches/{m}")).await;
    let mut seqs = Vec::new();
    // The five early events arrive first, from the snapshot.
    for _ in 0..5 {
        seqs.push(next_event(&mut socket).await.unwrap().seq);
    }
    for i in 0..10 {
        bus.publish(m, delta(&format!("live {i}")));
    }
    bus.publish(
        m,
        EventKind::MatchSettled {
            result_hash: "h".into(),
        },
    );
    while let Some(e) = next_event(&mut socket).await {
        assert_eq!(e.match_id, m);
        seqs.push(e.seq);
    }
    assert_eq!(seqs, (0..16).collect::<Vec<u64>>(), "no gap, no duplicate");
    let _ = stop.send(());
}

/// A second, running match in the fixture Space (its own users and agents).
async fn running_match(app: &common::TestApp, space_id: i64, tier_id: i64) -> i64 {
    let s = app.store();
    let mut entries = Vec::new();
    for i in 0..2u8 {
        let u = s
            .upsert_user(&format!("0x{}", format!("{:02x}", 0x70 + i).repeat(20)))
            .await
            .unwrap();
        s.deposit(u.id, store::Wei(1000), &format!("run{i}"))
            .await
            .unwrap();
        let (_, v) = s
            .create_agent(
                u.id,
                "live",
                "m",
                &store::NewAgentVersion {
                    system_prompt: "x".into(),
                    sampling: serde_json::json!({}),
                    training: serde_json::json!({}),
                    adapter_hash: None,
                },
            )
            .await
            .unwrap();
        entries.push(s.enter(u.id, v.id, tier_id).await.unwrap().id);
    }
    let m = s
        .create_match(space_id, tier_id, 1, "v", &entries)
        .await
        .unwrap();
    s.start_match(m.id).await.unwrap();
    m.id
}

#[tokio::test(flavor = "current_thread")]
async fn a_slow_spectator_is_cut_off_without_stalling_others() {
    let app = common::TestApp::new(testkit::db::TestDb::sqlite().await).await;
    let played = testkit::fixtures::played_match(app.store(), 2).await;
    let m = running_match(&app, played.space_id, played.tier_id).await;
    let (base, stop) = serve(&app).await;
    let bus = app.state.bus().clone();
    bus.publish(m, delta("hello"));
    let mut slow = connect(&base, &format!("/ws/matches/{m}")).await;
    assert_eq!(
        next_event(&mut slow).await.unwrap().seq,
        0,
        "the server is streaming to it"
    );
    // On this single-threaded runtime the server cannot run while we publish, so the
    // burst overflows the spectator's buffer exactly as a stalled client would.
    for i in 0..(platform::bus::SUBSCRIBER_BUFFER + 100) {
        bus.publish(m, delta(&i.to_string()));
    }
    let mut code = None;
    while let Some(msg) = slow.next().await {
        if let Ok(Message::Close(Some(frame))) = msg {
            code = Some(frame.code);
            break;
        }
    }
    assert_eq!(code, Some(CloseCode::from(web::ws::CLOSE_TOO_SLOW)));
    // A fresh spectator still gets the whole live history.
    let mut fresh = connect(&base, &format!("/ws/matches/{m}")).await;
    assert_eq!(next_event(&mut fresh).await.unwrap().seq, 0);
    let _ = stop.send(());
}

#[tokio::test]
async fn connections_are_limited_per_ip() {
    let db = testkit::db::TestDb::sqlite().await;
    let app = common::TestApp::with_config(
        db,
        web::WebConfig {
            ws_per_ip: 1,
            ..common::config()
        },
    )
    .await;
    let played = testkit::fixtures::played_match(app.store(), 2).await;
    let m = running_match(&app, played.space_id, played.tier_id).await;
    let (base, stop) = serve(&app).await;
    let mut first = connect(&base, &format!("/ws/matches/{m}")).await;
    let url = format!("{}/ws/matches/{m}", base.replacen("http://", "ws://", 1));
    let refused = tokio_tungstenite::connect_async(url.clone()).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 429),
        other => panic!("expected 429, got {other:?}"),
    }
    first.close(None).await.unwrap();
    while first.next().await.is_some() {}
    // The slot frees once the server's handler ends, just after the close handshake.
    let mut admitted = false;
    for _ in 0..200 {
        if tokio_tungstenite::connect_async(url.clone()).await.is_ok() {
            admitted = true;
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(admitted, "a closed socket gives its slot back");
    let _ = stop.send(());
}

#[tokio::test]
async fn the_space_stream_carries_only_that_spaces_matches() {
    let app = common::TestApp::new(testkit::db::TestDb::sqlite().await).await;
    let played = testkit::fixtures::played_match(app.store(), 2).await;
    let m = running_match(&app, played.space_id, played.tier_id).await;
    let (base, stop) = serve(&app).await;
    let bus = app.state.bus().clone();
    bus.publish(m, delta("before"));
    let mut socket = connect(&base, "/ws/spaces/tweet-duel").await;
    assert_eq!(
        next_event(&mut socket).await.unwrap().seq,
        0,
        "snapshot of the live match"
    );
    bus.publish(999_999, delta("a match that does not exist"));
    bus.publish(m, delta("after"));
    let e = next_event(&mut socket).await.unwrap();
    assert_eq!((e.match_id, e.seq), (m, 1));
    let _ = stop.send(());
}

/// A writer that keeps what is printed and fires once the text contains `mark`.
struct Tap {
    text: Vec<u8>,
    mark: &'static str,
    fired: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::io::Write for Tap {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(buf);
        if String::from_utf8_lossy(&self.text).contains(self.mark)
            && let Some(tx) = self.fired.take()
        {
            let _ = tx.send(());
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_terminal_spectator_prints_to_the_end() {
    let app = common::TestApp::new(testkit::db::TestDb::sqlite().await).await;
    let played = testkit::fixtures::played_match(app.store(), 2).await;
    let (base, stop) = serve(&app).await;

    // A match that is already over: the spectator is told so and stops.
    let mut out = Vec::new();
    let events = web::watch::watch_into(&base, played.match_id, &mut out)
        .await
        .unwrap();
    assert!(events.is_empty());
    assert!(String::from_utf8(out).unwrap().contains("match is over"));

    let m = running_match(&app, played.space_id, played.tier_id).await;
    let bus = app.state.bus().clone();
    bus.publish(
        m,
        EventKind::RoundStarted {
            round: 0,
            task: "Tweet about tea".into(),
        },
    );
    bus.publish(m, delta("Tea"));
    bus.publish(m, delta(" rocks"));
    let (tx, snapshot_printed) = tokio::sync::oneshot::channel();
    let mut tap = Tap {
        text: Vec::new(),
        mark: "Tea rocks",
        fired: Some(tx),
    };
    let watcher = tokio::spawn(async move {
        let events = web::watch::watch_into(&base, m, &mut tap).await.unwrap();
        (events, tap.text)
    });
    // Once the snapshot is printed the server is subscribed: the end arrives live.
    snapshot_printed.await.unwrap();
    bus.publish(
        m,
        EventKind::MatchSettled {
            result_hash: "abc".into(),
        },
    );
    let (events, out) = watcher.await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(events.len(), 4, "{text}");
    assert!(text.contains("== round 0: Tweet about tea"), "{text}");
    assert!(text.contains("[entry 1] Tea rocks"), "{text}");
    assert!(text.contains("== settled, result abc"), "{text}");
    let _ = stop.send(());
}
