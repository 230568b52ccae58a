//! One client connection: activity tracking for the header-read and idle
//! timeouts.
//!
//! hyper's own header-read timer also runs while a kept-alive connection
//! waits for its next request, which would cut idle connections at the
//! header timeout. So the server tracks both itself: the connection's reads
//! and writes and the requests in flight feed a watchdog that closes a
//! connection whose request head takes longer than `header_read_timeout`, or
//! that sits idle longer than `idle_timeout`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::hooked_io::{HookedIo, ReadHook};

const NONE: u64 = u64::MAX;

/// What a connection has been doing, updated from I/O and request handling.
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// When the head of the next request started arriving (ms since start),
    /// or `NONE` while no request head is pending.
    head_since: AtomicU64,
    /// When the connection last became idle (ms since start).
    idle_since: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            // A new connection owes us a request head.
            head_since: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn on_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_since.load(Ordering::Relaxed) == NONE
        {
            self.head_since.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// Marks a request as received; the returned guard marks it finished when
    /// dropped (which happens once its response body is done).
    pub(crate) fn request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(NONE, Ordering::Relaxed);
        RequestGuard(Arc::clone(self))
    }

    /// Resolves when the connection should be closed: a request head is
    /// overdue, or the connection has been idle too long.
    pub(crate) async fn watchdog(&self, header_timeout: Duration, idle_timeout: Duration) {
        let tick = Duration::from_millis(250)
            .min(header_timeout)
            .min(idle_timeout);
        let header_ms = header_timeout.as_millis() as u64;
        let idle_ms = idle_timeout.as_millis() as u64;
        loop {
            tokio::time::sleep(tick).await;
            if self.in_flight.load(Ordering::Acquire) > 0 {
                continue;
            }
            let now = self.now_ms();
            let head_since = self.head_since.load(Ordering::Relaxed);
            if head_since != NONE {
                if now.saturating_sub(head_since) >= header_ms {
                    tracing::debug!(
                        "closing a connection whose request head did not arrive in time"
                    );
                    return;
                }
            } else if now.saturating_sub(self.idle_since.load(Ordering::Relaxed)) >= idle_ms {
                tracing::debug!("closing an idle keep-alive connection");
                return;
            }
        }
    }
}

/// Held by a request's response body; see [`Activity::request`].
#[derive(Debug)]
pub(crate) struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let activity = &self.0;
        activity
            .idle_since
            .store(activity.now_ms(), Ordering::Relaxed);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A socket that reports its reads to an [`Activity`].
pub(crate) type TrackedIo<T> = HookedIo<T, Arc<Activity>>;

impl ReadHook for Arc<Activity> {
    fn after_read(&self, bytes: usize) {
        if bytes > 0 {
            self.on_read();
        }
    }
}

/// A connection's place under `--max-connections`, shared with its requests
/// so that a WebSocket upgrade can take it along: an upgraded socket keeps
/// counting as a connection after the HTTP connection task ends.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionSlot(Arc<std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>);

impl ConnectionSlot {
    pub(crate) fn new(permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        Self(Arc::new(std::sync::Mutex::new(Some(permit))))
    }

    /// Takes the permit (once); whoever holds it keeps the slot taken.
    pub(crate) fn take(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}
