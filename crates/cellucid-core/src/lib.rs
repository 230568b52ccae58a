//! Dataset model and readers for cellucid-rs.
//!
//! This crate finds, describes and reads the single-cell datasets the
//! Cellucid viewer loads — Cellucid export folders and AnnData stores
//! (`.h5ad`, Zarr v2/v3 folders, `.zarr.zip`) — lazily, and knows nothing
//! about HTTP. A pipeline links it alone; `cellucid-http` builds the server
//! on it.
//!
//! # Read an AnnData store
//!
//! [`anndata::AnnData::open`] reads metadata only (shapes, names of
//! columns, encodings); each value is read when asked for:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use cellucid_core::anndata::{AnnData, FrameColumn};
//!
//! # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/anndata/pbmc68k_reduced.h5ad");
//! // let path = "pbmc.h5ad"; (or a Zarr folder, or a .zarr.zip)
//! let adata = AnnData::open(path.as_ref())?;
//! println!("{} cells × {} genes", adata.n_obs(), adata.n_vars());
//!
//! let hes4 = adata.gene("HES4")?; // X's column for that var name, one value per cell
//! let expressing = hes4.iter().filter(|v| **v > 0.0).count();
//! println!("HES4 is expressed in {expressing} cells");
//!
//! if let FrameColumn::Categorical { codes, categories, .. } = adata.obs_values("bulk_labels")? {
//!     println!("cell 0 is a {}", categories[codes[0] as usize].to_text());
//! }
//!
//! let umap = adata.embedding("X_umap")?;
//! println!("cell 0 sits at {:?}", umap.row(0));
//! # Ok(())
//! # }
//! ```
//!
//! `examples/read_gene.rs` is the same as a program
//! (`cargo run -p cellucid-core --example read_gene -- data.h5ad HES4`).
//!
//! # Cargo features
//!
//! - `hdf5` (default): `.h5ad` files, and the HDF5 layouts of MuData, Loom
//!   and 10x, read with the pure-Rust `hdf5-reader`.
//! - `zarr` (default): Zarr v2/v3 stores, folders and `.zarr.zip`, read with
//!   `zarrs` (its Blosc codec compiles bundled C: it needs a C compiler).
//!
//! Without a feature, a store of that format is refused with
//! [`anndata::AnnDataError::Unsupported`], naming the feature; export folders
//! need neither.
//!
//! # Serve-side model
//!
//! The seam every reader plugs into is [`DatasetSource`]: a source lists its
//! datasets and opens a dataset's files by [`RelativeKey`], handing back a
//! [`SourceFile`] that supports ranged reads and carries a strong identity for
//! ETags. Nothing in that seam takes a filesystem path, so a source may equally
//! be a folder, an HDF5 file or a synthesised view. [`ExportSource`] reads
//! Cellucid export folders (a dataset folder or a `datasets.json` catalog),
//! with file access confined by `cap-std` and files read with positioned reads
//! (never mapped: a file truncated while served must fail a read, not end the
//! process); [`anndata::AnnDataSource`]
//! synthesises the folder-viewer files from an AnnData store
//! (`docs/FORMATS.md` in the repository describes both). [`open_input`]
//! recognises a path by its content and opens it as the server does.

pub mod anndata;
pub mod budget;
pub mod cache;
mod detect;
mod error;
mod export;
mod file;
pub mod formats;
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
pub use file::{Compressibility, FileIdentity, MemoryFile, SourceFile};
pub use input::{
    open_input, open_inputs, unique_anndata_id, InputError, OpenedInputs, RESERVED_NAMES,
};
pub use key::{KeyError, RelativeKey};
pub use source::{DatasetInfo, DatasetSource, SourceFormat};
