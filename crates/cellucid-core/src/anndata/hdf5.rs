//! The HDF5 backend (`.h5ad`), over the pure-Rust `hdf5-reader`.
//!
//! `hdf5-reader` reads files written with every `libver` (including h5py's
//! `latest`, which Debian's libhdf5 1.10 cannot open), needs no system
//! library and decodes chunks in parallel without a global lock.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};

use hdf5_reader::{
    ByteOrder, Dataset, Datatype, Hdf5File, OpenOptions, SliceInfo, SliceInfoElem, StringSize,
};
use serde_json::{Map, Value};

use super::backend::{ArrayInfo, Backend, CompoundField, Dtype, NodeKind, RawRange, Values};
use super::error::{AnnDataError, Result};
use super::hdf5_direct::DirectLayout;
use crate::file::InputFile;
use crate::key::RelativeKey;

/// Decoded chunks kept by the reader: enough for the metadata and a few
/// columns, small enough to keep resident memory flat.
const CHUNK_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// The HDF5 filter id h5py registers for LZF.
const LZF_FILTER_ID: u16 = 32000;
/// The most an LZF chunk may inflate to (the size h5py records is used
/// when smaller). The built-in filters (deflate, shuffle…) are bounded by
/// `hdf5-reader` itself: it passes each chunk's declared size (chunk shape
/// × element size) to them as the output limit.
const LZF_MAX_CHUNK: usize = crate::budget::MAX_CHUNK_BYTES as usize;

/// h5py's LZF filter (`compression="lzf"`), which `hdf5-reader` does not
/// ship: client data `[version, lzf version, chunk bytes]`.
fn lzf_filter(
    filter: &hdf5_reader::messages::filter_pipeline::FilterDescription,
    data: &[u8],
    _element_size: usize,
) -> hdf5_reader::error::Result<Vec<u8>> {
    // The recorded size is a claim of the file: never above the cap.
    let expected = filter
        .client_data
        .get(2)
        .map(|&n| n as usize)
        .filter(|&n| n > 0);
    lzf_decompress(data, expected.unwrap_or(LZF_MAX_CHUNK).min(LZF_MAX_CHUNK))
        .ok_or_else(|| hdf5_reader::error::Error::InvalidData("corrupt LZF chunk".into()))
}

/// Decompresses one LZF block (liblzf's format), refusing to produce more
/// than `max` bytes or to reference bytes before the start.
fn lzf_decompress(input: &[u8], max: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(max.min(input.len().saturating_mul(4)));
    let mut i = 0;
    while i < input.len() {
        let ctrl = usize::from(input[i]);
        i += 1;
        if ctrl < 32 {
            let len = ctrl + 1;
            let lit = input.get(i..i + len)?;
            if out.len() + len > max {
                return None;
            }
            out.extend_from_slice(lit);
            i += len;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += usize::from(*input.get(i)?);
                i += 1;
            }
            let back = ((ctrl & 0x1f) << 8) + usize::from(*input.get(i)?) + 1;
            i += 1;
            len += 2;
            let start = out.len().checked_sub(back)?;
            if out.len() + len > max {
                return None;
            }
            // Byte by byte: the reference may overlap what it produces.
            for k in 0..len {
                let b = out[start + k];
                out.push(b);
            }
        }
    }
    Some(out)
}

/// `hdf5-reader` storage over an [`InputFile`]: every read is a positioned
/// read into a fresh buffer, bounded by the size the file had when opened.
struct PreadStorage {
    input: InputFile,
    len: u64,
}

impl hdf5_reader::storage::Storage for PreadStorage {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_range(
        &self,
        offset: u64,
        len: usize,
    ) -> hdf5_reader::error::Result<hdf5_reader::storage::StorageBuffer> {
        let needed = len as u64;
        if offset.checked_add(needed).is_none_or(|end| end > self.len) {
            return Err(hdf5_reader::error::Error::UnexpectedEof {
                offset,
                needed,
                available: self.len.saturating_sub(offset),
            });
        }
        let buf = self.input.read_vec_at(offset, len)?;
        Ok(hdf5_reader::storage::StorageBuffer::from_vec(buf))
    }
}

/// An `.h5ad` file opened read-only.
pub(super) struct Hdf5Backend {
    file: Hdf5File,
    /// Per dataset path: where its bytes lie when they can be read as stored
    /// (`None`: use the decoding path). A few words per chunk, located once.
    direct: Mutex<HashMap<String, Option<Arc<DirectLayout>>>>,
}

