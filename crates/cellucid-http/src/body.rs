//! The response body type of every route.

use std::any::Any;
use std::fmt;
use std::ops::Range;
use std::os::fd::BorrowedFd;
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
///
/// Any [`http_body::Body`] consumer streams it. A runner that writes to a
/// plain socket itself may instead recognise a file answer with
/// [`Body::as_file`] and send its bytes straight from the file (`sendfile`),
/// never copying them through user space.
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

    /// The file this body streams, when it is a range of a file on disk
    /// (see [`SourceFile::as_fd`]): what is left to send, as the bytes
    /// already read ([`FileRange::head`]) followed by a range of the open
    /// file. `None` for a body in memory, or once the file part has been
    /// polled to its end.
    ///
    /// A runner that sends the answer this way sends the head, then the
    /// range from [`FileRange::fd`], calls [`FileRange::check_unchanged`]
    /// (ending the connection, as a failed chunk does, when the file changed
    /// meanwhile) and then drops the body without polling it, which releases
    /// its guard as streaming it to the end would.
    pub fn as_file(&self) -> Option<FileRange<'_>> {
        let rest = self.rest.as_ref()?;
        let fd = rest.file.as_fd()?;
        Some(FileRange {
            head: self.data.as_ref().map_or(&[][..], |data| &data[..]),
            fd,
            file: rest.file.as_ref(),
            range: rest.range.clone(),
        })
    }

    fn remaining(&self) -> u64 {
        self.data.as_ref().map_or(0, |d| d.len() as u64)
            + self
                .rest
                .as_ref()
                .map_or(0, |r| r.range.end - r.range.start)
    }
}

/// What is left of a file answer (see [`Body::as_file`]): bytes already read,
/// then a range of an open file on disk.
pub struct FileRange<'a> {
    head: &'a [u8],
    fd: BorrowedFd<'a>,
    file: &'a dyn SourceFile,
    range: Range<u64>,
}

impl<'a> FileRange<'a> {
    /// The bytes to send first: the start of the range, read when the answer
    /// was made so that a file already changed got a clean error status.
    pub fn head(&self) -> &'a [u8] {
        self.head
    }

    /// The open file the rest is sent from. It names the version that was
    /// opened even if the path has since been replaced.
    pub fn fd(&self) -> BorrowedFd<'a> {
        self.fd
    }

    /// The byte offsets in [`FileRange::fd`] to send after the head.
    pub fn range(&self) -> Range<u64> {
        self.range.clone()
    }

    /// Whether the file still has the identity its `ETag` names; call it
    /// once the range is sent, and cut the connection short on an error
    /// (the bytes may mix two versions).
    ///
    /// # Errors
    /// [`SourceError::Changed`] when the file changed since it was opened;
    /// [`SourceError::Io`] when that cannot be checked.
    pub fn check_unchanged(&self) -> Result<(), SourceError> {
        self.file.check_unchanged()
    }
}

impl fmt::Debug for FileRange<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileRange")
            .field("head", &self.head.len())
            .field("fd", &self.fd)
            .field("range", &self.range)
            .finish()
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use cellucid_core::{DatasetSource, ExportSource, RelativeKey};
    use http_body_util::BodyExt;

    use super::*;

    /// A dataset folder (the demo's identity) holding `blob.bin` of `len`
    /// bytes, and the file opened through an export source.
    fn disk_file(len: usize) -> (tempfile::TempDir, Vec<u8>, Arc<dyn SourceFile>) {
        let dir = tempfile::tempdir().unwrap();
        let demo = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../datasets/demo/synthetic-trajectory-1d/dataset_identity.json"
        );
        std::fs::copy(demo, dir.path().join("dataset_identity.json")).unwrap();
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(dir.path().join("blob.bin"), &bytes).unwrap();
        let source = ExportSource::open(dir.path()).unwrap();
        let id = source.datasets()[0].id.clone();
        let file = source
            .open(&id, &RelativeKey::parse("blob.bin").unwrap())
            .unwrap();
        (dir, bytes, file)
    }

    /// The bytes a runner sends for `range`: its head, then the file range
    /// read from the descriptor itself (standing in for `sendfile`).
    fn sent_from_fd(range: &FileRange<'_>) -> Vec<u8> {
        let file = std::fs::File::from(range.fd().try_clone_to_owned().unwrap());
        let span = range.range();
        let mut rest = vec![0u8; (span.end - span.start) as usize];
        file.read_exact_at(&mut rest, span.start).unwrap();
        let mut sent = range.head().to_vec();
        sent.extend_from_slice(&rest);
        sent
    }

    #[tokio::test]
    async fn a_file_answer_is_recognised_and_sends_what_it_streams() {
        let (_dir, bytes, file) = disk_file(3 * READ_CHUNK as usize + 17);
        let range = 5..bytes.len() as u64 - 3;
        let first = file.read_range(5..5 + READ_CHUNK).unwrap();
        let body = Body::from_file(first, Arc::clone(&file), range.clone());

        let view = body.as_file().expect("a file on disk is recognised");
        assert_eq!(view.head().len() as u64, READ_CHUNK);
        assert_eq!(view.range(), 5 + READ_CHUNK..range.end);
        let by_fd = sent_from_fd(&view);
        view.check_unchanged().unwrap();

        // Any other consumer streams the same bytes.
        let streamed = body.collect().await.unwrap().to_bytes();
        assert_eq!(&streamed[..], &bytes[5..bytes.len() - 3]);
        assert_eq!(by_fd, streamed);
    }

    #[tokio::test]
    async fn the_view_follows_what_is_left_and_ends_with_the_file_part() {
        let (_dir, bytes, file) = disk_file(2 * READ_CHUNK as usize);
        let first = file.read_range(0..10).unwrap();
        let mut body = Body::from_file(first, Arc::clone(&file), 0..bytes.len() as u64);
        // The head goes first; then the view is the file part alone.
        let head = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&head[..], &bytes[..10]);
        let view = body.as_file().unwrap();
        assert!(view.head().is_empty());
        assert_eq!(view.range(), 10..bytes.len() as u64);
        while body.frame().await.is_some() {}
        assert!(body.as_file().is_none(), "nothing is left to send");
    }

    #[test]
    fn bodies_in_memory_are_not_file_answers() {
        assert!(Body::from_bytes(vec![1u8; 10]).as_file().is_none());
        assert!(Body::empty().as_file().is_none());
        let memory: Arc<dyn SourceFile> = Arc::new(cellucid_core::MemoryFile::new(
            Bytes::from(vec![3u8; 100]),
            cellucid_core::FileIdentity::Digest("ab".into()),
        ));
        let first = memory.read_range(0..10).unwrap();
        assert!(Body::from_file(first, memory, 0..100).as_file().is_none());
    }

    #[test]
    fn a_file_rewritten_after_the_answer_was_made_fails_the_check() {
        let (dir, bytes, file) = disk_file(1000);
        let first = file.read_range(0..10).unwrap();
        let body = Body::from_file(first, file, 0..bytes.len() as u64);
        let view = body.as_file().unwrap();
        view.check_unchanged().unwrap();
        // Rewritten in place with the same length: only the identity shows it.
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("blob.bin"))
            .unwrap()
            .write_all_at(&[0u8; 4], 100)
            .unwrap();
        assert!(matches!(
            view.check_unchanged(),
            Err(SourceError::Changed { .. })
        ));
    }
}
