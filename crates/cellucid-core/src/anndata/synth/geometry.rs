//! The derived numbers of the 0.9.4 adapter (docs/FORMATS.md, "Derived values"):
//! embedding normalisation, centroids, outlier quantiles.

/// Per-axis centre and one shared scale for an embedding.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Normalization {
    pub(crate) center: Vec<f64>,
    pub(crate) scale: f64,
}

/// `lo/hi` per axis, centre = midpoint, scale = 2 / widest range, so the
/// widest axis spans exactly [-1, 1]. `None` when an axis has no spread or
/// a value is not finite.
pub(crate) fn normalization(values: &[f64], dim: usize) -> Option<Normalization> {
    if dim == 0 || values.is_empty() || !values.len().is_multiple_of(dim) {
        return None;
    }
    let mut lo = vec![f64::INFINITY; dim];
    let mut hi = vec![f64::NEG_INFINITY; dim];
    for row in values.chunks_exact(dim) {
        for (a, &v) in row.iter().enumerate() {
            if !v.is_finite() {
                return None;
            }
            lo[a] = lo[a].min(v);
            hi[a] = hi[a].max(v);
        }
    }
    let range = lo
        .iter()
        .zip(&hi)
        .map(|(l, h)| h - l)
        .fold(0.0f64, f64::max);
    if range <= 0.0 || !range.is_finite() {
        return None;
    }
    Some(Normalization {
        center: lo.iter().zip(&hi).map(|(l, h)| (l + h) / 2.0).collect(),
        scale: 2.0 / range,
    })
}

/// Applies `n` (in f64; callers round to f32 when writing).
pub(crate) fn normalize(values: &[f64], n: &Normalization) -> Vec<f64> {
    let dim = n.center.len();
    values
        .chunks_exact(dim)
        .flat_map(|row| row.iter().zip(&n.center).map(|(v, c)| (v - c) * n.scale))
        .collect()
}

/// numpy's default (`linear`) quantile of unsorted `values`.
pub(crate) fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let virtual_index = (n - 1) as f64 * q;
    let prev = virtual_index.floor();
    let gamma = virtual_index - prev;
    let i = (prev as usize).min(n - 1);
    let j = (i + 1).min(n - 1);
    let (a, b) = (sorted[i], sorted[j]);
    let diff = b - a;
    // numpy's _lerp: a + diff*t, or b - diff*(1-t) for t >= 0.5.
    if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    }
}

/// Column means of the rows in `rows`, accumulated row by row.
fn mean_rows<T: Copy + Into<f64>>(values: &[T], dim: usize, rows: &[usize]) -> Vec<f64> {
    let mut sum = vec![0.0; dim];
    for &r in rows {
        for (a, s) in sum.iter_mut().enumerate() {
            *s += values[r * dim + a].into();
        }
    }
    sum.iter().map(|s| s / rows.len() as f64).collect()
}

fn distance<T: Copy + Into<f64>>(values: &[T], dim: usize, row: usize, to: &[f64]) -> f64 {
    to.iter()
        .enumerate()
        .map(|(a, c)| {
            let d = values[row * dim + a].into() - c;
            d * d
        })
        .sum::<f64>()
        .sqrt()
}

/// One category's centroid.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Centroid {
    pub(crate) code: usize,
    pub(crate) position: Vec<f64>,
    pub(crate) n_points: usize,
}

/// Centroids of every category with at least `min_points` cells, on
/// normalised coordinates; with `quantile_cut`, the farthest points beyond
/// that distance quantile are dropped first (if enough remain).
pub(crate) fn centroids(
    coords: &[f64],
    dim: usize,
    codes: &[i64],
    n_categories: usize,
    min_points: usize,
    quantile_cut: f64,
) -> Vec<Centroid> {
    let members = group_rows(codes, n_categories);
    let mut out = Vec::new();
    for (code, rows) in members.iter().enumerate() {
        let n = rows.len();
        if n == 0 || n < min_points {
            continue;
        }
        let mean = mean_rows(coords, dim, rows);
        let mut result = Centroid {
            code,
            position: mean.clone(),
            n_points: n,
        };
        if n > min_points {
            let d: Vec<f64> = rows
                .iter()
                .map(|&r| distance(coords, dim, r, &mean))
                .collect();
            let cut = quantile(&d, quantile_cut);
            let kept: Vec<usize> = rows
                .iter()
                .zip(&d)
                .filter(|(_, &dist)| dist <= cut)
                .map(|(&r, _)| r)
                .collect();
            if kept.len() >= min_points {
                result.position = mean_rows(coords, dim, &kept);
                result.n_points = kept.len();
            }
        }
        out.push(result);
    }
    out
}

/// Outlier quantile of every cell inside its category in the latent space
/// (the whole-matrix reference for [`outlier_quantiles_blocked`]):
/// (cells of its category at that distance or closer) / n; NaN for missing
/// codes and categories under `min_points`.
#[cfg(test)]
fn outlier_quantiles<T: Copy + Into<f64>>(
    latent: &[T],
    dim: usize,
    codes: &[i64],
    n_categories: usize,
    min_points: usize,
) -> Vec<f32> {
    let mut out = vec![f32::NAN; codes.len()];
    for rows in group_rows(codes, n_categories) {
        let n = rows.len();
        if n == 0 || n < min_points {
            continue;
        }
        let centre = mean_rows(latent, dim, &rows);
        let d: Vec<f64> = rows
            .iter()
            .map(|&r| distance(latent, dim, r, &centre))
            .collect();
        let mut sorted = d.clone();
        sorted.sort_by(f64::total_cmp);
        for (&r, &dist) in rows.iter().zip(&d) {
            let rank = sorted.partition_point(|&x| x <= dist);
            out[r] = (rank as f64 / n as f64) as f32;
        }
    }
    out
}

