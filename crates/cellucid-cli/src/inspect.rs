//! `cellucid inspect PATH`: what an AnnData store holds and what would be
//! served from it. Reads metadata only, so it is instant on any size.

use std::fmt::Write as _;

use cellucid_core::anndata::AnnDataSource;
use cellucid_core::{DatasetSource, InputKind};
use serde::Serialize;

use crate::args::InspectArgs;
use crate::error::CliError;
use crate::inputs::anndata_error;

/// Prints the description on stdout: text, or with `--json` one JSON object.
pub(crate) fn run(args: &InspectArgs) -> Result<(), CliError> {
    args.anndata.apply_memory_budget();
    // The other inputs `serve` takes: say so, and what serves them.
    if let Ok(kind) = cellucid_core::detect_input(&args.path) {
        if !matches!(
            kind,
            InputKind::H5ad | InputKind::ZarrFolder | InputKind::ZarrZip
        ) {
            let at = args.path.display();
            return Err(CliError::usage(format!(
                "{at} is not an AnnData store (found: {}): `cellucid inspect` describes .h5ad and Zarr AnnData stores; `cellucid serve {at}` serves it",
                kind.describe()
            )));
        }
    }
    let source = AnnDataSource::open(&args.path, args.anndata.options())
        .map_err(|err| anndata_error(&args.path, &err, &args.anndata))?;
    let report = Report::of(&source);
    let text = if args.json {
        let mut text = serde_json::to_string_pretty(&report)
            .map_err(|err| CliError::operator(format!("cannot write JSON: {err}")))?;
        text.push('\n');
        text
    } else {
        report.text()
    };
    crate::docs::print_all(text.as_bytes(), "the description")
}

/// What `inspect` says about a store: the text and the `--json` document
/// are both written from it, so they carry the same facts. The JSON field
/// names are stable (`version` changes if they ever do).
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// Version of this document's layout.
    version: u32,
    path: String,
    format: String,
    cells: u64,
    genes_in_var: u64,
    x: Option<MatrixReport>,
    layers: Vec<MatrixReport>,
    raw: Option<MatrixReport>,
    obsm: Vec<ObsmReport>,
    obsp: Vec<MatrixReport>,
    obs_fields: Vec<FieldReport>,
    uns_cellucid: serde_json::Map<String, serde_json::Value>,
    serve: ServeReport,
}

#[derive(Debug, Serialize)]
struct MatrixReport {
    /// The layer or obsp key (`None` for X and raw/X).
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    layout: &'static str,
    shape: [u64; 2],
    /// Stored values (X only; `None` when they cannot be counted).
    #[serde(skip_serializing_if = "Option::is_none")]
    stored_values: Option<u64>,
}

#[derive(Debug, Serialize)]
struct ObsmReport {
    key: String,
    columns: u64,
    dtype: String,
}

#[derive(Debug, Serialize)]
struct FieldReport {
    name: String,
    /// `continuous`, `category` or `not served`.
    kind: &'static str,
    encoding: String,
}

#[derive(Debug, Serialize)]
struct ServeReport {
    id: String,
    id_from: &'static str,
    name: String,
    genes: u64,
    /// Where 0.9.5 viewers read the bytes.
    bytes_url: String,
    bytes_layout: &'static str,
    /// A consolidated-metadata key built in memory, if any.
    generated_key: Option<String>,
    /// The launch choices passed to 0.9.5 viewers (`defaults`).
    defaults: serde_json::Map<String, serde_json::Value>,
    notes: Vec<String>,
}

