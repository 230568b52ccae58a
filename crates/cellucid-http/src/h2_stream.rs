//! One HTTP/2 stream: the send timeout of its response, and the executor
//! that runs it.
//!
//! On an HTTP/1.1 connection one response at a time fills the socket, and
//! the connection watchdog ([`crate::conn`]) drops a client that stops
//! reading it. HTTP/2 multiplexes: a client can stop one stream (never
//! granting it flow-control window) while reading others, so the socket
//! never blocks and the stalled response would be held forever. hyper runs
//! each HTTP/2 stream as a task of its own on the executor it is given;
//! [`StreamExecutor`] wraps each such task with a watchdog and drops the
//! task — hyper then resets the stream (`RST_STREAM`) — when its response
//! waits longer than the send timeout for a client that takes none of it.
//!
//! Only a response body the client must pull piece by piece can show that
//! stall, so on HTTP/2 [`ServedBody`] hands the body over in
//! [`H2_CHUNK`]-byte slices (zero-copy: slices of the same buffer); on
//! HTTP/1.1 it passes the body through whole, as before.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::{Duration, Instant};

use crate::body::Body;

/// The slice of a response body handed to an HTTP/2 stream at a time: the
/// most hyper queues on a stream beyond what the client has made room for.
pub(crate) const H2_CHUNK: usize = 128 * 1024;

const NONE: u64 = u64::MAX;

tokio::task_local! {
    /// The progress record of the HTTP/2 stream whose task this is.
    static STREAM: Arc<StreamProgress>;
}

/// Whether a stream's response waits on the client.
#[derive(Debug)]
pub(crate) struct StreamProgress {
    epoch: Instant,
    /// Since when a slice of the response has been handed over without the
    /// next being asked for (the client has not made room), or `NONE`.
    waiting_since: AtomicU64,
}

impl StreamProgress {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            waiting_since: AtomicU64::new(NONE),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    /// The stream's own record, inside a stream task run by
    /// [`StreamExecutor`]; `None` elsewhere (HTTP/1.1).
    pub(crate) fn current() -> Option<Arc<Self>> {
        STREAM.try_with(Arc::clone).ok()
    }

    /// Resolves once the response has waited `timeout` for the client.
    async fn stalled(&self, timeout: Duration) {
        let limit = u64::try_from(timeout.as_millis()).unwrap_or(NONE - 1);
        let tick = Duration::from_millis(250).min(timeout);
        loop {
            tokio::time::sleep(tick).await;
            let since = self.waiting_since.load(Ordering::Relaxed);
            if since != NONE && self.now_ms().saturating_sub(since) >= limit {
                return;
            }
        }
    }
}

/// Runs hyper's HTTP/2 stream tasks, each under its send timeout.
#[derive(Debug, Clone)]
pub(crate) struct StreamExecutor {
    send_timeout: Duration,
}

impl StreamExecutor {
    pub(crate) fn new(send_timeout: Duration) -> Self {
        Self { send_timeout }
    }
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, stream: F) {
        let progress = Arc::new(StreamProgress::new());
        let timeout = self.send_timeout;
        let watched = Arc::clone(&progress);
        tokio::spawn(STREAM.scope(progress, async move {
            tokio::select! {
                _ = stream => {}
                () = watched.stalled(timeout) => {
                    // Dropping the task drops hyper's handle on the stream,
                    // which resets it; the connection's other streams go on.
                    tracing::info!("reset an HTTP/2 stream whose response the client stopped reading");
                }
            }
        }));
    }
}

/// The body the server hands hyper: a route's [`Body`], sliced and watched
/// on HTTP/2 (see the module documentation), untouched on HTTP/1.1.
#[derive(Debug)]
pub(crate) struct ServedBody {
    inner: Body,
    /// What is left of a chunk being handed over in slices.
    rest: Bytes,
    stream: Option<Arc<StreamProgress>>,
}

impl ServedBody {
    /// `inner`, watched as part of `stream` when there is one.
    pub(crate) fn new(inner: Body, stream: Option<Arc<StreamProgress>>) -> Self {
        if let Some(stream) = &stream {
            // The response is ready; until hyper asks for its first slice
            // (the client granted no window yet), it waits on the client.
            if !http_body::Body::is_end_stream(&inner) {
                stream
                    .waiting_since
                    .store(stream.now_ms(), Ordering::Relaxed);
            }
        }
        Self {
            inner,
            rest: Bytes::new(),
            stream,
        }
    }
}

impl http_body::Body for ServedBody {
    type Data = Bytes;
    /// A file that changed while it was sent ends the body with its error,
    /// which ends the stream (or connection) short of its declared length.
    type Error = cellucid_core::SourceError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let Some(stream) = &this.stream else {
            return Pin::new(&mut this.inner).poll_frame(cx);
        };
        // Asked for more: the client made room for what came before.
        stream.waiting_since.store(NONE, Ordering::Relaxed);
        if this.rest.is_empty() {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.rest = data,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                other => return other,
            }
        }
        let slice = this.rest.split_to(this.rest.len().min(H2_CHUNK));
        // hyper holds the slice until the client makes room for it, then
        // asks for the next (or, after the last, ends the stream's task).
        stream
            .waiting_since
            .store(stream.now_ms(), Ordering::Relaxed);
        Poll::Ready(Some(Ok(Frame::data(slice))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.rest.len() as u64;
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + rest);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn http2_bodies_are_sliced_and_marked_waiting() {
        let data: Vec<u8> = (0..300 * 1024).map(|i| (i % 251) as u8).collect();
        let stream = Arc::new(StreamProgress::new());
        let mut body = ServedBody::new(Body::from_bytes(data.clone()), Some(Arc::clone(&stream)));
        assert_ne!(stream.waiting_since.load(Ordering::Relaxed), NONE);
        assert_eq!(
            http_body::Body::size_hint(&body).exact(),
            Some(data.len() as u64)
        );
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        while let Some(frame) = body.frame().await {
            let chunk = frame.unwrap().into_data().unwrap();
            // Handed over: waiting for the client until asked again.
            assert_ne!(stream.waiting_since.load(Ordering::Relaxed), NONE);
            sizes.push(chunk.len());
            seen.extend_from_slice(&chunk);
            let left = (data.len() - seen.len()) as u64;
            assert_eq!(http_body::Body::size_hint(&body).exact(), Some(left));
            assert_eq!(http_body::Body::is_end_stream(&body), left == 0);
        }
        assert_eq!(sizes, [H2_CHUNK, H2_CHUNK, 300 * 1024 - 2 * H2_CHUNK]);
        assert_eq!(seen, data);
    }

    #[tokio::test]
    async fn http11_bodies_pass_through_whole() {
        let mut body = ServedBody::new(Body::from_bytes(vec![7u8; 300 * 1024]), None);
        let chunk = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(chunk.len(), 300 * 1024);
        assert!(body.frame().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_waiting_on_its_client_stalls_after_the_timeout() {
        let stream = Arc::new(StreamProgress::new());
        let _body = ServedBody::new(Body::from_bytes(vec![1u8; 10]), Some(Arc::clone(&stream)));
        let start = Instant::now();
        stream.stalled(Duration::from_secs(3)).await;
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(3) && waited < Duration::from_secs(4),
            "{waited:?}"
        );
    }
}
