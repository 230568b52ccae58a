//! Errors that say what to do: a cut-short file is named truncated with
//! its sizes, a flag naming an absent key lists the keys that exist (exit
//! 2), a folder of datasets says how to pass them.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::support::*;

/// `serve --no-browser --no-web-ui --port 0 PATH EXTRA...`, run to its end.
fn serve(path: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "serve",
        "--no-browser",
        "--no-web-ui",
        "--port",
        "0",
        "--index-cache-dir",
        TEST_CACHE,
        path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// A copy of the first `keep` bytes of `src` at `to`.
fn cut_copy(src: &Path, keep: usize, to: &Path) {
    let bytes = std::fs::read(src).unwrap();
    std::fs::write(to, &bytes[..keep]).unwrap();
}

#[test]
fn a_truncated_h5ad_is_named_truncated_with_both_sizes() {
    let src = fixture("anndata/pbmc68k_reduced.h5ad");
    assert_eq!(std::fs::metadata(&src).unwrap().len(), 1_772_368);
    let tmp = tempfile::tempdir().unwrap();
    let cut = tmp.path().join("cut.h5ad");
    cut_copy(&src, 1_000_000, &cut);
    let needle = "truncated: 1,000,000 of 1,772,368 bytes";
    assert_one_line_error(&serve(&cut, &[]), 1, needle);
    assert_one_line_error(&run(&["inspect", cut.to_str().unwrap()]), 1, needle);
    // The whole file is not.
    let whole = run(&["inspect", src.to_str().unwrap()]);
    assert!(whole.status.success(), "{}", stderr_of(&whole));
}

/// `dir` (a Zarr folder) as a stored zip at `to`.
fn zip_folder(dir: &Path, to: &Path) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(to).unwrap());
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut files: Vec<PathBuf> = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    for file in files {
        let name = file.strip_prefix(dir).unwrap().to_str().unwrap().to_owned();
        zip.start_file(name, options).unwrap();
        zip.write_all(&std::fs::read(&file).unwrap()).unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn a_zip_cut_before_its_central_directory_is_named_damaged_or_truncated() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("tiny.zarr.zip");
    zip_folder(&fixture("anndata/tiny.zarr"), &whole);
    let ok = run(&["inspect", whole.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", stderr_of(&ok));
    let len = std::fs::metadata(&whole).unwrap().len() as usize;
    let cut = tmp.path().join("cut.zarr.zip");
    cut_copy(&whole, len - 40, &cut);
    let out = serve(&cut, &[]);
    assert_one_line_error(&out, 1, "damaged or truncated");
    assert!(
        stderr_of(&out).contains(&format!("{} bytes", thousands(len - 40))),
        "{}",
        stderr_of(&out)
    );
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn a_flag_naming_an_absent_key_lists_the_keys_there_are_and_exits_2() {
    let h5ad = fixture("anndata/pbmc68k_reduced.h5ad");
    let cases: [(&[&str], &str); 7] = [
        (&["--latent-key", "X_scvi"], "--latent-key X_scvi: there is no obsm/X_scvi; obsm holds: X_pca, X_umap"),
        (&["--embedding-2d", "X_tsne"], "--embedding-2d X_tsne: there is no obsm/X_tsne; obsm holds: X_pca, X_umap"),
        (&["--embedding-3d", "X_tsne:0,1,2"], "--embedding-3d X_tsne: there is no obsm/X_tsne; obsm holds: X_pca, X_umap"),
        (&["--knn", "knn"], "--knn knn: there is no obsp/knn; obsp holds: connectivities, distances"),
        (&["--obs-key", "cell_type"], "--obs-key cell_type: there is no obs/cell_type; obs holds: G2M_score, S_score, bulk_labels"),
        (&["--gene-id-column", "symbol"], "--gene-id-column symbol: there is no var/symbol; var holds: dispersions"),
        (&["--expression", "layer:log1p"], "--expression layer:log1p: there is no layers/log1p; layers is empty"),
    ];
    for (flags, needle) in cases {
        assert_one_line_error(&serve(&h5ad, flags), 2, needle);
    }
    // inspect previews the same choices, with the same message.
    let out = run(&["inspect", h5ad.to_str().unwrap(), "--knn", "knn"]);
    assert_one_line_error(&out, 2, "obsp holds: connectivities, distances");
}

#[test]
fn a_folder_of_h5ad_files_suggests_passing_them() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["a.h5ad", "b.h5ad"] {
        std::fs::copy(fixture("anndata/tiny.h5ad"), tmp.path().join(name)).unwrap();
    }
    let dir = tmp.path().to_str().unwrap();
    let out = serve(tmp.path(), &[]);
    assert_one_line_error(&out, 2, &format!("`cellucid serve {dir}/*.h5ad`"));
    assert!(stderr_of(&out).contains("a.h5ad, b.h5ad"));
    // The suggestion works.
    let a = tmp.path().join("a.h5ad");
    let b = tmp.path().join("b.h5ad");
    let server = Server::start(&[
        "--no-web-ui",
        "--index-cache-dir",
        TEST_CACHE,
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    let listed = get(&server.url("/_cellucid/datasets")).json();
    assert_eq!(listed["datasets"].as_array().unwrap().len(), 2);

    // One dataset: pass it.
    std::fs::remove_file(&b).unwrap();
    assert_one_line_error(
        &serve(tmp.path(), &[]),
        2,
        &format!("serve it with `cellucid serve {}`", a.display()),
    );
}

#[test]
fn inspect_on_an_input_it_does_not_describe_says_what_serves_it() {
    // Before: "cannot open as AnnData: it is a Loom file, not an AnnData store".
    for name in [
        "inputs-0.9.5/tiny.loom",
        "inputs-0.9.5/tiny.rds",
        "exports-0.9.4/pbmc68k-f32",
    ] {
        let path = fixture(name);
        let path = path.to_str().unwrap();
        let out = run(&["inspect", path]);
        assert_one_line_error(&out, 2, &format!("`cellucid serve {path}` serves it"));
        assert!(
            stderr_of(&out).contains("not an AnnData store"),
            "{}",
            stderr_of(&out)
        );
    }
}
