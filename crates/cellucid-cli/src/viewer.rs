//! `cellucid serve --viewer`: one registered viewer whose events stream to
//! stdout as JSON Lines, one object per event, flushed after each.
//!
//! stdout may be a pipe that nobody reads. The lines are written by a thread
//! of their own, handed one line at a time: when it blocks, events wait in
//! the viewer's bounded queue (and the viewer gets 503 once it is full),
//! never in a buffer of their own, and shutdown does not wait for the thread.

use std::io::Write;

use cellucid_http::{Viewer, ViewerEvents};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::CliError;

/// The task moving a viewer's events to stdout.
pub(crate) struct EventWriter {
    forward: JoinHandle<()>,
}

/// Writes every event of `events` to stdout until the viewer is gone.
/// stdout carries nothing else while `--viewer` is on.
///
/// # Errors
/// When the writer thread cannot be started.
pub(crate) fn stream_to_stdout(mut events: ViewerEvents) -> Result<EventWriter, CliError> {
    // One line in hand: the queue that counts is the viewer's, in bytes.
    let (lines_tx, mut lines_rx) = mpsc::channel::<String>(1);
    let (done_tx, done_rx) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("viewer-events".into())
        .spawn(move || {
            while let Some(line) = lines_rx.blocking_recv() {
                let mut out = std::io::stdout().lock();
                if let Err(err) = writeln!(out, "{line}").and_then(|()| out.flush()) {
                    tracing::error!(error = %err, "cannot write viewer events to stdout; events are no longer streamed");
                    return;
                }
            }
            let _ = done_tx.send(());
        })
        .map_err(|err| CliError::operator(format!("cannot start the event writer: {err}")))?;
    let forward = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if lines_tx.send(event.to_json_line()).await.is_err() {
                // The writer gave up; dropping the stream drops later events.
                return;
            }
        }
        drop(lines_tx);
        let _ = done_rx.await;
    });
    Ok(EventWriter { forward })
}

impl EventWriter {
    /// Waits until the events queued so far are written (the viewer must be
    /// gone, so that no more come), or until `deadline`: a stdout nobody
    /// reads must not keep the process alive.
    pub(crate) async fn finish(self, deadline: Instant) {
        if tokio::time::timeout_at(deadline, self.forward)
            .await
            .is_err()
        {
            tracing::warn!("viewer events still unwritten at exit: stdout is not being read");
        }
    }
}

/// Prints the viewer's URLs: [`urls`] as text, or with `--log-format json`
/// a `viewer` event with fields `url` and `url_0_9_4`.
pub(crate) fn announce(viewer: &Viewer, base: &str, anndata: bool, access: &crate::access::Access) {
    if crate::logging::is_json() {
        let url = access.with_token(&viewer.url(base, anndata));
        let url_0_9_4 = access.with_token(&viewer.jupyter_url(base));
        crate::logging::event(|| {
            tracing::info!(
                url = %url,
                url_0_9_4 = %url_0_9_4,
                "viewer; its events stream to stdout as JSON Lines"
            );
        });
    } else {
        crate::logging::say(tracing::Level::INFO, &urls(viewer, base, anndata, access));
    }
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
