//! Reading request bodies under a cap, counted as bytes arrive.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::BodyExt;

use super::error::ChannelError;
use super::RequestBody;

/// Refuses a body whose declared `Content-Length` is already over `cap`,
/// before reading any of it.
pub(crate) fn check_declared_length(headers: &HeaderMap, cap: u64) -> Result<(), ChannelError> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > cap => Err(ChannelError::TooLarge { limit: cap }),
        _ => Ok(()),
    }
}

/// The next data chunk of `body` (trailers are skipped), waiting at most
/// `timeout` for it; `None` at the end.
pub(crate) async fn next_chunk(
    body: &mut RequestBody,
    timeout: Duration,
) -> Result<Option<Bytes>, ChannelError> {
    loop {
        let frame = match tokio::time::timeout(timeout, body.frame()).await {
            Err(_) => return Err(ChannelError::BodyTimeout),
            Ok(None) => return Ok(None),
            Ok(Some(Err(err))) => {
                return Err(ChannelError::BadRequest(format!(
                    "The request body could not be read: {err}"
                )))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            return Ok(Some(data));
        }
    }
}

/// Reads a whole body (Content-Length or chunked) into memory, refusing it
/// with 413 as soon as more than `cap` bytes have arrived.
pub(crate) async fn read_capped(
    headers: &HeaderMap,
    body: &mut RequestBody,
    cap: u64,
    timeout: Duration,
) -> Result<Bytes, ChannelError> {
    check_declared_length(headers, cap)?;
    let mut buf = BytesMut::new();
    while let Some(chunk) = next_chunk(body, timeout).await? {
        if buf.len() as u64 + chunk.len() as u64 > cap {
            return Err(ChannelError::TooLarge { limit: cap });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Whether `Content-Type` is `expected`, ignoring case and whitespace,
/// with at most a `charset=utf-8` parameter.
pub(crate) fn content_type_is(headers: &HeaderMap, expected: &str) -> bool {
    let mut values = headers.get_all(http::header::CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let mut parts = value.split(';').map(str::trim);
    let essence_ok = parts
        .next()
        .is_some_and(|essence| essence.eq_ignore_ascii_case(expected));
    essence_ok
        && parts.all(|param| {
            param.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("charset")
                    && v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            })
        })
}
