//! Access control by token (SECURITY.md, "The access token").
//!
//! On a non-loopback bind (and on loopback with `--auth`) every request must
//! carry the server's [`AccessToken`]: as `Authorization: Bearer …`, as the
//! instance's cookie, or once as a `token` query parameter, which a GET
//! exchanges for the cookie with a 303 to the same URL without it. The one
//! exception is `/_cellucid/health`, which then answers `{"status":"ok"}`
//! alone so liveness probes work without the secret.
//!
//! The layer sits inside the origin layer: the Host check (421) and CORS
//! preflights (which carry no credentials) come first, then the token (401).

mod layer;
mod token;

pub use layer::{AuthLayer, AuthService, ResponseFuture};
pub use token::{AccessToken, TokenError, MAX_TOKEN_LEN, MIN_TOKEN_LEN};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Uri};

/// The query parameter that carries the token in a URL a person opens.
const QUERY_KEY: &str = "token";

/// Who may pass, and how the cookie is named.
#[derive(Debug, Clone)]
pub struct AuthPolicy {
    token: AccessToken,
    cookie_name: String,
    secure: bool,
}

impl AuthPolicy {
    /// A policy that lets in holders of `token`. `secure` marks the cookie
    /// `Secure` (the server speaks HTTPS).
    pub fn new(token: AccessToken, secure: bool) -> Self {
        // Unique per token: two servers on one host (cookies ignore ports)
        // must not overwrite each other's cookie.
        let cookie_name = format!("cellucid_token_{}", token.public_tag());
        Self {
            token,
            cookie_name,
            secure,
        }
    }

    /// The cookie's name for this server.
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// What to do with a request: the pure decision at the centre of the
    /// layer. `forwarded_https` says a trusted proxy received the request
    /// over HTTPS (`X-Forwarded-Proto`, only with `--trust-proxy`): the
    /// cookie is then `Secure` even though this server speaks plain HTTP.
    pub(crate) fn decide(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        forwarded_https: bool,
    ) -> Decision {
        let read = *method == Method::GET || *method == Method::HEAD;
        let query_token = uri.query().and_then(|query| query_value(query, QUERY_KEY));
        match query_token {
            Some(candidate) if self.token.matches(candidate.as_bytes()) => {
                if read {
                    return Decision::Exchange {
                        location: location_without_token(uri),
                        cookie: self.cookie(self.secure || forwarded_https),
                    };
                }
                return Decision::Pass;
            }
            // A wrong token in the URL is refused even with a good cookie:
            // the user should learn the URL they hold is stale.
            Some(_) => return Decision::Refuse,
            None => {}
        }
        if self.bearer_matches(headers) || self.cookie_matches(headers) {
            return Decision::Pass;
        }
        if read && uri.path() == "/_cellucid/health" {
            return Decision::HealthOnly;
        }
        Decision::Refuse
    }

    fn bearer_matches(&self, headers: &HeaderMap) -> bool {
        headers.get_all(header::AUTHORIZATION).iter().any(|value| {
            let value = value.as_bytes();
            value.len() > 7
                && value[..7].eq_ignore_ascii_case(b"bearer ")
                && self.token.matches(value[7..].trim_ascii())
        })
    }

    fn cookie_matches(&self, headers: &HeaderMap) -> bool {
        headers.get_all(header::COOKIE).iter().any(|value| {
            value.as_bytes().split(|&b| b == b';').any(|pair| {
                let pair = pair.trim_ascii();
                pair.strip_prefix(self.cookie_name.as_bytes())
                    .and_then(|rest| rest.strip_prefix(b"="))
                    .is_some_and(|candidate| self.token.matches(candidate))
            })
        })
    }

    /// The `Set-Cookie` value that carries the token; `secure` adds
    /// `Secure` (the browser then sends it over HTTPS only).
    fn cookie(&self, secure: bool) -> HeaderValue {
        // No `Path`: the browser then scopes the cookie to the directory of
        // the URL it opened, which behind a reverse proxy is the proxy's
        // prefix, never broader. No `Max-Age`: it ends with the browser.
        let secure = if secure { "; Secure" } else { "" };
        let text = format!(
            "{}={}; HttpOnly; SameSite=Strict{secure}",
            self.cookie_name,
            self.token.expose()
        );
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""))
    }
}

/// The layer's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Credentials are good: the request goes on.
    Pass,
    /// A GET with the token in its URL: set the cookie and send the browser
    /// to the same URL without the token (303).
    Exchange {
        /// The relative `Location`.
        location: String,
        /// The `Set-Cookie` value.
        cookie: HeaderValue,
    },
    /// No credentials on `/_cellucid/health`: `{"status":"ok"}` alone.
    HealthOnly,
    /// No or wrong credentials (401).
    Refuse,
}

/// The value of the first `key=` parameter of a query, undecoded (tokens
/// are URL-safe, so a percent-encoded token is a wrong token).
fn query_value<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        pair.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix('='))
    })
}

