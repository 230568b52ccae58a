//! Launch choices for serving an AnnData store (the 0.9.4 CLI flags).

use std::path::PathBuf;

use serde_json::{Map, Value};

use super::csr_index::IndexProgressHook;

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
        // `KEY:0,1` names columns; a suffix that is no list of integers is
        // part of the key (an obsm key may hold a colon), as 0.9.5 reads it.
        let columns = text.rsplit_once(':').and_then(|(key, cols)| {
            let parsed = cols
                .split(',')
                .map(|c| c.trim().parse::<u64>())
                .collect::<Result<Vec<_>, _>>()
                .ok()?;
            (!key.is_empty()).then_some((key, parsed))
        });
        match columns {
            Some((key, columns)) => Ok(Self {
                key: key.to_owned(),
                columns: Some(columns),
            }),
            None if !text.is_empty() => Ok(Self {
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
    /// `--centroid-min-points`: the fewest cells a category needs for its
    /// centroid and outlier quantiles (`None`: the store's own, else 10).
    pub centroid_min_points: Option<u64>,
    /// `--normalize-embeddings` / `--no-normalize-embeddings`: whether the
    /// byte viewer scales embeddings into its coordinate range (`None`: the
    /// store's own choice, else scaled).
    pub normalize_embeddings: Option<bool>,
    /// `--modality`: the modality a multimodal store (MuData) opens on.
    pub modality: Option<String>,
    /// `--vector-field-default`: the vector field the overlay opens on.
    pub vector_field_default: Option<String>,
    /// Told how a CSR gene-index build advances (`None`: log lines).
    pub index_progress: Option<IndexProgressHook>,
}

impl AnnDataOptions {
    /// The 0.9.5 `defaults` document: only the choices given, in 0.9.5's
    /// key order (docs/PROTOCOL.md, `/_cellucid/datasets`).
    pub fn launch_defaults(&self) -> Map<String, Value> {
        let mut map = Map::new();
        if let Some(m) = &self.modality {
            map.insert("modality".into(), Value::String(m.clone()));
        }
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
        if let Some(f) = &self.vector_field_default {
            map.insert("vectorFieldDefault".into(), Value::String(f.clone()));
        }
        if !self.obs_keys.is_empty() {
            map.insert("obsKeys".into(), serde_json::json!(self.obs_keys));
        }
        if let Some(n) = self.normalize_embeddings {
            map.insert("normalizeEmbeddings".into(), Value::Bool(n));
        }
        if let Some(n) = self.centroid_min_points {
            map.insert("centroidMinPoints".into(), Value::from(n));
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_defaults_hold_the_choices_given_in_the_0_9_5_key_order() {
        assert!(AnnDataOptions::default().launch_defaults().is_empty());
        let options = AnnDataOptions {
            modality: Some("rna".into()),
            embeddings: [
                None,
                Some(EmbeddingChoice::parse("X_umap:1,0").unwrap()),
                None,
            ],
            knn: Some("connectivities".into()),
            expression: Some(ExpressionSource::Layer("log1p".into())),
            gene_id_column: Some("symbol".into()),
            latent_key: Some("X_pca".into()),
            vector_field_default: Some("velocity".into()),
            obs_keys: vec!["cell_type".into()],
            normalize_embeddings: Some(false),
            centroid_min_points: Some(5),
            ..AnnDataOptions::default()
        };
        assert_eq!(
            Value::Object(options.launch_defaults()).to_string(),
            r#"{"modality":"rna","embedding2d":{"key":"X_umap","columns":[1,0]},"knn":"connectivities","expression":"layers/log1p","geneIdColumn":"symbol","latentKey":"X_pca","vectorFieldDefault":"velocity","obsKeys":["cell_type"],"normalizeEmbeddings":false,"centroidMinPoints":5}"#
        );
    }

    #[test]
    fn an_embedding_suffix_that_is_no_column_list_belongs_to_the_key() {
        let cols = EmbeddingChoice::parse("X_pca:0, 1").unwrap();
        assert_eq!(
            (cols.key.as_str(), cols.columns),
            ("X_pca", Some(vec![0, 1]))
        );
        // Refused before ("columns must be integers"); 0.9.5 reads a key.
        let key = EmbeddingChoice::parse("X_umap:abc").unwrap();
        assert_eq!((key.key.as_str(), key.columns), ("X_umap:abc", None));
        let key = EmbeddingChoice::parse(":0").unwrap();
        assert_eq!((key.key.as_str(), key.columns), (":0", None));
        assert!(EmbeddingChoice::parse("").is_err());
    }
}
