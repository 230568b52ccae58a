//! AnnData inputs for folder viewers (0.9.0–0.9.4): the synthesised
//! `compact_v2` / identity-v3 files must equal what the 0.9.4 AnnData server
//! answered (`captures/anndata-server-0.9.4/h5ad/`): manifests parsed-JSON
//! equal (apart from `created_at`), binaries decoded equal.

use std::path::Path;

use crate::support::*;

const CAPTURE: &str = "captures/anndata-server-0.9.4/h5ad";

fn capture_json(rel: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture(&format!("{CAPTURE}/{rel}"))).unwrap()).unwrap()
}

fn without(mut v: serde_json::Value, keys: &[&str]) -> serde_json::Value {
    for k in keys {
        v.as_object_mut().unwrap().remove(*k);
    }
    v
}

/// Decodes little-endian elements of the type the file name implies.
fn decode(key: &str, bytes: &[u8]) -> Vec<f64> {
    let (size, f): (usize, fn(&[u8]) -> f64) = if key.ends_with(".f64.bin") {
        (8, |b| f64::from_le_bytes(b.try_into().unwrap()))
    } else if key.ends_with(".u8") {
        (1, |b| f64::from(b[0]))
    } else if key.contains("edges.src") || key.contains("edges.dst") {
        (2, |b| f64::from(u16::from_le_bytes(b.try_into().unwrap())))
    } else {
        (4, |b| f64::from(f32::from_le_bytes(b.try_into().unwrap())))
    };
    assert_eq!(bytes.len() % size, 0, "{key}");
    bytes.chunks_exact(size).map(f).collect()
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-6 * a.abs().max(b.abs())
}

fn capture_files(dir: &Path, prefix: &str, out: &mut Vec<String>) {
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
                capture_files(&entry.path(), &key, out);
            }
        } else if !name.ends_with(".json") {
            out.push(key);
        }
    }
}

fn assert_matches_094_capture(input: &str, ignore_source: bool) {
    let path = fixture(input);
    let server = serve_anndata(
        &path,
        &[
            "--dataset-id",
            "pbmc68k-reduced",
            "--dataset-name",
            "PBMC 68k reduced (scanpy)",
        ],
    );
    let mut ignored = vec!["created_at"];
    if ignore_source {
        ignored.push("source");
    }
    for manifest in [
        "dataset_identity.json",
        "obs_manifest.json",
        "var_manifest.json",
        "connectivity_manifest.json",
    ] {
        let reply = get(&server.url(&format!("/{manifest}")));
        assert_eq!(reply.status, 200, "{input}: {manifest}");
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(
            without(reply.json(), &ignored),
            without(capture_json(manifest), &ignored),
            "{input}: {manifest}"
        );
    }
    let mut keys = Vec::new();
    capture_files(&fixture(CAPTURE), "", &mut keys);
    assert!(keys.len() >= 20, "capture looks incomplete: {keys:?}");
    for key in keys {
        let want = std::fs::read(fixture(&format!("{CAPTURE}/{key}"))).unwrap();
        let reply = get(&server.url(&format!("/{key}")));
        assert_eq!(reply.status, 200, "{input}: {key}");
        let (got, want) = (decode(&key, &reply.body), decode(&key, &want));
        assert_eq!(got.len(), want.len(), "{input}: {key}");
        let bad = got
            .iter()
            .zip(&want)
            .filter(|(a, b)| !close(**a, **b))
            .count();
        assert_eq!(bad, 0, "{input}: {key}: {bad} values differ");
    }
    // The same files are also served under /<id>/ and the viewer's
    // dataset list points at the root, as 0.9.4 did.
    assert_eq!(
        get(&server.url("/pbmc68k-reduced/obs/0.codes.u8")).status,
        200
    );
    assert_eq!(
        get(&server.url("/_cellucid/datasets")).json()["datasets"][0]["path"],
        "/"
    );
    // Undeclared files are 404, like the 0.9.4 server.
    for key in [
        "obs/0.codes.u16",
        "points_2d.bin",
        "var/765.values.f32",
        "var/01.values.f32",
        "embeddings/1_2d.bin",
    ] {
        assert_eq!(get(&server.url(&format!("/{key}"))).status, 404, "{key}");
    }
}

#[test]
fn legacy_h5ad_synthesises_exactly_the_094_files() {
    assert_matches_094_capture("anndata/pbmc68k_reduced.h5ad", false);
}

#[test]
fn modern_h5ad_and_zarr_v2_v3_copies_synthesise_the_same_files() {
    for input in [
        "anndata/pbmc68k_reduced.modern.h5ad",
        "anndata/pbmc68k_reduced.zarr",
        "anndata/pbmc68k_reduced.v3.zarr",
    ] {
        assert_matches_094_capture(input, true);
    }
}

