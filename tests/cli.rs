//! The `cellucid` command: startup, exit codes, signals, messages.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Output, Stdio};
use std::time::Duration;

use crate::support::*;

fn run(args: &[&str]) -> Output {
    cellucid().args(args).stdin(Stdio::null()).output().unwrap()
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts exit code `code` and a single `cellucid: error:` line mentioning `needle`.
fn assert_one_line_error(out: &Output, code: i32, needle: &str) {
    let stderr = stderr_of(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(lines[0].starts_with("cellucid: error: "), "{stderr}");
    assert!(lines[0].contains(needle), "{needle:?} not in {stderr}");
}

#[test]
fn version_and_help() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("cellucid {}", env!("CARGO_PKG_VERSION"))
    );
    let help = run(&["serve", "--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--host",
        "--port",
        "--no-browser",
        "--allowed-host",
        "--allowed-origin",
        "--quiet",
        "--verbose",
        "--no-web-ui",
        "--log-format",
        "ssh -L",
    ] {
        assert!(text.contains(flag), "serve --help lacks {flag}");
    }
}

#[test]
fn serve_without_a_path_serves_the_bundled_demo() {
    let server = Server::start(&["--no-web-ui"]);
    let listed = get(&server.url("/_cellucid/datasets")).json();
    assert_eq!(listed["datasets"].as_array().unwrap().len(), 3);
    let identity = get(&server.url("/synthetic-cell-types-2d/dataset_identity.json"));
    assert_eq!(identity.status, 200);
    let banner = server.stderr().join("\n");
    assert!(banner.contains("cellucid-rs"), "{banner}");
    assert!(banner.contains("72 cells × 8 genes"), "{banner}");
    assert!(banner.contains("Ctrl-C"), "{banner}");
    assert!(banner.contains("not access control"), "{banner}");
}

#[test]
fn port_zero_prints_the_real_port() {
    let server = Server::start(&["--no-web-ui"]);
    assert_ne!(server.addr.port(), 0);
    assert_eq!(
        get(&server.url("/_cellucid/info")).json()["port"],
        server.addr.port()
    );
}

#[test]
fn inputs_that_are_no_dataset_exit_2_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let text = tmp.path().join("notes.h5ad");
    std::fs::write(&text, "not hdf5").unwrap();
    let missing = tmp.path().join("missing");
    for path in [text.as_path(), tmp.path(), missing.as_path()] {
        let out = run(&[
            "serve",
            "--no-browser",
            "--port",
            "0",
            path.to_str().unwrap(),
        ]);
        assert_one_line_error(&out, 2, path.to_str().unwrap());
    }
}

#[test]
fn a_broken_identity_is_one_line_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("dataset_identity.json"), "{ not json").unwrap();
    let out = run(&[
        "serve",
        "--no-browser",
        "--port",
        "0",
        tmp.path().to_str().unwrap(),
    ]);
    assert_one_line_error(&out, 1, "dataset_identity.json");
}

#[test]
fn clashing_and_reserved_ids_exit_2() {
    let dir = fixture("exports-0.9.4/pbmc68k-f32");
    let out = run(&[
        "serve",
        "--no-browser",
        "--port",
        "0",
        dir.to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, 2, "pbmc68k-f32");

    let tmp = tempfile::tempdir().unwrap();
    let reserved = tmp.path().join("assets");
    std::fs::create_dir(&reserved).unwrap();
    std::fs::write(
        reserved.join("dataset_identity.json"),
        r#"{"version": 3, "id": "assets", "name": "x", "stats": {"n_cells": 1, "n_genes": 0}}"#,
    )
    .unwrap();
    let other = demo();
    let out = run(&[
        "serve",
        "--no-browser",
        "--port",
        "0",
        other.to_str().unwrap(),
        reserved.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, 2, "assets");
}

#[test]
fn a_busy_port_is_one_line_and_exit_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run(&["serve", "--no-browser", "--no-web-ui", "--port", &port]);
    assert_one_line_error(&out, 1, "already in use");
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&["serve", "--port", "99999"]).status.code(), Some(2));
    assert_eq!(
        run(&["serve", "--log-format", "xml"]).status.code(),
        Some(2)
    );
    assert_eq!(
        run(&["serve", "--quiet", "--verbose"]).status.code(),
        Some(2)
    );
    assert_eq!(
        run(&["serve", "--header-timeout", "0"]).status.code(),
        Some(2)
    );
    let out = run(&[
        "serve",
        "--no-browser",
        "--host",
        "not a host!",
        "--port",
        "0",
    ]);
    assert_one_line_error(&out, 2, "--host");
}

