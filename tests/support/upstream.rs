//! A test upstream for the viewer UI: a tiny HTTP/1.1 server on loopback that
//! serves a small UI build (index.html, hashed JS/CSS, an icon, the
//! inventory) and can be switched off or made to misbehave; a source that
//! never answers; and what a server's `/` shows while it gets the UI.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{get, sha256_hex, Reply, Server};

/// One file of a build.
#[derive(Clone, Debug)]
pub struct UiFile {
    pub bytes: Vec<u8>,
    pub content_type: String,
}

/// A small UI build whose script loads `/_cellucid/datasets` and the first
/// dataset's identity, and writes what it got into `#out`.
#[derive(Clone, Debug)]
pub struct UiBuild {
    pub build_id: String,
    pub files: BTreeMap<String, UiFile>,
}

impl UiBuild {
    pub fn new(build_id: &str) -> UiBuild {
        let js = format!(
            "// cellucid test UI, build {build_id}\n\
             const out = document.getElementById('out');\n\
             (async () => {{\n\
               try {{\n\
                 const list = await (await fetch('/_cellucid/datasets')).json();\n\
                 const first = list.datasets[0];\n\
                 const identity = await (await fetch(first.path + 'dataset_identity.json')).json();\n\
                 out.textContent = 'build={build_id} datasets=' + list.datasets.length + ' first=' + first.id + ' identity=' + identity.id;\n\
               }} catch (err) {{\n\
                 out.textContent = 'error=' + err;\n\
               }}\n\
               out.setAttribute('data-done', '1');\n\
             }})();\n"
        );
        let css = format!("/* build {build_id} */\nbody {{ font-family: sans-serif; }}\n#out {{ color: #123456; }}\n");
        let js_name = hashed_name("app", "js", js.as_bytes());
        let css_name = hashed_name("style", "css", css.as_bytes());
        let index = format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\">\n\
             <meta name=\"cellucid-web-build-id\" content=\"{build_id}\">\n\
             <title>Cellucid test UI</title>\n\
             <link rel=\"icon\" href=\"/favicon.ico\">\n\
             <link rel=\"stylesheet\" href=\"/{css_name}\">\n\
             <script type=\"module\" src=\"/{js_name}\"></script>\n\
             </head><body><div id=\"out\">loading</div></body></html>\n"
        );
        let mut files = BTreeMap::new();
        let mut add = |path: &str, bytes: Vec<u8>, content_type: &str| {
            files.insert(
                path.to_owned(),
                UiFile {
                    bytes,
                    content_type: content_type.to_owned(),
                },
            );
        };
        add("index.html", index.into_bytes(), "text/html; charset=utf-8");
        add(&js_name, js.into_bytes(), "text/javascript; charset=utf-8");
        add(&css_name, css.into_bytes(), "text/css; charset=utf-8");
        add(
            "favicon.ico",
            format!("icon {build_id}").into_bytes(),
            "image/x-icon",
        );
        UiBuild {
            build_id: build_id.to_owned(),
            files,
        }
    }

    /// `cellucid-web-assets.json` for this build.
    pub fn inventory(&self) -> Vec<u8> {
        let assets: Vec<serde_json::Value> = self
            .files
            .iter()
            .map(|(path, file)| {
                serde_json::json!({
                    "path": path,
                    "sha256": sha256_hex(&file.bytes),
                    "bytes": file.bytes.len(),
                    "content_type": file.content_type,
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "version": 1,
            "build_id": self.build_id,
            "assets": assets,
        }))
        .unwrap()
    }

    /// The path of the hashed script.
    pub fn script_path(&self) -> String {
        self.files
            .keys()
            .find(|p| p.ends_with(".js"))
            .unwrap()
            .clone()
    }

    /// The path of the hashed stylesheet.
    pub fn style_path(&self) -> String {
        self.files
            .keys()
            .find(|p| p.ends_with(".css"))
            .unwrap()
            .clone()
    }
}

/// `assets/<stem>-<8 hex of the content, with a digit>.<ext>`.
fn hashed_name(stem: &str, ext: &str, bytes: &[u8]) -> String {
    let sha = sha256_hex(bytes);
    // The content-hash rule wants a digit in the segment: take the first
    // window of 8 hex characters that has one.
    let hash = (0..sha.len() - 8)
        .map(|i| &sha[i..i + 8])
        .find(|w| w.bytes().any(|b| b.is_ascii_digit()))
        .unwrap();
    format!("assets/{stem}-{hash}.{ext}")
}

/// How the upstream misbehaves.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    /// Serves the build faithfully.
    Normal,
    /// Serves one file with a byte flipped (same size).
    WrongHash(String),
    /// Sends half of one file and closes, with the full Content-Length.
    Truncated(String),
    /// Waits this long before answering each request.
    Slow(Duration),
    /// Answers 500 to everything.
    ServerError,
    /// Redirects every request to another host.
    RedirectElsewhere,
    /// Redirects every request to the same path under `/moved` on this host.
    RedirectSameHost,
}

#[derive(Debug)]
struct State {
    build: UiBuild,
    mode: Mode,
    publish_inventory: bool,
    /// Extra pages served verbatim (path → (body, content type)).
    pages: BTreeMap<String, (Vec<u8>, String)>,
    requests: Vec<String>,
    user_agents: Vec<String>,
}