#[test]
fn tiny_h5ad_and_zarr_synthesise_identical_manifests_with_the_captured_shapes() {
    let args = [
        "--obs-key",
        "cat",
        "--obs-key",
        "ordered_cat",
        "--obs-key",
        "int_cat",
        "--obs-key",
        "f64",
        "--obs-key",
        "i64",
        "--obs-key",
        "u8",
        "--obs-key",
        "flag",
        "--obs-key",
        "str_obj",
        "--obs-key",
        "nullable_bool",
        "--gene-id-column",
        "gene_symbols",
        "--dataset-name",
        "Tiny",
    ];
    let mut docs = Vec::new();
    for input in [
        "anndata/tiny.h5ad",
        "anndata/tiny.zarr",
        "anndata/tiny.v3.zarr",
        "anndata/tiny.gzip.h5ad",
    ] {
        let path = fixture(input);
        let mut all = vec![
            "--no-web-ui",
            "--cache-dir",
            TEST_CACHE,
            path.to_str().unwrap(),
        ];
        all.extend(args);
        let server = Server::start(&all);
        let mut doc = Vec::new();
        for m in [
            "dataset_identity.json",
            "obs_manifest.json",
            "var_manifest.json",
            "connectivity_manifest.json",
        ] {
            doc.push(without(
                get(&server.url(&format!("/{m}"))).json(),
                &["created_at", "source"],
            ));
        }
        docs.push(doc);
    }
    for d in &docs[1..] {
        assert_eq!(d, &docs[0]);
    }
    let cap = |m: &str| {
        let text = std::fs::read(fixture(&format!(
            "captures/anndata-server-0.9.4/tiny_h5ad/{m}"
        )))
        .unwrap();
        serde_json::from_slice::<serde_json::Value>(&text).unwrap()
    };
    // Shapes (the capture's options were not recorded): fields, kinds,
    // categories, codes dtypes, gene names and name sets.
    let (identity, obs, var) = (&docs[0][0], &docs[0][1], &docs[0][2]);
    assert_eq!(
        identity["obs_fields"],
        cap("dataset_identity.json")["obs_fields"]
    );
    assert_eq!(identity["stats"], cap("dataset_identity.json")["stats"]);
    let strip = |fields: &serde_json::Value| -> Vec<serde_json::Value> {
        fields
            .as_array()
            .unwrap()
            .iter()
            .map(|f| serde_json::json!([f[0], f[1], f[2], f[3], f[4]]))
            .collect()
    };
    assert_eq!(
        strip(&obs["_categoricalFields"]),
        strip(&cap("obs_manifest.json")["_categoricalFields"])
    );
    assert_eq!(
        obs["_continuousFields"],
        cap("obs_manifest.json")["_continuousFields"]
    );
    assert_eq!(var, &cap("var_manifest.json"));
    assert_eq!(docs[0][3], cap("connectivity_manifest.json"));
}

#[test]
fn a_column_the_format_cannot_carry_is_a_422_for_that_file_only() {
    let path = fixture("anndata/tiny.zarr");
    let server = serve_anndata(&path, &[]);
    let obs = get(&server.url("/obs_manifest.json")).json();
    let f32_index = obs["_continuousFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f[1] == "f32")
        .map(|f| f[0].as_u64().unwrap())
        .unwrap();
    let reply = get(&server.url(&format!("/obs/{f32_index}.values.f32")));
    assert_eq!(reply.status, 422);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert!(reply.json()["error"].as_str().unwrap().contains("NaN"));
    // Everything else still works.
    assert_eq!(get(&server.url("/var/0.values.f32")).status, 200);
    assert_eq!(get(&server.url("/embeddings/0_3d.bin")).status, 200);
}

#[test]
fn synthesised_binaries_are_gzip_encoded_when_accepted_like_094() {
    let path = fixture("anndata/pbmc68k_reduced.h5ad");
    let server = serve_anndata(&path, &[]);
    let plain = get(&server.url("/embeddings/0_2d.bin"));
    assert_eq!(plain.status, 200);
    assert_eq!(plain.body.len(), 5600);
    assert!(plain.header("content-encoding").is_none());
    assert!(plain
        .headers_named("vary")
        .iter()
        .any(|v| v.contains("Accept-Encoding")));
    // Raw socket: the test client would otherwise inflate transparently.
    let gz = raw_get_method(
        server_addr(&server),
        "GET",
        "/embeddings/0_2d.bin",
        &["Accept-Encoding: gzip, deflate"],
    );
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.body[..3], [0x1f, 0x8b, 0x08]);
    let mut inflated = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&gz.body[..]),
        &mut inflated,
    )
    .unwrap();
    assert_eq!(inflated, plain.body);
    assert_ne!(
        gz.header("etag"),
        plain.header("etag"),
        "the encoded variant has its own tag"
    );
    let etag = gz.header("etag").unwrap().to_owned();
    let again = raw_get_method(
        server_addr(&server),
        "GET",
        "/embeddings/0_2d.bin",
        &["Accept-Encoding: gzip", &format!("If-None-Match: {etag}")],
    );
    assert_eq!(again.status, 304);
    // HEAD: the uncompressed length, no encoding. JSON: never encoded.
    let head = raw_get_method(
        server_addr(&server),
        "HEAD",
        "/obs/1.values.f32",
        &["Accept-Encoding: gzip"],
    );
    assert_eq!(head.header("content-length"), Some("2800"));
    assert!(head.header("content-encoding").is_none());
    let json = raw_get_method(
        server_addr(&server),
        "GET",
        "/obs_manifest.json",
        &["Accept-Encoding: gzip"],
    );
    assert!(json.header("content-encoding").is_none());
}

