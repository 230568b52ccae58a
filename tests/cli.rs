//! The `cellucid` command: startup, exit codes, signals, messages.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;

use std::time::Duration;

use crate::support::*;

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

/// The heaps of glibc's non-main malloc arenas in process `pid`: each is a
/// 64 MiB-aligned, 64 MiB region of anonymous memory (`HEAP_MAX_SIZE` on
/// 64-bit), read-write at its start and reserved (`---p`) after, so an
/// arena small enough for one heap shows as exactly one.
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
fn malloc_heaps(pid: u32) -> usize {
    const HEAP: u64 = 64 << 20;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    // (start, end, perms) of the anonymous mappings.
    let anon: Vec<(u64, u64, &str)> = maps
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (range, perms) = (fields.next()?, fields.next()?);
            let inode = fields.nth(2)?; // after the offset and the device
            if inode != "0" || fields.next().is_some() {
                return None; // a file, or named ([heap], [stack], …)
            }
            let (start, end) = range.split_once('-')?;
            let hex = |s| u64::from_str_radix(s, 16).ok();
            Some((hex(start)?, hex(end)?, perms))
        })
        .collect();
    anon.iter()
        .enumerate()
        .filter(|&(i, &(start, end, perms))| {
            start % HEAP == 0
                && perms == "rw-p"
                && (end == start + HEAP
                    || anon
                        .get(i + 1)
                        .is_some_and(|&(next, next_end, next_perms)| {
                            next == end && next_perms == "---p" && next_end >= start + HEAP
                        }))
        })
        .count()
}

/// Serves an AnnData file with `env` set, reads gene columns from eight
/// clients at once (each read runs on a blocking thread, so at least eight
/// threads allocate), and counts the server's arena heaps; also gives the
/// server's environment (`NAME=value` entries).
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
fn malloc_heaps_after_concurrent_reads(env: &[(&str, &str)]) -> (usize, Vec<String>) {
    let path = fixture("anndata/pbmc68k_reduced.csc.h5ad");
    let args = [
        "--no-web-ui",
        "--cache-dir",
        TEST_CACHE,
        path.to_str().unwrap(),
    ];
    let server = Server::try_start_with_env(&args, env).unwrap();
    std::thread::scope(|scope| {
        for client in 0..8 {
            let server = &server;
            scope.spawn(move || {
                for gene in (client * 20)..(client * 20 + 20) {
                    let reply = get(&server.url(&format!("/var/{gene}.values.f32")));
                    assert_eq!(reply.status, 200, "gene {gene}");
                }
            });
        }
    });
    let environ = std::fs::read(format!("/proc/{}/environ", server.pid()))
        .unwrap()
        .split(|&b| b == 0)
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect();
    (malloc_heaps(server.pid()), environ)
}

#[test]
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
fn serve_limits_glibc_to_two_malloc_arenas_unless_the_user_chose() {
    // Two arenas: the main one (no heap of its own) and one heap that every
    // other thread shares.
    let (limited, environ) = malloc_heaps_after_concurrent_reads(&[]);
    assert!(limited <= 1, "{limited} arena heaps with the default limit");
    // Set in place, not by starting again with MALLOC_ARENA_MAX: the
    // programs the server starts (a browser) keep the user's environment.
    assert!(
        !environ.iter().any(|e| e.starts_with("MALLOC_ARENA_MAX=")),
        "{environ:?}"
    );
    // The user's choice stands, and this measure sees the difference.
    let (chosen, _) = malloc_heaps_after_concurrent_reads(&[("MALLOC_ARENA_MAX", "8")]);
    assert!(chosen >= 2, "{chosen} arena heaps with MALLOC_ARENA_MAX=8");
}

/// A copy of the binary in a folder of its own, started with no PATH from
/// another folder, serves the embedded demo byte for byte from a private
/// temporary folder, and removes that folder when it stops.
#[test]
fn a_copied_binary_serves_the_embedded_demo_and_cleans_up() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let (bin, cwd, tmpdir) = (
        tmp.path().join("bin"),
        tmp.path().join("cwd"),
        tmp.path().join("tmp"),
    );
    for dir in [&bin, &cwd, &tmpdir] {
        std::fs::create_dir(dir).unwrap();
    }
    let exe = bin.join("cellucid");
    std::fs::copy(env!("CARGO_BIN_EXE_cellucid"), &exe).unwrap();
    let mut cmd = cellucid_at(&exe);
    cmd.current_dir(&cwd).env("TMPDIR", &tmpdir);
    let server = Server::try_start_command(cmd, &["--no-web-ui"]).unwrap();

    let extracted: Vec<PathBuf> = std::fs::read_dir(&tmpdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(extracted.len(), 1, "{extracted:?}");
    let name = extracted[0].file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("cellucid-demo-"), "{name}");
    let mode = std::fs::metadata(&extracted[0])
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "the demo folder is private");

    let demo = demo();
    let catalog = get(&server.url("/datasets.json"));
    assert_eq!(
        catalog.body,
        std::fs::read(demo.join("datasets.json")).unwrap()
    );
    let mut served = 0;
    for entry in catalog.json()["datasets"].as_array().unwrap() {
        let path = entry["path"].as_str().unwrap();
        for file in files_under(&demo.join(path)) {
            let reply = get(&server.url(&format!("/{path}{file}")));
            assert_eq!(reply.status, 200, "{path}{file}");
            assert!(
                reply.body == std::fs::read(demo.join(path).join(&file)).unwrap(),
                "{path}{file} differs"
            );
            served += 1;
        }
    }
    assert!(served > 60, "{served} files");

    assert!(server.terminate().success());
    let left: Vec<_> = std::fs::read_dir(&tmpdir).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
