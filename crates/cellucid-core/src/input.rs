//! Opening inputs: from locations to dataset sources, with the detection,
//! dataset ids and background preparation every program serving them needs
//! (docs/FORMATS.md, "Recognising inputs" and "Dataset ids").

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::anndata::{AnnDataError, AnnDataOptions, AnnDataSource};
use crate::formats::{open_readable, FormatError, RawInputSource, ReadableSource};
use crate::{detect_input, DatasetSource, ExportSource, InputKind, OpenError};

/// Names no dataset may take: they are the server's own routes.
pub const RESERVED_NAMES: [&str; 7] = [
    "_cellucid",
    "assets",
    "index.html",
    "datasets.json",
    "favicon.ico",
    "site.webmanifest",
    "browserconfig.xml",
];

/// The id an AnnData input is served under, given the id it asks for and
/// the ids already taken (compared case-insensitively, as URL paths are): a
/// reserved name gets `-data`, a clash `-2`, `-3`, …
pub fn unique_anndata_id(wanted: &str, taken: &[String]) -> String {
    let base = if RESERVED_NAMES.contains(&wanted.to_ascii_lowercase().as_str()) {
        format!("{wanted}-data")
    } else {
        wanted.to_owned()
    };
    let free = |id: &str| !taken.iter().any(|t| t.eq_ignore_ascii_case(id));
    if free(&base) {
        return base;
    }
    (2u64..)
        .map(|n| format!("{base}-{n}"))
        .find(|id| free(id))
        .unwrap_or(base)
}

/// Why an input cannot be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The path is unreadable, no dataset, or a broken export folder.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// An AnnData store that cannot be served.
    #[error("{}: {source}", path.display())]
    AnnData {
        /// The store.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: AnnDataError,
    },
    /// An input of another format (MuData, Loom, 10x, MatrixMarket, R) that
    /// cannot be served.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A dataset id or name was chosen, but not for exactly one AnnData input.
    #[error("a chosen dataset id or name applies to exactly one AnnData input and nothing else; {anndata} AnnData input(s) of {total} were given")]
    ChosenIdNeedsOneInput {
        /// AnnData inputs given.
        anndata: usize,
        /// Inputs given.
        total: usize,
    },
}

/// Opened inputs, in the order given.
#[derive(Debug)]
#[non_exhaustive]
pub struct OpenedInputs {
    /// One source per input.
    pub sources: Vec<Arc<dyn DatasetSource>>,
    /// What a user should be told: renamed ids, the serving choices made for
    /// each AnnData input.
    pub notes: Vec<String>,
}

/// One opened input.
enum Opened {
    Export(ExportSource),
    AnnData(Box<AnnDataSource>),
    Raw(Box<RawInputSource>),
}

/// Opens one input location, recognising it by its content.
///
/// # Errors
/// [`InputError`] when it cannot be served.
pub fn open_input(
    location: &Path,
    options: &AnnDataOptions,
) -> Result<Arc<dyn DatasetSource>, InputError> {
    let mut opened = open_inputs(std::slice::from_ref(&location.to_path_buf()), options)?;
    opened
        .sources
        .pop()
        .ok_or(InputError::Open(OpenError::NotADataset {
            path: location.to_owned(),
        }))
}