impl std::fmt::Debug for Hdf5Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hdf5Backend").finish_non_exhaustive()
    }
}

impl Hdf5Backend {
    /// Opens `path` (the superblock and root group are read, nothing else).
    ///
    /// # Errors
    /// [`AnnDataError::Open`] when the file is not readable HDF5.
    pub(super) fn open(path: &Path) -> Result<Self> {
        let mut filters = hdf5_reader::FilterRegistry::new();
        filters.register(LZF_FILTER_ID, Box::new(lzf_filter));
        let options = OpenOptions::default()
            .with_chunk_cache_bytes(CHUNK_CACHE_BYTES)
            .with_filter_registry(filters);
        let open_err = |reason: String| AnnDataError::Open {
            path: path.to_owned(),
            what: "an HDF5 file",
            reason,
        };
        let input = InputFile::open(path, &RelativeKey::trusted("store.h5ad"))
            .map_err(|err| open_err(err.to_string()))?;
        // Positioned reads, never a map: a file shrunk under us must fail a
        // read, not end the process with SIGBUS (`crate::file::InputFile`).
        let storage = PreadStorage {
            len: crate::SourceFile::len(&input),
            input,
        };
        let file = Hdf5File::from_storage_with_options(Arc::new(storage), options)
            .map_err(|err| open_err(err.to_string()))?;
        file.root_group().map_err(|err| AnnDataError::Open {
            path: path.to_owned(),
            what: "an HDF5 file",
            reason: err.to_string(),
        })?;
        Ok(Self {
            file,
            direct: Mutex::new(HashMap::new()),
        })
    }

    /// Where `ds`'s bytes lie, when they can be borrowed from the map as
    /// stored: a 1-D plain number array (not bool) without filters.
    fn direct_layout(&self, path: &str, ds: &Dataset) -> Option<Arc<DirectLayout>> {
        if let Some(known) = self.direct.lock().ok()?.get(path) {
            return known.clone();
        }
        let elem = match dtype_of(ds.dtype()) {
            Dtype::Float { bytes: 4 | 8 } | Dtype::Int { .. } => element_size(ds.dtype()),
            _ => None,
        };
        let located = elem
            .and_then(|elem| DirectLayout::locate(&self.file, ds, elem))
            .map(Arc::new);
        self.direct
            .lock()
            .ok()?
            .insert(path.to_owned(), located.clone());
        located
    }

    /// `read_range` through the decoding path only (the reference the direct
    /// path is tested against).
    fn read_range_decoded(&self, ds: &Dataset, path: &str, range: Range<u64>) -> Result<Values> {
        let sel = SliceInfo {
            selections: vec![SliceInfoElem::Slice {
                start: range.start,
                end: range.end,
                step: 1,
            }],
        };
        read_slice(ds, path, &sel)
    }

    fn group(&self, path: &str) -> Option<hdf5_reader::group::Group> {
        if path.is_empty() {
            return self.file.root_group().ok();
        }
        self.file.group(path).ok()
    }

    fn dataset(&self, path: &str) -> Result<Dataset> {
        if path.is_empty() {
            return Err(AnnDataError::missing(path));
        }
        let ds = self
            .file
            .dataset(path)
            .map_err(|_| AnnDataError::missing(path))?;
        check_chunk(path, &ds)?;
        Ok(ds)
    }
}