#[test]
fn ipv6_loopback_works() {
    if TcpListener::bind("[::1]:0").is_err() {
        skipped("this machine has no IPv6 loopback");
        return;
    }
    let server = Server::start(&["--no-web-ui", "--host", "::1"]);
    assert!(server.base.starts_with("http://[::1]:"), "{}", server.base);
    let reply = get(&server.url("/_cellucid/health"));
    assert_eq!(reply.status, 200);
}

#[test]
fn sigterm_and_sigint_exit_0() {
    for signal_name in ["TERM", "INT"] {
        let server = Server::start(&["--no-web-ui"]);
        assert_eq!(get(&server.url("/_cellucid/health")).status, 200);
        server.send_signal(signal_name);
        let status = server.wait();
        assert_eq!(status.code(), Some(0), "after SIG{signal_name}");
    }
}

#[test]
fn shutdown_lets_a_request_in_flight_finish() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("dataset_identity.json"),
        r#"{"version": 3, "id": "big", "name": "big", "stats": {"n_cells": 1, "n_genes": 0}}"#,
    )
    .unwrap();
    let big: Vec<u8> = (0..64_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(tmp.path().join("big.bin"), &big).unwrap();
    let server = Server::start(&["--no-web-ui", tmp.path().to_str().unwrap()]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET /big.bin HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.host()
    )
    .unwrap();
    // Read a little, so the response is under way, then ask the server to stop.
    let mut first = vec![0u8; 4096];
    let n = stream.read(&mut first).unwrap();
    assert!(n > 0);
    server.send_signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    let mut all = first[..n].to_vec();
    all.extend_from_slice(&rest);
    let reply = parse_reply(&all).unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body.len(),
        big.len(),
        "the response in flight was cut short"
    );
    assert!(reply.body == big);
    let addr = server.addr;
    assert_eq!(server.wait().code(), Some(0));
    // Once stopped, it no longer accepts connections.
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn a_non_loopback_bind_warns_loudly() {
    let server = Server::start(&["--no-web-ui", "--host", "0.0.0.0"]);
    // The URL shown for this machine is the loopback one.
    assert!(
        server.base.starts_with("http://127.0.0.1:"),
        "{}",
        server.base
    );
    let stderr = server.stderr().join("\n");
    assert!(stderr.contains("WARNING"), "{stderr}");
    assert!(
        stderr.contains(&format!("ssh -L {0}:localhost:{0}", server.addr.port())),
        "{stderr}"
    );
    assert!(stderr.contains("gene expression"), "{stderr}");
    // Still answers to this machine's names, on any port (a container's published port).
    let reply = raw_get(server.addr, "/_cellucid/health", &["Host: localhost:9000"]);
    assert_eq!(reply.status, 200);
    let reply = raw_get(server.addr, "/_cellucid/health", &["Host: evil.example:80"]);
    assert_eq!(reply.status, 421);
}

#[test]
fn json_logs_are_one_object_per_line() {
    let server = Server::start(&["--no-web-ui", "--verbose", "--log-format", "json"]);
    assert_eq!(
        get(&server.url("/_cellucid/health?token=secret123")).status,
        200
    );
    std::thread::sleep(Duration::from_millis(200));
    let logs: Vec<serde_json::Value> = server
        .stderr()
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        logs.iter()
            .any(|l| l["fields"]["path"] == "/_cellucid/health"),
        "no request log line: {logs:?}"
    );
    let all = server.stderr().join("\n");
    assert!(!all.contains("secret123"), "a query token reached the log");
}

/// The environment of process `pid`, as `NAME=value` entries.
fn environ(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap()
        .split(|&b| b == 0)
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect()
}

#[test]
fn serve_runs_with_few_malloc_arenas_unless_the_user_chose() {
    let demo = demo();
    let demo = demo.to_str().unwrap();
    // Started once more in place: same pid, so signals and exit codes reach
    // whoever started it, and the variable is in its environment.
    let server = Server::start(&["--no-web-ui", demo]);
    assert!(environ(server.pid()).contains(&"MALLOC_ARENA_MAX=2".to_owned()));
    assert_eq!(get(&server.url("/_cellucid/health")).status, 200);
    assert!(server.terminate().success());
    let chosen =
        Server::try_start_with_env(&["--no-web-ui", demo], &[("MALLOC_ARENA_MAX", "8")]).unwrap();
    let env = environ(chosen.pid());
    assert!(env.contains(&"MALLOC_ARENA_MAX=8".to_owned()), "{env:?}");
    assert!(!env.contains(&"MALLOC_ARENA_MAX=2".to_owned()));
}
