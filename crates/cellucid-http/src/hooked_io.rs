//! A socket wrapper that tells a hook about every read; writes pass through.
//!
//! The connection watchdog needs to see bytes arrive (to time a request
//! head), and a WebSocket that has not said hello yet needs its reads
//! counted against a budget: one wrapper, two hooks.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a [`HookedIo`] reports its reads to.
pub(crate) trait ReadHook {
    /// Before a read; an error refuses it (and is the read's result).
    fn before_read(&self) -> io::Result<()> {
        Ok(())
    }

    /// After a read that delivered `bytes` (zero at end of stream).
    fn after_read(&self, bytes: usize);
}

/// `inner`, with its reads reported to `hook`.
#[derive(Debug)]
pub(crate) struct HookedIo<T, H> {
    inner: T,
    hook: H,
}

impl<T, H> HookedIo<T, H> {
    pub(crate) fn new(inner: T, hook: H) -> Self {
        Self { inner, hook }
    }
}

impl<T: AsyncRead + Unpin, H: ReadHook + Unpin> AsyncRead for HookedIo<T, H> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Err(err) = self.hook.before_read() {
            return Poll::Ready(Err(err));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) {
            self.hook.after_read(buf.filled().len() - before);
        }
        result
    }
}

impl<T: AsyncWrite + Unpin, H: Unpin> AsyncWrite for HookedIo<T, H> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
