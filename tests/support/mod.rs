//! Helpers: fixture paths, a running server process, an HTTP client, raw requests.

#![allow(dead_code)]

pub mod http1;
pub mod process;
pub mod upstream;
pub mod zarr_store;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// The `cellucid` binary under test.
pub fn cellucid() -> Command {
    cellucid_at(Path::new(env!("CARGO_BIN_EXE_cellucid")))
}

/// A `cellucid` binary at `exe` (a copy of the one under test), with the
/// same clean environment as [`cellucid`].
pub fn cellucid_at(exe: &Path) -> Command {
    let mut cmd = Command::new(exe);
    // Never let a test open a browser or pick up a user's log settings.
    cmd.env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("RUST_LOG")
        .env_remove("MALLOC_ARENA_MAX");
    cmd
}

/// Runs `cellucid ARGS...` to completion (stdin closed).
pub fn run(args: &[&str]) -> std::process::Output {
    cellucid().args(args).stdin(Stdio::null()).output().unwrap()
}

/// The stderr of `out`, as text.
pub fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts exit code `code` and a single `cellucid: error:` line mentioning `needle`.
pub fn assert_one_line_error(out: &std::process::Output, code: i32, needle: &str) {
    let stderr = stderr_of(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(lines[0].starts_with("cellucid: error: "), "{stderr}");
    assert!(lines[0].contains(needle), "{needle:?} not in {stderr}");
}

/// The URL of the `serving` event of `--log-format json` (its `fields.url`).
pub fn json_serving_url(line: &str) -> Option<String> {
    let event: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = &event["fields"];
    fields["message"]
        .as_str()?
        .starts_with("serving")
        .then(|| fields["url"].as_str().map(str::to_owned))
        .flatten()
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `testdata/<rel>` from the repository root: the test data kept in the
/// repository (`testdata/README.md` says what each file is).
pub fn fixture(rel: &str) -> PathBuf {
    repo().join("testdata").join(rel)
}

/// The demo exports bundled in `datasets/demo/` (what `serve` embeds).
pub fn demo() -> PathBuf {
    repo().join("datasets/demo")
}

/// The environment variable that turns a missing external tool from a skip
/// into a failure; `.ci/run` sets it to `1` after installing the tools.
pub const REQUIRE_TOOLS: &str = "CELLUCID_REQUIRE_TOOLS";

/// An external program a test needs: the first of `names` found on `PATH`.
///
/// When none is installed the test should return: this prints one line
/// saying it was skipped and why (with `install`, how to get the tool) and
/// gives `None` — unless [`REQUIRE_TOOLS`] is `1`, where the absence fails
/// the test, so CI cannot pass by skipping.
pub fn require_tool(names: &[&str], install: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
    });
    require(found.ok_or_else(|| format!("{} is not installed ({install})", names.join(" or "))))
}

