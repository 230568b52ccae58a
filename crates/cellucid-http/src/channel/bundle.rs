//! Session bundles received from a viewer: written to a private temp file,
//! validated, then handed to the program that asked for them.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use cellucid_core::session::{self, BundleLimits, BundleSummary, BundleVersion};
use tempfile::{NamedTempFile, TempPath};

/// A validated session bundle in a private temp file (mode 0600, named
/// `cellucid-session-*` in the system temp dir).
///
/// The file is deleted when this value is dropped, unless it was
/// [persisted](SessionBundle::persist) or [kept](SessionBundle::keep).
#[derive(Debug)]
pub struct SessionBundle {
    path: TempPath,
    summary: BundleSummary,
}

impl SessionBundle {
    /// Where the bundle is now.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The container generation (1 for 0.9.4 viewers, 2 for 0.9.5).
    pub fn version(&self) -> BundleVersion {
        self.summary.version
    }

    /// The bundle's size in bytes.
    pub fn len(&self) -> u64 {
        self.summary.bytes
    }

    /// Whether the bundle is empty (never true for a valid bundle).
    pub fn is_empty(&self) -> bool {
        self.summary.bytes == 0
    }

    /// The manifest and chunk list.
    pub fn summary(&self) -> &BundleSummary {
        &self.summary
    }

    /// Moves the bundle to `dest` (a rename, or a copy across filesystems).
    ///
    /// # Errors
    /// The I/O error; the temp file is then still deleted on drop.
    pub fn persist(self, dest: &Path) -> io::Result<()> {
        match self.path.persist(dest) {
            Ok(()) => Ok(()),
            Err(err) => {
                let temp = err.path;
                std::fs::copy(&temp, dest)?;
                drop(temp);
                Ok(())
            }
        }
    }

    /// Keeps the temp file and returns its path; the caller deletes it.
    ///
    /// # Errors
    /// The I/O error if the file cannot be kept.
    pub fn keep(self) -> io::Result<PathBuf> {
        self.path.keep().map_err(|err| err.error)
    }
}

/// The longest magic (v2).
const MAGIC_PREFIX: usize = 19;

/// A bundle being written to its temp file.
pub(crate) struct BundleWriter {
    file: NamedTempFile,
    written: u64,
    cap: u64,
    /// The first bytes, to check the magic as it arrives.
    head: Vec<u8>,
}

/// Why an upload failed while it was being written or checked.
#[derive(Debug)]
pub(crate) enum UploadError {
    /// More than the cap arrived.
    TooLarge(u64),
    /// The bytes are not a valid bundle.
    Invalid(String),
    /// The temp file could not be written.
    Io(io::Error),
}

impl BundleWriter {
    /// Creates the private temp file.
    pub(crate) fn create(cap: u64, dir: Option<&Path>) -> Result<Self, UploadError> {
        let mut builder = tempfile::Builder::new();
        builder
            .prefix("cellucid-session-")
            .suffix(".cellucid-session");
        // tempfile creates files with mode 0600 on Unix.
        let file = match dir {
            Some(dir) => builder.tempfile_in(dir),
            None => builder.tempfile(),
        }
        .map_err(UploadError::Io)?;
        Ok(Self {
            file,
            written: 0,
            cap,
            head: Vec::with_capacity(MAGIC_PREFIX),
        })
    }

    /// Appends `bytes`, refusing them when the cap would be passed, and
    /// refusing a wrong magic as soon as its bytes are in.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), UploadError> {
        self.written += bytes.len() as u64;
        if self.written > self.cap {
            return Err(UploadError::TooLarge(self.cap));
        }
        if self.head.len() < MAGIC_PREFIX {
            // Check the magic early so garbage is refused before it is stored.
            let take = (MAGIC_PREFIX - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            let have = self.head.len();
            let v1 = session::MAGIC_V1;
            let v2 = session::MAGIC_V2;
            let fits_v1 = self.head[..have.min(v1.len())] == v1[..have.min(v1.len())];
            let fits_v2 = self.head[..] == v2[..have];
            if !fits_v1 && !fits_v2 {
                return Err(UploadError::Invalid(
                    "not a Cellucid session bundle: it starts with neither CELLUCID_SESSION\\n (format 1) nor CELLUCID_SESSION/2\\n (format 2)".into(),
                ));
            }
        }
        self.file.write_all(bytes).map_err(UploadError::Io)
    }

    /// Flushes, validates the whole file, and hands back the bundle.
    pub(crate) fn finish(mut self, limits: BundleLimits) -> Result<SessionBundle, UploadError> {
        self.file.flush().map_err(UploadError::Io)?;
        let path = self.file.into_temp_path();
        match session::validate_bundle_file(&path, limits) {
            Ok(summary) => Ok(SessionBundle { path, summary }),
            Err(session::BundleError::Invalid(message)) => Err(UploadError::Invalid(message)),
            Err(session::BundleError::Io(err)) => Err(UploadError::Io(err)),
            Err(other) => Err(UploadError::Invalid(other.to_string())),
        }
    }
}
