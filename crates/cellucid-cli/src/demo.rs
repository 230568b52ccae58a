//! The demo datasets, embedded in the binary (see `build.rs`), so that an
//! installed or copied `cellucid` serves them with no PATH from anywhere.
//!
//! The export reader serves folders (confined by cap-std, large files
//! mapped), so `serve` writes the files into a private temporary folder
//! (mode 0700, under `TMPDIR`) and removes it when the server stops. They
//! are a copy of the public cellucid-demo-custom-datasets exports,
//! BSD-3-Clause, licence included.

use std::path::Path;

include!(concat!(env!("OUT_DIR"), "/demo_files.rs"));

/// The demo datasets written out to a private temporary folder; the folder
/// is removed on drop.
#[derive(Debug)]
pub(crate) struct DemoFolder {
    dir: tempfile::TempDir,
}

impl DemoFolder {
    /// Writes the embedded files into a new private temporary folder.
    ///
    /// # Errors
    /// When the folder or a file cannot be written.
    pub(crate) fn extract() -> std::io::Result<Self> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("cellucid-demo-");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            builder.permissions(std::fs::Permissions::from_mode(0o700));
        }
        let dir = builder.tempdir()?;
        for (rel, bytes) in DEMO_FILES {
            let path = dir.path().join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, bytes)?;
        }
        Ok(Self { dir })
    }

    /// The folder: a catalog (`datasets.json`) of the demo datasets.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}