impl Backend for Hdf5Backend {
    fn kind(&self, path: &str) -> Option<NodeKind> {
        if path.is_empty() {
            return Some(NodeKind::Group);
        }
        let (parent, name) = match path.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => ("", path),
        };
        let group = self.group(parent)?;
        let (groups, datasets) = group.member_names().ok()?;
        if groups.iter().any(|g| g == name) {
            Some(NodeKind::Group)
        } else if datasets.iter().any(|d| d == name) {
            Some(NodeKind::Array)
        } else {
            None
        }
    }

    fn attrs(&self, path: &str) -> Result<Map<String, Value>> {
        let attributes = match self.kind(path) {
            Some(NodeKind::Group) => self
                .group(path)
                .ok_or_else(|| AnnDataError::missing(path))?
                .attributes()
                .map_err(|err| AnnDataError::read(path, err))?,
            Some(NodeKind::Array) => self.dataset(path)?.attributes(),
            None => return Err(AnnDataError::missing(path)),
        };
        let mut map = Map::new();
        for attr in attributes {
            if let Some(value) = attribute_json(&attr) {
                map.insert(attr.name.clone(), value);
            }
        }
        Ok(map)
    }

    fn children(&self, path: &str) -> Result<Vec<String>> {
        let group = self
            .group(path)
            .ok_or_else(|| AnnDataError::missing(path))?;
        let (mut groups, datasets) = group
            .member_names()
            .map_err(|err| AnnDataError::read(path, err))?;
        groups.extend(datasets);
        groups.sort();
        Ok(groups)
    }

    fn info(&self, path: &str) -> Result<ArrayInfo> {
        let ds = self.dataset(path)?;
        Ok(ArrayInfo {
            shape: ds.shape().to_vec(),
            dtype: dtype_of(ds.dtype()),
        })
    }

    fn read(&self, path: &str) -> Result<Values> {
        let ds = self.dataset(path)?;
        match ds.dtype() {
            Datatype::String { .. } | Datatype::VarLen { .. } => ds
                .read_strings()
                .map(Values::Str)
                .map_err(|err| AnnDataError::read(path, err)),
            // Plain floats decode straight into their vector, without a
            // second copy of the bytes (large obsm matrices).
            Datatype::FloatingPoint { size: 4, .. } => ds
                .read_array::<f32>()
                .map(|a| Values::F32(a.into_raw_vec_and_offset().0))
                .map_err(|err| AnnDataError::read(path, err)),
            Datatype::FloatingPoint { size: 8, .. } => ds
                .read_array::<f64>()
                .map(|a| Values::F64(a.into_raw_vec_and_offset().0))
                .map_err(|err| AnnDataError::read(path, err)),
            dtype => {
                let raw = ds
                    .read_raw_bytes()
                    .map_err(|err| AnnDataError::read(path, err))?;
                decode(&raw, dtype).ok_or_else(|| unsupported(path, dtype))
            }
        }
    }

    fn read_range(&self, path: &str, range: Range<u64>) -> Result<Values> {
        let ds = self.dataset(path)?;
        // Only the requested bytes, borrowed from the map, when stored as is
        // (a gene column of a CSC matrix: 80 KB instead of two 1 MB chunks).
        if range.start <= range.end && range.end <= ds.shape().first().copied().unwrap_or(0) {
            if let Some(values) = self
                .direct_layout(path, &ds)
                .and_then(|layout| layout.read(&self.file, range.clone()))
                .and_then(|raw| decode(&raw, ds.dtype()))
            {
                return Ok(values);
            }
        }
        self.read_range_decoded(&ds, path, range)
    }

    fn read_range_raw(&self, path: &str, range: Range<u64>) -> Result<Option<RawRange>> {
        let ds = self.dataset(path)?;
        let little = matches!(
            ds.dtype(),
            Datatype::FixedPoint {
                byte_order: ByteOrder::LittleEndian,
                ..
            } | Datatype::FloatingPoint {
                byte_order: ByteOrder::LittleEndian,
                ..
            }
        );
        // Out-of-range requests go to `read_range`, which says what is wrong.
        if !little
            || range.start > range.end
            || range.end > ds.shape().first().copied().unwrap_or(0)
        {
            return Ok(None);
        }
        Ok(self
            .direct_layout(path, &ds)
            .and_then(|layout| layout.pieces(&self.file, range))
            .map(|pieces| RawRange {
                dtype: dtype_of(ds.dtype()),
                pieces,
            }))
    }

    fn stored_bytes(&self, path: &str) -> Option<u64> {
        use hdf5_reader::messages::layout::DataLayout;
        use hdf5_reader::messages::HdfMessage;
        use hdf5_reader::object_header::ObjectHeader;
        let ds = self.dataset(path).ok()?;
        let superblock = self.file.superblock();
        let header = ObjectHeader::parse_at_storage(
            self.file.storage(),
            ds.address(),
            superblock.offset_size,
            superblock.length_size,
        )
        .ok()?;
        let undefined = |address: u64| match superblock.offset_size {
            2 => address == 0xFFFF,
            4 => address == 0xFFFF_FFFF,
            _ => address == u64::MAX,
        };
        let mut layout = None;
        for message in &header.messages {
            match message {
                HdfMessage::DataLayout(l) => layout = Some(l.layout.clone()),
                // Data in other files: not known from this one.
                HdfMessage::ExternalFiles(_) => return None,
                _ => {}
            }
        }
        // Contiguous and compact storage hold every element as is; a chunk
        // index that was never written means no chunk is stored at all.
        match layout? {
            DataLayout::Compact { data } => Some(data.len() as u64),
            DataLayout::Contiguous { address, .. } if undefined(address) => Some(0),
            DataLayout::Contiguous { size, .. } => Some(size),
            DataLayout::Chunked { address, .. } if undefined(address) => Some(0),
            DataLayout::Chunked { .. } => None,
        }
    }

    fn read_rows(&self, path: &str, rows: Range<u64>) -> Result<Values> {
        let ds = self.dataset(path)?;
        let mut sel = SliceInfo::all(ds.ndim());
        if let Some(first) = sel.selections.first_mut() {
            *first = SliceInfoElem::Slice {
                start: rows.start,
                end: rows.end,
                step: 1,
            };
        }
        read_slice(&ds, path, &sel)
    }

    fn read_column(&self, path: &str, col: u64) -> Result<Values> {
        let ds = self.dataset(path)?;
        if ds.ndim() != 2 {
            return Err(AnnDataError::invalid(path, "expected a 2-D array"));
        }
        let sel = SliceInfo {
            selections: vec![
                SliceInfoElem::Slice {
                    start: 0,
                    end: u64::MAX,
                    step: 1,
                },
                SliceInfoElem::Index(col),
            ],
        };
        read_slice(&ds, path, &sel)
    }

    fn read_compound(&self, path: &str) -> Result<Vec<CompoundField>> {
        let ds = self.dataset(path)?;
        let Datatype::Compound { size, fields } = ds.dtype().clone() else {
            return Err(AnnDataError::invalid(path, "not a compound dataset"));
        };
        let raw = ds
            .read_raw_bytes()
            .map_err(|err| AnnDataError::read(path, err))?;
        let record = size as usize;
        if record == 0 || raw.len() % record != 0 {
            return Err(AnnDataError::invalid(path, "records do not fill the data"));
        }
        let n = raw.len() / record;
        let mut out = Vec::with_capacity(fields.len());
        for field in fields {
            let (base, width) = match &field.datatype {
                Datatype::Array { base, dims } => {
                    (base.as_ref().clone(), dims.iter().product::<u64>() as usize)
                }
                other => (other.clone(), 1),
            };
            let elem = element_size(&base)
                .ok_or_else(|| unsupported(&format!("{path}/{}", field.name), &base))?;
            let offset = field.byte_offset as usize;
            if offset + elem * width > record {
                return Err(AnnDataError::invalid(
                    path,
                    "a field lies outside its record",
                ));
            }
            let mut bytes = Vec::with_capacity(n * elem * width);
            for r in 0..n {
                let start = r * record + offset;
                bytes.extend_from_slice(&raw[start..start + elem * width]);
            }
            let values = match &base {
                Datatype::String {
                    size: StringSize::Fixed(len),
                    ..
                } => Values::Str(fixed_strings(&bytes, *len as usize)),
                other => decode(&bytes, other)
                    .ok_or_else(|| unsupported(&format!("{path}/{}", field.name), other))?,
            };
            out.push(CompoundField {
                name: field.name.clone(),
                width,
                values,
            });
        }
        Ok(out)
    }
}

