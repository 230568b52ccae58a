//! Routes and file responses: byte equality with the fixtures, documents,
//! Range / ETag / conditional requests, HEAD.

use crate::support::*;

/// Every file listed in an export fixture's SHA256SUMS, fetched through the
/// server at its catalog path, hashes to the recorded digest.
fn assert_catalog_served_byte_for_byte(fixture_dir: &str) {
    let dir = fixture(fixture_dir);
    let server = Server::start(&["--no-web-ui", dir.to_str().unwrap()]);
    let sums = sha256sums(&dir);
    assert!(
        sums.len() > 100,
        "{fixture_dir}: SHA256SUMS looks truncated"
    );
    for (path, want) in &sums {
        let reply = get(&server.url(&format!("/{path}")));
        assert_eq!(reply.status, 200, "{fixture_dir}/{path}");
        assert_eq!(
            &sha256_hex(&reply.body),
            want,
            "{fixture_dir}/{path} differs"
        );
        assert!(
            reply.header("content-encoding").is_none(),
            "{path} must not be content-encoded"
        );
    }
}

#[test]
fn every_file_of_the_094_exports_is_served_byte_for_byte() {
    assert_catalog_served_byte_for_byte("exports-0.9.4");
}

#[test]
fn every_file_of_the_091_exports_is_served_byte_for_byte() {
    assert_catalog_served_byte_for_byte("exports-0.9.1");
}

#[test]
fn every_file_of_the_demo_exports_is_served_byte_for_byte() {
    let dir = demo();
    let server = Server::start(&["--no-web-ui", dir.to_str().unwrap()]);
    let catalog = get(&server.url("/datasets.json")).json();
    for entry in catalog["datasets"].as_array().unwrap() {
        let path = entry["path"].as_str().unwrap();
        let files = files_under(&dir.join(path));
        assert!(files.len() > 10, "{path}");
        for file in files {
            let on_disk = std::fs::read(dir.join(path).join(&file)).unwrap();
            let reply = get(&server.url(&format!("/{path}{file}")));
            assert_eq!(reply.status, 200, "{path}{file}");
            assert!(reply.body == on_disk, "{path}{file} differs");
        }
    }
}

