//! The 0.9.4 folder files (`compact_v2` manifests, identity v3) synthesised
//! from an AnnData store, exactly as the 0.9.4 AnnData server answers them
//! (docs/FORMATS.md, "Files we synthesise"): float32, uncompressed paths.
//!
//! [`Plan::build`] reads what the manifests need (obs categories, the
//! embeddings for centroids, the graph's counts) once; payloads (embedding
//! coordinates, obs values and codes, outlier quantiles, gene columns,
//! edges) are computed on request.

mod file_key;
mod genes;
mod geometry;
#[cfg(test)]
mod golden;
mod graph;
mod hinted;
pub(crate) mod pyjson;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::column::Column;
use super::options::{AnnDataOptions, EmbeddingChoice, ExpressionSource};
use super::{AnnData, AnnDataError, FrameColumn, Matrix, StoreKind};
use crate::budget::{self, Lease};
use crate::error::SourceError;
use file_key::{CodesWidth, EdgeFile};
pub(crate) use file_key::{Manifest, SynthKey};
use geometry::Normalization;
pub(crate) use hinted::Hinted;

/// Cells a category needs for a centroid and outlier quantiles (0.9.4 default).
const DEFAULT_MIN_POINTS: usize = 10;
/// The 0.9.4 `centroid_outlier_quantile`.
const CENTROID_QUANTILE: f64 = 0.95;

/// One served embedding item.
#[derive(Clone, Debug)]
pub(crate) struct Item {
    pub(crate) id: String,
    key: String,
    columns: Vec<u64>,
    dim: usize,
    norm: Normalization,
}

/// How one obs field is served.
#[derive(Clone, Debug)]
enum ObsField {
    Continuous { name: String },
    Categorical { name: String },
}

/// What a synthesised key is computed from.
#[derive(Clone, Debug)]
enum Payload {
    Embedding(usize),
    ObsValues(String),
    ObsCodes(String, CodesWidth),
    ObsOutliers(String),
    Edges(EdgeFile),
    Vectors {
        field: String,
        item: usize,
    },
    /// The files of an obs column that could not be read while the plan
    /// was built: they answer 422 with why; the other files are served.
    Unreadable(String),
}

/// A payload that cannot be served as the format requires.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// Nothing is served under this key.
    #[error("not a synthesised file")]
    NotFound,
    /// The values break the format (non-finite numbers…): 422.
    #[error("{0}")]
    Unprocessable(String),
    /// The store could not be read.
    #[error(transparent)]
    Read(#[from] AnnDataError),
}

/// Why the folder-viewer files of a store cannot be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The input cannot be read as it is now (being written, gone, or no
    /// longer a store).
    #[error(transparent)]
    Input(#[from] SourceError),
    /// The store's contents do not allow the synthesis (nothing to plot, an
    /// option naming something absent…); shared by every request that
    /// needs the plan.
    #[error(transparent)]
    Build(Arc<AnnDataError>),
}

/// Everything needed to answer the synthesised files of one dataset.
#[derive(Debug)]
pub struct Plan {
    identity: Bytes,
    obs_manifest: Bytes,
    var_manifest: Option<Bytes>,
    connectivity_manifest: Option<Bytes>,
    items: Vec<Item>,
    payloads: HashMap<SynthKey, Payload>,
    expression: Option<Matrix>,
    n_genes: u64,
    latent_key: Option<String>,
    knn: Option<Matrix>,
    index_bytes: usize,
    min_points: usize,
    notes: Vec<String>,
}

fn uns_default<'a>(adata: &'a AnnData, key: &str) -> Option<&'a Value> {
    adata
        .uns_cellucid()
        .get("defaults")
        .and_then(|d| d.get(key))
        .filter(|v| !v.is_null())
}

/// The serving choices of one store version (docs/FORMATS.md, "Serving
/// choices"): the latent space, the graph and the expression matrix,
/// resolved once when the store is opened ([`validate`]) and used by its
/// plan. (Embeddings are resolved by the plan alone: choosing them reads
/// the coordinates.)
#[derive(Clone, Debug)]
pub(crate) struct Choices {
    latent_key: Option<String>,
    knn: Option<Matrix>,
    expression: Option<Matrix>,
    /// The dataframe naming the expression matrix's columns.
    gene_frame: Option<super::Frame>,
}

impl Choices {
    /// Applies each rule to `adata` under `options`.
    ///
    /// # Errors
    /// When an option names something absent.
    fn resolve(adata: &AnnData, options: &AnnDataOptions) -> Result<Self, AnnDataError> {
        let latent = resolve_latent(adata, options)?;
        let knn = resolve_knn(adata, options)?;
        let (expression, gene_frame) = expression_source(adata, options)?;
        Ok(Self {
            latent_key: latent,
            knn,
            expression,
            gene_frame: gene_frame.cloned(),
        })
    }

    /// The matrix genes are served from.
    pub(crate) fn expression(&self) -> Option<&Matrix> {
        self.expression.as_ref()
    }
}

impl Plan {
    /// Builds the manifests for `adata` under `id` / `name`.
    ///
    /// # Errors
    /// When an option names something absent, or nothing can be plotted.
    pub fn build(
        adata: &AnnData,
        options: &AnnDataOptions,
        id: &str,
        name: &str,
    ) -> Result<Self, AnnDataError> {
        let choices = Choices::resolve(adata, options)?;
        Self::build_with(adata, options, &choices, id, name)
    }

