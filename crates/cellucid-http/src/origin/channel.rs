//! The viewer channel's origin rule (SECURITY.md, "The viewer channel"): which pages may open the
//! WebSocket `/_cellucid/ws`.
//!
//! Stricter than CORS, because the channel carries commands into a viewer and
//! events out of it: only pages this server serves (its own origin — the
//! scheme plus the request's `Host`), loopback pages, and `--allowed-origin`
//! extras. The hosted `cellucid.com` viewer is *not* accepted here, as in the
//! 0.9.5 reference. Parsing and canonicalisation are the CORS ones.

use super::cors::Origin;
use super::host::parse_authority;
use super::OriginPolicy;

impl OriginPolicy {
    /// Whether a WebSocket handshake with `Origin: origin`, received in a
    /// request whose `Host` is `request_host`, may open the viewer channel.
    /// `origin` must be the request's only `Origin` header; `https` says
    /// whether the request came over this server's TLS (its own origin is
    /// then `https://…`).
    pub fn allows_channel(&self, origin: &str, request_host: Option<&str>, https: bool) -> bool {
        let Some(origin) = Origin::parse(origin) else {
            return false;
        };
        if origin.is_loopback_origin() || self.cors.is_extra(&origin) {
            return true;
        }
        // Our own origin: the scheme this request came over.
        let default_port = if https { 443 } else { 80 };
        request_host
            .and_then(parse_authority)
            .is_some_and(|(host, port)| {
                let own = Origin {
                    https,
                    host,
                    port: port.filter(|&p| p != default_port),
                };
                own == origin
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_origins() {
        let policy = OriginPolicy::new(
            "0.0.0.0".parse().unwrap(),
            8765,
            &[],
            &["https://notebook.example.org".into()],
        )
        .unwrap();
        let host = Some("myhost.lan:8765");
        assert!(policy.allows_channel("http://127.0.0.1:8765", host, false));
        assert!(policy.allows_channel("http://localhost:3000", host, false));
        assert!(policy.allows_channel("http://[::1]:1", host, false));
        assert!(policy.allows_channel("http://MyHost.lan:8765", host, false));
        assert!(policy.allows_channel("https://notebook.example.org", host, false));
        assert!(!policy.allows_channel("https://www.cellucid.com", host, false));
        assert!(!policy.allows_channel("https://cellucid.com", host, false));
        assert!(!policy.allows_channel("http://myhost.lan:9999", host, false));
        assert!(!policy.allows_channel("https://myhost.lan:8765", host, false));
        assert!(!policy.allows_channel("http://evil.example", host, false));
        assert!(!policy.allows_channel("null", host, false));
        assert!(!policy.allows_channel("http://localhost:3000/", host, false));
        assert!(!policy.allows_channel("http://myhost.lan:8765", None, false));
        // Over HTTPS the own origin is https, and only that.
        assert!(policy.allows_channel("https://myhost.lan:8765", host, true));
        assert!(!policy.allows_channel("http://myhost.lan:8765", host, true));
        assert!(policy.allows_channel("https://myhost.lan", Some("myhost.lan:443"), true));
    }
}
