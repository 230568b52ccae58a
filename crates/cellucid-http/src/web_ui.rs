//! The viewer UI routes: what `/`, `/index.html`, `/assets/…` and the root
//! icons answer once no API or data route took the path. `cellucid-proxy`
//! decides which bytes (or which page); this module gives them their HTTP
//! form (conditional and Range requests, `ETag`, `Cache-Control`).

use std::sync::Arc;

use cellucid_core::{FileIdentity, MemoryFile};
use cellucid_proxy::{UiAnswer, UiFile, WebUiFiles};
use http::{HeaderValue, Request, Response};

use crate::body::Body;
use crate::error::HttpError;
use crate::response;

/// How the server answers for the viewer UI.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum WebUi {
    /// `--no-web-ui`: data only; `/` answers 503 saying so.
    Disabled,
    /// The viewer UI from a verified cache (`cellucid-proxy`): `/`,
    /// `/index.html`, `/assets/…` and the root icons, after every API and
    /// data route. While the cache has no UI, `/` answers the page the
    /// cache gives (being downloaded, or unavailable and how to fix it).
    Cached(Arc<WebUiFiles>),
}

/// `Cache-Control` of UI files whose name carries a content hash.
const IMMUTABLE: HeaderValue = HeaderValue::from_static("public, max-age=31536000, immutable");

/// Answers UI path `path` (decoded, without its leading `/`): a file of the
/// cached viewer UI, a page for `/` while there is none, or 404.
pub(crate) async fn answer<B>(
    web_ui: &WebUi,
    path: &str,
    req: &Request<B>,
) -> Result<Response<Body>, HttpError> {
    let files = match web_ui {
        WebUi::Cached(files) => Arc::clone(files),
        WebUi::Disabled if path.is_empty() || path == "index.html" => {
            return Err(HttpError::UiUnavailable(
                "The Cellucid viewer UI is switched off (--no-web-ui); the data routes work: see /_cellucid/datasets",
            ))
        }
        WebUi::Disabled => return Err(HttpError::NotFound(path.to_owned())),
    };
    let owned = path.to_owned();
    // Reads and hashes files: off the async workers.
    let answer = tokio::task::spawn_blocking(move || files.answer(&owned))
        .await
        .map_err(|join| HttpError::Internal(format!("UI task failed: {join}")))?;
    match answer {
        UiAnswer::File(ui) => file(req, ui),
        UiAnswer::Downloading { html } | UiAnswer::Unavailable { html } => {
            Err(HttpError::UiPage(html))
        }
        UiAnswer::Damaged(detail) => Err(HttpError::UiDamaged(detail)),
        _ => Err(HttpError::NotFound(path.to_owned())),
    }
}

/// One verified UI file, answered like any file (304, Range), its SHA-256
/// as the `ETag`.
fn file<B>(req: &Request<B>, ui: UiFile) -> Result<Response<Body>, HttpError> {
    let content_type = HeaderValue::from_str(&ui.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let file: std::sync::Arc<dyn cellucid_core::SourceFile> =
        std::sync::Arc::new(MemoryFile::new(ui.bytes, FileIdentity::Digest(ui.sha256)));
    let mut response = response::file(req.method(), req.headers(), &file, content_type)?;
    if ui.immutable {
        response
            .headers_mut()
            .insert(http::header::CACHE_CONTROL, IMMUTABLE);
    }
    Ok(response)
}
