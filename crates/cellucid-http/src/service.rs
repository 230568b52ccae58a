//! The whole HTTP surface as one `tower::Service`.
//!
//! [`CellucidService`] answers every route of docs/PROTOCOL.md for a request
//! with any [`http_body::Body`] whose chunks are [`Bytes`] (hyper's
//! `Incoming`, axum's `Body`, a `Full` in a test). The layers, outermost
//! first:
//!
//! 1. [`OriginLayer`]: the Host allowlist (421), CORS preflights, CORS and
//!    hardening headers on every response;
//! 2. [`ForwardedLayer`]: with [`ServiceConfig::trust_proxy`], the
//!    `X-Forwarded-Host` check (421) and what the proxy says about the
//!    request; without it, nothing;
//! 3. [`AuthLayer`]: the access token, when the server needs one (401);
//! 4. the router: one [`Route`](crate::route::Route) per request, then its
//!    handler.
//!
//! [`Server`](crate::Server) runs it on a socket with connection limits;
//! an embedder can mount it in its own hyper or axum stack instead (see
//! `examples/axum_mount.rs`) or call it with `oneshot` in a test.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use tower::{Layer, Service};

use crate::auth::{AuthLayer, AuthPolicy, AuthService};
use crate::body::Body;
use crate::channel::{BoxError, Channel, ChannelLimits, ViewerRegistry};
use crate::forwarded::{ForwardedLayer, ForwardedService};
use crate::mount::Layout;
use crate::origin::{ConfigError, OriginLayer, OriginPolicy, OriginService};
use crate::router::{AppState, BoxFuture, Router};
use crate::WebUi;

/// What the service needs besides the datasets: the names it answers to and
/// what it serves beside the data.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServiceConfig {
    /// The host as the user gave it, reported by `/_cellucid/info`.
    pub host_label: Option<String>,
    /// Extra names accepted in `Host`, on any port.
    pub allowed_hosts: Vec<String>,
    /// Extra CORS origins, exact after canonicalisation.
    pub allowed_origins: Vec<String>,
    /// What `/` answers.
    pub web_ui: WebUi,
    /// Caps and deadlines of the viewer channel.
    pub channel: ChannelLimits,
    /// Who may pass: `None` is an open server (loopback binds by default),
    /// else every request needs the policy's token.
    pub auth: Option<AuthPolicy>,
    /// Believe the `X-Forwarded-*` headers of a reverse proxy
    /// (`--trust-proxy`; see [`crate::forwarded`]). Only for a server that
    /// is reachable through the proxy alone. Off by default: the headers
    /// then have no effect.
    pub trust_proxy: bool,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            host_label: None,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            web_ui: WebUi::Disabled,
            channel: ChannelLimits::default(),
            auth: None,
            trust_proxy: false,
        }
    }
}

/// The cellucid-rs HTTP surface: every route, behind the origin policy.
/// Cheap to clone (clones share the datasets, caches and viewers).
#[derive(Clone, Debug)]
pub struct CellucidService {
    stack: OriginService<ForwardedService<AuthService<Router>>>,
    shared: Arc<Shared>,
}

/// What [`CellucidService::shutdown`] needs.
#[derive(Debug)]
struct Shared {
    state: Arc<AppState>,
    channel: Arc<Channel>,
    viewers: ViewerRegistry,
    trust_proxy: bool,
}

impl CellucidService {
    /// A service for `layout`, answering as the server bound at `bound`
    /// (its port is the one `Host` headers must name on loopback binds, and
    /// the one `/_cellucid/info` reports).
    ///
    /// # Errors
    /// [`ConfigError`] when an allowed host or origin is invalid.
    pub fn new(
        config: ServiceConfig,
        layout: Layout,
        bound: SocketAddr,
    ) -> Result<Self, ConfigError> {
        let policy = Arc::new(OriginPolicy::new(
            bound.ip(),
            bound.port(),
            &config.allowed_hosts,
            &config.allowed_origins,
        )?);
        let viewers = ViewerRegistry::new();
        let channel = Arc::new(Channel::new(
            viewers.clone(),
            config.channel,
            Arc::clone(&policy),
        ));
        let host_label = config.host_label.unwrap_or_else(|| bound.ip().to_string());
        let state = Arc::new(AppState::new(
            Arc::clone(&channel),
            layout,
            &host_label,
            bound.port(),
            config.web_ui,
        ));
        let router = Router::new(Arc::clone(&state));
        let forwarded = if config.trust_proxy {
            ForwardedLayer::trusting(policy.host.clone(), bound.port())
        } else {
            ForwardedLayer::ignoring()
        };
        let stack = OriginLayer::new(policy)
            .layer(forwarded.layer(AuthLayer::new(config.auth).layer(router)));
        Ok(Self {
            stack,
            shared: Arc::new(Shared {
                state,
                channel,
                viewers,
                trust_proxy: config.trust_proxy,
            }),
        })
    }

    /// Whether the service believes a reverse proxy's `X-Forwarded-*`
    /// headers ([`ServiceConfig::trust_proxy`]).
    pub fn trusts_proxy(&self) -> bool {
        self.shared.trust_proxy
    }

    /// The viewer registry: register viewers here to receive their events
    /// and session bundles and to send them commands.
    pub fn viewers(&self) -> ViewerRegistry {
        self.shared.viewers.clone()
    }

    /// Ends the service's background work: closes every viewer WebSocket
    /// with 1001 (waiting at most `grace`), then tells the dataset sources
    /// the server stopped so they remove their temporary files.
    pub async fn shutdown(&self, grace: Duration) {
        self.shared.channel.shutdown(grace).await;
        let state = Arc::clone(&self.shared.state);
        let _ = tokio::task::spawn_blocking(move || state.shutdown_sources()).await;
    }
}

impl<B> Service<Request<B>> for CellucidService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = crate::origin::ResponseFuture<
        crate::forwarded::ResponseFuture<crate::auth::ResponseFuture<BoxFuture>>,
    >;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Always ready: no layer holds back requests.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.stack.call(req)
    }
}
