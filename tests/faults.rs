//! Faults: clients that vanish mid-response or mid-upload, a disk that
//! fills up while a session bundle arrives, a viewer program that stops
//! reading its events. Each leaves the server serving, with the descriptors
//! it had before and no temporary files.
//!
//! Session bundles are only accepted for a request a program made through
//! the Rust API, so the bundle tests run their server in a child process:
//! this test binary again, running [`bundle_server_process`], which serves
//! the library on loopback and asks for bundles when told to on stdin. That
//! keeps the server's descriptors, its `TMPDIR` and its file-size limit its
//! own.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cellucid_http::{ChannelLimits, ViewerOptions};
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::channel_support::*;
use crate::support::http1::Conn;
use crate::support::process::{limit_file_size, settled_fd_count, wait_for_fd_count};
use crate::support::*;

/// Set in the environment of the child process that runs
/// [`bundle_server_process`]; without it that test does nothing.
const CHILD_ENV: &str = "CELLUCID_FAULTS_BUNDLE_SERVER";
/// What the child prints before each of its protocol messages (libtest
/// prints its own text on the same stdout).
const TAG: &str = "bundle-server: ";

/// The server side of the bundle tests, run in a child process. Prints
/// `READY <addr> <viewerId> <viewerToken>`; then, for each `request` line
/// on stdin, registers a session bundle request and prints `REQUEST <id>`,
/// and once a valid bundle arrives, `BUNDLE <id> <bytes>` (the bundle is
/// then dropped, which deletes its file). Ends when stdin closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the server process of the bundle fault tests, which start it themselves"]
async fn bundle_server_process() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let server = InProc::start(ChannelLimits::default()).await;
    let viewer = server.viewers.register(ViewerOptions::default()).unwrap();
    println!(
        "{TAG}READY {} {} {}",
        server.addr,
        viewer.id(),
        viewer.token()
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        assert_eq!(line, "request", "unknown instruction");
        let request = viewer
            .begin_session_bundle(Duration::from_secs(600))
            .unwrap();
        let id = request.request_id().to_owned();
        println!("{TAG}REQUEST {id}");
        tokio::spawn(async move {
            match request.wait().await {
                Ok(bundle) => {
                    let bytes = bundle.len();
                    drop(bundle);
                    println!("{TAG}BUNDLE {id} {bytes}");
                }
                Err(err) => println!("{TAG}FAILED {id} {err}"),
            }
        });
    }
    drop(viewer);
    server.stop().await;
}

/// A running [`bundle_server_process`].
struct BundleServer {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    addr: SocketAddr,
    id: String,
    token: String,
    /// The child's `TMPDIR`, where uploads are written.
    tmp: tempfile::TempDir,
}