#[test]
fn zstd_is_preferred_when_offered_and_encoded_bodies_are_reused() {
    let path = fixture("anndata/pbmc68k_reduced.h5ad");
    let server = serve_anndata(&path, &[]);
    let addr = server_addr(&server);
    // What current Chromium sends.
    let browser = "Accept-Encoding: gzip, deflate, br, zstd";
    for key in [
        "/var/3.values.f32",
        "/obs/1.values.f32",
        "/embeddings/0_2d.bin",
    ] {
        let plain = get(&server.url(key));
        assert_eq!(plain.status, 200, "{key}");
        let zs = raw_get_method(addr, "GET", key, &[browser]);
        assert_eq!(zs.status, 200, "{key}");
        assert_eq!(zs.header("content-encoding"), Some("zstd"), "{key}");
        assert_eq!(
            zs.header("content-length"),
            Some(zs.body.len().to_string().as_str())
        );
        let decoded = zstd::stream::decode_all(&zs.body[..]).unwrap();
        assert_eq!(
            decoded, plain.body,
            "{key}: zstd decodes to the plain bytes"
        );
        let gz = raw_get_method(addr, "GET", key, &["Accept-Encoding: gzip"]);
        assert_eq!(gz.header("content-encoding"), Some("gzip"));
        let tags = [plain.header("etag"), zs.header("etag"), gz.header("etag")];
        assert!(
            tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2],
            "{key}: one tag per representation: {tags:?}"
        );
        // Again: the kept body, byte for byte, and its tag revalidates.
        let again = raw_get_method(addr, "GET", key, &[browser]);
        assert_eq!(again.body, zs.body);
        let etag = format!("If-None-Match: {}", zs.header("etag").unwrap());
        let revalidated = raw_get_method(addr, "GET", key, &[browser, &etag]);
        assert_eq!(revalidated.status, 304);
        // zstd refused: gzip; nothing acceptable: plain.
        let refused = raw_get_method(addr, "GET", key, &["Accept-Encoding: zstd;q=0, gzip"]);
        assert_eq!(refused.header("content-encoding"), Some("gzip"));
        let identity = raw_get_method(addr, "GET", key, &["Accept-Encoding: identity"]);
        assert!(identity.header("content-encoding").is_none());
        assert_eq!(identity.body, plain.body);
    }
    // A Range request gets the plain bytes it asked for, never encoded ones.
    let part = raw_get_method(
        addr,
        "GET",
        "/var/3.values.f32",
        &[browser, "Range: bytes=4-11"],
    );
    assert_eq!(part.status, 206);
    assert!(part.header("content-encoding").is_none());
    assert_eq!(part.body, get(&server.url("/var/3.values.f32")).body[4..12]);
}

fn server_addr(server: &Server) -> std::net::SocketAddr {
    server.host().parse().unwrap()
}

