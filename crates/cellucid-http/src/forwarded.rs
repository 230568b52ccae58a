//! What a reverse proxy says about the request it forwards: the
//! `X-Forwarded-*` headers (SECURITY.md, "Behind a reverse proxy").
//!
//! They are believed only when the server is told to trust its proxy
//! (`--trust-proxy`, [`ServiceConfig::trust_proxy`]); otherwise anyone could
//! send them, and they have no effect at all. Even when trusted, nothing in
//! them loosens a check: `X-Forwarded-Host` is checked *in addition to*
//! `Host`, `X-Forwarded-Proto: https` can only add `Secure` to the access
//! cookie, and `X-Forwarded-For` only changes what the request log records.
//!
//! One hop is trusted: the proxy next to the server. A proxy that appends to
//! a header it received (nginx's `$proxy_add_x_forwarded_for`) writes its own
//! value last; everything before it came from the client and may be forged,
//! so only the **last** element of each header is read.
//!
//! [`ServiceConfig::trust_proxy`]: crate::ServiceConfig::trust_proxy

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::body::Body;
use crate::origin::{HostPolicy, OriginRejection};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// What a trusted proxy said about a request, put into the request's
/// extensions by [`ForwardedLayer`] when the proxy is trusted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Forwarded {
    /// The client spoke HTTPS to the proxy (`X-Forwarded-Proto: https`).
    pub https: bool,
    /// The client's address (`X-Forwarded-For`), when it is a valid IP.
    pub client: Option<IpAddr>,
}

impl Forwarded {
    /// Reads the headers a proxy set on `headers`.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self {
            https: last_element(headers, &X_FORWARDED_PROTO)
                .is_some_and(|proto| proto.eq_ignore_ascii_case("https")),
            client: client_ip(headers),
        }
    }
}

/// The last comma-separated element of the last `name` header, trimmed: the
/// one the proxy next to the server wrote.
fn last_element<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    let value = headers.get_all(name).iter().next_back()?.to_str().ok()?;
    let last = value.rsplit(',').next()?.trim();
    (!last.is_empty()).then_some(last)
}

/// The client address of `X-Forwarded-For`: an IP, or an `ip:port` /
/// `[v6]:port` as some proxies write it. `unknown` and junk are `None`.
pub fn client_ip(headers: &HeaderMap) -> Option<IpAddr> {
    let text = last_element(headers, &X_FORWARDED_FOR)?;
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
}

/// The `X-Forwarded-Host` check: the host a trusted proxy received must name
/// this server too.
#[derive(Clone, Debug)]
struct HostCheck {
    policy: HostPolicy,
    /// The port the `Host` check expects on a loopback bind.
    bound_port: u16,
}

impl HostCheck {
    /// Whether `headers` pass: no `X-Forwarded-Host`, or its last element
    /// names this server. Its port is the proxy's, not ours, so it is
    /// ignored: the name is checked as if it came with our own port.
    fn passes(&self, headers: &HeaderMap) -> bool {
        if headers.get(&X_FORWARDED_HOST).is_none() {
            return true;
        }
        let Some(text) = last_element(headers, &X_FORWARDED_HOST) else {
            return false;
        };
        // The same strict parse as `Host` (no userinfo, path or bad port).
        let Some((host, _port)) = crate::origin::parse_authority(text) else {
            return false;
        };
        let host = host.canonical();
        let with_our_port = if host.contains(':') {
            format!("[{host}]:{}", self.bound_port)
        } else {
            format!("{host}:{}", self.bound_port)
        };
        HeaderValue::from_str(&with_our_port)
            .is_ok_and(|value| self.policy.check(std::iter::once(&value)).is_ok())
    }
}

/// Applies a trusted proxy's headers: refuses a request whose
/// `X-Forwarded-Host` does not name this server (421), and records
/// [`Forwarded`] in the request's extensions for the layers inside it (the
/// access cookie's `Secure`). Untrusted, it passes every request untouched.
#[derive(Clone, Debug, Default)]
pub struct ForwardedLayer {
    check: Option<Arc<HostCheck>>,
}

impl ForwardedLayer {
    /// A layer that trusts the proxy's headers, checking `X-Forwarded-Host`
    /// with `policy` (the server's `Host` policy; `bound_port` is the port
    /// the server is bound to).
    pub fn trusting(policy: HostPolicy, bound_port: u16) -> Self {
        Self {
            check: Some(Arc::new(HostCheck { policy, bound_port })),
        }
    }

