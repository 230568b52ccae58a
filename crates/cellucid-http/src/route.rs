//! The route table: every request is classified once, from its method and
//! its decoded path, before any handler runs (docs/PROTOCOL.md, "Routes").
//!
//! Precedence: `/_cellucid/*` first, then `datasets.json` and dataset files,
//! then the viewer UI. A path that no dataset serves falls through to the UI
//! in the handler, so a UI build can never shadow an API or a data route.

use http::Method;

use crate::error::HttpError;
use crate::path;

/// The `Allow` value of the read routes (OPTIONS is answered by the origin layer).
pub(crate) const READ_METHODS: &str = "GET, HEAD, OPTIONS";
/// The `Allow` value of the viewer channel's POST routes.
pub(crate) const POST_METHODS: &str = "POST, OPTIONS";

/// A POST route of the 0.9.4 viewer channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PostRoute {
    /// `POST /_cellucid/events`
    Events,
    /// `POST /_cellucid/selection`
    Selection,
    /// `POST /_cellucid/session_bundle`
    SessionBundle,
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/_cellucid/health`
    Health,
    /// `/_cellucid/info`
    Info,
    /// `/_cellucid/datasets`
    Datasets,
    /// `/_cellucid/protocol`
    Protocol,
    /// `GET /_cellucid/ws`: the WebSocket channel (426 without an upgrade).
    WebSocket,
    /// A POST route of the viewer channel.
    Post(PostRoute),
    /// `/datasets.json`
    Catalog,
    /// `/_cellucid/anndata/<rest>`: raw bytes for byte viewers.
    AnnData(String),
    /// Any other path, without its leading `/` (`""` for `/`): a dataset
    /// file, else a viewer UI file.
    File(String),
}

impl Route {
    /// Classifies a request. A malformed path, and any unknown
    /// `/_cellucid/…` path, is a 404; a known route asked with a method it
    /// does not answer is a 405 naming the methods it does.
    pub(crate) fn parse(method: &Method, raw_path: &str) -> Result<Self, HttpError> {
        let decoded = path::decode(raw_path).ok_or_else(|| HttpError::NotFound(String::new()))?;
        let path = &decoded[1..];
        let route = match path {
            "_cellucid/health" => Self::Health,
            "_cellucid/info" => Self::Info,
            "_cellucid/datasets" => Self::Datasets,
            "_cellucid/protocol" => Self::Protocol,
            "_cellucid/ws" => Self::WebSocket,
            "_cellucid/events" => Self::Post(PostRoute::Events),
            "_cellucid/selection" => Self::Post(PostRoute::Selection),
            "_cellucid/session_bundle" => Self::Post(PostRoute::SessionBundle),
            "datasets.json" => Self::Catalog,
            _ => match path.strip_prefix("_cellucid/anndata/") {
                Some(rest) => Self::AnnData(rest.to_owned()),
                None if path == "_cellucid" || path.starts_with("_cellucid/") => {
                    return Err(HttpError::NotFound(path.to_owned()))
                }
                None => Self::File(path.to_owned()),
            },
        };
        let allowed = match route {
            Self::Post(_) => *method == Method::POST,
            _ => *method == Method::GET || *method == Method::HEAD,
        };
        if allowed {
            Ok(route)
        } else {
            Err(HttpError::MethodNotAllowed {
                allow: route.allow(),
            })
        }
    }

    /// The methods this route answers, as an `Allow` value.
    pub(crate) fn allow(&self) -> &'static str {
        match self {
            Self::Post(_) => POST_METHODS,
            _ => READ_METHODS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: &Method, path: &str) -> Result<Route, u16> {
        Route::parse(method, path).map_err(|err| err.into_response().status().as_u16())
    }

    #[test]
    fn api_routes_are_classified_after_decoding() {
        assert_eq!(parse(&Method::GET, "/_cellucid/health"), Ok(Route::Health));
        assert_eq!(parse(&Method::HEAD, "/_cellucid/%69nfo"), Ok(Route::Info));
        assert_eq!(
            parse(&Method::POST, "/_cellucid/%65vents"),
            Ok(Route::Post(PostRoute::Events))
        );
        assert_eq!(parse(&Method::GET, "/_cellucid/ws"), Ok(Route::WebSocket));
        assert_eq!(parse(&Method::GET, "/datasets.json"), Ok(Route::Catalog));
        assert_eq!(
            parse(&Method::GET, "/_cellucid/anndata/pbmc.h5ad"),
            Ok(Route::AnnData("pbmc.h5ad".into()))
        );
        assert_eq!(parse(&Method::GET, "/"), Ok(Route::File(String::new())));
        assert_eq!(
            parse(&Method::GET, "/a/b%20c.bin"),
            Ok(Route::File("a/b c.bin".into()))
        );
    }

    #[test]
    fn wrong_methods_are_405_and_unknown_api_paths_404() {
        assert_eq!(parse(&Method::POST, "/_cellucid/health"), Err(405));
        assert_eq!(parse(&Method::GET, "/_cellucid/events"), Err(405));
        assert_eq!(parse(&Method::PUT, "/x.bin"), Err(405));
        assert_eq!(parse(&Method::POST, "/_cellucid/ws"), Err(405));
        assert_eq!(parse(&Method::GET, "/_cellucid/nope"), Err(404));
        assert_eq!(parse(&Method::GET, "/_cellucid"), Err(404));
        assert_eq!(parse(&Method::GET, "/a%2fb"), Err(404));
        assert_eq!(parse(&Method::GET, "/a%00b"), Err(404));
    }
}
