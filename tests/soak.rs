//! Soak: 500 concurrent keep-alive clients against the real `cellucid`
//! binary, mixing Range reads of an AnnData file, HEADs of export files,
//! CORS preflights, synthesised gene columns and viewer events, with zero
//! errors; afterwards the server holds the descriptors it held before the
//! load and no more resident memory than after warm-up (plus 16 MiB).
//!
//! The load runs for `CELLUCID_SOAK_SECS` seconds (default 60); clients
//! rest between requests so that the load (about 2000 requests/s, under one
//! core for server and clients together) leaves room for the tests that run
//! beside it. `benches/RESULTS.md` records a run and its command.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::http1::Conn;
use crate::support::process::{
    fd_count, raise_fd_limit, rss_kib, settled_fd_count, wait_for_fd_count,
};
use crate::support::{cellucid, files_under, fixture, Reply, TEST_CACHE};

/// The environment variable giving the load's length in seconds.
const SOAK_SECS: &str = "CELLUCID_SOAK_SECS";
const DEFAULT_SECS: u64 = 60;
const CLIENTS: usize = 500;
/// Load before the memory baseline is taken: every kind of request has been
/// served by every client many times by then.
const WARM_UP: Duration = Duration::from_secs(5);
/// How much the resident memory may grow between warm-up and the end.
const RSS_SLACK_KIB: u64 = 16 * 1024;
/// A client rests up to this long between requests: 500 clients stay
/// concurrent without starving the tests that run beside this one.
const MAX_PAUSE_MS: u64 = 400;
/// A loopback page (a local viewer build) as the CORS origin: allowed, and
/// nothing outside loopback is named or contacted.
const ORIGIN: &str = "http://localhost:5173";
const H5AD: &str = "anndata/pbmc68k_reduced.h5ad";
const EXPORT: &str = "exports-0.9.4/pbmc68k-f32";
/// The AnnData dataset's id and its number of genes (765 columns of X).
const ANNDATA_ID: &str = "pbmc68k_reduced";
const GENES: usize = 765;

/// `cellucid serve --viewer` with stdout (the events) counted as it comes.
struct ViewerServer {
    child: Child,
    addr: SocketAddr,
    id: String,
    token: String,
    event_lines: Arc<AtomicU64>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for ViewerServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_viewer_server(args: &[&str], tmp: &Path) -> ViewerServer {
    let mut child = cellucid()
        .args(["serve", "--no-browser", "--port", "0", "--viewer"])
        .args(args)
        .env("TMPDIR", tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let event_lines = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&event_lines);
    std::thread::spawn(move || {
        // Counted only when it is a JSON object (stdout carries events only),
        // so anything else shows as a shortfall of event lines.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if serde_json::from_str::<serde_json::Value>(&line).is_ok_and(|v| v.is_object()) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            sink.lock().unwrap().push(line);
        }
    });
    let (mut base, mut jupyter) = (None, None);
    while base.is_none() || jupyter.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no startup lines; stderr: {:?}", lines.lock().unwrap()));
        if let Some(rest) = line.strip_prefix("Open      ") {
            base = Some(rest.trim_end_matches('/').to_owned());
        } else if let Some(rest) = line.strip_prefix("Viewer (0.9.4 viewers)  ") {
            jupyter = Some(rest.to_owned());
        }
    }
    let jupyter = jupyter.unwrap();
    let query = |key: &str| {
        jupyter
            .split(['?', '&'])
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .unwrap()
            .to_owned()
    };
    ViewerServer {
        addr: base.unwrap().trim_start_matches("http://").parse().unwrap(),
        id: query("viewerId"),
        token: query("viewerToken"),
        child,
        event_lines,
        stderr: lines,
    }
}

/// What every client needs to build requests and check answers.
struct Plan {
    addr: SocketAddr,
    viewer_id: String,
    token: String,
    /// The served `.h5ad`, to check Range bodies against.
    h5ad: Vec<u8>,
    /// Export files as `(URL path, size)`.
    export_files: Vec<(String, usize)>,
    /// Each gene column's bytes as first served.
    genes: Vec<Vec<u8>>,
}

/// A small deterministic generator (xorshift64*): the mix is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Counts of what the clients did.
#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    events: AtomicU64,
    connections: AtomicU64,
    errors: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

impl Tally {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_errors.lock().unwrap();
        if first.len() < 10 {
            first.push(what);
        }
    }
}

