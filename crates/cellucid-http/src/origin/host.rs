//! The Host-header allowlist: the DNS-rebinding defence.
//!
//! A browser tricked by DNS rebinding sends the attacker's name in `Host`;
//! answering only to names that mean this machine defeats it.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv6Addr};

use http::HeaderValue;

use super::ConfigError;

/// A parsed, normalised host: an IP literal in canonical form or a lower-case
/// LDH name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum HostName {
    Ip(IpAddr),
    Name(String),
}

impl HostName {
    pub(crate) fn is_loopback(&self) -> bool {
        match self {
            Self::Ip(ip) => ip.is_loopback(),
            Self::Name(name) => name == "localhost",
        }
    }

    /// The canonical text: `::1` for IPv6 (no brackets), lower-case names.
    pub(crate) fn canonical(&self) -> String {
        match self {
            Self::Ip(ip) => ip.to_string(),
            Self::Name(name) => name.clone(),
        }
    }
}

/// Parses `host[:port]` or `[v6][:port]` as §4.2 of the reference describes:
/// ASCII only, no whitespace or controls, no userinfo or path, a decimal port
/// 1..=65535 without a leading zero, no IPv6 zone.
pub(crate) fn parse_authority(value: &str) -> Option<(HostName, Option<u16>)> {
    if value.is_empty() || value.bytes().any(|b| b <= 0x20 || b >= 0x7f) {
        return None;
    }
    if value.contains('@') || value.contains('/') {
        return None;
    }
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if inside.contains('%') {
            return None;
        }
        let ip: Ipv6Addr = inside.parse().ok()?;
        let port = match after {
            "" => None,
            _ => Some(parse_port(after.strip_prefix(':')?)?),
        };
        (HostName::Ip(IpAddr::V6(ip)), port)
    } else {
        if value.contains('[') || value.contains(']') {
            return None;
        }
        let (host, port) = match value.split_once(':') {
            Some((host, port)) => (host, Some(parse_port(port)?)),
            None => (value, None),
        };
        (normalize_name_or_ipv4(host)?, port)
    };
    Some((host, port))
}

fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.starts_with('0') || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => None,
        Ok(port) => Some(port),
    }
}

/// An IPv4 literal in strict dotted-quad form, or an LDH DNS name.
pub(crate) fn normalize_name_or_ipv4(host: &str) -> Option<HostName> {
    if host.is_empty() {
        return None;
    }
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return Some(HostName::Ip(IpAddr::V4(ip)));
    }
    let lower = host.to_ascii_lowercase();
    is_ldh_name(&lower).then_some(HostName::Name(lower))
}

/// A DNS name of letters, digits and hyphens: at most 253 characters, labels of
/// 1 to 63 characters that neither start nor end with `-` (so no trailing dot).
pub fn is_ldh_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Validates one `--allowed-host` entry and returns its canonical form.
///
/// # Errors
/// [`ConfigError::AllowedHost`] naming the entry and what is wrong with it.
pub(crate) fn normalize_allowed_host(entry: &str) -> Result<HostName, ConfigError> {
    let refuse = |why: &str| ConfigError::AllowedHost {
        entry: entry.to_owned(),
        reason: why.to_owned(),
    };
    if entry.is_empty() {
        return Err(refuse("it is empty"));
    }
    if !entry.is_ascii() {
        return Err(refuse(
            "it is not ASCII; write international names in Punycode (xn--…)",
        ));
    }
    if entry.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(refuse("it holds whitespace or control characters"));
    }
    if entry.contains('*') {
        return Err(refuse(
            "it uses a wildcard; a wildcard re-admits DNS rebinding, so name each host",
        ));
    }
    if entry.contains('/') {
        return Err(refuse("it looks like a URL; give only the host name"));
    }
    if entry.contains('@') || entry.contains('[') || entry.contains('%') {
        return Err(refuse(
            "give a bare host name or IP address, without brackets, userinfo or zone",
        ));
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Ok(HostName::Ip(ip));
    }
    if entry.contains(':') {
        return Err(refuse("it carries a port; allowed hosts match on any port"));
    }
    if entry.ends_with('.') {
        return Err(refuse("it ends with '.'; drop the trailing dot"));
    }
    let lower = entry.to_ascii_lowercase();
    if !is_ldh_name(&lower) {
        return Err(refuse(
            "it is not a valid DNS name (letters, digits, '-' and '.')",
        ));
    }
    Ok(HostName::Name(lower))
}

/// Which `Host` headers this server answers to.
#[derive(Clone, Debug)]
pub struct HostPolicy {
    bound_port: u16,
    loopback_bind: bool,
    /// `--allowed-host` names: accepted on any port.
    allowed: HashSet<HostName>,
    /// On a non-loopback bind: the machine's own names and addresses.
    local: HashSet<HostName>,
}

/// Why a request's `Host` was refused (for the log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostRefusal {
    Missing,
    Several,
    Malformed,
    NotThisServer,
}

