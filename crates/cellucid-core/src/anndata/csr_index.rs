//! A column index for CSR matrices, so one gene column costs one range
//! read instead of a pass over every stored value.
//!
//! The index is the matrix transposed to CSC — per column, the rows and
//! values it holds — built in one pass (two scans of `indices`, one of
//! `data`) into a memory-mapped file in the cache directory, named by a
//! digest of the store's identity and the matrix path, and reused by the
//! next start. Its pages belong to the file, not to the process heap, so
//! resident anonymous memory stays small however large X is.
//!
//! Layout (little-endian): `b"CLCSRIX1"`, `n_rows: u64`, `n_cols: u64`,
//! `nnz: u64`, `indptr: [u64; n_cols + 1]`, `rows: [u32; nnz]`,
//! `values: [f32; nnz]`.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::backend::{join, Backend};
use super::column::Column;
use super::error::{AnnDataError, Result};
use super::matrix::{to_f32, to_i64, Matrix, MatrixLayout};
use crate::file::map_path;

const MAGIC: &[u8; 8] = b"CLCSRIX1";
const HEADER: usize = 32;
/// Stored values decoded per block while building.
const BLOCK: u64 = 1 << 20;

/// A built (or loaded) column index.
#[derive(Debug)]
pub struct CsrIndex {
    bytes: Bytes,
    n_rows: u64,
    n_cols: u64,
    nnz: u64,
    path: PathBuf,
}

/// Where the index of `matrix` in the store identified by `generation`
/// lives under `cache_dir`.
pub fn index_path(cache_dir: &Path, generation: &str, matrix: &Matrix) -> PathBuf {
    let digest = Sha256::digest(format!("{generation}\n{}", matrix.path).as_bytes());
    let hex: String = digest.iter().take(20).map(|b| format!("{b:02x}")).collect();
    cache_dir.join(format!("{hex}.csrix"))
}

/// The default cache directory: `$XDG_CACHE_HOME/cellucid/csr-index`, else
/// `~/.cache/cellucid/csr-index`, else the system temp dir.
pub fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("cellucid").join("csr-index")
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(a)
}

