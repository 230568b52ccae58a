//! Reader conformance: the same assertions on every storage backend and
//! every AnnData fixture (HDF5 plain and gzip, legacy pre-0.7 HDF5, Zarr v2,
//! Zarr v3, zipped Zarr, cellucid 0.9.5 prepared stores).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns may panic

use cellucid_core::anndata::{
    AnnData, AnnDataError, ColumnEncoding, FrameColumn, Label, MatrixLayout, StoreKind, Values,
};

#[path = "support/testdata.rs"]
mod testdata;

use testdata::path as fixture;

const TINY: [&str; 4] = [
    "anndata/tiny.h5ad",
    "anndata/tiny.gzip.h5ad",
    "anndata/tiny.zarr",
    "anndata/tiny.v3.zarr",
];

const TINY_X: [[f32; 4]; 6] = [
    [0., 1., 0., 2.],
    [3., 0., 0., 0.],
    [0., 0., 4., 0.],
    [5., 6., 0., 0.],
    [0., 0., 0., 7.],
    [8., 0., 9., 0.],
];

fn open(rel: &str) -> AnnData {
    AnnData::open(&fixture(rel)).unwrap_or_else(|err| panic!("{rel}: {err}"))
}

fn codes(col: FrameColumn) -> (Vec<i64>, Vec<Label>, bool) {
    match col {
        FrameColumn::Categorical {
            codes,
            categories,
            ordered,
        } => (codes, categories, ordered),
        other => panic!("expected categorical, got {other:?}"),
    }
}

fn strs(labels: &[&str]) -> Vec<Label> {
    labels.iter().map(|s| Label::Str((*s).to_owned())).collect()
}

