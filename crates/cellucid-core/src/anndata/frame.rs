//! Dataframes (`obs`, `var`, `raw/var`): column discovery by encoding, and
//! reading one column on demand.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::backend::{join, Backend, CompoundField, Dtype, NodeKind, Values};
use super::error::{AnnDataError, Result};

/// A category label, as the viewer's JSON shows it.
#[derive(Clone, Debug, PartialEq)]
pub enum Label {
    /// Text.
    Str(String),
    /// An integer category.
    Int(i64),
    /// A float category.
    Float(f64),
    /// A boolean category.
    Bool(bool),
}

impl Label {
    /// The label as JSON.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Str(s) => Value::String(s.clone()),
            Self::Int(i) => Value::from(*i),
            Self::Float(f) => Value::from(*f),
            Self::Bool(b) => Value::Bool(*b),
        }
    }

    /// The label as text (for gene names and messages).
    pub fn to_text(&self) -> String {
        match self {
            Self::Str(s) => s.clone(),
            Self::Int(i) => i.to_string(),
            Self::Float(f) => f.to_string(),
            Self::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
        }
    }
}

/// How a column is stored.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnEncoding {
    /// A numeric `array` (not boolean).
    Numeric(Dtype),
    /// A boolean `array`.
    Bool,
    /// A `string-array`.
    Strings,
    /// A `categorical` group.
    Categorical {
        /// Whether the categories are ordered.
        ordered: bool,
    },
    /// A `nullable-integer` group.
    NullableInt,
    /// A `nullable-boolean` group.
    NullableBool,
    /// A `nullable-string-array` group.
    NullableStrings,
    /// A legacy (pre-0.7) compound field with integer codes whose labels are
    /// in `uns/<column>_categories`.
    LegacyCategorical {
        /// Path of the categories array.
        categories: String,
    },
    /// A legacy compound field holding values directly.
    LegacyValues(Dtype),
    /// An encoding this reader does not know: the column is listed but not
    /// served.
    Unsupported {
        /// The `encoding-type`.
        encoding: String,
        /// The `encoding-version`.
        version: String,
    },
}

impl ColumnEncoding {
    /// Whether the viewer sees this column as continuous (numbers) rather
    /// than categorical; `None` for an unsupported column.
    pub fn is_continuous(&self) -> Option<bool> {
        match self {
            Self::Numeric(_) | Self::NullableInt => Some(true),
            Self::LegacyValues(d) => Some(*d != Dtype::Bool && d.is_numeric()),
            Self::Unsupported { .. } => None,
            _ => Some(false),
        }
    }

    /// A short description for `cellucid inspect`.
    pub fn describe(&self) -> String {
        match self {
            Self::Numeric(d) | Self::LegacyValues(d) => format!("numeric ({d})"),
            Self::Bool => "bool".into(),
            Self::Strings => "strings".into(),
            Self::Categorical { ordered: true } => "categorical (ordered)".into(),
            Self::Categorical { ordered: false } => "categorical".into(),
            Self::NullableInt => "nullable integer".into(),
            Self::NullableBool => "nullable boolean".into(),
            Self::NullableStrings => "nullable strings".into(),
            Self::LegacyCategorical { .. } => "categorical (legacy)".into(),
            Self::Unsupported { encoding, version } => {
                format!("unsupported encoding {encoding} {version}")
            }
        }
    }
}

/// One column of a dataframe.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnSpec {
    /// The column name.
    pub name: String,
    /// How it is stored.
    pub encoding: ColumnEncoding,
}

/// A decoded column.
#[derive(Clone, Debug, PartialEq)]
pub enum FrameColumn {
    /// Numbers; `missing[i]` marks masked slots of nullable integers.
    Continuous {
        /// The values.
        values: Values,
        /// Masked (missing) slots, when the column is nullable.
        missing: Option<Vec<bool>>,
    },
    /// Categories and one code per row (`-1` = missing).
    Categorical {
        /// One code per row.
        codes: Vec<i64>,
        /// The labels, in code order.
        categories: Vec<Label>,
        /// Whether the order is meaningful.
        ordered: bool,
    },
}

