//! Every input kind 0.9.5 hands to the byte viewer beyond AnnData — MuData
//! (`.h5mu`, Zarr), Loom, 10x `.h5` and `outs/`, MatrixMarket folders (incl.
//! GEO names) and R objects — compared with what 0.9.5 said about the same
//! files (`testdata/captures/inputs-server-0.9.5/`, written with the inputs
//! by `testdata/scripts/make_095_inputs.py`): the `/_cellucid/datasets`
//! entry, the health format, and every byte-route request 0.9.5 answered.

use std::path::{Path, PathBuf};

use crate::support::*;

const NAMED: &[&str] = &["--dataset-id", "tiny", "--dataset-name", "Tiny"];

fn capture(case: &str, file: &str) -> serde_json::Value {
    let path = fixture(&format!("captures/inputs-server-0.9.5/{case}/{file}"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// The input and its extra arguments, as the capture script served it.
fn case(name: &str) -> (PathBuf, Vec<&'static str>) {
    let input = |rel: &str| fixture(&format!("inputs-0.9.5/{rel}"));
    match name {
        "h5mu" => (input("tiny.h5mu"), vec![]),
        "h5mu_modality" => (
            input("tiny.h5mu"),
            vec!["--dataset-id", "tiny-prot", "--modality", "prot"],
        ),
        "mudata_zarr" => (input("tiny.mudata.zarr"), NAMED.to_vec()),
        "mudata_zarr_zip" => (input("tiny.mudata.zarr.zip"), NAMED.to_vec()),
        "loom" => (input("tiny.loom"), NAMED.to_vec()),
        "tenx_h5" => (input("tiny_10x.h5"), NAMED.to_vec()),
        "tenx_outs" => (input("outs"), NAMED.to_vec()),
        "mtx" => (input("mtx"), NAMED.to_vec()),
        "mtx_geo" => (input("geo"), NAMED.to_vec()),
        "rds" => (input("tiny.rds"), NAMED.to_vec()),
        "rdata" => (input("tiny.RData"), NAMED.to_vec()),
        "rdata_gz" => (input("tiny.rdata.gz"), NAMED.to_vec()),
        other => panic!("no case {other}"),
    }
}

/// The file a byte-route path names: the input itself (file and zip
/// layouts) or a file below the input folder.
fn served_file(input: &Path, route_name: &str, path: &str) -> Option<PathBuf> {
    let rest = path.strip_prefix("/_cellucid/anndata/")?;
    if rest == route_name {
        return Some(input.to_owned());
    }
    let key = rest.strip_prefix(route_name)?.strip_prefix('/')?;
    (!key.is_empty()).then(|| input.join(key))
}

/// Replays every byte-route request of the capture and compares status,
/// the byte headers and the bytes themselves. `.hidden` is the one
/// deliberate difference: 0.9.5 serves dot-files of a folder, this server
/// does not (docs/PROTOCOL.md, "Path decoding").
fn replay_byte_route(server: &Server, case: &str, input: &Path, route_name: &str) {
    let log = capture(case, "_http_log.json");
    let mut replayed = 0;
    for entry in log.as_array().unwrap() {
        let path = entry["path"].as_str().unwrap();
        if !path.starts_with("/_cellucid/anndata/") {
            continue;
        }
        let method = entry["method"].as_str().unwrap();
        let headers: Vec<(&str, &str)> = entry["request_headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect();
        let reply = request(method, &server.url(path), &headers);
        let want_status = entry["status"].as_u64().unwrap() as u16;
        if path.ends_with("/.hidden") {
            assert_eq!(reply.status, 404, "{case}: {path} is a dot-file");
            continue;
        }
        assert_eq!(
            reply.status, want_status,
            "{case}: {method} {path} {headers:?}"
        );
        replayed += 1;
        let want = &entry["response_headers"];
        if !(200..300).contains(&want_status) && want_status != 416 {
            continue;
        }
        let generated = path.ends_with("/.zmetadata");
        // Error bodies are this server's own (text/plain with a charset).
        let names: &[&str] = if want_status == 416 {
            &["Accept-Ranges", "Content-Range"]
        } else {
            &["Content-Type", "Accept-Ranges", "Content-Range"]
        };
        for &name in names {
            assert_eq!(
                reply.header(name),
                want[name].as_str(),
                "{case}: {method} {path} {name}"
            );
        }
        if generated || want_status == 416 {
            continue;
        }
        assert_eq!(
            reply.header("Content-Length"),
            want["Content-Length"].as_str(),
            "{case}: {method} {path}"
        );
        if method == "GET" {
            let file = served_file(input, route_name, path).unwrap();
            let bytes = std::fs::read(&file).unwrap();
            let start = reply
                .header("Content-Range")
                .and_then(|r| r.strip_prefix("bytes "))
                .and_then(|r| r.split('-').next())
                .map_or(0, |s| s.parse::<usize>().unwrap());
            assert_eq!(
                reply.body,
                bytes[start..start + reply.body.len()],
                "{case}: {path} bytes"
            );
            assert_eq!(reply.body.len() as u64, entry["body_len"].as_u64().unwrap());
        }
    }
    assert!(
        replayed >= 3,
        "{case}: only {replayed} byte requests replayed"
    );
}

/// Serves one case and compares it with its capture; `counts` is what this
/// server reads of the cells and genes (0.9.5 reports `null` for all but
/// MuData).
fn compare(name: &str, counts: Option<(u64, u64)>) {
    let (input, extra) = case(name);
    let server = serve_anndata(&input, &extra);
    let want = capture(name, "_cellucid_datasets.json");
    let got = get(&server.url("/_cellucid/datasets")).json();
    let (want, got) = (&want["datasets"][0], &got["datasets"][0]);
    assert_eq!(got["id"], want["id"], "{name}");
    assert_eq!(got["name"], want["name"], "{name}");
    assert_eq!(got["anndata"], want["anndata"], "{name}");

    let want_health = capture(name, "_cellucid_health.json");
    let health = get(&server.url("/_cellucid/health")).json();
    assert_eq!(health["type"], want_health["type"], "{name}");
    assert_eq!(health["format"], want_health["format"], "{name}");
    let got_counts = health["n_cells"].as_u64().zip(health["n_genes"].as_u64());
    assert_eq!(got_counts, counts, "{name}: {health}");
    // 0.9.5 counts MuData cells at the root (as here); its genes are those
    // of the modality served here, of the default one in 0.9.5.
    if want_health["n_cells"].is_u64() {
        assert_eq!(health["n_cells"], want_health["n_cells"], "{name}");
    }

    let url = want["anndata"]["file"]["url"].as_str().unwrap();
    let route_name = url
        .strip_prefix("_cellucid/anndata/")
        .unwrap()
        .trim_end_matches('/');
    replay_byte_route(&server, name, &input, route_name);
}

#[test]
fn mudata_h5mu_takes_its_identity_from_uns_like_095() {
    compare("h5mu", Some((6, 4)));
}

/// `--modality` is passed on in `defaults` as 0.9.5 does; the folder viewer
/// gets the `prot` modality (3 features). The flag comes with the CLI
/// conventions work: until this binary has it, the test says it skipped.
#[test]
fn mudata_modality_is_a_launch_default_like_095() {
    let help = cellucid().args(["serve", "--help"]).output().unwrap();
    if !String::from_utf8_lossy(&help.stdout).contains("--modality") {
        skipped("this cellucid has no --modality flag yet");
        return;
    }
    compare("h5mu_modality", Some((6, 3)));
}

#[test]
fn mudata_zarr_folder_and_zip_are_served_like_095() {
    compare("mudata_zarr", Some((6, 4)));
    compare("mudata_zarr_zip", Some((6, 4)));
}

#[test]
fn loom_and_10x_files_are_served_like_095() {
    compare("loom", Some((6, 4)));
    compare("tenx_h5", Some((6, 4)));
}

#[test]
fn cell_ranger_outs_and_matrix_market_folders_list_their_files_like_095() {
    compare("tenx_outs", Some((6, 4)));
    compare("mtx", Some((6, 4)));
    compare("mtx_geo", Some((6, 4)));
}

#[test]
fn r_objects_gzipped_or_not_are_served_like_095() {
    compare("rds", None);
    compare("rdata", None);
    compare("rdata_gz", None);
}

/// What only the browser reads (an R object) has no counts to print.
#[test]
fn the_banner_does_not_invent_counts_for_an_r_object() {
    let server = serve_anndata(&fixture("inputs-0.9.5/tiny.rds"), NAMED);
    let lines = server.stderr();
    let line = lines.iter().find(|l| l.starts_with("  tiny ")).unwrap();
    assert!(line.contains("read by the browser"), "{line}");
    assert!(!line.contains("0 cells"), "{line}");
}

#[test]
fn formats_without_an_identity_need_a_name_and_an_id() {
    for input in ["tiny.loom", "outs", "tiny.rds", "tiny.mudata.zarr"] {
        let path = fixture(&format!("inputs-0.9.5/{input}"));
        let out = cellucid()
            .args(["serve", "--no-browser", "--no-web-ui", "--port", "0"])
            .arg(&path)
            .args(["--dataset-id", "only-an-id"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{input}: {stderr}");
        assert!(
            stderr.contains("a dataset name is required") && stderr.contains("--dataset-name"),
            "{input}: {stderr}"
        );
    }
}

#[test]
fn an_h5seurat_file_is_refused_with_the_conversion_route() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("object.h5Seurat");
    std::fs::copy(fixture("inputs-0.9.5/tiny.loom"), &path).unwrap();
    let out = cellucid()
        .args(["serve", "--no-browser", "--no-web-ui", "--port", "0"])
        .arg(&path)
        .args(NAMED)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("SeuratDisk::LoadH5Seurat"), "{stderr}");
}

/// Beyond 0.9.5: a MuData serves the folder-viewer files of the modality it
/// opens on (`rna`, a gene-expression name, though `prot` comes first in
/// `mod-order`), the same files as that modality written alone as an
/// `.h5ad`; the byte route still serves the whole store.
#[test]
fn mudata_serves_the_folder_files_of_its_modality_like_an_h5ad_of_it() {
    let alone = serve_anndata(
        &fixture("inputs-0.9.5/tiny.rna.h5ad"),
        &[
            "--dataset-id",
            "tiny-mudata",
            "--dataset-name",
            "Tiny MuData",
        ],
    );
    for input in ["tiny.h5mu", "tiny.mudata.zarr", "tiny.mudata.zarr.zip"] {
        let mudata = serve_anndata(
            &fixture(&format!("inputs-0.9.5/{input}")),
            &[
                "--dataset-id",
                "tiny-mudata",
                "--dataset-name",
                "Tiny MuData",
            ],
        );
        let identity = |s: &Server| {
            let mut doc = get(&s.url("/dataset_identity.json")).json();
            // When it was made, and what the store is (H5AD file, Zarr store).
            doc.as_object_mut().unwrap().remove("created_at");
            doc.as_object_mut().unwrap().remove("source");
            doc
        };
        let identity_mudata = identity(&mudata);
        assert_eq!(identity_mudata, identity(&alone), "{input}");
        assert_eq!(identity_mudata["stats"]["n_cells"], 6, "{input}");
        let obs = get(&mudata.url("/obs_manifest.json"));
        assert_eq!(obs.status, 200, "{input}");
        assert_eq!(
            obs.body,
            get(&alone.url("/obs_manifest.json")).body,
            "{input}"
        );
        let var = get(&mudata.url("/var_manifest.json"));
        assert_eq!(
            var.body,
            get(&alone.url("/var_manifest.json")).body,
            "{input}"
        );
        let genes = var.json();
        let first_gene = serde_json::to_string(&genes).unwrap();
        assert!(first_gene.contains("Gene0"), "{input}: {first_gene}");
        let embedding = identity_mudata["embeddings"]["items"]["X_umap"]["file"]
            .as_str()
            .unwrap()
            .to_owned();
        for key in [embedding.as_str(), "obs/0.codes.u8", "var/2.values.f32"] {
            let got = get(&mudata.url(&format!("/{key}")));
            let want = get(&alone.url(&format!("/{key}")));
            assert_eq!((got.status, want.status), (200, 200), "{input}: {key}");
            assert_eq!(got.body, want.body, "{input}: {key}");
        }
        let health = get(&mudata.url("/_cellucid/health")).json();
        assert_ne!(health["format"], "h5ad", "{input}");
    }
}

/// Beyond 0.9.5: a Loom file whose `col_attrs` hold an embedding serves the
/// folder-viewer files of its cells: genes are its rows (`matrix`
/// transposed), the embedding its 2-D column attribute. The same counts and
/// UMAP written as an `.h5ad` give the same gene and embedding files.
#[test]
fn loom_with_an_embedding_serves_folder_files_like_the_same_h5ad() {
    let names = ["--dataset-id", "tiny", "--dataset-name", "Tiny"];
    let loom = serve_anndata(&fixture("inputs-0.9.5/tiny.loom"), &names);
    let alone = serve_anndata(&fixture("inputs-0.9.5/tiny.rna.h5ad"), &names);
    let identity = get(&loom.url("/dataset_identity.json")).json();
    assert_eq!(identity["stats"]["n_cells"], 6);
    assert_eq!(identity["stats"]["n_genes"], 4);
    assert_eq!(identity["embeddings"]["defaults"]["2d"], "X_umap");
    for key in [
        "var_manifest.json",
        "var/0.values.f32",
        "var/3.values.f32",
        "embeddings/0_2d.bin",
    ] {
        let got = get(&loom.url(&format!("/{key}")));
        let want = get(&alone.url(&format!("/{key}")));
        assert_eq!((got.status, want.status), (200, 200), "{key}");
        assert_eq!(got.body, want.body, "{key}");
    }
    // The byte route still serves the file as it is.
    let bytes = get(&loom.url("/_cellucid/anndata/tiny.loom")).body;
    assert_eq!(
        bytes,
        std::fs::read(fixture("inputs-0.9.5/tiny.loom")).unwrap()
    );
}

/// A `.loom` this server cannot read as cells (here: a 10x matrix under a
/// Loom name) is still served to the byte viewer, as 0.9.5 serves it, with
/// a warning that the folder viewer gets nothing.
#[test]
fn an_unreadable_loom_is_served_raw_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.loom");
    std::fs::copy(fixture("inputs-0.9.5/tiny_10x.h5"), &path).unwrap();
    let server = serve_anndata(&path, NAMED);
    let entry = &get(&server.url("/_cellucid/datasets")).json()["datasets"][0];
    assert_eq!(entry["anndata"]["file"]["kind"], "loom");
    assert_eq!(get(&server.url("/dataset_identity.json")).status, 404);
    assert_eq!(
        get(&server.url("/_cellucid/anndata/tiny.loom")).body,
        std::fs::read(&path).unwrap()
    );
    let warned = || {
        server
            .stderr()
            .iter()
            .any(|l| l.contains("byte viewer only"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !warned() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(warned(), "{:?}", server.stderr());
}

/// A folder of files lists a symlinked file with its target's size, as
/// 0.9.5 does, but serves it only when the target lies inside the folder;
/// a folder that is none of the known kinds is refused with exit code 2.
#[test]
fn folder_of_files_listing_follows_095_and_serving_stays_inside() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("secret.txt");
    std::fs::write(&outside, "not for the browser\n").unwrap();
    let folder = dir.path().join("mtx");
    copy_tree(&fixture("inputs-0.9.5/mtx"), &folder);
    std::os::unix::fs::symlink(&outside, folder.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink("barcodes.tsv.gz", folder.join("cells.tsv.gz")).unwrap();
    std::fs::create_dir(folder.join(".cache")).unwrap();
    std::fs::write(folder.join(".cache/x"), "hidden").unwrap();
    let server = serve_anndata(&folder, NAMED);
    let file = &get(&server.url("/_cellucid/datasets")).json()["datasets"][0]["anndata"]["file"];
    let listed: Vec<(String, u64)> = file["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["size"].as_u64().unwrap(),
            )
        })
        .collect();
    let names: Vec<&str> = listed.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names,
        [
            "barcodes.tsv.gz",
            "cells.tsv.gz",
            "features.tsv.gz",
            "leak.txt",
            "matrix.mtx.gz"
        ]
    );
    assert_eq!(listed[3].1, 20);
    assert_eq!(
        get(&server.url("/_cellucid/anndata/tiny/leak.txt")).status,
        404
    );
    let inside = get(&server.url("/_cellucid/anndata/tiny/cells.tsv.gz"));
    assert_eq!(inside.status, 200);
    assert_eq!(
        inside.body,
        std::fs::read(folder.join("barcodes.tsv.gz")).unwrap()
    );
    assert_eq!(
        get(&server.url("/_cellucid/anndata/tiny/.cache/x")).status,
        404
    );
    drop(server);

    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    std::fs::write(plain.join("GSM1_matrix.mtx.gz"), "x").unwrap();
    std::fs::write(plain.join("notes.txt"), "x").unwrap();
    let out = cellucid()
        .args(["serve", "--no-browser", "--no-web-ui", "--port", "0"])
        .arg(&plain)
        .args(NAMED)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a dataset"), "{stderr}");
}