/// One request of the mix and the check of its answer.
fn next_request(plan: &Plan, rng: &mut Rng, serial: u64) -> (String, Vec<u8>, Check) {
    let host = plan.addr;
    match rng.below(5) {
        0 => {
            let start = rng.below(plan.h5ad.len() - 1);
            let len = 1 + rng.below(64 * 1024);
            let end = (start + len).min(plan.h5ad.len()) - 1;
            let target = format!("/_cellucid/anndata/{ANNDATA_ID}.h5ad");
            let head = format!(
                "GET {target} HTTP/1.1\r\nHost: {host}\r\nRange: bytes={start}-{end}\r\n\r\n"
            );
            (
                format!("{target} bytes={start}-{end}"),
                head.into_bytes(),
                Check::Partial(start, end),
            )
        }
        1 => {
            let (path, size) = &plan.export_files[rng.below(plan.export_files.len())];
            let head = format!("HEAD {path} HTTP/1.1\r\nHost: {host}\r\nOrigin: {ORIGIN}\r\n\r\n");
            (
                format!("HEAD {path}"),
                head.into_bytes(),
                Check::Head(*size),
            )
        }
        2 => {
            let (path, _) = &plan.export_files[rng.below(plan.export_files.len())];
            let head = format!(
                "OPTIONS {path} HTTP/1.1\r\nHost: {host}\r\nOrigin: {ORIGIN}\r\n\
                 Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: range\r\n\r\n"
            );
            (
                format!("OPTIONS {path}"),
                head.into_bytes(),
                Check::Preflight,
            )
        }
        3 => {
            let gene = rng.below(plan.genes.len());
            let path = format!("/{ANNDATA_ID}/var/{gene}.values.f32");
            let head = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
            (path, head.into_bytes(), Check::Gene(gene))
        }
        _ => {
            let body = format!(
                r#"{{"viewerId":"{}","type":"soak","serial":{serial}}}"#,
                plan.viewer_id
            );
            let head = format!(
                "POST /_cellucid/events HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
                 X-Cellucid-Viewer-Token: {}\r\nContent-Length: {}\r\n\r\n{body}",
                plan.token,
                body.len()
            );
            (
                "POST /_cellucid/events".into(),
                head.into_bytes(),
                Check::Event,
            )
        }
    }
}

/// What a good answer looks like.
enum Check {
    Partial(usize, usize),
    Head(usize),
    Preflight,
    Gene(usize),
    Event,
}

impl Check {
    fn head_only(&self) -> bool {
        matches!(self, Check::Head(_))
    }