#[test]
fn tiny_decodes_identically_on_every_backend() {
    for rel in TINY {
        let ad = open(rel);
        assert_eq!((ad.n_obs(), ad.n_vars()), (6, 4), "{rel}");
        let expected_kind = match rel {
            r if r.ends_with(".v3.zarr") => "Zarr v3 folder",
            r if r.ends_with(".zarr") => "Zarr v2 folder",
            _ => "HDF5 .h5ad",
        };
        assert_eq!(ad.kind().describe(), expected_kind, "{rel}");
        let index = ad.obs().index(ad.backend()).unwrap();
        assert_eq!(
            index,
            (0..6).map(|i| format!("cell{i}")).collect::<Vec<_>>(),
            "{rel}"
        );

        let names: Vec<&str> = ad.obs().columns().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "cat",
                "ordered_cat",
                "int_cat",
                "f32",
                "f64",
                "i64",
                "u8",
                "flag",
                "str_obj",
                "nullable_int",
                "nullable_bool"
            ],
            "{rel}"
        );
        let (c, cats, ordered) = codes(ad.obs_column("cat").unwrap());
        assert_eq!(c, [0, 1, 0, -1, 2, 1], "{rel}");
        assert_eq!(cats, strs(&["a", "b", "c"]));
        assert!(!ordered);
        let (c, cats, ordered) = codes(ad.obs_column("ordered_cat").unwrap());
        assert_eq!(
            (c, cats, ordered),
            (vec![0, 1, 0, 1, 0, 1], strs(&["lo", "hi"]), true),
            "{rel}"
        );
        let (c, cats, _) = codes(ad.obs_column("int_cat").unwrap());
        assert_eq!(
            (c, cats),
            (vec![0, 1, 0, 1, 0, 1], vec![Label::Int(1), Label::Int(2)]),
            "{rel}"
        );
        let (c, cats, _) = codes(ad.obs_column("flag").unwrap());
        assert_eq!(
            (c, cats),
            (
                vec![1, 0, 1, 1, 0, 0],
                vec![Label::Bool(false), Label::Bool(true)]
            ),
            "{rel}"
        );
        let (c, cats, _) = codes(ad.obs_column("str_obj").unwrap());
        assert_eq!(
            (c, cats),
            (vec![0, 1, 2, 0, 1, 2], strs(&["x", "y", "z"])),
            "{rel}"
        );
        let (c, _, _) = codes(ad.obs_column("nullable_bool").unwrap());
        assert_eq!(c, [1, -1, 0, 1, -1, 0], "{rel}");

        match ad.obs_column("f32").unwrap() {
            FrameColumn::Continuous {
                values: Values::F32(v),
                missing: None,
            } => {
                assert_eq!(v.len(), 6);
                assert!(v[2].is_nan(), "{rel}: NaN at row 2");
                assert_eq!(v[5], 5.5);
            }
            other => panic!("{rel}: f32 column is {other:?}"),
        }
        match ad.obs_column("nullable_int").unwrap() {
            FrameColumn::Continuous {
                values,
                missing: Some(mask),
            } => {
                assert_eq!(mask, [false, true, false, false, true, false], "{rel}");
                let v = values.to_f64().unwrap();
                assert_eq!((v[0], v[2], v[5]), (1.0, 3.0, 6.0), "{rel}");
            }
            other => panic!("{rel}: nullable_int is {other:?}"),
        }
        match ad.obs_column("u8").unwrap() {
            FrameColumn::Continuous { values, .. } => {
                assert_eq!(values, Values::Int((0..6).collect()));
            }
            other => panic!("{rel}: u8 is {other:?}"),
        }

        // obsm: dense matrices only (the dataframe entry is not an embedding).
        let obsm: Vec<(&str, u64)> = ad
            .obsm()
            .iter()
            .map(|e| (e.key.as_str(), e.width))
            .collect();
        assert_eq!(
            obsm,
            [
                ("X_pca", 5),
                ("X_umap", 2),
                ("X_umap_3d", 3),
                ("velocity_umap", 2)
            ],
            "{rel}"
        );
        let (umap3d, width) = ad.obsm_matrix("X_umap_3d").unwrap();
        assert_eq!((umap3d.len(), width), (18, 3));

        // X is CSR; layers CSC and dense; raw present; obsp graph.
        let x = ad.x().unwrap();
        assert_eq!(x.layout, MatrixLayout::Csr, "{rel}");
        assert_eq!(x.nnz(ad.backend()).unwrap(), 9);
        for g in 0..4 {
            let col = x.column(ad.backend(), g).unwrap();
            let want: Vec<f32> = TINY_X.iter().map(|r| r[g as usize]).collect();
            assert_eq!(col, want, "{rel}: X column {g}");
        }
        let layers: Vec<(&str, MatrixLayout)> = ad
            .layers()
            .iter()
            .map(|(k, m)| (k.as_str(), m.layout))
            .collect();
        assert_eq!(
            layers,
            [
                ("counts_csc", MatrixLayout::Csc),
                ("dense", MatrixLayout::Dense)
            ],
            "{rel}"
        );
        for (name, m) in ad.layers() {
            let factor = if name == "counts_csc" { 2.0 } else { 1.0 };
            for g in 0..4 {
                let want: Vec<f32> = TINY_X.iter().map(|r| r[g as usize] * factor).collect();
                assert_eq!(
                    m.column(ad.backend(), g).unwrap(),
                    want,
                    "{rel}: layer {name} column {g}"
                );
            }
        }
        let raw = ad.raw().expect("raw");
        assert_eq!(raw.x.shape, [6, 4]);
        assert_eq!(raw.var.n_rows(), 4);
        let obsp: Vec<&str> = ad.obsp().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(obsp, ["connectivities"], "{rel}");
        let graph = ad.obsp()[0].1.read_sparse(ad.backend()).unwrap();
        assert_eq!(graph.indices, [1, 0, 3, 2, 5, 4]);

        // var and uns['cellucid'].
        assert_eq!(
            ad.var().index(ad.backend()).unwrap(),
            ["ENSG0000", "ENSG0001", "ENSG0002", "ENSG0003"]
        );
        let (c, cats, _) = codes(ad.var().read_column(ad.backend(), "gene_symbols").unwrap());
        let names: Vec<String> = c
            .iter()
            .map(|&i| {
                if i < 0 {
                    String::new()
                } else {
                    cats[i as usize].to_text()
                }
            })
            .collect();
        assert_eq!(names, ["G_A", "G_B", "", "G_A"], "{rel}");
        assert_eq!(ad.uns_cellucid()["id"], "tiny", "{rel}");
        assert_eq!(ad.uns_cellucid()["name"], "Tiny encodings sample", "{rel}");
        assert_eq!(ad.uns_cellucid()["schema"], 1, "{rel}");
    }
}