/// Refuses a dataset whose chunks declare more than a chunk may hold: the
/// reader allocates a whole chunk to decode it, and a filter inflates up to
/// the declared size, whatever the file really stores (the same cap as the
/// Zarr chunks, SECURITY.md "Hostile dataset files").
fn check_chunk(path: &str, ds: &Dataset) -> Result<()> {
    let Some(chunks) = ds.chunks() else {
        return Ok(());
    };
    let elem = ds.raw_element_size().unwrap_or(1) as u64;
    let bytes = chunks
        .iter()
        .fold(elem, |n, &d| n.saturating_mul(u64::from(d)));
    let cap = crate::budget::chunk_cap();
    if bytes > cap {
        return Err(AnnDataError::invalid(
            path,
            format!(
                "its chunks {chunks:?} each decode to {}, more than the {} a chunk may hold",
                crate::budget::human(bytes),
                crate::budget::human(cap)
            ),
        ));
    }
    Ok(())
}

fn unsupported(path: &str, dtype: &Datatype) -> AnnDataError {
    AnnDataError::invalid(path, format!("unsupported HDF5 datatype {dtype:?}"))
}

fn read_slice(ds: &Dataset, path: &str, sel: &SliceInfo) -> Result<Values> {
    let err = |e: hdf5_reader::error::Error| AnnDataError::read(path, e);
    Ok(match dtype_of(ds.dtype()) {
        Dtype::Float { bytes: 4 } => Values::F32(flat(ds.read_slice::<f32>(sel).map_err(err)?)),
        Dtype::Float { bytes: 8 } => Values::F64(flat(ds.read_slice::<f64>(sel).map_err(err)?)),
        Dtype::Int { bytes, signed } => {
            macro_rules! ints {
                ($t:ty) => {
                    Values::Int(
                        flat(ds.read_slice::<$t>(sel).map_err(err)?)
                            .into_iter()
                            .map(|x| x as i64)
                            .collect(),
                    )
                };
            }
            match (bytes, signed) {
                (1, true) => ints!(i8),
                (1, false) => ints!(u8),
                (2, true) => ints!(i16),
                (2, false) => ints!(u16),
                (4, true) => ints!(i32),
                (4, false) => ints!(u32),
                (8, true) => ints!(i64),
                (8, false) => ints!(u64),
                _ => return Err(unsupported(path, ds.dtype())),
            }
        }
        _ => return Err(unsupported(path, ds.dtype())),
    })
}

