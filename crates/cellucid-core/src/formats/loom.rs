//! A Loom file read as the AnnData it describes, for folder viewers: cells
//! are its columns, genes its rows. `col_attrs` become `obs` (the 1-D ones)
//! and `obsm` (the 2-D ones: embeddings), `row_attrs` become `var`, and `X`
//! is `matrix` transposed (docs/FORMATS.md, "Inputs and how they are
//! recognised"). The byte viewer still gets the file as it is.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::classify::Classified;
use super::mudata::ReadableSource;
use super::part::{serve_part, Part, PartReader};
use super::source::{identity, RawInputSource};
use super::FormatError;
use crate::anndata::{
    self, AnnDataError, AnnDataOptions, ArrayInfo, Backend, CompoundField, Container, Dtype,
    NodeKind, RawLayout, RawRange, Result, Values,
};

/// Opens a Loom file: read as an AnnData when its `col_attrs` hold an
/// embedding (a 2-D attribute), else served to the byte viewer only.
///
/// # Errors
/// [`FormatError`] when it is unnamed or a launch choice does not fit it.
pub(super) fn open_loom(
    path: &Path,
    classified: &Classified,
    options: &AnnDataOptions,
) -> std::result::Result<ReadableSource, FormatError> {
    let identity = identity(path, classified.kind, options)?;
    let raw_only = |why: Option<String>| {
        RawInputSource::from_classified(path, classified.clone(), options)
            .map(|source| ReadableSource::RawOnly(Box::new(source), why))
    };
    match anndata::open_backend(path, Container::Hdf5).and_then(LoomBackend::new) {
        Ok(loom) if loom.has_embedding() => {}
        // Nothing a folder viewer could draw.
        Ok(_) => return raw_only(None),
        Err(err) => {
            return raw_only(Some(format!(
                "not a Loom layout this server reads ({err}): served to the byte viewer only"
            )))
        }
    }
    let reader = PartReader::new(
        Part::Loom,
        "loom".into(),
        classified,
        RawLayout::File,
        None,
        options,
    );
    serve_part(path, classified, reader, identity, options)
}

/// The attribute naming cells, and genes, when the file has one (loompy's
/// and scanpy's convention); otherwise rows are named by their number.
const CELL_NAMES: [&str; 2] = ["CellID", "obs_names"];
const GENE_NAMES: [&str; 2] = ["Gene", "var_names"];
/// The name of a generated index.
const GENERATED_INDEX: &str = "_index";

/// One side of the matrix: `obs` from `col_attrs`, or `var` from `row_attrs`.
#[derive(Debug)]
struct Axis {
    /// `col_attrs` or `row_attrs`.
    attrs_group: &'static str,
    /// Its length.
    len: u64,
    /// The attribute used as index, or [`GENERATED_INDEX`].
    index: String,
    /// 1-D attributes of that length (the columns), without the index.
    columns: Vec<String>,
    /// 2-D attributes of that length (for `obs`: the embeddings).
    matrices: Vec<String>,
}

impl Axis {
    fn read(inner: &dyn Backend, attrs_group: &'static str, len: u64, names: &[&str]) -> Self {
        let mut columns = Vec::new();
        let mut matrices = Vec::new();
        for child in inner.children(attrs_group).unwrap_or_default() {
            let Ok(info) = inner.info(&format!("{attrs_group}/{child}")) else {
                continue;
            };
            match info.shape[..] {
                [n] if n == len => columns.push(child),
                [n, w] if n == len && w > 0 && info.dtype.is_numeric() => matrices.push(child),
                _ => {}
            }
        }
        let index = names
            .iter()
            .find(|n| columns.iter().any(|c| c == *n))
            .map_or_else(|| GENERATED_INDEX.to_owned(), |n| (*n).to_owned());
        columns.retain(|c| *c != index);
        Self {
            attrs_group,
            len,
            index,
            columns,
            matrices,
        }
    }
}

