//! Is a file whole? A file cut short by an interrupted copy or download
//! fails later with a confusing "element is missing"; its own header says
//! how long it should be, so it is named as truncated, with the sizes,
//! before anything else is read.
//!
//! HDF5 (docs/FORMATS.md, "HDF5 (.h5ad)"): the superblock, at offset 0
//! or after a user block (512, 1024, 2048, … bytes), records the
//! end-of-file address; a shorter file is truncated. Zip ("Zipped Zarr"): the
//! end-of-central-directory record, the archive's table of contents, is at
//! the very end; without it the file is damaged or truncated (its length
//! alone cannot say by how much).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::error::{AnnDataError, Result};

/// The HDF5 format signature.
const HDF5_SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";
/// Offsets a superblock may start at (a user block before it is 0 or a
/// power of two ≥ 512 bytes); larger user blocks are not searched.
const SUPERBLOCK_OFFSETS: [u64; 5] = [0, 512, 1024, 2048, 4096];
/// Enough bytes after the signature for every superblock version's
/// end-of-file address (version 1 with 8-byte offsets ends it at 52).
const SUPERBLOCK_PREFIX: usize = 64;
/// The zip end-of-central-directory signature and its fixed length.
const EOCD_SIGNATURE: &[u8; 4] = b"PK\x05\x06";
const EOCD_LEN: u64 = 22;
/// The record may be followed by a comment of at most this many bytes.
const MAX_COMMENT: u64 = 65_535;

/// Checks that the HDF5 file at `path` is as long as its superblock says.
/// A file without a readable superblock passes: the HDF5 reader then says
/// what is wrong.
///
/// # Errors
/// [`AnnDataError::Truncated`] when the file is shorter than it declares.
pub(crate) fn check_hdf5(path: &Path) -> Result<()> {
    let Ok(mut file) = File::open(path) else {
        return Ok(());
    };
    let Ok(actual) = file.metadata().map(|m| m.len()) else {
        return Ok(());
    };
    for offset in SUPERBLOCK_OFFSETS {
        if offset >= actual {
            break;
        }
        let mut head = [0u8; SUPERBLOCK_PREFIX];
        let Ok(n) = read_at(&mut file, offset, &mut head) else {
            return Ok(());
        };
        if n < HDF5_SIGNATURE.len() || &head[..8] != HDF5_SIGNATURE {
            continue;
        }
        return match declared_end(&head[..n], offset) {
            Some(expected) if expected > actual => Err(AnnDataError::Truncated {
                path: path.to_owned(),
                what: "HDF5 superblock",
                actual,
                expected,
            }),
            _ => Ok(()),
        };
    }
    Ok(())
}

/// The file length a superblock at `offset` declares: its base address
/// plus its end-of-file address (HDF5 file format specification, "Disk
/// Format: Level 0A"). `None` when the superblock is cut short, of an
/// unknown version, or leaves the address undefined.
fn declared_end(head: &[u8], offset: u64) -> Option<u64> {
    let version = *head.get(8)?;
    // Where the size of offsets is, and where the base address starts.
    let (size_at, base_at) = match version {
        0 => (13, 24),
        1 => (13, 28),
        2 | 3 => (9, 12),
        _ => return None,
    };
    let size = usize::from(*head.get(size_at)?);
    if !matches!(size, 2 | 4 | 8) {
        return None;
    }
    let address = |i: usize| -> Option<u64> {
        let bytes = head.get(base_at + i * size..base_at + (i + 1) * size)?;
        if bytes.iter().all(|&b| b == 0xff) {
            return None;
        }
        let mut le = [0u8; 8];
        le[..size].copy_from_slice(bytes);
        Some(u64::from_le_bytes(le))
    };
    // Versions 0 and 1: base, free-space info, end of file; 2 and 3: base,
    // superblock extension, end of file.
    let base = address(0)?;
    let eof = address(2)?;
    // The base is the superblock's own offset in files written by the HDF5
    // library; a base of 0 with a user block means addresses count from the
    // start of the file.
    let base = if base == 0 { 0 } else { base.max(offset) };
    base.checked_add(eof)
}

