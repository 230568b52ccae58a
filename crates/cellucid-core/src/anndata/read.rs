//! Reading an AnnData store by name: what a pipeline asks for.
//!
//! [`AnnData::open`] reads metadata only; these methods read one thing each,
//! named the way a notebook names it: a gene by its var name, an obs column
//! by its name, an embedding by its `obsm` key, the cell and gene names.
//! Nothing is cached here: a caller that looks up many genes reads
//! [`AnnData::var_names`] once and uses [`AnnData::gene_at`].

use super::backend::join;
use super::{AnnData, AnnDataError, FrameColumn, Matrix, Result};

/// An `obsm` matrix read whole: one row of `width` values per cell.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedding {
    key: String,
    width: usize,
    values: Vec<f32>,
}

impl Embedding {
    /// The `obsm` key it was read from (`X_umap`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Values per cell (2 for a 2-D embedding).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of cells.
    pub fn n_rows(&self) -> usize {
        self.values.len().checked_div(self.width).unwrap_or(0)
    }

    /// The coordinates of cell `row`, or `None` past the last cell.
    pub fn row(&self, row: usize) -> Option<&[f32]> {
        let start = row.checked_mul(self.width)?;
        self.values.get(start..start.checked_add(self.width)?)
    }

    /// One slice of `width` values per cell, in cell order.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = &[f32]> + '_ {
        // `width` is at least 1 (checked when read), so chunks_exact is sound.
        self.values.chunks_exact(self.width.max(1))
    }

    /// All values, row-major (cell 0's coordinates first).
    pub fn as_slice(&self) -> &[f32] {
        &self.values
    }
}

impl AnnData {
    /// The cell names (obs's index), in row order.
    ///
    /// # Errors
    /// When the index cannot be read or is not text.
    pub fn obs_names(&self) -> Result<Vec<String>> {
        self.obs().index(self.backend())
    }

    /// The gene names (var's index), in column order of `X`.
    ///
    /// # Errors
    /// When the index cannot be read or is not text.
    pub fn var_names(&self) -> Result<Vec<String>> {
        self.var().index(self.backend())
    }

    /// The column of `X` that holds gene `name` (matched exactly against
    /// var's index).
    ///
    /// # Errors
    /// [`AnnDataError::UnknownName`] when no gene has that name; a read
    /// error when var's index cannot be read.
    pub fn var_position(&self, name: &str) -> Result<u64> {
        let names = self.var_names()?;
        names
            .iter()
            .position(|n| n == name)
            .map(|i| i as u64)
            .ok_or_else(|| AnnDataError::UnknownName {
                element: "var".into(),
                name: name.to_owned(),
                count: names.len(),
            })
    }

    /// The expression values of gene `name` in `X`, one per cell (zeros of a
    /// sparse matrix included), as `f32`.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use cellucid_core::anndata::AnnData;
    ///
    /// let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/anndata/pbmc68k_reduced.h5ad");
    /// let adata = AnnData::open(path.as_ref())?;
    /// let hes4 = adata.gene("HES4")?;
    /// assert_eq!(hes4.len() as u64, adata.n_obs());
    /// println!("HES4 in the first cell: {}", hes4[0]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`AnnDataError::Missing`] when the store has no `X`;
    /// [`AnnDataError::UnknownName`] when no gene has that name; a read
    /// error when the values cannot be read.
    pub fn gene(&self, name: &str) -> Result<Vec<f32>> {
        let x = self.x_or_missing()?;
        let col = self.var_position(name)?;
        x.column(self.backend(), col)
    }

    /// The values of `X`'s column `col`, one per cell, as `f32`: the fast
    /// form of [`Self::gene`] when the position is known.
    ///
    /// # Errors
    /// [`AnnDataError::Missing`] when the store has no `X`;
    /// [`AnnDataError::Invalid`] when `col` is past the last gene.
    pub fn gene_at(&self, col: u64) -> Result<Vec<f32>> {
        self.x_or_missing()?.column(self.backend(), col)
    }

    /// The obs column `name`, decoded: numbers (with the missing slots of a
    /// nullable column), or categories with one code per cell.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use cellucid_core::anndata::{AnnData, FrameColumn};
    ///
    /// let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/anndata/pbmc68k_reduced.h5ad");
    /// let adata = AnnData::open(path.as_ref())?;
    /// match adata.obs_values("bulk_labels")? {
    ///     FrameColumn::Categorical { codes, categories, .. } => {
    ///         let first = &categories[codes[0] as usize];
    ///         println!("{} categories; the first cell is {}", categories.len(), first.to_text());
    ///     }
    ///     FrameColumn::Continuous { values, .. } => println!("{} numbers", values.len()),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`AnnDataError::UnknownName`] when obs has no such column; other
    /// variants when it cannot be read or is inconsistent.
    pub fn obs_values(&self, name: &str) -> Result<FrameColumn> {
        if self.obs().column(name).is_none() {
            return Err(AnnDataError::UnknownName {
                element: "obs".into(),
                name: name.to_owned(),
                count: self.obs().columns().len(),
            });
        }
        self.obs_column(name)
    }

