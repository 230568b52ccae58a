//! A socket wrapper that tells a hook about its reads and writes.
//!
//! The connection watchdog needs to see bytes arrive (to time a request
//! head) and writes stall (to drop a client that stopped reading), and it
//! must be able to answer 408 on a socket hyper owns; a viewer WebSocket
//! needs its frames measured as they arrive: one wrapper, two hooks.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a hook decides before a read.
#[derive(Debug)]
pub(crate) enum ReadGate {
    /// Read as usual.
    Proceed,
    /// Refuse the read with this error.
    Refuse(io::Error),
    /// Write these bytes to the peer (one attempt, best effort), then refuse
    /// the read: how a connection answers a request it will not read.
    AnswerAndRefuse(&'static [u8], io::Error),
}

/// What a [`HookedIo`] reports its reads and writes to.
pub(crate) trait IoHook {
    /// Before a read (`cx` is the reader's, for hooks that must wake it).
    fn before_read(&mut self, _cx: &Context<'_>) -> ReadGate {
        ReadGate::Proceed
    }

    /// After a read that delivered `bytes` (empty at end of stream); returns
    /// how many of them to pass on. Fewer cuts the stream at a limit: the
    /// bytes past it are dropped, the hook having seen them.
    fn after_read(&mut self, bytes: &[u8]) -> usize;

    /// After a write or flush attempt: `Some(n)` when it completed
    /// (`n` bytes written), `None` when the socket could not take more.
    fn after_write(&mut self, _written: Option<usize>) {}
}

/// `inner`, with its reads and writes reported to `hook`.
#[derive(Debug)]
pub(crate) struct HookedIo<T, H> {
    inner: T,
    hook: H,
}

impl<T, H> HookedIo<T, H> {
    pub(crate) fn new(inner: T, hook: H) -> Self {
        Self { inner, hook }
    }

    /// The hook, to read what it saw.
    pub(crate) fn hook(&self) -> &H {
        &self.hook
    }

    /// The hook, to change what it does.
    pub(crate) fn hook_mut(&mut self) -> &mut H {
        &mut self.hook
    }
}

fn report<H: IoHook>(hook: &mut H, result: &Poll<io::Result<usize>>) {
    match result {
        Poll::Ready(Ok(n)) => hook.after_write(Some(*n)),
        Poll::Pending => hook.after_write(None),
        Poll::Ready(Err(_)) => {}
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin, H: IoHook + Unpin> AsyncRead for HookedIo<T, H> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.hook.before_read(cx) {
            ReadGate::Proceed => {}
            ReadGate::Refuse(err) => return Poll::Ready(Err(err)),
            ReadGate::AnswerAndRefuse(answer, err) => {
                // One attempt: the socket is idle (the hook checked), so a
                // short answer fits its send buffer; if not, the close alone
                // has to do.
                let _ = Pin::new(&mut this.inner).poll_write(cx, answer);
                let _ = Pin::new(&mut this.inner).poll_flush(cx);
                return Poll::Ready(Err(err));
            }
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) {
            let delivered = buf.filled().len() - before;
            let keep = this.hook.after_read(&buf.filled()[before..]).min(delivered);
            if keep < delivered {
                if keep == 0 {
                    // Nothing before the cut: fail now rather than report a
                    // clean end of stream.
                    buf.set_filled(before);
                    return Poll::Ready(Err(io::Error::other("the peer went over a read limit")));
                }
                buf.set_filled(before + keep);
            }
        }
        result
    }
}

impl<T: AsyncWrite + Unpin, H: IoHook + Unpin> AsyncWrite for HookedIo<T, H> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        report(&mut this.hook, &result);
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        report(&mut this.hook, &result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        if result.is_pending() {
            this.hook.after_write(None);
        }
        result
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
