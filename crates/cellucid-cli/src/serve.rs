//! `cellucid serve`: wiring the inputs, the layout and the server together.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use cellucid_http::origin::ConfigError;
use cellucid_http::{
    Layout, Server, ServerConfig, ServerError, TlsConfig, TlsError, ViewerOptions,
};

use crate::args::ServeArgs;
use crate::banner;
use crate::demo::DemoFolder;
use crate::error::CliError;
use crate::inputs;

/// Runs the server until Ctrl-C or SIGTERM.
pub(crate) fn run(args: ServeArgs) -> Result<(), CliError> {
    // Background log lines wait for the startup block (crate::logging).
    crate::logging::init(args.log_format, args.quiet, args.verbose, true);
    // Without PATH: the embedded demo, written out for as long as this
    // function runs (the folder is removed when `demo` drops).
    let demo = if args.paths.is_empty() {
        Some(DemoFolder::extract().map_err(|err| {
            CliError::operator(format!(
                "no PATH given and the bundled demo datasets cannot be written to a temporary folder ({err}); set TMPDIR or pass a dataset PATH"
            ))
        })?)
    } else {
        None
    };
    let paths = match &demo {
        Some(demo) => vec![demo.path().to_owned()],
        None => args.paths.clone(),
    };
    let mut options = args.anndata.options();
    options.index_progress = Some(crate::progress::index_hook(args.log_format, args.quiet));
    let opened = inputs::open_all(&paths, &options, &args.anndata)?;
    let (sources, notes) = (opened.sources, opened.notes);
    let layout = Layout::new(&sources).map_err(|err| CliError::usage(err.to_string()))?;
    let ip = resolve_host(&args.host)?;
    let tls = load_tls(&args)?;
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
    let access = crate::access::resolve(&args, ip, tls.is_some())?;
    config.tls = tls;
    config.service.auth = access.policy.clone();
    config.limits.header_read_timeout = Duration::from_secs_f64(args.header_timeout);
    // What a client owes before its first request: the TLS handshake has
    // the same deadline as a request head.
    config.limits.tls_handshake_timeout = config.limits.header_read_timeout;
    config.limits.idle_timeout = Duration::from_secs_f64(args.idle_timeout);
    config.limits.max_connections = args.max_connections as usize;
    config.service.channel.max_bundle_bytes = args.max_bundle_bytes;
    // Stalled clients and shutdown (SECURITY.md, "Clients that stall").
    let shutdown_timeout = Duration::from_secs_f64(args.shutdown_timeout);
    let send_timeout = Duration::from_secs_f64(args.send_timeout);
    config.limits.send_timeout = send_timeout;
    config.limits.shutdown_grace = shutdown_grace(shutdown_timeout);
    config.service.channel.send_timeout = send_timeout;
    config.service.channel.body_timeout = Duration::from_secs_f64(args.body_timeout);
    config.service.channel.max_queued_event_bytes = args.max_queued_event_bytes;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Blocking work (decoding, UI cache checks) is bounded work; cap the
        // pool so a burst cannot spawn hundreds of threads on a small machine.
        .max_blocking_threads(32)
        .build()
        .map_err(|err| CliError::operator(format!("cannot start the async runtime: {err}")))?;
    let result = runtime.block_on(async move {
        let server = Server::bind(config, layout.clone())
            .await
            .map_err(|err| match err {
                // The library states facts; the CLI names the flags.
                ServerError::Config(ConfigError::AllowedHost { entry, reason }) => {
                    CliError::usage(format!("--allowed-host {entry:?}: {reason}"))
                }
                ServerError::Config(ConfigError::AllowedOrigin { entry }) => {
                    CliError::usage(format!("--allowed-origin {entry:?}: expected a bare origin like https://notebook.example.org or http://localhost:3000 (no path, not even a trailing '/')"))
                }
                ServerError::Config(_) => CliError::usage(err.to_string()),
                ServerError::PortInUse { .. } => CliError::operator(format!(
                    "{err}; stop the other server or choose another port with --port (--port 0 picks a free one)"
                )),
                _ => CliError::operator(err.to_string()),
            })?;
        // Only once the flags are known good: the UI may need the network.
        let ui_status = tokio::task::block_in_place(|| crate::web_ui::start(ui, &args))?;
        // Before the URL is printed (after the UI download, which Ctrl-C
        // still simply interrupts): a signal that comes before the server's
        // first poll must stop it gracefully, not kill it.
        let stop_signal = shutdown_signal();
        let addr = server.local_addr();
        let url = banner::local_url(addr, server.is_tls());
        let exposed = !addr.ip().is_loopback();
        let open_url = access.with_token(&format!("{url}/"));
        let mut notes = notes;
        if !args.quiet
            && access.token.is_none()
            && !exposed
            && crate::access::other_users_present()
        {
            notes.push(
                "Other users are logged in to this machine and can reach this port: add --auth to require a token (SECURITY.md)".to_owned(),
            );
        }
        // The startup block first; log lines of background work after it.
        crate::logging::banner(|| {
            use crate::logging::say;
            use tracing::Level;
            if exposed {
                say(Level::WARN, &banner::exposure_warning(addr, access.token.is_some(), server.is_tls()));
            }
            let block = banner::Startup {
                layout: &layout,
                url: &url,
                open: &open_url,
                web_ui: &ui_status,
                tls: args.tls_cert.as_deref(),
                notes: &notes,
            };
            if crate::logging::is_json() {
                block.log(args.quiet);
            } else if args.quiet {
                say(Level::INFO, &format!("Serving on {open_url}"));
                // A missing UI is a warning: shown even when quiet.
                if ui_status.starts_with("UNAVAILABLE") {
                    say(Level::WARN, &format!("Viewer UI {ui_status}"));
                }
            } else {
                say(Level::INFO, &block.text());
            }
            if exposed && access.token.is_none() {
                // --no-auth: the warning again, below the block, where it is seen.
                say(Level::WARN, &banner::exposure_warning(addr, false, server.is_tls()));
            }
        });
        // The 0.9.5 viewer URL says `anndata=true` when the default dataset is AnnData.
        let anndata = layout
            .mounts()
            .first()
            .is_some_and(|m| m.source.format().dataset_type() == "anndata");
        let viewer = if args.viewer {
            // The viewer may switch datasets, so a selection is checked
            // against the largest: an index no dataset has is refused.
            let n_cells = layout.mounts().iter().map(|m| m.info.n_cells).max();
            let mut options = ViewerOptions::default();
            options.n_cells = n_cells;
            let viewer = server
                .viewers()
                .register(options)
                .map_err(|err| CliError::operator(err.to_string()))?;
            crate::viewer::announce(&viewer, &url, anndata, &access);
            let events = viewer
                .events()
                .map(crate::viewer::stream_to_stdout)
                .transpose()?;
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
        // The signal sets the deadline by which the process must be gone.
        let (deadline_tx, deadline_rx) = watch::channel(None);
        let signal = async move {
            stop_signal.await;
            let _ = deadline_tx.send(Some(Instant::now() + exit_within(shutdown_timeout)));
        };
        let cut_off = async {
            let mut deadline = deadline_rx.clone();
            match deadline.wait_for(Option::is_some).await.map(|d| *d) {
                Ok(Some(at)) => tokio::time::sleep_until(at).await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            served = server.run(signal) => {
                served.map_err(|err| CliError::operator(format!("the server failed: {err}")))?;
            }
            () = cut_off => {
                tracing::warn!("the server did not stop within --shutdown-timeout; exiting anyway");
            }
        }
        let deadline = deadline_rx
            .borrow()
            .unwrap_or_else(|| Instant::now() + exit_within(shutdown_timeout));
        if let Some((viewer, events)) = viewer {
            // Unregistering ends the stream; wait for its last lines.
            drop(viewer);
            if let Some(events) = events {
                events.finish(deadline).await;
            }
        }
        tracing::info!("stopped");
        Ok(())
    });
    // Blocking work still running (a read of a slow disk) must not hold the
    // process past the shutdown timeout either.
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
}

/// The certificate and key of `--tls-cert`/`--tls-key` (clap makes sure
/// both or neither are given), checked before anything is bound.
fn load_tls(args: &ServeArgs) -> Result<Option<TlsConfig>, CliError> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    TlsConfig::from_pem_files(cert, key)
        .map(Some)
        .map_err(|err| {
            // The library states facts; the CLI names the flag and the fix.
            let hint = match &err {
                TlsError::Read { what: "certificate", .. } => "check --tls-cert",
                TlsError::Read { .. } => "check --tls-key",
                TlsError::BadPem { what: "certificate", .. } => {
                    "--tls-cert takes a PEM certificate chain (-----BEGIN CERTIFICATE-----); SECURITY.md says how to make one"
                }
                TlsError::BadPem { reason, .. } if reason.contains("passphrase") => {
                    "--tls-key needs the key without its passphrase: openssl pkey -in KEY -out plain-key.pem (keep it chmod 600)"
                }
                TlsError::BadPem { .. } => {
                    "--tls-key takes the PEM private key of that certificate (-----BEGIN PRIVATE KEY-----)"
                }
                TlsError::Mismatch { .. } => {
                    "pass the key the certificate was made with as --tls-key"
                }
                _ => "check --tls-cert and --tls-key; SECURITY.md says how to make a certificate",
            };
            let message = format!("{err}; {hint}");
            match err {
                // As for --token-file: an unreadable file is the
                // environment's doing, a wrong one the command's.
                TlsError::Read { .. } => CliError::operator(message),
                _ => CliError::usage(message),
            }
        })
}

/// The part of `--shutdown-timeout` the server gives requests in flight;
/// the rest is for what follows (closing sockets, removing temp files,
/// writing the last events).
fn shutdown_grace(timeout: Duration) -> Duration {
    timeout.mul_f64(0.7)
}

/// When, after the signal, everything but the runtime's own teardown must be
/// done: the runtime then gets its 200 ms within `--shutdown-timeout`.
fn exit_within(timeout: Duration) -> Duration {
    timeout
        .saturating_sub(Duration::from_millis(300))
        .max(timeout / 2)
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

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed by this call,
/// not when the future is first polled: until then the signals keep their
/// default action, which ends the process without a graceful shutdown.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |listener: Option<tokio::signal::unix::Signal>| async move {
                match listener {
                    Some(mut listener) => {
                        listener.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => {},
                () = wait(terminate) => {},
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        crate::logging::say(
            tracing::Level::INFO,
            "Shutting down: finishing requests in flight…",
        );
    }
}
