//! The 0.9.4 HTTP channel: `POST /_cellucid/events`, `/_cellucid/selection`
//! and `/_cellucid/session_bundle` (docs/PROTOCOL.md, "The HTTP channel"), with
//! the viewer token made mandatory.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request, Response, StatusCode};
use serde_json::Value;

use super::body::{check_declared_length, content_type_is, next_chunk, read_capped, BodyClock};
use super::bundle::{BundleWriter, UploadError};
use super::error::ChannelError;
use super::event::ViewerEvent;
use super::query::{self, is_routing_string};
use super::registry::DeliverError;
use super::{Channel, RequestBody};
use crate::body::Body;
use crate::route::PostRoute;

/// The header that may carry the viewer token.
const TOKEN_HEADER: &str = "x-cellucid-viewer-token";
/// At most this much of a refused body is read and dropped, so the client
/// sees the answer instead of a connection reset.
const DRAIN_BYTES: u64 = 8 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Answers one POST of the HTTP channel.
pub(crate) async fn handle(
    channel: &Channel,
    route: PostRoute,
    req: Request<RequestBody>,
) -> Response<Body> {
    let (parts, mut body) = req.into_parts();
    let query = parts.uri.query();
    let mut upload = Upload {
        headers: &parts.headers,
        body: &mut body,
        clock: BodyClock::start(&channel.limits),
    };
    let result = match route {
        PostRoute::Events => events(channel, &mut upload).await,
        PostRoute::Selection => selection(channel, query, &mut upload).await,
        PostRoute::SessionBundle => session_bundle(channel, query, &mut upload).await,
    };
    match result {
        Ok(response) => response,
        Err(err) => {
            // A client waiting for `100 Continue` has not sent its body:
            // draining would only invite it to.
            let expects_continue = parts.headers.contains_key(http::header::EXPECT);
            if !matches!(err, ChannelError::BodyTimeout) && !expects_continue {
                drain(&mut body).await;
            }
            crate::error::HttpError::Channel(err).into_response()
        }
    }
}

/// A request's headers and body, and the deadline of the body.
struct Upload<'a> {
    headers: &'a HeaderMap,
    body: &'a mut RequestBody,
    clock: BodyClock,
}

impl Upload<'_> {
    /// The whole body, refused beyond `cap` bytes.
    async fn read(&mut self, cap: u64) -> Result<Bytes, ChannelError> {
        read_capped(self.headers, self.body, cap, &mut self.clock).await
    }
}

/// Reads and drops what is left of a refused body, within bounds.
async fn drain(body: &mut RequestBody) {
    let mut clock = BodyClock::fixed(DRAIN_TIME);
    let mut seen = 0u64;
    while let Ok(Some(chunk)) = next_chunk(body, &mut clock).await {
        seen += chunk.len() as u64;
        if seen > DRAIN_BYTES {
            break;
        }
    }
}

fn ok_json(body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

/// The token header's value; a present but unreadable header counts as an
/// empty (wrong) token rather than falling back to another place.
fn header_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get(TOKEN_HEADER)
        .map(|v| v.to_str().unwrap_or_default().to_owned())
}

async fn deliver(channel: &Channel, id: &str, event: ViewerEvent) -> Result<(), ChannelError> {
    match channel
        .registry
        .deliver(id, event, channel.limits.event_patience)
        .await
    {
        Ok(()) => Ok(()),
        Err(DeliverError::Gone) => Err(ChannelError::Forbidden),
        Err(DeliverError::NotReading) => Err(ChannelError::NotReading),
    }
}