/// A dataframe element and its columns (nothing but metadata is read).
#[derive(Clone, Debug)]
pub struct Frame {
    path: String,
    n_rows: u64,
    index_name: String,
    columns: Vec<ColumnSpec>,
    legacy: Option<Arc<Vec<CompoundField>>>,
}

/// The `(encoding-type, encoding-version)` pairs this reader understands.
const KNOWN: [(&str, &str); 10] = [
    ("dataframe", "0.2.0"),
    ("array", "0.2.0"),
    ("string-array", "0.2.0"),
    ("categorical", "0.2.0"),
    ("nullable-integer", "0.1.0"),
    ("nullable-boolean", "0.1.0"),
    ("nullable-string-array", "0.1.0"),
    ("csr_matrix", "0.1.0"),
    ("csc_matrix", "0.1.0"),
    ("dict", "0.1.0"),
];

/// The `encoding-type` and `encoding-version` attributes of a node.
pub(crate) fn encoding_of(attrs: &Map<String, Value>) -> (Option<String>, String) {
    // A truncated or corrupt file can decode to garbage bytes; show them as
    // escapes rather than raw control characters.
    let text = |k: &str| {
        attrs.get(k).and_then(Value::as_str).map(|s| {
            if s.chars().any(char::is_control) {
                s.escape_default().to_string()
            } else {
                s.to_owned()
            }
        })
    };
    (
        text("encoding-type"),
        text("encoding-version").unwrap_or_default(),
    )
}

/// Checks that a node's encoding is the one expected and a known version.
pub(crate) fn check_encoding(
    path: &str,
    attrs: &Map<String, Value>,
    expected: &[&str],
) -> Result<()> {
    let (kind, version) = encoding_of(attrs);
    match kind {
        Some(kind) => {
            if expected.contains(&kind.as_str())
                && KNOWN.contains(&(kind.as_str(), version.as_str()))
            {
                Ok(())
            } else {
                Err(AnnDataError::UnknownEncoding {
                    element: path.to_owned(),
                    encoding: kind,
                    version,
                })
            }
        }
        None => Ok(()),
    }
}

impl Frame {
    /// Reads the metadata of the dataframe at `path`: a modern `dataframe`
    /// group, or a legacy compound dataset (whose fields are decoded once).
    ///
    /// # Errors
    /// When the element is missing or is not a dataframe.
    pub fn open(backend: &dyn Backend, path: &str) -> Result<Self> {
        match backend.kind(path) {
            None => Err(AnnDataError::missing(path)),
            Some(NodeKind::Array) => Self::open_legacy(backend, path),
            Some(NodeKind::Group) => Self::open_modern(backend, path),
        }
    }

    fn open_modern(backend: &dyn Backend, path: &str) -> Result<Self> {
        let attrs = backend.attrs(path)?;
        check_encoding(path, &attrs, &["dataframe"])?;
        let index_name = attrs
            .get("_index")
            .and_then(Value::as_str)
            .unwrap_or("_index")
            .to_owned();
        let index_path = join(path, &index_name);
        let index_info = backend.info(&index_path).map_err(|err| match err {
            AnnDataError::Missing { .. } => {
                AnnDataError::invalid(path, format!("its index {index_name:?} is missing"))
            }
            // Present but refused (a chunk over the cap…): say why.
            other => other,
        })?;
        let n_rows = index_info.shape.first().copied().unwrap_or(0);
        // An empty column-order is stored by h5py as an empty float64 array.
        let mut order: Vec<String> = match attrs.get("column-order") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        let children = backend.children(path)?;
        for child in &children {
            if child != &index_name && child != "__categories" && !order.contains(child) {
                order.push(child.clone());
            }
        }
        let mut columns = Vec::with_capacity(order.len());
        for name in order {
            let col_path = join(path, &name);
            let encoding = match backend.kind(&col_path) {
                None => {
                    return Err(AnnDataError::invalid(
                        path,
                        format!("column-order lists {name:?}, which is missing"),
                    ))
                }
                Some(kind) => column_encoding(backend, &col_path, kind)?,
            };
            columns.push(ColumnSpec { name, encoding });
        }
        Ok(Self {
            path: path.to_owned(),
            n_rows,
            index_name,
            columns,
            legacy: None,
        })
    }