    /// A layer that ignores `X-Forwarded-*` (the default).
    pub fn ignoring() -> Self {
        Self { check: None }
    }
}

impl<S> Layer<S> for ForwardedLayer {
    type Service = ForwardedService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ForwardedService {
            inner,
            check: self.check.clone(),
        }
    }
}

/// The service made by [`ForwardedLayer`].
#[derive(Clone, Debug)]
pub struct ForwardedService<S> {
    inner: S,
    check: Option<Arc<HostCheck>>,
}

impl<S, B> Service<Request<B>> for ForwardedService<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(check) = &self.check {
            if !check.passes(req.headers()) {
                tracing::warn!(
                    forwarded_host = ?req.headers().get_all(&X_FORWARDED_HOST).iter().collect::<Vec<_>>(),
                    "refused a request whose X-Forwarded-Host does not name this server"
                );
                return ResponseFuture::Ready {
                    response: Some(misdirected()),
                };
            }
            let forwarded = Forwarded::from_headers(req.headers());
            req.extensions_mut().insert(forwarded);
        }
        ResponseFuture::Inner {
            future: self.inner.call(req),
        }
    }
}

pin_project! {
    /// The future of [`ForwardedService`].
    // pin-project-lite cannot carry doc comments on variant fields.
    #[allow(missing_docs)]
    #[project = ResponseFutureProj]
    pub enum ResponseFuture<F> {
        /// Waiting for the inner service.
        Inner {
            #[pin]
            future: F,
        },
        /// Refused by the layer (421).
        Ready {
            response: Option<Response<Body>>,
        },
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Inner { future } => future.poll(cx),
            ResponseFutureProj::Ready { response } => {
                Poll::Ready(Ok(response.take().unwrap_or_else(misdirected)))
            }
        }
    }
}

/// 421, as the `Host` check answers, naming the header that failed.
fn misdirected() -> Response<Body> {
    let mut response = crate::response::text(
        StatusCode::MISDIRECTED_REQUEST,
        "X-Forwarded-Host header does not name this server",
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
        .extensions_mut()
        .insert(OriginRejection::MisdirectedHost);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn only_the_last_element_the_proxy_wrote_counts() {
        let forged_first = headers(&[("x-forwarded-for", "203.0.113.7, 198.51.100.2")]);
        assert_eq!(client_ip(&forged_first), Some([198, 51, 100, 2].into()));
        let two_lines = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "::1"),
        ]);
        assert_eq!(client_ip(&two_lines), "::1".parse().ok());
        let with_port = headers(&[("x-forwarded-for", "[2001:db8::1]:4711")]);
        assert_eq!(client_ip(&with_port), "2001:db8::1".parse().ok());
        for junk in ["unknown", "", " , ", "example.org", "1.2.3.4.5"] {
            assert_eq!(
                client_ip(&headers(&[("x-forwarded-for", junk)])),
                None,
                "{junk}"
            );
        }
        let https = Forwarded::from_headers(&headers(&[("x-forwarded-proto", "http, HTTPS")]));
        assert!(https.https);
        let http = Forwarded::from_headers(&headers(&[("x-forwarded-proto", "https, http")]));
        assert!(!http.https);
        assert_eq!(
            Forwarded::from_headers(&HeaderMap::new()),
            Forwarded::default()
        );
    }

    #[test]
    fn the_forwarded_host_must_name_this_server_on_any_port() {
        let policy = HostPolicy::new(
            "127.0.0.1".parse().unwrap(),
            8765,
            &["proxy.example".into()],
        )
        .unwrap();
        let check = HostCheck {
            policy,
            bound_port: 8765,
        };
        let passes = |value: &str| check.passes(&headers(&[("x-forwarded-host", value)]));
        assert!(check.passes(&HeaderMap::new()));
        for good in [
            "proxy.example",
            "PROXY.example:443",
            "127.0.0.1:8888",
            "localhost",
            "[::1]:9",
            "evil.example, proxy.example",
        ] {
            assert!(passes(good), "{good}");
        }
        for bad in [
            "evil.example",
            "proxy.example, evil.example",
            "proxy.example/x",
            "user@proxy.example",
            "",
            "proxy.example:0",
        ] {
            assert!(!passes(bad), "{bad}");
        }
    }
}