    /// [`Plan::build`] with the serving choices already resolved.
    ///
    /// # Errors
    /// When nothing can be plotted, or the store cannot be read.
    pub(crate) fn build_with(
        adata: &AnnData,
        options: &AnnDataOptions,
        choices: &Choices,
        id: &str,
        name: &str,
    ) -> Result<Self, AnnDataError> {
        let mut notes = Vec::new();
        let n = adata.n_obs();
        let n_usize =
            usize::try_from(n).map_err(|_| AnnDataError::invalid("obs", "too many cells"))?;
        // --centroid-min-points, else the store's own, else 0.9.4's default.
        let min_points = options
            .centroid_min_points
            .or_else(|| uns_default(adata, "centroidMinPoints").and_then(Value::as_u64))
            .map_or(DEFAULT_MIN_POINTS, |m| m.max(1) as usize);

        // Embeddings.
        let items = resolve_embeddings(adata, options, &mut notes)?;
        if items.is_empty() {
            return Err(AnnDataError::invalid(
                "obsm",
                "no usable embedding (a numeric obsm matrix with 1-3 columns and some spread); pass --embedding-2d KEY",
            ));
        }
        // Held while the manifests are built, each under its lease of the
        // memory budget.
        let coords: Vec<Coords> = items
            .iter()
            .map(|item| {
                item_coords(adata, item).map(|c| Coords {
                    values: geometry::normalize(&c.values, &item.norm),
                    _lease: c._lease,
                })
            })
            .collect::<Result<_, _>>()?;

        // Latent space and graph.
        let latent_key = choices.latent_key.clone();
        notes.push(match &latent_key {
            Some(k) => format!("latent space  obsm['{k}'] (outlier quantiles)"),
            None => "latent space  none (no outlier quantiles; pass --latent-key KEY)".into(),
        });
        let (knn, edges_summary) =
            served_graph(adata, choices.knn.clone(), n_usize, &mut notes)?.unzip();

        // Obs fields.
        let obs = adata.obs();
        let selected = served_obs_columns(adata, options)?;
        let mut fields = Vec::new();
        let mut continuous = Vec::new();
        let mut categorical = Vec::new();
        let mut payloads = HashMap::new();
        for (index, col) in selected.iter().enumerate() {
            let spec = obs
                .column(col)
                .ok_or_else(|| AnnDataError::missing(&format!("obs/{col}")))?;
            if spec.encoding.is_continuous() == Some(true) {
                continuous.push(json!([index, col]));
                fields.push((ObsField::Continuous { name: col.clone() }, None));
                payloads.insert(SynthKey::ObsValues(index), Payload::ObsValues(col.clone()));
                continue;
            }
            let (codes, categories) = match adata.obs_column(col) {
                Ok(FrameColumn::Categorical {
                    codes, categories, ..
                }) => (codes, categories),
                Ok(FrameColumn::Continuous { .. }) => {
                    return Err(AnnDataError::invalid(
                        &format!("obs/{col}"),
                        "expected categories",
                    ))
                }
                // One bad column fails its own files only (SECURITY.md,
                // "Hostile dataset files"): left out of the manifest, its
                // files answer 422 saying why, the others are served.
                Err(err) if !err.is_busy() => {
                    tracing::warn!(column = %col, error = %err, "obs column not served");
                    notes.push(format!("obs column {col:?} not served: {err}"));
                    let why = format!("obs column {col:?} cannot be read: {err}");
                    let codes = CodesWidth::ALL.map(|w| SynthKey::ObsCodes(index, w));
                    for key in codes.into_iter().chain([SynthKey::ObsOutliers(index)]) {
                        payloads.insert(key, Payload::Unreadable(why.clone()));
                    }
                    continue;
                }
                Err(err) => return Err(err),
            };
            let width = CodesWidth::for_categories(categories.len());
            let centroids = Centroids {
                items: &items,
                coords: &coords,
                min_points,
            };
            categorical.push(categorical_row(
                index,
                col,
                &codes,
                &categories,
                width,
                &centroids,
            ));
            fields.push((
                ObsField::Categorical { name: col.clone() },
                Some(categories.len()),
            ));
            payloads.insert(
                SynthKey::ObsCodes(index, width),
                Payload::ObsCodes(col.clone(), width),
            );
            if latent_key.is_some() {
                payloads.insert(
                    SynthKey::ObsOutliers(index),
                    Payload::ObsOutliers(col.clone()),
                );
            }
        }
        let obs_manifest = obs_manifest(n, &continuous, &categorical, latent_key.as_deref());

        // Genes.
        let (expression, gene_frame) = (choices.expression.clone(), choices.gene_frame.as_ref());
        let n_genes = expression.as_ref().map_or(0, |m| m.shape[1]);
        let var_manifest = match (&expression, gene_frame) {
            (Some(m), Some(frame)) => {
                let names =
                    genes::gene_names(adata.backend(), frame, options.gene_id_column.as_deref())?;
                if names.names.len() as u64 != m.shape[1] {
                    return Err(AnnDataError::invalid(
                        &m.path,
                        "gene count differs from its var dataframe",
                    ));
                }
                notes.push(format!(
                    "genes         {} from {} ({})",
                    m.shape[1],
                    m.path,
                    m.layout.as_str()
                ));
                Some(var_manifest(n, &names))
            }
            _ => None,
        };

        // Connectivity.
        let index_bytes = if n <= 65536 { 2 } else { 4 };
        let connectivity_manifest = edges_summary.map(|edges| {
            for e in [EdgeFile::Sources, EdgeFile::Destinations, EdgeFile::Weights] {
                payloads.insert(SynthKey::Edges(e), Payload::Edges(e));
            }
            connectivity_manifest(n, edges, index_bytes)
        });

        // Embedding files and vector fields.
        for (e, item) in items.iter().enumerate() {
            let file = SynthKey::Embedding {
                index: e,
                dim: item.dim,
            };
            payloads.insert(file, Payload::Embedding(e));
        }
        let embeddings = embeddings_doc(&items, options);
        // --vector-field-default implies serving the fields it picks from.
        let vector_fields = if options.vector_fields || options.vector_field_default.is_some() {
            let default = options.vector_field_default.as_deref();
            vector_fields(adata, &items, default, &mut payloads)
        } else {
            None
        };

        let n_cat = fields
            .iter()
            .filter(|(f, _)| matches!(f, ObsField::Categorical { .. }))
            .count();
        let n_cont = fields.len() - n_cat;
        let obs_fields = obs_field_docs(&fields);
        let mut identity = json!({
            "version": 3,
            "id": id,
            "name": name,
            "description": "Loaded directly from AnnData",
            "created_at": utc_now(),
            "cellucid_data_version": "anndata_adapter",
            "stats": {
                "n_cells": n, "n_genes": n_genes, "n_obs_fields": fields.len(),
                "n_categorical_fields": n_cat, "n_continuous_fields": n_cont,
                "has_connectivity": edges_summary.is_some(),
                "n_edges": edges_summary.map(|e| e.n_edges),
            },
            "embeddings": embeddings,
            "obs_fields": obs_fields,
            "source": {"name": match adata.kind() { StoreKind::H5ad => "H5AD file", _ => "Zarr store" }},
        });
        if let (Some(vf), Some(map)) = (vector_fields, identity.as_object_mut()) {
            map.insert("vector_fields".into(), vf);
        }
        notes.insert(
            0,
            format!(
                "embeddings    {}",
                items
                    .iter()
                    .map(|i| format!("{} ({}d)", i.id, i.dim))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        Ok(Self {
            identity: Bytes::from(pyjson::to_vec(&identity)),
            obs_manifest: Bytes::from(pyjson::to_vec(&obs_manifest)),
            var_manifest: var_manifest.map(|v| Bytes::from(pyjson::to_vec(&v))),
            connectivity_manifest: connectivity_manifest.map(|v| Bytes::from(pyjson::to_vec(&v))),
            items,
            payloads,
            expression,
            n_genes,
            latent_key,
            knn,
            index_bytes,
            min_points,
            notes,
        })
    }

    /// Lines for the startup block: embeddings, latent space, graph, genes.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The expression matrix genes are served from.
    pub fn expression(&self) -> Option<&Matrix> {
        self.expression.as_ref()
    }

    /// The bytes of manifest `m`, when this dataset has it.
    pub(crate) fn manifest(&self, m: Manifest) -> Option<Bytes> {
        match m {
            Manifest::Identity => Some(self.identity.clone()),
            Manifest::Obs => Some(self.obs_manifest.clone()),
            Manifest::Var => self.var_manifest.clone(),
            Manifest::Connectivity => self.connectivity_manifest.clone(),
        }
    }

    /// Whether gene `g` is served (`var/{g}.values.f32`).
    pub(crate) fn has_gene(&self, g: u64) -> bool {
        g < self.n_genes
    }

    /// Whether `key` is a synthesised payload (not a manifest, not a gene).
    pub(crate) fn has_payload(&self, key: SynthKey) -> bool {
        self.payloads.contains_key(&key)
    }

    /// Computes the bytes of payload `key` (not genes: see
    /// [`Plan::check_gene`]).
    ///
    /// # Errors
    /// [`PayloadError`] when there is no such payload or its values break
    /// the format.
    pub(crate) fn payload(&self, adata: &AnnData, key: SynthKey) -> Result<Bytes, PayloadError> {
        let payload = self.payloads.get(&key).ok_or(PayloadError::NotFound)?;
        let n = adata.n_obs() as usize;
        Ok(match payload {
            Payload::Embedding(e) => embedding_bytes(adata, &self.items[*e], n)?,
            Payload::ObsValues(col) => match adata.obs_column(col)? {
                FrameColumn::Continuous { values, missing } => {
                    let mut v = values.to_f32().ok_or_else(|| {
                        PayloadError::Unprocessable(format!("obs column {col:?} is not numeric"))
                    })?;
                    if let Some(mask) = missing {
                        for (x, &m) in v.iter_mut().zip(&mask) {
                            if m {
                                *x = f32::NAN;
                            }
                        }
                    }
                    check_finite(&format!("obs column {col:?}"), &v)?;
                    f32_bytes(v.into_iter())
                }
                FrameColumn::Categorical { .. } => return Err(PayloadError::NotFound),
            },
            Payload::ObsCodes(col, width) => {
                let FrameColumn::Categorical { codes, .. } = adata.obs_column(col)? else {
                    return Err(PayloadError::NotFound);
                };
                let mut out = Vec::with_capacity(n * 4);
                for c in codes {
                    match width {
                        CodesWidth::U8 => out.push(u8::try_from(c).unwrap_or(u8::MAX)),
                        CodesWidth::U16 => out
                            .extend_from_slice(&u16::try_from(c).unwrap_or(u16::MAX).to_le_bytes()),
                        CodesWidth::U32 => out
                            .extend_from_slice(&u32::try_from(c).unwrap_or(u32::MAX).to_le_bytes()),
                    }
                }
                Bytes::from(out)
            }
            Payload::ObsOutliers(col) => {
                let Some(latent) = &self.latent_key else {
                    return Err(PayloadError::NotFound);
                };
                let FrameColumn::Categorical {
                    codes, categories, ..
                } = adata.obs_column(col)?
                else {
                    return Err(PayloadError::NotFound);
                };
                // The 0.9.4 adapter converts the latent matrix to float32
                // first. Read it in row blocks so a 1M-cell latent space
                // never sits in memory whole.
                let width = adata.obsm_entry(latent).map_or(0, |e| e.width as usize);
                f32_bytes(
                    geometry::outlier_quantiles_blocked(
                        n,
                        width,
                        &codes,
                        categories.len(),
                        self.min_points,
                        &mut |rows| {
                            let block = adata
                                .obsm_rows(latent, rows.start as u64..rows.end as u64)?
                                .into_f32()
                                .ok_or_else(|| AnnDataError::invalid(latent, "not numeric"))?;
                            if block.len() != rows.len() * width {
                                return Err(AnnDataError::invalid(
                                    latent,
                                    "returned fewer values than its shape promises",
                                ));
                            }
                            Ok(block)
                        },
                    )?
                    .into_iter(),
                )
            }
            Payload::Edges(file) => {
                let m = self.knn.as_ref().ok_or(PayloadError::NotFound)?;
                let parts = m.read_sparse(adata.backend())?;
                let edges =
                    graph::edges(&parts, m.layout, n).map_err(PayloadError::Unprocessable)?;
                match file {
                    EdgeFile::Weights => Bytes::from(
                        edges
                            .weights
                            .iter()
                            .flat_map(|w| w.to_le_bytes())
                            .collect::<Vec<u8>>(),
                    ),
                    EdgeFile::Sources | EdgeFile::Destinations => {
                        let ids = if *file == EdgeFile::Sources {
                            &edges.src
                        } else {
                            &edges.dst
                        };
                        let mut out = Vec::with_capacity(ids.len() * self.index_bytes);
                        for &i in ids {
                            if self.index_bytes == 2 {
                                out.extend_from_slice(
                                    &u16::try_from(i).unwrap_or(u16::MAX).to_le_bytes(),
                                );
                            } else {
                                out.extend_from_slice(&i.to_le_bytes());
                            }
                        }
                        Bytes::from(out)
                    }
                }
            }
            Payload::Unreadable(why) => return Err(PayloadError::Unprocessable(why.clone())),
            Payload::Vectors { field, item } => {
                let item = &self.items[*item];
                let (values, width) = adata.obsm_matrix(field)?;
                let cols: Vec<usize> = item.columns.iter().map(|&c| c as usize).collect();
                if cols.iter().any(|&c| c >= width) {
                    return Err(PayloadError::NotFound);
                }
                let v: Vec<f32> = values
                    .chunks_exact(width)
                    .flat_map(|row| cols.iter().map(move |&c| (row[c] * item.norm.scale) as f32))
                    .collect();
                check_finite(&format!("vector field {field:?}"), &v)?;
                f32_bytes(v.into_iter())
            }
        })
    }

    /// Checks that gene `g`'s `column` can be served: the format carries
    /// finite values only.
    ///
    /// # Errors
    /// [`PayloadError::Unprocessable`] when a value is not finite.
    pub fn check_gene(&self, g: u64, column: &Column) -> Result<(), PayloadError> {
        check_finite_at(&format!("gene {g}"), column.stored_values(), |k| {
            column.stored_row(k)
        })
    }

    /// The latent key in use.
    pub fn latent_key(&self) -> Option<&str> {
        self.latent_key.as_deref()
    }
}

/// The latent space: `--latent-key`, else `uns['cellucid']['defaults']
/// ['latentKey']`, else `X_pca` when present.
///
/// # Errors
/// When the chosen key is not in obsm.
pub(crate) fn resolve_latent(
    adata: &AnnData,
    options: &AnnDataOptions,
) -> Result<Option<String>, AnnDataError> {
    match options.latent_key.clone().or_else(|| {
        uns_default(adata, "latentKey")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }) {
        Some(k) => {
            if adata.obsm().iter().any(|e| e.key == k) {
                Ok(Some(k))
            } else {
                Err(AnnDataError::missing(&format!("obsm/{k}")))
            }
        }
        None => Ok(adata.obsm_entry("X_pca").map(|e| e.key.clone())),
    }
}

/// The graph: `--knn`, else `uns['cellucid']['defaults']['knn']`, else
/// `obsp['connectivities']` (or, pre-0.7, `uns/neighbors/connectivities`).
///
/// # Errors
/// When the chosen key is not in obsp.
pub(crate) fn resolve_knn(
    adata: &AnnData,
    options: &AnnDataOptions,
) -> Result<Option<Matrix>, AnnDataError> {
    let knn_key = options.knn.clone().or_else(|| {
        uns_default(adata, "knn")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let find = |k: &str| {
        adata
            .obsp()
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, m)| m.clone())
    };
    match knn_key {
        Some(k) => find(&k)
            .map(Some)
            .ok_or_else(|| AnnDataError::missing(&format!("obsp/{k}"))),
        None => Ok(find("connectivities")),
    }
}

/// The chosen graph `knn` with its edge count and most neighbours of a
/// cell, when its edges can be made; a graph the memory budget cannot hold
/// is left out, not the dataset.
fn served_graph(
    adata: &AnnData,
    knn: Option<Matrix>,
    n: usize,
    notes: &mut Vec<String>,
) -> Result<Option<(Matrix, EdgeSummary)>, AnnDataError> {
    let Some(m) = knn else {
        notes.push("graph         none".into());
        return Ok(None);
    };
    let edges = match m.read_sparse(adata.backend()) {
        Ok(parts) => graph::edges(&parts, m.layout, n),
        Err(err @ AnnDataError::OverBudget { .. }) if !err.is_busy() => Err(err.to_string()),
        Err(err) => return Err(err),
    };
    Ok(match edges {
        Ok(e) => {
            notes.push(format!("graph         {} ({} edges)", m.path, e.src.len()));
            let summary = EdgeSummary {
                n_edges: e.src.len(),
                max_neighbors: e.max_neighbors,
            };
            Some((m, summary))
        }
        Err(why) => {
            notes.push(format!("graph         {} not served: {why}", m.path));
            None
        }
    })
}

/// What `connectivity_manifest.json` says of the edges.
#[derive(Clone, Copy, Debug)]
struct EdgeSummary {
    n_edges: usize,
    max_neighbors: u64,
}

/// `connectivity_manifest.json` for `n` cells, whose edge indices take
/// `index_bytes` each.
fn connectivity_manifest(n: u64, edges: EdgeSummary, index_bytes: usize) -> Value {
    json!({
        "format": "edge_pairs", "n_cells": n, "n_edges": edges.n_edges, "max_neighbors": edges.max_neighbors,
        "index_bytes": index_bytes, "index_dtype": if index_bytes == 2 { "uint16" } else { "uint32" },
        "sourcesPath": EdgeFile::Sources.path(), "destinationsPath": EdgeFile::Destinations.path(),
        "weightsPath": EdgeFile::Weights.path(), "weight_dtype": "float64", "weight_bytes": 8,
        "compression": null,
    })
}

/// `var_manifest.json` for `n` cells and the served gene `names`.
fn var_manifest(n: u64, names: &genes::GeneNames) -> Value {
    let fields: Vec<Value> = names
        .names
        .iter()
        .enumerate()
        .map(|(i, g)| json!([i, g]))
        .collect();
    let renamed: Vec<Value> = names.renamed.iter().map(|(a, b)| json!([a, b])).collect();
    json!({
        "_format": "compact_v2",
        "n_points": n,
        "compression": null,
        "quantization": null,
        "_varSchema": {"kind": "continuous", "pathPattern": file_key::GENE_PATTERN, "ext": "f32", "dtype": "float32", "quantized": false},
        "fields": fields,
        "gene_name_sets": [{"source": names.source, "filled_from_index": names.filled_from_index, "renamed": renamed, "names": null}],
    })
}

/// `obs_manifest.json` for `n` cells: the `[index, name]` of continuous
/// fields, the rows of categorical ones, and the latent space their
/// outlier quantiles are computed in.
fn obs_manifest(
    n: u64,
    continuous: &[Value],
    categorical: &[Value],
    latent_key: Option<&str>,
) -> Value {
    let mut schemas = Map::new();
    if !continuous.is_empty() {
        schemas.insert(
            "continuous".into(),
            json!({"pathPattern": file_key::OBS_VALUES_PATTERN, "ext": "f32", "dtype": "float32", "quantized": false}),
        );
    }
    if !categorical.is_empty() {
        schemas.insert(
            "categorical".into(),
            if latent_key.is_some() {
                json!({"codesPathPattern": file_key::OBS_CODES_PATTERN, "outlierPathPattern": file_key::OBS_OUTLIERS_PATTERN,
                       "outlierExt": "f32", "outlierDtype": "float32", "outlierQuantized": false})
            } else {
                json!({"codesPathPattern": file_key::OBS_CODES_PATTERN, "outlierPathPattern": null,
                       "outlierExt": null, "outlierDtype": null, "outlierQuantized": false})
            },
        );
    }
    json!({
        "_format": "compact_v2",
        "n_points": n,
        "centroid_outlier_quantile": CENTROID_QUANTILE,
        "latent_key": latent_key,
        "compression": null,
        "_obsSchemas": schemas,
        "_continuousFields": continuous,
        "_categoricalFields": categorical,
    })
}

/// The obs columns served, in manifest order: the `--obs-key` choices, else
/// every column the viewer format can carry.
fn served_obs_columns(
    adata: &AnnData,
    options: &AnnDataOptions,
) -> Result<Vec<String>, AnnDataError> {
    if !options.obs_keys.is_empty() {
        check_obs_keys(adata, options)?;
        return Ok(options.obs_keys.clone());
    }
    Ok(adata
        .obs()
        .columns()
        .iter()
        .filter(|c| {
            let ok = c.encoding.is_continuous().is_some();
            if !ok {
                tracing::warn!(column = %c.name, encoding = %c.encoding.describe(), "obs column not served");
            }
            ok
        })
        .map(|c| c.name.clone())
        .collect())
}

/// The identity's `embeddings`: each item with its file, and the default
/// item per dimension (an explicit choice, else the first of that
/// dimension).
fn embeddings_doc(items: &[Item], options: &AnnDataOptions) -> Value {
    let mut item_docs = Map::new();
    let mut defaults = Map::new();
    for (e, item) in items.iter().enumerate() {
        let file = SynthKey::Embedding {
            index: e,
            dim: item.dim,
        };
        item_docs.insert(
            item.id.clone(),
            json!({"label": item.id, "dimension": item.dim, "file": file.to_string(),
                   "source": {"key": item.key, "columns": item.columns}}),
        );
        defaults
            .entry(format!("{}d", item.dim))
            .or_insert_with(|| Value::String(item.id.clone()));
    }
    for (d, choice) in options.embeddings.iter().enumerate() {
        if let Some(c) = choice {
            if let Some(item) = items.iter().find(|i| i.dim == d + 1 && i.key == c.key) {
                defaults.insert(format!("{}d", d + 1), Value::String(item.id.clone()));
            }
        }
    }
    let default_dimension = items.iter().map(|i| i.dim).max().unwrap_or(2);
    json!({"default_dimension": default_dimension, "defaults": defaults, "items": item_docs})
}

/// The identity's `obs_fields`: the continuous fields, then the
/// categorical ones with their category counts.
fn obs_field_docs(fields: &[(ObsField, Option<usize>)]) -> Vec<Value> {
    let mut docs: Vec<Value> = fields
        .iter()
        .filter_map(|(f, _)| match f {
            ObsField::Continuous { name } => Some(json!({"key": name, "kind": "continuous"})),
            ObsField::Categorical { .. } => None,
        })
        .collect();
    docs.extend(fields.iter().filter_map(|(f, count)| match f {
        ObsField::Categorical { name, .. } => {
            Some(json!({"key": name, "kind": "category", "n_categories": count}))
        }
        ObsField::Continuous { .. } => None,
    }));
    docs
}

/// The embeddings categorical fields get centroids in.
struct Centroids<'a> {
    items: &'a [Item],
    coords: &'a [Coords],
    min_points: usize,
}

/// The `_categoricalFields` row of obs field `index`, column `col`:
/// `[index, name, categories, codes dtype, missing code, centroids by
/// embedding]`.
fn categorical_row(
    index: usize,
    col: &str,
    codes: &[i64],
    categories: &[super::Label],
    width: CodesWidth,
    centroids: &Centroids<'_>,
) -> Value {
    let mut by_embedding = Map::new();
    for (item, Coords { values: xy, .. }) in centroids.items.iter().zip(centroids.coords) {
        let list: Vec<Value> = geometry::centroids(xy, item.dim, codes, categories.len(), centroids.min_points, CENTROID_QUANTILE)
            .into_iter()
            .map(|c| json!({"category": categories[c.code].to_json(), "position": c.position, "n_points": c.n_points}))
            .collect();
        by_embedding.insert(item.id.clone(), Value::Array(list));
    }
    let labels: Vec<Value> = categories.iter().map(super::Label::to_json).collect();
    json!([
        index,
        col,
        labels,
        width.dtype(),
        width.missing(),
        by_embedding
    ])
}

/// Checks that every `--obs-key` names an obs column the viewer format can carry.
fn check_obs_keys(adata: &AnnData, options: &AnnDataOptions) -> Result<(), AnnDataError> {
    for k in &options.obs_keys {
        let spec = adata
            .obs()
            .column(k)
            .ok_or_else(|| AnnDataError::missing(&format!("obs/{k}")))?;
        if spec.encoding.is_continuous().is_none() {
            return Err(AnnDataError::invalid(
                &format!("obs/{k}"),
                spec.encoding.describe(),
            ));
        }
    }
    Ok(())
}

/// Checks every launch option against the store without reading data, so a
/// typo fails at startup with one line; returns the quick notes (latent
/// space, graph, genes) for the startup block and the choices resolved.
///
/// # Errors
/// The first option naming something absent or unusable.
pub(crate) fn validate(
    adata: &AnnData,
    options: &AnnDataOptions,
) -> Result<(Vec<String>, Choices), AnnDataError> {
    check_claims(adata)?;
    let latent = resolve_latent(adata, options)?;
    let knn = resolve_knn(adata, options)?;
    for choice in options.embeddings.iter().flatten() {
        if !adata.obsm().iter().any(|e| e.key == choice.key) {
            return Err(AnnDataError::missing(&format!("obsm/{}", choice.key)));
        }
    }
    check_obs_keys(adata, options)?;
    let (expression, frame) = expression_source(adata, options)?;
    if let (Some(col), Some(frame)) = (&options.gene_id_column, frame) {
        if frame.column(col).is_none() {
            return Err(AnnDataError::missing(&format!("{}/{col}", frame.path())));
        }
    }
    let latent_origin = if options.latent_key.is_some() {
        "--latent-key"
    } else if uns_default(adata, "latentKey").is_some() {
        "uns['cellucid'] defaults"
    } else {
        "default"
    };
    let knn_origin = if options.knn.is_some() {
        "--knn"
    } else if uns_default(adata, "knn").is_some() {
        "uns['cellucid'] defaults"
    } else {
        "default"
    };
    let notes = vec![
        match &latent {
            Some(k) => format!("latent space  obsm['{k}'] ({latent_origin})"),
            None => "latent space  none: no outlier quantiles (pass --latent-key KEY)".into(),
        },
        match &knn {
            Some(m) => format!("graph         {} ({knn_origin})", m.path),
            None => "graph         none (pass --knn KEY)".into(),
        },
        match &expression {
            Some(m) => format!(
                "genes         {} from {} ({})",
                m.shape[1],
                m.path,
                m.layout.as_str()
            ),
            None => "genes         none (no X, raw or layer)".into(),
        },
    ];
    let choices = Choices {
        latent_key: latent,
        knn,
        expression,
        gene_frame: frame.cloned(),
    };
    Ok((notes, choices))
}

/// `n` with thousands separators (`1,000,000,000`), for messages.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Checks what the metadata claims against what the file stores and
/// against the memory budget, without reading data, so a store whose
/// metadata cannot be satisfied is refused at startup with one line
/// (SECURITY.md, "Hostile dataset files"):
///
/// * an array the cells need (the obs index, the obsm matrices, a dense X)
///   that stores fewer bytes than its claimed elements can occupy (its
///   storage is plain, or was never written) contradicts the cell count;
/// * the folder-viewer files need at least one 2-D embedding of the cells
///   as `f64`; more than the whole budget can never be prepared.
///
/// # Errors
/// [`AnnDataError::Invalid`] naming the inconsistent element, or
/// [`AnnDataError::OverBudget`].
pub(crate) fn check_claims(adata: &AnnData) -> Result<(), AnnDataError> {
    let n = adata.n_obs();
    let b = adata.backend();
    let mut arrays: Vec<String> = adata.obs().index_path().into_iter().collect();
    if b.kind("obsm") == Some(super::NodeKind::Group) {
        arrays.extend(adata.obsm().iter().map(|e| format!("obsm/{}", e.key)));
    }
    if b.kind("X") == Some(super::NodeKind::Array) {
        arrays.push("X".into());
    }
    for path in &arrays {
        let Ok(info) = b.info(path) else { continue };
        // The least an element can take when stored as is (a string at
        // least one byte).
        let least = match info.dtype {
            super::Dtype::Int { bytes, .. } | super::Dtype::Float { bytes } => u64::from(bytes),
            _ => 1,
        };
        let claimed = super::budgeted::element_count(&info.shape).saturating_mul(least);
        match b.stored_bytes(path) {
            Some(stored) if stored < claimed => {
                return Err(AnnDataError::invalid(
                    path,
                    format!(
                        "obs claims {} cells but {path} stores {} bytes (shape {:?} needs at least {})",
                        grouped(n),
                        grouped(stored),
                        info.shape,
                        grouped(claimed)
                    ),
                ));
            }
            _ => {}
        }
    }
    let need = n.saturating_mul(2 * 8);
    budget::global()
        .check(
            || format!("obs claims {} cells: a 2-D embedding of them", grouped(n)),
            need,
        )
        .map_err(|err| AnnDataError::over_budget("obs", err))
}

fn f32_bytes(values: impl Iterator<Item = f32>) -> Bytes {
    // Sized up front: a flat_map collect cannot know its length and would
    // reallocate its way up to a multi-megabyte column.
    let mut out = Vec::with_capacity(values.size_hint().0 * 4);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Bytes::from(out)
}

/// The 0.9.4 diagnosis for values the format cannot carry.
fn check_finite(what: &str, values: &[f32]) -> Result<(), PayloadError> {
    check_finite_at(what, values, |k| k)
}

/// [`check_finite`] for values that sit at rows `row(k)` (a sparse column's
/// stored entries).
fn check_finite_at(
    what: &str,
    values: &[f32],
    row: impl Fn(usize) -> usize,
) -> Result<(), PayloadError> {
    if values.iter().all(|v| v.is_finite()) {
        return Ok(());
    }
    // Stored entries need not be in row order: the first rows, not the
    // first entries.
    let mut bad: Vec<usize> = values
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_finite())
        .map(|(k, _)| row(k))
        .collect();
    bad.sort_unstable();
    bad.truncate(5);
    if bad.is_empty() {
        return Ok(());
    }
    let nan = values.iter().filter(|v| v.is_nan()).count();
    let inf = values.iter().filter(|v| v.is_infinite()).count();
    Err(PayloadError::Unprocessable(format!(
        "{what} has values the viewer format cannot carry ({nan} missing/NaN, {inf} infinite; first at rows {bad:?})"
    )))
}

