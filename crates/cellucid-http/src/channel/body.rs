//! Reading request bodies under a cap, counted as bytes arrive, and under
//! a deadline for the whole body.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::error::ChannelError;
use super::{ChannelLimits, RequestBody};

/// The deadline of one request body: a fixed time from when reading starts,
/// extended by `1 / min_rate` s per byte received. A body trickling in below
/// the minimum rate runs out of time however it spreads its bytes; a large
/// body at a steady rate does not.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyClock {
    deadline: Instant,
    /// Bytes per second that extend the deadline; 0 for none.
    min_rate: u64,
    /// Bytes received whose extension is not yet in the deadline.
    carry: u64,
}

impl BodyClock {
    /// The clock of a body read from now under `limits`.
    pub(crate) fn start(limits: &ChannelLimits) -> Self {
        Self {
            deadline: Instant::now() + limits.body_timeout,
            min_rate: limits.min_body_rate,
            carry: 0,
        }
    }

    /// A plain deadline `time` from now.
    pub(crate) fn fixed(time: Duration) -> Self {
        Self {
            deadline: Instant::now() + time,
            min_rate: 0,
            carry: 0,
        }
    }

    fn received(&mut self, bytes: usize) {
        if self.min_rate == 0 {
            return;
        }
        // Whole milliseconds only, carrying the rest, so that many small
        // chunks extend the deadline as much as one large one.
        self.carry = self.carry.saturating_add(bytes as u64);
        let millis = self.carry.saturating_mul(1000) / self.min_rate;
        if millis > 0 {
            self.carry -= millis.saturating_mul(self.min_rate) / 1000;
            self.deadline += Duration::from_millis(millis);
        }
    }
}

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

/// The next data chunk of `body` (trailers are skipped), if it arrives
/// before `clock`'s deadline; `None` at the end.
pub(crate) async fn next_chunk(
    body: &mut RequestBody,
    clock: &mut BodyClock,
) -> Result<Option<Bytes>, ChannelError> {
    loop {
        let frame = match tokio::time::timeout_at(clock.deadline, body.frame()).await {
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
            clock.received(data.len());
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
    clock: &mut BodyClock,
) -> Result<Bytes, ChannelError> {
    check_declared_length(headers, cap)?;
    let mut buf = BytesMut::new();
    while let Some(chunk) = next_chunk(body, clock).await? {
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
