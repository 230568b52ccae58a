//! The cache on disk: generations, the pointer to the active one, staging
//! and the cross-process lock.
//!
//! ```text
//! <cache dir>/
//!   .lock                        flock()ed by whoever changes the cache
//!   active.json                  {"version":1,"active":"gen-…","previous":"gen-…"}
//!   gen-<build>-<unique>/        one complete, verified build, never modified
//!     cellucid-web-assets.json   the inventory (downloaded, or made by a crawl)
//!     .cellucid-web-source.json  where it came from
//!     index.html, assets/…
//!   .staging-<unique>/           a generation being written
//! ```
//!
//! A generation is written whole under `.staging-*`, verified, renamed to
//! `gen-*` and only then named by `active.json`, which is replaced with an
//! atomic rename. Readers need no lock: they see the old or the new pointer,
//! and both name complete generations. The previous generation is kept as a
//! fallback; older ones are removed.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dir::CacheDir;
use crate::error::ProxyError;
use crate::inventory::{build_id_of_index, Inventory, INVENTORY_FILE};

/// The pointer file naming the active generation.
pub(crate) const POINTER_FILE: &str = "active.json";
/// The lock file.
const LOCK_FILE: &str = ".lock";
/// The control file of a generation.
pub(crate) const SOURCE_FILE: &str = ".cellucid-web-source.json";
const GENERATION_PREFIX: &str = "gen-";
const STAGING_PREFIX: &str = ".staging-";
/// How old a staging dir must be before another process removes it.
const STAGE_GRACE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// How a generation was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum GenerationKind {
    /// Downloaded from the source's `cellucid-web-assets.json`.
    Inventory,
    /// Crawled from `index.html` (the source publishes no inventory).
    Crawl,
}

/// The control file of a generation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourceRecord {
    pub(crate) version: u32,
    pub(crate) source_url: String,
    pub(crate) kind: GenerationKind,
}

/// `active.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Pointer {
    pub(crate) version: u32,
    pub(crate) active: Option<String>,
    pub(crate) previous: Option<String>,
}

/// One complete build on disk, as its control files describe it.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Its directory.
    pub dir: PathBuf,
    /// Its build inventory.
    pub inventory: Inventory,
    /// Where it was downloaded from.
    pub source_url: String,
    /// How it was obtained.
    pub kind: GenerationKind,
}

/// The hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A name no other process or thread will pick.
pub(crate) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let digest = sha256_hex(format!("{nanos}-{}-{n}", std::process::id()).as_bytes());
    digest[..12].to_owned()
}

/// The exclusive lock on a cache dir, released on drop.
#[derive(Debug)]
pub(crate) struct CacheLock {
    _file: File,
}

/// The on-disk cache of one directory.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    dir: PathBuf,
}

