//! Cellucid export folders: one dataset folder, or a `datasets.json` catalog.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use serde_json::Value;

use crate::detect::{detect_input, InputKind};
use crate::error::{OpenError, SourceError};
use crate::file::{open_confined, SourceFile};
use crate::key::RelativeKey;
use crate::source::{DatasetInfo, DatasetSource, SourceFormat};

const IDENTITY: &str = "dataset_identity.json";
const CATALOG: &str = "datasets.json";
/// Manifests are small; a larger one is refused instead of read into memory.
const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// An export folder served as is: every regular, non-dot file of each dataset
/// folder, byte for byte.
///
/// Each dataset's files are opened through a `cap-std` directory rooted at
/// that dataset, so no key and no symlink can reach outside it.
#[derive(Debug)]
pub struct ExportSource {
    root: Dir,
    has_catalog: bool,
    datasets: Vec<DatasetInfo>,
    dirs: Vec<Dir>,
}

impl ExportSource {
    /// Opens `path`, a folder holding `dataset_identity.json` (one dataset) or
    /// `datasets.json` (a catalog, version 1).
    ///
    /// # Errors
    /// [`OpenError::NotADataset`] for a folder that is neither,
    /// [`OpenError::InvalidManifest`] for an identity or catalog that cannot be
    /// used, [`OpenError::Unreadable`] when the folder cannot be read.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        match detect_input(path)? {
            InputKind::ExportDataset => Self::open_dataset(path),
            InputKind::ExportCatalog => Self::open_catalog(path),
            _ => Err(OpenError::NotADataset {
                path: path.to_owned(),
            }),
        }
    }

    fn open_dataset(path: &Path) -> Result<Self, OpenError> {
        let root = open_root(path)?;
        let identity = read_identity(&root, path)?;
        let dir = root
            .try_clone()
            .map_err(|source| unreadable(path, source))?;
        Ok(Self {
            root,
            has_catalog: false,
            datasets: vec![identity.into_info(None)],
            dirs: vec![dir],
        })
    }

    fn open_catalog(path: &Path) -> Result<Self, OpenError> {
        let root = open_root(path)?;
        let catalog = read_json(&root, path, CATALOG)?;
        let invalid = |reason: String| OpenError::InvalidManifest {
            path: path.to_owned(),
            file: CATALOG.to_owned(),
            reason,
        };
        if catalog.get("version").and_then(Value::as_u64) != Some(1) {
            return Err(invalid("only catalog version 1 is supported".into()));
        }
        let entries = catalog
            .get("datasets")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("\"datasets\" is not a list".into()))?;
        if entries.is_empty() {
            return Err(invalid("the catalog lists no dataset".into()));
        }
        let mut datasets = Vec::with_capacity(entries.len());
        let mut dirs = Vec::with_capacity(entries.len());
        for (n, entry) in entries.iter().enumerate() {
            let id = entry
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("entry {n} has no string \"id\"")))?;
            let rel = entry
                .get("path")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("dataset {id:?} has no string \"path\"")))?;
            let key = RelativeKey::parse(rel.strip_suffix('/').unwrap_or(rel)).map_err(|err| {
                invalid(format!("dataset {id:?} has an unsafe path {rel:?}: {err}"))
            })?;
            let dir = root.open_dir(key.as_str()).map_err(|err| {
                invalid(format!(
                    "dataset {id:?}: cannot open folder {rel:?} inside the catalog: {err}"
                ))
            })?;
            let identity = read_identity(&dir, &path.join(key.as_str()))?;
            if identity.id != id {
                return Err(invalid(format!(
                    "dataset {id:?} at {rel:?} has identity id {:?}; the viewer refuses a mismatch",
                    identity.id
                )));
            }
            if datasets.iter().any(|d: &DatasetInfo| d.id == id) {
                return Err(invalid(format!("dataset id {id:?} is listed twice")));
            }
            let mut info = identity.into_info(Some(format!("{key}/")));
            // The viewer reads these from the catalog, so they win.
            if let Some(name) = entry.get("name").and_then(Value::as_str) {
                name.clone_into(&mut info.name);
            }
            if let Some(n) = entry.get("n_cells").and_then(Value::as_u64) {
                info.n_cells = n;
            }
            if let Some(n) = entry.get("n_genes").and_then(Value::as_u64) {
                info.n_genes = n;
            }
            datasets.push(info);
            dirs.push(dir);
        }
        Ok(Self {
            root,
            has_catalog: true,
            datasets,
            dirs,
        })
    }

    fn dir(&self, id: &str) -> Result<&Dir, SourceError> {
        self.datasets
            .iter()
            .position(|d| d.id == id)
            .map(|i| &self.dirs[i])
            .ok_or_else(|| SourceError::UnknownDataset { id: id.to_owned() })
    }
}