const PBMC_DENSE: [&str; 4] = [
    "anndata/pbmc68k_reduced.h5ad",
    "anndata/pbmc68k_reduced.modern.h5ad",
    "anndata/pbmc68k_reduced.zarr",
    "anndata/pbmc68k_reduced.v3.zarr",
];

#[test]
fn pbmc_copies_agree_including_the_legacy_layout() {
    let reference = open(PBMC_DENSE[1]);
    let ref_cols: Vec<Vec<f32>> = [0u64, 17, 764]
        .iter()
        .map(|&g| {
            reference
                .x()
                .unwrap()
                .column(reference.backend(), g)
                .unwrap()
        })
        .collect();
    let ref_umap = reference.obsm_matrix("X_umap").unwrap();
    let ref_labels = reference.obs_column("bulk_labels").unwrap();
    for rel in PBMC_DENSE {
        let ad = open(rel);
        assert_eq!((ad.n_obs(), ad.n_vars()), (700, 765), "{rel}");
        let x = ad.x().unwrap();
        assert_eq!(x.layout, MatrixLayout::Dense, "{rel}");
        for (i, &g) in [0u64, 17, 764].iter().enumerate() {
            assert_eq!(
                x.column(ad.backend(), g).unwrap(),
                ref_cols[i],
                "{rel}: gene {g}"
            );
        }
        let names: Vec<&str> = ad.obs().columns().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "bulk_labels",
                "n_genes",
                "percent_mito",
                "n_counts",
                "S_score",
                "G2M_score",
                "phase",
                "louvain"
            ],
            "{rel}"
        );
        assert_eq!(ad.obs_column("bulk_labels").unwrap(), ref_labels, "{rel}");
        let (umap, width) = ad.obsm_matrix("X_umap").unwrap();
        assert_eq!(width, 2);
        assert_eq!(umap, ref_umap.0, "{rel}");
        assert_eq!(ad.obsm_matrix("X_pca").unwrap().1, 50, "{rel}");
        let graph = ad
            .obsp()
            .iter()
            .find(|(k, _)| k == "connectivities")
            .map(|(_, m)| m)
            .unwrap_or_else(|| panic!("{rel}: no connectivities"));
        assert_eq!(graph.nnz(ad.backend()).unwrap(), 9992, "{rel}");
        assert!(ad.raw().is_some(), "{rel}: raw");
        assert_eq!(ad.var().index(ad.backend()).unwrap()[0], "HES4", "{rel}");
    }
    assert!(open(PBMC_DENSE[0]).obs().is_legacy());
}

