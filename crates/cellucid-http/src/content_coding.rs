//! `Content-Encoding` for synthesised files (docs/PROTOCOL.md, "Compression of synthesised files").
//!
//! The 0.9.4 AnnData server gzip-compressed every binary payload at level 6
//! for each request when the client accepted it, and browsers always do: on
//! a 800 KB gene column that is ~11 ms of CPU per request. Here the encoded
//! body is computed once per file version and kept (see [`EncodedCache`]),
//! with a fast setting, and zstd is preferred where the client offers it
//! (current Chromium and Firefox do): it compresses a mostly-zero float32
//! column to the same size several times faster than gzip and decodes
//! faster too. Files stored as `.gz` and JSON are never encoded here.

use std::io::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use cellucid_core::cache::ByteLru;
use cellucid_core::{Compressibility, SourceFile};
use flate2::{Compression, GzBuilder};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::body::Body;
use crate::error::HttpError;
use crate::offload::blocking;
use crate::response;

/// Encoded bodies kept at most, in bytes (a compressed 200k-cell gene
/// column is ~110 KB, so a few hundred genes).
const ENCODED_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// A content coding the server produces, with the setting it uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Coding {
    /// `zstd` (RFC 8878): level 1, or the fastest level for files that
    /// ask for it (see [`zstd_level`]).
    Zstd,
    /// `gzip`, level 1 (nginx's default level: on-the-fly compression is
    /// for latency, and level 6 bought 20 % fewer bytes for 4× the CPU).
    Gzip,
}

impl Coding {
    /// The `Content-Encoding` token.
    pub(crate) fn token(self) -> &'static str {
        match self {
            Self::Zstd => "zstd",
            Self::Gzip => "gzip",
        }
    }

    /// The strong ETag of the encoded variant of the file tagged `etag`: a
    /// different representation needs a different tag.
    pub(crate) fn etag(self, etag: &str) -> String {
        format!("{}-{}\"", etag.trim_end_matches('"'), self.token())
    }

    /// Encodes `bytes`, a file of the given compressibility.
    pub(crate) fn encode(self, hint: Compressibility, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut body = self.encode_into_vec(hint, bytes)?;
        // zstd writes into a buffer of the input's worst-case size: the kept
        // body must hold only its bytes (the cache counts their length).
        body.shrink_to_fit();
        Ok(body)
    }

    fn encode_into_vec(self, hint: Compressibility, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Self::Zstd => zstd_frames(bytes, zstd_level(hint)),
            Self::Gzip => {
                // mtime 0 and OS 255, as the 0.9.4 server wrote them: the
                // same bytes give the same body.
                let mut encoder = GzBuilder::new().mtime(0).operating_system(255).write(
                    Vec::with_capacity(bytes.len() / 4 + 64),
                    Compression::fast(),
                );
                encoder.write_all(bytes)?;
                encoder.finish()
            }
        }
    }
}

/// The zstd level for a file of compressibility `hint`. Gene columns
/// ([`Compressibility::Fastest`]) are what a viewer asks for one after
/// another as the user picks genes, so nearly every one is a first request
/// that waits for its compression; their non-zero values are float
/// mantissas that entropy coding barely shrinks. Measured on 200k-cell
/// columns (benches/RESULTS.md): level -5 takes half the time of level 1 for
/// 5 % more bytes. Everything else (categorical codes above all, which level
/// -5 leaves twice as large) uses level 1.
fn zstd_level(hint: Compressibility) -> i32 {
    if hint == Compressibility::Fastest {
        -5
    } else {
        1
    }
}

/// Input bytes per zstd frame when a body is split across threads.
const ZSTD_FRAME_INPUT: usize = 256 * 1024;

