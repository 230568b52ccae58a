//! The 0.9.4 HTTP channel over real sockets: `POST /_cellucid/events`,
//! `/selection` and `/session_bundle`, into the Rust API.

use std::time::Duration;

use cellucid_http::channel::BundleRequestError;
use cellucid_http::{ChannelLimits, ViewerOptions};
use serde_json::json;

use crate::channel_support::*;

const JSON: (&str, &str) = ("Content-Type", "application/json");
const BINARY: (&str, &str) = ("Content-Type", "application/octet-stream");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_reaches_the_api_stream_without_the_token() {
    let server = InProc::start(ChannelLimits::default()).await;
    let viewer = server.viewers.register(ViewerOptions::default()).unwrap();
    assert_eq!(viewer.id().len(), 16);
    assert_eq!(viewer.token().len(), 32);
    assert!(viewer
        .id()
        .bytes()
        .chain(viewer.token().bytes())
        .all(|b| b.is_ascii_hexdigit()));
    let mut events = viewer.events().unwrap();
    assert!(viewer.events().is_none(), "the stream is handed out once");

    // Token in the header.
    let body = json!({"viewerId": viewer.id(), "type": "click", "cell": 7, "button": 0, "shift": false, "ctrl": true});
    let reply = post(
        &server.url("/_cellucid/events"),
        &[JSON, ("X-Cellucid-Viewer-Token", viewer.token())],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!({"status": "ok", "delivered": true}));
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.kind(), "click");
    assert_eq!(event.viewer_id(), viewer.id());
    assert_eq!(event.clone().into_json(), body);

    // Token in the body (the 0.9.4 viewer's way); it never reaches the program.
    let body = json!({"type": "hover", "viewerId": viewer.id(), "viewerToken": viewer.token(), "cell": null, "position": null});
    let reply = post(
        &server.url("/_cellucid/events"),
        &[JSON],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.kind(), "hover");
    assert!(!event.fields().contains_key("viewerToken"));
    assert!(!event.to_json_line().contains(viewer.token()));

    // Chunked bodies work too.
    let reply = post_chunked(
        server.addr,
        "/_cellucid/events",
        &[
            "Content-Type: application/json",
            &format!("X-Cellucid-Viewer-Token: {}", viewer.token()),
        ],
        json!({"viewerId": viewer.id(), "type": "ready", "n_cells": 700, "dimensions": 2})
            .to_string()
            .as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.kind(), "ready");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_get_their_status_and_a_json_body() {
    let server = InProc::start(ChannelLimits::default()).await;
    let viewer = server.viewers.register(ViewerOptions::default()).unwrap();
    let other = server.viewers.register(ViewerOptions::default()).unwrap();
    let url = server.url("/_cellucid/events");
    let ok_body = |id: &str| json!({"viewerId": id, "type": "click"}).to_string();

    let reply = post(
        &url,
        &[
            ("Content-Type", "text/plain"),
            ("X-Cellucid-Viewer-Token", viewer.token()),
        ],
        ok_body(viewer.id()).as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 415);
    assert!(error_message(&reply).contains("application/json"));

    for (body, why) in [
        ("{not json", "valid UTF-8 JSON"),
        ("[1,2]", "JSON object"),
        (r#"{"type":"click"}"#, "viewerId"),
        (&json!({"viewerId": viewer.id()}).to_string(), "type"),
        (
            &json!({"viewerId": viewer.id(), "type": "a b"}).to_string(),
            "type",
        ),
        (
            &json!({"viewerId": viewer.id(), "type": "selection", "cells": [1]}).to_string(),
            "/_cellucid/selection",
        ),
        (
            &json!({"viewerId": viewer.id(), "type": "session_bundle"}).to_string(),
            "/_cellucid/session_bundle",
        ),
    ] {
        let reply = post(
            &url,
            &[JSON, ("X-Cellucid-Viewer-Token", viewer.token())],
            body.as_bytes(),
        )
        .await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        assert!(
            error_message(&reply).contains(why),
            "{body}: {}",
            reply.text()
        );
    }

    // Unknown viewer, wrong token, another viewer's token, no token: one answer.
    let unknown = post(
        &url,
        &[JSON, ("X-Cellucid-Viewer-Token", viewer.token())],
        ok_body("0123456789abcdef").as_bytes(),
    )
    .await;
    let wrong = post(
        &url,
        &[JSON, ("X-Cellucid-Viewer-Token", "0".repeat(32).as_str())],
        ok_body(viewer.id()).as_bytes(),
    )
    .await;
    let crossed = post(
        &url,
        &[JSON, ("X-Cellucid-Viewer-Token", other.token())],
        ok_body(viewer.id()).as_bytes(),
    )
    .await;
    let missing = post(&url, &[JSON], ok_body(viewer.id()).as_bytes()).await;
    for reply in [&unknown, &wrong, &crossed, &missing] {
        assert_eq!(reply.status, 403, "{}", reply.text());
        assert_eq!(reply.body, unknown.body);
    }

    // Over 1 MiB: declared, and counted as a chunked body arrives.
    let mut big = ok_body(viewer.id()).into_bytes();
    big.pop();
    big.extend_from_slice(format!(",\"pad\":\"{}\"}}", "x".repeat(1024 * 1024)).as_bytes());
    let reply = post(
        &url,
        &[JSON, ("X-Cellucid-Viewer-Token", viewer.token())],
        &big,
    )
    .await;
    assert_eq!(reply.status, 413);
    assert!(error_message(&reply).contains("1048576"));
    let reply = post_chunked(
        server.addr,
        "/_cellucid/events",
        &["Content-Type: application/json"],
        &big,
    )
    .await;
    assert_eq!(reply.status, 413);

    // A body of exactly 1 MiB is accepted.
    let mut exact = ok_body(viewer.id()).into_bytes();
    exact.resize(1024 * 1024, b' ');
    let mut events = viewer.events().unwrap();
    let reply = post(
        &url,
        &[JSON, ("X-Cellucid-Viewer-Token", viewer.token())],
        &exact,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(events.recv().await.unwrap().kind(), "click");

    // Other methods.
    let reply = crate::support::get(&url);
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("POST, OPTIONS"));
    server.stop().await;
}

fn cells(indices: &[u32]) -> Vec<u8> {
    indices.iter().flat_map(|c| c.to_le_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selections_are_checked_and_delivered() {
    let mut limits = ChannelLimits::default();
    limits.max_selection_bytes = 4096;
    let server = InProc::start(limits).await;
    let mut options = ViewerOptions::default();
    options.n_cells = Some(700);
    let viewer = server.viewers.register(options).unwrap();
    let mut events = viewer.events().unwrap();
    let url = |query: &str| server.url(&format!("/_cellucid/selection?{query}"));
    let auth = ("X-Cellucid-Viewer-Token", viewer.token());
    let query = format!("viewerId={}&source=lasso", viewer.id());

    let reply = post(&url(&query), &[BINARY, auth], &cells(&[1, 2, 9, 699])).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!({"status": "ok", "delivered": true}));
    let event = events.recv().await.unwrap();
    assert_eq!(
        event.into_json(),
        json!({"viewerId": viewer.id(), "type": "selection", "source": "lasso", "cells": [1, 2, 9, 699]})
    );
    // The token may travel in the query (0.9.4).
    let with_token = format!("{query}&viewerToken={}", viewer.token());
    let reply = post(&url(&with_token), &[BINARY], &cells(&[3])).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(events.recv().await.unwrap().fields()["cells"], json!([3]));

    let bad: &[(&[u8], &str)] = &[
        (&[1, 0, 0, 0, 2], "not 5 bytes"),
        (&[], "not 0 bytes"),
        (&cells(&[5, 4]), "strictly ascending"),
        (&cells(&[5, 5]), "strictly ascending"),
        (&cells(&[1, 700]), "out of range"),
    ];
    for (body, why) in bad {
        let reply = post(&url(&query), &[BINARY, auth], body).await;
        assert_eq!(reply.status, 400, "{why}: {}", reply.text());
        assert!(error_message(&reply).contains(why), "{}", reply.text());
    }
    for bad_query in [
        "source=lasso",
        &format!("viewerId={}", viewer.id()),
        &format!("{query}&x=1"),
        &format!("{query}&source=b"),
        &format!("viewerId={}&source=a+b", viewer.id()),
    ] {
        let reply = post(&url(bad_query), &[BINARY, auth], &cells(&[1])).await;
        assert_eq!(reply.status, 400, "{bad_query}: {}", reply.text());
    }
    let reply = post(
        &url(&query),
        &[BINARY, ("X-Cellucid-Viewer-Token", "f".repeat(32).as_str())],
        &cells(&[1]),
    )
    .await;
    assert_eq!(reply.status, 403);
    let reply = post(&url(&query), &[JSON, auth], &cells(&[1])).await;
    assert_eq!(reply.status, 415);
    let reply = post(
        &url(&query),
        &[BINARY, auth],
        &cells(&(0..1025).collect::<Vec<_>>()),
    )
    .await;
    assert_eq!(reply.status, 413);
    server.stop().await;
}

async fn upload(
    server: &InProc,
    id: &str,
    token: &str,
    request_id: &str,
    body: &[u8],
) -> crate::support::Reply {
    let url = server.url(&format!(
        "/_cellucid/session_bundle?viewerId={id}&requestId={request_id}"
    ));
    post(&url, &[BINARY, ("X-Cellucid-Viewer-Token", token)], body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_and_v2_bundles_reach_the_api_as_private_validated_files() {
    let server = InProc::start(ChannelLimits::default()).await;
    let viewer = server.viewers.register(ViewerOptions::default()).unwrap();
    for version in [1u8, 2] {
        let bytes = valid_bundle(version);
        let request = viewer
            .begin_session_bundle(Duration::from_secs(60))
            .unwrap();
        let request_id = request.request_id().to_owned();
        let waiter = tokio::spawn(request.wait());
        let reply = upload(&server, viewer.id(), viewer.token(), &request_id, &bytes).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json(), json!({"status": "ok", "bytes": bytes.len()}));
        let bundle = waiter.await.unwrap().unwrap();
        assert_eq!(bundle.version().number(), version);
        assert_eq!(bundle.len(), bytes.len() as u64);
        assert_eq!(bundle.summary().chunks.len(), 3);
        assert_eq!(std::fs::read(bundle.path()).unwrap(), bytes);
        let name = bundle
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(name.starts_with("cellucid-session-"), "{name}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(bundle.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // The request is consumed by the first success.
        let again = upload(&server, viewer.id(), viewer.token(), &request_id, &bytes).await;
        assert_eq!(again.status, 404, "{}", again.text());
        let path = bundle.path().to_owned();
        drop(bundle);
        assert!(!path.exists(), "a dropped bundle is deleted");
    }
    // persist() moves it where the program wants it.
    let request = viewer
        .begin_session_bundle(Duration::from_secs(60))
        .unwrap();
    let request_id = request.request_id().to_owned();
    let waiter = tokio::spawn(request.wait());
    let bytes = valid_bundle(2);
    assert_eq!(
        upload(&server, viewer.id(), viewer.token(), &request_id, &bytes)
            .await
            .status,
        200
    );
    let keep = tempfile::tempdir().unwrap();
    let dest = keep.path().join("saved.cellucid-session");
    waiter.await.unwrap().unwrap().persist(&dest).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    assert!(
        server.leftover_files().is_empty(),
        "{:?}",
        server.leftover_files()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bundles_are_refused_leave_no_file_and_may_be_retried() {
    let mut limits = ChannelLimits::default();
    limits.max_bundle_bytes = 64 * 1024;
    let server = InProc::start(limits).await;
    let viewer = server.viewers.register(ViewerOptions::default()).unwrap();
    let request = viewer
        .begin_session_bundle(Duration::from_secs(60))
        .unwrap();
    let request_id = request.request_id().to_owned();
    let good = valid_bundle(2);

    let mut trailing = good.clone();
    trailing.push(0);
    let mut wrong_magic = good.clone();
    wrong_magic[0] = b'X';
    let mut bad_manifest = valid_bundle(2);
    // v1 magic in front of a v2 manifest: the manifest keys are wrong.
    bad_manifest.splice(0..19, b"CELLUCID_SESSION\n".iter().copied());
    let bomb_payload = vec![0u8; 4 * 1024 * 1024];
    let mut bomb_chunk = Chunk::binary("bomb", bomb_payload.clone(), true);
    bomb_chunk.declared = Some(100);
    let bomb = bundle(2, &[bomb_chunk]);
    assert!(
        bomb.len() < 64 * 1024,
        "the bomb itself is small: {}",
        bomb.len()
    );
    let mut big_claim = Chunk::binary("bomb", bomb_payload, true);
    big_claim.declared = Some(4 * 1024 * 1024);
    let over_inflation_cap = bundle(2, &[big_claim]);
    let mut truncated_gzip_chunk = Chunk::binary(
        "cut",
        (0..5000u32).flat_map(|i| i.to_le_bytes()).collect(),
        true,
    );
    truncated_gzip_chunk.declared = None;
    let mut cut_gzip = bundle(2, &[truncated_gzip_chunk]);
    // Keep the frame lengths but corrupt the gzip stream's end.
    let n = cut_gzip.len();
    cut_gzip[n - 6] ^= 0xff;
    let wrong_size = bundle(
        2,
        &[{
            let mut c = Chunk::json("core/state", &json!({"a": 1}));
            c.declared = Some(3);
            c
        }],
    );

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "truncated",
            good[..good.len() - 10].to_vec(),
            400,
            "exceeds the bundle size",
        ),
        (
            "truncated in the magic",
            good[..10].to_vec(),
            400,
            "truncated",
        ),
        ("empty", Vec::new(), 400, "truncated"),
        (
            "wrong magic",
            wrong_magic,
            400,
            "not a Cellucid session bundle",
        ),
        ("trailing bytes", trailing, 400, "trailing bytes"),
        (
            "bad manifest",
            bad_manifest,
            400,
            "unknown source, requires",
        ),
        (
            "gzip bomb",
            bomb,
            400,
            "decodes to more than its declared 100 bytes",
        ),
        (
            "inflation over the cap",
            over_inflation_cap,
            400,
            "at most 65536",
        ),
        ("corrupt gzip", cut_gzip, 400, "'cut'"),
        ("wrong decoded size", wrong_size, 400, "declared 3 bytes"),
        (
            "over the cap",
            [good.clone(), vec![0; 64 * 1024]].concat(),
            413,
            "65536-byte limit",
        ),
    ];
    for (what, body, status, why) in &cases {
        let reply = upload(&server, viewer.id(), viewer.token(), &request_id, body).await;
        assert_eq!(reply.status, *status, "{what}: {}", reply.text());
        let message = error_message(&reply);
        assert!(message.contains(why), "{what}: {message}");
        if *status == 400 {
            assert!(
                message.starts_with("Invalid session bundle"),
                "{what}: {message}"
            );
        }
        assert!(
            server.leftover_files().is_empty(),
            "{what} left {:?}",
            server.leftover_files()
        );
    }
    // Over the cap while a chunked body arrives (no Content-Length to refuse early).
    let reply = post_chunked(
        server.addr,
        &format!(
            "/_cellucid/session_bundle?viewerId={}&requestId={request_id}",
            viewer.id()
        ),
        &[
            "Content-Type: application/octet-stream",
            &format!("X-Cellucid-Viewer-Token: {}", viewer.token()),
        ],
        &[good.clone(), vec![0; 64 * 1024]].concat(),
    )
    .await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert!(server.leftover_files().is_empty());

    // Wrong token, wrong type, unknown request.
    let reply = upload(&server, viewer.id(), &"0".repeat(32), &request_id, &good).await;
    assert_eq!(reply.status, 403);
    let url = server.url(&format!(
        "/_cellucid/session_bundle?viewerId={}&requestId={request_id}",
        viewer.id()
    ));
    let reply = post(
        &url,
        &[JSON, ("X-Cellucid-Viewer-Token", viewer.token())],
        &good,
    )
    .await;
    assert_eq!(reply.status, 415);
    let reply = upload(
        &server,
        viewer.id(),
        viewer.token(),
        "no-such-request",
        &good,
    )
    .await;
    assert_eq!(reply.status, 404);
    assert!(error_message(&reply).contains("No pending session bundle request"));

    // After all these failures the request still succeeds (retry until the TTL).
    let waiter = tokio::spawn(request.wait());
    let reply = upload(&server, viewer.id(), viewer.token(), &request_id, &good).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let bundle = waiter.await.unwrap().unwrap();
    drop(bundle);
    assert!(server.leftover_files().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_or_cancelled_request_is_404() {
    let server = InProc::start(ChannelLimits::default()).await;
    let viewer = server.viewers.register(ViewerOptions::default()).unwrap();
    let request = viewer
        .begin_session_bundle(Duration::from_millis(300))
        .unwrap();
    let request_id = request.request_id().to_owned();
    let waited = request.wait().await;
    assert!(
        matches!(waited, Err(BundleRequestError::Timeout(_))),
        "{waited:?}"
    );
    let reply = upload(
        &server,
        viewer.id(),
        viewer.token(),
        &request_id,
        &valid_bundle(2),
    )
    .await;
    assert_eq!(reply.status, 404, "{}", reply.text());

    // Dropping the request cancels it.
    let request = viewer
        .begin_session_bundle(Duration::from_secs(60))
        .unwrap();
    let request_id = request.request_id().to_owned();
    drop(request);
    let reply = upload(
        &server,
        viewer.id(),
        viewer.token(),
        &request_id,
        &valid_bundle(1),
    )
    .await;
    assert_eq!(reply.status, 404);
    assert!(server.leftover_files().is_empty());

    // Unregistering the viewer ends a waiting request.
    let request = viewer
        .begin_session_bundle(Duration::from_secs(60))
        .unwrap();
    let waiter = tokio::spawn(request.wait());
    drop(viewer);
    let waited = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(waited, Err(BundleRequestError::ViewerGone)),
        "{waited:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_in_flight_at_shutdown_leaves_no_file() {
    use tokio::io::AsyncWriteExt;
    let server = InProc::start_with(ChannelLimits::default(), Duration::from_millis(300)).await;
    let viewer = server.viewers.register(ViewerOptions::default()).unwrap();
    let request = viewer
        .begin_session_bundle(Duration::from_secs(60))
        .unwrap();
    let bytes = valid_bundle(2);
    let head = format!(
        "POST /_cellucid/session_bundle?viewerId={}&requestId={} HTTP/1.1\r\nHost: {}\r\n\
         Content-Type: application/octet-stream\r\nX-Cellucid-Viewer-Token: {}\r\n\
         Content-Length: {}\r\n\r\n",
        viewer.id(),
        request.request_id(),
        server.addr,
        viewer.token(),
        bytes.len()
    );
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&bytes[..100]).await.unwrap();
    // The upload is on disk, unfinished…
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.leftover_files().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the upload never reached the disk"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // …and the server stops: the partial file goes with it.
    let dir = server.stop().await;
    assert!(
        files_in(dir.path()).is_empty(),
        "{:?}",
        files_in(dir.path())
    );
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut limits = ChannelLimits::default();
    limits.body_timeout = Duration::from_millis(300);
    let server = InProc::start(limits).await;
    let viewer = server.viewers.register(ViewerOptions::default()).unwrap();
    let request = viewer
        .begin_session_bundle(Duration::from_secs(60))
        .unwrap();
    for target in [
        "/_cellucid/events".to_owned(),
        format!(
            "/_cellucid/session_bundle?viewerId={}&requestId={}",
            viewer.id(),
            request.request_id()
        ),
    ] {
        let content_type = if target.contains("events") {
            "application/json"
        } else {
            "application/octet-stream"
        };
        let head = format!(
            "POST {target} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\n\
             X-Cellucid-Viewer-Token: {}\r\nContent-Length: 1000\r\n\r\nCELLUCID_SESSION/2\n",
            server.addr,
            viewer.token()
        );
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut reply = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply))
            .await
            .expect("an answer, not a hang")
            .unwrap();
        let reply = crate::support::parse_reply(&reply).unwrap();
        assert_eq!(reply.status, 408, "{target}: {}", reply.text());
        assert!(error_message(&reply).contains("did not arrive in time"));
    }
    assert!(server.leftover_files().is_empty());
    server.stop().await;
}
