//! Hostile dataset files (SECURITY.md, "Hostile dataset files"): stores that
//! claim far more than they hold, and chunks or zip members that inflate far
//! past their declared size. Each hostile file is made here from a small
//! fixture (a copied and patched `tiny.zarr` or `tiny.h5ad`), and the server
//! runs under an address-space limit (`setrlimit(RLIMIT_AS)` in the child),
//! so a reader that allocates what a file claims dies instead of swapping
//! the machine: each test would fail that way without the caps.
//!
//! The server must refuse a store whose metadata cannot be satisfied at
//! startup, with one line saying what is inconsistent, and otherwise stay
//! up, answer the hostile dataset's requests with a clear error, and keep
//! serving the good dataset next to it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// The address space the server may use: far above what it needs for
/// these small datasets (under 200 MB), far below what a bomb inflates to.
const ADDRESS_SPACE: u64 = 1 << 30;

/// The budget the servers run with, so hostile claims cross it quickly.
const BUDGET: &str = "64MiB";

/// The id of the hostile copy of a tiny store: `tiny` is taken by the
/// good dataset (both name themselves in `uns['cellucid']`).
const BAD: &str = "tiny-2";

/// How far the bombs inflate: more than [`ADDRESS_SPACE`].
const BOMB_BYTES: u64 = 3 << 29;

/// `cellucid` limited to [`ADDRESS_SPACE`] bytes of address space.
#[allow(unsafe_code)]
fn limited() -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = cellucid();
    // SAFETY: the closure runs in the forked child before exec and calls
    // only setrlimit(2), which is async-signal-safe, with a pointer to a
    // local it does not keep.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: ADDRESS_SPACE as libc::rlim_t,
                rlim_max: ADDRESS_SPACE as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// `cellucid serve` (limited) over `paths`.
fn serve_limited(paths: &[&Path]) -> Result<Server, String> {
    let mut args = vec![
        "--no-web-ui",
        "--cache-dir",
        TEST_CACHE,
        "--memory-budget",
        BUDGET,
    ];
    args.extend(paths.iter().map(|p| p.to_str().expect("a UTF-8 path")));
    Server::try_start_command(limited(), &args)
}

/// Runs `cellucid serve` (limited) over `paths` expecting it to refuse to
/// start; returns its stderr.
fn refused(paths: &[&Path]) -> String {
    let mut cmd = limited();
    cmd.args(["serve", "--no-browser", "--no-web-ui", "--port", "0"])
        .args(["--cache-dir", TEST_CACHE, "--memory-budget", BUDGET])
        .args(paths)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started on a store it must refuse");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "exit status {status}; stderr: {stderr}"
    );
    stderr
}

/// A copy of `testdata/anndata/tiny.zarr` at `dir/name`.
fn tiny_zarr(dir: &Path, name: &str) -> PathBuf {
    let store = dir.join(name);
    copy_tree(&fixture("anndata/tiny.zarr"), &store);
    store
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut doc);
    std::fs::write(path, serde_json::to_vec(&doc).unwrap()).unwrap();
}

/// Every metadata file under `dir` (`.zarray`, `.zattrs`).
fn metadata_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            metadata_files(&path, out);
        } else if matches!(
            path.file_name().and_then(|n| n.to_str()),
            Some(".zarray" | ".zattrs")
        ) {
            out.push(path);
        }
    }
}

/// Raw deflate blocks that inflate to `bytes` zeros (a multiple of 1 MiB):
/// one sync-flushed block of 1 MiB of zeros, repeated (each block refers
/// only to itself), then an empty final block. About 1 KB per MiB.
fn deflate_bomb(bytes: u64) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&vec![0u8; 1 << 20]).unwrap();
    encoder.flush().unwrap();
    let block = encoder.get_ref().clone();
    let mut out = Vec::with_capacity(block.len() * (bytes >> 20) as usize + 2);
    for _ in 0..bytes >> 20 {
        out.extend_from_slice(&block);
    }
    // BFINAL=1, BTYPE=01 (fixed Huffman), end-of-block.
    out.extend_from_slice(&[0x03, 0x00]);
    out
}