/// `bytes` as zstd at `level`: one frame, or for a large body several frames
/// compressed side by side on the available cores. RFC 8878 §3: zstd data
/// is one or more frames, and decoders (browsers included) read them in
/// sequence, so the concatenation decodes to `bytes`. Splitting costs ~1 %
/// in size (each frame starts without history) and divides the latency of
/// a first request by the number of idle cores.
fn zstd_frames(bytes: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let parts = bytes.len().div_ceil(ZSTD_FRAME_INPUT).clamp(1, cores);
    if parts == 1 {
        return zstd_frame(bytes, level);
    }
    let frames: Vec<std::io::Result<Vec<u8>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = bytes
            .chunks(bytes.len().div_ceil(parts))
            .map(|part| scope.spawn(move || zstd_frame(part, level)))
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("a zstd worker failed")))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(bytes.len() / 4);
    for frame in frames {
        out.extend_from_slice(&frame?);
    }
    Ok(out)
}

/// One zstd frame of `bytes`, written into a buffer that grows with the
/// output: the one-shot API allocates the input's worst-case size first,
/// megabytes per frame for a 1M-cell column, which the allocator kept.
fn zstd_frame(bytes: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    let mut encoder = zstd::stream::Encoder::new(Vec::with_capacity(bytes.len() / 8 + 64), level)?;
    encoder.include_contentsize(true)?;
    encoder.set_pledged_src_size(Some(bytes.len() as u64))?;
    encoder.write_all(bytes)?;
    encoder.finish()
}

/// The coding to use for a client sending `headers`: zstd when offered at
/// least as strongly as gzip, else gzip when acceptable (`gzip`, `x-gzip`
/// or `*` with q > 0, not refused by `q=0`), else none.
pub(crate) fn negotiate(headers: &HeaderMap) -> Option<Coding> {
    let mut gzip: Option<f32> = None;
    let mut zstd: Option<f32> = None;
    let mut star: Option<f32> = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(text) = value.to_str() else { continue };
        for item in text.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .filter_map(|q| q.trim().parse::<f32>().ok())
                .next()
                .unwrap_or(1.0);
            let is = |name: &str| coding.eq_ignore_ascii_case(name);
            if is("gzip") || is("x-gzip") {
                gzip = Some(q);
            } else if is("zstd") {
                zstd = Some(q);
            } else if coding == "*" {
                star = Some(q);
            }
        }
    }
    // `*` stands for gzip only: zstd must be named (a client that says `*`
    // may not know it).
    let gzip = gzip.or(star).filter(|&q| q > 0.0);
    let zstd = zstd.filter(|&q| q > 0.0);
    match (zstd, gzip) {
        (Some(z), Some(g)) if z >= g => Some(Coding::Zstd),
        (Some(_), None) => Some(Coding::Zstd),
        (_, Some(_)) => Some(Coding::Gzip),
        (None, None) => None,
    }
}

/// Whether the answers for `file` depend on `Accept-Encoding` (for
/// `Vary`): the file asks to be compressed on the fly.
pub(crate) fn varies(file: &dyn SourceFile) -> bool {
    file.compressibility() != Compressibility::Never
}

/// The coding for this request of `file`: a whole-file GET of a file that
/// asks to be compressed on the fly (synthesised binary payloads, not
/// stored files or JSON), with a coding accepted.
pub(crate) fn applies(
    method: &Method,
    headers: &HeaderMap,
    file: &dyn SourceFile,
) -> Option<Coding> {
    if method != Method::GET || !varies(file) || headers.contains_key(header::RANGE) {
        return None;
    }
    negotiate(headers)
}

/// Encoded bodies by their ETag (which names the file version and coding).
#[derive(Debug)]
pub(crate) struct EncodedCache {
    bodies: ByteLru<String>,
}

impl EncodedCache {
    /// An empty cache.
    pub(crate) fn new() -> Self {
        Self {
            bodies: ByteLru::new(ENCODED_CACHE_BYTES),
        }
    }

    /// The body tagged `etag`, if kept.
    pub(crate) fn get(&self, etag: &str) -> Option<Bytes> {
        self.bodies.get(etag)
    }

    /// Keeps `body` under `etag`.
    pub(crate) fn insert(&self, etag: String, body: Bytes) {
        let weight = body.len();
        self.bodies.insert(etag, body, weight);
    }
}

