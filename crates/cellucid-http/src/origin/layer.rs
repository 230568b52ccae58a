//! The tower layer that applies the [`OriginPolicy`](super::OriginPolicy).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::OriginPolicy;
use crate::body::Body;

/// The methods a preflight may ask for.
const ALLOW_METHODS: HeaderValue = HeaderValue::from_static("GET, HEAD, POST, OPTIONS");
/// The request headers a preflight may ask for.
const ALLOW_HEADERS: HeaderValue =
    HeaderValue::from_static("Content-Type, Range, X-Cellucid-Viewer-Token, Authorization");
/// The response headers an allowed page may read. `Content-Encoding` as in
/// the 0.9.5 server: synthesised files may be compressed, and a header that
/// is not exposed reads as absent, so a viewer would size its progress from
/// the compressed `Content-Length` without knowing the body was encoded.
const EXPOSE_HEADERS: HeaderValue = HeaderValue::from_static(
    "Accept-Ranges, Content-Encoding, Content-Length, Content-Range, ETag",
);
/// How long a browser may cache a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: HeaderValue = HeaderValue::from_static("600");

/// Why the origin layer answered a request itself instead of passing it on;
/// found in the response's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OriginRejection {
    /// The `Host` header does not name this server (421).
    MisdirectedHost,
}

/// Wraps a service with the origin policy.
#[derive(Clone, Debug)]
pub struct OriginLayer {
    policy: Arc<OriginPolicy>,
}

impl OriginLayer {
    /// A layer applying `policy`.
    pub fn new(policy: Arc<OriginPolicy>) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for OriginLayer {
    type Service = OriginService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OriginService {
            inner,
            policy: Arc::clone(&self.policy),
        }
    }
}

/// The service made by [`OriginLayer`]: refuses foreign `Host` headers with
/// 421, answers CORS preflights, and adds the CORS and hardening headers to
/// every response.
#[derive(Clone, Debug)]
pub struct OriginService<S> {
    inner: S,
    policy: Arc<OriginPolicy>,
}

impl<S, B> Service<Request<B>> for OriginService<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let allowed_origin = allowed_origin(&self.policy, req.headers());
        let host = &self.policy.host;
        let checked = host
            .check(req.headers().get_all(header::HOST).iter())
            .and_then(|()| match req.uri().authority() {
                Some(authority) => host.check_authority(authority.as_str()),
                None => Ok(()),
            });
        if let Err(refusal) = checked {
            tracing::warn!(
                ?refusal,
                host = ?req.headers().get_all(header::HOST).iter().collect::<Vec<_>>(),
                authority = ?req.uri().authority(),
                "refused a request whose Host header or request line does not name this server"
            );
            let mut response = misdirected();
            decorate(response.headers_mut(), allowed_origin.as_ref());
            return ResponseFuture::Ready {
                response: Some(response),
            };
        }
        if req.method() == Method::OPTIONS {
            let mut response = preflight(req.headers(), allowed_origin.as_ref());
            decorate(response.headers_mut(), allowed_origin.as_ref());
            return ResponseFuture::Ready {
                response: Some(response),
            };
        }
        ResponseFuture::Inner {
            future: self.inner.call(req),
            allowed_origin,
        }
    }
}

pin_project! {
    /// The future of [`OriginService`]: the inner response, decorated, or an
    /// answer the layer gave itself.
    // pin-project-lite cannot carry doc comments on variant fields.
    #[allow(missing_docs)]
    #[project = ResponseFutureProj]
    pub enum ResponseFuture<F> {
        /// Waiting for the inner service.
        Inner {
            #[pin]
            future: F,
            allowed_origin: Option<HeaderValue>,
        },
        /// Answered by the layer (421 or a preflight).
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
            ResponseFutureProj::Inner {
                future,
                allowed_origin,
            } => {
                let Ok(mut response) = std::task::ready!(future.poll(cx));
                decorate(response.headers_mut(), allowed_origin.as_ref());
                Poll::Ready(Ok(response))
            }
            ResponseFutureProj::Ready { response } => {
                Poll::Ready(Ok(response.take().unwrap_or_else(misdirected)))
            }
        }
    }
}

/// The canonical origin to echo, when the request carries exactly one
/// allowed `Origin`.
fn allowed_origin(policy: &OriginPolicy, headers: &HeaderMap) -> Option<HeaderValue> {
    let mut values = headers.get_all(header::ORIGIN).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let canonical = policy.cors.allow(value.to_str().ok()?)?;
    HeaderValue::from_str(&canonical).ok()
}