/// Rows of an embedding read per block while writing its file.
const EMBEDDING_BLOCK_ROWS: usize = 1 << 16;

/// Hands each row of `item`'s chosen columns (`cols`, checked against the
/// stored width) to `row`, reading `obsm` in blocks of
/// [`EMBEDDING_BLOCK_ROWS`] so only one block is decoded at a time.
fn each_embedding_row(
    adata: &AnnData,
    item: &Item,
    n: usize,
    mut row: impl FnMut(&[f64], &[usize]),
) -> Result<(), AnnDataError> {
    let path = super::backend::join("obsm", &item.key);
    let width = adata
        .obsm_entry(&item.key)
        .map(|e| e.width as usize)
        .ok_or_else(|| AnnDataError::missing(&path))?;
    let cols: Vec<usize> = item.columns.iter().map(|&c| c as usize).collect();
    if cols.iter().any(|&c| c >= width) {
        return Err(AnnDataError::invalid(
            &path,
            "columns do not match its width",
        ));
    }
    for start in (0..n).step_by(EMBEDDING_BLOCK_ROWS) {
        let end = (start + EMBEDDING_BLOCK_ROWS).min(n);
        let block = adata
            .obsm_rows(&item.key, start as u64..end as u64)?
            .to_f64()
            .ok_or_else(|| AnnDataError::invalid(&path, "not numeric"))?;
        if block.len() != (end - start) * width {
            return Err(AnnDataError::invalid(
                &path,
                "returned fewer values than its shape promises",
            ));
        }
        for values in block.chunks_exact(width) {
            row(values, &cols);
        }
    }
    Ok(())
}

