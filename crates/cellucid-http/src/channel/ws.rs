//! The 0.9.5 viewer channel: the WebSocket `/_cellucid/ws` (reference §8).
//!
//! The handshake is checked here (version, key, and the origin rule of
//! [`OriginPolicy::allows_channel`](crate::OriginPolicy::allows_channel));
//! framing is tokio-tungstenite's, under a [`FrameGuard`] that caps each
//! message by its kind while it arrives. After the upgrade the socket lives
//! in its own task, outside the HTTP connection's watchdog: it is governed
//! by the hello deadline, the ping/pong deadline and the send timeout
//! instead, and it is closed with 1001 when the server stops.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::FusedStream;
use futures_util::{SinkExt, StreamExt};
use http::header::{self, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::bundle::{BundleWriter, UploadError};
use super::command::Wire;
use super::event::ViewerEvent;
use super::frame_guard::{FrameGuard, GuardedIo, Violation};
use super::http::decode_cells;
use super::registry::{BundleRequestError, DeliverError, SocketOrder};
use super::{Channel, RequestBody};
use crate::body::Body;
use crate::error::HttpError;

type Socket = WebSocketStream<GuardedIo<TokioIo<hyper::upgrade::Upgraded>>>;

/// How long the server waits for the peer's close reply after its own close.
const CLOSE_DRAIN: Duration = Duration::from_secs(5);

/// Why a WebSocket handshake was refused; [`HttpError::into_response`]
/// gives each its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeRefusal {
    /// `Sec-WebSocket-Version` is not 13 (426).
    #[error("WebSocket version 13 is required")]
    Version,
    /// `Sec-WebSocket-Key` is not 16 bytes in base64 (400).
    #[error("Sec-WebSocket-Key must be 16 bytes in base64")]
    Key,
    /// The page's origin may not open the channel (403).
    #[error("The viewer channel accepts only this server's own pages")]
    Origin,
}

/// Checks the handshake and, when it is good, answers 101 and hands the
/// socket to a task of its own.
pub(crate) fn upgrade(
    channel: &Arc<Channel>,
    mut req: Request<RequestBody>,
) -> Result<Response<Body>, HttpError> {
    let https = req.extensions().get::<crate::tls::Https>().is_some();
    let key = check_handshake(channel, req.headers(), https)?;
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    // The socket keeps its connection's place under --max-connections.
    let slot = req
        .extensions()
        .get::<crate::conn::ConnectionSlot>()
        .and_then(crate::conn::ConnectionSlot::take);
    let task_channel = Arc::clone(channel);
    channel.spawn(async move {
        let _slot = slot;
        match on_upgrade.await {
            Ok(upgraded) => {
                // The guard holds each kind to its own cap; tungstenite's
                // single cap is the backstop.
                let config = WebSocketConfig::default()
                    .max_message_size(Some(task_channel.max_ws_message()))
                    .max_frame_size(Some(task_channel.max_ws_message()));
                // Before the hello, the peer may send about one text message.
                let text_cap = task_channel.limits.max_text_frame as u64;
                let guard = FrameGuard::before_hello(text_cap, text_cap + 64 * 1024);
                let io = GuardedIo::new(TokioIo::new(upgraded), guard);
                let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
                serve(task_channel, socket).await;
            }
            Err(err) => tracing::debug!(error = %err, "a viewer channel upgrade failed"),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(value) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    Ok(response)
}

/// The one value of header `name`, as text.
fn single(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => value.to_str().ok(),
        _ => None,
    }
}

/// Checks an upgrade request; returns its `Sec-WebSocket-Key`.
fn check_handshake<'h>(
    channel: &Channel,
    headers: &'h HeaderMap,
    https: bool,
) -> Result<&'h str, HttpError> {
    let upgrade_ok =
        single(headers, header::UPGRADE).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let connection_ok = headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    if !upgrade_ok || !connection_ok {
        return Err(HttpError::UpgradeRequired);
    }
    if single(headers, header::SEC_WEBSOCKET_VERSION) != Some("13") {
        return Err(HandshakeRefusal::Version.into());
    }
    let key = single(headers, header::SEC_WEBSOCKET_KEY)
        .filter(|key| {
            key.len() == 24
                && key.ends_with("==")
                && key[..22]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        })
        .ok_or(HandshakeRefusal::Key)?;
    let origin = single(headers, header::ORIGIN);
    let host = single(headers, header::HOST);
    if !origin.is_some_and(|origin| channel.policy.allows_channel(origin, host, https)) {
        tracing::warn!(origin = ?origin, "refused a viewer channel from a page this server does not serve");
        return Err(HandshakeRefusal::Origin.into());
    }
    Ok(key)
}

