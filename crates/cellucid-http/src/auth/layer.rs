//! The tower layer that applies an [`AuthPolicy`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::{AuthPolicy, Decision};
use crate::body::Body;

/// What a request without valid credentials is told: how to get in, and
/// nothing about the data.
const UNAUTHORIZED_BODY: &str = "This cellucid server needs its access token. Open the URL it printed when it started (it ends in ?token=...), or send the header 'Authorization: Bearer <token>'.\n";

/// Wraps a service with token checks; `None` lets every request through
/// (an open server: loopback by default, or `--no-auth`).
#[derive(Clone, Debug, Default)]
pub struct AuthLayer {
    policy: Option<Arc<AuthPolicy>>,
}

impl AuthLayer {
    /// A layer applying `policy`, or none.
    pub fn new(policy: Option<AuthPolicy>) -> Self {
        Self {
            policy: policy.map(Arc::new),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    policy: Option<Arc<AuthPolicy>>,
}

impl<S, B> Service<Request<B>> for AuthService<S>
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
        let decision = match &self.policy {
            None => Decision::Pass,
            Some(policy) => {
                // Set by the forwarded layer only when the proxy is trusted.
                let forwarded_https = req
                    .extensions()
                    .get::<crate::forwarded::Forwarded>()
                    .is_some_and(|forwarded| forwarded.https);
                policy.decide(req.method(), req.uri(), req.headers(), forwarded_https)
            }
        };
        let response = match decision {
            Decision::Pass => {
                return ResponseFuture {
                    kind: Kind::Inner {
                        future: self.inner.call(req),
                    },
                }
            }
            Decision::Exchange { location, cookie } => exchange(&location, cookie),
            Decision::HealthOnly => health_only(),
            Decision::Refuse => unauthorized(),
        };
        ResponseFuture {
            kind: Kind::Ready {
                response: Some(response),
            },
        }
    }
}

pin_project! {
    /// The future of [`AuthService`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner {
            #[pin]
            future: F,
        },
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
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Ready { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => panic!("ResponseFuture polled after it completed"),
            },
        }
    }
}

fn exchange(location: &str, cookie: HeaderValue) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::SET_COOKIE, cookie);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn health_only() -> Response<Body> {
    crate::response::json(bytes::Bytes::from_static(br#"{"status":"ok"}"#))
}

fn unauthorized() -> Response<Body> {
    let mut response = crate::response::text(StatusCode::UNAUTHORIZED, UNAUTHORIZED_BODY);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"cellucid\""),
    );
    response
}