impl Store {
    pub(crate) fn new(dir: &CacheDir) -> Self {
        Self {
            dir: dir.path().to_path_buf(),
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory (owner-only) if needed and takes the lock,
    /// waiting for another process holding it. `waiting` is told when it
    /// has to wait.
    pub(crate) fn lock(&self, waiting: impl FnOnce()) -> Result<CacheLock, ProxyError> {
        let file = self.open_lock_file()?;
        let path = self.dir.join(LOCK_FILE);
        let got = fs4::fs_std::FileExt::try_lock_exclusive(&file)
            .map_err(|err| ProxyError::unwritable(&path, err))?;
        if !got {
            waiting();
            fs4::fs_std::FileExt::lock_exclusive(&file)
                .map_err(|err| ProxyError::unwritable(&path, err))?;
        }
        Ok(CacheLock { _file: file })
    }

    /// Creates the directory and its lock file, proving both writable.
    pub(crate) fn create_dir(&self) -> Result<(), ProxyError> {
        self.open_lock_file().map(drop)
    }

    fn open_lock_file(&self) -> Result<File, ProxyError> {
        create_private_dir(&self.dir)?;
        let path = self.dir.join(LOCK_FILE);
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|err| ProxyError::unwritable(&path, err))
    }

    /// The pointer file, or the default (nothing active) when absent.
    pub(crate) fn pointer(&self) -> Result<Pointer, ProxyError> {
        let path = self.dir.join(POINTER_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| ProxyError::Damaged {
                detail: format!("{} is not a valid pointer file: {err}", path.display()),
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Pointer::default()),
            Err(err) => Err(ProxyError::io(path, err)),
        }
    }

    /// Loads a generation's control files (no hashing).
    pub(crate) fn load(&self, name: &str) -> Result<Generation, ProxyError> {
        let damaged = |detail: String| ProxyError::Damaged { detail };
        if !name.starts_with(GENERATION_PREFIX) || name.contains('/') || name.contains("..") {
            return Err(damaged(format!(
                "the pointer names {name:?}, not a generation"
            )));
        }
        let dir = self.dir.join(name);
        let read = |file: &str| {
            let path = dir.join(file);
            fs::read(&path).map_err(|err| match err.kind() {
                std::io::ErrorKind::NotFound => damaged(format!("{} is missing", path.display())),
                _ => ProxyError::io(&path, err),
            })
        };
        let inventory = Inventory::parse(&read(INVENTORY_FILE)?)
            .map_err(|why| damaged(format!("{name}/{INVENTORY_FILE}: {why}")))?;
        let record: SourceRecord = serde_json::from_slice(&read(SOURCE_FILE)?)
            .map_err(|err| damaged(format!("{name}/{SOURCE_FILE}: {err}")))?;
        Ok(Generation {
            dir,
            inventory,
            source_url: record.source_url,
            kind: record.kind,
        })
    }

    /// The active generation, if the pointer names one that loads.
    pub(crate) fn active(&self) -> Result<Option<Generation>, ProxyError> {
        match self.pointer()?.active {
            Some(name) => self.load(&name).map(Some),
            None => Ok(None),
        }
    }

    /// Creates an empty staging directory.
    pub(crate) fn stage(&self) -> Result<PathBuf, ProxyError> {
        let path = self
            .dir
            .join(format!("{STAGING_PREFIX}{}", unique_suffix()));
        create_private_dir(&path)?;
        Ok(path)
    }

    /// Renames a verified stage to a generation, points `active.json` at it,
    /// keeps the former active one as `previous` and removes every other
    /// generation and stale stage. The caller holds the lock.
    pub(crate) fn activate(
        &self,
        stage: &Path,
        build_id: &str,
        _lock: &CacheLock,
    ) -> Result<PathBuf, ProxyError> {
        let safe_build: String = build_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(40)
            .collect();
        let name = format!("{GENERATION_PREFIX}{safe_build}-{}", unique_suffix());
        let target = self.dir.join(&name);
        fs::rename(stage, &target).map_err(|err| ProxyError::unwritable(&target, err))?;
        let old = self.pointer().unwrap_or_default();
        let pointer = Pointer {
            version: 1,
            active: Some(name.clone()),
            previous: old.active.filter(|n| *n != name),
        };
        let bytes = serde_json::to_vec(&pointer).unwrap_or_default();
        write_atomically(&self.dir, POINTER_FILE, &bytes)?;
        self.remove_unreferenced(&pointer);
        Ok(target)
    }

    /// Removes generations the pointer does not name, and old stages left by
    /// a crashed process.
    fn remove_unreferenced(&self, pointer: &Pointer) {
        let keep: BTreeSet<&str> = [pointer.active.as_deref(), pointer.previous.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // A recent stage may belong to a process that took a lock file
            // `clear` has since replaced: leave it to a later cleanup.
            let stale_stage = name.starts_with(STAGING_PREFIX)
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STAGE_GRACE);
            let owned = name.starts_with(GENERATION_PREFIX) || stale_stage;
            if owned && !keep.contains(name.as_str()) {
                if let Err(err) = remove_dir_no_follow(&entry.path()) {
                    tracing::warn!(dir = %entry.path().display(), error = %err, "could not remove an old viewer UI generation");
                }
            }
        }
    }

    /// Removes everything this cache owns (generations, stages, pointer,
    /// lock) and then the directory if it is left empty. Files it does not
    /// own are left alone. Returns whether the directory is gone.
    pub(crate) fn clear(&self) -> Result<bool, ProxyError> {
        if !self.dir.exists() {
            return Ok(true);
        }
        let lock = self.lock(|| {})?;
        let entries = fs::read_dir(&self.dir).map_err(|err| ProxyError::io(&self.dir, err))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(GENERATION_PREFIX) || name.starts_with(STAGING_PREFIX) {
                remove_dir_no_follow(&path).map_err(|err| ProxyError::unwritable(&path, err))?;
            } else if name == POINTER_FILE || name.starts_with(&format!(".{POINTER_FILE}.")) {
                fs::remove_file(&path).map_err(|err| ProxyError::unwritable(&path, err))?;
            }
        }
        let lock_path = self.dir.join(LOCK_FILE);
        let _ = fs::remove_file(&lock_path);
        drop(lock);
        Ok(fs::remove_dir(&self.dir).is_ok())
    }
}

