//! Whether `serve` needs an access token, and which one (SECURITY.md, "The
//! access token"): required on non-loopback binds unless `--no-auth`, on
//! loopback only with `--auth` or `--token-file`.

use std::net::IpAddr;
use std::path::Path;

use cellucid_http::auth::{AccessToken, AuthPolicy};

use crate::args::ServeArgs;
use crate::error::CliError;

/// The environment variable that may hold the token.
pub(crate) const TOKEN_ENV: &str = "CELLUCID_TOKEN";

/// What `serve` enforces and prints.
#[derive(Debug)]
pub(crate) struct Access {
    /// The policy handed to the service; `None` is an open server.
    pub(crate) policy: Option<AuthPolicy>,
    /// The token, to print once inside the URL a person opens.
    pub(crate) token: Option<AccessToken>,
}

impl Access {
    /// `url` with the token appended as a query parameter, when there is one.
    pub(crate) fn with_token(&self, url: &str) -> String {
        match &self.token {
            None => url.to_owned(),
            Some(token) => {
                let joiner = if url.contains('?') { '&' } else { '?' };
                format!("{url}{joiner}token={}", token.expose())
            }
        }
    }
}

/// Decides from the flags, the environment and the bind address.
pub(crate) fn resolve(args: &ServeArgs, bind: IpAddr, tls: bool) -> Result<Access, CliError> {
    let required = args.auth || args.token_file.is_some() || (!bind.is_loopback() && !args.no_auth);
    if !required {
        return Ok(Access {
            policy: None,
            token: None,
        });
    }
    let token = match (&args.token_file, std::env::var(TOKEN_ENV)) {
        (Some(path), _) => read_token_file(path)?,
        (None, Ok(text)) => AccessToken::parse(&text)
            .map_err(|err| CliError::usage(format!("${TOKEN_ENV}: {err}")))?,
        (None, Err(_)) => AccessToken::generate()
            .map_err(|err| CliError::operator(format!("cannot make an access token: {err}")))?,
    };
    Ok(Access {
        policy: Some(AuthPolicy::new(token.clone(), tls)),
        token: Some(token),
    })
}

fn read_token_file(path: &Path) -> Result<AccessToken, CliError> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        CliError::operator(format!(
            "cannot read the token file {}: {err}",
            path.display()
        ))
    })?;
    AccessToken::parse(&text)
        .map_err(|err| CliError::usage(format!("--token-file {}: {err}", path.display())))
}

/// Whether someone other than this user (and the system accounts) runs
/// processes on this machine: a cheap sign of a shared login node, where a
/// loopback port is reachable by every user. Linux only; `false` elsewhere
/// or when `/proc` cannot be read.
pub(crate) fn other_users_present() -> bool {
    let Ok(me) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    let Some(my_uid) = real_uid(&me) else {
        return false;
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("status")).ok())
        .filter_map(|status| real_uid(&status))
        // Below 1000 are system accounts on Debian-like and Red Hat systems.
        .any(|uid| uid >= 1000 && uid != my_uid && uid != 65534)
}

/// The real uid on the `Uid:` line of a `/proc/<pid>/status` file.
fn real_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_uid_is_read_from_a_status_file() {
        let status = "Name:\tbash\nUid:\t1001\t1001\t1001\t1001\nGid:\t1001\n";
        assert_eq!(real_uid(status), Some(1001));
        assert_eq!(real_uid("Name: x\n"), None);
    }
}
