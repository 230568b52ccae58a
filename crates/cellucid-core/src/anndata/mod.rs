//! The AnnData model: `.h5ad` files and AnnData Zarr stores (v2, v3, folder
//! or `.zarr.zip`), read lazily.
//!
//! [`AnnData::open`] reads metadata only: shapes, encodings, column names.
//! Columns, embeddings and matrix columns are read when asked for. Both
//! storage formats sit behind [`Backend`], so every reader above it (the
//! dataframes, the matrices, the synthesised viewer files) is written once.

mod backend;
pub(crate) mod budgeted;
mod column;
pub mod csr_index;
mod error;
mod frame;
#[cfg(feature = "hdf5")]
mod hdf5;
#[cfg(feature = "hdf5")]
mod hdf5_direct;
mod integrity;
mod launch;
mod matrix;
mod options;
mod raw;
mod read;
mod source;
pub mod store;
mod synth;
#[cfg(feature = "zarr")]
mod zarr;
#[cfg(feature = "zarr")]
mod zarr_caps;
#[cfg(feature = "zarr")]
mod zarrs_store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

pub use backend::{ArrayInfo, Backend, CompoundField, Dtype, NodeKind, RawRange, Values};
pub use column::{Column, ColumnFile};
pub use error::{AnnDataError, Result};
pub use frame::{ColumnEncoding, ColumnSpec, Frame, FrameColumn, Label};
pub use matrix::{Matrix, MatrixLayout, SparseParts};
pub use options::{AnnDataOptions, EmbeddingChoice, ExpressionSource};
pub use raw::{RawLayout, RawStore};
pub use read::Embedding;
pub(crate) use source::StoreReader;
pub use source::{file_stem, sanitize_id, AnnDataSource};
pub use synth::{PayloadError, Plan, PlanError};
#[cfg(feature = "zarr")]
pub use zarrs_store::ZarrsStore;

use crate::detect::{detect_input, InputKind};
use backend::join;
use frame::check_encoding;

/// The Zarr format version of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZarrVersion {
    /// Zarr v2 (`.zgroup`, `.zarray`, `.zattrs`).
    V2,
    /// Zarr v3 (`zarr.json`).
    V3,
}

/// How the store is laid out on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// An HDF5 `.h5ad` file.
    H5ad,
    /// A Zarr folder.
    ZarrFolder(ZarrVersion),
    /// A zipped Zarr store.
    ZarrZip(ZarrVersion),
}

impl StoreKind {
    /// `h5ad` or `zarr`, the format id of `/_cellucid/health`.
    pub fn format_id(self) -> &'static str {
        match self {
            Self::H5ad => "h5ad",
            Self::ZarrFolder(_) | Self::ZarrZip(_) => "zarr",
        }
    }

    /// A human description.
    pub fn describe(self) -> &'static str {
        match self {
            Self::H5ad => "HDF5 .h5ad",
            Self::ZarrFolder(ZarrVersion::V2) => "Zarr v2 folder",
            Self::ZarrFolder(ZarrVersion::V3) => "Zarr v3 folder",
            Self::ZarrZip(ZarrVersion::V2) => "zipped Zarr v2",
            Self::ZarrZip(ZarrVersion::V3) => "zipped Zarr v3",
        }
    }
}

/// One `obsm` entry usable as an embedding or latent space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObsmEntry {
    /// The key (`X_umap`).
    pub key: String,
    /// Number of columns.
    pub width: u64,
    /// Element type.
    pub dtype: Dtype,
}

/// `raw`: an alternative expression matrix with its own genes.
#[derive(Clone, Debug)]
pub struct Raw {
    /// `raw/X`.
    pub x: Matrix,
    /// `raw/var`.
    pub var: Frame,
}