    fn open_legacy(backend: &dyn Backend, path: &str) -> Result<Self> {
        let fields = backend.read_compound(path)?;
        let index = fields.iter().find(|f| f.name == "index").ok_or_else(|| {
            AnnDataError::invalid(path, "legacy dataframe without an index field")
        })?;
        let n_rows = index.values.len() as u64;
        let mut columns = Vec::new();
        for field in &fields {
            if field.name == "index" || field.width != 1 {
                continue;
            }
            // Pre-0.7 files keep categorical labels in uns/<col>_categories
            // (for obs and var alike).
            let cats = format!("uns/{}_categories", field.name);
            let encoding = if backend.kind(&cats) == Some(NodeKind::Array)
                && matches!(field.values, Values::Int(_))
            {
                ColumnEncoding::LegacyCategorical { categories: cats }
            } else {
                match &field.values {
                    Values::Str(_) => ColumnEncoding::Strings,
                    Values::Bool(_) => ColumnEncoding::Bool,
                    Values::Int(_) => ColumnEncoding::LegacyValues(Dtype::Int {
                        bytes: 8,
                        signed: true,
                    }),
                    Values::F32(_) => ColumnEncoding::LegacyValues(Dtype::Float { bytes: 4 }),
                    Values::F64(_) => ColumnEncoding::LegacyValues(Dtype::Float { bytes: 8 }),
                }
            };
            columns.push(ColumnSpec {
                name: field.name.clone(),
                encoding,
            });
        }
        Ok(Self {
            path: path.to_owned(),
            n_rows,
            index_name: "index".to_owned(),
            columns,
            legacy: Some(Arc::new(fields)),
        })
    }

    /// The element path (`obs`, `var`, `raw/var`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The element path of the index array (`obs/_index`), or `None` for
    /// a legacy compound dataframe (its index is a field).
    pub fn index_path(&self) -> Option<String> {
        self.legacy
            .is_none()
            .then(|| join(&self.path, &self.index_name))
    }

    /// Number of rows.
    pub fn n_rows(&self) -> u64 {
        self.n_rows
    }

    /// The columns, in `column-order` (then any unlisted children).
    pub fn columns(&self) -> &[ColumnSpec] {
        &self.columns
    }

    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnSpec> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Whether the frame is a legacy compound dataset.
    pub fn is_legacy(&self) -> bool {
        self.legacy.is_some()
    }

    /// The row names.
    ///
    /// # Errors
    /// When the index cannot be read or is not text.
    pub fn index(&self, backend: &dyn Backend) -> Result<Vec<String>> {
        let values = match &self.legacy {
            Some(fields) => fields
                .iter()
                .find(|f| f.name == "index")
                .map(|f| f.values.clone())
                .ok_or_else(|| AnnDataError::missing(&join(&self.path, "index")))?,
            None => backend.read(&join(&self.path, &self.index_name))?,
        };
        match values {
            Values::Str(names) => Ok(names),
            Values::Int(ints) => Ok(ints.iter().map(i64::to_string).collect()),
            other => Err(AnnDataError::invalid(
                &join(&self.path, &self.index_name),
                format!("the index holds {} values, not text", other.type_name()),
            )),
        }
    }