/// Checks a generation against its inventory: no symlinks, exactly the
/// declared files (plus the two control files), each of the declared size
/// and SHA-256, and `index.html` naming the inventory's build id (for a
/// downloaded inventory). Returns the first problem.
pub(crate) fn verify(generation: &Generation) -> Result<(), ProxyError> {
    let damaged = |detail: String| ProxyError::Damaged { detail };
    let dir = &generation.dir;
    let mut expected: BTreeSet<String> = generation
        .inventory
        .assets
        .iter()
        .map(|a| a.path.clone())
        .collect();
    expected.insert(INVENTORY_FILE.to_owned());
    expected.insert(SOURCE_FILE.to_owned());
    let mut found = BTreeSet::new();
    walk(dir, "", &mut found)?;
    if let Some(extra) = found.difference(&expected).next() {
        return Err(damaged(format!(
            "{} holds an undeclared file {extra}",
            dir.display()
        )));
    }
    if let Some(missing) = expected.difference(&found).next() {
        return Err(damaged(format!("{} is missing {missing}", dir.display())));
    }
    for asset in &generation.inventory.assets {
        let path = dir.join(&asset.path);
        let bytes = fs::read(&path).map_err(|err| ProxyError::io(&path, err))?;
        if bytes.len() as u64 != asset.bytes {
            return Err(damaged(format!(
                "{} has {} bytes, the inventory says {}",
                path.display(),
                bytes.len(),
                asset.bytes
            )));
        }
        if sha256_hex(&bytes) != asset.sha256 {
            return Err(damaged(format!(
                "{} does not match its SHA-256",
                path.display()
            )));
        }
        if asset.path == "index.html" && generation.kind == GenerationKind::Inventory {
            let id = build_id_of_index(&bytes).map_err(damaged)?;
            if id != generation.inventory.build_id {
                return Err(damaged(format!(
                    "index.html names build {id:?}, the inventory {:?}",
                    generation.inventory.build_id
                )));
            }
        }
    }
    Ok(())
}

/// Collects the regular files under `dir`, refusing symlinks and oddities.
fn walk(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) -> Result<(), ProxyError> {
    let entries = fs::read_dir(dir).map_err(|err| ProxyError::io(dir, err))?;
    for entry in entries {
        let entry = entry.map_err(|err| ProxyError::io(dir, err))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = format!("{prefix}{name}");
        let kind = entry
            .file_type()
            .map_err(|err| ProxyError::io(entry.path(), err))?;
        if kind.is_dir() {
            walk(&entry.path(), &format!("{rel}/"), out)?;
        } else if kind.is_file() {
            out.insert(rel);
        } else {
            return Err(ProxyError::Damaged {
                detail: format!("{} is a symlink or a special file", entry.path().display()),
            });
        }
    }
    Ok(())
}

/// Writes `rel` under `stage`, creating parent directories.
pub(crate) fn write_file(stage: &Path, rel: &str, bytes: &[u8]) -> Result<(), ProxyError> {
    let path = stage.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|err| ProxyError::unwritable(parent, err))?;
    }
    fs::write(&path, bytes).map_err(|err| ProxyError::unwritable(&path, err))
}

/// Replaces `dir/name` atomically: write a temporary file, sync, rename.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ProxyError> {
    let tmp = dir.join(format!(".{name}.{}", unique_suffix()));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, dir.join(name))?;
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    result.map_err(|err: std::io::Error| {
        let _ = fs::remove_file(&tmp);
        ProxyError::unwritable(dir.join(name), err)
    })
}

/// Creates `path` (and parents) with owner-only permissions for the leaf.
fn create_private_dir(path: &Path) -> Result<(), ProxyError> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
    {
        Ok(()) => Ok(()),
        Err(err) => Err(ProxyError::unwritable(path, err)),
    }
}

/// Removes a directory tree without following symlinks (`remove_dir_all`
/// removes a symlink, not its target).
fn remove_dir_no_follow(path: &Path) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

impl Store {
    /// Makes `name` (the previous generation) active again, dropping the
    /// damaged one.
    pub(crate) fn roll_back(&self, name: &str) -> Result<(), ProxyError> {
        let lock = self.lock(|| {})?;
        let pointer = Pointer {
            version: 1,
            active: Some(name.to_owned()),
            previous: None,
        };
        let bytes = serde_json::to_vec(&pointer).unwrap_or_default();
        write_atomically(&self.dir, POINTER_FILE, &bytes)?;
        self.remove_unreferenced(&pointer);
        drop(lock);
        Ok(())
    }
}
