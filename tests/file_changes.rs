//! Files that change while served (SECURITY.md, "Files that change
//! under the server"): inputs truncated, rewritten in place or replaced by a
//! rename while they are served. The server must never die (a mapped file
//! that shrinks raises SIGBUS), must never send bytes of one version under
//! another version's ETag, and must re-open an AnnData input once its new
//! version is complete, so every route describes the same version.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{
    copy_tree, demo, fixture, get, parse_reply, request, Reply, Server, TEST_CACHE,
};

/// Generous bound for the server to notice a change and settle on it
/// (behaviour deadline, not a speed target: the settle time is 1 s).
const SETTLE_DEADLINE: Duration = Duration::from_secs(20);

/// `cellucid serve` of `inputs` with its own CSR index folder.
fn serve(inputs: &[&Path]) -> Server {
    let mut args = vec!["--no-web-ui", "--cache-dir", TEST_CACHE];
    for input in inputs {
        args.push(input.to_str().expect("UTF-8 path"));
    }
    Server::start(&args)
}

/// A temp folder holding a copy of `fixture_rel` named `name`.
fn copy_input(fixture_rel: &str, name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::copy(fixture(fixture_rel), &path).unwrap();
    (dir, path)
}

/// Asserts the server process is still running (not a zombie: a process
/// killed by SIGBUS stays one until the test reaps it).
fn assert_alive(server: &mut Server) {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.pid())).unwrap_or_default();
    let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
    assert!(
        matches!(state, Some(Some(c)) if c != 'Z' && c != 'X'),
        "the server died ({stat:?}); stderr: {:?}",
        server.stderr()
    );
}

