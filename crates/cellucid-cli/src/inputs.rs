//! Turning PATH arguments into dataset sources.

use std::path::{Path, PathBuf};

use cellucid_core::anndata::AnnDataError;
use cellucid_core::formats::FormatError;
use cellucid_core::{open_inputs, InputError, OpenError, OpenedInputs};

use crate::anndata_args::AnnDataArgs;
use crate::error::CliError;

/// Opens every PATH with [`cellucid_core::open_inputs`] (detection by
/// content, unique ids, background preparation) and turns its errors into
/// CLI lines with flag hints.
///
/// # Errors
/// The first input that cannot be served, with its path in the message.
pub(crate) fn open_all(paths: &[PathBuf], anndata: &AnnDataArgs) -> Result<OpenedInputs, CliError> {
    open_inputs(paths, &anndata.options()).map_err(|err| match err {
        InputError::Open(err) => open_error(&err),
        InputError::AnnData { path, source } => anndata_error(&path, &source),
        InputError::ChosenIdNeedsOneInput { .. } => CliError::usage(
            "--dataset-id and --dataset-name need exactly one AnnData PATH (.h5ad or Zarr); with several inputs each takes its id from uns['cellucid'] or its file name",
        ),
        InputError::Format(err @ FormatError::NeedsIdentity { .. }) => CliError::usage(format!(
            "{err}; name it with --dataset-name NAME --dataset-id ID"
        )),
        other => CliError::operator(other.to_string()),
    })
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