#[test]
fn a_catalog_given_alone_serves_its_own_datasets_json_byte_for_byte() {
    let dir = fixture("exports-0.9.4");
    let server = Server::start(&["--no-web-ui", dir.to_str().unwrap()]);
    let reply = get(&server.url("/datasets.json"));
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        std::fs::read(dir.join("datasets.json")).unwrap()
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let listed = get(&server.url("/_cellucid/datasets")).json();
    let entries: Vec<(String, String)> = listed["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap().to_owned(),
                d["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("pbmc68k-f32", "/pbmc68k-f32/"),
            ("pbmc68k-multi", "/pbmc68k-multi/"),
            ("pbmc68k-q16-gz", "/pbmc68k-q16-gz/"),
            ("pbmc68k-q8-gz", "/pbmc68k-q8-gz/"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    // Four datasets: nothing is served at the root.
    assert_eq!(get(&server.url("/dataset_identity.json")).status, 404);
}

#[test]
fn a_single_dataset_folder_is_served_at_the_root_and_under_its_id() {
    let dir = fixture("exports-0.9.4/pbmc68k-q8-gz");
    let server = Server::start(&["--no-web-ui", dir.to_str().unwrap()]);
    let identity = std::fs::read(dir.join("dataset_identity.json")).unwrap();
    assert_eq!(get(&server.url("/dataset_identity.json")).body, identity);
    assert_eq!(
        get(&server.url("/pbmc68k-q8-gz/dataset_identity.json")).body,
        identity
    );
    let listed = get(&server.url("/_cellucid/datasets")).json();
    assert_eq!(
        listed,
        serde_json::json!({"datasets": [{"id": "pbmc68k-q8-gz", "name": "PBMC 68k reduced (scanpy)", "path": "/"}]})
    );
    let health = get(&server.url("/_cellucid/health")).json();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["type"], "exported");
    assert_eq!(health["format"], "export");
    assert_eq!(health["runtime"], "rust");
    assert_eq!(health["n_cells"], 700);
    assert_eq!(health["n_genes"], 765);
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    let catalog = get(&server.url("/datasets.json")).json();
    assert_eq!(catalog["default"], "pbmc68k-q8-gz");
    assert_eq!(catalog["datasets"][0]["path"], "pbmc68k-q8-gz/");
}

#[test]
fn several_paths_get_a_generated_catalog_in_path_order() {
    let single = fixture("exports-0.9.4/pbmc68k-f32");
    let demo = demo();
    let server = Server::start(&[
        "--no-web-ui",
        single.to_str().unwrap(),
        demo.to_str().unwrap(),
    ]);
    let catalog = get(&server.url("/datasets.json")).json();
    assert_eq!(catalog["version"], 1);
    assert_eq!(catalog["default"], "pbmc68k-f32");
    let ids: Vec<&str> = catalog["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "pbmc68k-f32",
            "synthetic-cell-types-2d",
            "synthetic-development-3d",
            "synthetic-trajectory-1d"
        ]
    );
    for entry in catalog["datasets"].as_array().unwrap() {
        let id = entry["id"].as_str().unwrap();
        assert_eq!(entry["path"], format!("{id}/"));
        for key in ["name", "n_cells", "n_genes"] {
            assert!(!entry[key].is_null(), "{id} lacks {key}");
        }
        // The viewer checks that the catalog id and the identity id agree.
        let identity = get(&server.url(&format!("/{id}/dataset_identity.json"))).json();
        assert_eq!(identity["id"], id);
        assert_eq!(identity["stats"]["n_cells"], entry["n_cells"]);
    }
    let listed = get(&server.url("/_cellucid/datasets")).json();
    assert_eq!(listed["datasets"][1]["path"], "/synthetic-cell-types-2d/");
    let health = get(&server.url("/_cellucid/health")).json();
    assert_eq!(health["type"], "multi");
    assert_eq!(health["datasets"], 4);
    assert!(
        health["format"].is_null() && health["n_cells"].is_null() && health["n_genes"].is_null()
    );
}

#[test]
fn info_reports_the_bound_port_and_protocol_lists_the_http_channel() {
    let server = Server::start(&["--no-web-ui", fixture("exports-0.9.4").to_str().unwrap()]);
    let info = get(&server.url("/_cellucid/info")).json();
    assert_eq!(info["port"], server.addr.port());
    assert_eq!(info["host"], "127.0.0.1");
    assert_eq!(info["runtime"], "rust");
    assert_eq!(info["type"], "multi");
    let protocol = get(&server.url("/_cellucid/protocol")).json();
    assert_eq!(protocol["channel"], "_cellucid/ws");
    assert_eq!(protocol["http"]["events"], "_cellucid/events");
    assert_eq!(
        protocol["http"]["session_bundle"],
        "_cellucid/session_bundle"
    );
    let ws = get(&server.url("/_cellucid/ws"));
    assert_eq!(ws.status, 426);
}

#[test]
fn without_the_viewer_ui_slash_answers_503_and_assets_404() {
    // The cached UI itself is tested in web_ui.rs.
    let dir = demo();
    let server = Server::start(&["--no-web-ui", dir.to_str().unwrap()]);
    for path in ["/", "/index.html", "/?anndata=true"] {
        let reply = get(&server.url(path));
        assert_eq!(reply.status, 503, "{path}");
        assert_eq!(
            reply.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert!(reply.text().contains("viewer UI"), "{}", reply.text());
    }
    assert_eq!(get(&server.url("/assets/index.js")).status, 404);
}

#[test]
fn errors_are_short_plain_text() {
    let server = Server::start(&["--no-web-ui", fixture("exports-0.9.4").to_str().unwrap()]);
    let reply = get(&server.url("/pbmc68k-f32/nope.bin"));
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(reply.text(), "Not found: nope.bin");
    let head = request("HEAD", &server.url("/pbmc68k-f32/nope.bin"), &[]);
    assert_eq!(head.status, 404);
    assert_eq!(
        head.header("content-length"),
        Some(reply.body.len().to_string().as_str())
    );
}

const FILE: &str = "/pbmc68k-f32/obs_manifest.json";

fn file_server() -> (Server, Vec<u8>) {
    let dir = fixture("exports-0.9.4");
    let bytes = std::fs::read(dir.join(&FILE[1..])).unwrap();
    (
        Server::start(&["--no-web-ui", dir.to_str().unwrap()]),
        bytes,
    )
}

#[test]
fn full_get_carries_a_strong_etag_and_no_cache() {
    let (server, bytes) = file_server();
    let reply = get(&server.url(FILE));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, bytes);
    assert_eq!(reply.header("accept-ranges"), Some("bytes"));
    assert_eq!(reply.header("cache-control"), Some("no-cache"));
    assert_eq!(
        reply.header("content-length"),
        Some(bytes.len().to_string().as_str())
    );
    let etag = reply.header("etag").unwrap();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"),
        "{etag}"
    );
    assert_eq!(
        get(&server.url(FILE)).header("etag"),
        Some(etag),
        "ETag is stable"
    );
}

