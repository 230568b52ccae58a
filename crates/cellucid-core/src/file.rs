//! Files handed out by dataset sources, and reading them from a confined directory.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};

use crate::error::SourceError;
use crate::key::RelativeKey;

/// What identifies one version of a file's bytes: the base of a strong ETag.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileIdentity {
    /// A file on disk: any change of size, modification time, status-change
    /// time or inode makes a new identity. The status-change time (ctime) is
    /// what a rewrite that puts the mtime back (`cp -p`, `rsync -t`,
    /// `touch -r`) cannot hide: setting the mtime sets the ctime to now, and
    /// no unprivileged call sets the ctime (SECURITY.md, "Files that change
    /// while served").
    Stat {
        /// Size in bytes.
        len: u64,
        /// Modification time, nanoseconds since the epoch.
        mtime_ns: u128,
        /// Status-change time, nanoseconds since the epoch.
        ctime_ns: u128,
        /// Inode number.
        ino: u64,
    },
    /// Bytes made in memory, named by a digest of their content (hex).
    Digest(String),
}

impl FileIdentity {
    /// The strong ETag for this identity, quotes included.
    pub fn etag(&self) -> String {
        match self {
            Self::Stat {
                len,
                mtime_ns,
                ctime_ns,
                ino,
            } => format!("\"{len:x}-{mtime_ns:x}-{ctime_ns:x}-{ino:x}\""),
            Self::Digest(hex) => format!("\"{hex}\""),
        }
    }
}

/// One version of one file of a dataset: its size, its identity and its bytes.
///
/// Implementations must be cheap to read from many tasks at once.
pub trait SourceFile: Send + Sync + fmt::Debug {
    /// Size in bytes.
    fn len(&self) -> u64;

    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The identity of these bytes, for ETags.
    fn identity(&self) -> &FileIdentity;

    /// Reads `range` (which must lie within `0..len`).
    ///
    /// # Errors
    /// [`SourceError::RangeOutOfBounds`] for a range outside the file;
    /// [`SourceError::Io`] when the bytes cannot be read.
    fn read_range(&self, range: Range<u64>) -> Result<Bytes, SourceError>;

    /// Whether a large range should be read a chunk at a time as it is sent
    /// (a file on disk: reading it whole would hold all of it in memory),
    /// rather than in one call (bytes already in memory, or computed per
    /// call). The default is `false`.
    fn reads_in_chunks(&self) -> bool {
        false
    }

    /// The open descriptor of the file on disk these bytes are, at the same
    /// offsets, when they are one (`None`, the default, for bytes made in
    /// memory). A sender that copies bytes out of it by other means than
    /// [`SourceFile::read_range`] (`sendfile`, `splice`) must call
    /// [`SourceFile::check_unchanged`] once they are copied, as
    /// `read_range` does after every read: bytes copied while the file was
    /// rewritten must not go out under this identity.
    fn as_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }

    /// Whether the bytes on disk still have this file's identity (see
    /// [`SourceFile::as_fd`]); always `Ok` for bytes in memory.
    ///
    /// # Errors
    /// [`SourceError::Changed`] when the file was written, truncated or had
    /// its timestamps changed since it was opened; [`SourceError::Io`] when
    /// that cannot be checked.
    fn check_unchanged(&self) -> Result<(), SourceError> {
        Ok(())
    }

    /// How the bytes take to compression on the fly, for a server choosing
    /// a `Content-Encoding` (docs/PROTOCOL.md, "Compression of synthesised
    /// files"). The default, [`Compressibility::Never`], serves the bytes as
    /// they are.
    fn compressibility(&self) -> Compressibility {
        Compressibility::Never
    }
}

/// A file's hint to the server about compressing it on the fly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Compressibility {
    /// Served as stored: files of an export folder (compressed or not as
    /// their writer chose) and JSON manifests, as the Python servers did.
    #[default]
    Never,
    /// Worth compressing at the usual setting: codes, coordinates, edges.
    Good,
    /// Worth compressing at the fastest setting only: float values whose
    /// mantissas entropy coding barely shrinks, asked for one after another
    /// (gene columns), so each first request waits for its compression.
    Fastest,
}

/// A file whose bytes are already in memory: generated or read whole (a
/// [`Bytes`] is sliced without copying).
#[derive(Clone)]
pub struct MemoryFile {
    bytes: Bytes,
    identity: FileIdentity,
}

