//! cellucid-rs behind real reverse proxies on loopback (SECURITY.md, "Behind
//! a reverse proxy"): nginx serving it under `/cellucid/`, and
//! jupyter-server-proxy in a real Jupyter server at `/proxy/<port>/`. Every
//! route, a Range read, the viewer UI and its assets, the access-token flow
//! and the WebSocket channel go through the proxy; and `X-Forwarded-*`
//! headers do nothing without `--trust-proxy`, and what SECURITY.md says
//! with it.
//!
//! The proxies are external tools and follow the repository's one rule for
//! them: present → the test runs; absent → one line saying it was skipped
//! and why; with `CELLUCID_REQUIRE_TOOLS=1` (set by `.ci/run`, which
//! installs them with `tests/tools/install-proxies.sh`) absence is a failure.
//! nginx is Debian's `nginx-light`; Jupyter comes from the venv that
//! `tests/tools/jupyter-venv.sh` makes outside the repository.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderName;
use tokio_tungstenite::tungstenite::Message;

use crate::support::upstream::{
    is_downloading_page, is_unavailable_page, UiBuild, UiFile, Upstream,
};
use crate::support::zarr_store::SparseStore;
use crate::support::{get, repo, request, require, Reply, Server, TEST_CACHE};

/// A port of 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `port` accepts connections (`true`), or `alive` says the
/// process behind it is gone, or `within` has passed.
fn wait_for_port(port: u16, within: Duration, mut alive: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if !alive() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

// --- what the server serves ---------------------------------------------------

/// A viewer UI build that references its files relatively, as the
/// cellucid.com build does (`assets/…`, `favicon.ico`): served as is, it
/// works under any prefix.
fn relative_ui_build() -> UiBuild {
    let mut build = UiBuild::new("proxied-1");
    let index = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">\n\
         <meta name=\"cellucid-web-build-id\" content=\"{}\">\n\
         <link rel=\"icon\" href=\"favicon.ico\">\n\
         <link rel=\"stylesheet\" href=\"{}\">\n\
         <script type=\"module\" src=\"{}\"></script>\n\
         </head><body><div id=\"out\">loading</div></body></html>\n",
        build.build_id,
        build.style_path(),
        build.script_path()
    );
    build.files.insert(
        "index.html".to_owned(),
        UiFile {
            bytes: index.into_bytes(),
            content_type: "text/html; charset=utf-8".to_owned(),
        },
    );
    build
}

/// What one test serves: the bundled demo catalog and a small AnnData Zarr
/// store written here (for `anndata.file.url`), with the UI from a loopback
/// upstream.
struct Served {
    tmp: tempfile::TempDir,
    upstream: Upstream,
}

impl Served {
    fn new() -> Served {
        let tmp = tempfile::tempdir().unwrap();
        SparseStore::seeded(64, 3, 4, 13).write_csc(&tmp.path().join("tiny.zarr"));
        let upstream = Upstream::start(relative_ui_build());
        Served { tmp, upstream }
    }

    /// `cellucid serve` of the demo and the store, with `extra` flags.
    fn serve(&self, extra: &[&str]) -> Server {
        let web = self.tmp.path().join("web");
        let store = self.tmp.path().join("tiny.zarr");
        let demo = repo().join("datasets/demo");
        let source = self.upstream.url();
        let mut args = vec![
            "--web-source-url",
            &source,
            "--web-cache-dir",
            web.to_str().unwrap(),
            "--cache-dir",
            TEST_CACHE,
        ];
        args.extend_from_slice(extra);
        args.push(demo.to_str().unwrap());
        args.push(store.to_str().unwrap());
        Server::start(&args)
    }
}

