//! An AnnData store as a [`DatasetSource`]: synthesised 0.9.4 folder files
//! for folder viewers, and the raw store for byte viewers.
//!
//! The input may change while it is served (a notebook's `write_h5ad` to
//! the same path, a replacement by rename): every request compares the
//! path's identity with the version it opened, and a changed input is opened
//! again once its writer is done, readers switching to the new version at
//! once (SECURITY.md, "Files that change while served").

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::column::{Column, ColumnFile};
use super::csr_index::{self, default_cache_dir, CsrIndex};
use super::options::AnnDataOptions;
use super::raw::RawStore;
use super::synth::{self, Hinted, PayloadError, Plan, PlanError, SynthKey};
use super::MatrixLayout;
use super::{AnnData, AnnDataError};
use crate::cache::ByteLru;
use crate::error::SourceError;
use crate::file::{FileIdentity, MemoryFile, SourceFile};
use crate::key::RelativeKey;
use crate::source::{DatasetInfo, DatasetSource, SourceFormat};

/// Decoded payloads kept in memory: enough for a few hundred gene columns
/// of a 200k-cell dataset, small enough to keep resident memory flat.
const PAYLOAD_CACHE_BYTES: usize = 40 * 1024 * 1024;

/// How long a changed input must stay unchanged before it is opened again:
/// a writer that has not touched the file for this long is taken to be done
/// (h5py and zarr write a file in one go; the 0.9.x servers simply kept the
/// old handle).
const SETTLE: Duration = Duration::from_secs(1);

/// The synthesised side, shared with the background thread that builds it.
#[derive(Debug)]
struct Synth {
    adata: Arc<AnnData>,
    options: AnnDataOptions,
    /// The serving choices, resolved when the version was opened.
    choices: synth::Choices,
    plan: OnceLock<Result<Plan, Arc<AnnDataError>>>,
    cache: ByteLru<String, Arc<dyn SourceFile>>,
    generation: String,
    /// The CSR gene index, once built or loaded (`None` inside: failed).
    csr: OnceLock<Option<CsrIndex>>,
}

impl Synth {
    fn plan(&self, id: &str, name: &str) -> Result<&Plan, PlanError> {
        if let Some(done) = self.plan.get() {
            return done
                .as_ref()
                .map_err(|err| PlanError::Build(Arc::clone(err)));
        }
        match Plan::build_with(&self.adata, &self.options, &self.choices, id, name) {
            // A busy memory budget is a moment's state, not a verdict on the
            // store: not kept, so a later request builds the plan again.
            Err(err) if err.is_busy() => Err(PlanError::Build(Arc::new(err))),
            built => self
                .plan
                .get_or_init(|| built.map_err(Arc::new))
                .as_ref()
                .map_err(|err| PlanError::Build(Arc::clone(err))),
        }
    }
}

/// How an input is read as an AnnData, and which raw store the byte route
/// serves for it: the store itself ([`WholeStore`]), or a part of a larger
/// one (`crate::formats`: a MuData modality, a Loom file's cells).
pub(crate) trait StoreReader: Send + Sync + std::fmt::Debug {
    /// Reads the AnnData (metadata only) and the raw store, its launch
    /// defaults set.
    ///
    /// # Errors
    /// When the input is no such store.
    fn read(
        &self,
        path: &Path,
        options: &AnnDataOptions,
    ) -> Result<(AnnData, RawStore), AnnDataError>;

    /// The part of the input read (`mod/rna`), empty for the whole store:
    /// it keeps the gene indexes of parts of one file apart.
    fn part(&self) -> &str {
        ""
    }
}

/// An AnnData store read whole.
#[derive(Debug)]
pub(crate) struct WholeStore;

impl StoreReader for WholeStore {
    fn read(
        &self,
        path: &Path,
        options: &AnnDataOptions,
    ) -> Result<(AnnData, RawStore), AnnDataError> {
        let adata = AnnData::open(path)?;
        let mut raw = RawStore::new(path, adata.kind()).map_err(|err| AnnDataError::Open {
            path: path.to_owned(),
            what: "a raw store",
            reason: err.to_string(),
        })?;
        raw.set_defaults(options.launch_defaults());
        Ok((adata, raw))
    }
}

