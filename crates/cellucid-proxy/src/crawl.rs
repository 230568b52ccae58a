//! The fallback for a source without an inventory: crawl from `index.html`
//! as the 0.9.0 prefetch did (HTML `src`/`href`, CSS `url()`/`@import`, JS
//! import specifiers and literal `assets/…` strings), within bounds.

use std::collections::{BTreeSet, VecDeque};
use std::path::Path;
use std::sync::OnceLock;

use regex::Regex;

use crate::error::ProxyError;
use crate::fetch::{FetchFailure, Fetcher};
use crate::inventory::{build_id_of_index, check_asset_path, Inventory};
use crate::prefetch::{crawl_asset, Found, Progress};
use crate::store::{sha256_hex, write_file};

/// Most files a crawl downloads.
const MAX_FILES: usize = 2000;
/// Largest file downloaded.
const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;
/// Most bytes in all.
const MAX_TOTAL_BYTES: u64 = 256 * 1024 * 1024;
/// Files larger than this are stored but not scanned for references.
const MAX_SCAN_BYTES: usize = 8 * 1024 * 1024;
/// Root files tried even when nothing links them.
const ROOT_FILES: [&str; 3] = ["favicon.ico", "site.webmanifest", "browserconfig.xml"];
/// Extensions followed (as 0.9.0 did).
const EXTENSIONS: [&str; 21] = [
    "html",
    "js",
    "mjs",
    "css",
    "json",
    "svg",
    "png",
    "jpg",
    "jpeg",
    "ico",
    "xml",
    "webmanifest",
    "woff",
    "woff2",
    "ttf",
    "otf",
    "wasm",
    "bin",
    "gz",
    "txt",
    "map",
];

/// Crawls the source into `stage`; returns the inventory it makes, and the
/// files and bytes downloaded.
pub(crate) fn crawl(
    fetcher: &Fetcher,
    stage: &Path,
    progress: &dyn Progress,
) -> Result<(Inventory, u64, u64), ProxyError> {
    let source = fetcher.source().clone();
    let mut found = Found::new();
    let mut queued: BTreeSet<String> = BTreeSet::new();
    let mut queue: VecDeque<(String, bool)> = VecDeque::new();
    queue.push_back(("index.html".to_owned(), true));
    queued.insert("index.html".to_owned());
    for root in ROOT_FILES {
        queue.push_back((root.to_owned(), false));
        queued.insert(root.to_owned());
    }
    let mut total = 0u64;
    let too_large = |why: String| ProxyError::TooLarge {
        url: source.to_string(),
        why,
    };
    while let Some((path, required)) = queue.pop_front() {
        let url = source.join(&path);
        let fetched = match fetcher.get(&url, MAX_FILE_BYTES, &|n| progress.received(n)) {
            Ok(fetched) => fetched,
            Err(FetchFailure::Missing) if !required => {
                tracing::debug!(%url, "linked file not found; skipped");
                continue;
            }
            Err(FetchFailure::Missing) => {
                return Err(ProxyError::Fetch {
                    url,
                    why: "the server answered 404: is this the Cellucid site?".to_owned(),
                })
            }
            Err(FetchFailure::Failed(err)) if required => return Err(err),
            Err(FetchFailure::Failed(err)) => {
                tracing::debug!(error = %err, "linked file could not be fetched; skipped");
                continue;
            }
        };
        total += fetched.body.len() as u64;
        if total > MAX_TOTAL_BYTES {
            return Err(too_large(format!("more than {MAX_TOTAL_BYTES} bytes")));
        }
        let content_type = fetched
            .content_type
            .clone()
            .filter(|t| Inventory::content_type_ok(t))
            .unwrap_or_else(|| guess_type(&path).to_owned());
        if fetched.body.len() <= MAX_SCAN_BYTES {
            for reference in references(&path, &fetched.body) {
                if let Some(next) = resolve(&path, &reference, &source.base_path()) {
                    if queued.insert(next.clone()) {
                        if queued.len() > MAX_FILES {
                            return Err(too_large(format!("more than {MAX_FILES} files")));
                        }
                        queue.push_back((next, false));
                    }
                }
            }
        }
        write_file(stage, &path, &fetched.body)?;
        progress.file_done(&path, fetched.body.len() as u64);
        found.insert(
            path.clone(),
            crawl_asset(&path, &fetched.body, content_type),
        );
    }
    let index_bytes =
        std::fs::read(stage.join("index.html")).map_err(|err| ProxyError::io(stage, err))?;
    let build_id = build_id_of_index(&index_bytes)
        .unwrap_or_else(|_| format!("crawl-{}", &sha256_hex(&index_bytes)[..16]));
    let files = found.len() as u64;
    let inventory = Inventory::from_assets(build_id, found);
    inventory
        .validate()
        .map_err(|why| ProxyError::BadInventory {
            url: source.join("index.html"),
            why,
        })?;
    Ok((inventory, files, total))
}

