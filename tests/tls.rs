//! HTTPS (SECURITY.md, "HTTPS"): `serve --tls-cert/--tls-key` with a
//! self-signed certificate made in the test, spoken to by real TLS clients
//! over loopback: HTTP/2 and HTTP/1.1 by ALPN, a Range read, the access
//! token with a `Secure` cookie, the viewer channel over `wss://`, the
//! handshake deadline, startup errors for bad files, and HTTP/2's own
//! limits (the stream cap, a stalled stream's send timeout, rapid reset)
//! with raw frames where a real client would politely stay within them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{cellucid, demo, require_tool, Server};

const IDENTITY: &str = "/synthetic-cell-types-2d/dataset_identity.json";

/// A self-signed certificate for `localhost` and `127.0.0.1`, written as
/// PEM files into a temporary folder.
struct Cert {
    dir: tempfile::TempDir,
    der: CertificateDer<'static>,
}

impl Cert {
    fn new() -> Self {
        let made = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), made.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), made.signing_key.serialize_pem()).unwrap();
        Self {
            der: made.cert.der().clone(),
            dir,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cert(&self) -> String {
        self.file("cert.pem").to_str().unwrap().to_owned()
    }

    fn key(&self) -> String {
        self.file("key.pem").to_str().unwrap().to_owned()
    }

    /// `cellucid serve --no-web-ui --tls-cert … --tls-key … EXTRA…`.
    fn serve(&self, extra: &[&str]) -> Server {
        let (cert, key) = (self.cert(), self.key());
        let mut args = vec!["--no-web-ui", "--tls-cert", &cert, "--tls-key", &key];
        args.extend_from_slice(extra);
        Server::start(&args)
    }

    /// A client configuration trusting only this certificate, offering
    /// `alpn`.
    fn client(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

type ClientTls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A TLS connection to the server, the certificate checked for `localhost`.
async fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> ClientTls {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    TlsConnector::from(config).connect(name, tcp).await.unwrap()
}

/// One answer, read whole.
struct Fetched {
    status: u16,
    version: http::Version,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Fetched {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// GETs `paths` (each with its extra headers) over one TLS connection
/// offering `alpn`, as HTTP/2 or HTTP/1.1 as the server's ALPN answer says.
/// Returns the negotiated protocol and the answers.
async fn fetch(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    requests: &[(&str, &[(&str, &str)])],
) -> (Option<Vec<u8>>, Vec<Fetched>) {
    let tls = connect(addr, config).await;
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let h2 = alpn.as_deref() == Some(b"h2");
    let mut out = Vec::new();
    let build = |path: &str, headers: &[(&str, &str)]| {
        let mut builder = http::Request::get(if h2 {
            format!("https://{addr}{path}")
        } else {
            path.to_owned()
        });
        if !h2 {
            builder = builder.header("host", addr.to_string());
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Empty::<Bytes>::new()).unwrap()
    };
    if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        for (path, headers) in requests {
            let response = sender.send_request(build(path, headers)).await.unwrap();
            out.push(read_whole(response).await);
        }
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        for (path, headers) in requests {
            let response = sender.send_request(build(path, headers)).await.unwrap();
            out.push(read_whole(response).await);
        }
    }
    (alpn, out)
}

async fn read_whole(response: http::Response<hyper::body::Incoming>) -> Fetched {
    let (parts, body) = response.into_parts();
    Fetched {
        status: parts.status.as_u16(),
        version: parts.version,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

#[test]
fn https_serves_http2_and_http11_as_alpn_chooses() {
    let cert = Cert::new();
    let server = cert.serve(&[]);
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );
    let line = stderr_line(&server, "HTTPS     ");
    assert!(line.contains("HTTP/2 and HTTP/1.1 over TLS"), "{line}");
    let file = std::fs::read(demo().join(IDENTITY.trim_start_matches('/'))).unwrap();
    let requests: &[(&str, &[(&str, &str)])] = &[
        ("/_cellucid/health", &[]),
        (IDENTITY, &[("range", "bytes=10-29")]),
        (IDENTITY, &[]),
    ];
    for (offer, expect) in [
        (&[b"h2".as_slice(), b"http/1.1"][..], Some(&b"h2"[..])),
        (&[b"http/1.1".as_slice()][..], Some(&b"http/1.1"[..])),
        (&[][..], None),
    ] {
        let (alpn, answers) = block_on(fetch(server.addr, cert.client(offer), requests));
        assert_eq!(alpn.as_deref(), expect, "offered {offer:?}");
        let version = if expect == Some(b"h2") {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        assert_eq!(answers[0].status, 200);
        assert_eq!(answers[0].version, version);
        assert!(
            answers[0].body.starts_with(br#"{"status":"ok""#),
            "{:?}",
            answers[0].body
        );
        let range = &answers[1];
        assert_eq!(range.status, 206, "offered {offer:?}");
        assert_eq!(&range.body[..], &file[10..30]);
        assert_eq!(
            range.header("content-range"),
            Some(format!("bytes 10-29/{}", file.len()).as_str())
        );
        assert_eq!(answers[2].status, 200);
        assert_eq!(&answers[2].body[..], &file[..]);
    }
}

#[test]
fn curl_speaks_http2_and_http11_to_it() {
    let Some(curl) = require_tool(&["curl"], "apt-get install curl") else {
        return;
    };
    let cert = Cert::new();
    let server = cert.serve(&[]);
    for (flag, expect) in [("--http2", "2 206"), ("--http1.1", "1.1 206")] {
        let out = std::process::Command::new(&curl)
            .args(["-sS", "-o", "/dev/null", "-r", "0-9", "-w"])
            .arg("%{http_version} %{http_code}")
            .arg(flag)
            .arg("--cacert")
            .arg(cert.file("cert.pem"))
            .arg(format!(
                "https://localhost:{}{IDENTITY}",
                server.addr.port()
            ))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            text,
            expect,
            "{flag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_token_cookie_is_secure_over_https() {
    let cert = Cert::new();
    let server = cert.serve(&["--host", "0.0.0.0"]);
    let token = server.token.clone().expect("a token in the URL");
    assert!(
        server.base.starts_with("https://"),
        "the printed URL: {}",
        server.base
    );
    let with_token = format!("/?x=1&token={token}");
    for offer in [&[b"h2".as_slice()][..], &[b"http/1.1".as_slice()][..]] {
        let (_, answers) = block_on(fetch(
            server.addr,
            cert.client(offer),
            &[(&with_token, &[]), ("/_cellucid/datasets", &[])],
        ));
        let exchange = &answers[0];
        assert_eq!(exchange.status, 303);
        assert_eq!(exchange.header("location"), Some("./?x=1"));
        let cookie = exchange.header("set-cookie").expect("a cookie").to_owned();
        assert!(
            cookie.contains("HttpOnly")
                && cookie.contains("SameSite=Strict")
                && cookie.contains("; Secure"),
            "{cookie}"
        );
        assert_eq!(answers[1].status, 401, "no token, no data");
        let pair = cookie.split(';').next().unwrap().to_owned();
        let (_, answers) = block_on(fetch(
            server.addr,
            cert.client(offer),
            &[("/_cellucid/datasets", &[("cookie", &pair)])],
        ));
        assert_eq!(answers[0].status, 200);
        assert!(String::from_utf8_lossy(&answers[0].body).contains("synthetic-cell-types-2d"));
    }
}

/// The first stderr line starting with `prefix`, waited for: lines after
/// the URL may not have been read yet when the server is returned.
fn stderr_line(server: &Server, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stderr = server.stderr();
        if let Some(line) = stderr.iter().find(|l| l.starts_with(prefix)) {
            return line.clone();
        }
        assert!(Instant::now() < deadline, "no {prefix:?} line: {stderr:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `viewerId` and `viewerToken` from the `Viewer    …` line of the banner.
fn viewer_credentials(server: &Server) -> (String, String) {
    let line = stderr_line(server, "Viewer    ");
    assert!(line.contains("https://"), "{line}");
    let param = |name: &str| {
        line.split(['?', '&'])
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {line}"))
            .to_owned()
    };
    (param("viewerId"), param("viewerToken"))
}

#[test]
fn the_viewer_channel_opens_over_wss() {
    let cert = Cert::new();
    let server = cert.serve(&["--viewer", "--allowed-host", "cellucid.test"]);
    let (id, token) = viewer_credentials(&server);
    let port = server.addr.port();
    block_on(async {
        // The server's own https origin, by a name other than loopback's:
        // the page came from this server over TLS. An http page of the same
        // name is another origin.
        for (origin, accepted) in [
            (format!("https://cellucid.test:{port}"), true),
            (format!("http://cellucid.test:{port}"), false),
        ] {
            let mut request = format!("wss://cellucid.test:{port}/_cellucid/ws")
                .into_client_request()
                .unwrap();
            request
                .headers_mut()
                .insert("origin", origin.parse().unwrap());
            // A WebSocket needs HTTP/1.1: a browser opens it on an
            // HTTP/1.1 connection of its own.
            let tls = connect(server.addr, cert.client(&[b"http/1.1"])).await;
            let result = tokio_tungstenite::client_async(request, tls).await;
            if !accepted {
                match result {
                    Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                        assert_eq!(response.status(), 403, "{origin}");
                    }
                    other => panic!("{origin} was not refused: {:?}", other.map(|_| ())),
                }
                continue;
            }
            let (mut ws, _) = result.unwrap_or_else(|err| panic!("{origin}: {err}"));
            let hello = serde_json::json!({"type": "hello", "viewerId": id, "viewerToken": token});
            ws.send(Message::text(hello.to_string())).await.unwrap();
            let welcome = loop {
                let next = tokio::time::timeout(Duration::from_secs(10), ws.next())
                    .await
                    .expect("an answer within 10 s")
                    .expect("the socket open")
                    .unwrap();
                if !matches!(next, Message::Ping(_) | Message::Pong(_)) {
                    break next;
                }
            };
            assert_eq!(welcome, Message::text(r#"{"type":"welcome"}"#));
        }
    });
}

/// Reads until the server closes `stream`; the time it took, or `None`
/// when it was still open after `limit`.
fn closed_within(mut stream: TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(_) => return Some(start.elapsed()),
        }
    }
}

#[test]
fn a_client_that_never_finishes_the_handshake_loses_its_slot() {
    let cert = Cert::new();
    // One connection slot; the handshake deadline is --header-timeout.
    let server = cert.serve(&["--max-connections", "1", "--header-timeout", "2"]);
    let silent = TcpStream::connect(server.addr).unwrap();
    // The start of a ClientHello record, then nothing.
    let mut partial = TcpStream::connect(server.addr).unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    let start = Instant::now();
    let waiters = [silent, partial]
        .map(|stream| std::thread::spawn(move || closed_within(stream, Duration::from_secs(15))));
    // A real client behind them gets served once the slot is freed.
    let (_, answers) = block_on(fetch(
        server.addr,
        cert.client(&[b"h2"]),
        &[("/_cellucid/health", &[])],
    ));
    assert_eq!(answers[0].status, 200);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "served after {:?}",
        start.elapsed()
    );
    for waiter in waiters {
        let closed = waiter.join().unwrap().expect("closed by the server");
        assert!(
            closed >= Duration::from_millis(1500) && closed < Duration::from_secs(8),
            "closed after {closed:?}, deadline 2 s"
        );
    }
}

/// Runs `cellucid serve` with `args`, expecting it to refuse to start;
/// returns the exit code and stderr.
fn refused(args: &[&str]) -> (i32, String) {
    let mut child = cellucid()
        .args(["serve", "--no-browser", "--no-web-ui", "--port", "0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve {args:?} started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code().unwrap_or(-1), stderr)
}

#[test]
fn a_bad_certificate_or_key_is_one_line_at_startup() {
    let cert = Cert::new();
    let other = Cert::new();
    let garbage = cert.file("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = cert.file("missing.pem");
    let encrypted = cert.file("encrypted.pem");
    std::fs::write(
        &encrypted,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let e = encrypted.to_str().unwrap().to_owned();
    let (c, k) = (cert.cert(), cert.key());
    let other_key = other.key();
    let (g, m) = (
        garbage.to_str().unwrap().to_owned(),
        missing.to_str().unwrap().to_owned(),
    );
    for (args, code, says) in [
        (
            vec!["--tls-cert", &m, "--tls-key", &k],
            1,
            "cannot read the certificate file",
        ),
        (
            vec!["--tls-cert", &c, "--tls-key", &m],
            1,
            "cannot read the private key file",
        ),
        (
            vec!["--tls-cert", &g, "--tls-key", &k],
            2,
            "holds no PEM certificate",
        ),
        (
            vec!["--tls-cert", &c, "--tls-key", &g],
            2,
            "holds no PEM private key",
        ),
        // A certificate given as the key: still not a key.
        (
            vec!["--tls-cert", &c, "--tls-key", &c],
            2,
            "holds no PEM private key",
        ),
        (
            vec!["--tls-cert", &c, "--tls-key", &e],
            2,
            "encrypted with a passphrase); --tls-key needs the key without its passphrase",
        ),
        (
            vec!["--tls-cert", &c, "--tls-key", &other_key],
            2,
            "does not match the certificate",
        ),
    ] {
        let (exit, stderr) = refused(&args);
        assert_eq!(exit, code, "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(
            lines[0].starts_with("cellucid: error: ") && lines[0].contains(says),
            "{args:?}: {stderr}"
        );
    }
    // Both or neither.
    let (exit, stderr) = refused(&["--tls-cert", &c]);
    assert_eq!(exit, 2, "{stderr}");
    assert!(stderr.contains("--tls-key"), "{stderr}");
}

// ---- HTTP/2 by hand: frames a well-behaved client would never send ----

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    fn code(&self) -> u32 {
        let at = if self.kind == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
}

/// An HTTP/2 connection over TLS, driven frame by frame.
struct RawH2 {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    authority: String,
    /// The server's SETTINGS, in order.
    settings: Vec<(u16, u32)>,
    /// Bytes read but not yet a whole frame (a read timeout loses none).
    pending: Vec<u8>,
}

impl RawH2 {
    /// Connects, sends the preface and `settings`, and acknowledges the
    /// server's SETTINGS.
    fn connect(server: &Server, cert: &Cert, settings: &[(u16, u32)]) -> Self {
        let tcp = TcpStream::connect(server.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(cert.client(&[b"h2"]), name).unwrap();
        let mut raw = Self {
            tls: rustls::StreamOwned::new(conn, tcp),
            authority: server.addr.to_string(),
            settings: Vec::new(),
            pending: Vec::new(),
        };
        raw.tls
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .unwrap();
        let payload: Vec<u8> = settings
            .iter()
            .flat_map(|(id, value)| [&id.to_be_bytes()[..], &value.to_be_bytes()].concat())
            .collect();
        raw.send(SETTINGS, 0, 0, &payload);
        assert_eq!(
            raw.tls.conn.alpn_protocol(),
            Some(&b"h2"[..]),
            "ALPN chose h2"
        );
        loop {
            let frame = raw.read().expect("the server's SETTINGS");
            if frame.kind == SETTINGS && frame.flags & ACK == 0 {
                raw.settings = frame
                    .payload
                    .chunks(6)
                    .map(|s| {
                        (
                            u16::from_be_bytes([s[0], s[1]]),
                            u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
                        )
                    })
                    .collect();
                break;
            }
        }
        raw.send(SETTINGS, ACK, 0, &[]);
        raw
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut out = vec![len[1], len[2], len[3], kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        self.tls
            .write_all(&Self::frame(kind, flags, stream, payload))
            .unwrap();
        self.tls.flush().unwrap();
    }

    /// A GET of `path` as a HEADERS frame (HPACK: static-table names,
    /// literal values, no indexing).
    fn get(&self, stream: u32, path: &str) -> Vec<u8> {
        let mut block = vec![0x82, 0x87]; // :method GET, :scheme https
        for (index, value) in [(0x04u8, path), (0x01, self.authority.as_str())] {
            block.push(index);
            block.push(u8::try_from(value.len()).unwrap());
            block.extend_from_slice(value.as_bytes());
        }
        Self::frame(HEADERS, END_STREAM | END_HEADERS, stream, &block)
    }

    fn write_all(&mut self, bytes: &[u8]) {
        self.tls.write_all(bytes).unwrap();
        self.tls.flush().unwrap();
    }

    /// The next frame; `None` when the connection ended or nothing came
    /// within the read timeout.
    fn read(&mut self) -> Option<Frame> {
        loop {
            if self.pending.len() >= 9 {
                let head = &self.pending[..9];
                let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                if self.pending.len() >= 9 + len {
                    let frame: Vec<u8> = self.pending.drain(..9 + len).collect();
                    return Some(Frame {
                        kind: frame[3],
                        flags: frame[4],
                        stream: u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]])
                            & 0x7fff_ffff,
                        payload: frame[9..].to_vec(),
                    });
                }
            }
            let mut buf = [0u8; 16 * 1024];
            match self.tls.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
            }
        }
    }

    fn read_timeout(&mut self, timeout: Duration) {
        self.tls.sock.set_read_timeout(Some(timeout)).unwrap();
    }
}

#[test]
fn streams_beyond_the_cap_are_refused() {
    let cert = Cert::new();
    let server = cert.serve(&[]);
    // No flow-control window: every response stays open, holding its stream.
    let mut h2 = RawH2::connect(&server, &cert, &[(SETTINGS_INITIAL_WINDOW_SIZE, 0)]);
    let cap = h2
        .settings
        .iter()
        .find(|(id, _)| *id == SETTINGS_MAX_CONCURRENT_STREAMS)
        .map(|(_, value)| *value)
        .expect("the server announces a stream cap");
    assert_eq!(cap, 128);
    let sent = cap + 40;
    let burst: Vec<u8> = (0..sent)
        .flat_map(|i| h2.get(2 * i + 1, IDENTITY))
        .collect();
    h2.write_all(&burst);
    h2.read_timeout(Duration::from_secs(2));
    let (mut answered, mut refused) = (0, 0);
    while let Some(frame) = h2.read() {
        match frame.kind {
            HEADERS => answered += 1,
            RST_STREAM if frame.code() == REFUSED_STREAM => refused += 1,
            GOAWAY => panic!("the connection was ended (code {})", frame.code()),
            _ => {}
        }
        if answered + refused == sent {
            break;
        }
    }
    assert_eq!(answered, cap, "refused {refused}");
    assert_eq!(refused, sent - cap);
}

#[test]
fn a_stalled_stream_is_reset_and_the_connection_goes_on() {
    let cert = Cert::new();
    let server = cert.serve(&["--send-timeout", "1"]);
    let mut h2 = RawH2::connect(&server, &cert, &[(SETTINGS_INITIAL_WINDOW_SIZE, 0)]);
    let start = Instant::now();
    let request = h2.get(1, IDENTITY);
    h2.write_all(&request);
    // Stream 1 never gets a window: its response waits on us.
    let reset = loop {
        let frame = h2.read().expect("the stalled stream reset within 10 s");
        if frame.kind == RST_STREAM && frame.stream == 1 {
            break frame;
        }
        assert_ne!(frame.kind, GOAWAY, "the whole connection was ended");
    };
    assert_eq!(reset.code(), CANCEL);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(6),
        "reset after {waited:?}, send timeout 1 s"
    );
    // The same connection serves the next stream, which gets a window.
    let mut next = h2.get(3, IDENTITY);
    next.extend(RawH2::frame(WINDOW_UPDATE, 0, 3, &65_535u32.to_be_bytes()));
    h2.write_all(&next);
    let mut body = 0;
    loop {
        let frame = h2.read().expect("stream 3 answered");
        if frame.kind == DATA && frame.stream == 3 {
            body += frame.payload.len();
            if frame.flags & END_STREAM != 0 {
                break;
            }
        }
    }
    let file = std::fs::read(demo().join(IDENTITY.trim_start_matches('/'))).unwrap();
    assert_eq!(body, file.len());
}

#[test]
fn a_rapid_reset_burst_ends_that_connection_and_nothing_else() {
    let cert = Cert::new();
    let server = cert.serve(&[]);
    let mut h2 = RawH2::connect(&server, &cert, &[]);
    // Open and cancel streams as fast as the socket takes them
    // (CVE-2023-44487), in writes of 100 pairs, reading what comes back in
    // between (a GOAWAY is lost if the server closes on unread bytes).
    let mut goaway = None;
    let mut written = 0;
    'burst: for batch in 0..20u32 {
        let mut bytes = Vec::new();
        for i in 0..100 {
            let stream = 2 * (batch * 100 + i) + 1;
            bytes.extend(h2.get(stream, IDENTITY));
            bytes.extend(RawH2::frame(RST_STREAM, 0, stream, &CANCEL.to_be_bytes()));
        }
        if h2
            .tls
            .write_all(&bytes)
            .and_then(|()| h2.tls.flush())
            .is_err()
        {
            break;
        }
        written += 100;
        h2.read_timeout(Duration::from_millis(20));
        while let Some(frame) = h2.read() {
            if frame.kind == GOAWAY {
                goaway = Some(frame.code());
                break 'burst;
            }
        }
    }
    // ENHANCE_YOUR_CALM, long before the 2000 streams were sent.
    assert_eq!(goaway, Some(0xb), "after {written} streams");
    assert!(written < 2000, "the burst was not cut short");
    // The server itself is fine.
    let (_, answers) = block_on(fetch(
        server.addr,
        cert.client(&[b"h2"]),
        &[("/_cellucid/health", &[])],
    ));
    assert_eq!(answers[0].status, 200);
}

#[test]
fn an_idle_http2_connection_makes_room_at_the_connection_cap() {
    let cert = Cert::new();
    let server = cert.serve(&["--max-connections", "1"]);
    let mut idle = RawH2::connect(&server, &cert, &[]);
    let request = idle.get(1, "/_cellucid/health");
    idle.write_all(&request);
    loop {
        let frame = idle.read().expect("the health answer");
        if frame.kind == DATA && frame.stream == 1 && frame.flags & END_STREAM != 0 {
            break;
        }
    }
    // The only slot is held by an idle HTTP/2 connection: a new client gets
    // it, and the idle one is told to go away.
    let start = Instant::now();
    let (_, answers) = block_on(fetch(
        server.addr,
        cert.client(&[b"h2"]),
        &[("/_cellucid/health", &[])],
    ));
    assert_eq!(answers[0].status, 200);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let goaway = loop {
        match idle.read() {
            Some(frame) if frame.kind == GOAWAY => break Some(frame.code()),
            Some(_) => {}
            None => break None,
        }
    };
    assert_eq!(goaway, Some(0), "a graceful GOAWAY (NO_ERROR)");
}

#[test]
fn plain_http_on_the_https_port_is_told_to_use_https() {
    let cert = Cert::new();
    let server = cert.serve(&[]);
    let reply = crate::support::raw_get(
        server.addr,
        "/_cellucid/health",
        &[&format!("Host: {}", server.host())],
    );
    assert_eq!(reply.status, 400);
    assert!(reply.text().contains("https://"), "{}", reply.text());
    // And the server goes on serving HTTPS.
    let (_, answers) = block_on(fetch(
        server.addr,
        cert.client(&[b"h2"]),
        &[("/_cellucid/health", &[])],
    ));
    assert_eq!(answers[0].status, 200);
}

#[test]
fn a_request_body_that_never_comes_gets_408_on_its_http2_stream() {
    use http_body_util::StreamBody;
    let cert = Cert::new();
    let server = cert.serve(&["--viewer", "--body-timeout", "1"]);
    let addr = server.addr;
    block_on(async {
        let tls = connect(addr, cert.client(&[b"h2"])).await;
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        // A body whose bytes never come, on one stream of the connection.
        let never = StreamBody::new(futures_util::stream::pending::<
            Result<hyper::body::Frame<Bytes>, std::convert::Infallible>,
        >());
        let request = http::Request::post(format!("https://{addr}/_cellucid/events"))
            .header("content-type", "application/json")
            .body(never)
            .unwrap();
        let start = Instant::now();
        let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        assert_eq!(response.status(), 408);
        assert!(
            start.elapsed() < Duration::from_secs(6),
            "{:?}",
            start.elapsed()
        );
    });
}
