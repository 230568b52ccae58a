//! Turning PATH arguments into dataset sources.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cellucid_core::{detect_input, DatasetSource, ExportSource, InputKind, OpenError};

/// Where the bundled demo exports live (a copy of the public
/// cellucid-demo-custom-datasets exports, BSD-3-Clause).
pub(crate) fn demo_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/demo")
}

/// Opens every PATH, in order, recognising each by its content.
///
/// # Errors
/// The first input that cannot be served, with its path in the message.
pub(crate) fn open_all(paths: &[PathBuf]) -> Result<Vec<Arc<dyn DatasetSource>>, OpenError> {
    paths.iter().map(|path| open_one(path)).collect()
}

fn open_one(path: &Path) -> Result<Arc<dyn DatasetSource>, OpenError> {
    match detect_input(path)? {
        InputKind::ExportDataset | InputKind::ExportCatalog => {
            Ok(Arc::new(ExportSource::open(path)?))
        }
        other => Err(OpenError::Unsupported {
            path: path.to_owned(),
            what: other.describe(),
        }),
    }
}