/// The embedding file of `item`: its columns normalised, as float32, in
/// row blocks, so a 1M-cell embedding never sits in memory as f64 copies
/// (three of them, ~40 MB, which the allocator then kept).
fn embedding_bytes(adata: &AnnData, item: &Item, n: usize) -> Result<Bytes, AnnDataError> {
    let path = super::backend::join("obsm", &item.key);
    if item.columns.len() != item.norm.center.len() {
        return Err(AnnDataError::invalid(
            &path,
            "columns do not match its width",
        ));
    }
    let bytes = n.saturating_mul(item.columns.len()).saturating_mul(4);
    let _lease = budget::global()
        .reserve(|| format!("the embedding file of {path}"), bytes as u64)
        .map_err(|err| AnnDataError::over_budget(&path, err))?;
    let mut out: Vec<u8> =
        budget::try_vec(bytes, &path).map_err(|why| AnnDataError::invalid(&path, why))?;
    each_embedding_row(adata, item, n, |row, cols| {
        for (&c, center) in cols.iter().zip(&item.norm.center) {
            let v = (row[c] - center) * item.norm.scale;
            out.extend_from_slice(&(v as f32).to_le_bytes());
        }
    })?;
    Ok(Bytes::from(out))
}

/// An embedding's chosen columns as `f64`, row-major, with the part of the
/// memory budget they hold.
struct Coords {
    values: Vec<f64>,
    _lease: Lease<'static>,
}