#[test]
fn csr_csc_and_prepared_stores_give_the_same_genes() {
    let csr = open("anndata/pbmc68k_reduced.csr.h5ad");
    assert_eq!(csr.x().unwrap().layout, MatrixLayout::Csr);
    let genes = [0u64, 3, 400, 764];
    let want: Vec<Vec<f32>> = genes
        .iter()
        .map(|&g| csr.x().unwrap().column(csr.backend(), g).unwrap())
        .collect();
    assert!(want.iter().any(|c| c.iter().any(|&v| v != 0.0)));
    // The dense prepared stores hold the original (unthresholded) X.
    let dense = open("anndata/pbmc68k_reduced.modern.h5ad");
    let want_dense: Vec<Vec<f32>> = genes
        .iter()
        .map(|&g| dense.x().unwrap().column(dense.backend(), g).unwrap())
        .collect();
    for rel in [
        "anndata/pbmc68k_reduced.csc.h5ad",
        "prepared-0.9.5/pbmc68k_reduced.cellucid.h5ad",
        "prepared-0.9.5/pbmc68k_reduced.cellucid.zarr",
        "prepared-0.9.5/pbmc68k_reduced.cellucid.v3.zarr",
        "prepared-0.9.5/pbmc68k_reduced.cellucid.zarr.zip",
        "prepared-0.9.5/pbmc68k_reduced.sparse.cellucid.h5ad",
        "prepared-0.9.5/pbmc68k_reduced.sparse.cellucid.zarr",
    ] {
        let ad = open(rel);
        let sparse = rel.contains("csc") || rel.contains("sparse");
        let want = if sparse { &want } else { &want_dense };
        assert_eq!(
            ad.x().unwrap().layout != MatrixLayout::Dense,
            sparse,
            "{rel}"
        );
        assert_eq!((ad.n_obs(), ad.n_vars()), (700, 765), "{rel}");
        let x = ad.x().unwrap();
        for (i, &g) in genes.iter().enumerate() {
            assert_eq!(
                x.column(ad.backend(), g).unwrap(),
                want[i],
                "{rel}: gene {g} ({:?})",
                x.layout
            );
        }
        if rel.starts_with("prepared") {
            let id = ad.uns_cellucid()["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(id.starts_with("pbmc68k-reduced"), "{rel}: {id}");
            assert_eq!(ad.uns_cellucid()["defaults"]["latentKey"], "X_pca", "{rel}");
            if rel.ends_with(".zip") {
                assert!(matches!(ad.kind(), StoreKind::ZarrZip(_)));
            }
        }
        let (c, cats, _) = codes(ad.obs_column("bulk_labels").unwrap());
        assert_eq!((c.len(), cats.len()), (700, 10), "{rel}");
    }
}

#[test]
fn unknown_encodings_and_bad_inputs_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    // A Zarr store whose X has an encoding from the future.
    let root = dir.path().join("future.zarr");
    let src = fixture("anndata/tiny.zarr");
    testdata::copy_dir(&src, &root);
    std::fs::write(
        root.join("X/.zattrs"),
        r#"{"shape":[6,4],"encoding-type":"csr_matrix","encoding-version":"9.9.9"}"#,
    )
    .unwrap();
    std::fs::remove_file(root.join(".zmetadata")).unwrap();
    match AnnData::open(&root) {
        Err(AnnDataError::UnknownEncoding {
            element,
            encoding,
            version,
        }) => {
            assert_eq!(
                (element.as_str(), encoding.as_str(), version.as_str()),
                ("X", "csr_matrix", "9.9.9")
            );
        }
        other => panic!("expected UnknownEncoding, got {other:?}"),
    }
    // An unknown column encoding is listed as unsupported and errors on read only.
    std::fs::write(
        root.join("X/.zattrs"),
        r#"{"shape":[6,4],"encoding-type":"csr_matrix","encoding-version":"0.1.0"}"#,
    )
    .unwrap();
    std::fs::write(
        root.join("obs/cat/.zattrs"),
        r#"{"encoding-type":"categorical","encoding-version":"0.3.0","ordered":false}"#,
    )
    .unwrap();
    let ad = AnnData::open(&root).unwrap();
    assert!(matches!(
        ad.obs().column("cat").unwrap().encoding,
        ColumnEncoding::Unsupported { .. }
    ));
    assert!(matches!(
        ad.obs_column("cat"),
        Err(AnnDataError::UnknownEncoding { .. })
    ));
    // A corrupt chunk fails that column only.
    std::fs::write(root.join("obs/f64/0"), b"garbage").unwrap();
    let err = ad.obs_column("f64").unwrap_err();
    assert!(err.to_string().contains("obs/f64"), "{err}");

    // X whose shape disagrees with obs × var names X.
    std::fs::write(
        root.join("obs/f64/0"),
        std::fs::read(src.join("obs/f64/0")).unwrap(),
    )
    .unwrap();
    std::fs::write(
        root.join("X/.zattrs"),
        r#"{"shape":[6,5],"encoding-type":"csr_matrix","encoding-version":"0.1.0"}"#,
    )
    .unwrap();
    match AnnData::open(&root) {
        Err(err) => assert!(err.to_string().contains("\"X\""), "{err}"),
        Ok(_) => panic!("a 6x5 X over 6x4 obs/var opened"),
    }

    // A truncated .h5ad is an Open error naming the file, not a panic.
    let bytes = std::fs::read(fixture("anndata/tiny.h5ad")).unwrap();
    let cut = dir.path().join("cut.h5ad");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    match AnnData::open(&cut) {
        Ok(_) => panic!("a truncated file opened"),
        Err(err) => assert!(!err.to_string().is_empty()),
    }
    // A folder that is no store.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(matches!(
        AnnData::open(&empty),
        Err(AnnDataError::Open { .. })
    ));
}

