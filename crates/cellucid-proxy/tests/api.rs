//! The Rust API against a real loopback source: prefetch, serve, switch,
//! verify, clear.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use cellucid_proxy::{
    CacheDir, Environment, FetchOptions, NoProgress, ProxyError, SourceUrl, UiAnswer, WebCache,
    WebUiFiles,
};
use sha2::{Digest, Sha256};

type Files = Arc<Mutex<BTreeMap<String, (Vec<u8>, &'static str)>>>;

fn hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A static loopback server for `files` plus their inventory; lives as long
/// as the test process.
fn source(files: &Files) -> SourceUrl {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let files = Arc::clone(files);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut header = String::new();
            while reader.read_line(&mut header).unwrap() > 2 {
                header.clear();
            }
            let path = line
                .split(' ')
                .nth(1)
                .unwrap()
                .trim_start_matches('/')
                .to_owned();
            let files = files.lock().unwrap();
            let reply = if path == "cellucid-web-assets.json" {
                Some((inventory(&files), "application/json"))
            } else {
                files.get(&path).cloned()
            };
            let mut stream = stream;
            let (status, body, kind) = match reply {
                Some((body, kind)) => ("200 OK", body, kind),
                None => ("404 Not Found", b"no".to_vec(), "text/plain"),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    SourceUrl::parse(&url).unwrap()
}

fn inventory(files: &BTreeMap<String, (Vec<u8>, &'static str)>) -> Vec<u8> {
    let index = String::from_utf8_lossy(&files["index.html"].0).into_owned();
    let build = index
        .split("content=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let assets: Vec<_> = files
        .iter()
        .map(|(path, (bytes, kind))| {
            serde_json::json!({"path": path, "sha256": hex(bytes), "bytes": bytes.len(), "content_type": kind})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"version": 1, "build_id": build, "assets": assets}))
        .unwrap()
}

fn build(id: &str) -> BTreeMap<String, (Vec<u8>, &'static str)> {
    let js = format!("console.log('{id}')").into_bytes();
    let js_name = format!(
        "assets/app-{}.js",
        &hex(&js)[..8].replace(|c: char| c.is_ascii_alphabetic(), "7")
    );
    let index = format!(
        "<html><head><meta name=\"cellucid-web-build-id\" content=\"{id}\"><script src=\"/{js_name}\"></script></head></html>"
    );
    BTreeMap::from([
        (
            "index.html".to_owned(),
            (index.into_bytes(), "text/html; charset=utf-8"),
        ),
        (js_name, (js, "text/javascript; charset=utf-8")),
    ])
}

fn cache_in(dir: &Path) -> WebCache {
    WebCache::new(CacheDir::resolve(Some(dir), &Environment::default()).unwrap())
}

fn file_bytes(answer: UiAnswer) -> Vec<u8> {
    match answer {
        UiAnswer::File(ui) => {
            assert_eq!(ui.sha256, hex(&ui.bytes));
            ui.bytes.to_vec()
        }
        other => panic!("not a file: {other:?}"),
    }
}

#[test]
fn prefetch_serve_switch_verify_and_clear_through_the_api() {
    let first = build("one");
    let files: Files = Arc::new(Mutex::new(first.clone()));
    let source = source(&files);
    let tmp = tempfile::tempdir().unwrap();
    let cache = cache_in(&tmp.path().join("web"));
    let options = FetchOptions::default();

    let ui = WebUiFiles::new(&cache, &source);
    match ui.answer("") {
        UiAnswer::Unavailable { html } => assert!(html.contains("cellucid cache prefetch")),
        other => panic!("{other:?}"),
    }

    let outcome = cache
        .prefetch(&source, &options, false, &NoProgress)
        .unwrap();
    assert!(outcome.changed);
    assert_eq!(
        (outcome.build_id.as_str(), outcome.downloaded_files),
        ("one", 2)
    );
    assert_eq!(file_bytes(ui.answer("")), first["index.html"].0);
    let old_js = first.keys().find(|k| k.ends_with(".js")).unwrap().clone();
    match ui.answer(&old_js) {
        UiAnswer::File(file) => {
            assert!(file.immutable);
            assert_eq!(file.content_type, "text/javascript; charset=utf-8");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        ui.answer("assets/none-12345678.js"),
        UiAnswer::NotDeclared
    ));

    // A new build: served at once; the old hashed script stays reachable
    // for pages loaded just before the switch.
    let second = build("two");
    *files.lock().unwrap() = second.clone();
    let again = cache
        .prefetch(&source, &options, false, &NoProgress)
        .unwrap();
    assert_eq!(again.build_id, "two");
    assert_eq!(file_bytes(ui.answer("index.html")), second["index.html"].0);
    assert_eq!(file_bytes(ui.answer(&old_js)), first[&old_js].0);
    assert_eq!(cache.verify().unwrap().build_id, "two");

    // Damage: detected, never served.
    let new_js = second.keys().find(|k| k.ends_with(".js")).unwrap().clone();
    let generation = cache.active().unwrap().unwrap();
    std::fs::write(generation.dir.join(&new_js), b"evil").unwrap();
    assert!(matches!(ui.answer(&new_js), UiAnswer::Damaged(_)));
    assert!(matches!(cache.verify(), Err(ProxyError::Damaged { .. })));
    // The previous build is the fallback at startup.
    assert_eq!(cache.usable_generation().unwrap().inventory.build_id, "one");

    assert!(cache.clear().unwrap());
    assert!(matches!(cache.verify(), Err(ProxyError::Empty { .. })));
    assert!(matches!(ui.answer(""), UiAnswer::Unavailable { .. }));
}

/// Asks for `/` until `done` holds (at most 20 s); returns the answers before.
fn poll_index(ui: &WebUiFiles, done: impl Fn(&UiAnswer) -> bool) -> (UiAnswer, Vec<UiAnswer>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut before = Vec::new();
    loop {
        let answer = ui.answer("");
        if done(&answer) {
            return (answer, before);
        }
        assert!(std::time::Instant::now() < deadline, "{answer:?}");
        before.push(answer);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_background_download_is_served_as_soon_as_it_is_verified() {
    let first = build("background");
    let files: Files = Arc::new(Mutex::new(first.clone()));
    let source = source(&files);
    let tmp = tempfile::tempdir().unwrap();
    let cache = cache_in(&tmp.path().join("web"));
    let ui = WebUiFiles::new(&cache, &source);
    ui.download_in_background(FetchOptions::default()).unwrap();
    let (answer, before) = poll_index(&ui, |a| matches!(a, UiAnswer::File(_)));
    assert_eq!(file_bytes(answer), first["index.html"].0);
    for earlier in before {
        match earlier {
            UiAnswer::Downloading { html } => assert!(html.contains("being downloaded")),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_failed_background_download_gives_the_reason_and_the_fix() {
    let dead = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let source = SourceUrl::parse(&dead).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cache = cache_in(&tmp.path().join("web"));
    let ui = WebUiFiles::new(&cache, &source);
    ui.download_in_background(FetchOptions::default()).unwrap();
    let (answer, before) = poll_index(&ui, |a| !matches!(a, UiAnswer::Downloading { .. }));
    match answer {
        UiAnswer::Unavailable { html } => {
            assert!(html.contains("connection refused"), "{html}");
            assert!(html.contains(&format!("cellucid cache prefetch --web-source-url {dead}")));
        }
        other => panic!("{other:?}"),
    }
    assert!(before
        .iter()
        .all(|a| matches!(a, UiAnswer::Downloading { .. })));
    // Other UI paths are simply not there meanwhile.
    assert!(matches!(ui.answer("favicon.ico"), UiAnswer::NotDeclared));
}
