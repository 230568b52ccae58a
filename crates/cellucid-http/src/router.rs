//! The router: the innermost service, from a classified [`Route`] to its
//! handler (precedence in docs/PROTOCOL.md, "Routes").

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use cellucid_core::{FileIdentity, MemoryFile, RelativeKey, SourceFile, SourceFormat};
use http::{Method, Request, Response};
use sha2::{Digest, Sha256};
use tower::Service;

use crate::body::Body;
use crate::channel::{self, into_request_body, BoxError, Channel};
use crate::content_coding::{self, EncodedCache};
use crate::documents::Documents;
use crate::error::HttpError;
use crate::mount::{Layout, Mount};
use crate::offload::source_io;
use crate::response::{self, content_type_for, strip_body_for_head};
use crate::route::Route;
pub use crate::web_ui::WebUi;

/// Everything a request handler reads; shared by all connections.
#[derive(Debug)]
pub(crate) struct AppState {
    channel: Arc<Channel>,
    layout: Layout,
    host: String,
    port: u16,
    /// The documents and the generated catalog, with the
    /// [`DatasetSource::refresh`] numbers of the sources they describe;
    /// rebuilt when an input was re-opened.
    documents: std::sync::RwLock<Arc<Described>>,
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
        let described = Described {
            versions: vec![0; layout.mounts().len()],
            documents: Documents::build(&layout, host, port),
            catalog: digest_file(layout.generated_catalog().clone()),
        };
        Self {
            channel,
            layout,
            host: host.to_owned(),
            port,
            documents: std::sync::RwLock::new(Arc::new(described)),
            web_ui,
            encoded: Arc::new(EncodedCache::new()),
        }
    }
}

/// The documents describing the datasets as they were when built.
#[derive(Debug)]
struct Described {
    /// Each mount's [`DatasetSource::refresh`] number, in mount order.
    versions: Vec<u64>,
    documents: Documents,
    catalog: MemoryFile,
}

impl AppState {
    /// The documents describing every dataset as it is now: sources whose
    /// input may change are asked to [`DatasetSource::refresh`] (off the
    /// async workers), and the documents are rebuilt when one re-opened its
    /// input, so `/_cellucid/datasets` and the raw route describe the same
    /// version. A source that is unavailable keeps its last description.
    async fn described(&self) -> Arc<Described> {
        let built = Arc::clone(
            &self
                .documents
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let mut versions = built.versions.clone();
        for (n, mount) in self.layout.mounts().iter().enumerate() {
            if mount.source.format() == SourceFormat::Export {
                continue; // export folders are described once
            }
            let source = Arc::clone(&mount.source);
            let refreshed = source_io(&Arc::clone(&source), move || source.refresh()).await;
            if let (Ok(number), Some(slot)) = (refreshed, versions.get_mut(n)) {
                *slot = number;
            }
        }
        if versions == built.versions {
            return built;
        }
        let fresh = Arc::new(Described {
            versions,
            documents: Documents::build(&self.layout, &self.host, self.port),
            catalog: digest_file(self.layout.current_catalog()),
        });
        *self
            .documents
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::clone(&fresh);
        fresh
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
    MemoryFile::new(bytes, FileIdentity::Digest(hex::encode(&digest[..16])))
}

/// The innermost service: routes a request (already past the origin layer)
/// to its handler. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Router {
    state: Arc<AppState>,
}

impl Router {
    pub(crate) fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

impl<B> Service<Request<B>> for Router
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let state = Arc::clone(&self.state);
        Box::pin(async move { Ok(handle(state, req).await) })
    }
}

/// The future of [`Router`] (and of the whole service).
pub(crate) type BoxFuture =
    Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send + 'static>>;

/// Answers one request: classify it once ([`Route::parse`]), then run its
/// handler; every refusal becomes a response in [`HttpError::into_response`].
async fn handle<B>(state: Arc<AppState>, req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let method = req.method().clone();
    let route = match Route::parse(&method, req.uri().path()) {
        Ok(route) => route,
        Err(err) => return err.into_response(),
    };
    let result = match route {
        // The viewer channel takes its requests whole (bodies, upgrades).
        Route::Post(post) => {
            return channel::http::handle(&state.channel, post, into_request_body(req)).await
        }
        Route::WebSocket if method == Method::GET => {
            channel::ws::upgrade(&state.channel, into_request_body(req))
        }
        Route::WebSocket => Err(HttpError::UpgradeRequired),
        route => read_route(&state, route, without_body(req)).await,
    };
    let mut response = result.unwrap_or_else(HttpError::into_response);
    strip_body_for_head(&mut response, &method);
    response
}

/// The request without its body: read routes need only the head, and a
/// head is `Sync`, so handlers may hold it across awaits whatever the body.
fn without_body<B>(req: Request<B>) -> Request<()> {
    req.map(|_| ())
}

/// Answers a GET or HEAD route.
async fn read_route(
    state: &Arc<AppState>,
    route: Route,
    req: Request<()>,
) -> Result<Response<Body>, HttpError> {
    match route {
        Route::Health => Ok(response::json(
            state.described().await.documents.health.clone(),
        )),
        Route::Info => Ok(response::json(
            state.described().await.documents.info.clone(),
        )),
        Route::Datasets => Ok(response::json(
            state.described().await.documents.datasets.clone(),
        )),
        Route::Protocol => {
            // Fixed: no need to look at the inputs.
            let built = state
                .documents
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .documents
                .protocol
                .clone();
            Ok(response::json(built))
        }
        Route::Catalog => catalog(state, &req).await,
        Route::AnnData(rest) => crate::anndata_route::handle(&state.layout, &rest, &req).await,
        Route::File(path) => file_or_ui(state, &path, &req).await,
        Route::WebSocket | Route::Post(_) => Err(HttpError::Internal(
            "a channel route reached the read handlers".into(),
        )),
    }
}

/// A dataset file at `path`, else a viewer UI file (the UI comes last: a path
/// a dataset serves is never shadowed).
async fn file_or_ui<B>(
    state: &Arc<AppState>,
    path: &str,
    req: &Request<B>,
) -> Result<Response<Body>, HttpError> {
    if path.is_empty() {
        return web_ui(state, path, req).await;
    }
    match state.layout.resolve(path) {
        Some((mount, key)) => match dataset_file(mount, key, req, &state.encoded)
            .await
            .map(|r| response::served_from(r, &mount.info.id))
        {
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
        None => Arc::new(state.described().await.catalog.clone()),
    };
    Ok(response::file(
        req.method(),
        req.headers(),
        &file,
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
    let file = match source.open_if_ready(&id, &key) {
        Some(file) => file,
        None => source_io(&Arc::clone(&source), move || source.open(&id, &key)).await?,
    };
    // Synthesised binary files say they may be compressed on the fly.
    let varies = content_coding::varies(&*file);
    let mut response = match content_coding::applies(req.method(), req.headers(), &*file) {
        Some(coding) => content_coding::respond(req, file, coding, content_type, encoded).await?,
        None => response::file(req.method(), req.headers(), &file, content_type)?,
    };
    if varies && req.method() == Method::GET {
        response.headers_mut().insert(
            http::header::VARY,
            http::HeaderValue::from_static("Accept-Encoding"),
        );
    }
    Ok(response)
}