/// An AnnData store opened for lazy reading.
#[derive(Debug)]
pub struct AnnData {
    path: PathBuf,
    kind: StoreKind,
    backend: Arc<dyn Backend>,
    n_obs: u64,
    n_vars: u64,
    obs: Frame,
    var: Frame,
    obsm: Vec<ObsmEntry>,
    legacy_obsm: bool,
    x: Option<Matrix>,
    layers: Vec<(String, Matrix)>,
    raw: Option<Raw>,
    obsp: Vec<(String, Matrix)>,
    uns_cellucid: Map<String, Value>,
}

/// Largest uns array turned into JSON (uns holds metadata, not data).
const MAX_UNS_ELEMENTS: u64 = 10_000;

/// The Zarr backend over `store`, or `not_zarr()` when its root is no group.
#[cfg(feature = "zarr")]
fn open_zarr(
    store: Arc<dyn store::KeyStore>,
    not_zarr: impl FnOnce() -> AnnDataError,
) -> Result<(Arc<dyn Backend>, ZarrVersion)> {
    let zarr = zarr::ZarrBackend::open(store)?.ok_or_else(not_zarr)?;
    let version = zarr.version();
    Ok((Arc::new(zarr), version))
}

/// Without the `zarr` feature: every Zarr store is refused, saying why.
#[cfg(not(feature = "zarr"))]
fn open_zarr(
    store: Arc<dyn store::KeyStore>,
    not_zarr: impl FnOnce() -> AnnDataError,
) -> Result<(Arc<dyn Backend>, ZarrVersion)> {
    let _ = (store, not_zarr);
    Err(AnnDataError::Unsupported {
        what: "Zarr",
        feature: "zarr",
    })
}

/// The HDF5 backend of `path`.
#[cfg(feature = "hdf5")]
fn open_hdf5(path: &Path) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(hdf5::Hdf5Backend::open(path)?))
}

/// Without the `hdf5` feature: every HDF5 file is refused, saying why.
#[cfg(not(feature = "hdf5"))]
fn open_hdf5(path: &Path) -> Result<Arc<dyn Backend>> {
    let _ = path;
    Err(AnnDataError::Unsupported {
        what: "HDF5",
        feature: "hdf5",
    })
}

impl AnnData {
    /// Opens `path`, recognising `.h5ad`, Zarr folders and `.zarr.zip` by
    /// content. Reads metadata only.
    ///
    /// # Errors
    /// [`AnnDataError::Open`] when the path is no AnnData store; other
    /// variants name the element that is missing or invalid.
    pub fn open(path: &Path) -> Result<Self> {
        let open_err = |what, reason: String| AnnDataError::Open {
            path: path.to_owned(),
            what,
            reason,
        };
        let kind = detect_input(path).map_err(|err| {
            // The detection error already starts with the path.
            let text = err.to_string();
            let prefix = format!("{}: ", path.display());
            open_err(
                "AnnData",
                text.strip_prefix(&prefix).unwrap_or(&text).to_owned(),
            )
        })?;
        let (backend, kind): (Arc<dyn Backend>, StoreKind) = match kind {
            InputKind::H5ad => {
                // A cut-short file is named as such before the reader fails
                // on whatever element the cut fell in.
                integrity::check_hdf5(path)?;
                (open_hdf5(path)?, StoreKind::H5ad)
            }
            InputKind::ZarrFolder => {
                let what = "a Zarr folder";
                let store =
                    store::DirStore::open(path).map_err(|err| open_err(what, err.to_string()))?;
                let (zarr, version) = open_zarr(Arc::new(store), || {
                    open_err(what, "no .zgroup or zarr.json at its root".into())
                })?;
                (zarr, StoreKind::ZarrFolder(version))
            }
            InputKind::ZarrZip => {
                let what = "a zipped Zarr store";
                integrity::check_zip(path)?;
                let store =
                    store::ZipStore::open(path).map_err(|err| open_err(what, err.to_string()))?;
                let (zarr, version) = open_zarr(Arc::new(store), || {
                    open_err(
                        what,
                        "the archive holds no .zgroup or zarr.json at its root".into(),
                    )
                })?;
                (zarr, StoreKind::ZarrZip(version))
            }
            other => {
                return Err(open_err(
                    "AnnData",
                    format!(
                        "it is {}, not an AnnData store",
                        other.describe_with_article()
                    ),
                ))
            }
        };
        Self::from_backend(path, kind, backend)
    }

