//! AnnData inputs for 0.9.5 byte viewers: `/_cellucid/datasets` entries,
//! the raw-byte route `/_cellucid/anndata/<id><ending>[/<key>]`, generated
//! consolidated metadata, the dot-file rule, and the id rules.

use crate::support::*;

fn capture(rel: &str) -> serde_json::Value {
    let text =
        std::fs::read_to_string(fixture(&format!("captures/anndata-server-0.9.5/{rel}"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn prepared_h5ad_documents_match_the_095_capture_and_bytes_are_exact() {
    let file = fixture("prepared-0.9.5/pbmc68k_reduced.cellucid.h5ad");
    let server = serve_anndata(&file, &[]);
    let datasets = get(&server.url("/_cellucid/datasets")).json();
    let want = capture("prepared_h5ad/_cellucid_datasets.json");
    let entry = &datasets["datasets"][0];
    assert_eq!(entry["id"], want["datasets"][0]["id"]);
    assert_eq!(entry["name"], want["datasets"][0]["name"]);
    assert_eq!(entry["anndata"], want["datasets"][0]["anndata"]);
    assert_eq!(entry["path"], "/");
    let health = get(&server.url("/_cellucid/health")).json();
    assert_eq!(
        (health["type"].as_str(), health["format"].as_str()),
        (Some("anndata"), Some("h5ad"))
    );
    assert_eq!(
        (health["n_cells"].as_u64(), health["n_genes"].as_u64()),
        (Some(700), Some(765))
    );

    let url = server.url("/_cellucid/anndata/pbmc68k-reduced.h5ad");
    let whole = get(&url);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, std::fs::read(&file).unwrap());
    assert_eq!(
        whole.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    let etag = whole.header("etag").unwrap().to_owned();
    let head = request("GET", &url, &[("Range", "bytes=0-511")]);
    assert_eq!(head.status, 206);
    assert_eq!(head.body.len(), 512);
    assert_eq!(head.header("content-range"), Some("bytes 0-511/1285624"));
    assert_eq!(
        request("GET", &url, &[("If-None-Match", &etag)]).status,
        304
    );
    assert_eq!(request("GET", &url, &[("Range", "bytes=5-2")]).status, 416);
    assert_eq!(
        get(&server.url("/_cellucid/anndata/pbmc68k-reduced.h5ad/x")).status,
        404
    );
    assert_eq!(
        get(&server.url("/_cellucid/anndata/other.h5ad")).status,
        404
    );
    assert_eq!(get(&server.url("/_cellucid/anndata/")).status, 404);
}

#[test]
fn zarr_folder_keys_follow_the_095_server_and_the_dot_file_rule() {
    let store = fixture("prepared-0.9.5/pbmc68k_reduced.cellucid.zarr");
    let server = serve_anndata(&store, &[]);
    let datasets = get(&server.url("/_cellucid/datasets")).json();
    let want = capture("prepared_zarr_v2/_cellucid_datasets.json");
    assert_eq!(
        datasets["datasets"][0]["anndata"],
        want["datasets"][0]["anndata"]
    );
    let base = "/_cellucid/anndata/pbmc68k-reduced.zarr";
    for key in [".zmetadata", ".zgroup", "X/.zarray", "X/0.0"] {
        let reply = get(&server.url(&format!("{base}/{key}")));
        assert_eq!(reply.status, 200, "{key}");
        assert_eq!(reply.body, std::fs::read(store.join(key)).unwrap(), "{key}");
    }
    for key in ["zarr.json", "nope/.zarray", "", "X/../.zgroup"] {
        assert_eq!(
            get(&server.url(&format!("{base}/{key}"))).status,
            404,
            "{key:?}"
        );
    }
    assert_eq!(get(&server.url(base)).status, 404);
    let health = get(&server.url("/_cellucid/health")).json();
    assert_eq!(health["format"], "zarr");
}

#[test]
fn consolidated_metadata_is_generated_when_absent_v2_and_v3() {
    let dir = tempfile::tempdir().unwrap();
    let v2 = dir.path().join("plain.zarr");
    copy_tree(&fixture("anndata/tiny.zarr"), &v2);
    std::fs::remove_file(v2.join(".zmetadata")).unwrap();
    std::fs::write(v2.join(".hidden"), "secret").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", v2.join("escape")).unwrap();
    let v3 = dir.path().join("plain3.zarr");
    copy_tree(&fixture("anndata/tiny.v3.zarr"), &v3);
    let mut root: serde_json::Value =
        serde_json::from_slice(&std::fs::read(v3.join("zarr.json")).unwrap()).unwrap();
    root.as_object_mut()
        .unwrap()
        .remove("consolidated_metadata");
    std::fs::write(v3.join("zarr.json"), serde_json::to_vec(&root).unwrap()).unwrap();

    let server = serve_anndata(&v2, &[v3.to_str().unwrap()]);
    let meta = get(&server.url("/_cellucid/anndata/tiny.zarr/.zmetadata"));
    assert_eq!(meta.status, 200);
    let etag = meta.header("etag").unwrap();
    assert_eq!(etag.len(), 34, "sha-256 prefix ETag: {etag}");
    let doc = meta.json();
    assert_eq!(doc["zarr_consolidated_format"], 1);
    assert_eq!(doc["metadata"]["obs/.zattrs"]["_index"], "_index");
    assert_eq!(doc["metadata"]["X/data/.zarray"]["dtype"], "<f4");
    assert!(doc["metadata"].get("X/data/0").is_none());
    assert_eq!(
        get(&server.url("/_cellucid/anndata/tiny.zarr/.hidden")).status,
        404
    );
    assert_eq!(
        get(&server.url("/_cellucid/anndata/tiny.zarr/escape")).status,
        404
    );
    assert_eq!(
        get(&server.url("/_cellucid/anndata/tiny.zarr/.zattrs")).status,
        200
    );

    // The second store has the same uns id: it is renamed, and said so.
    let datasets = get(&server.url("/_cellucid/datasets")).json();
    let ids: Vec<&str> = datasets["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["tiny", "tiny-2"]);
    assert!(
        server.stderr().iter().any(|l| l.contains("tiny-2")),
        "{:?}",
        server.stderr()
    );
    let root = get(&server.url("/_cellucid/anndata/tiny-2.zarr/zarr.json")).json();
    let consolidated = &root["consolidated_metadata"];
    assert_eq!(consolidated["kind"], "inline");
    assert_eq!(consolidated["metadata"]["obs/cat"]["node_type"], "group");
    assert_eq!(
        consolidated["metadata"]["obs/cat/codes"]["node_type"],
        "array"
    );
    let health = get(&server.url("/_cellucid/health")).json();
    assert_eq!(
        (health["type"].as_str(), health["datasets"].as_u64()),
        (Some("multi"), Some(2))
    );
}

#[test]
fn zip_store_and_launch_choices_are_described_like_095() {
    let zip = fixture("prepared-0.9.5/pbmc68k_reduced.cellucid.zarr.zip");
    let server = serve_anndata(&zip, &[]);
    let entry = &get(&server.url("/_cellucid/datasets")).json()["datasets"][0];
    assert_eq!(
        entry["anndata"]["file"],
        serde_json::json!({"url": "_cellucid/anndata/pbmc68k-reduced.zarr.zip", "kind": "zarr", "layout": "zip", "size": 1027863})
    );
    let bytes = get(&server.url("/_cellucid/anndata/pbmc68k-reduced.zarr.zip")).body;
    assert_eq!(bytes, std::fs::read(&zip).unwrap());
    drop(server);

    let modern = fixture("anndata/pbmc68k_reduced.modern.h5ad");
    let server = serve_anndata(
        &modern,
        &[
            "--dataset-id",
            "pbmc68k-reduced",
            "--dataset-name",
            "PBMC 68k reduced (scanpy)",
            "--embedding-2d",
            "X_umap",
            "--embedding-3d",
            "X_pca",
            "--knn",
            "connectivities",
            "--latent-key",
            "X_pca",
            "--obs-key",
            "bulk_labels",
            "--obs-key",
            "louvain",
            "--obs-key",
            "n_counts",
        ],
    );
    let got = get(&server.url("/_cellucid/datasets")).json();
    let want = capture("plain_modern_h5ad/_cellucid_datasets.json");
    assert_eq!(
        got["datasets"][0]["anndata"],
        want["datasets"][0]["anndata"]
    );
    assert_eq!(got["datasets"][0]["name"], want["datasets"][0]["name"]);
}

#[test]
fn anndata_id_flags_need_exactly_one_anndata_input() {
    let a = fixture("anndata/tiny.h5ad");
    let b = fixture("anndata/tiny.zarr");
    let out = cellucid()
        .args(["serve", "--no-browser", "--port", "0", "--dataset-id", "x"])
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--dataset-id"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn broken_anndata_inputs_fail_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("anndata/tiny.h5ad")).unwrap();
    let cut = dir.path().join("cut.h5ad");
    std::fs::write(&cut, &bytes[..4096]).unwrap();
    let not_store = dir.path().join("folder");
    std::fs::create_dir(&not_store).unwrap();
    for (path, code) in [(&cut, 1), (&not_store, 2)] {
        let out = cellucid()
            .args(["serve", "--no-browser", "--port", "0"])
            .arg(path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(
            err.contains(path.file_name().unwrap().to_str().unwrap()),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn inspect_describes_the_store_and_what_would_be_served() {
    let csr = fixture("anndata/pbmc68k_reduced.csr.h5ad");
    let out = cellucid().arg("inspect").arg(&csr).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "cells       700",
        "genes       765 in var",
        "X           csr 700×765",
        "builds a gene index once",
        "X_umap (2 cols",
        "bulk_labels",
        "category",
        "n_counts",
        "continuous",
        "latent space  obsm['X_pca']",
        "graph         obsp/connectivities",
        "/_cellucid/anndata/pbmc68k_reduced.csr.h5ad",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    let legacy = fixture("anndata/pbmc68k_reduced.h5ad");
    let text = String::from_utf8_lossy(
        &cellucid()
            .arg("inspect")
            .arg(&legacy)
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(text.contains("categorical (legacy)"), "{text}");
    assert!(text.contains("uns/neighbors/connectivities"), "{text}");
    // A typo in an option is one line naming the element.
    let out = cellucid()
        .arg("inspect")
        .arg(&csr)
        .args(["--latent-key", "X_nope"])
        .output()
        .unwrap();
    // A usage error (issue 11): exit 2, and the line lists what exists.
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("obsm/X_nope")
            && err.contains("obsm holds: X_pca, X_umap")
            && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn a_store_without_embeddings_still_serves_bytes_and_says_why_folder_files_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("noobsm.zarr");
    copy_tree(&fixture("anndata/tiny.zarr"), &store);
    std::fs::remove_dir_all(store.join("obsm")).unwrap();
    std::fs::remove_file(store.join(".zmetadata")).unwrap();
    let server = serve_anndata(&store, &[]);
    assert_eq!(get(&server.url("/_cellucid/health")).json()["n_cells"], 6);
    assert_eq!(
        get(&server.url("/_cellucid/anndata/tiny.zarr/.zgroup")).status,
        200
    );
    let reply = get(&server.url("/dataset_identity.json"));
    assert_eq!(reply.status, 422);
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("embedding"),
        "{}",
        reply.text()
    );
}