/// The `Viewer    …` URL's `viewerId` and `viewerToken` (with `--viewer`).
fn viewer_credentials(server: &Server) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        // Text, or with --log-format json the `viewer` event's url.
        if let Some(line) = server.stderr().into_iter().find_map(|l| {
            if l.starts_with("Viewer    ") {
                return Some(l);
            }
            let event: serde_json::Value = serde_json::from_str(&l).ok()?;
            let message = event["fields"]["message"].as_str()?;
            message
                .starts_with("viewer")
                .then(|| event["fields"]["url"].as_str().map(str::to_owned))
                .flatten()
        }) {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "no viewer URL: {:?}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let param = |key: &str| {
        line.split(['?', '&'])
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key} in {line}"))
            .to_owned()
    };
    (param("viewerId"), param("viewerToken"))
}

/// Resolves a reference found in the page at `page` as a browser does,
/// insisting that it is relative and stays under the page's directory (so
/// under any prefix the page is served from).
fn resolve(page: &str, reference: &str) -> String {
    assert!(
        !reference.starts_with('/') && !reference.contains("://") && !reference.contains(".."),
        "not a reference relative to the page: {reference}"
    );
    let page = page.split(['?', '#']).next().unwrap();
    let dir = &page[..=page.rfind('/').unwrap()];
    format!("{dir}{}", reference.strip_prefix("./").unwrap_or(reference))
}

/// Every `href="…"` and `src="…"` of an HTML page.
fn references(html: &str) -> Vec<String> {
    ["href=\"", "src=\""]
        .iter()
        .flat_map(|attr| html.split(attr).skip(1))
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect()
}

/// How a client reaches the server through a proxy: a base URL ending in
/// the prefix, and the headers every request carries (the `Host` the
/// browser sends, the proxy's own credentials).
struct Through {
    base: String,
    headers: Vec<(String, String)>,
}

impl Through {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn get(&self, path: &str, extra: &[(&str, &str)]) -> Reply {
        self.get_url(&self.url(path), extra)
    }

    fn get_url(&self, url: &str, extra: &[(&str, &str)]) -> Reply {
        let mut headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        headers.extend_from_slice(extra);
        request("GET", url, &headers)
    }
}

/// The checks every proxy must pass: documents, a dataset file, a Range
/// read, the AnnData byte route through the relative `anndata.file.url`,
/// and the viewer UI with every file it references. `direct` is the server
/// itself, to compare bytes with; `direct_headers` go on the requests sent
/// to it (credentials).
fn assert_serves_everything(through: &Through, direct: &Server, direct_headers: &[(&str, &str)]) {
    let health = through.get("_cellucid/health", &[]);
    assert_eq!(health.status, 200, "{}", health.text());
    assert_eq!(health.json()["status"], "ok");
    for path in ["_cellucid/info", "_cellucid/protocol", "datasets.json"] {
        assert_eq!(through.get(path, &[]).status, 200, "{path}");
    }

    let datasets = through.get("_cellucid/datasets", &[]);
    assert_eq!(datasets.status, 200, "{}", datasets.text());
    let datasets = datasets.json();
    let entries = datasets["datasets"].as_array().unwrap();
    assert_eq!(entries.len(), 4, "{datasets}");
    for entry in entries {
        // The 0.9.4 form the viewers compare, absolute by design.
        let path = entry["path"].as_str().unwrap();
        assert!(path.starts_with('/') && path.ends_with('/'), "{entry}");
    }

    // An export file, whole and by Range, byte for byte as served directly.
    let export = &entries[0];
    let file = format!(
        "{}dataset_identity.json",
        export["path"].as_str().unwrap().trim_start_matches('/')
    );
    let proxied = through.get(&file, &[]);
    let original = request("GET", &direct.url(&format!("/{file}")), direct_headers);
    assert_eq!(proxied.status, 200, "{file}: {}", proxied.text());
    assert_eq!(proxied.body, original.body, "{file}");
    let range = through.get(&file, &[("Range", "bytes=2-9")]);
    assert_eq!(range.status, 206, "{}", range.text());
    let size = original.body.len();
    assert_eq!(
        range.header("content-range"),
        Some(format!("bytes 2-9/{size}").as_str())
    );
    assert_eq!(range.body, original.body[2..10]);

    // The byte viewer finds the store through a URL relative to the
    // server's base (the prefix).
    let anndata = entries
        .iter()
        .find(|e| e.get("anndata").is_some())
        .unwrap_or_else(|| panic!("no AnnData entry: {datasets}"));
    let url = anndata["anndata"]["file"]["url"].as_str().unwrap();
    let metadata = through.get_url(&resolve(&through.url(""), &format!("{url}.zmetadata")), &[]);
    assert_eq!(metadata.status, 200, "{url}: {}", metadata.text());
    assert!(metadata.json()["metadata"].is_object());
    let zgroup = through.get_url(
        &resolve(&through.url(""), &format!("{url}.zgroup")),
        &[("Range", "bytes=0-3")],
    );
    assert_eq!(zgroup.status, 206, "{}", zgroup.text());
    assert_eq!(zgroup.body.len(), 4);

    // The viewer UI, then every file its page references, resolved against
    // the page's URL under the prefix.
    let page = settled_root(through);
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    let refs = references(&html);
    assert_eq!(refs.len(), 3, "{html}");
    for reference in refs {
        let asset = through.get_url(&resolve(&through.url(""), &reference), &[]);
        assert_eq!(asset.status, 200, "{reference}: {}", asset.text());
        let want = &direct_ui_file(direct, &reference, direct_headers);
        assert_eq!(&asset.body, want, "{reference}");
    }
}

