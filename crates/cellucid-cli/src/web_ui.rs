//! The viewer UI for `cellucid serve`: never waits for the network unless
//! asked to (`--refresh-web-ui`). A cached build is served at once and
//! refreshed in the background; with none, the server answers at once and
//! downloads it in the background while `/` says so.

use std::sync::Arc;

use cellucid_http::WebUi;
use cellucid_proxy::{ProxyError, SourceUrl, WebCache, WebUiFiles};

use crate::args::ServeArgs;
use crate::cache::{fetch_options, open_cache, parse_source, proxy_error, Bar};
use crate::error::CliError;

/// The viewer UI settings, checked, before anything touches the network.
pub(crate) struct Setup {
    /// What the server answers at `/`.
    pub(crate) web_ui: WebUi,
    ui: Option<(WebCache, SourceUrl, Arc<WebUiFiles>)>,
}

/// Checks the UI settings (cache dir, source URL) without any network or
/// disk write, so that a bad flag fails fast.
pub(crate) fn setup(args: &ServeArgs) -> Result<Setup, CliError> {
    if args.no_web_ui {
        return Ok(Setup {
            web_ui: WebUi::Disabled,
            ui: None,
        });
    }
    let source = parse_source(&args.web_source_url)?;
    let cache = open_cache(args.web_cache_dir.as_deref())?;
    let files = Arc::new(WebUiFiles::new(&cache, &source));
    Ok(Setup {
        web_ui: WebUi::Cached(Arc::clone(&files)),
        ui: Some((cache, source, files)),
    })
}

/// Makes the viewer UI available and returns the banner's one-line status.
/// Returns at once (after hashing the local cache) unless
/// `--refresh-web-ui`: a verified cached build is served and a newer one
/// looked for in the background; with none, it is downloaded in the
/// background while `/` answers a page that says so.
pub(crate) fn start(setup: Setup, args: &ServeArgs) -> Result<String, CliError> {
    let Some((cache, source, files)) = setup.ui else {
        return Ok("off (--no-web-ui): data routes only".to_owned());
    };
    let dir = cache.dir().path().display().to_string();
    let options = fetch_options(args.web_timeout);
    let cached = cache.usable_generation();
    if cached.is_none() {
        // A cached build that failed verification is never served.
        if let Ok(Some(damaged)) = cache.active() {
            let why = cache.verify().err().map(|e| e.to_string());
            files.refuse(
                &damaged,
                why.unwrap_or_else(|| "the cached viewer UI is damaged".to_owned()),
            );
        }
    }
    if args.refresh_web_ui {
        let cached_build = cached.map(|g| g.inventory.build_id);
        return refresh_first(&cache, &source, &files, cached_build, args);
    }
    let thread_error =
        |err: std::io::Error| CliError::operator(format!("cannot start a thread: {err}"));
    match cached {
        Some(generation) => {
            files
                .download_in_background(options)
                .map_err(thread_error)?;
            Ok(format!(
                "build {} from the offline cache {dir} (checking {source} for updates in the background)",
                generation.inventory.build_id
            ))
        }
        None => {
            // A directory the download could never write is an error now,
            // not a page later.
            cache.create_dir().map_err(|err| proxy_error(&err))?;
            files
                .download_in_background(options)
                .map_err(thread_error)?;
            Ok(format!(
                "downloading from {source} into {dir} in the background; until it is ready, / shows a page that reloads itself"
            ))
        }
    }
}

/// `--refresh-web-ui`: checks the source before serving, bounded by
/// `--web-timeout`, with a progress bar.
fn refresh_first(
    cache: &WebCache,
    source: &SourceUrl,
    files: &WebUiFiles,
    cached_build: Option<String>,
    args: &ServeArgs,
) -> Result<String, CliError> {
    let dir = cache.dir().path().display().to_string();
    let options = fetch_options(args.web_timeout);
    if !args.quiet {
        crate::logging::say(
            tracing::Level::INFO,
            &format!("Checking {source} for the Cellucid viewer UI (cache {dir}) …"),
        );
    }
    let bar = Bar::new(!args.quiet);
    let result = cache.prefetch(source, &options, false, &bar);
    bar.finish();
    match result {
        Ok(outcome) => Ok(format!(
            "build {} from the offline cache {dir} ({} files downloaded and verified, {} reused)",
            outcome.build_id, outcome.downloaded_files, outcome.reused_files
        )),
        Err(err @ ProxyError::Unwritable { .. }) => Err(proxy_error(&err)),
        Err(err) => match cached_build {
            Some(build) => {
                tracing::warn!(error = %err, "could not refresh the viewer UI; serving the cached build");
                Ok(format!(
                    "build {build} from the offline cache {dir} (refresh failed: {err})"
                ))
            }
            None => {
                files.set_unavailable_reason(err.to_string());
                // A reload of `/` tries again, in the background.
                files.retry_on_request(options);
                Ok(format!(
                    "UNAVAILABLE ({err}); / shows how to fix it: run `{}` once while online (cache dir {dir})",
                    files.prefetch_command()
                ))
            }
        },
    }
}