impl Drop for BundleServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl BundleServer {
    /// Starts the child; with `max_file_bytes`, no file it writes may grow
    /// beyond that (a full disk).
    fn start(max_file_bytes: Option<u64>) -> BundleServer {
        let tmp = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "faults::bundle_server_process",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, "1")
        .env("TMPDIR", tmp.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        if let Some(bytes) = max_file_bytes {
            limit_file_size(&mut cmd, bytes);
        }
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest's "test … ... " may come first on the line.
                if let Some((_, line)) = line.split_once(TAG) {
                    let _ = tx.send(line.to_owned());
                }
            }
        });
        let ready = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the bundle server starts");
        let mut words = ready.strip_prefix("READY ").expect("READY").split(' ');
        let (addr, id, token) = (words.next(), words.next(), words.next());
        BundleServer {
            addr: addr.unwrap().parse().unwrap(),
            id: id.unwrap().to_owned(),
            token: token.unwrap().to_owned(),
            child,
            stdin,
            lines,
            tmp,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next protocol line, which must start with `prefix`; the rest.
    fn expect(&self, prefix: &str) -> String {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no {prefix} line from the bundle server"));
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{line:?} instead of {prefix}"))
            .to_owned()
    }

    /// Asks the program side for a bundle; the request id.
    fn request(&mut self) -> String {
        writeln!(self.stdin, "request").unwrap();
        self.expect("REQUEST ")
    }

    /// The head of an upload of `len` bytes for request `request_id`.
    fn upload_head(&self, request_id: &str, len: usize) -> String {
        format!(
            "POST /_cellucid/session_bundle?viewerId={}&requestId={request_id} HTTP/1.1\r\n\
             Host: {}\r\nContent-Type: application/octet-stream\r\nX-Cellucid-Viewer-Token: {}\r\n\
             Content-Length: {len}\r\nConnection: close\r\n\r\n",
            self.id, self.addr, self.token
        )
    }

    /// Uploads `bundle` whole and reads the answer.
    async fn upload(&self, request_id: &str, bundle: &[u8]) -> Reply {
        let mut request = self.upload_head(request_id, bundle.len()).into_bytes();
        request.extend_from_slice(bundle);
        let mut conn = Conn::open(self.addr).await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), conn.exchange(&request, false))
            .await
            .expect("an answer within 30 s")
            .unwrap()
    }

    /// Files under the child's `TMPDIR` (the in-process server keeps its
    /// uploads in a folder there).
    fn temp_files(&self) -> Vec<String> {
        files_under(self.tmp.path())
    }

    /// Waits (at most 10 s) until no file is left under `TMPDIR`.
    fn wait_for_no_temp_files(&self) -> Vec<String> {
        wait_until_empty(self.tmp.path())
    }
}