/// One opened version of the input: everything read from it, tagged with
/// the identity the path had just before it was opened.
#[derive(Debug)]
struct Version {
    adata: Arc<AnnData>,
    raw: Arc<RawStore>,
    quick_notes: Vec<String>,
    synth: Arc<Synth>,
    n_genes: u64,
    /// `generation(path)` taken before the open: if the file changed during
    /// the open, the next request sees a different generation and opens it
    /// again, so a version is never newer than its tag.
    generation: String,
    /// 0 for the version opened at startup, then one more per re-open.
    number: u64,
}

impl Version {
    fn open(
        path: &Path,
        reader: &dyn StoreReader,
        options: &AnnDataOptions,
        number: u64,
    ) -> Result<Self, AnnDataError> {
        let generation = generation(path);
        let (adata, raw) = reader.read(path, options)?;
        let adata = Arc::new(adata);
        // A choice naming an absent key fails here, with the keys there are.
        let available = |err| super::launch::with_available(&adata, err);
        let n_genes = expression_genes(&adata, options).map_err(available)?;
        let (quick_notes, choices) = synth::validate(&adata, options).map_err(available)?;
        super::launch::check(&adata, options)?;
        // The gene index of a part of a larger file (a MuData modality) is
        // kept apart from the other parts'.
        let mut synth_generation = generation.clone();
        if !reader.part().is_empty() {
            synth_generation.push('#');
            synth_generation.push_str(reader.part());
        }
        let synth = Arc::new(Synth {
            adata: Arc::clone(&adata),
            options: options.clone(),
            choices,
            plan: OnceLock::new(),
            cache: ByteLru::new(PAYLOAD_CACHE_BYTES),
            generation: synth_generation,
            csr: OnceLock::new(),
        });
        Ok(Self {
            adata,
            raw: Arc::new(raw),
            quick_notes,
            synth,
            n_genes,
            generation,
            number,
        })
    }

    /// Builds the synthesised manifests (and the CSR gene index) of this
    /// version on a background thread.
    fn prepare_in_background(&self, id: String, name: String) {
        let synth = Arc::clone(&self.synth);
        let spawned = std::thread::Builder::new()
            .name(format!("cellucid-prepare-{id}"))
            .spawn(move || {
                let started = std::time::Instant::now();
                match synth.plan(&id, &name) {
                    Ok(plan) => {
                        tracing::info!(
                            dataset = %id,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "folder-viewer files ready: {}",
                            plan.notes().join("; ")
                        );
                        if let Some(m) = plan.expression().filter(|m| m.layout == MatrixLayout::Csr) {
                            let dir = synth.options.cache_dir.clone().unwrap_or_else(default_cache_dir);
                            // Serves as soon as it is built; saved to disk afterwards.
                            let progress = synth.options.index_progress.as_ref().map(|hook| &*hook.0);
                            let built = CsrIndex::load_or_build_then_save(synth.adata.backend(), m, &dir, &synth.generation, progress, |index| {
                                let _ = synth.csr.set(Some(index));
                            });
                            if let Err(err) = built {
                                tracing::warn!(dataset = %id, error = %err, "no CSR gene index: each gene scans the matrix");
                                let _ = synth.csr.set(None);
                            }
                        }
                    }
                    Err(err) => {
                        tracing::warn!(dataset = %id, "folder-viewer files unavailable: {err}");
                    }
                }
            });
        if let Err(err) = spawned {
            tracing::warn!(error = %err, "cannot start the background preparation; it runs on first request");
        }
    }
}

/// One AnnData input served to both viewer generations.
#[derive(Debug)]
pub struct AnnDataSource {
    path: PathBuf,
    /// The id and name chosen at startup (they never change: they are the
    /// dataset's URL), with the counts of the first version.
    info: [DatasetInfo; 1],
    options: AnnDataOptions,
    /// How the input is read (again, when it changes).
    reader: Arc<dyn StoreReader>,
    id_origin: &'static str,
    /// The version readers use; replaced whole when the input is re-opened.
    current: RwLock<Arc<Version>>,
    /// Held while re-opening (one re-open at a time); remembers the
    /// generation that last failed to open and why, so a broken file is not
    /// parsed again on every request.
    reopen: Mutex<Option<(String, String)>>,
    /// Whether background preparation was asked for (re-opened versions
    /// are prepared too).
    prepare: AtomicBool,
}

