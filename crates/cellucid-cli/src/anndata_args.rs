//! The AnnData flags of `cellucid serve` (the 0.9.4 CLI's; docs/FORMATS.md, "Serving choices").

// The doc comments below are clap's --help text, printed as written (with
// `uns['cellucid']['id']`, `<field>`, bare URLs), not rustdoc markdown.
#![allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::invalid_html_tags,
    rustdoc::bare_urls
)]

use std::path::PathBuf;

use cellucid_core::anndata::{AnnDataOptions, EmbeddingChoice, ExpressionSource};
use clap::Args;

/// How `.h5ad` and Zarr inputs are served.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "AnnData inputs (.h5ad, Zarr)")]
pub(crate) struct AnnDataArgs {
    /// Dataset id (only with a single AnnData input; default: uns['cellucid']['id'], else the file name).
    #[arg(long, value_name = "ID")]
    pub(crate) dataset_id: Option<String>,

    /// Display name (only with a single AnnData input; default: uns['cellucid']['name'], else the file name).
    #[arg(long, value_name = "NAME")]
    pub(crate) dataset_name: Option<String>,

    /// obsm key of the latent space for outlier quantiles (default: uns['cellucid'] defaults, else X_pca).
    #[arg(long, value_name = "KEY")]
    pub(crate) latent_key: Option<String>,

    /// obsp key of the neighbour graph (default: uns['cellucid'] defaults, else connectivities).
    #[arg(long, visible_alias = "knn-key", value_name = "KEY")]
    pub(crate) knn: Option<String>,

    /// Serve only these obs fields, in this order (repeatable).
    #[arg(long = "obs-key", value_name = "KEY")]
    pub(crate) obs_keys: Vec<String>,

    /// var column naming the genes (default: the var index).
    #[arg(long, value_name = "COLUMN")]
    pub(crate) gene_id_column: Option<String>,

    /// Expression matrix: X, raw or layer:NAME (default: X, else raw, else a layer).
    #[arg(long, value_name = "SOURCE", value_parser = ExpressionSource::parse)]
    pub(crate) expression: Option<ExpressionSource>,

    /// 1-D embedding: obsm KEY or KEY:COLUMN.
    #[arg(long = "embedding-1d", value_name = "KEY[:COLUMNS]", value_parser = EmbeddingChoice::parse)]
    pub(crate) embedding_1d: Option<EmbeddingChoice>,

    /// 2-D embedding: obsm KEY or KEY:C0,C1.
    #[arg(long = "embedding-2d", value_name = "KEY[:COLUMNS]", value_parser = EmbeddingChoice::parse)]
    pub(crate) embedding_2d: Option<EmbeddingChoice>,

    /// 3-D embedding: obsm KEY or KEY:C0,C1,C2.
    #[arg(long = "embedding-3d", value_name = "KEY[:COLUMNS]", value_parser = EmbeddingChoice::parse)]
    pub(crate) embedding_3d: Option<EmbeddingChoice>,

    /// Scale every embedding into the viewer's coordinate range; the no- form
    /// shows the coordinates as stored (default: the store's own, else scaled).
    #[arg(long, overrides_with = "no_normalize_embeddings")]
    pub(crate) normalize_embeddings: bool,

    /// Show embeddings at their stored coordinates (see --normalize-embeddings).
    #[arg(long, overrides_with = "normalize_embeddings")]
    pub(crate) no_normalize_embeddings: bool,

    /// Fewest cells a category needs for its centroid and outlier quantiles
    /// (default: the store's own, else 10).
    #[arg(long, value_name = "N", value_parser = positive_int, allow_negative_numbers = true)]
    pub(crate) centroid_min_points: Option<u64>,

    /// Modality a multimodal dataset (a MuData) opens on (default: its first).
    #[arg(long, value_name = "NAME", value_parser = non_empty)]
    pub(crate) modality: Option<String>,

    /// Vector field the overlay opens on: <field> of an obsm <field>_<basis>
    /// array drawn over X_<basis> (implies --vector-fields).
    #[arg(long, value_name = "FIELD", value_parser = non_empty)]
    pub(crate) vector_field_default: Option<String>,

    /// Also serve vector fields (obsm <field>_umap / <field>_umap_<d>d) to folder viewers.
    #[arg(long)]
    pub(crate) vector_fields: bool,

    /// Where the one-time CSR gene index is kept (default: $XDG_CACHE_HOME/cellucid/csr-index).
    #[arg(long, alias = "cache-dir", value_name = "DIR")]
    pub(crate) index_cache_dir: Option<PathBuf>,

    /// Memory the dataset readers may hold at once, shared by all requests (bytes; K/M/G/KiB/MiB/GiB suffixes; default 512MiB). A dataset claiming more is refused.
    #[arg(long, value_name = "BYTES", value_parser = crate::args::byte_size)]
    pub(crate) memory_budget: Option<u64>,
}

/// A decimal integer ≥ 1 (0.9.5's message).
fn positive_int(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if n >= 1 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!("expected a positive integer; got {text:?}")),
    }
}

/// Any text but blank.
fn non_empty(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        Err("expected a name; got an empty value".to_owned())
    } else {
        Ok(text.to_owned())
    }
}

impl AnnDataArgs {
    /// Applies `--memory-budget` to the process-wide budget every reader
    /// shares (cellucid_core::budget).
    pub(crate) fn apply_memory_budget(&self) {
        if let Some(bytes) = self.memory_budget {
            cellucid_core::budget::set_limit(bytes);
        }
    }

    /// The options for one input (`id`/`name` only when given).
    pub(crate) fn options(&self) -> AnnDataOptions {
        AnnDataOptions {
            dataset_id: self.dataset_id.clone(),
            dataset_name: self.dataset_name.clone(),
            latent_key: self.latent_key.clone(),
            knn: self.knn.clone(),
            obs_keys: self.obs_keys.clone(),
            gene_id_column: self.gene_id_column.clone(),
            expression: self.expression.clone(),
            embeddings: [
                self.embedding_1d.clone(),
                self.embedding_2d.clone(),
                self.embedding_3d.clone(),
            ],
            vector_fields: self.vector_fields,
            cache_dir: self.index_cache_dir.clone(),
            centroid_min_points: self.centroid_min_points,
            normalize_embeddings: match (self.normalize_embeddings, self.no_normalize_embeddings) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
            modality: self.modality.clone(),
            vector_field_default: self.vector_field_default.clone(),
            index_progress: None,
        }
    }
}
