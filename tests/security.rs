//! Security end-to-end tests (SECURITY.md): the Host check (DNS-rebinding
//! defence), CORS and the preflight, method refusal, and path safety
//! (traversal, encoded separators, dot-files, symlinks, special files), all
//! against the real `cellucid` binary over loopback sockets.
//!
//! Requests whose exact bytes matter (Host headers, Origins, encoded paths)
//! go over raw sockets so that no client normalises them away.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::*;

const HOST_REFUSED: &str = "Host header does not name this server";
const HEALTH: &str = "/_cellucid/health";
const IDENTITY: &str = "/pbmc68k-f32/dataset_identity.json";
const SECRET: &str = "TOP-SECRET-OUTSIDE-THE-DATASET";

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

/// The 4-dataset export catalog fixture.
fn catalog() -> PathBuf {
    fixture("exports-0.9.4")
}

/// The single `pbmc68k-f32` export folder fixture.
fn single() -> PathBuf {
    fixture("exports-0.9.4/pbmc68k-f32")
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("fixture paths are UTF-8")
}

/// A data-only server for `path` with extra arguments.
fn serve(path: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["--no-web-ui"];
    args.extend_from_slice(extra);
    args.push(path_arg(path));
    Server::start(&args)
}

/// `Host: <the server's own authority>`.
fn host_line(server: &Server) -> String {
    format!("Host: {}", server.host())
}

/// A raw `GET path` naming the server correctly, plus `extra` header lines.
fn get_raw(server: &Server, path: &str, extra: &[&str]) -> Reply {
    let host = host_line(server);
    let mut lines = vec![host.as_str()];
    lines.extend_from_slice(extra);
    raw_get(server.addr, path, &lines)
}

/// A raw request with any method, the given header lines and `Connection: close`.
fn raw_request(server: &Server, method: &str, path: &str, header_lines: &[&str]) -> Reply {
    let mut text = format!("{method} {path} HTTP/1.1\r\n");
    for line in header_lines {
        text.push_str(line);
        text.push_str("\r\n");
    }
    if matches!(method, "POST" | "PUT" | "PATCH") {
        text.push_str("Content-Length: 0\r\n");
    }
    text.push_str("Connection: close\r\n\r\n");
    raw(server.addr, text.as_bytes())
}

/// Whether any `header` value lists `token` (comma-separated, case-insensitive).
fn lists_token(reply: &Reply, header: &str, token: &str) -> bool {
    reply
        .headers_named(header)
        .iter()
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The comma-separated tokens of every `header` value, lower-cased and sorted.
fn token_set(reply: &Reply, header: &str) -> Vec<String> {
    let mut tokens: Vec<String> = reply
        .headers_named(header)
        .iter()
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    tokens.sort();
    tokens
}

fn sorted_lower(tokens: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = tokens.iter().map(|t| t.to_ascii_lowercase()).collect();
    out.sort();
    out
}

/// `Vary: Origin`, `nosniff` and `no-referrer`: on every response.
fn assert_hardened(reply: &Reply, case: &str) {
    assert!(
        lists_token(reply, "vary", "origin"),
        "{case}: no `Vary: Origin` in {:?}",
        reply.headers
    );
    assert_eq!(
        reply.header("x-content-type-options"),
        Some("nosniff"),
        "{case}: X-Content-Type-Options"
    );
    assert_eq!(
        reply.header("referrer-policy"),
        Some("no-referrer"),
        "{case}: Referrer-Policy"
    );
}

/// The 421 answer of the Host check.
fn assert_misdirected(reply: &Reply, case: &str) {
    assert_eq!(
        reply.status,
        421,
        "{case}: status (body {:?})",
        reply.text()
    );
    assert_eq!(reply.text(), HOST_REFUSED, "{case}: body");
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8"),
        "{case}: Content-Type"
    );
}

/// No `Access-Control-Allow-*` header at all.
fn assert_no_cors_grant(reply: &Reply, case: &str) {
    let grants: Vec<_> = reply
        .headers
        .iter()
        .filter(|(k, _)| k.to_ascii_lowercase().starts_with("access-control-allow"))
        .collect();
    assert!(
        grants.is_empty(),
        "{case}: unexpected CORS grant {grants:?}"
    );
}

/// Never a credentials-mode CORS answer.
fn assert_no_credentials(reply: &Reply, case: &str) {
    assert_eq!(
        reply.header("access-control-allow-credentials"),
        None,
        "{case}: Access-Control-Allow-Credentials must never be sent"
    );
}

/// A 404 that leaks nothing: no file contents, no traceback, plain text.
fn assert_not_found(reply: &Reply, case: &str) {
    assert_eq!(
        reply.status,
        404,
        "{case}: status (body {:?})",
        reply.text()
    );
    let body = reply.text();
    for leak in [
        "root:",
        "cellucid_data_version",
        SECRET,
        "panicked",
        "Traceback",
    ] {
        assert!(
            !body.contains(leak),
            "{case}: 404 body leaks {leak:?}: {body:?}"
        );
    }
    assert!(
        reply
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("text/plain")),
        "{case}: 404 Content-Type {:?}",
        reply.header("content-type")
    );
}

