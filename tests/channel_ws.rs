//! The 0.9.5 WebSocket channel `/_cellucid/ws` over real sockets: origin
//! rule, hello, deadlines, caps, replacement, commands, bundles, shutdown.

use std::time::Duration;

use cellucid_http::channel::{BundleRequestError, Delivery};
use cellucid_http::{ChannelLimits, Command, ViewerOptions};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::channel_support::*;

fn fast_limits() -> ChannelLimits {
    let mut limits = ChannelLimits::default();
    limits.hello_timeout = Duration::from_millis(500);
    limits
}

/// A binary viewer→server frame: u32 LE header length, header, body.
fn binary_event(header: &Value, body: &[u8]) -> Message {
    let header = header.to_string().into_bytes();
    let mut out = (header.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(body);
    Message::binary(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_follows_the_channel_origin_rule() {
    let server = InProc::start(fast_limits()).await;
    let addr = server.addr;
    for origin in [
        format!("http://{addr}"),
        "http://localhost:3000".to_owned(),
        "http://[::1]:9".to_owned(),
    ] {
        assert!(ws_connect(addr, Some(&origin)).await.is_ok(), "{origin}");
    }
    for origin in [
        Some("https://www.cellucid.com"), // an Origin header value, never contacted
        Some("https://evil.example"),
        Some("null"),
        Some("http://localhost:3000/"),
        None,
    ] {
        match ws_connect(addr, origin).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403, "{origin:?}");
            }
            other => panic!("{origin:?} was not refused: {:?}", other.map(|_| ())),
        }
    }
    // Not an upgrade at all.
    let reply = crate::support::get(&server.url("/_cellucid/ws"));
    assert_eq!(reply.status, 426);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_then_events_reach_the_api() {
    let server = InProc::start(fast_limits()).await;
    let mut options = ViewerOptions::default();
    options.n_cells = Some(700);
    let viewer = server.viewers.register(options).unwrap();
    let mut events = viewer.events().unwrap();
    let mut ws = ws_hello(server.addr, viewer.id(), viewer.token()).await;
    ws.send(Message::text(
        r#"{"type":"click","cell":3,"button":0,"shift":false,"ctrl":false}"#,
    ))
    .await
    .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        event.into_json(),
        json!({"type": "click", "cell": 3, "button": 0, "shift": false, "ctrl": false, "viewerId": viewer.id()})
    );
    let cells: Vec<u8> = [2u32, 5, 9].iter().flat_map(|c| c.to_le_bytes()).collect();
    ws.send(binary_event(
        &json!({"type": "selection", "source": "lasso"}),
        &cells,
    ))
    .await
    .unwrap();
    // The event stream is a futures Stream too.
    let event = tokio::time::timeout(
        Duration::from_secs(5),
        futures_util::StreamExt::next(&mut events),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        event.into_json(),
        json!({"viewerId": viewer.id(), "type": "selection", "source": "lasso", "cells": [2, 5, 9]})
    );
    // A selection as text is a protocol error.
    ws.send(Message::text(r#"{"type":"selection","cells":[1]}"#))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1008));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_or_unknown_viewer_is_4401() {
    let server = InProc::start(fast_limits()).await;
    let viewer = server.viewers.register(ViewerOptions::default()).unwrap();
    for (id, token) in [
        (viewer.id().to_owned(), "0".repeat(32)),
        ("0123456789abcdef".to_owned(), viewer.token().to_owned()),
    ] {
        let mut ws = ws_connect(server.addr, Some(&server.base)).await.unwrap();
        ws.send(Message::text(
            json!({"type": "hello", "viewerId": id, "viewerToken": token}).to_string(),
        ))
        .await
        .unwrap();
        assert_eq!(close_code(&mut ws).await, Some(4401));
    }
    // A hello with extra keys is refused as malformed.
    let mut ws = ws_connect(server.addr, Some(&server.base)).await.unwrap();
    ws.send(Message::text(
        json!({"type": "hello", "viewerId": viewer.id(), "viewerToken": viewer.token(), "x": 1})
            .to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1008));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_hello_is_closed_at_the_deadline() {
    let server = InProc::start(fast_limits()).await;
    let mut ws = ws_connect(server.addr, Some(&server.base)).await.unwrap();
    let started = std::time::Instant::now();
    assert_eq!(close_code(&mut ws).await, Some(1008));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(450), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_text_message_is_1009() {
    let server = InProc::start(fast_limits()).await;
    let viewer = server.viewers.register(ViewerOptions::default()).unwrap();
    let _events = viewer.events().unwrap();
    let mut ws = ws_hello(server.addr, viewer.id(), viewer.token()).await;
    let big = format!(r#"{{"type":"hover","pad":"{}"}}"#, "x".repeat(1024 * 1024));
    ws.send(Message::text(big)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1009));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_socket_cap_is_1009() {
    let mut limits = fast_limits();
    limits.max_binary_frame = 64 * 1024;
    limits.max_bundle_bytes = 64 * 1024;
    limits.max_text_frame = 16 * 1024;
    let server = InProc::start(limits).await;
    let viewer = server.viewers.register(ViewerOptions::default()).unwrap();
    let mut ws = ws_hello(server.addr, viewer.id(), viewer.token()).await;
    let header = json!({"type": "selection", "source": "lasso"});
    let _ = ws.send(binary_event(&header, &vec![0u8; 256 * 1024])).await;
    assert_eq!(close_code(&mut ws).await, Some(1009));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_socket_replaces_the_older_with_4409() {
    let server = InProc::start(fast_limits()).await;
    let viewer = server.viewers.register(ViewerOptions::default()).unwrap();
    let mut first = ws_hello(server.addr, viewer.id(), viewer.token()).await;
    let mut second = ws_hello(server.addr, viewer.id(), viewer.token()).await;
    assert_eq!(close_code(&mut first).await, Some(4409));
    // Commands now go to the newer socket.
    assert_eq!(viewer.send(Command::ResetCamera).unwrap(), Delivery::Sent);
    assert_eq!(
        next_message(&mut second).await,
        Some(Message::text(r#"{"type":"resetCamera"}"#))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_keep_a_live_socket_and_a_silent_one_is_closed() {
    let mut limits = fast_limits();
    limits.ping_interval = Duration::from_millis(200);
    limits.pong_timeout = Duration::from_millis(400);
    let server = InProc::start(limits).await;
    let viewer = server.viewers.register(ViewerOptions::default()).unwrap();

    // A reading client answers pings (tungstenite replies on read): it stays.
    let mut live = ws_hello(server.addr, viewer.id(), viewer.token()).await;
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while let Ok(Some(message)) =
        tokio::time::timeout_at(until, futures_util::StreamExt::next(&mut live)).await
    {
        match message.unwrap() {
            Message::Ping(_) => pings += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pings >= 3, "{pings} pings");
    assert_eq!(
        viewer.send(Command::ClearHighlights).unwrap(),
        Delivery::Sent
    );
    assert_eq!(
        next_message(&mut live).await,
        Some(Message::text(r#"{"type":"clearHighlights"}"#))
    );
    drop(live);

    // A client that never reads never answers: closed after the pong deadline.
    let mut silent = ws_hello(server.addr, viewer.id(), viewer.token()).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(close_code(&mut silent).await, Some(1001));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_delivered_and_queued_until_hello() {
    let server = InProc::start(fast_limits()).await;
    let viewer = server.viewers.register(ViewerOptions::default()).unwrap();
    // Sent before any socket: queued, then delivered in order after welcome.
    let queued = viewer
        .send(Command::Highlight {
            cells: vec![5, 1, 3],
            color: "#00ff00".into(),
        })
        .unwrap();
    assert_eq!(queued, Delivery::Queued);
    assert_eq!(
        viewer
            .send(Command::SetColorBy {
                field: "louvain".into()
            })
            .unwrap(),
        Delivery::Queued
    );
    assert!(viewer
        .send(Command::Highlight {
            cells: vec![1, 1],
            color: "#00ff00".into()
        })
        .is_err());
    let mut ws = ws_hello(server.addr, viewer.id(), viewer.token()).await;
    let Some(Message::Binary(bytes)) = next_message(&mut ws).await else {
        panic!("a binary highlight");
    };
    assert_eq!(&bytes[..4], &40u32.to_le_bytes());
    assert_eq!(
        &bytes[4..44],
        b"{\"type\":\"highlight\",\"color\":\"#00ff00\"}  "
    );
    assert_eq!(&bytes[44..], &[1, 0, 0, 0, 3, 0, 0, 0, 5, 0, 0, 0]);
    assert_eq!(
        next_message(&mut ws).await,
        Some(Message::text(r#"{"type":"setColorBy","field":"louvain"}"#))
    );
    // Sent while connected: written now.
    let sent = viewer
        .send(Command::SetVisibility {
            cells: None,
            visible: false,
        })
        .unwrap();
    assert_eq!(sent, Delivery::Sent);
    let Some(Message::Binary(bytes)) = next_message(&mut ws).await else {
        panic!("a binary setVisibility");
    };
    assert_eq!(&bytes[..4], &52u32.to_le_bytes());
    assert_eq!(
        std::str::from_utf8(&bytes[4..]).unwrap().trim_end(),
        r#"{"type":"setVisibility","visible":false,"all":true}"#
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_bundle_travels_over_the_socket() {
    let server = InProc::start(fast_limits()).await;
    let viewer = server.viewers.register(ViewerOptions::default()).unwrap();
    let mut ws = ws_hello(server.addr, viewer.id(), viewer.token()).await;
    let viewer = std::sync::Arc::new(viewer);
    let asking = std::sync::Arc::clone(&viewer);
    let waiter = tokio::spawn(async move { asking.request_session_bundle().await });
    let Some(Message::Text(command)) = next_message(&mut ws).await else {
        panic!("a requestSessionBundle command");
    };
    let command: Value = serde_json::from_str(command.as_str()).unwrap();
    assert_eq!(command["type"], "requestSessionBundle");
    let request_id = command["requestId"].as_str().unwrap().to_owned();
    let bytes = valid_bundle(2);
    ws.send(binary_event(
        &json!({"type": "session_bundle", "requestId": request_id}),
        &bytes,
    ))
    .await
    .unwrap();
    let bundle = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(std::fs::read(bundle.path()).unwrap(), bytes);
    drop(bundle);

    // An invalid bundle ends the request at once with the reason.
    let asking = std::sync::Arc::clone(&viewer);
    let waiter = tokio::spawn(async move { asking.request_session_bundle().await });
    let Some(Message::Text(command)) = next_message(&mut ws).await else {
        panic!("a requestSessionBundle command");
    };
    let command: Value = serde_json::from_str(command.as_str()).unwrap();
    let request_id = command["requestId"].as_str().unwrap().to_owned();
    let mut bad = valid_bundle(2);
    bad.push(7);
    ws.send(binary_event(
        &json!({"type": "session_bundle", "requestId": request_id}),
        &bad,
    ))
    .await
    .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&result, Err(BundleRequestError::Invalid(why)) if why.contains("trailing")),
        "{result:?}"
    );
    assert!(
        server.leftover_files().is_empty(),
        "{:?}",
        server.leftover_files()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_sockets_with_1001() {
    let server = InProc::start(fast_limits()).await;
    let viewer = server.viewers.register(ViewerOptions::default()).unwrap();
    let mut ws = ws_hello(server.addr, viewer.id(), viewer.token()).await;
    let reader = tokio::spawn(async move { close_code(&mut ws).await });
    server.stop().await;
    assert_eq!(reader.await.unwrap(), Some(1001));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_viewer_freezes_it_and_closes_its_socket() {
    let server = InProc::start(fast_limits()).await;
    let viewer = server.viewers.register(ViewerOptions::default()).unwrap();
    let mut ws = ws_hello(server.addr, viewer.id(), viewer.token()).await;
    viewer.stop();
    assert_eq!(
        next_message(&mut ws).await,
        Some(Message::text(r#"{"type":"freeze"}"#))
    );
    assert_eq!(close_code(&mut ws).await, Some(1001));
    assert!(server.viewers.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmasked_frame_is_a_protocol_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = InProc::start(fast_limits()).await;
    let viewer = server.viewers.register(ViewerOptions::default()).unwrap();
    let mut ws = ws_hello(server.addr, viewer.id(), viewer.token()).await;
    // An unmasked text frame, written under the client library's feet.
    ws.get_mut()
        .write_all(&[0x81, 0x02, b'h', b'i'])
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), ws.get_mut().read_to_end(&mut buf)).await;
    // The server's close frame: 0x88, length, then the code 1002 big-endian.
    let at = buf.iter().position(|&b| b == 0x88).expect("a close frame");
    assert_eq!(&buf[at + 2..at + 4], &1002u16.to_be_bytes(), "{buf:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_message_before_hello_is_cut_off() {
    let server = InProc::start(fast_limits()).await;
    let mut ws = ws_connect(server.addr, Some(&server.base)).await.unwrap();
    // 8 MiB before any hello: the server reads about 1 MiB, then gives up.
    let _ = ws.send(Message::binary(vec![0u8; 8 * 1024 * 1024])).await;
    let started = std::time::Instant::now();
    let code = close_code(&mut ws).await;
    assert!(matches!(code, Some(1009) | None), "{code:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    server.stop().await;
}

/// A masked client frame header: FIN, `opcode`, a payload of `len` bytes.
fn frame_header(opcode: u8, len: u64) -> Vec<u8> {
    let mut out = vec![0x80 | opcode, 0x80 | 127];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_message_over_the_cap_is_refused_while_it_arrives() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = InProc::start(fast_limits()).await;
    let viewer = server.viewers.register(ViewerOptions::default()).unwrap();
    let _events = viewer.events().unwrap();
    let ws = ws_hello(server.addr, viewer.id(), viewer.token()).await;
    let (mut read, mut write) = ws.into_inner().into_split();
    // A 300 MB text message used to be buffered whole before the 1 MiB cap
    // answered. Send its header and 4 MiB, then wait: the close must come.
    let writer = tokio::spawn(async move {
        write
            .write_all(&frame_header(0x1, 300_000_000))
            .await
            .unwrap();
        let piece = vec![b'x'; 64 * 1024];
        for _ in 0..64 {
            if write.write_all(&piece).await.is_err() {
                return None;
            }
        }
        Some(write)
    });
    let mut seen = Vec::new();
    let mut chunk = vec![0u8; 4096];
    let close_at = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = read.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the connection ended without a close frame");
            seen.extend_from_slice(&chunk[..n]);
            if let Some(at) = seen.iter().position(|&b| b == 0x88) {
                if seen.len() >= at + 4 {
                    return at;
                }
            }
        }
    })
    .await
    .expect("the close frame, while the message was still arriving");
    assert_eq!(&seen[close_at + 2..close_at + 4], &1009u16.to_be_bytes());
    // The server reads on (and drops) what is still coming, for a while:
    // the client is not reset while it still sends.
    let mut write = writer
        .await
        .unwrap()
        .expect("the server kept reading after its close");
    let piece = vec![b'x'; 64 * 1024];
    for _ in 0..32 {
        write.write_all(&piece).await.unwrap();
    }
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut rest))
        .await
        .expect("the server ends the connection after a short drain")
        .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_1009_close_input_is_dropped_until_the_peer_closes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut limits = fast_limits();
    limits.max_text_frame = 16 * 1024;
    limits.max_binary_frame = 64 * 1024;
    limits.max_bundle_bytes = 64 * 1024;
    let server = InProc::start(limits).await;
    let viewer = server.viewers.register(ViewerOptions::default()).unwrap();
    let _events = viewer.events().unwrap();
    let ws = ws_hello(server.addr, viewer.id(), viewer.token()).await;
    let (mut read, mut write) = ws.into_inner().into_split();
    // A 1 MiB text message, refused at its header.
    const LEN: usize = 1024 * 1024;
    let piece = vec![b'x'; 64 * 1024];
    write
        .write_all(&frame_header(0x1, LEN as u64))
        .await
        .unwrap();
    write.write_all(&piece).await.unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(at) = seen.iter().position(|&b| b == 0x88) {
                if seen.len() >= at + 4 {
                    return;
                }
            }
            let n = read.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the connection ended without a close frame");
            seen.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("a close frame");
    let at = seen.iter().position(|&b| b == 0x88).unwrap();
    assert_eq!(&seen[at + 2..at + 4], &1009u16.to_be_bytes());
    // The client finishes the message it is sending, then closes. The
    // server used to drop the connection at once, resetting these writes.
    for _ in 1..LEN / piece.len() {
        write
            .write_all(&piece)
            .await
            .expect("the server still reads after its close");
    }
    let mut close = vec![0x88, 0x82, 0, 0, 0, 0];
    close.extend_from_slice(&1000u16.to_be_bytes());
    write.write_all(&close).await.unwrap();
    // The client's close ends the connection at once (not at the drain
    // deadline), cleanly.
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut rest))
        .await
        .expect("the connection ends")
        .expect("a clean end, not a reset");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    server.stop().await;
}
