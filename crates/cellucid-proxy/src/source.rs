//! The site the viewer UI is downloaded from, validated.

use std::fmt;
use std::net::IpAddr;

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use crate::error::ProxyError;

/// Where the viewer UI is downloaded from unless told otherwise.
pub const DEFAULT_SOURCE_URL: &str = "https://www.cellucid.com";

/// Characters escaped in an asset path segment when it becomes a URL: all but
/// the unreserved set and `/` (the Python reference's `quote(path, safe='/-._~')`).
const PATH_ESCAPES: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'!')
    .add(b'$')
    .add(b'&')
    .add(b'\'')
    .add(b'(')
    .add(b')')
    .add(b'*')
    .add(b'+')
    .add(b',')
    .add(b':')
    .add(b';')
    .add(b'=')
    .add(b'@')
    .add(b'[')
    .add(b']')
    .add(b'\\')
    .add(b'^')
    .add(b'|');

/// A validated source: an absolute `https` URL (or `http` on a loopback
/// host), without credentials, query or fragment, and without a trailing `/`.
/// It may carry a path prefix (`https://example.org/cellucid`).
#[derive(Clone, PartialEq, Eq)]
pub struct SourceUrl {
    url: url::Url,
    text: String,
}

impl SourceUrl {
    /// Validates `text`.
    ///
    /// # Errors
    /// [`ProxyError::BadSourceUrl`] saying what is wrong.
    pub fn parse(text: &str) -> Result<Self, ProxyError> {
        let bad = |why: &str| ProxyError::BadSourceUrl {
            url: text.to_owned(),
            why: why.to_owned(),
        };
        if text.is_empty() || text.chars().any(char::is_whitespace) {
            return Err(bad("it is empty or contains whitespace"));
        }
        let url =
            url::Url::parse(text).map_err(|err| bad(&format!("not an absolute URL ({err})")))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("it must not carry credentials"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("it must not have a query or a fragment"));
        }
        let host = url.host().ok_or_else(|| bad("it has no host"))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&host) => {}
            "http" => {
                return Err(bad(
                    "plain http is accepted only for a loopback host (localhost, 127.0.0.0/8, ::1); use https",
                ))
            }
            _ => return Err(bad("it must be an https URL")),
        }
        let text = url.as_str().trim_end_matches('/').to_owned();
        Ok(Self { url, text })
    }

    /// The URL without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The URL of `path` (a validated asset path) under this source.
    pub fn join(&self, path: &str) -> String {
        format!("{}/{}", self.text, utf8_percent_encode(path, PATH_ESCAPES))
    }

    /// Whether the source is on this machine (no proxy is used for it).
    pub fn is_loopback(&self) -> bool {
        self.url.host().is_some_and(|host| is_loopback(&host))
    }

    /// Whether `other` has the same scheme, host and port (redirects may only
    /// stay on the source's origin).
    pub(crate) fn same_origin(&self, other: &url::Url) -> bool {
        self.url.origin() == other.origin()
    }

    /// The path prefix of this source with a trailing `/` (`/` for none).
    pub(crate) fn base_path(&self) -> String {
        format!("{}/", self.url.path().trim_end_matches('/'))
    }
}

fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        url::Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

impl fmt::Display for SourceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for SourceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SourceUrl({})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_and_loopback_http_are_accepted() {
        assert_eq!(
            SourceUrl::parse("https://www.cellucid.com/")
                .unwrap()
                .as_str(),
            "https://www.cellucid.com"
        );
        for ok in [
            "http://127.0.0.1:9000",
            "http://localhost:1",
            "http://[::1]:80/ui",
            "http://127.3.4.5",
        ] {
            assert!(SourceUrl::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn plain_http_elsewhere_and_odd_urls_are_refused() {
        for bad in [
            "http://example.org",
            "ftp://127.0.0.1",
            "https://user:pw@example.org",
            "https://example.org/?q=1",
            "https://example.org/#x",
            "example.org",
            "",
            "https://exa mple.org",
        ] {
            assert!(SourceUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_are_joined_under_the_prefix() {
        let source = SourceUrl::parse("https://example.org/ui/").unwrap();
        assert_eq!(
            source.join("assets/a b.js"),
            "https://example.org/ui/assets/a%20b.js"
        );
        assert_eq!(source.base_path(), "/ui/");
    }
}
