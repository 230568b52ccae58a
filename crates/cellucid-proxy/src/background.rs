//! Downloading the viewer UI while the server already answers: a thread
//! runs the prefetch, and [`WebUiFiles`](crate::WebUiFiles) reads how far it
//! got to choose the page `/` answers until a build is ready.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cache::WebCache;
use crate::fetch::FetchOptions;
use crate::page::DownloadProgress;
use crate::prefetch::Progress;
use crate::source::SourceUrl;

/// How long after a download ended a request for `/` may start another
/// (when there is still no build to serve): a reload retries, a page
/// polled in a loop does not hammer the source.
pub(crate) const RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// What a running download has done, counted as it goes.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    files: AtomicU64,
    files_done: AtomicU64,
    bytes: AtomicU64,
    bytes_done: AtomicU64,
}

impl Tally {
    pub(crate) fn snapshot(&self) -> DownloadProgress {
        DownloadProgress {
            files: self.files.load(Ordering::Relaxed),
            files_done: self.files_done.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
        }
    }
}

impl Progress for Tally {
    fn start(&self, files: u64, bytes: u64) {
        self.files.store(files, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
    }

    fn received(&self, bytes: u64) {
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    fn file_done(&self, _path: &str, _bytes: u64) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where the background download is.
#[derive(Debug, Clone)]
pub(crate) enum Phase {
    /// None has run yet.
    Idle,
    /// One is running.
    Running(Arc<Tally>),
    /// The last one ended, with the reason when it failed.
    Ended {
        at: Instant,
        failure: Option<String>,
    },
}

/// Downloads one source into one cache on a thread of its own, one run at a
/// time.
#[derive(Debug)]
pub(crate) struct Background {
    cache: WebCache,
    source: SourceUrl,
    options: FetchOptions,
    /// The command that fills the cache, for the log line of a failure.
    fix: String,
    phase: Arc<Mutex<Phase>>,
}

impl Background {
    pub(crate) fn new(
        cache: WebCache,
        source: SourceUrl,
        options: FetchOptions,
        fix: String,
    ) -> Self {
        Self {
            cache,
            source,
            options,
            fix,
            phase: Arc::new(Mutex::new(Phase::Idle)),
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase.lock().map(|p| p.clone()).unwrap_or(Phase::Idle)
    }

    /// Records that a download just ended without one of ours having run
    /// (the caller's own attempt failed): the next may start only
    /// [`RETRY_INTERVAL`] from now.
    pub(crate) fn ended_elsewhere(&self) {
        if let Ok(mut phase) = self.phase.lock() {
            if matches!(*phase, Phase::Idle) {
                *phase = Phase::Ended {
                    at: Instant::now(),
                    failure: None,
                };
            }
        }
    }

    /// Starts a download unless one is running. `serving` says whether a
    /// build is served meanwhile (a failure is then only a failed check for
    /// a newer one).
    ///
    /// # Errors
    /// When the thread cannot be started (recorded as the failure too).
    pub(crate) fn start(&self, serving: bool) -> std::io::Result<()> {
        let tally = Arc::new(Tally::default());
        {
            let Ok(mut phase) = self.phase.lock() else {
                return Ok(());
            };
            if matches!(*phase, Phase::Running(_)) {
                return Ok(());
            }
            *phase = Phase::Running(Arc::clone(&tally));
        }
        let cache = self.cache.clone();
        let source = self.source.clone();
        let options = self.options.clone();
        let fix = self.fix.clone();
        let phase = Arc::clone(&self.phase);
        let spawned = std::thread::Builder::new()
            .name("web-ui-download".to_owned())
            .spawn(move || {
                let result = cache.prefetch(&source, &options, false, tally.as_ref());
                let failure = match result {
                    Ok(outcome) if outcome.changed => {
                        tracing::info!(
                            build = %outcome.build_id,
                            "the viewer UI is downloaded, verified and served now (reload the page)"
                        );
                        None
                    }
                    Ok(_) => {
                        tracing::debug!("the cached viewer UI is current");
                        None
                    }
                    Err(err) if serving => {
                        tracing::info!(
                            error = %err,
                            "could not check for a newer viewer UI; serving the cached one"
                        );
                        Some(err.to_string())
                    }
                    Err(err) => {
                        tracing::warn!(
                            "the viewer UI could not be downloaded ({err}); / shows how to fix it: run `{fix}` once while online"
                        );
                        Some(err.to_string())
                    }
                };
                if let Ok(mut slot) = phase.lock() {
                    *slot = Phase::Ended {
                        at: Instant::now(),
                        failure,
                    };
                }
            });
        if let Err(err) = spawned {
            if let Ok(mut slot) = self.phase.lock() {
                *slot = Phase::Ended {
                    at: Instant::now(),
                    failure: Some(format!("cannot start a download thread: {err}")),
                };
            }
            return Err(err);
        }
        Ok(())
    }
}