fn misdirected() -> Response<Body> {
    let mut response = Response::new(Body::from("Host header does not name this server"));
    *response.status_mut() = StatusCode::MISDIRECTED_REQUEST;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, crate::response::TEXT_PLAIN);
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
        .extensions_mut()
        .insert(OriginRejection::MisdirectedHost);
    response
}

fn preflight(request: &HeaderMap, allowed_origin: Option<&HeaderValue>) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    if allowed_origin.is_some() {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS);
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS);
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE);
        let private_network = request
            .get("access-control-request-private-network")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
        if private_network {
            headers.insert(
                "access-control-allow-private-network",
                HeaderValue::from_static("true"),
            );
        }
    }
    response
}

/// Adds what every response carries: `Vary: Origin`, the CORS headers for an
/// allowed origin, the hardening headers, and `Cache-Control: no-cache` unless
/// the route chose otherwise.
fn decorate(headers: &mut HeaderMap, allowed_origin: Option<&HeaderValue>) {
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = allowed_origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE_HEADERS);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-cache"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn service() -> OriginService<
        impl Service<Request<()>, Response = Response<Body>, Error = Infallible, Future = impl Send>
            + Clone,
    > {
        let policy = OriginPolicy::new("127.0.0.1".parse().unwrap(), 8765, &[], &[]).unwrap();
        OriginLayer::new(Arc::new(policy)).layer(tower::service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Body::from("inner")))
        }))
    }

    fn request(method: Method, host: &str, origin: Option<&str>) -> Request<()> {
        let mut builder = Request::builder()
            .method(method)
            .uri("/x")
            .header(header::HOST, host);
        if let Some(origin) = origin {
            builder = builder.header(header::ORIGIN, origin);
        }
        builder.body(()).unwrap()
    }

    #[tokio::test]
    async fn an_allowed_origin_is_echoed_canonically_with_hardening_headers() {
        let response = service()
            .oneshot(request(
                Method::GET,
                "127.0.0.1:8765",
                Some("HTTP://LOCALHOST:3000"),
            ))
            .await
            .unwrap();
        let headers = response.headers();
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://localhost:3000"
        );
        assert_eq!(headers[header::VARY], "Origin");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        assert!(headers
            .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
            .is_none());
    }

    #[tokio::test]
    async fn a_foreign_host_is_refused_before_the_inner_service() {
        let response = service()
            .oneshot(request(
                Method::GET,
                "evil.example:8765",
                Some("http://localhost:1"),
            ))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
        assert_eq!(
            response.extensions().get::<OriginRejection>(),
            Some(&OriginRejection::MisdirectedHost)
        );
        // Even the refusal carries the policy's headers.
        assert_eq!(response.headers()[header::VARY], "Origin");
        assert_eq!(
            response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://localhost:1"
        );
    }

    #[tokio::test]
    async fn a_foreign_request_line_authority_is_refused_like_a_foreign_host() {
        let absolute = |uri: &str| {
            Request::builder()
                .uri(uri)
                .header(header::HOST, "127.0.0.1:8765")
                .body(())
                .unwrap()
        };
        for foreign in [
            "http://evil.example/x",
            "http://evil.example:8765/x",
            "http://127.0.0.1:9999/x",
            "http://user@127.0.0.1:8765/x",
        ] {
            let response = service().oneshot(absolute(foreign)).await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::MISDIRECTED_REQUEST,
                "{foreign}"
            );
        }
        let own = service()
            .oneshot(absolute("http://localhost:8765/x"))
            .await
            .unwrap();
        assert_eq!(own.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn preflights_answer_only_allowed_origins() {
        let mut allowed = request(
            Method::OPTIONS,
            "localhost:8765",
            Some("https://www.cellucid.com"),
        );
        allowed.headers_mut().insert(
            "access-control-request-private-network",
            HeaderValue::from_static("true"),
        );
        let response = service().oneshot(allowed).await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            response.headers()[header::ACCESS_CONTROL_ALLOW_METHODS],
            ALLOW_METHODS
        );
        assert_eq!(
            response.headers()["access-control-allow-private-network"],
            "true"
        );

        let refused = request(
            Method::OPTIONS,
            "localhost:8765",
            Some("https://evil.example"),
        );
        let response = service().oneshot(refused).await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert!(response
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_METHODS)
            .is_none());
        assert!(response
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none());
        assert_eq!(response.headers()[header::VARY], "Origin");
    }
}
