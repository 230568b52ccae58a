//! Command-line arguments: parsing and validation only.

// The doc comments below are clap's --help text, printed as written (with
// `uns['cellucid']['id']`, `<field>`, bare URLs), not rustdoc markdown.
#![allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::invalid_html_tags,
    rustdoc::bare_urls
)]

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
    after_help = "Run `cellucid serve --help` for the server's options, `cellucid cache --help` for the viewer UI's offline cache.\n\
        Shell completions: `cellucid completions bash` (zsh, fish, …); the manual: `cellucid man | man -l -`.",
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
            cellucid serve exports/pbmc --viewer > events.jsonl   # a viewer's events as JSON Lines\n\n  \
            cellucid serve data.h5ad --latent-key X_pca --knn connectivities\n  \
            cellucid serve runs/*.h5ad                               # a folder of .h5ad files\n  \
            cellucid serve velo.h5ad --vector-field-default velocity --centroid-min-points 5\n  \
            CELLUCID_PORT=9000 CELLUCID_NO_BROWSER=1 cellucid serve data.h5ad\n\n\
            Remote machine? Keep the default loopback bind and tunnel the port:\n  \
            ssh -L 8765:localhost:8765 user@remote-host\n\n\
            Offline? The viewer UI is cached after the first download; run \
            `cellucid cache prefetch` once while online (see `cellucid cache --help`)."
    )]
    Serve(Box<ServeArgs>),
    /// Manage the offline cache of the viewer UI.
    #[command(
        long_about = "Manage the offline cache of the viewer UI.\n\n\
            `cellucid serve` answers / with the Cellucid viewer UI, downloaded once from \
            https://www.cellucid.com, verified file by file (size and SHA-256) and kept in a \
            cache directory so it works offline afterwards. The directory is --web-cache-dir, \
            else $CELLUCID_WEB_PROXY_CACHE_DIR, else $XDG_CACHE_HOME/cellucid/web \
            (~/.cache/cellucid/web).",
        after_help = "Examples:\n  \
            cellucid cache prefetch             # download the UI now, while online\n  \
            cellucid cache verify               # re-hash every cached file\n  \
            cellucid cache dir                  # where the cache is, and why\n  \
            cellucid cache clear                # delete the cached UI"
    )]
    Cache(CacheArgs),
    /// Work with Cellucid session bundles (.cellucid-session files).
    #[command(subcommand)]
    Session(SessionCommand),
    /// Describe an AnnData file or Zarr store: cells, genes, fields, layout.
    #[command(
        long_about = "Describe an AnnData file (.h5ad) or Zarr store (folder or .zarr.zip): \
            cells, genes, embeddings, obs fields and their kinds, the layout of X, and what \
            `cellucid serve` would serve from it. Reads metadata only. With --json, the same \
            facts as one JSON object with stable field names."
    )]
    Inspect(Box<InspectArgs>),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(long_about = "Print a shell completion script on stdout.\n\n\
            Install it where your shell looks for completions, e.g.\n  \
            cellucid completions bash > ~/.local/share/bash-completion/completions/cellucid\n  \
            cellucid completions zsh > \"${fpath[1]}/_cellucid\"\n  \
            cellucid completions fish > ~/.config/fish/completions/cellucid.fish")]
    Completions {
        /// The shell to complete for.
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on stdout.
    #[command(long_about = "Print the manual page (roff) on stdout.\n\n\
            Read it with `cellucid man | man -l -`, or install it with\n  \
            cellucid man > ~/.local/share/man/man1/cellucid.1")]
    Man,
}

/// `cellucid cache …`.
#[derive(Debug, Args)]
pub(crate) struct CacheArgs {
    #[command(subcommand)]
    pub(crate) command: CacheCommand,

    /// The viewer UI cache directory [default: $CELLUCID_WEB_PROXY_CACHE_DIR, else ~/.cache/cellucid/web].
    #[arg(long, value_name = "DIR", global = true)]
    pub(crate) web_cache_dir: Option<PathBuf>,
}

/// The cache operations.
#[derive(Debug, Subcommand)]
pub(crate) enum CacheCommand {
    /// Print the cache directory (stdout) and why it was chosen (stderr).
    Dir,
    /// Download the viewer UI into the cache now (skipped when it is current).
    Prefetch {
        /// Download every file again even when the cached build is current.
        #[arg(long)]
        force: bool,

        /// Where the viewer UI is published (https; http only for a loopback host).
        #[arg(long, value_name = "URL", default_value = cellucid_proxy::DEFAULT_SOURCE_URL)]
        web_source_url: String,

        /// Seconds one download may take before it is abandoned.
        #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = positive_seconds)]
        web_timeout: f64,

        /// No progress bar; print only the result.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Re-hash every cached file; exit 1 if anything is damaged or missing.
    Verify,
    /// Delete the cached viewer UI (only files the cache owns).
    Clear,
}

/// `cellucid session …`.
#[derive(Debug, Subcommand)]
pub(crate) enum SessionCommand {
    /// Validate a session bundle and print its manifest.
    #[command(long_about = "Validate a session bundle and print its manifest.\n\n\
            Reads FILE once, front to back: the magic (format 1, CELLUCID_SESSION, from 0.9.4 \
            viewers; format 2, CELLUCID_SESSION/2, from 0.9.5), the manifest, and every chunk, \
            inflating gzip chunks within their declared sizes. Prints the format, the chunk \
            table and the manifest on stdout; a bundle that is not valid is one line on stderr \
            and exit code 1.")]
    Inspect(SessionInspectArgs),
}

/// Flags of `cellucid session inspect`.
#[derive(Debug, Args)]
pub(crate) struct SessionInspectArgs {
    /// The bundle to check.
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,

    /// Print one JSON object (format, bytes, chunks, manifest) instead of text.
    #[arg(long)]
    pub(crate) json: bool,

    /// Largest size a chunk may inflate to (bytes; K/M/G/KiB/MiB/GiB suffixes).
    #[arg(long, value_name = "BYTES", default_value = "512MiB", value_parser = byte_size)]
    pub(crate) max_inflated_bytes: u64,
}

/// Flags of `cellucid inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The .h5ad file or Zarr store to describe.
    #[arg(value_name = "PATH")]
    pub(crate) path: PathBuf,

    /// Print one JSON object (the same facts, stable field names) instead of text.
    #[arg(long)]
    pub(crate) json: bool,

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
    #[arg(
        long,
        short = 'H',
        env = "CELLUCID_HOST",
        value_name = "HOST",
        default_value = "127.0.0.1"
    )]
    pub(crate) host: String,

    /// Port to bind; 0 lets the system pick a free one (the URL shows it).
    #[arg(
        long,
        short = 'p',
        env = "CELLUCID_PORT",
        value_name = "PORT",
        default_value_t = 8765
    )]
    pub(crate) port: u16,

    /// Do not open a web browser (the environment variable: 1, true, yes or on).
    #[arg(long, env = "CELLUCID_NO_BROWSER", value_parser = clap::builder::FalseyValueParser::new())]
    pub(crate) no_browser: bool,

    /// Also answer to this Host name or IP (any port); repeatable. For reverse
    /// proxies and containers reached by name.
    #[arg(long = "allowed-host", value_name = "NAME")]
    pub(crate) allowed_hosts: Vec<String>,

    /// Also let pages from this exact origin read the data in a browser
    /// (e.g. https://notebook.example.org); repeatable.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    pub(crate) allowed_origins: Vec<String>,

    /// Believe a reverse proxy's X-Forwarded-Host (checked like Host, in
    /// addition to it), X-Forwarded-Proto (https makes the access cookie
    /// Secure) and X-Forwarded-For (logged as the client). Only when the
    /// proxy is the only way to reach this server.
    #[arg(long)]
    pub(crate) trust_proxy: bool,

    /// Require the access token on a loopback bind too (it is always required
    /// on other binds). Recommended on machines shared with other users.
    #[arg(long, conflicts_with = "no_auth")]
    pub(crate) auth: bool,

    /// Serve without an access token on a non-loopback bind: anyone who can
    /// reach the port reads the data. Prefer an SSH tunnel.
    #[arg(long)]
    pub(crate) no_auth: bool,

    /// Read the access token from this file (surrounding whitespace is
    /// trimmed; characters A-Z a-z 0-9 - _, at least 16) instead of making a
    /// random one; implies --auth. $CELLUCID_TOKEN may hold it too.
    #[arg(long, value_name = "PATH", conflicts_with = "no_auth")]
    pub(crate) token_file: Option<PathBuf>,

    /// Serve HTTPS (HTTP/2 and HTTP/1.1) with this PEM certificate chain;
    /// needs --tls-key. SECURITY.md says how to make one.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,

    /// Serve data only, without the viewer UI at / (nothing is downloaded).
    #[arg(long)]
    pub(crate) no_web_ui: bool,

    /// The viewer UI cache directory [default: $CELLUCID_WEB_PROXY_CACHE_DIR, else ~/.cache/cellucid/web].
    #[arg(long, value_name = "DIR")]
    pub(crate) web_cache_dir: Option<PathBuf>,

    /// Where the viewer UI is downloaded from (https; http only for a loopback host).
    #[arg(long, value_name = "URL", default_value = cellucid_proxy::DEFAULT_SOURCE_URL)]
    pub(crate) web_source_url: String,

    /// Check for a new viewer UI before serving, instead of in the background.
    #[arg(long, conflicts_with = "no_web_ui")]
    pub(crate) refresh_web_ui: bool,

    /// Seconds one viewer UI download may take before it is abandoned.
    #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = positive_seconds)]
    pub(crate) web_timeout: f64,

    /// Print only warnings, errors and the URL.
    #[arg(long, short = 'q', conflicts_with = "verbose")]
    pub(crate) quiet: bool,

    /// Also log every request.
    #[arg(long, short = 'v')]
    pub(crate) verbose: bool,

    /// Seconds a client has to send a request's headers (and, with
    /// --tls-cert, to complete the TLS handshake) before it is disconnected.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = positive_seconds)]
    pub(crate) header_timeout: f64,

    /// Seconds an idle keep-alive connection stays open.
    #[arg(long, value_name = "SECS", default_value_t = 120.0, value_parser = positive_seconds)]
    pub(crate) idle_timeout: f64,

    /// Most connections served at once; further clients wait.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_connections: u32,

    /// Seconds a response may wait for a client that reads none of it before
    /// the connection is dropped.
    #[arg(long, value_name = "SECS", default_value_t = 60.0, value_parser = positive_seconds)]
    pub(crate) send_timeout: f64,

    /// Seconds a whole request body may take (408 beyond), plus one second
    /// per 16 KiB received, so steady large uploads are not cut.
    #[arg(long, value_name = "SECS", default_value_t = 60.0, value_parser = positive_seconds)]
    pub(crate) body_timeout: f64,

    /// Seconds the server may take to stop after Ctrl-C or SIGTERM: requests
    /// still running then are cut off and the process exits.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = positive_seconds)]
    pub(crate) shutdown_timeout: f64,

    /// Most bytes of a viewer's events held for a reader that does not keep
    /// up (K/M/G/KiB/MiB/GiB suffixes); beyond it the viewer gets 503.
    #[arg(long, value_name = "BYTES", default_value = "64MiB", value_parser = byte_size)]
    pub(crate) max_queued_event_bytes: u64,

    /// Register one viewer: print its URLs on stderr and stream its events to
    /// stdout as JSON Lines (stdout then carries nothing else).
    #[arg(long)]
    pub(crate) viewer: bool,

    /// Largest session bundle a viewer may upload (bytes; K/M/G/KiB/MiB/GiB
    /// suffixes); also the most a bundle chunk may inflate to.
    #[arg(long, value_name = "BYTES", default_value = "512MiB", value_parser = byte_size)]
    pub(crate) max_bundle_bytes: u64,

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

/// A byte count: digits with an optional K, M, G (powers of 1024; KiB, MiB,
/// GiB and KB, MB, GB read the same).
pub(crate) fn byte_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => {
            return Err(format!(
                "{text:?}: expected a number of bytes such as 1048576, 64MiB or 1GiB"
            ))
        }
    };
    let value: u64 = digits.parse().map_err(|_| {
        format!("{text:?}: expected a number of bytes such as 1048576, 64MiB or 1GiB")
    })?;
    let bytes = value
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))?;
    if bytes == 0 {
        return Err("expected at least 1 byte".to_owned());
    }
    Ok(bytes)
}
