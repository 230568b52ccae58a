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
//! The build splits the stored values at row boundaries over a few
//! threads: each counts its part's entries per column, so it knows where in
//! every column its rows go, and then writes them there — the columns come
//! out sorted by row without a sort. It serves as soon as the values are in
//! the map; writing the file to disk comes after (see [`UnsavedIndex`]), so
//! the first genes do not wait for the disk.
//!
//! Layout (little-endian): `b"CLCSRIX1"`, `n_rows: u64`, `n_cols: u64`,
//! `nnz: u64`, `indptr: [u64; n_cols + 1]`, `rows: [u32; nnz]`,
//! `values: [f32; nnz]`. A file under the index's name is always complete:
//! it is written under a temporary name and renamed after it is on disk.

use std::fs;
use std::io::{self, Write as _};
use std::mem;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::backend::{join, Backend, Dtype};
use super::column::Column;
use super::error::{AnnDataError, Result};
use super::matrix::{read_minor_indices, to_f32, to_i64, Matrix, MatrixLayout};
use crate::file::map_path;

const MAGIC: &[u8; 8] = b"CLCSRIX1";
const HEADER: usize = 32;
/// Stored values read per block while building (4 MiB of 4-byte indices:
/// big enough that per-block costs vanish, small enough to stay cached).
const BLOCK: u64 = 1 << 20;
/// Threads a build uses at most; it is bound by memory traffic, which a
/// few cores saturate.
const MAX_THREADS: usize = 4;

/// Told how a CSR gene-index build advances, so a program can draw it (the
/// CLI draws a progress bar on a terminal); this crate draws nothing.
/// Calls come from the build's thread, in order: [`Self::started`], any
/// number of [`Self::advanced`], then [`Self::finished`] when the index
/// serves (not after a failed build).
pub trait IndexProgress: Send + Sync {
    /// The build of `matrix` (its path in the store) begins; `total` is the
    /// work it will report, in stored values read (both passes count).
    fn started(&self, matrix: &str, total: u64);
    /// `done` of `total` is done.
    fn advanced(&self, done: u64, total: u64);
    /// The index serves, `elapsed` after the build began.
    fn finished(&self, elapsed: std::time::Duration);
}

/// A shared [`IndexProgress`], to keep in options (`Debug`, `Clone`).
#[derive(Clone)]
pub struct IndexProgressHook(pub std::sync::Arc<dyn IndexProgress>);

impl std::fmt::Debug for IndexProgressHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IndexProgressHook")
    }
}

/// A built (or loaded) column index.
#[derive(Debug)]
pub struct CsrIndex {
    bytes: Bytes,
    n_rows: u64,
    n_cols: u64,
    nnz: u64,
    path: PathBuf,
}

/// Temporary index files this process is writing or has not saved yet.
static UNFINISHED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn track_unfinished(tmp: &Path) {
    if let Ok(mut files) = UNFINISHED.lock() {
        files.push(tmp.to_owned());
    }
}

fn untrack_unfinished(tmp: &Path) {
    if let Ok(mut files) = UNFINISHED.lock() {
        files.retain(|p| p != tmp);
    }
}

/// Deletes the temporary files of indexes this process is still building
/// or saving in `cache_dir`, for a clean shutdown (the next start would
/// delete them too). A build or save still running then fails and leaves
/// nothing behind; an index already saved is complete and stays.
pub fn remove_unfinished(cache_dir: &Path) {
    let files: Vec<PathBuf> = UNFINISHED
        .lock()
        .map(|mut files| {
            let (here, elsewhere) = std::mem::take(&mut *files)
                .into_iter()
                .partition(|p| p.parent() == Some(cache_dir));
            *files = elsewhere;
            here
        })
        .unwrap_or_default();
    for tmp in files {
        if fs::remove_file(&tmp).is_ok() {
            tracing::info!(file = %tmp.display(), "removed an unfinished CSR gene index");
        }
    }
}

/// An index built by this process, serving from its temporary file, not
/// yet written to disk nor under its name. [`UnsavedIndex::save`] puts it
/// in place; dropped unsaved, the temporary file is deleted (a killed
/// process leaves it to the next start, which deletes it).
#[derive(Debug)]
pub struct UnsavedIndex {
    file: fs::File,
    tmp: PathBuf,
    path: PathBuf,
    saved: bool,
}

