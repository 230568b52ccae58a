//! Golden tests of [`Plan::build`]: the manifests and files synthesised from
//! the repository's small stores equal what the 0.9.4 AnnData adapter
//! served for them (`testdata/captures/anndata-server-0.9.4/`, the
//! independent oracle; testdata/README.md says how they were captured).

use std::path::Path;

use serde_json::Value;

use super::{Manifest, Plan, SynthKey};
use crate::anndata::column::ColumnFile;
use crate::anndata::options::AnnDataOptions;
use crate::anndata::AnnData;
use crate::file::{FileIdentity, SourceFile};
use crate::testdata;

const PBMC_CAPTURE: &str = "captures/anndata-server-0.9.4/h5ad";

fn plan(store: &str, options: &AnnDataOptions, id: &str, name: &str) -> (AnnData, Plan) {
    let adata = AnnData::open(&testdata::path(store)).unwrap();
    let plan = Plan::build(&adata, options, id, name).unwrap();
    (adata, plan)
}

fn capture(rel: &str) -> Vec<u8> {
    std::fs::read(testdata::path(rel)).unwrap()
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// `bytes` with the `created_at` value (the time the manifest was made)
/// replaced by the one `like` has.
fn with_created_at_of(bytes: &[u8], like: &[u8]) -> Vec<u8> {
    let find = |b: &[u8]| {
        let text = std::str::from_utf8(b).unwrap();
        let start = text.find("\"created_at\": \"").unwrap() + "\"created_at\": \"".len();
        (start, start + text[start..].find('"').unwrap())
    };
    let (s, e) = find(bytes);
    let (ls, le) = find(like);
    [&bytes[..s], &like[ls..le], &bytes[e..]].concat()
}

/// Every non-JSON file of a capture folder, as keys relative to it.
fn captured_payloads(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        if entry.file_type().unwrap().is_dir() {
            if name != "_cellucid" {
                captured_payloads(&entry.path(), &key, out);
            }
        } else if !name.ends_with(".json") {
            out.push(key);
        }
    }
}

#[test]
fn pbmc_manifests_are_the_094_bytes() {
    let (_, plan) = plan(
        "anndata/pbmc68k_reduced.h5ad",
        &AnnDataOptions::default(),
        "pbmc68k-reduced",
        "PBMC 68k reduced (scanpy)",
    );
    for m in [
        Manifest::Identity,
        Manifest::Obs,
        Manifest::Var,
        Manifest::Connectivity,
    ] {
        let want = capture(&format!("{PBMC_CAPTURE}/{}", m.name()));
        let mut got = plan.manifest(m).unwrap().to_vec();
        if m == Manifest::Identity {
            got = with_created_at_of(&got, &want);
        }
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{}",
            m.name()
        );
    }
}

#[test]
fn pbmc_plan_serves_every_captured_file_with_its_bytes() {
    let (adata, plan) = plan(
        "anndata/pbmc68k_reduced.h5ad",
        &AnnDataOptions::default(),
        "pbmc68k-reduced",
        "PBMC 68k reduced (scanpy)",
    );
    let mut keys = Vec::new();
    captured_payloads(&testdata::path(PBMC_CAPTURE), "", &mut keys);
    assert!(keys.len() >= 20, "capture looks incomplete: {keys:?}");
    for text in keys {
        let key = SynthKey::parse(&text).unwrap_or_else(|| panic!("{text} is no synthesised key"));
        assert_eq!(key.to_string(), text);
        let want = capture(&format!("{PBMC_CAPTURE}/{text}"));
        let got = match key {
            SynthKey::Gene(g) => {
                assert!(plan.has_gene(g), "{text}");
                let column = plan
                    .expression()
                    .unwrap()
                    .column_entries(adata.backend(), g)
                    .unwrap();
                plan.check_gene(g, &column).unwrap();
                let file = ColumnFile::new(column, FileIdentity::Digest("g".into()));
                file.read_range(0..file.len()).unwrap().to_vec()
            }
            _ => {
                assert!(plan.has_payload(key), "{text}");
                plan.payload(&adata, key).unwrap().to_vec()
            }
        };
        assert_eq!(got.len(), want.len(), "{text}");
        if text.ends_with(".f32") || text.starts_with("embeddings/") {
            // float32 computed in another order than numpy's: equal to a
            // few ulps.
            let floats = |b: &[u8]| -> Vec<f32> {
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect()
            };
            for (i, (a, b)) in floats(&got).iter().zip(floats(&want)).enumerate() {
                let close = a == &b
                    || (a.is_nan() && b.is_nan())
                    || (a - b).abs() <= 1e-6 * a.abs().max(b.abs());
                assert!(close, "{text}[{i}]: {a} != {b}");
            }
        } else {
            assert!(got == want, "{text}: bytes differ");
        }
    }
    // Files the 0.9.4 server did not declare are not in the plan either.
    let n_genes = json(&plan.manifest(Manifest::Var).unwrap())["fields"]
        .as_array()
        .unwrap()
        .len() as u64;
    assert!(plan.has_gene(n_genes - 1) && !plan.has_gene(n_genes));
    for text in ["obs/0.codes.u16", "embeddings/1_2d.bin", "obs/1.codes.u8"] {
        assert!(!plan.has_payload(SynthKey::parse(text).unwrap()), "{text}");
    }
}

