//! An input of a format the browser decodes itself (MuData, Loom, 10x,
//! MatrixMarket, R objects) as a [`DatasetSource`]: the 0.9.5 byte route and
//! its `/_cellucid/datasets` entry, and no folder-viewer files.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::classify::{classify, Classified};
use super::counts::counts;
use super::FormatError;
use crate::anndata::{self, AnnDataOptions, Container, RawLayout, RawStore, ZarrVersion};
use crate::detect::InputKind;
use crate::error::SourceError;
use crate::file::SourceFile;
use crate::key::RelativeKey;
use crate::source::{DatasetInfo, DatasetSource, SourceFormat};

/// One input served to the byte viewer as it is.
#[derive(Debug)]
pub struct RawInputSource {
    kind: InputKind,
    info: [DatasetInfo; 1],
    raw: Arc<RawStore>,
    counts_known: bool,
}

impl RawInputSource {
    /// Opens `path`, already classified as a kind that is no AnnData store,
    /// and names it: the options, else (MuData) `uns['cellucid']`; formats
    /// the browser alone reads need both given (as 0.9.5).
    ///
    /// # Errors
    /// [`FormatError`] when it is unnamed, unreadable or not such a kind.
    pub fn open(path: &Path, options: &AnnDataOptions) -> Result<Self, FormatError> {
        let classified = classify(path).map_err(|err| FormatError::Unreadable {
            path: path.to_owned(),
            reason: err.to_string(),
        })?;
        Self::from_classified(path, classified, options)
    }

    pub(super) fn from_classified(
        path: &Path,
        classified: Classified,
        options: &AnnDataOptions,
    ) -> Result<Self, FormatError> {
        let Classified {
            kind,
            ending,
            files,
        } = classified;
        let unreadable = |reason: String| FormatError::Unreadable {
            path: path.to_owned(),
            reason,
        };
        let format_id = kind
            .format_id()
            .filter(|_| !kind.is_anndata())
            .ok_or_else(|| {
                unreadable(format!(
                    "{} is not served this way",
                    kind.describe_with_article()
                ))
            })?;
        let (layout, zarr) = match kind {
            InputKind::MudataZarrFolder => (RawLayout::Folder, Some(zarr_version(path))),
            InputKind::MudataZarrZip => (RawLayout::Zip, None),
            InputKind::TenxOuts | InputKind::Mtx => (RawLayout::Folder, None),
            _ => (RawLayout::File, None),
        };
        let (id, name) = identity(path, kind, options)?;
        let found = counts(path, kind, files.as_deref());
        if is_mudata(kind) && found.is_none() {
            return Err(unreadable(
                "it is not a readable MuData store (no root obs, or no modality under mod)".into(),
            ));
        }
        let mut raw = RawStore::for_format(path, layout, format_id, ending, zarr, files.as_deref())
            .map_err(|err| unreadable(err.to_string()))?;
        raw.set_defaults(options.launch_defaults());
        let (n_cells, n_genes) = found.unwrap_or_default();
        Ok(Self {
            kind,
            info: [DatasetInfo {
                id,
                name,
                description: None,
                n_cells,
                n_genes,
                catalog_path: None,
            }],
            raw: Arc::new(raw),
            counts_known: found.is_some(),
        })
    }

    /// Serves the dataset under another id (when its own is taken).
    pub fn set_id(&mut self, id: String) {
        self.info[0].id = id;
    }

    /// The input kind.
    pub fn kind(&self) -> InputKind {
        self.kind
    }
}

/// The dataset id and name: the options, else (MuData) its root
/// `uns['cellucid']`; 0.9.5 requires both, and so does this server.
///
/// # Errors
/// [`FormatError::NeedsIdentity`] saying which is missing.
pub(super) fn identity(
    path: &Path,
    kind: InputKind,
    options: &AnnDataOptions,
) -> Result<(String, String), FormatError> {
    let (declared_id, declared_name) = declared_identity(path, kind);
    let id = options.dataset_id.clone().or(declared_id);
    let name = options.dataset_name.clone().or(declared_name);
    match (id, name) {
        (Some(id), Some(name)) => Ok((anndata::sanitize_id(&id), name)),
        (id, name) => Err(FormatError::NeedsIdentity {
            path: path.to_owned(),
            missing: match (id, name) {
                (None, None) => "a dataset name and id are",
                (None, Some(_)) => "a dataset id is",
                _ => "a dataset name is",
            },
            kind,
            declares: is_mudata(kind),
        }),
    }
}

pub(super) fn is_mudata(kind: InputKind) -> bool {
    matches!(
        kind,
        InputKind::H5mu | InputKind::MudataZarrFolder | InputKind::MudataZarrZip
    )
}

fn zarr_version(path: &Path) -> ZarrVersion {
    if path.join("zarr.json").is_file() {
        ZarrVersion::V3
    } else {
        ZarrVersion::V2
    }
}

/// The id and name a MuData declares in its root `uns['cellucid']`; other
/// formats declare none.
fn declared_identity(path: &Path, kind: InputKind) -> (Option<String>, Option<String>) {
    let container = match kind {
        InputKind::H5mu => Container::Hdf5,
        InputKind::MudataZarrFolder => Container::ZarrFolder,
        InputKind::MudataZarrZip => Container::ZarrZip,
        _ => return (None, None),
    };
    let Ok(backend) = anndata::open_backend(path, container) else {
        return (None, None);
    };
    let text = |key: &str| {
        backend
            .read(&format!("uns/cellucid/{key}"))
            .ok()?
            .into_json()
            .into_iter()
            .next()
            .and_then(|v| match v {
                Value::String(s) if !s.trim().is_empty() => Some(s),
                _ => None,
            })
    };
    (text("id"), text("name"))
}

impl DatasetSource for RawInputSource {
    fn format(&self) -> SourceFormat {
        SourceFormat::Input(self.raw.kind())
    }

    fn datasets(&self) -> &[DatasetInfo] {
        &self.info
    }

    fn open(&self, id: &str, key: &RelativeKey) -> Result<Arc<dyn SourceFile>, SourceError> {
        if id != self.info[0].id {
            return Err(SourceError::UnknownDataset { id: id.to_owned() });
        }
        // No folder-viewer files: the byte viewer decodes this format itself.
        Err(SourceError::NotFound { key: key.clone() })
    }

    fn reads_may_block(&self) -> bool {
        false
    }

    fn counts_known(&self) -> bool {
        self.counts_known
    }

    fn raw_store(&self, id: &str) -> Option<Arc<RawStore>> {
        (id == self.info[0].id).then(|| Arc::clone(&self.raw))
    }
}
