//! The viewer registry: who may talk on the channel, where each viewer's
//! events go, its WebSocket and command outbox, and its pending session
//! bundle requests.
//!
//! One registry belongs to one server (not the process, unlike the
//! reference). Ids and tokens come from the OS RNG; tokens are compared in
//! constant time, and an unknown id is compared against a dummy token, so
//! "unknown viewer" and "wrong token" cost and answer the same.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::bundle::SessionBundle;
use super::command::{Command, CommandError, Wire};
use super::event::{ViewerEvent, ViewerEvents};

/// How many bytes of events wait for a program that reads them slowly,
/// unless the server's [`ChannelLimits`](super::ChannelLimits) say otherwise.
const EVENT_QUEUE_BYTES: u32 = 64 * 1024 * 1024;
/// How many commands wait for a viewer that is not connected.
const OUTBOX_LIMIT: usize = 4096;
/// How long a pending session bundle request lives by default.
pub const BUNDLE_REQUEST_TTL: Duration = Duration::from_secs(60);

/// The viewers of one server. Cheap to clone; every clone is the same registry.
#[derive(Clone, Debug, Default)]
pub struct ViewerRegistry {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    viewers: HashMap<String, Slot>,
    next_socket: u64,
    /// The byte bound of each new viewer's event queue.
    queue_bytes: u32,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            viewers: HashMap::new(),
            next_socket: 0,
            queue_bytes: EVENT_QUEUE_BYTES,
        }
    }
}

#[derive(Debug)]
struct Slot {
    token: String,
    n_cells: Option<u64>,
    events: EventSender,
    socket: Option<SocketLink>,
    outbox: VecDeque<Wire>,
    pending: HashMap<String, Pending>,
}

#[derive(Debug)]
struct SocketLink {
    id: u64,
    tx: mpsc::UnboundedSender<SocketOrder>,
}

#[derive(Debug)]
struct Pending {
    expires: Instant,
    reply: oneshot::Sender<Result<SessionBundle, BundleRequestError>>,
}

/// The sending side of a viewer's event queue, bounded by bytes: an event
/// takes permits of `room` for its weight, handed back when the program
/// takes the event out of the queue.
#[derive(Clone, Debug)]
struct EventSender {
    tx: mpsc::UnboundedSender<QueuedEvent>,
    room: Arc<Semaphore>,
    cap: u32,
}

/// An event in a viewer's queue, with the room it takes.
#[derive(Debug)]
pub(crate) struct QueuedEvent {
    pub(crate) event: ViewerEvent,
    _room: OwnedSemaphorePermit,
}

/// What the registry tells a viewer's WebSocket task to do.
#[derive(Debug)]
pub(crate) enum SocketOrder {
    /// Write this command.
    Send(Wire),
    /// Close with this code and reason.
    Close(u16, &'static str),
}

/// Whether a command went out now or waits for the viewer to connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// Handed to the viewer's open socket.
    Sent,
    /// Queued; delivered in order after the viewer's next `hello`.
    Queued,
}

/// Why a session bundle request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleRequestError {
    /// No valid bundle arrived before the request expired.
    #[error("the viewer did not upload a session bundle within {0:?}")]
    Timeout(Duration),
    /// The viewer sent a bundle that is not valid.
    #[error("the viewer sent an invalid session bundle: {0}")]
    Invalid(String),
    /// The bundle could not be stored.
    #[error("the session bundle could not be saved: {0}")]
    Io(String),
    /// The viewer was unregistered (or the server stopped) meanwhile.
    #[error("the viewer was stopped before it sent its session bundle")]
    ViewerGone,
    /// The request command could not be sent.
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// Why a viewer could not be registered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The operating system's random number generator failed.
    #[error("cannot draw a viewer token from the OS random number generator: {0}")]
    Random(String),
}

/// Options of a new viewer.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct ViewerOptions {
    /// The number of cells of the viewer's dataset, when known: selection
    /// indices at or beyond it are refused with 400.
    pub n_cells: Option<u64>,
}

/// An event delivery that failed.
#[derive(Debug)]
pub(crate) enum DeliverError {
    /// No such viewer (it was unregistered).
    Gone,
    /// The program has not read events for too long.
    NotReading,
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // A panic while holding the lock leaves consistent maps: keep going.
    inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn random_hex(bytes: usize) -> Result<String, RegisterError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|err| RegisterError::Random(err.to_string()))?;
    Ok(hex::encode(buf))
}