/// The prefix's root once the server is done getting the UI: the UI, or
/// the page saying why there is none.
fn settled_root(through: &Through) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = through.get("", &[]);
        if !is_downloading_page(&page) {
            return page;
        }
        assert!(Instant::now() < deadline, "the UI never settled");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A UI file as the server answers it directly.
fn direct_ui_file(direct: &Server, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let reply = request("GET", &direct.url(&format!("/{path}")), extra);
    assert_eq!(reply.status, 200, "{path}");
    reply.body
}

/// Opens the viewer channel at `url` with `headers` and says hello; returns
/// the first answer (`{"type":"welcome"}` when all went well).
async fn ws_hello(
    url: &str,
    headers: &[(&str, &str)],
    id: &str,
    token: &str,
) -> Result<Message, String> {
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        let name: HeaderName = name.parse().unwrap();
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    let authority = request.uri().authority().unwrap().as_str().to_owned();
    let stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(|err| err.to_string())?;
    ws.send(Message::text(
        json!({"type": "hello", "viewerId": id, "viewerToken": token}).to_string(),
    ))
    .await
    .map_err(|err| err.to_string())?;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .map_err(|_| "no answer to the hello within 10 s".to_owned())?;
        match next {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(message)) => {
                let _ = ws.close(None).await;
                return Ok(message);
            }
            Some(Err(err)) => return Err(err.to_string()),
            None => return Err("closed without an answer".to_owned()),
        }
    }
}

fn welcome() -> Message {
    Message::text(r#"{"type":"welcome"}"#)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

// --- nginx ----------------------------------------------------------------------

/// The name the proxy is reached by in these tests (sent as `Host`; the
/// connection itself goes to 127.0.0.1).
const PROXY_NAME: &str = "cellucid.test";

/// The `location` block SECURITY.md documents, as tested: `PREFIX` and
/// `UPSTREAM` are filled in.
const NGINX_LOCATION: &str = r#"
        location /PREFIX/ {
            proxy_pass http://UPSTREAM/;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_buffering off;
        }
"#;

fn find_nginx() -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            "nginx is not installed (Debian: apt-get install nginx-light; tests/tools/install-proxies.sh does it)".to_owned()
        })
}