    /// The embedding `obsm[key]`, read whole as `f32`, one row per cell.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use cellucid_core::anndata::AnnData;
    ///
    /// let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/anndata/pbmc68k_reduced.h5ad");
    /// let adata = AnnData::open(path.as_ref())?;
    /// let umap = adata.embedding("X_umap")?;
    /// assert_eq!(umap.width(), 2);
    /// let first = umap.row(0).unwrap_or_default();
    /// println!("cell 0 at ({}, {})", first[0], first[1]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`AnnDataError::UnknownName`] when obsm has no such key; other
    /// variants when it is not a numeric matrix or cannot be read.
    pub fn embedding(&self, key: &str) -> Result<Embedding> {
        if self.obsm_entry(key).is_none() {
            return Err(AnnDataError::UnknownName {
                element: "obsm".into(),
                name: key.to_owned(),
                count: self.obsm().len(),
            });
        }
        let (values, width) = self.obsm_values(key)?;
        let values = values
            .to_f32()
            .ok_or_else(|| AnnDataError::invalid(&join("obsm", key), "not numeric"))?;
        if width == 0 {
            return Err(AnnDataError::invalid(&join("obsm", key), "has no columns"));
        }
        Ok(Embedding {
            key: key.to_owned(),
            width,
            values,
        })
    }

    fn x_or_missing(&self) -> Result<&Matrix> {
        self.x().ok_or_else(|| AnnDataError::missing("X"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn open(name: &str) -> AnnData {
        AnnData::open(&crate::testdata::path(&format!("anndata/{name}"))).unwrap()
    }

    #[test]
    fn a_gene_by_name_equals_its_column_in_every_encoding() {
        // The dense original in HDF5 and both Zarr versions: one answer; the
        // thresholded sparse copies (|x| > 1) as CSR and CSC: one answer,
        // equal to the original where it kept a value.
        let dense = open("pbmc68k_reduced.h5ad");
        let col = dense.var_position("HES4").unwrap();
        let expected = dense.gene_at(col).unwrap();
        assert_eq!(expected.len() as u64, dense.n_obs());
        for name in ["pbmc68k_reduced.zarr", "pbmc68k_reduced.v3.zarr"] {
            assert_eq!(open(name).gene("HES4").unwrap(), expected, "{name}");
        }
        let csr = open("pbmc68k_reduced.csr.h5ad").gene("HES4").unwrap();
        assert_eq!(open("pbmc68k_reduced.csc.h5ad").gene("HES4").unwrap(), csr);
        assert!(csr.iter().any(|v| *v != 0.0));
        for (kept, original) in csr.iter().zip(&expected) {
            assert!(*kept == 0.0 || kept == original, "{kept} vs {original}");
        }
    }

    #[test]
    fn an_unknown_gene_is_named_with_the_count_of_genes() {
        let adata = open("pbmc68k_reduced.h5ad");
        let err = adata.gene("NOT-A-GENE").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, AnnDataError::UnknownName { .. }), "{text}");
        assert!(
            text.contains("NOT-A-GENE") && text.contains(&adata.n_vars().to_string()),
            "{text}"
        );
    }

    #[test]
    fn names_have_one_entry_per_row() {
        let adata = open("pbmc68k_reduced.h5ad");
        assert_eq!(adata.obs_names().unwrap().len() as u64, adata.n_obs());
        assert_eq!(adata.var_names().unwrap().len() as u64, adata.n_vars());
    }

    #[test]
    fn an_embedding_has_one_row_per_cell() {
        let adata = open("pbmc68k_reduced.h5ad");
        let umap = adata.embedding("X_umap").unwrap();
        assert_eq!(umap.n_rows() as u64, adata.n_obs());
        assert_eq!(umap.rows().len(), umap.n_rows());
        assert_eq!(umap.row(1).unwrap(), &umap.as_slice()[2..4]);
        assert!(umap.row(umap.n_rows()).is_none());
        assert!(matches!(
            adata.embedding("X_nope"),
            Err(AnnDataError::UnknownName { .. })
        ));
    }

    #[test]
    fn an_obs_column_by_name_is_categorical_with_a_code_per_cell() {
        let adata = open("pbmc68k_reduced.h5ad");
        match adata.obs_values("bulk_labels").unwrap() {
            FrameColumn::Categorical {
                codes, categories, ..
            } => {
                assert_eq!(codes.len() as u64, adata.n_obs());
                assert!(codes.iter().all(|c| (*c as usize) < categories.len()));
            }
            other => panic!("expected categories, got {other:?}"),
        }
        assert!(matches!(
            adata.obs_values("no_such_column"),
            Err(AnnDataError::UnknownName { .. })
        ));
    }
}