/// Why a socket ends, as a close code and reason.
struct Close(u16, String);

impl Close {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self(code, reason.into())
    }
}

async fn serve(channel: Arc<Channel>, mut socket: Socket) {
    let mut stop = channel.stop.subscribe();
    let send_timeout = channel.limits.send_timeout;
    let viewer_id = match hello(&channel, &mut socket, &mut stop).await {
        Ok(id) => {
            let binary_cap = u64::try_from(channel.max_ws_message()).unwrap_or(u64::MAX);
            socket.get_mut().hook_mut().after_hello(binary_cap);
            id
        }
        Err(close) => {
            let close = match socket.get_ref().hook().violation() {
                Some(violation) => {
                    tracing::warn!("closed a viewer channel that sent too much before its hello");
                    over_the_cap(violation)
                }
                None => close,
            };
            close_socket(&mut socket, close, send_timeout).await;
            return;
        }
    };
    let Some((socket_id, orders)) = channel.registry.attach(&viewer_id) else {
        let close = Close::new(1001, "The viewer was stopped");
        close_socket(&mut socket, close, send_timeout).await;
        return;
    };
    tracing::info!(viewer = %viewer_id, "a viewer connected");
    let mut orders = orders;
    let close = session(&channel, &mut socket, &viewer_id, &mut orders, &mut stop).await;
    // Commands not written yet go back to the outbox for the next socket.
    channel.registry.detach(&viewer_id, socket_id, &mut orders);
    if let Some(close) = close {
        close_socket(&mut socket, close, send_timeout).await;
    }
    tracing::info!(viewer = %viewer_id, "a viewer disconnected");
}

