//! Recognising what an input path is, by its content rather than its name.

use std::path::Path;

use crate::error::OpenError;

/// What kind of input a path holds (docs/FORMATS.md, "Inputs and how they
/// are recognised").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputKind {
    /// A folder with `dataset_identity.json`: one exported dataset.
    ExportDataset,
    /// A folder with `datasets.json`: a catalog of exported datasets.
    ExportCatalog,
    /// An HDF5 file (an `.h5ad`, whatever its name).
    H5ad,
    /// A Zarr store folder (v2 `.zgroup` or v3 `zarr.json`).
    ZarrFolder,
    /// A ZIP archive (a zipped Zarr store).
    ZarrZip,
    /// A MuData HDF5 file (root `encoding-type` `mudata`).
    H5mu,
    /// A MuData Zarr store folder.
    MudataZarrFolder,
    /// A zipped MuData Zarr store.
    MudataZarrZip,
    /// A Loom file (HDF5 named `.loom`).
    Loom,
    /// A 10x Cell Ranger HDF5 matrix (HDF5 named `.h5`).
    TenxH5,
    /// A Cell Ranger `outs/` folder (holding `filtered_feature_bc_matrix.h5`).
    TenxOuts,
    /// A MatrixMarket folder (`matrix.mtx.gz`, or GEO's `GSM…_matrix.mtx.gz`).
    Mtx,
    /// A serialised R object (`.rds`, `.rds.gz`).
    Rds,
    /// R data (`.rda`, `.RData`, gzipped or not).
    Rda,
}

impl InputKind {
    /// A short human name, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::ExportDataset => "export folder",
            Self::ExportCatalog => "export catalog",
            Self::H5ad => "AnnData .h5ad",
            Self::ZarrFolder => "AnnData Zarr",
            Self::ZarrZip => "AnnData .zarr.zip",
            Self::H5mu => "MuData .h5mu",
            Self::MudataZarrFolder => "MuData Zarr",
            Self::MudataZarrZip => "zipped MuData Zarr",
            Self::Loom => "Loom file",
            Self::TenxH5 => "10x Cell Ranger HDF5 file",
            Self::TenxOuts => "Cell Ranger outs/ folder",
            Self::Mtx => "MatrixMarket folder",
            Self::Rds => "R object (.rds)",
            Self::Rda => "R data file (.rda, .RData)",
        }
    }

    /// [`InputKind::describe`] after its article ("a Loom file", "an R
    /// object (.rds)"), for sentences.
    pub fn describe_with_article(self) -> String {
        let text = self.describe();
        let vowel = text.starts_with(['A', 'E', 'I', 'O', 'U', 'a', 'e', 'i', 'o', 'u'])
            || text.starts_with("R ");
        format!("{} {text}", if vowel { "an" } else { "a" })
    }

    /// The input-format id of 0.9.5's registry (`h5ad`, `loom`, `tenx-h5`,
    /// …), as `/_cellucid/health` and the `kind` of `/_cellucid/datasets`
    /// name it; `None` for export folders, which are no registry format.
    pub fn format_id(self) -> Option<&'static str> {
        Some(match self {
            Self::ExportDataset | Self::ExportCatalog => return None,
            Self::H5ad => "h5ad",
            Self::ZarrFolder | Self::ZarrZip => "zarr",
            Self::H5mu => "h5mu",
            Self::MudataZarrFolder | Self::MudataZarrZip => "mudata-zarr",
            Self::Loom => "loom",
            Self::TenxH5 => "tenx-h5",
            Self::TenxOuts => "tenx-outs",
            Self::Mtx => "mtx",
            Self::Rds => "rds",
            Self::Rda => "rda",
        })
    }

    /// Whether this is an AnnData store (read and synthesised for both viewer
    /// generations) rather than a format served to the byte viewer as is.
    pub fn is_anndata(self) -> bool {
        matches!(self, Self::H5ad | Self::ZarrFolder | Self::ZarrZip)
    }
}

/// Looks at `path` and says what kind of input it is: by its content and,
/// where the content carries no mark (Loom, 10x, R files), by its name, as
/// cellucid 0.9.5 does ([`crate::formats::classify`]).
///
/// # Errors
/// [`OpenError::Unreadable`] when the path cannot be read,
/// [`OpenError::Refused`] for a format Cellucid never opens (h5Seurat),
/// [`OpenError::NotADataset`] when it is none of the known inputs.
pub fn detect_input(path: &Path) -> Result<InputKind, OpenError> {
    crate::formats::classify(path).map(|c| c.kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const HDF5_MAGIC: &[u8; 8] = b"\x89HDF\r\n\x1a\n";
    const ZIP_MAGIC: &[u8; 4] = b"PK\x03\x04";

    #[test]
    fn files_are_recognised_by_magic_not_name() {
        let dir = tempfile::tempdir().unwrap();
        let h5 = dir.path().join("weird.zip");
        fs::write(&h5, [&HDF5_MAGIC[..], &[0u8; 64]].concat()).unwrap();
        assert_eq!(detect_input(&h5).unwrap(), InputKind::H5ad);
        let zip = dir.path().join("data.h5ad");
        fs::write(&zip, [&ZIP_MAGIC[..], &[0u8; 64]].concat()).unwrap();
        assert_eq!(detect_input(&zip).unwrap(), InputKind::ZarrZip);
        let text = dir.path().join("notes.h5ad");
        fs::write(&text, "hello").unwrap();
        assert!(matches!(
            detect_input(&text),
            Err(OpenError::NotADataset { .. })
        ));
    }

    #[test]
    fn folders_are_recognised_by_markers() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            detect_input(dir.path()),
            Err(OpenError::NotADataset { .. })
        ));
        fs::write(dir.path().join(".zgroup"), "{}").unwrap();
        assert_eq!(detect_input(dir.path()).unwrap(), InputKind::ZarrFolder);
        fs::write(dir.path().join("datasets.json"), "{}").unwrap();
        assert_eq!(detect_input(dir.path()).unwrap(), InputKind::ExportCatalog);
        fs::write(dir.path().join("dataset_identity.json"), "{}").unwrap();
        assert_eq!(detect_input(dir.path()).unwrap(), InputKind::ExportDataset);
        let missing = dir.path().join("missing");
        assert!(matches!(
            detect_input(&missing),
            Err(OpenError::Unreadable { .. })
        ));
    }
}
