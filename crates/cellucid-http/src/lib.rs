//! The cellucid-rs HTTP server.
//!
//! Serves the datasets of a [`Layout`] to both generations of the Cellucid
//! viewer, safely by default. The whole HTTP surface is one
//! `tower::Service`, [`CellucidService`], over any request body; [`Server`]
//! is a thin runner of it on a TCP listener. A request travels, outermost
//! first:
//!
//! 1. the connection ([`Server`], [`Limits`]): head size and count,
//!    header-read and idle timeouts, a connection cap;
//! 2. [`OriginLayer`]: the Host allowlist (421), CORS for allowed origins,
//!    preflights, `nosniff` and `Referrer-Policy` on every response;
//! 3. [`forwarded::ForwardedLayer`]: a trusted reverse proxy's
//!    `X-Forwarded-*` headers (only with `trust_proxy`);
//! 4. [`auth::AuthLayer`]: the access token when one is required (401);
//! 5. the route table: each request is classified once from its method and
//!    decoded path — the viewer channel ([`channel`]: `POST
//!    /_cellucid/events`, `/selection`, `/session_bundle`, the WebSocket
//!    `/_cellucid/ws`), the other `/_cellucid/*` routes, then `datasets.json`
//!    and dataset files, then the viewer UI;
//! 6. a handler and the [`cellucid_core::DatasetSource`] behind the dataset.
//!
//! Errors become responses in one place, [`HttpError::into_response`].
//! `examples/axum_mount.rs` mounts the service in an axum app next to the
//! app's own routes.
//!
//! A program talks to viewers through [`Server::viewers`]: register a
//! [`Viewer`], read its [`ViewerEvents`] stream, [`Viewer::send`] it a
//! [`Command`], await [`Viewer::request_session_bundle`]. The runnable
//! example `examples/viewer_channel.rs` shows the whole loop.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use cellucid_core::{DatasetSource, ExportSource};
//! use cellucid_http::{Layout, Server, ServerConfig};
//!
//! let source: Arc<dyn DatasetSource> = Arc::new(ExportSource::open("exports".as_ref())?);
//! let layout = Layout::new(&[source])?;
//! let server = Server::bind(ServerConfig::new("127.0.0.1:8765".parse()?), layout).await?;
//! println!("serving on http://{}", server.local_addr());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

mod anndata_route;
pub mod auth;
mod body;
pub mod channel;
mod conn;
mod content_coding;
mod documents;
mod error;
pub mod forwarded;
#[doc(hidden)]
pub mod fuzz_api;
mod h2_stream;
mod hooked_io;
mod mount;
mod offload;
pub mod origin;
mod path;
mod range;
mod response;
mod route;
mod router;
mod server;
mod service;
mod tls;
mod web_ui;

pub use body::{Body, FileRange};
pub use channel::{
    ChannelLimits, Command, SessionBundle, Viewer, ViewerEvent, ViewerEvents, ViewerOptions,
    ViewerRegistry,
};
pub use documents::VERSION;
pub use error::HttpError;
pub use mount::{unique_anndata_id, Layout, LayoutError, Mount, RESERVED_NAMES};
pub use origin::{OriginLayer, OriginPolicy};
pub use router::WebUi;
pub use server::{Limits, Server, ServerConfig, ServerError};
pub use service::{CellucidService, ServiceConfig};
pub use tls::{TlsConfig, TlsError};
