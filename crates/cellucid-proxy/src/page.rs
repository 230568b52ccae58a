//! The pages `/` answers while the viewer UI cannot be served: the one that
//! says it is being downloaded, and the one that says what is wrong and how
//! to fix it. Both are self-contained (no script, no external resource) and
//! link only relatively, so they work under any prefix behind a proxy.

use std::fmt::Write as _;
use std::path::Path;

/// The `Content-Security-Policy` sent with both pages: nothing may load,
/// only the page's own inline style applies. (A `<meta http-equiv=refresh>`
/// is not a fetch, so the downloading page still reloads itself.)
pub const UNAVAILABLE_PAGE_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'";

/// Seconds between reloads of the "being downloaded" page.
pub const DOWNLOADING_PAGE_REFRESH_SECS: u32 = 2;

/// How far a download has come, for the "being downloaded" page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DownloadProgress {
    /// Files in the build (0 until the inventory is read).
    pub files: u64,
    /// Files done (downloaded or reused).
    pub files_done: u64,
    /// Bytes in the build.
    pub bytes: u64,
    /// Bytes received or reused so far.
    pub bytes_done: u64,
}

/// The shared look of both pages.
const STYLE: &str = r#"<style>
  body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2330; background: #f5f6f8; margin: 0; }
  main { max-width: 46rem; margin: 3rem auto; background: #fff; border: 1px solid #d8dce3; border-radius: 10px; padding: 2rem 2.5rem; }
  h1 { font-size: 1.45rem; margin: 0 0 .5rem; }
  h1.bad { color: #9a2a1f; }
  h2 { font-size: 1.05rem; margin: 1.6rem 0 .4rem; }
  code, pre { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .9em; background: #eef0f4; border-radius: 4px; }
  code { padding: .1em .3em; }
  pre { padding: .7rem 1rem; overflow-x: auto; white-space: pre-wrap; overflow-wrap: anywhere; }
  dt { font-weight: 600; margin-top: .6rem; }
  dd { margin: 0; }
  ol li { margin-bottom: .6rem; }
  .note { color: #555d6b; font-size: .92em; }
</style>"#;

/// Renders the "the viewer UI is being downloaded" page: it reloads itself
/// every [`DOWNLOADING_PAGE_REFRESH_SECS`] seconds (keeping the URL and its
/// query), so it becomes the viewer as soon as the download is done.
pub fn downloading_page(source: &str, cache_dir: &Path, progress: DownloadProgress) -> String {
    let source = escape(source);
    let cache_dir = escape(&cache_dir.display().to_string());
    let mut status = String::new();
    if progress.files == 0 {
        status.push_str("Contacting the source…");
    } else {
        let _ = write!(
            status,
            "{} of {} files",
            progress.files_done.min(progress.files),
            progress.files
        );
        let percent = progress
            .bytes_done
            .min(progress.bytes)
            .saturating_mul(100)
            .checked_div(progress.bytes);
        if let Some(percent) = percent {
            let _ = write!(status, " ({percent}%)");
        }
    }
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{DOWNLOADING_PAGE_REFRESH_SECS}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Downloading the Cellucid viewer UI…</title>
{STYLE}
</head>
<body>
<main>
<h1>The Cellucid viewer UI is being downloaded</h1>
<p>This server is downloading the viewer UI from <code>{source}</code> into
<code>{cache_dir}</code>. That happens once: later starts use the cached copy,
also offline.</p>
<p><strong>{status}</strong></p>
<p>This page reloads itself and becomes the viewer when the download is done.
Your data is already served: <a href="_cellucid/datasets">_cellucid/datasets</a>.</p>
</main>
</body>
</html>
"#
    )
}

/// Renders the "viewer UI unavailable" page. `prefetch` is the command that
/// fills this server's cache (`cellucid cache prefetch` plus the flags it
/// needs).
pub fn unavailable_page(reason: &str, source: &str, cache_dir: &Path, prefetch: &str) -> String {
    let prefetch = escape(prefetch);
    let reason = escape(reason);
    let source = escape(source);
    let cache_dir = escape(&cache_dir.display().to_string());
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Cellucid viewer UI unavailable</title>
{STYLE}
</head>
<body>
<main>
<h1 class="bad">The Cellucid viewer UI could not be loaded</h1>
<p>This server has no usable copy of the viewer UI (see the reason below).
Your data is still being served: <a href="_cellucid/datasets">_cellucid/datasets</a>.</p>
<dl>
<dt>Reason</dt><dd><pre>{reason}</pre></dd>
<dt>UI source</dt><dd><code>{source}</code></dd>
<dt>Cache directory</dt><dd><code>{cache_dir}</code></dd>
</dl>
<h2>How to fix it</h2>
<ol>
<li>On a machine with network access, download the UI once into the cache:
<pre>{prefetch}</pre>
then reload this page: the running server picks it up. After that the UI
works offline, also after a restart.</li>
<li>If the cache directory is not kept between sessions (a temporary or scratch
directory), point the cache at a persistent directory and prefetch into it:
<pre>export CELLUCID_WEB_PROXY_CACHE_DIR=$HOME/.cache/cellucid/web
cellucid cache prefetch</pre></li>
<li>Behind a firewall or proxy, allow access to <code>{source}</code> (proxies come from <code>https_proxy</code>), or copy a prefetched
cache directory from another machine.</li>
</ol>
<p class="note">Reloading this page a few seconds later tries the download again. Check the cache with <code>cellucid cache verify</code>; see where it is with <code>cellucid cache dir</code>.</p>
</main>
</body>
</html>
"#
    )
}

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_what_it_shows_and_loads_nothing() {
        let page = unavailable_page(
            "<script>x</script>",
            "http://127.0.0.1:1",
            Path::new("/tmp/a&b"),
            "cellucid cache prefetch --web-cache-dir '/tmp/a&b'",
        );
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("/tmp/a&amp;b"));
        assert!(page.contains("cellucid cache prefetch"));
        assert!(page.contains("CELLUCID_WEB_PROXY_CACHE_DIR"));
        assert!(!page.contains("src="));
    }

    /// Every `href` of `page`.
    fn links(page: &str) -> Vec<&str> {
        page.split("href=\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect()
    }

    #[test]
    fn both_pages_link_only_relatively() {
        let downloading =
            downloading_page("https://x", Path::new("/c"), DownloadProgress::default());
        let unavailable = unavailable_page(
            "why",
            "https://x",
            Path::new("/c"),
            "cellucid cache prefetch",
        );
        for page in [&downloading, &unavailable] {
            let links = links(page);
            assert!(!links.is_empty());
            for link in links {
                assert!(!link.starts_with('/') && !link.contains(':'), "{link}");
            }
        }
    }

    #[test]
    fn the_downloading_page_reloads_itself_says_how_far_and_loads_nothing() {
        let page = downloading_page(
            "http://127.0.0.1:1/<b>",
            Path::new("/tmp/a&b"),
            DownloadProgress::default(),
        );
        assert!(page.contains(r#"<meta http-equiv="refresh" content="2">"#));
        assert!(page.contains("being downloaded"));
        assert!(page.contains("Contacting the source"));
        assert!(page.contains("/tmp/a&amp;b") && page.contains("&lt;b&gt;"));
        assert!(!page.contains("<script") && !page.contains("src=") && !page.contains("<link"));

        let page = downloading_page(
            "https://x",
            Path::new("/c"),
            DownloadProgress {
                files: 12,
                files_done: 3,
                bytes: 400,
                bytes_done: 100,
            },
        );
        assert!(page.contains("3 of 12 files (25%)"), "{page}");
    }
}
