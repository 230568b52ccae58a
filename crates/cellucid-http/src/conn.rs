//! One client connection (HTTP/1.1, or HTTP/2 over TLS): what it is doing,
//! the watchdog that ends it, and the registry that finds idle connections
//! to close at the connection cap.
//!
//! hyper's own header-read timer also runs while a kept-alive connection
//! waits for its next request, which would cut idle connections at the
//! header timeout, and hyper has no send timeout. So the server tracks the
//! connection itself: its reads, its writes and the requests in flight feed
//! a watchdog that ends a connection whose request head takes longer than
//! the header timeout (answering 408 when a head had started), whose
//! response the client stopped reading for the send timeout, or that sits
//! idle longer than the idle timeout. On HTTP/2 the requests in flight are
//! its streams, frames between requests start no head, and a stream the
//! client stalls on its own is [`crate::h2_stream`]'s business.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Context;

use futures_util::task::AtomicWaker;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::{Duration, Instant};

use crate::hooked_io::{HookedIo, IoHook, ReadGate};
use crate::server::Limits;

const NONE: u64 = u64::MAX;

/// How long an evicted connection, idle again, may take to close itself.
const EVICTED_GRACE_MS: u64 = 1000;

/// What a connection whose request head did not arrive in time is told.
/// Written straight to the socket, so it carries the hardening headers the
/// origin layer would add.
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\n\
    Connection: close\r\n\
    Content-Type: text/plain; charset=utf-8\r\n\
    X-Content-Type-Options: nosniff\r\n\
    Referrer-Policy: no-referrer\r\n\
    Content-Length: 45\r\n\
    \r\n\
    The request headers did not arrive in time.\r\n";

/// What a connection has been doing, updated from its I/O and its requests.
/// Times are milliseconds since the server's epoch, so that connections can
/// be compared.
#[derive(Debug)]
pub(crate) struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// When the next request head became due (on connect, or when its
    /// first bytes arrived), or `NONE` while none is pending.
    head_since: AtomicU64,
    /// Whether bytes of the pending head arrived (a silent new connection,
    /// such as a browser's preconnect, is closed without an answer).
    head_started: AtomicBool,
    /// When the connection last became idle.
    idle_since: AtomicU64,
    /// Since when the socket has refused to take more bytes, or `NONE`.
    write_blocked_since: AtomicU64,
    /// Set by the connection task: the reader answers 408 and fails.
    answer_timeout: AtomicBool,
    /// The task reading the socket, woken to write the 408.
    reader: AtomicWaker,
    /// Set (and notified) when the server needs this idle connection's slot.
    evicted: AtomicBool,
    /// When it was evicted, or `NONE`.
    evicted_at: AtomicU64,
    evict: Notify,
    /// Set once the connection speaks HTTP/2: what it reads between
    /// requests are frames (pings, window updates), not the start of a
    /// request head, and an HTTP/1.1 408 must never be written to it.
    multiplexed: AtomicBool,
}

/// Why the watchdog ends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The request head did not arrive within the header timeout; `answer`
    /// when a 408 may be written (a head had started and nothing else is
    /// being written).
    HeadTimeout { answer: bool },
    /// Idle longer than the idle timeout.
    Idle,
    /// The client has not taken any bytes of a response for the send timeout.
    SendStalled,
    /// The server needs the slot of this idle connection.
    Evicted,
}

impl Activity {
    fn new(epoch: Instant) -> Self {
        let now = ms_since(epoch);
        Self {
            epoch,
            in_flight: AtomicUsize::new(0),
            // A new connection owes us a request head.
            head_since: AtomicU64::new(now),
            head_started: AtomicBool::new(false),
            idle_since: AtomicU64::new(now),
            write_blocked_since: AtomicU64::new(NONE),
            answer_timeout: AtomicBool::new(false),
            reader: AtomicWaker::new(),
            evicted: AtomicBool::new(false),
            evicted_at: AtomicU64::new(NONE),
            evict: Notify::new(),
            multiplexed: AtomicBool::new(false),
        }
    }

