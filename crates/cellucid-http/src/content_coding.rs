//! `Content-Encoding: gzip` for synthesised files (CONTRACT §2): the 0.9.4
//! AnnData server compressed every binary payload when the client accepted
//! it, and browsers always do. Files stored as `.gz` and JSON are never
//! encoded here.

use std::io::Write as _;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::body::Body;

/// Whether `Accept-Encoding` admits gzip (`gzip` or `*` with q > 0, and
/// gzip not refused by `q=0`).
pub(crate) fn accepted(headers: &HeaderMap) -> bool {
    let mut gzip: Option<bool> = None;
    let mut star: Option<bool> = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(text) = value.to_str() else { continue };
        for item in text.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .filter_map(|q| q.trim().parse::<f32>().ok())
                .next()
                .unwrap_or(1.0);
            match coding.as_str() {
                "gzip" | "x-gzip" => gzip = Some(q > 0.0),
                "*" => star = Some(q > 0.0),
                _ => {}
            }
        }
    }
    gzip.or(star).unwrap_or(false)
}

/// Whether a synthesised file under `key` may be gzip-encoded for this
/// request: a whole-file GET of a binary payload, with gzip accepted.
pub(crate) fn applies(method: &Method, headers: &HeaderMap, key: &str) -> bool {
    method == Method::GET
        && !key.ends_with(".gz")
        && !key.ends_with(".json")
        && !headers.contains_key(header::RANGE)
        && accepted(headers)
}

/// The ETag of the encoded variant: a different representation needs a
/// different strong tag.
pub(crate) fn encoded_etag(etag: &str) -> String {
    format!("{}-gzip\"", etag.trim_end_matches('"'))
}

/// Compresses `bytes` as the 0.9.4 server did: level 6, mtime 0, OS 255.
fn compress(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder: GzEncoder<Vec<u8>> = GzBuilder::new().mtime(0).operating_system(255).write(
        Vec::with_capacity(bytes.len() / 2 + 64),
        Compression::new(6),
    );
    encoder.write_all(bytes)?;
    encoder.finish()
}

/// Turns a full 200 response carrying `bytes` into its gzip variant; any
/// other response is returned as is.
pub(crate) fn encode(mut response: Response<Body>, bytes: &Bytes) -> Response<Body> {
    if response.status() != StatusCode::OK {
        return response;
    }
    let Ok(compressed) = compress(bytes) else {
        return response;
    };
    let etag = response
        .headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(encoded_etag);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(compressed.len()));
    if let Some(tag) = etag.and_then(|t| HeaderValue::from_str(&t).ok()) {
        headers.insert(header::ETAG, tag);
    }
    *response.body_mut() = Body::from_bytes(Bytes::from(compressed));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn accept_encoding_is_parsed_with_q_values() {
        assert!(accepted(&headers("gzip, deflate, br")));
        assert!(accepted(&headers("*")));
        assert!(!accepted(&headers("gzip;q=0, *")));
        assert!(!accepted(&headers("identity")));
        assert!(!accepted(&HeaderMap::new()));
        assert!(accepted(&headers("br;q=1, GZIP;q=0.5")));
    }
}