#[test]
fn csr_column_index_equals_the_scan_and_is_reused() {
    use cellucid_core::anndata::csr_index::{index_path, CsrIndex};
    let dir = tempfile::tempdir().unwrap();
    for rel in [
        "anndata/pbmc68k_reduced.csr.h5ad",
        "anndata/tiny.zarr",
        "anndata/tiny.v3.zarr",
    ] {
        let ad = open(rel);
        let x = ad.x().unwrap();
        let index = CsrIndex::load_or_build(ad.backend(), x, dir.path(), rel).unwrap();
        for g in (0..x.shape[1]).step_by(37).chain([x.shape[1] - 1]) {
            assert_eq!(
                index.column(g).unwrap(),
                x.column(ad.backend(), g).unwrap(),
                "{rel}: column {g}"
            );
        }
        assert!(index.column(x.shape[1]).is_none());
        let path = index_path(dir.path(), rel, x);
        let written = std::fs::metadata(&path).unwrap().modified().unwrap();
        let again = CsrIndex::load_or_build(ad.backend(), x, dir.path(), rel).unwrap();
        assert_eq!(again.path(), path);
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            written,
            "reused, not rebuilt"
        );
        // A different store version gets its own index.
        assert_ne!(index_path(dir.path(), &format!("{rel}-changed"), x), path);
    }
    // A truncated index file is ignored and rebuilt.
    let ad = open("anndata/tiny.zarr");
    let x = ad.x().unwrap();
    let path = index_path(dir.path(), "anndata/tiny.zarr", x);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
    let rebuilt =
        CsrIndex::load_or_build(ad.backend(), x, dir.path(), "anndata/tiny.zarr").unwrap();
    assert_eq!(
        rebuilt.column(0).unwrap(),
        x.column(ad.backend(), 0).unwrap()
    );
}

