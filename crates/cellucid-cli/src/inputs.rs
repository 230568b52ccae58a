//! Turning PATH arguments into dataset sources.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cellucid_core::anndata::{AnnDataError, AnnDataSource};
use cellucid_core::{detect_input, DatasetSource, ExportSource, InputKind, OpenError};
use cellucid_http::unique_anndata_id;

use crate::anndata_args::AnnDataArgs;
use crate::error::CliError;

/// The sources in PATH order, and notes to print (renamed ids).
pub(crate) type OpenedInputs = (Vec<Arc<dyn DatasetSource>>, Vec<String>);

/// One opened input.
enum Opened {
    Export(ExportSource),
    AnnData(Box<AnnDataSource>),
}

/// Opens every PATH, in order, recognising each by its content, and gives
/// AnnData inputs unique ids (CONTRACT §1). Returns the sources and the
/// notes to print (renamed ids).
///
/// # Errors
/// The first input that cannot be served, with its path in the message.
pub(crate) fn open_all(paths: &[PathBuf], anndata: &AnnDataArgs) -> Result<OpenedInputs, CliError> {
    let mut opened = Vec::with_capacity(paths.len());
    let mut n_anndata = 0;
    for path in paths {
        let kind = detect_input(path).map_err(|e| open_error(&e))?;
        match kind {
            InputKind::ExportDataset | InputKind::ExportCatalog => {
                opened.push(Opened::Export(
                    ExportSource::open(path).map_err(|e| open_error(&e))?,
                ));
            }
            _ => {
                n_anndata += 1;
                let source = AnnDataSource::open(path, anndata.options())
                    .map_err(|err| anndata_error(path, &err))?;
                opened.push(Opened::AnnData(Box::new(source)));
            }
        }
    }
    if (anndata.dataset_id.is_some() || anndata.dataset_name.is_some())
        && (n_anndata != 1 || paths.len() != 1)
    {
        return Err(CliError::usage(
            "--dataset-id and --dataset-name need exactly one AnnData PATH (.h5ad or Zarr); with several inputs each takes its id from uns['cellucid'] or its file name",
        ));
    }
    // Export ids are fixed (the viewer checks them); AnnData ids give way.
    let mut taken: Vec<String> = opened
        .iter()
        .filter_map(|o| match o {
            Opened::Export(e) => Some(e.datasets().iter().map(|d| d.id.clone())),
            Opened::AnnData(_) => None,
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
        }
    }
    Ok((sources, notes))
}

fn open_error(err: &OpenError) -> CliError {
    match err {
        OpenError::InvalidManifest { .. } => CliError::operator(err.to_string()),
        _ => CliError::usage(err.to_string()),
    }
}

/// An AnnData input that cannot be served: one line naming the file and the
/// element. A path that is no store is a usage error (2), a broken store an
/// operator error (1).
pub(crate) fn anndata_error(path: &Path, err: &AnnDataError) -> CliError {
    match err {
        AnnDataError::Open { .. } => CliError::usage(err.to_string()),
        _ => CliError::operator(format!("{}: {err}", path.display())),
    }
}