/// A zlib stream of `bytes` zeros, with its correct checksum.
fn zlib_bomb(bytes: u64) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    out.extend(deflate_bomb(bytes));
    // Adler-32 of zeros: a stays 1, b adds 1 per byte.
    let adler = (((bytes % 65521) as u32) << 16) | 1;
    out.extend_from_slice(&adler.to_be_bytes());
    out
}

/// Writes a zip archive of `members` (name, method 0 = stored or 8 =
/// deflated, the stored bytes, the uncompressed size it declares).
fn write_zip(path: &Path, members: &[(String, u16, Vec<u8>, u64)]) {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, method, data, size) in members {
        let offset = out.len() as u32;
        let crc = if *method == 0 {
            let mut crc = flate2::Crc::new();
            crc.update(data);
            crc.sum()
        } else {
            0 // not reached: the reader must stop long before the end
        };
        let size = u32::try_from(*size).unwrap();
        let mut fields = Vec::new();
        for v in [20u16, 0, *method, 0, 0x21] {
            fields.extend_from_slice(&v.to_le_bytes());
        }
        fields.extend_from_slice(&crc.to_le_bytes());
        fields.extend_from_slice(&(data.len() as u32).to_le_bytes());
        fields.extend_from_slice(&size.to_le_bytes());
        fields.extend_from_slice(&(name.len() as u16).to_le_bytes());
        fields.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&fields);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&fields);
        central.extend_from_slice(&[0u8; 10]); // comment, disk, attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    let n = members.len() as u16;
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    std::fs::write(path, out).unwrap();
}

/// Every file under `dir` as (key, bytes), keys `/`-separated.
fn files(dir: &Path, prefix: &str, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = format!("{prefix}{}", entry.file_name().to_str().unwrap());
        if entry.file_type().unwrap().is_dir() {
            files(&entry.path(), &format!("{name}/"), out);
        } else {
            out.push((name, std::fs::read(entry.path()).unwrap()));
        }
    }
}

/// The good dataset every server serves next to the hostile one.
fn good() -> PathBuf {
    fixture("anndata/tiny.h5ad")
}

/// The server is alive, and the good dataset (`tiny`) answers its files.
fn good_still_served(server: &Server) {
    assert_eq!(get(&server.url("/_cellucid/health")).status, 200);
    for key in [
        "dataset_identity.json",
        "obs_manifest.json",
        "embeddings/0_3d.bin",
        "var/0.values.f32",
    ] {
        let reply = get(&server.url(&format!("/tiny/{key}")));
        assert_eq!(reply.status, 200, "tiny/{key}: {}", reply.text());
    }
}

/// A request for the hostile dataset's files fails cleanly, naming why.
fn bad_fails_cleanly(server: &Server, id: &str, why: &str) {
    for key in ["dataset_identity.json", "embeddings/0_3d.bin"] {
        let reply = get(&server.url(&format!("/{id}/{key}")));
        assert!(
            matches!(reply.status, 422 | 503),
            "{id}/{key}: {} {}",
            reply.status,
            reply.text()
        );
        assert!(reply.text().contains(why), "{id}/{key}: {}", reply.text());
    }
}

#[test]
fn a_zarr_store_claiming_a_billion_cells_is_refused_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let store = tiny_zarr(dir.path(), "claims.zarr");
    let mut meta = Vec::new();
    metadata_files(&store, &mut meta);
    // Every array and matrix with a cell axis now claims 10^9 cells; no
    // chunk beyond the first exists, so all of it reads as fill values.
    for path in meta {
        edit_json(&path, |doc| {
            if let Some(shape) = doc.get_mut("shape").and_then(Value::as_array_mut) {
                for dim in shape.iter_mut() {
                    match dim.as_u64() {
                        Some(6) => *dim = Value::from(1_000_000_000u64),
                        Some(7) => *dim = Value::from(1_000_000_001u64),
                        _ => {}
                    }
                }
            }
        });
    }
    let stderr = refused(&[&good(), &store]);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains("claims.zarr"), "{stderr}");
    assert!(lines[0].contains("1,000,000,000 cells"), "{stderr}");
    assert!(lines[0].contains("memory budget"), "{stderr}");
}

