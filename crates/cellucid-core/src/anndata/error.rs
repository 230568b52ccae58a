//! Errors of the AnnData readers.

use std::path::PathBuf;

use crate::budget::BudgetError;

/// A failure to read an AnnData store or one of its elements.
///
/// Every variant names the element (its path inside the store) so a message
/// tells the user where to look.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnnDataError {
    /// The file or folder could not be opened as a store at all.
    #[error("{path}: cannot open as {what}: {reason}")]
    Open {
        /// The input path.
        path: PathBuf,
        /// What it was opened as (`HDF5 file`, `Zarr store`, …).
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// A required element is absent.
    #[error("element {element:?} is missing")]
    Missing {
        /// Path of the element inside the store.
        element: String,
    },
    /// An element uses an encoding this reader does not know.
    #[error("element {element:?} has encoding {encoding:?} version {version:?}, which this reader does not support")]
    UnknownEncoding {
        /// Path of the element.
        element: String,
        /// Its `encoding-type`.
        encoding: String,
        /// Its `encoding-version`.
        version: String,
    },
    /// An element exists but its content is not what its encoding promises
    /// (wrong shape, wrong type, inconsistent lengths…).
    #[error("element {element:?} is invalid: {reason}")]
    Invalid {
        /// Path of the element.
        element: String,
        /// What is wrong.
        reason: String,
    },
    /// The storage layer failed to read or decode bytes (truncated file,
    /// corrupt chunk, unsupported filter…).
    #[error("cannot read element {element:?}: {reason}")]
    Read {
        /// Path of the element.
        element: String,
        /// What the storage layer said.
        reason: String,
    },
    /// Reading the element needs more memory than the budget grants
    /// (`crate::budget`): a claim larger than the whole budget, or a busy
    /// budget.
    #[error("cannot read element {element:?}: {source}")]
    OverBudget {
        /// Path of the element.
        element: String,
        /// What the budget said.
        #[source]
        source: BudgetError,
    },
}

impl AnnDataError {
    pub(crate) fn over_budget(element: &str, source: BudgetError) -> Self {
        Self::OverBudget {
            element: element.to_owned(),
            source,
        }
    }

    /// Whether this is a busy budget (try again later: 503) rather than a
    /// fault of the file.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            Self::OverBudget {
                source: BudgetError::Busy { .. },
                ..
            }
        )
    }

    pub(crate) fn invalid(element: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            element: element.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn read(element: &str, reason: impl std::fmt::Display) -> Self {
        Self::Read {
            element: element.to_owned(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn missing(element: &str) -> Self {
        Self::Missing {
            element: element.to_owned(),
        }
    }
}

/// Shorthand for results of the AnnData layer.
pub type Result<T, E = AnnDataError> = std::result::Result<T, E>;