impl AnnDataSource {
    /// Opens `path` (metadata only) and decides its id and name: the options,
    /// else `uns['cellucid']`, else the file name.
    ///
    /// # Errors
    /// When the store cannot be opened or an option names something absent.
    pub fn open(path: &Path, options: AnnDataOptions) -> Result<Self, AnnDataError> {
        Self::open_with(path, Arc::new(WholeStore), options)
    }

    /// Opens `path` with `reader`: the store itself, or a part of a larger
    /// one (a MuData modality, a Loom file's cells: `crate::formats`).
    ///
    /// # Errors
    /// When the part cannot be read or an option names something absent.
    pub(crate) fn open_with(
        path: &Path,
        reader: Arc<dyn StoreReader>,
        options: AnnDataOptions,
    ) -> Result<Self, AnnDataError> {
        let version = Version::open(path, reader.as_ref(), &options, 0)?;
        let stem = file_stem(path);
        let uns = version.adata.uns_cellucid();
        let uns_text = |k: &str| {
            uns.get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let (id, id_origin) = match (&options.dataset_id, uns_text("id")) {
            (Some(id), _) => (sanitize_id(id), "--dataset-id"),
            (None, Some(id)) => (sanitize_id(&id), "uns['cellucid']['id']"),
            (None, None) => (sanitize_id(&stem), "the file name"),
        };
        let name = options
            .dataset_name
            .clone()
            .or_else(|| uns_text("name"))
            .unwrap_or(stem);
        let info = DatasetInfo {
            id,
            name,
            description: None,
            n_cells: version.adata.n_obs(),
            n_genes: version.n_genes,
            catalog_path: None,
        };
        Ok(Self {
            path: path.to_owned(),
            info: [info],
            options,
            reader,
            id_origin,
            current: RwLock::new(Arc::new(version)),
            reopen: Mutex::new(None),
            prepare: AtomicBool::new(false),
        })
    }

    /// Builds the synthesised manifests on a background thread, so the
    /// server answers at once; a request that needs them waits for it.
    /// Prints the serving choices when done. Versions opened later (the
    /// input changed) are prepared the same way.
    pub fn prepare_in_background(&self) {
        self.prepare.store(true, Ordering::Relaxed);
        let (id, name) = (self.info[0].id.clone(), self.info[0].name.clone());
        self.loaded().prepare_in_background(id, name);
    }

    /// The version opened last, without looking at the input.
    fn loaded(&self) -> Arc<Version> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The version to answer from: the one opened last while the input is
    /// unchanged, else the input opened again (blocking: reads metadata).
    ///
    /// # Errors
    /// [`SourceError::Unavailable`] while the input is being written (it
    /// changed less than [`SETTLE`] ago), is gone, or cannot be opened as it
    /// is now.
    fn version(&self) -> Result<Arc<Version>, SourceError> {
        let version = self.loaded();
        if generation(&self.path) == version.generation {
            return Ok(version);
        }
        self.reopen()
    }

    fn reopen(&self) -> Result<Arc<Version>, SourceError> {
        let unavailable = |reason: String| SourceError::Unavailable {
            id: self.info[0].id.clone(),
            reason,
        };
        let mut failed = self.reopen.lock().unwrap_or_else(PoisonError::into_inner);
        // Another request may have re-opened it while this one waited.
        let version = self.loaded();
        let now = generation(&self.path);
        if now == version.generation {
            return Ok(version);
        }
        if let Some((generation, why)) = failed.as_ref() {
            if *generation == now {
                return Err(unavailable(why.clone()));
            }
        }
        match last_change(&self.path) {
            None => return Err(unavailable("its input file is gone".into())),
            Some(at) if at.elapsed().map_or(true, |age| age < SETTLE) => {
                return Err(unavailable(
                    "its input file is being written; it is opened again when the writer is done"
                        .into(),
                ))
            }
            Some(_) => {}
        }
        let opened = Version::open(
            &self.path,
            self.reader.as_ref(),
            &self.options,
            version.number + 1,
        );
        match opened {
            Ok(new) => {
                let new = Arc::new(new);
                tracing::info!(
                    dataset = %self.info[0].id,
                    path = %self.path.display(),
                    cells = new.adata.n_obs(),
                    "the input changed on disk; serving its new version"
                );
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&new);
                *failed = None;
                if self.prepare.load(Ordering::Relaxed) {
                    new.prepare_in_background(self.info[0].id.clone(), self.info[0].name.clone());
                }
                Ok(new)
            }
            Err(err) => {
                let why =
                    format!("its input changed on disk and cannot be opened as it is now: {err}");
                tracing::warn!(dataset = %self.info[0].id, "{why}");
                *failed = Some((now, why.clone()));
                Err(unavailable(why))
            }
        }
    }