/// The elements of a freshly read array in logical (row-major) order:
/// its own buffer when it is in standard layout (always, for a new read),
/// else an element-by-element copy. The n-dimensional iterator costs tens of
/// nanoseconds per element, which dominated large range reads.
fn flat<T: Clone, D: ndarray::Dimension>(array: ndarray::Array<T, D>) -> Vec<T> {
    if array.is_standard_layout() {
        let len = array.len();
        let (vec, offset) = array.into_raw_vec_and_offset();
        let offset = offset.unwrap_or(0);
        if offset == 0 && vec.len() == len {
            return vec;
        }
        return vec.into_iter().skip(offset).take(len).collect();
    }
    array.into_iter().collect()
}

/// The element type an HDF5 datatype stands for.
fn dtype_of(dtype: &Datatype) -> Dtype {
    match dtype {
        Datatype::FixedPoint { size, signed, .. } => Dtype::Int {
            bytes: *size,
            signed: *signed,
        },
        Datatype::FloatingPoint { size, .. } => Dtype::Float { bytes: *size },
        Datatype::Enum { base, members } if is_bool_enum(base, members) => Dtype::Bool,
        Datatype::Enum { base, .. } => dtype_of(base),
        Datatype::String { .. } => Dtype::Str,
        Datatype::VarLen { kind, .. } if *kind == hdf5_reader::VarLenKind::String => Dtype::Str,
        Datatype::Compound { .. } => Dtype::Compound,
        _ => Dtype::Other,
    }
}

/// h5py stores `bool` as an int8 enum with members FALSE=0 and TRUE=1.
fn is_bool_enum(base: &Datatype, members: &[hdf5_reader::EnumMember]) -> bool {
    matches!(base, Datatype::FixedPoint { size: 1, .. })
        && members.len() == 2
        && members
            .iter()
            .all(|m| m.name.eq_ignore_ascii_case("false") || m.name.eq_ignore_ascii_case("true"))
}

fn element_size(dtype: &Datatype) -> Option<usize> {
    Some(match dtype {
        Datatype::FixedPoint { size, .. }
        | Datatype::FloatingPoint { size, .. }
        | Datatype::Bitfield { size, .. } => *size as usize,
        Datatype::Enum { base, .. } => element_size(base)?,
        Datatype::String {
            size: StringSize::Fixed(len),
            ..
        } => *len as usize,
        _ => return None,
    })
}

