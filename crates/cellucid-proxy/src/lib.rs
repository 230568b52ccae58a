//! Hosted-asset proxy for the Cellucid viewer UI, with a verified offline
//! cache.
//!
//! The viewer UI is published at <https://www.cellucid.com>. This crate
//! downloads a build once into a cache directory, verifies every file
//! against the site's `cellucid-web-assets.json` inventory (size and
//! SHA-256) — or crawls from `index.html` when a source publishes no
//! inventory — and hands a server the verified files to answer `/`,
//! `/index.html`, `/assets/…` and the root icons from the same origin as
//! the data. It knows nothing about HTTP serving.
//!
//! - [`CacheDir`] chooses the directory (`--web-cache-dir`,
//!   `CELLUCID_WEB_PROXY_CACHE_DIR`, the user cache dir) and refuses one that
//!   is not dedicated (`/`, the working directory, the home directory…).
//! - [`WebCache`] prefetches, verifies and clears it. Each build is written
//!   as a new generation and switched to atomically; a file lock makes
//!   processes sharing a directory safe.
//! - [`WebUiFiles`] answers UI paths from the active generation, re-checking
//!   each file's hash. With no UI cached, it downloads one in the background
//!   ([`WebUiFiles::download_in_background`]) while `/` answers a page that
//!   says so and reloads itself, or the offline page with the fix when the
//!   download fails. It hands out bytes and their SHA-256 ([`UiFile`]); the
//!   server owns the HTTP side.
//!
//! ```no_run
//! use cellucid_proxy::{CacheDir, Environment, FetchOptions, NoProgress, SourceUrl, WebCache};
//! # fn main() -> Result<(), cellucid_proxy::ProxyError> {
//! let cache = WebCache::new(CacheDir::resolve(None, &Environment::current())?);
//! let source = SourceUrl::parse(cellucid_proxy::DEFAULT_SOURCE_URL)?;
//! let outcome = cache.prefetch(&source, &FetchOptions::default(), false, &NoProgress)?;
//! println!("viewer UI build {} cached", outcome.build_id);
//! # Ok(()) }
//! ```

mod background;
mod cache;
mod crawl;
mod dir;
mod error;
mod fetch;
mod inventory;
mod page;
mod prefetch;
mod serve;
mod source;
mod store;

pub use cache::{VerifyReport, WebCache};
pub use dir::{CacheDir, CacheDirOrigin, Environment, CACHE_DIR_ENV};
pub use error::ProxyError;
pub use fetch::{FetchOptions, USER_AGENT};
pub use inventory::{build_id_of_index, check_asset_path, Asset, Inventory, INVENTORY_FILE};
pub use page::{
    downloading_page, unavailable_page, DownloadProgress, DOWNLOADING_PAGE_REFRESH_SECS,
    UNAVAILABLE_PAGE_CSP,
};
pub use prefetch::{prefetch, NoProgress, PrefetchOutcome, Progress};
pub use serve::{is_content_hashed, UiAnswer, UiFile, WebUiFiles};
pub use source::{SourceUrl, DEFAULT_SOURCE_URL};
pub use store::{Generation, GenerationKind};
