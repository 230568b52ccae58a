//! The input formats of cellucid 0.9.5 beyond AnnData — MuData (`.h5mu`,
//! Zarr), Loom, 10x Cell Ranger `.h5` and `outs/`, MatrixMarket folders and R
//! objects — recognised by its registry and served to the byte viewer as
//! they are (docs/FORMATS.md, "Inputs and how they are recognised").

mod classify;
mod counts;
mod mudata;
mod prefix;
mod registry;
mod source;

use std::path::PathBuf;

pub use classify::{classify, Classified};
pub use mudata::{open_mudata, MudataSource};
pub use source::RawInputSource;

use crate::anndata::AnnDataError;

/// Why an input of these formats cannot be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Nothing names the dataset: formats other than AnnData and MuData carry
    /// no Cellucid identity, and this MuData declares none.
    #[error("{path}: {missing} required: {}", if *declares { format!("this {kind} declares no Cellucid identity of its own (uns['cellucid']['id'] and ['name'])") } else { format!("a {kind} is read by the browser alone, so no Cellucid identity can be taken from it") })]
    NeedsIdentity {
        /// The input.
        path: PathBuf,
        /// What is missing, with its verb.
        missing: &'static str,
        /// The input kind, described.
        kind: &'static str,
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
    /// A launch choice does not fit the MuData's modality.
    #[error("{path} (modality {modality}): {source}")]
    AnnData {
        /// The input.
        path: PathBuf,
        /// The modality served.
        modality: String,
        /// What is wrong.
        #[source]
        source: AnnDataError,
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
