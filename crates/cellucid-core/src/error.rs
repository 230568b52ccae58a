//! Error types of the dataset layer.

use std::io;
use std::ops::Range;
use std::path::PathBuf;

use crate::key::RelativeKey;

/// A failure to read a file of an opened dataset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// No such dataset is served by this source.
    #[error("no dataset with id {id:?}")]
    UnknownDataset {
        /// The id asked for.
        id: String,
    },
    /// The key names nothing servable: missing, not a regular file, a dot-file,
    /// or a symlink leading out of the dataset.
    #[error("no file {key} in the dataset")]
    NotFound {
        /// The key asked for.
        key: RelativeKey,
    },
    /// A read asked for bytes outside the file.
    #[error("range {}..{} is outside a file of {len} bytes", range.start, range.end)]
    RangeOutOfBounds {
        /// The range asked for.
        range: Range<u64>,
        /// The file's size.
        len: u64,
    },
    /// The file is computed from data that breaks the format it must be
    /// served in (non-finite values, an unreadable element): this file only
    /// cannot be served.
    #[error("cannot serve {key}: {reason}")]
    Unprocessable {
        /// The key asked for.
        key: RelativeKey,
        /// What is wrong with the data.
        reason: String,
    },
    /// Computing the file needs more of the memory budget than is free
    /// now (parallel requests hold it): try again shortly (503).
    #[error("cannot serve {key} now: {reason}")]
    Busy {
        /// The key asked for.
        key: RelativeKey,
        /// What the budget said.
        reason: String,
    },
    /// The file changed (was rewritten, truncated or had its timestamps
    /// reset) since it was opened, so its bytes no longer match the identity
    /// they would be sent under; asking again reads the new version
    /// (SECURITY.md, "Files that change while served").
    #[error("{key} changed while it was being read; try again")]
    Changed {
        /// The key being read.
        key: RelativeKey,
    },
    /// The dataset's input is being rewritten or cannot be read as it is now;
    /// its requests fail until a complete version is on disk.
    #[error("dataset {id:?} is unavailable: {reason}")]
    Unavailable {
        /// The dataset id.
        id: String,
        /// Why (the file is being written, or what is wrong with it).
        reason: String,
    },
    /// The operating system failed to read an existing file.
    #[error("cannot read {key}: {source}")]
    Io {
        /// The key being read.
        key: RelativeKey,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl SourceError {
    pub(crate) fn io(key: &RelativeKey, source: io::Error) -> Self {
        Self::Io {
            key: key.clone(),
            source,
        }
    }

    /// Classifies an error from opening `key`: everything that means "there is
    /// nothing servable here" (including cap-std's refusal of an escaping
    /// symlink) is [`SourceError::NotFound`]; resource exhaustion and the like
    /// stay I/O errors.
    pub(crate) fn from_open(key: &RelativeKey, err: io::Error) -> Self {
        use io::ErrorKind as K;
        let nothing_there = matches!(
            err.kind(),
            K::NotFound
                | K::PermissionDenied
                | K::NotADirectory
                | K::IsADirectory
                | K::InvalidInput
                | K::InvalidFilename
        ) || matches!(
            err.raw_os_error(),
            Some(libc::ELOOP | libc::ENXIO | libc::ENAMETOOLONG)
        );
        if nothing_there {
            Self::NotFound { key: key.clone() }
        } else {
            Self::io(key, err)
        }
    }
}

/// A failure to open an input (a path given on the command line or by an
/// embedding program) as a dataset source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The path does not exist or cannot be read.
    #[error("{path}: {source}")]
    Unreadable {
        /// The input path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The path exists but is none of the inputs cellucid serves.
    #[error("{path}: not a dataset (expected an export folder with dataset_identity.json or datasets.json, an .h5ad, .h5mu, .loom, 10x .h5, .rds or .rda/.RData file, a Zarr store, a MatrixMarket folder or a Cell Ranger outs/ folder)")]
    NotADataset {
        /// The input path.
        path: PathBuf,
    },
    /// The input is a format Cellucid recognises but never opens (h5Seurat):
    /// `reason` says how to convert it.
    #[error("{path}: {reason}")]
    Refused {
        /// The input path.
        path: PathBuf,
        /// Why, and what to do instead.
        reason: &'static str,
    },
    /// The input is recognised but this build cannot serve it yet.
    #[error("{path}: {what} inputs are not supported by this build yet")]
    Unsupported {
        /// The input path.
        path: PathBuf,
        /// What kind of input it is.
        what: &'static str,
    },
    /// A manifest of the export is not valid JSON or lacks what we need.
    #[error("{path}: invalid {file}: {reason}")]
    InvalidManifest {
        /// The folder holding the manifest.
        path: PathBuf,
        /// The manifest's file name (relative to `path`).
        file: String,
        /// What is wrong with it.
        reason: String,
    },
}
