//! Running dataset I/O without stalling the async workers.

use std::sync::Arc;

use cellucid_core::{DatasetSource, SourceError};

use crate::error::HttpError;

/// Runs a source's I/O: inline when the source answers quickly (local export
/// files: a thread hand-off would cost more than the read), otherwise off the
/// async workers.
pub(crate) async fn source_io<T: Send + 'static>(
    source: &Arc<dyn DatasetSource>,
    work: impl FnOnce() -> Result<T, SourceError> + Send + 'static,
) -> Result<T, HttpError> {
    if source.reads_may_block() {
        blocking(work).await
    } else {
        work().map_err(HttpError::from)
    }
}

/// Runs filesystem work off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SourceError> + Send + 'static,
) -> Result<T, HttpError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(HttpError::from),
        Err(join) => Err(HttpError::Internal(format!("file task failed: {join}"))),
    }
}
