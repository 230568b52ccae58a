//! `cellucid serve`: wiring the inputs, the layout and the server together.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use cellucid_http::{Layout, Server, ServerConfig, ServerError, ViewerOptions};

use crate::args::ServeArgs;
use crate::banner;
use crate::error::CliError;
use crate::inputs;

/// Runs the server until Ctrl-C or SIGTERM.
pub(crate) fn run(args: ServeArgs) -> Result<(), CliError> {
    crate::logging::init(args.log_format, args.quiet, args.verbose);
    let paths = if args.paths.is_empty() {
        let demo = inputs::demo_path();
        if !demo.is_dir() {
            return Err(CliError::operator(format!(
                "no PATH given and the bundled demo datasets are not in this installation ({}); pass a dataset PATH",
                demo.display()
            )));
        }
        vec![demo]
    } else {
        args.paths.clone()
    };
    let (sources, notes) = inputs::open_all(&paths, &args.anndata)?;
    let layout = Layout::new(&sources).map_err(|err| CliError::usage(err.to_string()))?;
    let ip = resolve_host(&args.host)?;
    let ui = crate::web_ui::setup(&args)?;
    let mut config = ServerConfig::new(SocketAddr::new(ip, args.port));
    config.service.host_label = Some(args.host.clone());
    config.service.allowed_hosts.clone_from(&args.allowed_hosts);
    config
        .service
        .allowed_origins
        .clone_from(&args.allowed_origins);
    config.service.web_ui = ui.web_ui.clone();
    config.service.trust_proxy = args.trust_proxy;
    let access = crate::access::resolve(&args, ip, false)?;
    config.service.auth = access.policy.clone();
    config.limits.header_read_timeout = Duration::from_secs_f64(args.header_timeout);
    config.limits.idle_timeout = Duration::from_secs_f64(args.idle_timeout);
    config.limits.max_connections = args.max_connections as usize;
    config.service.channel.max_bundle_bytes = args.max_bundle_bytes;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Blocking work (decoding, UI cache checks) is bounded work; cap the
        // pool so a burst cannot spawn hundreds of threads on a small machine.
        .max_blocking_threads(32)
        .build()
        .map_err(|err| CliError::operator(format!("cannot start the async runtime: {err}")))?;
    runtime.block_on(async move {
        let server = Server::bind(config, layout.clone())
            .await
            .map_err(|err| match err {
                ServerError::Config(_) => CliError::usage(err.to_string()),
                _ => CliError::operator(err.to_string()),
            })?;
        // Only once the flags are known good: the UI may need the network.
        let ui_status = tokio::task::block_in_place(|| crate::web_ui::start(ui, &args))?;
        let addr = server.local_addr();
        let url = banner::local_url(addr);
        let exposed = !addr.ip().is_loopback();
        if exposed {
            eprintln!("{}", banner::exposure_warning(addr, access.token.is_some()));
        }
        let open_url = access.with_token(&format!("{url}/"));
        if args.quiet {
            eprintln!("Serving on {open_url}");
            // A missing UI is a warning: shown even when quiet.
            if ui_status.starts_with("UNAVAILABLE") {
                eprintln!("Viewer UI {ui_status}");
            }
        } else {
            let mut notes = notes;
            if access.token.is_none() && !exposed && crate::access::other_users_present() {
                notes.push(
                    "Other users are logged in to this machine and can reach this port: add --auth to require a token (SECURITY.md)".to_owned(),
                );
            }
            eprintln!("{}", banner::startup(&layout, &url, &open_url, &ui_status, &notes));
        }
        if exposed && access.token.is_none() {
            // --no-auth: the warning again, below the block, where it is seen.
            eprintln!("{}", banner::exposure_warning(addr, false));
        }
        // The 0.9.5 viewer URL says `anndata=true` when the default dataset is AnnData.
        let anndata = layout
            .mounts()
            .first()
            .is_some_and(|m| m.source.format().dataset_type() == "anndata");
        let viewer = if args.viewer {
            let n_cells = match layout.mounts() {
                [one] => Some(one.info.n_cells),
                _ => None,
            };
            let mut options = ViewerOptions::default();
            options.n_cells = n_cells;
            let viewer = server
                .viewers()
                .register(options)
                .map_err(|err| CliError::operator(err.to_string()))?;
            eprintln!("{}", crate::viewer::urls(&viewer, &url, anndata, &access));
            let events = viewer.events().map(crate::viewer::stream_to_stdout);
            Some((viewer, events))
        } else {
            None
        };
        if !args.no_browser {
            let open = match &viewer {
                Some((viewer, _)) => access.with_token(&viewer.url(&url, anndata)),
                None => open_url.clone(),
            };
            open_browser(open);
        }
        server
            .run(shutdown_signal())
            .await
            .map_err(|err| CliError::operator(format!("the server failed: {err}")))?;
        if let Some((viewer, events)) = viewer {
            // Unregistering ends the stream; wait for its last lines.
            drop(viewer);
            if let Some(events) = events {
                let _ = events.await;
            }
        }
        tracing::info!("stopped");
        Ok(())
    })
}

/// An IP literal, `localhost`, or a name this machine resolves.
fn resolve_host(host: &str) -> Result<IpAddr, CliError> {
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(ip);
    }
    if literal.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::from([127, 0, 0, 1]));
    }
    // Only a well-formed DNS name goes to the resolver: a typo is reported
    // here instead of becoming a network lookup.
    let well_formed = cellucid_http::origin::is_ldh_name(&literal.to_ascii_lowercase());
    let resolved = if well_formed {
        (literal, 0).to_socket_addrs().ok()
    } else {
        None
    };
    resolved
        .and_then(|mut addrs| addrs.next())
        .map(|addr| addr.ip())
        .ok_or_else(|| {
            CliError::usage(format!(
                "--host {host:?} is not an IP address or a name this machine resolves (try 127.0.0.1 or ::1)"
            ))
        })
}

/// Opens the viewer in a browser when there is one; never fails the server.
fn open_browser(url: String) {
    let has_display = cfg!(not(target_os = "linux"))
        || std::env::var_os("DISPLAY").is_some()
        || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if !has_display {
        tracing::info!("no graphical display; open {url} in a browser yourself");
        return;
    }
    std::thread::spawn(move || {
        if let Err(err) = webbrowser::open(&url) {
            tracing::info!(error = %err, "could not open a browser; open {url} yourself");
        }
    });
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    eprintln!("Shutting down: finishing requests in flight…");
}
