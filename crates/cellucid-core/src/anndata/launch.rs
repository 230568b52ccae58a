//! Launch choices checked against what the store holds (metadata only),
//! with 0.9.5's rules, so a typo fails at startup with the keys that do
//! exist: `--modality` and `--vector-field-default` here, and every missing
//! key a choice names turned into [`AnnDataError::MissingKey`].

use std::collections::{BTreeMap, BTreeSet};

use super::options::AnnDataOptions;
use super::{AnnData, AnnDataError};

/// The dimensional UMAP keys the viewer's default rule takes first.
const DIMENSIONAL_UMAP_KEYS: [&str; 3] = ["X_umap_1d", "X_umap_2d", "X_umap_3d"];
/// The conventional names of one UMAP, in the order the default rule takes them.
const UMAP_KEYS: [&str; 4] = ["X_umap", "X_UMAP", "X_wnn.umap", "X_ref.umap"];
/// The best-guess tiers of the viewer (`bestGuessTier`): the first needle a
/// lower-cased key contains decides its tier; no match ranks 7.
const BEST_GUESS_TIERS: [(u8, &[&str]); 8] = [
    (0, &["umap"]),
    (1, &["tsne", "t-sne", "t_sne"]),
    (2, &["draw_graph", "force"]),
    (3, &["phate"]),
    (4, &["pacmap", "trimap"]),
    (5, &["spatial"]),
    (6, &["diffmap"]),
    (8, &["pca", "scvi", "latent", "harmony", "x_emb"]),
];
const NO_MATCH_TIER: u8 = 7;

/// Checks `--modality` and `--vector-field-default` against the store.
///
/// # Errors
/// [`AnnDataError::NoModalities`] for a modality (an AnnData has none);
/// [`AnnDataError::VectorField`] for a field not declared or not drawn.
pub(crate) fn check(adata: &AnnData, options: &AnnDataOptions) -> Result<(), AnnDataError> {
    if let Some(modality) = &options.modality {
        return Err(AnnDataError::NoModalities {
            modality: modality.clone(),
        });
    }
    if let Some(field) = &options.vector_field_default {
        let obsm: Vec<(&str, u64)> = adata
            .obsm()
            .iter()
            .map(|e| (e.key.as_str(), e.width))
            .collect();
        check_vector_field(&obsm, options, field)?;
    }
    Ok(())
}

/// 0.9.5's rule: `field` is declared (an obsm `<field>_<basis>` as wide as
/// `X_<basis>`) and drawn (that `X_<basis>` is shown when the store opens).
fn check_vector_field(
    obsm: &[(&str, u64)],
    options: &AnnDataOptions,
    field: &str,
) -> Result<(), AnnDataError> {
    let shown = shown_embeddings(obsm, options);
    let width = |key: &str| obsm.iter().find(|(k, _)| *k == key).map(|(_, w)| *w);
    let mut declared: BTreeMap<String, bool> = BTreeMap::new();
    for (key, _) in obsm {
        if let Some((f, basis)) = vector_field_key(key, obsm) {
            let embedding = format!("X_{basis}");
            if width(key) == width(&embedding) {
                let drawn = shown.contains(embedding.as_str());
                *declared.entry(f.to_owned()).or_default() |= drawn;
            }
        }
    }
    match declared.get(field) {
        Some(true) => Ok(()),
        Some(false) => Err(AnnDataError::VectorField {
            field: field.to_owned(),
            declared: true,
            available: declared
                .iter()
                .filter(|(_, drawn)| **drawn)
                .map(|(f, _)| f.clone())
                .collect(),
        }),
        None => Err(AnnDataError::VectorField {
            field: field.to_owned(),
            declared: false,
            available: declared.into_keys().collect(),
        }),
    }
}

/// `<field>_<basis>` on `X_<basis>` (scVelo's convention): the first split
/// from the left whose `X_<basis>` is in obsm; never a key starting `X_`.
fn vector_field_key<'a>(key: &'a str, obsm: &[(&str, u64)]) -> Option<(&'a str, &'a str)> {
    if key.starts_with("X_") {
        return None;
    }
    key.match_indices('_')
        .map(|(i, _)| i)
        .filter(|&i| i > 0 && i + 1 < key.len())
        .find(|&i| {
            let basis = &key[i + 1..];
            obsm.iter()
                .any(|(k, _)| k.strip_prefix("X_") == Some(basis))
        })
        .map(|i| (&key[..i], &key[i + 1..]))
}