impl MemoryFile {
    /// Wraps `bytes` with the given identity.
    pub fn new(bytes: Bytes, identity: FileIdentity) -> Self {
        Self { bytes, identity }
    }

    /// All the bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

impl fmt::Debug for MemoryFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryFile")
            .field("len", &self.bytes.len())
            .field("identity", &self.identity)
            .finish()
    }
}

impl SourceFile for MemoryFile {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn identity(&self) -> &FileIdentity {
        &self.identity
    }

    fn read_range(&self, range: Range<u64>) -> Result<Bytes, SourceError> {
        let len = self.bytes.len() as u64;
        if range.start > range.end || range.end > len {
            return Err(SourceError::RangeOutOfBounds { range, len });
        }
        // Both ends are <= len, which came from a usize.
        let (start, end) = (range.start as usize, range.end as usize);
        Ok(self.bytes.slice(start..end))
    }
}

/// Opens `key` under `dir`, kept open and read with positioned reads.
///
/// The open goes through `cap-std`, so `..`, absolute symlinks and symlinks
/// whose target leaves `dir` fail; anything but a regular file (a directory, a
/// FIFO, a device) is reported as not found.
pub(crate) fn open_confined(
    dir: &Dir,
    key: &RelativeKey,
) -> Result<Arc<dyn SourceFile>, SourceError> {
    let mut options = OpenOptions::new();
    // O_NONBLOCK: opening a FIFO planted in a dataset must not hang a worker.
    options
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    let file = dir
        .open_with(key.as_str(), &options)
        .map_err(|err| SourceError::from_open(key, err))?
        .into_std();
    Ok(Arc::new(InputFile::from_std(file, key)?))
}

/// Opens the single file at `path` (an input given by its path, such as an
/// `.h5ad`), with the same identity and FIFO rules as [`open_confined`];
/// `key` names it in errors.
pub(crate) fn open_path(
    path: &std::path::Path,
    key: &RelativeKey,
) -> Result<Arc<dyn SourceFile>, SourceError> {
    Ok(Arc::new(InputFile::open(path, key)?))
}

/// A file on disk, opened once and read with positioned reads (`pread`).
///
/// Files we do not own are never memory-mapped: a mapped file that another
/// program truncates raises SIGBUS on the next access to a lost page, which
/// ends the whole process (every dataset with it), and no check made before
/// the access can rule that out, since the truncation may land between the
/// check and the access. A positioned read of a shrunk file returns fewer
/// bytes, which is an ordinary error. (SECURITY.md, "Files that change
/// while served".)
///
/// The descriptor keeps naming the inode it opened: a file replaced by a
/// rename keeps being read as the version that was opened, under that
/// version's identity. A file rewritten in place is caught by
/// [`InputFile::check_unchanged`], which [`SourceFile::read_range`] runs after
/// every read, so bytes read across a rewrite never go out under the old
/// identity.
#[derive(Debug)]
pub(crate) struct InputFile {
    file: std::fs::File,
    key: RelativeKey,
    len: u64,
    identity: FileIdentity,
}

