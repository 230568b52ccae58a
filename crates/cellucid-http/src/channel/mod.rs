//! The viewer channel (docs/PROTOCOL.md, "The viewer channel"): events, selections and session bundles
//! from a viewer to the program that started the server, commands the other
//! way.
//!
//! - [`ViewerRegistry`] / [`Viewer`]: who may talk, with which token; the
//!   program's side of the channel (`events()`, `send()`,
//!   `request_session_bundle()`).
//! - `http`: the 0.9.4 routes `POST /_cellucid/events`, `/selection`,
//!   `/session_bundle`.
//! - `ws`: the 0.9.5 WebSocket `/_cellucid/ws`.
//! - `bundle`: uploads to private temp files, validated by
//!   [`cellucid_core::session`].

mod body;
mod bundle;
mod command;
mod error;
mod event;
mod frame_guard;
pub(crate) mod http;
mod query;
mod registry;
pub(crate) mod ws;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::http::Request;
use bytes::Bytes;
use cellucid_core::session::BundleLimits;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use bundle::SessionBundle;
pub use command::{Command, CommandError};
pub use error::ChannelError;
pub use event::{ViewerEvent, ViewerEvents};
pub use registry::{
    BundleRequest, BundleRequestError, Delivery, RegisterError, Viewer, ViewerOptions,
    ViewerRegistry, BUNDLE_REQUEST_TTL,
};
pub use ws::HandshakeRefusal;

use crate::origin::OriginPolicy;

/// Caps and deadlines of the viewer channel (SECURITY.md, "Limits").
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ChannelLimits {
    /// Largest `POST /_cellucid/events` body (1 MiB).
    pub max_event_bytes: u64,
    /// Largest selection, posted or sent on the socket (64 MiB).
    pub max_selection_bytes: u64,
    /// Largest session bundle, and the most a gzip chunk may inflate to
    /// (512 MiB, `--max-bundle-bytes`).
    pub max_bundle_bytes: u64,
    /// Time a whole request body may take (408 beyond), on top of what
    /// [`ChannelLimits::min_body_rate`] allows for the bytes received: a body
    /// dribbled a byte at a time is cut off here, a large upload arriving at
    /// a steady rate is not.
    pub body_timeout: Duration,
    /// Bytes per second a request body may take longer than `body_timeout`:
    /// each byte received extends its deadline by `1 / min_body_rate` s.
    pub min_body_rate: u64,
    /// Time a new WebSocket has to send its hello frame.
    pub hello_timeout: Duration,
    /// Interval between the server's pings.
    pub ping_interval: Duration,
    /// Time the viewer has to answer a ping.
    pub pong_timeout: Duration,
    /// Largest text message on the socket (1 MiB; 1009 beyond).
    pub max_text_frame: usize,
    /// Largest binary message on the socket other than a bundle (64 MiB).
    pub max_binary_frame: usize,
    /// How long an event waits for the program to make room in its queue
    /// (503 beyond, or 1013 on the socket).
    pub event_patience: Duration,
    /// Most bytes of events queued for one viewer's program (64 MiB): a
    /// program that stops reading its events holds no more for it. An event
    /// larger than this waits for an empty queue.
    pub max_queued_event_bytes: u64,
    /// Time a WebSocket send may wait for a viewer that reads nothing; the
    /// socket is dropped beyond it.
    pub send_timeout: Duration,
    /// Where uploaded bundles are written; `None` is the system temp dir
    /// (`TMPDIR` honoured).
    pub bundle_dir: Option<PathBuf>,
}

impl Default for ChannelLimits {
    fn default() -> Self {
        Self {
            max_event_bytes: 1024 * 1024,
            max_selection_bytes: 64 * 1024 * 1024,
            max_bundle_bytes: 512 * 1024 * 1024,
            body_timeout: Duration::from_secs(60),
            min_body_rate: 16 * 1024,
            hello_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(20),
            max_text_frame: 1024 * 1024,
            max_binary_frame: 64 * 1024 * 1024,
            event_patience: Duration::from_secs(10),
            max_queued_event_bytes: 64 * 1024 * 1024,
            send_timeout: Duration::from_secs(60),
            bundle_dir: None,
        }
    }
}

/// The channel's shared state, one per server.
#[derive(Debug)]
pub(crate) struct Channel {
    registry: ViewerRegistry,
    limits: ChannelLimits,
    policy: Arc<OriginPolicy>,
    stop: watch::Sender<bool>,
    sockets: Mutex<JoinSet<()>>,
}

impl Channel {
    pub(crate) fn new(
        registry: ViewerRegistry,
        limits: ChannelLimits,
        policy: Arc<OriginPolicy>,
    ) -> Self {
        registry.set_event_queue_bytes(limits.max_queued_event_bytes);
        Self {
            registry,
            limits,
            policy,
            stop: watch::Sender::new(false),
            sockets: Mutex::new(JoinSet::new()),
        }
    }

    fn bundle_limits(&self) -> BundleLimits {
        BundleLimits {
            max_inflated_bytes: self.limits.max_bundle_bytes,
        }
    }

    /// The largest message tungstenite buffers: a bundle may come whole.
    fn max_ws_message(&self) -> usize {
        let bundle = usize::try_from(self.limits.max_bundle_bytes).unwrap_or(usize::MAX);
        self.limits
            .max_binary_frame
            .max(bundle)
            .max(self.limits.max_text_frame)
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut sockets = self
            .sockets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while sockets.try_join_next().is_some() {}
        sockets.spawn(task);
    }

    /// Closes every socket with 1001 and waits (at most `grace`) for them.
    pub(crate) async fn shutdown(&self, grace: Duration) {
        self.stop.send_replace(true);
        let mut sockets = std::mem::take(
            &mut *self
                .sockets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if tokio::time::timeout(grace, async {
            while sockets.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            sockets.shutdown().await;
        }
    }
}

/// Any error a request body may fail with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body the channel reads: whatever body type the embedder's
/// stack hands the service, boxed once (only for the channel's routes).
pub(crate) type RequestBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// Boxes a request's body for the channel, keeping its extensions (the
/// upgrade handle among them).
pub(crate) fn into_request_body<B>(req: Request<B>) -> Request<RequestBody>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    req.map(|body| {
        http_body_util::BodyExt::boxed_unsync(http_body_util::BodyExt::map_err(body, Into::into))
    })
}
