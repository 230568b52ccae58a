//! Downloading a UI build into a new, verified generation.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::crawl;
use crate::dir::CacheDir;
use crate::error::ProxyError;
use crate::fetch::{FetchFailure, FetchOptions, Fetcher};
use crate::inventory::{build_id_of_index, media_type, Asset, Inventory, INVENTORY_FILE};
use crate::source::SourceUrl;
use crate::store::{
    self, sha256_hex, write_file, CacheLock, Generation, GenerationKind, SourceRecord, Store,
    SOURCE_FILE,
};

/// The largest inventory accepted.
const MAX_INVENTORY_BYTES: u64 = 4 * 1024 * 1024;

/// Told how a download goes (the CLI draws a progress bar with it).
pub trait Progress: Sync {
    /// The download starts: `files` files, `bytes` bytes in all.
    fn start(&self, files: u64, bytes: u64);
    /// `bytes` more bytes are in: a piece of a download, or a whole file
    /// reused from the previous generation.
    fn received(&self, bytes: u64) {
        let _ = bytes;
    }
    /// One more file is done (downloaded or reused), of `bytes` bytes.
    fn file_done(&self, path: &str, bytes: u64);
    /// Another process is updating the same cache; waiting for it.
    fn waiting_for_lock(&self) {}
}

/// A [`Progress`] that reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _files: u64, _bytes: u64) {}
    fn file_done(&self, _path: &str, _bytes: u64) {}
}

/// What a prefetch did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrefetchOutcome {
    /// The build now active.
    pub build_id: String,
    /// How it was obtained.
    pub kind: GenerationKind,
    /// False when the active generation already was this build (nothing done).
    pub changed: bool,
    /// Files downloaded.
    pub downloaded_files: u64,
    /// Bytes downloaded.
    pub downloaded_bytes: u64,
    /// Files copied from the previous generation instead of downloaded.
    pub reused_files: u64,
    /// Files in the build.
    pub total_files: u64,
}

/// Makes the source's current build the active generation of `cache`.
///
/// Without `force`, nothing is downloaded when the active generation already
/// holds the same build and verifies. Unchanged files are copied from the
/// active generation (after re-hashing) rather than downloaded again.
///
/// # Errors
/// Network, inventory, mismatch and disk failures; the active generation is
/// left as it was.
pub fn prefetch(
    cache: &CacheDir,
    source: &SourceUrl,
    options: &FetchOptions,
    force: bool,
    progress: &dyn Progress,
) -> Result<PrefetchOutcome, ProxyError> {
    let fetcher = Fetcher::new(source.clone(), options);
    let store = Store::new(cache);
    let inventory_url = source.join(INVENTORY_FILE);
    match fetcher.get(&inventory_url, MAX_INVENTORY_BYTES, &|_| {}) {
        Ok(fetched) => {
            if let Some(kind) = &fetched.content_type {
                if media_type(kind) != "application/json" {
                    return Err(ProxyError::BadInventory {
                        url: inventory_url,
                        why: format!("it is served as {kind:?}, not application/json"),
                    });
                }
            }
            let inventory =
                Inventory::parse(&fetched.body).map_err(|why| ProxyError::BadInventory {
                    url: inventory_url.clone(),
                    why,
                })?;
            let lock = store.lock(|| progress.waiting_for_lock())?;
            if !force {
                if let Some(outcome) = already_active(&store, &inventory, source)? {
                    return Ok(outcome);
                }
            }
            from_inventory(
                &store, &fetcher, &inventory, options, force, progress, &lock,
            )
        }
        Err(FetchFailure::Missing) => {
            tracing::info!(source = %source, "the source publishes no inventory; crawling from index.html");
            let lock = store.lock(|| progress.waiting_for_lock())?;
            from_crawl(&store, &fetcher, force, progress, &lock)
        }
        Err(FetchFailure::Failed(err)) => Err(err),
    }
}

