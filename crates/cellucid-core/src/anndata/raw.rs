//! The raw bytes of an AnnData store, as the 0.9.5 byte viewer reads them
//! (`/_cellucid/anndata/<id><ending>[/<key>]`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::store::{DirStore, KeyStore, ZARR_DOT_FILES};
use super::{StoreKind, ZarrVersion};
use crate::error::SourceError;
use crate::file::{open_confined, open_path, FileIdentity, MemoryFile, SourceFile};
use crate::key::RelativeKey;

/// How the store's bytes are addressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawLayout {
    /// One file (`.h5ad`).
    File,
    /// One zip file (`.zarr.zip`).
    Zip,
    /// A folder of keys (a Zarr folder).
    Folder,
}

impl RawLayout {
    /// `file`, `zip` or `folder`, as `/_cellucid/datasets` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Zip => "zip",
            Self::Folder => "folder",
        }
    }
}

/// An AnnData store served byte for byte.
#[derive(Debug)]
pub struct RawStore {
    layout: RawLayout,
    kind: &'static str,
    ending: &'static str,
    size: Option<u64>,
    path: PathBuf,
    folder: Option<DirStore>,
    generated: Option<(String, MemoryFile)>,
    defaults: Map<String, Value>,
    /// For a folder of files (MatrixMarket, Cell Ranger `outs/`): each file
    /// and its size at start-up, as `/_cellucid/datasets` lists them.
    files: Option<Vec<(String, u64)>>,
}

impl RawStore {
    pub(crate) fn new(path: &Path, kind: StoreKind) -> std::io::Result<Self> {
        let (layout, ending, format) = match kind {
            StoreKind::H5ad => (RawLayout::File, ".h5ad", "h5ad"),
            StoreKind::ZarrZip(_) => (RawLayout::Zip, ".zarr.zip", "zarr"),
            StoreKind::ZarrFolder(_) => (RawLayout::Folder, ".zarr", "zarr"),
        };
        let (size, folder, generated) = match kind {
            StoreKind::ZarrFolder(version) => {
                let store = DirStore::open(path)?;
                let generated = consolidated_if_absent(&store, version)?;
                (None, Some(store), generated)
            }
            _ => (Some(std::fs::metadata(path)?.len()), None, None),
        };
        Ok(Self {
            layout,
            kind: format,
            ending,
            size,
            path: path.to_owned(),
            folder,
            generated,
            defaults: Map::new(),
            files: None,
        })
    }

    /// A store of another input format than AnnData, served as it is
    /// (`crate::formats`): `kind` is its registry id and `ending` what the
    /// route appends to the dataset id. A Zarr folder (`zarr` set) gets
    /// consolidated metadata when it lacks it; a folder of files lists
    /// `files` with their sizes.
    pub(crate) fn for_format(
        path: &Path,
        layout: RawLayout,
        kind: &'static str,
        ending: &'static str,
        zarr: Option<ZarrVersion>,
        files: Option<&[String]>,
    ) -> std::io::Result<Self> {
        let (size, folder, generated) = match layout {
            RawLayout::Folder => {
                let store = DirStore::open(path)?;
                let generated = match zarr {
                    Some(version) => consolidated_if_absent(&store, version)?,
                    None => None,
                };
                (None, Some(store), generated)
            }
            RawLayout::File | RawLayout::Zip => (Some(std::fs::metadata(path)?.len()), None, None),
        };
        let files = match files {
            Some(list) => Some(
                list.iter()
                    .map(|f| Ok((f.clone(), std::fs::metadata(path.join(f))?.len())))
                    .collect::<std::io::Result<Vec<_>>>()?,
            ),
            None => None,
        };
        Ok(Self {
            layout,
            kind,
            ending,
            size,
            path: path.to_owned(),
            folder,
            generated,
            defaults: Map::new(),
            files,
        })
    }

    /// For a folder of files, each file (relative, `/`-separated) and its
    /// size at start-up; `None` for a store.
    pub fn files(&self) -> Option<&[(String, u64)]> {
        self.files.as_deref()
    }

    /// The launch choices published in `/_cellucid/datasets`.
    pub fn defaults(&self) -> &Map<String, Value> {
        &self.defaults
    }

    pub(crate) fn set_defaults(&mut self, defaults: Map<String, Value>) {
        self.defaults = defaults;
    }

    /// File, zip or folder.
    pub fn layout(&self) -> RawLayout {
        self.layout
    }

