//! Classifying a path as 0.9.5 does (`classify_anndata_path`): a file by its
//! name ending, then by its first bytes (which win), then by its HDF5 or
//! Zarr root's `encoding-type`; a folder by its Zarr root, else by marker
//! files (docs/FORMATS.md, "Inputs and how they are recognised").

use std::fs;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use super::registry::{
    self, Container, NameLayout, FOLDER_MARKERS, FOLDER_MARKER_PREFIXES, HDF5_SIGNATURE,
    SNIFF_BYTES, ZIP_SIGNATURES,
};
use crate::anndata::{self, Backend};
use crate::detect::InputKind;
use crate::error::OpenError;

/// Files listed below a folder of files at most: a folder that holds more is
/// no dataset (a home folder passed by mistake), and listing it must end.
const MAX_FOLDER_FILES: usize = 100_000;
/// Offsets beyond 0.9.5's where an HDF5 signature is also accepted (a 4 KiB
/// user block), so such an `.h5ad` keeps opening as it did before.
const EXTRA_HDF5_OFFSET: u64 = 4096;

/// What a path was classified as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    /// The input kind.
    pub kind: InputKind,
    /// The ending the byte route appends to the dataset id (`.loom`,
    /// `.rds.gz`, `.zarr`); empty for a folder of files.
    pub ending: &'static str,
    /// For a folder of files (MatrixMarket, Cell Ranger `outs/`): every
    /// regular file below it, relative, `/`-separated, sorted, dot-entries
    /// skipped.
    pub files: Option<Vec<String>>,
}

/// Classifies `path`. Export folders are recognised first (they are this
/// server's own format); everything else follows 0.9.5's registry.
///
/// # Errors
/// [`OpenError::Unreadable`] when the path cannot be read,
/// [`OpenError::Refused`] for a format Cellucid never opens (h5Seurat),
/// [`OpenError::NotADataset`] when it is none of the known inputs.
pub fn classify(path: &Path) -> Result<Classified, OpenError> {
    let unreadable = |source| OpenError::Unreadable {
        path: path.to_owned(),
        source,
    };
    let meta = fs::metadata(path).map_err(unreadable)?;
    if meta.is_dir() {
        return classify_folder(path);
    }
    if !meta.is_file() {
        return Err(not_a_dataset(path));
    }
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    let mut file = fs::File::open(path).map_err(unreadable)?;
    file.by_ref()
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(unreadable)?;
    let sniffed = sniff(&head).or_else(|| sniff_extra(&mut file));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let named = registry::format_of_name(&name, &[NameLayout::File, NameLayout::Zip]);
    let (format, layout) = match (named, sniffed) {
        (Some((format, layout, _)), None) => (format, layout),
        (Some((format, layout, _)), Some((s_layout, s_container)))
            if layout == s_layout && format.container == s_container =>
        {
            (format, layout)
        }
        // The content wins over the name; without a name ending, the content
        // alone (a server of this project always took HDF5 and zip by content).
        (_, Some((s_layout, s_container))) => (
            registry::format_of_container(s_container, s_layout),
            s_layout,
        ),
        (None, None) => return Err(not_a_dataset(path)),
    };
    if layout == NameLayout::Zip {
        let mudata =
            root_encoding_of(path, anndata::Container::ZarrZip).as_deref() == Some("mudata");
        let kind = if mudata {
            InputKind::MudataZarrZip
        } else {
            InputKind::ZarrZip
        };
        return Ok(Classified {
            kind,
            ending: ".zarr.zip",
            files: None,
        });
    }
    match format.container {
        Container::Hdf5 => {
            if sniffed.is_none() {
                // Named as HDF5 but not HDF5: nothing this server can read.
                return Err(not_a_dataset(path));
            }
            let encoding = root_encoding_of(path, anndata::Container::Hdf5);
            let kind_format = match encoding.as_deref() {
                Some("anndata") => registry::FORMATS[0].id,
                Some("mudata") => "h5mu",
                _ => format.id,
            };
            let kind_format = registry::format(kind_format).unwrap_or(format);
            if let Some(refusal) = kind_format.refusal {
                return Err(OpenError::Refused {
                    path: path.to_owned(),
                    reason: refusal,
                });
            }
            let ending = registry::name_ending(&name, kind_format, NameLayout::File)
                .or_else(|| kind_format.file.first().copied())
                .unwrap_or(".h5ad");
            let kind = match kind_format.id {
                "loom" => InputKind::Loom,
                "tenx-h5" => InputKind::TenxH5,
                "h5mu" => InputKind::H5mu,
                _ => InputKind::H5ad,
            };
            Ok(Classified {
                kind,
                ending,
                files: None,
            })
        }
        Container::Rds => {
            let ending = registry::name_ending(&name, format, NameLayout::File).unwrap_or(".rds");
            let kind = if format.id == "rda" {
                InputKind::Rda
            } else {
                InputKind::Rds
            };
            Ok(Classified {
                kind,
                ending,
                files: None,
            })
        }
        Container::Zarr | Container::Text => Err(not_a_dataset(path)),
    }
}