/// Decodes raw element bytes (in the datatype's byte order) into values.
///
/// The element width and byte order are matched once per array, so each arm
/// is one tight loop (a gene column's 20k indices decode in microseconds).
fn decode(raw: &[u8], dtype: &Datatype) -> Option<Values> {
    Some(match dtype {
        Datatype::Enum { base, members } if is_bool_enum(base, members) => {
            Values::Bool(raw.iter().map(|&b| b != 0).collect())
        }
        Datatype::Enum { base, .. } => decode(raw, base)?,
        Datatype::FixedPoint {
            size,
            signed,
            byte_order,
        } => {
            let big = matches!(byte_order, ByteOrder::BigEndian);
            Values::Int(match (*size, *signed) {
                (1, true) => raw.iter().map(|&b| i64::from(b as i8)).collect(),
                (1, false) => raw.iter().map(|&b| i64::from(b)).collect(),
                (2, true) => elements(raw, big, |b| i64::from(i16::from_le_bytes(b)))?,
                (2, false) => elements(raw, big, |b| i64::from(u16::from_le_bytes(b)))?,
                (4, true) => elements(raw, big, |b| i64::from(i32::from_le_bytes(b)))?,
                (4, false) => elements(raw, big, |b| i64::from(u32::from_le_bytes(b)))?,
                (8, true) => elements(raw, big, i64::from_le_bytes)?,
                (8, false) => {
                    let wide = elements(raw, big, u64::from_le_bytes)?;
                    wide.into_iter()
                        .map(|v| i64::try_from(v).ok())
                        .collect::<Option<Vec<_>>>()?
                }
                _ => return None,
            })
        }
        Datatype::FloatingPoint {
            size: 4,
            byte_order,
        } => Values::F32(elements(
            raw,
            matches!(byte_order, ByteOrder::BigEndian),
            f32::from_le_bytes,
        )?),
        Datatype::FloatingPoint {
            size: 8,
            byte_order,
        } => Values::F64(elements(
            raw,
            matches!(byte_order, ByteOrder::BigEndian),
            f64::from_le_bytes,
        )?),
        _ => return None,
    })
}

/// `raw` as `N`-byte elements (byte-swapped first when big-endian), each
/// converted by `from_le`; `None` when `raw` is not a whole number of them.
fn elements<const N: usize, T>(
    raw: &[u8],
    big: bool,
    from_le: impl Fn([u8; N]) -> T,
) -> Option<Vec<T>> {
    if !raw.len().is_multiple_of(N) {
        return None;
    }
    let chunks = raw.chunks_exact(N).map(|c| {
        let mut arr = [0u8; N];
        arr.copy_from_slice(c);
        arr
    });
    Some(if big {
        chunks
            .map(|mut arr| {
                arr.reverse();
                from_le(arr)
            })
            .collect()
    } else {
        chunks.map(from_le).collect()
    })
}

/// Fixed-length byte strings, NUL-padded (legacy `S16` fields).
fn fixed_strings(bytes: &[u8], len: usize) -> Vec<String> {
    if len == 0 {
        return Vec::new();
    }
    bytes
        .chunks_exact(len)
        .map(|c| {
            let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
            String::from_utf8_lossy(&c[..end]).trim_end().to_owned()
        })
        .collect()
}

