//! Binding, accepting, serving connections within limits, and graceful shutdown.
//!
//! The request path is an onion, outermost first: the connection (limits,
//! timeouts) → [`OriginLayer`] (Host check, CORS, hardening headers) → the
//! router → a handler → the dataset source.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore, TryAcquireError};
use tokio::task::JoinSet;
use tower::Service;

use crate::channel::ViewerRegistry;
use crate::conn::{ConnectionSlot, Connections, Registered, TrackedIo, Verdict};
use crate::mount::Layout;
use crate::origin::ConfigError;
use crate::service::{CellucidService, ServiceConfig};

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
    /// the connection is dropped beyond it.
    pub send_timeout: Duration,
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
}

impl ServerConfig {
    /// A configuration for `listen` with default limits and no extras.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            limits: Limits::default(),
            service: ServiceConfig::default(),
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
        })
    }

    /// The address actually bound (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's own URL, `http://<bound address>` (no trailing `/`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.local_addr)
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
            ..
        } = self;
        let limits = Arc::new(limits);
        let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        let registry = Connections::new();
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_headers(limits.max_headers)
            .max_header_size(limits.max_head_bytes)
            .keep_alive(true);
        let builder = Arc::new(builder);
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
                builder: Arc::clone(&builder),
                stop: stop_rx.clone(),
            };
            let slot = ConnectionSlot::new(permit);
            let registered = registry.open();
            connections.spawn(async move {
                task.serve(stream, peer, slot.clone(), &registered).await;
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

/// What one connection task needs.
struct Connection {
    service: CellucidService,
    limits: Arc<Limits>,
    builder: Arc<http1::Builder>,
    stop: watch::Receiver<bool>,
}

/// How long a connection told to answer 408 has to write it.
const ANSWER_TIME: Duration = Duration::from_secs(1);

impl Connection {
    async fn serve(
        mut self,
        stream: TcpStream,
        peer: SocketAddr,
        slot: ConnectionSlot,
        registered: &Registered,
    ) {
        let activity = registered.activity();
        let io = TokioIo::new(TrackedIo::new(stream, Arc::clone(activity)));
        let inner = self.service;
        let tracked = Arc::clone(activity);
        let service = tower::service_fn(move |mut req: Request<Incoming>| {
            let mut inner = inner.clone();
            req.extensions_mut().insert(slot.clone());
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
                Ok::<_, Infallible>(response)
            }
        });
        let conn = self
            .builder
            .serve_connection(io, TowerToHyperService::new(service))
            .with_upgrades();
        tokio::pin!(conn);
        let limits = &self.limits;
        let mut watchdog = Box::pin(activity.watchdog(limits));
        // Set once the connection has been told to end: it gets a moment to
        // write its last answer.
        let mut ending: Option<tokio::time::Instant> = None;
        let mut stopping = *self.stop.borrow();
        if stopping {
            conn.as_mut().graceful_shutdown();
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
                        conn.as_mut().graceful_shutdown();
                        // Whatever raced in is still watched.
                        watchdog = Box::pin(activity.watchdog(limits));
                    }
                },
                () = tokio::time::sleep_until(end_by), if ending.is_some() => return,
                changed = self.stop.changed(), if !stopping => {
                    stopping = true;
                    if changed.is_ok() {
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}
