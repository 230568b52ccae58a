//! Recognising what an input path is, by its content rather than its name.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::OpenError;

/// What kind of input a path holds.
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
        }
    }
}

const HDF5_MAGIC: &[u8; 8] = b"\x89HDF\r\n\x1a\n";
const ZIP_MAGIC: &[u8; 4] = b"PK\x03\x04";
/// HDF5 allows a user block before the superblock; the signature then sits at
/// one of these offsets.
const HDF5_SIGNATURE_OFFSETS: [u64; 5] = [0, 512, 1024, 2048, 4096];

/// Looks at `path` and says what kind of input it is.
///
/// # Errors
/// [`OpenError::Unreadable`] when the path cannot be read,
/// [`OpenError::NotADataset`] when it is none of the known inputs.
pub fn detect_input(path: &Path) -> Result<InputKind, OpenError> {
    let unreadable = |source| OpenError::Unreadable {
        path: path.to_owned(),
        source,
    };
    let meta = fs::metadata(path).map_err(unreadable)?;
    if meta.is_dir() {
        let has = |name: &str| path.join(name).is_file();
        return if has("dataset_identity.json") {
            Ok(InputKind::ExportDataset)
        } else if has("datasets.json") {
            Ok(InputKind::ExportCatalog)
        } else if has(".zgroup") || has("zarr.json") {
            Ok(InputKind::ZarrFolder)
        } else {
            Err(OpenError::NotADataset {
                path: path.to_owned(),
            })
        };
    }
    if meta.is_file() {
        let mut file = fs::File::open(path).map_err(unreadable)?;
        let mut head = [0u8; 8];
        for offset in HDF5_SIGNATURE_OFFSETS {
            if offset + 8 > meta.len() {
                break;
            }
            file.seek(SeekFrom::Start(offset)).map_err(unreadable)?;
            file.read_exact(&mut head).map_err(unreadable)?;
            if &head == HDF5_MAGIC {
                return Ok(InputKind::H5ad);
            }
            if offset == 0 && head.starts_with(ZIP_MAGIC) {
                return Ok(InputKind::ZarrZip);
            }
        }
    }
    Err(OpenError::NotADataset {
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
