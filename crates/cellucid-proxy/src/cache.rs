//! [`WebCache`]: the operations of `cellucid cache …` on one cache directory.

use crate::dir::CacheDir;
use crate::error::ProxyError;
use crate::fetch::FetchOptions;
use crate::prefetch::{self, PrefetchOutcome, Progress};
use crate::source::SourceUrl;
use crate::store::{self, Generation, Store};

/// One viewer UI cache directory.
#[derive(Debug, Clone)]
pub struct WebCache {
    dir: CacheDir,
    store: Store,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// The build checked.
    pub build_id: String,
    /// Where it came from.
    pub source_url: String,
    /// Files re-hashed.
    pub files: u64,
    /// Bytes re-hashed.
    pub bytes: u64,
}

impl WebCache {
    /// The cache in `dir` (nothing is created until it is written).
    pub fn new(dir: CacheDir) -> Self {
        let store = Store::new(&dir);
        Self { dir, store }
    }

    /// The directory and why it was chosen.
    pub fn dir(&self) -> &CacheDir {
        &self.dir
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Downloads the source's current build (see [`prefetch::prefetch`]).
    ///
    /// # Errors
    /// See [`prefetch::prefetch`].
    pub fn prefetch(
        &self,
        source: &SourceUrl,
        options: &FetchOptions,
        force: bool,
        progress: &dyn Progress,
    ) -> Result<PrefetchOutcome, ProxyError> {
        prefetch::prefetch(&self.dir, source, options, force, progress)
    }

    /// Creates the directory if needed and checks that the cache can be
    /// written to (its lock file is created, not locked), so that a server
    /// reports an unusable directory at startup rather than from a
    /// background download.
    ///
    /// # Errors
    /// [`ProxyError::Unwritable`].
    pub fn create_dir(&self) -> Result<(), ProxyError> {
        self.store.create_dir()
    }

    /// Re-hashes every file of the active generation.
    ///
    /// # Errors
    /// [`ProxyError::Empty`] when there is none, [`ProxyError::Damaged`]
    /// naming the first damaged file.
    pub fn verify(&self) -> Result<VerifyReport, ProxyError> {
        let generation = self.store.active()?.ok_or_else(|| ProxyError::Empty {
            path: self.dir.path().to_path_buf(),
        })?;
        store::verify(&generation)?;
        Ok(VerifyReport {
            build_id: generation.inventory.build_id.clone(),
            source_url: generation.source_url.clone(),
            files: generation.inventory.assets.len() as u64,
            bytes: generation.inventory.total_bytes(),
        })
    }

    /// The active generation, without hashing.
    ///
    /// # Errors
    /// When the pointer or the generation's control files are damaged.
    pub fn active(&self) -> Result<Option<Generation>, ProxyError> {
        self.store.active()
    }

    /// The generation to serve at startup: the active one if it verifies,
    /// else the previous one (which then becomes active again). `None`
    /// when neither is usable.
    pub fn usable_generation(&self) -> Option<Generation> {
        let pointer = self.store.pointer().ok()?;
        for (rank, name) in [pointer.active.as_ref(), pointer.previous.as_ref()]
            .into_iter()
            .flatten()
            .enumerate()
        {
            let checked = self
                .store
                .load(name)
                .and_then(|g| store::verify(&g).map(|()| g));
            match checked {
                Ok(generation) => {
                    if rank > 0 {
                        tracing::warn!(build = %generation.inventory.build_id, "the active viewer UI generation is damaged; falling back to the previous one");
                        if let Err(err) = self.store.roll_back(name) {
                            tracing::warn!(error = %err, "could not make the previous generation active");
                        }
                    }
                    return Some(generation);
                }
                Err(err) => {
                    tracing::warn!(generation = %name, error = %err, "viewer UI generation not usable");
                }
            }
        }
        None
    }

    /// Deletes what the cache owns in its directory, then the directory if
    /// it is empty. Returns whether the directory is gone.
    ///
    /// # Errors
    /// When a file cannot be removed.
    pub fn clear(&self) -> Result<bool, ProxyError> {
        self.store.clear()
    }
}
