//! The response body type of every route.

use std::any::Any;
use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// A response body: zero or one chunk of bytes (often a zero-copy slice of a
/// memory-mapped file), plus an optional guard dropped when the connection is
/// done with the body, which is how the server knows a response has ended.
#[derive(Default)]
pub struct Body {
    data: Option<Bytes>,
    guard: Option<Box<dyn Any + Send + Sync>>,
}

impl Body {
    /// A body with no bytes.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A body of `bytes`.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self {
            data: (!bytes.is_empty()).then_some(bytes),
            guard: None,
        }
    }

    /// Attaches a value that lives exactly as long as the body.
    pub(crate) fn set_guard(&mut self, guard: Box<dyn Any + Send + Sync>) {
        self.guard = Some(guard);
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body")
            .field("len", &self.data.as_ref().map_or(0, Bytes::len))
            .finish()
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Self {
        Self::from_bytes(Bytes::from_static(text.as_bytes()))
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Self::from_bytes(text)
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().data.take().map(|data| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}