/// Opens every location, in order, recognising each by its content; gives
/// AnnData inputs unique ids (export ids are fixed: the viewer checks them)
/// and starts their background preparation of the folder-viewer files.
///
/// # Errors
/// The first input that cannot be served, with its path.
pub fn open_inputs(
    locations: &[PathBuf],
    options: &AnnDataOptions,
) -> Result<OpenedInputs, InputError> {
    let mut opened = Vec::with_capacity(locations.len());
    for path in locations {
        match detect_input(path)? {
            InputKind::ExportDataset | InputKind::ExportCatalog => {
                opened.push(Opened::Export(ExportSource::open(path)?));
            }
            kind if !kind.is_anndata() => {
                let classified = crate::formats::classify(path)?;
                match open_readable(path, &classified, options)? {
                    ReadableSource::Read(source) => opened.push(Opened::AnnData(source)),
                    ReadableSource::RawOnly(source, why) => {
                        if let Some(why) = why {
                            tracing::warn!(path = %path.display(), "{why}");
                        }
                        opened.push(Opened::Raw(source));
                    }
                }
            }
            _ => {
                let source = AnnDataSource::open(path, options.clone()).map_err(|source| {
                    InputError::AnnData {
                        path: path.clone(),
                        source,
                    }
                })?;
                opened.push(Opened::AnnData(Box::new(source)));
            }
        }
    }
    let n_anndata = opened
        .iter()
        .filter(|o| matches!(o, Opened::AnnData(_) | Opened::Raw(_)))
        .count();
    if (options.dataset_id.is_some() || options.dataset_name.is_some())
        && (n_anndata != 1 || locations.len() != 1)
    {
        return Err(InputError::ChosenIdNeedsOneInput {
            anndata: n_anndata,
            total: locations.len(),
        });
    }
    let mut taken: Vec<String> = opened
        .iter()
        .filter_map(|o| match o {
            Opened::Export(e) => Some(e.datasets().iter().map(|d| d.id.clone())),
            Opened::AnnData(_) | Opened::Raw(_) => None,
        })
        .flatten()
        .collect();
    let mut notes = Vec::new();
    let mut sources: Vec<Arc<dyn DatasetSource>> = Vec::with_capacity(opened.len());
    for o in opened {
        match o {
            Opened::Export(e) => sources.push(Arc::new(e)),
            Opened::AnnData(mut a) => {
                let wanted = a.datasets()[0].id.clone();
                let id = unique_anndata_id(&wanted, &taken);
                if id != wanted {
                    notes.push(format!(
                        "{}: id {wanted:?} is taken or reserved; serving it as {id:?}",
                        a.anndata().path().display()
                    ));
                    a.set_id(id.clone());
                }
                taken.push(id);
                for line in a.serving_notes() {
                    notes.push(format!("{}: {line}", a.datasets()[0].id));
                }
                a.prepare_in_background();
                sources.push(Arc::new(*a));
            }
            Opened::Raw(mut r) => {
                let wanted = r.datasets()[0].id.clone();
                let id = unique_anndata_id(&wanted, &taken);
                if id != wanted {
                    notes.push(format!(
                        "id {wanted:?} is taken or reserved; serving this {} as {id:?}",
                        r.kind().describe()
                    ));
                    r.set_id(id.clone());
                }
                taken.push(id);
                sources.push(Arc::new(*r));
            }
        }
    }
    Ok(OpenedInputs { sources, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_and_taken_ids_give_way() {
        let taken = vec!["pbmc".to_owned(), "PBMC-2".to_owned()];
        assert_eq!(unique_anndata_id("pbmc", &taken), "pbmc-3");
        assert_eq!(unique_anndata_id("other", &taken), "other");
        assert_eq!(unique_anndata_id("assets", &taken), "assets-data");
        assert_eq!(unique_anndata_id("_cellucid", &[]), "_cellucid-data");
    }

    #[test]
    fn a_path_that_is_no_dataset_is_an_open_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = open_input(dir.path(), &AnnDataOptions::default()).unwrap_err();
        assert!(
            matches!(err, InputError::Open(OpenError::NotADataset { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn a_chosen_id_needs_exactly_one_anndata_input() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("dataset_identity.json"),
            r#"{"version": 3, "id": "x", "name": "X", "stats": {"n_cells": 1, "n_genes": 1}}"#,
        )
        .unwrap();
        let options = AnnDataOptions {
            dataset_id: Some("mine".into()),
            ..AnnDataOptions::default()
        };
        let err = open_inputs(&[dir.path().to_owned()], &options).unwrap_err();
        assert!(
            matches!(
                err,
                InputError::ChosenIdNeedsOneInput {
                    anndata: 0,
                    total: 1
                }
            ),
            "{err:?}"
        );
    }
}
