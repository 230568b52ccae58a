//! One matrix column on its way to the wire as little-endian float32.
//!
//! A gene column of a sparse matrix is mostly zeros: 200k cells at 10 %
//! density are 800 KB dense but 160 KB as (row, value) entries. Keeping the
//! entries, and writing the dense bytes only when a response needs them,
//! lets the payload cache hold five times more genes, and lets each response
//! be written in one pass into a recycled buffer ([`crate::pool`]) instead
//! of a fresh 800 KB allocation (whose page faults cost more than the rest
//! of the request on a small VM).

use std::fmt;
use std::ops::Range;

use bytes::Bytes;

use crate::error::SourceError;
use crate::file::{FileIdentity, SourceFile};
use crate::pool;

/// A column's values: every row, or only the stored entries of a sparse
/// column (every other row is zero).
#[derive(Clone, Debug, PartialEq)]
pub enum Column {
    /// One value per row.
    Dense(Vec<f32>),
    /// `values[k]` sits at row `rows[k]`; rows are below `len`.
    Sparse {
        /// Number of rows.
        len: usize,
        /// Row of each stored value.
        rows: Vec<u32>,
        /// The stored values.
        values: Vec<f32>,
    },
}

impl Column {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Self::Dense(v) => v.len(),
            Self::Sparse { len, .. } => *len,
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values that are not implied zeros (all of them when dense).
    pub fn stored_values(&self) -> &[f32] {
        match self {
            Self::Dense(v) => v,
            Self::Sparse { values, .. } => values,
        }
    }

    /// Row of the `k`-th stored value.
    pub fn stored_row(&self, k: usize) -> usize {
        match self {
            Self::Dense(_) => k,
            Self::Sparse { rows, .. } => rows.get(k).map_or(k, |&r| r as usize),
        }
    }

    /// Every row's value.
    pub fn into_dense(self) -> Vec<f32> {
        match self {
            Self::Dense(v) => v,
            Self::Sparse { len, rows, values } => {
                let mut out = vec![0f32; len];
                for (&r, v) in rows.iter().zip(values) {
                    // Rows were checked against `len` when the column was made.
                    if let Some(slot) = out.get_mut(r as usize) {
                        *slot = v;
                    }
                }
                out
            }
        }
    }

    /// Bytes of memory the column holds.
    pub fn footprint(&self) -> usize {
        match self {
            Self::Dense(v) => 4 * v.len(),
            Self::Sparse { rows, values, .. } => 4 * (rows.len() + values.len()),
        }
    }

    /// A column of `len` rows from its stored entries (rows below `len`,
    /// as many as values): kept sparse when that is the smaller form (under
    /// 50 % density), else expanded.
    pub fn from_entries(len: usize, rows: Vec<u32>, values: Vec<f32>) -> Self {
        let sparse = 2 * values.len() < len;
        let column = Self::Sparse { len, rows, values };
        if sparse {
            column
        } else {
            Self::Dense(column.into_dense())
        }
    }
}

/// Writes bytes `range` of the little-endian float32 file of a sparse column
/// (zeros but at `rows`) into `out`, whose length is the range's.
fn write_sparse_le(rows: &[u32], values: &[f32], range: Range<usize>, out: &mut [u8]) {
    out.fill(0);
    for (&r, value) in rows.iter().zip(values) {
        put(out, &range, 4 * r as usize, value.to_le_bytes());
    }
}

/// Puts the 4 bytes that sit at file offset `at` into `out`, which holds
/// file bytes `range`: whole when inside it (a fixed-size copy the compiler
/// turns into one store), clipped at its edges, nothing when outside.
fn put(out: &mut [u8], range: &Range<usize>, at: usize, bytes: [u8; 4]) {
    if at >= range.start && at + 4 <= range.end {
        let o = at - range.start;
        out[o..o + 4].copy_from_slice(&bytes);
    } else if at + 4 > range.start && at < range.end {
        let (begin, end) = (at.max(range.start), (at + 4).min(range.end));
        out[begin - range.start..end - range.start].copy_from_slice(&bytes[begin - at..end - at]);
    }
}