#[test]
fn lzf_compressed_h5ad_decodes() {
    let ad = open("anndata/tiny.lzf.h5ad");
    assert_eq!((ad.n_obs(), ad.n_vars()), (300, 40));
    // numpy .npy v1: magic, version, u16 header length, header, raw <f4.
    let npy = std::fs::read(fixture("anndata/tiny.lzf.X.npy")).unwrap();
    let header = u16::from_le_bytes([npy[8], npy[9]]) as usize;
    let x: Vec<f32> = npy[10 + header..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(x.len(), 300 * 40);
    let m = ad.x().unwrap();
    for g in [0u64, 13, 39] {
        let want: Vec<f32> = (0..300).map(|r| x[r * 40 + g as usize]).collect();
        assert_eq!(m.column(ad.backend(), g).unwrap(), want, "gene {g}");
    }
    let (c, cats, _) = codes(ad.obs_column("kind").unwrap());
    assert_eq!((c.len(), cats.len()), (300, 4));
    assert_eq!(ad.obsm_matrix("X_umap").unwrap().1, 2);
}

#[test]
fn abandoned_index_builds_are_cleaned_up() {
    use cellucid_core::anndata::csr_index::{index_path, CsrIndex};
    let dir = tempfile::tempdir().unwrap();
    let ad = open("anndata/tiny.h5ad");
    let x = ad.x().unwrap();
    let path = index_path(dir.path(), "gen", x);
    // A pid that cannot be running (above the kernel's pid_max).
    let stale = path.with_extension("tmp-4194305");
    std::fs::write(&stale, b"half written").unwrap();
    CsrIndex::load_or_build(ad.backend(), x, dir.path(), "gen").unwrap();
    assert!(!stale.exists());
    assert!(path.exists());
}

#[test]
fn a_damaged_index_of_the_right_size_is_refused_not_trusted_blindly() {
    use cellucid_core::anndata::csr_index::{index_path, CsrIndex};
    let dir = tempfile::tempdir().unwrap();
    let ad = open("anndata/tiny.h5ad");
    let x = ad.x().unwrap();
    CsrIndex::load_or_build(ad.backend(), x, dir.path(), "gen").unwrap();
    let path = index_path(dir.path(), "gen", x);
    let mut bytes = std::fs::read(&path).unwrap();
    // Column 1's end pointer (header 32 bytes + 8 per pointer) past nnz.
    bytes[32 + 16..32 + 24].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let index = CsrIndex::load_or_build(ad.backend(), x, dir.path(), "gen").unwrap();
    assert!(index.column(1).is_none());
    assert!(
        index.column(2).is_none(),
        "column 2 starts where column 1 ends: damaged too"
    );
    assert_eq!(index.column(0).unwrap(), x.column(ad.backend(), 0).unwrap());
    assert_eq!(index.column(3).unwrap(), x.column(ad.backend(), 3).unwrap());
}

#[test]
fn column_entries_expand_to_the_dense_column_on_every_layout() {
    use cellucid_core::anndata::csr_index::CsrIndex;
    use cellucid_core::anndata::Column;
    let dir = tempfile::tempdir().unwrap();
    let mut sparse_seen = 0;
    for rel in [
        "anndata/pbmc68k_reduced.csr.h5ad",
        "anndata/pbmc68k_reduced.csc.h5ad",
        "anndata/tiny.zarr",
    ] {
        let ad = open(rel);
        let x = ad.x().unwrap();
        let index = (x.layout == cellucid_core::anndata::MatrixLayout::Csr)
            .then(|| CsrIndex::load_or_build(ad.backend(), x, dir.path(), rel).unwrap());
        for g in (0..x.shape[1]).step_by(5) {
            let dense = x.column(ad.backend(), g).unwrap();
            let entries = x.column_entries(ad.backend(), g).unwrap();
            if let Column::Sparse { rows, values, .. } = &entries {
                sparse_seen += 1;
                assert!(
                    2 * values.len() < dense.len(),
                    "{rel} {g}: sparse only when smaller"
                );
                assert!(rows
                    .iter()
                    .zip(values)
                    .all(|(&r, &v)| dense[r as usize] == v));
            }
            assert_eq!(entries.clone().into_dense(), dense, "{rel}: column {g}");
            if let Some(index) = &index {
                let indexed = index.column_entries(g).unwrap();
                assert_eq!(indexed.into_dense(), dense, "{rel}: indexed column {g}");
            }
        }
    }
    assert!(sparse_seen > 0, "the sparse form was exercised");
}

#[test]
fn computed_files_are_offered_without_blocking_once_made() {
    use cellucid_core::anndata::{AnnDataOptions, AnnDataSource};
    use cellucid_core::{DatasetSource, RelativeKey};
    let dir = tempfile::tempdir().unwrap();
    let options = AnnDataOptions {
        cache_dir: Some(dir.path().to_owned()),
        ..AnnDataOptions::default()
    };
    let source =
        AnnDataSource::open(&fixture("anndata/pbmc68k_reduced.csc.h5ad"), options).unwrap();
    let id = source.datasets()[0].id.clone();
    let key = RelativeKey::parse("var/5.values.f32").unwrap();
    assert!(source.open_if_ready(&id, &key).is_none(), "not made yet");
    let made = source.open(&id, &key).unwrap();
    let ready = source
        .open_if_ready(&id, &key)
        .expect("kept after the first open");
    assert_eq!(
        ready.read_range(0..ready.len()).unwrap(),
        made.read_range(0..made.len()).unwrap()
    );
    assert!(source.open_if_ready("another-id", &key).is_none());
    // Manifests too: hashed for their tag once, then kept.
    let manifest = RelativeKey::parse("obs_manifest.json").unwrap();
    assert!(source.open_if_ready(&id, &manifest).is_none());
    let made = source.open(&id, &manifest).unwrap();
    let ready = source.open_if_ready(&id, &manifest).expect("kept");
    assert_eq!(ready.identity(), made.identity());
    assert_eq!(
        ready.read_range(0..ready.len()).unwrap(),
        made.read_range(0..made.len()).unwrap()
    );
}