impl UnsavedIndex {
    /// Writes the index to disk and then renames it into place, so a crash
    /// at any point leaves either no index or a complete one.
    ///
    /// # Errors
    /// When the file cannot be written or renamed.
    pub fn save(mut self) -> Result<()> {
        let io_err = |e: io::Error| AnnDataError::read(&self.path.display().to_string(), e);
        // The values were written through a shared mapping of this file:
        // they are its page-cache pages, which fsync writes out (it is
        // what msync does on Linux), so the mapping needs no flush of its own.
        self.file.sync_all().map_err(io_err)?;
        fs::rename(&self.tmp, &self.path).map_err(io_err)?;
        self.saved = true;
        untrack_unfinished(&self.tmp);
        // Makes the rename itself durable; a failure only means the next
        // start may rebuild, so it is not an error.
        if let Some(dir) = self.path.parent() {
            let _ = fs::File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

impl Drop for UnsavedIndex {
    fn drop(&mut self) {
        if !self.saved {
            untrack_unfinished(&self.tmp);
            // The mapping serving from it stays valid: it holds the inode.
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// How a build splits its work.
#[derive(Clone, Copy, Debug)]
struct BuildPlan {
    /// Stored values read per block.
    block: u64,
    /// Threads (each takes a contiguous run of rows).
    threads: usize,
    /// Entries staged per column (`None`: [`stage_len`] of the columns).
    stage: Option<usize>,
}

impl BuildPlan {
    /// One thread per core (at most [`MAX_THREADS`]); one for small matrices.
    fn for_this_machine(nnz: u64) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            block: BLOCK,
            threads: if nnz < BLOCK {
                1
            } else {
                cores.clamp(1, MAX_THREADS)
            },
            stage: None,
        }
    }
}

/// Where the index of `matrix` in the store identified by `generation`
/// lives under `cache_dir`.
pub fn index_path(cache_dir: &Path, generation: &str, matrix: &Matrix) -> PathBuf {
    let digest = Sha256::digest(format!("{generation}\n{}", matrix.path).as_bytes());
    let hex = hex::encode(&digest[..20]);
    cache_dir.join(format!("{hex}.csrix"))
}

/// The default cache directory: `cellucid/csr-index` in the
/// [user cache directory](crate::cache::user_cache_dir)
/// (`$XDG_CACHE_HOME`, else `~/.cache`), else in the system temp dir. An
/// index file is named by a digest and never removed wholesale, so no
/// directory needs refusing here.
pub fn default_cache_dir() -> PathBuf {
    crate::cache::user_cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("cellucid")
        .join("csr-index")
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
        Self::from_bytes(bytes, path, matrix, nnz)
    }

    /// The index in `bytes` when its header fits `matrix` and its size the
    /// header.
    fn from_bytes(bytes: Bytes, path: &Path, matrix: &Matrix, nnz: u64) -> Option<Self> {
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

    /// Builds the index of CSR `matrix` for `path` into a temporary file next
    /// to it, reporting progress through `progress(done, total)`. The index
    /// serves at once; the returned [`UnsavedIndex`] puts the file in place.
    ///
    /// # Errors
    /// When the matrix cannot be read or the file cannot be written.
    pub fn build(
        backend: &dyn Backend,
        matrix: &Matrix,
        path: &Path,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(Self, UnsavedIndex)> {
        let nnz = matrix.nnz(backend)?;
        Self::build_with(
            backend,
            matrix,
            path,
            progress,
            BuildPlan::for_this_machine(nnz),
        )
    }

    fn build_with(
        backend: &dyn Backend,
        matrix: &Matrix,
        path: &Path,
        progress: &mut dyn FnMut(u64, u64),
        plan: BuildPlan,
    ) -> Result<(Self, UnsavedIndex)> {
        if matrix.layout != MatrixLayout::Csr {
            return Err(AnnDataError::invalid(
                &matrix.path,
                "a column index is for CSR matrices",
            ));
        }
        let [n_rows, n_cols] = matrix.shape;
        let nnz = matrix.nnz(backend)?;
        let io_err = |e: io::Error| AnnDataError::read(&path.display().to_string(), e);
        if n_rows > u64::from(u32::MAX) || n_cols > u64::from(u32::MAX) {
            return Err(AnnDataError::invalid(
                &matrix.path,
                "more rows or columns than a u32 index holds",
            ));
        }
        let started = Instant::now();
        let indptr = read_indptr(backend, matrix, n_rows, nnz)?;
        let source = Source {
            backend,
            matrix: &matrix.path,
            indices: join(&matrix.path, "indices"),
            data: join(&matrix.path, "data"),
            n_cols,
        };
        let parts = split_rows(&indptr, plan.threads.max(1));
        let done = AtomicU64::new(0);
        let report = |progress: &mut dyn FnMut(u64, u64)| {
            // Each pass counts half.
            progress(done.load(Ordering::Relaxed) / 2, nnz);
        };

        // Pass 1: per part, entries per column.
        let counts: Vec<Vec<u64>> = in_parallel(parts.clone(), progress, |part, mut progress| {
            let mut counts = vec![0u64; n_cols as usize];
            let mut cols = Vec::new();
            for block in blocks(part.values, plan.block) {
                source.read_cols(block.clone(), &mut cols)?;
                for &c in &cols {
                    // `read_cols` checked `c < n_cols`.
                    if let Some(n) = counts.get_mut(c as usize) {
                        *n += 1;
                    }
                }
                done.fetch_add(block.end - block.start, Ordering::Relaxed);
                if let Some(progress) = progress.as_deref_mut() {
                    report(progress);
                }
            }
            Ok(counts)
        })?;
        let counted = started.elapsed();
        let mut col_ptr = Vec::with_capacity(n_cols as usize + 1);
        col_ptr.push(0u64);
        for c in 0..n_cols as usize {
            let total: u64 = counts.iter().map(|part| part[c]).sum();
            col_ptr.push(col_ptr[c] + total);
        }

        // Pass 2: rows and values into the file, through a writable map.
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err)?;
        }
        remove_abandoned_builds(path);
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_err)?;
        // From here on, an error deletes the temporary file, and so does a
        // shutdown (remove_unfinished).
        track_unfinished(&tmp);
        let unsaved = UnsavedIndex {
            file: file.try_clone().map_err(io_err)?,
            tmp,
            path: path.to_owned(),
            saved: false,
        };
        let mut header = Vec::with_capacity(HEADER + 8 * col_ptr.len());
        header.extend_from_slice(MAGIC);
        for v in [n_rows, n_cols, nnz] {
            header.extend_from_slice(&v.to_le_bytes());
        }
        for &p in &col_ptr {
            header.extend_from_slice(&p.to_le_bytes());
        }
        file.write_all(&header).map_err(io_err)?;
        let total = header.len() as u64 + 8 * nnz;
        file.set_len(total).map_err(io_err)?;
        // Blocks allocated up front: writing through the map then skips the
        // filesystem's delayed allocation on each first write to a page.
        let _ = fs4::fs_std::FileExt::allocate(&file, total);
        let mut map = map_mut(&file).map_err(io_err)?;
        let changed = || {
            AnnDataError::invalid(
                &matrix.path,
                "the matrix changed while it was being indexed",
            )
        };
        {
            let body = map.get_mut(header.len()..).ok_or_else(changed)?;
            let (rows, values) = body
                .split_at_mut_checked(4 * nnz as usize)
                .ok_or_else(changed)?;
            let stage = plan
                .stage
                .unwrap_or_else(|| stage_len(n_cols as usize))
                .max(1);
            let writers = part_writers(rows, values, &counts, stage).ok_or_else(changed)?;
            let jobs: Vec<(Part, PartWriter<'_>)> = parts.into_iter().zip(writers).collect();
            in_parallel(jobs, progress, |(part, mut out), mut progress| {
                let mut row = part.first_row;
                let mut cols = Vec::new();
                let mut decoded = Vec::new();
                for block in blocks(part.values, plan.block) {
                    source.read_cols(block.clone(), &mut cols)?;
                    let mut at = 0usize;
                    source.for_each_value_piece(block.clone(), &mut decoded, &mut |piece| {
                        let disagree =
                            || AnnDataError::invalid(&matrix.path, "data and indices disagree");
                        let cols = cols.get(at..at + piece.len()).ok_or_else(disagree)?;
                        let first = block.start + at as u64;
                        scatter(first, cols, piece, &indptr, &mut row, &mut out)
                            .ok_or_else(changed)?;
                        at += piece.len();
                        Ok(())
                    })?;
                    if at != cols.len() {
                        return Err(AnnDataError::invalid(
                            &matrix.path,
                            "data and indices disagree",
                        ));
                    }
                    done.fetch_add(block.end - block.start, Ordering::Relaxed);
                    if let Some(progress) = progress.as_deref_mut() {
                        report(progress);
                    }
                }
                out.finish().ok_or_else(changed)
            })?;
        }
        progress(nnz, nnz);
        tracing::debug!(
            threads = plan.threads,
            counted_ms = counted.as_millis() as u64,
            written_ms = (started.elapsed() - counted).as_millis() as u64,
            "CSR gene index passes"
        );
        let map = map.make_read_only().map_err(io_err)?;
        let index =
            Self::from_bytes(Bytes::from_owner(map), path, matrix, nnz).ok_or_else(|| {
                AnnDataError::invalid(
                    &path.display().to_string(),
                    "the index just written does not read back",
                )
            })?;
        Ok((index, unsaved))
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
        let mut served = None;
        Self::load_or_build_then_save(backend, matrix, cache_dir, generation, None, |index| {
            served = Some(index);
        })?;
        served.ok_or_else(|| AnnDataError::invalid(&matrix.path, "no column index was built"))
    }

    /// Loads the index of `matrix` from `cache_dir`, or builds it; hands it
    /// to `serve` as soon as it can serve, and only then writes a newly
    /// built one to disk (a failure to write it is logged: the next start
    /// builds again).
    ///
    /// A build reports its progress to `progress`, else logs every 10 %.
    /// Logs "CSR gene index ready" (`elapsed_ms`: from the start of the
    /// build until it serves) and "CSR gene index saved".
    ///
    /// # Errors
    /// When it can be neither loaded nor built (`serve` was not called).
    pub fn load_or_build_then_save(
        backend: &dyn Backend,
        matrix: &Matrix,
        cache_dir: &Path,
        generation: &str,
        progress: Option<&dyn IndexProgress>,
        serve: impl FnOnce(Self),
    ) -> Result<()> {
        let path = index_path(cache_dir, generation, matrix);
        let nnz = matrix.nnz(backend)?;
        if let Some(index) = Self::load(&path, matrix, nnz) {
            tracing::info!(index = %path.display(), "CSR gene index reused from the cache");
            serve(index);
            return Ok(());
        }
        let started = Instant::now();
        let mut last = 0u64;
        tracing::info!(matrix = %matrix.path, nnz, "building the CSR gene index (once; kept in {})", cache_dir.display());
        if let Some(progress) = progress {
            progress.started(&matrix.path, nnz);
        }
        let (index, unsaved) = Self::build(backend, matrix, &path, &mut |done, total| {
            if let Some(progress) = progress {
                progress.advanced(done, total);
                return;
            }
            let pct = (done * 100).checked_div(total).unwrap_or(100);
            if pct >= last + 10 {
                last = pct - pct % 10;
                tracing::info!("CSR gene index: {last}%");
            }
        })?;
        if let Some(progress) = progress {
            progress.finished(started.elapsed());
        }
        serve(index);
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            index = %path.display(),
            "CSR gene index ready"
        );
        let saving = Instant::now();
        match unsaved.save() {
            Ok(()) => tracing::info!(
                elapsed_ms = saving.elapsed().as_millis() as u64,
                index = %path.display(),
                "CSR gene index saved"
            ),
            Err(err) => tracing::warn!(
                error = %err,
                "the CSR gene index could not be saved; the next start builds it again"
            ),
        }
        Ok(())
    }

    /// Column `col` as dense values (see [`Self::column_entries`]).
    pub fn column(&self, col: u64) -> Option<Vec<f32>> {
        self.column_entries(col).map(Column::into_dense)
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
        // A damaged cache file of the right size: refuse, the caller scans.
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
        Some(Column::from_entries(n, rows, values))
    }

    /// Where the index is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `indptr` as `u64`, checked: `n_rows + 1` non-decreasing offsets from 0
/// to `nnz`.
fn read_indptr(backend: &dyn Backend, matrix: &Matrix, n_rows: u64, nnz: u64) -> Result<Vec<u64>> {
    let raw = to_i64(&matrix.path, backend.read(&join(&matrix.path, "indptr"))?)?;
    let bad = || AnnDataError::invalid(&matrix.path, "indptr does not match the stored values");
    if raw.len() as u64 != n_rows + 1 || raw.first() != Some(&0) {
        return Err(bad());
    }
    let mut indptr = Vec::with_capacity(raw.len());
    let mut last = 0u64;
    for p in raw {
        let p = u64::try_from(p)
            .ok()
            .filter(|&p| p >= last)
            .ok_or_else(bad)?;
        indptr.push(p);
        last = p;
    }
    if last != nnz {
        return Err(bad());
    }
    Ok(indptr)
}

/// A run of whole rows: what one build thread indexes.
#[derive(Clone, Debug)]
struct Part {
    /// Its stored values.
    values: Range<u64>,
    /// The row holding its first value (or its first row when it has none).
    first_row: usize,
}

/// `threads` runs of whole rows with about as many values each.
fn split_rows(indptr: &[u64], threads: usize) -> Vec<Part> {
    let nnz = indptr.last().copied().unwrap_or(0);
    let mut parts = Vec::with_capacity(threads);
    let mut start_row = 0usize;
    for t in 1..=threads {
        let end_row = if t == threads {
            indptr.len().saturating_sub(1)
        } else {
            let target = nnz / threads as u64 * t as u64;
            indptr.partition_point(|&p| p < target).max(start_row)
        };
        let values = indptr[start_row]..indptr[end_row];
        parts.push(Part {
            values,
            first_row: start_row,
        });
        start_row = end_row;
    }
    parts
}

/// `range` in blocks of `block` values.
fn blocks(range: Range<u64>, block: u64) -> impl Iterator<Item = Range<u64>> {
    let block = block.max(1);
    (range.start..range.end)
        .step_by(usize::try_from(block).unwrap_or(usize::MAX))
        .map(move |start| start..(start + block).min(range.end))
}

/// Runs `job` for every item on its own thread (the first on this one,
/// which alone reports progress) and collects the results in order.
fn in_parallel<I: Send, T: Send>(
    items: Vec<I>,
    progress: &mut dyn FnMut(u64, u64),
    job: impl Fn(I, Option<&mut dyn FnMut(u64, u64)>) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let mut items = items.into_iter();
    let Some(first) = items.next() else {
        return Ok(Vec::new());
    };
    std::thread::scope(|scope| {
        let job = &job;
        let spawned: Vec<_> = items
            .map(|item| scope.spawn(move || job(item, None)))
            .collect();
        let mut results = vec![job(first, Some(progress))];
        for handle in spawned {
            results.push(handle.join().unwrap_or_else(|_| {
                Err(AnnDataError::invalid("X", "a column index thread failed"))
            }));
        }
        results.into_iter().collect()
    })
}

/// Where the build reads `indices` and `data` from.
struct Source<'a> {
    backend: &'a dyn Backend,
    matrix: &'a str,
    indices: String,
    data: String,
    n_cols: u64,
}

impl Source<'_> {
    /// The column of each value in `range` into `out`, each checked to be
    /// below `n_cols`: straight from the stored bytes when the backend lends
    /// them, else decoded.
    fn read_cols(&self, range: Range<u64>, out: &mut Vec<u32>) -> Result<()> {
        read_minor_indices(self.backend, &self.indices, range, self.n_cols, out)
            .map_err(|_| self.out_of_range())
    }

    fn out_of_range(&self) -> AnnDataError {
        AnnDataError::invalid(&self.indices, "a column index is out of range")
    }

    /// Calls `visit` with the values in `range` as little-endian `f32`
    /// bytes, in order: the stored pieces when `data` is stored that way and
    /// the backend lends them, else decoded into `decoded`.
    fn for_each_value_piece(
        &self,
        range: Range<u64>,
        decoded: &mut Vec<[u8; 4]>,
        visit: &mut dyn FnMut(&[[u8; 4]]) -> Result<()>,
    ) -> Result<()> {
        if let Some(raw) = self.backend.read_range_raw(&self.data, range.clone())? {
            if raw.dtype == (Dtype::Float { bytes: 4 })
                && raw.pieces.iter().all(|p| p.len() % 4 == 0)
            {
                for piece in &raw.pieces {
                    visit(piece.as_chunks::<4>().0)?;
                }
                return Ok(());
            }
        }
        decoded.clear();
        let values = to_f32(self.matrix, self.backend.read_range(&self.data, range)?)?;
        decoded.extend(values.into_iter().map(f32::to_le_bytes));
        visit(decoded)
    }
}

/// Writes the values `vals` (the stored values from `first` on) and their
/// rows into the writer of their columns `cols`. `row` is the row of the
/// value at `first` or before it, and is left at the row of the last one.
/// `None` when a column gets more entries than it was counted (the matrix
/// changed between the passes).
fn scatter(
    first: u64,
    cols: &[u32],
    vals: &[[u8; 4]],
    indptr: &[u64],
    row: &mut usize,
    out: &mut PartWriter<'_>,
) -> Option<()> {
    let mut k = 0usize;
    let n = cols.len().min(vals.len());
    while k < n {
        let pos = first + k as u64;
        // The row holding `pos`: whole rows at a time, so the inner loop
        // below is only the column lookups and two 4-byte writes.
        let mut end = *indptr.get(*row + 1)?;
        while end <= pos {
            *row += 1;
            end = *indptr.get(*row + 1)?;
        }
        let take = usize::try_from(end - pos).map_or(n - k, |t| t.min(n - k));
        let r = u32::try_from(*row).ok()?.to_le_bytes();
        for (&c, &v) in cols[k..k + take].iter().zip(&vals[k..k + take]) {
            out.push(c as usize, r, v)?;
        }
        k += take;
    }
    Some(())
}

/// Bytes of staged entries per build thread: half a core's L2 cache on
/// today's machines, so the stages stay cached.
const STAGE_BYTES: usize = 1 << 20;
/// The most bytes staged per build thread, however many columns there
/// are (anonymous memory, which stays small while serving).
const STAGE_BYTES_MAX: usize = 8 << 20;

/// Entries a [`PartWriter`] stages per column before writing them to the
/// map together: a power of two, as many as [`STAGE_BYTES`] allows for
/// `n_cols` columns, at least 16 (a 64-byte cache line of rows and one of
/// values) while that stays within [`STAGE_BYTES_MAX`], at most 256.
fn stage_len(n_cols: usize) -> usize {
    let fits = |bytes: usize| bytes / 8 / n_cols.max(1);
    let len = fits(STAGE_BYTES)
        .max(fits(STAGE_BYTES_MAX).min(16))
        .clamp(1, 256);
    1 << len.ilog2()
}

/// Where one build thread writes: per column, its share of the column's
/// slots in the map (filled front to back) and a few staged entries.
///
/// Writing each entry straight to its column touches a different page of
/// the map per entry (two, with the values), one per column in turn: the
/// page walks for those thousands of pages cost more than the writes.
/// Staged, the entries go to the map [`stage_len`] at a time, and the
/// stages of all columns fit the core's cache.
#[derive(Debug)]
struct PartWriter<'m> {
    rows: Vec<&'m mut [[u8; 4]]>,
    values: Vec<&'m mut [[u8; 4]]>,
    /// Per column, `stage` rows then `stage` values.
    staged: Vec<[u8; 4]>,
    /// Per column, how many entries are staged.
    staged_len: Vec<usize>,
    stage: usize,
}

