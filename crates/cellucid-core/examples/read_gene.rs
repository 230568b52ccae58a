//! Prints one gene's values from an AnnData store, the way a pipeline reads
//! it: `cargo run -p cellucid-core --example read_gene -- data.h5ad HES4`.
//! Without arguments it reads the repository's test data.

use std::path::PathBuf;
use std::process::ExitCode;

use cellucid_core::anndata::AnnData;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let path = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/anndata/pbmc68k_reduced.h5ad")
    });
    let gene = args
        .next()
        .map(|g| g.to_string_lossy().into_owned())
        .unwrap_or_else(|| "HES4".to_owned());
    match run(&path, &gene) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("read_gene: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &std::path::Path, gene: &str) -> Result<(), cellucid_core::anndata::AnnDataError> {
    let adata = AnnData::open(path)?;
    let values = adata.gene(gene)?;
    let cells = adata.obs_names()?;
    println!(
        "{} cells × {} genes; {gene}:",
        adata.n_obs(),
        adata.n_vars()
    );
    for (cell, value) in cells.iter().zip(&values).take(10) {
        println!("{cell}\t{value}");
    }
    if values.len() > 10 {
        println!("… and {} more cells", values.len() - 10);
    }
    Ok(())
}