/// Patches `tiny.h5ad` so its cell axis claims `n` cells while its plain
/// (contiguous) datasets are marked as never written: the HDF5 equivalent
/// of a store that claims 10^9 cells and holds nothing.
fn h5ad_claiming(n: u64) -> Vec<u8> {
    let mut b = std::fs::read(fixture("anndata/tiny.h5ad")).unwrap();
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let mut p = 0;
    let mut dataspaces = 0;
    while p + 40 < b.len() {
        // A version-1 dataspace message body: version 1, rank 1-2, flags,
        // five reserved zero bytes, then the dimensions (8 bytes each).
        let is_dataspace =
            b[p] == 1 && (1..=2).contains(&b[p + 1]) && b[p + 2] <= 1 && b[p + 3..p + 8] == [0; 5];
        if is_dataspace {
            let rank = usize::from(b[p + 1]);
            let dims = p + 8;
            if matches!(u64_at(&b, dims), 6 | 7) {
                dataspaces += 1;
                // The dimensions, then the maximum dimensions when flagged.
                let stored = rank * if b[p + 2] == 1 { 2 } else { 1 };
                for i in 0..stored {
                    let at = dims + 8 * i;
                    let claim = match u64_at(&b, at) {
                        6 => n,
                        7 if i % rank == 0 => n + 1, // a CSR indptr
                        _ => continue,
                    };
                    b[at..at + 8].copy_from_slice(&claim.to_le_bytes());
                }
            }
        }
        // A contiguous layout message (type 8, version 3, class 1) of a
        // small dataset: mark its storage as never allocated.
        let is_layout = b[p] == 8
            && b[p + 1] == 0
            && b[p + 5..p + 8] == [0; 3]
            && b[p + 8] == 3
            && b[p + 9] == 1;
        if is_layout && u64_at(&b, p + 10) < b.len() as u64 && u64_at(&b, p + 18) < 100_000 {
            b[p + 10..p + 18].copy_from_slice(&u64::MAX.to_le_bytes());
        }
        p += 1;
    }
    assert!(
        dataspaces > 20,
        "the fixture changed: {dataspaces} cell axes found"
    );
    // The sparse matrices' `shape` attributes ([6, 4] and [6, 6] as int64).
    for pair in [[6i64, 4], [6, 6]] {
        let pattern: Vec<u8> = pair.iter().flat_map(|v| v.to_le_bytes()).collect();
        while let Some(at) = b.windows(16).position(|w| w == pattern.as_slice()) {
            b[at..at + 8].copy_from_slice(&(n as i64).to_le_bytes());
            if pair[1] == 6 {
                b[at + 8..at + 16].copy_from_slice(&(n as i64).to_le_bytes());
            }
        }
    }
    b
}

#[test]
fn an_h5ad_claiming_a_billion_cells_but_storing_nothing_is_refused_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("claims.h5ad");
    std::fs::write(&path, h5ad_claiming(1_000_000_000)).unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() < 128 << 10);
    let stderr = refused(&[&good(), &path]);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains("claims.h5ad"), "{stderr}");
    assert!(
        lines[0].contains("claims 1,000,000,000 cells but") && lines[0].contains("stores 0 bytes"),
        "{stderr}"
    );
}

#[test]
fn an_h5ad_claiming_more_cells_than_the_budget_holds_is_refused_at_startup() {
    // 20 million cells stored nowhere: small enough that every reader
    // would allocate it under the address-space limit without a budget.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("claims.h5ad");
    std::fs::write(&path, h5ad_claiming(20_000_000)).unwrap();
    let stderr = refused(&[&good(), &path]);
    assert!(stderr.contains("claims 20,000,000 cells but"), "{stderr}");
}

