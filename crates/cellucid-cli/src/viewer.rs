//! `cellucid serve --viewer`: one registered viewer whose events stream to
//! stdout as JSON Lines, one object per event, flushed after each.

use std::io::Write;

use cellucid_http::{Viewer, ViewerEvents};
use tokio::task::JoinHandle;

/// Writes every event of `events` to stdout until the viewer is gone.
/// stdout carries nothing else while `--viewer` is on.
pub(crate) fn stream_to_stdout(mut events: ViewerEvents) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let line = event.to_json_line();
            let written = tokio::task::spawn_blocking(move || {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}").and_then(|()| out.flush())
            })
            .await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::error!(error = %err, "cannot write viewer events to stdout; events are no longer streamed");
                    return;
                }
                Err(err) => {
                    tracing::error!(error = %err, "the event writer failed");
                    return;
                }
            }
        }
    })
}

/// The stderr lines that tell the user how to open the viewer.
pub(crate) fn urls(
    viewer: &Viewer,
    base: &str,
    anndata: bool,
    access: &crate::access::Access,
) -> String {
    format!(
        "Viewer    {}\nViewer (0.9.4 viewers)  {}\nEvents of this viewer stream to stdout as JSON Lines.",
        access.with_token(&viewer.url(base, anndata)),
        access.with_token(&viewer.jupyter_url(base))
    )
}