impl CsrIndex {
    /// Loads the index at `path` when it exists and fits `matrix`.
    pub fn load(path: &Path, matrix: &Matrix, nnz: u64) -> Option<Self> {
        let bytes = map_path(path).ok()?;
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return None;
        }
        let (n_rows, n_cols, stored) = (u64_at(&bytes, 8), u64_at(&bytes, 16), u64_at(&bytes, 24));
        let expected = HEADER as u64 + 8 * (n_cols + 1) + 8 * stored;
        if [n_rows, n_cols] != matrix.shape || stored != nnz || bytes.len() as u64 != expected {
            return None;
        }
        Some(Self {
            bytes,
            n_rows,
            n_cols,
            nnz,
            path: path.to_owned(),
        })
    }

    /// Builds the index of CSR `matrix` into `path` (via a temporary file
    /// renamed into place), reporting progress through `progress(done, total)`.
    ///
    /// # Errors
    /// When the matrix cannot be read or the file cannot be written.
    pub fn build(
        backend: &dyn Backend,
        matrix: &Matrix,
        path: &Path,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Self> {
        if matrix.layout != MatrixLayout::Csr {
            return Err(AnnDataError::invalid(
                &matrix.path,
                "a column index is for CSR matrices",
            ));
        }
        let [n_rows, n_cols] = matrix.shape;
        let nnz = matrix.nnz(backend)?;
        let io_err = |e: io::Error| AnnDataError::read(&path.display().to_string(), e);
        if n_rows > u64::from(u32::MAX) {
            return Err(AnnDataError::invalid(
                &matrix.path,
                "more rows than a u32 index holds",
            ));
        }
        let indptr = to_i64(&matrix.path, backend.read(&join(&matrix.path, "indptr"))?)?;
        if indptr.len() as u64 != n_rows + 1 || indptr.last().copied().unwrap_or(-1) as u64 != nnz {
            return Err(AnnDataError::invalid(
                &matrix.path,
                "indptr does not match the stored values",
            ));
        }
        let indices_path = join(&matrix.path, "indices");
        let data_path = join(&matrix.path, "data");
        // Pass 1: entries per column.
        let mut counts = vec![0u64; n_cols as usize + 1];
        let mut start = 0;
        while start < nnz {
            let end = (start + BLOCK).min(nnz);
            for c in to_i64(&matrix.path, backend.read_range(&indices_path, start..end)?)? {
                let slot = usize::try_from(c)
                    .ok()
                    .filter(|&c| (c as u64) < n_cols)
                    .ok_or_else(|| {
                        AnnDataError::invalid(&indices_path, format!("column {c} is out of range"))
                    })?;
                counts[slot + 1] += 1;
            }
            progress(start / 2 + (end - start) / 2, nnz);
            start = end;
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        let col_ptr = counts;
        // Where each column's entries end: a second pass that finds more
        // entries than the first (the file changed meanwhile) must not
        // write past them.
        let col_end: Vec<u64> = col_ptr[1..].to_vec();
        // Pass 2: rows and values into the file, through a writable map.
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err)?;
        }
        remove_abandoned_builds(path);
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let total = HEADER as u64 + 8 * (n_cols + 1) + 8 * nnz;
        {
            let mut file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(io_err)?;
            let mut header = Vec::with_capacity(HEADER + 8 * col_ptr.len());
            header.extend_from_slice(MAGIC);
            for v in [n_rows, n_cols, nnz] {
                header.extend_from_slice(&v.to_le_bytes());
            }
            for &p in &col_ptr {
                header.extend_from_slice(&p.to_le_bytes());
            }
            file.write_all(&header).map_err(io_err)?;
            file.set_len(total).map_err(io_err)?;
            let mut map = map_mut(&file).map_err(io_err)?;
            let rows_at = header.len();
            let values_at = rows_at + 4 * nnz as usize;
            let mut next = col_ptr;
            let mut row = 0usize;
            let mut start = 0u64;
            while start < nnz {
                let end = (start + BLOCK).min(nnz);
                let cols = to_i64(&matrix.path, backend.read_range(&indices_path, start..end)?)?;
                let vals = to_f32(&matrix.path, backend.read_range(&data_path, start..end)?)?;
                if vals.len() != cols.len() {
                    return Err(AnnDataError::invalid(
                        &matrix.path,
                        "data and indices disagree",
                    ));
                }
                for (k, (&c, &v)) in cols.iter().zip(&vals).enumerate() {
                    let pos = start as i64 + k as i64;
                    while row + 1 < indptr.len() && indptr[row + 1] <= pos {
                        row += 1;
                    }
                    let changed = || {
                        AnnDataError::invalid(
                            &matrix.path,
                            "the matrix changed while it was being indexed",
                        )
                    };
                    let c = usize::try_from(c)
                        .ok()
                        .filter(|&c| c < col_end.len())
                        .ok_or_else(changed)?;
                    if next[c] >= col_end[c] {
                        return Err(changed());
                    }
                    let slot = next[c] as usize;
                    next[c] += 1;
                    map[rows_at + 4 * slot..rows_at + 4 * slot + 4]
                        .copy_from_slice(&(row as u32).to_le_bytes());
                    map[values_at + 4 * slot..values_at + 4 * slot + 4]
                        .copy_from_slice(&v.to_le_bytes());
                }
                progress(nnz / 2 + start / 2 + (end - start) / 2, nnz);
                start = end;
            }
            map.flush().map_err(io_err)?;
        }
        fs::rename(&tmp, path).map_err(io_err)?;
        Self::load(path, matrix, nnz).ok_or_else(|| {
            AnnDataError::invalid(
                &path.display().to_string(),
                "the index just written does not read back",
            )
        })
    }

    /// Loads the index of `matrix` from `cache_dir`, or builds it there.
    ///
    /// # Errors
    /// When it can be neither loaded nor built.
    pub fn load_or_build(
        backend: &dyn Backend,
        matrix: &Matrix,
        cache_dir: &Path,
        generation: &str,
    ) -> Result<Self> {
        let path = index_path(cache_dir, generation, matrix);
        let nnz = matrix.nnz(backend)?;
        if let Some(index) = Self::load(&path, matrix, nnz) {
            tracing::info!(index = %path.display(), "CSR gene index reused from the cache");
            return Ok(index);
        }
        let started = Instant::now();
        let mut last = 0u64;
        tracing::info!(matrix = %matrix.path, nnz, "building the CSR gene index (once; kept in {})", cache_dir.display());
        let index = Self::build(backend, matrix, &path, &mut |done, total| {
            let pct = (done * 100).checked_div(total).unwrap_or(100);
            if pct >= last + 10 {
                last = pct - pct % 10;
                tracing::info!("CSR gene index: {last}%");
            }
        })?;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            index = %path.display(),
            "CSR gene index ready"
        );
        Ok(index)
    }

    /// Column `col` as dense values.
    pub fn column(&self, col: u64) -> Option<Vec<f32>> {
        if col >= self.n_cols {
            return None;
        }
        let ptr_at = HEADER + 8 * col as usize;
        let (a, b) = (
            u64_at(&self.bytes, ptr_at) as usize,
            u64_at(&self.bytes, ptr_at + 8) as usize,
        );
        // A damaged cache file of the right size: refuse, the caller scans.
        if a > b || b > self.nnz as usize {
            return None;
        }
        let rows_at = HEADER + 8 * (self.n_cols as usize + 1);
        let values_at = rows_at + 4 * self.nnz as usize;
        let mut out = vec![0f32; self.n_rows as usize];
        for k in a..b {
            let mut r = [0u8; 4];
            r.copy_from_slice(&self.bytes[rows_at + 4 * k..rows_at + 4 * k + 4]);
            let mut v = [0u8; 4];
            v.copy_from_slice(&self.bytes[values_at + 4 * k..values_at + 4 * k + 4]);
            *out.get_mut(u32::from_le_bytes(r) as usize)? = f32::from_le_bytes(v);
        }
        Some(out)
    }

    /// Column `col`: its stored entries, or dense values when those are
    /// the smaller form. `None` when `col` is out of range or the file is
    /// damaged (the caller then scans the matrix).
    pub fn column_entries(&self, col: u64) -> Option<Column> {
        if col >= self.n_cols {
            return None;
        }
        let ptr_at = HEADER + 8 * col as usize;
        let (a, b) = (
            u64_at(&self.bytes, ptr_at) as usize,
            u64_at(&self.bytes, ptr_at + 8) as usize,
        );
        if a > b || b > self.nnz as usize {
            return None;
        }
        let n = self.n_rows as usize;
        let rows_at = HEADER + 8 * (self.n_cols as usize + 1);
        let values_at = rows_at + 4 * self.nnz as usize;
        let rows: Vec<u32> = self.bytes[rows_at + 4 * a..rows_at + 4 * b]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if rows.iter().any(|&r| r as usize >= n) {
            return None;
        }
        let values: Vec<f32> = self.bytes[values_at + 4 * a..values_at + 4 * b]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let column = Column::Sparse {
            len: n,
            rows,
            values,
        };
        Some(if Column::prefers_sparse(n, b - a) {
            column
        } else {
            Column::Dense(column.into_dense())
        })
    }

    /// Where the index is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Deletes half-written index files of this index left by a server that
/// was killed while building (their pid no longer runs).
fn remove_abandoned_builds(path: &Path) {
    let (Some(dir), Some(stem)) = (path.parent(), path.file_stem().and_then(|s| s.to_str())) else {
        return;
    };
    let prefix = format!("{stem}.tmp-");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[allow(unsafe_code)]
fn map_mut(file: &fs::File) -> io::Result<memmap2::MmapMut> {
    // SAFETY: the file was just created (truncated) by this process under a
    // name holding our pid, is only ever written through this one mapping,
    // and is renamed into place only after the mapping is flushed and
    // dropped; no other code reads or resizes it while it is mapped, so the
    // `&mut [u8]` view cannot alias memory changed behind our back.
    unsafe { memmap2::MmapMut::map_mut(file) }
}