/// Runs a command that is expected to exit on its own; kills it after 30 s.
fn run_bounded(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("cellucid starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// `cellucid serve --no-browser --port 0 FLAG VALUE <catalog>` must be a usage
/// error: exit 2 and exactly one stderr line starting `cellucid: error:`.
fn assert_usage_error(flag: &str, value: &str) {
    let case = format!("{flag} {value:?}");
    let mut cmd = cellucid();
    cmd.args(["serve", "--no-browser", "--port", "0", flag, value])
        .arg(catalog());
    let output = run_bounded(cmd);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{case}: exit status; stderr {stderr:?}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{case}: expected one stderr line, got {lines:?}"
    );
    assert!(
        lines[0].starts_with("cellucid: error:"),
        "{case}: stderr line {:?}",
        lines[0]
    );
}

/// A writable temp copy of the `pbmc68k-f32` export at `<tmp>/pbmc68k-f32`.
fn temp_dataset() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dataset = tmp.path().join("pbmc68k-f32");
    copy_tree(&single(), &dataset);
    (tmp, dataset)
}

/// `GET path` on another thread; panics if no answer comes within `limit`.
fn get_within(server: &Server, path: &str, limit: Duration) -> Reply {
    let (tx, rx) = mpsc::channel();
    let addr = server.addr;
    let host = host_line(server);
    let owned = path.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(raw_get(addr, &owned, &[host.as_str()]));
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{path}: no answer within {limit:?} (the server hangs)"))
}

// ---------------------------------------------------------------------------
// 1. Host check
// ---------------------------------------------------------------------------

#[test]
fn host_check_loopback_bind_matches_reference_table() {
    let server = serve(&catalog(), &[]);
    let port = server.addr.port();
    let cases: Vec<(String, u16)> = vec![
        // accepted
        (format!("127.0.0.1:{port}"), 200),
        (format!("localhost:{port}"), 200),
        (format!("LOCALHOST:{port}"), 200),
        (format!("Localhost:{port}"), 200),
        (format!("127.0.0.2:{port}"), 200),
        (format!("[::1]:{port}"), 200),
        // refused
        ("127.0.0.1".to_owned(), 421),
        ("localhost".to_owned(), 421),
        ("[::1]".to_owned(), 421),
        (format!("127.0.0.1:{}", port.wrapping_add(1)), 421),
        (format!("localhost:{}", port.wrapping_sub(1)), 421),
        (format!("evil.com:{port}"), 421),
        ("evil.com".to_owned(), 421),
        (format!("localhost.:{port}"), 421),
        (format!("foo.localhost:{port}"), 421),
        (format!("127.0.0.1:0{port}"), 421),
        (format!("[::ffff:127.0.0.1]:{port}"), 421),
        (format!("2130706433:{port}"), 421),
        (format!("127.1:{port}"), 421),
        (format!("[::1%lo]:{port}"), 421),
        (format!("[::1%25lo]:{port}"), 421),
        (format!("user@127.0.0.1:{port}"), 421),
        (format!("user@localhost:{port}"), 421),
        (format!("0.0.0.0:{port}"), 421),
        (format!("::1:{port}"), 421),
        (format!("localhost:{port}/"), 421),
        (format!("localhost:+{port}"), 421),
        ("localhost:".to_owned(), 421),
        ("127.0.0.1:65536".to_owned(), 421),
        ("127.0.0.1:0".to_owned(), 421),
        (format!("local host:{port}"), 421),
    ];
    for (host, expected) in &cases {
        let case = format!("Host: {host:?}");
        let line = format!("Host: {host}");
        let reply = raw_get(server.addr, HEALTH, &[line.as_str()]);
        if *expected == 421 {
            assert_misdirected(&reply, &case);
            assert_hardened(&reply, &case);
        } else {
            assert_eq!(reply.status, *expected, "{case}: body {:?}", reply.text());
            assert_eq!(reply.json()["status"], "ok", "{case}");
        }
    }

    // Two Host headers, even two that both name the server.
    let own = host_line(&server);
    let evil = format!("Host: evil.com:{port}");
    for (case, lines) in [
        ("two Host headers (same)", [own.as_str(), own.as_str()]),
        (
            "two Host headers (own, evil)",
            [own.as_str(), evil.as_str()],
        ),
        (
            "two Host headers (evil, own)",
            [evil.as_str(), own.as_str()],
        ),
    ] {
        assert_misdirected(&raw_get(server.addr, HEALTH, &lines), case);
    }

    // HTTP/1.0 without Host is refused; with the right Host it is served.
    let reply = raw(server.addr, b"GET /_cellucid/health HTTP/1.0\r\n\r\n");
    assert_misdirected(&reply, "HTTP/1.0 without Host");
    let with_host = format!("GET /_cellucid/health HTTP/1.0\r\n{own}\r\n\r\n");
    let reply = raw(server.addr, with_host.as_bytes());
    assert_eq!(reply.status, 200, "HTTP/1.0 with the right Host");

    // HTTP/1.1 without Host is malformed (RFC 9112: 400) or refused (421); never served.
    let reply = raw(
        server.addr,
        b"GET /_cellucid/health HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert!(
        matches!(reply.status, 400 | 421),
        "HTTP/1.1 without Host: status {} body {:?}",
        reply.status,
        reply.text()
    );
}

