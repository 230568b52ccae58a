//! An AnnData store as a [`DatasetSource`]: synthesised 0.9.4 folder files
//! for folder viewers, and the raw store for byte viewers.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::column::{Column, ColumnFile};
use super::csr_index::{self, default_cache_dir, CsrIndex};
use super::lru::ByteLru;
use super::options::AnnDataOptions;
use super::raw::RawStore;
use super::synth::{self, PayloadError, Plan};
use super::MatrixLayout;
use super::{AnnData, AnnDataError};
use crate::error::SourceError;
use crate::file::{FileIdentity, MemoryFile, SourceFile};
use crate::key::RelativeKey;
use crate::source::{DatasetInfo, DatasetSource, SourceFormat};

/// Decoded payloads kept in memory: enough for a few hundred gene columns
/// of a 200k-cell dataset, small enough to keep resident memory flat.
const PAYLOAD_CACHE_BYTES: usize = 40 * 1024 * 1024;

/// The synthesised side, shared with the background thread that builds it.
#[derive(Debug)]
struct Synth {
    adata: Arc<AnnData>,
    options: AnnDataOptions,
    plan: OnceLock<Result<Plan, String>>,
    cache: ByteLru<String, Arc<dyn SourceFile>>,
    generation: String,
    /// The CSR gene index, once built or loaded (`None` inside: failed).
    csr: OnceLock<Option<CsrIndex>>,
}