/// An attribute as JSON; `None` for types a reader of AnnData never needs.
fn attribute_json(attr: &hdf5_reader::Attribute) -> Option<Value> {
    let scalar = attr.shape.is_empty();
    let pack = |mut items: Vec<Value>| {
        if scalar && items.len() == 1 {
            items.pop()
        } else {
            Some(Value::Array(items))
        }
    };
    if let Some(strings) = &attr.decoded_strings {
        return pack(strings.iter().cloned().map(Value::String).collect());
    }
    match &attr.datatype {
        Datatype::String { .. } => {
            let strings = attr.read_strings().ok()?;
            pack(strings.into_iter().map(Value::String).collect())
        }
        Datatype::VarLen { .. } => {
            let s = String::from_utf8_lossy(&attr.raw_data)
                .trim_end_matches('\0')
                .to_owned();
            Some(Value::String(s))
        }
        dtype => {
            let values = decode(&attr.raw_data, dtype)?;
            let items: Vec<Value> = values.into_json();
            pack(items)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `testdata/anndata/<name>`.
    fn fixture(name: &str) -> std::path::PathBuf {
        crate::testdata::path(&format!("anndata/{name}"))
    }

    /// Every 1-D dataset path under `group`.
    fn arrays(backend: &Hdf5Backend, group: &str, out: &mut Vec<String>) {
        for child in backend.children(group).unwrap() {
            let path = if group.is_empty() {
                child
            } else {
                format!("{group}/{child}")
            };
            match backend.kind(&path) {
                Some(NodeKind::Group) => arrays(backend, &path, out),
                Some(NodeKind::Array) => {
                    if backend.info(&path).unwrap().shape.len() == 1 {
                        out.push(path);
                    }
                }
                None => unreachable!("listed child {path} has no kind"),
            }
        }
    }

    /// Equal values, floats compared bit for bit (so NaN equals itself).
    fn same(a: &Values, b: &Values) -> bool {
        match (a, b) {
            (Values::F32(x), Values::F32(y)) => x
                .iter()
                .map(|v| v.to_bits())
                .eq(y.iter().map(|v| v.to_bits())),
            (Values::F64(x), Values::F64(y)) => x
                .iter()
                .map(|v| v.to_bits())
                .eq(y.iter().map(|v| v.to_bits())),
            _ => a == b,
        }
    }

    /// Ranges that start and end inside, on and across chunk boundaries.
    fn ranges(len: u64, chunk: u64) -> Vec<Range<u64>> {
        let mut out = vec![
            0..len,
            0..0,
            len..len,
            0..len.min(1),
            len / 3..len - len / 5,
        ];
        for k in 1..4u64 {
            let edge = (k * chunk).min(len);
            out.push(edge.saturating_sub(7)..(edge + 5).min(len));
            out.push(edge..(edge + chunk).min(len));
            out.push(edge.saturating_sub(1)..(edge + 2 * chunk + 3).min(len));
        }
        out
    }

    /// The direct path must return exactly what the decoding path returns,
    /// for every 1-D array of the fixtures (chunked, contiguous, filtered),
    /// and must actually be taken for the unfiltered ones.
    #[test]
    fn direct_range_reads_match_the_decoding_path() {
        let mut direct_chunked = 0;
        let mut direct_contiguous = 0;
        for name in [
            "pbmc68k_reduced.csc.h5ad",
            "pbmc68k_reduced.csr.h5ad",
            "pbmc68k_reduced.modern.h5ad",
            "tiny.h5ad",
            "tiny.gzip.h5ad",
        ] {
            let backend = Hdf5Backend::open(&fixture(name)).unwrap();
            let mut paths = Vec::new();
            arrays(&backend, "", &mut paths);
            for path in paths {
                let ds = backend.dataset(&path).unwrap();
                let len = ds.shape()[0];
                let layout = backend.direct_layout(&path, &ds);
                if name.contains("gzip") {
                    assert!(layout.is_none(), "{name}:{path} is filtered");
                }
                let Some(layout) = layout else { continue };
                match ds.chunks() {
                    Some(_) => direct_chunked += 1,
                    None => direct_contiguous += 1,
                }
                let chunk = ds.chunks().map_or(len.max(1), |c| u64::from(c[0]));
                for range in ranges(len, chunk) {
                    let expected = backend
                        .read_range_decoded(&ds, &path, range.clone())
                        .unwrap();
                    let raw = layout.read(&backend.file, range.clone()).unwrap();
                    let got = decode(&raw, ds.dtype()).unwrap();
                    assert!(same(&got, &expected), "{name}:{path} {range:?}");
                    // And through the public entry point.
                    let public = backend.read_range(&path, range.clone()).unwrap();
                    assert!(same(&public, &expected), "{name}:{path} {range:?}");
                }
            }
        }
        assert!(
            direct_chunked >= 10,
            "chunked arrays read directly: {direct_chunked}"
        );
        assert!(
            direct_contiguous >= 10,
            "contiguous arrays read directly: {direct_contiguous}"
        );
    }

    #[test]
    fn lzf_literals_and_back_references() {
        // "abcabcabc": literal "abc" (ctrl 2), then a back reference of
        // length 6 at distance 3 (ctrl = (6-2)<<5 | 0, offset byte 2).
        let block = [2, b'a', b'b', b'c', 4 << 5, 2];
        assert_eq!(lzf_decompress(&block, 100).unwrap(), b"abcabcabc");
        assert!(lzf_decompress(&block, 5).is_none(), "over the limit");
        assert!(
            lzf_decompress(&[4 << 5, 9], 100).is_none(),
            "reference before the start"
        );
        assert!(
            lzf_decompress(&[5, b'a'], 100).is_none(),
            "truncated literal"
        );
    }
}
