//! Parallel requests share the memory budget: while others hold it, a
//! request that needs room waits a bounded time, then fails as busy (HTTP
//! 503), and succeeds once the room is free. Its own test binary: it holds
//! the whole process budget.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns may panic

use std::time::{Duration, Instant};

use cellucid_core::anndata::{AnnDataOptions, AnnDataSource};
use cellucid_core::{budget, DatasetSource, RelativeKey, SourceError};

#[path = "support/testdata.rs"]
mod testdata;

#[test]
fn a_request_finding_the_budget_held_is_busy_then_served() {
    let dir = tempfile::tempdir().unwrap();
    let options = AnnDataOptions {
        cache_dir: Some(dir.path().to_owned()),
        ..AnnDataOptions::default()
    };
    let source =
        AnnDataSource::open(&testdata::path("anndata/pbmc68k_reduced.h5ad"), options).unwrap();
    let id = source.datasets()[0].id.clone();
    let global = budget::global();
    global.set_wait(Duration::from_millis(300));

    // The plan itself finds the budget held: busy (503), and not kept as
    // the store's verdict — once the budget is free the plan is built.
    let manifest = RelativeKey::parse("obs_manifest.json").unwrap();
    let held = global
        .reserve(|| "other requests".into(), global.limit())
        .unwrap();
    let err = source.open(&id, &manifest).err().unwrap();
    assert!(matches!(err, SourceError::Busy { .. }), "{err}");
    drop(held);
    source.plan_notes().unwrap();
    source.open(&id, &manifest).unwrap();

    let key = RelativeKey::parse("embeddings/0_2d.bin").unwrap();
    let held = global
        .reserve(|| "other requests".into(), global.limit())
        .unwrap();
    let started = Instant::now();
    let err = source.open(&id, &key).err().unwrap();
    assert!(matches!(err, SourceError::Busy { .. }), "{err}");
    assert!(
        err.to_string().contains("in use by other requests"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    drop(held);
    let file = source.open(&id, &key).unwrap();
    assert_eq!(file.len(), 700 * 2 * 4);
}
