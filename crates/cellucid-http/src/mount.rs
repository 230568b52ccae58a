//! The URL layout: which dataset is served under which path, and the
//! generated `datasets.json` (docs/FORMATS.md, "Unique ids and reserved names").

use std::sync::Arc;

use bytes::Bytes;
use cellucid_core::{DatasetInfo, DatasetSource, RelativeKey};
use serde::Serialize;

pub use cellucid_core::{unique_anndata_id, RESERVED_NAMES};

/// One dataset placed in the URL space.
#[derive(Debug, Clone)]
pub struct Mount {
    /// What the dataset's catalog says about it.
    pub info: DatasetInfo,
    /// The source that opens its files.
    pub source: Arc<dyn DatasetSource>,
    /// The URL path segment(s) it is served under, without slashes
    /// (`pbmc68k-f32`).
    pub prefix: String,
    /// Whether its files are also served at `/` (exactly one dataset).
    pub at_root: bool,
    /// The `path` given in `/_cellucid/datasets`: `"/"` for a dataset given
    /// alone as a folder, else `"/<prefix>/"`.
    pub advertised_path: String,
}

impl Mount {
    /// What the dataset is now: its source's current description (counts
    /// change when an AnnData input is re-opened), else the one placed.
    pub fn current_info(&self) -> DatasetInfo {
        self.source
            .current_info(&self.info.id)
            .unwrap_or_else(|| self.info.clone())
    }
}

/// A dataset layout that cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// No dataset was given.
    #[error("no dataset to serve")]
    Empty,
    /// Two datasets have the same id or URL path.
    #[error("two datasets are both served as {0:?}; ids and paths must be unique (rename one export's id, or serve them separately)")]
    Clash(String),
    /// A dataset id or path is one of the server's own route names.
    #[error("dataset {0:?} uses a name the server reserves for its own routes ({reserved})", reserved = RESERVED_NAMES.join(", "))]
    Reserved(String),
}

/// Every dataset of a server, in catalog order, with its URL placement.
#[derive(Debug, Clone)]
pub struct Layout {
    mounts: Vec<Mount>,
    /// The one source given, when it has a catalog of its own: served as is.
    catalog_source: Option<Arc<dyn DatasetSource>>,
    generated_catalog: Bytes,
}

impl Layout {
    /// Places the datasets of `sources` (in the order given) in the URL space.
    ///
    /// # Errors
    /// [`LayoutError`] when there is nothing to serve, ids or paths clash, or
    /// a dataset uses a reserved name.
    pub fn new(sources: &[Arc<dyn DatasetSource>]) -> Result<Self, LayoutError> {
        let total: usize = sources.iter().map(|s| s.datasets().len()).sum();
        if total == 0 {
            return Err(LayoutError::Empty);
        }
        let catalog_source = match sources {
            [only] if only.catalog().is_some() => Some(Arc::clone(only)),
            _ => None,
        };
        let alone = sources.len() == 1;
        let mut mounts: Vec<Mount> = Vec::with_capacity(total);
        for source in sources {
            for info in source.datasets() {
                let prefix = info
                    .catalog_path
                    .as_deref()
                    .map(|p| p.trim_end_matches('/').to_owned())
                    .unwrap_or_else(|| info.id.clone());
                let first_segment = prefix.split('/').next().unwrap_or(&prefix);
                if RESERVED_NAMES.contains(&info.id.as_str())
                    || RESERVED_NAMES.contains(&first_segment)
                {
                    return Err(LayoutError::Reserved(info.id.clone()));
                }
                if RelativeKey::parse(&prefix).is_err() {
                    return Err(LayoutError::Reserved(prefix));
                }
                if let Some(clash) = mounts
                    .iter()
                    .find(|m| m.info.id == info.id || m.prefix.eq_ignore_ascii_case(&prefix))
                {
                    let what = if clash.info.id == info.id {
                        info.id.clone()
                    } else {
                        prefix
                    };
                    return Err(LayoutError::Clash(what));
                }
                let given_as_folder = alone && info.catalog_path.is_none();
                mounts.push(Mount {
                    info: info.clone(),
                    source: Arc::clone(source),
                    advertised_path: if given_as_folder {
                        "/".to_owned()
                    } else {
                        format!("/{prefix}/")
                    },
                    prefix,
                    at_root: total == 1,
                });
            }
        }
        let generated_catalog = generate_catalog(&mounts);
        Ok(Self {
            mounts,
            catalog_source,
            generated_catalog,
        })
    }

    /// The datasets in catalog order.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// The source whose own `datasets.json` is served as is, if any.
    pub fn catalog_source(&self) -> Option<&Arc<dyn DatasetSource>> {
        self.catalog_source.as_ref()
    }

    /// The generated `datasets.json` (used when no catalog is served as is).
    pub fn generated_catalog(&self) -> &Bytes {
        &self.generated_catalog
    }

    /// The generated `datasets.json` with every dataset's current counts.
    pub(crate) fn current_catalog(&self) -> Bytes {
        generate_catalog(&self.mounts)
    }

    /// The dataset serving `path` (decoded, without the leading `/`) and the
    /// key inside it: the longest matching prefix, else the root dataset.
    pub(crate) fn resolve<'a>(&'a self, path: &'a str) -> Option<(&'a Mount, &'a str)> {
        let by_prefix = self
            .mounts
            .iter()
            .filter_map(|m| {
                let rest = path.strip_prefix(m.prefix.as_str())?.strip_prefix('/')?;
                Some((m, rest))
            })
            .max_by_key(|(m, _)| m.prefix.len());
        by_prefix.or_else(|| self.mounts.iter().find(|m| m.at_root).map(|m| (m, path)))
    }
}

#[derive(Serialize)]
struct CatalogDoc<'a> {
    version: u32,
    default: &'a str,
    datasets: Vec<CatalogEntry<'a>>,
}

#[derive(Serialize)]
struct CatalogEntry<'a> {
    id: &'a str,
    path: String,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    n_cells: u64,
    n_genes: u64,
}

/// `datasets.json` version 1 in PATH order; `default` is the first dataset.
fn generate_catalog(mounts: &[Mount]) -> Bytes {
    let doc = CatalogDoc {
        version: 1,
        default: mounts.first().map_or("", |m| m.info.id.as_str()),
        datasets: mounts
            .iter()
            .map(|m| {
                let now = m.current_info();
                CatalogEntry {
                    id: &m.info.id,
                    path: format!("{}/", m.prefix),
                    name: &m.info.name,
                    description: m.info.description.as_deref(),
                    n_cells: now.n_cells,
                    n_genes: now.n_genes,
                }
            })
            .collect(),
    };
    Bytes::from(serde_json::to_vec_pretty(&doc).unwrap_or_default())
}
