//! Binding, accepting, serving connections within limits, and graceful shutdown.
//!
//! The request path is an onion, outermost first: the connection (limits,
//! timeouts; with [`TlsConfig`], the TLS handshake under its deadline and
//! HTTP/2 or HTTP/1.1 as ALPN chose) → [`OriginLayer`] (Host check, CORS,
//! hardening headers) → the router → a handler → the dataset source.
//!
//! Plain HTTP is HTTP/1.1 only: browsers speak HTTP/2 over TLS alone, and
//! HTTP/2 is not guessed from the first bytes of a plain connection.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore, TryAcquireError};
use tokio::task::JoinSet;
use tower::Service;

use crate::channel::ViewerRegistry;
use crate::conn::{ConnectionSlot, Connections, Registered, TrackedIo, Verdict};
use crate::h2_stream::{ServedBody, StreamExecutor, StreamProgress};
use crate::mount::Layout;
use crate::origin::ConfigError;
use crate::service::{CellucidService, ServiceConfig};
use crate::tls::{self, TlsConfig};

/// HTTP/2 "rapid reset" (CVE-2023-44487): streams a client may open and
/// reset before the server has picked them up; beyond it the connection is
/// ended with `GOAWAY` (`ENHANCE_YOUR_CALM`).
const MAX_PENDING_ACCEPT_RESETS: usize = 20;

/// Streams the server may reset for a client's protocol errors on one
/// HTTP/2 connection before it ends the connection: the other side of
/// rapid-reset, a client provoking resets instead of sending them.
const MAX_LOCAL_ERROR_RESETS: usize = 256;

/// Bounds on what one client can make the server hold.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Limits {
    /// Largest request line + headers, in bytes (431 beyond).
    pub max_head_bytes: usize,
    /// Most request headers (431 beyond).
    pub max_headers: usize,
    /// Time a client has to send a request head once it starts (or connects).
    pub header_read_timeout: Duration,
    /// Time an idle keep-alive connection is kept open.
    pub idle_timeout: Duration,
    /// Time a response may wait for a client that takes none of its bytes;
    /// the connection is dropped beyond it (on HTTP/2, the stream is reset).
    pub send_timeout: Duration,
    /// Time a client has to complete the TLS handshake after connecting;
    /// it holds a connection slot until then.
    pub tls_handshake_timeout: Duration,
    /// Most HTTP/2 streams (requests) in flight on one connection; the
    /// client is told in its `SETTINGS`, a stream beyond it is refused
    /// (`REFUSED_STREAM`, which clients retry).
    pub max_concurrent_streams: u32,
    /// Most connections served at once. At the cap, the connection idle the
    /// longest is closed to make room; with none idle, new clients wait in
    /// the listen backlog.
    pub max_connections: usize,
    /// How long shutdown waits for requests in flight; [`Server::run`]
    /// returns within about this long after its shutdown signal.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_bytes: 64 * 1024,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            send_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            max_concurrent_streams: 128,
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Everything needed to start a server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Address to bind (`127.0.0.1:8765` by default; port 0 lets the OS pick).
    pub listen: SocketAddr,
    /// Connection and request limits.
    pub limits: Limits,
    /// What the service answers (names, origins, viewer UI, channel).
    pub service: ServiceConfig,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN) with this certificate;
    /// `None` serves plain HTTP/1.1.
    pub tls: Option<TlsConfig>,
}

impl ServerConfig {
    /// A configuration for `listen` with default limits and no extras.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            limits: Limits::default(),
            service: ServiceConfig::default(),
            tls: None,
        }
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The port is taken by another program.
    #[error("port {port} on {ip} is already in use")]
    PortInUse {
        /// The address asked for.
        ip: std::net::IpAddr,
        /// The port asked for.
        port: u16,
    },
    /// The address cannot be bound (not an address of this machine,
    /// permission denied for a low port, …).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An allowed host or origin is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// A bound server, ready to run: a thin runner of [`CellucidService`] on a
/// TCP listener, adding what only a socket owner can do (connection cap,
/// header-read, idle and send timeouts, graceful shutdown).
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    service: CellucidService,
    limits: Limits,
    tls: Option<TlsConfig>,
}