#[test]
fn host_check_421_guards_every_route_and_leaks_nothing() {
    let server = serve(&catalog(), &[]);
    let port = server.addr.port();
    let evil = format!("Host: evil.com:{port}");
    for path in [
        HEALTH,
        IDENTITY,
        "/datasets.json",
        "/_cellucid/datasets",
        "/_cellucid/info",
        "/no-such-file",
        "/../../etc/passwd",
    ] {
        let case = format!("GET {path} with {evil:?}");
        let reply = raw_get(server.addr, path, &[evil.as_str()]);
        assert_misdirected(&reply, &case);
        assert_hardened(&reply, &case);
    }
    // An allowed Origin does not lift the Host check.
    let reply = raw_get(
        server.addr,
        IDENTITY,
        &[evil.as_str(), "Origin: http://localhost:3000"],
    );
    assert_misdirected(&reply, "foreign Host with an allowed Origin");
    assert_hardened(&reply, "foreign Host with an allowed Origin");
    // Other methods meet the Host check too.
    for method in ["HEAD", "POST", "PUT", "DELETE"] {
        let case = format!("{method} {IDENTITY} with {evil:?}");
        let reply = raw_request(&server, method, IDENTITY, &[evil.as_str()]);
        assert_eq!(reply.status, 421, "{case}");
        assert_hardened(&reply, &case);
    }
}

#[test]
fn host_check_allowed_hosts_any_port() {
    let server = serve(
        &catalog(),
        &[
            "--allowed-host",
            "hub.example.org",
            "--allowed-host",
            "10.1.2.3",
            "--allowed-host",
            "::1",
        ],
    );
    let port = server.addr.port();
    let cases: Vec<(String, u16)> = vec![
        ("hub.example.org".to_owned(), 200),
        ("HUB.example.org:443".to_owned(), 200),
        ("hub.example.org:1".to_owned(), 200),
        ("hub.example.org:8080".to_owned(), 200),
        ("10.1.2.3:8080".to_owned(), 200),
        ("10.1.2.3".to_owned(), 200),
        ("[::1]:9999".to_owned(), 200),
        (format!("127.0.0.1:{port}"), 200),
        (format!("localhost:{port}"), 200),
        // still refused
        ("127.0.0.1:9999".to_owned(), 421),
        ("localhost:9999".to_owned(), 421),
        ("evil.com".to_owned(), 421),
        ("sub.hub.example.org".to_owned(), 421),
        ("hub.example.org.".to_owned(), 421),
        ("hub.example.org.evil.com".to_owned(), 421),
        ("10.1.2.4:8080".to_owned(), 421),
        ("user@hub.example.org".to_owned(), 421),
        ("hub.example.org:08080".to_owned(), 421),
    ];
    for (host, expected) in &cases {
        let case = format!("allowed hosts, Host: {host:?}");
        let line = format!("Host: {host}");
        let reply = raw_get(server.addr, HEALTH, &[line.as_str()]);
        if *expected == 421 {
            assert_misdirected(&reply, &case);
        } else {
            assert_eq!(reply.status, *expected, "{case}: body {:?}", reply.text());
        }
    }
}

#[test]
fn host_check_ipv6_loopback_bind() {
    let server = match Server::try_start(&["--no-web-ui", "--host", "::1", path_arg(&catalog())]) {
        Ok(server) => server,
        Err(err) => {
            skipped(&format!("no IPv6 loopback here ({err})"));
            return;
        }
    };
    let port = server.addr.port();
    let cases: Vec<(String, u16)> = vec![
        (format!("[::1]:{port}"), 200),
        (format!("localhost:{port}"), 200),
        (format!("127.0.0.1:{port}"), 200),
        ("[::1]".to_owned(), 421),
        (format!("[::1]:{}", port.wrapping_add(1)), 421),
        (format!("evil.com:{port}"), 421),
        (format!("[::1%lo]:{port}"), 421),
    ];
    for (host, expected) in &cases {
        let case = format!("bind ::1, Host: {host:?}");
        let line = format!("Host: {host}");
        let reply = raw_get(server.addr, HEALTH, &[line.as_str()]);
        assert_eq!(reply.status, *expected, "{case}: body {:?}", reply.text());
    }
}

#[test]
fn invalid_allowed_host_is_a_usage_error() {
    for value in ["*.example.org", "http://x", "host:80"] {
        assert_usage_error("--allowed-host", value);
    }
}

// ---------------------------------------------------------------------------
// 2. CORS
// ---------------------------------------------------------------------------

#[test]
fn every_response_carries_vary_origin_and_hardening() {
    let server = serve(&catalog(), &[]);
    let port = server.addr.port();
    let own = host_line(&server);
    let evil_host = format!("Host: evil.com:{port}");
    let cases: Vec<(&str, Reply, u16)> = vec![
        ("GET file", get_raw(&server, IDENTITY, &[]), 200),
        ("GET health", get_raw(&server, HEALTH, &[]), 200),
        ("GET missing", get_raw(&server, "/no-such-file", &[]), 404),
        (
            "GET traversal",
            get_raw(&server, "/../../etc/passwd", &[]),
            404,
        ),
        (
            "GET file, refused Origin",
            get_raw(&server, IDENTITY, &["Origin: https://evil.com"]),
            200,
        ),
        (
            "GET missing, allowed Origin",
            get_raw(&server, "/no-such-file", &["Origin: http://localhost:3000"]),
            404,
        ),
        (
            "HEAD file",
            raw_request(&server, "HEAD", IDENTITY, &[own.as_str()]),
            200,
        ),
        (
            "PUT file",
            raw_request(&server, "PUT", IDENTITY, &[own.as_str()]),
            405,
        ),
        (
            "OPTIONS no Origin",
            raw_request(&server, "OPTIONS", IDENTITY, &[own.as_str()]),
            204,
        ),
        (
            "GET foreign Host",
            raw_get(server.addr, IDENTITY, &[evil_host.as_str()]),
            421,
        ),
        (
            "GET range",
            get_raw(&server, IDENTITY, &["Range: bytes=0-9"]),
            206,
        ),
        (
            "GET unsatisfiable range",
            get_raw(&server, IDENTITY, &["Range: bytes=999999-"]),
            416,
        ),
    ];
    for (case, reply, status) in &cases {
        assert_eq!(reply.status, *status, "{case}: status");
        assert_hardened(reply, case);
        assert_no_credentials(reply, case);
    }
    // Through a real client as well.
    let reply = get(&server.url(IDENTITY));
    assert_eq!(reply.status, 200, "ureq GET file");
    assert_hardened(&reply, "ureq GET file");
    assert_eq!(
        reply.header("access-control-allow-origin"),
        None,
        "ureq GET file, no Origin"
    );
}

