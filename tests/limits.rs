//! Bounds: request heads, timeouts, the connection cap, clients that stall,
//! and many clients at once.

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
fn a_slow_request_head_is_cut_off_at_the_header_timeout_with_408() {
    let server = catalog_server(&["--header-timeout", "1"]);
    let started = Instant::now();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .write_all(b"GET /_cellucid/health HTTP/1.1\r\nHost: ")
        .unwrap();
    let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(10));
    assert!(closed, "the server kept a half-sent request open");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed too early: {waited:?}"
    );
    // It used to close without a word.
    let reply = parse_reply(&answer).expect("an answer before the close");
    assert_eq!(reply.status, 408, "{}", reply.text());
    assert_eq!(reply.header("connection"), Some("close"));
    // A connection that sends nothing (a browser's preconnect) is closed
    // without an answer.
    let mut silent = TcpStream::connect(server.addr).unwrap();
    let (answer, closed) = read_until_closed(&mut silent, Duration::from_secs(10));
    assert!(closed);
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    // So is an idle keep-alive connection, even at the header timeout.
    let mut kept = TcpStream::connect(server.addr).unwrap();
    let request = format!(
        "GET /_cellucid/health HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.host()
    );
    kept.write_all(request.as_bytes()).unwrap();
    let mut chunk = [0u8; 4096];
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(kept.read(&mut chunk).unwrap() > 0);
    // A second head, started after the first answer and never finished: 408.
    kept.write_all(b"GET /_cellucid/health HTTP/1.1\r\n")
        .unwrap();
    let (answer, closed) = read_until_closed(&mut kept, Duration::from_secs(10));
    assert!(closed);
    assert_eq!(parse_reply(&answer).map(|r| r.status), Some(408));
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
        // Busy connections: a request head under way (idle ones would be
        // closed to make room).
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .write_all(b"GET /_cellucid/health HTTP/1.1\r\n")
            .unwrap();
        held.push(stream);
    }
    std::thread::sleep(Duration::from_millis(200));
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

/// Opens `n` keep-alive connections, each served one request and now idle.
fn idle_connections(server: &Server, n: usize) -> Vec<TcpStream> {
    let request = format!(
        "GET /_cellucid/health HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.host()
    );
    (0..n)
        .map(|_| {
            let mut stream = TcpStream::connect(server.addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let mut chunk = [0u8; 4096];
            assert!(stream.read(&mut chunk).unwrap() > 0);
            stream
        })
        .collect()
}

#[test]
fn idle_keep_alive_connections_at_the_cap_make_room_for_new_clients() {
    // They used to hold every slot until the idle timeout (120 s by default).
    let server = catalog_server(&["--max-connections", "8"]);
    let mut idle = idle_connections(&server, 8);
    let started = Instant::now();
    let fresh = raw_get(
        server.addr,
        "/_cellucid/health",
        &[&format!("Host: {}", server.host())],
    );
    assert_eq!(fresh.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a new client waited {:?} for a slot idle connections held",
        started.elapsed()
    );
    // The oldest idle connection is the one that made room.
    let (_, closed) = read_until_closed(&mut idle[0], Duration::from_secs(5));
    assert!(closed, "the oldest idle connection is still open");
    // Every slot taken again, by idle connections: still no waiting.
    let _more = idle_connections(&server, 8);
    assert_eq!(get(&server.url("/_cellucid/health")).status, 200);
}

/// A copy of one dataset with a file of `bytes` (sparse: no disk used).
fn dataset_with_large_file(bytes: u64) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(&fixture("exports-0.9.4/pbmc68k-f32"), tmp.path());
    let file = std::fs::File::create(tmp.path().join("large.bin")).unwrap();
    file.set_len(bytes).unwrap();
    tmp
}

#[test]
fn clients_that_stop_reading_a_large_file_are_dropped_after_the_send_timeout() {
    const SIZE: u64 = 64 * 1024 * 1024;
    let dir = dataset_with_large_file(SIZE);
    let server = Server::start(&[
        "--no-web-ui",
        "--max-connections",
        "4",
        "--send-timeout",
        "2",
        dir.path().to_str().unwrap(),
    ]);
    let request = format!("GET /large.bin HTTP/1.1\r\nHost: {}\r\n\r\n", server.host());
    // Every slot: a client that asks for the file and never reads it. They
    // used to hold their slots forever, and a fresh client never got in.
    let mut stalled: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = TcpStream::connect(server.addr).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            // The response has started (its head is here); no more is read.
            let mut head = [0u8; 1024];
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let n = stream.read(&mut head).unwrap();
            assert!(head[..n].starts_with(b"HTTP/1.1 200"));
            stream
        })
        .collect();
    let started = Instant::now();
    let mut fresh = TcpStream::connect(server.addr).unwrap();
    fresh
        .write_all(
            format!(
                "GET /_cellucid/health HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                server.host()
            )
            .as_bytes(),
        )
        .unwrap();
    let (answer, _) = read_until_closed(&mut fresh, Duration::from_secs(30));
    let waited = started.elapsed();
    assert_eq!(parse_reply(&answer).map(|r| r.status), Some(200));
    assert!(waited < Duration::from_secs(20), "served after {waited:?}");
    // The fresh client got the first slot freed; by now (well past the send
    // timeout) every stalled response has been cut short, not finished.
    std::thread::sleep(Duration::from_secs(4));
    for stream in &mut stalled {
        let (cut, closed) = read_until_closed(stream, Duration::from_secs(30));
        assert!(closed, "a stalled client's connection is still open");
        assert!(
            (cut.len() as u64) < SIZE,
            "the whole file was sent ({} bytes)",
            cut.len()
        );
    }
}

#[test]
fn a_body_dribbled_a_byte_at_a_time_gets_408_at_the_body_timeout() {
    // One byte every 200 ms used to reset a per-read timeout forever.
    let server = catalog_server(&["--body-timeout", "2"]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    let head = format!(
        "POST /_cellucid/events HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 100000\r\n\r\n{{",
        server.host()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(15) {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
        if parse_reply(&answer).is_some() {
            break;
        }
        if stream.write_all(b" ").is_err() {
            // Closed: what was answered is still readable.
            let _ = stream.read_to_end(&mut answer);
            break;
        }
    }
    let waited = started.elapsed();
    let reply = parse_reply(&answer).expect("an answer within 15 s");
    assert_eq!(reply.status, 408, "{}", reply.text());
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
}

#[test]
fn a_request_line_naming_a_foreign_host_is_421_like_a_foreign_host_header() {
    let server = catalog_server(&[]);
    let host = format!("Host: {}", server.host());
    // The request line's authority used to be ignored when Host was good.
    let foreign = raw_get(
        server.addr,
        "http://evil.example/_cellucid/health",
        &[&host],
    );
    assert_eq!(foreign.status, 421, "{}", foreign.text());
    let own = format!("http://{}/_cellucid/health", server.host());
    assert_eq!(raw_get(server.addr, &own, &[&host]).status, 200);
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
