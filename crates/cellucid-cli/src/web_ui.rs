//! The viewer UI for `cellucid serve`: serve the cached build at once and
//! refresh it in the background, or download it first when there is none.

use std::sync::Arc;

use cellucid_http::WebUi;
use cellucid_proxy::{NoProgress, ProxyError, SourceUrl, WebCache, WebUiFiles};

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
    let files = Arc::new(WebUiFiles::new(&cache, source.as_str()));
    Ok(Setup {
        web_ui: WebUi::Cached(Arc::clone(&files)),
        ui: Some((cache, source, files)),
    })
}

/// Makes the viewer UI available and returns the banner's one-line status.
/// Never blocks on the network when a verified build is cached (unless
/// `--refresh-web-ui`): it is served at once and refreshed in the
/// background. With none, downloads it first and, if that fails, `/`
/// serves the "unavailable" page with the reason.
pub(crate) fn start(setup: Setup, args: &ServeArgs) -> Result<String, CliError> {
    let Some((cache, source, files)) = setup.ui else {
        return Ok("off (--no-web-ui): data routes only".to_owned());
    };
    let dir = cache.dir().path().display().to_string();
    let options = fetch_options(args.web_timeout);
    let cached = cache.usable_generation();

    if let (Some(generation), false) = (&cached, args.refresh_web_ui) {
        let build = generation.inventory.build_id.clone();
        let background_cache = cache;
        let background_source = source.clone();
        std::thread::Builder::new()
            .name("web-ui-refresh".to_owned())
            .spawn(move || {
                match background_cache.prefetch(&background_source, &options, false, &NoProgress) {
                    Ok(outcome) if outcome.changed => tracing::info!(
                        build = %outcome.build_id,
                        "a new viewer UI build is cached and now served (reload the page)"
                    ),
                    Ok(_) => tracing::debug!("the cached viewer UI is current"),
                    Err(err) => tracing::info!(
                        error = %err,
                        "could not check for a newer viewer UI; serving the cached one"
                    ),
                }
            })
            .map_err(|err| CliError::operator(format!("cannot start a thread: {err}")))?;
        return Ok(format!(
            "build {build} from the offline cache {dir} (checking {source} for updates in the background)"
        ));
    }

    if !args.quiet {
        eprintln!("Downloading the Cellucid viewer UI from {source} into {dir} …");
    }
    let bar = Bar::new(!args.quiet);
    let result = cache.prefetch(&source, &options, false, &bar);
    bar.finish();
    let status = match (result, cached) {
        (Ok(outcome), _) => format!(
            "build {} from the offline cache {dir} ({} files downloaded and verified, {} reused)",
            outcome.build_id, outcome.downloaded_files, outcome.reused_files
        ),
        (Err(err @ ProxyError::Unwritable { .. }), _) => return Err(proxy_error(&err)),
        (Err(err), Some(generation)) => {
            tracing::warn!(error = %err, "could not refresh the viewer UI; serving the cached build");
            format!(
                "build {} from the offline cache {dir} (refresh failed: {err})",
                generation.inventory.build_id
            )
        }
        (Err(err), None) => {
            // A cached build that failed verification is never served.
            let reason = match cache.active() {
                Ok(Some(damaged)) => {
                    files.refuse(&damaged);
                    let why = cache
                        .verify()
                        .err()
                        .map(|e| e.to_string())
                        .unwrap_or_default();
                    format!("{why}; downloading a fresh copy failed: {err}")
                }
                _ => err.to_string(),
            };
            files.set_unavailable_reason(reason.clone());
            format!(
                "UNAVAILABLE ({reason}); / shows how to fix it: run `{}` once while online (cache dir {dir})",
                files.prefetch_command()
            )
        }
    };
    Ok(status)
}