#[test]
fn single_ranges_give_206_with_content_range() {
    let (server, bytes) = file_server();
    let size = bytes.len();
    let cases: &[(&str, usize, usize)] = &[
        ("bytes=0-9", 0, 10),
        ("bytes=10-", 10, size),
        ("bytes=-10", size - 10, size),
        ("bytes=5-999999", 5, size),
        ("bytes=0-0", 0, 1),
        ("bytes=-999999", 0, size),
    ];
    for (range, start, end) in cases {
        let reply = request("GET", &server.url(FILE), &[("Range", range)]);
        assert_eq!(reply.status, 206, "{range}");
        assert_eq!(reply.body, &bytes[*start..*end], "{range}");
        assert_eq!(
            reply.header("content-range"),
            Some(format!("bytes {start}-{}/{size}", end - 1).as_str()),
            "{range}"
        );
        assert_eq!(
            reply.header("content-length"),
            Some((end - start).to_string().as_str())
        );
        let head = request("HEAD", &server.url(FILE), &[("Range", range)]);
        assert_eq!(head.status, 206, "HEAD {range}");
        assert_eq!(head.header("content-range"), reply.header("content-range"));
    }
}

#[test]
fn unsatisfiable_or_malformed_single_ranges_give_416() {
    let (server, bytes) = file_server();
    let size = bytes.len();
    let past_end = format!("bytes={size}-");
    for range in [
        "bytes=5-2",
        "bytes=-",
        "bytes=-0",
        past_end.as_str(),
        "bytes=abc",
        "bytes=1",
    ] {
        let reply = request("GET", &server.url(FILE), &[("Range", range)]);
        assert_eq!(reply.status, 416, "{range}");
        assert_eq!(
            reply.header("content-range"),
            Some(format!("bytes */{size}").as_str()),
            "{range}"
        );
        assert_eq!(reply.text(), "Requested byte range is not satisfiable");
    }
    // Two Range headers: only a raw socket can send them.
    let reply = raw_get(
        server.addr,
        FILE,
        &[
            &format!("Host: {}", server.host()),
            "Range: bytes=0-1",
            "Range: bytes=2-3",
        ],
    );
    assert_eq!(reply.status, 416);
}

#[test]
fn multi_ranges_and_other_units_get_the_whole_file() {
    // The reference answers 416 here; RFC 9110 lets a server ignore them, which
    // keeps clients that ask for several ranges working.
    let (server, bytes) = file_server();
    for range in ["bytes=0-1,4-5", "items=0-1"] {
        let reply = request("GET", &server.url(FILE), &[("Range", range)]);
        assert_eq!(reply.status, 200, "{range}");
        assert_eq!(reply.body, bytes, "{range}");
    }
}

#[test]
fn conditional_requests() {
    let (server, bytes) = file_server();
    let etag = get(&server.url(FILE)).header("etag").unwrap().to_owned();
    let weak = format!("W/{etag}");
    let listed = format!("\"other\", {etag}");
    for value in [etag.as_str(), weak.as_str(), listed.as_str(), "*"] {
        let reply = request("GET", &server.url(FILE), &[("If-None-Match", value)]);
        assert_eq!(reply.status, 304, "If-None-Match: {value}");
        assert!(reply.body.is_empty());
        assert_eq!(reply.header("etag"), Some(etag.as_str()));
    }
    let reply = request("GET", &server.url(FILE), &[("If-None-Match", "\"other\"")]);
    assert_eq!(reply.status, 200);
    // If-Range: a matching strong tag keeps the range, anything else sends it all.
    let reply = request(
        "GET",
        &server.url(FILE),
        &[("If-Range", &etag), ("Range", "bytes=0-3")],
    );
    assert_eq!((reply.status, reply.body.as_slice()), (206, &bytes[..4]));
    for if_range in ["\"stale\"", weak.as_str(), "Wed, 21 Oct 2015 07:28:00 GMT"] {
        let reply = request(
            "GET",
            &server.url(FILE),
            &[("If-Range", if_range), ("Range", "bytes=0-3")],
        );
        assert_eq!(reply.status, 200, "If-Range: {if_range}");
        assert_eq!(reply.body, bytes);
    }
    // A stale If-Range turns even a malformed Range into the full file.
    let reply = request(
        "GET",
        &server.url(FILE),
        &[("If-Range", "\"stale\""), ("Range", "bytes=5-2")],
    );
    assert_eq!(reply.status, 200);
}