fn from_crawl(
    store: &Store,
    fetcher: &Fetcher,
    force: bool,
    progress: &dyn Progress,
    lock: &CacheLock,
) -> Result<PrefetchOutcome, ProxyError> {
    let source = fetcher.source();
    let stage = store.stage()?;
    let result = (|| {
        let (inventory, files, bytes) = crawl::crawl(fetcher, &stage, progress)?;
        if !force {
            if let Some(unchanged) = already_active(store, &inventory, source)? {
                return Ok(unchanged);
            }
        }
        let outcome = finish(
            store,
            &stage,
            &inventory,
            source,
            GenerationKind::Crawl,
            lock,
        )?;
        Ok(PrefetchOutcome {
            downloaded_files: files,
            downloaded_bytes: bytes,
            ..outcome
        })
    })();
    // Gone already when it became a generation.
    let _ = std::fs::remove_dir_all(&stage);
    result
}

/// The outcome "nothing to do" when the active generation is this build and
/// still verifies.
fn already_active(
    store: &Store,
    inventory: &Inventory,
    source: &SourceUrl,
) -> Result<Option<PrefetchOutcome>, ProxyError> {
    let Ok(Some(active)) = store.active() else {
        return Ok(None);
    };
    if active.inventory.assets != inventory.assets || active.source_url != source.as_str() {
        return Ok(None);
    }
    if let Err(err) = store::verify(&active) {
        tracing::warn!(error = %err, "the active viewer UI generation is damaged; downloading it again");
        return Ok(None);
    }
    Ok(Some(PrefetchOutcome {
        build_id: active.inventory.build_id.clone(),
        kind: active.kind,
        changed: false,
        downloaded_files: 0,
        downloaded_bytes: 0,
        reused_files: 0,
        total_files: active.inventory.assets.len() as u64,
    }))
}

fn from_inventory(
    store: &Store,
    fetcher: &Fetcher,
    inventory: &Inventory,
    options: &FetchOptions,
    force: bool,
    progress: &dyn Progress,
    lock: &CacheLock,
) -> Result<PrefetchOutcome, ProxyError> {
    let stage = store.stage()?;
    let result = (|| {
        progress.start(inventory.assets.len() as u64, inventory.total_bytes());
        // --force downloads everything again; otherwise unchanged files are
        // copied (after re-hashing) from the active generation.
        let previous = if force {
            None
        } else {
            store.active().ok().flatten()
        };
        let counts = download_all(
            fetcher,
            inventory,
            previous.as_ref(),
            &stage,
            options,
            progress,
        )?;
        let outcome = finish(
            store,
            &stage,
            inventory,
            fetcher.source(),
            GenerationKind::Inventory,
            lock,
        )?;
        Ok(PrefetchOutcome {
            downloaded_files: counts.files,
            downloaded_bytes: counts.bytes,
            reused_files: counts.reused,
            ..outcome
        })
    })();
    // Gone already when it became a generation.
    let _ = std::fs::remove_dir_all(&stage);
    result
}

#[derive(Debug, Default)]
struct Counts {
    files: u64,
    bytes: u64,
    reused: u64,
}

/// Downloads (or reuses) every asset into `stage` with at most
/// `options.parallelism` requests at once; stops at the first failure.
fn download_all(
    fetcher: &Fetcher,
    inventory: &Inventory,
    previous: Option<&Generation>,
    stage: &Path,
    options: &FetchOptions,
    progress: &dyn Progress,
) -> Result<Counts, ProxyError> {
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<ProxyError>> = Mutex::new(None);
    let counts = Mutex::new(Counts::default());
    let workers = options.parallelism.clamp(1, 16).min(inventory.assets.len());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                if failed.lock().map(|f| f.is_some()).unwrap_or(true) {
                    return;
                }
                let Some(asset) = inventory.assets.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return;
                };
                match fetch_one(fetcher, asset, previous, stage, progress) {
                    Ok(reused) => {
                        if let Ok(mut c) = counts.lock() {
                            if reused {
                                c.reused += 1;
                            } else {
                                c.files += 1;
                                c.bytes += asset.bytes;
                            }
                        }
                        progress.file_done(&asset.path, asset.bytes);
                    }
                    Err(err) => {
                        if let Ok(mut slot) = failed.lock() {
                            slot.get_or_insert(err);
                        }
                        return;
                    }
                }
            });
        }
    });
    if let Some(err) = failed.into_inner().ok().flatten() {
        return Err(err);
    }
    Ok(counts.into_inner().unwrap_or_default())
}