/// A foreground nginx on a free loopback port with its config, pid file,
/// logs and temp files in a temp dir; killed on drop.
struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Proxies `/cellucid/` to `upstream`.
    fn start(binary: &Path, upstream: SocketAddr) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        // The probed port can be taken before nginx binds it: try again.
        for _ in 0..5 {
            let port = free_port();
            let location = NGINX_LOCATION
                .replace("PREFIX", "cellucid")
                .replace("UPSTREAM", &upstream.to_string());
            let d = dir.path().display();
            let config = format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
                 error_log {d}/error.log info;\nevents {{ worker_connections 64; }}\n\
                 http {{\n    access_log {d}/access.log;\n\
                 client_body_temp_path {d}/client_body;\n    proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n\
                 map $http_upgrade $connection_upgrade {{\n        default upgrade;\n        ''      close;\n    }}\n\
                 server {{\n        listen 127.0.0.1:{port};\n        server_name {PROXY_NAME};\n\
                 {location}    }}\n}}\n"
            );
            let conf = dir.path().join("nginx.conf");
            std::fs::write(&conf, config).unwrap();
            let mut child = Command::new(binary)
                .arg("-p")
                .arg(dir.path())
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let alive = || matches!(child.try_wait(), Ok(None));
            if wait_for_port(port, Duration::from_secs(30), alive) {
                return Nginx { child, port, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
            assert!(
                log.contains("Address already in use"),
                "nginx did not start: {log}"
            );
        }
        panic!("nginx found no free port");
    }

    /// How a client reaches the server through this nginx.
    fn through(&self) -> Through {
        Through {
            base: format!("http://127.0.0.1:{}/cellucid/", self.port),
            headers: vec![("Host".to_owned(), self.host())],
        }
    }

    /// The `Host` a browser sends to this proxy.
    fn host(&self) -> String {
        format!("{PROXY_NAME}:{}", self.port)
    }

    fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/cellucid/_cellucid/ws", self.port)
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn nginx_serves_every_route_under_a_prefix() {
    let Some(nginx_binary) = require(find_nginx()) else {
        return;
    };
    let served = Served::new();
    let server = served.serve(&["--viewer", "--allowed-host", PROXY_NAME]);
    let nginx = Nginx::start(&nginx_binary, server.addr);
    let through = nginx.through();
    assert_serves_everything(&through, &server, &[]);

    // The Host check still applies to what the proxy forwards.
    let foreign = request(
        "GET",
        &through.url("_cellucid/datasets"),
        &[("Host", "evil.test")],
    );
    assert_eq!(foreign.status, 421, "{}", foreign.text());

    // The viewer channel: the page's own origin is the proxy's.
    let (id, token) = viewer_credentials(&server);
    let origin = format!("http://{}", nginx.host());
    let host = nginx.host();
    let headers = [("Host", host.as_str()), ("Origin", origin.as_str())];
    let answer = runtime().block_on(ws_hello(&nginx.ws_url(), &headers, &id, &token));
    assert_eq!(answer, Ok(welcome()), "nginx log: {}", nginx.error_log());
}