/// Waits for the hello frame and authenticates it; answers `welcome`.
async fn hello(
    channel: &Channel,
    socket: &mut Socket,
    stop: &mut watch::Receiver<bool>,
) -> Result<String, Close> {
    let deadline = channel.limits.hello_timeout;
    let first = tokio::select! {
        first = tokio::time::timeout(deadline, socket.next()) => first,
        () = stopped(stop) => return Err(Close::new(1001, "The server stopped")),
    };
    let message = match first {
        Err(_) => {
            return Err(Close::new(
                1008,
                format!("No hello frame within {} s", deadline.as_secs_f64()),
            ))
        }
        Ok(None) | Ok(Some(Err(_))) => return Err(Close::new(1002, "")),
        Ok(Some(Ok(message))) => message,
    };
    let Message::Text(text) = message else {
        return Err(Close::new(
            1008,
            "The first frame must be the text frame 'hello'",
        ));
    };
    let parsed: Option<Map<String, Value>> = serde_json::from_str(text.as_str()).ok();
    let exact = parsed.filter(|m| {
        m.len() == 3
            && m.get("type").and_then(Value::as_str) == Some("hello")
            && m.get("viewerId").is_some_and(Value::is_string)
            && m.get("viewerToken").is_some_and(Value::is_string)
    });
    let Some(hello) = exact else {
        return Err(Close::new(
            1008,
            "The first frame must be exactly {type: 'hello', viewerId, viewerToken}",
        ));
    };
    let id = hello.get("viewerId").and_then(Value::as_str).unwrap_or("");
    let token = hello
        .get("viewerToken")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !channel.registry.authenticate(id, token) {
        return Err(Close::new(4401, "Unknown viewer, or a wrong viewer token"));
    }
    let welcome = socket.send(Message::text(r#"{"type":"welcome"}"#));
    match tokio::time::timeout(channel.limits.send_timeout, welcome).await {
        Ok(Ok(())) => {}
        _ => return Err(Close::new(1001, "")),
    }
    Ok(id.to_owned())
}

/// The authenticated socket's life; returns how to close it (None when the
/// peer already closed or the connection died).
async fn session(
    channel: &Channel,
    socket: &mut Socket,
    viewer_id: &str,
    orders: &mut mpsc::UnboundedReceiver<SocketOrder>,
    stop: &mut watch::Receiver<bool>,
) -> Option<Close> {
    let limits = &channel.limits;
    let mut next_ping = Instant::now() + limits.ping_interval;
    let mut pong_due: Option<Instant> = None;
    loop {
        let wake = pong_due.map_or(next_ping, |due| due.min(next_ping));
        tokio::select! {
            incoming = socket.next() => {
                let message = match incoming {
                    None => return None,
                    Some(Err(_)) if socket.get_ref().hook().violation().is_some() => {
                        let violation = socket.get_ref().hook().violation()?;
                        return Some(over_the_cap(violation));
                    }
                    Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. })))
                    | Some(Err(WsError::Capacity(CapacityError::TooManyHeaders))) => {
                        return Some(Close::new(1009, format!("Messages are at most {} bytes", channel.max_ws_message())));
                    }
                    Some(Err(WsError::Protocol(err))) => {
                        return Some(Close::new(1002, err.to_string()));
                    }
                    Some(Err(WsError::Utf8(_))) => return Some(Close::new(1007, "Text is not UTF-8")),
                    Some(Err(err)) => {
                        tracing::debug!(viewer = %viewer_id, error = %err, "the viewer channel failed");
                        return None;
                    }
                    Some(Ok(message)) => message,
                };
                match message {
                    Message::Text(text) => {
                        if text.len() > limits.max_text_frame {
                            return Some(Close::new(1009, format!("Text messages are at most {} bytes", limits.max_text_frame)));
                        }
                        if let Err(close) = on_text(channel, viewer_id, text.as_str()).await {
                            return Some(close);
                        }
                    }
                    Message::Binary(bytes) => {
                        if let Err(close) = on_binary(channel, viewer_id, bytes).await {
                            return Some(close);
                        }
                    }
                    Message::Pong(_) => pong_due = None,
                    // tungstenite answers pings and close frames itself.
                    Message::Ping(_) | Message::Frame(_) => {}
                    Message::Close(_) => {
                        // Let tungstenite finish the closing handshake.
                        let _ = tokio::time::timeout(CLOSE_DRAIN, socket.next()).await;
                        return None;
                    }
                }
            }
            order = orders.recv() => match order {
                Some(SocketOrder::Send(wire)) => {
                    let message = match wire {
                        Wire::Text(text) => Message::text(text),
                        Wire::Binary(bytes) => Message::binary(bytes),
                    };
                    if !send_within(socket, message, limits.send_timeout).await {
                        tracing::debug!(viewer = %viewer_id, "dropped a viewer channel that stopped reading");
                        return None;
                    }
                }
                Some(SocketOrder::Close(code, reason)) => return Some(Close::new(code, reason)),
                None => return Some(Close::new(1001, "The viewer was stopped")),
            },
            () = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if pong_due.is_some_and(|due| due <= now) {
                    return Some(Close::new(1001, format!(
                        "No pong within {} s", limits.pong_timeout.as_secs_f64()
                    )));
                }
                if next_ping <= now {
                    if !send_within(socket, Message::Ping(Bytes::new()), limits.send_timeout).await {
                        return None;
                    }
                    next_ping = now + limits.ping_interval;
                    if pong_due.is_none() {
                        pong_due = Some(now + limits.pong_timeout);
                    }
                }
            }
            () = stopped(stop) => return Some(Close::new(1001, "The server stopped")),
        }
    }
}

async fn deliver(channel: &Channel, viewer_id: &str, event: ViewerEvent) -> Result<(), Close> {
    match channel
        .registry
        .deliver(viewer_id, event, channel.limits.event_patience)
        .await
    {
        Ok(()) => Ok(()),
        Err(DeliverError::Gone) => Err(Close::new(1001, "The viewer was stopped")),
        Err(DeliverError::NotReading) => Err(Close::new(
            1013,
            "The program serving this viewer is not reading its events",
        )),
    }
}

async fn on_text(channel: &Channel, viewer_id: &str, text: &str) -> Result<(), Close> {
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(text) else {
        return Err(Close::new(
            1008,
            "A text frame must be a JSON object with a type",
        ));
    };
    let kind = match fields.get("type").and_then(Value::as_str) {
        Some(kind) if super::query::is_routing_string(kind) => kind.to_owned(),
        _ => {
            return Err(Close::new(
                1008,
                "A text frame must be a JSON object with a type",
            ))
        }
    };
    if kind == "selection" || kind == "session_bundle" {
        return Err(Close::new(
            1008,
            format!("A {kind} event is sent as a binary frame"),
        ));
    }
    deliver(
        channel,
        viewer_id,
        ViewerEvent::new(viewer_id, fields, text.len()),
    )
    .await
}

