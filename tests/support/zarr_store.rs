//! Writes an AnnData Zarr v2 store at test time, for sizes the fixtures do
//! not have (the PBMC fixtures have 700 cells; a large gene column needs
//! 100k+). Arrays are stored uncompressed (`"compressor": null`), in the
//! layout anndata 0.12 writes: a dataframe `obs`/`var` with a vlen-utf8
//! `_index`, `obsm/X_umap`, and `X` as a `csc_matrix` group.

use std::fs;
use std::path::Path;

use serde_json::{json, Value};

/// A seeded sparse matrix and the dense columns it stands for.
pub struct SparseStore {
    pub n_obs: usize,
    pub n_vars: usize,
    /// `columns[g][cell]`, the values a viewer must receive for gene `g`.
    pub columns: Vec<Vec<f32>>,
}

impl SparseStore {
    /// A matrix where about one cell in `every` holds a value per gene.
    pub fn seeded(n_obs: usize, n_vars: usize, every: u64, seed: u64) -> Self {
        let mut state = seed | 1;
        let mut next = move || {
            // xorshift64: deterministic and good enough to scatter values.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let columns = (0..n_vars)
            .map(|_| {
                (0..n_obs)
                    .map(|_| {
                        let r = next();
                        if r % every == 0 {
                            ((r >> 32) % 10_000) as f32 / 97.0 + 0.01
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect();
        Self {
            n_obs,
            n_vars,
            columns,
        }
    }

    /// Gene `g` as the little-endian float32 bytes of its file.
    pub fn gene_bytes(&self, g: usize) -> Vec<u8> {
        self.columns[g]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }

    /// Writes the store as `dir` (a `.zarr` folder), X as CSC.
    pub fn write_csc(&self, dir: &Path) {
        let mut indptr = vec![0i64];
        let mut indices = Vec::new();
        let mut data = Vec::new();
        for column in &self.columns {
            for (row, &v) in column.iter().enumerate() {
                if v != 0.0 {
                    indices.push(row as i32);
                    data.push(v);
                }
            }
            indptr.push(indices.len() as i64);
        }
        group(
            dir,
            &json!({"encoding-type": "anndata", "encoding-version": "0.1.0"}),
        );
        let names = |prefix: &str, n: usize| -> Vec<String> {
            (0..n).map(|i| format!("{prefix}{i}")).collect()
        };
        frame(&dir.join("obs"), &names("cell", self.n_obs));
        frame(&dir.join("var"), &names("gene", self.n_vars));
        group(
            &dir.join("obsm"),
            &json!({"encoding-type": "dict", "encoding-version": "0.1.0"}),
        );
        let umap: Vec<u8> = (0..self.n_obs)
            .flat_map(|i| [(i % 1000) as f32, (i / 1000) as f32])
            .flat_map(f32::to_le_bytes)
            .collect();
        array(&dir.join("obsm/X_umap"), "<f4", &[self.n_obs, 2], 4, &umap);
        group(
            &dir.join("X"),
            &json!({"encoding-type": "csc_matrix", "encoding-version": "0.1.0",
                   "shape": [self.n_obs, self.n_vars]}),
        );
        array(
            &dir.join("X/indptr"),
            "<i8",
            &[indptr.len()],
            8,
            &indptr
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<_>>(),
        );
        array(
            &dir.join("X/indices"),
            "<i4",
            &[indices.len()],
            4,
            &indices
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<_>>(),
        );
        array(
            &dir.join("X/data"),
            "<f4",
            &[data.len()],
            4,
            &data
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<_>>(),
        );
    }
}

fn group(dir: &Path, attrs: &Value) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(".zgroup"), json!({"zarr_format": 2}).to_string()).unwrap();
    fs::write(dir.join(".zattrs"), attrs.to_string()).unwrap();
}

/// A dataframe with only its index.
fn frame(dir: &Path, index: &[String]) {
    group(
        dir,
        &json!({"_index": "_index", "column-order": [],
               "encoding-type": "dataframe", "encoding-version": "0.2.0"}),
    );
    let at = dir.join("_index");
    fs::create_dir_all(&at).unwrap();
    let meta = json!({"chunks": [index.len()], "compressor": null, "dtype": "|O",
                      "fill_value": 0, "filters": [{"id": "vlen-utf8"}], "order": "C",
                      "shape": [index.len()], "zarr_format": 2});
    fs::write(at.join(".zarray"), meta.to_string()).unwrap();
    fs::write(
        at.join(".zattrs"),
        json!({"encoding-type": "string-array", "encoding-version": "0.2.0"}).to_string(),
    )
    .unwrap();
    // numcodecs VLenUTF8: item count, then each item's length and bytes.
    let mut chunk = (index.len() as u32).to_le_bytes().to_vec();
    for name in index {
        chunk.extend_from_slice(&(name.len() as u32).to_le_bytes());
        chunk.extend_from_slice(name.as_bytes());
    }
    fs::write(at.join("0"), chunk).unwrap();
}

/// A numeric array in chunks of 64 Ki rows (the last one padded, as Zarr
/// stores whole chunks).
fn array(dir: &Path, dtype: &str, shape: &[usize], item: usize, bytes: &[u8]) {
    const CHUNK_ROWS: usize = 65_536;
    fs::create_dir_all(dir).unwrap();
    let row_bytes = item * shape[1..].iter().product::<usize>();
    let mut chunks = shape.to_vec();
    chunks[0] = CHUNK_ROWS.min(shape[0]).max(1);
    let meta = json!({"chunks": chunks, "compressor": null, "dtype": dtype, "fill_value": 0,
                      "filters": null, "order": "C", "shape": shape, "zarr_format": 2});
    fs::write(dir.join(".zarray"), meta.to_string()).unwrap();
    fs::write(
        dir.join(".zattrs"),
        json!({"encoding-type": "array", "encoding-version": "0.2.0"}).to_string(),
    )
    .unwrap();
    let suffix = ".0".repeat(shape.len() - 1);
    for (i, rows) in bytes.chunks(chunks[0] * row_bytes).enumerate() {
        let mut chunk = rows.to_vec();
        chunk.resize(chunks[0] * row_bytes, 0);
        fs::write(dir.join(format!("{i}{suffix}")), chunk).unwrap();
    }
}