impl Synth {
    fn plan(&self, id: &str, name: &str) -> Result<&Plan, String> {
        self.plan
            .get_or_init(|| {
                Plan::build(&self.adata, &self.options, id, name).map_err(|err| err.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
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

/// One AnnData input served to both viewer generations.
#[derive(Debug)]
pub struct AnnDataSource {
    adata: Arc<AnnData>,
    info: [DatasetInfo; 1],
    raw: RawStore,
    options: AnnDataOptions,
    id_origin: &'static str,
    quick_notes: Vec<String>,
    synth: Arc<Synth>,
}

impl AnnDataSource {
    /// Opens `path` (metadata only) and decides its id and name: the options,
    /// else `uns['cellucid']`, else the file name.
    ///
    /// # Errors
    /// When the store cannot be opened or an option names something absent.
    pub fn open(path: &Path, options: AnnDataOptions) -> Result<Self, AnnDataError> {
        Self::open_with(path, &WholeStore, options)
    }

    /// Opens `path` with `reader`: the store itself, or a part of a larger
    /// one (a MuData modality, a Loom file's cells: `crate::formats`).
    ///
    /// # Errors
    /// When the part cannot be read or an option names something absent.
    pub(crate) fn open_with(
        path: &Path,
        reader: &dyn StoreReader,
        options: AnnDataOptions,
    ) -> Result<Self, AnnDataError> {
        let (adata, raw) = reader.read(path, &options)?;
        let adata = Arc::new(adata);
        let stem = file_stem(path);
        let uns = adata.uns_cellucid();
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
        let mut generation = generation(path);
        if !reader.part().is_empty() {
            generation.push('#');
            generation.push_str(reader.part());
        }
        // A choice naming an absent key fails here, with the keys there are.
        let available = |err| super::launch::with_available(&adata, err);
        let n_genes = expression_genes(&adata, &options).map_err(available)?;
        let quick_notes = synth::validate(&adata, &options).map_err(available)?;
        super::launch::check(&adata, &options)?;
        let synth = Arc::new(Synth {
            adata: Arc::clone(&adata),
            options: options.clone(),
            plan: OnceLock::new(),
            cache: ByteLru::new(PAYLOAD_CACHE_BYTES),
            generation,
            csr: OnceLock::new(),
        });
        let info = DatasetInfo {
            id,
            name,
            description: None,
            n_cells: adata.n_obs(),
            n_genes,
            catalog_path: None,
        };
        Ok(Self {
            adata,
            info: [info],
            raw,
            options,
            id_origin,
            quick_notes,
            synth,
        })
    }

    /// Builds the synthesised manifests on a background thread, so the
    /// server answers at once; a request that needs them waits for it.
    /// Prints the serving choices when done.
    pub fn prepare_in_background(&self) {
        let synth = Arc::clone(&self.synth);
        let (id, name) = (self.info[0].id.clone(), self.info[0].name.clone());
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

    /// The synthesis plan (built now if it was not yet).
    ///
    /// # Errors
    /// Why folder viewers cannot be served from this store.
    pub fn plan(&self) -> Result<&Plan, String> {
        self.synth.plan(&self.info[0].id, &self.info[0].name)
    }

    /// The opened store.
    pub fn anndata(&self) -> &AnnData {
        &self.adata
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
        let mut notes = self.quick_notes.clone();
        let csr = synth::resolve_expression(&self.adata, &self.options)
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

    /// Gene `g` of the expression matrix, checked finite: from the CSR
    /// column index once it exists, else read from the matrix (a CSC range,
    /// a dense column, or, for CSR without its index, a scan).
    fn gene_column(&self, plan: &Plan, g: u64) -> Result<Column, PayloadError> {
        let matrix = plan.expression().ok_or(PayloadError::NotFound)?;
        let indexed = match (matrix.layout, self.synth.csr.get()) {
            (MatrixLayout::Csr, Some(Some(index))) => index.column_entries(g),
            _ => None,
        };
        let column = match indexed {
            Some(column) => column,
            None => matrix.column_entries(self.adata.backend(), g)?,
        };
        plan.check_gene(g, &column)?;
        Ok(column)
    }

    /// The raw store.
    pub fn raw(&self) -> &RawStore {
        &self.raw
    }
}

impl DatasetSource for AnnDataSource {
    fn format(&self) -> SourceFormat {
        // The raw store's kind: a MuData modality is served as its `h5mu`.
        match self.raw.kind() {
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
        let unprocessable = |reason: String| SourceError::Unprocessable {
            key: key.clone(),
            reason,
        };
        let k = key.as_str();
        if let Some(file) = self.synth.cache.get(k) {
            return Ok(file);
        }
        let plan = self.plan().map_err(unprocessable)?;
        if let Some(bytes) = plan.manifest(k) {
            // Tagged by content, hashed once: kept like any computed file.
            let digest = Sha256::digest(&bytes);
            let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
            let weight = bytes.len();
            let file: Arc<dyn SourceFile> =
                Arc::new(MemoryFile::new(bytes, FileIdentity::Digest(hex)));
            self.synth
                .cache
                .insert(k.to_owned(), Arc::clone(&file), weight);
            return Ok(file);
        }
        let identity = FileIdentity::Digest(payload_tag(&self.synth.generation, k));
        let computed: Result<(Arc<dyn SourceFile>, usize), PayloadError> =
            if let Some(g) = plan.gene_index(k) {
                self.gene_column(plan, g).map(|column| {
                    let weight = column.footprint();
                    let file: Arc<dyn SourceFile> = Arc::new(ColumnFile::new(column, identity));
                    (file, weight)
                })
            } else if plan.has_payload(k) {
                plan.payload(&self.adata, k).map(|bytes| {
                    let weight = bytes.len();
                    let file: Arc<dyn SourceFile> = Arc::new(MemoryFile::new(bytes, identity));
                    (file, weight)
                })
            } else {
                Err(PayloadError::NotFound)
            };
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
        self.synth
            .cache
            .insert(k.to_owned(), Arc::clone(&file), weight);
        Ok(file)
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
        self.synth.cache.get(key.as_str())
    }

    fn raw_store(&self, id: &str) -> Option<&RawStore> {
        (id == self.info[0].id).then_some(&self.raw)
    }
}

/// What identifies this version of the store: the input's size, mtime and
/// inode (for a folder, of its root metadata too).
fn generation(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let stat = |p: &Path| {
        std::fs::metadata(p).map_or_else(
            |_| String::from("-"),
            |m| {
                format!(
                    "{:x}-{:x}.{:x}-{:x}",
                    m.len(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ino()
                )
            },
        )
    };
    let mut tag = stat(path);
    for marker in [".zmetadata", "zarr.json", ".zgroup"] {
        let p = path.join(marker);
        if p.is_file() {
            tag.push('/');
            tag.push_str(&stat(&p));
        }
    }
    tag
}

/// The ETag base of a payload: a digest of the store version and the key.
fn payload_tag(generation: &str, key: &str) -> String {
    let digest = Sha256::digest(format!("{generation}\n{key}").as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Number of genes the expression source serves.
fn expression_genes(adata: &AnnData, options: &AnnDataOptions) -> Result<u64, AnnDataError> {
    use super::options::ExpressionSource as E;
    Ok(match &options.expression {
        Some(E::X) => adata.x().ok_or_else(|| AnnDataError::missing("X"))?.shape[1],
        Some(E::Raw) => {
            adata
                .raw()
                .ok_or_else(|| AnnDataError::missing("raw/X"))?
                .x
                .shape[1]
        }
        Some(E::Layer(name)) => {
            adata
                .layers()
                .iter()
                .find(|(k, _)| k == name)
                .ok_or_else(|| AnnDataError::missing(&format!("layers/{name}")))?
                .1
                .shape[1]
        }
        None => match (adata.x(), adata.raw(), adata.layers().first()) {
            (Some(x), _, _) => x.shape[1],
            (None, Some(raw), _) => raw.x.shape[1],
            (None, None, Some((_, layer))) => layer.shape[1],
            _ => 0,
        },
    })
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