    /// Restarts the clock of the first request head once the connection is
    /// ready for it (after the TLS handshake, which has its own deadline),
    /// and says whether it speaks HTTP/2.
    pub(crate) fn ready(&self, multiplexed: bool) {
        self.multiplexed.store(multiplexed, Ordering::Relaxed);
        let now = self.now_ms();
        self.idle_since.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Acquire) == 0 {
            self.head_since.store(now, Ordering::Relaxed);
        }
    }

    fn now_ms(&self) -> u64 {
        ms_since(self.epoch)
    }

    fn on_read(&self) {
        // HTTP/2 frames between requests are not a request head: an idle
        // HTTP/2 connection is ended by the idle timeout.
        if self.multiplexed.load(Ordering::Relaxed) {
            return;
        }
        if self.in_flight.load(Ordering::Acquire) == 0 {
            if self.head_since.load(Ordering::Relaxed) == NONE {
                self.head_since.store(self.now_ms(), Ordering::Relaxed);
            }
            self.head_started.store(true, Ordering::Relaxed);
        }
    }

    /// Marks a request as received; the returned guard marks it finished when
    /// dropped (which happens once its response body is done).
    pub(crate) fn request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(NONE, Ordering::Relaxed);
        self.head_started.store(false, Ordering::Relaxed);
        RequestGuard(Arc::clone(self))
    }

    /// Whether the connection waits for its next request with nothing in
    /// flight, nothing of a head received and nothing left to write.
    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
            && self.head_since.load(Ordering::Relaxed) == NONE
            && self.write_blocked_since.load(Ordering::Relaxed) == NONE
            && !self.evicted.load(Ordering::Relaxed)
    }

    /// Asks the task reading the socket to write a 408 and end the connection.
    pub(crate) fn answer_request_timeout(&self) {
        self.answer_timeout.store(true, Ordering::Release);
        self.reader.wake();
    }

    /// Resolves when the connection should end, and why.
    pub(crate) async fn watchdog(&self, limits: &Limits) -> Verdict {
        let tick = Duration::from_millis(250)
            .min(limits.header_read_timeout)
            .min(limits.idle_timeout)
            .min(limits.send_timeout);
        let header_ms = millis(limits.header_read_timeout);
        let idle_ms = millis(limits.idle_timeout);
        let send_ms = millis(limits.send_timeout);
        loop {
            tokio::select! {
                () = tokio::time::sleep(tick) => {}
                () = self.evict.notified() => return Verdict::Evicted,
            }
            let now = self.now_ms();
            let blocked = self.write_blocked_since.load(Ordering::Relaxed);
            if blocked != NONE && now.saturating_sub(blocked) >= send_ms {
                return Verdict::SendStalled;
            }
            if self.in_flight.load(Ordering::Acquire) > 0 {
                continue;
            }
            let head_since = self.head_since.load(Ordering::Relaxed);
            // Evicted while idle and asked to close: an HTTP/1.1 connection
            // closes at once, an HTTP/2 one after its client acknowledges
            // the GOAWAY's ping — which a client that reads nothing never
            // does. Whatever raced in has finished: close it.
            let evicted_at = self.evicted_at.load(Ordering::Relaxed);
            if head_since == NONE
                && evicted_at != NONE
                && now.saturating_sub(evicted_at) >= EVICTED_GRACE_MS
            {
                return Verdict::Idle;
            }
            if head_since != NONE {
                if now.saturating_sub(head_since) >= header_ms {
                    // A response still being flushed must not be followed by
                    // a 408 written under hyper's feet.
                    let answer = self.head_started.load(Ordering::Relaxed)
                        && blocked == NONE
                        && !self.multiplexed.load(Ordering::Relaxed);
                    return Verdict::HeadTimeout { answer };
                }
            } else if now.saturating_sub(self.idle_since.load(Ordering::Relaxed)) >= idle_ms {
                return Verdict::Idle;
            }
        }
    }
}

fn ms_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(NONE - 1)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(NONE - 1)
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

/// A socket that reports its reads and writes to an [`Activity`].
pub(crate) type TrackedIo<T> = HookedIo<T, Arc<Activity>>;

