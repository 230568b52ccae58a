//! Files handed out by dataset sources, and reading them from a confined directory.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};

use crate::error::SourceError;
use crate::key::RelativeKey;

/// Files at least this large are memory-mapped rather than read; smaller ones
/// cost less to read than to map and unmap.
pub(crate) const MMAP_THRESHOLD: u64 = 256 * 1024;

/// The same threshold when mappings are kept between requests.
pub(crate) const CACHED_MMAP_THRESHOLD: u64 = 16 * 1024;

/// What identifies one version of a file's bytes: the base of a strong ETag.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileIdentity {
    /// A file on disk: any change of size, modification time or inode makes a
    /// new identity (the same rule as the Python servers).
    Stat {
        /// Size in bytes.
        len: u64,
        /// Modification time, nanoseconds since the epoch.
        mtime_ns: u128,
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
            Self::Stat { len, mtime_ns, ino } => format!("\"{len:x}-{mtime_ns:x}-{ino:x}\""),
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
}

/// A file whose bytes are already addressable: read into memory, generated, or
/// memory-mapped (a mapping wrapped in [`Bytes`] is sliced without copying).
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

/// Opens `key` under `dir`: large files are mapped, small ones kept open and
/// read on demand.
///
/// The open goes through `cap-std`, so `..`, absolute symlinks and symlinks
/// whose target leaves `dir` fail; anything but a regular file (a directory, a
/// FIFO, a device) is reported as not found.
pub(crate) fn open_confined(
    dir: &Dir,
    key: &RelativeKey,
    maps: Option<(&MapCache, &str)>,
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
    from_std_file(file, key, maps)
}

/// Opens the single file at `path` (an input given by its path, such as an
/// `.h5ad`), with the same identity, mapping and FIFO rules as
/// [`open_confined`]; `key` names it in errors.
pub(crate) fn open_path(
    path: &std::path::Path,
    key: &RelativeKey,
) -> Result<Arc<dyn SourceFile>, SourceError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|err| SourceError::from_open(key, err))?;
    from_std_file(file, key, None)
}

fn from_std_file(
    file: std::fs::File,
    key: &RelativeKey,
    maps: Option<(&MapCache, &str)>,
) -> Result<Arc<dyn SourceFile>, SourceError> {
    let meta = file.metadata().map_err(|err| SourceError::io(key, err))?;
    if !meta.is_file() {
        return Err(SourceError::NotFound { key: key.clone() });
    }
    let identity = stat_identity(&meta);
    let len = meta.len();
    // With a mapping cache, a mapping is paid once and then served without
    // a read or a copy, so it pays off for much smaller files.
    let threshold = if maps.is_some() {
        CACHED_MMAP_THRESHOLD
    } else {
        MMAP_THRESHOLD
    };
    if len >= threshold {
        let bytes = match maps {
            Some((cache, scope)) => {
                let name = format!("{scope}/{key}");
                match cache.get(&name, &identity) {
                    Some(bytes) => bytes,
                    None => {
                        let bytes = map_file(&file, key)?;
                        cache.insert(name, identity.clone(), bytes.clone());
                        bytes
                    }
                }
            }
            None => map_file(&file, key)?,
        };
        Ok(Arc::new(MemoryFile::new(bytes, identity)))
    } else {
        Ok(Arc::new(OpenFile {
            file,
            key: key.clone(),
            len,
            identity,
        }))
    }
}

/// A small file kept open and read with positioned reads on demand, so a
/// HEAD, a 304 or a short Range costs no more than it needs.
#[derive(Debug)]
struct OpenFile {
    file: std::fs::File,
    key: RelativeKey,
    len: u64,
    identity: FileIdentity,
}