impl DatasetSource for ExportSource {
    fn format(&self) -> SourceFormat {
        SourceFormat::Export
    }

    fn datasets(&self) -> &[DatasetInfo] {
        &self.datasets
    }

    fn reads_may_block(&self) -> bool {
        // An open, an fstat and a pread of a local file (a large body is read
        // in chunks as it is sent).
        false
    }

    fn open(&self, id: &str, key: &RelativeKey) -> Result<Arc<dyn SourceFile>, SourceError> {
        open_confined(self.dir(id)?, key)
    }

    fn catalog(&self) -> Option<Result<Arc<dyn SourceFile>, SourceError>> {
        if !self.has_catalog {
            return None;
        }
        Some(match RelativeKey::parse(CATALOG) {
            Ok(key) => open_confined(&self.root, &key),
            Err(_) => unreachable_key(),
        })
    }
}

/// `datasets.json` is a valid key; this keeps the impossible branch panic-free.
fn unreachable_key() -> Result<Arc<dyn SourceFile>, SourceError> {
    Err(SourceError::UnknownDataset { id: CATALOG.into() })
}

/// The fields of `dataset_identity.json` the server needs.
struct Identity {
    id: String,
    name: String,
    description: Option<String>,
    n_cells: u64,
    n_genes: u64,
}

impl Identity {
    fn into_info(self, catalog_path: Option<String>) -> DatasetInfo {
        DatasetInfo {
            id: self.id,
            name: self.name,
            description: self.description,
            n_cells: self.n_cells,
            n_genes: self.n_genes,
            catalog_path,
        }
    }
}

fn read_identity(dir: &Dir, path: &Path) -> Result<Identity, OpenError> {
    let doc = read_json(dir, path, IDENTITY)?;
    let invalid = |reason: &str| OpenError::InvalidManifest {
        path: path.to_owned(),
        file: IDENTITY.to_owned(),
        reason: reason.to_owned(),
    };
    let id = doc
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("no string \"id\""))?;
    if !is_portable_id(id) {
        return Err(invalid(
            "\"id\" must be 1-180 characters of [A-Za-z0-9._-], start with a letter or digit, and not end with '.'",
        ));
    }
    let stats = doc.get("stats");
    let count = |name: &str| stats.and_then(|s| s.get(name)).and_then(Value::as_u64);
    Ok(Identity {
        id: id.to_owned(),
        name: doc
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(id)
            .to_owned(),
        description: doc
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned),
        n_cells: count("n_cells").ok_or_else(|| invalid("no integer \"stats.n_cells\""))?,
        n_genes: count("n_genes").unwrap_or(0),
    })
}

/// The portable-component rule for dataset ids (docs/FORMATS.md, "Export ids").
fn is_portable_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 180
        && bytes[0].is_ascii_alphanumeric()
        && !id.ends_with('.')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && RelativeKey::parse(id).is_ok()
}

fn read_json(dir: &Dir, path: &Path, file: &str) -> Result<Value, OpenError> {
    let invalid = |reason: String| OpenError::InvalidManifest {
        path: path.to_owned(),
        file: file.to_owned(),
        reason,
    };
    let handle = dir
        .open(file)
        .map_err(|err| invalid(format!("cannot open: {err}")))?;
    let mut text = Vec::new();
    handle
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|err| invalid(format!("cannot read: {err}")))?;
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(invalid(format!("larger than {MAX_MANIFEST_BYTES} bytes")));
    }
    serde_json::from_slice(&text).map_err(|err| invalid(format!("not valid JSON: {err}")))
}

fn open_root(path: &Path) -> Result<Dir, OpenError> {
    Dir::open_ambient_dir(path, ambient_authority()).map_err(|source| unreadable(path, source))
}

