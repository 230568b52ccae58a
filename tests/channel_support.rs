//! Helpers of the viewer-channel tests: an in-process server (the library,
//! on a real loopback socket), HTTP POSTs, WebSocket clients, and session
//! bundles built from the format rules (docs/PROTOCOL.md, "Session bundles").

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cellucid_core::{DatasetSource, ExportSource};
use cellucid_http::{ChannelLimits, Layout, Server, ServerConfig, ViewerRegistry};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::support::{fixture, parse_reply, Reply};

/// A cellucid-http server running in this process on a free loopback port.
pub struct InProc {
    pub addr: SocketAddr,
    pub base: String,
    pub viewers: ViewerRegistry,
    pub bundle_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl InProc {
    /// Serves the one-dataset fixture `exports-0.9.4/pbmc68k-f32` with
    /// `limits` (its bundle dir replaced by a fresh temp dir).
    pub async fn start(limits: ChannelLimits) -> InProc {
        Self::start_with(limits, Duration::from_secs(10)).await
    }

    /// Like [`InProc::start`], with a shutdown grace period of `grace`.
    pub async fn start_with(mut limits: ChannelLimits, grace: Duration) -> InProc {
        let bundle_dir = tempfile::tempdir().unwrap();
        limits.bundle_dir = Some(bundle_dir.path().to_owned());
        let source: Arc<dyn DatasetSource> =
            Arc::new(ExportSource::open(&fixture("exports-0.9.4/pbmc68k-f32")).unwrap());
        let layout = Layout::new(&[source]).unwrap();
        let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
        config.service.channel = limits;
        config.limits.shutdown_grace = grace;
        let server = Server::bind(config, layout).await.unwrap();
        let addr = server.local_addr();
        let base = server.base_url();
        let viewers = server.viewers();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        InProc {
            addr,
            base,
            viewers,
            bundle_dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server, waits for it, and hands back its bundle directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("server stops")
                .unwrap()
                .unwrap();
        }
        self.bundle_dir
    }

    /// The files left in the bundle directory.
    pub fn leftover_files(&self) -> Vec<PathBuf> {
        files_in(self.bundle_dir.path())
    }
}

/// The entries of `dir`.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// `POST url` with `headers` and `body` through the real client (ureq), on
/// a blocking thread.
pub async fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let url = url.to_owned();
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let body = body.to_vec();
    tokio::task::spawn_blocking(move || post_blocking(&url, &headers, body))
        .await
        .unwrap()
}

pub fn post_blocking(url: &str, headers: &[(String, String)], body: Vec<u8>) -> Reply {
    crate::support::send("POST", url, headers, body)
}

/// A raw chunked POST (the real client always sends Content-Length).
pub async fn post_chunked(addr: SocketAddr, target: &str, headers: &[&str], body: &[u8]) -> Reply {
    let mut request = format!(
        "POST {target} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
    );
    for line in headers {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    for piece in body.chunks(4096) {
        bytes.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        bytes.extend_from_slice(piece);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"0\r\n\r\n");
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let _ = stream.write_all(&bytes);
        let mut buf = Vec::new();
        let _ = stream.read_to_end(&mut buf);
        parse_reply(&buf).unwrap_or_else(|| panic!("no reply: {:?}", String::from_utf8_lossy(&buf)))
    })
    .await
    .unwrap()
}

/// The JSON error body's message, asserting its shape.
pub fn error_message(reply: &Reply) -> String {
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{}",
        reply.text()
    );
    let body = reply.json();
    assert_eq!(body["status"], "error", "{body}");
    body["message"].as_str().unwrap().to_owned()
}

// --- WebSocket -----------------------------------------------------------

pub type Ws = WebSocketStream<TcpStream>;

/// Opens `/_cellucid/ws` with `origin` (none when `None`).
pub async fn ws_connect(
    addr: SocketAddr,
    origin: Option<&str>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{addr}/_cellucid/ws")
        .into_client_request()
        .unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
    }
    let stream = TcpStream::connect(addr).await.unwrap();
    tokio_tungstenite::client_async(request, stream)
        .await
        .map(|(ws, _)| ws)
}

/// A socket from the server's own origin, hello sent and welcome received.
pub async fn ws_hello(addr: SocketAddr, id: &str, token: &str) -> Ws {
    let mut ws = ws_connect(addr, Some(&format!("http://{addr}")))
        .await
        .unwrap();
    use futures_util::SinkExt;
    ws.send(Message::text(
        json!({"type": "hello", "viewerId": id, "viewerToken": token}).to_string(),
    ))
    .await
    .unwrap();
    let welcome = next_message(&mut ws).await.expect("a welcome");
    assert_eq!(welcome, Message::text(r#"{"type":"welcome"}"#));
    ws
}

/// The next data or close message (pings and pongs skipped), within 10 s.
pub async fn next_message(ws: &mut Ws) -> Option<Message> {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s");
        match next {
            None | Some(Err(_)) => return None,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(message)) => return Some(message),
        }
    }
}

