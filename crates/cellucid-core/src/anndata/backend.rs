//! The storage seam of the AnnData model: what an HDF5 file or a Zarr store
//! must answer so the model can read AnnData elements from it.
//!
//! Paths are `/`-separated element paths from the root, without a leading
//! slash (`""` is the root, `obs/cell_type/codes` an array).

use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::error::Result;

/// Whether a node is a group or an array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// A group (HDF5 group, Zarr group).
    Group,
    /// An array (HDF5 dataset, Zarr array).
    Array,
}

/// Decoded array values, widened to a few Rust types.
///
/// Integers of every width become `i64` (an unsigned 64-bit value above
/// `i64::MAX` is refused by the backends), so callers match on meaning rather
/// than on storage width.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// Booleans (HDF5's int8 enum, Zarr `|b1` / `bool`).
    Bool(Vec<bool>),
    /// Integers of any width.
    Int(Vec<i64>),
    /// 32-bit floats.
    F32(Vec<f32>),
    /// 64-bit floats.
    F64(Vec<f64>),
    /// Text.
    Str(Vec<String>),
}

impl Values {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::Bool(v) => v.len(),
            Self::Int(v) => v.len(),
            Self::F32(v) => v.len(),
            Self::F64(v) => v.len(),
            Self::Str(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A short name of the element type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Bool(_) => "bool",
            Self::Int(_) => "integer",
            Self::F32(_) => "float32",
            Self::F64(_) => "float64",
            Self::Str(_) => "string",
        }
    }

    /// The values as JSON values (attributes, `uns` entries).
    pub fn into_json(self) -> Vec<Value> {
        match self {
            Self::Bool(v) => v.into_iter().map(Value::Bool).collect(),
            Self::Int(v) => v.into_iter().map(Value::from).collect(),
            Self::F32(v) => v.into_iter().map(|x| Value::from(f64::from(x))).collect(),
            Self::F64(v) => v.into_iter().map(Value::from).collect(),
            Self::Str(v) => v.into_iter().map(Value::String).collect(),
        }
    }

    /// The values as `f64` (booleans as 0/1); `None` for text.
    pub fn to_f64(&self) -> Option<Vec<f64>> {
        Some(match self {
            Self::Bool(v) => v.iter().map(|&b| f64::from(u8::from(b))).collect(),
            Self::Int(v) => v.iter().map(|&x| x as f64).collect(),
            Self::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Self::F64(v) => v.clone(),
            Self::Str(_) => return None,
        })
    }

    /// The values as `f32` (rounded); `None` for text.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        Some(match self {
            Self::Bool(v) => v.iter().map(|&b| f32::from(u8::from(b))).collect(),
            Self::Int(v) => v.iter().map(|&x| x as f32).collect(),
            Self::F32(v) => v.clone(),
            Self::F64(v) => v.iter().map(|&x| x as f32).collect(),
            Self::Str(_) => return None,
        })
    }

    /// Consumes the values into `f32` (rounded), without a copy when they
    /// already are; `None` for text.
    pub fn into_f32(self) -> Option<Vec<f32>> {
        match self {
            Self::F32(v) => Some(v),
            other => other.to_f32(),
        }
    }

    /// Consumes the values into integers, without a copy when they already
    /// are; `None` for floats and text.
    pub fn into_i64(self) -> Option<Vec<i64>> {
        match self {
            Self::Int(v) => Some(v),
            other => other.to_i64(),
        }
    }

    /// The values as integers; `None` for floats and text.
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        match self {
            Self::Int(v) => Some(v.clone()),
            Self::Bool(v) => Some(v.iter().map(|&b| i64::from(b)).collect()),
            _ => None,
        }
    }

    /// Whether the values are numbers (or booleans).
    pub fn is_numeric(&self) -> bool {
        !matches!(self, Self::Str(_))
    }
}

/// Element types as the store declares them, known without reading data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// Boolean.
    Bool,
    /// Signed or unsigned integer of this many bytes.
    Int {
        /// Width in bytes.
        bytes: u8,
        /// Whether it is signed.
        signed: bool,
    },
    /// Float of this many bytes.
    Float {
        /// Width in bytes.
        bytes: u8,
    },
    /// Text.
    Str,
    /// A record type (legacy compound `obs`/`var`/`obsm` datasets).
    Compound,
    /// Anything else (opaque, references…).
    Other,
}

