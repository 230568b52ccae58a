//! What each fuzz target checks, one function per target (docs/FUZZING.md).
//!
//! Shared by the fuzz targets (`fuzz/fuzz_targets/*.rs`) and by the corpus
//! replay test (`crates/cellucid-http/tests/fuzz_corpus_replay.rs`), so CI
//! replays every corpus file through exactly the checks the fuzzer ran. A
//! check that fails panics: libFuzzer saves the input as a crash, the replay
//! test fails.
//!
//! Every function takes arbitrary bytes and must return normally for all of
//! them; beyond "no panic", each asserts the parser's own promise (a
//! canonical form is a fixpoint, a range lies inside the file, a key never
//! leaves its root, a bundle's summary adds up).
// Each fuzz target uses one function; the replay test uses them all.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use cellucid_core::anndata::AnnData;
use cellucid_core::session::{validate_bundle, BundleLimits};
use cellucid_http::fuzz_api::{self, RangeAnswer};
use cellucid_proxy::{build_id_of_index, check_asset_path, Inventory};

/// The most a fuzzed session chunk may declare: small enough that a
/// "decompression bomb" the decoder failed to stop would show up as time
/// and memory, large enough for real chunks.
pub(crate) const SESSION_INFLATE_CAP: u64 = 1 << 20;

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// `Host` / request-line authority: what parses is ASCII, canonical, and
/// re-parses to itself.
pub(crate) fn host(data: &[u8]) {
    let Some(value) = text(data) else { return };
    let Some((host, port)) = fuzz_api::authority(value) else {
        return;
    };
    assert!(value.is_ascii(), "non-ASCII authority {value:?} accepted");
    assert_ne!(port, Some(0), "port 0 accepted in {value:?}");
    assert!(
        !host.bytes().any(|b| b.is_ascii_uppercase()),
        "host {host:?} is not lower-case"
    );
    let rendered = render_authority(&host, port);
    assert_eq!(
        fuzz_api::authority(&rendered),
        Some((host.clone(), port)),
        "{value:?} parsed as {host:?}:{port:?}, whose text {rendered:?} parses differently"
    );
}

/// `host[:port]`, bracketing an IPv6 literal.
pub(crate) fn render_authority(host: &str, port: Option<u16>) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

/// `Origin`: the canonical form is lower-case, has no default port, and is a
/// fixpoint of canonicalisation.
pub(crate) fn origin(data: &[u8]) {
    let Some(value) = text(data) else { return };
    let Some(canonical) = fuzz_api::canonical_origin(value) else {
        return;
    };
    assert!(
        canonical.starts_with("http://") || canonical.starts_with("https://"),
        "{value:?} canonicalised to {canonical:?}"
    );
    assert!(
        !canonical.bytes().any(|b| b.is_ascii_uppercase()),
        "{canonical:?} is not lower-case"
    );
    assert!(
        !canonical.ends_with(":80") || canonical.starts_with("https://"),
        "{canonical:?} keeps http's default port"
    );
    assert!(
        !canonical.ends_with(":443") || canonical.starts_with("http://"),
        "{canonical:?} keeps https's default port"
    );
    assert_eq!(
        fuzz_api::canonical_origin(&canonical).as_deref(),
        Some(canonical.as_str()),
        "the canonical form of {value:?} is not a fixpoint"
    );
}

/// `Range`: the first 8 bytes are the file size (little-endian; the high
/// bit of the first byte picks a small size so small files get exercised),
/// the rest the header value. A 206 always lies inside the file, and the
/// range it selects, written back as `bytes=a-b`, selects itself.
pub(crate) fn range(data: &[u8]) {
    let Some((size, value)) = data.split_first_chunk::<8>() else {
        return;
    };
    let size = u64::from_le_bytes(*size);
    let size = if size & 0x80 != 0 { size % 300 } else { size };
    range_against(value, size);
}

/// The `Range` checks for one value and size.
pub(crate) fn range_against(value: &[u8], size: u64) {
    let Some(answer) = fuzz_api::range(value, size) else {
        return;
    };
    if let RangeAnswer::Partial(bytes) = answer {
        assert!(
            bytes.start < bytes.end && bytes.end <= size,
            "{:?} selected {bytes:?} of a {size}-byte file",
            String::from_utf8_lossy(value)
        );
        let again = format!("bytes={}-{}", bytes.start, bytes.end - 1);
        assert_eq!(
            fuzz_api::range(again.as_bytes(), size),
            Some(RangeAnswer::Partial(bytes.clone())),
            "{again} does not select {bytes:?}"
        );
    }
}

