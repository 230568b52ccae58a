//! `/_cellucid/anndata/<id><ending>[/<key>]`: the raw bytes of AnnData
//! stores for 0.9.5 byte viewers (docs/PROTOCOL.md, "The byte route"), with the
//! dot-file rule of docs/PROTOCOL.md ("Path decoding").

use std::sync::Arc;

use cellucid_core::anndata::RawLayout;
use cellucid_core::{DatasetSource, SourceError};
use http::header::HeaderValue;
use http::{Request, Response};

use crate::body::Body;
use crate::error::HttpError;
use crate::mount::Layout;
use crate::response;

/// What a route name addresses.
enum Target {
    File,
    Key(String),
}

/// Answers `route` (the path after `_cellucid/anndata/`).
pub(crate) async fn handle<B>(
    layout: &Layout,
    route: &str,
    req: &Request<B>,
) -> Result<Response<Body>, HttpError> {
    let not_found = || HttpError::NotFound(format!("_cellucid/anndata/{route}"));
    let mut found: Option<(Arc<dyn DatasetSource>, String, Target)> = None;
    for mount in layout.mounts() {
        let Some(raw) = mount.source.raw_store(&mount.info.id) else {
            continue;
        };
        let name = format!("{}{}", mount.info.id, raw.ending());
        let target = match raw.layout() {
            RawLayout::File | RawLayout::Zip if route == name => Target::File,
            RawLayout::Folder => {
                match route.strip_prefix(&name).and_then(|r| r.strip_prefix('/')) {
                    Some(key) if !key.is_empty() => Target::Key(key.to_owned()),
                    _ => continue,
                }
            }
            _ => continue,
        };
        found = Some((Arc::clone(&mount.source), mount.info.id.clone(), target));
        break;
    }
    let (source, id, target) = found.ok_or_else(not_found)?;
    let served = id.clone();
    let file = tokio::task::spawn_blocking(move || {
        // The store as it is now: a changed input is opened again first, so
        // these bytes and `/_cellucid/datasets` describe the same version.
        source.refresh()?;
        let raw = source
            .raw_store(&id)
            .ok_or(SourceError::UnknownDataset { id: id.clone() })?;
        match &target {
            Target::File => raw.open_file(),
            Target::Key(key) => raw.open_key(key),
        }
    })
    .await
    .map_err(|join| HttpError::Internal(format!("store task failed: {join}")))?
    .map_err(|err| match err {
        SourceError::NotFound { .. } | SourceError::UnknownDataset { .. } => not_found(),
        other => HttpError::Source(other),
    })?;
    let response = response::file(
        req.method(),
        req.headers(),
        &file,
        HeaderValue::from_static("application/octet-stream"),
    )?;
    Ok(response::served_from(response, &served))
}
