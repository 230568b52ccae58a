//! Hosted-asset proxy for the Cellucid viewer UI.
//!
//! The viewer UI is published at <https://www.cellucid.com>. This crate will
//! download it once, verify every asset against the site's
//! `cellucid-web-assets.json` inventory, keep it in an on-disk cache that
//! works offline, and hand the server the files to answer `/`, `/index.html`
//! and `/assets/…` from the same origin as the data.
//!
//! This build carries only the public vocabulary; the server answers `/` with
//! a 503 saying the UI is not available, and every data route works.

/// Where the viewer UI is downloaded from unless told otherwise.
pub const DEFAULT_SOURCE_URL: &str = "https://www.cellucid.com";

/// The environment variable naming a persistent cache directory.
pub const CACHE_DIR_ENV: &str = "CELLUCID_WEB_PROXY_CACHE_DIR";

/// Where the viewer UI comes from and where it is cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebUiSource {
    /// The site publishing the UI build (`https://…`, or a loopback `http://` source).
    pub url: String,
}

impl Default for WebUiSource {
    fn default() -> Self {
        Self {
            url: DEFAULT_SOURCE_URL.to_owned(),
        }
    }
}

/// Why the viewer UI cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// This build has no UI proxy yet.
    #[error("the Cellucid viewer UI is not available in this build of cellucid-rs")]
    NotBuilt,
}