    /// Reads the AnnData whose root is `backend`'s root (for `crate::formats`:
    /// a MuData modality, behind a backend rooted at `mod/<name>`).
    pub(crate) fn from_backend(
        path: &Path,
        kind: StoreKind,
        backend: Arc<dyn Backend>,
    ) -> Result<Self> {
        // Every read below and after is sized from the file's claims: ask
        // the memory budget first (budgeted.rs).
        let backend: Arc<dyn Backend> = Arc::new(budgeted::BudgetedBackend::new(backend));
        let b = backend.as_ref();
        let root = b.attrs("")?;
        if let (Some(t), version) = frame::encoding_of(&root) {
            if t.contains('\\') {
                return Err(AnnDataError::invalid(
                    "/",
                    "its attributes are unreadable: is the file truncated or corrupt?",
                ));
            }
            if t != "anndata" {
                return Err(AnnDataError::UnknownEncoding {
                    element: "/".into(),
                    encoding: t,
                    version,
                });
            }
        }
        let obs = Frame::open(b, "obs")?;
        let var = Frame::open(b, "var")?;
        let n_obs = obs.n_rows();
        let n_vars = var.n_rows();
        let x = match b.kind("X") {
            Some(_) => Some(Matrix::open(b, "X")?),
            None => None,
        };
        if let Some(x) = &x {
            if x.shape != [n_obs, n_vars] {
                return Err(AnnDataError::invalid(
                    "X",
                    format!("has shape {:?}; obs × var is [{n_obs}, {n_vars}]", x.shape),
                ));
            }
        }
        let (obsm, legacy_obsm) = read_obsm(b, n_obs)?;
        let layers = read_matrices(b, "layers", Some([n_obs, n_vars]))?;
        let obsp = read_obsp(b, n_obs)?;
        let raw = read_raw(b, n_obs)?;
        let uns_cellucid = match b.kind("uns/cellucid") {
            Some(NodeKind::Group) => match json_tree(b, "uns/cellucid", 0) {
                Value::Object(map) => map,
                _ => Map::new(),
            },
            _ => Map::new(),
        };
        Ok(Self {
            path: path.to_owned(),
            kind,
            backend,
            n_obs,
            n_vars,
            obs,
            var,
            obsm,
            legacy_obsm,
            x,
            layers,
            raw,
            obsp,
            uns_cellucid,
        })
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How it is stored.
    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// The storage backend (for raw element reads).
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// Number of cells.
    pub fn n_obs(&self) -> u64 {
        self.n_obs
    }

    /// Number of genes in `var`.
    pub fn n_vars(&self) -> u64 {
        self.n_vars
    }

    /// The cell dataframe.
    pub fn obs(&self) -> &Frame {
        &self.obs
    }

    /// The gene dataframe.
    pub fn var(&self) -> &Frame {
        &self.var
    }

    /// The dense `obsm` matrices, by key (sorted).
    pub fn obsm(&self) -> &[ObsmEntry] {
        &self.obsm
    }

    /// The obsm entry named `key`.
    pub fn obsm_entry(&self, key: &str) -> Option<&ObsmEntry> {
        self.obsm.iter().find(|e| e.key == key)
    }

    /// `X`, when present.
    pub fn x(&self) -> Option<&Matrix> {
        self.x.as_ref()
    }

    /// `layers`, by name.
    pub fn layers(&self) -> &[(String, Matrix)] {
        &self.layers
    }

    /// `raw`, when present.
    pub fn raw(&self) -> Option<&Raw> {
        self.raw.as_ref()
    }

    /// Cell-by-cell graphs (`obsp`, or the legacy `uns/neighbors`), by key.
    pub fn obsp(&self) -> &[(String, Matrix)] {
        &self.obsp
    }

    /// `uns['cellucid']` as JSON (empty when absent).
    pub fn uns_cellucid(&self) -> &Map<String, Value> {
        &self.uns_cellucid
    }

    /// Reads obs column `name`.
    ///
    /// # Errors
    /// When the column is missing, unsupported or invalid.
    pub fn obs_column(&self, name: &str) -> Result<FrameColumn> {
        self.obs.read_column(self.backend(), name)
    }

    /// Reads `obsm[key]` as stored (row-major) with its width.
    ///
    /// # Errors
    /// When the key is missing or not a numeric matrix.
    pub fn obsm_values(&self, key: &str) -> Result<(Values, usize)> {
        let entry = self
            .obsm_entry(key)
            .ok_or_else(|| AnnDataError::missing(&join("obsm", key)))?;
        let values = if self.legacy_obsm {
            self.backend
                .read_compound("obsm")?
                .into_iter()
                .find(|f| f.name == key)
                .map(|f| f.values)
                .ok_or_else(|| AnnDataError::missing(&join("obsm", key)))?
        } else {
            self.backend.read(&join("obsm", key))?
        };
        if !values.is_numeric() || values.len() as u64 != self.n_obs * entry.width {
            return Err(AnnDataError::invalid(
                &join("obsm", key),
                format!(
                    "holds {} {} values; {} cells × {} numeric columns expected",
                    values.len(),
                    values.type_name(),
                    self.n_obs,
                    entry.width
                ),
            ));
        }
        Ok((values, entry.width as usize))
    }

    /// Reads rows `rows` of `obsm[key]` (row-major, as stored).
    ///
    /// # Errors
    /// When the key is missing or the rows cannot be read.
    pub fn obsm_rows(&self, key: &str, rows: std::ops::Range<u64>) -> Result<Values> {
        if self.legacy_obsm {
            // Legacy compound obsm: small files; slice the decoded field.
            let (values, width) = self.obsm_values(key)?;
            let (a, b) = (rows.start as usize * width, rows.end as usize * width);
            return Ok(match values {
                Values::F32(v) => Values::F32(v.get(a..b).unwrap_or_default().to_vec()),
                Values::F64(v) => Values::F64(v.get(a..b).unwrap_or_default().to_vec()),
                Values::Int(v) => Values::Int(v.get(a..b).unwrap_or_default().to_vec()),
                other => other,
            });
        }
        self.backend.read_rows(&join("obsm", key), rows)
    }

    /// Reads `obsm[key]` as row-major `f64` values with its width.
    ///
    /// # Errors
    /// When the key is missing or not a numeric matrix.
    pub fn obsm_matrix(&self, key: &str) -> Result<(Vec<f64>, usize)> {
        let (values, width) = self.obsm_values(key)?;
        let values = values
            .to_f64()
            .ok_or_else(|| AnnDataError::invalid(&join("obsm", key), "not numeric"))?;
        Ok((values, width))
    }
}

fn read_obsm(b: &dyn Backend, n_obs: u64) -> Result<(Vec<ObsmEntry>, bool)> {
    match b.kind("obsm") {
        None => Ok((Vec::new(), false)),
        Some(NodeKind::Array) => {
            let fields = b.read_compound("obsm")?;
            let mut out: Vec<ObsmEntry> = fields
                .into_iter()
                .filter(|f| {
                    f.values.is_numeric() && f.values.len() as u64 == n_obs * f.width as u64
                })
                .map(|f| ObsmEntry {
                    key: f.name,
                    width: f.width as u64,
                    dtype: match f.values {
                        Values::F32(_) => Dtype::Float { bytes: 4 },
                        Values::F64(_) => Dtype::Float { bytes: 8 },
                        _ => Dtype::Int {
                            bytes: 8,
                            signed: true,
                        },
                    },
                })
                .collect();
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok((out, true))
        }
        Some(NodeKind::Group) => {
            let mut out = Vec::new();
            for key in b.children("obsm")? {
                let path = join("obsm", &key);
                if b.kind(&path) != Some(NodeKind::Array) {
                    continue; // dataframes and sparse obsm are not embeddings
                }
                let info = b.info(&path)?;
                if !info.dtype.is_numeric() || info.dtype == Dtype::Bool {
                    continue;
                }
                let (rows, width) = match info.shape[..] {
                    [r, w] => (r, w),
                    [r] => (r, 1),
                    _ => continue,
                };
                if rows != n_obs {
                    tracing::warn!(element = %path, rows, n_obs, "obsm entry skipped: wrong number of rows");
                    continue;
                }
                out.push(ObsmEntry {
                    key,
                    width,
                    dtype: info.dtype,
                });
            }
            Ok((out, false))
        }
    }
}

fn read_matrices(
    b: &dyn Backend,
    group: &str,
    shape: Option<[u64; 2]>,
) -> Result<Vec<(String, Matrix)>> {
    if b.kind(group) != Some(NodeKind::Group) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for key in b.children(group)? {
        let path = join(group, &key);
        match Matrix::open(b, &path) {
            Ok(m) if shape.is_none_or(|s| s == m.shape) => out.push((key, m)),
            Ok(m) => {
                tracing::warn!(element = %path, shape = ?m.shape, "skipped: shape does not match");
            }
            Err(err) => tracing::warn!(element = %path, error = %err, "skipped"),
        }
    }
    Ok(out)
}

fn read_obsp(b: &dyn Backend, n_obs: u64) -> Result<Vec<(String, Matrix)>> {
    let mut out = read_matrices(b, "obsp", Some([n_obs, n_obs]))?;
    // Pre-0.7 files keep the neighbour graphs in uns/neighbors.
    if out.is_empty() {
        for key in ["connectivities", "distances"] {
            let path = join("uns/neighbors", key);
            if b.kind(&path) == Some(NodeKind::Group) {
                if let Ok(m) = Matrix::open(b, &path) {
                    if m.shape == [n_obs, n_obs] {
                        out.push((key.to_owned(), m));
                    }
                }
            }
        }
    }
    Ok(out)
}

fn read_raw(b: &dyn Backend, n_obs: u64) -> Result<Option<Raw>> {
    // Modern: raw/{X,var}; pre-0.7: raw.X and raw.var at the root.
    let (x_path, var_path) = if b.kind("raw") == Some(NodeKind::Group) {
        let attrs = b.attrs("raw")?;
        check_encoding("raw", &attrs, &["raw"]).or_else(|err| match err {
            AnnDataError::UnknownEncoding { ref version, .. } if version == "0.1.0" => Ok(()),
            other => Err(other),
        })?;
        ("raw/X", "raw/var")
    } else if b.kind("raw.X").is_some() {
        ("raw.X", "raw.var")
    } else {
        return Ok(None);
    };
    if b.kind(x_path).is_none() || b.kind(var_path).is_none() {
        return Ok(None);
    }
    let x = Matrix::open(b, x_path)?;
    let var = Frame::open(b, var_path)?;
    if x.shape != [n_obs, var.n_rows()] {
        return Err(AnnDataError::invalid(
            x_path,
            format!(
                "has shape {:?}; cells × raw genes is [{n_obs}, {}]",
                x.shape,
                var.n_rows()
            ),
        ));
    }
    Ok(Some(Raw { x, var }))
}

/// A small uns subtree as JSON (groups → objects, small arrays → values).
fn json_tree(b: &dyn Backend, path: &str, depth: usize) -> Value {
    if depth > 8 {
        return Value::Null;
    }
    match b.kind(path) {
        Some(NodeKind::Group) => {
            let mut map = Map::new();
            for child in b.children(path).unwrap_or_default() {
                map.insert(child.clone(), json_tree(b, &join(path, &child), depth + 1));
            }
            Value::Object(map)
        }
        Some(NodeKind::Array) => {
            let Ok(info) = b.info(path) else {
                return Value::Null;
            };
            if info.shape.iter().product::<u64>() > MAX_UNS_ELEMENTS {
                return Value::Null;
            }
            let Ok(values) = b.read(path) else {
                return Value::Null;
            };
            let items: Vec<Value> = values.into_json();
            if info.shape.is_empty() {
                items.into_iter().next().unwrap_or(Value::Null)
            } else {
                Value::Array(items)
            }
        }
        None => Value::Null,
    }
}

/// The container of a store read by another layout than AnnData's (MuData,
/// Loom, Cell Ranger), for [`open_backend`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Container {
    /// One HDF5 file.
    Hdf5,
    /// A Zarr store folder.
    ZarrFolder,
    /// A zipped Zarr store.
    ZarrZip,
}

