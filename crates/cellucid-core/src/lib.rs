//! Dataset model and readers for cellucid-rs.
//!
//! This crate knows how to find, describe and read the datasets the Cellucid
//! viewer loads; it knows nothing about HTTP. A pipeline can link it alone.
//!
//! The seam every reader plugs into is [`DatasetSource`]: a source lists its
//! datasets and opens a dataset's files by [`RelativeKey`], handing back a
//! [`SourceFile`] that supports ranged reads and carries a strong identity for
//! ETags. Nothing in that seam takes a filesystem path, so a source may equally
//! be a folder, an HDF5 file or a synthesised view.
//!
//! The first implementation is [`ExportSource`], for Cellucid export folders
//! (a single dataset folder or a `datasets.json` catalog), with file access
//! confined by `cap-std` and files read with positioned reads (never mapped:
//! a file truncated while served must fail a read, not end the process).

pub mod anndata;
mod detect;
mod error;
mod export;
mod file;
mod input;
mod key;
mod pool;
pub mod session;
mod source;
#[cfg(test)]
#[path = "../tests/support/testdata.rs"]
mod testdata;

pub use detect::{detect_input, InputKind};
pub use error::{OpenError, SourceError};
pub use export::ExportSource;
pub use file::{FileIdentity, MemoryFile, SourceFile};
pub use input::{
    open_input, open_inputs, unique_anndata_id, InputError, OpenedInputs, RESERVED_NAMES,
};
pub use key::{KeyError, RelativeKey};
pub use source::{DatasetInfo, DatasetSource, SourceFormat};