/// The one rule for external tools, for any way of finding one: the tool
/// when `found` has it; else one skip line saying why, or a failure when
/// `CELLUCID_REQUIRE_TOOLS=1`.
pub fn require<T>(found: Result<T, String>) -> Option<T> {
    match found {
        Ok(tool) => Some(tool),
        Err(why) => {
            if std::env::var(REQUIRE_TOOLS).as_deref() == Ok("1") {
                panic!("{why}, and {REQUIRE_TOOLS}=1 makes that a failure");
            }
            skipped(&why);
            None
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Prints `skipped <test>: <why>` as one line on the real stderr (libtest
/// captures `eprintln!` of passing tests; a skip must stay visible).
pub fn skipped(why: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(std::io::stderr(), "skipped {test}: {why}");
}

/// Where AnnData tests keep CSR gene indexes: under target/, never in the
/// user's cache dir.
pub const TEST_CACHE: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/csr-index");

/// `cellucid serve --no-web-ui --cache-dir TEST_CACHE PATH EXTRA...`.
pub fn serve_anndata(path: &Path, extra: &[&str]) -> Server {
    let mut args = vec![
        "--no-web-ui",
        "--cache-dir",
        TEST_CACHE,
        path.to_str().expect("a UTF-8 fixture path"),
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// A `cellucid serve` process on a free loopback port; killed on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub base: String,
    /// The access token printed in the URL, when the server requires one.
    pub token: Option<String>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `cellucid serve --no-browser --port 0 ARGS...` and waits for its URL.
    pub fn start(args: &[&str]) -> Server {
        Self::try_start(args).unwrap_or_else(|err| panic!("server did not start: {err}"))
    }

    /// Like [`Server::start`], reporting failure instead of panicking.
    pub fn try_start(args: &[&str]) -> Result<Server, String> {
        Self::try_start_with_env(args, &[])
    }

    /// Like [`Server::try_start`], with extra environment variables.
    pub fn try_start_with_env(args: &[&str], env: &[(&str, &str)]) -> Result<Server, String> {
        let mut cmd = cellucid();
        cmd.envs(env.iter().copied());
        Self::try_start_command(cmd, args)
    }

    /// Like [`Server::try_start`], running `cmd` (a `cellucid` binary with
    /// its environment and working directory set) instead of [`cellucid`].
    pub fn try_start_command(mut cmd: Command, args: &[&str]) -> Result<Server, String> {
        cmd.arg("serve").arg("--no-browser").arg("--port").arg("0");
        cmd.args(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line
                    .strip_prefix("Open      ")
                    .or_else(|| line.strip_prefix("Serving on "))
                    .map(str::to_owned)
                    .or_else(|| json_serving_url(&line))
                {
                    let _ = tx.send(url.trim_end_matches('/').to_owned());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(base) => base,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "no URL printed; stderr: {:?}",
                    lines.lock().unwrap()
                ));
            }
        };
        // With an access token the URL is `<base>/?token=<token>`.
        let (base, token) = match base.split_once("/?token=") {
            Some((base, token)) => (base.to_owned(), Some(token.to_owned())),
            None => (base, None),
        };
        let authority = base
            .strip_prefix("https://")
            .unwrap_or_else(|| base.trim_start_matches("http://"));
        let addr: SocketAddr = authority.parse().map_err(|e| format!("{authority}: {e}"))?;
        Ok(Server {
            child,
            addr,
            base,
            token,
            stderr: lines,
        })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The `Host` value naming this server.
    pub fn host(&self) -> String {
        format!("{}", self.addr)
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(self) -> std::process::ExitStatus {
        self.send_signal("TERM");
        self.wait()
    }

    /// Sends signal `name` (`TERM`, `INT`, …) to the server.
    pub fn send_signal(&self, name: &str) {
        signal(&self.child, name);
    }

    /// Waits (at most 30 s) for the server to exit.
    pub fn wait(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends signal `name` (`TERM`, `INT`, `KILL`) to `child` with kill(2), so
/// no external `kill` program is needed.
#[allow(unsafe_code)]
pub fn signal(child: &Child, name: &str) {
    let number = match name {
        "TERM" => libc::SIGTERM,
        "INT" => libc::SIGINT,
        "KILL" => libc::SIGKILL,
        other => panic!("no signal named {other}"),
    };
    let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
    // SAFETY: kill(2) reads no memory of ours; `child` is not reaped yet (it
    // is borrowed, and only `wait` reaps it), so `pid` still names it.
    let rc = unsafe { libc::kill(pid, number) };
    assert_eq!(
        rc,
        0,
        "kill -{name} {pid}: {}",
        std::io::Error::last_os_error()
    );
}

/// An HTTP client that reports every status as a response.
pub fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// GET or HEAD with extra headers through the real client.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> Reply {
    send(method, url, headers, Vec::new())
}

/// Any method, with extra headers and a body, through the real client; the
/// whole response is read (except for HEAD).
pub fn send<K: AsRef<str>, V: AsRef<str>>(
    method: &str,
    url: &str,
    headers: &[(K, V)],
    body: Vec<u8>,
) -> Reply {
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(k.as_ref(), v.as_ref());
    }
    let req = builder.body(body).unwrap();
    let mut resp = client()
        .run(req)
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = if method == "HEAD" {
        Vec::new()
    } else {
        resp.body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .unwrap()
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// `GET url`.
pub fn get(url: &str) -> Reply {
    request("GET", url, &[])
}

/// Sends raw bytes, reads until the server closes (or `Connection: close`
/// ends the reply), and parses one HTTP/1.1 response.
pub fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    parse_reply(&buf)
        .unwrap_or_else(|| panic!("no HTTP reply: {:?}", String::from_utf8_lossy(&buf)))
}

/// A raw `GET path` with the given header lines (each without CRLF) and
/// `Connection: close`.
pub fn raw_get(addr: SocketAddr, path: &str, header_lines: &[&str]) -> Reply {
    let mut text = format!("GET {path} HTTP/1.1\r\n");
    for line in header_lines {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("Connection: close\r\n\r\n");
    raw(addr, text.as_bytes())
}

/// Parses the first response in `buf`.
pub fn parse_reply(buf: &[u8]) -> Option<Reply> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    if let Some(len) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    Some(Reply {
        status,
        headers,
        body,
    })
}

/// The relative paths of the regular files under `dir`, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().to_str().unwrap().to_owned());
            }
        }
    }
    out.sort();
    out
}

/// Reads `SHA256SUMS` of an export fixture: (relative path, hex digest).
pub fn sha256sums(dir: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(dir.join("SHA256SUMS"))
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once("  "))
        .map(|(sum, path)| (path.trim_start_matches("./").to_owned(), sum.to_owned()))
        .collect()
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Recursive copy of regular files and folders (fixtures are read-only; the
/// copy is writable, so tests can add, change and remove files in it).
pub fn copy_tree(src: &Path, dst: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let writable = |path: &Path, mode: u32| {
        let mut perms = std::fs::metadata(path).expect("metadata").permissions();
        perms.set_mode(mode);
        std::fs::set_permissions(path, perms).expect("chmod");
    };
    std::fs::create_dir_all(dst).expect("create copy folder");
    writable(dst, 0o755);
    for entry in std::fs::read_dir(src).expect("read fixture folder") {
        let entry = entry.expect("fixture entry");
        let to = dst.join(entry.file_name());
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            copy_tree(&entry.path(), &to);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &to).expect("copy fixture file");
            writable(&to, 0o644);
        }
    }
}
