//! The router: from a decoded path to a handler, in the precedence of
//! CONTRACT §2 (`/_cellucid/*`, then `datasets.json` and dataset files, then
//! the viewer UI).

use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::Bytes;
use cellucid_core::{FileIdentity, MemoryFile, RelativeKey, SourceFile, SourceFormat};
use http::{Method, Request, Response};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};

use crate::body::Body;
use crate::channel::{self, Channel};
use crate::content_coding::{self, Coding, EncodedCache};
use crate::documents::Documents;
use crate::error::HttpError;
use crate::mount::{Layout, Mount};
use crate::path;
use crate::response::{self, content_type_for, strip_body_for_head};
pub use crate::web_ui::WebUi;

/// The methods the GET routes answer (OPTIONS is answered by the origin layer).
const READ_METHODS: &str = "GET, HEAD, OPTIONS";

/// Everything a request handler reads; shared by all connections.
#[derive(Debug)]
pub(crate) struct AppState {
    channel: Arc<Channel>,
    layout: Layout,
    documents: Documents,
    generated_catalog: MemoryFile,
    web_ui: WebUi,
    /// Compressed bodies of synthesised files, computed once per version.
    encoded: Arc<EncodedCache>,
}

impl AppState {
    pub(crate) fn new(
        channel: Arc<Channel>,
        layout: Layout,
        host: &str,
        port: u16,
        web_ui: WebUi,
    ) -> Self {
        let documents = Documents::build(&layout, host, port);
        let generated_catalog = digest_file(layout.generated_catalog().clone());
        Self {
            channel,
            layout,
            documents,
            generated_catalog,
            web_ui,
            encoded: Arc::new(EncodedCache::new()),
        }
    }
}

impl AppState {
    /// Tells every dataset source the server stopped (they remove their
    /// temporary files).
    pub(crate) fn shutdown_sources(&self) {
        for mount in self.layout.mounts() {
            mount.source.shutdown();
        }
    }
}

/// A file of bytes made in memory, named by the start of their SHA-256.
fn digest_file(bytes: Bytes) -> MemoryFile {
    let digest = Sha256::digest(&bytes);
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    MemoryFile::new(bytes, FileIdentity::Digest(hex))
}

/// Answers one request (already past the origin layer).
pub(crate) async fn handle(state: Arc<AppState>, req: Request<Incoming>) -> Response<Body> {
    // The viewer channel takes its requests whole (bodies, upgrades).
    let req = match channel::route(&state.channel, req).await {
        ControlFlow::Break(response) => return response,
        ControlFlow::Continue(req) => req,
    };
    let method = req.method().clone();
    let mut response = match route(&state, &req).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    };
    strip_body_for_head(&mut response, &method);
    response
}

async fn route<B>(state: &Arc<AppState>, req: &Request<B>) -> Result<Response<Body>, HttpError> {
    let method = req.method();
    if method != Method::GET && method != Method::HEAD {
        return Err(HttpError::MethodNotAllowed {
            allow: READ_METHODS,
        });
    }
    let decoded =
        path::decode(req.uri().path()).ok_or_else(|| HttpError::NotFound(String::new()))?;
    let path = &decoded[1..];
    let docs = &state.documents;
    match path {
        "_cellucid/health" => return Ok(response::json(docs.health.clone())),
        "_cellucid/info" => return Ok(response::json(docs.info.clone())),
        "_cellucid/datasets" => return Ok(response::json(docs.datasets.clone())),
        "_cellucid/protocol" => return Ok(response::json(docs.protocol.clone())),
        "_cellucid/ws" => return Err(HttpError::UpgradeRequired),
        "" => return web_ui(state, path, req).await,
        "datasets.json" => return catalog(state, req).await,
        _ => {}
    }
    if let Some(route) = path.strip_prefix("_cellucid/anndata/") {
        return crate::anndata_route::handle(&state.layout, route, req).await;
    }
    if path == "_cellucid" || path.starts_with("_cellucid/") {
        return Err(HttpError::NotFound(path.to_owned()));
    }
    // The viewer UI comes last: a path a dataset serves is never shadowed.
    match state.layout.resolve(path) {
        Some((mount, key)) => match dataset_file(mount, key, req, &state.encoded).await {
            Err(
                err @ (HttpError::Source(cellucid_core::SourceError::NotFound { .. })
                | HttpError::NotFound(_)),
            ) => match web_ui(state, path, req).await {
                // Not a UI file either: report the data route's 404.
                Err(HttpError::NotFound(_)) => Err(err),
                other => other,
            },
            other => other,
        },
        None => web_ui(state, path, req).await,
    }
}

/// Answers a path no API or data route took from the viewer UI
/// (`crate::web_ui`).
async fn web_ui<B>(
    state: &AppState,
    path: &str,
    req: &Request<B>,
) -> Result<Response<Body>, HttpError> {
    crate::web_ui::answer(&state.web_ui, path, req).await
}

