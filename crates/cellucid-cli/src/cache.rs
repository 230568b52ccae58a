//! `cellucid cache …` and the pieces `serve` shares with it: choosing the
//! cache directory, the progress bar, turning proxy errors into CLI errors.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cellucid_core::budget::human;
use cellucid_proxy::{
    CacheDir, Environment, FetchOptions, PrefetchOutcome, Progress, ProxyError, SourceUrl, WebCache,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::{CacheArgs, CacheCommand, LogFormat};
use crate::error::CliError;

/// Runs one cache command.
pub(crate) fn run(args: CacheArgs) -> Result<(), CliError> {
    crate::logging::init(LogFormat::Text, false, false, false);
    let cache = open_cache(args.web_cache_dir.as_deref())?;
    let dir = cache.dir().path().display().to_string();
    match args.command {
        CacheCommand::Dir => {
            println!("{dir}");
            eprintln!("{}", cache.dir().origin());
            Ok(())
        }
        CacheCommand::Prefetch {
            force,
            web_source_url,
            web_timeout,
            quiet,
        } => {
            let source = parse_source(&web_source_url)?;
            let options = fetch_options(web_timeout);
            let progress = Bar::new(!quiet);
            if !quiet {
                eprintln!("Downloading the Cellucid viewer UI from {source} into {dir}");
            }
            let outcome = cache.prefetch(&source, &options, force, &progress);
            progress.finish();
            let outcome = outcome.map_err(|err| proxy_error(&err))?;
            println!("{}", summary(&outcome, &dir));
            Ok(())
        }
        CacheCommand::Verify => match cache.verify() {
            Ok(report) => {
                println!(
                    "OK: viewer UI build {} from {} — {} files, {} verified in {dir}",
                    report.build_id,
                    report.source_url,
                    report.files,
                    human(report.bytes)
                );
                Ok(())
            }
            Err(ProxyError::Empty { .. }) => Err(CliError::operator(format!(
                "no viewer UI is cached in {dir}; run `cellucid cache prefetch` while online"
            ))),
            Err(err) => Err(CliError::operator(format!(
                "{err}; run `cellucid cache prefetch --force` to download it again"
            ))),
        },
        CacheCommand::Clear => {
            let gone = cache.clear().map_err(|err| proxy_error(&err))?;
            if gone {
                println!("Cleared the viewer UI cache: {dir} is removed");
            } else {
                println!("Cleared the viewer UI cache in {dir} (the directory holds other files, which were left alone)");
            }
            Ok(())
        }
    }
}

/// The cache for `--web-cache-dir` (or the environment's choice).
pub(crate) fn open_cache(flag: Option<&Path>) -> Result<WebCache, CliError> {
    let dir = CacheDir::resolve(flag, &Environment::current()).map_err(|err| proxy_error(&err))?;
    Ok(WebCache::new(dir))
}

/// Validates `--web-source-url`.
pub(crate) fn parse_source(text: &str) -> Result<SourceUrl, CliError> {
    SourceUrl::parse(text).map_err(|err| CliError::usage(format!("--web-source-url: {err}")))
}

/// Fetch settings from `--web-timeout`.
pub(crate) fn fetch_options(timeout_secs: f64) -> FetchOptions {
    let mut options = FetchOptions::default();
    options.timeout = Duration::from_secs_f64(timeout_secs);
    options
}

/// A proxy error as a CLI error: a bad setting is a usage error (exit 2),
/// anything else an operator error (exit 1).
pub(crate) fn proxy_error(err: &ProxyError) -> CliError {
    // The library states facts; the flags that fix them are the CLI's to name.
    let hint = match err {
        ProxyError::NoCacheDir => "; pass --web-cache-dir DIR, set CELLUCID_WEB_PROXY_CACHE_DIR, or serve data only with --no-web-ui",
        ProxyError::Unwritable { .. } => "; pass --web-cache-dir DIR or set CELLUCID_WEB_PROXY_CACHE_DIR to a writable directory",
        _ => "",
    };
    let line = format!("{err}{hint}");
    if err.is_configuration() {
        CliError::usage(line)
    } else {
        CliError::operator(line)
    }
}

/// One line saying what a prefetch did.
pub(crate) fn summary(outcome: &PrefetchOutcome, dir: &str) -> String {
    if outcome.changed {
        format!(
            "Viewer UI build {} cached in {dir}: {} files downloaded ({}), {} reused from the previous build",
            outcome.build_id,
            outcome.downloaded_files,
            human(outcome.downloaded_bytes),
            outcome.reused_files
        )
    } else {
        format!(
            "Viewer UI build {} is already cached and verified in {dir}; nothing to download (--force downloads it again)",
            outcome.build_id
        )
    }
}

/// A progress bar on stderr (files and bytes), drawn only on a terminal.
pub(crate) struct Bar {
    bar: ProgressBar,
    files: AtomicU64,
    total_files: AtomicU64,
}

impl Bar {
    /// A bar, hidden unless `visible` and stderr is a terminal.
    pub(crate) fn new(visible: bool) -> Self {
        let target = if visible && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(0), target);
        let style = ProgressStyle::with_template(
            "Viewer UI {bar:30.cyan/blue} {bytes}/{total_bytes} {msg} {elapsed}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Self {
            bar,
            files: AtomicU64::new(0),
            total_files: AtomicU64::new(0),
        }
    }

    /// Removes the bar.
    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for Bar {
    fn start(&self, files: u64, bytes: u64) {
        self.total_files.store(files, Ordering::Relaxed);
        self.bar.set_length(bytes);
        self.bar.set_message(format!("0/{files} files"));
    }

    fn received(&self, bytes: u64) {
        if self.total_files.load(Ordering::Relaxed) == 0 {
            // A crawl: the total is unknown until it ends.
            self.bar.inc_length(bytes);
        }
        self.bar.inc(bytes);
    }

    fn file_done(&self, _path: &str, _bytes: u64) {
        let done = self.files.fetch_add(1, Ordering::Relaxed) + 1;
        let total = self.total_files.load(Ordering::Relaxed);
        if total == 0 {
            self.bar.set_message(format!("{done} files"));
        } else {
            self.bar.set_message(format!("{done}/{total} files"));
        }
    }

    fn waiting_for_lock(&self) {
        self.bar
            .println("Another cellucid process is updating this cache; waiting for it…");
    }
}