fn not_a_dataset(path: &Path) -> OpenError {
    OpenError::NotADataset {
        path: path.to_owned(),
    }
}

/// The layout and container the first bytes carry the signature of.
fn sniff(head: &[u8]) -> Option<(NameLayout, Container)> {
    let (magic, offsets) = HDF5_SIGNATURE;
    for &offset in offsets {
        let at = usize::try_from(offset).ok()?;
        if head.get(at..at + magic.len()) == Some(magic) {
            return Some((NameLayout::File, Container::Hdf5));
        }
    }
    ZIP_SIGNATURES
        .iter()
        .any(|zip| head.starts_with(zip))
        .then_some((NameLayout::Zip, Container::Zarr))
}

/// An HDF5 signature after a 4 KiB user block.
fn sniff_extra(file: &mut fs::File) -> Option<(NameLayout, Container)> {
    use std::io::{Seek, SeekFrom};
    let (magic, _) = HDF5_SIGNATURE;
    let mut buf = [0u8; 8];
    file.seek(SeekFrom::Start(EXTRA_HDF5_OFFSET)).ok()?;
    file.read_exact(&mut buf).ok()?;
    (buf[..] == *magic).then_some((NameLayout::File, Container::Hdf5))
}

/// The root group's `encoding-type`, lower case (mudata 0.4 writes `MuData`);
/// `None` when the store cannot be read here (the browser says why).
fn root_encoding_of(path: &Path, container: anndata::Container) -> Option<String> {
    let backend = anndata::open_backend(path, container).ok()?;
    root_encoding(backend.as_ref())
}

/// `encoding-type` of the root of an opened backend, lower case.
pub(crate) fn root_encoding(backend: &dyn Backend) -> Option<String> {
    let attrs = backend.attrs("").ok()?;
    attrs
        .get("encoding-type")
        .and_then(Value::as_str)
        .map(str::to_lowercase)
}

