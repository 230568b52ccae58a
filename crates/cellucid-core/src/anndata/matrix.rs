//! Matrices: dense arrays and CSR/CSC sparse groups (`X`, `layers/*`,
//! `raw/X`, `obsp/*`), read one column at a time.

use std::ops::Range;

use bytes::Bytes;
use serde_json::Value;

use super::backend::{join, Backend, Dtype, NodeKind, Values};
use super::column::Column;
use super::error::{AnnDataError, Result};
use super::frame::check_encoding;

/// How a matrix is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatrixLayout {
    /// A dense 2-D array.
    Dense,
    /// Compressed sparse rows (`indptr` per row).
    Csr,
    /// Compressed sparse columns (`indptr` per column): a column is one range.
    Csc,
}

impl MatrixLayout {
    /// `dense`, `csr` or `csc`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dense => "dense",
            Self::Csr => "csr",
            Self::Csc => "csc",
        }
    }
}

/// A matrix element (metadata only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matrix {
    /// The element path.
    pub path: String,
    /// Dense, CSR or CSC.
    pub layout: MatrixLayout,
    /// `[rows, columns]`.
    pub shape: [u64; 2],
}

/// A sparse matrix's three arrays, read whole (graphs are small).
#[derive(Clone, Debug)]
pub struct SparseParts {
    /// Pointer array.
    pub indptr: Vec<i64>,
    /// Minor indices.
    pub indices: Vec<i64>,
    /// Stored values.
    pub data: Vec<f64>,
}

/// Rows read per block when a CSR column has to be found by scanning.
const SCAN_BLOCK: u64 = 1 << 20;

