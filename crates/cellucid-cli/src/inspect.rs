//! `cellucid inspect PATH`: what an AnnData store holds and what would be
//! served from it. Reads metadata only, so it is instant on any size.

use std::fmt::Write as _;

use cellucid_core::anndata::{AnnDataSource, MatrixLayout};
use cellucid_core::DatasetSource;

use crate::args::InspectArgs;
use crate::error::CliError;
use crate::inputs::anndata_error;

/// Prints the description on stdout.
pub(crate) fn run(args: &InspectArgs) -> Result<(), CliError> {
    args.anndata.apply_memory_budget();
    let source = AnnDataSource::open(&args.path, args.anndata.options())
        .map_err(|err| anndata_error(&args.path, &err))?;
    print!("{}", describe(&source));
    Ok(())
}

/// The description text.
pub(crate) fn describe(source: &AnnDataSource) -> String {
    let ad = source.anndata();
    let info = &source.datasets()[0];
    let mut out = String::new();
    let _ = writeln!(out, "{}", ad.path().display());
    let _ = writeln!(out, "  format      {}", ad.kind().describe());
    let _ = writeln!(out, "  cells       {}", ad.n_obs());
    let _ = writeln!(out, "  genes       {} in var", ad.n_vars());
    match ad.x() {
        Some(x) => {
            let nnz = x
                .nnz(ad.backend())
                .map_or_else(|_| "?".into(), |n| n.to_string());
            let _ = writeln!(
                out,
                "  X           {} {}×{}, {} stored values",
                x.layout.as_str(),
                x.shape[0],
                x.shape[1],
                nnz
            );
            match x.layout {
                MatrixLayout::Csr => {
                    let _ = writeln!(out, "              CSR: a gene column needs every row; the server builds a gene index once (in the background, kept in the cache dir) and reuses it");
                }
                MatrixLayout::Csc => {
                    let _ = writeln!(out, "              CSC: a gene column is one range read");
                }
                MatrixLayout::Dense => {}
            }
        }
        None => {
            let _ = writeln!(out, "  X           absent");
        }
    }
    for (name, m) in ad.layers() {
        let _ = writeln!(
            out,
            "  layer       {name}: {} {}×{}",
            m.layout.as_str(),
            m.shape[0],
            m.shape[1]
        );
    }
    if let Some(raw) = ad.raw() {
        let _ = writeln!(
            out,
            "  raw         X {} {}×{}",
            raw.x.layout.as_str(),
            raw.x.shape[0],
            raw.x.shape[1]
        );
    }
    let _ = writeln!(
        out,
        "  obsm        {}",
        if ad.obsm().is_empty() {
            "none".to_owned()
        } else {
            ad.obsm()
                .iter()
                .map(|e| format!("{} ({} cols, {})", e.key, e.width, e.dtype))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    let _ = writeln!(
        out,
        "  obsp        {}",
        if ad.obsp().is_empty() {
            "none".to_owned()
        } else {
            ad.obsp()
                .iter()
                .map(|(k, m)| format!("{k} ({})", m.layout.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    let _ = writeln!(out, "  obs fields  {}", ad.obs().columns().len());
    for col in ad.obs().columns() {
        let kind = match col.encoding.is_continuous() {
            Some(true) => "continuous",
            Some(false) => "category",
            None => "not served",
        };
        let _ = writeln!(
            out,
            "    {:<24} {:<11} {}",
            col.name,
            kind,
            col.encoding.describe()
        );
    }
    if !ad.uns_cellucid().is_empty() {
        let _ = writeln!(
            out,
            "  uns['cellucid'] {}",
            serde_json_compact(ad.uns_cellucid())
        );
    }
    let _ = writeln!(out, "Would serve:");
    let _ = writeln!(
        out,
        "  id          {} (from {})",
        info.id,
        source.id_origin()
    );
    let _ = writeln!(out, "  name        {}", info.name);
    let _ = writeln!(out, "  genes       {}", info.n_genes);
    let raw = source.raw();
    let _ = writeln!(
        out,
        "  bytes       /_cellucid/anndata/{}{}{} ({} layout, for 0.9.5 viewers)",
        info.id,
        raw.ending(),
        if raw.size().is_none() { "/" } else { "" },
        raw.layout().as_str()
    );
    if let Some(key) = raw.generated_key() {
        let _ = writeln!(
            out,
            "              consolidated metadata built in memory ({key})"
        );
    }
    for line in source.serving_notes() {
        let _ = writeln!(out, "  {line}");
    }
    out
}

fn serde_json_compact(map: &serde_json::Map<String, serde_json::Value>) -> String {
    let text = serde_json::Value::Object(map.clone()).to_string();
    if text.len() > 300 {
        format!(
            "{}…",
            &text[..text.char_indices().nth(300).map_or(text.len(), |(i, _)| i)]
        )
    } else {
        text
    }
}