/// Reference strings in a file, by its kind.
fn references(path: &str, body: &[u8]) -> Vec<String> {
    static PATTERNS: OnceLock<Vec<Regex>> = OnceLock::new();
    let patterns = PATTERNS.get_or_init(|| {
        [
            r#"(?i)\b(?:src|href)\s*=\s*["']([^"'<>]+)["']"#,
            r#"url\(\s*["']?([^"')]+)["']?\s*\)"#,
            r#"@import\s+["']([^"']+)["']"#,
            r#"\bfrom\s*["']([^"']+)["']"#,
            r#"\bimport\s*\(?\s*["']([^"']+)["']"#,
            r#"new\s+URL\(\s*["']([^"']+)["']\s*,\s*import\.meta\.url"#,
            r#"["'`](/?assets/[^"'`\s]+)["'`]"#,
        ]
        .iter()
        .filter_map(|p| Regex::new(p).ok())
        .collect()
    });
    let ext = extension(path);
    if !matches!(
        ext.as_str(),
        "html" | "css" | "js" | "mjs" | "json" | "webmanifest" | "svg" | "xml"
    ) {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(body);
    let mut out = Vec::new();
    for re in patterns {
        for cap in re.captures_iter(&text) {
            if let Some(m) = cap.get(1) {
                out.push(m.as_str().trim().to_owned());
            }
        }
    }
    out
}

/// The asset path a reference in `from` points to, when it is a file of
/// the source worth fetching.
fn resolve(from: &str, reference: &str, base_path: &str) -> Option<String> {
    if reference.starts_with("data:") || reference.starts_with("//") || reference.contains("://") {
        return None;
    }
    let reference = reference.split(['?', '#']).next()?;
    if reference.is_empty() {
        return None;
    }
    let joined = if let Some(abs) = reference.strip_prefix('/') {
        let base = base_path.trim_start_matches('/');
        abs.strip_prefix(base).unwrap_or(abs).to_owned()
    } else {
        let dir = from.rsplit_once('/').map_or("", |(d, _)| d);
        if dir.is_empty() {
            reference.to_owned()
        } else {
            format!("{dir}/{reference}")
        }
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    let path = percent_encoding::percent_decode_str(&parts.join("/"))
        .decode_utf8()
        .ok()?
        .into_owned();
    if !EXTENSIONS.contains(&extension(&path).as_str()) || check_asset_path(&path).is_err() {
        return None;
    }
    Some(path)
}

fn extension(path: &str) -> String {
    path.rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default()
}

/// A content type from the file name, for a response without a usable one.
fn guess_type(path: &str) -> &'static str {
    match extension(path).as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "ico" => "image/x-icon",
        "xml" => "application/xml",
        "webmanifest" => "application/manifest+json",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "wasm" => "application/wasm",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_resolved_against_the_referencing_file() {
        assert_eq!(
            resolve("index.html", "/assets/a.js", "/").as_deref(),
            Some("assets/a.js")
        );
        assert_eq!(
            resolve("assets/a.css", "../img/x.png?v=1", "/").as_deref(),
            Some("img/x.png")
        );
        assert_eq!(
            resolve("assets/a.js", "./b.js", "/").as_deref(),
            Some("assets/b.js")
        );
        assert_eq!(
            resolve("index.html", "/ui/assets/a.js", "/ui/").as_deref(),
            Some("assets/a.js")
        );
        assert_eq!(resolve("index.html", "https://cdn.example/x.js", "/"), None);
        assert_eq!(resolve("index.html", "../../etc/passwd.txt", "/"), None);
        assert_eq!(resolve("index.html", "page", "/"), None);
    }

    #[test]
    fn html_css_and_js_references_are_found() {
        let html = br#"<script type="module" src="/assets/app-1.js"></script><link href='style.css' rel=stylesheet>"#;
        let found = references("index.html", html);
        assert!(found.contains(&"/assets/app-1.js".to_owned()));
        assert!(found.contains(&"style.css".to_owned()));
        let js = br#"import x from "./chunk-2.js"; const w = new URL('./w.wasm', import.meta.url); import("./lazy.js");"#;
        let found = references("assets/app.js", js);
        for want in ["./chunk-2.js", "./w.wasm", "./lazy.js"] {
            assert!(found.contains(&want.to_owned()), "{want} in {found:?}");
        }
        let css = br#"@import "b.css"; body { background: url(img/bg.png) }"#;
        let found = references("a.css", css);
        assert!(found.contains(&"b.css".to_owned()) && found.contains(&"img/bg.png".to_owned()));
    }
}
