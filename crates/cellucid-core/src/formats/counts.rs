//! Cell and gene counts of the formats served as they are, from metadata
//! only: 0.9.5 reports `null` for all but MuData; this server reads what it
//! can (docs/FORMATS.md, "Inputs and how they are recognised").

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::Value;

use crate::anndata::{self, AnnDataError, Backend, Container};
use crate::detect::InputKind;

/// Cells and genes.
pub(crate) type Counts = (u64, u64);

/// The most of a MatrixMarket file read to find its size line.
const MTX_HEADER_LIMIT: u64 = 1024 * 1024;

/// The gene-expression modality names a MuData opens on first, in any case
/// (0.9.5's `default_modality`).
const GENE_EXPRESSION_MODALITIES: [&str; 5] =
    ["rna", "gex", "gene expression", "gene_expression", "sct"];

/// The counts of `path`, or `None` when its format is not read here (R
/// objects) or its layout is not the expected one (the browser says why).
pub(crate) fn counts(path: &Path, kind: InputKind, files: Option<&[String]>) -> Option<Counts> {
    match kind {
        InputKind::Loom => {
            let backend = anndata::open_backend(path, Container::Hdf5).ok()?;
            // Loom stores genes × cells.
            let shape = backend.info("matrix").ok()?.shape;
            Some((*shape.get(1)?, *shape.first()?))
        }
        InputKind::TenxH5 => tenx_h5_counts(path),
        InputKind::TenxOuts => files?
            .iter()
            .find(|f| !f.contains('/') && f.ends_with(".h5"))
            .and_then(|f| tenx_h5_counts(&path.join(f))),
        InputKind::Mtx => mtx_counts(path, files?),
        InputKind::H5mu => mudata_counts(path, Container::Hdf5).ok(),
        InputKind::MudataZarrFolder => mudata_counts(path, Container::ZarrFolder).ok(),
        InputKind::MudataZarrZip => mudata_counts(path, Container::ZarrZip).ok(),
        _ => None,
    }
}

/// A Cell Ranger matrix: `matrix/shape` is `[genes, cells]` (Cell Ranger 3+);
/// Cell Ranger 2 keeps one such group per genome.
fn tenx_h5_counts(path: &Path) -> Option<Counts> {
    let backend = anndata::open_backend(path, Container::Hdf5).ok()?;
    let group = if backend.kind("matrix/shape").is_some() {
        "matrix".to_owned()
    } else {
        backend.children("").ok()?.into_iter().next()?
    };
    let shape = backend.read(&format!("{group}/shape")).ok()?.to_i64()?;
    let genes = u64::try_from(*shape.first()?).ok()?;
    let cells = u64::try_from(*shape.get(1)?).ok()?;
    Some((cells, genes))
}

/// A MatrixMarket folder: the size line of its matrix. `cells_x_genes.mtx`
/// (kallisto) and `quants_mat.mtx` (alevin) put cells on rows; the others
/// (10x, GEO, STARsolo) genes.
fn mtx_counts(root: &Path, files: &[String]) -> Option<Counts> {
    let markers = super::registry::FOLDER_MARKERS
        .iter()
        .find(|(id, _)| *id == "mtx")
        .map(|(_, m)| *m)?;
    let (file, marker) = files.iter().find_map(|f| {
        let leaf = f.rsplit('/').next().unwrap_or(f);
        markers.iter().find(|m| leaf.ends_with(*m)).map(|m| (f, *m))
    })?;
    let raw = std::fs::File::open(root.join(file)).ok()?;
    let reader: Box<dyn Read> = if file.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(raw))
    } else {
        Box::new(raw)
    };
    let lines = BufReader::new(reader.take(MTX_HEADER_LIMIT)).lines();
    for line in lines {
        let line = line.ok()?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('%') {
            continue;
        }
        let mut numbers = line.split_whitespace().map(str::parse::<u64>);
        let rows = numbers.next()?.ok()?;
        let cols = numbers.next()?.ok()?;
        let cells_on_rows = matches!(marker, "cells_x_genes.mtx" | "quants_mat.mtx");
        return Some(if cells_on_rows {
            (rows, cols)
        } else {
            (cols, rows)
        });
    }
    None
}

/// A MuData store: the shared cells of the root `obs`, and the genes of the
/// modality it opens on.
fn mudata_counts(path: &Path, container: Container) -> Result<Counts, AnnDataError> {
    let backend = anndata::open_backend(path, container)?;
    let b = backend.as_ref();
    let cells = frame_rows(b, "obs")?;
    let names = modality_names(b)?;
    let chosen = default_modality(&names)
        .ok_or_else(|| AnnDataError::invalid("mod", "the MuData store holds no modality"))?;
    let genes = frame_rows(b, &format!("mod/{chosen}/var"))?;
    Ok((cells, genes))
}

/// Rows of a stored dataframe: the length of its `_index` array.
fn frame_rows(b: &dyn Backend, frame: &str) -> Result<u64, AnnDataError> {
    let attrs = b.attrs(frame)?;
    let index = attrs
        .get("_index")
        .and_then(Value::as_str)
        .unwrap_or("_index");
    let shape = b.info(&format!("{frame}/{index}"))?.shape;
    shape
        .first()
        .copied()
        .ok_or_else(|| AnnDataError::invalid(frame, "its index is a scalar"))
}

/// The modality names in stored order: `mod-order` when it lists them all,
/// else the groups below `mod`.
pub(crate) fn modality_names(b: &dyn Backend) -> Result<Vec<String>, AnnDataError> {
    let groups: Vec<String> = b
        .children("mod")?
        .into_iter()
        .filter(|c| b.kind(&format!("mod/{c}")) == Some(anndata::NodeKind::Group))
        .collect();
    let order: Vec<String> = b
        .attrs("mod")?
        .get("mod-order")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let mut sorted_order = order.clone();
    sorted_order.sort();
    let mut sorted_groups = groups.clone();
    sorted_groups.sort();
    Ok(if sorted_order == sorted_groups {
        order
    } else {
        groups
    })
}

/// The modality a MuData opens on: the first gene-expression one, else the first.
pub(crate) fn default_modality(names: &[String]) -> Option<&str> {
    names
        .iter()
        .find(|n| GENE_EXPRESSION_MODALITIES.contains(&n.to_lowercase().as_str()))
        .or_else(|| names.first())
        .map(String::as_str)
}
