//! Launch choices for serving an AnnData store (the 0.9.4 CLI flags).

use std::path::PathBuf;

use serde_json::{Map, Value};

/// Which matrix feeds the gene columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpressionSource {
    /// `X`.
    X,
    /// `raw/X` (with `raw/var` genes).
    Raw,
    /// `layers/<name>`.
    Layer(String),
}

impl ExpressionSource {
    /// Parses `X`, `raw` or `layer:NAME`.
    ///
    /// # Errors
    /// A message saying what is accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "X" => Ok(Self::X),
            "raw" | "raw/X" => Ok(Self::Raw),
            t => match t
                .strip_prefix("layer:")
                .or_else(|| t.strip_prefix("layers/"))
            {
                Some(name) if !name.is_empty() => Ok(Self::Layer(name.to_owned())),
                _ => Err(format!("{text:?}: expected X, raw or layer:NAME")),
            },
        }
    }

    /// The 0.9.5 `defaults.expression` spelling.
    pub fn launch_name(&self) -> String {
        match self {
            Self::X => "X".into(),
            Self::Raw => "raw/X".into(),
            Self::Layer(name) => format!("layers/{name}"),
        }
    }
}

/// An embedding chosen for one dimension slot: an obsm key and optionally
/// which of its columns to plot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddingChoice {
    /// The obsm key.
    pub key: String,
    /// The columns, one per axis; `None` = the first `d`.
    pub columns: Option<Vec<u64>>,
}

impl EmbeddingChoice {
    /// Parses `KEY` or `KEY:C0,C1[,C2]`.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.rsplit_once(':') {
            Some((key, cols)) if !key.is_empty() => {
                let columns = cols
                    .split(',')
                    .map(|c| c.trim().parse::<u64>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| format!("{text:?}: columns must be integers, e.g. X_pca:0,1"))?;
                Ok(Self {
                    key: key.to_owned(),
                    columns: Some(columns),
                })
            }
            _ if !text.is_empty() => Ok(Self {
                key: text.to_owned(),
                columns: None,
            }),
            _ => Err("an embedding key may not be empty".into()),
        }
    }
}

/// How an AnnData input is served.
#[derive(Clone, Debug, Default)]
pub struct AnnDataOptions {
    /// `--dataset-id`.
    pub dataset_id: Option<String>,
    /// `--dataset-name`.
    pub dataset_name: Option<String>,
    /// `--latent-key`: the obsm matrix for outlier quantiles.
    pub latent_key: Option<String>,
    /// `--knn`: the obsp graph to serve as connectivity.
    pub knn: Option<String>,
    /// `--obs-key` (repeatable): serve only these obs fields, in this order.
    pub obs_keys: Vec<String>,
    /// `--gene-id-column`: the var column naming genes.
    pub gene_id_column: Option<String>,
    /// `--expression`.
    pub expression: Option<ExpressionSource>,
    /// `--embedding-1d/-2d/-3d`.
    pub embeddings: [Option<EmbeddingChoice>; 3],
    /// `--vector-fields`: serve obsm `<field>_umap[_<d>d]` vector fields.
    pub vector_fields: bool,
    /// Where persisted indexes go (`None`: the user cache dir).
    pub cache_dir: Option<PathBuf>,
    /// `--modality`: the modality a multimodal store (MuData) opens on.
    pub modality: Option<String>,
}

impl AnnDataOptions {
    /// The 0.9.5 `defaults` document: only the choices given.
    pub fn launch_defaults(&self) -> Map<String, Value> {
        let mut map = Map::new();
        for (d, choice) in self.embeddings.iter().enumerate() {
            if let Some(c) = choice {
                let dim = d as u64 + 1;
                let columns = c.columns.clone().unwrap_or_else(|| (0..dim).collect());
                map.insert(
                    format!("embedding{dim}d"),
                    serde_json::json!({"key": c.key, "columns": columns}),
                );
            }
        }
        if let Some(k) = &self.knn {
            map.insert("knn".into(), Value::String(k.clone()));
        }
        if let Some(e) = &self.expression {
            map.insert("expression".into(), Value::String(e.launch_name()));
        }
        if let Some(g) = &self.gene_id_column {
            map.insert("geneIdColumn".into(), Value::String(g.clone()));
        }
        if let Some(l) = &self.latent_key {
            map.insert("latentKey".into(), Value::String(l.clone()));
        }
        if !self.obs_keys.is_empty() {
            map.insert("obsKeys".into(), serde_json::json!(self.obs_keys));
        }
        map
    }
}
