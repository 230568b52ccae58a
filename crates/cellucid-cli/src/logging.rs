//! Log setup: `tracing` to stderr, in text or JSON.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::args::LogFormat;

/// Installs the global subscriber. `RUST_LOG` overrides the level chosen by
/// `--quiet` / `--verbose`.
pub(crate) fn init(format: LogFormat, quiet: bool, verbose: bool) {
    let level = if quiet {
        "warn"
    } else if verbose {
        "debug"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("warn,cellucid_core={level},cellucid_http={level},cellucid_proxy={level},cellucid={level}"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(verbose);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // A subscriber already set (only possible in tests) is fine.
    drop(result);
}