/// Reads until the server's close frame and returns its code (None when the
/// connection ended without one).
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    let code = loop {
        match next_message(ws).await? {
            Message::Close(Some(frame)) => break Some(u16::from(frame.code)),
            Message::Close(None) => break None,
            _ => continue,
        }
    };
    // Keep reading so tungstenite sends its close reply and the server's
    // closing handshake ends cleanly.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    code
}

// --- session bundles -------------------------------------------------------

/// One chunk of a test bundle.
pub struct Chunk {
    pub id: String,
    pub kind: &'static str,
    pub gzip: bool,
    /// The decoded payload.
    pub payload: Vec<u8>,
    /// Overrides the declared `uncompressedBytes`.
    pub declared: Option<u64>,
}

impl Chunk {
    pub fn json(id: &str, value: &Value) -> Chunk {
        Chunk {
            id: id.into(),
            kind: "json",
            gzip: true,
            payload: value.to_string().into_bytes(),
            declared: None,
        }
    }

    pub fn binary(id: &str, payload: Vec<u8>, gzip: bool) -> Chunk {
        Chunk {
            id: id.into(),
            kind: "binary",
            gzip,
            payload,
            declared: None,
        }
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn data_mapping() -> Value {
    json!({"kind":"anndata","embeddings":{"enabled":[{"key":"X_umap","columns":[0,1]}],"defaults":{"1d":null,"2d":{"key":"X_umap","columns":[0,1]},"3d":null}},"knn":null,"geneNames":"index","expression":"X","log1p":{},"highlyVariable":null,"latent":null,"vectorFields":[]})
}

/// A bundle of format `version` (1 or 2) holding `chunks`.
pub fn bundle(version: u8, chunks: &[Chunk]) -> Vec<u8> {
    let stored: Vec<Vec<u8>> = chunks
        .iter()
        .map(|c| {
            if c.gzip {
                gzip(&c.payload)
            } else {
                c.payload.clone()
            }
        })
        .collect();
    let entries: Vec<Value> = chunks
        .iter()
        .zip(&stored)
        .map(|(c, s)| {
            json!({
                "id": c.id, "contributorId": "test", "priority": "eager", "kind": c.kind,
                "codec": if c.gzip { "gzip" } else { "none" }, "label": c.id,
                "datasetDependent": false, "storedBytes": s.len(),
                "uncompressedBytes": c.declared.unwrap_or(c.payload.len() as u64),
            })
        })
        .collect();
    let order = json!({"embedding": {"key": "X_umap", "columns": [0, 1]}, "dimension": 2, "digest": "0123456789abcdef"});
    let manifest = if version == 1 {
        json!({
            "createdAt": "2025-01-31T12:00:00.000Z",
            "datasetFingerprint": {"sourceType": "anndata", "datasetId": "pbmc", "cellCount": 700, "varCount": 765, "cellOrder": order, "dataMapping": data_mapping()},
            "chunks": entries,
        })
    } else {
        json!({
            "createdAt": "2025-01-31T12:00:00.000Z",
            "datasetFingerprint": {"datasetId": "pbmc", "name": "PBMC", "cellCount": 700, "varCount": 765, "cellOrder": order, "dataMapping": data_mapping()},
            "source": null,
            "requires": {"obs": ["louvain"], "var": []},
            "chunks": entries,
        })
    };
    let manifest = manifest.to_string().into_bytes();
    let mut out = Vec::new();
    out.extend_from_slice(if version == 1 {
        b"CELLUCID_SESSION\n".as_slice()
    } else {
        b"CELLUCID_SESSION/2\n".as_slice()
    });
    out.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
    out.extend_from_slice(&manifest);
    for s in &stored {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s);
    }
    out
}

/// A small valid bundle of format `version`.
pub fn valid_bundle(version: u8) -> Vec<u8> {
    bundle(
        version,
        &[
            Chunk::json("core/state", &json!({"colorBy": "louvain", "pointSize": 2})),
            Chunk::binary("highlights/cells/highlight_1", vec![0, 3, 1, 2, 5], true),
            Chunk::binary("raw/bytes", b"plain payload".to_vec(), false),
        ],
    )
}