/// A Loom file's HDF5 backend presented in AnnData's layout.
#[derive(Debug)]
pub(crate) struct LoomBackend {
    inner: Arc<dyn Backend>,
    obs: Axis,
    var: Axis,
}

/// Where an AnnData element path lies in the Loom file.
enum Node<'a> {
    Group(&'static str),
    Attr(&'a Axis, &'a str),
    Generated(&'a Axis),
    X,
}

impl LoomBackend {
    /// Reads `inner`'s layout: `matrix` must be a 2-D array (genes × cells).
    ///
    /// # Errors
    /// When `matrix` is missing or not 2-D.
    pub(crate) fn new(inner: Arc<dyn Backend>) -> Result<Self> {
        let shape = inner.info("matrix")?.shape;
        let [genes, cells] = shape[..] else {
            return Err(AnnDataError::invalid(
                "matrix",
                format!("expected genes × cells, found shape {shape:?}"),
            ));
        };
        let obs = Axis::read(inner.as_ref(), "col_attrs", cells, &CELL_NAMES);
        let var = Axis::read(inner.as_ref(), "row_attrs", genes, &GENE_NAMES);
        Ok(Self { inner, obs, var })
    }

    /// Whether a `col_attrs` entry is 2-D: an embedding for the viewer.
    pub(crate) fn has_embedding(&self) -> bool {
        !self.obs.matrices.is_empty()
    }

    fn node<'a>(&'a self, path: &'a str) -> Option<Node<'a>> {
        let (head, rest) = path.split_once('/').unwrap_or((path, ""));
        let axis_attr = |axis: &'a Axis, name: &'a str, allow_matrix: bool| {
            if name == axis.index && axis.index == GENERATED_INDEX {
                Some(Node::Generated(axis))
            } else if name == axis.index
                || axis.columns.iter().any(|c| c == name)
                || (allow_matrix && axis.matrices.iter().any(|c| c == name))
            {
                Some(Node::Attr(axis, name))
            } else {
                None
            }
        };
        match (head, rest) {
            ("", "") => Some(Node::Group("")),
            ("X", "") => Some(Node::X),
            ("obs" | "var" | "obsm", "") => Some(Node::Group(match head {
                "obs" => "obs",
                "var" => "var",
                _ => "obsm",
            })),
            ("obs", name) if !name.contains('/') => axis_attr(&self.obs, name, false),
            ("var", name) if !name.contains('/') => axis_attr(&self.var, name, false),
            ("obsm", name) if self.obs.matrices.iter().any(|m| m == name) => {
                Some(Node::Attr(&self.obs, name))
            }
            _ => None,
        }
    }

    fn inner_path(axis: &Axis, name: &str) -> String {
        format!("{}/{name}", axis.attrs_group)
    }

    fn missing(path: &str) -> AnnDataError {
        AnnDataError::missing(path)
    }

    /// A generated index: the row numbers as text.
    fn generated(axis: &Axis, range: Range<u64>) -> Values {
        Values::Str(
            (range.start..range.end.min(axis.len))
                .map(|i| i.to_string())
                .collect(),
        )
    }
}

/// `values` (rows × cols, row-major) transposed.
///
/// # Errors
/// When `values` does not hold rows × cols elements.
fn transpose(values: Values, rows: usize, cols: usize) -> Result<Values> {
    fn t<T: Clone>(v: &[T], rows: usize, cols: usize) -> Vec<T> {
        (0..cols)
            .flat_map(|c| (0..rows).map(move |r| v[r * cols + c].clone()))
            .collect()
    }
    if Some(values.len()) != rows.checked_mul(cols) {
        return Err(AnnDataError::invalid(
            "matrix",
            format!("holds {} values, not {rows} × {cols}", values.len()),
        ));
    }
    Ok(match values {
        Values::Bool(v) => Values::Bool(t(&v, rows, cols)),
        Values::Int(v) => Values::Int(t(&v, rows, cols)),
        Values::F32(v) => Values::F32(t(&v, rows, cols)),
        Values::F64(v) => Values::F64(t(&v, rows, cols)),
        Values::Str(v) => Values::Str(t(&v, rows, cols)),
    })
}

/// Appends `more` to `acc` when both hold the same type.
fn append(acc: &mut Option<Values>, more: Values) -> Result<()> {
    let mismatch = || AnnDataError::invalid("matrix", "columns of different types");
    match (acc.as_mut(), more) {
        (None, more) => *acc = Some(more),
        (Some(Values::Bool(a)), Values::Bool(b)) => a.extend(b),
        (Some(Values::Int(a)), Values::Int(b)) => a.extend(b),
        (Some(Values::F32(a)), Values::F32(b)) => a.extend(b),
        (Some(Values::F64(a)), Values::F64(b)) => a.extend(b),
        (Some(Values::Str(a)), Values::Str(b)) => a.extend(b),
        _ => return Err(mismatch()),
    }
    Ok(())
}

impl Backend for LoomBackend {
    fn kind(&self, path: &str) -> Option<NodeKind> {
        match self.node(path)? {
            Node::Group(_) => Some(NodeKind::Group),
            Node::Attr(..) | Node::Generated(_) | Node::X => Some(NodeKind::Array),
        }
    }

    fn attrs(&self, path: &str) -> Result<Map<String, Value>> {
        let mut map = Map::new();
        match self.node(path).ok_or_else(|| Self::missing(path))? {
            Node::Group("obs") => {
                map.insert("_index".into(), Value::from(self.obs.index.clone()));
                map.insert("column-order".into(), Value::from(self.obs.columns.clone()));
            }
            Node::Group("var") => {
                map.insert("_index".into(), Value::from(self.var.index.clone()));
                map.insert("column-order".into(), Value::from(self.var.columns.clone()));
            }
            _ => {}
        }
        Ok(map)
    }

    fn children(&self, path: &str) -> Result<Vec<String>> {
        let axis_children = |axis: &Axis| {
            let mut all = axis.columns.clone();
            all.push(axis.index.clone());
            all.sort();
            all
        };
        match self.node(path).ok_or_else(|| Self::missing(path))? {
            Node::Group("") => Ok(vec!["X".into(), "obs".into(), "obsm".into(), "var".into()]),
            Node::Group("obs") => Ok(axis_children(&self.obs)),
            Node::Group("var") => Ok(axis_children(&self.var)),
            Node::Group(_) => {
                let mut all = self.obs.matrices.clone();
                all.sort();
                Ok(all)
            }
            _ => Err(AnnDataError::invalid(path, "not a group")),
        }
    }

    fn info(&self, path: &str) -> Result<ArrayInfo> {
        match self.node(path).ok_or_else(|| Self::missing(path))? {
            Node::Attr(axis, name) => self.inner.info(&Self::inner_path(axis, name)),
            Node::Generated(axis) => Ok(ArrayInfo {
                shape: vec![axis.len],
                dtype: Dtype::Str,
            }),
            Node::X => {
                let info = self.inner.info("matrix")?;
                Ok(ArrayInfo {
                    shape: vec![self.obs.len, self.var.len],
                    dtype: info.dtype,
                })
            }
            Node::Group(_) => Err(AnnDataError::invalid(path, "a group, not an array")),
        }
    }

    fn read(&self, path: &str) -> Result<Values> {
        match self.node(path).ok_or_else(|| Self::missing(path))? {
            Node::Attr(axis, name) => self.inner.read(&Self::inner_path(axis, name)),
            Node::Generated(axis) => Ok(Self::generated(axis, 0..axis.len)),
            Node::X => {
                let genes = usize::try_from(self.var.len).map_err(|_| Self::missing(path))?;
                let cells = usize::try_from(self.obs.len).map_err(|_| Self::missing(path))?;
                transpose(self.inner.read("matrix")?, genes, cells)
            }
            Node::Group(_) => Err(AnnDataError::invalid(path, "a group, not an array")),
        }
    }

    fn read_range(&self, path: &str, range: Range<u64>) -> Result<Values> {
        match self.node(path).ok_or_else(|| Self::missing(path))? {
            Node::Attr(axis, name) => self.inner.read_range(&Self::inner_path(axis, name), range),
            Node::Generated(axis) => Ok(Self::generated(axis, range)),
            _ => Err(AnnDataError::invalid(path, "not a 1-D array")),
        }
    }

    fn read_range_raw(&self, path: &str, range: Range<u64>) -> Result<Option<RawRange>> {
        match self.node(path).ok_or_else(|| Self::missing(path))? {
            Node::Attr(axis, name) => self
                .inner
                .read_range_raw(&Self::inner_path(axis, name), range),
            _ => Ok(None),
        }
    }

    fn read_rows(&self, path: &str, rows: Range<u64>) -> Result<Values> {
        match self.node(path).ok_or_else(|| Self::missing(path))? {
            Node::Attr(axis, name) => self.inner.read_rows(&Self::inner_path(axis, name), rows),
            // A cell's row of X is a column of matrix.
            Node::X => {
                let mut acc = None;
                for cell in rows {
                    append(&mut acc, self.inner.read_column("matrix", cell)?)?;
                }
                acc.ok_or_else(|| AnnDataError::invalid(path, "no rows asked for"))
            }
            _ => Err(AnnDataError::invalid(path, "not a 2-D array")),
        }
    }

    fn read_column(&self, path: &str, col: u64) -> Result<Values> {
        match self.node(path).ok_or_else(|| Self::missing(path))? {
            Node::Attr(axis, name) => self.inner.read_column(&Self::inner_path(axis, name), col),
            // A gene's column of X is a row of matrix.
            Node::X => self.inner.read_rows("matrix", col..col + 1),
            _ => Err(AnnDataError::invalid(path, "not a 2-D array")),
        }
    }

    fn read_compound(&self, path: &str) -> Result<Vec<CompoundField>> {
        Err(AnnDataError::invalid(path, "not a compound dataset"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposing_checks_the_element_count() {
        let v = Values::Int(vec![1, 2, 3, 4, 5, 6]);
        let Ok(Values::Int(t)) = transpose(v, 2, 3) else {
            panic!("2 × 3 is 6 values");
        };
        assert_eq!(t, [1, 4, 2, 5, 3, 6]);
        assert!(transpose(Values::F32(vec![1.0; 5]), 2, 3).is_err());
    }

    #[test]
    fn a_loom_is_presented_in_the_anndata_layout() {
        let path = crate::testdata::path("inputs-0.9.5/tiny.loom");
        let inner = crate::anndata::open_backend(&path, Container::Hdf5).unwrap();
        let loom = LoomBackend::new(inner).unwrap();
        assert!(loom.has_embedding());
        assert_eq!(loom.info("X").unwrap().shape, [6, 4]);
        assert_eq!(loom.children("obsm").unwrap(), ["X_umap"]);
        assert_eq!(loom.attrs("obs").unwrap()["_index"], "CellID");
        assert_eq!(loom.attrs("var").unwrap()["_index"], "Gene");
        // Gene 1 of every cell is row 1 of matrix; cell 0 is its column 0.
        let gene = loom.read_column("X", 1).unwrap().to_f64().unwrap();
        assert_eq!(gene, [3.0, 3.0, 1.0, 0.0, 3.0, 1.0]);
        let cells = loom.read_rows("X", 0..2).unwrap().to_f64().unwrap();
        let all = loom.read("X").unwrap().to_f64().unwrap();
        assert_eq!(cells, all[..8]);
        assert_eq!(all[1], gene[0]);
        assert!(loom.kind("layers").is_none());
        assert!(loom.kind("obs/nope").is_none());
    }
}