impl InputFile {
    /// Opens `path` read-only (not following a FIFO into a hang); `key`
    /// names it in errors.
    pub(crate) fn open(path: &std::path::Path, key: &RelativeKey) -> Result<Self, SourceError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(|err| SourceError::from_open(key, err))?;
        Self::from_std(file, key)
    }

    /// Takes the identity of the open `file` once it has settled: a file
    /// changed less than [`FRESH`] ago may still be being written, and a
    /// write in the same clock tick as the identity would not change it, so
    /// the open waits (at most [`FRESH`] per try, [`SETTLE_TRIES`] tries)
    /// for the file to be older than that. Every later write then stamps a
    /// visibly newer ctime, which [`InputFile::check_unchanged`] sees.
    fn from_std(file: std::fs::File, key: &RelativeKey) -> Result<Self, SourceError> {
        for _ in 0..SETTLE_TRIES {
            let meta = file.metadata().map_err(|err| SourceError::io(key, err))?;
            if !meta.is_file() {
                return Err(SourceError::NotFound { key: key.clone() });
            }
            let identity = stat_identity(&meta);
            match unsettled_for(&identity) {
                Some(wait) => std::thread::sleep(wait),
                None => {
                    return Ok(Self {
                        file,
                        key: key.clone(),
                        len: meta.len(),
                        identity,
                    })
                }
            }
        }
        Err(SourceError::Changed { key: key.clone() })
    }

    /// Fills `buf` from `offset`. A read past the end (the file shrank since
    /// it was opened) is [`std::io::ErrorKind::UnexpectedEof`].
    ///
    /// # Errors
    /// When the bytes cannot be read.
    pub(crate) fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.read_exact_at(buf, offset)
    }

    /// `len` bytes from `offset`, in a new buffer.
    ///
    /// # Errors
    /// When the bytes cannot be read (a shrunk file: `UnexpectedEof`).
    pub(crate) fn read_vec_at(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// Whether the open file still has the identity it was opened with
    /// (same size, mtime and ctime): any write, truncation or timestamp
    /// change since the open makes this an error.
    ///
    /// # Errors
    /// [`SourceError::Changed`] when it changed, [`SourceError::Io`] when it
    /// cannot be checked.
    pub(crate) fn check_unchanged(&self) -> Result<(), SourceError> {
        let meta = self
            .file
            .metadata()
            .map_err(|err| SourceError::io(&self.key, err))?;
        let now = stat_identity(&meta);
        if now == self.identity || unlinked_only(&meta, &now, &self.identity) {
            Ok(())
        } else {
            Err(SourceError::Changed {
                key: self.key.clone(),
            })
        }
    }
}

impl SourceFile for InputFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn identity(&self) -> &FileIdentity {
        &self.identity
    }

    fn read_range(&self, range: Range<u64>) -> Result<Bytes, SourceError> {
        if range.start > range.end || range.end > self.len {
            return Err(SourceError::RangeOutOfBounds {
                range,
                len: self.len,
            });
        }
        let len = usize::try_from(range.end - range.start).map_err(|_| {
            SourceError::RangeOutOfBounds {
                range: range.clone(),
                len: self.len,
            }
        })?;
        let buf = self
            .read_vec_at(range.start, len)
            .map_err(|err| match err.kind() {
                // The file shrank since it was opened: its identity is stale.
                std::io::ErrorKind::UnexpectedEof => SourceError::Changed {
                    key: self.key.clone(),
                },
                _ => SourceError::io(&self.key, err),
            })?;
        // Checked after the read: bytes read while (or after) the file was
        // rewritten in place are never handed out under the old identity.
        self.check_unchanged()?;
        Ok(Bytes::from(buf))
    }

    fn reads_in_chunks(&self) -> bool {
        true
    }

    fn as_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        Some(self.file.as_fd())
    }

    fn check_unchanged(&self) -> Result<(), SourceError> {
        InputFile::check_unchanged(self)
    }
}

/// Maps the whole file at `path` read-only. Only for files this process made
/// itself in its own cache folder (the CSR gene index): see [`map_readonly`].
pub(crate) fn map_path(path: &std::path::Path) -> std::io::Result<Bytes> {
    let file = std::fs::File::open(path)?;
    let map = map_readonly(&file)?;
    Ok(Bytes::from_owner(map))
}

/// Maps `file` read-only: the one place files are mapped for reading.
///
/// Dataset inputs are never mapped (see [`InputFile`]): only cellucid's own
/// cache files, which it writes under a temporary name, renames into place
/// and never writes again.
#[allow(unsafe_code)]
pub(crate) fn map_readonly(file: &std::fs::File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: `Mmap::map` is unsafe because the mapped bytes may change if
    // another process writes the file. The mapping is read-only and only
    // ever read as `[u8]`, for which every bit pattern is valid, and no
    // `&mut` to the memory exists; the readers bounds-check what they parse
    // from it. So a concurrent write can change the bytes read, never break
    // an invariant of ours. What a map cannot survive is the file shrinking
    // (SIGBUS on a lost page): that is why only files this process created
    // itself in its cache folder are mapped (the CSR gene index, written
    // under a pid-named temporary name, renamed into place and never
    // written again by any cellucid process; a newer build of the same
    // index replaces it by rename, which leaves this mapping intact).
    // Truncating such a file means editing cellucid's private cache by hand
    // while it runs (SECURITY.md, "Files that change while served").
    unsafe { memmap2::Mmap::map(file) }
}