    /// Reads column `name`.
    ///
    /// # Errors
    /// When the column is missing, unsupported, or inconsistent.
    pub fn read_column(&self, backend: &dyn Backend, name: &str) -> Result<FrameColumn> {
        let path = join(&self.path, name);
        let spec = self
            .column(name)
            .ok_or_else(|| AnnDataError::missing(&path))?;
        let column = match &spec.encoding {
            ColumnEncoding::Numeric(_) => FrameColumn::Continuous {
                values: backend.read(&path)?,
                missing: None,
            },
            ColumnEncoding::Bool => bool_column(&bool_values(backend.read(&path)?, &path)?, None),
            ColumnEncoding::Strings => {
                strings_column(&text_values(backend.read(&path)?, &path)?, None)
            }
            ColumnEncoding::Categorical { ordered } => {
                let codes = backend
                    .read(&join(&path, "codes"))?
                    .to_i64()
                    .ok_or_else(|| AnnDataError::invalid(&path, "codes are not integers"))?;
                let categories = labels(backend.read(&join(&path, "categories"))?);
                check_codes(&path, &codes, categories.len())?;
                FrameColumn::Categorical {
                    codes,
                    categories,
                    ordered: *ordered,
                }
            }
            ColumnEncoding::NullableInt => FrameColumn::Continuous {
                values: backend.read(&join(&path, "values"))?,
                missing: Some(bool_values(backend.read(&join(&path, "mask"))?, &path)?),
            },
            ColumnEncoding::NullableBool => {
                let values = bool_values(backend.read(&join(&path, "values"))?, &path)?;
                let mask = bool_values(backend.read(&join(&path, "mask"))?, &path)?;
                bool_column(&values, Some(&mask))
            }
            ColumnEncoding::NullableStrings => {
                let values = text_values(backend.read(&join(&path, "values"))?, &path)?;
                let mask = bool_values(backend.read(&join(&path, "mask"))?, &path)?;
                strings_column(&values, Some(&mask))
            }
            ColumnEncoding::LegacyCategorical { categories } => {
                let codes = self
                    .legacy_field(name)?
                    .to_i64()
                    .ok_or_else(|| AnnDataError::invalid(&path, "codes are not integers"))?;
                let categories = labels(backend.read(categories)?);
                check_codes(&path, &codes, categories.len())?;
                FrameColumn::Categorical {
                    codes,
                    categories,
                    ordered: false,
                }
            }
            ColumnEncoding::LegacyValues(_) => FrameColumn::Continuous {
                values: self.legacy_field(name)?,
                missing: None,
            },
            ColumnEncoding::Unsupported { encoding, version } => {
                return Err(AnnDataError::UnknownEncoding {
                    element: path,
                    encoding: encoding.clone(),
                    version: version.clone(),
                })
            }
        };
        let len = match &column {
            FrameColumn::Continuous { values, .. } => values.len(),
            FrameColumn::Categorical { codes, .. } => codes.len(),
        };
        if len as u64 != self.n_rows {
            return Err(AnnDataError::invalid(
                &path,
                format!("has {len} rows; the dataframe has {}", self.n_rows),
            ));
        }
        Ok(column)
    }

    fn legacy_field(&self, name: &str) -> Result<Values> {
        self.legacy
            .as_ref()
            .and_then(|fields| fields.iter().find(|f| f.name == name))
            .map(|f| f.values.clone())
            .ok_or_else(|| AnnDataError::missing(&join(&self.path, name)))
    }
}

