//! Every error a route can meet, and the one place they become responses.

use cellucid_core::SourceError;
use serde_json::json;

use crate::channel::{ChannelError, HandshakeRefusal};
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::body::Body;
use crate::response::text;

/// An error answered to the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// Nothing is served at this path (also every malformed path).
    #[error("Not found: {0}")]
    NotFound(String),
    /// The method is not one this route answers.
    #[error("method not allowed")]
    MethodNotAllowed {
        /// The value of the `Allow` header.
        allow: &'static str,
    },
    /// `/_cellucid/ws` without a WebSocket upgrade.
    #[error("The viewer channel is a WebSocket: open it with new WebSocket(...)")]
    UpgradeRequired,
    /// The viewer UI cannot be served by this server.
    #[error("{0}")]
    UiUnavailable(&'static str),
    /// There is no viewer UI to serve: the HTML page says why and how to fix it.
    #[error("the viewer UI is unavailable")]
    UiPage(String),
    /// A cached viewer UI file does not match its inventory; not served.
    #[error("the cached viewer UI is damaged: {0}")]
    UiDamaged(String),
    /// A bug or an unexpected failure of the server itself.
    #[error("internal error: {0}")]
    Internal(String),
    /// Reading a dataset failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A viewer-channel request was refused (answered as JSON).
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// A WebSocket handshake on `/_cellucid/ws` was refused.
    #[error(transparent)]
    Handshake(#[from] HandshakeRefusal),
}

impl HttpError {
    /// The response for this error. Internal failures are logged here, with
    /// what happened, and answered with a short 500.
    pub fn into_response(self) -> Response<Body> {
        match self {
            Self::NotFound(path) => text(StatusCode::NOT_FOUND, not_found_body(&path)),
            Self::MethodNotAllowed { allow } => {
                let mut response = text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("Method not allowed; this route answers {allow}"),
                );
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
                response
            }
            Self::UpgradeRequired => {
                let mut response = text(StatusCode::UPGRADE_REQUIRED, self.to_string());
                response
                    .headers_mut()
                    .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                response
            }
            Self::UiUnavailable(why) => text(StatusCode::SERVICE_UNAVAILABLE, why),
            Self::UiPage(html) => {
                let mut response = Response::new(Body::from(html));
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                headers.insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(cellucid_proxy::UNAVAILABLE_PAGE_CSP),
                );
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
                response
            }
            Self::UiDamaged(detail) => {
                tracing::error!(%detail, "refusing to serve a damaged viewer UI file");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The cached Cellucid viewer UI is damaged and was not served; run `cellucid cache verify`, then `cellucid cache prefetch --force`",
                )
            }
            Self::Source(SourceError::NotFound { key }) => {
                text(StatusCode::NOT_FOUND, not_found_body(key.as_str()))
            }
            Self::Source(SourceError::UnknownDataset { id }) => {
                text(StatusCode::NOT_FOUND, not_found_body(&id))
            }
            Self::Source(SourceError::Unprocessable { key, reason }) => {
                // As the 0.9.4 server: 422 with a JSON diagnosis, for this file only.
                let body = serde_json::json!({"error": reason, "key": key.as_str()}).to_string();
                let mut response = text(StatusCode::UNPROCESSABLE_ENTITY, body);
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
            Self::Source(SourceError::Busy { key, reason }) => {
                // The memory budget is held by other requests: retry later.
                tracing::warn!(key = %key, %reason, "memory budget busy");
                let body = serde_json::json!({"error": reason, "key": key.as_str()}).to_string();
                let mut response = text(StatusCode::SERVICE_UNAVAILABLE, body);
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                response
            }
            Self::Source(err @ (SourceError::Changed { .. } | SourceError::Unavailable { .. })) => {
                // The file is being rewritten: a clean, retryable refusal
                // (SECURITY.md, "Files that change while served").
                tracing::warn!(error = %err, "dataset file changed under the server");
                let mut response = text(StatusCode::SERVICE_UNAVAILABLE, err.to_string());
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            Self::Internal(what) => {
                tracing::error!(%what, "internal error while answering a request");
                text(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
            }
            Self::Source(err) => {
                tracing::error!(error = %err, "failed to read a dataset file");
                text(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
            }
            Self::Handshake(refusal) => {
                let status = match refusal {
                    HandshakeRefusal::Version => StatusCode::UPGRADE_REQUIRED,
                    HandshakeRefusal::Key => StatusCode::BAD_REQUEST,
                    HandshakeRefusal::Origin => StatusCode::FORBIDDEN,
                };
                text(status, refusal.to_string())
            }
            Self::Channel(err) => {
                let body = json!({"status": "error", "message": err.to_string()}).to_string();
                let mut response = Response::new(Body::from(body));
                *response.status_mut() = channel_status(&err);
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
        }
    }
}

/// The status of a viewer-channel refusal.
fn channel_status(err: &ChannelError) -> StatusCode {
    match err {
        ChannelError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ChannelError::Forbidden => StatusCode::FORBIDDEN,
        ChannelError::NoPendingRequest => StatusCode::NOT_FOUND,
        ChannelError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
        ChannelError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        ChannelError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ChannelError::NotReading => StatusCode::SERVICE_UNAVAILABLE,
        ChannelError::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
        ChannelError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `Not found: <path>`, echoing at most a short, printable path.
fn not_found_body(path: &str) -> String {
    const MAX_ECHO: usize = 200;
    if path.is_empty() || path.len() > MAX_ECHO || path.chars().any(char::is_control) {
        "Not found".to_owned()
    } else {
        format!("Not found: {path}")
    }
}
