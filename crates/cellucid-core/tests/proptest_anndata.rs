//! Property tests of the AnnData metadata readers on mutated bytes of the
//! fixtures (docs/FUZZING.md): an `.h5ad` or `.zarr.zip` with bytes changed
//! or cut short opens or is refused with an error, never a panic or an
//! abort. The same inputs the `h5ad_open` and `zarr_zip` fuzz targets start
//! from, with a fixed seed so CI runs the same cases every time.
//!
//! A changed size field may make a reader try a huge allocation, so each
//! property runs in a child process of this test binary under a 4 GiB
//! address-space limit (`ulimit -v`): a failure ends the child, not the
//! test runner, and is reported with the shrunk input.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns may panic

use std::path::{Path, PathBuf};
use std::process::Command;

use cellucid_core::anndata::AnnData;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

const CHILD: &str = "CELLUCID_PROPTEST_ANNDATA_CHILD";

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// In the parent: runs `test` alone in a memory-limited child and checks
/// that it passed; returns `false` in the child, which runs the property.
fn ran_in_limited_child(test: &str) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return false;
    }
    let exe = std::env::current_exe().unwrap();
    let output = Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 4194304 && exec \"$0\" \"$@\"")
        .arg(exe)
        .args([test, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{test} failed in its child ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    true
}

/// Byte edits and an optional cut, applied to one of `seeds`.
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(seeds),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        prop::option::weighted(0.2, any::<prop::sample::Index>()),
    )
        .prop_map(|(mut bytes, edits, cut)| {
            for (at, value) in edits {
                let at = at.index(bytes.len());
                bytes[at] = value;
            }
            if let Some(cut) = cut {
                let cut = cut.index(bytes.len());
                bytes.truncate(cut);
            }
            bytes
        })
}

/// Opens each mutated input as `name` in a scratch folder.
fn check_mutations(seeds: Vec<Vec<u8>>, name: &str, cases: u32) {
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join(name);
    let config = Config {
        cases,
        rng_seed: RngSeed::Fixed(0x00c0_ffee),
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new(config)
        .run(&mutated(seeds), |bytes| {
            std::fs::write(&path, &bytes).unwrap();
            if let Ok(adata) = AnnData::open(&path) {
                let _ = (adata.n_obs(), adata.n_vars(), adata.obsm().len());
            }
            Ok(())
        })
        .unwrap();
}

fn read_all(paths: &[&str]) -> Vec<Vec<u8>> {
    paths
        .iter()
        .map(|rel| std::fs::read(repo(rel)).unwrap())
        .collect()
}

#[test]
fn mutated_h5ad_files_open_or_are_refused() {
    if ran_in_limited_child("mutated_h5ad_files_open_or_are_refused") {
        return;
    }
    let seeds = read_all(&[
        "fuzz/corpus/h5ad_open/oldest-formats.h5ad",
        "fuzz/corpus/h5ad_open/newest-formats-gzip.h5ad",
        "testdata/anndata/tiny.h5ad",
    ]);
    check_mutations(seeds, "mutated.h5ad", 512);
}

#[test]
fn mutated_zarr_zips_open_or_are_refused() {
    if ran_in_limited_child("mutated_zarr_zips_open_or_are_refused") {
        return;
    }
    let seeds = read_all(&["fuzz/corpus/zarr_zip/obs-var-umap.zarr.zip"]);
    check_mutations(seeds, "mutated.zarr.zip", 512);
}
