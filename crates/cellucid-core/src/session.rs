//! Cellucid session bundles (`.cellucid-session`): container validation.
//!
//! Two container generations exist (docs/PROTOCOL.md,
//! "Session bundles"): v1 (`CELLUCID_SESSION\n`, 0.9.4) and v2 (`CELLUCID_SESSION/2\n`,
//! 0.9.5). Both are a magic, a u32 LE manifest length, a JSON manifest, then
//! one u32 LE length-prefixed payload per manifest chunk, and nothing after.
//!
//! [`validate_bundle`] reads a bundle once, front to back, and decodes every
//! chunk without keeping it: gzip payloads are inflated into a counter bounded
//! by the chunk's declared size *and* an absolute cap, so a small "gzip bomb"
//! costs neither memory nor time beyond what it declares. JSON chunks are
//! parsed (serde_json's depth limit refuses pathological nesting). The data
//! mapping and the per-chunk profiles are not checked here; those checks
//! belong to whoever applies the bundle to a dataset.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use serde::de::{Deserialize, IgnoredAny};
use serde_json::{Map, Value};

/// The v1 magic (0.9.4 viewers).
pub const MAGIC_V1: &[u8] = b"CELLUCID_SESSION\n";
/// The v2 magic (0.9.5 viewers).
pub const MAGIC_V2: &[u8] = b"CELLUCID_SESSION/2\n";
/// The largest manifest read into memory.
const MAX_MANIFEST_BYTES: u64 = 64 * 1024 * 1024;

/// Which container generation a bundle uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BundleVersion {
    /// `CELLUCID_SESSION\n`: written by 0.9.4 viewers.
    V1,
    /// `CELLUCID_SESSION/2\n`: written by 0.9.5 viewers.
    V2,
}

impl BundleVersion {
    /// The format number, 1 or 2.
    pub fn number(self) -> u8 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }

    /// The version whose magic `prefix` starts with, if `prefix` holds enough
    /// bytes to tell (19 suffice).
    pub fn from_magic(prefix: &[u8]) -> Option<Self> {
        if prefix.starts_with(MAGIC_V1) {
            Some(Self::V1)
        } else if prefix.starts_with(MAGIC_V2) {
            Some(Self::V2)
        } else {
            None
        }
    }
}

/// Bounds on what validating one bundle may cost.
#[derive(Debug, Clone, Copy)]
pub struct BundleLimits {
    /// The largest `uncompressedBytes` a chunk may declare (and so the most
    /// bytes any gzip payload is inflated to).
    pub max_inflated_bytes: u64,
}

impl Default for BundleLimits {
    fn default() -> Self {
        Self {
            max_inflated_bytes: 512 * 1024 * 1024,
        }
    }
}

/// One chunk as the manifest declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkInfo {
    /// The chunk id, e.g. `core/state`.
    pub id: String,
    /// `json` or `binary`.
    pub kind: String,
    /// `none` or `gzip`.
    pub codec: String,
    /// `eager` or `lazy`.
    pub priority: String,
    /// Bytes stored in the file.
    pub stored_bytes: u64,
    /// Bytes after decoding.
    pub uncompressed_bytes: u64,
}

/// What a valid bundle holds.
#[derive(Debug, Clone)]
pub struct BundleSummary {
    /// The container generation.
    pub version: BundleVersion,
    /// The manifest, as stored.
    pub manifest: Value,
    /// The chunks, in file order.
    pub chunks: Vec<ChunkInfo>,
    /// The size of the whole bundle in bytes.
    pub bytes: u64,
}

/// Why a bundle is not valid, or could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The bytes do not form a valid bundle.
    #[error("{0}")]
    Invalid(String),
    /// Reading the bundle failed.
    #[error("cannot read the session bundle: {0}")]
    Io(#[source] io::Error),
}

fn invalid(message: impl Into<String>) -> BundleError {
    BundleError::Invalid(message.into())
}

/// Validates the bundle file at `path` (see [`validate_bundle`]).
///
/// # Errors
/// [`BundleError::Io`] when the file cannot be read, [`BundleError::Invalid`]
/// when it is not a valid bundle.
pub fn validate_bundle_file(
    path: &Path,
    limits: BundleLimits,
) -> Result<BundleSummary, BundleError> {
    let file = File::open(path).map_err(BundleError::Io)?;
    let len = file.metadata().map_err(BundleError::Io)?.len();
    validate_bundle(BufReader::with_capacity(64 * 1024, file), len, limits)
}