impl Server {
    /// Binds `config.listen` and prepares to serve `layout`.
    ///
    /// # Errors
    /// [`ServerError::PortInUse`] for a busy port, [`ServerError::Bind`] for
    /// other bind failures, [`ServerError::Config`] for an invalid allowlist.
    pub async fn bind(config: ServerConfig, layout: Layout) -> Result<Self, ServerError> {
        let listener = TcpListener::bind(config.listen).await.map_err(|source| {
            if source.kind() == io::ErrorKind::AddrInUse {
                ServerError::PortInUse {
                    ip: config.listen.ip(),
                    port: config.listen.port(),
                }
            } else {
                ServerError::Bind {
                    addr: config.listen,
                    source,
                }
            }
        })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
        let service = CellucidService::new(config.service, layout, local_addr)?;
        Ok(Self {
            listener,
            local_addr,
            service,
            limits: config.limits,
            tls: config.tls,
        })
    }

    /// The address actually bound (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's own URL, `http://<bound address>` or `https://…` (no
    /// trailing `/`).
    pub fn base_url(&self) -> String {
        let scheme = if self.is_tls() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// Whether the server speaks HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The server's viewer registry: register viewers here to receive their
    /// events and session bundles and to send them commands.
    pub fn viewers(&self) -> ViewerRegistry {
        self.service.viewers()
    }

    /// The service this server runs.
    pub fn service(&self) -> &CellucidService {
        &self.service
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets requests
    /// in flight finish (up to [`Limits::shutdown_grace`]) and returns.
    ///
    /// # Errors
    /// Only if the listener itself fails irrecoverably.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let Self {
            listener,
            service,
            limits,
            tls,
            ..
        } = self;
        let limits = Arc::new(limits);
        let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        let registry = Connections::new();
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        let protocols = Arc::new(Protocols::new(&limits));
        tokio::pin!(shutdown);

        loop {
            while connections.try_join_next().is_some() {}
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let permit = match Arc::clone(&slots).try_acquire_owned() {
                Ok(permit) => permit,
                Err(TryAcquireError::Closed) => break,
                Err(TryAcquireError::NoPermits) => {
                    let waited = tokio::select! {
                        permit = make_room(&slots, &registry) => permit,
                        () = &mut shutdown => None,
                    };
                    match waited {
                        Some(permit) => permit,
                        None => break,
                    }
                }
            };
            let _ = stream.set_nodelay(true);
            let task = Connection {
                service: service.clone(),
                limits: Arc::clone(&limits),
                protocols: Arc::clone(&protocols),
                stop: stop_rx.clone(),
            };
            let slot = ConnectionSlot::new(permit);
            let registered = registry.open();
            let tls = tls.clone();
            connections.spawn(async move {
                task.start(stream, tls, peer, slot.clone(), &registered)
                    .await;
                drop(slot);
            });
        }

        drop(listener);
        let _ = stop_tx.send(true);
        let grace = limits.shutdown_grace;
        let (drained, _) = tokio::join!(
            tokio::time::timeout(grace, async {
                while connections.join_next().await.is_some() {}
            }),
            // WebSockets live outside the connections: close them with 1001,
            // leaving part of the grace to the sources' cleanup.
            tokio::time::timeout(grace, service.shutdown(grace.mul_f64(0.75))),
        );
        if drained.is_err() {
            tracing::warn!(
                open = connections.len(),
                "requests still running after the shutdown grace period; closing them"
            );
            connections.shutdown().await;
        }
        Ok(())
    }
}

/// Waits for a free connection slot, closing idle keep-alive connections
/// (oldest first) to make one: a client must not wait for a slot that an
/// idle connection holds. `None` if the semaphore is closed.
async fn make_room(
    slots: &Arc<Semaphore>,
    registry: &Connections,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    loop {
        let evicted = registry.evict_oldest_idle();
        // An evicted connection ends at once unless a request raced in; then
        // try the next one shortly. With none idle, wait for any slot.
        let retry = if evicted {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(500)
        };
        tokio::select! {
            permit = Arc::clone(slots).acquire_owned() => return permit.ok(),
            () = tokio::time::sleep(retry) => {}
        }
    }
}

