//! Key-value stores under a Zarr hierarchy: a confined folder or a zip
//! archive (the adapter that lets `zarrs` read from either is in
//! `zarrs_store.rs`, with the `zarr` feature).
//!
//! `zarrs` ships a path-based filesystem store; we give it our own instead so
//! every read goes through the `cap-std` directory of the dataset (SECURITY.md,
//! "File confinement"): no key and no symlink can leave the store.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cap_std::ambient_authority;
use cap_std::fs::Dir;

use crate::file::{open_confined, InputFile};
use crate::key::RelativeKey;
use crate::SourceError;

/// The only dot-files a Zarr store may expose (docs/PROTOCOL.md, "Path decoding").
pub const ZARR_DOT_FILES: [&str; 4] = [".zarray", ".zattrs", ".zgroup", ".zmetadata"];

/// One entry of a store folder listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name (one segment).
    pub name: String,
    /// Whether it is a folder.
    pub is_dir: bool,
}

/// A read-only map from `/`-separated keys to bytes.
pub trait KeyStore: Send + Sync + fmt::Debug {
    /// The bytes of `key`, `None` when there is no such key.
    ///
    /// # Errors
    /// When the key exists but cannot be read.
    fn get(&self, key: &str) -> io::Result<Option<Bytes>>;

    /// The entries directly under `prefix` (`""` for the root), sorted by name.
    ///
    /// # Errors
    /// When the folder cannot be listed.
    fn list_dir(&self, prefix: &str) -> io::Result<Vec<DirEntry>>;
}

/// A Zarr folder, read through a `cap-std` directory.
#[derive(Debug)]
pub struct DirStore {
    dir: Dir,
}

impl DirStore {
    /// Opens `path` as the root of the store.
    ///
    /// # Errors
    /// When the folder cannot be opened.
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            dir: Dir::open_ambient_dir(path, ambient_authority())?,
        })
    }

    /// The confined directory of the store.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }
}

impl KeyStore for DirStore {
    fn get(&self, key: &str) -> io::Result<Option<Bytes>> {
        let Ok(key) = RelativeKey::parse_allowing(key, &ZARR_DOT_FILES) else {
            return Ok(None);
        };
        match open_confined(&self.dir, &key) {
            Ok(file) => file
                .read_range(0..file.len())
                .map(Some)
                .map_err(|err| io::Error::other(err.to_string())),
            Err(SourceError::NotFound { .. }) => Ok(None),
            Err(err) => Err(io::Error::other(err.to_string())),
        }
    }