fn column_encoding(backend: &dyn Backend, path: &str, kind: NodeKind) -> Result<ColumnEncoding> {
    let attrs = backend.attrs(path)?;
    let (encoding, version) = encoding_of(&attrs);
    let known = |t: &str| KNOWN.contains(&(t, version.as_str()));
    Ok(match (kind, encoding.as_deref()) {
        (NodeKind::Array, t @ (Some("array" | "string-array") | None)) if t.is_none_or(known) => {
            match backend.info(path)?.dtype {
                Dtype::Bool => ColumnEncoding::Bool,
                Dtype::Str => ColumnEncoding::Strings,
                d if d.is_numeric() => ColumnEncoding::Numeric(d),
                d => ColumnEncoding::Unsupported {
                    encoding: format!("array of {d}"),
                    version,
                },
            }
        }
        (NodeKind::Group, Some("categorical")) if known("categorical") => {
            ColumnEncoding::Categorical {
                ordered: attrs
                    .get("ordered")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            }
        }
        (NodeKind::Group, Some("nullable-integer")) if known("nullable-integer") => {
            ColumnEncoding::NullableInt
        }
        (NodeKind::Group, Some("nullable-boolean")) if known("nullable-boolean") => {
            ColumnEncoding::NullableBool
        }
        (NodeKind::Group, Some("nullable-string-array")) if known("nullable-string-array") => {
            ColumnEncoding::NullableStrings
        }
        (_, other) => ColumnEncoding::Unsupported {
            encoding: other.unwrap_or("(none)").to_owned(),
            version,
        },
    })
}

fn check_codes(path: &str, codes: &[i64], n_categories: usize) -> Result<()> {
    if let Some(bad) = codes.iter().find(|&&c| c < -1 || c >= n_categories as i64) {
        return Err(AnnDataError::invalid(
            path,
            format!("code {bad} is outside the {n_categories} categories"),
        ));
    }
    Ok(())
}

fn bool_values(values: Values, path: &str) -> Result<Vec<bool>> {
    match values {
        Values::Bool(b) => Ok(b),
        Values::Int(i) => Ok(i.into_iter().map(|x| x != 0).collect()),
        other => Err(AnnDataError::invalid(
            path,
            format!("expected booleans, found {}", other.type_name()),
        )),
    }
}

fn text_values(values: Values, path: &str) -> Result<Vec<String>> {
    match values {
        Values::Str(s) => Ok(s),
        other => Err(AnnDataError::invalid(
            path,
            format!("expected text, found {}", other.type_name()),
        )),
    }
}

fn labels(values: Values) -> Vec<Label> {
    match values {
        Values::Str(v) => v.into_iter().map(Label::Str).collect(),
        Values::Int(v) => v.into_iter().map(Label::Int).collect(),
        Values::Bool(v) => v.into_iter().map(Label::Bool).collect(),
        Values::F32(v) => v.into_iter().map(|x| Label::Float(f64::from(x))).collect(),
        Values::F64(v) => v.into_iter().map(Label::Float).collect(),
    }
}

/// Booleans as pandas makes them categorical: categories `[false, true]`.
fn bool_column(values: &[bool], mask: Option<&[bool]>) -> FrameColumn {
    let codes = values
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if mask.is_some_and(|m| m.get(i).copied().unwrap_or(false)) {
                -1
            } else {
                i64::from(b)
            }
        })
        .collect();
    FrameColumn::Categorical {
        codes,
        categories: vec![Label::Bool(false), Label::Bool(true)],
        ordered: false,
    }
}

/// Text as pandas makes it categorical: sorted unique values.
fn strings_column(values: &[String], mask: Option<&[bool]>) -> FrameColumn {
    let missing = |i: usize| mask.is_some_and(|m| m.get(i).copied().unwrap_or(false));
    let mut unique: Vec<&str> = values
        .iter()
        .enumerate()
        .filter(|(i, _)| !missing(*i))
        .map(|(_, s)| s.as_str())
        .collect();
    unique.sort_unstable();
    unique.dedup();
    let codes = values
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if missing(i) {
                -1
            } else {
                unique.binary_search(&s.as_str()).map_or(-1, |p| p as i64)
            }
        })
        .collect();
    FrameColumn::Categorical {
        codes,
        categories: unique
            .into_iter()
            .map(|s| Label::Str(s.to_owned()))
            .collect(),
        ordered: false,
    }
}