impl IoHook for Arc<Activity> {
    fn before_read(&mut self, cx: &Context<'_>) -> ReadGate {
        self.reader.register(cx.waker());
        if self.answer_timeout.swap(false, Ordering::AcqRel) {
            return ReadGate::AnswerAndRefuse(
                REQUEST_TIMEOUT,
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the request head did not arrive in time",
                ),
            );
        }
        ReadGate::Proceed
    }

    fn after_read(&mut self, bytes: &[u8]) -> usize {
        if !bytes.is_empty() {
            self.on_read();
        }
        bytes.len()
    }

    fn after_write(&mut self, written: Option<usize>) {
        let blocked = &self.write_blocked_since;
        match written {
            Some(0) => {}
            Some(_) => {
                if blocked.load(Ordering::Relaxed) != NONE {
                    blocked.store(NONE, Ordering::Relaxed);
                }
            }
            None => {
                if blocked.load(Ordering::Relaxed) == NONE {
                    blocked.store(self.now_ms(), Ordering::Relaxed);
                }
            }
        }
    }
}

/// The open connections of one server, for closing idle keep-alive
/// connections when the connection cap is reached.
#[derive(Debug)]
pub(crate) struct Connections {
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Activity>>>,
}

impl Connections {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Registers a new connection; it leaves the registry when the returned
    /// handle is dropped.
    pub(crate) fn open(self: &Arc<Self>) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new(self.epoch));
        self.lock().insert(id, Arc::clone(&activity));
        Registered {
            id,
            activity,
            registry: Arc::clone(self),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells the connection idle the longest to close; false when none is
    /// idle. A scan, but only at the cap, over at most the cap's entries.
    pub(crate) fn evict_oldest_idle(&self) -> bool {
        let open = self.lock();
        // Times are whole milliseconds: among connections idle since the same
        // one, the one opened first (the lowest id) goes.
        let oldest = open
            .iter()
            .filter(|(_, activity)| activity.is_idle())
            .min_by_key(|(id, activity)| (activity.idle_since.load(Ordering::Relaxed), **id));
        match oldest {
            Some((_, activity)) => {
                activity.evicted.store(true, Ordering::Relaxed);
                activity
                    .evicted_at
                    .store(activity.now_ms(), Ordering::Relaxed);
                activity.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A connection's entry in [`Connections`].
#[derive(Debug)]
pub(crate) struct Registered {
    id: u64,
    activity: Arc<Activity>,
    registry: Arc<Connections>,
}

impl Registered {
    pub(crate) fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

/// A connection's place under `--max-connections`, shared with its requests
/// so that a WebSocket upgrade can take it along: an upgraded socket keeps
/// counting as a connection after the HTTP connection task ends.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionSlot(Arc<Mutex<Option<OwnedSemaphorePermit>>>);

impl ConnectionSlot {
    pub(crate) fn new(permit: OwnedSemaphorePermit) -> Self {
        Self(Arc::new(Mutex::new(Some(permit))))
    }

    /// Takes the permit (once); whoever holds it keeps the slot taken.
    pub(crate) fn take(&self) -> Option<OwnedSemaphorePermit> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn among_connections_idle_since_the_same_millisecond_the_first_opened_goes() {
        // Idle times are whole milliseconds; the pick among equal ones used
        // to follow the map's order, not the connections' age.
        let registry = Connections::new();
        let open: Vec<Registered> = (0..16).map(|_| registry.open()).collect();
        for conn in &open {
            // Served a request and now idle, all within one millisecond.
            conn.activity.head_since.store(NONE, Ordering::Relaxed);
            conn.activity.idle_since.store(7, Ordering::Relaxed);
        }
        assert!(registry.evict_oldest_idle());
        let evicted: Vec<usize> = open
            .iter()
            .enumerate()
            .filter(|(_, conn)| conn.activity.evicted.load(Ordering::Relaxed))
            .map(|(at, _)| at)
            .collect();
        assert_eq!(evicted, [0]);
    }
}