/// Request paths: a key the data route would open never leaves the
/// dataset's root, and decoding is a fixpoint under re-encoding.
pub(crate) fn request_path(data: &[u8]) {
    let Some(raw) = text(data) else { return };
    if let Some(decoded) = fuzz_api::decode_path(raw) {
        assert!(decoded.starts_with('/'), "{raw:?} decoded to {decoded:?}");
        assert!(
            !decoded.contains('\\') && !decoded.chars().any(char::is_control),
            "{raw:?} decoded to {decoded:?}, with a backslash or a control character"
        );
        let encoded = percent_encode_path(&decoded);
        assert_eq!(
            fuzz_api::decode_path(&encoded).as_deref(),
            Some(decoded.as_str()),
            "{decoded:?} re-encoded as {encoded:?} decodes differently"
        );
    }
    if let Some(key) = fuzz_api::file_key(raw) {
        assert_key_confined(&key, raw);
    }
}

/// Percent-encodes everything but unreserved characters and `/`.
pub(crate) fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() * 3);
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A dataset key joined to a root stays under that root on every platform.
pub(crate) fn assert_key_confined(key: &str, raw: &str) {
    assert!(
        !key.is_empty() && key.len() <= cellucid_core::RelativeKey::MAX_LEN,
        "{raw:?} gave the key {key:?}"
    );
    for segment in key.split('/') {
        assert!(
            !matches!(segment, "" | "." | "..") && !segment.starts_with('.'),
            "{raw:?} gave the key {key:?} with the segment {segment:?}"
        );
    }
    assert!(
        !key.contains(['\\', ':', '\0']) && !key.chars().any(char::is_control),
        "{raw:?} gave the key {key:?}"
    );
    let root = Path::new("/srv/dataset");
    let joined = root.join(key);
    assert!(
        joined.starts_with(root)
            && joined
                .strip_prefix(root)
                .is_ok_and(|rest| rest.components().all(|c| matches!(c, Component::Normal(_)))),
        "{raw:?} gave the key {key:?}, which leaves the root as {}",
        joined.display()
    );
}

/// Session bundles: validation ends (no panic, no unbounded inflation), and
/// a bundle it accepts adds up: every byte is accounted for by the magic,
/// the manifest, the frames and the payloads.
pub(crate) fn session_bundle(data: &[u8]) {
    let limits = BundleLimits {
        max_inflated_bytes: SESSION_INFLATE_CAP,
    };
    let Ok(summary) = validate_bundle(Cursor::new(data), data.len() as u64, limits) else {
        return;
    };
    assert_eq!(summary.bytes, data.len() as u64, "summary size");
    let magic = if summary.version.number() == 1 {
        17
    } else {
        19
    };
    let Some(manifest_len) = data
        .get(magic..magic + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_le_bytes)
    else {
        panic!(
            "an accepted bundle of {} bytes has no manifest length",
            data.len()
        );
    };
    let framed: u64 = summary.chunks.iter().map(|c| 4 + c.stored_bytes).sum();
    assert_eq!(
        magic as u64 + 4 + u64::from(manifest_len) + framed,
        data.len() as u64,
        "an accepted bundle's parts do not add up to its size"
    );
    for chunk in &summary.chunks {
        assert!(
            chunk.uncompressed_bytes <= SESSION_INFLATE_CAP,
            "chunk {:?} declares {} bytes, over the cap",
            chunk.id,
            chunk.uncompressed_bytes
        );
    }
}

/// The viewer UI inventory: an accepted inventory obeys its own rules, finds
/// each of its assets, and survives a serialise/parse round trip; the
/// build-id scanner of `index.html` never panics.
pub(crate) fn ui_inventory(data: &[u8]) {
    let _ = build_id_of_index(data);
    let Ok(inventory) = Inventory::parse(data) else {
        return;
    };
    assert!(inventory.validate().is_ok());
    for asset in &inventory.assets {
        assert!(check_asset_path(&asset.path).is_ok(), "{:?}", asset.path);
        assert!(
            asset.path.split('/').all(|s| s != ".." && s != "."),
            "{:?} escapes the build",
            asset.path
        );
        assert_eq!(
            inventory.get(&asset.path).map(|a| &a.path),
            Some(&asset.path)
        );
    }
    let Ok(json) = serde_json::to_vec(&inventory) else {
        panic!("an accepted inventory does not serialise");
    };
    assert_eq!(
        Inventory::parse(&json).ok().as_ref(),
        Some(&inventory),
        "an accepted inventory does not round-trip"
    );
}

