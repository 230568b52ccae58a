//! Reading a part of an input as an AnnData — a MuData modality
//! (`mod/<name>`), a Loom file's cells — while the byte route serves the
//! whole input: the [`StoreReader`] that `AnnDataSource` opens it with.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::classify::Classified;
use super::loom::LoomBackend;
use super::mudata::ReadableSource;
use super::prefix::PrefixBackend;
use super::FormatError;
use crate::anndata::{
    self, AnnData, AnnDataError, AnnDataOptions, AnnDataSource, Container, RawLayout, RawStore,
    StoreKind, StoreReader, ZarrVersion,
};

/// Which part is read.
#[derive(Debug)]
pub(super) enum Part {
    /// The group `element` of an HDF5 file or Zarr store, as an AnnData root.
    Group {
        /// The container the input is.
        container: Container,
        /// How its AnnData is stored.
        store_kind: StoreKind,
    },
    /// A Loom file's cells ([`LoomBackend`]).
    Loom,
}

/// Reads one part of an input, and serves the whole input raw.
#[derive(Debug)]
pub(super) struct PartReader {
    part: Part,
    /// The element read (`mod/rna`, `loom`).
    element: String,
    layout: RawLayout,
    zarr: Option<ZarrVersion>,
    format_id: &'static str,
    ending: &'static str,
    /// The launch defaults of the whole input (with its `modality`).
    defaults: Map<String, Value>,
}

impl PartReader {
    /// A reader of `part` (named `element`) of the classified input.
    pub(super) fn new(
        part: Part,
        element: String,
        classified: &Classified,
        layout: RawLayout,
        zarr: Option<ZarrVersion>,
        options: &AnnDataOptions,
    ) -> Self {
        Self {
            part,
            element,
            layout,
            zarr,
            format_id: classified.kind.format_id().unwrap_or("h5ad"),
            ending: classified.ending,
            defaults: options.launch_defaults(),
        }
    }
}

impl StoreReader for PartReader {
    fn read(
        &self,
        path: &Path,
        _options: &AnnDataOptions,
    ) -> Result<(AnnData, RawStore), AnnDataError> {
        let adata = match &self.part {
            Part::Group {
                container,
                store_kind,
            } => {
                let backend = anndata::open_backend(path, *container)?;
                let rooted = PrefixBackend::new(backend, &self.element);
                AnnData::from_backend(path, *store_kind, Arc::new(rooted))?
            }
            Part::Loom => {
                let inner = anndata::open_backend(path, Container::Hdf5)?;
                let loom = LoomBackend::new(inner)?;
                if !loom.has_embedding() {
                    return Err(AnnDataError::invalid(
                        "col_attrs",
                        "no 2-D attribute: no embedding to draw",
                    ));
                }
                AnnData::from_backend(path, StoreKind::H5ad, Arc::new(loom))?
            }
        };
        let mut raw = RawStore::for_format(
            path,
            self.layout,
            self.format_id,
            self.ending,
            self.zarr,
            None,
        )
        .map_err(|err| AnnDataError::Open {
            path: path.to_owned(),
            what: "a raw store",
            reason: err.to_string(),
        })?;
        raw.set_defaults(self.defaults.clone());
        Ok((adata, raw))
    }

    fn part(&self) -> &str {
        &self.element
    }
}

/// Serves the part `reader` reads to both viewer generations under the id
/// and name given; when the part is no AnnData this server reads, serves
/// the input to the byte viewer only, saying why.
///
/// # Errors
/// [`FormatError::AnnData`] when a launch choice does not fit the part.
pub(super) fn serve_part(
    path: &Path,
    classified: &Classified,
    reader: PartReader,
    (id, name): (String, String),
    options: &AnnDataOptions,
) -> Result<ReadableSource, FormatError> {
    if let Err(err) = reader.read(path, options) {
        let source = super::RawInputSource::from_classified(path, classified.clone(), options)?;
        let why = format!(
            "{} is not an AnnData this server reads ({err}): served to the byte viewer only",
            reader.element
        );
        return Ok(ReadableSource::RawOnly(Box::new(source), Some(why)));
    }
    let read_options = AnnDataOptions {
        dataset_id: Some(id),
        dataset_name: Some(name),
        // Chosen already: the part is one AnnData.
        modality: None,
        ..options.clone()
    };
    let element = reader.element.clone();
    AnnDataSource::open_with(path, std::sync::Arc::new(reader), read_options)
        .map(|source| ReadableSource::Read(Box::new(source)))
        .map_err(|source| FormatError::AnnData {
            path: path.to_owned(),
            element,
            source: Box::new(source),
        })
}