fn classify_folder(path: &Path) -> Result<Classified, OpenError> {
    let has = |name: &str| path.join(name).is_file();
    if has("dataset_identity.json") {
        return Ok(folder(InputKind::ExportDataset, ""));
    }
    if has("datasets.json") {
        return Ok(folder(InputKind::ExportCatalog, ""));
    }
    if has("zarr.json") || has(".zgroup") {
        let mudata = root_encoding_of(path, anndata::Container::ZarrFolder).as_deref()
            == Some("mudata")
            || folder_root_encoding(path).as_deref() == Some("mudata");
        let kind = if mudata {
            InputKind::MudataZarrFolder
        } else {
            InputKind::ZarrFolder
        };
        return Ok(folder(kind, ".zarr"));
    }
    let files = folder_files(path).map_err(|source| OpenError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let paths: Vec<String> = files.iter().map(|f| format!("{name}/{f}")).collect();
    let kind = match folder_format_of_paths(&paths) {
        Some("tenx-outs") => InputKind::TenxOuts,
        Some("mtx") => InputKind::Mtx,
        _ => return Err(not_a_dataset(path)),
    };
    Ok(Classified {
        kind,
        ending: "",
        files: Some(files),
    })
}

fn folder(kind: InputKind, ending: &'static str) -> Classified {
    Classified {
        kind,
        ending,
        files: None,
    }
}

/// The root `encoding-type` read from the metadata files themselves, for a
/// store the Zarr reader refuses (0.9.5 reads only these two documents).
fn folder_root_encoding(path: &Path) -> Option<String> {
    for key in ["zarr.json", ".zattrs"] {
        let Ok(bytes) = fs::read(path.join(key)) else {
            continue;
        };
        let doc: Value = serde_json::from_slice(&bytes).ok()?;
        let attrs = if key == "zarr.json" {
            doc.get("attributes")?
        } else {
            &doc
        };
        return attrs
            .get("encoding-type")
            .and_then(Value::as_str)
            .map(str::to_lowercase);
    }
    None
}

/// Every regular file below `root` (symlinked files included, symlinked
/// folders not entered), relative and sorted; dot-entries skipped (0.9.5's
/// `_folder_files`).
pub(crate) fn folder_files(root: &Path) -> std::io::Result<Vec<String>> {
    let mut found = Vec::new();
    let mut pending = vec![(root.to_owned(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                pending.push((entry.path(), rel));
            } else if entry.path().is_file() {
                found.push(rel);
                if found.len() > MAX_FOLDER_FILES {
                    return Err(std::io::Error::other(format!(
                        "it holds more than {MAX_FOLDER_FILES} files"
                    )));
                }
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The format of a folder from the paths of its files (each starting with
/// the folder's own name), as 0.9.5's `folder_format_of_paths`: a path
/// component named as a folder format names it; else the first format, in
/// registry order, with a marker file anywhere; else, where allowed, a
/// marker under a shared prefix in one folder.
pub(crate) fn folder_format_of_paths(paths: &[String]) -> Option<&'static str> {
    let split: Vec<Vec<&str>> = paths.iter().map(|p| p.split('/').collect()).collect();
    for parts in &split {
        for part in &parts[..parts.len().saturating_sub(1)] {
            if let Some((format, _, _)) = registry::format_of_name(part, &[NameLayout::Folder]) {
                return Some(format.id);
            }
        }
    }
    let leaves: Vec<&str> = split.iter().filter_map(|p| p.last().copied()).collect();
    let mut by_folder: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
    for parts in &split {
        if let Some((leaf, dirs)) = parts.split_last() {
            by_folder.entry(dirs.join("/")).or_default().push(leaf);
        }
    }
    for format in &registry::FORMATS {
        let Some((_, markers)) = FOLDER_MARKERS.iter().find(|(id, _)| *id == format.id) else {
            continue;
        };
        if markers.iter().any(|m| leaves.contains(m)) {
            return Some(format.id);
        }
        let separators = FOLDER_MARKER_PREFIXES
            .iter()
            .find(|(id, _)| *id == format.id)
            .map(|(_, s)| *s);
        if let Some(separators) = separators {
            if by_folder
                .values()
                .any(|names| has_prefixed_marker(names, markers, separators))
            {
                return Some(format.id);
            }
        }
    }
    None
}

/// Whether some name is `<prefix><marker>` where the prefix ends in a
/// separator, and another name in the same folder starts with the prefix's
/// first part up to and including its first separator.
fn has_prefixed_marker(names: &[&str], markers: &[&str], separators: &str) -> bool {
    names.iter().any(|name| {
        markers.iter().any(|marker| {
            if name.len() <= marker.len() || !name.ends_with(marker) {
                return false;
            }
            let prefix = &name[..name.len() - marker.len()];
            if !prefix
                .chars()
                .last()
                .is_some_and(|c| separators.contains(c))
            {
                return false;
            }
            let cut = prefix
                .char_indices()
                .find(|(_, c)| separators.contains(*c))
                .map_or(prefix.len(), |(i, c)| i + c.len_utf8());
            let first = &prefix[..cut];
            names
                .iter()
                .any(|other| other != name && other.starts_with(first))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn folder_markers_and_geo_prefixes_follow_the_registry() {
        assert_eq!(
            folder_format_of_paths(&paths(&["d/matrix.mtx.gz", "d/barcodes.tsv.gz"])),
            Some("mtx")
        );
        assert_eq!(
            folder_format_of_paths(&paths(&["d/GSM1_matrix.mtx.gz", "d/GSM1_barcodes.tsv.gz"])),
            Some("mtx")
        );
        // A prefixed marker alone, with nothing sharing its prefix, is not one.
        assert_eq!(
            folder_format_of_paths(&paths(&["d/GSM1_matrix.mtx.gz", "d/other.tsv"])),
            None
        );
        // The prefix must end in a separator.
        assert_eq!(
            folder_format_of_paths(&paths(&["d/xmatrix.mtx", "d/xbarcodes"])),
            None
        );
        // Registry order: a Cell Ranger outs/ wins over its MatrixMarket subfolder.
        assert_eq!(
            folder_format_of_paths(&paths(&[
                "outs/filtered_feature_bc_matrix.h5",
                "outs/filtered_feature_bc_matrix/matrix.mtx.gz"
            ])),
            Some("tenx-outs")
        );
        assert_eq!(
            folder_format_of_paths(&paths(&["d/atlas.zarr/x", "d/matrix.mtx"])),
            Some("zarr")
        );
    }

    #[test]
    fn files_are_named_then_sniffed() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            fs::write(&p, bytes).unwrap();
            p
        };
        let rds = write("obj.RDS.gz", b"\x1f\x8b\x08\0");
        let c = classify(&rds).unwrap();
        assert_eq!((c.kind, c.ending), (InputKind::Rds, ".rds.gz"));
        let rda = write("obj.RData", b"RDX3\n");
        let c = classify(&rda).unwrap();
        assert_eq!((c.kind, c.ending), (InputKind::Rda, ".rdata"));
        assert!(matches!(
            classify(&write("notes.txt", b"hello")),
            Err(OpenError::NotADataset { .. })
        ));
        // A user block of 512 bytes before the HDF5 signature.
        let mut blocked = vec![0u8; 512];
        blocked.extend_from_slice(HDF5_SIGNATURE.0);
        blocked.extend_from_slice(&[0u8; 64]);
        let c = classify(&write("weird.zip", &blocked)).unwrap();
        assert_eq!((c.kind, c.ending), (InputKind::H5ad, ".h5ad"));
        let c = classify(&write("cells.loom", &blocked)).unwrap();
        assert_eq!((c.kind, c.ending), (InputKind::Loom, ".loom"));
        let c = classify(&write("m.H5", &blocked)).unwrap();
        assert_eq!((c.kind, c.ending), (InputKind::TenxH5, ".h5"));
        assert!(matches!(
            classify(&write("s.h5seurat", &blocked)),
            Err(OpenError::Refused { .. })
        ));
        // An R name over zip bytes: the content wins.
        let c = classify(&write("x.rds", b"PK\x05\x06\0\0\0\0")).unwrap();
        assert_eq!((c.kind, c.ending), (InputKind::ZarrZip, ".zarr.zip"));
    }
}