#[test]
fn tiny_manifests_have_the_094_shapes() {
    let options = AnnDataOptions {
        obs_keys: [
            "cat",
            "ordered_cat",
            "int_cat",
            "f64",
            "i64",
            "u8",
            "flag",
            "str_obj",
            "nullable_bool",
        ]
        .map(str::to_owned)
        .to_vec(),
        gene_id_column: Some("gene_symbols".into()),
        ..AnnDataOptions::default()
    };
    let cap = |m: Manifest| {
        capture(&format!(
            "captures/anndata-server-0.9.4/tiny_h5ad/{}",
            m.name()
        ))
    };
    for store in ["anndata/tiny.h5ad", "anndata/tiny.zarr"] {
        let (_, plan) = plan(store, &options, "tiny", "Tiny");
        let got = |m: Manifest| plan.manifest(m).unwrap();
        // Byte for byte where the capture's unrecorded options do not show.
        for m in [Manifest::Var, Manifest::Connectivity] {
            assert_eq!(
                String::from_utf8_lossy(&got(m)),
                String::from_utf8_lossy(&cap(m)),
                "{store}: {}",
                m.name()
            );
        }
        let (identity, want) = (
            json(&got(Manifest::Identity)),
            json(&cap(Manifest::Identity)),
        );
        for field in ["stats", "obs_fields", "version", "id", "name"] {
            assert_eq!(identity[field], want[field], "{store}: {field}");
        }
        let (obs, want) = (json(&got(Manifest::Obs)), json(&cap(Manifest::Obs)));
        assert_eq!(
            obs["_continuousFields"], want["_continuousFields"],
            "{store}"
        );
        // Index, name, categories, codes dtype, missing marker (the
        // centroids depend on the capture's embedding choices).
        let strip = |fields: &Value| -> Vec<Value> {
            fields
                .as_array()
                .unwrap()
                .iter()
                .map(|f| Value::Array(f.as_array().unwrap()[..5].to_vec()))
                .collect()
        };
        assert_eq!(
            strip(&obs["_categoricalFields"]),
            strip(&want["_categoricalFields"]),
            "{store}"
        );
    }
}

#[test]
fn served_files_tell_the_server_how_to_compress_them() {
    use crate::anndata::AnnDataSource;
    use crate::file::Compressibility;
    use crate::{DatasetSource, RelativeKey};

    let source = AnnDataSource::open(
        &testdata::path("anndata/pbmc68k_reduced.h5ad"),
        AnnDataOptions::default(),
    )
    .unwrap();
    let id = source.datasets()[0].id.clone();
    for (key, hint) in [
        ("dataset_identity.json", Compressibility::Never),
        ("obs_manifest.json", Compressibility::Never),
        ("var/0.values.f32", Compressibility::Fastest),
        ("obs/0.codes.u8", Compressibility::Good),
        ("obs/1.values.f32", Compressibility::Good),
        ("embeddings/0_2d.bin", Compressibility::Good),
        ("connectivity/edges.src.bin", Compressibility::Good),
    ] {
        let file = source.open(&id, &RelativeKey::parse(key).unwrap()).unwrap();
        assert_eq!(file.compressibility(), hint, "{key}");
    }
}
