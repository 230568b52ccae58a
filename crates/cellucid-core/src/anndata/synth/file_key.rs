//! The file names of the synthesised 0.9.4 folder files (docs/FORMATS.md,
//! "Files we synthesise"), in one place: [`SynthKey`] parses a request key
//! and displays the key a manifest declares, so the two cannot drift.
//!
//! Indices are canonical decimal only (`var/1.values.f32`, never
//! `var/01.values.f32` or `var/+1.values.f32`): each file has exactly one
//! name, as the 0.9.4 server answered 404 for any other spelling.

use std::fmt;

use crate::file::Compressibility;

/// One of the four JSON manifests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Manifest {
    /// `dataset_identity.json`.
    Identity,
    /// `obs_manifest.json`.
    Obs,
    /// `var_manifest.json`.
    Var,
    /// `connectivity_manifest.json`.
    Connectivity,
}

impl Manifest {
    const ALL: [Self; 4] = [Self::Identity, Self::Obs, Self::Var, Self::Connectivity];

    /// The file name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Identity => "dataset_identity.json",
            Self::Obs => "obs_manifest.json",
            Self::Var => "var_manifest.json",
            Self::Connectivity => "connectivity_manifest.json",
        }
    }
}

/// The element type of a categorical column's codes: the narrowest leaving
/// room for the missing marker (its maximum).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum CodesWidth {
    /// `u8` / `uint8`.
    U8,
    /// `u16` / `uint16`.
    U16,
    /// `u32` / `uint32`.
    U32,
}

impl CodesWidth {
    /// Every width, narrowest first.
    pub(crate) const ALL: [Self; 3] = [Self::U8, Self::U16, Self::U32];

    /// The width for `n_categories` categories plus the missing marker.
    pub(crate) fn for_categories(n_categories: usize) -> Self {
        if n_categories < 255 {
            Self::U8
        } else if n_categories < 65535 {
            Self::U16
        } else {
            Self::U32
        }
    }

    /// The file extension (`u8`).
    pub(crate) fn ext(self) -> &'static str {
        match self {
            Self::U8 => "u8",
            Self::U16 => "u16",
            Self::U32 => "u32",
        }
    }

    /// The manifest's dtype (`uint8`).
    pub(crate) fn dtype(self) -> &'static str {
        match self {
            Self::U8 => "uint8",
            Self::U16 => "uint16",
            Self::U32 => "uint32",
        }
    }

    /// The code marking a missing value.
    pub(crate) fn missing(self) -> u64 {
        match self {
            Self::U8 => u64::from(u8::MAX),
            Self::U16 => u64::from(u16::MAX),
            Self::U32 => u64::from(u32::MAX),
        }
    }
}

/// One of the three edge files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum EdgeFile {
    /// `connectivity/edges.src.bin`.
    Sources,
    /// `connectivity/edges.dst.bin`.
    Destinations,
    /// `connectivity/edges.weights.f64.bin`.
    Weights,
}

impl EdgeFile {
    const ALL: [Self; 3] = [Self::Sources, Self::Destinations, Self::Weights];

    /// The key.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Self::Sources => "connectivity/edges.src.bin",
            Self::Destinations => "connectivity/edges.dst.bin",
            Self::Weights => "connectivity/edges.weights.f64.bin",
        }
    }
}

/// `pathPattern` of continuous obs fields in `obs_manifest.json`.
pub(crate) const OBS_VALUES_PATTERN: &str = "obs/{index}.values.f32";
/// `codesPathPattern` of categorical obs fields (`{ext}` is the codes width).
pub(crate) const OBS_CODES_PATTERN: &str = "obs/{index}.codes.{ext}";
/// `outlierPathPattern` of categorical obs fields.
pub(crate) const OBS_OUTLIERS_PATTERN: &str = "obs/{index}.outliers.f32";
/// `pathPattern` of genes in `var_manifest.json`.
pub(crate) const GENE_PATTERN: &str = "var/{index}.values.f32";

