//! The input-format registry of cellucid 0.9.5 (its `input_formats.json`,
//! schema 1): name endings, content signatures and folder markers, in
//! registry order, which decides ties (docs/FORMATS.md, "Inputs and how they
//! are recognised").

/// What a format's bytes are stored in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Container {
    /// HDF5 (`.h5ad`, `.h5mu`, `.loom`, `.h5`).
    Hdf5,
    /// Zarr (a folder, or zipped).
    Zarr,
    /// R serialisation (`.rds`, `.rda`).
    Rds,
    /// Text files (MatrixMarket).
    Text,
}

/// One registry format.
#[derive(Debug)]
pub(crate) struct Format {
    /// The format id, as `/_cellucid/datasets` (`kind`) and health name it.
    pub(crate) id: &'static str,
    /// The container.
    pub(crate) container: Container,
    /// Endings of a single file of this format, lower case.
    pub(crate) file: &'static [&'static str],
    /// Endings of a zip file of this format; `None` when it has no zip layout.
    pub(crate) zip: Option<&'static [&'static str]>,
    /// Endings of a folder of this format; `None` when it has no folder layout.
    pub(crate) folder: Option<&'static [&'static str]>,
    /// Why Cellucid never opens this format, and how to convert it.
    pub(crate) refusal: Option<&'static str>,
}

/// The formats, in registry order.
pub(crate) const FORMATS: [Format; 11] = [
    Format {
        id: "h5ad",
        container: Container::Hdf5,
        file: &[".h5ad"],
        zip: None,
        folder: None,
        refusal: None,
    },
    Format {
        id: "zarr",
        container: Container::Zarr,
        file: &[],
        zip: Some(&[".zarr.zip", ".zip"]),
        folder: Some(&[".zarr"]),
        refusal: None,
    },
    Format {
        id: "loom",
        container: Container::Hdf5,
        file: &[".loom"],
        zip: None,
        folder: None,
        refusal: None,
    },
    Format {
        id: "tenx-h5",
        container: Container::Hdf5,
        file: &[".h5"],
        zip: None,
        folder: None,
        refusal: None,
    },
    Format {
        id: "tenx-outs",
        container: Container::Hdf5,
        file: &[],
        zip: None,
        folder: Some(&[]),
        refusal: None,
    },
    Format {
        id: "h5mu",
        container: Container::Hdf5,
        file: &[".h5mu"],
        zip: None,
        folder: None,
        refusal: None,
    },
    Format {
        id: "mudata-zarr",
        container: Container::Zarr,
        file: &[],
        zip: Some(&[]),
        folder: Some(&[]),
        refusal: None,
    },
    Format {
        id: "rds",
        container: Container::Rds,
        file: &[".rds.gz", ".rds"],
        zip: None,
        folder: None,
        refusal: None,
    },
    Format {
        id: "rda",
        container: Container::Rds,
        file: &[".rdata.gz", ".rda.gz", ".rdata", ".rda"],
        zip: None,
        folder: None,
        refusal: None,
    },
    Format {
        id: "h5seurat",
        container: Container::Hdf5,
        file: &[".h5seurat"],
        zip: None,
        folder: None,
        refusal: Some("This is an h5Seurat file (SeuratDisk), which Cellucid does not open. In R, read it with seu <- SeuratDisk::LoadH5Seurat(path) and save it with saveRDS(seu, \"object.rds\"), then open the .rds, or show it with cellucid::cellucid_view(seu)."),
    },
    Format {
        id: "mtx",
        container: Container::Text,
        file: &[],
        zip: None,
        folder: Some(&[]),
        refusal: None,
    },
];

/// The HDF5 signature and the offsets it may sit at (after a user block).
pub(crate) const HDF5_SIGNATURE: (&[u8], &[u64]) = (b"\x89HDF\r\n\x1a\n", &[0, 512, 1024, 2048]);
/// The ZIP signatures (a local file header, or the end record of an empty
/// archive), at offset 0.
pub(crate) const ZIP_SIGNATURES: [&[u8]; 2] = [b"PK\x03\x04", b"PK\x05\x06"];
/// How many leading bytes the signatures need.
pub(crate) const SNIFF_BYTES: usize = 2048 + 8;

/// Marker files that make a folder a format, by format id, in registry order.
pub(crate) const FOLDER_MARKERS: [(&str, &[&str]); 3] = [
    (
        "zarr",
        &[".zarray", ".zattrs", ".zgroup", ".zmetadata", "zarr.json"],
    ),
    (
        "tenx-outs",
        &[
            "filtered_feature_bc_matrix.h5",
            "sample_filtered_feature_bc_matrix.h5",
            "filtered_gene_bc_matrices_h5.h5",
        ],
    ),
    (
        "mtx",
        &[
            "matrix.mtx.gz",
            "matrix.mtx",
            "cells_x_genes.mtx",
            "quants_mat.mtx",
            "count_matrix.mtx",
            "DGE.mtx",
        ],
    ),
];

/// Formats whose markers may carry a shared prefix ending in one of these
/// separators (GEO's `GSM123_matrix.mtx.gz` beside `GSM123_barcodes.tsv.gz`).
pub(crate) const FOLDER_MARKER_PREFIXES: [(&str, &str); 1] = [("mtx", "_-.")];

/// The format with this id.
pub(crate) fn format(id: &str) -> Option<&'static Format> {
    FORMATS.iter().find(|f| f.id == id)
}

/// Which layout of a name is asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NameLayout {
    /// A single file.
    File,
    /// A zip file.
    Zip,
    /// A folder.
    Folder,
}

impl Format {
    /// The endings of `layout`; `None` when the format has no such layout.
    pub(crate) fn endings(&self, layout: NameLayout) -> Option<&'static [&'static str]> {
        match layout {
            NameLayout::File => (!self.file.is_empty()).then_some(self.file),
            NameLayout::Zip => self.zip,
            NameLayout::Folder => self.folder,
        }
    }
}

/// The format and layout whose longest ending `name` ends with (case-insensitive).
pub(crate) fn format_of_name(
    name: &str,
    layouts: &[NameLayout],
) -> Option<(&'static Format, NameLayout, &'static str)> {
    let lower = name.to_lowercase();
    let mut best: Option<(&'static Format, NameLayout, &'static str)> = None;
    for format in &FORMATS {
        for &layout in layouts {
            for &ending in format.endings(layout).unwrap_or(&[]) {
                if lower.ends_with(ending) && best.is_none_or(|(_, _, b)| ending.len() > b.len()) {
                    best = Some((format, layout, ending));
                }
            }
        }
    }
    best
}

/// The first registry format of `container` that has `layout`: what a
/// container holds when nothing else tells (`h5ad` for HDF5, `zarr` for zip).
pub(crate) fn format_of_container(container: Container, layout: NameLayout) -> &'static Format {
    FORMATS
        .iter()
        .find(|f| f.container == container && f.endings(layout).is_some())
        .unwrap_or(&FORMATS[0])
}

/// The ending of `name` among `format`'s endings of `layout`, the longest.
pub(crate) fn name_ending(name: &str, format: &Format, layout: NameLayout) -> Option<&'static str> {
    let lower = name.to_lowercase();
    format
        .endings(layout)
        .unwrap_or(&[])
        .iter()
        .copied()
        .filter(|e| lower.ends_with(e))
        .max_by_key(|e| e.len())
}