#[test]
fn nginx_serves_the_offline_page_and_its_links_under_the_prefix() {
    let Some(nginx_binary) = require(find_nginx()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let web = tmp.path().join("web");
    // A UI source that refuses connections: `/` becomes the offline page.
    let refused = format!("http://127.0.0.1:{}", free_port());
    let server = Server::start(&[
        "--web-source-url",
        &refused,
        "--web-cache-dir",
        web.to_str().unwrap(),
        "--allowed-host",
        PROXY_NAME,
    ]);
    let nginx = Nginx::start(&nginx_binary, server.addr);
    let through = nginx.through();
    let page = settled_root(&through);
    assert!(is_unavailable_page(&page), "{}", page.text());
    let links = references(&page.text());
    assert!(!links.is_empty(), "{}", page.text());
    for link in links {
        let reply = through.get_url(&resolve(&through.url(""), &link), &[]);
        assert_eq!(reply.status, 200, "{link}: {}", reply.text());
    }
}

/// The cookie `Set-Cookie` sets, as `name=value`.
fn cookie_pair(reply: &Reply) -> String {
    let set = reply
        .header("set-cookie")
        .unwrap_or_else(|| panic!("no Set-Cookie: {:?}", reply.headers));
    set.split(';').next().unwrap().trim().to_owned()
}

#[test]
fn nginx_carries_the_access_token_flow_and_trusted_forwarded_headers() {
    let Some(nginx_binary) = require(find_nginx()) else {
        return;
    };
    let served = Served::new();
    let server = served.serve(&[
        "--auth",
        "--viewer",
        "--trust-proxy",
        "--verbose",
        "--log-format",
        "json",
        "--allowed-host",
        PROXY_NAME,
    ]);
    let token = server.token.clone().expect("--auth prints a token");
    let nginx = Nginx::start(&nginx_binary, server.addr);
    let through = nginx.through();

    // Without the token: 401 everywhere but the content-free health.
    assert_eq!(through.get("_cellucid/datasets", &[]).status, 401);
    assert_eq!(through.get("", &[]).status, 401);
    assert_eq!(
        through.get("_cellucid/health", &[]).text(),
        r#"{"status":"ok"}"#
    );

    // The printed URL, opened through the proxy: a cookie and a redirect
    // that stays under the prefix.
    let opened = through.url(&format!("?token={token}"));
    let exchange = through.get_url(&opened, &[]);
    assert_eq!(exchange.status, 303, "{}", exchange.text());
    let location = exchange.header("location").unwrap();
    assert_eq!(location, "./");
    assert_eq!(resolve(&opened, location), through.url(""));
    let set_cookie = exchange.header("set-cookie").unwrap();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    // No Path: the browser scopes it to the prefix. nginx spoke plain http
    // to the client (X-Forwarded-Proto: http), so it is not Secure.
    assert!(
        !set_cookie.contains("Path=") && !set_cookie.contains("Secure"),
        "{set_cookie}"
    );
    let cookie = cookie_pair(&exchange);

    // With the cookie, everything; with the Bearer header too.
    let browser = Through {
        base: through.base.clone(),
        headers: vec![
            ("Host".to_owned(), nginx.host()),
            ("Cookie".to_owned(), cookie.clone()),
        ],
    };
    assert_serves_everything(&browser, &server, &[("Cookie", cookie.as_str())]);
    let bearer = format!("Bearer {token}");
    assert_eq!(
        through
            .get("_cellucid/datasets", &[("Authorization", &bearer)])
            .status,
        200
    );

    // The channel through the proxy needs the cookie as well as its own tokens.
    let (id, viewer_token) = viewer_credentials(&server);
    let origin = format!("http://{}", nginx.host());
    let host = nginx.host();
    let rt = runtime();
    let bare = [("Host", host.as_str()), ("Origin", origin.as_str())];
    let refused = rt.block_on(ws_hello(&nginx.ws_url(), &bare, &id, &viewer_token));
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("401")),
        "{refused:?}"
    );
    let with_cookie = [
        ("Host", host.as_str()),
        ("Origin", origin.as_str()),
        ("Cookie", cookie.as_str()),
    ];
    let answer = rt.block_on(ws_hello(&nginx.ws_url(), &with_cookie, &id, &viewer_token));
    assert_eq!(answer, Ok(welcome()), "nginx log: {}", nginx.error_log());

    // The log names the client nginx saw (the last X-Forwarded-For element),
    // never what the client claimed before it.
    let forged = through.get("_cellucid/health", &[("X-Forwarded-For", "198.51.100.23")]);
    assert_eq!(forged.status, 200);
    let logged = wait_for_request_log(&server, "/_cellucid/health");
    assert_eq!(logged["client"], "127.0.0.1", "{logged}");
    assert!(!server.stderr().iter().any(|l| l.contains("198.51.100.23")));
    // A Host nginx accepts but this server does not name is refused, by
    // Host and by X-Forwarded-Host alike.
    let foreign = request(
        "GET",
        &through.url("_cellucid/health"),
        &[("Host", "evil.test")],
    );
    assert_eq!(foreign.status, 421);
}

