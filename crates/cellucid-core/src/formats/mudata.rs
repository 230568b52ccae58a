//! A MuData (`.h5mu`, MuData Zarr) for both viewer generations: the byte
//! viewer gets the whole store as it is (as 0.9.5 serves it), the folder
//! viewer the files of one modality, read as the AnnData it is
//! (docs/FORMATS.md, "Inputs and how they are recognised").

use std::path::Path;

use super::classify::Classified;
use super::counts::{default_modality, modality_names};
use super::part::{serve_part, Part, PartReader};
use super::source::{identity, RawInputSource};
use super::FormatError;
use crate::anndata::{
    self, store::KeyStore, AnnDataOptions, AnnDataSource, Container, RawLayout, StoreKind,
    ZarrVersion,
};
use crate::detect::InputKind;

/// An opened MuData or Loom file.
#[derive(Debug)]
pub enum ReadableSource {
    /// Read as an AnnData (a MuData's modality, a Loom's cells), served to
    /// both viewer generations.
    Read(Box<AnnDataSource>),
    /// Served to the byte viewer only, and why when that is news (the
    /// modality is no AnnData this server reads).
    RawOnly(Box<RawInputSource>, Option<String>),
}

/// Opens the MuData at `path` (already classified): its id and name as
/// [`RawInputSource`] takes them, the modality `options.modality` or the one
/// it opens on by default.
///
/// # Errors
/// [`FormatError`] when it is unnamed, unreadable, or the modality asked
/// for is not one of its own.
pub(super) fn open_mudata(
    path: &Path,
    classified: &Classified,
    options: &AnnDataOptions,
) -> Result<ReadableSource, FormatError> {
    let unreadable = |reason: String| FormatError::Unreadable {
        path: path.to_owned(),
        reason,
    };
    let (container, store_kind, layout) = match classified.kind {
        InputKind::H5mu => (Container::Hdf5, StoreKind::H5ad, RawLayout::File),
        InputKind::MudataZarrFolder => {
            let version = if path.join("zarr.json").is_file() {
                ZarrVersion::V3
            } else {
                ZarrVersion::V2
            };
            (
                Container::ZarrFolder,
                StoreKind::ZarrFolder(version),
                RawLayout::Folder,
            )
        }
        InputKind::MudataZarrZip => {
            let v3 = anndata::store::ZipStore::open(path)
                .and_then(|zip| zip.get("zarr.json"))
                .map_err(|err| unreadable(err.to_string()))?
                .is_some();
            let version = if v3 { ZarrVersion::V3 } else { ZarrVersion::V2 };
            (
                Container::ZarrZip,
                StoreKind::ZarrZip(version),
                RawLayout::Zip,
            )
        }
        other => {
            return Err(unreadable(format!(
                "{} is no MuData",
                other.describe_with_article()
            )));
        }
    };
    let backend = anndata::open_backend(path, container).map_err(|e| unreadable(e.to_string()))?;
    let names = modality_names(backend.as_ref()).map_err(|e| unreadable(e.to_string()))?;
    let chosen = match &options.modality {
        Some(wanted) if names.contains(wanted) => wanted.clone(),
        Some(wanted) => {
            return Err(FormatError::UnknownModality {
                path: path.to_owned(),
                modality: wanted.clone(),
                available: names,
            })
        }
        None => default_modality(&names)
            .ok_or_else(|| unreadable("the MuData store holds no modality under mod".into()))?
            .to_owned(),
    };
    let identity = identity(path, classified.kind, options)?;
    let zarr = match store_kind {
        StoreKind::ZarrFolder(version) => Some(version),
        _ => None,
    };
    let part = Part::Group {
        container,
        store_kind,
    };
    let reader = PartReader::new(
        part,
        format!("mod/{chosen}"),
        classified,
        layout,
        zarr,
        options,
    );
    serve_part(path, classified, reader, identity, options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::DatasetSource;
    use crate::testdata;

    fn open(modality: Option<&str>) -> Result<ReadableSource, FormatError> {
        let path = testdata::path("inputs-0.9.5/tiny.h5mu");
        let classified = super::super::classify(&path).unwrap();
        let options = AnnDataOptions {
            modality: modality.map(str::to_owned),
            ..AnnDataOptions::default()
        };
        open_mudata(&path, &classified, &options)
    }

    #[test]
    fn the_modality_asked_for_is_served_and_the_raw_store_is_the_whole_file() {
        let Ok(ReadableSource::Read(source)) = open(Some("prot")) else {
            panic!("prot is an AnnData");
        };
        let info = &source.datasets()[0];
        assert_eq!(
            (info.id.as_str(), info.n_cells, info.n_genes),
            ("tiny-mudata", 6, 3)
        );
        let raw = source.raw_store("tiny-mudata").unwrap();
        assert_eq!((raw.kind(), raw.ending()), ("h5mu", ".h5mu"));
        assert_eq!(source.format().as_str(), "h5mu");
    }

    #[test]
    fn an_unknown_modality_lists_the_ones_there_are() {
        let err = open(Some("atac")).unwrap_err();
        assert!(
            matches!(&err, FormatError::UnknownModality { available, .. } if available == &["prot", "rna"]),
            "{err:?}"
        );
        assert!(err.to_string().contains("(prot, rna)"), "{err}");
    }

    #[test]
    fn the_default_modality_is_the_gene_expression_one() {
        let Ok(ReadableSource::Read(source)) = open(None) else {
            panic!("rna is an AnnData");
        };
        assert_eq!(source.datasets()[0].n_genes, 4);
    }
}
