//! A read budget for a WebSocket that has not said hello yet.
//!
//! tokio-tungstenite fixes its message cap when the socket is made, and an
//! authenticated viewer may send a bundle as large as the bundle cap. So an
//! unauthenticated peer could make the server buffer that much. This wrapper
//! bounds what is read before the hello authenticates; after it the budget
//! is lifted.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes the peer may still send; `u64::MAX` once lifted.
#[derive(Clone, Debug)]
pub(crate) struct Budget(Arc<AtomicU64>);

impl Budget {
    pub(crate) fn new(bytes: u64) -> Self {
        Self(Arc::new(AtomicU64::new(bytes)))
    }

    /// No more limit (the peer authenticated).
    pub(crate) fn lift(&self) {
        self.0.store(u64::MAX, Ordering::Relaxed);
    }

    /// Whether the budget ran out.
    pub(crate) fn exhausted(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

/// An I/O object whose reads draw on a [`Budget`].
#[derive(Debug)]
pub(crate) struct BudgetIo<T> {
    inner: T,
    budget: Budget,
}

impl<T> BudgetIo<T> {
    pub(crate) fn new(inner: T, budget: Budget) -> Self {
        Self { inner, budget }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for BudgetIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let left = self.budget.0.load(Ordering::Relaxed);
        if left == 0 {
            return Poll::Ready(Err(io::Error::other(
                "the peer sent too much before its hello frame",
            )));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if left != u64::MAX {
            let read = (buf.filled().len() - before) as u64;
            self.budget
                .0
                .store(left.saturating_sub(read), Ordering::Relaxed);
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for BudgetIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