#[test]
fn a_zarr_chunk_inflating_past_its_declared_size_fails_only_its_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let store = tiny_zarr(dir.path(), "bomb.zarr");
    let array = store.join("obsm/X_umap_3d");
    // Declares 6×3 float64 (144 bytes) per chunk; inflates to 1.5 GiB.
    edit_json(&array.join(".zarray"), |doc| {
        doc["compressor"] = serde_json::json!({"id": "zlib", "level": 1});
    });
    std::fs::write(array.join("0.0"), zlib_bomb(BOMB_BYTES)).unwrap();
    let server = serve_limited(&[&good(), &store]).unwrap();
    bad_fails_cleanly(&server, BAD, "declared size");
    // Several at once: each stops at the declared size.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| bad_fails_cleanly(&server, BAD, "declared size"));
        }
    });
    good_still_served(&server);
}

#[test]
fn a_zarr_chunk_declaring_gigabytes_is_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let store = tiny_zarr(dir.path(), "huge.zarr");
    // One chunk of 2^27 × 3 float64 = 3 GiB; its stored chunk is a zlib
    // stream of that size, so decoding it whole would allocate 3 GiB.
    edit_json(&store.join("obsm/X_umap_3d/.zarray"), |doc| {
        doc["chunks"] = serde_json::json!([1u64 << 27, 3]);
        doc["compressor"] = serde_json::json!({"id": "zlib", "level": 1});
    });
    std::fs::write(store.join("obsm/X_umap_3d/0.0"), zlib_bomb(BOMB_BYTES)).unwrap();
    let stderr = refused(&[&good(), &store]);
    assert!(stderr.contains("obsm/X_umap_3d"), "{stderr}");
    assert!(
        stderr.contains("more than the") && stderr.contains("a chunk may hold"),
        "{stderr}"
    );
}

#[test]
fn a_zip_member_inflating_to_gigabytes_fails_only_its_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let store = tiny_zarr(dir.path(), "unzipped.zarr");
    let mut members = Vec::new();
    files(&store, "", &mut members);
    let members: Vec<(String, u16, Vec<u8>, u64)> = members
        .into_iter()
        .map(|(name, data)| {
            if name == "obsm/X_umap_3d/0.0" {
                // Deflated, honestly declaring the 1.5 GiB it inflates to.
                (name, 8, deflate_bomb(BOMB_BYTES), BOMB_BYTES)
            } else {
                let len = data.len() as u64;
                (name, 0, data, len)
            }
        })
        .collect();
    let zip = dir.path().join("bomb.zarr.zip");
    write_zip(&zip, &members);
    let server = serve_limited(&[&good(), &zip]).unwrap();
    bad_fails_cleanly(&server, BAD, "a member may hold");
    good_still_served(&server);
}

#[test]
fn one_unreadable_obs_column_fails_only_its_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = tiny_zarr(dir.path(), "badcol.zarr");
    // obs/cat (column 0) has a corrupt codes chunk.
    std::fs::write(store.join("obs/cat/codes/0"), b"not a blosc chunk").unwrap();
    let server = serve_limited(&[&good(), &store]).unwrap();
    let manifest = get(&server.url("/tiny-2/obs_manifest.json"));
    assert_eq!(manifest.status, 200, "{}", manifest.text());
    let listed: Vec<String> = manifest.json()["_categoricalFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f[1].as_str().unwrap().to_owned())
        .collect();
    assert!(!listed.contains(&"cat".to_owned()), "{listed:?}");
    assert!(listed.contains(&"ordered_cat".to_owned()), "{listed:?}");
    let own = get(&server.url("/tiny-2/obs/0.codes.u8"));
    assert_eq!(own.status, 422, "{}", own.text());
    assert!(own.text().contains("cat"), "{}", own.text());
    for key in [
        "dataset_identity.json",
        "embeddings/0_3d.bin",
        "obs/1.codes.u8",
    ] {
        let reply = get(&server.url(&format!("/tiny-2/{key}")));
        assert_eq!(reply.status, 200, "{key}: {}", reply.text());
    }
    good_still_served(&server);
}
