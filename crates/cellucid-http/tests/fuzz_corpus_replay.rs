//! Replays the fuzz corpus (`fuzz/corpus/<target>/`) through the same checks
//! the fuzz targets run (`fuzz/harness/mod.rs`), so CI, which does not fuzz,
//! still runs every saved input and every former crash (docs/FUZZING.md).
//! The AnnData targets also replay the repository's own fixtures.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns may panic

#[path = "../../../fuzz/harness/mod.rs"]
mod harness;

use std::path::{Path, PathBuf};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// Set to a folder of per-target corpora (what `fuzz/run-all.sh` grows in
/// `/tmp/cellucid-fuzz/corpus`) to replay them too, in this debug build
/// where integer overflow panics (the fuzz build does not check it).
const EXTRA_CORPUS: &str = "CELLUCID_FUZZ_CORPUS";

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect()
}

/// Every file of `fuzz/corpus/<target>` (there must be some), then of
/// `$CELLUCID_FUZZ_CORPUS/<target>` when that is set, sorted.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = repo("fuzz/corpus").join(target);
    let mut files = files_in(&dir);
    assert!(!files.is_empty(), "{} holds no seeds", dir.display());
    if let Some(extra) = std::env::var_os(EXTRA_CORPUS) {
        let extra = Path::new(&extra).join(target);
        if extra.is_dir() {
            files.extend(files_in(&extra));
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

/// Only the committed seeds of `target`.
fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = repo("fuzz/corpus").join(target);
    files_in(&dir)
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

fn replay(target: &str, check: fn(&[u8])) {
    for (path, bytes) in corpus(target) {
        // Name the file when its check fails.
        let result = std::panic::catch_unwind(|| check(&bytes));
        if let Err(panic) = result {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!("{}: {message}", path.display());
        }
    }
}

#[test]
fn host_corpus() {
    replay("host", harness::host);
}

#[test]
fn origin_corpus() {
    replay("origin", harness::origin);
}

#[test]
fn range_corpus() {
    replay("range", harness::range);
}

#[test]
fn request_path_corpus() {
    replay("request_path", harness::request_path);
}

#[test]
fn session_bundle_corpus() {
    replay("session_bundle", harness::session_bundle);
}

#[test]
fn ui_inventory_corpus() {
    replay("ui_inventory", harness::ui_inventory);
}

#[test]
fn h5ad_open_corpus_and_fixtures() {
    replay("h5ad_open", harness::h5ad_open);
    for fixture in ["tiny.h5ad", "tiny.gzip.h5ad", "tiny.lzf.h5ad"] {
        let bytes = std::fs::read(repo("testdata/anndata").join(fixture)).unwrap();
        harness::h5ad_open(&bytes);
        // Cut short anywhere, the fixture is refused, never a crash.
        for cut in [0, 8, 512, 2048, bytes.len() / 2, bytes.len() - 1] {
            harness::h5ad_open(&bytes[..cut]);
        }
    }
}

#[test]
fn zarr_metadata_corpus() {
    replay("zarr_metadata", harness::zarr_metadata);
}

#[test]
fn zarr_zip_corpus_and_fixture() {
    replay("zarr_zip", harness::zarr_zip);
    let bytes = std::fs::read(repo(
        "testdata/prepared-0.9.5/pbmc68k_reduced.cellucid.zarr.zip",
    ))
    .unwrap();
    harness::zarr_zip(&bytes);
    for cut in [0, 22, bytes.len() - 22, bytes.len() - 1] {
        harness::zarr_zip(&bytes[..cut]);
    }
}

/// The seeds are what they claim: the AnnData seeds open (so the fuzzer
/// starts from inputs that reach deep into the readers, not from files
/// refused at the first byte), the others are accepted by their parsers.
#[test]
fn the_seeds_are_valid_inputs() {
    use cellucid_core::anndata::AnnData;
    let scratch = tempfile::tempdir().unwrap();
    for (target, name) in [("h5ad_open", "seed.h5ad"), ("zarr_zip", "seed.zarr.zip")] {
        for (path, bytes) in seeds(target) {
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("crash-"))
            {
                continue;
            }
            let copy = scratch.path().join(name);
            std::fs::write(&copy, &bytes).unwrap();
            let adata =
                AnnData::open(&copy).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            assert!(adata.n_obs() > 0, "{}", path.display());
        }
    }
    for (path, bytes) in seeds("session_bundle") {
        let summary = cellucid_core::session::validate_bundle(
            std::io::Cursor::new(&bytes),
            bytes.len() as u64,
            cellucid_core::session::BundleLimits::default(),
        )
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        assert!(!summary.chunks.is_empty());
    }
}