/// The running upstream; stopped (connections refused) on [`Upstream::stop`] or drop.
pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Serves `build` on a free port of 127.0.0.1.
    pub fn start(build: UiBuild) -> Upstream {
        Self::start_on("127.0.0.1:0", build)
    }

    /// Serves `build` on `bind` (e.g. `127.0.0.2:0`).
    pub fn start_on(bind: &str, build: UiBuild) -> Upstream {
        let listener = TcpListener::bind(bind).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            build,
            mode: Mode::Normal,
            publish_inventory: true,
            pages: BTreeMap::new(),
            requests: Vec::new(),
            user_agents: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let state = Arc::clone(&state);
                            std::thread::spawn(move || serve(stream, &state));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Upstream {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    pub fn set_build(&self, build: UiBuild) {
        self.state.lock().unwrap().build = build;
    }

    pub fn set_publish_inventory(&self, publish: bool) {
        self.state.lock().unwrap().publish_inventory = publish;
    }

    /// Serves `body` at `path` as well (a test page).
    pub fn add_page(&self, path: &str, body: &str, content_type: &str) {
        self.state.lock().unwrap().pages.insert(
            path.to_owned(),
            (body.as_bytes().to_vec(), content_type.to_owned()),
        );
    }

    /// The request paths seen so far.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The `User-Agent` of every request seen so far.
    pub fn user_agents(&self) -> Vec<String> {
        self.state.lock().unwrap().user_agents.clone()
    }

    /// Closes the listening socket: later connections are refused.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    stream.set_nonblocking(false).ok();
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
    let mut user_agent = String::new();
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => break,
            Ok(_) if header == "\r\n" || header == "\n" => break,
            Ok(_) => {
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("user-agent") {
                        user_agent = value.trim().to_owned();
                    }
                }
            }
        }
    }
    let (mode, reply) = {
        let mut state = state.lock().unwrap();
        state.requests.push(path.clone());
        state.user_agents.push(user_agent);
        (state.mode.clone(), lookup(&state, &path))
    };
    let mut stream = stream;
    let key = path.trim_start_matches('/').to_owned();
    match mode {
        Mode::Slow(delay) => std::thread::sleep(delay),
        Mode::ServerError => {
            let _ = write_reply(
                &mut stream,
                "500 Internal Server Error",
                "text/plain",
                b"boom",
                None,
            );
            return;
        }
        Mode::RedirectElsewhere => {
            let port = stream.local_addr().map(|a| a.port()).unwrap_or(1);
            let head = format!(
                "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.2:{port}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes());
            return;
        }
        Mode::RedirectSameHost if !path.starts_with("/moved/") => {
            let head = format!(
                "HTTP/1.1 301 Moved Permanently\r\nLocation: /moved{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes());
            return;
        }
        _ => {}
    }
    match reply {
        Some((mut body, content_type)) => {
            let declared = body.len();
            if mode == Mode::WrongHash(key.clone()) {
                body[0] ^= 0x20;
            }
            if mode == Mode::Truncated(key) {
                body.truncate(body.len() / 2);
            }
            let _ = write_reply(&mut stream, "200 OK", &content_type, &body, Some(declared));
        }
        None => {
            let _ = write_reply(
                &mut stream,
                "404 Not Found",
                "text/plain",
                b"not found",
                None,
            );
        }
    }
}

fn lookup(state: &State, path: &str) -> Option<(Vec<u8>, String)> {
    let key = path.split('?').next().unwrap_or("");
    let key = key
        .strip_prefix("/moved")
        .unwrap_or(key)
        .trim_start_matches('/');
    let key = if key.is_empty() { "index.html" } else { key };
    if let Some((body, kind)) = state.pages.get(key) {
        return Some((body.clone(), kind.clone()));
    }
    if key == "cellucid-web-assets.json" {
        return state.publish_inventory.then(|| {
            (
                state.build.inventory(),
                "application/json; charset=utf-8".to_owned(),
            )
        });
    }
    state
        .build
        .files
        .get(key)
        .map(|f| (f.bytes.clone(), f.content_type.clone()))
}

fn write_reply(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    declared: Option<usize>,
) -> std::io::Result<()> {
    let length = declared.unwrap_or(body.len());
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

/// A loopback port that accepts connections and never answers, as a
/// firewall that drops packets looks to a client once connected: the
/// kernel completes each handshake into the backlog and nobody reads.
pub struct Silent {
    pub addr: SocketAddr,
    _listener: TcpListener,
}

impl Silent {
    /// Listens on a free port of 127.0.0.1 and never accepts.
    pub fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        Silent {
            addr: listener.local_addr().unwrap(),
            _listener: listener,
        }
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Whether `reply` is the page `/` answers while the UI is being downloaded.
pub fn is_downloading_page(reply: &Reply) -> bool {
    reply.status == 503 && reply.text().contains("is being downloaded")
}

/// Whether `reply` is the page `/` answers when there is no UI.
pub fn is_unavailable_page(reply: &Reply) -> bool {
    reply.status == 503 && reply.text().contains("could not be loaded")
}

/// Polls `server`'s `/` until `done` holds for the reply (at most 30 s);
/// returns it with every reply seen before it.
pub fn poll_root(server: &Server, done: impl Fn(&Reply) -> bool) -> (Reply, Vec<Reply>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let reply = get(&server.url("/"));
        if done(&reply) {
            return (reply, seen);
        }
        assert!(
            Instant::now() < deadline,
            "/ never settled; last answer {}: {}",
            reply.status,
            reply.text()
        );
        seen.push(reply);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `/` once the server is done getting the UI: the UI, or the page saying
/// why there is none.
pub fn settled_root(server: &Server) -> Reply {
    poll_root(server, |reply| !is_downloading_page(reply)).0
}