#[test]
fn cors_allowed_origins_get_the_canonical_origin() {
    let server = serve(&catalog(), &[]);
    let expected_body = std::fs::read(single().join("dataset_identity.json")).unwrap();
    let cases = [
        ("http://localhost", "http://localhost"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("https://localhost", "https://localhost"),
        ("https://localhost:8443", "https://localhost:8443"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("https://127.0.0.1", "https://127.0.0.1"),
        ("http://[::1]:8765", "http://[::1]:8765"),
        ("https://[::1]", "https://[::1]"),
        ("https://cellucid.com", "https://cellucid.com"), // an Origin header value, never contacted
        ("https://www.cellucid.com", "https://www.cellucid.com"), // an Origin header value, never contacted
        ("https://beta.cellucid.com", "https://beta.cellucid.com"),
        // canonicalisation: scheme/host lower-cased, default port dropped
        ("HTTP://LOCALHOST:1", "http://localhost:1"),
        ("http://localhost:80", "http://localhost"),
        ("https://localhost:443", "https://localhost"),
        ("http://127.0.0.1:80", "http://127.0.0.1"),
        ("https://WWW.Cellucid.COM", "https://www.cellucid.com"), // an Origin header value, never contacted
        ("https://cellucid.com:443", "https://cellucid.com"), // an Origin header value, never contacted
    ];
    for (origin, canonical) in cases {
        let case = format!("Origin {origin:?}");
        let line = format!("Origin: {origin}");
        let reply = get_raw(&server, IDENTITY, &[line.as_str()]);
        assert_eq!(reply.status, 200, "{case}: status");
        assert_eq!(reply.body, expected_body, "{case}: body");
        assert_eq!(
            reply.headers_named("access-control-allow-origin"),
            vec![canonical],
            "{case}: Access-Control-Allow-Origin"
        );
        assert_eq!(
            token_set(&reply, "access-control-expose-headers"),
            sorted_lower(&[
                "Accept-Ranges",
                "Content-Encoding",
                "Content-Length",
                "Content-Range",
                "ETag"
            ]),
            "{case}: Access-Control-Expose-Headers"
        );
        assert_hardened(&reply, &case);
        assert_no_credentials(&reply, &case);
    }
    // The real client agrees.
    let reply = request(
        "GET",
        &server.url(IDENTITY),
        &[("Origin", "http://localhost:5173")],
    );
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("http://localhost:5173"),
        "ureq, Origin http://localhost:5173"
    );
}

#[test]
fn cors_refused_origins_get_no_grant_but_are_served() {
    let server = serve(&catalog(), &[]);
    let expected_body = std::fs::read(single().join("dataset_identity.json")).unwrap();
    let cases = [
        "http://127.0.0.2",
        "http://www.cellucid.com", // an Origin header value, never contacted
        "http://cellucid.com",     // an Origin header value, never contacted
        "https://evil.com",
        "null",
        "file://",
        "http://localhost.evil.com",
        "https://user@localhost",
        "https://user:pw@localhost:3000",
        "https://www.cellucid.com/", // an Origin header value, never contacted
        "https://localhost/",
        "https://localhost:3000/app",
        "https://cellucid.com?x=1", // an Origin header value, never contacted
        "https://cellucid.com#top", // an Origin header value, never contacted
        "https://cellucid.com.evil.com", // an Origin header value, never contacted
        "https://evilcellucid.com",
        "ftp://localhost",
        "localhost:3000",
        "http://localhost:3000, https://evil.com",
    ];
    for origin in cases {
        let case = format!("refused Origin {origin:?}");
        let line = format!("Origin: {origin}");
        let reply = get_raw(&server, IDENTITY, &[line.as_str()]);
        assert_eq!(reply.status, 200, "{case}: still served");
        assert_eq!(reply.body, expected_body, "{case}: body");
        assert_no_cors_grant(&reply, &case);
        assert_hardened(&reply, &case);
    }
}

#[test]
fn cors_allowed_origin_flag_adds_exactly_that_origin() {
    let server = serve(
        &catalog(),
        &["--allowed-origin", "https://notebook.example.org"],
    );
    let cases: [(&str, Option<&str>); 9] = [
        (
            "https://notebook.example.org",
            Some("https://notebook.example.org"),
        ),
        (
            "https://NOTEBOOK.example.org",
            Some("https://notebook.example.org"),
        ),
        (
            "https://notebook.example.org:443",
            Some("https://notebook.example.org"),
        ),
        ("http://notebook.example.org", None),
        ("https://notebook.example.org:8443", None),
        ("https://other.example.org", None),
        ("https://sub.notebook.example.org", None),
        ("https://notebook.example.org/", None),
        // the built-in list still applies
        ("http://localhost:3000", Some("http://localhost:3000")),
    ];
    for (origin, expected) in cases {
        let case = format!("--allowed-origin https://notebook.example.org, Origin {origin:?}");
        let line = format!("Origin: {origin}");
        let reply = get_raw(&server, IDENTITY, &[line.as_str()]);
        assert_eq!(reply.status, 200, "{case}: status");
        match expected {
            Some(canonical) => assert_eq!(
                reply.header("access-control-allow-origin"),
                Some(canonical),
                "{case}"
            ),
            None => assert_no_cors_grant(&reply, &case),
        }
        assert_no_credentials(&reply, &case);
    }
}

#[test]
fn invalid_allowed_origin_is_a_usage_error() {
    assert_usage_error("--allowed-origin", "https://x.org/");
}

// ---------------------------------------------------------------------------
// 3. Preflight
// ---------------------------------------------------------------------------

#[test]
fn preflight_from_allowed_origin() {
    let server = serve(&catalog(), &[]);
    let own = host_line(&server);
    for path in [IDENTITY, HEALTH, "/no-such-file", "/_cellucid/events", "/"] {
        for private_network in [false, true] {
            let case = format!("OPTIONS {path} (private network asked: {private_network})");
            let mut lines = vec![
                own.as_str(),
                "Origin: http://localhost:3000",
                "Access-Control-Request-Method: GET",
                "Access-Control-Request-Headers: range",
            ];
            if private_network {
                lines.push("Access-Control-Request-Private-Network: true");
            }
            let reply = raw_request(&server, "OPTIONS", path, &lines);
            assert_eq!(reply.status, 204, "{case}: status");
            assert!(reply.body.is_empty(), "{case}: body {:?}", reply.text());
            assert_eq!(
                reply.header("access-control-allow-origin"),
                Some("http://localhost:3000"),
                "{case}: ACAO"
            );
            assert_eq!(
                token_set(&reply, "access-control-allow-methods"),
                sorted_lower(&["GET", "HEAD", "POST", "OPTIONS"]),
                "{case}: Allow-Methods"
            );
            assert_eq!(
                token_set(&reply, "access-control-allow-headers"),
                sorted_lower(&[
                    "Content-Type",
                    "Range",
                    "X-Cellucid-Viewer-Token",
                    "Authorization"
                ]),
                "{case}: Allow-Headers"
            );
            let max_age = reply
                .header("access-control-max-age")
                .unwrap_or_else(|| panic!("{case}: no Access-Control-Max-Age"));
            assert!(
                max_age.parse::<u32>().is_ok_and(|s| s > 0),
                "{case}: Max-Age {max_age:?}"
            );
            let pna = reply.header("access-control-allow-private-network");
            if private_network {
                assert_eq!(pna, Some("true"), "{case}: Allow-Private-Network");
            } else {
                assert_eq!(pna, None, "{case}: Allow-Private-Network not asked for");
            }
            assert_hardened(&reply, &case);
            assert_no_credentials(&reply, &case);
        }
    }
    // Another allowed origin, canonicalised.
    let reply = raw_request(
        &server,
        "OPTIONS",
        IDENTITY,
        &[own.as_str(), "Origin: HTTPS://WWW.cellucid.com:443"],
    );
    assert_eq!(reply.status, 204, "OPTIONS from https://www.cellucid.com"); // an Origin header value, never contacted
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://www.cellucid.com"), // an Origin header value, never contacted
        "OPTIONS from HTTPS://WWW.cellucid.com:443"
    );
}

