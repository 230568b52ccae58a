//! The page `/` answers when the viewer UI cannot be served: what is wrong
//! and how to fix it, self-contained (no script, no external resource).

use std::path::Path;

/// The `Content-Security-Policy` sent with the page: nothing may load, only
/// the page's own inline style applies.
pub const UNAVAILABLE_PAGE_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'";

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
<style>
  body {{ font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2330; background: #f5f6f8; margin: 0; }}
  main {{ max-width: 46rem; margin: 3rem auto; background: #fff; border: 1px solid #d8dce3; border-radius: 10px; padding: 2rem 2.5rem; }}
  h1 {{ font-size: 1.45rem; margin: 0 0 .5rem; color: #9a2a1f; }}
  h2 {{ font-size: 1.05rem; margin: 1.6rem 0 .4rem; }}
  code, pre {{ font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .9em; background: #eef0f4; border-radius: 4px; }}
  code {{ padding: .1em .3em; }}
  pre {{ padding: .7rem 1rem; overflow-x: auto; white-space: pre-wrap; overflow-wrap: anywhere; }}
  dt {{ font-weight: 600; margin-top: .6rem; }}
  dd {{ margin: 0; }}
  ol li {{ margin-bottom: .6rem; }}
  .note {{ color: #555d6b; font-size: .92em; }}
</style>
</head>
<body>
<main>
<h1>The Cellucid viewer UI could not be loaded</h1>
<p>This server has no usable copy of the viewer UI (see the reason below).
Your data is still being served: <a href="/_cellucid/datasets">/_cellucid/datasets</a>.</p>
<dl>
<dt>Reason</dt><dd><pre>{reason}</pre></dd>
<dt>UI source</dt><dd><code>{source}</code></dd>
<dt>Cache directory</dt><dd><code>{cache_dir}</code></dd>
</dl>
<h2>How to fix it</h2>
<ol>
<li>On a machine with network access, download the UI once into the cache:
<pre>{prefetch}</pre>
then restart <code>cellucid serve</code>. After that the UI works offline.</li>
<li>If the cache directory is not kept between sessions (a temporary or scratch
directory), point the cache at a persistent directory and prefetch into it:
<pre>export CELLUCID_WEB_PROXY_CACHE_DIR=$HOME/.cache/cellucid/web
cellucid cache prefetch</pre></li>
<li>Behind a firewall or proxy, allow access to <code>{source}</code> (proxies come from <code>https_proxy</code>), or copy a prefetched
cache directory from another machine.</li>
</ol>
<p class="note">Check the cache with <code>cellucid cache verify</code>; see where it is with <code>cellucid cache dir</code>.</p>
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
}