/// Answers a whole-file GET of a synthesised `file` in `coding`: 304 when
/// the encoded ETag matches, else the encoded body from `cache`, else encoded
/// now (off the async workers) and kept. Falls back to the plain file when
/// encoding fails.
pub(crate) async fn respond<B>(
    req: &Request<B>,
    file: Arc<dyn SourceFile>,
    coding: Coding,
    content_type: HeaderValue,
    cache: &Arc<EncodedCache>,
) -> Result<Response<Body>, HttpError> {
    let tag = coding.etag(&file.identity().etag());
    let tag_value = HeaderValue::from_str(&tag).ok();
    let matches = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| crate::range::if_none_match_hits(v.as_bytes(), &tag));
    if matches {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        if let Some(value) = tag_value {
            response.headers_mut().insert(header::ETAG, value);
        }
        return Ok(response);
    }
    let body = match cache.get(&tag) {
        Some(body) => body,
        None => {
            let kept = Arc::clone(cache);
            let key = tag.clone();
            let plain = Arc::clone(&file);
            let made = blocking(move || {
                let bytes = plain.read_range(0..plain.len())?;
                Ok(coding
                    .encode(plain.compressibility(), &bytes)
                    .ok()
                    .map(|body| {
                        let body = Bytes::from(body);
                        kept.insert(key, body.clone());
                        body
                    }))
            })
            .await?;
            match made {
                Some(body) => body,
                // Could not encode: the plain file is a correct answer.
                None => {
                    return Ok(response::file(
                        req.method(),
                        req.headers(),
                        &file,
                        content_type,
                    )?)
                }
            }
        }
    };
    let mut response = Response::new(Body::from_bytes(body.clone()));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_LENGTH, body.len().into());
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(coding.token()),
    );
    if let Some(value) = tag_value {
        headers.insert(header::ETAG, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn accept_encoding_is_negotiated_with_q_values() {
        use Coding::{Gzip, Zstd};
        let cases: &[(&str, Option<Coding>)] = &[
            ("gzip, deflate, br", Some(Gzip)),
            ("gzip, deflate, br, zstd", Some(Zstd)),
            ("zstd", Some(Zstd)),
            ("*", Some(Gzip)),
            ("gzip;q=0, *", None),
            ("identity", None),
            ("br;q=1, GZIP;q=0.5", Some(Gzip)),
            ("zstd;q=0.5, gzip", Some(Gzip)),
            ("zstd;q=0, gzip", Some(Gzip)),
            ("zstd, gzip;q=0", Some(Zstd)),
            ("zstd;q=0", None),
        ];
        for (value, expected) in cases {
            assert_eq!(negotiate(&headers(value)), *expected, "{value}");
        }
        assert_eq!(negotiate(&HeaderMap::new()), None);
    }

    #[test]
    fn encodings_round_trip() {
        let mut column = vec![0u8; 40_000];
        for i in (0..column.len()).step_by(37) {
            column[i] = (i % 251) as u8;
        }
        let gz = Coding::Gzip.encode(Compressibility::Good, &column).unwrap();
        let mut inflated = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut inflated)
            .unwrap();
        assert_eq!(inflated, column);
        let zs = Coding::Zstd.encode(Compressibility::Good, &column).unwrap();
        assert_eq!(zstd::bulk::decompress(&zs, column.len()).unwrap(), column);
        assert!(gz.len() < column.len() / 4 && zs.len() < column.len() / 4);
        // Large enough to be split: the frames decode in sequence.
        let big: Vec<u8> = column
            .iter()
            .cycle()
            .take(3 * ZSTD_FRAME_INPUT + 5)
            .copied()
            .collect();
        for hint in [Compressibility::Fastest, Compressibility::Good] {
            let frames = Coding::Zstd.encode(hint, &big).unwrap();
            assert_eq!(
                zstd::stream::decode_all(&frames[..]).unwrap(),
                big,
                "{hint:?}"
            );
        }
    }
}