#[test]
fn preflight_from_refused_or_missing_origin_grants_nothing() {
    let server = serve(&catalog(), &[]);
    let own = host_line(&server);
    for origin in [
        Some("https://evil.com"),
        Some("null"),
        Some("http://www.cellucid.com"), // an Origin header value, never contacted
        Some("https://user@localhost"),
        Some("http://127.0.0.2"),
        None,
    ] {
        for path in [IDENTITY, HEALTH] {
            let case = format!("OPTIONS {path} from {origin:?}");
            let origin_line = origin.map(|o| format!("Origin: {o}"));
            let mut lines = vec![
                own.as_str(),
                "Access-Control-Request-Method: GET",
                "Access-Control-Request-Private-Network: true",
            ];
            if let Some(line) = &origin_line {
                lines.push(line.as_str());
            }
            let reply = raw_request(&server, "OPTIONS", path, &lines);
            assert_eq!(reply.status, 204, "{case}: status");
            assert!(reply.body.is_empty(), "{case}: body {:?}", reply.text());
            assert_no_cors_grant(&reply, &case);
            assert_hardened(&reply, &case);
        }
    }
}

#[test]
fn preflight_with_foreign_host_is_misdirected() {
    let server = serve(&catalog(), &[]);
    let port = server.addr.port();
    for host in [format!("evil.com:{port}"), "127.0.0.1".to_owned()] {
        let case = format!("OPTIONS with Host {host:?}");
        let line = format!("Host: {host}");
        let reply = raw_request(
            &server,
            "OPTIONS",
            IDENTITY,
            &[
                line.as_str(),
                "Origin: http://localhost:3000",
                "Access-Control-Request-Method: GET",
                "Access-Control-Request-Private-Network: true",
            ],
        );
        assert_misdirected(&reply, &case);
        // A non-2xx answer fails the preflight anyway; it must not carry the
        // preflight grants. (ACAO on the 421 itself only lets an allowed page
        // read the error, which is harmless.)
        for grant in [
            "access-control-allow-methods",
            "access-control-allow-headers",
            "access-control-allow-private-network",
            "access-control-max-age",
        ] {
            assert_eq!(reply.header(grant), None, "{case}: {grant} on a 421");
        }
        assert_no_credentials(&reply, &case);
        assert_hardened(&reply, &case);
    }
}

