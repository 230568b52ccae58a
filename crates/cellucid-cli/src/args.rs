//! Command-line arguments: parsing and validation only.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Serve single-cell datasets to the Cellucid web viewer.
#[derive(Debug, Parser)]
#[command(
    name = "cellucid",
    version,
    about,
    long_about = "Serve single-cell datasets to the Cellucid web viewer.\n\n\
        cellucid-rs serves Cellucid export folders and AnnData files (.h5ad, Zarr) \
        from one local process, safely by default: it binds to 127.0.0.1, answers only \
        to Host names of this machine, and lets only loopback and cellucid.com pages \
        read the data from a browser.",
    after_help = "Run `cellucid serve --help` for the server's options.",
    propagate_version = true
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve one or more datasets over HTTP.
    #[command(
        long_about = "Serve one or more datasets over HTTP.\n\n\
            Each PATH is an export folder (with dataset_identity.json), an export catalog \
            (with datasets.json), an AnnData .h5ad file, or an AnnData Zarr store (folder or \
            .zarr.zip); it is recognised by its content, not its name. AnnData inputs are \
            served both ways: as synthesised export files for folder viewers (0.9.0-0.9.4) \
            and byte for byte under /_cellucid/anndata/ for 0.9.5 viewers. With no PATH, \
            the bundled demo datasets are served.\n\n\
            Several datasets are served under /<id>/ each, with a generated /datasets.json; \
            a single dataset is also served at /.",
        after_help = "Examples:\n  \
            cellucid serve exports/                 # a catalog of exports\n  \
            cellucid serve exports/pbmc --port 0    # one dataset, a free port\n  \
            cellucid serve a/ b/ --no-browser       # two exports, one server\n  \
            cellucid serve data.h5ad --latent-key X_pca --knn connectivities\n\n\
            Remote machine? Keep the default loopback bind and tunnel the port:\n  \
            ssh -L 8765:localhost:8765 user@remote-host"
    )]
    Serve(ServeArgs),
    /// Describe an AnnData file or Zarr store: cells, genes, fields, layout.
    #[command(
        long_about = "Describe an AnnData file (.h5ad) or Zarr store (folder or .zarr.zip): \
            cells, genes, embeddings, obs fields and their kinds, the layout of X, and what \
            `cellucid serve` would serve from it. Reads metadata only."
    )]
    Inspect(InspectArgs),
}

/// Flags of `cellucid inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The .h5ad file or Zarr store to describe.
    #[arg(value_name = "PATH")]
    pub(crate) path: PathBuf,

    /// The serving choices to preview.
    #[command(flatten)]
    pub(crate) anndata: crate::anndata_args::AnnDataArgs,
}

/// Flags of `cellucid serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Datasets to serve: export folders, export catalogs, .h5ad files or Zarr stores (default: the bundled demo).
    #[arg(value_name = "PATH")]
    pub(crate) paths: Vec<PathBuf>,

    /// Address to bind. Anything but loopback exposes the data to the network.
    #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
    pub(crate) host: String,

    /// Port to bind; 0 lets the system pick a free one (the URL shows it).
    #[arg(long, short = 'p', value_name = "PORT", default_value_t = 8765)]
    pub(crate) port: u16,

    /// Do not open a web browser.
    #[arg(long)]
    pub(crate) no_browser: bool,

    /// Also answer to this Host name or IP (any port); repeatable. For reverse
    /// proxies and containers reached by name.
    #[arg(long = "allowed-host", value_name = "NAME")]
    pub(crate) allowed_hosts: Vec<String>,

    /// Also let pages from this exact origin read the data in a browser
    /// (e.g. https://notebook.example.org); repeatable.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    pub(crate) allowed_origins: Vec<String>,

    /// Serve data only, without the viewer UI at /.
    #[arg(long)]
    pub(crate) no_web_ui: bool,

    /// Print only warnings, errors and the URL.
    #[arg(long, short = 'q', conflicts_with = "verbose")]
    pub(crate) quiet: bool,

    /// Also log every request.
    #[arg(long, short = 'v')]
    pub(crate) verbose: bool,

    /// Seconds a client has to send a request's headers before it is disconnected.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = positive_seconds)]
    pub(crate) header_timeout: f64,

    /// Seconds an idle keep-alive connection stays open.
    #[arg(long, value_name = "SECS", default_value_t = 120.0, value_parser = positive_seconds)]
    pub(crate) idle_timeout: f64,

    /// Most connections served at once; further clients wait.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_connections: u32,

    /// Log line format on stderr.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,

    /// Options for .h5ad and Zarr inputs (last: their help heading applies
    /// to everything after them).
    #[command(flatten)]
    pub(crate) anndata: crate::anndata_args::AnnDataArgs,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A number of seconds, > 0 and at most a day.
fn positive_seconds(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 {
        Ok(secs)
    } else {
        Err("expected a number of seconds greater than 0 and at most 86400".to_owned())
    }
}