impl Dtype {
    /// Whether the type holds numbers.
    pub fn is_numeric(self) -> bool {
        matches!(self, Self::Int { .. } | Self::Float { .. } | Self::Bool)
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool => write!(f, "bool"),
            Self::Int { bytes, signed } => {
                write!(f, "{}int{}", if *signed { "" } else { "u" }, bytes * 8)
            }
            Self::Float { bytes } => write!(f, "float{}", bytes * 8),
            Self::Str => write!(f, "string"),
            Self::Compound => write!(f, "compound"),
            Self::Other => write!(f, "other"),
        }
    }
}

/// Shape and element type of an array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArrayInfo {
    /// Dimensions (empty for a scalar).
    pub shape: Vec<u64>,
    /// Element type.
    pub dtype: Dtype,
}

/// One field of a legacy compound dataset, decoded.
#[derive(Clone, Debug)]
pub struct CompoundField {
    /// The field name.
    pub name: String,
    /// Elements per record (1, or the width of an array-typed field).
    pub width: usize,
    /// The values, record-major (`records × width`).
    pub values: Values,
}

/// The stored bytes of a range of a 1-D number array, not decoded: what a
/// bulk pass (the CSR column index build) reads instead of [`Values`], so
/// it loops over the elements as stored without an intermediate vector.
#[derive(Clone, Debug)]
pub struct RawRange {
    /// The element type: [`Dtype::Int`] or [`Dtype::Float`], little-endian.
    pub dtype: Dtype,
    /// The elements' bytes, in order, in pieces that each hold a whole
    /// number of elements (a piece per stored chunk the range touches).
    pub pieces: Vec<Bytes>,
}

/// What the AnnData model needs from a storage format.
pub trait Backend: Send + Sync + fmt::Debug {
    /// The kind of node at `path`, `None` when nothing is there.
    fn kind(&self, path: &str) -> Option<NodeKind>;

    /// The node's attributes as JSON (strings, numbers, booleans, arrays).
    ///
    /// # Errors
    /// When the node is missing or its attributes cannot be decoded.
    fn attrs(&self, path: &str) -> Result<Map<String, Value>>;

    /// Names of a group's children, sorted.
    ///
    /// # Errors
    /// When the group is missing or cannot be listed.
    fn children(&self, path: &str) -> Result<Vec<String>>;

    /// Shape and type of an array.
    ///
    /// # Errors
    /// When the array is missing or its metadata is invalid.
    fn info(&self, path: &str) -> Result<ArrayInfo>;

    /// All values of an array, row-major.
    ///
    /// # Errors
    /// When the array cannot be read or decoded.
    fn read(&self, path: &str) -> Result<Values>;

    /// Elements `range` of a 1-D array.
    ///
    /// # Errors
    /// When the range is outside the array or the bytes cannot be decoded.
    fn read_range(&self, path: &str, range: Range<u64>) -> Result<Values>;

    /// Elements `range` of a 1-D number array as stored (little-endian),
    /// borrowed from the store where it can lend them; `None` when the
    /// store cannot hand them out undecoded (filtered or big-endian data,
    /// a format without the support): the caller then uses
    /// [`Backend::read_range`].
    ///
    /// # Errors
    /// When the array is missing.
    fn read_range_raw(&self, path: &str, range: Range<u64>) -> Result<Option<RawRange>> {
        let _ = (path, range);
        Ok(None)
    }

    /// How many bytes the file stores for the array, when the backend knows
    /// it for certain without reading data (`Some(0)`: nothing is stored,
    /// every element would be the fill value). `None`: not known (chunked
    /// or compressed storage). Lets a claimed shape be checked against the
    /// file before anything is allocated for it.
    fn stored_bytes(&self, path: &str) -> Option<u64> {
        let _ = path;
        None
    }

    /// Rows `rows` of a 2-D array, row-major.
    ///
    /// # Errors
    /// When the rows are outside the array or the bytes cannot be decoded.
    fn read_rows(&self, path: &str, rows: Range<u64>) -> Result<Values>;

    /// Column `col` of a 2-D array.
    ///
    /// # Errors
    /// When the column is outside the array or the bytes cannot be decoded.
    fn read_column(&self, path: &str, col: u64) -> Result<Values>;

    /// The fields of a legacy compound dataset (pre-0.7 `obs`, `var`,
    /// `obsm`), in declaration order.
    ///
    /// # Errors
    /// When the dataset is not a compound or cannot be decoded.
    fn read_compound(&self, path: &str) -> Result<Vec<CompoundField>>;
}

/// Joins element paths: `join("obs", "cat")` is `obs/cat`.
pub(crate) fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}/{child}")
    }
}
