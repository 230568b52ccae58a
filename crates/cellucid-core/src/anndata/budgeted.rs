//! A [`Backend`] that asks the memory budget before every read.
//!
//! Shapes come from the file: an array may claim 10^9 rows while storing
//! nothing (its elements are then the fill value, which the storage
//! libraries materialise). Before a read allocates, this wrapper works out
//! from the claimed shape and element type how much the read holds at its
//! peak (the stored bytes and the decoded values) and reserves that from
//! the process budget ([`crate::budget`]) for the duration of the read, so
//! a claim larger than the budget fails at once with a message naming the
//! element and its shape, and parallel reads share the budget.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use super::backend::{ArrayInfo, Backend, CompoundField, Dtype, NodeKind, RawRange, Values};
use super::error::{AnnDataError, Result};
use crate::budget::{self, Lease};

/// Wraps a backend so every read is reserved from the budget first.
#[derive(Debug)]
pub(super) struct BudgetedBackend {
    inner: Arc<dyn Backend>,
    /// Shapes and types already looked up: a gene column is several range
    /// reads, and each would otherwise resolve its array again.
    infos: Mutex<HashMap<String, ArrayInfo>>,
}

impl BudgetedBackend {
    pub(super) fn new(inner: Arc<dyn Backend>) -> Self {
        Self {
            inner,
            infos: Mutex::new(HashMap::new()),
        }
    }

    /// The array's shape and type, looked up once.
    fn cached_info(&self, path: &str) -> Result<ArrayInfo> {
        if let Some(info) = self.infos.lock().ok().and_then(|m| m.get(path).cloned()) {
            return Ok(info);
        }
        let info = self.inner.info(path)?;
        if let Ok(mut infos) = self.infos.lock() {
            infos.insert(path.to_owned(), info.clone());
        }
        Ok(info)
    }

    /// Reserves what reading `elements` of `path` holds at its peak.
    fn reserve(&self, path: &str, info: &ArrayInfo, elements: u64) -> Result<Lease<'static>> {
        reserve_elements(path, info.dtype, elements)
    }
}

/// Bytes a read holds per element at its peak: the stored element (raw
/// bytes some decoders read first) plus the decoded value.
pub(crate) fn peak_bytes_per_element(dtype: Dtype) -> u64 {
    match dtype {
        Dtype::Bool => 2,
        Dtype::Int { bytes, .. } => 8 + u64::from(bytes),
        Dtype::Float { bytes } => 2 * u64::from(bytes),
        // A `String` (24 bytes), a variable-length reference (16) and a few
        // bytes of text.
        Dtype::Str => 48,
        Dtype::Compound | Dtype::Other => 64,
    }
}

/// The number of elements of `shape` (saturating: an overflow is a claim
/// no budget grants).
pub(crate) fn element_count(shape: &[u64]) -> u64 {
    shape.iter().fold(1u64, |n, &d| n.saturating_mul(d))
}

/// Reserves what reading `elements` elements of `dtype` at `path` holds.
pub(crate) fn reserve_elements(path: &str, dtype: Dtype, elements: u64) -> Result<Lease<'static>> {
    let bytes = elements.saturating_mul(peak_bytes_per_element(dtype));
    budget::global()
        .reserve(
            || format!("reading {path} ({elements} {dtype} values)"),
            bytes,
        )
        .map_err(|err| AnnDataError::over_budget(path, err))
}

impl Backend for BudgetedBackend {
    fn kind(&self, path: &str) -> Option<NodeKind> {
        self.inner.kind(path)
    }

    fn attrs(&self, path: &str) -> Result<Map<String, Value>> {
        self.inner.attrs(path)
    }

    fn children(&self, path: &str) -> Result<Vec<String>> {
        self.inner.children(path)
    }

    fn info(&self, path: &str) -> Result<ArrayInfo> {
        self.cached_info(path)
    }

    fn read(&self, path: &str) -> Result<Values> {
        let info = self.cached_info(path)?;
        let _lease = self.reserve(path, &info, element_count(&info.shape))?;
        self.inner.read(path)
    }

    fn read_range(&self, path: &str, range: Range<u64>) -> Result<Values> {
        let info = self.cached_info(path)?;
        let n = range.end.saturating_sub(range.start);
        let _lease = self.reserve(path, &info, n)?;
        self.inner.read_range(path, range)
    }

    fn read_range_raw(&self, path: &str, range: Range<u64>) -> Result<Option<RawRange>> {
        // Borrowed from the file as stored: nothing is decoded or copied.
        self.inner.read_range_raw(path, range)
    }

    fn stored_bytes(&self, path: &str) -> Option<u64> {
        self.inner.stored_bytes(path)
    }

    fn read_rows(&self, path: &str, rows: Range<u64>) -> Result<Values> {
        let info = self.cached_info(path)?;
        let per_row = element_count(info.shape.get(1..).unwrap_or_default());
        let n = rows.end.saturating_sub(rows.start).saturating_mul(per_row);
        let _lease = self.reserve(path, &info, n)?;
        self.inner.read_rows(path, rows)
    }

    fn read_column(&self, path: &str, col: u64) -> Result<Values> {
        let info = self.cached_info(path)?;
        let n = info.shape.first().copied().unwrap_or(0);
        let _lease = self.reserve(path, &info, n)?;
        self.inner.read_column(path, col)
    }

    fn read_compound(&self, path: &str) -> Result<Vec<CompoundField>> {
        let info = self.cached_info(path)?;
        let _lease = self.reserve(path, &info, element_count(&info.shape))?;
        self.inner.read_compound(path)
    }
}
