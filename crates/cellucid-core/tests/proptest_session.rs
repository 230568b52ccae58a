//! Property tests of the session-bundle decoder (docs/FUZZING.md): generated
//! bundles are accepted and summarised exactly; any single-byte change or
//! truncation is refused or still adds up, never a panic; and a gzip chunk
//! that inflates far past what it declares costs a bounded amount of memory,
//! measured by a counting allocator.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns may panic
#![allow(unsafe_code)] // the counting allocator below; see its SAFETY comment

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Cursor, Write};

use cellucid_core::session::{
    validate_bundle, BundleError, BundleLimits, BundleSummary, MAGIC_V1, MAGIC_V2,
};
use proptest::prelude::*;
use serde_json::json;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

/// Forwards to the system allocator and counts the bytes live on the
/// allocating thread, and their peak.
struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees are ours. The bookkeeping only touches
// thread-locals with const initialisers and no destructor, which neither
// allocate nor run after the thread's storage is gone (`try_with` ignores a
// destroyed slot).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged (see above).
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grow(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.dealloc(ptr, layout) };
        shrink(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged (see above).
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            shrink(layout.size());
            grow(new_size);
        }
        new
    }
}

fn grow(bytes: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(bytes);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn shrink(bytes: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(bytes)));
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the most bytes it had allocated at
/// once on this thread, beyond what was live when it started.
fn peak_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(start));
    let out = f();
    (out, PEAK.with(Cell::get).saturating_sub(start))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// One chunk to put in a generated bundle.
#[derive(Clone, Debug)]
struct Chunk {
    json: bool,
    gzip: bool,
    lazy: bool,
    payload: Vec<u8>,
}

fn chunk() -> impl Strategy<Value = Chunk> {
    let json_payload = prop::collection::btree_map("[a-z]{1,6}", any::<i32>(), 0..6)
        .prop_map(|map| serde_json::to_vec(&map).unwrap());
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        json_payload,
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(json, gzip, lazy, json_payload, binary)| Chunk {
            json,
            gzip,
            lazy,
            payload: if json { json_payload } else { binary },
        })
}

/// A bundle of format `version` (1 or 2) holding `chunks` (eager first).
fn bundle(version: u8, mut chunks: Vec<Chunk>) -> Vec<u8> {
    chunks.sort_by_key(|c| c.lazy);
    let order = json!({"embedding": {"key": "X_umap", "columns": [0, 1]}, "dimension": 2, "digest": "0123456789abcdef"});
    let mut entries = Vec::new();
    let mut frames = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let stored = if chunk.gzip {
            gzip(&chunk.payload)
        } else {
            chunk.payload.clone()
        };
        entries.push(json!({
            "id": format!("c{i}"), "contributorId": "t",
            "priority": if chunk.lazy { "lazy" } else { "eager" },
            "kind": if chunk.json { "json" } else { "binary" },
            "codec": if chunk.gzip { "gzip" } else { "none" },
            "label": "chunk", "datasetDependent": false,
            "storedBytes": stored.len(), "uncompressedBytes": chunk.payload.len(),
        }));
        frames.push(stored);
    }
    let manifest = if version == 1 {
        json!({
            "createdAt": "2025-01-31T12:00:00.000Z",
            "datasetFingerprint": {"sourceType": "local", "datasetId": "d", "cellCount": 6, "varCount": 4,
                "cellOrder": order, "dataMapping": {"kind": "export"}},
            "chunks": entries,
        })
    } else {
        json!({
            "createdAt": "2025-01-31T12:00:00.000Z",
            "datasetFingerprint": {"datasetId": null, "name": "x", "cellCount": 6, "varCount": 4,
                "cellOrder": order, "dataMapping": {"kind": "anndata"}},
            "source": {"kind": "file", "name": "a.h5ad", "dataset": "a"},
            "requires": {"obs": ["B", "a"], "var": []},
            "chunks": entries,
        })
    };
    let manifest = manifest.to_string();
    let mut out = if version == 1 { MAGIC_V1 } else { MAGIC_V2 }.to_vec();
    out.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
    out.extend_from_slice(manifest.as_bytes());
    for frame in frames {
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    out
}

fn validate(bytes: &[u8], cap: u64) -> Result<BundleSummary, BundleError> {
    validate_bundle(
        Cursor::new(bytes),
        bytes.len() as u64,
        BundleLimits {
            max_inflated_bytes: cap,
        },
    )
}

