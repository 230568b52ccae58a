//! Turning PATH arguments into dataset sources, and their errors into one
//! line that says what to do (the library states facts; the flags that fix
//! them are named here).

use std::path::{Path, PathBuf};

use cellucid_core::anndata::{AnnDataError, AnnDataOptions, ExpressionSource};
use cellucid_core::formats::FormatError;
use cellucid_core::{open_inputs, InputError, OpenError, OpenedInputs};

use crate::anndata_args::AnnDataArgs;
use crate::error::CliError;

/// Opens every PATH with [`cellucid_core::open_inputs`] (detection by
/// content, unique ids, background preparation) and turns its errors into
/// CLI lines with flag hints.
///
/// # Errors
/// The first input that cannot be served, with its path in the message.
pub(crate) fn open_all(
    paths: &[PathBuf],
    options: &AnnDataOptions,
    args: &AnnDataArgs,
) -> Result<OpenedInputs, CliError> {
    args.apply_memory_budget();
    open_inputs(paths, options).map_err(|err| match err {
        InputError::Open(err) => open_error(&err),
        InputError::AnnData { path, source } => anndata_error(&path, &source, args),
        InputError::ChosenIdNeedsOneInput { .. } => CliError::usage(
            "--dataset-id and --dataset-name need exactly one AnnData PATH (.h5ad or Zarr); with several inputs each takes its id from uns['cellucid'] or its file name",
        ),
        InputError::Format(err @ FormatError::NeedsIdentity { .. }) => CliError::usage(format!(
            "{err}; name it with --dataset-name NAME --dataset-id ID"
        )),
        other => CliError::operator(other.to_string()),
    })
}

fn open_error(err: &OpenError) -> CliError {
    match err {
        OpenError::InvalidManifest { .. } => CliError::operator(err.to_string()),
        OpenError::NotADataset { path } => match datasets_inside(path) {
            Some(hint) => CliError::usage(format!("{err}; {hint}")),
            None => CliError::usage(err.to_string()),
        },
        _ => CliError::usage(err.to_string()),
    }
}

/// Dataset file endings a folder of datasets holds, and the glob that
/// passes them.
const DATASET_ENDINGS: [(&str, &str); 3] = [
    (".h5ad", "*.h5ad"),
    (".zarr.zip", "*.zarr.zip"),
    (".zarr", "*.zarr"),
];

/// For a folder that is no dataset but holds some (`.h5ad` files, Zarr
/// stores): how to pass them.
fn datasets_inside(dir: &Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .filter(|n| {
            let lower = n.to_ascii_lowercase();
            DATASET_ENDINGS.iter().any(|(end, _)| lower.ends_with(end))
        })
        .collect();
    if names.is_empty() {
        return None;
    }
    names.sort();
    // (A name ending `.zarr.zip` does not end with `.zarr`.)
    let globs: Vec<String> = DATASET_ENDINGS
        .iter()
        .filter(|(end, _)| names.iter().any(|n| n.to_ascii_lowercase().ends_with(end)))
        .map(|(_, glob)| format!("{}/{glob}", dir.display()))
        .collect();
    if let [only] = names.as_slice() {
        return Some(format!(
            "it is a folder holding one dataset: serve it with `cellucid serve {}`",
            dir.join(only).display()
        ));
    }
    let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
    let more = if names.len() > 3 { ", …" } else { "" };
    Some(format!(
        "it is a folder of {n} datasets ({list}{more}): serve them all with `cellucid serve {globs}`, or pass one",
        n = names.len(),
        list = shown.join(", "),
        globs = globs.join(" "),
    ))
}

/// An AnnData input that cannot be served: one line naming the file and
/// what to do. A path that is no store, or a flag naming something the
/// store lacks, is a usage error (2); a broken store an operator error (1).
pub(crate) fn anndata_error(path: &Path, err: &AnnDataError, args: &AnnDataArgs) -> CliError {
    let at = path.display();
    match err {
        AnnDataError::Open { .. } => CliError::usage(err.to_string()),
        AnnDataError::Truncated { .. } | AnnDataError::Damaged { .. } => CliError::operator(
            format!("{err}; copy or download the file again (a partial copy cannot be served)"),
        ),
        AnnDataError::MissingKey {
            group,
            key,
            available,
        } => {
            let holds = if available.is_empty() {
                format!("{group} is empty")
            } else {
                format!("{group} holds: {}", available.join(", "))
            };
            match flag_naming(group, key, args) {
                Some(flag) => {
                    let value = if group == "layers" {
                        format!("layer:{key}")
                    } else {
                        key.clone()
                    };
                    CliError::usage(format!(
                        "{at}: {flag} {value}: there is no {group}/{key}; {holds}"
                    ))
                }
                None => CliError::operator(format!("{at}: {err}")),
            }
        }
        AnnDataError::Missing { element } if expression_names(element, args) => CliError::usage(
            format!("{at}: --expression: there is no {element} in this store; choose X, raw or layer:NAME that it has (`cellucid inspect {at}` lists them)"),
        ),
        AnnDataError::NoModalities { modality } => CliError::usage(format!(
            "{at}: --modality {modality}: this data has one feature space (an AnnData); a modality is one of a MuData's mdata.mod. Leave --modality unset"
        )),
        AnnDataError::VectorField { field, .. } => {
            CliError::usage(format!("{at}: --vector-field-default {field}: {err}"))
        }
        AnnDataError::OverBudget { .. } => CliError::operator(format!(
            "{at}: {err} (a larger --memory-budget serves it, if the machine has the memory)"
        )),
        _ => CliError::operator(format!("{at}: {err}")),
    }
}

/// The flag whose value named `group/key`, if one did.
fn flag_naming(group: &str, key: &str, args: &AnnDataArgs) -> Option<&'static str> {
    let is = |value: &Option<String>| value.as_deref() == Some(key);
    match group {
        "obsm" => {
            if is(&args.latent_key) {
                return Some("--latent-key");
            }
            let named = |e: &Option<cellucid_core::anndata::EmbeddingChoice>| {
                e.as_ref().is_some_and(|c| c.key == key)
            };
            [
                (&args.embedding_1d, "--embedding-1d"),
                (&args.embedding_2d, "--embedding-2d"),
                (&args.embedding_3d, "--embedding-3d"),
            ]
            .into_iter()
            .find(|(e, _)| named(e))
            .map(|(_, flag)| flag)
        }
        "obsp" if is(&args.knn) => Some("--knn"),
        "obs" if args.obs_keys.iter().any(|k| k == key) => Some("--obs-key"),
        "var" | "raw/var" if is(&args.gene_id_column) => Some("--gene-id-column"),
        "layers" if args.expression.as_ref() == Some(&ExpressionSource::Layer(key.to_owned())) => {
            Some("--expression")
        }
        _ => None,
    }
}

/// Whether `element` is the matrix `--expression` named.
fn expression_names(element: &str, args: &AnnDataArgs) -> bool {
    matches!(
        (&args.expression, element),
        (Some(ExpressionSource::X), "X") | (Some(ExpressionSource::Raw), "raw/X")
    )
}