/// The request log line (`--verbose`): who asked what, and the answer:
/// `status`, `bytes` (the body's length; absent for a stream of unknown
/// length), `duration_ms` (until the response head was ready) and
/// `dataset` (the dataset id it served, absent for API and UI routes).
fn log_request(
    response: &http::Response<crate::body::Body>,
    peer: SocketAddr,
    client: Option<std::net::IpAddr>,
    method: &http::Method,
    path: &str,
    started: std::time::Instant,
) {
    let status = response.status().as_u16();
    let bytes = http_body::Body::size_hint(response.body()).exact();
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let dataset = response
        .extensions()
        .get::<crate::response::ServedDataset>()
        .map(|d| d.0.as_str());
    tracing::debug!(
        client = client.map(tracing::field::display),
        %peer,
        %method,
        %path,
        status,
        bytes,
        duration_ms,
        dataset,
        "request"
    );
}

/// HTTP/2 names the host in the `:authority` pseudo-header, which hyper puts
/// in the URI, and clients send no `Host`: copy it into `Host`, which the
/// origin layer checks (docs/PROTOCOL.md) — the value checked is the one the
/// request was sent to (RFC 9113 §8.3.1 gives `:authority` precedence).
fn authority_as_host<B>(req: &mut Request<B>) {
    if req.version() != http::Version::HTTP_2 {
        return;
    }
    let Some(authority) = req.uri().authority() else {
        return;
    };
    if let Ok(host) = http::HeaderValue::from_str(authority.as_str()) {
        req.headers_mut().insert(http::header::HOST, host);
    }
}

/// The HTTP/1.1 and HTTP/2 connection settings, shared by all connections.
struct Protocols {
    h1: http1::Builder,
    h2: http2::Builder<StreamExecutor>,
}

impl Protocols {
    fn new(limits: &Limits) -> Self {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_headers(limits.max_headers)
            .max_header_size(limits.max_head_bytes)
            .keep_alive(true);
        let mut h2 = http2::Builder::new(StreamExecutor::new(limits.send_timeout));
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_concurrent_streams.max(1))
            .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
            .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESETS)
            .max_header_list_size(u32::try_from(limits.max_head_bytes).unwrap_or(u32::MAX))
            // The connection watchdog ends idle connections; no pings.
            .keep_alive_interval(None);
        Self { h1, h2 }
    }
}

/// What one connection task needs.
struct Connection {
    service: CellucidService,
    limits: Arc<Limits>,
    protocols: Arc<Protocols>,
    stop: watch::Receiver<bool>,
}

/// How long a connection told to answer 408 has to write it.
const ANSWER_TIME: Duration = Duration::from_secs(1);

impl Connection {
    /// Runs the TLS handshake when the server speaks HTTPS, then serves the
    /// protocol the client chose.
    async fn start(
        mut self,
        stream: TcpStream,
        tls: Option<TlsConfig>,
        peer: SocketAddr,
        slot: ConnectionSlot,
        registered: &Registered,
    ) {
        let Some(tls) = tls else {
            registered.activity().ready(false);
            return self
                .serve(stream, false, false, peer, slot, registered)
                .await;
        };
        // A client that connects and never finishes the handshake must not
        // hold its slot: the handshake has a deadline of its own.
        let deadline = self.limits.tls_handshake_timeout;
        let handshake = tokio::time::timeout(deadline, tls.accept(stream));
        let stream = tokio::select! {
            done = handshake => match done {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => {
                    tracing::debug!(%peer, error = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "closed a connection that did not finish its TLS handshake in time");
                    return;
                }
            },
            _ = self.stop.changed() => return,
        };
        let h2 = tls::negotiated_h2(&stream);
        registered.activity().ready(h2);
        self.serve(stream, true, h2, peer, slot, registered).await;
    }

