//! Serving the active generation: the files a server hands out for `/`,
//! `/index.html`, `/assets/…` and the root icons.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cellucid_core::{FileIdentity, MemoryFile, SourceFile};

use crate::cache::WebCache;
use crate::page::unavailable_page;
use crate::store::{sha256_hex, Generation, Store, POINTER_FILE};

/// A cached UI file ready to send.
#[derive(Debug, Clone)]
pub struct UiFile {
    /// The verified bytes; the identity is the SHA-256 (the ETag).
    pub file: MemoryFile,
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
    /// There is no UI to serve; the HTML page says why and how to fix it.
    Unavailable {
        /// The page.
        html: String,
    },
    /// The cached file does not match the inventory; it is not served.
    Damaged(String),
}

/// What identifies one version of a file on disk.
type Stamp = (u64, i64, i64, u64);

#[derive(Debug, Default)]
struct State {
    pointer: Option<Stamp>,
    generation: Option<Arc<Generation>>,
    /// The generation before it: its hashed assets stay reachable so a page
    /// loaded just before a switch can still fetch them.
    previous: Option<Arc<Generation>>,
    verified: HashMap<String, (Stamp, UiFile)>,
}

/// Serves the viewer UI out of a [`WebCache`], picking up a new generation
/// as soon as another thread or process activates one.
#[derive(Debug)]
pub struct WebUiFiles {
    store: Store,
    cache_dir: PathBuf,
    source: String,
    prefetch_command: String,
    state: Mutex<State>,
    reason: Mutex<String>,
    /// A generation found damaged at startup: never served.
    refused: Mutex<Option<PathBuf>>,
}

impl WebUiFiles {
    /// Serves `cache`; `source` is named on the "unavailable" page.
    pub fn new(cache: &WebCache, source: &str) -> Self {
        let mut prefetch_command = "cellucid cache prefetch".to_owned();
        if source != crate::source::DEFAULT_SOURCE_URL {
            prefetch_command.push_str(" --web-source-url ");
            prefetch_command.push_str(&shell_word(source));
        }
        if *cache.dir().origin() == crate::dir::CacheDirOrigin::Flag {
            prefetch_command.push_str(" --web-cache-dir ");
            prefetch_command.push_str(&shell_word(&cache.dir().path().display().to_string()));
        }
        Self {
            store: cache.store().clone(),
            cache_dir: cache.dir().path().to_path_buf(),
            source: source.to_owned(),
            prefetch_command,
            state: Mutex::new(State::default()),
            reason: Mutex::new("no copy of the viewer UI has been downloaded yet".to_owned()),
            refused: Mutex::new(None),
        }
    }

    /// Records why there is no UI (shown on the page while that is so).
    pub fn set_unavailable_reason(&self, reason: impl Into<String>) {
        if let Ok(mut slot) = self.reason.lock() {
            *slot = reason.into();
        }
    }

    /// Never serves `generation` (found damaged); a newer one is served as
    /// soon as it is activated.
    pub fn refuse(&self, generation: &Generation) {
        if let Ok(mut slot) = self.refused.lock() {
            *slot = Some(generation.dir.clone());
        }
    }

    /// The build being served, if any.
    pub fn build_id(&self) -> Option<String> {
        self.generation().map(|g| g.inventory.build_id.clone())
    }

    /// The page for "no UI".
    pub fn unavailable_html(&self) -> String {
        let reason = self.reason.lock().map(|r| r.clone()).unwrap_or_default();
        unavailable_page(
            &reason,
            &self.source,
            &self.cache_dir,
            &self.prefetch_command,
        )
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
                    &self.source,
                    &self.cache_dir,
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
                UiAnswer::Unavailable {
                    html: self.unavailable_html(),
                }
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
        let stamp = (meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino());
        if let Ok(state) = self.state.lock() {
            if let Some((known, file)) = state.verified.get(path) {
                if *known == stamp
                    && file.file.identity() == &FileIdentity::Digest(asset.sha256.clone())
                {
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
            file: MemoryFile::new(
                Bytes::from(bytes),
                FileIdentity::Digest(asset.sha256.clone()),
            ),
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
        let pointer_path = self.store.dir().join(POINTER_FILE);
        let stamp = std::fs::metadata(&pointer_path)
            .ok()
            .map(|m| (m.len(), m.mtime(), m.mtime_nsec(), m.ino()));
        let mut state = self.state.lock().ok()?;
        if state.pointer == stamp && stamp.is_some() {
            return state.generation.clone();
        }
        let pointer = self.store.pointer().unwrap_or_default();
        let load = |name: Option<&String>| {
            let name = name?;
            match self.store.load(name) {
                Ok(generation) => Some(Arc::new(generation)),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot load a viewer UI generation");
                    None
                }
            }
        };
        let refused = self.refused.lock().ok().and_then(|r| r.clone());
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
