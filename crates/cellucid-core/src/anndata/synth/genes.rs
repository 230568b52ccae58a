//! Gene naming (docs/FORMATS.md, "Var manifest and gene names"): the var index or a var column,
//! empty values filled from the index, duplicates made unique exactly like
//! anndata's `var_names_make_unique`.

use std::collections::{HashMap, HashSet};

use crate::anndata::{AnnDataError, Backend, Frame, FrameColumn, Values};

/// The served gene names and how they were made.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GeneNames {
    pub(crate) names: Vec<String>,
    pub(crate) source: Option<String>,
    pub(crate) filled_from_index: usize,
    pub(crate) renamed: Vec<(String, String)>,
}

/// Names from `frame`'s index, or from `column` when given.
pub(crate) fn gene_names(
    backend: &dyn Backend,
    frame: &Frame,
    column: Option<&str>,
) -> Result<GeneNames, AnnDataError> {
    let index = frame.index(backend)?;
    let mut filled = 0;
    let names: Vec<String> = match column {
        None => index,
        Some(col) => {
            let values: Vec<Option<String>> = match frame.read_column(backend, col)? {
                FrameColumn::Categorical {
                    codes, categories, ..
                } => codes
                    .iter()
                    .map(|&c| usize::try_from(c).ok().and_then(|c| categories.get(c)).map(|l| l.to_text()))
                    .collect(),
                FrameColumn::Continuous {
                    values: Values::Int(v),
                    missing,
                } => v
                    .iter()
                    .enumerate()
                    .map(|(i, x)| {
                        let masked = missing.as_ref().is_some_and(|m| m.get(i).copied().unwrap_or(false));
                        (!masked).then(|| x.to_string())
                    })
                    .collect(),
                _ => {
                    return Err(AnnDataError::invalid(
                        &format!("{}/{col}", frame.path()),
                        "float and boolean columns cannot name genes (--gene-id-column needs text, categories or integers)",
                    ))
                }
            };
            values
                .into_iter()
                .zip(index)
                .map(|(v, idx)| match v {
                    Some(s) if !s.trim().is_empty() && s != "nan" => s,
                    _ => {
                        filled += 1;
                        idx
                    }
                })
                .collect()
        }
    };
    let (names, renamed) = make_unique(names);
    Ok(GeneNames {
        names,
        source: column.map(str::to_owned),
        filled_from_index: filled,
        renamed,
    })
}

/// anndata's `make_index_unique` with join `-`.
fn make_unique(mut names: Vec<String>) -> (Vec<String>, Vec<(String, String)>) {
    let mut seen = HashSet::new();
    let duplicate: Vec<bool> = names.iter().map(|n| !seen.insert(n.clone())).collect();
    let mut renamed = Vec::new();
    if !duplicate.contains(&true) {
        return (names, renamed);
    }
    let mut all: HashSet<String> = names.iter().cloned().collect();
    let mut counter: HashMap<String, u64> = HashMap::new();
    for (i, dup) in duplicate.into_iter().enumerate() {
        if !dup {
            continue;
        }
        let base = names[i].clone();
        loop {
            let n = counter.entry(base.clone()).or_insert(0);
            *n += 1;
            let candidate = format!("{base}-{n}");
            if all.insert(candidate.clone()) {
                renamed.push((base.clone(), candidate.clone()));
                names[i] = candidate;
                break;
            }
        }
    }
    (names, renamed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_get_counters_that_skip_existing_names() {
        let (names, renamed) = make_unique(
            ["A", "B", "A", "A-1", "A"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        );
        assert_eq!(names, ["A", "B", "A-2", "A-1", "A-3"]);
        assert_eq!(renamed.len(), 2);
    }
}