/// The obsm keys the viewer shows when the store opens: the slots the
/// launch names over the default rule (else the best guess), and every
/// array 1-3 columns wide that is neither a vector field nor the latent key.
fn shown_embeddings<'a>(obsm: &[(&'a str, u64)], options: &'a AnnDataOptions) -> BTreeSet<&'a str> {
    let candidates: Vec<(&str, u64)> = obsm
        .iter()
        .filter(|(k, w)| {
            *w >= 1
                && vector_field_key(k, obsm).is_none()
                && Some(*k) != options.latent_key.as_deref()
        })
        .copied()
        .collect();
    let mut slots: [Option<&str>; 3] = [None; 3];
    let dimensional: Vec<&str> = DIMENSIONAL_UMAP_KEYS
        .into_iter()
        .filter(|k| obsm.iter().any(|(o, _)| o == k))
        .collect();
    if dimensional.is_empty() {
        if let Some((key, w)) = UMAP_KEYS
            .iter()
            .find_map(|u| obsm.iter().find(|(k, w)| k == u && (1..=3).contains(w)))
        {
            slots[*w as usize - 1] = Some(key);
        }
    } else {
        for key in dimensional {
            let d = usize::from(key.as_bytes()[7] - b'1');
            slots[d] = Some(key);
        }
    }
    let named: Vec<(usize, &str)> = options
        .embeddings
        .iter()
        .enumerate()
        .filter_map(|(d, c)| c.as_ref().map(|c| (d, c.key.as_str())))
        .collect();
    if !named.is_empty() {
        for (d, key) in named {
            slots[d] = Some(key);
        }
    } else if slots.iter().all(Option::is_none) {
        for d in (1..=3u64).rev() {
            slots[d as usize - 1] = best_guess(candidates.iter().filter(|(_, w)| *w == d));
        }
        if slots.iter().all(Option::is_none) {
            slots[1] = best_guess(candidates.iter().filter(|(_, w)| *w > 3));
        }
    }
    let mut shown: BTreeSet<&str> = slots.into_iter().flatten().collect();
    shown.extend(candidates.iter().filter(|(_, w)| *w <= 3).map(|(k, _)| *k));
    shown
}

/// The best guess among `keys`: by tier, then by code point.
fn best_guess<'a, 'b>(keys: impl Iterator<Item = &'b (&'a str, u64)>) -> Option<&'a str>
where
    'a: 'b,
{
    keys.map(|(k, _)| *k).min_by_key(|k| (tier(k), *k))
}

fn tier(key: &str) -> u8 {
    let name = key.to_lowercase();
    BEST_GUESS_TIERS
        .iter()
        .find(|(_, needles)| needles.iter().any(|n| name.contains(n)))
        .map_or(NO_MATCH_TIER, |(t, _)| *t)
}

/// A [`AnnDataError::Missing`] element of a group the store lists (obsm,
/// obsp, obs, var, raw/var, layers) becomes [`AnnDataError::MissingKey`]
/// with the keys that group holds; anything else is returned as is.
pub(crate) fn with_available(adata: &AnnData, err: AnnDataError) -> AnnDataError {
    let AnnDataError::Missing { element } = &err else {
        return err;
    };
    let frame_columns = |frame: &super::Frame| -> Vec<String> {
        frame.columns().iter().map(|c| c.name.clone()).collect()
    };
    let groups: [(&str, Option<Vec<String>>); 6] = [
        ("raw/var", adata.raw().map(|r| frame_columns(&r.var))),
        (
            "obsm",
            Some(adata.obsm().iter().map(|e| e.key.clone()).collect()),
        ),
        (
            "obsp",
            Some(adata.obsp().iter().map(|(k, _)| k.clone()).collect()),
        ),
        ("obs", Some(frame_columns(adata.obs()))),
        ("var", Some(frame_columns(adata.var()))),
        (
            "layers",
            Some(adata.layers().iter().map(|(k, _)| k.clone()).collect()),
        ),
    ];
    for (group, keys) in groups {
        let Some(key) = element
            .strip_prefix(group)
            .and_then(|rest| rest.strip_prefix('/'))
        else {
            continue;
        };
        let mut available = keys.unwrap_or_default();
        available.sort();
        return AnnDataError::MissingKey {
            group: group.to_owned(),
            key: key.to_owned(),
            available,
        };
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anndata::EmbeddingChoice;

    fn options() -> AnnDataOptions {
        AnnDataOptions::default()
    }

    #[test]
    fn vector_field_keys_take_the_longest_basis_in_obsm() {
        let obsm = [
            ("X_umap", 2),
            ("velocity_umap", 2),
            ("T_fwd_umap", 2),
            ("X_pca", 50),
        ];
        assert_eq!(
            vector_field_key("velocity_umap", &obsm),
            Some(("velocity", "umap"))
        );
        assert_eq!(
            vector_field_key("T_fwd_umap", &obsm),
            Some(("T_fwd", "umap"))
        );
        assert_eq!(vector_field_key("X_umap", &obsm), None);
        assert_eq!(vector_field_key("velocity_tsne", &obsm), None);
    }

    #[test]
    fn a_declared_field_on_a_shown_embedding_passes_and_others_list_the_fields() {
        let obsm = [
            ("X_umap", 2),
            ("velocity_umap", 2),
            ("X_pca", 50),
            ("drift_pca", 50),
        ];
        check_vector_field(&obsm, &options(), "velocity").unwrap();
        // Declared, but X_pca is neither a default slot nor narrow enough to
        // be shown beside them.
        match check_vector_field(&obsm, &options(), "drift") {
            Err(AnnDataError::VectorField {
                declared: true,
                available,
                ..
            }) => assert_eq!(available, ["velocity"]),
            other => panic!("{other:?}"),
        }
        // Naming X_pca for 2D shows it.
        let mut named = options();
        named.embeddings[1] = Some(EmbeddingChoice {
            key: "X_pca".into(),
            columns: None,
        });
        check_vector_field(&obsm, &named, "drift").unwrap();
        match check_vector_field(&obsm, &options(), "nope") {
            Err(AnnDataError::VectorField {
                declared: false,
                available,
                ..
            }) => assert_eq!(available, ["drift", "velocity"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_vector_of_another_width_is_not_declared() {
        let obsm = [("X_umap", 2), ("velocity_umap", 3)];
        assert!(check_vector_field(&obsm, &options(), "velocity").is_err());
    }
}