/// Constant-time equality of two tokens (lengths are not secret).
fn token_matches(expected: &str, given: &str) -> bool {
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

const DUMMY_TOKEN: &str = "00000000000000000000000000000000";

impl ViewerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a viewer with a fresh `viewerId` (16 hex) and `viewerToken`
    /// (32 hex) from the OS RNG.
    ///
    /// # Errors
    /// [`RegisterError::Random`] if the OS RNG fails.
    pub fn register(&self, options: ViewerOptions) -> Result<Viewer, RegisterError> {
        let ViewerOptions { n_cells } = options;
        let token = random_hex(16)?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let mut inner = lock(&self.inner);
        let cap = inner.queue_bytes;
        let events_tx = EventSender {
            tx: events_tx,
            room: Arc::new(Semaphore::new(cap as usize)),
            cap,
        };
        let id = loop {
            let id = random_hex(8)?;
            if !inner.viewers.contains_key(&id) {
                break id;
            }
        };
        inner.viewers.insert(
            id.clone(),
            Slot {
                token: token.clone(),
                n_cells,
                events: events_tx,
                socket: None,
                outbox: VecDeque::new(),
                pending: HashMap::new(),
            },
        );
        drop(inner);
        tracing::info!(viewer = %id, "registered a viewer");
        Ok(Viewer {
            id,
            token,
            registry: self.clone(),
            events: Mutex::new(Some(ViewerEvents { rx: events_rx })),
        })
    }

    /// Bounds the event queue of viewers registered from now on to about
    /// `bytes` (the server applies its `ChannelLimits` this way).
    pub(crate) fn set_event_queue_bytes(&self, bytes: u64) {
        lock(&self.inner).queue_bytes = u32::try_from(bytes).unwrap_or(u32::MAX).max(1);
    }

    /// How many viewers are registered.
    pub fn len(&self) -> usize {
        lock(&self.inner).viewers.len()
    }

    /// Whether no viewer is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn unregister(&self, id: &str) {
        let slot = lock(&self.inner).viewers.remove(id);
        if let Some(slot) = slot {
            if let Some(socket) = slot.socket {
                let _ = socket
                    .tx
                    .send(SocketOrder::Close(1001, "The viewer was stopped"));
            }
            // Dropping the pending requests wakes their waiters with ViewerGone.
            tracing::info!(viewer = %id, "unregistered a viewer");
        }
    }

    /// Checks a viewer's credentials; the same answer (and work) for an
    /// unknown id as for a wrong token.
    pub(crate) fn authenticate(&self, id: &str, token: &str) -> bool {
        let inner = lock(&self.inner);
        match inner.viewers.get(id) {
            Some(slot) => token_matches(&slot.token, token),
            None => {
                let _ = token_matches(DUMMY_TOKEN, token);
                false
            }
        }
    }

    /// The dataset size the viewer was registered with.
    pub(crate) fn n_cells(&self, id: &str) -> Option<u64> {
        lock(&self.inner).viewers.get(id).and_then(|s| s.n_cells)
    }

    /// Hands `event` to the viewer's stream, waiting at most `patience` for
    /// room in its queue (back-pressure from a slow reader).
    pub(crate) async fn deliver(
        &self,
        id: &str,
        event: ViewerEvent,
        patience: Duration,
    ) -> Result<(), DeliverError> {
        let sender = lock(&self.inner)
            .viewers
            .get(id)
            .map(|slot| slot.events.clone())
            .ok_or(DeliverError::Gone)?;
        let dropped = || {
            // Nobody will ever read them: the program dropped the stream.
            tracing::debug!(viewer = %id, "dropped an event: the program does not read this viewer's events");
            Ok(())
        };
        if sender.tx.is_closed() {
            return dropped();
        }
        // An event larger than the whole queue waits for an empty one.
        let weight = u32::try_from(event.weight())
            .unwrap_or(u32::MAX)
            .clamp(1, sender.cap);
        let room = Arc::clone(&sender.room).acquire_many_owned(weight);
        let room = match tokio::time::timeout(patience, room).await {
            Err(_) => {
                tracing::warn!(viewer = %id, "refused an event: the program has not read this viewer's events");
                return Err(DeliverError::NotReading);
            }
            // The semaphore is never closed.
            Ok(Err(_)) => return dropped(),
            Ok(Ok(room)) => room,
        };
        match sender.tx.send(QueuedEvent { event, _room: room }) {
            Ok(()) => Ok(()),
            Err(_) => dropped(),
        }
    }

    fn send(&self, id: &str, command: &Command) -> Result<Delivery, CommandError> {
        let wire = command.encode()?;
        let mut inner = lock(&self.inner);
        let slot = inner
            .viewers
            .get_mut(id)
            .ok_or(CommandError::UnknownViewer)?;
        if let Some(socket) = &slot.socket {
            match socket.tx.send(SocketOrder::Send(wire)) {
                Ok(()) => return Ok(Delivery::Sent),
                Err(mpsc::error::SendError(SocketOrder::Send(wire))) => {
                    slot.socket = None;
                    slot.outbox.push_back(wire);
                    return Ok(Delivery::Queued);
                }
                Err(_) => return Ok(Delivery::Queued),
            }
        }
        if slot.outbox.len() >= OUTBOX_LIMIT {
            return Err(CommandError::OutboxFull(OUTBOX_LIMIT));
        }
        slot.outbox.push_back(wire);
        Ok(Delivery::Queued)
    }

    /// Attaches a new socket to an authenticated viewer: the older socket,
    /// if any, is told to close with 4409; the queued commands move to the
    /// new socket's channel, in order. Returns the socket's id and orders.
    pub(crate) fn attach(&self, id: &str) -> Option<(u64, mpsc::UnboundedReceiver<SocketOrder>)> {
        let mut inner = lock(&self.inner);
        inner.next_socket += 1;
        let socket_id = inner.next_socket;
        let slot = inner.viewers.get_mut(id)?;
        let (tx, rx) = mpsc::unbounded_channel();
        for wire in slot.outbox.drain(..) {
            let _ = tx.send(SocketOrder::Send(wire));
        }
        if let Some(old) = slot.socket.replace(SocketLink { id: socket_id, tx }) {
            let _ = old.tx.send(SocketOrder::Close(
                4409,
                "Replaced by a newer connection of this viewer",
            ));
        }
        Some((socket_id, rx))
    }

    /// Detaches socket `socket_id` if it is still the viewer's socket; the
    /// commands it did not write (left in `orders`) go back to the front of
    /// the outbox, in order. Done under the lock, so no command sent
    /// meanwhile can fall between the socket and the outbox.
    pub(crate) fn detach(
        &self,
        id: &str,
        socket_id: u64,
        orders: &mut mpsc::UnboundedReceiver<SocketOrder>,
    ) {
        let mut inner = lock(&self.inner);
        let Some(slot) = inner.viewers.get_mut(id) else {
            return;
        };
        if slot.socket.as_ref().is_none_or(|s| s.id != socket_id) {
            return;
        }
        slot.socket = None;
        let mut unsent = Vec::new();
        while let Ok(order) = orders.try_recv() {
            if let SocketOrder::Send(wire) = order {
                unsent.push(wire);
            }
        }
        for wire in unsent.into_iter().rev() {
            slot.outbox.push_front(wire);
        }
    }

    fn add_pending(
        &self,
        id: &str,
        request_id: &str,
        ttl: Duration,
    ) -> Result<oneshot::Receiver<Result<SessionBundle, BundleRequestError>>, CommandError> {
        let mut inner = lock(&self.inner);
        let slot = inner
            .viewers
            .get_mut(id)
            .ok_or(CommandError::UnknownViewer)?;
        let now = Instant::now();
        slot.pending
            .retain(|_, p| p.expires > now && !p.reply.is_closed());
        let (reply, rx) = oneshot::channel();
        slot.pending.insert(
            request_id.to_owned(),
            Pending {
                expires: now + ttl,
                reply,
            },
        );
        Ok(rx)
    }

    fn cancel_pending(&self, id: &str, request_id: &str) {
        if let Some(slot) = lock(&self.inner).viewers.get_mut(id) {
            slot.pending.remove(request_id);
        }
    }

    /// Whether a live pending request exists (not consumed by this check).
    pub(crate) fn has_pending(&self, id: &str, request_id: &str) -> bool {
        let mut inner = lock(&self.inner);
        let Some(slot) = inner.viewers.get_mut(id) else {
            return false;
        };
        let live = slot
            .pending
            .get(request_id)
            .is_some_and(|p| p.expires > Instant::now() && !p.reply.is_closed());
        if !live {
            slot.pending.remove(request_id);
        }
        live
    }

    /// Consumes the pending request and hands it `result`; false when no
    /// live request waits for it (a bundle is then dropped, which deletes it).
    pub(crate) fn complete(
        &self,
        id: &str,
        request_id: &str,
        result: Result<SessionBundle, BundleRequestError>,
    ) -> bool {
        let pending = lock(&self.inner)
            .viewers
            .get_mut(id)
            .and_then(|slot| slot.pending.remove(request_id));
        match pending {
            Some(p) if p.expires > Instant::now() => p.reply.send(result).is_ok(),
            _ => false,
        }
    }
}