/// Puts one verified asset into `stage`; true when it was reused from the
/// previous generation.
fn fetch_one(
    fetcher: &Fetcher,
    asset: &Asset,
    previous: Option<&Generation>,
    stage: &Path,
    progress: &dyn Progress,
) -> Result<bool, ProxyError> {
    if let Some(old) = previous.and_then(|g| g.inventory.get(&asset.path).map(|a| (g, a))) {
        let (generation, old_asset) = old;
        if old_asset.sha256 == asset.sha256 {
            if let Ok(bytes) = std::fs::read(generation.dir.join(&asset.path)) {
                if bytes.len() as u64 == asset.bytes && sha256_hex(&bytes) == asset.sha256 {
                    write_file(stage, &asset.path, &bytes)?;
                    progress.received(asset.bytes);
                    return Ok(true);
                }
            }
        }
    }
    let url = fetcher.source().join(&asset.path);
    let mismatch = |why: String| ProxyError::Mismatch {
        path: asset.path.clone(),
        url: url.clone(),
        why,
    };
    let fetched = match fetcher.get(&url, asset.bytes, &|n| progress.received(n)) {
        Ok(fetched) => fetched,
        Err(FetchFailure::Missing) => {
            return Err(ProxyError::Fetch {
                url: url.clone(),
                why: "the source lists this file but answers 404".to_owned(),
            })
        }
        Err(FetchFailure::Failed(err)) => return Err(err),
    };
    if fetched.body.len() as u64 != asset.bytes {
        return Err(mismatch(format!(
            "{} bytes received, {} declared",
            fetched.body.len(),
            asset.bytes
        )));
    }
    let digest = sha256_hex(&fetched.body);
    if digest != asset.sha256 {
        return Err(mismatch(format!(
            "SHA-256 {digest}, declared {}",
            asset.sha256
        )));
    }
    if let Some(kind) = &fetched.content_type {
        if media_type(kind) != media_type(&asset.content_type) {
            return Err(mismatch(format!(
                "served as {kind:?}, declared {:?}",
                asset.content_type
            )));
        }
    }
    write_file(stage, &asset.path, &fetched.body)?;
    Ok(false)
}

/// Writes the control files, verifies the stage as a whole and activates it.
fn finish(
    store: &Store,
    stage: &Path,
    inventory: &Inventory,
    source: &SourceUrl,
    kind: GenerationKind,
    lock: &CacheLock,
) -> Result<PrefetchOutcome, ProxyError> {
    write_file(stage, INVENTORY_FILE, &inventory.to_json())?;
    let record = SourceRecord {
        version: 1,
        source_url: source.as_str().to_owned(),
        kind,
    };
    write_file(
        stage,
        SOURCE_FILE,
        &serde_json::to_vec(&record).unwrap_or_default(),
    )?;
    let generation = Generation {
        dir: stage.to_path_buf(),
        inventory: inventory.clone(),
        source_url: source.as_str().to_owned(),
        kind,
    };
    if kind == GenerationKind::Inventory {
        let index =
            std::fs::read(stage.join("index.html")).map_err(|err| ProxyError::io(stage, err))?;
        let id = build_id_of_index(&index).map_err(|why| ProxyError::BadInventory {
            url: source.join("index.html"),
            why,
        })?;
        if id != inventory.build_id {
            return Err(ProxyError::BadInventory {
                url: source.join(INVENTORY_FILE),
                why: format!(
                    "index.html is build {id:?} but the inventory says {:?}",
                    inventory.build_id
                ),
            });
        }
    }
    store::verify(&generation)?;
    store.activate(stage, &inventory.build_id, lock)?;
    Ok(PrefetchOutcome {
        build_id: inventory.build_id.clone(),
        kind,
        changed: true,
        downloaded_files: 0,
        downloaded_bytes: 0,
        reused_files: 0,
        total_files: inventory.assets.len() as u64,
    })
}

/// Builds the crawl's inventory entry for one file.
pub(crate) fn crawl_asset(path: &str, bytes: &[u8], content_type: String) -> Asset {
    Asset {
        path: path.to_owned(),
        sha256: sha256_hex(bytes),
        bytes: bytes.len() as u64,
        content_type,
    }
}

/// The crawl's collected files, keyed by path.
pub(crate) type Found = BTreeMap<String, Asset>;