    async fn serve<S>(
        self,
        stream: S,
        https: bool,
        h2: bool,
        peer: SocketAddr,
        slot: ConnectionSlot,
        registered: &Registered,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = registered.activity();
        let io = TokioIo::new(TrackedIo::new(stream, Arc::clone(activity)));
        let inner = self.service.clone();
        let tracked = Arc::clone(activity);
        let service = tower::service_fn(move |mut req: Request<Incoming>| {
            let mut inner = inner.clone();
            req.extensions_mut().insert(slot.clone());
            if https {
                req.extensions_mut().insert(tls::Https);
            }
            authority_as_host(&mut req);
            let guard = tracked.request();
            async move {
                // The path only: queries may carry tokens and are never logged.
                // Copied only when the request log is on: this is the hot path.
                let logged = tracing::enabled!(tracing::Level::DEBUG).then(|| {
                    // Behind a trusted proxy the peer is the proxy: log the
                    // client it names as well.
                    let client = inner
                        .trusts_proxy()
                        .then(|| crate::forwarded::client_ip(req.headers()))
                        .flatten();
                    let started = std::time::Instant::now();
                    (
                        req.method().clone(),
                        req.uri().path().to_owned(),
                        client,
                        started,
                    )
                });
                let Ok(mut response) = inner.call(req).await;
                if let Some((method, path, client, started)) = logged {
                    log_request(&response, peer, client, &method, &path, started);
                }
                response.body_mut().set_guard(Box::new(guard));
                // Inside an HTTP/2 stream's task: its send timeout.
                let stream = StreamProgress::current();
                Ok::<_, Infallible>(response.map(|body| ServedBody::new(body, stream)))
            }
        });
        let service = TowerToHyperService::new(service);
        let protocols = Arc::clone(&self.protocols);
        if h2 {
            let conn = protocols.h2.serve_connection(io, service);
            self.drive(conn, |conn| conn.graceful_shutdown(), peer, activity)
                .await;
        } else {
            let conn = protocols.h1.serve_connection(io, service).with_upgrades();
            self.drive(conn, |conn| conn.graceful_shutdown(), peer, activity)
                .await;
        }
    }

    /// Runs `conn` under the connection watchdog and the shutdown signal;
    /// `graceful` asks it to finish what is in flight and end.
    async fn drive<C>(
        mut self,
        conn: C,
        graceful: impl Fn(Pin<&mut C>),
        peer: SocketAddr,
        activity: &Arc<crate::conn::Activity>,
    ) where
        C: Future<Output = Result<(), hyper::Error>>,
    {
        tokio::pin!(conn);
        let limits = &self.limits;
        let mut watchdog = Box::pin(activity.watchdog(limits));
        // Set once the connection has been told to end: it gets a moment to
        // write its last answer.
        let mut ending: Option<tokio::time::Instant> = None;
        let mut stopping = *self.stop.borrow();
        if stopping {
            graceful(conn.as_mut());
        }
        loop {
            let end_by = ending.unwrap_or_else(|| tokio::time::Instant::now() + ANSWER_TIME);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(%peer, error = %err, "connection ended with an error");
                    }
                    return;
                }
                verdict = &mut watchdog, if ending.is_none() => match verdict {
                    Verdict::HeadTimeout { answer: true } => {
                        tracing::debug!(%peer, "answered 408: the request head did not arrive in time");
                        activity.answer_request_timeout();
                        ending = Some(tokio::time::Instant::now() + ANSWER_TIME);
                    }
                    Verdict::HeadTimeout { answer: false } => {
                        tracing::debug!(%peer, "closed a connection that sent no request in time");
                        return;
                    }
                    Verdict::Idle => {
                        tracing::debug!(%peer, "closed an idle keep-alive connection");
                        return;
                    }
                    Verdict::SendStalled => {
                        tracing::info!(%peer, "dropped a response the client stopped reading");
                        return;
                    }
                    Verdict::Evicted => {
                        tracing::debug!(%peer, "closing an idle keep-alive connection to make room for a new client");
                        graceful(conn.as_mut());
                        // Whatever raced in is still watched.
                        watchdog = Box::pin(activity.watchdog(limits));
                    }
                },
                () = tokio::time::sleep_until(end_by), if ending.is_some() => return,
                changed = self.stop.changed(), if !stopping => {
                    stopping = true;
                    if changed.is_ok() {
                        graceful(conn.as_mut());
                    }
                }
            }
        }
    }
}