impl HostPolicy {
    /// Builds the policy for a server bound to `bind_ip:bound_port`.
    ///
    /// On a loopback bind, loopback names are accepted only with the bound
    /// port, as the reference does. On any other bind, the names that mean
    /// this machine (`localhost`, loopback and interface addresses, the host
    /// name, the bind address) are accepted on any port, so a published
    /// container port still works.
    ///
    /// # Errors
    /// [`ConfigError::AllowedHost`] for an invalid `allowed_hosts` entry.
    pub fn new(
        bind_ip: IpAddr,
        bound_port: u16,
        allowed_hosts: &[String],
    ) -> Result<Self, ConfigError> {
        let allowed = allowed_hosts
            .iter()
            .map(|entry| normalize_allowed_host(entry))
            .collect::<Result<HashSet<_>, _>>()?;
        let loopback_bind = bind_ip.is_loopback();
        let mut local = HashSet::new();
        if !loopback_bind {
            if !bind_ip.is_unspecified() {
                local.insert(HostName::Ip(bind_ip));
            }
            if let Some(name) = gethostname::gethostname()
                .to_str()
                .and_then(normalize_name_or_ipv4)
            {
                local.insert(name);
            }
            if let Ok(interfaces) = if_addrs::get_if_addrs() {
                local.extend(interfaces.into_iter().map(|i| HostName::Ip(i.ip())));
            }
        }
        Ok(Self {
            bound_port,
            loopback_bind,
            allowed,
            local,
        })
    }

    /// Checks the `Host` header values of one request.
    pub(crate) fn check<'a>(
        &self,
        mut values: impl Iterator<Item = &'a HeaderValue>,
    ) -> Result<(), HostRefusal> {
        let value = values.next().ok_or(HostRefusal::Missing)?;
        if values.next().is_some() {
            return Err(HostRefusal::Several);
        }
        let text = value.to_str().map_err(|_| HostRefusal::Malformed)?;
        self.check_authority(text)
    }

    /// Checks an authority (`host[:port]`), from `Host` or from a request
    /// line in absolute form (`GET http://host:port/x`), which names the
    /// server just as `Host` does and so is held to the same allowlist.
    pub(crate) fn check_authority(&self, text: &str) -> Result<(), HostRefusal> {
        let (host, port) = parse_authority(text).ok_or(HostRefusal::Malformed)?;
        if self.allowed.contains(&host) {
            return Ok(());
        }
        let accepted = if self.loopback_bind {
            host.is_loopback() && port.unwrap_or(80) == self.bound_port
        } else {
            host.is_loopback() || self.local.contains(&host)
        };
        if accepted {
            Ok(())
        } else {
            Err(HostRefusal::NotThisServer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(policy: &HostPolicy, value: &str) -> bool {
        policy
            .check([HeaderValue::from_str(value).unwrap()].iter())
            .is_ok()
    }

    #[test]
    fn reference_host_table_on_a_loopback_bind() {
        let policy = HostPolicy::new("127.0.0.1".parse().unwrap(), 18765, &[]).unwrap();
        for ok in [
            "127.0.0.1:18765",
            "localhost:18765",
            "LOCALHOST:18765",
            "127.0.0.2:18765",
            "[::1]:18765",
        ] {
            assert!(check(&policy, ok), "{ok} should be accepted");
        }
        for bad in [
            "127.0.0.1",
            "127.0.0.1:18766",
            "evil.com:18765",
            "localhost.:18765",
            "foo.localhost:18765",
            "127.0.0.1:018765",
            "[::ffff:127.0.0.1]:18765",
            "2130706433:18765",
            "127.1:18765",
            "[::1%lo]:18765",
            "user@127.0.0.1:18765",
            "0.0.0.0:18765",
            "127.0.0.1:18765 ",
            "127.0.0.1:",
            "127.0.0.1:99999",
        ] {
            assert!(!check(&policy, bad), "{bad:?} should be refused");
        }
        assert_eq!(policy.check(std::iter::empty()), Err(HostRefusal::Missing));
        let two = [
            HeaderValue::from_static("127.0.0.1:18765"),
            HeaderValue::from_static("127.0.0.1:18765"),
        ];
        assert_eq!(policy.check(two.iter()), Err(HostRefusal::Several));
    }

    #[test]
    fn allowed_hosts_match_on_any_port_but_loopback_still_needs_the_bound_port() {
        let allowed = [
            "hub.example.org".to_owned(),
            "10.1.2.3".to_owned(),
            "::1".to_owned(),
        ];
        let policy = HostPolicy::new("127.0.0.1".parse().unwrap(), 18765, &allowed).unwrap();
        for ok in [
            "hub.example.org",
            "HUB.example.org:443",
            "hub.example.org:1",
            "10.1.2.3:8080",
            "[::1]:9999",
        ] {
            assert!(check(&policy, ok), "{ok}");
        }
        assert!(!check(&policy, "127.0.0.1:9999"));
    }

    #[test]
    fn a_wildcard_bind_accepts_this_machine_on_any_port_and_nothing_else() {
        let policy = HostPolicy::new("0.0.0.0".parse().unwrap(), 8765, &[]).unwrap();
        assert!(check(&policy, "localhost:9000"));
        assert!(check(&policy, "127.0.0.1:9000"));
        assert!(!check(&policy, "evil.example:8765"));
        assert!(!check(&policy, "0.0.0.0:8765"));
    }

    #[test]
    fn allowed_host_entries_are_validated() {
        for bad in [
            "",
            "*.example.org",
            "http://x",
            "a@b",
            "[::1]",
            "fe80::1%eth0",
            "host:80",
            "host.",
            "bad_name",
            "héllo",
        ] {
            assert!(normalize_allowed_host(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            normalize_allowed_host("Hub.Example.ORG").unwrap(),
            HostName::Name("hub.example.org".into())
        );
        assert_eq!(
            normalize_allowed_host("0:0::1").unwrap(),
            HostName::Ip("::1".parse().unwrap())
        );
    }
}
