//! Entry points for the fuzz targets and property tests (docs/FUZZING.md).
//!
//! The parsers these wrap are crate-private; the fuzz crate (`fuzz/`) and the
//! corpus replay tests need to reach them from outside, so each gets a thin
//! hidden wrapper here that returns plain values. Not part of the API.

use std::ops::Range;

use http::header::{HeaderMap, HeaderValue, RANGE};
use http::Method;

use crate::origin::{parse_authority, Origin};
use crate::range::{select, Selection};
use crate::route::Route;

/// `Host` or a request-line authority as the Host check parses it: the
/// canonical host (`::1` without brackets, names lower-cased) and the port.
#[doc(hidden)]
pub fn authority(value: &str) -> Option<(String, Option<u16>)> {
    parse_authority(value).map(|(host, port)| (host.canonical(), port))
}

/// An `Origin` value canonicalised as CORS compares and echoes it
/// (`None` when it is not a bare `http(s)://host[:port]` origin).
#[doc(hidden)]
pub fn canonical_origin(value: &str) -> Option<String> {
    Origin::parse(value).map(|origin| origin.serialize())
}

/// What one `Range` header value selects from a file of `size` bytes.
#[doc(hidden)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeAnswer {
    /// 200 with the whole file (no usable `Range`).
    Full,
    /// 206 with these bytes.
    Partial(Range<u64>),
    /// 416.
    Unsatisfiable,
}

/// Runs one `Range` value (`None` when it is not a valid header value at
/// all) through the same decision a file response makes.
#[doc(hidden)]
pub fn range(value: &[u8], size: u64) -> Option<RangeAnswer> {
    let mut headers = HeaderMap::new();
    headers.insert(RANGE, HeaderValue::from_bytes(value).ok()?);
    Some(match select(&headers, size, "\"etag\"") {
        Selection::Partial(bytes) => RangeAnswer::Partial(bytes),
        Selection::Unsatisfiable => RangeAnswer::Unsatisfiable,
        // No conditional headers are sent, so 304 cannot happen.
        Selection::Full | Selection::NotModified => RangeAnswer::Full,
    })
}

/// The dataset file key a `GET` of `raw_path` would open, after the route
/// table's decoding and the key rules (`None` when the request is refused
/// or is not a dataset-file route).
#[doc(hidden)]
pub fn file_key(raw_path: &str) -> Option<String> {
    match Route::parse(&Method::GET, raw_path).ok()? {
        Route::File(path) => cellucid_core::RelativeKey::parse(&path)
            .ok()
            .map(|key| key.as_str().to_owned()),
        _ => None,
    }
}

/// The decoded path the route table classifies (`None` when refused: 404).
#[doc(hidden)]
pub fn decode_path(raw_path: &str) -> Option<String> {
    crate::path::decode(raw_path)
}
