//! Serving the active generation: the files a server hands out for `/`,
//! `/index.html`, `/assets/…` and the root icons, and the pages `/` answers
//! while there is none.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;

use crate::background::{Background, Phase, RETRY_INTERVAL};
use crate::cache::WebCache;
use crate::fetch::FetchOptions;
use crate::page::{downloading_page, unavailable_page};
use crate::source::SourceUrl;
use crate::store::{sha256_hex, Generation, POINTER_FILE};

/// A cached UI file ready to send: its verified bytes and their digest.
/// The server that answers with it owns the HTTP side (ranges, `ETag`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UiFile {
    /// The verified bytes.
    pub bytes: Bytes,
    /// Their SHA-256 in lowercase hex: the file's identity (the `ETag`).
    pub sha256: String,
    /// The inventory's content type.
    pub content_type: String,
    /// Whether the name carries a content hash, so it may be cached forever.
    pub immutable: bool,
}

/// The answer for one UI path.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum UiAnswer {
    /// The file.
    File(UiFile),
    /// The build declares no such file.
    NotDeclared,
    /// There is no UI to serve yet: it is being downloaded. The HTML page
    /// says so and reloads itself until the UI is there.
    Downloading {
        /// The page.
        html: String,
    },
    /// There is no UI to serve; the HTML page says why and how to fix it.
    Unavailable {
        /// The page.
        html: String,
    },
    /// The cached file does not match the inventory; it is not served.
    Damaged(String),
}

/// What identifies one version of a file on disk: size, modification time
/// (seconds, nanoseconds) and inode. Deciding only when a file is verified
/// again (the verified bytes are held in memory), it needs no ctime, unlike
/// the ETag identity of served dataset files.
type Stamp = (u64, i64, i64, u64);

/// The [`Stamp`] of the file `meta` describes.
fn stamp(meta: &std::fs::Metadata) -> Stamp {
    (meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino())
}

#[derive(Debug, Default)]
struct State {
    pointer: Option<Stamp>,
    generation: Option<Arc<Generation>>,
    /// The generation before it: its hashed assets stay reachable so a page
    /// loaded just before a switch can still fetch them.
    previous: Option<Arc<Generation>>,
    verified: HashMap<String, (Stamp, UiFile)>,
}

/// A generation found damaged: never served.
#[derive(Debug)]
struct Refused {
    dir: PathBuf,
    why: String,
}

/// Serves the viewer UI out of a [`WebCache`], picking up a new generation
/// as soon as another thread or process activates one.
#[derive(Debug)]
pub struct WebUiFiles {
    cache: WebCache,
    source: SourceUrl,
    prefetch_command: String,
    state: Mutex<State>,
    /// Why there is no UI, as told by [`WebUiFiles::set_unavailable_reason`].
    reason: Mutex<Option<String>>,
    refused: Mutex<Option<Refused>>,
    /// The download that fills the cache while the server runs, once asked for.
    background: OnceLock<Background>,
}

impl WebUiFiles {
    /// Serves `cache`, whose builds come from `source` (named on the pages
    /// `/` answers while there is no UI).
    pub fn new(cache: &WebCache, source: &SourceUrl) -> Self {
        let mut prefetch_command = "cellucid cache prefetch".to_owned();
        if source.as_str() != crate::source::DEFAULT_SOURCE_URL {
            prefetch_command.push_str(" --web-source-url ");
            prefetch_command.push_str(&shell_word(source.as_str()));
        }
        if *cache.dir().origin() == crate::dir::CacheDirOrigin::Flag {
            prefetch_command.push_str(" --web-cache-dir ");
            prefetch_command.push_str(&shell_word(&cache.dir().path().display().to_string()));
        }
        Self {
            cache: cache.clone(),
            source: source.clone(),
            prefetch_command,
            state: Mutex::new(State::default()),
            reason: Mutex::new(None),
            refused: Mutex::new(None),
            background: OnceLock::new(),
        }
    }