impl Matrix {
    /// Reads the metadata of the matrix at `path`: a dense array, an
    /// anndata `csr_matrix`/`csc_matrix` group, or a legacy `h5sparse` group.
    ///
    /// # Errors
    /// When it is missing, of an unknown encoding, or not 2-D.
    pub fn open(backend: &dyn Backend, path: &str) -> Result<Self> {
        match backend.kind(path) {
            None => Err(AnnDataError::missing(path)),
            Some(NodeKind::Array) => {
                let info = backend.info(path)?;
                let [rows, cols] = info.shape[..] else {
                    return Err(AnnDataError::invalid(
                        path,
                        format!("expected a 2-D matrix, found shape {:?}", info.shape),
                    ));
                };
                if !info.dtype.is_numeric() {
                    return Err(AnnDataError::invalid(
                        path,
                        format!("expected numbers, found {}", info.dtype),
                    ));
                }
                Ok(Self {
                    path: path.to_owned(),
                    layout: MatrixLayout::Dense,
                    shape: [rows, cols],
                })
            }
            Some(NodeKind::Group) => {
                let attrs = backend.attrs(path)?;
                check_encoding(path, &attrs, &["csr_matrix", "csc_matrix"])?;
                let kind = attrs
                    .get("encoding-type")
                    .or_else(|| attrs.get("h5sparse_format"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let layout = match kind {
                    "csr_matrix" | "csr" => MatrixLayout::Csr,
                    "csc_matrix" | "csc" => MatrixLayout::Csc,
                    other => {
                        return Err(AnnDataError::UnknownEncoding {
                            element: path.to_owned(),
                            encoding: if other.is_empty() { "(none)" } else { other }.to_owned(),
                            version: attrs
                                .get("encoding-version")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_owned(),
                        })
                    }
                };
                let shape = attrs
                    .get("shape")
                    .or_else(|| attrs.get("h5sparse_shape"))
                    .and_then(Value::as_array)
                    .and_then(|dims| dims.iter().map(Value::as_u64).collect::<Option<Vec<_>>>())
                    .ok_or_else(|| AnnDataError::invalid(path, "sparse matrix without a shape"))?;
                let [rows, cols] = shape[..] else {
                    return Err(AnnDataError::invalid(path, "sparse shape is not 2-D"));
                };
                let major = if layout == MatrixLayout::Csr {
                    rows
                } else {
                    cols
                };
                let indptr = backend.info(&join(path, "indptr"))?;
                if indptr.shape != [major + 1] {
                    return Err(AnnDataError::invalid(
                        path,
                        format!(
                            "indptr has shape {:?}; a {} matrix of shape [{rows}, {cols}] needs [{}]",
                            indptr.shape,
                            layout.as_str(),
                            major + 1
                        ),
                    ));
                }
                let data = backend.info(&join(path, "data"))?;
                let indices = backend.info(&join(path, "indices"))?;
                if data.shape != indices.shape {
                    return Err(AnnDataError::invalid(
                        path,
                        "data and indices have different lengths",
                    ));
                }
                Ok(Self {
                    path: path.to_owned(),
                    layout,
                    shape: [rows, cols],
                })
            }
        }
    }

    /// Number of stored entries (`rows × cols` for a dense matrix).
    ///
    /// # Errors
    /// When the metadata cannot be read.
    pub fn nnz(&self, backend: &dyn Backend) -> Result<u64> {
        match self.layout {
            MatrixLayout::Dense => Ok(self.shape[0] * self.shape[1]),
            _ => Ok(backend
                .info(&join(&self.path, "data"))?
                .shape
                .first()
                .copied()
                .unwrap_or(0)),
        }
    }

    /// Column `col` as dense `f32` values (zeros included).
    ///
    /// # Errors
    /// As [`Self::column_entries`].
    pub fn column(&self, backend: &dyn Backend, col: u64) -> Result<Vec<f32>> {
        Ok(self.column_entries(backend, col)?.into_dense())
    }

    /// Column `col`: dense values, or the stored entries of a sparse column
    /// when they are the smaller form.
    ///
    /// Dense: a strided read. CSC: one range of `data`/`indices`. CSR: a
    /// scan of every stored entry (callers with many columns to read should
    /// build a column index instead, see [`super::csr_index`]).
    ///
    /// # Errors
    /// When `col` is out of range, a row index is out of range, or the data
    /// cannot be read.
    pub fn column_entries(&self, backend: &dyn Backend, col: u64) -> Result<Column> {
        let [rows, cols] = self.shape;
        if col >= cols {
            return Err(AnnDataError::invalid(
                &self.path,
                format!("column {col} is outside {cols} columns"),
            ));
        }
        let n = usize::try_from(rows)
            .map_err(|_| AnnDataError::invalid(&self.path, "too many rows"))?;
        match self.layout {
            MatrixLayout::Dense => Ok(Column::Dense(to_f32(
                &self.path,
                backend.read_column(&self.path, col)?,
            )?)),
            MatrixLayout::Csc => {
                let ptr = self.pointer_range(backend, col)?;
                let mut rows_of = Vec::new();
                let values = if ptr.start < ptr.end {
                    read_minor_indices(
                        backend,
                        &join(&self.path, "indices"),
                        ptr.clone(),
                        rows,
                        &mut rows_of,
                    )?;
                    read_values_f32(backend, &join(&self.path, "data"), ptr)?
                } else {
                    Vec::new()
                };
                sparse_column(&self.path, n, rows_of, values)
            }
            MatrixLayout::Csr => Ok(Column::Dense(self.csr_column_scan(backend, col, n)?)),
        }
    }

    /// `indptr[i]..indptr[i + 1]`, checked.
    pub(crate) fn pointer_range(&self, backend: &dyn Backend, i: u64) -> Result<Range<u64>> {
        let ptr = to_i64(
            &self.path,
            backend.read_range(&join(&self.path, "indptr"), i..i + 2)?,
        )?;
        match ptr[..] {
            [a, b] if 0 <= a && a <= b => Ok(a as u64..b as u64),
            _ => Err(AnnDataError::invalid(
                &join(&self.path, "indptr"),
                format!("entries {i} and {} are not increasing", i + 1),
            )),
        }
    }

    fn csr_column_scan(&self, backend: &dyn Backend, col: u64, n: usize) -> Result<Vec<f32>> {
        let indptr = to_i64(&self.path, backend.read(&join(&self.path, "indptr"))?)?;
        let nnz = self.nnz(backend)?;
        let mut out = vec![0f32; n];
        let mut row = 0usize;
        let mut start = 0u64;
        while start < nnz {
            let end = (start + SCAN_BLOCK).min(nnz);
            let cols = to_i64(
                &self.path,
                backend.read_range(&join(&self.path, "indices"), start..end)?,
            )?;
            let mut data: Option<Vec<f32>> = None;
            for (k, &c) in cols.iter().enumerate() {
                if c as u64 != col {
                    continue;
                }
                let pos = start as i64 + k as i64;
                while row + 1 < indptr.len() && indptr[row + 1] <= pos {
                    row += 1;
                }
                if row >= n {
                    return Err(AnnDataError::invalid(
                        &self.path,
                        "indptr does not cover the data",
                    ));
                }
                if data.is_none() {
                    data = Some(to_f32(
                        &self.path,
                        backend.read_range(&join(&self.path, "data"), start..end)?,
                    )?);
                }
                if let Some(d) = &data {
                    out[row] = *d.get(k).ok_or_else(|| {
                        AnnDataError::invalid(&self.path, "data is shorter than indices")
                    })?;
                }
            }
            start = end;
        }
        Ok(out)
    }

    /// Reads a whole sparse matrix (for graphs such as `obsp/connectivities`).
    ///
    /// # Errors
    /// When the matrix is dense or cannot be read.
    pub fn read_sparse(&self, backend: &dyn Backend) -> Result<SparseParts> {
        if self.layout == MatrixLayout::Dense {
            return Err(AnnDataError::invalid(
                &self.path,
                "expected a sparse matrix",
            ));
        }
        let indptr = to_i64(&self.path, backend.read(&join(&self.path, "indptr"))?)?;
        let indices = to_i64(&self.path, backend.read(&join(&self.path, "indices"))?)?;
        let data = backend
            .read(&join(&self.path, "data"))?
            .to_f64()
            .ok_or_else(|| AnnDataError::invalid(&self.path, "data is not numeric"))?;
        if indices.len() != data.len()
            || indptr.last().copied().unwrap_or(0) as usize != data.len()
            || indptr.windows(2).any(|w| w[0] > w[1])
        {
            return Err(AnnDataError::invalid(
                &self.path,
                "indptr, indices and data disagree",
            ));
        }
        Ok(SparseParts {
            indptr,
            indices,
            data,
        })
    }
}

/// The minor indices `range` of the sparse array at `path` (row numbers of
/// a CSC matrix, column numbers of a CSR one) into `out`, each checked to
/// be below `bound`: straight from the stored bytes when the backend lends
/// them, else decoded.
///
/// # Errors
/// When one is not below `bound`, or they cannot be read.
pub(crate) fn read_minor_indices(
    backend: &dyn Backend,
    path: &str,
    range: Range<u64>,
    bound: u64,
    out: &mut Vec<u32>,
) -> Result<()> {
    out.clear();
    let out_of_range = || AnnDataError::invalid(path, format!("an index is not below {bound}"));
    let stored = backend.read_range_raw(path, range.clone())?;
    let ok = match stored.as_ref().map(|raw| (raw.dtype, &raw.pieces)) {
        Some((
            Dtype::Int {
                bytes: 4,
                signed: true,
            },
            pieces,
        )) => push_cols(pieces, out, bound, |b| {
            i64::from(i32::from_le_bytes(b)) as u64
        }),
        Some((
            Dtype::Int {
                bytes: 4,
                signed: false,
            },
            pieces,
        )) => push_cols(pieces, out, bound, |b| u64::from(u32::from_le_bytes(b))),
        Some((
            Dtype::Int {
                bytes: 8,
                signed: true,
            },
            pieces,
        )) => push_cols(pieces, out, bound, |b| i64::from_le_bytes(b) as u64),
        Some((
            Dtype::Int {
                bytes: 8,
                signed: false,
            },
            pieces,
        )) => push_cols(pieces, out, bound, u64::from_le_bytes),
        _ => None,
    };
    match ok {
        Some(true) => return Ok(()),
        Some(false) => return Err(out_of_range()),
        None => {}
    }
    out.clear();
    for i in to_i64(path, backend.read_range(path, range)?)? {
        let i = u32::try_from(i)
            .ok()
            .filter(|&i| u64::from(i) < bound)
            .ok_or_else(out_of_range)?;
        out.push(i);
    }
    Ok(())
}

/// The values `range` of the array at `path` as `f32`: straight from the
/// stored bytes when they are little-endian float32 the backend lends,
/// else decoded.
///
/// # Errors
/// When they are not numbers or cannot be read.
pub(crate) fn read_values_f32(
    backend: &dyn Backend,
    path: &str,
    range: Range<u64>,
) -> Result<Vec<f32>> {
    if let Some(raw) = backend.read_range_raw(path, range.clone())? {
        if raw.dtype == (Dtype::Float { bytes: 4 }) && raw.pieces.iter().all(|p| p.len() % 4 == 0) {
            let mut out = Vec::with_capacity(raw.pieces.iter().map(|p| p.len() / 4).sum());
            for piece in &raw.pieces {
                out.extend(
                    piece
                        .as_chunks::<4>()
                        .0
                        .iter()
                        .map(|&b| f32::from_le_bytes(b)),
                );
            }
            return Ok(out);
        }
    }
    to_f32(path, backend.read_range(path, range)?)
}

/// Appends the column of every element of `pieces` (`N`-byte integers,
/// converted by `col`, negative ones to above `u32::MAX`) to `out`:
/// `Some(false)` when one is not below `n_cols`, `None` when a piece is not
/// whole elements.
fn push_cols<const N: usize>(
    pieces: &[Bytes],
    out: &mut Vec<u32>,
    n_cols: u64,
    col: impl Fn([u8; N]) -> u64,
) -> Option<bool> {
    // One check for the whole block rather than a branch per element, so
    // the loop is a plain conversion the compiler vectorises.
    let mut all_below = true;
    for piece in pieces {
        let (elements, []) = piece.as_chunks::<N>() else {
            return None;
        };
        out.extend(elements.iter().map(|&e| {
            let c = col(e);
            all_below &= c < n_cols;
            // Only kept when all are below `n_cols`, which fits a u32.
            c as u32
        }));
    }
    Some(all_below)
}

pub(crate) fn to_f32(path: &str, values: Values) -> Result<Vec<f32>> {
    values
        .into_f32()
        .ok_or_else(|| AnnDataError::invalid(path, "values are not numeric"))
}

pub(crate) fn to_i64(path: &str, values: Values) -> Result<Vec<i64>> {
    values
        .into_i64()
        .ok_or_else(|| AnnDataError::invalid(path, "indices are not integers"))
}

/// A column from its stored entries (rows already checked below `n`).
fn sparse_column(path: &str, n: usize, rows: Vec<u32>, values: Vec<f32>) -> Result<Column> {
    if rows.len() != values.len() {
        return Err(AnnDataError::invalid(path, "indices and data disagree"));
    }
    Ok(Column::from_entries(n, rows, values))
}
