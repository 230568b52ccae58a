//! The viewer UI and CORS in a real browser: Debian's headless Chromium
//! (installed by `.ci/run`; without it these tests say they were skipped)
//! loads pages through the real `cellucid` binary.
//! Chromium reads the page, runs its script, and `--dump-dom` gives the DOM
//! back after the page's fetches settle (`--virtual-time-budget`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::upstream::{settled_root, UiBuild, Upstream};
use crate::support::{cellucid, demo, get, repo, require_tool, Server};

/// The Chromium binary (Debian names it `chromium`), or `None` after a
/// one-line skip notice.
fn chromium() -> Option<PathBuf> {
    require_tool(
        &["chromium", "chromium-browser"],
        "apt-get install chromium; .ci/run does it",
    )
}

/// Runs headless Chromium with a fresh profile on `url` plus `extra` flags,
/// killed after 90 s; returns stdout.
fn run_chromium(chromium: &Path, url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=15000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let mut stdout = stdout;
        std::io::Read::read_to_string(&mut stdout, &mut out).ok();
        out
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish on {url}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

/// The DOM of `url` after its scripts ran.
fn dump_dom(chromium: &Path, url: &str) -> String {
    run_chromium(chromium, url, &["--dump-dom"])
}

/// The text Chromium's page wrote into `#out`.
fn out_text(dom: &str) -> String {
    let start = dom
        .find("id=\"out\"")
        .unwrap_or_else(|| panic!("no #out in {dom}"));
    let rest = &dom[start..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest.find("</div>").unwrap();
    rest[open..close].to_owned()
}

fn serve_ui(source: &str, cache: &Path) -> Server {
    let demo = demo();
    Server::start(&[
        "--web-source-url",
        source,
        "--web-cache-dir",
        cache.to_str().unwrap(),
        demo.to_str().unwrap(),
    ])
}

#[test]
fn chromium_loads_the_ui_online_then_offline_and_shows_the_fix_without_a_cache() {
    let Some(chromium) = chromium() else { return };
    let build = UiBuild::new("browser-build");
    let mut upstream = Upstream::start(build);
    let source = upstream.url();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("web");

    // What the page should find, read with a plain client.
    let expected = {
        let server = serve_ui(&source, &cache);
        let list = get(&server.url("/_cellucid/datasets")).json();
        let first = &list["datasets"][0];
        let identity = get(&server.url(&format!(
            "{}dataset_identity.json",
            first["path"].as_str().unwrap()
        )))
        .json();
        let expected = format!(
            "build=browser-build datasets={} first={} identity={}",
            list["datasets"].as_array().unwrap().len(),
            first["id"].as_str().unwrap(),
            identity["id"].as_str().unwrap()
        );
        // First start: downloaded (in the background), verified, and
        // running in the browser.
        assert_eq!(settled_root(&server).status, 200);
        assert_eq!(out_text(&dump_dom(&chromium, &server.url("/"))), expected);
        expected
    };

    // The upstream goes away; a restart still loads the UI from the cache.
    upstream.stop();
    let server = serve_ui(&source, &cache);
    assert_eq!(out_text(&dump_dom(&chromium, &server.url("/"))), expected);
    drop(server);

    // Empty cache, no upstream: the page says what is wrong and how to fix it.
    let out = cellucid()
        .args(["cache", "clear", "--web-cache-dir"])
        .arg(&cache)
        .output()
        .unwrap();
    assert!(out.status.success());
    let server = serve_ui(&source, &cache);
    assert_eq!(settled_root(&server).status, 503);
    let dom = dump_dom(&chromium, &server.url("/"));
    assert!(
        dom.contains("The Cellucid viewer UI could not be loaded"),
        "{dom}"
    );
    assert!(dom.contains("cellucid cache prefetch"), "{dom}");
    assert!(dom.contains(cache.to_str().unwrap()), "{dom}");

    // A screenshot of that page, for the README (docs/offline-page.png).
    let shot = tmp.path().join("offline-page.png");
    run_chromium(
        &chromium,
        &server.url("/"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1000,1000",
            "--hide-scrollbars",
        ],
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    if std::env::var_os("CELLUCID_UPDATE_DOCS_SCREENSHOT").is_some() {
        std::fs::write(repo().join("docs/offline-page.png"), &png).unwrap();
    }
}

/// A page that fetches a data file from `server` and writes the outcome.
fn cors_page(server: &str) -> String {
    format!(
        "<!doctype html><html><body><div id=\"out\">loading</div><script>\n\
         fetch('{server}/synthetic-cell-types-2d/dataset_identity.json')\n\
           .then(r => r.json())\n\
           .then(j => {{ document.getElementById('out').textContent = 'read ' + j.id; }})\n\
           .catch(e => {{ document.getElementById('out').textContent = 'blocked ' + e.name; }});\n\
         </script></body></html>"
    )
}

#[test]
fn chromium_lets_an_allowed_origin_read_data_and_blocks_a_refused_one() {
    let Some(chromium) = chromium() else { return };
    let demo = demo();
    let server = Server::start(&["--no-web-ui", demo.to_str().unwrap()]);
    let page = cors_page(&server.base);

    // Another loopback port on 127.0.0.1: an allowed origin.
    let allowed = Upstream::start(UiBuild::new("unused"));
    allowed.add_page("cors.html", &page, "text/html; charset=utf-8");
    let dom = dump_dom(&chromium, &format!("{}/cors.html", allowed.url()));
    assert_eq!(out_text(&dom), "read synthetic-cell-types-2d");

    // 127.0.0.2 is not on the allowlist: the browser refuses to let it read.
    let refused = Upstream::start_on("127.0.0.2:0", UiBuild::new("unused"));
    refused.add_page("cors.html", &page, "text/html; charset=utf-8");
    let dom = dump_dom(&chromium, &format!("{}/cors.html", refused.url()));
    assert_eq!(out_text(&dom), "blocked TypeError");
}

/// A folder viewer's fetches of large gene columns, as Chromium makes them
/// (with its own `Accept-Encoding`): the page reads each column's
/// `Content-Encoding` and the SHA-256 of the decoded bytes.
#[test]
fn chromium_decodes_the_encoded_gene_columns_it_is_sent() {
    let Some(chromium) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = crate::anndata_large::large_store(dir.path());
    let server = Server::start(&[
        "--no-web-ui",
        "--dataset-id",
        "large",
        path.to_str().unwrap(),
    ]);
    let genes: Vec<usize> = (0..store.n_vars).collect();
    let page = format!(
        "<!doctype html><html><body><div id=\"out\">loading</div><script>\n\
         const hex = b => [...new Uint8Array(b)].map(x => x.toString(16).padStart(2, '0')).join('');\n\
         Promise.all({genes:?}.map(async g => {{\n\
           const r = await fetch('{base}/var/' + g + '.values.f32');\n\
           const body = await r.arrayBuffer();\n\
           return r.headers.get('Content-Encoding') + ':' + hex(await crypto.subtle.digest('SHA-256', body));\n\
         }}))\n\
           .then(parts => {{ document.getElementById('out').textContent = parts.join(' '); }})\n\
           .catch(e => {{ document.getElementById('out').textContent = 'failed ' + e; }});\n\
         </script></body></html>",
        base = server.base
    );
    let origin = Upstream::start(UiBuild::new("unused"));
    origin.add_page("genes.html", &page, "text/html; charset=utf-8");
    let dom = dump_dom(&chromium, &format!("{}/genes.html", origin.url()));
    let want: Vec<String> = genes
        .iter()
        .map(|&g| format!("zstd:{}", crate::support::sha256_hex(&store.gene_bytes(g))))
        .collect();
    assert_eq!(out_text(&dom), want.join(" "));
}
