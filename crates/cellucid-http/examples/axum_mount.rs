//! Mounting the cellucid service inside an axum application, next to the
//! application's own routes.
//!
//! ```text
//! cargo run -p cellucid-http --example axum_mount -- path/to/export-folder
//! ```
//!
//! `/hello` is the application's own route; everything else (the datasets,
//! `/_cellucid/*`, the viewer channel) is answered by cellucid-rs behind its
//! origin policy. The service checks `Host` against the address it is told
//! it is bound to, so it is built after the listener is bound.

use std::sync::Arc;

use axum::routing::get;
use cellucid_core::{DatasetSource, ExportSource};
use cellucid_http::{CellucidService, Layout, ServiceConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let folder = std::env::args()
        .nth(1)
        .ok_or("usage: axum_mount EXPORT_FOLDER")?;
    let source: Arc<dyn DatasetSource> = Arc::new(ExportSource::open(folder.as_ref())?);
    let layout = Layout::new(&[source])?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bound = listener.local_addr()?;
    let cellucid = CellucidService::new(ServiceConfig::default(), layout, bound)?;

    let app = axum::Router::new()
        .route("/hello", get(|| async { "hello from the embedding app\n" }))
        .fallback_service(cellucid);
    println!("serving on http://{bound}/ (try /hello and /_cellucid/datasets)");
    axum::serve(listener, app).await?;
    Ok(())
}