/// The fields of the first JSON request-log line for `path`.
fn wait_for_request_log(server: &Server, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = server.stderr().iter().find_map(|line| {
            let value: Value = serde_json::from_str(line).ok()?;
            let fields = value.get("fields")?;
            (fields["message"] == "request" && fields["path"] == path).then(|| fields.clone())
        });
        if let Some(fields) = found {
            return fields;
        }
        assert!(
            Instant::now() < deadline,
            "no request log for {path}: {:?}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// --- X-Forwarded-* without a proxy: what the server sees is the same --------------

/// The `X-Forwarded-*` headers a client could forge when the server is
/// reachable without the proxy.
const FORGED: [(&str, &str); 3] = [
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Host", "evil.test"),
    ("X-Forwarded-For", "203.0.113.9"),
];

fn serve_for_forwarding(extra: &[&str]) -> Server {
    let mut args = vec![
        "--no-web-ui",
        "--auth",
        "--verbose",
        "--log-format",
        "json",
        "--allowed-host",
        "proxy.test",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[test]
fn forwarded_headers_have_no_effect_without_trust_proxy() {
    let server = serve_for_forwarding(&[]);
    let token = server.token.clone().unwrap();
    let exchange = request("GET", &server.url(&format!("/?token={token}")), &FORGED);
    assert_eq!(exchange.status, 303);
    let set_cookie = exchange.header("set-cookie").unwrap();
    assert!(!set_cookie.contains("Secure"), "{set_cookie}");
    let bearer = format!("Bearer {token}");
    let reply = request(
        "GET",
        &server.url("/_cellucid/datasets"),
        &[FORGED.as_slice(), &[("Authorization", bearer.as_str())]].concat(),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let logged = wait_for_request_log(&server, "/_cellucid/datasets");
    assert!(logged.get("client").is_none(), "{logged}");
    assert!(logged["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(!server.stderr().iter().any(|l| l.contains("203.0.113.9")));
}

#[test]
fn trust_proxy_believes_the_proxy_but_never_loosens_a_check() {
    let server = serve_for_forwarding(&["--trust-proxy"]);
    let token = server.token.clone().unwrap();
    let bearer = format!("Bearer {token}");
    let auth = ("Authorization", bearer.as_str());

    // The client spoke HTTPS to the proxy: the cookie is Secure.
    let exchange = request(
        "GET",
        &server.url(&format!("/?token={token}")),
        &[
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "proxy.test"),
        ],
    );
    assert_eq!(exchange.status, 303);
    assert!(exchange.header("set-cookie").unwrap().ends_with("; Secure"));
    let plain = request(
        "GET",
        &server.url(&format!("/?token={token}")),
        &[("X-Forwarded-Proto", "http")],
    );
    assert!(!plain.header("set-cookie").unwrap().contains("Secure"));

    // X-Forwarded-Host is checked like Host (its port is the proxy's), in
    // addition to Host: a foreign one is 421 whatever the credentials.
    for good in ["proxy.test", "proxy.test:443", "127.0.0.1:8888"] {
        let reply = request(
            "GET",
            &server.url("/_cellucid/datasets"),
            &[auth, ("X-Forwarded-Host", good)],
        );
        assert_eq!(reply.status, 200, "{good}: {}", reply.text());
    }
    for bad in ["evil.test", "proxy.test, evil.test", "proxy.test/x", ""] {
        let reply = request(
            "GET",
            &server.url("/_cellucid/datasets"),
            &[auth, ("X-Forwarded-Host", bad)],
        );
        assert_eq!(reply.status, 421, "{bad:?}: {}", reply.text());
        assert!(reply.text().contains("X-Forwarded-Host"));
    }
    let health = request(
        "GET",
        &server.url("/_cellucid/health"),
        &[("X-Forwarded-Host", "evil.test")],
    );
    assert_eq!(health.status, 421);
    // Host itself is still checked: a good X-Forwarded-Host does not help.
    let misdirected = request(
        "GET",
        &server.url("/_cellucid/datasets"),
        &[
            auth,
            ("Host", "evil.test"),
            ("X-Forwarded-Host", "proxy.test"),
        ],
    );
    assert_eq!(misdirected.status, 421);

    // The client the proxy names is logged; only the element it wrote.
    let reply = request(
        "GET",
        &server.url("/_cellucid/info"),
        &[auth, ("X-Forwarded-For", "198.51.100.23, 203.0.113.9")],
    );
    assert_eq!(reply.status, 200);
    let logged = wait_for_request_log(&server, "/_cellucid/info");
    assert_eq!(logged["client"], "203.0.113.9", "{logged}");
    assert!(logged["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(!server.stderr().iter().any(|l| l.contains("198.51.100.23")));
}

// --- jupyter-server-proxy -------------------------------------------------------

/// The venv `tests/tools/jupyter-venv.sh` makes: the same directory rule,
/// keyed by the pinned requirements' hash.
fn find_jupyter() -> Result<PathBuf, String> {
    let tools = repo().join("tests/tools");
    let requirements = std::fs::read(tools.join("jupyter-requirements.txt")).unwrap();
    let key: String = crate::support::sha256_hex(&requirements)[..12].to_owned();
    let root = match std::env::var_os("CELLUCID_TEST_VENVS") {
        Some(root) => PathBuf::from(root),
        None => match std::env::var_os("XDG_CACHE_HOME") {
            Some(cache) if !cache.is_empty() => PathBuf::from(cache),
            _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"),
        }
        .join("cellucid-test-venvs"),
    };
    let venv = root.join(format!("jupyter-{key}"));
    let jupyter = venv.join("bin/jupyter");
    if venv.join(".cellucid-complete").is_file() && jupyter.is_file() {
        Ok(jupyter)
    } else {
        Err(format!(
            "no Jupyter venv at {} (make it with tests/tools/jupyter-venv.sh)",
            venv.display()
        ))
    }
}

/// A real Jupyter server with jupyter-server-proxy on a free loopback port,
/// its config, data and runtime dirs in a temp dir; killed on drop.
struct Jupyter {
    child: Child,
    port: u16,
    token: String,
    dir: tempfile::TempDir,
}

impl Jupyter {
    fn start(binary: &Path) -> Jupyter {
        let dir = tempfile::tempdir().unwrap();
        let token = "jupyter-test-token-0123456789abcdef".to_owned();
        for _ in 0..5 {
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("jupyter.log")).unwrap();
            let mut child = Command::new(binary)
                .args(["server", "--no-browser", "--allow-root", "--ip=127.0.0.1"])
                .arg(format!("--port={port}"))
                .arg("--ServerApp.port_retries=0")
                .arg(format!("--IdentityProvider.token={token}"))
                .arg(format!("--ServerApp.root_dir={}", dir.path().display()))
                .env("JUPYTER_CONFIG_DIR", dir.path().join("config"))
                .env("JUPYTER_DATA_DIR", dir.path().join("data"))
                .env("JUPYTER_RUNTIME_DIR", dir.path().join("runtime"))
                .env("JUPYTER_PLATFORM_DIRS", "1")
                .env("HOME", dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            // Usually 2 s; generous for a machine busy with other builds
            // (importing Jupyter is most of it).
            let alive = || matches!(child.try_wait(), Ok(None));
            if wait_for_port(port, Duration::from_secs(120), alive) {
                let jupyter = Jupyter {
                    child,
                    port,
                    token,
                    dir,
                };
                jupyter.wait_ready();
                return jupyter;
            }
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.path().join("jupyter.log")).unwrap_or_default();
            assert!(
                log.contains("already in use"),
                "Jupyter did not start: {log}"
            );
        }
        panic!("Jupyter found no free port");
    }

    /// Waits until the server answers its API (extensions loaded).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("http://127.0.0.1:{}/api/status", self.port);
        let auth = format!("token {}", self.token);
        while request("GET", &url, &[("Authorization", &auth)]).status != 200 {
            assert!(
                Instant::now() < deadline,
                "Jupyter never answered: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The Jupyter login cookie a browser holds after opening the server's
    /// `?token=` URL once.
    fn login_cookie(&self) -> String {
        let reply = get(&format!(
            "http://127.0.0.1:{}/api/status?token={}",
            self.port, self.token
        ));
        assert_eq!(reply.status, 200, "{}", reply.text());
        cookie_pair(&reply)
    }

    /// How a browser logged in to Jupyter reaches `cellucid` through
    /// `/proxy/<port>/`.
    fn through(&self, cellucid: &Server) -> Through {
        Through {
            base: format!(
                "http://127.0.0.1:{}/proxy/{}/",
                self.port,
                cellucid.addr.port()
            ),
            headers: vec![("Cookie".to_owned(), self.login_cookie())],
        }
    }

    fn ws_url(&self, cellucid: &Server) -> String {
        format!(
            "ws://127.0.0.1:{}/proxy/{}/_cellucid/ws",
            self.port,
            cellucid.addr.port()
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("jupyter.log")).unwrap_or_default()
    }
}

impl Drop for Jupyter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn jupyter_server_proxy_serves_cellucid_at_proxy_port() {
    let Some(jupyter_binary) = require(find_jupyter()) else {
        return;
    };
    let jupyter = Jupyter::start(&jupyter_binary);

    // jupyter-server-proxy forwards the browser's Host unchanged: the
    // Jupyter server's own address, which is not this server's port.
    let bare = Server::start(&["--no-web-ui"]);
    let refused = jupyter.through(&bare).get("_cellucid/health", &[]);
    assert_eq!(refused.status, 421, "{}", refused.text());
    let jupyter_host = format!("127.0.0.1:{}", jupyter.port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !bare.stderr().iter().any(|l| l.contains(&jupyter_host)) {
        assert!(Instant::now() < deadline, "{:?}", bare.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(bare);

    // Named with --allowed-host, everything works under /proxy/<port>/.
    let served = Served::new();
    let server = served.serve(&["--viewer", "--allowed-host", "127.0.0.1"]);
    let through = jupyter.through(&server);
    assert_serves_everything(&through, &server, &[]);

    let (id, token) = viewer_credentials(&server);
    let origin = format!("http://{jupyter_host}");
    let login = jupyter.login_cookie();
    let headers = [("Origin", origin.as_str()), ("Cookie", login.as_str())];
    let answer = runtime().block_on(ws_hello(&jupyter.ws_url(&server), &headers, &id, &token));
    assert_eq!(answer, Ok(welcome()), "Jupyter log: {}", jupyter.log());
}

#[test]
fn jupyter_server_proxy_carries_the_access_token_flow() {
    let Some(jupyter_binary) = require(find_jupyter()) else {
        return;
    };
    let jupyter = Jupyter::start(&jupyter_binary);
    let served = Served::new();
    let server = served.serve(&["--auth", "--viewer", "--allowed-host", "127.0.0.1"]);
    let token = server.token.clone().unwrap();
    let through = jupyter.through(&server);
    assert_eq!(through.get("_cellucid/datasets", &[]).status, 401);

    // The browser, logged in to Jupyter, opens the printed URL under the
    // proxy: Jupyter lets it through on its own cookie (the `token`
    // parameter is not its token), cellucid exchanges it for its cookie and
    // redirects within /proxy/<port>/.
    let opened = through.url(&format!("?token={token}"));
    let exchange = through.get_url(&opened, &[]);
    assert_eq!(
        exchange.status,
        303,
        "{}: {}",
        exchange.text(),
        jupyter.log()
    );
    let location = exchange.header("location").unwrap();
    assert_eq!(resolve(&opened, location), through.url(""));
    let cookie = cookie_pair(&exchange);
    assert!(cookie.starts_with("cellucid_token_"), "{cookie}");
    let both = format!("{}; {cookie}", through.headers[0].1);
    let browser = Through {
        base: through.base,
        headers: vec![("Cookie".to_owned(), both.clone())],
    };
    let bearer = format!("Bearer {token}");
    assert_serves_everything(&browser, &server, &[("Authorization", bearer.as_str())]);

    let (id, viewer_token) = viewer_credentials(&server);
    let origin = format!("http://127.0.0.1:{}", jupyter.port);
    let headers = [("Origin", origin.as_str()), ("Cookie", both.as_str())];
    let answer = runtime().block_on(ws_hello(
        &jupyter.ws_url(&server),
        &headers,
        &id,
        &viewer_token,
    ));
    assert_eq!(answer, Ok(welcome()), "Jupyter log: {}", jupyter.log());
}