    /// Downloads the source's current build on a background thread; it is
    /// served as soon as it is verified and activated. Until then `/`
    /// answers [`UiAnswer::Downloading`], a page that reloads itself; when
    /// the download fails, [`UiAnswer::Unavailable`] with the reason, and a
    /// request for `/` a few seconds later tries again. With a build served
    /// already, this is a check for a newer one. Returns at once.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn download_in_background(&self, options: FetchOptions) -> std::io::Result<()> {
        let serving = self.generation().is_some();
        self.background(options).start(serving)
    }

    /// Lets a request for `/` start a background download (see
    /// [`WebUiFiles::download_in_background`]) while there is no UI to
    /// serve, a few seconds from now at the earliest: for a server whose own
    /// download just failed.
    pub fn retry_on_request(&self, options: FetchOptions) {
        self.background(options).ended_elsewhere();
    }

    /// The background downloader, made with `options` on first use (later
    /// calls keep the first options).
    fn background(&self, options: FetchOptions) -> &Background {
        self.background.get_or_init(|| {
            Background::new(
                self.cache.clone(),
                self.source.clone(),
                options,
                self.prefetch_command.clone(),
            )
        })
    }

    /// Records why there is no UI (shown on the page while that is so and
    /// no background download has failed since).
    pub fn set_unavailable_reason(&self, reason: impl Into<String>) {
        if let Ok(mut slot) = self.reason.lock() {
            *slot = Some(reason.into());
        }
    }

    /// Never serves `generation`, found damaged for reason `why`; a newer
    /// one is served as soon as it is activated.
    pub fn refuse(&self, generation: &Generation, why: impl Into<String>) {
        if let Ok(mut slot) = self.refused.lock() {
            *slot = Some(Refused {
                dir: generation.dir.clone(),
                why: why.into(),
            });
        }
    }

    /// The build being served, if any.
    pub fn build_id(&self) -> Option<String> {
        self.generation().map(|g| g.inventory.build_id.clone())
    }

    /// The page for "no UI": why, and how to fix it.
    pub fn unavailable_html(&self) -> String {
        unavailable_page(
            &self.reason(),
            self.source.as_str(),
            self.cache.dir().path(),
            &self.prefetch_command,
        )
    }

    /// Why there is no UI: the cached build's damage, then the latest
    /// failure to download one.
    fn reason(&self) -> String {
        let failure = match self.background.get().map(Background::phase) {
            Some(Phase::Ended {
                failure: Some(why), ..
            }) => Some(why),
            _ => self.reason.lock().ok().and_then(|r| r.clone()),
        };
        let damaged = self
            .refused
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|r| r.why.clone()));
        match (damaged, failure) {
            (Some(damaged), Some(failure)) => {
                format!("{damaged}; downloading a fresh copy failed: {failure}")
            }
            (Some(why), None) | (None, Some(why)) => why,
            (None, None) => "no copy of the viewer UI has been downloaded yet".to_owned(),
        }
    }

    /// The page `/` answers while there is no generation to serve: the
    /// download's progress while one runs (starting one when the last ended
    /// a while ago), else why there is no UI.
    fn missing(&self) -> UiAnswer {
        let Some(background) = self.background.get() else {
            return UiAnswer::Unavailable {
                html: self.unavailable_html(),
            };
        };
        let tally = match background.phase() {
            Phase::Running(tally) => Some(tally),
            Phase::Ended { at, .. } if at.elapsed() < RETRY_INTERVAL => None,
            Phase::Idle | Phase::Ended { .. } => match background.start(false) {
                Ok(()) => match background.phase() {
                    Phase::Running(tally) => Some(tally),
                    _ => None,
                },
                Err(err) => {
                    tracing::warn!(error = %err, "cannot start downloading the viewer UI");
                    None
                }
            },
        };
        match tally {
            Some(tally) => UiAnswer::Downloading {
                html: downloading_page(
                    self.source.as_str(),
                    self.cache.dir().path(),
                    tally.snapshot(),
                ),
            },
            None => UiAnswer::Unavailable {
                html: self.unavailable_html(),
            },
        }
    }

    /// The command that fills this cache from this source, for messages.
    pub fn prefetch_command(&self) -> &str {
        &self.prefetch_command
    }

    /// Answers UI path `path` (`""` means `index.html`). Reads block: call
    /// it off the async workers.
    pub fn answer(&self, path: &str) -> UiAnswer {
        let path = if path.is_empty() { "index.html" } else { path };
        match self.answer_file(path) {
            // A browser opening `/` gets the page explaining the fix.
            UiAnswer::Damaged(detail) if path == "index.html" => {
                let html = unavailable_page(
                    &format!("the cached viewer UI is damaged: {detail}"),
                    self.source.as_str(),
                    self.cache.dir().path(),
                    &format!("{} --force", self.prefetch_command),
                );
                UiAnswer::Unavailable { html }
            }
            other => other,
        }
    }

    fn answer_file(&self, path: &str) -> UiAnswer {
        let Some(generation) = self.generation() else {
            return if path == "index.html" {
                self.missing()
            } else {
                UiAnswer::NotDeclared
            };
        };
        let (generation, asset) = match generation.inventory.get(path) {
            Some(asset) => (Arc::clone(&generation), asset.clone()),
            None => match self.previous().and_then(|p| {
                let asset = p
                    .inventory
                    .get(path)
                    .filter(|_| is_content_hashed(path))?
                    .clone();
                Some((p, asset))
            }) {
                Some(found) => found,
                None => return UiAnswer::NotDeclared,
            },
        };
        let file_path = generation.dir.join(&asset.path);
        let meta = match std::fs::symlink_metadata(&file_path) {
            Ok(meta) if meta.is_file() => meta,
            Ok(_) => {
                return UiAnswer::Damaged(format!("{} is not a regular file", file_path.display()))
            }
            Err(err) => return UiAnswer::Damaged(format!("{}: {err}", file_path.display())),
        };
        let stamp = stamp(&meta);
        if let Ok(state) = self.state.lock() {
            if let Some((known, file)) = state.verified.get(path) {
                if *known == stamp && file.sha256 == asset.sha256 {
                    return UiAnswer::File(file.clone());
                }
            }
        }
        let bytes = match std::fs::read(&file_path) {
            Ok(bytes) => bytes,
            Err(err) => return UiAnswer::Damaged(format!("{}: {err}", file_path.display())),
        };
        if bytes.len() as u64 != asset.bytes || sha256_hex(&bytes) != asset.sha256 {
            return UiAnswer::Damaged(format!(
                "{} does not match the inventory's size and SHA-256",
                file_path.display()
            ));
        }
        let file = UiFile {
            bytes: Bytes::from(bytes),
            sha256: asset.sha256.clone(),
            content_type: asset.content_type.clone(),
            immutable: is_content_hashed(&asset.path),
        };
        if let Ok(mut state) = self.state.lock() {
            state
                .verified
                .insert(path.to_owned(), (stamp, file.clone()));
        }
        UiAnswer::File(file)
    }

    fn previous(&self) -> Option<Arc<Generation>> {
        self.state.lock().ok()?.previous.clone()
    }

    /// The active generation, reloaded when `active.json` changed.
    fn generation(&self) -> Option<Arc<Generation>> {
        let store = self.cache.store();
        let pointer_path = store.dir().join(POINTER_FILE);
        let stamp = std::fs::metadata(&pointer_path)
            .ok()
            .map(|meta| stamp(&meta));
        let mut state = self.state.lock().ok()?;
        if state.pointer == stamp && stamp.is_some() {
            return state.generation.clone();
        }
        let pointer = store.pointer().unwrap_or_default();
        let load = |name: Option<&String>| {
            let name = name?;
            match store.load(name) {
                Ok(generation) => Some(Arc::new(generation)),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot load a viewer UI generation");
                    None
                }
            }
        };
        let refused = self
            .refused
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|r| r.dir.clone()));
        let generation = load(pointer.active.as_ref()).filter(|g| Some(&g.dir) != refused.as_ref());
        state.previous = load(pointer.previous.as_ref());
        if let Some(g) = &generation {
            tracing::debug!(build = %g.inventory.build_id, "serving viewer UI build");
        }
        state.pointer = stamp;
        state.verified.clear();
        state.generation.clone_from(&generation);
        generation
    }
}

/// `word`, single-quoted for a POSIX shell when it needs it.
fn shell_word(word: &str) -> String {
    if word
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-_.:~@%+=,".contains(&b))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Whether `path` is under `assets/` and its file name has a content hash:
/// a `-` or `.` separated segment of at least 8 characters from
/// `[A-Za-z0-9_]` containing a digit (as Vite and webpack name files).
pub fn is_content_hashed(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("assets/") else {
        return false;
    };
    let name = rest.rsplit('/').next().unwrap_or(rest);
    name.split(['-', '.']).any(|segment| {
        segment.len() >= 8
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && segment.bytes().any(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hashed_asset_names_are_immutable() {
        for yes in [
            "assets/index-BkX3a9Qz.js",
            "assets/app.3f2a9c1d.css",
            "assets/sub/x-12345678.woff2",
        ] {
            assert!(is_content_hashed(yes), "{yes}");
        }
        for no in [
            "index.html",
            "assets/index.js",
            "assets/abcdefgh.js",
            "favicon-12345678.ico",
            "assets/a-1234567.js",
        ] {
            assert!(!is_content_hashed(no), "{no}");
        }
    }
}
