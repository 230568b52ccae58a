//! The startup block and the non-loopback warning, written to stderr.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use cellucid_http::Layout;

/// The URL a person on this machine opens: the loopback address for a
/// wildcard bind, IPv6 in brackets, `https` with `tls`.
pub(crate) fn local_url(addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    match ip {
        IpAddr::V6(ip) => format!("{scheme}://[{ip}]:{}", addr.port()),
        IpAddr::V4(ip) => format!("{scheme}://{ip}:{}", addr.port()),
    }
}

/// The startup block: version, datasets, URL (`open`: with the access token
/// when there is one), HTTPS (`tls`: the certificate file), UI state, how to
/// stop.
pub(crate) struct Startup<'a> {
    /// The datasets served.
    pub(crate) layout: &'a Layout,
    /// The server's base URL.
    pub(crate) url: &'a str,
    /// The URL to open (with the token when there is one).
    pub(crate) open: &'a str,
    /// The viewer UI's state.
    pub(crate) web_ui: &'a str,
    /// The certificate file when serving HTTPS.
    pub(crate) tls: Option<&'a Path>,
    /// Extra lines (serving choices, advice).
    pub(crate) notes: &'a [String],
}

impl Startup<'_> {
    /// The block as text.
    pub(crate) fn text(&self) -> String {
        let (url, open) = (self.url, self.open);
        let mut out = String::new();
        let _ = writeln!(out, "cellucid-rs {}", cellucid_http::VERSION);
        let mounts = self.layout.mounts();
        let _ = writeln!(
            out,
            "Serving {} dataset{}:",
            mounts.len(),
            if mounts.len() == 1 { "" } else { "s" }
        );
        let id_width = mounts.iter().map(|m| m.info.id.len()).max().unwrap_or(0);
        let sizes: Vec<String> = mounts
            .iter()
            .map(|m| {
                if m.source.counts_known() {
                    format!("{} cells × {} genes", m.info.n_cells, m.info.n_genes)
                } else {
                    // An R object: only the browser reads what it holds.
                    "read by the browser".to_owned()
                }
            })
            .collect();
        let size_width = sizes.iter().map(|s| s.chars().count()).max().unwrap_or(0);
        let urls: Vec<String> = mounts
            .iter()
            .map(|m| format!("{url}{}", m.advertised_path))
            .collect();
        let url_width = urls.iter().map(String::len).max().unwrap_or(0);
        for ((mount, size), link) in mounts.iter().zip(&sizes).zip(&urls) {
            let _ = writeln!(
                out,
                "  {:<id_width$}  {size:<size_width$}  {link:<url_width$}  {}",
                mount.info.id, mount.info.name,
            );
        }
        for note in self.notes {
            let _ = writeln!(out, "  {note}");
        }
        let _ = writeln!(out, "Open      {open}");
        let _ = writeln!(out, "Health    {url}/_cellucid/health");
        if let Some(cert) = self.tls {
            let _ = writeln!(
                out,
                "HTTPS     HTTP/2 and HTTP/1.1 over TLS, certificate {}",
                cert.display()
            );
        }
        let _ = writeln!(out, "Viewer UI {}", self.web_ui);
        let _ = writeln!(
            out,
            "Browsers: pages from loopback and cellucid.com may read the data (CORS). CORS is not access control."
        );
        let _ = write!(out, "Press Ctrl-C to stop.");
        out
    }

    /// The block as log events with fields (`--log-format json`): one
    /// `dataset` event per dataset, one per note, then `serving` with the
    /// URLs. Quiet: `serving` only.
    pub(crate) fn log(&self, quiet: bool) {
        if !quiet {
            for mount in self.layout.mounts() {
                tracing::info!(
                    id = %mount.info.id,
                    name = %mount.info.name,
                    n_cells = mount.info.n_cells,
                    n_genes = mount.info.n_genes,
                    url = %format!("{}{}", self.url, mount.advertised_path),
                    "dataset"
                );
            }
            for note in self.notes {
                tracing::info!(note = %note, "note");
            }
        }
        tracing::info!(
            version = cellucid_http::VERSION,
            datasets = self.layout.mounts().len(),
            url = %self.open,
            health = %format!("{}/_cellucid/health", self.url),
            viewer_ui = %self.web_ui,
            tls_cert = self.tls.map(|p| tracing::field::display(p.display())),
            "serving; press Ctrl-C to stop"
        );
    }
}

/// The loud warning for a bind other programs on the network can reach.
/// `token` says whether requests need the access token.
pub(crate) fn exposure_warning(addr: SocketAddr, token: bool, tls: bool) -> String {
    let port = addr.port();
    let scheme = if tls { "https" } else { "http" };
    let bar = "!".repeat(72);
    let access = if token {
        "Every request needs the access token printed in the URL below; keep that\n\
         URL private (anyone holding it can download everything served here:\n\
         embeddings, cell metadata, gene expression and session uploads)."
    } else {
        "--no-auth: there is NO access token. Anyone who can connect to this port\n\
         can download everything served here: embeddings, cell metadata (obs\n\
         fields), gene expression, and (with a viewer channel) session uploads.\n\
         CORS does not protect you: it only limits what web pages in a browser may\n\
         read; curl or a script can fetch the data directly."
    };
    format!(
        "{bar}\n\
         WARNING: listening on {addr}, which other machines can reach.\n\
         {access}\n\
         Safer: keep the default --host 127.0.0.1 and tunnel the port over SSH:\n    \
         ssh -L {port}:localhost:{port} user@this-host\n\
         then open {scheme}://127.0.0.1:{port}/ on your own machine.\n\
         See SECURITY.md for containers, shared machines and reverse proxies.\n\
         {bar}"
    )
}