/// A synthesised file's key, with the indices it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SynthKey {
    /// A JSON manifest.
    Manifest(Manifest),
    /// `var/<g>.values.f32`: gene `g` of the expression matrix.
    Gene(u64),
    /// `obs/<i>.values.f32`: continuous obs field `i`.
    ObsValues(usize),
    /// `obs/<i>.codes.<u8|u16|u32>`: categorical obs field `i`.
    ObsCodes(usize, CodesWidth),
    /// `obs/<i>.outliers.f32`: outlier quantiles of categorical field `i`.
    ObsOutliers(usize),
    /// `embeddings/<e>_<dim>d.bin`: embedding item `e`.
    Embedding {
        /// The item's position in the identity's items.
        index: usize,
        /// Its dimension (1-3).
        dim: usize,
    },
    /// `connectivity/edges.*.bin`.
    Edges(EdgeFile),
    /// `vectors/<f>_<e>.bin`: vector field `f` over embedding item `e`.
    Vectors {
        /// The field's position among the served fields.
        field: usize,
        /// The embedding item it is drawn over.
        item: usize,
    },
}

/// `text` as a number when written in canonical decimal: digits only, no
/// sign, no leading zero (but `0` itself).
fn canonical<T: std::str::FromStr>(text: &str) -> Option<T> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text.len() == 1 || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

impl SynthKey {
    /// The synthesised file `key` names, if any.
    pub(crate) fn parse(key: &str) -> Option<Self> {
        if let Some(m) = Manifest::ALL.into_iter().find(|m| m.name() == key) {
            return Some(Self::Manifest(m));
        }
        if let Some(e) = EdgeFile::ALL.into_iter().find(|e| e.path() == key) {
            return Some(Self::Edges(e));
        }
        if let Some(rest) = key.strip_prefix("var/") {
            return canonical(rest.strip_suffix(".values.f32")?).map(Self::Gene);
        }
        if let Some(rest) = key.strip_prefix("obs/") {
            let (index, kind) = rest.split_once('.')?;
            let index = canonical(index)?;
            return match kind {
                "values.f32" => Some(Self::ObsValues(index)),
                "outliers.f32" => Some(Self::ObsOutliers(index)),
                _ => {
                    let ext = kind.strip_prefix("codes.")?;
                    let width = CodesWidth::ALL.into_iter().find(|w| w.ext() == ext)?;
                    Some(Self::ObsCodes(index, width))
                }
            };
        }
        if let Some(rest) = key.strip_prefix("embeddings/") {
            let (index, dim) = rest.strip_suffix("d.bin")?.split_once('_')?;
            return Some(Self::Embedding {
                index: canonical(index)?,
                dim: canonical(dim)?,
            });
        }
        if let Some(rest) = key.strip_prefix("vectors/") {
            let (field, item) = rest.strip_suffix(".bin")?.split_once('_')?;
            return Some(Self::Vectors {
                field: canonical(field)?,
                item: canonical(item)?,
            });
        }
        None
    }

    /// How the file's bytes take to on-the-fly compression.
    pub(crate) fn compressibility(self) -> Compressibility {
        match self {
            // Served as they are, like 0.9.4 (docs/PROTOCOL.md,
            // "Compression of synthesised files").
            Self::Manifest(_) => Compressibility::Never,
            Self::Gene(_) => Compressibility::Fastest,
            _ => Compressibility::Good,
        }
    }
}

