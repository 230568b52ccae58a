//! Few glibc malloc arenas for `cellucid serve`.
//!
//! glibc gives threads that allocate their own arenas (up to eight per core)
//! and keeps in each arena what was freed there, up to a trim threshold that
//! grows with the largest block freed. A server whose requests run on
//! whichever blocking thread is free, and compute files of several
//! megabytes, so holds tens of MB of freed memory nobody reuses: serving a
//! 1M-cell `.h5ad` to a browser peaked at 149–171 MB of anonymous memory,
//! 112 MB with two arenas (benches/RESULTS.md).
//!
//! `serve` sets the limit with `mallopt(M_ARENA_MAX)` before any other thread
//! exists: a thread gets its arena at its first allocation, so every thread
//! started later counts against the limit. A user who set
//! `MALLOC_ARENA_MAX` (or the `glibc.malloc.arena_max` tunable) keeps that
//! choice: glibc applied it when the process started.

/// Arenas: one per core of the 2-vCPU machines the targets are set on.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: libc::c_int = 2;

/// Limits glibc to [`ARENAS`] malloc arenas unless the user chose a limit.
/// Call it before starting threads; elsewhere than Linux/glibc it does
/// nothing.
#[allow(unsafe_code)]
pub(crate) fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        if std::env::var_os("MALLOC_ARENA_MAX").is_some()
            || tunables.contains("glibc.malloc.arena_max")
        {
            return;
        }
        // SAFETY: mallopt(3) takes two integers and reads no memory of ours;
        // it changes a malloc parameter under glibc's own lock, so it is
        // sound at any time (calling it before threads start is what makes
        // it effective, not what makes it safe). M_ARENA_MAX with a positive
        // value is a parameter glibc accepts; a refusal (0) would leave the
        // default, which is only slower on memory.
        let _accepted = unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENAS) };
    }
}