/// Reads a whole bundle of `len` bytes from `reader` and checks it: magic,
/// manifest, every chunk frame and payload, and that nothing follows the last
/// chunk.
///
/// # Errors
/// [`BundleError::Invalid`] naming the first problem found;
/// [`BundleError::Io`] when the reader fails.
pub fn validate_bundle<R: BufRead>(
    mut reader: R,
    len: u64,
    limits: BundleLimits,
) -> Result<BundleSummary, BundleError> {
    let mut consumed: u64 = 0;
    let mut prefix = [0u8; 17];
    read_exact(&mut reader, &mut prefix, "the magic header")?;
    consumed += 17;
    let version = if prefix == MAGIC_V1 {
        BundleVersion::V1
    } else {
        let mut rest = [0u8; 2];
        if prefix[..16] == MAGIC_V2[..16] {
            read_exact(&mut reader, &mut rest, "the magic header")?;
            consumed += 2;
        }
        if prefix[..16] != MAGIC_V2[..16]
            || prefix[16..] != MAGIC_V2[16..17]
            || rest != MAGIC_V2[17..]
        {
            return Err(invalid(
                "not a Cellucid session bundle: it starts with neither CELLUCID_SESSION\\n (format 1) nor CELLUCID_SESSION/2\\n (format 2)",
            ));
        }
        BundleVersion::V2
    };

    let manifest_len = u64::from(read_u32(&mut reader, "the manifest length")?);
    consumed += 4;
    if manifest_len == 0 {
        return Err(invalid("invalid session manifest length: 0"));
    }
    if manifest_len > len.saturating_sub(consumed) {
        return Err(invalid(format!(
            "the manifest declares {manifest_len} bytes, more than the bundle holds"
        )));
    }
    if manifest_len > MAX_MANIFEST_BYTES {
        return Err(invalid(format!(
            "the manifest declares {manifest_len} bytes; at most {MAX_MANIFEST_BYTES} are accepted"
        )));
    }
    let mut manifest_bytes = vec![0u8; manifest_len as usize];
    read_exact(&mut reader, &mut manifest_bytes, "the manifest")?;
    consumed += manifest_len;
    let manifest: Value = serde_json::from_slice(&manifest_bytes)
        .map_err(|err| invalid(format!("invalid session manifest JSON: {err}")))?;
    let chunks = check_manifest(&manifest, version)?;

    for chunk in &chunks {
        let frame = u64::from(read_u32(&mut reader, "a chunk length")?);
        consumed += 4;
        if frame != chunk.stored_bytes {
            return Err(invalid(format!(
                "invalid session chunk '{}': storedBytes declares {}, frame contains {frame}",
                chunk.id, chunk.stored_bytes
            )));
        }
        if frame > len.saturating_sub(consumed) {
            return Err(invalid(format!(
                "session chunk '{}' frame of {frame} bytes exceeds the bundle size",
                chunk.id
            )));
        }
        check_payload(&mut reader, chunk, limits)?;
        consumed += frame;
    }
    let mut trailing = [0u8; 1];
    loop {
        match reader.read(&mut trailing) {
            Ok(0) => break,
            Ok(_) => return Err(invalid("trailing bytes after the final chunk")),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(BundleError::Io(err)),
        }
    }
    Ok(BundleSummary {
        version,
        manifest,
        chunks,
        bytes: consumed,
    })
}

fn read_exact<R: Read>(reader: &mut R, buf: &mut [u8], what: &str) -> Result<(), BundleError> {
    reader.read_exact(buf).map_err(|err| {
        if err.kind() == io::ErrorKind::UnexpectedEof {
            invalid(format!(
                "the session bundle is truncated (it ends inside {what})"
            ))
        } else {
            BundleError::Io(err)
        }
    })
}

fn read_u32<R: Read>(reader: &mut R, what: &str) -> Result<u32, BundleError> {
    let mut buf = [0u8; 4];
    read_exact(reader, &mut buf, what)?;
    Ok(u32::from_le_bytes(buf))
}