/// What an accepted bundle's summary promises: every byte accounted for.
fn assert_adds_up(bytes: &[u8], summary: &BundleSummary) {
    assert_eq!(summary.bytes, bytes.len() as u64);
    let magic = if summary.version.number() == 1 {
        MAGIC_V1.len()
    } else {
        MAGIC_V2.len()
    };
    let manifest = u32::from_le_bytes(bytes[magic..magic + 4].try_into().unwrap());
    let frames: u64 = summary.chunks.iter().map(|c| 4 + c.stored_bytes).sum();
    assert_eq!(
        magic as u64 + 4 + u64::from(manifest) + frames,
        bytes.len() as u64
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn generated_bundles_are_accepted_and_summarised(
        version in 1u8..=2,
        chunks in prop::collection::vec(chunk(), 0..5),
    ) {
        let bytes = bundle(version, chunks.clone());
        let summary = validate(&bytes, 1 << 20).unwrap();
        prop_assert_eq!(summary.version.number(), version);
        prop_assert_eq!(summary.chunks.len(), chunks.len());
        assert_adds_up(&bytes, &summary);
        let mut sorted = chunks;
        sorted.sort_by_key(|c| c.lazy);
        for (info, chunk) in summary.chunks.iter().zip(&sorted) {
            prop_assert_eq!(info.uncompressed_bytes, chunk.payload.len() as u64);
        }
    }

    #[test]
    fn a_changed_byte_is_refused_or_still_adds_up(
        version in 1u8..=2,
        chunks in prop::collection::vec(chunk(), 1..4),
        at in any::<prop::sample::Index>(),
        value in any::<u8>(),
    ) {
        let mut bytes = bundle(version, chunks);
        let at = at.index(bytes.len());
        bytes[at] = value;
        if let Ok(summary) = validate(&bytes, 1 << 20) {
            assert_adds_up(&bytes, &summary);
        }
    }

    #[test]
    fn a_truncated_bundle_is_refused(
        version in 1u8..=2,
        chunks in prop::collection::vec(chunk(), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = bundle(version, chunks);
        let cut = cut.index(bytes.len());
        let refused = matches!(validate(&bytes[..cut], 1 << 20), Err(BundleError::Invalid(_)));
        prop_assert!(refused, "a bundle cut at {} of {} bytes was accepted", cut, bytes.len());
    }

    #[test]
    fn any_bytes_after_a_magic_are_refused_or_add_up(
        v2 in any::<bool>(),
        tail in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = if v2 { MAGIC_V2 } else { MAGIC_V1 }.to_vec();
        bytes.extend_from_slice(&tail);
        if let Ok(summary) = validate(&bytes, 1 << 20) {
            assert_adds_up(&bytes, &summary);
        }
    }
}

proptest! {
    // Each case compresses up to 32 MiB: few cases.
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// A gzip chunk inflating to far more than it declares (a "zip bomb"),
    /// or than the cap, is refused while it inflates: the decoder's memory
    /// never grows with the inflated size.
    #[test]
    fn a_gzip_bomb_costs_bounded_memory(
        inflated_mib in 4usize..=32,
        declared in prop_oneof![Just(10u64), 1u64..(1 << 20)],
        json in any::<bool>(),
    ) {
        let payload = vec![b' '; inflated_mib << 20];
        let mut bytes = bundle(2, vec![Chunk { json, gzip: true, lazy: false, payload }]);
        // Declare `declared` decoded bytes instead of the true size.
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let true_size = format!("\"uncompressedBytes\":{}", inflated_mib << 20);
        let at = text.find(&true_size).unwrap();
        let mut edited = bytes[..at].to_vec();
        edited.extend_from_slice(format!("\"uncompressedBytes\":{declared:<width$}", width = true_size.len() - 20).as_bytes());
        edited.extend_from_slice(&bytes[at + true_size.len()..]);
        bytes = edited;
        let (result, peak) = peak_allocation(|| validate(&bytes, 1 << 20));
        prop_assert!(matches!(result, Err(BundleError::Invalid(_))), "a bomb was accepted");
        // The manifest alone is allocated: the counter is live.
        prop_assert!(peak > 0, "the counting allocator saw nothing");
        prop_assert!(
            peak < bytes.len() + (2 << 20),
            "validating a {}-byte bundle inflating to {} MiB allocated {} bytes at once",
            bytes.len(), inflated_mib, peak
        );
    }
}