    /// `None` when `reply` is right, else what is wrong.
    fn verify(&self, plan: &Plan, reply: &Reply) -> Option<String> {
        let want = match self {
            Check::Partial(..) => 206,
            Check::Preflight => 204,
            _ => 200,
        };
        if reply.status != want {
            return Some(format!(
                "status {} (want {want}): {}",
                reply.status,
                reply.text()
            ));
        }
        match self {
            Check::Partial(start, end) => (reply.body != plan.h5ad[*start..=*end])
                .then(|| format!("wrong bytes for {start}-{end}")),
            Check::Head(size) => {
                (reply.header("content-length") != Some(&size.to_string())).then(|| {
                    format!(
                        "Content-Length {:?}, want {size}",
                        reply.header("content-length")
                    )
                })
            }
            Check::Preflight => (reply.header("access-control-allow-origin") != Some(ORIGIN))
                .then(|| format!("no CORS grant: {:?}", reply.headers)),
            Check::Gene(gene) => {
                (reply.body != plan.genes[*gene]).then(|| format!("gene {gene}: other bytes"))
            }
            Check::Event => (!reply.text().contains(r#""delivered":true"#)).then(|| reply.text()),
        }
    }
}

/// One client: requests on a keep-alive connection until `stop`, resting a
/// little between them; reconnects only when the server asks to close.
async fn client(plan: Arc<Plan>, tally: Arc<Tally>, stop: Arc<AtomicBool>, seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut conn: Option<Conn> = None;
    let mut serial = 0u64;
    // Start spread out, as real clients would.
    tokio::time::sleep(Duration::from_millis(rng.next() % 1000)).await;
    while !stop.load(Ordering::Relaxed) {
        if conn.as_ref().is_none_or(|c| c.closing) {
            match Conn::open(plan.addr).await {
                Ok(c) => {
                    tally.connections.fetch_add(1, Ordering::Relaxed);
                    conn = Some(c);
                }
                Err(err) => {
                    tally.error(format!("connect: {err}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let Some(open) = conn.as_mut() else { continue };
        serial += 1;
        let (what, request, check) = next_request(&plan, &mut rng, seed << 32 | serial);
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            open.exchange(&request, check.head_only()),
        )
        .await;
        tally.requests.fetch_add(1, Ordering::Relaxed);
        match answer {
            Err(_) => {
                tally.error(format!("{what}: no answer within 30 s"));
                conn = None;
            }
            Ok(Err(err)) => {
                tally.error(format!("{what}: {err}"));
                conn = None;
            }
            Ok(Ok(reply)) => {
                if let Some(wrong) = check.verify(&plan, &reply) {
                    tally.error(format!("{what}: {wrong}"));
                } else if matches!(check, Check::Event) {
                    tally.events.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.next() % MAX_PAUSE_MS)).await;
    }
}

/// `GET path` on a fresh connection that is closed afterwards.
async fn get_once(addr: SocketAddr, path: &str) -> Reply {
    let mut conn = Conn::open(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    conn.exchange(request.as_bytes(), false).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_clients_leave_no_errors_fds_or_memory_behind() {
    let secs: u64 = std::env::var(SOAK_SECS)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{SOAK_SECS}={v} is not a number"))
        })
        .unwrap_or(DEFAULT_SECS);
    let duration = Duration::from_secs(secs);
    assert!(
        duration > WARM_UP * 2,
        "{SOAK_SECS} must be above {}",
        WARM_UP.as_secs() * 2
    );
    // 500 sockets here and 500 in the server (which inherits the limit).
    let nofile = raise_fd_limit(4096);
    assert!(
        nofile >= 1200,
        "the open-file limit is {nofile}; 500 clients need more"
    );
    let tmp = tempfile::tempdir().unwrap();
    let export = fixture(EXPORT);
    let h5ad = fixture(H5AD);
    let server = start_viewer_server(
        &[
            "--no-web-ui",
            "--max-connections",
            "1024",
            "--cache-dir",
            TEST_CACHE,
            export.to_str().unwrap(),
            h5ad.to_str().unwrap(),
        ],
        tmp.path(),
    );
    let pid = server.child.id();
    let addr = server.addr;

    // Every answer the clients will check, served once before the load.
    let export_id = export.file_name().unwrap().to_str().unwrap();
    let export_files: Vec<(String, usize)> = files_under(&export)
        .into_iter()
        .map(|rel| {
            let size = std::fs::metadata(export.join(&rel)).unwrap().len() as usize;
            (format!("/{export_id}/{rel}"), size)
        })
        .collect();
    let mut genes = Vec::with_capacity(GENES);
    for gene in 0..GENES {
        let reply = get_once(addr, &format!("/{ANNDATA_ID}/var/{gene}.values.f32")).await;
        assert_eq!(reply.status, 200, "gene {gene}: {}", reply.text());
        assert_eq!(reply.body.len(), 700 * 4, "gene {gene}");
        genes.push(reply.body);
    }
    let plan = Arc::new(Plan {
        addr,
        viewer_id: server.id.clone(),
        token: server.token.clone(),
        h5ad: std::fs::read(&h5ad).unwrap(),
        export_files,
        genes,
    });
    let fds_before = settled_fd_count(pid);

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS as u64)
        .map(|seed| {
            tokio::spawn(client(
                Arc::clone(&plan),
                Arc::clone(&tally),
                Arc::clone(&stop),
                seed + 1,
            ))
        })
        .collect();
    tokio::time::sleep(WARM_UP).await;
    let rss_warm = rss_kib(pid);
    let fds_under_load = fd_count(pid);
    tokio::time::sleep(duration.saturating_sub(started.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let elapsed = started.elapsed();

    let fds_after = wait_for_fd_count(pid, fds_before, Duration::from_secs(20));
    let rss_end = rss_kib(pid);
    let requests = tally.requests.load(Ordering::Relaxed);
    let events = tally.events.load(Ordering::Relaxed);
    // Every delivered event reaches stdout.
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.event_lines.load(Ordering::Relaxed) < events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines = server.event_lines.load(Ordering::Relaxed);
    // One line on the real stderr, for benches/RESULTS.md.
    let _ = writeln!(
        std::io::stderr(),
        "soak: {CLIENTS} clients, {:.1} s, {requests} requests ({:.0}/s), {events} events, \
         {} connections, {} errors; fds {fds_before} before, {fds_under_load} under load, \
         {fds_after} after; RSS {rss_warm} KiB after warm-up, {rss_end} KiB at the end",
        elapsed.as_secs_f64(),
        requests as f64 / elapsed.as_secs_f64(),
        tally.connections.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
    );
    assert_eq!(
        tally.errors.load(Ordering::Relaxed),
        0,
        "first errors: {:?}; server stderr: {:?}",
        tally.first_errors.lock().unwrap(),
        server
            .stderr
            .lock()
            .unwrap()
            .iter()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
    );
    assert!(
        fds_under_load >= fds_before + CLIENTS / 2,
        "the clients were not concurrent: {fds_under_load} fds under load, {fds_before} before"
    );
    assert_eq!(fds_after, fds_before, "descriptors leaked");
    assert!(
        rss_end <= rss_warm + RSS_SLACK_KIB,
        "RSS grew from {rss_warm} KiB after warm-up to {rss_end} KiB"
    );
    assert_eq!(
        lines, events,
        "events answered 200 but not written to stdout"
    );
    assert_eq!(get_once(addr, "/_cellucid/health").await.status, 200);
}