impl<'m> PartWriter<'m> {
    fn new(n_cols: usize, stage: usize) -> Self {
        Self {
            rows: Vec::with_capacity(n_cols),
            values: Vec::with_capacity(n_cols),
            staged: vec![[0; 4]; 2 * stage * n_cols],
            staged_len: vec![0; n_cols],
            stage,
        }
    }

    /// Adds `row`/`value` to column `col`; `None` when it has no slot left.
    #[inline]
    fn push(&mut self, col: usize, row: [u8; 4], value: [u8; 4]) -> Option<()> {
        let len = self.staged_len.get_mut(col)?;
        let at = col * 2 * self.stage + *len;
        *self.staged.get_mut(at)? = row;
        *self.staged.get_mut(at + self.stage)? = value;
        *len += 1;
        if *len == self.stage {
            self.write_out(col)?;
        }
        Some(())
    }

    /// Writes column `col`'s staged entries to the map.
    fn write_out(&mut self, col: usize) -> Option<()> {
        let n = mem::take(self.staged_len.get_mut(col)?);
        let at = col * 2 * self.stage;
        for (slots, from) in [
            (self.rows.get_mut(col)?, at),
            (self.values.get_mut(col)?, at + self.stage),
        ] {
            let (dst, rest) = mem::take(slots).split_at_mut_checked(n)?;
            dst.copy_from_slice(self.staged.get(from..from + n)?);
            *slots = rest;
        }
        Some(())
    }