async fn events(
    channel: &Channel,
    upload: &mut Upload<'_>,
) -> Result<Response<Body>, ChannelError> {
    let headers = upload.headers;
    if !content_type_is(headers, "application/json") {
        return Err(ChannelError::UnsupportedMediaType {
            expected: "application/json",
        });
    }
    let bytes = upload.read(channel.limits.max_event_bytes).await?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|_| ChannelError::BadRequest("Event body must be valid UTF-8 JSON".into()))?;
    let Value::Object(fields) = value else {
        return Err(ChannelError::BadRequest(
            "Event body must be a JSON object".into(),
        ));
    };
    let text_field = |key: &str| {
        fields
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| is_routing_string(s))
            .map(str::to_owned)
    };
    let id = text_field("viewerId").ok_or_else(|| {
        ChannelError::BadRequest("viewerId must be a non-empty string without whitespace".into())
    })?;
    let kind = text_field("type").ok_or_else(|| {
        ChannelError::BadRequest("type must be a non-empty string without whitespace".into())
    })?;
    match kind.as_str() {
        "selection" => return Err(ChannelError::BadRequest(
            "selection events are not accepted here; the viewer posts them to /_cellucid/selection".into(),
        )),
        "session_bundle" => return Err(ChannelError::BadRequest(
            "session_bundle events are not accepted here; the viewer posts them to /_cellucid/session_bundle".into(),
        )),
        _ => {}
    }
    let token = header_token(headers)
        .or_else(|| text_field("viewerToken"))
        .unwrap_or_default();
    if !channel.registry.authenticate(&id, &token) {
        return Err(ChannelError::Forbidden);
    }
    deliver(channel, &id, ViewerEvent::new(&id, fields, bytes.len())).await?;
    Ok(ok_json(r#"{"status":"ok","delivered":true}"#.into()))
}

/// The routing fields of a binary upload's query: id, token, and the
/// route's own field (`source` or `requestId`).
fn upload_query(
    headers: &HeaderMap,
    query: Option<&str>,
    field: &str,
) -> Result<(String, String, String), ChannelError> {
    let mut fields = query::parse(query, &["viewerId", "viewerToken", field])?;
    let id = fields.remove("viewerId").filter(|s| is_routing_string(s));
    let own = fields.remove(field).filter(|s| is_routing_string(s));
    let (Some(id), Some(own)) = (id, own) else {
        return Err(ChannelError::BadRequest(format!(
            "viewerId and {field} must be non-empty strings without whitespace"
        )));
    };
    let token = header_token(headers)
        .or_else(|| fields.remove("viewerToken"))
        .unwrap_or_default();
    Ok((id, token, own))
}

async fn selection(
    channel: &Channel,
    query: Option<&str>,
    upload: &mut Upload<'_>,
) -> Result<Response<Body>, ChannelError> {
    let headers = upload.headers;
    let (id, token, source) = upload_query(headers, query, "source")?;
    if !channel.registry.authenticate(&id, &token) {
        return Err(ChannelError::Forbidden);
    }
    if !content_type_is(headers, "application/octet-stream") {
        return Err(ChannelError::UnsupportedMediaType {
            expected: "application/octet-stream",
        });
    }
    let bytes = upload.read(channel.limits.max_selection_bytes).await?;
    let cells = decode_cells(&bytes, channel.registry.n_cells(&id))?;
    deliver(channel, &id, ViewerEvent::selection(&id, &source, &cells)).await?;
    Ok(ok_json(r#"{"status":"ok","delivered":true}"#.into()))
}

/// Decodes a selection body: u32 LE indices, non-empty, strictly ascending,
/// each below `n_cells` when it is known.
pub(crate) fn decode_cells(bytes: &Bytes, n_cells: Option<u64>) -> Result<Vec<u32>, ChannelError> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return Err(ChannelError::BadRequest(format!(
            "selection cells must be one or more little-endian uint32 cell indices (4 bytes each), not {} bytes",
            bytes.len()
        )));
    }
    let cells: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if cells.windows(2).any(|w| w[0] >= w[1]) {
        return Err(ChannelError::BadRequest(
            "selection cells must be strictly ascending, so each cell appears once".into(),
        ));
    }
    if let (Some(n), Some(&last)) = (n_cells, cells.last()) {
        if u64::from(last) >= n {
            return Err(ChannelError::BadRequest(format!(
                "selection cell {last} is out of range for a dataset of {n} cells"
            )));
        }
    }
    Ok(cells)
}

async fn session_bundle(
    channel: &Channel,
    query: Option<&str>,
    upload: &mut Upload<'_>,
) -> Result<Response<Body>, ChannelError> {
    let headers = upload.headers;
    let (id, token, request_id) = upload_query(headers, query, "requestId")?;
    let registry = &channel.registry;
    if !registry.authenticate(&id, &token) {
        return Err(ChannelError::Forbidden);
    }
    if !registry.has_pending(&id, &request_id) {
        return Err(ChannelError::NoPendingRequest);
    }
    if !content_type_is(headers, "application/octet-stream") {
        return Err(ChannelError::UnsupportedMediaType {
            expected: "application/octet-stream",
        });
    }
    let limits = &channel.limits;
    let cap = limits.max_bundle_bytes;
    check_declared_length(headers, cap)?;
    let dir = limits.bundle_dir.clone();
    let mut writer = off_thread(move || BundleWriter::create(cap, dir.as_deref())).await?;
    // Bytes are counted as they arrive and written in batches off the async
    // workers, so a large upload never stalls other connections. The first
    // bytes go out at once so a wrong magic is refused early.
    let mut batch = BytesMut::new();
    let mut received: u64 = 0;
    let mut flushed: usize = 0;
    while let Some(chunk) = next_chunk(upload.body, &mut upload.clock).await? {
        received += chunk.len() as u64;
        if received > cap {
            return Err(ChannelError::TooLarge { limit: cap });
        }
        batch.extend_from_slice(&chunk);
        if batch.len() >= WRITE_BATCH || flushed < MAGIC_BYTES {
            let bytes = batch.split().freeze();
            flushed += bytes.len();
            writer = off_thread(move || writer.write(&bytes).map(|()| writer)).await?;
        }
    }
    let bundle_limits = channel.bundle_limits();
    let bundle = off_thread(move || {
        writer.write(&batch)?;
        writer.finish(bundle_limits)
    })
    .await?;
    let bytes = bundle.len();
    match registry.complete(&id, &request_id, Ok(bundle)) {
        true => {
            tracing::info!(viewer = %id, bytes, "received a session bundle");
            Ok(ok_json(format!(r#"{{"status":"ok","bytes":{bytes}}}"#)))
        }
        // Expired or cancelled while uploading; the bundle is dropped and deleted.
        false => Err(ChannelError::NoPendingRequest),
    }
}

/// The longest bundle magic: written (and so checked) as soon as it arrives.
const MAGIC_BYTES: usize = 19;
/// How many bytes of an upload are gathered before a write.
const WRITE_BATCH: usize = 1024 * 1024;

/// Runs temp-file work on the blocking pool.
async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, UploadError> + Send + 'static,
) -> Result<T, ChannelError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| ChannelError::Internal(format!("The session bundle task failed: {err}")))?
        .map_err(upload_error)
}

fn upload_error(err: UploadError) -> ChannelError {
    match err {
        UploadError::TooLarge(limit) => ChannelError::TooLarge { limit },
        UploadError::Invalid(message) => {
            ChannelError::BadRequest(format!("Invalid session bundle: {message}"))
        }
        UploadError::Io(err) if is_out_of_space(&err) => {
            tracing::warn!(error = %err, "no room to store a session bundle upload");
            ChannelError::InsufficientStorage
        }
        UploadError::Io(err) => {
            tracing::error!(error = %err, "cannot store a session bundle upload");
            ChannelError::Internal("The session bundle could not be saved on the server".into())
        }
    }
}

/// Whether a write failed for want of space: a full disk (`ENOSPC`), a
/// quota (`EDQUOT`) or the process's file-size limit (`EFBIG`). The client
/// can do something about these (send less, retry later), so they are not
/// internal errors.
fn is_out_of_space(err: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        err.kind(),
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge
    )
}