// ---------------------------------------------------------------------------
// 4. Methods
// ---------------------------------------------------------------------------

#[test]
fn unsupported_methods_on_data_paths_are_405_with_allow() {
    let server = serve(&catalog(), &[]);
    let own = host_line(&server);
    for path in [
        IDENTITY,
        "/pbmc68k-f32/obs_manifest.json",
        "/datasets.json",
        HEALTH,
    ] {
        for method in ["PUT", "DELETE", "PATCH", "POST", "TRACE"] {
            let case = format!("{method} {path}");
            let reply = raw_request(&server, method, path, &[own.as_str()]);
            assert_eq!(
                reply.status,
                405,
                "{case}: status (body {:?})",
                reply.text()
            );
            assert!(
                lists_token(&reply, "allow", "GET"),
                "{case}: Allow {:?}",
                reply.header("allow")
            );
            assert!(
                lists_token(&reply, "allow", "HEAD"),
                "{case}: Allow {:?}",
                reply.header("allow")
            );
            for forbidden in ["PUT", "DELETE", "PATCH", "TRACE"] {
                assert!(
                    !lists_token(&reply, "allow", forbidden),
                    "{case}: Allow lists {forbidden}: {:?}",
                    reply.header("allow")
                );
            }
            assert!(
                !reply.text().contains("cellucid_data_version"),
                "{case}: 405 body leaks the file"
            );
            assert_hardened(&reply, &case);
        }
    }
    // The files are untouched and still served.
    let reply = get_raw(&server, IDENTITY, &[]);
    assert_eq!(reply.status, 200, "GET after refused writes");
    assert_eq!(
        reply.body,
        std::fs::read(single().join("dataset_identity.json")).unwrap(),
        "GET after refused writes: body"
    );
}

// ---------------------------------------------------------------------------
// 5. Path safety
// ---------------------------------------------------------------------------

/// Malformed or escaping paths on the catalog; each must be a leak-free 404.
const CATALOG_BAD_PATHS: &[&str] = &[
    // traversal
    "/../../etc/passwd",
    "/../../../../../../etc/passwd",
    "/pbmc68k-f32/../pbmc68k-q8-gz/dataset_identity.json",
    "/pbmc68k-f32/../../exports-0.9.4/datasets.json",
    "/pbmc68k-f32/obs/../../pbmc68k-f32/dataset_identity.json",
    "/datasets.json/../pbmc68k-f32/dataset_identity.json",
    "/_cellucid/anndata/../../etc/passwd",
    "/_cellucid/../pbmc68k-f32/dataset_identity.json",
    // percent-encoded dots
    "/%2e%2e/%2e%2e/etc/passwd",
    "/%2E%2E/%2E%2E/etc/passwd",
    "/pbmc68k-f32/%2e%2e/pbmc68k-q8-gz/dataset_identity.json",
    "/pbmc68k-f32/.%2e/pbmc68k-q8-gz/dataset_identity.json",
    "/pbmc68k-f32/%2e./pbmc68k-q8-gz/dataset_identity.json",
    "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    // percent-encoded separators
    "/pbmc68k-f32%2fdataset_identity.json",
    "/pbmc68k-f32%2Fdataset_identity.json",
    "/pbmc68k-f32/obs%2f0.codes.u8",
    "/pbmc68k-f32/..%2f..%2fetc%2fpasswd",
    "/%2Fetc%2Fpasswd",
    "/%2fetc/passwd",
    "//etc/passwd",
    "///etc/passwd",
    // NUL
    "/pbmc68k-f32/dataset_identity.json%00",
    "/pbmc68k-f32/dataset_identity.json%00.png",
    "/pbmc68k-f32%00/dataset_identity.json",
    "/%00",
    // backslashes, encoded and raw
    "/pbmc68k-f32%5cdataset_identity.json",
    "/pbmc68k-f32%5Cdataset_identity.json",
    "/pbmc68k-f32/..%5c..%5cetc%5cpasswd",
    "/pbmc68k-f32\\dataset_identity.json",
    "/pbmc68k-f32\\..\\pbmc68k-q8-gz\\dataset_identity.json",
    // bad percent escapes, invalid UTF-8
    "/%zz",
    "/%",
    "/%2",
    "/pbmc68k-f32/%zz",
    "/pbmc68k-f32/dataset_identity.json%",
    "/pbmc68k-f32/dataset_identity.json%g0",
    "/%ff%fe",
    "/pbmc68k-f32/%c0%ae%c0%ae/datasets.json",
    // Windows device names
    "/pbmc68k-f32/CON",
    "/pbmc68k-f32/con",
    "/pbmc68k-f32/nul.json",
    "/pbmc68k-f32/NUL",
    "/pbmc68k-f32/PRN.txt",
    "/pbmc68k-f32/aux",
    "/pbmc68k-f32/COM1",
    "/pbmc68k-f32/lpt9.bin",
    "/pbmc68k-f32/obs/CON",
    // the catalog's own dot-files and other non-dataset paths
    "/.pbmc68k-f32.cellucid.lock",
    "/%2epbmc68k-f32.cellucid.lock",
    "/pbmc68k-f32/.",
    // directories and files-as-directories
    "/pbmc68k-f32/obs",
    "/pbmc68k-f32/obs/",
    "/pbmc68k-f32/var",
    "/pbmc68k-f32/dataset_identity.json/",
    "/pbmc68k-f32/dataset_identity.json/x",
    // absolute paths and plain misses
    "/etc/passwd",
    "/no-such-dataset/dataset_identity.json",
];