    fn list_dir(&self, prefix: &str) -> io::Result<Vec<DirEntry>> {
        let entries = if prefix.is_empty() {
            self.dir.entries()?
        } else {
            let Ok(key) = RelativeKey::parse(prefix) else {
                return Ok(Vec::new());
            };
            match self.dir.read_dir(key.as_str()) {
                Ok(entries) => entries,
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(err) => return Err(err),
            }
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_dir = entry.file_type()?.is_dir();
            out.push(DirEntry { name, is_dir });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// Where one zip member's bytes are.
#[derive(Clone, Copy, Debug)]
struct ZipMember {
    index: usize,
    start: u64,
    stored_len: u64,
    stored: bool,
}

/// A zipped Zarr store (`.zarr.zip`), opened once and read with positioned
/// reads (never mapped: a truncated archive must fail a read, not end the
/// process; see `crate::file::InputFile`).
pub struct ZipStore {
    file: Arc<InputFile>,
    len: u64,
    members: BTreeMap<String, ZipMember>,
    archive: Mutex<zip::ZipArchive<FileCursor>>,
}

impl fmt::Debug for ZipStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZipStore")
            .field("len", &self.len)
            .field("members", &self.members.len())
            .finish()
    }
}

/// `Read + Seek` over an [`InputFile`] by positioned reads, for the `zip`
/// crate (which reads the central directory and inflates members).
struct FileCursor {
    file: Arc<InputFile>,
    len: u64,
    pos: u64,
}

impl Read for FileCursor {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = usize::try_from(left).map_or(buf.len(), |left| left.min(buf.len()));
        if n == 0 {
            return Ok(0);
        }
        self.file.read_exact_at(&mut buf[..n], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for FileCursor {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(at) => Some(at),
            SeekFrom::End(delta) => self.len.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
        };
        self.pos = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

impl ZipStore {
    /// Opens the archive at `path` and indexes its central directory.
    ///
    /// # Errors
    /// When the file cannot be read or is not a valid zip archive.
    pub fn open(path: &Path) -> io::Result<Self> {
        let key = RelativeKey::trusted("store.zarr.zip");
        let file =
            Arc::new(InputFile::open(path, &key).map_err(|err| io::Error::other(err.to_string()))?);
        let len = crate::SourceFile::len(file.as_ref());
        let cursor = FileCursor {
            file: Arc::clone(&file),
            len,
            pos: 0,
        };
        let mut archive = zip::ZipArchive::new(cursor)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err.to_string()))?;
        let mut members = BTreeMap::new();
        for index in 0..archive.len() {
            let file = archive
                .by_index_raw(index)
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err.to_string()))?;
            if file.is_dir() {
                continue;
            }
            let name = file.name().trim_start_matches("./").to_owned();
            let start = file.data_start();
            let stored_len = file.compressed_size();
            if start.saturating_add(stored_len) > len || usize::try_from(stored_len).is_err() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("zip member {name:?} lies past the end of the file (truncated?)"),
                ));
            }
            let stored = file.compression() == zip::CompressionMethod::Stored;
            members.insert(
                name,
                ZipMember {
                    index,
                    start,
                    stored_len,
                    stored,
                },
            );
        }
        Ok(Self {
            file,
            len,
            members,
            archive: Mutex::new(archive),
        })
    }
}

impl KeyStore for ZipStore {
    fn get(&self, key: &str) -> io::Result<Option<Bytes>> {
        let Some(member) = self.members.get(key).copied() else {
            return Ok(None);
        };
        if member.stored {
            // The length fits a usize (checked when the archive was indexed);
            // a file that shrank since then fails here with UnexpectedEof.
            let len = usize::try_from(member.stored_len).map_err(io::Error::other)?;
            return Ok(Some(Bytes::from(self.file.read_vec_at(member.start, len)?)));
        }
        let mut archive = self
            .archive
            .lock()
            .map_err(|_| io::Error::other("zip archive lock poisoned"))?;
        let mut file = archive
            .by_index(member.index)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err.to_string()))?;
        // The member is input: inflate at most its declared size (and a
        // byte more, to notice a lie), never more than a chunk may hold.
        let declared = file.size();
        let cap = crate::budget::chunk_cap();
        if declared > cap {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "zip member {key:?} declares {}, more than the {} a member may hold",
                    crate::budget::human(declared),
                    crate::budget::human(cap)
                ),
            ));
        }
        let mut out = Vec::new();
        out.try_reserve_exact(declared as usize)
            .map_err(|err| io::Error::new(io::ErrorKind::OutOfMemory, err.to_string()))?;
        (&mut file).take(declared + 1).read_to_end(&mut out)?;
        if out.len() as u64 != declared {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "zip member {key:?} inflates to more or less than its declared {declared} bytes"
                ),
            ));
        }
        Ok(Some(Bytes::from(out)))
    }

    fn list_dir(&self, prefix: &str) -> io::Result<Vec<DirEntry>> {
        let base = if prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", prefix.trim_end_matches('/'))
        };
        let mut seen: BTreeMap<String, bool> = BTreeMap::new();
        for name in self.members.keys() {
            let Some(rest) = name.strip_prefix(&base) else {
                continue;
            };
            match rest.split_once('/') {
                Some((dir, _)) => {
                    seen.insert(dir.to_owned(), true);
                }
                None if !rest.is_empty() => {
                    seen.entry(rest.to_owned()).or_insert(false);
                }
                None => {}
            }
        }
        Ok(seen
            .into_iter()
            .map(|(name, is_dir)| DirEntry { name, is_dir })
            .collect())
    }
}
