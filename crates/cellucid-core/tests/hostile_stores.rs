//! Hostile AnnData stores read in-process: chunks that inflate past their
//! declared size on every Zarr codec path (v2 gzip, v3 zstd, v3 gzip inside
//! a sharding codec), claims larger than the memory budget, and the budget
//! shared by parallel readers. The bombs here inflate to 64 MiB at most, so
//! a regression costs memory, not the machine; the end-to-end tests run
//! the server with bigger bombs under an address-space limit.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns may panic

use std::io::Write;
use std::path::{Path, PathBuf};

use cellucid_core::anndata::{AnnData, AnnDataError};
use serde_json::{json, Value};

#[path = "support/testdata.rs"]
mod testdata;

/// What the bombs inflate to.
const BOMB: usize = 64 << 20;

fn copy_fixture(dir: &Path, name: &str) -> PathBuf {
    let store = dir.join(name);
    testdata::copy_dir(&testdata::path(&format!("anndata/{name}")), &store);
    store
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut doc);
    std::fs::write(path, serde_json::to_vec(&doc).unwrap()).unwrap();
}

fn gzip_bomb() -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&vec![0u8; BOMB]).unwrap();
    e.finish().unwrap()
}

fn zstd_bomb() -> Vec<u8> {
    zstd::bulk::compress(&vec![0u8; BOMB], 3).unwrap()
}

/// Reading `obsm/X_umap_3d` fails, saying the chunk inflates past its
/// declared size.
fn assert_bomb_refused(store: &Path) {
    let adata = AnnData::open(store).unwrap();
    let err = adata.obsm_values("X_umap_3d").unwrap_err();
    assert!(
        err.to_string().contains("past its declared size"),
        "{}: {err}",
        store.display()
    );
}

#[test]
fn a_v2_gzip_chunk_inflating_past_its_declared_size_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let store = copy_fixture(dir.path(), "tiny.zarr");
    let array = store.join("obsm/X_umap_3d");
    edit_json(&array.join(".zarray"), |doc| {
        doc["compressor"] = json!({"id": "gzip", "level": 1});
    });
    std::fs::write(array.join("0.0"), gzip_bomb()).unwrap();
    assert_bomb_refused(&store);
}

#[test]
fn a_v3_zstd_chunk_inflating_past_its_declared_size_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let store = copy_fixture(dir.path(), "tiny.v3.zarr");
    std::fs::write(store.join("obsm/X_umap_3d/c/0/0"), zstd_bomb()).unwrap();
    assert_bomb_refused(&store);
}

#[test]
fn a_bomb_inside_a_shard_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let store = copy_fixture(dir.path(), "tiny.v3.zarr");
    let array = store.join("obsm/X_umap_3d");
    // One shard holding one inner chunk of 6×3 float64, gzip-compressed;
    // the index (offset, length per inner chunk) follows the chunk.
    edit_json(&array.join("zarr.json"), |doc| {
        doc["codecs"] = json!([{"name": "sharding_indexed", "configuration": {
            "chunk_shape": [6, 3],
            "codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                       {"name": "gzip", "configuration": {"level": 1}}],
            "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
            "index_location": "end"}}]);
    });
    let mut shard = gzip_bomb();
    let len = shard.len() as u64;
    shard.extend_from_slice(&0u64.to_le_bytes());
    shard.extend_from_slice(&len.to_le_bytes());
    std::fs::write(array.join("c/0/0"), shard).unwrap();
    assert_bomb_refused(&store);
}

#[test]
fn an_honest_chunk_still_decodes_on_every_codec_path() {
    // The caps must not refuse what zarr writes: the fixtures decode.
    for name in [
        "tiny.zarr",
        "tiny.v3.zarr",
        "pbmc68k_reduced.zarr",
        "pbmc68k_reduced.v3.zarr",
    ] {
        let adata = AnnData::open(&testdata::path(&format!("anndata/{name}"))).unwrap();
        for entry in adata.obsm() {
            adata.obsm_values(&entry.key).unwrap();
        }
        for column in adata.obs().columns() {
            if column.encoding.is_continuous().is_some() {
                adata.obs_column(&column.name).unwrap();
            }
        }
    }
}

#[test]
fn a_claim_larger_than_the_budget_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let store = copy_fixture(dir.path(), "tiny.zarr");
    // 10^9 × 3 float64 that no chunk stores: fill values, 24 GB of them.
    edit_json(&store.join("obsm/X_umap_3d/.zarray"), |doc| {
        doc["shape"] = json!([1_000_000_000u64, 3]);
    });
    let adata = AnnData::open(&store).unwrap();
    // The entry is skipped (wrong row count), but a direct read is budgeted.
    let err = adata.backend().read("obsm/X_umap_3d").unwrap_err();
    assert!(matches!(err, AnnDataError::OverBudget { .. }), "{err}");
    assert!(err.to_string().contains("memory budget"), "{err}");
}

#[test]
fn hdf5_chunks_declaring_gigabytes_are_refused_before_decoding() {
    // tiny.gzip.h5ad: every dataset chunked and deflated. Rewrite each
    // chunked layout message (type 8, version 3, class 2) so its first
    // chunk dimension is 2^30: a chunk would then decode to gigabytes.
    let mut b = std::fs::read(testdata::path("anndata/tiny.gzip.h5ad")).unwrap();
    let mut patched = 0;
    for p in 0..b.len() - 30 {
        let is_chunked_layout = b[p] == 8
            && b[p + 1] == 0
            && b[p + 5..p + 8] == [0; 3]
            && b[p + 8] == 3
            && b[p + 9] == 2
            && (2..=3).contains(&b[p + 10]);
        if is_chunked_layout {
            // version, class, dimensionality, the index address, then the
            // chunk dimensions as u32.
            let first = p + 11 + 8;
            b[first..first + 4].copy_from_slice(&(1u32 << 30).to_le_bytes());
            patched += 1;
        }
    }
    assert!(
        patched > 20,
        "the fixture changed: {patched} chunked datasets"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chunks.h5ad");
    std::fs::write(&path, b).unwrap();
    let err = AnnData::open(&path).unwrap_err();
    assert!(err.to_string().contains("a chunk may hold"), "{err}");
}
