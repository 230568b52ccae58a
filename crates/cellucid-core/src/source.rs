//! The dataset-source seam: what every reader provides to the server.

use std::fmt;
use std::sync::Arc;

use crate::anndata::RawStore;
use crate::error::SourceError;
use crate::file::SourceFile;
use crate::key::RelativeKey;

/// The storage format a source reads, as reported by `/_cellucid/health`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SourceFormat {
    /// A Cellucid export folder or catalog.
    Export,
    /// An AnnData HDF5 file.
    H5ad,
    /// An AnnData Zarr store (folder or zip).
    Zarr,
    /// Another input format of 0.9.5's registry, served to the byte viewer as
    /// it is: its format id (`h5mu`, `loom`, `tenx-h5`, `mtx`, `rds`, …).
    Input(&'static str),
}

impl SourceFormat {
    /// The format id used in `/_cellucid/health` and `/_cellucid/info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Export => "export",
            Self::H5ad => "h5ad",
            Self::Zarr => "zarr",
            Self::Input(id) => id,
        }
    }

    /// The dataset `type` reported for this format (`exported` or `anndata`).
    pub fn dataset_type(self) -> &'static str {
        match self {
            Self::Export => "exported",
            Self::H5ad | Self::Zarr | Self::Input(_) => "anndata",
        }
    }
}

/// What the viewer's catalog says about one dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetInfo {
    /// The dataset id, as its identity and catalog give it.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Description, when the dataset has one.
    pub description: Option<String>,
    /// Number of cells.
    pub n_cells: u64,
    /// Number of genes served.
    pub n_genes: u64,
    /// Where the source's own catalog places the dataset (`pbmc68k-f32/`),
    /// relative to the catalog; `None` when the source has no catalog.
    pub catalog_path: Option<String>,
}

/// A provider of one or more datasets: lists them and opens their files.
///
/// No method takes a filesystem path: a source may be backed by a folder, a
/// single file or computed views, and decides itself how keys map to bytes.
pub trait DatasetSource: Send + Sync + fmt::Debug {
    /// The storage format.
    fn format(&self) -> SourceFormat;

    /// The datasets, in the order the source lists them.
    fn datasets(&self) -> &[DatasetInfo];

    /// Opens the file `key` of dataset `id`.
    ///
    /// # Errors
    /// [`SourceError::UnknownDataset`] for an id this source does not serve,
    /// [`SourceError::NotFound`] for a key with nothing servable behind it,
    /// [`SourceError::Io`] when the bytes cannot be read.
    fn open(&self, id: &str, key: &RelativeKey) -> Result<Arc<dyn SourceFile>, SourceError>;

    /// Whether [`DatasetSource::open`] and [`SourceFile::read_range`] may take
    /// long enough (decoding, building a column, slow storage) that a server
    /// should run them off its async workers. The default is the safe `true`;
    /// a source of plain local files answers from the page cache in
    /// microseconds, and moving that work to another thread costs more than
    /// the work itself.
    fn reads_may_block(&self) -> bool {
        true
    }

    /// Called once when the server stops: ends background work and removes
    /// the temporary files it was writing. The default has none.
    fn shutdown(&self) {}

    /// The file `key` of dataset `id` when the source already holds it in
    /// memory (a computed file it made before), so a server can answer
    /// without moving off its async workers; `None` means "call
    /// [`DatasetSource::open`]". The default holds nothing.
    fn open_if_ready(&self, id: &str, key: &RelativeKey) -> Option<Arc<dyn SourceFile>> {
        let _ = (id, key);
        None
    }

    /// The source's own `datasets.json`, byte for byte, when it has one (an
    /// export catalog). The server serves it as is when this source is the
    /// only one.
    ///
    /// # Errors
    /// [`SourceError::Io`] when the catalog cannot be read.
    fn catalog(&self) -> Option<Result<Arc<dyn SourceFile>, SourceError>> {
        None
    }

    /// Whether the datasets' `n_cells` and `n_genes` were read from the data;
    /// `false` for a format only the browser reads (an R object), whose
    /// counts are reported as unknown. The default is `true`.
    fn counts_known(&self) -> bool {
        true
    }

    /// The raw bytes of dataset `id`'s AnnData store (its current version),
    /// for the 0.9.5 byte route; `None` for datasets that are not AnnData
    /// stores.
    fn raw_store(&self, id: &str) -> Option<Arc<RawStore>> {
        let _ = id;
        None
    }

    /// Makes sure the source describes its input as it is on disk now,
    /// opening it again if it changed (this may block: run it where
    /// [`DatasetSource::open`] would run), and returns a number that changes
    /// whenever it did, so a server can rebuild what it derived from
    /// [`DatasetSource::current_info`] and [`DatasetSource::raw_store`]. The
    /// default, for sources whose description is fixed, is always 0.
    ///
    /// # Errors
    /// [`SourceError::Unavailable`] while the input is being rewritten or
    /// cannot be opened as it is now.
    fn refresh(&self) -> Result<u64, SourceError> {
        Ok(0)
    }

    /// What dataset `id` is now (after re-opens, its counts may differ from
    /// [`DatasetSource::datasets`], which describes it as first opened; its
    /// id and name never change).
    fn current_info(&self, id: &str) -> Option<DatasetInfo> {
        self.datasets().iter().find(|d| d.id == id).cloned()
    }
}