fn unreadable(path: &Path, source: std::io::Error) -> OpenError {
    OpenError::Unreadable {
        path: PathBuf::from(path),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_ids() {
        assert!(is_portable_id("pbmc68k-q8-gz"));
        assert!(is_portable_id("a.b_c"));
        for bad in ["", "-a", ".a", "a.", "a/b", "CON", "a b", &"a".repeat(181)] {
            assert!(!is_portable_id(bad), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod folder_tests {
    use super::*;
    use std::fs;

    fn dataset(dir: &Path, id: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(
            dir.join(IDENTITY),
            format!(r#"{{"version": 3, "id": "{id}", "name": "N", "stats": {{"n_cells": 5, "n_genes": 2}}}}"#),
        )
        .unwrap();
    }

    /// Larger than one body chunk (256 KiB).
    const LARGE: usize = 300 * 1024;

    #[test]
    fn reads_ranges_and_refuses_escapes() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("ds");
        dataset(&root, "ds");
        fs::write(root.join("small.bin"), b"0123456789").unwrap();
        let big: Vec<u8> = (0..(LARGE as u32 + 10)).map(|i| i as u8).collect();
        fs::write(root.join("big.bin"), &big).unwrap();
        fs::write(tmp.path().join("outside.txt"), b"secret").unwrap();
        std::os::unix::fs::symlink("../outside.txt", root.join("escape")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("outside.txt"), root.join("absolute")).unwrap();
        std::os::unix::fs::symlink("small.bin", root.join("inside")).unwrap();
        fs::create_dir(root.join("sub")).unwrap();

        let source = ExportSource::open(&root).unwrap();
        assert_eq!(source.datasets()[0].n_cells, 5);
        let open = |k: &str| source.open("ds", &RelativeKey::parse(k).unwrap());
        let small = open("small.bin").unwrap();
        assert_eq!(&small.read_range(3..6).unwrap()[..], b"345");
        assert!(small.read_range(5..11).is_err());
        let large = open("big.bin").unwrap();
        assert_eq!(large.len(), big.len() as u64);
        assert_eq!(&large.read_range(100..110).unwrap()[..], &big[100..110]);
        assert_eq!(
            &open("inside").unwrap().read_range(0..2).unwrap()[..],
            b"01"
        );
        for refused in ["escape", "absolute", "sub", "missing"] {
            assert!(
                matches!(open(refused), Err(SourceError::NotFound { .. })),
                "{refused}"
            );
        }
        assert!(matches!(
            source.open("other", &RelativeKey::parse("small.bin").unwrap()),
            Err(SourceError::UnknownDataset { .. })
        ));
        assert!(source.catalog().is_none());
    }

    #[test]
    fn a_replaced_large_file_is_served_new_while_the_old_handle_keeps_the_old_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        dataset(tmp.path(), "ds");
        let len = LARGE + 1;
        fs::write(tmp.path().join("big.bin"), vec![1u8; len]).unwrap();
        let source = ExportSource::open(tmp.path()).unwrap();
        let key = RelativeKey::parse("big.bin").unwrap();
        let first = source.open("ds", &key).unwrap();
        assert_eq!(
            source.open("ds", &key).unwrap().identity(),
            first.identity()
        );
        // Replace it the way exporters do: write a new file, rename over.
        fs::write(tmp.path().join("big.new"), vec![2u8; len]).unwrap();
        fs::rename(tmp.path().join("big.new"), tmp.path().join("big.bin")).unwrap();
        let second = source.open("ds", &key).unwrap();
        assert_ne!(second.identity(), first.identity());
        assert_eq!(&second.read_range(0..4).unwrap()[..], &[2, 2, 2, 2]);
        // The first response's bytes stay valid for whoever still holds them.
        assert_eq!(&first.read_range(0..4).unwrap()[..], &[1, 1, 1, 1]);
    }

    #[test]
    fn a_catalog_must_agree_with_its_identities() {
        let tmp = tempfile::tempdir().unwrap();
        dataset(&tmp.path().join("a"), "a");
        dataset(&tmp.path().join("b"), "not-b");
        let catalog = |entries: &str| {
            fs::write(
                tmp.path().join(CATALOG),
                format!(r#"{{"version": 1, "default": "a", "datasets": [{entries}]}}"#),
            )
            .unwrap();
            ExportSource::open(tmp.path())
        };
        let ok = catalog(r#"{"id": "a", "path": "a/", "name": "A", "n_cells": 5, "n_genes": 2}"#)
            .unwrap();
        assert_eq!(ok.datasets()[0].catalog_path.as_deref(), Some("a/"));
        assert!(ok.catalog().is_some());
        for bad in [
            r#"{"id": "b", "path": "b/"}"#,
            r#"{"id": "a", "path": "../a/"}"#,
            r#"{"id": "a", "path": "a/"}, {"id": "a", "path": "a/"}"#,
            r#"{"id": "a"}"#,
        ] {
            assert!(
                matches!(catalog(bad), Err(OpenError::InvalidManifest { .. })),
                "{bad}"
            );
        }
    }
}