/// A scratch folder for the AnnData targets, one per process, on tmpfs when
/// there is one (the targets write a file per input). Named after the
/// process id; folders left by processes that are gone (a fuzzer stopped by
/// a crash or a signal, an earlier test run) are removed first.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        // Liveness is read from /proc: without it, remove nothing.
        let entries = Path::new("/proc/self")
            .exists()
            .then(|| std::fs::read_dir(&base).ok())
            .flatten();
        if let Some(entries) = entries {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let gone = name
                    .strip_prefix("cellucid-fuzz-")
                    .and_then(|pid| pid.parse::<u32>().ok())
                    .is_some_and(|pid| !Path::new("/proc").join(pid.to_string()).exists());
                if gone {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = base.join(format!("cellucid-fuzz-{}", std::process::id()));
        if let Err(err) = std::fs::create_dir_all(&dir) {
            panic!("cannot create {}: {err}", dir.display());
        }
        dir
    })
}

/// Opens `path` as AnnData and walks the metadata it read: it may be
/// refused with an error, never with a panic.
fn open_and_walk(path: &Path) {
    let Ok(adata) = AnnData::open(path) else {
        return;
    };
    let _ = (adata.n_obs(), adata.n_vars(), adata.kind());
    let _ = (adata.obsm().len(), adata.layers().len(), adata.obsp().len());
    let _ = adata.uns_cellucid().len();
}

/// Writes `data` as `name` in the scratch folder, opens it, removes it.
fn open_bytes_as(name: &str, data: &[u8]) {
    let path = scratch().join(name);
    if let Err(err) = std::fs::write(&path, data) {
        panic!("cannot write {}: {err}", path.display());
    }
    open_and_walk(&path);
    let _ = std::fs::remove_file(&path);
}

/// An `.h5ad` (HDF5 superblock, object headers, attributes, dataset
/// layouts): mutated bytes of the fixtures open or are refused.
pub(crate) fn h5ad_open(data: &[u8]) {
    open_bytes_as("fuzz.h5ad", data);
}

/// A `.zarr.zip` (the zip central directory and local headers, then the
/// Zarr metadata inside): mutated archives open or are refused.
pub(crate) fn zarr_zip(data: &[u8]) {
    open_bytes_as("fuzz.zarr.zip", data);
}

/// The two Zarr fixtures, copied once per process into the scratch folder.
fn zarr_fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let testdata = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("testdata/anndata");
        // The harness is compiled into the fuzz crate (fuzz/) and into a test
        // of crates/cellucid-http: find testdata/ from either.
        let testdata = if testdata.is_dir() {
            testdata
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/anndata")
        };
        let dir = scratch().join("zarr");
        for (from, to) in [("tiny.zarr", "v2"), ("tiny.v3.zarr", "v3")] {
            if let Err(err) = copy_tree(&testdata.join(from), &dir.join(to)) {
                panic!("cannot copy the fixture {from}: {err}");
            }
        }
        dir
    })
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The Zarr metadata documents a `zarr_metadata` input may replace.
const ZARR_METADATA_NAMES: [&str; 5] = [".zarray", ".zattrs", ".zgroup", ".zmetadata", "zarr.json"];

/// Zarr metadata (`.zarray`, `.zattrs`, `.zgroup`, `zarr.json`): the input
/// is `v2/<key>` or `v3/<key>`, a newline, then the new bytes of that
/// metadata document in the `tiny.zarr` / `tiny.v3.zarr` fixture. The store
/// is opened with the document replaced (or added), then restored.
pub(crate) fn zarr_metadata(data: &[u8]) {
    let Some(newline) = data.iter().position(|&b| b == b'\n') else {
        return;
    };
    let (Some(target), body) = (text(&data[..newline]), &data[newline + 1..]) else {
        return;
    };
    let Some((store, key)) = target.split_once('/') else {
        return;
    };
    if !matches!(store, "v2" | "v3") {
        return;
    }
    // Only metadata documents, and only keys that stay inside the store.
    let Ok(key) = cellucid_core::RelativeKey::parse_allowing(key, &ZARR_METADATA_NAMES[..4]) else {
        return;
    };
    let mut segments: Vec<&str> = key.segments().collect();
    let Some(name) = segments.pop() else { return };
    if !ZARR_METADATA_NAMES.contains(&name) {
        return;
    }
    let root = zarr_fixtures().join(store);
    let folder = segments.iter().fold(root.clone(), |p, s| p.join(s));
    if !folder.is_dir() {
        return;
    }
    let path = folder.join(name);
    let original = std::fs::read(&path).ok();
    if let Err(err) = std::fs::write(&path, body) {
        panic!("cannot write {}: {err}", path.display());
    }
    open_and_walk(&root);
    let restored = match &original {
        Some(bytes) => std::fs::write(&path, bytes),
        None => std::fs::remove_file(&path),
    };
    if let Err(err) = restored {
        panic!("cannot restore {}: {err}", path.display());
    }
}