/// Decodes one payload of `chunk.stored_bytes` bytes, counting its decoded
/// size without keeping it.
fn check_payload<R: BufRead>(
    reader: &mut R,
    chunk: &ChunkInfo,
    limits: BundleLimits,
) -> Result<(), BundleError> {
    if chunk.uncompressed_bytes > limits.max_inflated_bytes {
        return Err(invalid(format!(
            "session chunk '{}' declares {} decoded bytes; at most {} are accepted",
            chunk.id, chunk.uncompressed_bytes, limits.max_inflated_bytes
        )));
    }
    let mut stored = reader.take(chunk.stored_bytes);
    let decoded = if chunk.codec == "gzip" {
        let mut decoder = flate2::bufread::GzDecoder::new(&mut stored);
        let decoded = drain_payload(&mut decoder, chunk)?;
        drop(decoder);
        if stored.limit() != 0 {
            return Err(invalid(format!(
                "invalid gzip session chunk '{}' (trailing or concatenated stream)",
                chunk.id
            )));
        }
        decoded
    } else {
        drain_payload(&mut stored, chunk)?
    };
    if stored.limit() != 0 {
        return Err(invalid(format!(
            "the session bundle is truncated (it ends inside chunk '{}')",
            chunk.id
        )));
    }
    if decoded != chunk.uncompressed_bytes {
        return Err(invalid(format!(
            "session chunk '{}' uncompressedBytes does not match the decoded payload ({} declared, {decoded} decoded)",
            chunk.id, chunk.uncompressed_bytes
        )));
    }
    Ok(())
}

/// Reads a decoded payload to its end (parsing it when it is JSON) and
/// returns its size; stops with an error one byte past the declared size.
fn drain_payload<R: Read>(payload: &mut R, chunk: &ChunkInfo) -> Result<u64, BundleError> {
    let mut capped = payload.take(chunk.uncompressed_bytes + 1);
    let map_io = |err: io::Error| invalid(format!("invalid session chunk '{}': {err}", chunk.id));
    let mut counted: u64 = 0;
    if chunk.kind == "json" {
        let mut counter = CountingReader {
            inner: &mut capped,
            count: 0,
        };
        let mut de = serde_json::Deserializer::from_reader(&mut counter);
        let parsed = IgnoredAny::deserialize(&mut de).and_then(|_| de.end());
        if let Err(err) = parsed {
            return Err(if counter.count > chunk.uncompressed_bytes {
                invalid(format!(
                    "session chunk '{}' decodes to more than its declared {} bytes",
                    chunk.id, chunk.uncompressed_bytes
                ))
            } else if err.is_io() {
                invalid(format!("invalid session chunk '{}': {err}", chunk.id))
            } else {
                invalid(format!("invalid JSON chunk '{}': {err}", chunk.id))
            });
        }
        counted = counter.count;
    }
    counted += io::copy(&mut capped, &mut io::sink()).map_err(map_io)?;
    if counted > chunk.uncompressed_bytes {
        return Err(invalid(format!(
            "session chunk '{}' decodes to more than its declared {} bytes",
            chunk.id, chunk.uncompressed_bytes
        )));
    }
    Ok(counted)
}

struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

// ---------------------------------------------------------------------------
// Manifest checks (appendix B.5.5 for v1, §9.2 for v2).

fn check_manifest(manifest: &Value, version: BundleVersion) -> Result<Vec<ChunkInfo>, BundleError> {
    let object = as_object(manifest, "the session manifest")?;
    let keys: &[&str] = match version {
        BundleVersion::V1 => &["createdAt", "datasetFingerprint", "chunks"],
        BundleVersion::V2 => &[
            "createdAt",
            "datasetFingerprint",
            "source",
            "requires",
            "chunks",
        ],
    };
    exact_keys(object, keys, "session manifest")?;
    let created = object
        .get("createdAt")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !is_timestamp(created) {
        return Err(invalid(
            "session manifest createdAt must look like 2024-01-31T12:00:00.000Z",
        ));
    }
    check_fingerprint(object.get("datasetFingerprint"), version)?;
    if version == BundleVersion::V2 {
        check_source(object.get("source"))?;
        check_requires(object.get("requires"))?;
    }
    let Some(list) = object.get("chunks").and_then(Value::as_array) else {
        return Err(invalid("session manifest chunks must be a list"));
    };
    let mut chunks: Vec<ChunkInfo> = Vec::with_capacity(list.len());
    let mut seen_lazy = false;
    for entry in list {
        let chunk = check_chunk(entry)?;
        if chunks.iter().any(|c| c.id == chunk.id) {
            return Err(invalid(format!(
                "session chunk id '{}' appears twice",
                chunk.id
            )));
        }
        if chunk.priority == "lazy" {
            seen_lazy = true;
        } else if seen_lazy {
            return Err(invalid(format!(
                "eager session chunk '{}' follows a lazy one",
                chunk.id
            )));
        }
        chunks.push(chunk);
    }
    Ok(chunks)
}