/// Whether the only change from `then` to `now` is the file losing its last
/// name: renaming a new version over it (or deleting it) sets the old
/// inode's ctime, but its bytes, size and mtime stay those of the version
/// opened, which the descriptor keeps reading.
fn unlinked_only(meta: &std::fs::Metadata, now: &FileIdentity, then: &FileIdentity) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (now, then) {
        (
            FileIdentity::Stat {
                len, mtime_ns, ino, ..
            },
            FileIdentity::Stat {
                len: len0,
                mtime_ns: mtime0,
                ino: ino0,
                ..
            },
        ) => meta.nlink() == 0 && (len, mtime_ns, ino) == (len0, mtime0, ino0),
        _ => false,
    }
}

/// How long a file must have been left alone before its identity is taken
/// (see [`InputFile`]): many times the coarsest clock tick file timestamps
/// use (a jiffy, at most 10 ms), short enough to go unnoticed on a file that
/// was just written.
const FRESH: std::time::Duration = std::time::Duration::from_millis(100);

/// Waits of [`FRESH`] before a file still being written is refused (503).
const SETTLE_TRIES: u32 = 3;

/// How much longer a file with `identity` must be left alone before it has
/// settled; `None` when it has (or when its timestamps lie in the future,
/// where waiting would not help).
fn unsettled_for(identity: &FileIdentity) -> Option<std::time::Duration> {
    let FileIdentity::Stat {
        mtime_ns, ctime_ns, ..
    } = identity
    else {
        return None;
    };
    let changed_ns = (*mtime_ns).max(*ctime_ns);
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    let age_ns = now_ns.checked_sub(changed_ns)?;
    let fresh_ns = FRESH.as_nanos();
    (age_ns < fresh_ns).then(|| {
        let left = u64::try_from(fresh_ns - age_ns).unwrap_or(u64::MAX);
        std::time::Duration::from_nanos(left)
    })
}

fn stat_identity(meta: &std::fs::Metadata) -> FileIdentity {
    use std::os::unix::fs::MetadataExt;
    let ns = |secs: i64, nsec: i64| (secs.max(0) as u128) * 1_000_000_000 + nsec.max(0) as u128;
    FileIdentity::Stat {
        len: meta.len(),
        mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
        ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        ino: meta.ino(),
    }
}

/// The identity of the file now at `path` (following symlinks), to notice a
/// replacement or an in-place rewrite of an input by comparing it with the
/// identity of what was opened.
///
/// # Errors
/// When `path` cannot be inspected.
pub(crate) fn path_identity(path: &std::path::Path) -> std::io::Result<FileIdentity> {
    std::fs::metadata(path).map(|meta| stat_identity(&meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_file_ranges_are_checked() {
        let file = MemoryFile::new(
            Bytes::from_static(b"0123456789"),
            FileIdentity::Digest("ab".into()),
        );
        assert_eq!(&file.read_range(2..5).unwrap()[..], b"234");
        assert!(file.read_range(5..11).is_err());
        assert_eq!(file.identity().etag(), "\"ab\"");
    }

    #[test]
    fn stat_etag_is_hex_of_size_mtime_ctime_and_inode() {
        let id = FileIdentity::Stat {
            len: 32104,
            mtime_ns: 0x18eacc38c8622ab9,
            ctime_ns: 0x18eacc38c8622aba,
            ino: 0x98c9eb,
        };
        assert_eq!(
            id.etag(),
            "\"7d68-18eacc38c8622ab9-18eacc38c8622aba-98c9eb\""
        );
    }

    #[test]
    fn an_input_file_that_shrinks_or_is_rewritten_fails_its_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        std::fs::write(&path, vec![7u8; 4096]).unwrap();
        let key = RelativeKey::trusted("f.bin");
        let file = InputFile::open(&path, &key).unwrap();
        assert_eq!(&file.read_range(0..4).unwrap()[..], &[7, 7, 7, 7]);
        // Shrunk: a short read, never a fault.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(100)
            .unwrap();
        assert!(matches!(
            file.read_range(0..4096),
            Err(SourceError::Changed { .. })
        ));
        // Same size again, new bytes: the identity check catches it.
        std::fs::write(&path, vec![8u8; 4096]).unwrap();
        assert!(matches!(
            file.read_range(0..4),
            Err(SourceError::Changed { .. })
        ));
        let reopened = InputFile::open(&path, &key).unwrap();
        assert_ne!(reopened.identity(), file.identity());
        assert_eq!(&reopened.read_range(0..2).unwrap()[..], &[8, 8]);
    }
}
