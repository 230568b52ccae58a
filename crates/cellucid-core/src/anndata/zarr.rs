//! The Zarr backend (v2 and v3, folder or zip), over `zarrs`.
//!
//! Node metadata (`.zgroup`/`.zarray`/`.zattrs`, `zarr.json`) is parsed here
//! from the store; `zarrs` decodes array chunks (blosc, zstd, gzip, zlib,
//! shuffle, vlen-utf8, sharding…).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use zarrs::array::{Array, ArraySubset};

use super::backend::{ArrayInfo, Backend, CompoundField, Dtype, NodeKind, Values};
use super::error::{AnnDataError, Result};
use super::store::KeyStore;
use super::zarrs_store::ZarrsStore;
use super::ZarrVersion;

/// What is known about one node, from its metadata documents.
#[derive(Clone, Debug)]
struct NodeMeta {
    kind: NodeKind,
    attrs: Map<String, Value>,
    info: Option<ArrayInfo>,
}

/// A Zarr store opened read-only.
pub(super) struct ZarrBackend {
    store: Arc<dyn KeyStore>,
    zarrs: Arc<ZarrsStore>,
    version: ZarrVersion,
    nodes: Mutex<HashMap<String, Option<NodeMeta>>>,
    arrays: Mutex<HashMap<String, Arc<Array<ZarrsStore>>>>,
}

impl std::fmt::Debug for ZarrBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZarrBackend")
            .field("store", &self.store)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

fn meta_key(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}/{name}")
    }
}

impl ZarrBackend {
    /// Opens the store; `None` when its root is neither a v2 nor a v3 group.
    ///
    /// # Errors
    /// When the root metadata cannot be read.
    pub(super) fn open(store: Arc<dyn KeyStore>) -> Result<Option<Self>> {
        let has = |key: &str| {
            store
                .get(key)
                .map(|b| b.is_some())
                .map_err(|err| AnnDataError::read("", err))
        };
        super::zarr_caps::install();
        let version = if has("zarr.json")? {
            ZarrVersion::V3
        } else if has(".zgroup")? {
            ZarrVersion::V2
        } else {
            return Ok(None);
        };
        Ok(Some(Self {
            zarrs: Arc::new(ZarrsStore(Arc::clone(&store))),
            store,
            version,
            nodes: Mutex::new(HashMap::new()),
            arrays: Mutex::new(HashMap::new()),
        }))
    }

    /// The store's Zarr version.
    pub(super) fn version(&self) -> ZarrVersion {
        self.version
    }

