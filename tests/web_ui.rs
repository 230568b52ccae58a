//! The viewer UI proxy end to end: the real binary, a real test upstream on
//! loopback (tests/support/upstream.rs), a cache dir in a tempdir.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::upstream::{
    is_downloading_page, is_unavailable_page, poll_root, settled_root, Mode, Silent, UiBuild,
    Upstream,
};
use crate::support::{cellucid, demo, get, request, sha256_hex, Server};

/// `cellucid cache ARGS… --web-cache-dir DIR`, run to the end.
fn cache(dir: &Path, args: &[&str]) -> Output {
    cache_command(dir, args).output().unwrap()
}

fn cache_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = cellucid();
    cmd.arg("cache")
        .args(args)
        .arg("--web-cache-dir")
        .arg(dir)
        .env_remove("CELLUCID_WEB_PROXY_CACHE_DIR")
        .stdin(Stdio::null());
    cmd
}

fn prefetch(dir: &Path, upstream: &str, extra: &[&str]) -> Output {
    let mut args = vec!["prefetch", "--web-source-url", upstream];
    args.extend_from_slice(extra);
    cache(dir, &args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Starts `cellucid serve` on the demo exports with the UI from `source`.
fn serve(source: &str, dir: &Path, extra: &[&str]) -> Server {
    let demo = demo();
    let mut args = vec![
        "--web-source-url",
        source,
        "--web-cache-dir",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(demo.to_str().unwrap());
    Server::start(&args)
}

/// A loopback URL where nothing listens.
fn dead_source() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// The directory of the active generation.
fn active_generation(dir: &Path) -> PathBuf {
    let pointer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("active.json")).unwrap()).unwrap();
    dir.join(pointer["active"].as_str().unwrap())
}

fn generations(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("gen-"))
        .collect();
    names.sort();
    names
}

/// The banner's `Viewer UI …` line (printed just after the URL the harness waits for).
fn banner_ui_line(server: &Server) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = server
            .stderr()
            .into_iter()
            .find(|l| l.starts_with("Viewer UI "))
        {
            return line;
        }
        if Instant::now() > deadline {
            return String::new();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_first_start_downloads_verifies_and_serves_the_ui_with_the_right_headers() {
    let build = UiBuild::new("build-one");
    let upstream = Upstream::start(build.clone());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("web");
    let server = serve(&upstream.url(), &dir, &[]);
    assert!(
        banner_ui_line(&server).contains("downloading from"),
        "{:?}",
        server.stderr()
    );

    let index = settled_root(&server);
    assert_eq!(index.status, 200);
    assert_eq!(index.body, build.files["index.html"].bytes);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(index.header("cache-control"), Some("no-cache"));
    let sha = sha256_hex(&index.body);
    assert_eq!(index.header("etag"), Some(format!("\"{sha}\"").as_str()));
    assert_eq!(get(&server.url("/index.html")).body, index.body);
    assert_eq!(get(&server.url("/?anndata=true")).body, index.body);

    let script = build.script_path();
    let js = get(&server.url(&format!("/{script}")));
    assert_eq!(js.status, 200);
    assert_eq!(js.body, build.files[&script].bytes);
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        js.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let etag = js.header("etag").unwrap().to_owned();
    assert_eq!(etag, format!("\"{}\"", sha256_hex(&js.body)));
    // 304 and Range work as for data files.
    let again = request(
        "GET",
        &server.url(&format!("/{script}")),
        &[("If-None-Match", &etag)],
    );
    assert_eq!(again.status, 304);
    let part = request(
        "GET",
        &server.url(&format!("/{script}")),
        &[("Range", "bytes=0-9")],
    );
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &build.files[&script].bytes[..10]);

    // The root icon is served, but not cached forever (no hash in its name).
    let icon = get(&server.url("/favicon.ico"));
    assert_eq!(icon.status, 200);
    assert_eq!(icon.header("cache-control"), Some("no-cache"));
    // Undeclared paths are 404; API and data routes are untouched.
    assert_eq!(get(&server.url("/assets/nope-12345678.js")).status, 404);
    assert_eq!(get(&server.url("/cellucid-web-assets.json")).status, 404);
    assert_eq!(get(&server.url("/_cellucid/health")).status, 200);
    let datasets = get(&server.url("/_cellucid/datasets")).json();
    assert_eq!(datasets["datasets"].as_array().unwrap().len(), 3);

    // Every request said who it was.
    let agents = upstream.user_agents();
    assert!(!agents.is_empty());
    assert!(
        agents.iter().all(|a| a.starts_with("cellucid-rs/")),
        "{agents:?}"
    );

    // The cache verifies.
    let verify = cache(&dir, &["verify"]);
    assert!(verify.status.success(), "{}", text(&verify.stderr));
    assert!(text(&verify.stdout).contains("build-one"));
}

