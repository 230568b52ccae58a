//! What users of command-line tools expect: shell completions, a man page,
//! environment fallbacks, `inspect --json`, JSON on every stderr line,
//! the startup block before background log lines, request log fields.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

#[test]
fn completions_are_scripts_for_each_shell() {
    let bash = run(&["completions", "bash"]);
    assert!(bash.status.success(), "{}", stderr_of(&bash));
    let text = String::from_utf8_lossy(&bash.stdout);
    assert!(text.contains("cellucid"), "{text}");
    assert!(text.contains("complete -F"), "{text}");
    assert!(
        text.contains("--index-cache-dir"),
        "serve's flags are completed"
    );
    let zsh = run(&["completions", "zsh"]);
    assert!(String::from_utf8_lossy(&zsh.stdout).starts_with("#compdef cellucid"));
    let bad = run(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn man_prints_a_roff_page_with_the_subcommands_options() {
    let out = run(&["man"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        page.lines().any(|l| l.starts_with(".TH cellucid 1")),
        "{page}"
    );
    assert!(page.contains(".SH NAME"), "{page}");
    assert!(page.contains(".SH \"CELLUCID SERVE\""), "{page}");
    // roff escapes the hyphens of option names.
    assert!(page.contains(r"\-\-index\-cache\-dir"), "{page}");
}

/// A free loopback port (free when this returns; the server binds it next).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn environment_variables_stand_in_for_host_port_and_no_browser() {
    let help = run(&["serve", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    for var in ["CELLUCID_HOST", "CELLUCID_PORT", "CELLUCID_NO_BROWSER"] {
        assert!(
            text.contains(&format!("[env: {var}=")),
            "--help shows {var}"
        );
    }
    let tiny = fixture("anndata/tiny.h5ad");
    let start = |no_browser: &str| {
        let port = free_port();
        let mut cmd = cellucid();
        cmd.env("CELLUCID_PORT", port.to_string())
            .env("CELLUCID_NO_BROWSER", no_browser)
            .args(["serve", "--no-web-ui", "--index-cache-dir", TEST_CACHE])
            .arg(&tiny);
        let server = Spawned::spawn(cmd, |line| {
            line.strip_prefix("Open      ").map(str::to_owned)
        });
        assert_eq!(server.url, format!("http://127.0.0.1:{port}/"));
        // Once the server answers, the browser step (before serving) is done.
        assert_eq!(get(&format!("{}_cellucid/health", server.url)).status, 200);
        server.lines()
    };
    // No display here: without the variable the server says it cannot open
    // a browser; with it, it does not try.
    let tried = |lines: &[String]| lines.iter().any(|l| l.contains("no graphical display"));
    assert!(!tried(&start("1")));
    assert!(!tried(&start("true")));
    assert!(tried(&start("0")));
    assert!(tried(&start("false")));
}

#[test]
fn inspect_json_is_one_object_with_the_facts_inspect_prints() {
    let h5ad = fixture("anndata/pbmc68k_reduced.h5ad");
    let out = run(&[
        "inspect",
        h5ad.to_str().unwrap(),
        "--json",
        "--latent-key",
        "X_pca",
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["path"], h5ad.to_str().unwrap());
    assert_eq!(doc["format"], "HDF5 .h5ad");
    assert_eq!(doc["cells"], 700);
    assert_eq!(doc["genes_in_var"], 765);
    assert_eq!(doc["x"]["shape"], serde_json::json!([700, 765]));
    assert!(doc["x"]["layout"].is_string());
    let obsm: Vec<&str> = doc["obsm"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(obsm, ["X_pca", "X_umap"]);
    assert_eq!(doc["obsm"][1]["columns"], 2);
    let fields = doc["obs_fields"].as_array().unwrap();
    let louvain = fields.iter().find(|f| f["name"] == "louvain").unwrap();
    assert_eq!(louvain["kind"], "category");
    assert_eq!(doc["obsp"][0]["name"], "connectivities");
    let serve = &doc["serve"];
    assert_eq!(serve["id"], "pbmc68k_reduced");
    assert_eq!(
        serve["bytes_url"],
        "/_cellucid/anndata/pbmc68k_reduced.h5ad"
    );
    assert_eq!(serve["bytes_layout"], "file");
    assert_eq!(serve["defaults"], serde_json::json!({"latentKey": "X_pca"}));
    assert!(!serve["notes"].as_array().unwrap().is_empty());
    // The text says the same.
    let text = run(&["inspect", h5ad.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("cells       700"), "{text}");
    assert!(text.contains("X_umap (2 cols"), "{text}");
}

/// A `cellucid` process with its stderr collected line by line; killed on
/// drop.
struct Spawned {
    child: Child,
    url: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Spawned {
    /// Spawns `cmd` (a `cellucid serve …`) and waits for the line `url_of`
    /// finds the URL in.
    fn spawn(mut cmd: std::process::Command, url_of: fn(&str) -> Option<String>) -> Self {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = url_of(&line) {
                    let _ = tx.send(url);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no URL; stderr: {:?}", lines.lock().unwrap()));
        Self { child, url, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits (at most 60 s) until a line satisfies `done`.
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.lines().iter().any(|l| done(l)) {
            assert!(Instant::now() < deadline, "no {what}: {:?}", self.lines());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGINT and waits for the exit; returns every stderr line.
    fn interrupt(&mut self) -> Vec<String> {
        signal(&self.child, "INT");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The reader thread has the last lines once the pipe closes.
        std::thread::sleep(Duration::from_millis(200));
        self.lines()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn every_stderr_line_is_json_and_the_startup_block_comes_first() {
    let cache = tempfile::tempdir().unwrap();
    let csr = fixture("anndata/pbmc68k_reduced.csr.h5ad");
    let mut cmd = cellucid();
    cmd.args(["serve", "--no-browser", "--no-web-ui", "--port", "0", "-v"])
        .args(["--log-format", "json", "--index-cache-dir"])
        .arg(cache.path())
        .arg(&csr);
    let mut server = Spawned::spawn(cmd, json_serving_url);
    let base = server.url.trim_end_matches('/').to_owned();
    server.wait_for("saved index", |l| l.contains("CSR gene index saved"));
    let ranged = send(
        "GET",
        &format!("{base}/_cellucid/anndata/pbmc68k_reduced.csr.h5ad"),
        &[("Range", "bytes=0-99")],
        Vec::new(),
    );
    assert_eq!(ranged.status, 206);
    assert_eq!(get(&format!("{base}/_cellucid/health")).status, 200);
    server.wait_for("request lines", |l| l.contains("/_cellucid/health"));
    let lines = server.interrupt();

    let events: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let message = |e: &Value| e["fields"]["message"].as_str().unwrap_or("").to_owned();
    // The startup block: datasets, notes, then `serving`, before anything
    // the background work logged.
    let serving = events
        .iter()
        .position(|e| message(e).starts_with("serving"))
        .unwrap();
    let dataset = &events[0]["fields"];
    assert_eq!(message(&events[0]), "dataset");
    assert_eq!(dataset["id"], "pbmc68k_reduced.csr");
    assert_eq!(dataset["n_cells"], 700);
    assert_eq!(events[serving]["fields"]["url"], server.url.as_str());
    for background in ["folder-viewer files ready", "building the CSR gene index"] {
        let at = events
            .iter()
            .position(|e| message(e).starts_with(background))
            .unwrap_or_else(|| panic!("no {background:?} line"));
        assert!(at > serving, "{background:?} came before the startup block");
    }
    // Progress as log lines (stderr is no terminal here).
    assert!(events.iter().any(|e| message(e) == "CSR gene index: 100%"));
    // The request log line carries the answer.
    let request = events
        .iter()
        .find(|e| message(e) == "request" && e["fields"]["status"] == 206)
        .unwrap();
    let fields = &request["fields"];
    assert_eq!(fields["method"], "GET");
    assert_eq!(
        fields["path"],
        "/_cellucid/anndata/pbmc68k_reduced.csr.h5ad"
    );
    assert_eq!(fields["bytes"], 100);
    assert!(fields["duration_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(fields["dataset"], "pbmc68k_reduced.csr");
    let health = events
        .iter()
        .find(|e| message(e) == "request" && e["fields"]["path"] == "/_cellucid/health")
        .unwrap();
    assert!(health["fields"].get("dataset").is_none(), "{health}");
    // And the shutdown lines.
    assert!(events
        .iter()
        .any(|e| message(e).starts_with("Shutting down")));
    assert_eq!(message(events.last().unwrap()), "stopped");
}

#[test]
fn in_text_the_startup_block_also_comes_before_background_lines() {
    let cache = tempfile::tempdir().unwrap();
    let csr = fixture("anndata/pbmc68k_reduced.csr.h5ad");
    let server = Server::start(&[
        "--no-web-ui",
        "--index-cache-dir",
        cache.path().to_str().unwrap(),
        csr.to_str().unwrap(),
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !server
        .stderr()
        .iter()
        .any(|l| l.contains("CSR gene index saved"))
    {
        assert!(Instant::now() < deadline, "{:?}", server.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    let lines = server.stderr();
    assert!(lines[0].starts_with("cellucid-rs "), "{lines:?}");
    let stop = lines.iter().position(|l| l.contains("Ctrl-C")).unwrap();
    let first_background = lines
        .iter()
        .position(|l| l.contains("CSR gene index") || l.contains("folder-viewer files"))
        .unwrap();
    assert!(first_background > stop, "{lines:?}");
    // Not only 50 % and 100 %: each 10 % step the build reports.
    assert!(
        lines.iter().any(|l| l.contains("CSR gene index: 100%")),
        "{lines:?}"
    );
}

#[test]
fn an_error_under_json_logs_is_json_too() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(&[
        "serve",
        "--no-browser",
        "--no-web-ui",
        "--log-format",
        "json",
        tmp.path().join("missing.h5ad").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = stderr_of(&out);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let event: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(event["level"], "ERROR");
    assert_eq!(event["fields"]["exit_code"], 2);
    assert!(event["fields"]["message"]
        .as_str()
        .unwrap()
        .contains("missing.h5ad"));
}

#[test]
fn a_signal_as_soon_as_the_url_is_printed_stops_the_server_gracefully() {
    // The handlers are installed before the URL is printed: a signal right
    // after it is a graceful stop (exit 0), never the default action.
    for name in ["TERM", "INT"] {
        for _ in 0..3 {
            let server = Server::start(&["--no-web-ui"]);
            server.send_signal(name);
            assert_eq!(server.wait().code(), Some(0), "SIG{name}");
        }
    }
}

#[test]
fn on_a_terminal_the_gene_index_build_draws_a_progress_bar_after_the_startup_block() {
    // `script` (util-linux) runs the server on a pseudo-terminal.
    let Some(script) = require_tool(&["script"], "apt-get install bsdutils") else {
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let command = format!(
        "'{}' serve --no-browser --no-web-ui --port 0 --index-cache-dir '{}' '{}'",
        env!("CARGO_BIN_EXE_cellucid"),
        cache.path().display(),
        fixture("anndata/pbmc68k_reduced.csr.h5ad").display()
    );
    let mut child = std::process::Command::new(script)
        .args(["-qfec", &command, "/dev/null"])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            all.extend_from_slice(&line);
            line.clear();
            if String::from_utf8_lossy(&all).contains("CSR gene index saved") {
                break;
            }
        }
        let _ = tx.send(String::from_utf8_lossy(&all).into_owned());
    });
    let screen = rx.recv_timeout(Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
    let screen = screen.expect("the index was not saved within 60 s");
    let stop = screen.find("Press Ctrl-C to stop.").expect(&screen);
    // A build that ends before the startup block is printed draws no bar
    // (on a loaded machine this small index can); one that draws it draws
    // it below the block, and to the end.
    if let Some(bar) = screen.find("Gene index X") {
        assert!(
            bar > stop,
            "the bar came before the startup block: {screen}"
        );
        assert!(screen[bar..].contains("100%"), "{screen}");
    }
    // A terminal gets the bar, not the 10 % log lines.
    assert!(!screen.contains("CSR gene index: 50%"), "{screen}");
}
