//! Few glibc malloc arenas for `cellucid serve`.
//!
//! glibc gives threads that allocate at the same time their own arenas (up
//! to eight per core) and keeps in each arena what was freed there, up to a
//! trim threshold that grows with the largest block freed. A server whose
//! requests run on whichever blocking thread is free, and compute files of
//! several megabytes, so holds tens of MB of freed memory nobody reuses:
//! serving a 1M-cell `.h5ad` to a browser peaked at 149–171 MB of anonymous
//! memory, 112 MB with two arenas (benches/RESULTS.md).
//!
//! The arena count is read from `MALLOC_ARENA_MAX` when the process starts,
//! and changing it later needs an unsafe FFI call, so `serve` starts itself
//! again once, in place (same pid, arguments, descriptors), with the
//! variable set — unless it is set already, which also lets a user choose
//! another value. If that fails the server simply runs as it is.

use std::ffi::OsString;

/// The variable glibc reads.
const VARIABLE: &str = "MALLOC_ARENA_MAX";
/// Arenas: one per core of the 2-vCPU machines the targets are set on.
const ARENAS: &str = "2";

/// Re-executes the process with [`VARIABLE`] set, when it is not; returns
/// only if that is not needed or not possible.
pub(crate) fn ensure_few_arenas() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) || std::env::var_os(VARIABLE).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    exec(&exe, &args);
}

#[cfg(unix)]
fn exec(exe: &std::path::Path, args: &[OsString]) {
    use std::os::unix::process::CommandExt as _;
    let err = std::process::Command::new(exe)
        .args(args)
        .env(VARIABLE, ARENAS)
        .exec();
    tracing::debug!(error = %err, "could not restart with {VARIABLE}={ARENAS}; running as is");
}

#[cfg(not(unix))]
fn exec(_: &std::path::Path, _: &[OsString]) {}
