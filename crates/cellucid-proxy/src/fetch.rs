//! HTTP requests to the UI source: timeouts, a clear user agent, redirects
//! only within the source's origin, and strict checks on every response.

use std::io::Read;
use std::time::Duration;

use crate::error::ProxyError;
use crate::source::SourceUrl;

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!(
    "cellucid-rs/",
    env!("CARGO_PKG_VERSION"),
    " (viewer UI cache; +https://github.com/cellucid-rs/cellucid-rs)"
);

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;

/// How requests to the source behave.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FetchOptions {
    /// The longest one request may take, connection to last byte.
    pub timeout: Duration,
    /// The longest resolving the source's name or connecting to it may take
    /// (never more than `timeout`): short, so that a firewall that drops
    /// packets is told apart quickly from a slow download.
    pub connect_timeout: Duration,
    /// Most downloads at once.
    pub parallelism: usize,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            parallelism: 4,
        }
    }
}

/// A body read whole, with its content type.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) body: Vec<u8>,
    pub(crate) content_type: Option<String>,
}

/// What a GET ended with, besides success.
#[derive(Debug)]
pub(crate) enum FetchFailure {
    /// The source answered 404 or 410.
    Missing,
    /// Anything else.
    Failed(ProxyError),
}

/// An HTTP client bound to one source.
#[derive(Debug, Clone)]
pub(crate) struct Fetcher {
    agent: ureq::Agent,
    source: SourceUrl,
}

impl Fetcher {
    pub(crate) fn new(source: SourceUrl, options: &FetchOptions) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(USER_AGENT)
            .timeout_global(Some(options.timeout))
            .timeout_resolve(Some(options.connect_timeout.min(options.timeout)))
            .timeout_connect(Some(options.connect_timeout.min(options.timeout)))
            // Proxies from the environment (https_proxy, no_proxy) are
            // honoured, except for a source on this machine.
            .proxy(if source.is_loopback() {
                None
            } else {
                ureq::Proxy::try_from_env()
            })
            .build()
            .into();
        Self { agent, source }
    }

    pub(crate) fn source(&self) -> &SourceUrl {
        &self.source
    }

    /// GETs `url`, following same-origin redirects, and reads at most `limit`
    /// bytes, telling `on_bytes` about each piece received. When the
    /// response says its length, it must match the body.
    pub(crate) fn get(
        &self,
        url: &str,
        limit: u64,
        on_bytes: &dyn Fn(u64),
    ) -> Result<Fetched, FetchFailure> {
        let fail = |url: &str, why: String| {
            FetchFailure::Failed(ProxyError::Fetch {
                url: url.to_owned(),
                why,
            })
        };
        let mut current = url.to_owned();
        for _ in 0..=MAX_REDIRECTS {
            let mut response = match self.agent.get(&current).call() {
                Ok(response) => response,
                Err(err) => return Err(fail(&current, describe(&err))),
            };
            let status = response.status().as_u16();
            if (300..400).contains(&status) {
                let location = response
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| fail(&current, format!("HTTP {status} without a Location")))?;
                let base =
                    url::Url::parse(&current).map_err(|err| fail(&current, err.to_string()))?;
                let next = base
                    .join(location)
                    .map_err(|err| fail(&current, format!("bad redirect {location:?}: {err}")))?;
                if !self.source.same_origin(&next) {
                    return Err(fail(
                        &current,
                        format!("redirected to another site ({next}); only redirects within {} are followed", self.source),
                    ));
                }
                current = next.to_string();
                continue;
            }
            if status == 404 || status == 410 {
                return Err(FetchFailure::Missing);
            }
            if status != 200 {
                return Err(fail(&current, format!("the server answered HTTP {status}")));
            }
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let declared = response
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit) {
                return Err(fail(
                    &current,
                    format!("the body is larger than {limit} bytes"),
                ));
            }
            let mut body = Vec::new();
            let read = read_counting(
                &mut response.body_mut().as_reader().take(limit + 1),
                &mut body,
                on_bytes,
            );
            if let Err(err) = read {
                return Err(fail(
                    &current,
                    format!("the body was cut short or could not be read ({err})"),
                ));
            }
            if body.len() as u64 > limit {
                return Err(fail(
                    &current,
                    format!("the body is larger than {limit} bytes"),
                ));
            }
            if let Some(declared) = declared {
                if declared != body.len() as u64 {
                    return Err(fail(
                        &current,
                        format!("the body was cut short: {} of {declared} bytes", body.len()),
                    ));
                }
            }
            return Ok(Fetched { body, content_type });
        }
        Err(fail(url, format!("more than {MAX_REDIRECTS} redirects")))
    }
}

/// Reads `reader` to the end into `out`, reporting each piece.
fn read_counting(
    reader: &mut impl Read,
    out: &mut Vec<u8>,
    on_bytes: &dyn Fn(u64),
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                on_bytes(n as u64);
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}

/// A short reason for a transport error.
fn describe(err: &ureq::Error) -> String {
    match err {
        ureq::Error::Timeout(_) => "timed out".to_owned(),
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                "connection refused (is the site reachable?)".to_owned()
            }
            _ => io.to_string(),
        },
        ureq::Error::HostNotFound => "host not found (no network or DNS?)".to_owned(),
        other => other.to_string(),
    }
}