#[test]
fn an_inventory_can_never_shadow_api_or_data_routes() {
    let mut build = UiBuild::new("shadow");
    for path in [
        "_cellucid/health",
        "datasets.json",
        "synthetic-cell-types-2d/dataset_identity.json",
    ] {
        build.files.insert(
            path.to_owned(),
            crate::support::upstream::UiFile {
                bytes: b"{\"shadowed\":true}".to_vec(),
                content_type: "application/json".to_owned(),
            },
        );
    }
    let upstream = Upstream::start(build);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("web");
    let server = serve(&upstream.url(), &dir, &[]);
    assert_eq!(settled_root(&server).status, 200);
    for path in [
        "/_cellucid/health",
        "/datasets.json",
        "/synthetic-cell-types-2d/dataset_identity.json",
    ] {
        let reply = get(&server.url(path));
        assert_eq!(reply.status, 200, "{path}");
        assert!(
            !reply.text().contains("shadowed"),
            "{path}: {}",
            reply.text()
        );
    }
}

#[test]
fn an_offline_restart_serves_the_cached_ui_without_the_network() {
    let build = UiBuild::new("offline-build");
    let mut upstream = Upstream::start(build.clone());
    let source = upstream.url();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("web");
    let out = prefetch(&dir, &source, &["--quiet"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("offline-build"),
        "{}",
        text(&out.stdout)
    );
    upstream.stop();

    let started = Instant::now();
    let server = serve(&source, &dir, &[]);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        banner_ui_line(&server).contains("build offline-build from the offline cache"),
        "{:?}",
        server.stderr()
    );
    let index = get(&server.url("/"));
    assert_eq!(index.status, 200);
    assert_eq!(index.body, build.files["index.html"].bytes);
    let script = build.script_path();
    assert_eq!(get(&server.url(&format!("/{script}"))).status, 200);
}