/// A registered viewer: its credentials, its event stream, commands, and
/// session bundle requests. Dropping it unregisters the viewer (its socket is
/// closed with 1001, its pending requests end).
#[derive(Debug)]
pub struct Viewer {
    id: String,
    token: String,
    registry: ViewerRegistry,
    events: Mutex<Option<ViewerEvents>>,
}

impl Viewer {
    /// The `viewerId` (16 hex digits).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The `viewerToken` (32 hex digits). A secret: do not log it.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The URL that opens this viewer in a 0.9.5 viewer page served at
    /// `base` (e.g. `http://127.0.0.1:8765`): the WebSocket channel.
    pub fn url(&self, base: &str, anndata: bool) -> String {
        let mut url = format!(
            "{}/?viewer=true&viewerId={}&viewerToken={}",
            base.trim_end_matches('/'),
            self.id,
            self.token
        );
        if anndata {
            url.push_str("&anndata=true");
        }
        url
    }

    /// The 0.9.4 form of [`Viewer::url`]: the HTTP channel.
    pub fn jupyter_url(&self, base: &str) -> String {
        format!(
            "{}/?jupyter=true&viewerId={}&viewerToken={}",
            base.trim_end_matches('/'),
            self.id,
            self.token
        )
    }

    /// The viewer's events as an async stream. The stream is handed out
    /// once; later calls return `None`.
    pub fn events(&self) -> Option<ViewerEvents> {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Sends a command: now if the viewer's socket is open, else queued
    /// until it connects.
    ///
    /// # Errors
    /// [`CommandError`] for an invalid command or a full outbox.
    // By value: a command is sent once, and `viewer.send(Command::…)` reads best.
    #[allow(clippy::needless_pass_by_value)]
    pub fn send(&self, command: Command) -> Result<Delivery, CommandError> {
        self.registry.send(&self.id, &command)
    }

    /// Asks the viewer for its session bundle and waits (at most 60 s) for a
    /// valid one, uploaded over the WebSocket or `POST
    /// /_cellucid/session_bundle`.
    ///
    /// # Errors
    /// [`BundleRequestError`]: timeout, an invalid bundle sent over the
    /// socket, or the viewer stopped.
    pub async fn request_session_bundle(&self) -> Result<SessionBundle, BundleRequestError> {
        self.begin_session_bundle(BUNDLE_REQUEST_TTL)?.wait().await
    }

    /// Registers a pending session bundle request living `ttl` and sends
    /// `requestSessionBundle` to the viewer; [`BundleRequest::wait`] awaits
    /// the bundle. Dropping the request cancels it.
    ///
    /// # Errors
    /// [`BundleRequestError::Command`] if the command cannot be sent.
    pub fn begin_session_bundle(&self, ttl: Duration) -> Result<BundleRequest, BundleRequestError> {
        let request_id = random_hex(16).map_err(|err| BundleRequestError::Io(err.to_string()))?;
        let rx = self.registry.add_pending(&self.id, &request_id, ttl)?;
        let request = BundleRequest {
            viewer_id: self.id.clone(),
            request_id: request_id.clone(),
            ttl,
            rx: Some(rx),
            registry: self.registry.clone(),
        };
        self.send(Command::RequestSessionBundle { request_id })?;
        Ok(request)
    }
}

impl Viewer {
    /// Stops the viewer: sends `freeze` if its socket is open (it is not
    /// queued otherwise), then unregisters it, as dropping it does.
    pub fn stop(self) {
        let connected = lock(&self.registry.inner)
            .viewers
            .get(&self.id)
            .is_some_and(|slot| slot.socket.is_some());
        if connected {
            let _ = self.send(Command::Freeze);
        }
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.registry.unregister(&self.id);
    }
}

/// A pending session bundle request (see [`Viewer::begin_session_bundle`]).
#[derive(Debug)]
pub struct BundleRequest {
    viewer_id: String,
    request_id: String,
    ttl: Duration,
    rx: Option<oneshot::Receiver<Result<SessionBundle, BundleRequestError>>>,
    registry: ViewerRegistry,
}

impl BundleRequest {
    /// The `requestId` the viewer must quote when uploading.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Waits for the bundle, at most the request's time to live.
    ///
    /// # Errors
    /// See [`Viewer::request_session_bundle`].
    pub async fn wait(mut self) -> Result<SessionBundle, BundleRequestError> {
        let Some(rx) = self.rx.take() else {
            return Err(BundleRequestError::ViewerGone);
        };
        match tokio::time::timeout(self.ttl, rx).await {
            Err(_) => Err(BundleRequestError::Timeout(self.ttl)),
            Ok(Err(_)) => Err(BundleRequestError::ViewerGone),
            Ok(Ok(result)) => result,
        }
    }
}

impl Drop for BundleRequest {
    fn drop(&mut self) {
        self.registry
            .cancel_pending(&self.viewer_id, &self.request_id);
    }
}
