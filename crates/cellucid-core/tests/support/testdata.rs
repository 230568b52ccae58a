//! Where the repository's test data lives: `testdata/` at its root (its
//! README says what each file is, how it was made and its licence).
//!
//! One helper for the whole crate: the integration tests include this file as
//! a module, and `src/lib.rs` includes it under `cfg(test)` for unit tests.

use std::path::PathBuf;

/// `testdata/<rel>` from the repository root.
pub(crate) fn path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel)
}

/// Copies the folder `from` (a Zarr store) to `to`, recursively, so a test
/// can change the copy.
#[allow(dead_code, clippy::expect_used)] // not every test binary copies a store; a test may panic
pub(crate) fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the fixture") {
        let entry = entry.expect("a fixture entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("its type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a fixture file");
        }
    }
}
