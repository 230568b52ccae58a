//! Refusals of the viewer channel's HTTP routes.
//! [`crate::HttpError::into_response`] gives each its status and a JSON body
//! `{"status":"error","message":"…"}` (docs/PROTOCOL.md, "Channel errors").

/// Why a viewer-channel request was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// Malformed request: bad JSON, missing fields, a bad query, a bad
    /// selection or session bundle (400).
    #[error("{0}")]
    BadRequest(String),
    /// Unknown viewer or wrong token: deliberately one answer for both (403).
    #[error("Unknown viewer, or a wrong viewer token")]
    Forbidden,
    /// No pending (or an expired) session bundle request (404).
    #[error(
        "No pending session bundle request (it expired, was already answered, or was never made)"
    )]
    NoPendingRequest,
    /// The body did not arrive in time (408).
    #[error("The request body did not arrive in time")]
    BodyTimeout,
    /// The body is larger than the route accepts (413).
    #[error("Request body exceeds the {limit}-byte limit")]
    TooLarge {
        /// The route's cap in bytes.
        limit: u64,
    },
    /// Wrong `Content-Type` (415).
    #[error("Content-Type must be {expected}")]
    UnsupportedMediaType {
        /// The media type the route takes.
        expected: &'static str,
    },
    /// The program embedding the server is not taking events (503).
    #[error("The program serving this viewer is not reading its events; try again later")]
    NotReading,
    /// The server's disk (or its file-size limit or quota) has no room for
    /// the upload (507); the partial file is removed and the request stays
    /// pending, so a smaller bundle may follow.
    #[error("There is no room on the server to store the session bundle")]
    InsufficientStorage,
    /// A server-side failure (500), e.g. the temp file could not be written.
    #[error("{0}")]
    Internal(String),
}