    /// The synthesis plan of the current version (built now if it was not
    /// yet); `Err` says why folder viewers cannot be served from this store.
    ///
    /// # Errors
    /// Why folder viewers cannot be served, or that the input is unavailable.
    pub fn plan_notes(&self) -> Result<Vec<String>, PlanError> {
        let version = self.version()?;
        let plan = version.synth.plan(&self.info[0].id, &self.info[0].name)?;
        Ok(plan.notes().to_vec())
    }

    /// The opened store (the current version).
    pub fn anndata(&self) -> Arc<AnnData> {
        Arc::clone(&self.loaded().adata)
    }

    /// The launch options.
    pub fn options(&self) -> &AnnDataOptions {
        &self.options
    }

    /// Where the id came from (`--dataset-id`, `uns['cellucid']['id']`, the
    /// file name).
    pub fn id_origin(&self) -> &'static str {
        self.id_origin
    }

    /// Renames the dataset (to resolve an id clash before serving).
    pub fn set_id(&mut self, id: String) {
        self.info[0].id = id;
    }

    /// Lines describing the serving choices (embeddings, latent space,
    /// graph, gene index), for the startup block and `cellucid inspect`.
    pub fn serving_notes(&self) -> Vec<String> {
        let version = self.loaded();
        let mut notes = version.quick_notes.clone();
        let csr = version
            .synth
            .choices
            .expression()
            .is_some_and(|m| m.layout == MatrixLayout::Csr);
        if csr {
            let dir = self
                .options
                .cache_dir
                .clone()
                .unwrap_or_else(default_cache_dir);
            notes.push(format!(
                "gene index    X is CSR: a one-time gene index (about the size of X) is built in the background into {}",
                dir.display()
            ));
        }
        notes
    }

    /// The raw store (of the current version).
    pub fn raw(&self) -> Arc<RawStore> {
        Arc::clone(&self.loaded().raw)
    }

    /// Opens `key` from `version`.
    fn open_in(
        &self,
        version: &Version,
        key: &RelativeKey,
    ) -> Result<Arc<dyn SourceFile>, SourceError> {
        let (id, name) = (&self.info[0].id, &self.info[0].name);
        let unprocessable = |reason: String| SourceError::Unprocessable {
            key: key.clone(),
            reason,
        };
        let synth = &version.synth;
        let k = key.as_str();
        if let Some(file) = synth.cache.get(k) {
            return Ok(file);
        }
        let plan = synth.plan(id, name).map_err(|why| {
            if generation(&self.path) != version.generation {
                SourceError::Changed { key: key.clone() }
            } else if matches!(&why, PlanError::Build(err) if err.is_busy()) {
                // Other requests hold the memory budget: try again (503).
                SourceError::Busy {
                    key: key.clone(),
                    reason: why.to_string(),
                }
            } else {
                unprocessable(why.to_string())
            }
        })?;
        let file_key = SynthKey::parse(k);
        let manifest = match file_key {
            Some(SynthKey::Manifest(m)) => plan.manifest(m),
            _ => None,
        };
        if let (Some(bytes), Some(file_key)) = (manifest, file_key) {
            // Tagged by content, hashed once: kept like any computed file.
            let digest = Sha256::digest(&bytes);
            let hex = hex::encode(&digest[..16]);
            let weight = bytes.len();
            let file: Arc<dyn SourceFile> = Arc::new(Hinted::new(
                MemoryFile::new(bytes, FileIdentity::Digest(hex)),
                file_key,
            ));
            synth.cache.insert(k.to_owned(), Arc::clone(&file), weight);
            return Ok(file);
        }
        let identity = FileIdentity::Digest(payload_tag(&synth.generation, k));
        let computed: Result<(Arc<dyn SourceFile>, usize), PayloadError> = match file_key {
            Some(file_key @ SynthKey::Gene(g)) if plan.has_gene(g) => gene_column(version, plan, g)
                .map(|column| {
                    let weight = column.footprint();
                    let file = Hinted::new(ColumnFile::new(column, identity), file_key);
                    (Arc::new(file) as Arc<dyn SourceFile>, weight)
                }),
            Some(file_key) if plan.has_payload(file_key) => {
                plan.payload(&version.adata, file_key).map(|bytes| {
                    let weight = bytes.len();
                    let file = Hinted::new(MemoryFile::new(bytes, identity), file_key);
                    (Arc::new(file) as Arc<dyn SourceFile>, weight)
                })
            }
            _ => Err(PayloadError::NotFound),
        };
        // Read from a file that changed meanwhile: its bytes (or its read
        // error) may come from two versions, so it is neither kept nor sent
        // under this version's tag, and a failure is no verdict on the file.
        if generation(&self.path) != version.generation {
            return Err(SourceError::Changed { key: key.clone() });
        }
        let (file, weight) = computed.map_err(|err| match err {
            PayloadError::NotFound => SourceError::NotFound { key: key.clone() },
            PayloadError::Unprocessable(why) => unprocessable(why),
            PayloadError::Read(e) if e.is_busy() => SourceError::Busy {
                key: key.clone(),
                reason: e.to_string(),
            },
            PayloadError::Read(e) => {
                tracing::warn!(key = %k, error = %e, "cannot compute a synthesised file");
                unprocessable(e.to_string())
            }
        })?;
        synth.cache.insert(k.to_owned(), Arc::clone(&file), weight);
        Ok(file)
    }
}

