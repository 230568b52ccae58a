//! The access token (SECURITY.md): required on non-loopback binds by
//! default, tested through loopback only; Bearer header, the `?token=` →
//! cookie exchange, the content-free health answer, `--no-auth`, `--auth`,
//! `--token-file` and `CELLUCID_TOKEN`, and tokens kept out of the logs.

use std::io::Write as _;

use crate::support::{get, raw_get, request, Server};

/// The demo catalog: its dataset ids must never appear in a 401.
fn serve(extra: &[&str]) -> Server {
    let mut args = vec!["--no-web-ui"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn token_of(server: &Server) -> String {
    server
        .token
        .clone()
        .unwrap_or_else(|| panic!("no token in the URL; stderr: {:?}", server.stderr()))
}

#[test]
fn a_wildcard_bind_requires_the_token_and_says_nothing_without_it() {
    let server = serve(&["--host", "0.0.0.0"]);
    let token = token_of(&server);
    assert!(token.len() >= 40, "{token}");
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    for path in [
        "/_cellucid/datasets",
        "/_cellucid/info",
        "/datasets.json",
        "/synthetic-cell-types-2d/dataset_identity.json",
        "/",
    ] {
        let reply = get(&server.url(path));
        assert_eq!(reply.status, 401, "{path}");
        let body = reply.text();
        assert!(body.contains("Authorization: Bearer"), "{path}: {body}");
        assert!(!body.contains("synthetic"), "{path} leaked: {body}");
        assert!(reply.header("www-authenticate").is_some(), "{path}");
    }
    // Liveness probes work without the secret, and learn nothing else.
    let health = get(&server.url("/_cellucid/health"));
    assert_eq!(health.status, 200);
    assert_eq!(health.text(), r#"{"status":"ok"}"#);
    // A wrong token is refused like none.
    let reply = request(
        "GET",
        &server.url("/_cellucid/datasets"),
        &[("Authorization", "Bearer wrong-token-wrong-token")],
    );
    assert_eq!(reply.status, 401);
}

#[test]
fn the_bearer_header_and_the_cookie_flow_get_the_data() {
    let server = serve(&["--host", "0.0.0.0"]);
    let token = token_of(&server);
    let bearer = format!("Bearer {token}");
    let reply = request(
        "GET",
        &server.url("/_cellucid/datasets"),
        &[("Authorization", bearer.as_str())],
    );
    assert_eq!(reply.status, 200);
    assert!(reply.text().contains("synthetic-cell-types-2d"));
    let health = request(
        "GET",
        &server.url("/_cellucid/health"),
        &[("Authorization", bearer.as_str())],
    );
    assert!(
        health.json().get("version").is_some(),
        "full health with the token"
    );

    // The URL a person opens: 303 to the same URL without the token, with
    // an HttpOnly, SameSite=Strict cookie.
    let host = format!("Host: {}", server.host());
    let reply = raw_get(
        server.addr,
        &format!("/?viewer=true&token={token}&x=1"),
        &[&host],
    );
    assert_eq!(reply.status, 303);
    assert_eq!(reply.header("location"), Some("./?viewer=true&x=1"));
    let cookie = reply.header("set-cookie").expect("a cookie").to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap_or_default().to_owned();
    assert!(pair.ends_with(&format!("={token}")), "{cookie}");
    let reply = request(
        "GET",
        &server.url("/_cellucid/datasets"),
        &[("Cookie", pair.as_str())],
    );
    assert_eq!(reply.status, 200);
    // Under a reverse-proxy prefix the same relative redirect still works.
    let reply = raw_get(
        server.addr,
        &format!("/synthetic-cell-types-2d/dataset_identity.json?token={token}"),
        &[&host],
    );
    assert_eq!(reply.status, 303);
    assert_eq!(reply.header("location"), Some("./dataset_identity.json"));
}

#[test]
fn host_checks_and_preflights_come_before_the_token() {
    let server = serve(&["--host", "0.0.0.0"]);
    let reply = raw_get(server.addr, "/_cellucid/datasets", &["Host: evil.example"]);
    assert_eq!(reply.status, 421);
    let reply = request(
        "OPTIONS",
        &server.url("/_cellucid/datasets"),
        &[
            ("Origin", "http://localhost:3000"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "authorization"),
        ],
    );
    assert_eq!(reply.status, 204);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
}

#[test]
fn the_channel_needs_the_token_too() {
    let server = serve(&["--host", "0.0.0.0", "--viewer"]);
    let reply = crate::support::send(
        "POST",
        &server.url("/_cellucid/events"),
        &[("Content-Type", "application/json")],
        br#"{"viewerId":"0","type":"ready"}"#.to_vec(),
    );
    assert_eq!(reply.status, 401);
    let host = format!("Host: {}", server.host());
    let reply = raw_get(
        server.addr,
        "/_cellucid/ws",
        &[
            &host,
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Origin: http://localhost:1",
        ],
    );
    assert_eq!(reply.status, 401);
    // The viewer URLs carry what the browser needs.
    let stderr = server.stderr().join("\n");
    let token = token_of(&server);
    let viewer_line = stderr
        .lines()
        .find(|l| l.starts_with("Viewer    "))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        viewer_line.contains(&format!("&token={token}")),
        "{viewer_line}"
    );
}

#[test]
fn no_auth_restores_the_open_server_and_repeats_the_warning() {
    let server = serve(&["--host", "0.0.0.0", "--no-auth"]);
    assert!(server.token.is_none());
    assert_eq!(get(&server.url("/_cellucid/datasets")).status, 200);
    let stderr = server.stderr().join("\n");
    assert_eq!(
        stderr
            .matches("--no-auth: there is NO access token")
            .count(),
        2,
        "{stderr}"
    );
}

#[test]
fn auth_on_loopback_and_a_token_file_are_honoured() {
    // Loopback is open by default.
    let open = serve(&[]);
    assert!(open.token.is_none());
    assert_eq!(get(&open.url("/_cellucid/datasets")).status, 200);
    drop(open);

    let server = serve(&["--auth"]);
    assert!(server.token.is_some());
    assert_eq!(get(&server.url("/_cellucid/datasets")).status, 401);
    drop(server);

    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "  my-shared-token_0123456789  ").unwrap();
    let server = serve(&["--token-file", file.path().to_str().unwrap()]);
    assert_eq!(server.token.as_deref(), Some("my-shared-token_0123456789"));
    let reply = request(
        "GET",
        &server.url("/_cellucid/datasets"),
        &[("Authorization", "Bearer my-shared-token_0123456789")],
    );
    assert_eq!(reply.status, 200);
    drop(server);

    let server = Server::try_start_with_env(
        &["--no-web-ui", "--host", "0.0.0.0"],
        &[("CELLUCID_TOKEN", "from-the-environment-123")],
    )
    .unwrap();
    assert_eq!(server.token.as_deref(), Some("from-the-environment-123"));
}

#[test]
fn a_bad_token_file_is_one_line_and_exit_2() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "short").unwrap();
    let out = crate::support::cellucid()
        .args([
            "serve",
            "--no-web-ui",
            "--no-browser",
            "--port",
            "0",
            "--token-file",
        ])
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--token-file") && stderr.contains("at least 16"),
        "{stderr}"
    );
}

#[test]
fn tokens_never_reach_the_logs() {
    let server = serve(&["--host", "0.0.0.0", "--verbose", "--viewer"]);
    let token = token_of(&server);
    let host = format!("Host: {}", server.host());
    let _ = raw_get(server.addr, &format!("/?token={token}"), &[&host]);
    let bearer = format!("Authorization: Bearer {token}");
    let _ = raw_get(
        server.addr,
        "/_cellucid/info?viewerToken=abc",
        &[&host, &bearer],
    );
    let _ = raw_get(server.addr, "/nothing?token=wrong-secret-value", &[&host]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let stderr = server.stderr().join("\n");
    // Printed once in the URL to open, once in each viewer URL, never in a log line.
    let lines_with_token: Vec<&str> = stderr.lines().filter(|l| l.contains(&token)).collect();
    assert!(
        lines_with_token
            .iter()
            .all(|l| l.starts_with("Open ") || l.starts_with("Viewer ")),
        "{lines_with_token:?}"
    );
    assert!(!stderr.contains("wrong-secret-value"), "{stderr}");
}
