//! A backend rooted at one group of another (a MuData modality,
//! `mod/<name>`), so the AnnData reader opens that group as its root.

use std::ops::Range;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::anndata::{ArrayInfo, Backend, CompoundField, NodeKind, RawRange, Result, Values};

/// `inner`, with every element path taken below `prefix`.
#[derive(Debug)]
pub(crate) struct PrefixBackend {
    inner: Arc<dyn Backend>,
    prefix: String,
}

impl PrefixBackend {
    /// The group `prefix` of `inner` as a root.
    pub(crate) fn new(inner: Arc<dyn Backend>, prefix: &str) -> Self {
        Self {
            inner,
            prefix: prefix.trim_matches('/').to_owned(),
        }
    }

    fn at(&self, path: &str) -> String {
        match (self.prefix.is_empty(), path.is_empty()) {
            (true, _) => path.to_owned(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{path}", self.prefix),
        }
    }
}

impl Backend for PrefixBackend {
    fn kind(&self, path: &str) -> Option<NodeKind> {
        self.inner.kind(&self.at(path))
    }

    fn attrs(&self, path: &str) -> Result<Map<String, Value>> {
        self.inner.attrs(&self.at(path))
    }

    fn children(&self, path: &str) -> Result<Vec<String>> {
        self.inner.children(&self.at(path))
    }

    fn info(&self, path: &str) -> Result<ArrayInfo> {
        self.inner.info(&self.at(path))
    }

    fn read(&self, path: &str) -> Result<Values> {
        self.inner.read(&self.at(path))
    }

    fn read_range(&self, path: &str, range: Range<u64>) -> Result<Values> {
        self.inner.read_range(&self.at(path), range)
    }

    fn read_range_raw(&self, path: &str, range: Range<u64>) -> Result<Option<RawRange>> {
        self.inner.read_range_raw(&self.at(path), range)
    }

    fn read_rows(&self, path: &str, rows: Range<u64>) -> Result<Values> {
        self.inner.read_rows(&self.at(path), rows)
    }

    fn read_column(&self, path: &str, col: u64) -> Result<Values> {
        self.inner.read_column(&self.at(path), col)
    }

    fn read_compound(&self, path: &str) -> Result<Vec<CompoundField>> {
        self.inner.read_compound(&self.at(path))
    }
}