#[test]
fn path_safety_catalog_bad_paths_are_404() {
    let server = serve(&catalog(), &[]);
    let baseline = get_raw(&server, IDENTITY, &[]);
    assert_eq!(baseline.status, 200, "baseline GET {IDENTITY}");
    for path in CATALOG_BAD_PATHS {
        let case = format!("GET {path:?}");
        let reply = get_raw(&server, path, &[]);
        assert_not_found(&reply, &case);
        assert_hardened(&reply, &case);
    }
    // HEAD too, with no body.
    for path in [
        "/../../etc/passwd",
        "/pbmc68k-f32%2fdataset_identity.json",
        "/pbmc68k-f32/CON",
    ] {
        let case = format!("HEAD {path:?}");
        let reply = raw_request(&server, "HEAD", path, &[host_line(&server).as_str()]);
        assert_eq!(reply.status, 404, "{case}");
    }
    // The server survived all of it.
    let reply = get_raw(&server, HEALTH, &[]);
    assert_eq!(reply.status, 200, "health after the bad paths");
}

#[test]
fn path_safety_single_dataset_at_root_cannot_reach_the_parent_catalog() {
    let server = serve(&single(), &[]);
    let baseline = get_raw(&server, "/dataset_identity.json", &[]);
    assert_eq!(baseline.status, 200, "baseline GET /dataset_identity.json");
    for path in [
        "/../datasets.json",
        "/../SHA256SUMS",
        "/../../etc/passwd",
        "/%2e%2e/datasets.json",
        "/%2e%2e%2fdatasets.json",
        "/..%2fdatasets.json",
        "/..%2FSHA256SUMS",
        "/..%5cdatasets.json",
        "/..\\datasets.json",
        "/obs/../../datasets.json",
        "/obs/%2e%2e/%2e%2e/datasets.json",
        "/../pbmc68k-q8-gz/dataset_identity.json",
        "/%2e%2e/pbmc68k-q8-gz/dataset_identity.json",
        "/../.pbmc68k-f32.cellucid.lock",
        "/obs",
        "/obs/",
        "/CON",
        "/nul.json",
        "/dataset_identity.json%00",
        "/%zz",
        "//etc/passwd",
        "/%2Fetc%2Fpasswd",
    ] {
        assert_not_found(
            &get_raw(&server, path, &[]),
            &format!("single dataset, GET {path:?}"),
        );
    }
}

#[test]
fn path_safety_dot_files_are_404() {
    let (_tmp, dataset) = temp_dataset();
    std::fs::write(dataset.join(".secret"), SECRET).unwrap();
    std::fs::write(dataset.join(".pbmc68k-f32.cellucid.lock"), SECRET).unwrap();
    std::fs::write(dataset.join("obs/.hidden"), SECRET).unwrap();
    std::fs::create_dir(dataset.join(".git")).unwrap();
    std::fs::write(dataset.join(".git/config"), SECRET).unwrap();
    std::fs::write(dataset.join("visible.txt"), "visible").unwrap();

    let server = serve(&dataset, &[]);
    let reply = get_raw(&server, "/visible.txt", &[]);
    assert_eq!(
        reply.status, 200,
        "baseline: a regular non-dot file is served"
    );
    assert_eq!(reply.text(), "visible", "baseline body");
    for path in [
        "/.secret",
        "/%2esecret",
        "/%2Esecret",
        "/.pbmc68k-f32.cellucid.lock",
        "/obs/.hidden",
        "/obs/%2ehidden",
        "/.git/config",
        "/%2egit/config",
        "/.git",
        "/.git/",
    ] {
        assert_not_found(
            &get_raw(&server, path, &[]),
            &format!("dot-file GET {path:?}"),
        );
    }
    let reply = raw_request(&server, "HEAD", "/.secret", &[host_line(&server).as_str()]);
    assert_eq!(reply.status, 404, "dot-file HEAD /.secret");
}