#[test]
fn a_corrupted_cache_file_is_detected_and_never_served() {
    let build = UiBuild::new("corrupt-me");
    let mut upstream = Upstream::start(build.clone());
    let source = upstream.url();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("web");
    assert!(prefetch(&dir, &source, &["--quiet"]).status.success());
    let script = build.script_path();
    let server = serve(&source, &dir, &[]);
    assert_eq!(get(&server.url(&format!("/{script}"))).status, 200);

    // Damage the file on disk while the server runs: same size, one byte.
    let on_disk = active_generation(&dir).join(&script);
    let mut bytes = std::fs::read(&on_disk).unwrap();
    bytes[3] ^= 0x01;
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&on_disk, &bytes).unwrap();
    let reply = get(&server.url(&format!("/{script}")));
    assert_eq!(reply.status, 500);
    assert_ne!(reply.body, bytes);
    assert!(
        reply.text().contains("cellucid cache prefetch --force"),
        "{}",
        reply.text()
    );

    // A damaged index.html: `/` explains the fix instead of a bare 500.
    let index_on_disk = active_generation(&dir).join("index.html");
    std::fs::write(&index_on_disk, b"<html>tampered</html>").unwrap();
    let page = get(&server.url("/"));
    assert_eq!(page.status, 503);
    assert!(
        page.text().contains("damaged") && page.text().contains("--force"),
        "{}",
        page.text()
    );

    let verify = cache(&dir, &["verify"]);
    assert_eq!(verify.status.code(), Some(1));
    let err = text(&verify.stderr);
    assert!(
        err.contains(&script) && err.contains("prefetch --force"),
        "{err}"
    );
    drop(server);

    // A restart with no network does not serve the damaged build…
    upstream.stop();
    let server = serve(&source, &dir, &[]);
    assert!(
        banner_ui_line(&server).contains("downloading from"),
        "{:?}",
        server.stderr()
    );
    let page = settled_root(&server);
    assert!(is_unavailable_page(&page), "{}", page.text());
    assert!(
        page.text().contains("damaged") && page.text().contains("downloading a fresh copy failed"),
        "{}",
        page.text()
    );
    drop(server);
    // …and prefetch --force repairs it once the source is back.
    let upstream = Upstream::start(build);
    let out = prefetch(&dir, &upstream.url(), &["--quiet", "--force"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(cache(&dir, &["verify"]).status.success());
}

#[test]
fn a_new_build_is_swapped_in_atomically_while_requests_run() {
    let old = UiBuild::new("build-a");
    let new = UiBuild::new("build-b");
    let upstream = Upstream::start(old.clone());
    let source = upstream.url();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("web");
    assert!(prefetch(&dir, &source, &["--quiet"]).status.success());
    let server = serve(&source, &dir, &[]);
    upstream.set_build(new.clone());

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..3 {
        let stop = std::sync::Arc::clone(&stop);
        let base = server.base.clone();
        let (old, new) = (old.clone(), new.clone());
        clients.push(std::thread::spawn(move || {
            let mut seen_new = 0;
            let mut requests = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // A page load: index.html, then the script it names.
                let index = get(&format!("{base}/"));
                assert_eq!(index.status, 200);
                let build = if index.body == old.files["index.html"].bytes {
                    &old
                } else {
                    assert_eq!(index.body, new.files["index.html"].bytes, "a mixed index");
                    seen_new += 1;
                    &new
                };
                let script = build.script_path();
                let js = get(&format!("{base}/{script}"));
                assert_eq!(js.status, 200, "{script} after its index");
                assert_eq!(js.body, build.files[&script].bytes);
                requests += 2;
            }
            (requests, seen_new)
        }));
    }
    std::thread::sleep(Duration::from_millis(200));
    let out = prefetch(&dir, &source, &["--quiet"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total_new = 0;
    for client in clients {
        let (requests, seen_new) = client.join().unwrap();
        assert!(requests > 0);
        total_new += seen_new;
    }
    assert!(total_new > 0, "the new build was never served");
    assert_eq!(get(&server.url("/")).body, new.files["index.html"].bytes);
    // The last good generation is kept beside the new one.
    assert_eq!(generations(&dir).len(), 2, "{:?}", generations(&dir));
}

#[test]
fn two_processes_prefetching_the_same_dir_both_succeed_and_download_once() {
    let build = UiBuild::new("shared");
    let upstream = Upstream::start(build.clone());
    // Slow enough that the two runs overlap.
    upstream.set_mode(Mode::Slow(Duration::from_millis(150)));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("web");
    let source = upstream.url();
    let spawn = || {
        cache_command(&dir, &["prefetch", "--quiet", "--web-source-url", &source])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", text(&a.stderr));
    assert!(b.status.success(), "{}", text(&b.stderr));
    let outputs = format!("{}{}", text(&a.stdout), text(&b.stdout));
    assert!(outputs.contains("already cached"), "{outputs}");
    assert_eq!(generations(&dir).len(), 1);
    assert!(cache(&dir, &["verify"]).status.success());
    let script_fetches = upstream
        .requests()
        .iter()
        .filter(|p| p.ends_with(&build.script_path()))
        .count();
    assert_eq!(script_fetches, 1);
}

#[test]
fn a_misbehaving_upstream_is_refused_and_the_last_good_build_kept() {
    let good = UiBuild::new("good");
    let upstream = Upstream::start(good);
    let source = upstream.url();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("web");
    assert!(prefetch(&dir, &source, &["--quiet"]).status.success());
    let next = UiBuild::new("next");
    upstream.set_build(next.clone());
    let script = next.script_path();
    let cases = [
        (Mode::WrongHash(script.clone()), "SHA-256"),
        (Mode::Truncated(script), "cut short"),
        (Mode::ServerError, "HTTP 500"),
        (Mode::RedirectElsewhere, "another site"),
        (Mode::Slow(Duration::from_secs(5)), "timed out"),
    ];
    for (mode, expected) in cases {
        upstream.set_mode(mode.clone());
        let started = Instant::now();
        let out = prefetch(&dir, &source, &["--quiet", "--web-timeout", "1"]);
        assert_eq!(out.status.code(), Some(1), "{mode:?}");
        let err = text(&out.stderr);
        assert!(err.contains(expected), "{mode:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{mode:?}: {err}");
        assert!(started.elapsed() < Duration::from_secs(20), "{mode:?}");
        // The good build is still the active one, intact, with no stage left.
        let verify = cache(&dir, &["verify"]);
        assert!(
            verify.status.success(),
            "{mode:?}: {}",
            text(&verify.stderr)
        );
        assert!(text(&verify.stdout).contains("build good"));
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".staging-"))
            .collect();
        assert!(leftovers.is_empty(), "{mode:?}: {leftovers:?}");
    }
    upstream.set_mode(Mode::Normal);
    let out = prefetch(&dir, &source, &["--quiet"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("next"));
}

#[test]
fn redirects_within_the_source_are_followed() {
    let build = UiBuild::new("moved");
    let upstream = Upstream::start(build);
    upstream.set_mode(Mode::RedirectSameHost);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("web");
    let out = prefetch(&dir, &upstream.url(), &["--quiet"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(upstream.requests().iter().any(|p| p.starts_with("/moved/")));
    assert!(cache(&dir, &["verify"]).status.success());
}

#[test]
fn no_cache_and_no_network_give_the_503_page_and_data_still_works() {
    let source = dead_source();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("web");
    let server = serve(&source, &dir, &[]);
    let line = banner_ui_line(&server);
    assert!(line.contains("downloading from"), "{line}");
    assert!(is_unavailable_page(&settled_root(&server)));
    for path in ["/", "/index.html"] {
        let page = get(&server.url(path));
        assert_eq!(page.status, 503);
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        let csp = page.header("content-security-policy").unwrap();
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        let html = page.text();
        for needle in [
            "could not be loaded",
            "connection refused",
            source.as_str(),
            dir.to_str().unwrap(),
            "cellucid cache prefetch",
            "CELLUCID_WEB_PROXY_CACHE_DIR",
        ] {
            assert!(html.contains(needle), "{needle} missing from the page");
        }
        assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("<link"));
    }
    assert_eq!(get(&server.url("/assets/app-12345678.js")).status, 404);
    assert_eq!(get(&server.url("/_cellucid/datasets")).status, 200);
    assert_eq!(
        get(&server.url("/synthetic-cell-types-2d/dataset_identity.json")).status,
        200
    );
}

#[test]
fn a_source_without_an_inventory_is_crawled_from_index_html() {
    let build = UiBuild::new("crawled");
    let upstream = Upstream::start(build.clone());
    upstream.set_publish_inventory(false);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("web");
    let out = prefetch(&dir, &upstream.url(), &["--quiet"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(cache(&dir, &["verify"]).status.success());
    let server = serve(&dead_source(), &dir, &[]);
    for (path, file) in &build.files {
        let reply = get(&server.url(&format!("/{path}")));
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(&reply.body, &file.bytes, "{path}");
    }
}

#[test]
fn a_cached_ui_is_served_at_once_and_refreshed_in_the_background() {
    let old = UiBuild::new("old");
    let new = UiBuild::new("new");
    let upstream = Upstream::start(old.clone());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("web");
    assert!(prefetch(&dir, &upstream.url(), &["--quiet"])
        .status
        .success());
    upstream.set_build(new.clone());
    // A source that takes far too long does not delay the start.
    upstream.set_mode(Mode::Slow(Duration::from_secs(30)));
    let started = Instant::now();
    let server = serve(&upstream.url(), &dir, &[]);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        banner_ui_line(&server).contains("build old"),
        "{:?}",
        server.stderr()
    );
    assert!(banner_ui_line(&server).contains("in the background"));
    assert_eq!(get(&server.url("/")).body, old.files["index.html"].bytes);
    drop(server);

    // A responsive source: the new build arrives while the server runs.
    upstream.set_mode(Mode::Normal);
    let server = serve(&upstream.url(), &dir, &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = get(&server.url("/")).body;
        if body == new.files["index.html"].bytes {
            break;
        }
        assert_eq!(body, old.files["index.html"].bytes);
        assert!(Instant::now() < deadline, "the new build never arrived");
        std::thread::sleep(Duration::from_millis(100));
    }

    // --refresh-web-ui checks before serving.
    drop(server);
    upstream.set_build(UiBuild::new("newest"));
    let server = serve(&upstream.url(), &dir, &["--refresh-web-ui"]);
    assert!(
        banner_ui_line(&server).contains("build newest"),
        "{:?}",
        server.stderr()
    );
}

#[test]
fn no_web_ui_contacts_nothing() {
    let upstream = Upstream::start(UiBuild::new("unused"));
    let tmp = tempfile::tempdir().unwrap();
    let server = serve(&upstream.url(), &tmp.path().join("web"), &["--no-web-ui"]);
    assert_eq!(get(&server.url("/")).status, 503);
    assert!(banner_ui_line(&server).contains("--no-web-ui"));
    assert!(upstream.requests().is_empty());
    assert!(!tmp.path().join("web").exists());
}

#[test]
fn cache_dir_reports_the_choice_and_why() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("web");
    let out = cache(&dir, &["dir"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).trim(), dir.to_str().unwrap());
    assert!(text(&out.stderr).contains("--web-cache-dir"));

    let env_dir = tmp.path().join("from-env");
    let out = cellucid()
        .args(["cache", "dir"])
        .env("CELLUCID_WEB_PROXY_CACHE_DIR", &env_dir)
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout).trim(), env_dir.to_str().unwrap());
    assert!(text(&out.stderr).contains("CELLUCID_WEB_PROXY_CACHE_DIR"));

    let out = cellucid()
        .args(["cache", "dir"])
        .env_remove("CELLUCID_WEB_PROXY_CACHE_DIR")
        .env("XDG_CACHE_HOME", tmp.path().join("xdg"))
        .output()
        .unwrap();
    assert_eq!(
        text(&out.stdout).trim(),
        tmp.path().join("xdg/cellucid/web").to_str().unwrap()
    );

    let out = cellucid()
        .args(["cache", "dir"])
        .env_remove("CELLUCID_WEB_PROXY_CACHE_DIR")
        .env_remove("XDG_CACHE_HOME")
        .env("HOME", tmp.path().join("home"))
        .output()
        .unwrap();
    assert_eq!(
        text(&out.stdout).trim(),
        tmp.path()
            .join("home/.cache/cellucid/web")
            .to_str()
            .unwrap()
    );
}

#[test]
fn cache_clear_never_deletes_a_home_directory_or_follows_a_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join("work")).unwrap();
    std::fs::write(home.join("precious.txt"), b"keep me").unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&home, &link).unwrap();
    for (dir, why) in [
        (home.clone(), "home directory"),
        (tmp.path().to_path_buf(), "home directory"),
        (home.join("work"), "working directory"),
        (link, "symbolic link"),
        (PathBuf::from("/"), "filesystem root"),
    ] {
        let out = cellucid()
            .args(["cache", "clear", "--web-cache-dir"])
            .arg(&dir)
            .env("HOME", &home)
            .current_dir(home.join("work"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{dir:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains(why) && err.lines().count() == 1,
            "{dir:?}: {err}"
        );
    }
    assert_eq!(
        std::fs::read(home.join("precious.txt")).unwrap(),
        b"keep me"
    );

    // A real cache is cleared, and a stranger's file in it is left alone.
    let upstream = Upstream::start(UiBuild::new("clear-me"));
    let dir = tmp.path().join("web");
    assert!(prefetch(&dir, &upstream.url(), &["--quiet"])
        .status
        .success());
    let out = cache(&dir, &["clear"]);
    assert!(out.status.success());
    assert!(!dir.exists());
    assert!(prefetch(&dir, &upstream.url(), &["--quiet"])
        .status
        .success());
    std::fs::write(dir.join("notes.txt"), b"mine").unwrap();
    assert!(cache(&dir, &["clear"]).status.success());
    assert_eq!(std::fs::read(dir.join("notes.txt")).unwrap(), b"mine");
    assert!(generations(&dir).is_empty());
    let verify = cache(&dir, &["verify"]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(text(&verify.stderr).contains("cellucid cache prefetch"));
}

#[test]
fn serve_refuses_an_unsafe_or_unwritable_cache_dir_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("real");
    std::fs::create_dir(&target).unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let demo = demo();
    let run = |dir: &Path, source: &str| {
        cellucid()
            .args([
                "serve",
                "--no-browser",
                "--port",
                "0",
                "--web-source-url",
                source,
                "--web-cache-dir",
            ])
            .arg(dir)
            .arg(&demo)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&link, "http://127.0.0.1:1");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("symbolic link"),
        "{}",
        text(&out.stderr)
    );

    let out = run(&tmp.path().join("x"), "http://example.org");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("https"), "{}", text(&out.stderr));

    // Unwritable (a regular file where the parent directory should be).
    let file = tmp.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let upstream = Upstream::start(UiBuild::new("w"));
    let out = run(&file.join("web"), &upstream.url());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot write the web cache dir"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn unchanged_files_are_reused_and_force_downloads_everything() {
    let first = UiBuild::new("reuse");
    let upstream = Upstream::start(first.clone());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("web");
    let out = prefetch(&dir, &upstream.url(), &["--quiet"]);
    assert!(
        text(&out.stdout).contains("4 files downloaded"),
        "{}",
        text(&out.stdout)
    );

    // Only the icon changes.
    let mut second = first.clone();
    second.files.get_mut("favicon.ico").unwrap().bytes = b"a new icon".to_vec();
    upstream.set_build(second);
    let out = prefetch(&dir, &upstream.url(), &["--quiet"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("1 files downloaded") && stdout.contains("3 reused"),
        "{stdout}"
    );
    let script = first.script_path();
    let script_fetches = || {
        upstream
            .requests()
            .iter()
            .filter(|p| p.ends_with(&script))
            .count()
    };
    assert_eq!(script_fetches(), 1);

    let out = prefetch(&dir, &upstream.url(), &["--quiet", "--force"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("4 files downloaded") && stdout.contains("0 reused"),
        "{stdout}"
    );
    assert_eq!(script_fetches(), 2);
    assert!(cache(&dir, &["verify"]).status.success());
}

#[test]
fn quiet_still_says_when_the_ui_is_unavailable() {
    let tmp = tempfile::tempdir().unwrap();
    let server = serve(&dead_source(), &tmp.path().join("web"), &["--quiet"]);
    assert!(is_unavailable_page(&settled_root(&server)));
    let warning = wait_for_line(&server, "could not be downloaded");
    assert!(
        warning.contains("WARN") && warning.contains("cellucid cache prefetch"),
        "{warning}"
    );
    // --refresh-web-ui checks first: the banner itself says so.
    drop(server);
    let server = serve(
        &dead_source(),
        &tmp.path().join("web"),
        &["--quiet", "--refresh-web-ui"],
    );
    let line = banner_ui_line(&server);
    assert!(
        line.contains("UNAVAILABLE") && line.contains("cellucid cache prefetch"),
        "{line}"
    );
    assert!(is_unavailable_page(&get(&server.url("/"))));
}

/// The first stderr line containing `needle` (waits at most 30 s).
fn wait_for_line(server: &Server, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(line) = server.stderr().into_iter().find(|l| l.contains(needle)) {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in {:?}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `serve` and measures how long the banner and a health answer
/// take: both must come at once, whatever the UI source does.
fn serve_timed(source: &str, dir: &Path, extra: &[&str]) -> Server {
    let started = Instant::now();
    let server = serve(source, dir, extra);
    let banner = started.elapsed();
    let asked = Instant::now();
    let health = get(&server.url("/_cellucid/health"));
    let answered = asked.elapsed();
    // Measured, for the record (`-- --nocapture`); the bound is generous
    // for a loaded CI machine, the target is well under a second.
    eprintln!("{source}: banner after {banner:?}, health answered in {answered:?}");
    assert_eq!(health.status, 200);
    assert!(banner < Duration::from_secs(3), "banner after {banner:?}");
    assert!(
        answered < Duration::from_secs(3),
        "health after {answered:?}"
    );
    let line = banner_ui_line(&server);
    assert!(
        line.contains("downloading from") && line.contains("in the background"),
        "{line}"
    );
    server
}

/// Checks the page `/` answers while the UI is being downloaded: small,
/// self-refreshing, loading nothing, linking only relatively.
fn assert_downloading_page(reply: &crate::support::Reply) {
    assert!(
        is_downloading_page(reply),
        "{}: {}",
        reply.status,
        reply.text()
    );
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = reply.header("content-security-policy").unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    let html = reply.text();
    assert!(html.contains(r#"<meta http-equiv="refresh" content="2">"#));
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("<link"));
    for link in html.split("href=\"").skip(1) {
        assert!(
            !link.starts_with('/') && !link.starts_with("http"),
            "{link}"
        );
    }
    assert!(html.len() < 4096, "{} bytes", html.len());
}

#[test]
fn a_source_that_accepts_and_never_answers_delays_nothing() {
    let silent = Silent::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("web");
    // Long enough that waiting for it at startup would fail the timing checks.
    let server = serve_timed(&silent.url(), &dir, &["--web-timeout", "5"]);
    assert_downloading_page(&get(&server.url("/")));
    assert_downloading_page(&get(&server.url("/index.html")));
    // Data is served meanwhile.
    assert_eq!(get(&server.url("/_cellucid/datasets")).status, 200);
    // The request times out: the offline page with the reason and the fix.
    let (page, before) = poll_root(&server, |r| !is_downloading_page(r));
    assert!(before.iter().all(is_downloading_page));
    assert!(is_unavailable_page(&page), "{}", page.text());
    let html = page.text();
    assert!(
        html.contains("timed out") && html.contains("cellucid cache prefetch"),
        "{html}"
    );
    assert!(wait_for_line(&server, "could not be downloaded").contains("timed out"));
}

#[test]
fn a_refused_source_delays_nothing_and_a_reload_retries_once_it_is_up() {
    let source = dead_source();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("web");
    let server = serve_timed(&source, &dir, &[]);
    // Refused at once: `/` may already be the offline page.
    let page = settled_root(&server);
    assert!(is_unavailable_page(&page), "{}", page.text());
    assert!(
        page.text().contains("connection refused"),
        "{}",
        page.text()
    );

    // The source comes up on the same address; reloading `/` retries, shows
    // the downloading page, then the UI.
    let build = UiBuild::new("came-up");
    let upstream = Upstream::start_on(source.trim_start_matches("http://"), build.clone());
    upstream.set_mode(Mode::Slow(Duration::from_millis(300)));
    let (index, before) = poll_root(&server, |r| r.status == 200);
    assert_eq!(index.body, build.files["index.html"].bytes);
    assert!(
        before.iter().any(is_downloading_page),
        "a retry shows the downloading page"
    );
    assert!(before
        .iter()
        .all(|r| is_downloading_page(r) || is_unavailable_page(r)));
    let script = build.script_path();
    assert_eq!(get(&server.url(&format!("/{script}"))).status, 200);
}

#[test]
fn a_slow_source_shows_the_downloading_page_then_the_ui() {
    let build = UiBuild::new("slow-build");
    let upstream = Upstream::start(build.clone());
    // Every request takes a while: the inventory, then the four files.
    upstream.set_mode(Mode::Slow(Duration::from_secs(2)));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("web");
    let server = serve_timed(&upstream.url(), &dir, &[]);
    assert_downloading_page(&get(&server.url("/")));
    let (index, before) = poll_root(&server, |r| !is_downloading_page(r));
    // Straight from the downloading page to the whole UI.
    assert_eq!(index.status, 200, "{}", index.text());
    assert_eq!(index.body, build.files["index.html"].bytes);
    assert!(
        before.iter().any(|r| r.text().contains("of 4 files")),
        "the page shows how far the download is"
    );
    for (path, file) in &build.files {
        let reply = get(&server.url(&format!("/{path}")));
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(&reply.body, &file.bytes, "{path}");
    }
    assert!(wait_for_line(&server, "downloaded, verified and served").contains("INFO"));
}
