//! The `/_cellucid/*` JSON documents, built at startup and again whenever
//! an AnnData input was re-opened (SECURITY.md, "Files that change
//! while served").

use bytes::Bytes;
use serde::Serialize;

use crate::mount::Layout;

/// This crate's version, reported as the server version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The prebuilt bodies of the document routes.
#[derive(Debug, Clone)]
pub(crate) struct Documents {
    pub(crate) health: Bytes,
    pub(crate) info: Bytes,
    pub(crate) datasets: Bytes,
    pub(crate) protocol: Bytes,
}

/// What one or several datasets report in health and info.
struct Summary {
    kind: &'static str,
    format: Option<&'static str>,
    n_cells: Option<u64>,
    n_genes: Option<u64>,
    datasets: Option<usize>,
}

impl Summary {
    fn of(layout: &Layout) -> Self {
        match layout.mounts() {
            [one] => {
                let info = one.current_info();
                Self {
                    kind: one.source.format().dataset_type(),
                    format: Some(one.source.format().as_str()),
                    n_cells: one.source.counts_known().then_some(info.n_cells),
                    n_genes: one.source.counts_known().then_some(info.n_genes),
                    datasets: None,
                }
            }
            many => Self {
                kind: "multi",
                format: None,
                n_cells: None,
                n_genes: None,
                datasets: Some(many.len()),
            },
        }
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    version: &'static str,
    runtime: &'static str,
    format: Option<&'static str>,
    n_cells: Option<u64>,
    n_genes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    datasets: Option<usize>,
}

#[derive(Serialize)]
struct Info<'a> {
    version: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    format: Option<&'static str>,
    host: &'a str,
    port: u16,
    n_cells: Option<u64>,
    n_genes: Option<u64>,
    runtime: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    datasets: Option<usize>,
}

#[derive(Serialize)]
struct DatasetList<'a> {
    datasets: Vec<DatasetEntry<'a>>,
}

#[derive(Serialize)]
struct DatasetEntry<'a> {
    id: &'a str,
    name: &'a str,
    path: &'a str,
    /// For AnnData inputs: where the 0.9.5 byte viewer finds the store.
    #[serde(skip_serializing_if = "Option::is_none")]
    anndata: Option<serde_json::Value>,
}

/// The 0.9.5 `anndata` member of a dataset entry (relative `url`).
fn anndata_entry(mount: &crate::mount::Mount) -> Option<serde_json::Value> {
    use cellucid_core::anndata::RawLayout;
    let raw = mount.source.raw_store(&mount.info.id)?;
    let route = format!("_cellucid/anndata/{}{}", mount.info.id, raw.ending());
    let file = match (raw.layout(), raw.size()) {
        (RawLayout::Folder, _) | (_, None) => {
            let mut file = serde_json::json!({
                "url": format!("{route}/"), "kind": raw.kind(), "layout": raw.layout().as_str()
            });
            // A browser cannot list a folder of files: it is given them.
            if let (Some(files), Some(obj)) = (raw.files(), file.as_object_mut()) {
                let list: Vec<_> = files
                    .iter()
                    .map(|(path, size)| serde_json::json!({"path": path, "size": size}))
                    .collect();
                obj.insert("files".into(), serde_json::Value::from(list));
            }
            file
        }
        (layout, Some(size)) => serde_json::json!({
            "url": route, "kind": raw.kind(), "layout": layout.as_str(), "size": size
        }),
    };
    Some(serde_json::json!({"file": file, "defaults": raw.defaults()}))
}

impl Documents {
    pub(crate) fn build(layout: &Layout, host: &str, port: u16) -> Self {
        let summary = Summary::of(layout);
        let health = Health {
            status: "ok",
            kind: summary.kind,
            version: VERSION,
            runtime: "rust",
            format: summary.format,
            n_cells: summary.n_cells,
            n_genes: summary.n_genes,
            datasets: summary.datasets,
        };
        let info = Info {
            version: VERSION,
            kind: summary.kind,
            format: summary.format,
            host,
            port,
            n_cells: summary.n_cells,
            n_genes: summary.n_genes,
            runtime: "rust",
            datasets: summary.datasets,
        };
        let datasets = DatasetList {
            datasets: layout
                .mounts()
                .iter()
                .map(|m| DatasetEntry {
                    id: &m.info.id,
                    name: &m.info.name,
                    path: &m.advertised_path,
                    anndata: anndata_entry(m),
                })
                .collect(),
        };
        Self {
            health: to_bytes(&health),
            info: to_bytes(&info),
            datasets: to_bytes(&datasets),
            protocol: to_bytes(&protocol()),
        }
    }
}

/// The 0.9.5 capability document plus the HTTP channel routes.
fn protocol() -> serde_json::Value {
    serde_json::json!({
        "channel": "_cellucid/ws",
        "commands": ["clearHighlights", "debug_snapshot", "freeze", "highlight", "ping",
                     "requestSessionBundle", "resetCamera", "setColorBy", "setDataMapping", "setVisibility"],
        "binaryCommands": ["highlight", "setVisibility"],
        "events": ["click", "command_error", "data_mapping", "debug_snapshot", "hover", "pong",
                   "ready", "selection", "session_bundle"],
        "http": {
            "events": "_cellucid/events",
            "selection": "_cellucid/selection",
            "session_bundle": "_cellucid/session_bundle"
        }
    })
}

fn to_bytes(value: &impl Serialize) -> Bytes {
    // Serialising these plain structs cannot fail.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}