    fn json(&self, key: &str) -> Result<Option<Value>> {
        match self
            .store
            .get(key)
            .map_err(|err| AnnDataError::read(key, err))?
        {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|err| AnnDataError::invalid(key, format!("not valid JSON: {err}"))),
        }
    }

    fn node(&self, path: &str) -> Result<Option<NodeMeta>> {
        if let Ok(nodes) = self.nodes.lock() {
            if let Some(found) = nodes.get(path) {
                return Ok(found.clone());
            }
        }
        let meta = self.load_node(path)?;
        if let Ok(mut nodes) = self.nodes.lock() {
            nodes.insert(path.to_owned(), meta.clone());
        }
        Ok(meta)
    }

    fn load_node(&self, path: &str) -> Result<Option<NodeMeta>> {
        match self.version {
            ZarrVersion::V3 => {
                let Some(doc) = self.json(&meta_key(path, "zarr.json"))? else {
                    return Ok(None);
                };
                let attrs = doc
                    .get("attributes")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                match doc.get("node_type").and_then(Value::as_str) {
                    Some("group") => Ok(Some(NodeMeta {
                        kind: NodeKind::Group,
                        attrs,
                        info: None,
                    })),
                    Some("array") => {
                        let shape = shape_of(&doc, path)?;
                        let dtype = match doc.get("data_type") {
                            Some(Value::String(t)) => v3_dtype(t),
                            _ => Dtype::Other,
                        };
                        check_chunk(path, &v3_chunk_shape(&doc), dtype)?;
                        Ok(Some(NodeMeta {
                            kind: NodeKind::Array,
                            attrs,
                            info: Some(ArrayInfo { shape, dtype }),
                        }))
                    }
                    _ => Err(AnnDataError::invalid(
                        path,
                        "zarr.json has no valid node_type",
                    )),
                }
            }
            ZarrVersion::V2 => {
                let attrs = self
                    .json(&meta_key(path, ".zattrs"))?
                    .and_then(|v| v.as_object().cloned())
                    .unwrap_or_default();
                if let Some(doc) = self.json(&meta_key(path, ".zarray"))? {
                    let shape = shape_of(&doc, path)?;
                    let dtype = match doc.get("dtype") {
                        Some(Value::String(t)) => v2_dtype(t),
                        _ => Dtype::Other,
                    };
                    check_chunk(path, &u64_list(doc.get("chunks")), dtype)?;
                    return Ok(Some(NodeMeta {
                        kind: NodeKind::Array,
                        attrs,
                        info: Some(ArrayInfo { shape, dtype }),
                    }));
                }
                if self.json(&meta_key(path, ".zgroup"))?.is_some() {
                    return Ok(Some(NodeMeta {
                        kind: NodeKind::Group,
                        attrs,
                        info: None,
                    }));
                }
                Ok(None)
            }
        }
    }

    fn array(&self, path: &str) -> Result<Arc<Array<ZarrsStore>>> {
        if let Ok(arrays) = self.arrays.lock() {
            if let Some(a) = arrays.get(path) {
                return Ok(Arc::clone(a));
            }
        }
        let array = Array::open(Arc::clone(&self.zarrs), &format!("/{path}"))
            .map_err(|err| AnnDataError::read(path, err))?;
        let array = Arc::new(array);
        if let Ok(mut arrays) = self.arrays.lock() {
            arrays.insert(path.to_owned(), Arc::clone(&array));
        }
        Ok(array)
    }

    fn retrieve(&self, path: &str, subset: &ArraySubset) -> Result<Values> {
        let info = self.info(path)?;
        let array = self.array(path)?;
        let err = |e: zarrs::array::ArrayError| AnnDataError::read(path, e);
        macro_rules! get {
            ($t:ty) => {
                array
                    .retrieve_array_subset::<Vec<$t>>(subset)
                    .map_err(err)?
            };
        }
        macro_rules! ints {
            ($t:ty) => {
                Values::Int(get!($t).into_iter().map(|x| x as i64).collect())
            };
        }
        Ok(match info.dtype {
            Dtype::Bool => Values::Bool(get!(bool)),
            Dtype::Float { bytes: 4 } => Values::F32(get!(f32)),
            Dtype::Float { bytes: 8 } => Values::F64(get!(f64)),
            Dtype::Int {
                bytes: 1,
                signed: true,
            } => ints!(i8),
            Dtype::Int {
                bytes: 1,
                signed: false,
            } => ints!(u8),
            Dtype::Int {
                bytes: 2,
                signed: true,
            } => ints!(i16),
            Dtype::Int {
                bytes: 2,
                signed: false,
            } => ints!(u16),
            Dtype::Int {
                bytes: 4,
                signed: true,
            } => ints!(i32),
            Dtype::Int {
                bytes: 4,
                signed: false,
            } => ints!(u32),
            Dtype::Int {
                bytes: 8,
                signed: true,
            } => ints!(i64),
            Dtype::Int {
                bytes: 8,
                signed: false,
            } => ints!(u64),
            Dtype::Str => Values::Str(get!(String)),
            other => {
                return Err(AnnDataError::invalid(
                    path,
                    format!("unsupported Zarr data type {other}"),
                ))
            }
        })
    }
}

fn shape_of(doc: &Value, path: &str) -> Result<Vec<u64>> {
    doc.get("shape")
        .and_then(Value::as_array)
        .and_then(|dims| dims.iter().map(Value::as_u64).collect::<Option<Vec<u64>>>())
        .ok_or_else(|| AnnDataError::invalid(path, "array metadata has no valid shape"))
}

fn u64_list(value: Option<&Value>) -> Option<Vec<u64>> {
    value?.as_array()?.iter().map(Value::as_u64).collect()
}