    /// The input-format id (`h5ad`, `zarr`).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The ending appended to the dataset id in the route name
    /// (`.h5ad`, `.zarr.zip`, `.zarr`).
    pub fn ending(&self) -> &'static str {
        self.ending
    }

    /// The byte size, for the file and zip layouts.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// The key answered with generated consolidated metadata, when the
    /// folder has none of its own (`.zmetadata` or `zarr.json`).
    pub fn generated_key(&self) -> Option<&str> {
        self.generated.as_ref().map(|(k, _)| k.as_str())
    }

    /// The whole file (file and zip layouts).
    ///
    /// # Errors
    /// [`SourceError::NotFound`] for a folder, or when the file went away.
    pub fn open_file(&self) -> Result<Arc<dyn SourceFile>, SourceError> {
        let key = RelativeKey::trusted(&format!("store{}", self.ending));
        if self.layout == RawLayout::Folder {
            return Err(SourceError::NotFound { key });
        }
        open_path(&self.path, &key)
    }

    /// One key of a folder store. Keys must be canonical and may name no
    /// dot-file other than Zarr's metadata (docs/PROTOCOL.md, "Path decoding"); symlinks leaving
    /// the store are refused by the `cap-std` directory.
    ///
    /// # Errors
    /// [`SourceError::NotFound`] for anything not servable.
    pub fn open_key(&self, key: &str) -> Result<Arc<dyn SourceFile>, SourceError> {
        let not_found = || SourceError::NotFound {
            key: RelativeKey::trusted("key"),
        };
        let Some(folder) = &self.folder else {
            return Err(not_found());
        };
        if let Some((generated, file)) = &self.generated {
            if key == generated {
                return Ok(Arc::new(file.clone()));
            }
        }
        let key = RelativeKey::parse_allowing(key, &ZARR_DOT_FILES).map_err(|_| not_found())?;
        open_confined(folder.dir(), &key)
    }
}

/// Builds consolidated metadata for a Zarr folder that lacks it, as 0.9.5
/// does: v2 → `.zmetadata`; v3 → the root `zarr.json` with inline
/// `consolidated_metadata`.
fn consolidated_if_absent(
    store: &DirStore,
    version: ZarrVersion,
) -> std::io::Result<Option<(String, MemoryFile)>> {
    let json = |key: &str| -> std::io::Result<Option<Value>> {
        Ok(store
            .get(key)?
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok()))
    };
    let doc = match version {
        ZarrVersion::V2 => {
            if store.get(".zmetadata")?.is_some() {
                return Ok(None);
            }
            let mut metadata = Map::new();
            walk(store, "", &mut |prefix, name| {
                if ZARR_DOT_FILES[..3].contains(&name) {
                    let key = if prefix.is_empty() {
                        name.to_owned()
                    } else {
                        format!("{prefix}/{name}")
                    };
                    if let Some(v) = json(&key)? {
                        metadata.insert(key, v);
                    }
                }
                Ok(())
            })?;
            (
                ".zmetadata",
                serde_json::json!({"zarr_consolidated_format": 1, "metadata": metadata}),
            )
        }
        ZarrVersion::V3 => {
            let Some(Value::Object(mut root)) = json("zarr.json")? else {
                return Ok(None);
            };
            if root.contains_key("consolidated_metadata")
                && !root["consolidated_metadata"].is_null()
            {
                return Ok(None);
            }
            let mut metadata = Map::new();
            walk(store, "", &mut |prefix, name| {
                if name == "zarr.json" && !prefix.is_empty() {
                    if let Some(v) = json(&format!("{prefix}/zarr.json"))? {
                        metadata.insert(prefix.to_owned(), v);
                    }
                }
                Ok(())
            })?;
            root.insert(
                "consolidated_metadata".into(),
                serde_json::json!({"kind": "inline", "must_understand": false, "metadata": metadata}),
            );
            ("zarr.json", Value::Object(root))
        }
    };
    let (key, value) = doc;
    let bytes = Bytes::from(serde_json::to_vec(&value).map_err(std::io::Error::other)?);
    let digest = Sha256::digest(&bytes);
    let hex = hex::encode(&digest[..16]);
    Ok(Some((
        key.to_owned(),
        MemoryFile::new(bytes, FileIdentity::Digest(hex)),
    )))
}

/// Visits every file name under the store (sorted), without descending into
/// array folders (those holding `.zarray`, or a `zarr.json` of an array).
fn walk(
    store: &DirStore,
    prefix: &str,
    visit: &mut dyn FnMut(&str, &str) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let entries = store.list_dir(prefix)?;
    for entry in entries.iter().filter(|e| !e.is_dir) {
        visit(prefix, &entry.name)?;
    }
    for entry in entries.iter().filter(|e| e.is_dir) {
        let child = if prefix.is_empty() {
            entry.name.clone()
        } else {
            format!("{prefix}/{}", entry.name)
        };
        let is_array = store.get(&format!("{child}/.zarray"))?.is_some()
            || store
                .get(&format!("{child}/zarr.json"))?
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .is_some_and(|v| v.get("node_type").and_then(Value::as_str) == Some("array"));
        if is_array {
            // Report the array's own metadata, but not its chunks.
            for name in [".zarray", ".zattrs", "zarr.json"] {
                if store.get(&format!("{child}/{name}"))?.is_some() {
                    visit(&child, name)?;
                }
            }
            continue;
        }
        walk(store, &child, visit)?;
    }
    Ok(())
}