async fn catalog<B>(state: &Arc<AppState>, req: &Request<B>) -> Result<Response<Body>, HttpError> {
    let file: Arc<dyn SourceFile> = match state.layout.catalog_source() {
        Some(source) => {
            let source = Arc::clone(source);
            source_io(&Arc::clone(&source), move || {
                source.catalog().unwrap_or_else(|| {
                    Err(cellucid_core::SourceError::UnknownDataset {
                        id: "datasets.json".into(),
                    })
                })
            })
            .await?
        }
        None => Arc::new(state.generated_catalog.clone()),
    };
    Ok(response::file(
        req.method(),
        req.headers(),
        file.as_ref(),
        content_type_for("datasets.json"),
    )?)
}

async fn dataset_file<B>(
    mount: &Mount,
    key: &str,
    req: &Request<B>,
    encoded: &Arc<EncodedCache>,
) -> Result<Response<Body>, HttpError> {
    let key = RelativeKey::parse(key).map_err(|_| HttpError::NotFound(key.to_owned()))?;
    let source = Arc::clone(&mount.source);
    let id = mount.info.id.clone();
    let content_type = content_type_for(key.as_str());
    // AnnData sources synthesise their files: those may be compressed.
    let synthesised = source.format() != SourceFormat::Export;
    let coding = synthesised
        .then(|| content_coding::applies(req.method(), req.headers(), key.as_str()))
        .flatten();
    let binary = synthesised && !key.as_str().ends_with(".json");
    // Owned for the encoding thread, only when there is one.
    let key_name = coding.map(|_| key.as_str().to_owned()).unwrap_or_default();
    let file = match source.open_if_ready(&id, &key) {
        Some(file) => file,
        None => source_io(&Arc::clone(&source), move || source.open(&id, &key)).await?,
    };
    let mut response = match coding {
        Some(coding) => encoded_file(req, file, key_name, coding, content_type, encoded).await?,
        None => response::file(req.method(), req.headers(), file.as_ref(), content_type)?,
    };
    if binary && req.method() == Method::GET {
        response.headers_mut().insert(
            http::header::VARY,
            http::HeaderValue::from_static("Accept-Encoding"),
        );
    }
    Ok(response)
}

/// A whole synthesised file in `coding`: from the cache of encoded bodies,
/// else encoded now (off the async workers) and kept.
async fn encoded_file<B>(
    req: &Request<B>,
    file: Arc<dyn SourceFile>,
    key_name: String,
    coding: Coding,
    content_type: http::HeaderValue,
    encoded: &Arc<EncodedCache>,
) -> Result<Response<Body>, HttpError> {
    let tag = coding.etag(&file.identity().etag());
    let tag_value = http::HeaderValue::from_str(&tag).ok();
    let matches = req
        .headers()
        .get(http::header::IF_NONE_MATCH)
        .is_some_and(|v| crate::range::if_none_match_hits(v.as_bytes(), &tag));
    if matches {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = http::StatusCode::NOT_MODIFIED;
        if let Some(value) = tag_value {
            response.headers_mut().insert(http::header::ETAG, value);
        }
        return Ok(response);
    }
    let body = match encoded.get(&tag) {
        Some(body) => body,
        None => {
            let cache = Arc::clone(encoded);
            let key = tag.clone();
            let plain = Arc::clone(&file);
            let made = blocking(move || {
                let bytes = plain.read_range(0..plain.len())?;
                Ok(coding.encode(&key_name, &bytes).ok().map(|body| {
                    let body = Bytes::from(body);
                    cache.insert(key, body.clone());
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
                        file.as_ref(),
                        content_type,
                    )?)
                }
            }
        }
    };
    let mut response = Response::new(Body::from_bytes(body.clone()));
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, content_type);
    headers.insert(http::header::CONTENT_LENGTH, body.len().into());
    headers.insert(
        http::header::CONTENT_ENCODING,
        http::HeaderValue::from_static(coding.token()),
    );
    if let Some(value) = tag_value {
        headers.insert(http::header::ETAG, value);
    }
    Ok(response)
}

/// Runs a source's I/O: inline when the source answers quickly (local export
/// files: a thread hand-off would cost more than the read), otherwise off the
/// async workers.
async fn source_io<T: Send + 'static>(
    source: &Arc<dyn cellucid_core::DatasetSource>,
    work: impl FnOnce() -> Result<T, cellucid_core::SourceError> + Send + 'static,
) -> Result<T, HttpError> {
    if source.reads_may_block() {
        blocking(work).await
    } else {
        work().map_err(HttpError::from)
    }
}

/// Runs filesystem work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, cellucid_core::SourceError> + Send + 'static,
) -> Result<T, HttpError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(HttpError::from),
        Err(join) => Err(HttpError::Internal(format!("file task failed: {join}"))),
    }
}