/// Checks that the zip at `path` ends with its end-of-central-directory
/// record and that the directory it points to lies inside the file.
///
/// # Errors
/// [`AnnDataError::Damaged`] when the record is absent or points past it.
pub(crate) fn check_zip(path: &Path) -> Result<()> {
    let Ok(mut file) = File::open(path) else {
        return Ok(());
    };
    let Ok(actual) = file.metadata().map(|m| m.len()) else {
        return Ok(());
    };
    let damaged = |reason: &str| AnnDataError::Damaged {
        path: path.to_owned(),
        actual,
        reason: reason.to_owned(),
    };
    let tail_len = actual.min(EOCD_LEN + MAX_COMMENT);
    let start = actual - tail_len;
    let mut tail = vec![0u8; usize::try_from(tail_len).unwrap_or(0)];
    match read_at(&mut file, start, &mut tail) {
        Ok(n) if n == tail.len() => {}
        _ => return Ok(()),
    }
    // The last record whose comment reaches exactly to the end of the file.
    let found = (0..tail.len().saturating_sub(EOCD_LEN as usize - 1))
        .rev()
        .find(|&i| {
            tail[i..].starts_with(EOCD_SIGNATURE)
                && i + EOCD_LEN as usize + usize::from(u16_at(&tail, i + 20)) == tail.len()
        });
    let Some(at) = found else {
        return Err(damaged(
            "its end-of-central-directory record, the table of contents a zip keeps at its end, is missing",
        ));
    };
    let cd_size = u64::from(u32_at(&tail, at + 12));
    let cd_offset = u64::from(u32_at(&tail, at + 16));
    // Zip64 archives keep the real values elsewhere (0xFFFFFFFF here).
    if cd_size == u64::from(u32::MAX) || cd_offset == u64::from(u32::MAX) {
        return Ok(());
    }
    let eocd = start + at as u64;
    if cd_offset + cd_size > eocd {
        return Err(damaged(
            "its central directory, the table of contents, points past the record that ends the file",
        ));
    }
    Ok(())
}

fn read_at(file: &mut File, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    file.seek(SeekFrom::Start(offset))?;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy of the first `keep` bytes of `src`, in `dir`.
    fn cut(src: &Path, keep: u64, dir: &Path, name: &str) -> std::path::PathBuf {
        let bytes = std::fs::read(src).unwrap();
        let to = dir.join(name);
        std::fs::write(&to, &bytes[..usize::try_from(keep).unwrap()]).unwrap();
        to
    }

    #[test]
    fn a_whole_h5ad_passes_and_a_cut_one_is_truncated_with_both_sizes() {
        let src = crate::testdata::path("anndata/pbmc68k_reduced.h5ad");
        check_hdf5(&src).unwrap();
        let len = std::fs::metadata(&src).unwrap().len();
        let dir = tempfile::tempdir().unwrap();
        let cut = cut(&src, len / 2, dir.path(), "cut.h5ad");
        match check_hdf5(&cut) {
            Err(AnnDataError::Truncated {
                actual, expected, ..
            }) => assert_eq!((actual, expected), (len / 2, len)),
            other => panic!("expected Truncated, got {other:?}"),
        }
    }

    #[test]
    fn a_zip_without_its_end_record_is_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let whole = dir.path().join("whole.zip");
        let mut zip = zip::ZipWriter::new(File::create(&whole).unwrap());
        zip.start_file("zarr.json", zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut zip, &[b'x'; 4000]).unwrap();
        zip.finish().unwrap();
        check_zip(&whole).unwrap();
        let len = std::fs::metadata(&whole).unwrap().len();
        let cut = cut(&whole, len - 30, dir.path(), "cut.zip");
        assert!(matches!(
            check_zip(&cut),
            Err(AnnDataError::Damaged { actual, .. }) if actual == len - 30
        ));
    }
}
