//! The channel from the command line: `cellucid serve --viewer` streams a
//! viewer's events to stdout as JSON Lines; `cellucid session inspect`.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::channel_support::*;
use crate::support::{cellucid, fixture, signal};

/// A `cellucid serve --viewer` process with its stdout lines.
struct ViewerServer {
    child: Child,
    addr: std::net::SocketAddr,
    base: String,
    id: String,
    token: String,
    viewer_url: String,
    stdout: mpsc::Receiver<String>,
    /// stdout, held open and never read (see [`start_unread_viewer_server`]).
    unread: Option<ChildStdout>,
    tmp: tempfile::TempDir,
}

impl Drop for ViewerServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_viewer_server() -> ViewerServer {
    start_viewer_server_with(&[])
}

fn start_viewer_server_with(extra: &[&str]) -> ViewerServer {
    launch_viewer_server(extra, true)
}

/// A viewer server whose stdout is a pipe that nobody reads.
fn start_unread_viewer_server(extra: &[&str]) -> ViewerServer {
    launch_viewer_server(extra, false)
}

fn launch_viewer_server(extra: &[&str], read_stdout: bool) -> ViewerServer {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = cellucid()
        .args(["serve", "--no-browser", "--port", "0", "--viewer"])
        .args(extra)
        .arg(fixture("exports-0.9.4/pbmc68k-f32"))
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (err_tx, err_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = err_tx.send(line);
        }
    });
    let (out_tx, out_rx) = mpsc::channel();
    let unread = if read_stdout {
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = out_tx.send(line);
            }
        });
        None
    } else {
        Some(stdout)
    };
    let (mut base, mut jupyter, mut viewer_url) = (None, None, None);
    while base.is_none() || jupyter.is_none() || viewer_url.is_none() {
        let line = err_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("startup lines");
        if let Some(rest) = line.strip_prefix("Open      ") {
            base = Some(rest.trim_end_matches('/').to_owned());
        } else if let Some(rest) = line.strip_prefix("Viewer (0.9.4 viewers)  ") {
            jupyter = Some(rest.to_owned());
        } else if let Some(rest) = line.strip_prefix("Viewer    ") {
            viewer_url = Some(rest.to_owned());
        }
    }
    let (base, jupyter, viewer_url) = (base.unwrap(), jupyter.unwrap(), viewer_url.unwrap());
    let query = |url: &str, key: &str| {
        url.split(['?', '&'])
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .unwrap()
            .to_owned()
    };
    let id = query(&jupyter, "viewerId");
    let token = query(&jupyter, "viewerToken");
    assert_eq!(
        jupyter,
        format!("{base}/?jupyter=true&viewerId={id}&viewerToken={token}")
    );
    assert_eq!(
        viewer_url,
        format!("{base}/?viewer=true&viewerId={id}&viewerToken={token}")
    );
    let addr = base.trim_start_matches("http://").parse().unwrap();
    ViewerServer {
        child,
        addr,
        base,
        id,
        token,
        viewer_url,
        stdout: out_rx,
        unread,
        tmp,
    }
}