fn as_object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, BundleError> {
    value
        .as_object()
        .ok_or_else(|| invalid(format!("{what} must be a JSON object")))
}

fn exact_keys(object: &Map<String, Value>, keys: &[&str], what: &str) -> Result<(), BundleError> {
    let missing: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| !object.contains_key(*k))
        .collect();
    let unknown: Vec<&str> = object
        .keys()
        .map(String::as_str)
        .filter(|k| !keys.contains(k))
        .collect();
    if missing.is_empty() && unknown.is_empty() {
        return Ok(());
    }
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing {}", missing.join(", ")));
    }
    if !unknown.is_empty() {
        parts.push(format!("unknown {}", unknown.join(", ")));
    }
    Err(invalid(format!(
        "invalid {what} fields ({})",
        parts.join("; ")
    )))
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn is_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            23 => c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

fn is_trimmed_text(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| !s.is_empty() && s.trim() == s && !s.chars().any(char::is_control))
}

fn u32_int(value: Option<&Value>) -> bool {
    value
        .and_then(Value::as_u64)
        .is_some_and(|n| n <= u64::from(u32::MAX))
}

fn check_fingerprint(value: Option<&Value>, version: BundleVersion) -> Result<(), BundleError> {
    let object = as_object(value.unwrap_or(&Value::Null), "datasetFingerprint")?;
    let keys: &[&str] = match version {
        BundleVersion::V1 => &[
            "sourceType",
            "datasetId",
            "cellCount",
            "varCount",
            "cellOrder",
            "dataMapping",
        ],
        BundleVersion::V2 => &[
            "datasetId",
            "name",
            "cellCount",
            "varCount",
            "cellOrder",
            "dataMapping",
        ],
    };
    exact_keys(object, keys, "datasetFingerprint")?;
    for key in ["sourceType", "datasetId", "name"] {
        if let Some(v) = object.get(key) {
            if !v.is_null() && !is_trimmed_text(v) {
                return Err(invalid(format!(
                    "datasetFingerprint.{key} must be null or non-empty text"
                )));
            }
        }
    }
    for key in ["cellCount", "varCount"] {
        if !u32_int(object.get(key)) {
            return Err(invalid(format!(
                "datasetFingerprint.{key} must be an integer from 0 to 4294967295"
            )));
        }
    }
    let order = as_object(
        object.get("cellOrder").unwrap_or(&Value::Null),
        "datasetFingerprint.cellOrder",
    )?;
    exact_keys(order, &["embedding", "dimension", "digest"], "cellOrder")?;
    if !matches!(order.get("dimension").and_then(Value::as_u64), Some(1..=3)) {
        return Err(invalid("cellOrder.dimension must be 1, 2 or 3"));
    }
    let digest_ok = order
        .get("digest")
        .and_then(Value::as_str)
        .is_some_and(|d| {
            d.len() == 16
                && d.bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        });
    if !digest_ok {
        return Err(invalid("cellOrder.digest must be 16 lowercase hex digits"));
    }
    let embedding = as_object(
        order.get("embedding").unwrap_or(&Value::Null),
        "cellOrder.embedding",
    )?;
    exact_keys(embedding, &["key", "columns"], "cellOrder.embedding")?;
    let mapping = as_object(
        object.get("dataMapping").unwrap_or(&Value::Null),
        "datasetFingerprint.dataMapping",
    )?;
    if !mapping.get("kind").is_some_and(is_trimmed_text) {
        return Err(invalid("datasetFingerprint.dataMapping.kind must be text"));
    }
    Ok(())
}

fn check_source(value: Option<&Value>) -> Result<(), BundleError> {
    let value = value.unwrap_or(&Value::Null);
    if value.is_null() {
        return Ok(());
    }
    let object = as_object(value, "source")?;
    let keys: &[&str] = match object.get("kind").and_then(Value::as_str) {
        Some("sample") => &["kind", "dataset"],
        Some("link") => &["kind", "locator", "dataset"],
        Some("remote") => &["kind", "url", "dataset"],
        Some("file") => &["kind", "name", "dataset"],
        _ => return Err(invalid("source.kind must be sample, link, remote or file")),
    };
    exact_keys(object, keys, "source")?;
    if !object.values().all(is_trimmed_text) {
        return Err(invalid(
            "source values must be non-empty text without padding or control characters",
        ));
    }
    if let Some(url) = object.get("url").and_then(Value::as_str) {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid("source.url must be an http(s) URL"));
        }
    }
    Ok(())
}