async fn on_binary(channel: &Channel, viewer_id: &str, bytes: Bytes) -> Result<(), Close> {
    let malformed = || Close::new(1008, "Binary message ended early or has an invalid header");
    if bytes.len() < 4 {
        return Err(malformed());
    }
    let header_len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let Some(header) = bytes.get(4..4 + header_len) else {
        return Err(malformed());
    };
    let Ok(Value::Object(header)) = serde_json::from_slice::<Value>(header) else {
        return Err(malformed());
    };
    let body = bytes.slice(4 + header_len..);
    let text = |key: &str| {
        header
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| super::query::is_routing_string(s))
    };
    match header.get("type").and_then(Value::as_str) {
        Some("selection") if header.len() == 2 && text("source").is_some() => {
            let source = text("source").unwrap_or_default();
            if body.len() > channel.limits.max_selection_bytes as usize {
                return Err(Close::new(1009, "The selection is too large"));
            }
            let cells = decode_cells(&body, channel.registry.n_cells(viewer_id))
                .map_err(|err| Close::new(1008, err.to_string()))?;
            deliver(channel, viewer_id, ViewerEvent::selection(viewer_id, source, &cells)).await
        }
        Some("session_bundle") if header.len() == 2 && text("requestId").is_some() => {
            let request_id = text("requestId").unwrap_or_default().to_owned();
            receive_bundle(channel, viewer_id, &request_id, body).await;
            Ok(())
        }
        _ => Err(Close::new(
            1008,
            "A binary frame's header must be exactly {type:'selection',source} or {type:'session_bundle',requestId}",
        )),
    }
}

/// Stores, checks and hands over a bundle sent on the socket. A bundle for
/// no live request is dropped (the channel stays open); an invalid one ends
/// the request with an error at once, as in the reference.
async fn receive_bundle(channel: &Channel, viewer_id: &str, request_id: &str, body: Bytes) {
    let registry = &channel.registry;
    if !registry.has_pending(viewer_id, request_id) {
        tracing::warn!(viewer = %viewer_id, "dropped a session bundle for no pending request");
        return;
    }
    let cap = channel.limits.max_bundle_bytes;
    let limits = channel.bundle_limits();
    let dir = channel.limits.bundle_dir.clone();
    let stored = tokio::task::spawn_blocking(move || {
        let mut writer = BundleWriter::create(cap, dir.as_deref())?;
        writer.write(&body)?;
        writer.finish(limits)
    })
    .await;
    let result = match stored {
        Ok(Ok(bundle)) => Ok(bundle),
        Ok(Err(UploadError::Invalid(message))) => Err(BundleRequestError::Invalid(message)),
        Ok(Err(UploadError::TooLarge(limit))) => Err(BundleRequestError::Invalid(format!(
            "it is larger than the {limit}-byte limit"
        ))),
        Ok(Err(UploadError::Io(err))) => Err(BundleRequestError::Io(err.to_string())),
        Err(join) => Err(BundleRequestError::Io(join.to_string())),
    };
    if let Err(err) = &result {
        tracing::warn!(viewer = %viewer_id, error = %err, "refused a session bundle");
    }
    registry.complete(viewer_id, request_id, result);
}

/// Resolves once the server is stopping.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        let stopping = *stop.borrow_and_update();
        if stopping {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Sends `message`, giving up (false) on an error or a peer that takes
/// none of it for `timeout`.
async fn send_within(socket: &mut Socket, message: Message, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, socket.send(message)).await,
        Ok(Ok(()))
    )
}

/// The close of a socket whose peer went over a read cap.
fn over_the_cap(violation: Violation) -> Close {
    match violation {
        Violation::TooLarge(cap) => Close::new(1009, format!("Messages are at most {cap} bytes")),
        Violation::BeforeHello => Close::new(1009, "Too much data before the hello frame"),
    }
}

/// Sends a close frame and waits a little for the peer's answer, so it sees
/// the code rather than a reset. When reading had already failed (a message
/// over its cap, a protocol error), tungstenite reads no more: what the peer
/// still sends is read and dropped until its Close frame, so the close frame
/// is not lost to a reset while the peer is still sending.
async fn close_socket(socket: &mut Socket, close: Close, send_timeout: Duration) {
    let Close(code, reason) = close;
    let reason = truncate(&reason, 123);
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    };
    let reading_failed = socket.is_terminated();
    if reading_failed {
        socket.get_mut().hook_mut().discard();
    }
    match tokio::time::timeout(send_timeout, socket.close(Some(frame))).await {
        Ok(Ok(())) => {}
        _ => return,
    }
    let _ = tokio::time::timeout(CLOSE_DRAIN, async {
        if reading_failed {
            let io = socket.get_mut();
            let mut scratch = vec![0u8; 64 * 1024];
            while !io.hook().peer_closed() {
                match io.read(&mut scratch).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        } else {
            while let Some(Ok(_)) = socket.next().await {}
        }
    })
    .await;
}

fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