/// Rows of the latent space read per block by [`outlier_quantiles_blocked`]:
/// 16k rows of a 50-column float32 latent space are 3 MB (decoded twice on
/// the way in), small next to the per-cell vectors the quantiles need.
const LATENT_BLOCK: usize = 1 << 14;

/// [`outlier_quantiles`] reading the latent space in row blocks through
/// `read` (two passes: category sums, then distances), so only one block
/// and one distance per cell are in memory. Same arithmetic, same order.
pub(crate) fn outlier_quantiles_blocked<E>(
    n: usize,
    dim: usize,
    codes: &[i64],
    n_categories: usize,
    min_points: usize,
    read: &mut dyn FnMut(std::ops::Range<usize>) -> Result<Vec<f32>, E>,
) -> Result<Vec<f32>, E> {
    let cat = |row: usize| {
        usize::try_from(codes[row])
            .ok()
            .filter(|&c| c < n_categories)
    };
    let mut counts = vec![0usize; n_categories];
    for row in 0..n {
        if let Some(c) = cat(row) {
            counts[c] += 1;
        }
    }
    let eligible = |c: usize| counts[c] > 0 && counts[c] >= min_points;
    let mut sums = vec![0.0f64; n_categories * dim];
    for start in (0..n).step_by(LATENT_BLOCK) {
        let end = (start + LATENT_BLOCK).min(n);
        let block = read(start..end)?;
        for row in start..end {
            if let Some(c) = cat(row).filter(|&c| eligible(c)) {
                for a in 0..dim {
                    sums[c * dim + a] += f64::from(block[(row - start) * dim + a]);
                }
            }
        }
    }
    let centres: Vec<f64> = sums
        .iter()
        .enumerate()
        .map(|(i, s)| s / counts[i / dim.max(1)].max(1) as f64)
        .collect();
    let mut dist = vec![f64::NAN; n];
    for start in (0..n).step_by(LATENT_BLOCK) {
        let end = (start + LATENT_BLOCK).min(n);
        let block = read(start..end)?;
        for row in start..end {
            if let Some(c) = cat(row).filter(|&c| eligible(c)) {
                dist[row] = (0..dim)
                    .map(|a| {
                        let d = f64::from(block[(row - start) * dim + a]) - centres[c * dim + a];
                        d * d
                    })
                    .sum::<f64>()
                    .sqrt();
            }
        }
    }
    let mut out = vec![f32::NAN; n];
    for (c, rows) in group_rows(codes, n_categories).into_iter().enumerate() {
        if !eligible(c) {
            continue;
        }
        let mut sorted: Vec<f64> = rows.iter().map(|&r| dist[r]).collect();
        sorted.sort_by(f64::total_cmp);
        for &r in &rows {
            let rank = sorted.partition_point(|&x| x <= dist[r]);
            out[r] = (rank as f64 / rows.len() as f64) as f32;
        }
    }
    Ok(out)
}

fn group_rows(codes: &[i64], n_categories: usize) -> Vec<Vec<usize>> {
    let mut members = vec![Vec::new(); n_categories];
    for (row, &c) in codes.iter().enumerate() {
        if let Some(list) = usize::try_from(c).ok().and_then(|c| members.get_mut(c)) {
            list.push(row);
        }
    }
    members
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_matches_numpy_linear() {
        // numpy.quantile([1, 2, 3, 4], 0.95) == 3.8499999999999996
        assert_eq!(quantile(&[4.0, 1.0, 3.0, 2.0], 0.95), 3.8499999999999996);
        assert_eq!(quantile(&[1.0, 2.0], 0.25), 1.25);
    }

    #[test]
    fn blocked_outliers_equal_the_whole_matrix_computation() {
        let n = 150_000;
        let dim = 3;
        let latent: Vec<f32> = (0..n * dim)
            .map(|i| ((i * 7919) % 1000) as f32 / 7.0)
            .collect();
        let codes: Vec<i64> = (0..n).map(|i| [0, 1, 2, -1, 3][i % 5]).collect();
        let whole = outlier_quantiles(&latent, dim, &codes, 5, 10);
        let blocked = outlier_quantiles_blocked::<()>(n, dim, &codes, 5, 10, &mut |r| {
            Ok(latent[r.start * dim..r.end * dim].to_vec())
        })
        .unwrap();
        assert_eq!(whole.len(), blocked.len());
        assert!(whole
            .iter()
            .zip(&blocked)
            .all(|(a, b)| a == b || (a.is_nan() && b.is_nan())));
        assert!(blocked[3].is_nan(), "a missing code");
        assert!(!blocked[4].is_nan());
    }

    #[test]
    fn normalization_keeps_aspect_ratio() {
        let n = normalization(&[0.0, 0.0, 4.0, 2.0], 2).unwrap();
        assert_eq!(normalize(&[0.0, 0.0, 4.0, 2.0], &n), [-1.0, -0.5, 1.0, 0.5]);
        assert!(normalization(&[1.0, 1.0], 1).is_none());
    }
}
