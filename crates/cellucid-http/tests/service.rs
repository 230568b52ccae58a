//! The HTTP surface as a `tower::Service`, called with `oneshot`: routing,
//! method refusal, path traversal, the origin layer and file answers, with
//! no socket in between.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use cellucid_core::{DatasetSource, ExportSource};
use cellucid_http::{CellucidService, Layout, ServiceConfig};
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use tower::ServiceExt;

/// The address the service believes it is bound to.
const BOUND: &str = "127.0.0.1:8765";
/// The bytes of the one data file of the test dataset.
const DATA: &[u8] = b"0123456789abcdefghij";

/// A one-dataset export folder in a temp dir: `dataset_identity.json`,
/// `data.bin`, a dot-file, and a secret beside the folder.
fn dataset() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("ds");
    std::fs::create_dir(&root).expect("dataset dir");
    std::fs::write(
        root.join("dataset_identity.json"),
        r#"{"version": 3, "id": "tiny", "name": "Tiny", "stats": {"n_cells": 5, "n_genes": 2}}"#,
    )
    .expect("identity");
    std::fs::write(root.join("data.bin"), DATA).expect("data");
    std::fs::write(root.join(".hidden"), b"dot-file").expect("dot-file");
    std::fs::write(dir.path().join("secret.txt"), b"outside the dataset").expect("secret");
    dir
}

fn service(dir: &Path) -> CellucidService {
    let source: Arc<dyn DatasetSource> =
        Arc::new(ExportSource::open(&dir.join("ds")).expect("open the export folder"));
    let layout = Layout::new(&[source]).expect("layout");
    let bound: SocketAddr = BOUND.parse().expect("address");
    CellucidService::new(ServiceConfig::default(), layout, bound).expect("service")
}

fn get(path: &str) -> http::request::Builder {
    Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(header::HOST, BOUND)
}

async fn call<B>(service: &CellucidService, req: Request<B>) -> (Response<()>, Bytes)
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Ok(response) = service.clone().oneshot(req).await;
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    (Response::from_parts(parts, ()), bytes)
}

async fn status_of(service: &CellucidService, req: Request<Empty<Bytes>>) -> StatusCode {
    call(service, req).await.0.status()
}

#[tokio::test]
async fn documents_and_files_are_answered() {
    let dir = dataset();
    let service = service(dir.path());
    let (response, body) = call(
        &service,
        get("/_cellucid/health").body(Empty::new()).unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let health: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["n_cells"], 5);

    let (response, body) = call(&service, get("/data.bin").body(Empty::new()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(&body[..], DATA);
    assert!(response.headers().contains_key(header::ETAG));

    let (response, body) = call(
        &service,
        get("/tiny/data.bin")
            .header(header::RANGE, "bytes=2-5")
            .body(Empty::new())
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&body[..], &DATA[2..6]);
}

#[tokio::test]
async fn head_has_the_get_headers_and_no_body() {
    let dir = dataset();
    let service = service(dir.path());
    let (response, body) = call(
        &service,
        get("/data.bin")
            .method(Method::HEAD)
            .body(Empty::new())
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(body.is_empty());
    assert_eq!(
        response.headers()[header::CONTENT_LENGTH],
        DATA.len().to_string().as_str()
    );
}

#[tokio::test]
async fn methods_a_route_does_not_answer_are_405_with_allow() {
    let dir = dataset();
    let service = service(dir.path());
    for (method, path, allow) in [
        (Method::POST, "/data.bin", "GET, HEAD, OPTIONS"),
        (Method::DELETE, "/_cellucid/health", "GET, HEAD, OPTIONS"),
        (Method::PUT, "/", "GET, HEAD, OPTIONS"),
        (Method::GET, "/_cellucid/events", "POST, OPTIONS"),
        (Method::DELETE, "/_cellucid/session_bundle", "POST, OPTIONS"),
    ] {
        let req = get(path).method(method.clone()).body(Empty::new()).unwrap();
        let (response, _) = call(&service, req).await;
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(response.headers()[header::ALLOW], allow, "{method} {path}");
    }
}

#[tokio::test]
async fn hostile_paths_are_404_and_never_leave_the_dataset() {
    let dir = dataset();
    let service = service(dir.path());
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/tiny/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/tiny%2fdata.bin",
        "/data.bin%00",
        "/.hidden",
        "/tiny/.hidden",
        "/%ZZ",
        "/a\\..\\secret.txt",
        "/_cellucid/nothing",
    ] {
        let (response, body) = call(&service, get(path).body(Empty::new()).unwrap()).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(!body.windows(7).any(|w| w == b"outside"), "{path} leaked");
    }
}

#[tokio::test]
async fn the_origin_layer_wraps_every_route() {
    let dir = dataset();
    let service = service(dir.path());
    // A foreign Host is refused before routing (DNS rebinding).
    let req = Request::get("/data.bin")
        .header(header::HOST, "evil.example:8765")
        .body(Empty::new())
        .unwrap();
    assert_eq!(
        status_of(&service, req).await,
        StatusCode::MISDIRECTED_REQUEST
    );
    // A preflight from an allowed page is answered by the layer.
    let req = get("/data.bin")
        .method(Method::OPTIONS)
        .header(header::ORIGIN, "http://localhost:3000")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .body(Empty::new())
        .unwrap();
    let (response, _) = call(&service, req).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "http://localhost:3000"
    );
    // Refusals carry the hardening headers too.
    let (response, _) = call(&service, get("/nope.bin").body(Empty::new()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn channel_routes_take_any_body_type() {
    let dir = dataset();
    let service = service(dir.path());
    // An unknown viewer: the body is read and refused with the channel's JSON.
    let req = get("/_cellucid/events")
        .method(Method::POST)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"viewerId":"0123456789abcdef","type":"ready","viewerToken":"x"}"#,
        )))
        .unwrap();
    let (response, body) = call(&service, req).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(json["status"], "error");
    // A plain GET of the WebSocket route is told to upgrade.
    let (response, _) = call(&service, get("/_cellucid/ws").body(Empty::new()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
    // A handshake from a foreign page is refused before any upgrade.
    let req = get("/_cellucid/ws")
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
        .header(header::ORIGIN, "https://evil.example")
        .body(Empty::new())
        .unwrap();
    assert_eq!(status_of(&service, req).await, StatusCode::FORBIDDEN);
}