/// A column served as a float32 file: a dense column encoded once, a
/// sparse one written out per request from its entries.
pub struct ColumnFile {
    len: usize,
    body: Body,
    identity: FileIdentity,
}

enum Body {
    /// The whole file, sliced for each request.
    Dense(Bytes),
    /// The stored entries of a sparse column.
    Sparse { rows: Vec<u32>, values: Vec<f32> },
}

impl ColumnFile {
    /// Serves `column` under `identity`.
    pub fn new(column: Column, identity: FileIdentity) -> Self {
        let len = column.len();
        let body = match column {
            Column::Dense(v) => {
                let mut bytes = Vec::with_capacity(4 * v.len());
                for x in &v {
                    bytes.extend_from_slice(&x.to_le_bytes());
                }
                Body::Dense(Bytes::from(bytes))
            }
            Column::Sparse { rows, values, .. } => Body::Sparse { rows, values },
        };
        Self {
            len,
            body,
            identity,
        }
    }
}

impl fmt::Debug for ColumnFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stored = match &self.body {
            Body::Dense(_) => self.len,
            Body::Sparse { values, .. } => values.len(),
        };
        f.debug_struct("ColumnFile")
            .field("len", &self.len)
            .field("stored", &stored)
            .field("identity", &self.identity)
            .finish()
    }
}

impl SourceFile for ColumnFile {
    fn len(&self) -> u64 {
        4 * self.len as u64
    }

    fn identity(&self) -> &FileIdentity {
        &self.identity
    }

    fn read_range(&self, range: Range<u64>) -> Result<Bytes, SourceError> {
        if range.start > range.end || range.end > self.len() {
            return Err(SourceError::RangeOutOfBounds {
                range,
                len: self.len(),
            });
        }
        // Within `len`, which is a `usize` product.
        let (start, end) = (range.start as usize, range.end as usize);
        match &self.body {
            Body::Dense(bytes) => Ok(bytes.slice(start..end)),
            Body::Sparse { rows, values } => {
                let mut buf = pool::take(end - start);
                write_sparse_le(rows, values, start..end, buf.as_mut_slice());
                Ok(buf.into_bytes())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn sparse_and_dense_write_the_same_bytes_for_every_range() {
        let dense = vec![0.0, 1.5, 0.0, 0.0, -2.25, 0.0, 7.0];
        let sparse = Column::Sparse {
            len: 7,
            rows: vec![4, 1, 6],
            values: vec![-2.25, 1.5, 7.0],
        };
        assert_eq!(sparse.clone().into_dense(), dense);
        let expected = le(&dense);
        let files = [
            ColumnFile::new(Column::Dense(dense), FileIdentity::Digest("d".into())),
            ColumnFile::new(sparse, FileIdentity::Digest("s".into())),
        ];
        for file in &files {
            assert_eq!(file.len(), 28);
            for start in 0..=28u64 {
                for end in start..=28u64 {
                    let got = file.read_range(start..end).unwrap();
                    assert_eq!(
                        &got[..],
                        &expected[start as usize..end as usize],
                        "{file:?} {start}..{end}"
                    );
                }
            }
            assert!(file.read_range(0..29).is_err());
        }
    }

    #[test]
    fn recycled_buffers_are_written_clean() {
        // A buffer that held another column's bytes must not leak them.
        let noisy = ColumnFile::new(
            Column::Dense(vec![9.0; 1000]),
            FileIdentity::Digest("n".into()),
        );
        drop(noisy.read_range(0..4000).unwrap());
        let quiet = ColumnFile::new(
            Column::Sparse {
                len: 1000,
                rows: vec![3],
                values: vec![1.0],
            },
            FileIdentity::Digest("q".into()),
        );
        let mut expected = vec![0f32; 1000];
        expected[3] = 1.0;
        assert_eq!(&quiet.read_range(0..4000).unwrap()[..], &le(&expected)[..]);
    }
}