/// Opens the storage backend of `path` without reading it as an AnnData, so
/// the readers of other layouts (`crate::formats`) share the HDF5 and Zarr
/// readers. Reads the superblock or the root metadata only.
///
/// # Errors
/// [`AnnDataError::Open`] when the path is no readable store of that container.
pub(crate) fn open_backend(path: &Path, container: Container) -> Result<Arc<dyn Backend>> {
    let open_err = |what, reason: String| AnnDataError::Open {
        path: path.to_owned(),
        what,
        reason,
    };
    match container {
        Container::Hdf5 => open_hdf5(path),
        Container::ZarrFolder => {
            let store = store::DirStore::open(path)
                .map_err(|err| open_err("a Zarr folder", err.to_string()))?;
            Ok(open_zarr(Arc::new(store), || {
                open_err(
                    "a Zarr folder",
                    "no .zgroup or zarr.json at its root".into(),
                )
            })?
            .0)
        }
        Container::ZarrZip => {
            let store = store::ZipStore::open(path)
                .map_err(|err| open_err("a zipped Zarr store", err.to_string()))?;
            Ok(open_zarr(Arc::new(store), || {
                open_err(
                    "a zipped Zarr store",
                    "no .zgroup or zarr.json at its root".into(),
                )
            })?
            .0)
        }
    }
}