fn raw_get_method(addr: std::net::SocketAddr, method: &str, path: &str, lines: &[&str]) -> Reply {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for l in lines {
        req.push_str(l);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    raw(addr, req.as_bytes())
}

#[test]
fn csr_gene_index_is_built_once_in_the_background_and_reused() {
    let cache = tempfile::tempdir().unwrap();
    let csr = fixture("anndata/pbmc68k_reduced.csr.h5ad");
    let csc = fixture("anndata/pbmc68k_reduced.csc.h5ad");
    let reference = serve_anndata(&csc, &[]);
    let want: Vec<Vec<u8>> = [0, 7, 764]
        .iter()
        .map(|g| get(&reference.url(&format!("/var/{g}.values.f32"))).body)
        .collect();
    drop(reference);
    for round in ["built", "reused"] {
        let server = Server::start(&[
            "--no-web-ui",
            csr.to_str().unwrap(),
            "--cache-dir",
            cache.path().to_str().unwrap(),
        ]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        // "saved", not "ready": the index is served once built and saved
        // afterwards, and the server is killed at the end of the round.
        let wanted = if round == "built" {
            "CSR gene index saved"
        } else {
            "CSR gene index reused"
        };
        while !server.stderr().iter().any(|l| l.contains(wanted)) {
            assert!(
                std::time::Instant::now() < deadline,
                "{round}: {:?}",
                server.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let files: Vec<_> = std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        if round == "built" {
            for (i, g) in [0, 7, 764].iter().enumerate() {
                let body = get(&server.url(&format!("/var/{g}.values.f32"))).body;
                assert_eq!(body, want[i], "{round}: gene {g}");
            }
            // Mark the index's last stored value (gene 764): the next start
            // must serve genes from this file, not from a scan of X.
            drop(server);
            let mut bytes = std::fs::read(&files[0]).unwrap();
            let n = bytes.len();
            bytes[n - 4..].copy_from_slice(&12345.0f32.to_le_bytes());
            std::fs::write(&files[0], bytes).unwrap();
        } else {
            let body = get(&server.url("/var/764.values.f32")).body;
            let values: Vec<f32> = body
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            assert!(
                values.contains(&12345.0),
                "gene 764 was not read from the persisted index"
            );
            assert_eq!(get(&server.url("/var/7.values.f32")).body, want[1]);
        }
    }
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn the_094_flags_choose_embeddings_vector_fields_and_expression() {
    let path = fixture("anndata/tiny.zarr");
    let server = serve_anndata(
        &path,
        &[
            "--embedding-2d",
            "X_umap",
            "--embedding-1d",
            "X_pca:3",
            "--vector-fields",
            "--expression",
            "layer:counts_csc",
            "--knn",
            "connectivities",
        ],
    );
    let identity = get(&server.url("/dataset_identity.json")).json();
    let items = &identity["embeddings"]["items"];
    assert_eq!(items["X_pca[3]"]["file"], "embeddings/0_1d.bin");
    assert_eq!(
        items["X_pca[3]"]["source"]["columns"],
        serde_json::json!([3])
    );
    assert_eq!(items["X_umap"]["file"], "embeddings/1_2d.bin");
    assert_eq!(identity["embeddings"]["default_dimension"], 2);
    let vf = &identity["vector_fields"];
    assert_eq!(vf["default_field"], "velocity_umap");
    assert_eq!(
        vf["fields"]["velocity_umap"]["files"]["X_umap"],
        "vectors/0_1.bin"
    );
    let vectors = f32s(&get(&server.url("/vectors/0_1.bin")).body);
    assert_eq!(vectors.len(), 12);
    assert!(vectors.iter().all(|v| v.is_finite()));
    let umap = f32s(&get(&server.url("/embeddings/1_2d.bin")).body);
    assert_eq!(umap.len(), 12);
    let widest = |axis: usize| {
        let v: Vec<f32> = umap.iter().skip(axis).step_by(2).copied().collect();
        v.iter().copied().fold(f32::MIN, f32::max) - v.iter().copied().fold(f32::MAX, f32::min)
    };
    assert!(
        (widest(0).max(widest(1)) - 2.0).abs() < 1e-5,
        "the widest axis spans [-1, 1]"
    );
    // Genes come from the CSC layer (2 × X); TINY X column 2 is [0,0,4,0,0,9].
    assert_eq!(
        f32s(&get(&server.url("/var/2.values.f32")).body),
        [0.0, 0.0, 8.0, 0.0, 0.0, 18.0]
    );
    let datasets = get(&server.url("/_cellucid/datasets")).json();
    let defaults = &datasets["datasets"][0]["anndata"]["defaults"];
    assert_eq!(defaults["expression"], "layers/counts_csc");
    assert_eq!(
        defaults["embedding1d"],
        serde_json::json!({"key": "X_pca", "columns": [3]})
    );
    // A flag naming something absent fails at startup, one line.
    let out = cellucid()
        .args([
            "serve",
            "--no-browser",
            "--port",
            "0",
            "--expression",
            "layer:nope",
        ])
        .arg(&path)
        .output()
        .unwrap();
    // A usage error (issue 11): exit 2, and the line lists what exists.
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("layers/nope") && err.trim_end().lines().count() == 1,
        "{err}"
    );
}
