//! Connectivity edges from a symmetric sparse graph (docs/FORMATS.md,
//! "Connectivity manifest and edges"): the strict upper triangle, sorted by (source, destination).

use crate::anndata::{MatrixLayout, SparseParts};

/// The three parallel edge arrays and the largest vertex degree.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Edges {
    pub(crate) src: Vec<u32>,
    pub(crate) dst: Vec<u32>,
    pub(crate) weights: Vec<f64>,
    pub(crate) max_neighbors: u64,
}

/// Derives the edges of an `n × n` graph; an error says why the graph
/// cannot be served (not symmetric, negative or non-finite weights…).
pub(crate) fn edges(parts: &SparseParts, layout: MatrixLayout, n: usize) -> Result<Edges, String> {
    let mut upper: Vec<(u32, u32, f64)> = Vec::new();
    let mut lower: Vec<(u32, u32, f64)> = Vec::new();
    for major in 0..parts.indptr.len().saturating_sub(1) {
        let (a, b) = (parts.indptr[major], parts.indptr[major + 1]);
        for k in a.max(0) as usize..b.max(0) as usize {
            let minor = parts.indices[k];
            let (row, col) = match layout {
                MatrixLayout::Csc => (minor, major as i64),
                _ => (major as i64, minor),
            };
            if row < 0 || col < 0 || row as usize >= n || col as usize >= n {
                return Err(format!("entry ({row}, {col}) is outside {n} cells"));
            }
            let w = parts.data[k];
            if !w.is_finite() || w < 0.0 {
                return Err(format!(
                    "weight {w} at ({row}, {col}) is negative or not finite"
                ));
            }
            if w == 0.0 || row == col {
                continue;
            }
            if row < col {
                upper.push((row as u32, col as u32, w));
            } else {
                lower.push((col as u32, row as u32, w));
            }
        }
    }
    upper.sort_by_key(|e| (e.0, e.1));
    lower.sort_by_key(|e| (e.0, e.1));
    if upper != lower {
        return Err("the graph is not symmetric (a distances matrix?)".into());
    }
    if upper
        .windows(2)
        .any(|w| (w[0].0, w[0].1) == (w[1].0, w[1].1))
    {
        return Err("the graph stores duplicate entries".into());
    }
    let mut degree = vec![0u64; n];
    for &(s, d, _) in &upper {
        degree[s as usize] += 1;
        degree[d as usize] += 1;
    }
    Ok(Edges {
        max_neighbors: degree.iter().copied().max().unwrap_or(0),
        src: upper.iter().map(|e| e.0).collect(),
        dst: upper.iter().map(|e| e.1).collect(),
        weights: upper.iter().map(|e| e.2).collect(),
    })
}