fn check_requires(value: Option<&Value>) -> Result<(), BundleError> {
    let object = as_object(value.unwrap_or(&Value::Null), "requires")?;
    exact_keys(object, &["obs", "var"], "requires")?;
    for key in ["obs", "var"] {
        let Some(list) = object.get(key).and_then(Value::as_array) else {
            return Err(invalid(format!("requires.{key} must be a list")));
        };
        let mut previous: Option<Vec<u16>> = None;
        for item in list {
            if !is_trimmed_text(item) {
                return Err(invalid(format!("requires.{key} holds only non-empty text")));
            }
            // JavaScript sorts by UTF-16 code units; so must we.
            let units: Vec<u16> = item.as_str().unwrap_or("").encode_utf16().collect();
            if previous.as_ref().is_some_and(|p| *p >= units) {
                return Err(invalid(format!(
                    "requires.{key} must be strictly ascending"
                )));
            }
            previous = Some(units);
        }
    }
    Ok(())
}

fn check_chunk(value: &Value) -> Result<ChunkInfo, BundleError> {
    let object = as_object(value, "a session chunk entry")?;
    exact_keys(
        object,
        &[
            "id",
            "contributorId",
            "priority",
            "kind",
            "codec",
            "label",
            "datasetDependent",
            "storedBytes",
            "uncompressedBytes",
        ],
        "session chunk",
    )?;
    let text = |key: &str| {
        object
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let id = text("id");
    if !object.get("id").is_some_and(is_trimmed_text)
        || !object.get("contributorId").is_some_and(is_trimmed_text)
    {
        return Err(invalid(
            "session chunk id and contributorId must be non-empty text without padding",
        ));
    }
    let priority = text("priority");
    let kind = text("kind");
    let codec = text("codec");
    if !matches!(priority.as_str(), "eager" | "lazy") {
        return Err(invalid(format!(
            "session chunk '{id}': priority must be eager or lazy"
        )));
    }
    if !matches!(kind.as_str(), "json" | "binary") {
        return Err(invalid(format!(
            "session chunk '{id}': kind must be json or binary"
        )));
    }
    if !matches!(codec.as_str(), "none" | "gzip") {
        return Err(invalid(format!(
            "session chunk '{id}': codec must be none or gzip"
        )));
    }
    if text("label").is_empty() {
        return Err(invalid(format!(
            "session chunk '{id}': label must be non-empty text"
        )));
    }
    if !object
        .get("datasetDependent")
        .is_some_and(Value::is_boolean)
    {
        return Err(invalid(format!(
            "session chunk '{id}': datasetDependent must be a boolean"
        )));
    }
    let Some(stored_bytes) = object
        .get("storedBytes")
        .and_then(Value::as_u64)
        .filter(|&n| n <= u64::from(u32::MAX))
    else {
        return Err(invalid(format!(
            "session chunk '{id}': storedBytes must be an integer from 0 to 4294967295"
        )));
    };
    let Some(uncompressed_bytes) = object
        .get("uncompressedBytes")
        .and_then(Value::as_u64)
        .filter(|&n| n < (1u64 << 53))
    else {
        return Err(invalid(format!(
            "session chunk '{id}': uncompressedBytes must be an integer from 0 to 2^53-1"
        )));
    };
    if codec == "none" && stored_bytes != uncompressed_bytes {
        return Err(invalid(format!(
            "session chunk '{id}': storedBytes and uncompressedBytes differ although the codec is none"
        )));
    }
    Ok(ChunkInfo {
        id,
        kind,
        codec,
        priority,
        stored_bytes,
        uncompressed_bytes,
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};

    use serde_json::json;

    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// A v2 bundle with one chunk: `stored` bytes declared as `declared`.
    fn v2(kind: &str, codec: &str, stored: &[u8], declared: u64) -> Vec<u8> {
        let manifest = json!({
            "createdAt": "2025-01-31T12:00:00.000Z",
            "datasetFingerprint": {"datasetId": null, "name": "x", "cellCount": 1, "varCount": 2,
                "cellOrder": {"embedding": {"key": "X_umap", "columns": [0, 1]}, "dimension": 2, "digest": "0123456789abcdef"},
                "dataMapping": {"kind": "anndata"}},
            "source": {"kind": "file", "name": "a.h5ad", "dataset": "a"},
            "requires": {"obs": ["B", "a"], "var": []},
            "chunks": [{"id": "c", "contributorId": "t", "priority": "eager", "kind": kind, "codec": codec,
                        "label": "c", "datasetDependent": true, "storedBytes": stored.len(), "uncompressedBytes": declared}],
        })
        .to_string();
        let mut out = MAGIC_V2.to_vec();
        out.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
        out.extend_from_slice(manifest.as_bytes());
        out.extend_from_slice(&(stored.len() as u32).to_le_bytes());
        out.extend_from_slice(stored);
        out
    }

    fn check(bytes: &[u8], cap: u64) -> Result<BundleSummary, BundleError> {
        validate_bundle(
            Cursor::new(bytes),
            bytes.len() as u64,
            BundleLimits {
                max_inflated_bytes: cap,
            },
        )
    }

    fn message(bytes: &[u8], cap: u64) -> String {
        match check(bytes, cap) {
            Err(BundleError::Invalid(message)) => message,
            other => panic!("expected an invalid bundle, got {other:?}"),
        }
    }

    #[test]
    fn valid_chunks_of_every_codec_and_kind() {
        let json_payload = br#"{"a": [1, 2, 3]}"#;
        for bytes in [
            v2("json", "none", json_payload, json_payload.len() as u64),
            v2(
                "json",
                "gzip",
                &gzip(json_payload),
                json_payload.len() as u64,
            ),
            v2("binary", "gzip", &gzip(&[7; 1000]), 1000),
            v2("binary", "none", b"", 0),
        ] {
            let summary = check(&bytes, 1 << 20).unwrap();
            assert_eq!(summary.version, BundleVersion::V2);
            assert_eq!(summary.bytes, bytes.len() as u64);
            assert_eq!(summary.chunks.len(), 1);
        }
    }

    #[test]
    fn gzip_is_bounded_by_the_declared_size_and_the_cap() {
        let big = gzip(&vec![0; 1 << 20]);
        assert!(
            message(&v2("binary", "gzip", &big, 10), 1 << 30).contains("more than its declared 10")
        );
        assert!(message(&v2("binary", "gzip", &big, 1 << 20), 1000).contains("at most 1000"));
        assert!(message(&v2("binary", "gzip", &gzip(&[1; 10]), 11), 100)
            .contains("11 declared, 10 decoded"));
        let mut two_members = gzip(b"ab");
        two_members.extend(gzip(b"cd"));
        assert!(message(&v2("binary", "gzip", &two_members, 2), 100)
            .contains("trailing or concatenated"));
        let cut = gzip(&[5; 100]);
        assert!(message(&v2("binary", "gzip", &cut[..cut.len() - 4], 100), 1000).contains("'c'"));
    }

    #[test]
    fn container_and_manifest_errors() {
        let good = v2("binary", "none", b"abc", 3);
        assert!(message(&good[..5], 100).contains("truncated"));
        assert!(message(&[good.as_slice(), b"x"].concat(), 100).contains("trailing bytes"));
        let mut bad_frame = good.clone();
        let n = bad_frame.len();
        bad_frame[n - 7] = 4; // the chunk's u32 length
        assert!(message(&bad_frame, 100).contains("storedBytes declares 3, frame contains 4"));
        let mut v1_magic = good;
        v1_magic.splice(0..19, MAGIC_V1.iter().copied());
        assert!(message(&v1_magic, 100).contains("invalid session manifest fields"));
        assert!(message(&v2("json", "none", b"{", 1), 100).contains("invalid JSON chunk"));
        assert!(message(&v2("text", "none", b"", 0), 100).contains("kind must be json or binary"));
        assert!(message(&v2("binary", "none", b"ab", 3), 100).contains("codec is none"));
        let mut zero_manifest = MAGIC_V2.to_vec();
        zero_manifest.extend_from_slice(&[0, 0, 0, 0]);
        assert!(message(&zero_manifest, 100).contains("length: 0"));
        let mut huge_manifest = MAGIC_V2.to_vec();
        huge_manifest.extend_from_slice(&[255, 255, 255, 0, b'{']);
        assert!(message(&huge_manifest, 100).contains("more than the bundle holds"));
    }

    #[test]
    fn requires_lists_sort_by_utf16_units() {
        // "B" < "a" in code units; a list out of that order is refused.
        let good = v2("binary", "none", b"", 0);
        assert!(check(&good, 10).is_ok());
        let at = good.windows(9).position(|w| w == br#"["B","a"]"#).unwrap();
        let mut swapped = good;
        swapped[at..at + 9].copy_from_slice(br#"["a","B"]"#);
        assert!(message(&swapped, 10).contains("strictly ascending"));
    }
}