impl SourceFile for OpenFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn identity(&self) -> &FileIdentity {
        &self.identity
    }

    fn read_range(&self, range: Range<u64>) -> Result<Bytes, SourceError> {
        use std::os::unix::fs::FileExt;
        if range.start > range.end || range.end > self.len {
            return Err(SourceError::RangeOutOfBounds {
                range,
                len: self.len,
            });
        }
        // At most MMAP_THRESHOLD bytes, so the cast cannot truncate.
        let mut buf = vec![0u8; (range.end - range.start) as usize];
        self.file
            .read_exact_at(&mut buf, range.start)
            .map_err(|err| match err.kind() {
                // The file shrank since it was opened: its identity is stale.
                std::io::ErrorKind::UnexpectedEof => SourceError::NotFound {
                    key: self.key.clone(),
                },
                _ => SourceError::io(&self.key, err),
            })?;
        Ok(Bytes::from(buf))
    }
}

/// Mappings of large files kept between requests, so a hot file is not
/// mapped, faulted in and unmapped again for every request. An entry is used
/// only while the file's identity (size, mtime, inode) is unchanged.
#[derive(Debug, Default)]
pub(crate) struct MapCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, (FileIdentity, Bytes)>>,
}

impl MapCache {
    /// Most mappings kept. A mapping holds no file descriptor, only a
    /// reference to the file and some address space.
    const MAX_ENTRIES: usize = 1024;

    fn get(&self, name: &str, identity: &FileIdentity) -> Option<Bytes> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .get(name)
            .filter(|(cached, _)| cached == identity)
            .map(|(_, bytes)| bytes.clone())
    }

    fn insert(&self, name: String, identity: FileIdentity, bytes: Bytes) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= Self::MAX_ENTRIES && !entries.contains_key(&name) {
            // Crude but bounded: a server with more hot large files than
            // this simply maps again.
            entries.clear();
        }
        entries.insert(name, (identity, bytes));
    }
}

/// Maps the whole file at `path` read-only (see [`map_readonly`] for why this is sound).
pub(crate) fn map_path(path: &std::path::Path) -> std::io::Result<Bytes> {
    let file = std::fs::File::open(path)?;
    let key = RelativeKey::parse("input").map_err(|err| std::io::Error::other(err.to_string()))?;
    map_file(&file, &key).map_err(|err| std::io::Error::other(err.to_string()))
}

fn map_file(file: &std::fs::File, key: &RelativeKey) -> Result<Bytes, SourceError> {
    let map = map_readonly(file).map_err(|err| SourceError::io(key, err))?;
    Ok(Bytes::from_owner(map))
}

/// Maps `file` read-only: the one place files are mapped for reading.
#[allow(unsafe_code)]
pub(crate) fn map_readonly(file: &std::fs::File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: `Mmap::map` is unsafe because the mapped bytes may change if
    // another process writes the file. The mapping is read-only and only
    // ever read as `[u8]`, for which every bit pattern is valid, and no
    // `&mut` to the memory exists. Every reader treats the bytes as
    // untrusted input: export files are sent as they are, and hdf5-reader
    // bounds-checks every structure it parses from an `.h5ad`. So a
    // concurrent write can change the bytes we send or make a parse fail,
    // but cannot break an invariant of ours. Shrinking the file while it is
    // mapped faults (SIGBUS) on access to the lost pages, which ends the
    // process rather than reading invalid memory; dataset files are written
    // once and then only read, and the identity (size, mtime, inode) changes
    // on any rewrite, so clients never mix versions.
    unsafe { memmap2::Mmap::map(file) }
}

fn stat_identity(meta: &std::fs::Metadata) -> FileIdentity {
    use std::os::unix::fs::MetadataExt;
    let mtime_ns = (meta.mtime().max(0) as u128) * 1_000_000_000 + meta.mtime_nsec().max(0) as u128;
    FileIdentity::Stat {
        len: meta.len(),
        mtime_ns,
        ino: meta.ino(),
    }
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
    fn stat_etag_is_hex_of_size_mtime_and_inode() {
        let id = FileIdentity::Stat {
            len: 32104,
            mtime_ns: 0x18eacc38c8622ab9,
            ino: 0x98c9eb,
        };
        assert_eq!(id.etag(), "\"7d68-18eacc38c8622ab9-98c9eb\"");
    }
}
