//! Range reads of unfiltered 1-D HDF5 datasets straight from the file.
//!
//! `hdf5-reader` materialises every chunk a range touches (a 1 MB copy per
//! 256 Ki-element chunk of a CSC `indices`/`data` array, for an 80 KB gene).
//! When a dataset is contiguous, or chunked without filters and indexed by a
//! version-1 B-tree (what h5py writes by default), its element bytes lie in
//! the file as they are: this module locates them once per dataset and then
//! reads exactly the requested bytes with positioned reads (the file is
//! never mapped: see `crate::file`). Everything else
//! (filtered chunks, other chunk indexes, missing chunks, external files,
//! shared header messages) answers `None` and stays on the decoding path.

use std::ops::Range;

use bytes::Bytes;
use hdf5_reader::btree_v1::{collect_btree_v1_leaves_storage, BTreeV1Key};
use hdf5_reader::messages::layout::DataLayout;
use hdf5_reader::messages::HdfMessage;
use hdf5_reader::object_header::ObjectHeader;
use hdf5_reader::{Dataset, Hdf5File};

/// Where the elements of a 1-D dataset lie in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DirectLayout {
    /// Number of elements.
    len: u64,
    /// Bytes per element.
    elem: u64,
    /// Elements per chunk (`len` for a contiguous dataset).
    chunk_len: u64,
    /// File address of each chunk, in element order.
    chunk_addresses: Vec<u64>,
}

impl DirectLayout {
    /// Locates `ds`'s bytes, or `None` when they cannot be read as stored.
    pub(super) fn locate(file: &Hdf5File, ds: &Dataset, elem: usize) -> Option<Self> {
        let [len] = *ds.shape() else { return None };
        let elem = elem as u64;
        if elem == 0 {
            return None;
        }
        let superblock = file.superblock();
        let storage = file.storage();
        let header = ObjectHeader::parse_at_storage(
            storage,
            ds.address(),
            superblock.offset_size,
            superblock.length_size,
        )
        .ok()?;
        let mut layout = None;
        for message in &header.messages {
            match message {
                HdfMessage::DataLayout(l) => layout = Some(l.layout.clone()),
                HdfMessage::FilterPipeline(p) if !p.filters.is_empty() => return None,
                HdfMessage::Nil
                | HdfMessage::Dataspace(_)
                | HdfMessage::Datatype(_)
                | HdfMessage::FillValue(_)
                | HdfMessage::FilterPipeline(_)
                | HdfMessage::Attribute(_)
                | HdfMessage::AttributeInfo(_)
                | HdfMessage::Continuation(_)
                | HdfMessage::ObjectHeaderContinuation
                | HdfMessage::ModificationTime(_)
                | HdfMessage::Comment(_)
                | HdfMessage::ReferenceCount(_) => {}
                // Shared or external storage, or anything not understood:
                // leave it to the decoding path.
                _ => return None,
            }
        }
        let file_len = storage.len();
        let total = len.checked_mul(elem)?;
        let located = match layout? {
            DataLayout::Contiguous { address, size } => {
                if size < total || address.checked_add(total)? > file_len {
                    return None;
                }
                Self {
                    len,
                    elem,
                    chunk_len: len.max(1),
                    chunk_addresses: vec![address],
                }
            }
            DataLayout::Chunked {
                address,
                dims,
                chunk_indexing: None,
                ..
            } => {
                let [chunk_len] = *dims.as_slice() else {
                    return None;
                };
                let chunk_len = u64::from(chunk_len);
                if chunk_len == 0 {
                    return None;
                }
                let chunk_bytes = chunk_len.checked_mul(elem)?;
                let count = usize::try_from(len.div_ceil(chunk_len)).ok()?;
                let leaves = collect_btree_v1_leaves_storage(
                    storage,
                    address,
                    superblock.offset_size,
                    superblock.length_size,
                    Some(1),
                    &dims,
                    None,
                )
                .ok()?;
                let mut chunk_addresses = vec![None; count];
                for (key, chunk_address) in leaves {
                    let BTreeV1Key::RawData {
                        chunk_size,
                        filter_mask,
                        offsets,
                    } = key
                    else {
                        return None;
                    };
                    let first = *offsets.first()?;
                    if first % chunk_len != 0 {
                        return None;
                    }
                    let Some(slot) = usize::try_from(first / chunk_len)
                        .ok()
                        .and_then(|i| chunk_addresses.get_mut(i))
                    else {
                        // A stale chunk beyond the current extent.
                        continue;
                    };
                    if filter_mask != 0
                        || u64::from(chunk_size) != chunk_bytes
                        || chunk_address.checked_add(chunk_bytes)? > file_len
                        || slot.is_some()
                    {
                        return None;
                    }
                    *slot = Some(chunk_address);
                }
                // An unwritten chunk reads as the fill value: decoding path.
                let chunk_addresses = chunk_addresses.into_iter().collect::<Option<Vec<_>>>()?;
                Self {
                    len,
                    elem,
                    chunk_len,
                    chunk_addresses,
                }
            }
            _ => return None,
        };
        Some(located)
    }

    /// The stored bytes of elements `range` (clamped to the dataset).
    pub(super) fn read(&self, file: &Hdf5File, range: Range<u64>) -> Option<Vec<u8>> {
        let pieces = self.pieces(file, range)?;
        let mut out = Vec::with_capacity(pieces.iter().map(|p| p.len()).sum());
        for piece in &pieces {
            out.extend_from_slice(piece);
        }
        Some(out)
    }

    /// The stored bytes of elements `range` (clamped to the dataset), one
    /// piece per chunk touched, each one positioned read.
    pub(super) fn pieces(&self, file: &Hdf5File, range: Range<u64>) -> Option<Vec<Bytes>> {
        let end = range.end.min(self.len);
        let mut start = range.start.min(end);
        let mut out = Vec::new();
        let storage = file.storage();
        while start < end {
            let chunk = start / self.chunk_len;
            let within = start % self.chunk_len;
            let take = (self.chunk_len - within).min(end - start);
            let address = self.chunk_addresses.get(usize::try_from(chunk).ok()?)?;
            let bytes = storage
                .read_range(
                    address + within * self.elem,
                    usize::try_from(take * self.elem).ok()?,
                )
                .ok()?;
            out.push(Bytes::from_owner(bytes));
            start += take;
        }
        Some(out)
    }
}
