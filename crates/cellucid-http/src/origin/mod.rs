//! The origin policy: which `Host` names the server answers to and which
//! browser origins may read its responses, applied as the outermost tower
//! layer so every response — errors and preflights included — carries it.

mod channel;
mod cors;
mod host;
mod layer;

use std::net::IpAddr;

pub use cors::CorsPolicy;
pub(crate) use cors::Origin;
pub(crate) use host::parse_authority;
pub use host::{is_ldh_name, HostPolicy};
pub use layer::{OriginLayer, OriginRejection, OriginService, ResponseFuture};

/// A configuration value the origin policy cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An allowed-host entry is not a bare host name or IP address.
    #[error("allowed host {entry:?}: {reason}")]
    AllowedHost {
        /// The entry as given.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An allowed-origin entry is not a bare `http(s)://host[:port]` origin.
    #[error("allowed origin {entry:?}: expected a bare origin like https://notebook.example.org or http://localhost:3000 (no path, not even a trailing '/')")]
    AllowedOrigin {
        /// The entry as given.
        entry: String,
    },
}

/// The complete origin policy of one server.
#[derive(Clone, Debug)]
pub struct OriginPolicy {
    /// The Host-header allowlist.
    pub host: HostPolicy,
    /// The CORS allowlist.
    pub cors: CorsPolicy,
}

impl OriginPolicy {
    /// Builds the policy of a server bound to `bind_ip:bound_port`.
    ///
    /// # Errors
    /// [`ConfigError`] for an invalid allowed host or origin.
    pub fn new(
        bind_ip: IpAddr,
        bound_port: u16,
        allowed_hosts: &[String],
        allowed_origins: &[String],
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            host: HostPolicy::new(bind_ip, bound_port, allowed_hosts)?,
            cors: CorsPolicy::new(allowed_origins)?,
        })
    }
}
