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

    /// Also serve vector fields (obsm <field>_umap / <field>_umap_<d>d).
    #[arg(long)]
    pub(crate) vector_fields: bool,

    /// Where the one-time CSR gene index is kept (default: the user cache dir).
    #[arg(long, value_name = "DIR")]
    pub(crate) cache_dir: Option<PathBuf>,
}

impl AnnDataArgs {
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
            cache_dir: self.cache_dir.clone(),
            // --modality comes with the CLI conventions work (branch cliconv).
            modality: None,
        }
    }
}