fn next_line(server: &ViewerServer) -> Value {
    let line = server
        .stdout
        .recv_timeout(Duration::from_secs(10))
        .expect("an event line on stdout");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_events_stream_to_stdout_as_json_lines() {
    let server = start_viewer_server();
    assert!(server.viewer_url.starts_with(&server.base));
    let url = format!("{}/_cellucid/events", server.base);
    let auth = ("X-Cellucid-Viewer-Token", server.token.as_str());

    // HTTP event (token in the body), HTTP selection, WebSocket event.
    let body = json!({"type": "click", "viewerId": server.id, "viewerToken": server.token, "cell": 4, "button": 0, "shift": false, "ctrl": false});
    let reply = post(
        &url,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        next_line(&server),
        json!({"type": "click", "viewerId": server.id, "cell": 4, "button": 0, "shift": false, "ctrl": false})
    );

    let cells: Vec<u8> = [0u32, 7, 699]
        .iter()
        .flat_map(|c| c.to_le_bytes())
        .collect();
    let selection = format!(
        "{}/_cellucid/selection?viewerId={}&source=lasso",
        server.base, server.id
    );
    let reply = post(
        &selection,
        &[("Content-Type", "application/octet-stream"), auth],
        &cells,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        next_line(&server),
        json!({"viewerId": server.id, "type": "selection", "source": "lasso", "cells": [0, 7, 699]})
    );
    // The dataset has 700 cells: 700 is out of range.
    let out_of_range: Vec<u8> = 700u32.to_le_bytes().to_vec();
    let reply = post(
        &selection,
        &[("Content-Type", "application/octet-stream"), auth],
        &out_of_range,
    )
    .await;
    assert_eq!(reply.status, 400);

    let mut ws = ws_hello(server.addr, &server.id, &server.token).await;
    ws.send(Message::text(
        r#"{"type":"ready","n_cells":700,"dimensions":2}"#,
    ))
    .await
    .unwrap();
    assert_eq!(
        next_line(&server),
        json!({"type": "ready", "n_cells": 700, "dimensions": 2, "viewerId": server.id})
    );

    // Refusals print nothing on stdout; a bundle upload without a request
    // is 404 and leaves nothing in TMPDIR.
    let reply = post(
        &url,
        &[
            ("Content-Type", "application/json"),
            ("X-Cellucid-Viewer-Token", "nope"),
        ],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 403);
    let upload = format!(
        "{}/_cellucid/session_bundle?viewerId={}&requestId=abc",
        server.base, server.id
    );
    let reply = post(
        &upload,
        &[("Content-Type", "application/octet-stream"), auth],
        &valid_bundle(2),
    )
    .await;
    assert_eq!(reply.status, 404);
    assert!(files_in(server.tmp.path()).is_empty());

    // SIGTERM: the socket is closed with 1001, the process exits 0, and
    // stdout held exactly the three events.
    let reader = tokio::spawn(async move { close_code(&mut ws).await });
    signal(&server.child, "TERM");
    assert_eq!(reader.await.unwrap(), Some(1001));
    let mut server = server;
    let status = tokio::task::spawn_blocking(move || {
        let status = server.child.wait().unwrap();
        let rest: Vec<String> = server.stdout.try_iter().collect();
        (status, rest)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "{:?}", status.0);
    assert!(status.1.is_empty(), "unexpected stdout: {:?}", status.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_outlives_the_http_idle_and_header_timeouts() {
    let server = start_viewer_server_with(&["--idle-timeout", "0.5", "--header-timeout", "0.5"]);
    let mut ws = ws_hello(server.addr, &server.id, &server.token).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ws.send(Message::text(
        r#"{"type":"hover","cell":null,"position":null}"#,
    ))
    .await
    .unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let line = next_line(&server);
        drop(server);
        line
    })
    .await
    .unwrap();
    assert_eq!(line["type"], "hover");
}

#[test]
fn without_viewer_no_viewer_is_registered() {
    let server =
        crate::support::Server::start(&[fixture("exports-0.9.4/pbmc68k-f32").to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(200));
    let stderr = server.stderr();
    assert!(
        stderr.iter().any(|l| l.starts_with("Press Ctrl-C")),
        "{stderr:?}"
    );
    assert!(
        !stderr
            .iter()
            .any(|l| l.starts_with("Viewer    ") || l.contains("viewerToken=")),
        "{stderr:?}"
    );
    let body =
        json!({"type": "click", "viewerId": "0123456789abcdef", "viewerToken": "0"}).to_string();
    let reply = post_blocking(
        &server.url("/_cellucid/events"),
        &[("Content-Type".into(), "application/json".into())],
        body.into_bytes(),
    );
    assert_eq!(reply.status, 403);
}

fn inspect(args: &[&str]) -> std::process::Output {
    cellucid()
        .arg("session")
        .arg("inspect")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn session_inspect_validates_and_prints_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    for version in [1u8, 2] {
        let path = dir.path().join(format!("v{version}.cellucid-session"));
        std::fs::write(&path, valid_bundle(version)).unwrap();
        let out = inspect(&[path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("valid Cellucid session bundle"), "{text}");
        assert!(text.contains(&format!("format {version}")), "{text}");
        assert!(
            text.contains("core/state") && text.contains("highlights/cells/highlight_1"),
            "{text}"
        );
        assert!(text.contains("\"datasetFingerprint\""), "{text}");

        let out = inspect(&["--json", path.to_str().unwrap()]);
        assert!(out.status.success());
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["valid"], true);
        assert_eq!(doc["format"], version);
        assert_eq!(doc["chunks"].as_array().unwrap().len(), 3);
        assert_eq!(doc["manifest"]["createdAt"], "2025-01-31T12:00:00.000Z");
    }

    let mut bad = valid_bundle(2);
    bad.extend_from_slice(b"junk");
    let path = dir.path().join("bad.cellucid-session");
    std::fs::write(&path, bad).unwrap();
    let out = inspect(&[path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("not a valid session bundle") && stderr.contains("trailing bytes"),
        "{stderr}"
    );

    let out = inspect(&[dir.path().join("missing").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_counts_against_max_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start_viewer_server_with(&["--max-connections", "1"]);
    let mut ws = ws_hello(server.addr, &server.id, &server.token).await;
    // The only slot is the socket's: a new request waits in the backlog…
    let mut http = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET /_cellucid/health HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.addr
    );
    http.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(700), http.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "answered while the socket held the only slot"
    );
    // …until the socket closes.
    ws.close(None).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), http.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert!(
        reply.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_whose_stdout_is_not_read_gets_503_and_sigterm_still_exits() {
    let server = start_unread_viewer_server(&[
        "--max-queued-event-bytes",
        "1MiB",
        "--shutdown-timeout",
        "3",
    ]);
    assert!(server.unread.is_some());
    let url = format!("{}/_cellucid/events", server.base);
    let event = json!({"type": "note", "viewerId": server.id, "viewerToken": server.token, "pad": "x".repeat(200 * 1024)})
        .to_string();
    // stdout's pipe, the line in hand and 1 MiB of queue fill up; events
    // used to queue to about 1 GB and then hang.
    let started = std::time::Instant::now();
    let mut refused = None;
    for sent in 0..60 {
        let reply = post(
            &url,
            &[("Content-Type", "application/json")],
            event.as_bytes(),
        )
        .await;
        if reply.status == 503 {
            assert!(error_message(&reply).contains("not reading"));
            refused = Some(sent);
            break;
        }
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let refused = refused.expect("no 503 after 60 events of 200 KiB");
    assert!(refused >= 2, "refused after only {refused} events");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    // SIGTERM ends the process within --shutdown-timeout although stdout
    // still blocks; it used to wait for a reader forever.
    let mut server = server;
    signal(&server.child, "TERM");
    let stopped = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    let waited = stopped.elapsed();
    assert!(status.is_some(), "still running {waited:?} after SIGTERM");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_datasets_an_out_of_range_selection_is_400() {
    // Both datasets have 700 cells; with two, any index used to pass.
    let second = fixture("exports-0.9.4/pbmc68k-q8-gz");
    let server = start_viewer_server_with(&[second.to_str().unwrap()]);
    let selection = format!(
        "{}/_cellucid/selection?viewerId={}&source=lasso",
        server.base, server.id
    );
    let auth = ("X-Cellucid-Viewer-Token", server.token.as_str());
    let headers = [("Content-Type", "application/octet-stream"), auth];
    let reply = post(&selection, &headers, &700u32.to_le_bytes()).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(error_message(&reply).contains("out of range"));
    let reply = post(&selection, &headers, &699u32.to_le_bytes()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(next_line(&server)["cells"], json!([699]));
}