impl fmt::Display for SynthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Manifest(m) => f.write_str(m.name()),
            Self::Gene(g) => write!(f, "var/{g}.values.f32"),
            Self::ObsValues(i) => write!(f, "obs/{i}.values.f32"),
            Self::ObsCodes(i, width) => write!(f, "obs/{i}.codes.{}", width.ext()),
            Self::ObsOutliers(i) => write!(f, "obs/{i}.outliers.f32"),
            Self::Embedding { index, dim } => write!(f, "embeddings/{index}_{dim}d.bin"),
            Self::Edges(e) => f.write_str(e.path()),
            Self::Vectors { field, item } => write!(f, "vectors/{field}_{item}.bin"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<SynthKey> {
        let mut keys: Vec<SynthKey> = Manifest::ALL.into_iter().map(SynthKey::Manifest).collect();
        keys.extend(EdgeFile::ALL.into_iter().map(SynthKey::Edges));
        for i in [0, 1, 7, 10, 764, 65_536] {
            keys.push(SynthKey::Gene(i as u64));
            keys.push(SynthKey::ObsValues(i));
            keys.push(SynthKey::ObsOutliers(i));
            keys.extend(CodesWidth::ALL.map(|w| SynthKey::ObsCodes(i, w)));
            keys.push(SynthKey::Embedding { index: i, dim: 2 });
            keys.push(SynthKey::Vectors { field: i, item: 1 });
        }
        keys.push(SynthKey::Gene(u64::MAX));
        keys
    }

    #[test]
    fn parse_inverts_display() {
        for key in every_kind() {
            let text = key.to_string();
            assert_eq!(SynthKey::parse(&text), Some(key), "{text}");
        }
    }

    #[test]
    fn keys_are_spelled_as_094_served_them() {
        let cases = [
            ("var/764.values.f32", SynthKey::Gene(764)),
            ("obs/0.values.f32", SynthKey::ObsValues(0)),
            ("obs/6.codes.u8", SynthKey::ObsCodes(6, CodesWidth::U8)),
            ("obs/7.outliers.f32", SynthKey::ObsOutliers(7)),
            (
                "embeddings/0_2d.bin",
                SynthKey::Embedding { index: 0, dim: 2 },
            ),
            (
                "connectivity/edges.weights.f64.bin",
                SynthKey::Edges(EdgeFile::Weights),
            ),
            ("vectors/0_1.bin", SynthKey::Vectors { field: 0, item: 1 }),
            ("obs_manifest.json", SynthKey::Manifest(Manifest::Obs)),
        ];
        for (text, key) in cases {
            assert_eq!(key.to_string(), text);
            assert_eq!(SynthKey::parse(text), Some(key), "{text}");
        }
    }

    #[test]
    fn non_canonical_and_unknown_keys_are_refused() {
        for text in [
            "var/01.values.f32",
            "var/+1.values.f32",
            "var/-1.values.f32",
            "var/.values.f32",
            "var/1 .values.f32",
            "var/18446744073709551616.values.f32",
            "var/1.values.f64",
            "var/1.values.f32.gz",
            "obs/00.codes.u8",
            "obs/1.codes.u64",
            "obs/1.codes",
            "obs/1.outliers.f64",
            "obs/x.values.f32",
            "embeddings/0_02d.bin",
            "embeddings/00_2d.bin",
            "embeddings/0_2.bin",
            "embeddings/0-2d.bin",
            "vectors/0_01.bin",
            "vectors/0.bin",
            "connectivity/edges.weights.bin",
            "Obs_manifest.json",
            "points_2d.bin",
            "",
        ] {
            assert_eq!(SynthKey::parse(text), None, "{text}");
        }
    }

    #[test]
    fn manifest_patterns_name_the_same_files() {
        let fill = |pattern: &str, ext: &str| pattern.replace("{index}", "3").replace("{ext}", ext);
        assert_eq!(fill(GENE_PATTERN, ""), SynthKey::Gene(3).to_string());
        assert_eq!(
            fill(OBS_VALUES_PATTERN, ""),
            SynthKey::ObsValues(3).to_string()
        );
        assert_eq!(
            fill(OBS_OUTLIERS_PATTERN, ""),
            SynthKey::ObsOutliers(3).to_string()
        );
        for w in CodesWidth::ALL {
            assert_eq!(
                fill(OBS_CODES_PATTERN, w.ext()),
                SynthKey::ObsCodes(3, w).to_string()
            );
        }
    }

    #[test]
    fn codes_widths_leave_room_for_the_missing_marker() {
        let cases = [
            (0, CodesWidth::U8),
            (254, CodesWidth::U8),
            (255, CodesWidth::U16),
            (65_534, CodesWidth::U16),
            (65_535, CodesWidth::U32),
        ];
        for (n, width) in cases {
            assert_eq!(CodesWidth::for_categories(n), width, "{n}");
            assert!((n as u64) < width.missing());
        }
    }
}
