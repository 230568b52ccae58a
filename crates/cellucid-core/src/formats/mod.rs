//! The input formats of cellucid 0.9.5 beyond AnnData — MuData (`.h5mu`,
//! Zarr), Loom, 10x Cell Ranger `.h5` and `outs/`, MatrixMarket folders and R
//! objects — recognised by its registry and served to the byte viewer as
//! they are (docs/FORMATS.md, "Inputs and how they are recognised").

mod classify;
mod counts;
mod loom;
mod mudata;
mod part;
mod prefix;
mod registry;
mod source;

use std::path::PathBuf;

pub use classify::{classify, Classified};
pub use mudata::ReadableSource;
pub use source::RawInputSource;

use std::path::Path;

use crate::anndata::AnnDataOptions;
use crate::detect::InputKind;

/// Opens an input this server reads as well as serves raw — a MuData (its
/// modality) or a Loom file (its cells, when `col_attrs` hold an
/// embedding) — for both viewer generations; other kinds, and those
/// without what a folder viewer needs, for the byte viewer only.
///
/// # Errors
/// [`FormatError`] when it is unnamed, unreadable, or a launch choice does
/// not fit it.
pub fn open_readable(
    path: &Path,
    classified: &Classified,
    options: &AnnDataOptions,
) -> Result<ReadableSource, FormatError> {
    match classified.kind {
        InputKind::H5mu | InputKind::MudataZarrFolder | InputKind::MudataZarrZip => {
            mudata::open_mudata(path, classified, options)
        }
        InputKind::Loom => loom::open_loom(path, classified, options),
        _ => RawInputSource::from_classified(path, classified.clone(), options)
            .map(|source| ReadableSource::RawOnly(Box::new(source), None)),
    }
}

use crate::anndata::AnnDataError;

/// Why an input of these formats cannot be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Nothing names the dataset: formats other than AnnData and MuData carry
    /// no Cellucid identity, and this MuData declares none.
    #[error("{path}: {missing} required: {}", if *declares { format!("this {} declares no Cellucid identity of its own (uns['cellucid']['id'] and ['name'])", kind.describe()) } else { format!("{} is read by the browser alone, so no Cellucid identity can be taken from it", kind.describe_with_article()) })]
    NeedsIdentity {
        /// The input.
        path: PathBuf,
        /// What is missing, with its verb.
        missing: &'static str,
        /// The input kind.
        kind: InputKind,
        /// Whether the format can declare an identity (MuData).
        declares: bool,
    },
    /// The modality asked for is not one of the MuData's.
    #[error("{path}: {modality:?} is not one of its modalities ({})", available.join(", "))]
    UnknownModality {
        /// The input.
        path: PathBuf,
        /// The modality asked for.
        modality: String,
        /// The modalities it has, in stored order.
        available: Vec<String>,
    },
    /// A launch choice does not fit what was read (a MuData's modality, a
    /// Loom file's cells).
    #[error("{path} ({element}): {source}")]
    AnnData {
        /// The input.
        path: PathBuf,
        /// The element read as an AnnData (`mod/rna`, `loom`).
        element: String,
        /// What is wrong (boxed: the AnnData errors carry key lists, and a
        /// result's error should stay small).
        #[source]
        source: Box<AnnDataError>,
    },
    /// The input cannot be read as its kind.
    #[error("{path}: {reason}")]
    Unreadable {
        /// The input.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}
