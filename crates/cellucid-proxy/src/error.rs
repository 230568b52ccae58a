//! What can go wrong with the viewer UI cache, with enough context to act on.

use std::path::PathBuf;

/// A failure of the viewer UI cache: choosing its directory, downloading a
/// build, verifying or serving it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// No cache directory could be chosen (no flag, no variable, no home).
    #[error("no cache directory for the viewer UI: none was given and $HOME and $XDG_CACHE_HOME are unset")]
    NoCacheDir,
    /// The cache directory is refused (symlink, file, not dedicated).
    #[error("web cache dir {path} is refused: {why}")]
    UnsafeCacheDir {
        /// The directory.
        path: PathBuf,
        /// Why it is refused and what to do.
        why: String,
    },
    /// The cache directory or one of its files cannot be created or written.
    #[error("cannot write the web cache dir {path}: {source}")]
    Unwritable {
        /// The file or directory that failed.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Reading the cache failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or directory that failed.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The source URL is not acceptable.
    #[error("web source URL {url:?} is refused: {why}")]
    BadSourceUrl {
        /// The URL as given.
        url: String,
        /// Why.
        why: String,
    },
    /// An HTTP request to the source failed or answered something unusable.
    #[error("fetching {url} failed: {why}")]
    Fetch {
        /// The URL requested.
        url: String,
        /// What went wrong.
        why: String,
    },
    /// The source's inventory (`cellucid-web-assets.json`) is malformed.
    #[error("the viewer UI inventory from {url} is invalid: {why}")]
    BadInventory {
        /// Where it came from.
        url: String,
        /// The first problem found.
        why: String,
    },
    /// A downloaded asset does not match the inventory.
    #[error("{path} from {url} does not match the inventory: {why}")]
    Mismatch {
        /// The asset path.
        path: String,
        /// Where it came from.
        url: String,
        /// Size or hash difference.
        why: String,
    },
    /// The crawl found more than the limits allow.
    #[error("the viewer UI at {url} is too large to crawl: {why}")]
    TooLarge {
        /// The source.
        url: String,
        /// Which limit.
        why: String,
    },
    /// The cache holds no verified generation.
    #[error("the web cache dir {path} holds no viewer UI yet")]
    Empty {
        /// The cache directory.
        path: PathBuf,
    },
    /// A cached file differs from what the inventory says.
    #[error("the cached viewer UI is damaged: {detail}")]
    Damaged {
        /// Which file and how.
        detail: String,
    },
}

impl ProxyError {
    pub(crate) fn unwritable(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Unwritable {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether the failure comes from the cache directory setting (a usage
    /// error: the user must pick another directory), as opposed to the
    /// network or the disk.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            Self::NoCacheDir | Self::UnsafeCacheDir { .. } | Self::BadSourceUrl { .. }
        )
    }
}
