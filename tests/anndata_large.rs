//! Gene columns at a realistic size (100k+ cells, generated at test time):
//! sparse columns written per request, every Range, zstd split into frames,
//! and a folder viewer's `Accept-Encoding` in a real browser (see
//! `browser.rs`).

use crate::support::zarr_store::SparseStore;
use crate::support::{get, raw_get, request, Server};

/// 120k cells × 6 genes, one cell in 10 expressed: 480 KB per gene.
pub(crate) fn large_store(dir: &std::path::Path) -> (SparseStore, std::path::PathBuf) {
    let store = SparseStore::seeded(120_000, 6, 10, 20_261_124);
    let path = dir.join("large.zarr");
    store.write_csc(&path);
    (store, path)
}

#[test]
fn large_sparse_genes_are_exact_whole_in_ranges_and_encoded() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = large_store(dir.path());
    let server = Server::start(&[
        "--no-web-ui",
        "--dataset-id",
        "large",
        path.to_str().unwrap(),
    ]);
    let host = format!("Host: {}", server.host());
    for g in 0..store.n_vars {
        let want = store.gene_bytes(g);
        let url = server.url(&format!("/var/{g}.values.f32"));
        // Twice: the second answer is written again from the kept entries.
        for round in 0..2 {
            let plain = get(&url);
            assert_eq!(plain.status, 200);
            assert!(plain.body == want, "gene {g} round {round}: bytes differ");
        }
        for (start, end) in [
            (0, 0),
            (0, 3),
            (1, 6),
            (4 * 65_535 + 2, 4 * 65_537 + 1),
            (want.len() - 5, want.len() - 1),
        ] {
            let part = request("GET", &url, &[("Range", &format!("bytes={start}-{end}"))]);
            assert_eq!(part.status, 206, "gene {g} {start}-{end}");
            assert!(part.body == want[start..=end], "gene {g} {start}-{end}");
        }
        let zs = raw_get(
            server.addr,
            &format!("/var/{g}.values.f32"),
            &[&host, "Accept-Encoding: zstd"],
        );
        assert_eq!(zs.header("content-encoding"), Some("zstd"));
        assert!(
            zs.body.len() < want.len() / 2,
            "compressed: {} bytes",
            zs.body.len()
        );
        assert!(
            zstd::stream::decode_all(&zs.body[..]).unwrap() == want,
            "gene {g}: zstd decodes"
        );
        let first_frame = zstd::zstd_safe::find_frame_compressed_size(&zs.body[..]).unwrap();
        if std::thread::available_parallelism().map_or(1, usize::from) > 1 {
            assert!(
                first_frame < zs.body.len(),
                "a 480 KB body is split across cores"
            );
        }
        let gz = raw_get(
            server.addr,
            &format!("/var/{g}.values.f32"),
            &[&host, "Accept-Encoding: gzip"],
        );
        let mut inflated = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&gz.body[..]),
            &mut inflated,
        )
        .unwrap();
        assert!(inflated == want, "gene {g}: gzip decodes");
    }
}

#[test]
fn a_gene_with_a_row_index_out_of_range_is_a_422_for_that_gene_only() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = large_store(dir.path());
    // Gene 0's first stored entry now points one past the last cell.
    let chunk = path.join("X/indices/0");
    let mut bytes = std::fs::read(&chunk).unwrap();
    bytes[..4].copy_from_slice(&(store.n_obs as i32).to_le_bytes());
    std::fs::write(&chunk, bytes).unwrap();
    let server = Server::start(&[
        "--no-web-ui",
        "--dataset-id",
        "large",
        path.to_str().unwrap(),
    ]);
    let bad = get(&server.url("/var/0.values.f32"));
    assert_eq!(bad.status, 422, "{}", bad.text());
    assert!(bad.text().contains("X/indices"), "{}", bad.text());
    let good = get(&server.url("/var/1.values.f32"));
    assert_eq!(good.status, 200);
    assert!(good.body == store.gene_bytes(1));
}