/// The chosen columns of an embedding, read in row blocks (so only one
/// block of the whole matrix is decoded at a time) into a vector reserved
/// from the memory budget first: the cell count is the file's claim.
fn item_coords(adata: &AnnData, item: &Item) -> Result<Coords, AnnDataError> {
    let path = super::backend::join("obsm", &item.key);
    let n = adata.n_obs();
    let len = n.saturating_mul(item.columns.len() as u64);
    let lease = budget::global()
        .reserve(
            || format!("the {}-D embedding {path} of {n} cells", item.columns.len()),
            len.saturating_mul(8),
        )
        .map_err(|err| AnnDataError::over_budget(&path, err))?;
    let mut values: Vec<f64> = budget::try_vec(
        usize::try_from(len).map_err(|_| AnnDataError::invalid(&path, "too many cells"))?,
        &path,
    )
    .map_err(|why| AnnDataError::invalid(&path, why))?;
    let n = usize::try_from(n).map_err(|_| AnnDataError::invalid(&path, "too many cells"))?;
    each_embedding_row(adata, item, n, |row, cols| {
        values.extend(cols.iter().map(|&c| row[c]));
    })?;
    Ok(Coords {
        values,
        _lease: lease,
    })
}

/// Fills the 1d/2d/3d slots (docs/FORMATS.md, "Serving choices"): explicit choices and
/// `uns['cellucid']['defaults']`, else the X_umap rule, else a best guess.
fn resolve_embeddings(
    adata: &AnnData,
    options: &AnnDataOptions,
    notes: &mut Vec<String>,
) -> Result<Vec<Item>, AnnDataError> {
    let width_of = |key: &str| adata.obsm_entry(key).map(|e| e.width);
    let mut slots: [Option<(EmbeddingChoice, bool)>; 3] = Default::default();
    for (d, slot) in slots.iter_mut().enumerate() {
        if let Some(c) = &options.embeddings[d] {
            *slot = Some((c.clone(), true));
        } else if let Some(v) = uns_default(adata, &format!("embedding{}d", d + 1)) {
            let choice = match v {
                Value::String(k) => Some(EmbeddingChoice {
                    key: k.clone(),
                    columns: None,
                }),
                Value::Object(o) => o
                    .get("key")
                    .and_then(Value::as_str)
                    .map(|k| EmbeddingChoice {
                        key: k.to_owned(),
                        columns: o
                            .get("columns")
                            .and_then(Value::as_array)
                            .map(|a| a.iter().filter_map(Value::as_u64).collect()),
                    }),
                _ => None,
            };
            *slot = choice.map(|c| (c, false));
        }
    }
    if slots.iter().all(Option::is_none) {
        let umap_nd: Vec<usize> = (0..3)
            .filter(|d| width_of(&format!("X_umap_{}d", d + 1)).is_some())
            .collect();
        if !umap_nd.is_empty() {
            for d in umap_nd {
                slots[d] = Some((
                    EmbeddingChoice {
                        key: format!("X_umap_{}d", d + 1),
                        columns: None,
                    },
                    false,
                ));
            }
        } else if let Some(w) = width_of("X_umap").filter(|w| (1..=3).contains(w)) {
            slots[w as usize - 1] = Some((
                EmbeddingChoice {
                    key: "X_umap".into(),
                    columns: None,
                },
                false,
            ));
        }
    }
    let mut items = Vec::new();
    for (d, slot) in slots.iter().enumerate() {
        let Some((choice, explicit)) = slot else {
            continue;
        };
        let dim = d + 1;
        let width = width_of(&choice.key)
            .ok_or_else(|| AnnDataError::missing(&format!("obsm/{}", choice.key)))?;
        let columns = choice
            .columns
            .clone()
            .unwrap_or_else(|| (0..dim as u64).collect());
        if columns.len() != dim || columns.iter().any(|&c| c >= width) {
            return Err(AnnDataError::invalid(
                &format!("obsm/{}", choice.key),
                format!("has {width} columns; the {dim}d embedding needs {dim} of them, got {columns:?}"),
            ));
        }
        match make_item(adata, &choice.key, columns, width)? {
            Some(item) => items.push(item),
            None if *explicit => {
                return Err(AnnDataError::invalid(
                    &format!("obsm/{}", choice.key),
                    "has non-finite values or no spread, so it cannot be drawn",
                ))
            }
            None => notes.push(format!(
                "embedding {} skipped: non-finite values or no spread",
                choice.key
            )),
        }
    }
    if items.is_empty() {
        items = best_guess(adata, options)?;
    }
    items.sort_by(|a, b| (a.dim, &a.id).cmp(&(b.dim, &b.id)));
    Ok(items)
}

