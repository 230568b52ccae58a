//! Embedding cellucid-http and talking to a viewer.
//!
//! ```text
//! cargo run -p cellucid-http --example viewer_channel -- [EXPORT_DIR]
//! cargo run -p cellucid-http --example viewer_channel -- --self-test
//! ```
//!
//! Serves EXPORT_DIR (default: the bundled demo datasets) on 127.0.0.1 at a
//! free port, registers one viewer and prints its URLs, then prints every
//! event the viewer sends: when the viewer reports `ready` it asks for a
//! session bundle, and a click highlights the clicked cell. Ctrl-C stops.
//!
//! With `--self-test` the example plays the viewer itself over loopback: it
//! posts one event to `/_cellucid/events`, waits for it on the event stream,
//! and exits. Nothing but loopback is ever contacted.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cellucid_core::{DatasetSource, ExportSource};
use cellucid_http::{Command, Layout, Server, ServerConfig, ViewerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let self_test = args.iter().any(|a| a == "--self-test");
    let dir = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/demo"));

    // 1. A server on loopback, like `cellucid serve`.
    let source: Arc<dyn DatasetSource> = Arc::new(ExportSource::open(&dir)?);
    let layout = Layout::new(&[source])?;
    let server = Server::bind(ServerConfig::new("127.0.0.1:0".parse()?), layout).await?;
    let base = server.base_url();

    // 2. One viewer: its URLs carry its id and token.
    let viewer = server.viewers().register(ViewerOptions::default())?;
    eprintln!("Open the viewer:            {}", viewer.url(&base, false));
    eprintln!("or, for a 0.9.4 viewer:     {}", viewer.jupyter_url(&base));
    let mut events = viewer
        .events()
        .ok_or("the event stream was already taken")?;

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        tokio::select! {
            _ = stop_rx => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }));

    if self_test {
        // 3a. Play the viewer: one click event, posted over loopback.
        let body = format!(
            r#"{{"viewerId":"{}","type":"click","cell":0,"button":0,"shift":false,"ctrl":false}}"#,
            viewer.id()
        );
        let status = post_event(&base, viewer.token(), &body).await?;
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await?
            .ok_or("the event stream ended")?;
        println!("HTTP {status}; received: {}", event.to_json_line());
    } else {
        // 3b. React to the viewer until Ctrl-C.
        let viewer = Arc::new(viewer);
        while let Some(event) = events.recv().await {
            println!("{}", event.to_json_line());
            match event.kind() {
                "click" => {
                    if let Some(cell) = event.fields().get("cell").and_then(|c| c.as_u64()) {
                        let cells = vec![u32::try_from(cell)?];
                        let delivery = viewer.send(Command::Highlight {
                            cells,
                            color: "#ff8800".into(),
                        })?;
                        eprintln!("highlight: {delivery:?}");
                    }
                }
                "ready" => {
                    let viewer = Arc::clone(&viewer);
                    tokio::spawn(async move {
                        match viewer.request_session_bundle().await {
                            Ok(bundle) => eprintln!(
                                "session bundle: format {}, {} bytes at {}",
                                bundle.version().number(),
                                bundle.len(),
                                bundle.path().display()
                            ),
                            Err(err) => eprintln!("no session bundle: {err}"),
                        }
                    });
                }
                _ => {}
            }
        }
    }
    let _ = stop_tx.send(());
    serving.await??;
    Ok(())
}

/// `POST /_cellucid/events` over a plain loopback socket; returns the status.
async fn post_event(base: &str, token: &str, body: &str) -> Result<u16, Box<dyn Error>> {
    let authority = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    let request = format!(
        "POST /_cellucid/events HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         X-Cellucid-Viewer-Token: {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await?;
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no HTTP status in the reply")?;
    Ok(status)
}
