//! Building responses: plain text, JSON documents and files.

use bytes::Bytes;
use cellucid_core::SourceFile;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use std::sync::Arc;

use crate::body::{Body, READ_CHUNK};
use crate::range::{select, Selection};

/// `text/plain; charset=utf-8`, the type of every error body.
pub(crate) const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const JSON: HeaderValue = HeaderValue::from_static("application/json");
const OCTET_STREAM: HeaderValue = HeaderValue::from_static("application/octet-stream");
const BYTES: HeaderValue = HeaderValue::from_static("bytes");
const UNSATISFIABLE: &str = "Requested byte range is not satisfiable";

/// The dataset a response serves (a response extension), for the request
/// log line.
#[derive(Clone, Debug)]
pub(crate) struct ServedDataset(pub(crate) String);

/// Marks `response` as serving dataset `id`.
pub(crate) fn served_from(mut response: Response<Body>, id: &str) -> Response<Body> {
    response
        .extensions_mut()
        .insert(ServedDataset(id.to_owned()));
    response
}

/// A plain-text response.
pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let body: String = body.into();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, TEXT_PLAIN);
    response
}

/// A 200 JSON response.
pub(crate) fn json(body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Body::from_bytes(body));
    response.headers_mut().insert(header::CONTENT_TYPE, JSON);
    response
}

/// The content type of a dataset file. Only JSON gets a specific type: every
/// other file goes out as `application/octet-stream`, so a dataset can never
/// make the browser run HTML or script from our origin. `.gz` files are sent
/// as stored, with no `Content-Encoding`: the viewer inflates them itself.
pub(crate) fn content_type_for(key: &str) -> HeaderValue {
    if key.ends_with(".json") {
        JSON
    } else {
        OCTET_STREAM
    }
}

/// Answers a GET or HEAD for `file` with ETag, conditional and Range support.
///
/// The ETag is the identity of the version `file` opened, and every byte of
/// the body is read from that same open file; a read that finds the file
/// changed fails the request (503) or, once the head is sent, cuts the body
/// short (SECURITY.md, "Files that change while served").
pub(crate) fn file(
    method: &Method,
    request: &HeaderMap,
    file: &Arc<dyn SourceFile>,
    content_type: HeaderValue,
) -> Result<Response<Body>, cellucid_core::SourceError> {
    let size = file.len();
    let etag = file.identity().etag();
    let etag_value = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\""));
    let head = method == Method::HEAD;
    let (status, range) = match select(request, size, &etag) {
        Selection::NotModified => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            response.headers_mut().insert(header::ETAG, etag_value);
            return Ok(response);
        }
        Selection::Unsatisfiable => {
            let mut response = text(StatusCode::RANGE_NOT_SATISFIABLE, UNSATISFIABLE);
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_RANGE,
                content_range(&format!("bytes */{size}")),
            );
            headers.insert(header::ACCEPT_RANGES, BYTES);
            if head {
                headers.insert(
                    header::CONTENT_LENGTH,
                    HeaderValue::from(UNSATISFIABLE.len()),
                );
                *response.body_mut() = Body::empty();
            }
            return Ok(response);
        }
        Selection::Full => (StatusCode::OK, 0..size),
        Selection::Partial(range) => (StatusCode::PARTIAL_CONTENT, range),
    };
    let length = range.end - range.start;
    let body = if head || length == 0 {
        Body::empty()
    } else {
        // The first chunk is read now, so a file that changed since it was
        // opened is refused with a clean status; the rest of a file on disk
        // is read as the connection sends it (`Body::from_file`).
        let first_end = if file.reads_in_chunks() {
            range.end.min(range.start + READ_CHUNK)
        } else {
            range.end
        };
        let first = file.read_range(range.start..first_end)?;
        Body::from_file(first, Arc::clone(file), range.clone())
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::ACCEPT_RANGES, BYTES);
    headers.insert(header::ETAG, etag_value);
    if status == StatusCode::PARTIAL_CONTENT {
        let last = range.end - 1;
        headers.insert(
            header::CONTENT_RANGE,
            content_range(&format!("bytes {}-{last}/{size}", range.start)),
        );
    }
    Ok(response)
}

fn content_range(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("bytes */0"))
}

/// Makes a HEAD response out of a GET response: same headers, no body.
pub(crate) fn strip_body_for_head(response: &mut Response<Body>, method: &Method) {
    if method == Method::HEAD {
        let length = http_body::Body::size_hint(response.body())
            .exact()
            .unwrap_or(0);
        response
            .headers_mut()
            .entry(header::CONTENT_LENGTH)
            .or_insert(HeaderValue::from(length));
        *response.body_mut() = Body::empty();
    }
}