/// A build without a format feature refuses that format's stores, naming
/// the feature (`.ci/run` runs these in the one-feature builds).
#[cfg(all(test, not(all(feature = "hdf5", feature = "zarr"))))]
mod without_a_format {
    use super::*;

    fn refusal(fixture: &str) -> AnnDataError {
        let path = crate::testdata::path(&format!("anndata/{fixture}"));
        match AnnData::open(&path) {
            Ok(_) => panic!("{fixture} opened without its feature"),
            Err(err) => err,
        }
    }

    #[cfg(not(feature = "hdf5"))]
    #[test]
    fn without_hdf5_an_h5ad_is_refused_naming_the_feature() {
        let err = refusal("tiny.h5ad");
        assert!(
            matches!(
                err,
                AnnDataError::Unsupported {
                    feature: "hdf5",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("`hdf5` feature"), "{err}");
    }

    #[cfg(not(feature = "zarr"))]
    #[test]
    fn without_zarr_a_zarr_store_is_refused_naming_the_feature() {
        for fixture in ["tiny.zarr", "tiny.v3.zarr"] {
            let err = refusal(fixture);
            assert!(
                matches!(
                    err,
                    AnnDataError::Unsupported {
                        feature: "zarr",
                        ..
                    }
                ),
                "{err}"
            );
            assert!(err.to_string().contains("`zarr` feature"), "{err}");
        }
    }
}