#[test]
fn path_safety_symlinks_inside_are_served_outside_are_404() {
    let (tmp, dataset) = temp_dataset();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), SECRET).unwrap();
    let identity = std::fs::read(dataset.join("dataset_identity.json")).unwrap();

    // leaving the dataset
    symlink("../outside/secret.txt", dataset.join("escape-rel.txt")).unwrap();
    symlink(
        "../../outside/secret.txt",
        dataset.join("obs/escape-rel.txt"),
    )
    .unwrap();
    symlink(outside.join("secret.txt"), dataset.join("escape-abs.txt")).unwrap();
    symlink("/etc/passwd", dataset.join("passwd")).unwrap();
    symlink("../outside", dataset.join("outside-dir")).unwrap();
    symlink(&outside, dataset.join("outside-dir-abs")).unwrap();
    symlink("/etc", dataset.join("etc")).unwrap();
    // absolute links are refused even when they point back inside (cap-std)
    symlink(
        dataset.join("dataset_identity.json"),
        dataset.join("abs-inside.json"),
    )
    .unwrap();
    // broken links
    symlink("no-such-target", dataset.join("dangling.json")).unwrap();
    symlink("loop.json", dataset.join("loop.json")).unwrap();
    // staying inside
    symlink("dataset_identity.json", dataset.join("inside.json")).unwrap();
    symlink(
        "../dataset_identity.json",
        dataset.join("obs/inside-rel.json"),
    )
    .unwrap();
    symlink("obs", dataset.join("obs-link")).unwrap();
    symlink("inside.json", dataset.join("chain.json")).unwrap();

    let server = serve(&dataset, &[]);
    for path in [
        "/escape-rel.txt",
        "/obs/escape-rel.txt",
        "/escape-abs.txt",
        "/passwd",
        "/outside-dir/secret.txt",
        "/outside-dir-abs/secret.txt",
        "/etc/passwd",
        "/etc/hostname",
        "/abs-inside.json",
        "/dangling.json",
        "/loop.json",
        "/outside-dir",
    ] {
        assert_not_found(
            &get_raw(&server, path, &[]),
            &format!("symlink GET {path:?}"),
        );
    }
    // `..` is malformed whatever it would resolve to.
    assert_not_found(
        &get_raw(&server, "/obs-link/../dataset_identity.json", &[]),
        "symlink GET \"/obs-link/../dataset_identity.json\"",
    );
    for path in ["/inside.json", "/obs/inside-rel.json", "/chain.json"] {
        let reply = get_raw(&server, path, &[]);
        assert_eq!(
            reply.status,
            200,
            "inside symlink GET {path:?}: {:?}",
            reply.text()
        );
        assert_eq!(reply.body, identity, "inside symlink GET {path:?}: body");
    }
    let expected = std::fs::read(dataset.join("obs/0.codes.u8")).unwrap();
    let reply = get_raw(&server, "/obs-link/0.codes.u8", &[]);
    assert_eq!(
        reply.status, 200,
        "inside folder symlink GET /obs-link/0.codes.u8"
    );
    assert_eq!(reply.body, expected, "inside folder symlink: body");
}

#[test]
fn path_safety_special_files_are_404_without_hanging() {
    let (_tmp, dataset) = temp_dataset();
    for fifo in ["pipe.bin", "obs/pipe.codes.u8"] {
        let status = Command::new("mkfifo")
            .arg(dataset.join(fifo))
            .status()
            .expect("mkfifo runs");
        assert!(status.success(), "mkfifo {fifo}");
    }
    let _socket = std::os::unix::net::UnixListener::bind(dataset.join("sock")).unwrap();

    let server = serve(&dataset, &[]);
    for path in ["/pipe.bin", "/obs/pipe.codes.u8", "/sock"] {
        let case = format!("special file GET {path:?}");
        let started = Instant::now();
        let reply = get_within(&server, path, Duration::from_secs(5));
        assert_not_found(&reply, &case);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{case}: took {:?}",
            started.elapsed()
        );
    }
    // HEAD and a Range request on the FIFO do not hang either.
    let own = host_line(&server);
    let reply = raw_request(&server, "HEAD", "/pipe.bin", &[own.as_str()]);
    assert_eq!(reply.status, 404, "special file HEAD /pipe.bin");
    let reply = get_raw(&server, "/pipe.bin", &["Range: bytes=0-9"]);
    assert_eq!(reply.status, 404, "special file ranged GET /pipe.bin");
    // And the server still answers.
    let reply = get_within(&server, "/dataset_identity.json", Duration::from_secs(5));
    assert_eq!(reply.status, 200, "GET after the FIFO requests");
}

// ---------------------------------------------------------------------------
// 6. The /_cellucid/ namespace
// ---------------------------------------------------------------------------

#[test]
fn cellucid_namespace_matches_exactly_after_decoding() {
    let server = serve(&catalog(), &[]);
    let cases: [(&str, u16); 10] = [
        ("/_cellucid/anything-unknown", 404),
        ("/_cellucid/health/", 404),
        ("/_cellucid/health%2f", 404),
        ("/_cellucid/HEALTH", 404),
        ("/_cellucid", 404),
        ("/_cellucid/", 404),
        ("/_cellucid/health.json", 404),
        ("/_cellucid/%68ealth", 200),
        ("/_cellucid/health?x=1", 200),
        ("/%5fcellucid/health", 200),
    ];
    for (path, expected) in cases {
        let case = format!("GET {path:?}");
        let reply = get_raw(&server, path, &[]);
        if expected == 404 {
            assert_not_found(&reply, &case);
        } else {
            assert_eq!(reply.status, expected, "{case}: body {:?}", reply.text());
            assert_eq!(reply.json()["status"], "ok", "{case}");
        }
        assert_hardened(&reply, &case);
    }
}