/// The request's URL without its `token` parameters, as a reference
/// relative to the URL itself (`./<last segment>?<rest>`), so the redirect
/// works under any reverse-proxy prefix.
fn location_without_token(uri: &Uri) -> String {
    let path = uri.path();
    let last = path.rsplit('/').next().unwrap_or_default();
    let rest: Vec<&str> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| {
            !pair.is_empty()
                && *pair != QUERY_KEY
                && !pair
                    .strip_prefix(QUERY_KEY)
                    .is_some_and(|r| r.starts_with('='))
        })
        .collect();
    // "./" first: a segment with a colon would otherwise read as a scheme.
    let mut location = format!("./{last}");
    if !rest.is_empty() {
        location.push('?');
        location.push_str(&rest.join("&"));
    }
    location
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "abcdefghijklmnopqrstuvwxyz012345";

    fn policy() -> AuthPolicy {
        AuthPolicy::new(AccessToken::parse(TOKEN).unwrap(), false)
    }

    fn decide(method: &Method, uri: &str, headers: &[(&str, &str)]) -> Decision {
        decide_forwarded(method, uri, headers, false)
    }

    fn decide_forwarded(
        method: &Method,
        uri: &str,
        headers: &[(&str, &str)],
        forwarded_https: bool,
    ) -> Decision {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        policy().decide(method, &uri.parse().unwrap(), &map, forwarded_https)
    }

    #[test]
    fn bearer_and_cookie_pass_and_nothing_else_does() {
        let bearer = format!("Bearer {TOKEN}");
        assert_eq!(
            decide(&Method::GET, "/x", &[("authorization", &bearer)]),
            Decision::Pass
        );
        let lower = format!("bearer {TOKEN}");
        assert_eq!(
            decide(&Method::POST, "/x", &[("authorization", &lower)]),
            Decision::Pass
        );
        let cookie = format!("other=1; {}={TOKEN}", policy().cookie_name());
        assert_eq!(
            decide(&Method::GET, "/x", &[("cookie", &cookie)]),
            Decision::Pass
        );
        assert_eq!(decide(&Method::GET, "/x", &[]), Decision::Refuse);
        assert_eq!(
            decide(&Method::GET, "/x", &[("authorization", "Bearer nope")]),
            Decision::Refuse
        );
        assert_eq!(
            decide(&Method::GET, "/x", &[("authorization", TOKEN)]),
            Decision::Refuse
        );
        let wrong_name = format!("cellucid_token_00000000={TOKEN}x");
        assert_eq!(
            decide(&Method::GET, "/x", &[("cookie", &wrong_name)]),
            Decision::Refuse
        );
    }

    #[test]
    fn a_url_token_is_exchanged_for_the_cookie_with_a_relative_redirect() {
        let Decision::Exchange { location, cookie } = decide(
            &Method::GET,
            &format!("/?viewer=true&token={TOKEN}&viewerId=ab"),
            &[],
        ) else {
            panic!("expected an exchange");
        };
        assert_eq!(location, "./?viewer=true&viewerId=ab");
        let cookie = cookie.to_str().unwrap();
        assert!(cookie.starts_with(&format!("{}={TOKEN}", policy().cookie_name())));
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert!(!cookie.contains("Path="));

        let Decision::Exchange { location, .. } =
            decide(&Method::GET, &format!("/a/b:c.bin?token={TOKEN}"), &[])
        else {
            panic!("expected an exchange");
        };
        assert_eq!(location, "./b:c.bin");
        assert_eq!(
            decide(
                &Method::POST,
                &format!("/_cellucid/events?token={TOKEN}"),
                &[]
            ),
            Decision::Pass
        );
        assert_eq!(
            decide(
                &Method::GET,
                "/?token=wrong",
                &[("authorization", &format!("Bearer {TOKEN}"))]
            ),
            Decision::Refuse
        );
    }

    #[test]
    fn health_answers_without_credentials_but_only_health() {
        assert_eq!(
            decide(&Method::GET, "/_cellucid/health", &[]),
            Decision::HealthOnly
        );
        assert_eq!(
            decide(&Method::HEAD, "/_cellucid/health", &[]),
            Decision::HealthOnly
        );
        assert_eq!(
            decide(&Method::GET, "/_cellucid/info", &[]),
            Decision::Refuse
        );
        assert_eq!(
            decide(&Method::POST, "/_cellucid/health", &[]),
            Decision::Refuse
        );
    }

    #[test]
    fn two_tokens_get_two_cookie_names() {
        let other = AuthPolicy::new(AccessToken::generate().unwrap(), true);
        assert_ne!(other.cookie_name(), policy().cookie_name());
        assert!(other.cookie(true).to_str().unwrap().ends_with("; Secure"));
    }

    #[test]
    fn a_trusted_https_proxy_makes_the_cookie_secure() {
        let cookie_of = |decision: Decision| match decision {
            Decision::Exchange { cookie, .. } => cookie.to_str().unwrap().to_owned(),
            other => panic!("expected an exchange, got {other:?}"),
        };
        let uri = format!("/?token={TOKEN}");
        let plain = cookie_of(decide_forwarded(&Method::GET, &uri, &[], false));
        assert!(!plain.contains("Secure"), "{plain}");
        let forwarded = cookie_of(decide_forwarded(&Method::GET, &uri, &[], true));
        assert!(forwarded.ends_with("; Secure"), "{forwarded}");
        // A server that speaks HTTPS itself always sets it.
        let tls = AuthPolicy::new(AccessToken::parse(TOKEN).unwrap(), true);
        let own = cookie_of(tls.decide(
            &Method::GET,
            &uri.parse().unwrap(),
            &HeaderMap::new(),
            false,
        ));
        assert!(own.ends_with("; Secure"), "{own}");
    }
}