#[test]
fn head_sends_the_get_headers_without_a_body() {
    let (server, bytes) = file_server();
    let got = get(&server.url(FILE));
    let head = raw(
        server.addr,
        format!(
            "HEAD {FILE} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            server.host()
        )
        .as_bytes(),
    );
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD sent a body");
    assert_eq!(
        head.header("content-length"),
        Some(bytes.len().to_string().as_str())
    );
    for name in ["etag", "content-type", "accept-ranges", "cache-control"] {
        assert_eq!(head.header(name), got.header(name), "{name}");
    }
}

#[test]
fn gz_files_go_out_as_stored_without_content_encoding() {
    let dir = fixture("exports-0.9.4");
    let server = Server::start(&["--no-web-ui", dir.to_str().unwrap()]);
    let path = "pbmc68k-q8-gz/obs/0.values.u8.gz";
    let path = if dir.join(path).exists() {
        path.to_owned()
    } else {
        files_under(&dir.join("pbmc68k-q8-gz"))
            .into_iter()
            .find(|f| f.ends_with(".gz"))
            .map(|f| format!("pbmc68k-q8-gz/{f}"))
            .unwrap()
    };
    let reply = request(
        "GET",
        &server.url(&format!("/{path}")),
        &[("Accept-Encoding", "gzip")],
    );
    assert_eq!(reply.status, 200);
    assert!(reply.header("content-encoding").is_none());
    assert_eq!(
        reply.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(reply.body, std::fs::read(dir.join(&path)).unwrap());
    assert_eq!(&reply.body[..2], b"\x1f\x8b", "still gzip bytes");
}

/// A writable copy of one fixture dataset.
fn dataset_copy() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(&fixture("exports-0.9.4/pbmc68k-f32"), tmp.path());
    tmp
}

#[test]
fn the_etag_changes_when_the_file_changes() {
    let tmp = dataset_copy();
    let server = Server::start(&["--no-web-ui", tmp.path().to_str().unwrap()]);
    let before = get(&server.url("/obs_manifest.json"));
    let old_etag = before.header("etag").unwrap().to_owned();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(tmp.path().join("obs_manifest.json"), b"{\"changed\": true}").unwrap();
    let after = request(
        "GET",
        &server.url("/obs_manifest.json"),
        &[("If-None-Match", &old_etag)],
    );
    assert_eq!(after.status, 200, "a stale ETag must not give 304");
    assert_eq!(after.body, b"{\"changed\": true}");
    assert_ne!(after.header("etag"), Some(old_etag.as_str()));
}

#[test]
fn large_files_are_served_whole_and_in_ranges() {
    // Large enough to be memory-mapped rather than read.
    let tmp = dataset_copy();
    let big: Vec<u8> = (0..6_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(tmp.path().join("var").join("big.bin"), &big).unwrap();
    let server = Server::start(&["--no-web-ui", tmp.path().to_str().unwrap()]);
    let whole = get(&server.url("/var/big.bin"));
    assert_eq!(whole.status, 200);
    assert!(whole.body == big, "large file differs");
    let tail = request(
        "GET",
        &server.url("/var/big.bin"),
        &[("Range", "bytes=5999000-")],
    );
    assert_eq!(tail.status, 206);
    assert!(tail.body == big[5_999_000..]);
    let mid = request(
        "GET",
        &server.url("/var/big.bin"),
        &[("Range", "bytes=1048576-1114111")],
    );
    assert!(mid.body == big[1_048_576..1_114_112]);
}

#[test]
fn an_empty_file_is_served_and_any_range_on_it_is_416() {
    let tmp = dataset_copy();
    std::fs::write(tmp.path().join("empty.bin"), b"").unwrap();
    let server = Server::start(&["--no-web-ui", tmp.path().to_str().unwrap()]);
    let reply = get(&server.url("/empty.bin"));
    assert_eq!((reply.status, reply.body.len()), (200, 0));
    assert_eq!(reply.header("content-length"), Some("0"));
    let ranged = request("GET", &server.url("/empty.bin"), &[("Range", "bytes=0-")]);
    assert_eq!(ranged.status, 416);
    assert_eq!(ranged.header("content-range"), Some("bytes */0"));
}