impl Report {
    /// Reads the facts (metadata only).
    pub(crate) fn of(source: &AnnDataSource) -> Self {
        let ad = source.anndata();
        let info = &source.datasets()[0];
        let matrix = |name: Option<&str>, m: &cellucid_core::anndata::Matrix| MatrixReport {
            name: name.map(str::to_owned),
            layout: m.layout.as_str(),
            shape: m.shape,
            stored_values: None,
        };
        let raw = source.raw();
        Self {
            version: 1,
            path: ad.path().display().to_string(),
            format: ad.kind().describe().to_string(),
            cells: ad.n_obs(),
            genes_in_var: ad.n_vars(),
            x: ad.x().map(|x| MatrixReport {
                stored_values: x.nnz(ad.backend()).ok(),
                ..matrix(None, x)
            }),
            layers: ad
                .layers()
                .iter()
                .map(|(k, m)| matrix(Some(k), m))
                .collect(),
            raw: ad.raw().map(|r| matrix(None, &r.x)),
            obsm: ad
                .obsm()
                .iter()
                .map(|e| ObsmReport {
                    key: e.key.clone(),
                    columns: e.width,
                    dtype: e.dtype.to_string(),
                })
                .collect(),
            obsp: ad.obsp().iter().map(|(k, m)| matrix(Some(k), m)).collect(),
            obs_fields: ad
                .obs()
                .columns()
                .iter()
                .map(|col| FieldReport {
                    name: col.name.clone(),
                    kind: match col.encoding.is_continuous() {
                        Some(true) => "continuous",
                        Some(false) => "category",
                        None => "not served",
                    },
                    encoding: col.encoding.describe(),
                })
                .collect(),
            uns_cellucid: ad.uns_cellucid().clone(),
            serve: ServeReport {
                id: info.id.clone(),
                id_from: source.id_origin(),
                name: info.name.clone(),
                genes: info.n_genes,
                bytes_url: format!(
                    "/_cellucid/anndata/{}{}{}",
                    info.id,
                    raw.ending(),
                    if raw.size().is_none() { "/" } else { "" }
                ),
                bytes_layout: raw.layout().as_str(),
                generated_key: raw.generated_key().map(str::to_owned),
                defaults: raw.defaults().clone(),
                notes: source.serving_notes(),
            },
        }
    }

    /// The description text.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.path);
        let _ = writeln!(out, "  format      {}", self.format);
        let _ = writeln!(out, "  cells       {}", self.cells);
        let _ = writeln!(out, "  genes       {} in var", self.genes_in_var);
        match &self.x {
            Some(x) => {
                let nnz = x
                    .stored_values
                    .map_or_else(|| "?".into(), |n| n.to_string());
                let _ = writeln!(
                    out,
                    "  X           {} {}×{}, {} stored values",
                    x.layout, x.shape[0], x.shape[1], nnz
                );
                match x.layout {
                    "csr" => {
                        let _ = writeln!(out, "              CSR: a gene column needs every row; the server builds a gene index once (in the background, kept in --index-cache-dir) and reuses it");
                    }
                    "csc" => {
                        let _ = writeln!(out, "              CSC: a gene column is one range read");
                    }
                    _ => {}
                }
            }
            None => {
                let _ = writeln!(out, "  X           absent");
            }
        }
        for m in &self.layers {
            let _ = writeln!(
                out,
                "  layer       {}: {} {}×{}",
                m.name.as_deref().unwrap_or(""),
                m.layout,
                m.shape[0],
                m.shape[1]
            );
        }
        if let Some(raw) = &self.raw {
            let _ = writeln!(
                out,
                "  raw         X {} {}×{}",
                raw.layout, raw.shape[0], raw.shape[1]
            );
        }
        let list = |items: Vec<String>| {
            if items.is_empty() {
                "none".to_owned()
            } else {
                items.join(", ")
            }
        };
        let _ = writeln!(
            out,
            "  obsm        {}",
            list(
                self.obsm
                    .iter()
                    .map(|e| format!("{} ({} cols, {})", e.key, e.columns, e.dtype))
                    .collect()
            )
        );
        let _ = writeln!(
            out,
            "  obsp        {}",
            list(
                self.obsp
                    .iter()
                    .map(|m| format!("{} ({})", m.name.as_deref().unwrap_or(""), m.layout))
                    .collect()
            )
        );
        let _ = writeln!(out, "  obs fields  {}", self.obs_fields.len());
        for col in &self.obs_fields {
            let _ = writeln!(
                out,
                "    {:<24} {:<11} {}",
                col.name, col.kind, col.encoding
            );
        }
        if !self.uns_cellucid.is_empty() {
            let _ = writeln!(
                out,
                "  uns['cellucid'] {}",
                serde_json_compact(&self.uns_cellucid)
            );
        }
        let serve = &self.serve;
        let _ = writeln!(out, "Would serve:");
        let _ = writeln!(out, "  id          {} (from {})", serve.id, serve.id_from);
        let _ = writeln!(out, "  name        {}", serve.name);
        let _ = writeln!(out, "  genes       {}", serve.genes);
        let _ = writeln!(
            out,
            "  bytes       {} ({} layout, for 0.9.5 viewers)",
            serve.bytes_url, serve.bytes_layout
        );
        if let Some(key) = &serve.generated_key {
            let _ = writeln!(
                out,
                "              consolidated metadata built in memory ({key})"
            );
        }
        if !serve.defaults.is_empty() {
            let _ = writeln!(
                out,
                "  defaults    {}",
                serde_json::Value::Object(serve.defaults.clone())
            );
        }
        for line in &serve.notes {
            let _ = writeln!(out, "  {line}");
        }
        out
    }
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