fn wait_until_empty(dir: &Path) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = files_under(dir);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A valid format-2 bundle of about `bytes` bytes (one stored binary chunk
/// of bytes that do not compress).
fn large_bundle(bytes: usize) -> Vec<u8> {
    let mut state = 0x1234_5678_9abc_def0u64;
    let payload: Vec<u8> = (0..bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    bundle(
        2,
        &[
            Chunk::json("core/state", &json!({"colorBy": "louvain"})),
            Chunk::binary("raw/bytes", payload, false),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_dropped_halfway_leave_no_temp_file_and_no_descriptor() {
    let mut server = BundleServer::start(None);
    let request_id = server.request();
    let bundle = large_bundle(2 * 1024 * 1024);
    let half = bundle.len() / 2;
    let fds_before = settled_fd_count(server.pid());
    for round in 0..16 {
        let mut conn = Conn::open(server.addr).await.unwrap();
        conn.send(server.upload_head(&request_id, bundle.len()).as_bytes())
            .await
            .unwrap();
        conn.send(&bundle[..half]).await.unwrap();
        // The upload is on disk, half written…
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.temp_files().is_empty() {
            assert!(
                Instant::now() < deadline,
                "the upload never reached the disk"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // …and the client goes: a reset, or a plain close mid-body.
        if round % 2 == 0 {
            conn.socket().set_zero_linger().unwrap();
        }
        drop(conn);
        let left = server.wait_for_no_temp_files();
        assert!(
            left.is_empty(),
            "round {round}: a dropped upload left {left:?}"
        );
    }
    let fds_after = wait_for_fd_count(server.pid(), fds_before, Duration::from_secs(10));
    assert_eq!(
        fds_after, fds_before,
        "descriptors leaked by dropped uploads"
    );
    // A refused upload leaves the request pending: the whole bundle is taken.
    let reply = server.upload(&request_id, &bundle).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        server.expect("BUNDLE "),
        format!("{request_id} {}", bundle.len())
    );
    let left = server.wait_for_no_temp_files();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_up_during_a_bundle_upload_is_507_and_the_server_keeps_serving() {
    // Files of the server process cannot grow past 256 KiB: the disk is
    // "full" a quarter of the way into a 1 MiB bundle. It used to be a 500.
    let mut server = BundleServer::start(Some(256 * 1024));
    let request_id = server.request();
    let big = large_bundle(1024 * 1024);
    let reply = server.upload(&request_id, &big).await;
    assert_eq!(reply.status, 507, "{}", reply.text());
    let message = error_message(&reply);
    assert!(message.contains("no room"), "{message}");
    assert!(reply.body.len() < 200, "a short body: {}", reply.text());
    let left = server.wait_for_no_temp_files();
    assert!(left.is_empty(), "the partial upload was left: {left:?}");
    // The server keeps serving…
    let mut conn = Conn::open(server.addr).await.unwrap();
    let health = format!(
        "GET /_cellucid/health HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.addr
    );
    assert_eq!(
        conn.exchange(health.as_bytes(), false)
            .await
            .unwrap()
            .status,
        200
    );
    // …and a bundle that fits is taken, for the same (still pending) request.
    let small = valid_bundle(2);
    let reply = server.upload(&request_id, &small).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        server.expect("BUNDLE "),
        format!("{request_id} {}", small.len())
    );
    let left = server.wait_for_no_temp_files();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_dropping_mid_response_leak_no_descriptors() {
    const SIZE: u64 = 32 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("big");
    copy_tree(&fixture("exports-0.9.4/pbmc68k-f32"), &export);
    std::fs::File::create(export.join("large.bin"))
        .unwrap()
        .set_len(SIZE)
        .unwrap();
    let h5ad = fixture("anndata/pbmc68k_reduced.h5ad");
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::try_start_with_env(
        &[
            "--no-web-ui",
            "--cache-dir",
            TEST_CACHE,
            export.to_str().unwrap(),
            h5ad.to_str().unwrap(),
        ],
        &[("TMPDIR", tmp.path().to_str().unwrap())],
    )
    .unwrap();
    let addr = server.addr;
    let fds_before = settled_fd_count(server.pid());
    let clients: Vec<_> = (0..64u32)
        .map(|n| {
            tokio::spawn(async move {
                let mut conn = Conn::open(addr).await.unwrap();
                // Some ask for a range, some for the whole file, of an
                // export file or (on the byte route) of an AnnData file; some
                // are keep-alive connections that were served a request before.
                if n % 4 == 3 {
                    let small = format!(
                        "GET /pbmc68k-f32/obs/1.values.f32 HTTP/1.1\r\nHost: {addr}\r\n\r\n"
                    );
                    assert_eq!(
                        conn.exchange(small.as_bytes(), false).await.unwrap().status,
                        200
                    );
                }
                let range = if n % 2 == 0 {
                    "Range: bytes=1000-\r\n"
                } else {
                    ""
                };
                let path = if n % 5 == 4 {
                    "/_cellucid/anndata/pbmc68k_reduced.h5ad"
                } else {
                    "/pbmc68k-f32/large.bin"
                };
                let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{range}\r\n");
                conn.send(request.as_bytes()).await.unwrap();
                let head = conn.read_head().await.unwrap();
                assert!(matches!(head.status, 200 | 206), "{}", head.status);
                // Read a little of the body, then go: a reset or a close.
                let mut part = vec![0u8; 64 * 1024];
                let stream = conn.socket();
                let mut got = 0;
                while got < part.len() {
                    stream.readable().await.unwrap();
                    match stream.try_read(&mut part[got..]) {
                        Ok(0) => panic!("the server ended the response early"),
                        Ok(k) => got += k,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                if n % 3 == 0 {
                    conn.socket().set_zero_linger().unwrap();
                }
                drop(conn);
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let fds_after = wait_for_fd_count(server.pid(), fds_before, Duration::from_secs(20));
    assert_eq!(
        fds_after, fds_before,
        "descriptors leaked by dropped responses"
    );
    assert_eq!(get(&server.url("/_cellucid/health")).status, 200);
    assert!(files_under(tmp.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_viewer_whose_program_stops_reading_is_closed_with_1013() {
    let mut limits = ChannelLimits::default();
    limits.max_queued_event_bytes = 64 * 1024;
    limits.event_patience = Duration::from_millis(300);
    let server = InProc::start(limits).await;
    let viewer = server.viewers.register(ViewerOptions::default()).unwrap();
    // The program holds its event stream and never reads it.
    let _events = viewer.events().unwrap();
    let mut ws = ws_hello(server.addr, viewer.id(), viewer.token()).await;
    let event = json!({"type": "hover", "pad": "x".repeat(8 * 1024)}).to_string();
    let started = Instant::now();
    for _ in 0..32 {
        if ws.send(Message::text(event.clone())).await.is_err() {
            break;
        }
    }
    assert_eq!(close_code(&mut ws).await, Some(1013));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_upload_that_outlasts_the_body_timeout_is_not_cut() {
    // The body timeout bounds a body that trickles in; one that arrives at
    // more than the minimum rate earns time as it comes (docs/PROTOCOL.md).
    let mut limits = ChannelLimits::default();
    limits.body_timeout = Duration::from_secs(2);
    limits.min_body_rate = 16 * 1024;
    let server = InProc::start(limits).await;
    let viewer = server.viewers.register(ViewerOptions::default()).unwrap();
    let _events = viewer.events().unwrap();
    let cells: Vec<u8> = (0u32..98_304).flat_map(u32::to_le_bytes).collect();
    let head = format!(
        "POST /_cellucid/selection?viewerId={}&source=lasso HTTP/1.1\r\nHost: {}\r\n\
         Content-Type: application/octet-stream\r\nX-Cellucid-Viewer-Token: {}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        viewer.id(),
        server.addr,
        viewer.token(),
        cells.len()
    );
    let mut conn = Conn::open(server.addr).await.unwrap();
    conn.send(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    // 384 KiB in 12 pieces, 300 ms apart: about 3.6 s, above the 2 s
    // timeout, at about 100 KiB/s, above the 16 KiB/s minimum (each piece
    // earns 2 s and takes 0.3 s, so a busy machine has ample slack).
    for piece in cells.chunks(32 * 1024) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        conn.send(piece).await.unwrap();
    }
    assert!(started.elapsed() > Duration::from_secs(3));
    let reply = conn.read_reply(false).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_socket_that_stops_reading_commands_is_dropped_after_the_send_timeout() {
    let mut limits = ChannelLimits::default();
    limits.send_timeout = Duration::from_millis(500);
    // Pings would end a silent socket too; keep them out of the way.
    limits.ping_interval = Duration::from_secs(60);
    limits.pong_timeout = Duration::from_secs(60);
    let server = InProc::start(limits).await;
    let viewer = server.viewers.register(ViewerOptions::default()).unwrap();
    let ws = ws_hello(server.addr, viewer.id(), viewer.token()).await;
    // The viewer never reads again; the program highlights 1M cells (4 MB
    // per command) until the server gives the socket up, after which
    // commands wait in the outbox for the next socket.
    let cells: Vec<u32> = (0..1_000_000).collect();
    let started = Instant::now();
    let mut sent = 0;
    loop {
        let delivery = viewer
            .send(cellucid_http::Command::Highlight {
                cells: cells.clone(),
                color: "#ff0000".into(),
            })
            .unwrap();
        if delivery == cellucid_http::channel::Delivery::Queued {
            break;
        }
        sent += 1;
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the socket still takes commands after {sent} of 4 MB unread"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sent >= 1, "the first command was not even sent");
    drop(ws);
    server.stop().await;
}

#[test]
fn a_signal_right_after_the_url_is_printed_stops_the_server_gracefully() {
    // The handlers used to be installed only when the server first polled
    // its shutdown future, a moment after printing its URL: a SIGTERM in
    // between killed the process outright, cutting the responses in flight
    // and leaving its temporary files.
    let export = fixture("exports-0.9.4/pbmc68k-f32");
    for round in 0..12 {
        let server = Server::start(&["--no-web-ui", export.to_str().unwrap()]);
        let name = if round % 2 == 0 { "TERM" } else { "INT" };
        server.send_signal(name);
        let status = server.wait();
        assert_eq!(
            status.code(),
            Some(0),
            "round {round}: after SIG{name}: {status}"
        );
    }
}
