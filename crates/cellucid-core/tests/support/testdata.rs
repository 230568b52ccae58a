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
