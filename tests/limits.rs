//! Bounds: request heads, timeouts, the connection cap, and many clients at once.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::*;

fn catalog_server(extra: &[&str]) -> Server {
    let dir = fixture("exports-0.9.4");
    let mut args = vec!["--no-web-ui"];
    args.extend_from_slice(extra);
    args.push(dir.to_str().unwrap());
    Server::start(&args)
}

#[test]
fn at_most_100_request_headers() {
    let server = catalog_server(&[]);
    let host = format!("Host: {}", server.host());
    let filler: Vec<String> = (0..98).map(|i| format!("X-Filler-{i}: y")).collect();
    // Host + 98 fillers + Connection = 100 headers.
    let mut lines: Vec<&str> = vec![host.as_str()];
    lines.extend(filler.iter().map(String::as_str));
    assert_eq!(
        raw_get(server.addr, "/_cellucid/health", &lines).status,
        200
    );
    lines.push("X-One-Too-Many: y");
    assert_eq!(
        raw_get(server.addr, "/_cellucid/health", &lines).status,
        431
    );
}

#[test]
fn request_heads_over_64_kib_get_431() {
    let server = catalog_server(&[]);
    let host = format!("Host: {}", server.host());
    let big = format!("X-Big: {}", "a".repeat(70 * 1024));
    let reply = raw_get(server.addr, "/_cellucid/health", &[&host, &big]);
    assert_eq!(reply.status, 431);
    let long_path = format!("/{}", "a".repeat(70 * 1024));
    let reply = raw_get(server.addr, &long_path, &[&host]);
    assert!(matches!(reply.status, 414 | 431), "{}", reply.status);
    // Just under the limit is fine.
    let fits = format!("X-Big: {}", "a".repeat(60 * 1024));
    assert_eq!(
        raw_get(server.addr, "/_cellucid/health", &[&host, &fits]).status,
        200
    );
}

/// Reads until EOF or `limit`; returns what was read and whether EOF came.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return (buf, true),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (buf, true),
            Err(_) => return (buf, false),
        }
    }
}

#[test]
fn a_slow_request_head_is_cut_off_at_the_header_timeout() {
    let server = catalog_server(&["--header-timeout", "1"]);
    let started = Instant::now();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .write_all(b"GET /_cellucid/health HTTP/1.1\r\nHost: ")
        .unwrap();
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(10));
    assert!(closed, "the server kept a half-sent request open");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed too early: {waited:?}"
    );
    // A connection that sends nothing is closed too.
    let mut silent = TcpStream::connect(server.addr).unwrap();
    assert!(read_until_closed(&mut silent, Duration::from_secs(10)).1);
}

#[test]
fn idle_keep_alive_connections_outlive_the_header_timeout_then_close() {
    let server = catalog_server(&["--header-timeout", "1", "--idle-timeout", "3"]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    let request = format!(
        "GET /_cellucid/health HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.host()
    );
    let mut chunk = [0u8; 4096];
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    assert!(stream.read(&mut chunk).unwrap() > 0);
    // Idle for longer than the header timeout: still open for the next request.
    std::thread::sleep(Duration::from_millis(1600));
    stream.write_all(request.as_bytes()).unwrap();
    let n = stream.read(&mut chunk).unwrap();
    assert!(String::from_utf8_lossy(&chunk[..n]).starts_with("HTTP/1.1 200"));
    // Then idle past the idle timeout: closed by the server.
    let started = Instant::now();
    // Generous bound: the machine may be busy; what matters is that it closes.
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(30));
    assert!(
        closed,
        "idle connection not closed after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn clients_beyond_the_connection_cap_wait_for_a_free_slot() {
    let server = catalog_server(&["--max-connections", "2"]);
    let request = format!(
        "GET /_cellucid/health HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.host()
    );
    let mut chunk = [0u8; 4096];
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        assert!(stream.read(&mut chunk).unwrap() > 0);
        held.push(stream);
    }
    let mut third = TcpStream::connect(server.addr).unwrap();
    third.write_all(request.as_bytes()).unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    assert!(
        third.read(&mut chunk).is_err(),
        "a third connection was served beyond the cap"
    );
    drop(held.pop());
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = third.read(&mut chunk).unwrap();
    assert!(String::from_utf8_lossy(&chunk[..n]).starts_with("HTTP/1.1 200"));
}

#[test]
fn a_hundred_concurrent_clients_get_correct_bytes() {
    let dir = fixture("exports-0.9.4");
    let server = catalog_server(&[]);
    let sums = sha256sums(&dir);
    let sums = std::sync::Arc::new(sums);
    let base = server.base.clone();
    let workers: Vec<_> = (0..100)
        .map(|worker| {
            let sums = std::sync::Arc::clone(&sums);
            let base = base.clone();
            std::thread::spawn(move || {
                let agent = client();
                for (path, want) in sums.iter().skip(worker * 7 % sums.len()).take(20) {
                    let mut resp = agent.get(&format!("{base}/{path}")).call().unwrap();
                    assert_eq!(resp.status(), 200, "{path}");
                    let body = resp.body_mut().read_to_vec().unwrap();
                    assert_eq!(&sha256_hex(&body), want, "{path}");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a client thread failed");
    }
    assert_eq!(get(&server.url("/_cellucid/health")).status, 200);
}