/// Gene `g` of the expression matrix, checked finite: from the CSR column
/// index once it exists, else read from the matrix (a CSC range, a dense
/// column, or, for CSR without its index, a scan).
fn gene_column(version: &Version, plan: &Plan, g: u64) -> Result<Column, PayloadError> {
    let matrix = plan.expression().ok_or(PayloadError::NotFound)?;
    let indexed = match (matrix.layout, version.synth.csr.get()) {
        (MatrixLayout::Csr, Some(Some(index))) => index.column_entries(g),
        _ => None,
    };
    let column = match indexed {
        Some(column) => column,
        None => matrix.column_entries(version.adata.backend(), g)?,
    };
    plan.check_gene(g, &column)?;
    Ok(column)
}

impl DatasetSource for AnnDataSource {
    fn format(&self) -> SourceFormat {
        // The raw store's kind: a MuData modality is served as its `h5mu`.
        match self.loaded().raw.kind() {
            "h5ad" => SourceFormat::H5ad,
            "zarr" => SourceFormat::Zarr,
            other => SourceFormat::Input(other),
        }
    }

    fn datasets(&self) -> &[DatasetInfo] {
        &self.info
    }

    fn open(&self, id: &str, key: &RelativeKey) -> Result<Arc<dyn SourceFile>, SourceError> {
        if id != self.info[0].id {
            return Err(SourceError::UnknownDataset { id: id.to_owned() });
        }
        let version = self.version()?;
        self.open_in(&version, key)
    }

    fn shutdown(&self) {
        let dir = self
            .options
            .cache_dir
            .clone()
            .unwrap_or_else(default_cache_dir);
        csr_index::remove_unfinished(&dir);
    }

    fn open_if_ready(&self, id: &str, key: &RelativeKey) -> Option<Arc<dyn SourceFile>> {
        if id != self.info[0].id {
            return None;
        }
        let version = self.loaded();
        // A kept file of a version the input no longer is: take the slow
        // path, which opens the input again.
        if generation(&self.path) != version.generation {
            return None;
        }
        version.synth.cache.get(key.as_str())
    }