/// The demo exports still answer (another dataset of the same server).
fn assert_demo_serves(server: &Server) {
    let reply = get(&server.url("/synthetic-trajectory-1d/obs_manifest.json"));
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// GETs every path in turn; `None` for a request that got no reply (the
/// server died under it).
fn try_get_all(server: &Server, paths: &[String]) -> Vec<Option<Reply>> {
    paths
        .iter()
        .map(|path| {
            let url = server.url(path);
            std::panic::catch_unwind(|| get(&url)).ok()
        })
        .collect()
}

/// GETs `path` until `done` accepts the reply or the deadline passes.
fn poll(server: &Server, path: &str, done: impl Fn(&Reply) -> bool) {
    let started = Instant::now();
    loop {
        let reply = get(&server.url(path));
        if done(&reply) {
            return;
        }
        assert!(
            started.elapsed() < SETTLE_DEADLINE,
            "{path} never settled: {} {}",
            reply.status,
            reply.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Rewrites `path` in place with `bytes`, as `write_h5ad(same_path)` does:
/// the same inode, truncated, then written.
fn rewrite_in_place(path: &Path, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    file.write_all(bytes).unwrap();
    file.sync_all().unwrap();
}

/// The synthesised files a folder viewer asks for first, per dataset `id`.
fn synthesised(id: &str) -> Vec<String> {
    [
        "obs_manifest.json",
        "obs/1.values.f32",
        "obs/0.codes.u8",
        "var/5.values.f32",
        "var/100.values.f32",
        "embeddings/0_2d.bin",
        "points_2d.bin",
        "connectivity/edges.src.u32.bin",
    ]
    .iter()
    .map(|k| format!("/{id}/{k}"))
    .collect()
}

#[test]
fn an_h5ad_truncated_while_served_answers_503_and_the_server_lives() {
    let (_dir, path) = copy_input("anndata/pbmc68k_reduced.h5ad", "a.h5ad");
    let mut server = serve(&[&path, &demo()]);
    assert_eq!(get(&server.url("/a/obs_manifest.json")).status, 200);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(300_000)
        .unwrap();
    // Uncached files first: those are what read the shrunk file.
    let mut urls = synthesised("a");
    urls.reverse();
    let replies = try_get_all(&server, &urls);
    assert_alive(&mut server);
    for (url, reply) in urls.iter().zip(replies) {
        let reply = reply.unwrap_or_else(|| panic!("{url}: no reply"));
        // Kept files of the old version may not be served either: the input
        // changed, so the dataset is unavailable until a complete version.
        assert_eq!(reply.status, 503, "{url}: {}", reply.text());
        assert_eq!(reply.header("retry-after"), Some("1"), "{url}");
    }
    let raw = get(&server.url("/_cellucid/anndata/a.h5ad"));
    assert_eq!(raw.status, 503, "{}", raw.text());
    assert_alive(&mut server);
    assert_demo_serves(&server);
    // After the settle time it is still broken: still 503, with the reason.
    std::thread::sleep(Duration::from_millis(1200));
    let reply = get(&server.url("/a/var/7.values.f32"));
    assert_eq!(reply.status, 503);
    assert!(
        reply.text().contains("cannot be opened"),
        "{}",
        reply.text()
    );
    assert_alive(&mut server);
    assert_demo_serves(&server);
}

#[test]
fn an_h5ad_resaved_smaller_in_place_is_served_as_its_new_version() {
    let (_dir, path) = copy_input("anndata/pbmc68k_reduced.h5ad", "a.h5ad");
    let mut server = serve(&[&path, &demo()]);
    assert_eq!(get(&server.url("/a/obs_manifest.json")).status, 200);
    let old_tag = get(&server.url("/a/var/5.values.f32"))
        .header("etag")
        .unwrap()
        .to_owned();
    let smaller = std::fs::read(fixture(
        "prepared-0.9.5/pbmc68k_reduced.sparse.cellucid.h5ad",
    ))
    .unwrap();
    assert!(smaller.len() < std::fs::metadata(&path).unwrap().len() as usize);
    rewrite_in_place(&path, &smaller);
    // Until it is opened again every request gets 503 or the new version;
    // never a crash.
    let mut urls = synthesised("a");
    urls.reverse();
    let replies = try_get_all(&server, &urls);
    assert_alive(&mut server);
    for (url, reply) in urls.iter().zip(replies) {
        let status = reply.map(|r| r.status);
        assert!(matches!(status, Some(200 | 503 | 404)), "{url}: {status:?}");
    }
    poll(&server, "/_cellucid/datasets", |r| {
        r.status == 200
            && r.json()["datasets"][0]["anndata"]["file"]["size"] == smaller.len() as u64
    });
    let raw = get(&server.url("/_cellucid/anndata/a.h5ad"));
    assert_eq!(raw.status, 200);
    assert_eq!(raw.body, smaller, "the raw route serves the new bytes");
    let gene = get(&server.url("/a/var/5.values.f32"));
    assert_eq!(gene.status, 200, "{}", gene.text());
    assert_ne!(gene.header("etag"), Some(old_tag.as_str()));
    // The old tag is no longer current.
    let revalidated = request(
        "GET",
        &server.url("/a/var/5.values.f32"),
        &[("if-none-match", &old_tag)],
    );
    assert_eq!(revalidated.status, 200);
    assert_alive(&mut server);
    assert_demo_serves(&server);
}

#[test]
fn a_truncated_zarr_zip_answers_503_and_the_server_lives() {
    let (_dir, path) = copy_input(
        "prepared-0.9.5/pbmc68k_reduced.cellucid.zarr.zip",
        "z.zarr.zip",
    );
    let mut server = serve(&[&path, &demo()]);
    let datasets = get(&server.url("/_cellucid/datasets")).json();
    let id = datasets["datasets"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        get(&server.url(&format!("/{id}/obs_manifest.json"))).status,
        200
    );
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    let mut urls = synthesised(&id);
    urls.reverse();
    let replies = try_get_all(&server, &urls);
    assert_alive(&mut server);
    for (url, reply) in urls.iter().zip(replies) {
        let status = reply.map(|r| r.status);
        assert_eq!(status, Some(503), "{url}");
    }
    assert_demo_serves(&server);
}

#[test]
fn an_h5ad_replaced_by_rename_is_described_by_every_route_as_the_new_file() {
    let (dir, path) = copy_input("anndata/pbmc68k_reduced.h5ad", "a.h5ad");
    let mut server = serve(&[&path, &demo()]);
    let catalog = get(&server.url("/datasets.json")).json();
    assert_eq!(catalog["datasets"][0]["n_cells"], 700);
    assert_eq!(get(&server.url("/a/obs_manifest.json")).status, 200);

    let staged = dir.path().join("a.h5ad.tmp");
    std::fs::copy(fixture("anndata/tiny.h5ad"), &staged).unwrap();
    std::fs::rename(&staged, &path).unwrap();
    let new_bytes = std::fs::read(&path).unwrap();

    poll(&server, "/_cellucid/datasets", |r| {
        r.status == 200
            && r.json()["datasets"][0]["anndata"]["file"]["size"] == new_bytes.len() as u64
    });
    let raw = get(&server.url("/_cellucid/anndata/a.h5ad"));
    assert_eq!(raw.body, new_bytes);
    let catalog = get(&server.url("/datasets.json")).json();
    assert_eq!(catalog["datasets"][0]["n_cells"], 6, "{catalog}");
    let identity = get(&server.url("/a/dataset_identity.json"));
    if identity.status == 200 {
        let text = identity.text();
        assert!(!text.contains("700"), "still the old dataset: {text}");
    }
    assert_alive(&mut server);
    assert_demo_serves(&server);
}

/// A one-dataset export copy with a large file `big.bin` of `size` bytes of
/// `fill`.
fn export_with_big_file(size: usize, fill: u8) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("export");
    copy_tree(&demo().join("synthetic-trajectory-1d"), &root);
    let big = root.join("big.bin");
    std::fs::write(&big, vec![fill; size]).unwrap();
    (dir, big)
}

#[test]
fn an_export_file_rewritten_in_place_during_downloads_never_gives_a_torn_body() {
    const SIZE: usize = 6 * 1024 * 1024;
    let (dir, big) = export_with_big_file(SIZE, b'a');
    let mut server = serve(&[&dir.path().join("export")]);
    std::thread::sleep(Duration::from_millis(200));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut fill = b'b';
            let mut round = 0u32;
            while !stop.load(Ordering::Relaxed) {
                rewrite_in_place(&big, &vec![fill; SIZE]);
                fill = if fill == b'a' { b'b' } else { b'a' };
                // Bursts of rewrites, then a pause in which downloads can
                // finish and others are caught mid-body by the next burst.
                round += 1;
                let pause = if round.is_multiple_of(3) { 400 } else { 30 };
                std::thread::sleep(Duration::from_millis(pause));
            }
        })
    };
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let stop = Arc::clone(&stop);
            let server_ref = ServerRef {
                addr: server.addr,
                host: server.host(),
            };
            std::thread::spawn(move || {
                let mut complete = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if let Some(got) = server_ref.slow_get("/big.bin") {
                        complete.push(got);
                    }
                }
                complete
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let mut by_tag: std::collections::HashMap<String, u8> = std::collections::HashMap::new();
    let mut whole = 0;
    for reader in readers {
        for (status, etag, body) in reader.join().unwrap() {
            if status != 200 {
                assert_eq!(status, 503, "only a clean refusal is allowed");
                continue;
            }
            whole += 1;
            // A writer preempted between its truncation and its write leaves
            // an empty file for a while: a real version, served as such.
            assert!(body.len() == SIZE || body.is_empty(), "{}", body.len());
            let first = body.first().copied().unwrap_or(0);
            assert!(
                body.iter().all(|&b| b == first),
                "a 200 body mixes two versions under {etag}"
            );
            // One tag names one content.
            let seen = *by_tag.entry(etag.clone()).or_insert(first);
            assert_eq!(seen, first, "{etag} labels two contents");
        }
    }
    assert!(whole > 0, "no download completed: the test proved nothing");
    assert_alive(&mut server);
}

/// What a reader thread needs of the server.
struct ServerRef {
    addr: std::net::SocketAddr,
    host: String,
}

impl ServerRef {
    fn slow_get(&self, path: &str) -> Option<(u16, String, Vec<u8>)> {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.host
        )
        .unwrap();
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => return None,
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let reply = parse_reply(&buf)?;
        if reply.status == 200 {
            let declared: usize = reply.header("content-length")?.parse().ok()?;
            if reply.body.len() < declared {
                return None; // cut short: allowed
            }
        }
        let etag = reply.header("etag").unwrap_or_default().to_owned();
        Some((reply.status, etag, reply.body))
    }
}

