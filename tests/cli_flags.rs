//! The flags of the Python `cellucid serve` 0.9.5: accepted, validated as
//! 0.9.5 does, and passed on to byte viewers in the `defaults` of
//! `/_cellucid/datasets` exactly as 0.9.5 writes them (compared with a
//! capture of 0.9.5 kept in testdata/captures/anndata-server-0.9.5/).

use serde_json::Value;

use crate::support::*;

fn tiny() -> String {
    fixture("anndata/tiny.h5ad").to_str().unwrap().to_owned()
}

/// The `defaults` of the one dataset a server lists.
fn defaults_of(server: &Server) -> Value {
    let listed = get(&server.url("/_cellucid/datasets")).json();
    listed["datasets"][0]["anndata"]["defaults"].clone()
}

#[test]
fn launch_flags_reach_the_defaults_as_0_9_5_writes_them() {
    let capture: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(
            "captures/anndata-server-0.9.5/tiny_launch_flags/datasets.json",
        ))
        .unwrap(),
    )
    .unwrap();
    let expected = &capture["datasets"][0]["anndata"]["defaults"];
    let tiny = tiny();
    let server = Server::start(&[
        "--no-web-ui",
        "--index-cache-dir",
        TEST_CACHE,
        &tiny,
        "--dataset-name",
        "t",
        "--dataset-id",
        "t",
        "--vector-field-default",
        "velocity",
        "--centroid-min-points",
        "5",
        "--no-normalize-embeddings",
        "--latent-key",
        "X_pca",
    ]);
    let defaults = defaults_of(&server);
    assert_eq!(&defaults, expected);
    // Same keys in the same order.
    assert_eq!(defaults.to_string(), expected.to_string());
}

#[test]
fn normalize_embeddings_the_last_of_the_pair_wins() {
    let tiny = tiny();
    for (flags, want) in [
        (&["--normalize-embeddings"][..], Some(true)),
        (&["--no-normalize-embeddings"][..], Some(false)),
        (
            &["--no-normalize-embeddings", "--normalize-embeddings"][..],
            Some(true),
        ),
        (
            &["--normalize-embeddings", "--no-normalize-embeddings"][..],
            Some(false),
        ),
        (&[][..], None),
    ] {
        let mut args = vec![
            "--no-web-ui",
            "--index-cache-dir",
            TEST_CACHE,
            tiny.as_str(),
        ];
        args.extend_from_slice(flags);
        let server = Server::start(&args);
        assert_eq!(
            defaults_of(&server)["normalizeEmbeddings"].as_bool(),
            want,
            "{flags:?}"
        );
    }
}

/// Runs `serve --no-browser --port 0 tiny.h5ad FLAGS` to its end.
fn serve_tiny(flags: &[&str]) -> std::process::Output {
    let tiny = tiny();
    let mut args = vec![
        "serve",
        "--no-browser",
        "--no-web-ui",
        "--port",
        "0",
        tiny.as_str(),
    ];
    args.extend_from_slice(flags);
    run(&args)
}

#[test]
fn centroid_min_points_takes_a_positive_integer_like_0_9_5() {
    for bad in ["0", "-3", "abc", "1.5", ""] {
        let out = serve_tiny(&["--centroid-min-points", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr_of(&out));
        assert!(
            stderr_of(&out).contains("expected a positive integer"),
            "{bad:?}: {}",
            stderr_of(&out)
        );
    }
}

#[test]
fn modality_is_a_name_and_an_anndata_has_none() {
    let out = serve_tiny(&["--modality", ""]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    // 0.9.5: "modality names 'rna', and this data has one feature space".
    assert_one_line_error(
        &serve_tiny(&["--modality", "rna"]),
        2,
        "--modality rna: this data has one feature space",
    );
}

#[test]
fn vector_field_default_must_be_declared_and_drawn() {
    assert_one_line_error(
        &serve_tiny(&["--vector-field-default", "drift"]),
        2,
        "vector field \"drift\" is not declared by this store; its vector fields (obsm <field>_<basis> as wide as X_<basis>): velocity",
    );
    // Declared, but not drawn: with only the 3-D UMAP named and X_umap
    // taken as the latent space, X_umap is not shown when the store opens.
    assert_one_line_error(
        &serve_tiny(&[
            "--vector-field-default",
            "velocity",
            "--embedding-3d",
            "X_umap_3d",
            "--latent-key",
            "X_umap",
        ]),
        2,
        "is declared, but the embedding it is drawn over",
    );
}

#[test]
fn the_short_host_flag_and_the_host_variable_choose_the_bind_address() {
    let tiny = tiny();
    let args = [
        "--no-web-ui",
        "--index-cache-dir",
        TEST_CACHE,
        tiny.as_str(),
    ];
    // 127.0.0.0/8 is loopback on Linux: any address in it binds.
    let server = Server::try_start_with_env(&args, &[("CELLUCID_HOST", "127.0.0.2")]).unwrap();
    assert_eq!(server.addr.ip().to_string(), "127.0.0.2");
    let mut with_flag = vec!["-H", "127.0.0.3"];
    with_flag.extend_from_slice(&args);
    let server = Server::try_start_with_env(&with_flag, &[("CELLUCID_HOST", "127.0.0.2")]).unwrap();
    assert_eq!(
        server.addr.ip().to_string(),
        "127.0.0.3",
        "the flag beats the variable"
    );
    assert_eq!(get(&server.url("/_cellucid/health")).status, 200);
}

#[test]
fn the_index_cache_dir_flag_and_its_old_name_keep_the_gene_index_there() {
    let csr = fixture("anndata/pbmc68k_reduced.csr.h5ad");
    for flag in ["--index-cache-dir", "--cache-dir"] {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(&[
            "--no-web-ui",
            flag,
            dir.path().to_str().unwrap(),
            csr.to_str().unwrap(),
        ]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !server
            .stderr()
            .iter()
            .any(|l| l.contains("CSR gene index saved"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{flag}: no index saved: {:?}",
                server.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let saved: Vec<String> = files_under(dir.path())
            .into_iter()
            .filter(|f| f.ends_with(".csrix"))
            .collect();
        assert_eq!(saved.len(), 1, "{flag}: {saved:?}");
    }
    // The old name still works but is no longer advertised.
    let help = run(&["serve", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("--index-cache-dir"));
    assert!(!text.contains("--cache-dir "), "{text}");
}
