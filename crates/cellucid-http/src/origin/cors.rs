//! Origin canonicalisation and the CORS allowlist.
//!
//! CORS is a browser policy, not access control: it decides which web pages
//! may *read* our responses, never who may fetch them.

use std::collections::HashSet;
use std::net::IpAddr;

use super::host::{normalize_name_or_ipv4, HostName};
use super::ConfigError;

/// A browser origin, canonical: scheme and host lower-cased, default port dropped.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Origin {
    pub(crate) https: bool,
    pub(crate) host: HostName,
    pub(crate) port: Option<u16>,
}

impl Origin {
    /// Parses an `Origin` value: exactly `scheme://host[:port]` with scheme
    /// `http` or `https`. Userinfo, a path (even `/`), a query, a fragment,
    /// `null`, other schemes, IPv6 zones and malformed ports are refused.
    pub(crate) fn parse(value: &str) -> Option<Self> {
        let (scheme, rest) = value.split_once("://")?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return None,
        };
        if rest.is_empty()
            || rest
                .bytes()
                .any(|b| b <= 0x20 || b >= 0x7f || matches!(b, b'/' | b'?' | b'#' | b'@' | b'\\'))
        {
            return None;
        }
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (inside, after) = inner.split_once(']')?;
            let ip: std::net::Ipv6Addr = inside.parse().ok()?;
            (HostName::Ip(IpAddr::V6(ip)), split_port(after)?)
        } else {
            let (host, after) = match rest.find(':') {
                Some(at) => rest.split_at(at),
                None => (rest, ""),
            };
            (normalize_name_or_ipv4(host)?, split_port(after)?)
        };
        let default_port = if https { 443 } else { 80 };
        Some(Self {
            https,
            host,
            port: port.filter(|&p| p != default_port),
        })
    }

    /// The canonical serialisation, as a browser would send it.
    pub(crate) fn serialize(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let host = match &self.host {
            HostName::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            other => other.canonical(),
        };
        match self.port {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        }
    }

    pub(crate) fn is_loopback_origin(&self) -> bool {
        match &self.host {
            HostName::Name(name) => name == "localhost",
            HostName::Ip(IpAddr::V4(ip)) => ip.octets() == [127, 0, 0, 1],
            HostName::Ip(IpAddr::V6(ip)) => ip.is_loopback(),
        }
    }

    fn is_hosted_viewer(&self) -> bool {
        self.https
            && self.port.is_none()
            && matches!(&self.host, HostName::Name(name)
                if name == "cellucid.com" || name.ends_with(".cellucid.com"))
    }
}

/// `""` → no port; `":8080"` → 8080; anything else (`":"`, `":08"`) → refused.
fn split_port(after: &str) -> Option<Option<u16>> {
    if after.is_empty() {
        return Some(None);
    }
    let digits = after.strip_prefix(':')?;
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    digits.parse::<u16>().ok().map(Some)
}

/// Which origins may read our responses from a browser.
#[derive(Clone, Debug, Default)]
pub struct CorsPolicy {
    extras: HashSet<Origin>,
}

impl CorsPolicy {
    /// The built-in allowlist (loopback pages on any port, the hosted viewer
    /// at `https://cellucid.com` and its subdomains) plus `extra_origins`,
    /// matched exactly after canonicalisation.
    ///
    /// # Errors
    /// [`ConfigError::AllowedOrigin`] for an extra that is not a bare origin.
    pub fn new(extra_origins: &[String]) -> Result<Self, ConfigError> {
        let extras = extra_origins
            .iter()
            .map(|entry| {
                Origin::parse(entry).ok_or_else(|| ConfigError::AllowedOrigin {
                    entry: entry.clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { extras })
    }

    /// Whether `origin` is one of the `--allowed-origin` extras.
    pub(crate) fn is_extra(&self, origin: &Origin) -> bool {
        self.extras.contains(origin)
    }

    /// The canonical origin to echo in `Access-Control-Allow-Origin`, when
    /// `value` is allowed.
    pub(crate) fn allow(&self, value: &str) -> Option<String> {
        let origin = Origin::parse(value)?;
        (origin.is_loopback_origin() || origin.is_hosted_viewer() || self.extras.contains(&origin))
            .then(|| origin.serialize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_table_with_canonicalisation() {
        let policy = CorsPolicy::default();
        let cases: &[(&str, Option<&str>)] = &[
            ("http://localhost:3000", Some("http://localhost:3000")),
            ("https://localhost", Some("https://localhost")),
            ("http://127.0.0.1:8080", Some("http://127.0.0.1:8080")),
            ("HTTP://LOCALHOST:1", Some("http://localhost:1")),
            ("http://localhost:80", Some("http://localhost")),
            ("https://localhost:443", Some("https://localhost")),
            ("http://[::1]:8765", Some("http://[::1]:8765")),
            ("http://[0:0::1]:8765", Some("http://[::1]:8765")),
            ("https://www.cellucid.com", Some("https://www.cellucid.com")),
            ("https://cellucid.com", Some("https://cellucid.com")),
            (
                "https://beta.cellucid.com",
                Some("https://beta.cellucid.com"),
            ),
            (
                "https://WWW.Cellucid.com:443",
                Some("https://www.cellucid.com"),
            ),
            ("https://user@localhost", None),
            ("https://www.cellucid.com/", None),
            ("http://localhost/x", None),
            ("http://localhost?x", None),
            ("http://localhost#x", None),
            ("http://127.0.0.2", None),
            ("http://www.cellucid.com", None),
            ("https://www.cellucid.com:8443", None),
            ("https://evil.com", None),
            ("https://cellucid.com.evil.com", None),
            ("https://evilcellucid.com", None),
            ("null", None),
            ("file://", None),
            ("http://localhost.evil.com", None),
            ("http://localhost:", None),
            ("http://localhost:0080", None),
            ("http://[::1%25lo]:1", None),
            ("ftp://localhost", None),
        ];
        for (origin, want) in cases {
            assert_eq!(policy.allow(origin).as_deref(), *want, "{origin}");
        }
    }

    #[test]
    fn extras_match_exactly_after_canonicalisation() {
        let policy = CorsPolicy::new(&["https://Notebook.Example.org:443".into()]).unwrap();
        assert_eq!(
            policy.allow("https://notebook.example.org").as_deref(),
            Some("https://notebook.example.org")
        );
        assert_eq!(policy.allow("https://notebook.example.org:8443"), None);
        assert_eq!(policy.allow("http://notebook.example.org"), None);
        assert!(CorsPolicy::new(&["https://example.org/".into()]).is_err());
        assert!(CorsPolicy::new(&["example.org".into()]).is_err());
    }
}