/// The shape of the unit `zarrs` decodes at once: the inner chunks of a
/// sharded array, else the regular grid's chunks.
fn v3_chunk_shape(doc: &Value) -> Option<Vec<u64>> {
    let sharded = doc
        .get("codecs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c.get("name").and_then(Value::as_str) == Some("sharding_indexed"))
        .and_then(|c| u64_list(c.pointer("/configuration/chunk_shape")));
    sharded.or_else(|| u64_list(doc.pointer("/chunk_grid/configuration/chunk_shape")))
}

/// Refuses an array whose chunks would decode to more than a chunk may
/// hold ([`crate::budget::MAX_CHUNK_BYTES`]): `zarrs` allocates a whole
/// chunk to decode it, whatever the file really stores.
fn check_chunk(path: &str, chunks: &Option<Vec<u64>>, dtype: Dtype) -> Result<()> {
    let width = match dtype {
        Dtype::Bool => 1,
        Dtype::Int { bytes, .. } | Dtype::Float { bytes } => u64::from(bytes),
        // Variable-length: bounded while decoding (zarr_caps.rs).
        _ => return Ok(()),
    };
    let Some(chunks) = chunks else { return Ok(()) };
    let bytes = chunks.iter().fold(width, |n, &d| n.saturating_mul(d));
    let cap = crate::budget::chunk_cap();
    if bytes > cap {
        return Err(AnnDataError::invalid(
            path,
            format!(
                "its chunks {chunks:?} of {dtype} each decode to {}, more than the {} a chunk may hold",
                crate::budget::human(bytes),
                crate::budget::human(cap)
            ),
        ));
    }
    Ok(())
}

/// A numpy dtype string (`<f4`, `|b1`, `|O`…) as an element type.
fn v2_dtype(text: &str) -> Dtype {
    let kind = text.trim_start_matches(['<', '>', '|', '=']);
    let (letter, size) = kind.split_at(kind.len().min(1));
    let bytes: u8 = size.parse().unwrap_or(0);
    match letter {
        "b" => Dtype::Bool,
        "i" => Dtype::Int {
            bytes,
            signed: true,
        },
        "u" => Dtype::Int {
            bytes,
            signed: false,
        },
        "f" => Dtype::Float { bytes },
        "O" | "U" | "S" => Dtype::Str,
        _ => Dtype::Other,
    }
}

/// A Zarr v3 `data_type` name as an element type.
fn v3_dtype(text: &str) -> Dtype {
    match text {
        "bool" => Dtype::Bool,
        "string" => Dtype::Str,
        "float32" => Dtype::Float { bytes: 4 },
        "float64" => Dtype::Float { bytes: 8 },
        t => {
            let (signed, digits) = match t.strip_prefix("uint") {
                Some(d) => (false, d),
                None => (true, t.strip_prefix("int").unwrap_or("")),
            };
            match digits.parse::<u8>() {
                Ok(bits @ (8 | 16 | 32 | 64)) => Dtype::Int {
                    bytes: bits / 8,
                    signed,
                },
                _ => Dtype::Other,
            }
        }
    }
}

impl Backend for ZarrBackend {
    fn kind(&self, path: &str) -> Option<NodeKind> {
        self.node(path).ok().flatten().map(|n| n.kind)
    }

    fn attrs(&self, path: &str) -> Result<Map<String, Value>> {
        self.node(path)?
            .map(|n| n.attrs)
            .ok_or_else(|| AnnDataError::missing(path))
    }

    fn children(&self, path: &str) -> Result<Vec<String>> {
        let entries = self
            .store
            .list_dir(path)
            .map_err(|err| AnnDataError::read(path, err))?;
        let mut out = Vec::new();
        for entry in entries {
            if !entry.is_dir || entry.name.starts_with('.') {
                continue;
            }
            let child = meta_key(path, &entry.name);
            if self.node(&child)?.is_some() {
                out.push(entry.name);
            }
        }
        Ok(out)
    }

    fn info(&self, path: &str) -> Result<ArrayInfo> {
        self.node(path)?
            .and_then(|n| n.info)
            .ok_or_else(|| AnnDataError::missing(path))
    }

    fn read(&self, path: &str) -> Result<Values> {
        let info = self.info(path)?;
        let ranges: Vec<Range<u64>> = info.shape.iter().map(|&d| 0..d).collect();
        self.retrieve(path, &ArraySubset::new_with_ranges(&ranges))
    }

    fn read_range(&self, path: &str, range: Range<u64>) -> Result<Values> {
        let info = self.info(path)?;
        if info.shape.len() != 1 || range.end > info.shape[0] || range.start > range.end {
            return Err(AnnDataError::invalid(path, "range outside the 1-D array"));
        }
        self.retrieve(path, &ArraySubset::new_with_ranges(&[range]))
    }

    fn read_rows(&self, path: &str, rows: Range<u64>) -> Result<Values> {
        let info = self.info(path)?;
        let Some((&n, rest)) = info.shape.split_first() else {
            return Err(AnnDataError::invalid(path, "a scalar has no rows"));
        };
        if rows.end > n || rows.start > rows.end {
            return Err(AnnDataError::invalid(path, "rows outside the array"));
        }
        let mut ranges = vec![rows];
        ranges.extend(rest.iter().map(|&d| 0..d));
        self.retrieve(path, &ArraySubset::new_with_ranges(&ranges))
    }

    fn read_column(&self, path: &str, col: u64) -> Result<Values> {
        let info = self.info(path)?;
        let [n, m] = info.shape[..] else {
            return Err(AnnDataError::invalid(path, "expected a 2-D array"));
        };
        if col >= m {
            return Err(AnnDataError::invalid(path, "column outside the array"));
        }
        self.retrieve(path, &ArraySubset::new_with_ranges(&[0..n, col..col + 1]))
    }

    fn read_compound(&self, path: &str) -> Result<Vec<CompoundField>> {
        Err(AnnDataError::invalid(
            path,
            "compound (legacy pre-0.7) elements exist only in HDF5 files",
        ))
    }
}