    /// Writes out what is staged; `None` when a column's slots are not all
    /// filled (fewer entries than counted: the matrix changed).
    fn finish(mut self) -> Option<()> {
        for col in 0..self.staged_len.len() {
            self.write_out(col)?;
        }
        self.rows.iter().all(|r| r.is_empty()).then_some(())
    }
}

/// Per part, a writer: column `c`'s slots, split between the parts in row
/// order by their counts. `None` when the counts do not add up to the
/// regions.
fn part_writers<'m>(
    rows: &'m mut [u8],
    values: &'m mut [u8],
    counts: &[Vec<u64>],
    stage: usize,
) -> Option<Vec<PartWriter<'m>>> {
    let (mut rows, []) = rows.as_chunks_mut::<4>() else {
        return None;
    };
    let (mut values, []) = values.as_chunks_mut::<4>() else {
        return None;
    };
    let n_cols = counts.first().map_or(0, Vec::len);
    let mut writers: Vec<PartWriter<'m>> = counts
        .iter()
        .map(|_| PartWriter::new(n_cols, stage))
        .collect();
    for c in 0..n_cols {
        for (part, out) in counts.iter().zip(&mut writers) {
            let n = usize::try_from(*part.get(c)?).ok()?;
            let (r, rest) = mem::take(&mut rows).split_at_mut_checked(n)?;
            rows = rest;
            let (v, rest) = mem::take(&mut values).split_at_mut_checked(n)?;
            values = rest;
            out.rows.push(r);
            out.values.push(v);
        }
    }
    (rows.is_empty() && values.is_empty()).then_some(writers)
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
    // name holding our pid, which no other code of ours opens; it is only
    // ever written through this one mapping, and once that is made
    // read-only (to serve from) never again. Renaming it into place does not
    // change its bytes, and another process only deletes such a file when
    // our pid no longer runs; unlinking it leaves the mapping valid. So the
    // `&mut [u8]` view cannot alias memory changed behind our back. (Another
    // program truncating it would fault the process, as for every mapped
    // file; see `crate::file::map_readonly`.)
    unsafe { memmap2::MmapMut::map_mut(file) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anndata::AnnData;

    /// `testdata/anndata/<name>`.
    fn fixture(name: &str) -> PathBuf {
        crate::testdata::path(&format!("anndata/{name}"))
    }

    /// Every column of an index of `name`'s X built with each plan equals
    /// the scan of X.
    fn assert_every_column_matches(name: &str, plans: &[BuildPlan]) {
        let ad = AnnData::open(&fixture(name)).unwrap();
        let x = ad.x().unwrap();
        let nnz = x.nnz(ad.backend()).unwrap();
        let expected: Vec<Vec<f32>> = (0..x.shape[1])
            .map(|g| x.column(ad.backend(), g).unwrap())
            .collect();
        for &plan in plans {
            let dir = tempfile::tempdir().unwrap();
            let path = index_path(dir.path(), "gen", x);
            let mut last = 0;
            let (index, unsaved) = CsrIndex::build_with(
                ad.backend(),
                x,
                &path,
                &mut |done, total| {
                    assert!(done >= last && done <= total, "{done} of {total}");
                    last = done;
                },
                plan,
            )
            .unwrap();
            assert_eq!(last, nnz);
            for (g, want) in expected.iter().enumerate() {
                assert_eq!(
                    &index.column(g as u64).unwrap(),
                    want,
                    "{name} {plan:?}: column {g}"
                );
            }
            // Saved, the same bytes load back.
            unsaved.save().unwrap();
            let loaded = CsrIndex::load(&path, x, nnz).unwrap();
            assert_eq!(loaded.bytes, index.bytes);
        }
    }

    #[test]
    fn every_column_matches_the_scan_for_every_split() {
        // The pbmc CSR file stores indices/data unfiltered in chunks of 2383
        // values: the stored-bytes path, with blocks that cross chunks. The
        // gzip file and the Zarr store take the decoding path; tiny.h5ad has
        // empty rows, and more threads than it has rows with values.
        let plans = [
            (BLOCK, 1, None),
            (7, 1, Some(1)),
            (7, 2, Some(2)),
            (1000, 3, None),
            (3, 5, Some(16)),
            (5000, 2, Some(1)),
        ]
        .map(|(block, threads, stage)| BuildPlan {
            block,
            threads,
            stage,
        });
        for name in [
            "pbmc68k_reduced.csr.h5ad",
            "tiny.h5ad",
            "tiny.gzip.h5ad",
            "tiny.zarr",
        ] {
            assert_every_column_matches(name, &plans);
        }
    }

    #[test]
    fn the_stored_bytes_path_is_taken_where_it_can_be() {
        let ad = AnnData::open(&fixture("pbmc68k_reduced.csr.h5ad")).unwrap();
        let raw = ad
            .backend()
            .read_range_raw("X/indices", 2000..5000)
            .unwrap()
            .unwrap();
        assert_eq!(
            raw.dtype,
            Dtype::Int {
                bytes: 4,
                signed: true
            }
        );
        assert!(raw.pieces.len() >= 2, "a piece per chunk touched");
        let bytes: Vec<u8> = raw.pieces.iter().flat_map(|p| p.iter().copied()).collect();
        let decoded = to_i64(
            "X",
            ad.backend().read_range("X/indices", 2000..5000).unwrap(),
        )
        .unwrap();
        let stored: Vec<i64> = bytes
            .as_chunks::<4>()
            .0
            .iter()
            .map(|b| i64::from(i32::from_le_bytes(*b)))
            .collect();
        assert_eq!(stored, decoded);
        let gzip = AnnData::open(&fixture("tiny.gzip.h5ad")).unwrap();
        assert!(gzip
            .backend()
            .read_range_raw("X/indices", 0..3)
            .unwrap()
            .is_none());
    }

    #[test]
    fn an_index_not_yet_saved_is_never_loaded() {
        let ad = AnnData::open(&fixture("tiny.h5ad")).unwrap();
        let x = ad.x().unwrap();
        let nnz = x.nnz(ad.backend()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = index_path(dir.path(), "gen", x);
        let (index, unsaved) = CsrIndex::build(ad.backend(), x, &path, &mut |_, _| {}).unwrap();
        // It serves, but nothing is under the index's name yet.
        assert_eq!(index.column(1).unwrap(), x.column(ad.backend(), 1).unwrap());
        assert!(!path.exists());
        assert!(CsrIndex::load(&path, x, nnz).is_none());
        // A complete copy of the temporary file, left by a process that is
        // still running, is not taken for the index either: the next start
        // builds its own.
        let tmp = unsaved.tmp.clone();
        let copy = path.with_extension(format!("tmp-{}", std::process::id() + 1));
        std::fs::copy(&tmp, &copy).unwrap();
        let mut served = None;
        CsrIndex::load_or_build_then_save(ad.backend(), x, dir.path(), "gen", None, |i| {
            served = Some(i);
        })
        .unwrap();
        assert!(served.is_some() && path.exists());
        // Dropped unsaved (the server stopped first), its file goes; the
        // index still serves from the mapping.
        drop(unsaved);
        assert!(!tmp.exists());
        assert_eq!(index.column(2).unwrap(), x.column(ad.backend(), 2).unwrap());
    }

    #[test]
    fn shutdown_removes_an_unfinished_index_and_its_save_then_fails_cleanly() {
        let ad = AnnData::open(&fixture("tiny.h5ad")).unwrap();
        let x = ad.x().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = index_path(dir.path(), "gen", x);
        let (index, unsaved) = CsrIndex::build(ad.backend(), x, &path, &mut |_, _| {}).unwrap();
        let tmp = unsaved.tmp.clone();
        assert!(tmp.exists());
        remove_unfinished(Path::new("/somewhere/else"));
        assert!(tmp.exists(), "only the given cache dir is cleaned");
        remove_unfinished(dir.path());
        assert!(!tmp.exists());
        assert!(unsaved.save().is_err());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing left"
        );
        // What was already mapped still answers until the process ends.
        assert_eq!(index.column(1).unwrap(), x.column(ad.backend(), 1).unwrap());
    }

    #[test]
    fn a_half_written_file_under_the_index_name_is_refused() {
        let ad = AnnData::open(&fixture("tiny.h5ad")).unwrap();
        let x = ad.x().unwrap();
        let nnz = x.nnz(ad.backend()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = index_path(dir.path(), "gen", x);
        CsrIndex::load_or_build(ad.backend(), x, dir.path(), "gen").unwrap();
        let full = std::fs::read(&path).unwrap();
        for len in [0, 8, HEADER, full.len() / 2, full.len() - 1] {
            std::fs::write(&path, &full[..len]).unwrap();
            assert!(CsrIndex::load(&path, x, nnz).is_none(), "{len} bytes");
        }
    }

    #[test]
    fn stages_stay_small_however_many_columns() {
        assert_eq!(stage_len(2_000), 64);
        assert_eq!(stage_len(30_000), 16);
        for n_cols in [0, 1, 4, 100, 2_000, 30_000, 100_000, 1 << 20, 1 << 24] {
            let len = stage_len(n_cols);
            assert!(len.is_power_of_two() && len <= 256, "{n_cols}: {len}");
            assert!(
                len == 1 || 8 * len * n_cols <= STAGE_BYTES_MAX,
                "{n_cols}: {len}"
            );
        }
    }

    #[test]
    fn rows_split_at_row_boundaries_and_cover_every_value() {
        let indptr = [0u64, 0, 5, 5, 6, 20, 20, 21];
        for threads in 1..10 {
            let parts = split_rows(&indptr, threads);
            assert_eq!(parts.len(), threads);
            let mut next = 0;
            for part in &parts {
                assert_eq!(part.values.start, next);
                assert_eq!(indptr[part.first_row], part.values.start);
                next = part.values.end;
                assert!(indptr.contains(&next));
            }
            assert_eq!(next, 21);
        }
    }
}