    fn refresh(&self) -> Result<u64, SourceError> {
        self.version().map(|v| v.number)
    }

    fn current_info(&self, id: &str) -> Option<DatasetInfo> {
        if id != self.info[0].id {
            return None;
        }
        let version = self.loaded();
        let mut info = self.info[0].clone();
        info.n_cells = version.adata.n_obs();
        info.n_genes = version.n_genes;
        Some(info)
    }

    fn raw_store(&self, id: &str) -> Option<Arc<RawStore>> {
        (id == self.info[0].id).then(|| self.raw())
    }
}

/// What identifies this version of the store: the input's size, mtime,
/// ctime and inode (for a folder, of its root metadata too); `-` when it
/// cannot be inspected (gone, mid-rename).
fn generation(path: &Path) -> String {
    let stat = |p: &Path| match crate::file::path_identity(p) {
        Ok(identity) => identity.etag().trim_matches('"').to_owned(),
        Err(_) => String::from("-"),
    };
    let mut tag = stat(path);
    if path.is_dir() {
        for marker in [".zmetadata", "zarr.json", ".zgroup"] {
            let p = path.join(marker);
            if p.is_file() {
                tag.push('/');
                tag.push_str(&stat(&p));
            }
        }
    }
    tag
}

/// When the input (or, for a folder, any of its root metadata files) last
/// changed: the latest status-change time; `None` when it is gone.
fn last_change(path: &Path) -> Option<SystemTime> {
    use std::os::unix::fs::MetadataExt;
    let ctime = |p: &Path| {
        std::fs::metadata(p).ok().map(|m| {
            let secs = u64::try_from(m.ctime()).unwrap_or(0);
            let nanos = u32::try_from(m.ctime_nsec()).unwrap_or(0);
            SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
        })
    };
    let mut latest = ctime(path)?;
    if path.is_dir() {
        for marker in [".zmetadata", "zarr.json", ".zgroup"] {
            if let Some(at) = ctime(&path.join(marker)) {
                latest = latest.max(at);
            }
        }
    }
    Some(latest)
}

/// The ETag base of a payload: a digest of the store version and the key.
fn payload_tag(generation: &str, key: &str) -> String {
    let digest = Sha256::digest(format!("{generation}\n{key}").as_bytes());
    hex::encode(&digest[..16])
}

/// Number of genes the expression source serves (chosen as the synthesis
/// chooses it).
fn expression_genes(adata: &AnnData, options: &AnnDataOptions) -> Result<u64, AnnDataError> {
    let (matrix, _) = synth::expression_source(adata, options)?;
    Ok(matrix.map_or(0, |m| m.shape[1]))
}

/// The file name without its format ending (`.h5ad`, `.zarr`, `.zarr.zip`).
pub fn file_stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lower = name.to_ascii_lowercase();
    for ending in [".zarr.zip", ".h5ad", ".zarr", ".zip", ".h5"] {
        if lower.ends_with(ending) && lower.len() > ending.len() {
            return name[..name.len() - ending.len()].to_owned();
        }
    }
    name
}

/// Lower-cases and turns every run of characters outside `[a-z0-9._-]` into
/// `-`, so the id is a portable URL segment (docs/FORMATS.md, "AnnData ids").
pub fn sanitize_id(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_dash = false;
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-') {
            if pending_dash && !out.is_empty() {
                out.push('-');
            }
            pending_dash = false;
            out.push(c);
        } else {
            pending_dash = true;
        }
    }
    let trimmed = out.trim_matches(|c| matches!(c, '.' | '_' | '-'));
    let mut id: String = trimmed.chars().take(180).collect();
    if id.is_empty() {
        id = "dataset".into();
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sanitised_stems() {
        assert_eq!(sanitize_id("PBMC 68k (reduced)"), "pbmc-68k-reduced");
        assert_eq!(sanitize_id("..x"), "x");
        assert_eq!(sanitize_id("???"), "dataset");
        assert_eq!(file_stem(Path::new("/a/My Data.zarr.zip")), "My Data");
        assert_eq!(file_stem(Path::new("b.H5AD")), "b");
        assert_eq!(file_stem(Path::new("store.zarr")), "store");
    }
}
