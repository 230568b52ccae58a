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
    /// A name asked for (a gene, an obs column, an obsm key) is not in the
    /// element that lists such names.
    #[error("{element} has no entry named {name:?} among its {count} names")]
    UnknownName {
        /// Where the name was looked up (`var`, `obs`, `obsm`).
        element: String,
        /// The name asked for.
        name: String,
        /// How many names the element has.
        count: usize,
    },
    /// The store is in a format this build leaves out (a cargo feature of
    /// `cellucid-core` that was switched off).
    #[error("this build reads no {what} stores (cellucid-core was built without its `{feature}` feature)")]
    Unsupported {
        /// The format (`HDF5`, `Zarr`).
        what: &'static str,
        /// The cargo feature that reads it.
        feature: &'static str,
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
    /// An element a launch choice names is absent; the group's keys that do
    /// exist come with it, so the message can offer them.
    #[error("element {group}/{key} is missing; {group} holds: {}", list_or_none(.available))]
    MissingKey {
        /// The group searched (`obsm`, `obsp`, `obs`, `var`, `layers`, …).
        group: String,
        /// The key that was asked for.
        key: String,
        /// The keys the group holds, sorted.
        available: Vec<String>,
    },
    /// A modality was asked for, and the store has one feature space (an
    /// AnnData, not a MuData with `mod/`).
    #[error("{modality:?} names a modality, and this store has one feature space: a modality is one of a MuData's mod/ members")]
    NoModalities {
        /// The modality asked for.
        modality: String,
    },
    /// A default vector field that the store does not declare, or that no
    /// embedding shown at launch draws (docs/FORMATS.md, "Serving choices").
    #[error("vector field {field:?} {}", if *.declared { format!("is declared, but the embedding it is drawn over (obsm X_<basis> of each {field}_<basis>) is not shown when the store opens; fields drawn on a shown embedding: {}", list_or_none(.available)) } else { format!("is not declared by this store; its vector fields (obsm <field>_<basis> as wide as X_<basis>): {}", list_or_none(.available)) })]
    VectorField {
        /// The field asked for.
        field: String,
        /// Whether the store declares it (then it is not drawn).
        declared: bool,
        /// The fields that would do, sorted.
        available: Vec<String>,
    },
    /// The file ends before the end its own header declares: it was cut
    /// short (an interrupted copy or download).
    #[error("{path}: truncated: {} of {} bytes, the length its {what} declares", thousands(*.actual), thousands(*.expected))]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What declares the length (`HDF5 superblock`).
        what: &'static str,
        /// Its size on disk.
        actual: u64,
        /// The size its header declares.
        expected: u64,
    },
    /// The file's structure is broken where its format says where to look
    /// (a zip without its central directory); its length cannot tell how
    /// much is missing.
    #[error("{path}: damaged or truncated ({} bytes): {reason}", thousands(*.actual))]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Its size on disk.
        actual: u64,
        /// What is broken.
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

/// `a, b, c`, or `nothing`.
fn list_or_none(keys: &[String]) -> String {
    if keys.is_empty() {
        "nothing".to_owned()
    } else {
        keys.join(", ")
    }
}

/// `1,772,368`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_written_with_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(1_772_368), "1,772,368");
    }
}