#[test]
fn a_rewrite_that_restores_the_mtime_changes_the_etag() {
    let (dir, big) = export_with_big_file(300 * 1024, b'a');
    let server = serve(&[&dir.path().join("export")]);
    std::thread::sleep(Duration::from_millis(200));
    let first = get(&server.url("/big.bin"));
    assert_eq!(first.status, 200);
    let old_tag = first.header("etag").unwrap().to_owned();
    let mtime = std::fs::metadata(&big).unwrap().modified().unwrap();
    // Same size, new bytes, mtime put back (`cp -p`, `touch -r`).
    rewrite_in_place(&big, &vec![b'b'; 300 * 1024]);
    std::fs::File::options()
        .write(true)
        .open(&big)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(std::fs::metadata(&big).unwrap().modified().unwrap(), mtime);
    let again = request(
        "GET",
        &server.url("/big.bin"),
        &[("if-none-match", &old_tag)],
    );
    assert_eq!(
        again.status, 200,
        "the old ETag must not validate new bytes"
    );
    assert_ne!(again.header("etag"), Some(old_tag.as_str()));
    assert!(again.body.iter().all(|&b| b == b'b'));
    let ranged = request(
        "GET",
        &server.url("/big.bin"),
        &[("range", "bytes=0-9"), ("if-range", &old_tag)],
    );
    assert_eq!(
        ranged.status, 200,
        "a stale If-Range gets the whole new file"
    );
}