fn make_item(
    adata: &AnnData,
    key: &str,
    columns: Vec<u64>,
    width: u64,
) -> Result<Option<Item>, AnnDataError> {
    let whole =
        columns.len() as u64 == width && columns.iter().enumerate().all(|(i, &c)| c == i as u64);
    let id = if whole {
        key.to_owned()
    } else {
        format!(
            "{key}[{}]",
            columns
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let dim = columns.len();
    let probe = Item {
        id,
        key: key.to_owned(),
        columns,
        dim,
        norm: Normalization {
            center: vec![0.0; dim],
            scale: 1.0,
        },
    };
    let coords = item_coords(adata, &probe)?;
    Ok(geometry::normalization(&coords.values, dim).map(|norm| Item { norm, ..probe }))
}

/// The 0.9.4 best guess when no slot is filled: rank candidates by name.
fn best_guess(adata: &AnnData, options: &AnnDataOptions) -> Result<Vec<Item>, AnnDataError> {
    let tier = |key: &str| {
        let k = key.to_ascii_lowercase();
        let tiers: [&[&str]; 9] = [
            &["umap"],
            &["tsne", "t-sne", "t_sne"],
            &["draw_graph", "force"],
            &["phate"],
            &["pacmap", "trimap"],
            &["spatial"],
            &["diffmap"],
            &[],
            &["pca", "scvi", "latent", "harmony", "x_emb"],
        ];
        tiers
            .iter()
            .position(|t| t.iter().any(|p| k.contains(p)))
            .unwrap_or(7)
    };
    let is_vector = |key: &str| !key.starts_with("X_umap") && key.contains("_umap");
    let mut candidates: Vec<&super::ObsmEntry> = adata
        .obsm()
        .iter()
        .filter(|e| !is_vector(&e.key) && Some(&e.key) != options.latent_key.as_ref())
        .collect();
    candidates.sort_by(|a, b| (tier(&a.key), &a.key).cmp(&(tier(&b.key), &b.key)));
    for dim in [3u64, 2, 1] {
        for c in candidates.iter().filter(|c| c.width == dim) {
            if let Some(item) = make_item(adata, &c.key, (0..dim).collect(), c.width)? {
                return Ok(vec![item]);
            }
        }
    }
    for c in candidates.iter().filter(|c| c.width > 3) {
        if let Some(item) = make_item(adata, &c.key, vec![0, 1], c.width)? {
            return Ok(vec![item]);
        }
    }
    Ok(Vec::new())
}

/// Vector fields `<field>_umap[_<d>d]` drawn over the X_umap items;
/// `default` (`--vector-field-default`) is the one the overlay opens on.
fn vector_fields(
    adata: &AnnData,
    items: &[Item],
    default: Option<&str>,
    payloads: &mut HashMap<SynthKey, Payload>,
) -> Option<Value> {
    let mut fields = Map::new();
    let mut f = 0;
    let mut keys: Vec<&str> = adata
        .obsm()
        .iter()
        .map(|e| e.key.as_str())
        .filter(|k| !k.starts_with("X_umap") && k.contains("_umap"))
        .collect();
    keys.sort_unstable();
    let mut by_field: Vec<(String, Vec<&str>)> = Vec::new();
    for key in keys {
        let base = match key.rsplit_once('_') {
            Some((b, "1d" | "2d" | "3d")) => b,
            _ => key,
        };
        match by_field.iter_mut().find(|(b, _)| b == base) {
            Some((_, list)) => list.push(key),
            None => by_field.push((base.to_owned(), vec![key])),
        }
    }
    for (field_id, keys) in by_field {
        let mut files = Map::new();
        for (e, item) in items.iter().enumerate() {
            if !(item.key == "X_umap" || item.key == format!("X_umap_{}d", item.dim)) {
                continue;
            }
            let wanted = format!("{field_id}_{}d", item.dim);
            let source = keys
                .iter()
                .find(|k| **k == wanted)
                .or_else(|| keys.iter().find(|k| **k == field_id));
            let Some(source) = source else { continue };
            let width = adata
                .obsm()
                .iter()
                .find(|o| o.key == *source)
                .map_or(0, |o| o.width);
            if item.columns.iter().any(|&c| c >= width) {
                continue;
            }
            let path = SynthKey::Vectors { field: f, item: e };
            payloads.insert(
                path,
                Payload::Vectors {
                    field: (*source).to_owned(),
                    item: e,
                },
            );
            files.insert(item.id.clone(), Value::String(path.to_string()));
        }
        if !files.is_empty() {
            fields.insert(field_id.clone(), json!({"label": field_id, "files": files}));
            f += 1;
        }
    }
    // The chosen field when folder viewers can draw it, else the first.
    let default = default
        .filter(|d| fields.contains_key(*d))
        .map(str::to_owned)
        .or_else(|| fields.keys().next().cloned())?;
    Some(json!({"default_field": default, "fields": fields}))
}

/// Which matrix feeds genes, and the dataframe naming its columns
/// (docs/FORMATS.md, "Serving choices").
pub(crate) fn expression_source<'a>(
    adata: &'a AnnData,
    options: &AnnDataOptions,
) -> Result<(Option<Matrix>, Option<&'a super::Frame>), AnnDataError> {
    Ok(match &options.expression {
        Some(ExpressionSource::X) => (
            Some(adata.x().ok_or_else(|| AnnDataError::missing("X"))?.clone()),
            Some(adata.var()),
        ),
        Some(ExpressionSource::Raw) => {
            let raw = adata.raw().ok_or_else(|| AnnDataError::missing("raw/X"))?;
            (Some(raw.x.clone()), Some(&raw.var))
        }
        Some(ExpressionSource::Layer(name)) => {
            let m = adata
                .layers()
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, m)| m.clone())
                .ok_or_else(|| AnnDataError::missing(&format!("layers/{name}")))?;
            (Some(m), Some(adata.var()))
        }
        None => {
            if let Some(x) = adata.x() {
                (Some(x.clone()), Some(adata.var()))
            } else if let Some(raw) = adata.raw() {
                (Some(raw.x.clone()), Some(&raw.var))
            } else {
                let layers = adata.layers();
                let pick = if layers.len() == 1 {
                    layers.first()
                } else {
                    layers
                        .iter()
                        .find(|(k, _)| k.contains("norm") || k.contains("log"))
                        .or_else(|| {
                            layers
                                .iter()
                                .find(|(k, _)| k != "counts" && k != "raw_counts")
                        })
                        .or_else(|| layers.first())
                };
                (pick.map(|(_, m)| m.clone()), pick.map(|_| adata.var()))
            }
        }
    })
}

/// `YYYY-MM-DDTHH:MM:SSZ`, now.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
