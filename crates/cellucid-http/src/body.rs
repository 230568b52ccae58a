//! The response body type of every route.

use std::any::Any;
use std::fmt;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use cellucid_core::{SourceError, SourceFile};
use http_body::{Frame, SizeHint};

/// Bytes read from a file per body chunk: large enough that a read costs
/// little per byte, small enough that a whole-file answer of a large input
/// never holds more than this in memory.
pub(crate) const READ_CHUNK: u64 = 256 * 1024;

/// A response body: bytes in memory, or a range of a file read chunk by
/// chunk as the connection sends it, plus an optional guard dropped when the
/// connection is done with the body, which is how the server knows a
/// response has ended.
#[derive(Default)]
pub struct Body {
    data: Option<Bytes>,
    rest: Option<FileRest>,
    guard: Option<Box<dyn Any + Send + Sync>>,
}

/// The part of a file range still to be read.
struct FileRest {
    file: Arc<dyn SourceFile>,
    range: Range<u64>,
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
            rest: None,
            guard: None,
        }
    }

    /// A body of `first` (already read: the bytes of `range` up to
    /// `first.len()`) followed by the rest of `range` of `file`, read a
    /// chunk at a time. A chunk whose read fails (the file changed since it
    /// was opened) ends the body with an error, so the connection is cut
    /// short rather than finishing a body of mixed versions under one ETag.
    pub(crate) fn from_file(first: Bytes, file: Arc<dyn SourceFile>, range: Range<u64>) -> Self {
        let start = range.start + first.len() as u64;
        let rest = (start < range.end).then_some(FileRest {
            file,
            range: start..range.end,
        });
        Self {
            data: (!first.is_empty()).then_some(first),
            rest,
            guard: None,
        }
    }

    /// Attaches a value that lives exactly as long as the body.
    pub(crate) fn set_guard(&mut self, guard: Box<dyn Any + Send + Sync>) {
        self.guard = Some(guard);
    }

    fn remaining(&self) -> u64 {
        self.data.as_ref().map_or(0, |d| d.len() as u64)
            + self
                .rest
                .as_ref()
                .map_or(0, |r| r.range.end - r.range.start)
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body")
            .field("len", &self.remaining())
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
    type Error = SourceError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, SourceError>>> {
        let this = self.get_mut();
        if let Some(data) = this.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        let Some(rest) = this.rest.as_mut() else {
            return Poll::Ready(None);
        };
        // A positioned read of a local file: the page cache answers in
        // microseconds, as the mapped pages it replaces did (see
        // `DatasetSource::reads_may_block`).
        let end = rest.range.end.min(rest.range.start + READ_CHUNK);
        let read = rest.file.read_range(rest.range.start..end);
        match read {
            Ok(bytes) if bytes.len() as u64 == end - rest.range.start => {
                rest.range.start = end;
                if rest.range.start >= rest.range.end {
                    this.rest = None;
                }
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Ok(_) | Err(_) => {
                this.rest = None;
                let err = read.err().unwrap_or(SourceError::RangeOutOfBounds {
                    range: 0..end,
                    len: 0,
                });
                tracing::warn!(error = %err, "response body cut short");
                Poll::Ready(Some(Err(err)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.rest.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining())
    }
}