#[test]
fn an_h5ad_that_grows_shrinks_and_is_rewritten_while_requests_run_never_ends_the_server() {
    let (dir, path) = copy_input("anndata/pbmc68k_reduced.h5ad", "a.h5ad");
    let mut server = serve(&[&path, &demo()]);
    assert_eq!(get(&server.url("/a/obs_manifest.json")).status, 200);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|n| {
            let stop = Arc::clone(&stop);
            let urls: Vec<String> = synthesised("a")
                .into_iter()
                .chain([
                    "/_cellucid/anndata/a.h5ad".to_owned(),
                    "/_cellucid/datasets".to_owned(),
                ])
                .map(|path| server.url(&path))
                .collect();
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                let mut i = n;
                while !stop.load(Ordering::Relaxed) {
                    let url = &urls[i % urls.len()];
                    i += 1;
                    // A reply cut short is allowed; no reply at all is not.
                    match crate::support::client().get(url).call() {
                        Ok(mut reply) => {
                            statuses.push(reply.status().as_u16());
                            let _ = reply.body_mut().read_to_vec();
                        }
                        Err(ureq::Error::Io(err))
                            if err.kind() != std::io::ErrorKind::ConnectionRefused =>
                        {
                            statuses.push(0);
                        }
                        Err(err) => panic!("{url}: {err}"),
                    }
                }
                statuses
            })
        })
        .collect();
    let original = std::fs::read(&path).unwrap();
    let grown = [original, vec![0u8; 1 << 20]].concat();
    let smaller = std::fs::read(fixture(
        "prepared-0.9.5/pbmc68k_reduced.sparse.cellucid.h5ad",
    ))
    .unwrap();
    for step in 0..6 {
        match step % 3 {
            0 => rewrite_in_place(&path, &grown),
            1 => std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(200_000)
                .unwrap(),
            _ => {
                let staged = dir.path().join("staged.h5ad");
                std::fs::write(&staged, &smaller).unwrap();
                std::fs::rename(&staged, &path).unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(700));
        assert_alive(&mut server);
    }
    stop.store(true, Ordering::Relaxed);
    let mut seen = std::collections::BTreeSet::new();
    for client in clients {
        seen.extend(client.join().unwrap());
    }
    assert!(
        seen.iter().all(|s| matches!(s, 0 | 200 | 206 | 404 | 503)),
        "unexpected statuses: {seen:?}"
    );
    assert_alive(&mut server);
    assert_demo_serves(&server);
    // The last step renamed the smaller file in: once settled, it is served.
    poll(&server, "/_cellucid/datasets", |r| {
        r.status == 200
            && r.json()["datasets"][0]["anndata"]["file"]["size"] == smaller.len() as u64
    });
    assert_eq!(get(&server.url("/a/var/5.values.f32")).status, 200);
}
